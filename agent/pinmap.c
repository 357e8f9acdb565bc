/*
 * pinmap.c: "serial = PIN" files for `provision`.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "err.h"
#include "log.h"
#include "pinmap.h"
#include "secret.h"

#define PINMAP_MAX (1024 * 1024)
#define SERIAL_MAX 16 /* CK_TOKEN_INFO.serialNumber */

struct pinmap_entry {
	char serial[SERIAL_MAX + 1];
	char *pin; /* secret */
};

struct pinmap {
	struct pinmap_entry *v;
	size_t n;
};

static char *
trim(char *s, char *end)
{
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	*end = '\0';
	return s;
}

/* One non-comment line (NUL-terminated, modified in place) into m. */
static int
parse_line(struct pinmap *m, char *line, const char *where, unsigned no)
{
	char *eq = strchr(line, '='), *serial, *pin;
	size_t i;

	if (eq == NULL) {
		log_error("%s:%u: expected 'serial = PIN'", where, no);
		return P11E_ERR_CONFIG;
	}
	serial = trim(line, eq);
	pin = trim(eq + 1, eq + 1 + strlen(eq + 1));
	if (*serial == '\0' || *pin == '\0') {
		log_error("%s:%u: %s is empty (expected 'serial = PIN')", where, no,
		          *serial == '\0' ? "the serial" : "the PIN");
		return P11E_ERR_CONFIG;
	}
	if (strlen(serial) > SERIAL_MAX) {
		log_error("%s:%u: serial '%.32s' is longer than a token serial (%d bytes)", where,
		          no, serial, SERIAL_MAX);
		return P11E_ERR_CONFIG;
	}
	for (i = 0; i < m->n; i++) {
		if (strcmp(m->v[i].serial, serial) == 0) {
			log_error("%s:%u: serial '%s' is given twice", where, no, serial);
			return P11E_ERR_CONFIG;
		}
	}
	memcpy(m->v[m->n].serial, serial, strlen(serial) + 1);
	if (secret_dup(pin, &m->v[m->n].pin) != 0)
		return P11E_ERR_ALLOC;
	m->n++;
	return 0;
}

int
pinmap_parse(const char *text, size_t len, const char *where, struct pinmap **out)
{
	int r = P11E_ERR_ALLOC;
	struct pinmap *m = NULL;
	char *buf = NULL, *line, *next, *s;
	size_t lines = 1, i;
	unsigned no = 0;

	for (i = 0; i < len; i++)
		lines += text[i] == '\n';
	if ((m = calloc(1, sizeof(*m))) == NULL || (m->v = calloc(lines, sizeof(*m->v))) == NULL) {
		log_error("out of memory");
		goto out;
	}
	if ((r = secret_alloc(len + 1, (void **)&buf)) != 0)
		goto out;
	r = P11E_ERR_ALLOC;
	memcpy(buf, text, len);
	buf[len] = '\0';
	if (strlen(buf) != len) {
		log_error("%s: holds a NUL byte", where);
		r = P11E_ERR_CONFIG;
		goto out;
	}
	for (line = buf; line != NULL; line = next) {
		no++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		s = trim(line, line + strlen(line));
		if (*s == '\0' || *s == '#')
			continue;
		if ((r = parse_line(m, s, where, no)) != 0)
			goto out;
	}
	*out = m;
	m = NULL;
	r = 0;
out:
	secret_release(buf);
	pinmap_free(m);
	return r;
}

int
pinmap_load(const char *path, struct pinmap **out)
{
	int fd = -1, r = P11E_ERR_FILE;
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	ssize_t k;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1 || fstat(fd, &st) == -1) {
		if (errno == ELOOP) {
			log_error("PIN map file %s is a symbolic link (refused); name the file "
			          "itself",
			          path);
			r = P11E_ERR_CONFIG;
		} else {
			log_error("cannot read PIN map file %s: %s", path, strerror(errno));
		}
		goto out;
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0 || st.st_size > PINMAP_MAX) {
		if (!S_ISREG(st.st_mode))
			log_error("PIN map file %s is not a regular file", path);
		else if ((st.st_mode & 077) != 0)
			log_error("PIN map file %s is readable by others (mode %04o); run chmod "
			          "600 %s",
			          path, (unsigned)(st.st_mode & 07777), path);
		else
			log_error("PIN map file %s is larger than %d bytes", path, PINMAP_MAX);
		r = P11E_ERR_CONFIG;
		goto out;
	}
	if ((r = secret_alloc((size_t)st.st_size + 1, (void **)&buf)) != 0)
		goto out;
	r = P11E_ERR_FILE;
	while (len < (size_t)st.st_size) {
		if ((k = read(fd, buf + len, (size_t)st.st_size - len)) == -1 && errno == EINTR)
			continue;
		if (k == -1) {
			log_error("cannot read PIN map file %s: %s", path, strerror(errno));
			goto out;
		}
		if (k == 0)
			break;
		len += (size_t)k;
	}
	r = pinmap_parse(buf, len, path, out);
out:
	secret_release(buf);
	if (fd != -1)
		close(fd);
	return r;
}

const char *
pinmap_get(const struct pinmap *m, const char *serial)
{
	size_t i;

	for (i = 0; m != NULL && i < m->n; i++)
		if (strcmp(m->v[i].serial, serial) == 0)
			return m->v[i].pin;
	return NULL;
}

size_t
pinmap_count(const struct pinmap *m)
{
	return m != NULL ? m->n : 0;
}

void
pinmap_free(struct pinmap *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->n; i++)
		secret_free(m->v[i].pin);
	free(m->v);
	free(m);
}
