/*
 * provreport.c: the JSON-lines record of a provisioning run.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "json.h"
#include "log.h"
#include "provreport.h"
#include "secret.h"
#include "spawn.h"

/* Bytes json_str writes at most per byte of a string ("\u00XX"). */
#define JSON_PER_BYTE 6
/* Room for the braces, keys, commas, quotes, numbers and the time. */
#define REC_OVERHEAD 512
#define BURN_STACK (32 * 1024)

int
provreport_open(const char *path, int secret, int *fd)
{
	int f;
	struct stat st;

	if ((f = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	              secret ? 0600 : 0644)) == -1) {
		log_error("cannot open report file %s: %s", path, strerror(errno));
		return P11E_ERR_FILE;
	}
	if (secret && fstat(f, &st) == 0 && (st.st_mode & 077) != 0) {
		log_error("report file %s will hold PINs but is readable by others (mode %04o); "
		          "run chmod 600 %s or name another file",
		          path, (unsigned)(st.st_mode & 07777), path);
		close(f);
		return P11E_ERR_CONFIG;
	}
	*fd = f;
	return 0;
}

static size_t
slen(const char *s)
{
	return s != NULL ? strlen(s) : 0;
}

/* "hook": null, or the hook that failed (provreport.h). */
static void
json_hook(FILE *f, int *first, const struct provreport_hook *h)
{
	static const char *const results[] = {"failed", "signal", "timeout", "not-started"};
	int sub = 1;

	json_key(f, first, "hook");
	if (h == NULL) {
		fputs("null", f);
		return;
	}
	fputc('{', f);
	json_kstr(f, &sub, "name", h->name);
	json_kstr(f, &sub, "event", h->event);
	json_kstr(f, &sub, "result", results[h->how & 3]);
	if (h->how == SPAWN_EXITED)
		json_klong(f, &sub, "exit_code", h->code);
	else
		json_kstr(f, &sub, "exit_code", NULL);
	if (h->how == SPAWN_SIGNALED)
		json_klong(f, &sub, "signal", h->code);
	else
		json_kstr(f, &sub, "signal", NULL);
	json_kstr(f, &sub, "message", h->message);
	fputc('}', f);
}

/*
 * rec as one JSON line into buf (size bytes, room for the worst case) through
 * an unbuffered stream: no copy in stdio's buffers or in memory that grew and
 * moved. *len set. P11E_ERR_INTERNAL (logged). Not inlined: the caller burns
 * the stack its callees used (secret_burn_stack) once it has returned.
 */
__attribute__((noinline)) static int
format_rec(const struct provreport_rec *rec, char *buf, size_t size, size_t *len)
{
	FILE *f = NULL;
	long pos;
	int first = 1, r = P11E_ERR_INTERNAL;

	if ((f = fmemopen(buf, size, "w")) == NULL || setvbuf(f, NULL, _IONBF, 0) != 0) {
		log_error("cannot format the report line: %s", strerror(errno));
		goto out;
	}
	fputc('{', f);
	json_ktime(f, &first, "time", time(NULL));
	json_kstr(f, &first, "serial", rec->serial);
	json_kstr(f, &first, "label", rec->label);
	json_kstr(f, &first, "result", rec->result);
	json_kstr(f, &first, "certificate_serial", rec->cert_serial);
	json_kstr(f, &first, "not_after", rec->not_after);
	json_kstr(f, &first, "key_uri", rec->key_uri);
	json_kstr(f, &first, "error", rec->error);
	json_hook(f, &first, rec->hook);
	if (rec->pin != NULL)
		json_kstr(f, &first, "pin", rec->pin);
	fputs("}\n", f);
	if (fflush(f) != 0 || ferror(f) || (pos = ftell(f)) < 0 || (size_t)pos >= size) {
		log_error("cannot format the report line (longer than %zu bytes?) (a bug)", size);
		goto out;
	}
	*len = (size_t)pos;
	r = 0;
out:
	if (f != NULL)
		fclose(f);
	return r;
}

/* The line is built in the secret arena (it may hold a generated PIN) and wiped. */
int
provreport_write(int fd, const char *path, const struct provreport_rec *rec)
{
	char *buf = NULL;
	size_t len = 0, off = 0, size;
	ssize_t k;
	int r = P11E_ERR_INTERNAL;

	size = JSON_PER_BYTE * (slen(rec->serial) + slen(rec->label) + slen(rec->result) +
	                        slen(rec->cert_serial) + slen(rec->not_after) + slen(rec->key_uri) +
	                        slen(rec->error) + slen(rec->pin)) +
	       REC_OVERHEAD;
	if (rec->hook != NULL)
		size += JSON_PER_BYTE *
		        (slen(rec->hook->name) + slen(rec->hook->event) + slen(rec->hook->message));
	if ((r = secret_alloc(size, (void **)&buf)) != 0)
		goto out;
	r = format_rec(rec, buf, size, &len);
	/* What stdio's code left of the PIN on the stack goes too. */
	if (rec->pin != NULL)
		secret_burn_stack(BURN_STACK);
	if (r != 0)
		goto out;
	/* One write: O_APPEND puts the whole line at the end, never interleaved. */
	while (off < len) {
		if ((k = write(fd, buf + off, len - off)) == -1 && errno == EINTR)
			continue;
		if (k == -1) {
			log_error("cannot write report file %s: %s", path, strerror(errno));
			r = P11E_ERR_FILE;
			goto out;
		}
		off += (size_t)k;
	}
	if (fsync(fd) == -1) {
		log_error("cannot write report file %s: %s", path, strerror(errno));
		r = P11E_ERR_FILE;
		goto out;
	}
	r = 0;
out:
	secret_release(buf);
	return r;
}
