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

int
provreport_write(int fd, const char *path, const struct provreport_rec *rec)
{
	char *buf = NULL;
	size_t len = 0, off = 0;
	ssize_t k;
	FILE *f = NULL;
	int first = 1, r = P11E_ERR_ALLOC;

	if ((f = open_memstream(&buf, &len)) == NULL) {
		log_error("out of memory");
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
	if (rec->pin != NULL)
		json_kstr(f, &first, "pin", rec->pin);
	fputs("}\n", f);
	if (fclose(f) != 0) {
		f = NULL;
		log_error("out of memory");
		goto out;
	}
	f = NULL;
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
	if (f != NULL)
		fclose(f);
	free(buf);
	return r;
}
