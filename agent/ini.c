/*
 * ini.c: the INI lexer behind conf.c.
 *
 * The whole file is read into one buffer in the secret arena (secret.h) that
 * is split into lines in place and wiped at the end, since it may hold the
 * challenge. Each call to
 * ini_next hands out the next header or key line; what they mean is
 * conf.c's business.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "ini.h"
#include "log.h"
#include "secret.h"

#define LINE_MAX_BYTES 4096
#define FILE_MAX_BYTES (1024 * 1024)

struct ini {
	const char *file;    /* the path as given, for messages */
	char *buf;           /* the file, NUL-terminated one past len */
	size_t len;          /* bytes read */
	char *next;          /* where the next line starts */
	mode_t mode;         /* of the file */
	unsigned line;       /* current line, from 1 */
	const char *section; /* name in the last header, or NULL */
	const char *key;     /* key of the current line, or NULL */
	char *raw;           /* the text after its '=', or NULL once read */
};

static int
is_ws(int ch)
{
	return ch == ' ' || ch == '\t';
}

static char *
skip_ws(char *s)
{
	while (is_ws(*s))
		s++;
	return s;
}

char *
ini_trim(char *s)
{
	size_t n;

	s = skip_ws(s);
	n = strlen(s);
	while (n > 0 && is_ws(s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Whether only a comment, or nothing, is left at s. */
static int
at_end(const char *s)
{
	return *s == '\0' || *s == '#' || *s == ';';
}

/* Reads the whole file; *buf is NUL-terminated one past *len, to wipe and free. */
static int
read_file(const char *path, char **buf, size_t *len, mode_t *mode)
{
	struct stat st;
	char *b = NULL;
	size_t size = 0, got = 0;
	ssize_t k;
	int fd = -1, r = P11E_ERR_INTERNAL;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 || fstat(fd, &st) == -1) {
		log_error("cannot read configuration %s: %s", path, strerror(errno));
		r = P11E_ERR_FILE;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > FILE_MAX_BYTES) {
		log_error("cannot read configuration %s: %s", path,
		          S_ISREG(st.st_mode) ? "larger than 1 MiB" : "not a regular file");
		r = P11E_ERR_FILE;
		goto out;
	}
	size = (size_t)st.st_size;
	if ((r = secret_alloc(size + 1, (void **)&b)) != 0)
		goto out;
	while (got < size) {
		if ((k = read(fd, b + got, size - got)) == -1 && errno == EINTR)
			continue;
		if (k == -1) {
			log_error("cannot read configuration %s: %s", path, strerror(errno));
			r = P11E_ERR_FILE;
			goto out;
		}
		if (k == 0)
			break;
		got += (size_t)k;
	}
	b[got] = '\0';
	*buf = b;
	*len = got;
	*mode = st.st_mode;
	b = NULL;
	r = 0;
out:
	secret_release(b);
	if (fd != -1)
		close(fd);
	return r;
}

int
ini_open(const char *path, struct ini **out)
{
	struct ini *ini = NULL;
	char *buf = NULL;
	size_t len = 0;
	mode_t mode = 0;
	int r = P11E_ERR_INTERNAL;

	if ((r = read_file(path, &buf, &len, &mode)) != 0)
		goto out;
	if ((ini = calloc(1, sizeof(*ini))) == NULL) {
		log_error("out of memory");
		r = P11E_ERR_ALLOC;
		goto out;
	}
	ini->file = path;
	ini->buf = buf;
	ini->len = len;
	ini->next = len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0 ? buf + 3 : buf;
	ini->mode = mode;
	buf = NULL;
	*out = ini;
	ini = NULL;
	r = 0;
out:
	secret_release(buf);
	ini_free(ini);
	return r;
}

mode_t
ini_mode(const struct ini *ini)
{
	return ini->mode;
}

/* s starts with '['. */
static int
lex_section(struct ini *ini, char *s, struct ini_event *ev)
{
	char *name, *end;

	if ((end = strchr(s, ']')) == NULL) {
		log_error("%s:%u: a section header needs a closing ']' (e.g. [scep])", ini->file,
		          ini->line);
		return P11E_ERR_CONFIG;
	}
	*end = '\0';
	name = ini_trim(s + 1);
	if (!at_end(skip_ws(end + 1))) {
		log_error("%s:%u: [%s]: unexpected text after the section header", ini->file,
		          ini->line, name);
		return P11E_ERR_CONFIG;
	}
	ini->section = name;
	ev->kind = INI_SECTION;
	ev->line = ini->line;
	ev->section = name;
	ev->key = NULL;
	return 0;
}

/* s is neither blank, a comment nor a header. */
static int
lex_key(struct ini *ini, char *s, struct ini_event *ev)
{
	char *eq, *key = NULL;

	if ((eq = strchr(s, '=')) != NULL) {
		*eq = '\0';
		key = ini_trim(s);
	}
	if (eq == NULL || *key == '\0') {
		if (ini->section != NULL)
			log_error("%s:%u: [%s]: expected 'key = value'", ini->file, ini->line,
			          ini->section);
		else
			log_error("%s:%u: expected '[section]' or 'key = value'", ini->file,
			          ini->line);
		return P11E_ERR_CONFIG;
	}
	ini->key = key;
	ini->raw = eq + 1;
	ev->kind = INI_KEY;
	ev->line = ini->line;
	ev->section = ini->section;
	ev->key = key;
	return 0;
}

int
ini_next(struct ini *ini, struct ini_event *ev)
{
	char *end = ini->buf + ini->len, *line, *nl, *s;
	size_t n;

	ini->key = NULL;
	ini->raw = NULL;
	while (ini->next < end) {
		line = ini->next;
		ini->line++;
		nl = memchr(line, '\n', (size_t)(end - line));
		n = nl != NULL ? (size_t)(nl - line) : (size_t)(end - line);
		ini->next = line + n + 1;
		line[n] = '\0';
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		if (n > LINE_MAX_BYTES) {
			log_error("%s:%u: the line is longer than %d bytes", ini->file, ini->line,
			          LINE_MAX_BYTES);
			return P11E_ERR_CONFIG;
		}
		if (memchr(line, '\0', n) != NULL) {
			log_error("%s:%u: the line contains a NUL byte", ini->file, ini->line);
			return P11E_ERR_CONFIG;
		}
		s = skip_ws(line);
		if (at_end(s))
			continue;
		return *s == '[' ? lex_section(ini, s, ev) : lex_key(ini, s, ev);
	}
	ev->kind = INI_END;
	ev->line = ini->line;
	ev->section = NULL;
	ev->key = NULL;
	return 0;
}

int
ini_value(struct ini *ini, char **out)
{
	char *raw = ini->raw, *v, *e;

	if (raw == NULL) {
		log_error("%s:%u: no value to read (a bug)", ini->file, ini->line);
		return P11E_ERR_INTERNAL;
	}
	ini->raw = NULL;
	v = skip_ws(raw);
	if (*v == '"') {
		if ((e = strchr(v + 1, '"')) == NULL) {
			log_error("%s:%u: [%s] %s: the quoted value has no closing '\"'", ini->file,
			          ini->line, ini->section, ini->key);
			return P11E_ERR_CONFIG;
		}
		*e = '\0';
		if (!at_end(skip_ws(e + 1))) {
			log_error("%s:%u: [%s] %s: unexpected text after the closing '\"' (only a "
			          "comment may follow)",
			          ini->file, ini->line, ini->section, ini->key);
			return P11E_ERR_CONFIG;
		}
		*out = v + 1;
		return 0;
	}
	for (e = v; *e != '\0'; e++) {
		if ((*e == '#' || *e == ';') && e > raw && is_ws(e[-1])) {
			*e = '\0';
			break;
		}
	}
	*out = ini_trim(v);
	return 0;
}

int
ini_value_raw(struct ini *ini, char **out)
{
	char *raw = ini->raw, *e;
	int quoted = 0;

	if (raw == NULL) {
		log_error("%s:%u: no value to read (a bug)", ini->file, ini->line);
		return P11E_ERR_INTERNAL;
	}
	ini->raw = NULL;
	for (e = raw; *e != '\0'; e++) {
		if (*e == '"')
			quoted = !quoted;
		else if (!quoted && (*e == '#' || *e == ';') && e > raw && is_ws(e[-1])) {
			*e = '\0';
			break;
		}
	}
	*out = ini_trim(raw);
	return 0;
}

void
ini_free(struct ini *ini)
{
	if (ini == NULL)
		return;
	secret_release(ini->buf);
	free(ini);
}
