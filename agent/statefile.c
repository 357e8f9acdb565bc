/*
 * statefile.c: names and key=value lines of the files in state_dir, and
 * loading one (statefile.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "err.h"
#include "log.h"
#include "statefile.h"
#include "store.h"

int
statefile_path(const struct conf *c, const char *prefix, const char *suffix, char **out)
{
	size_t n =
	    strlen(c->state_dir) + strlen(prefix) + strlen(c->key_label) + strlen(suffix) + 2;
	size_t i, o;
	char *p = malloc(n);

	if (p == NULL)
		return P11E_ERR_ALLOC;
	o = (size_t)snprintf(p, n, "%s/%s", c->state_dir, prefix);
	for (i = 0; c->key_label[i] != '\0'; i++) {
		char ch = c->key_label[i];
		p[o++] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		                 (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'
		             ? ch
		             : '_';
	}
	snprintf(p + o, n - o, "%s", suffix);
	*out = p;
	return 0;
}

int
statefile_read(const char *path, size_t max, int (*field)(void *ud, const char *k, const char *v),
               void *ud, unsigned *lineno)
{
	int r;
	unsigned char *buf = NULL;
	char *line, *next, *eq;
	size_t len = 0;
	unsigned n = 0;

	if ((r = store_read_state(path, max, &buf, &len)) != 0)
		return r;
	r = P11E_ERR_MALFORMED;
	if (strlen((char *)buf) != len)
		goto out;
	for (line = (char *)buf; *line != '\0'; line = next) {
		n++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		else
			next = line + strlen(line);
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if ((eq = strchr(line, '=')) == NULL)
			goto out;
		*eq = '\0';
		if (field(ud, line, eq + 1) != 0)
			goto out;
	}
	r = 0;
out:
	*lineno = n;
	free(buf);
	return r;
}

int
statefile_load(const struct conf *c, const struct statefile_kind *k, void *ud)
{
	char *path = NULL, where[64];
	const char *lacks = NULL;
	unsigned lineno = 0;
	int r;

	if ((r = statefile_path(c, k->prefix, k->suffix, &path)) != 0)
		return r;
	r = statefile_read(path, k->max, k->field, ud, &lineno);
	if (r == 0 && k->missing != NULL && (lacks = k->missing(ud)) != NULL)
		r = P11E_ERR_MALFORMED;
	if (r != P11E_ERR_MALFORMED)
		goto out;
	if (lacks != NULL)
		snprintf(where, sizeof(where), "no %s= line", lacks);
	else
		snprintf(where, sizeof(where), "line %u", lineno);
	if (k->replaced_by != NULL) {
		log_warn("%s is damaged (%s); ignored, %s replaces it", path, where,
		         k->replaced_by);
		r = P11E_ERR_NOTFOUND;
	} else {
		log_error("%s is damaged (%s): %s", path, where, k->remedy);
		r = P11E_ERR_FILE;
	}
out:
	free(path);
	return r;
}

void
statefile_escape(const char *s, char *out)
{
	const unsigned char *p = (const unsigned char *)s;

	for (; *p != '\0'; p++) {
		if (*p == '\\') {
			*out++ = '\\';
			*out++ = '\\';
		} else if (*p < 0x20 || *p == 0x7f) {
			out += sprintf(out, "\\x%02x", *p);
		} else {
			*out++ = (char)*p;
		}
	}
	*out = '\0';
}

int
statefile_unescape(const char *s, char *out, size_t size)
{
	size_t o = 0;
	int hi, lo;

	while (*s != '\0') {
		if (o + 1 >= size)
			return -1;
		if (*s != '\\') {
			out[o++] = *s++;
			continue;
		}
		if (s[1] == '\\') {
			out[o++] = '\\';
			s += 2;
			continue;
		}
		if (s[1] != 'x' || (hi = OPENSSL_hexchar2int((unsigned char)s[2])) < 0 ||
		    (lo = OPENSSL_hexchar2int((unsigned char)s[3])) < 0 || (hi == 0 && lo == 0))
			return -1;
		out[o++] = (char)(hi << 4 | lo);
		s += 4;
	}
	out[o] = '\0';
	return 0;
}

int
statefile_check_dirs(const struct conf *c)
{
	int r;

	if ((r = store_check_dir(c->state_dir, "[agent] state_dir")) == 0)
		r = store_check_dir(c->trust_dir, "[trust] dir");
	return r;
}

int
statefile_lock(const struct conf *c, int *fd_out)
{
	char *path = NULL;
	int fd = -1, r;

	if ((r = statefile_check_dirs(c)) != 0 || (r = store_mkdirs(c->state_dir, 0700)) != 0 ||
	    (r = statefile_path(c, "lock-", "", &path)) != 0)
		return r;
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		log_error("cannot open the lock file %s: %s", path, strerror(errno));
		r = P11E_ERR_FILE;
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK) {
			log_error("another p11enroll run is working on key '%s' (%s is locked); "
			          "try again when it has finished",
			          c->key_label, path);
			r = P11E_ERR_BUSY;
		} else {
			log_error("cannot lock %s: %s", path, strerror(errno));
			r = P11E_ERR_FILE;
		}
		close(fd);
		goto out;
	}
	*fd_out = fd;
	r = 0;
out:
	free(path);
	return r;
}

void
statefile_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}
