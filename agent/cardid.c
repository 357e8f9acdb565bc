/*
 * cardid.c: card directory names, printable forms and identity records for
 * `provision` (cardid.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cardid.h"
#include "err.h"
#include "log.h"
#include "statefile.h"
#include "store.h"
#include "template.h"

#define NAME_MAX_LEN 255
#define RECORD_MAX 4096
#define EMPTY_NAME "%empty"

static const char hexdig[] = "0123456789ABCDEF";

/* A byte a directory name keeps as it is. */
static int
name_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

/* A byte a record value keeps as it is: printable ASCII but blank and '%'. */
static int
record_byte(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '%';
}

/* s with every byte keep() refuses as %XX; malloc'ed, NULL when out of memory. */
static char *
encode(const char *s, int (*keep)(unsigned char))
{
	size_t i, o = 0, n = strlen(s);
	char *out = malloc(3 * n + 1);
	unsigned char c;

	if (out == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (keep(c)) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hexdig[c >> 4];
			out[o++] = hexdig[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}

/* Undoes encode in place (a '%' without two hex digits stays). */
static char *
decode(char *s)
{
	char *r = s, *w = s;
	const char *h1, *h2;

	while (*r != '\0') {
		if (r[0] == '%' && r[1] != '\0' && r[2] != '\0' &&
		    (h1 = strchr(hexdig, r[1])) != NULL && (h2 = strchr(hexdig, r[2])) != NULL) {
			*w++ = (char)((h1 - hexdig) << 4 | (h2 - hexdig));
			r += 3;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
	return s;
}

int
cardid_dirname(const char *serial, char **out)
{
	char *name = serial[0] == '\0' ? strdup(EMPTY_NAME) : encode(serial, name_byte);

	if (name == NULL)
		return P11E_ERR_ALLOC;
	if (strlen(name) > NAME_MAX_LEN) {
		free(name);
		return P11E_ERR_INTERNAL;
	}
	*out = name;
	return 0;
}

char *
cardid_show(const char *s, char *out, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0, n;

	while (*p != '\0') {
		if ((n = tmpl_printable_len((const char *)p)) > 0) {
			if (o + n >= len)
				break;
			memcpy(out + o, p, n);
			o += n;
			p += n;
			continue;
		}
		if (o + 4 >= len)
			break;
		out[o++] = '\\';
		out[o++] = 'x';
		out[o++] = hexdig[*p >> 4];
		out[o++] = hexdig[*p & 15];
		p++;
	}
	out[o] = '\0';
	return out;
}

/* The four values of a record, encoded (record_byte). */
struct ident {
	char *v[4];
};

static const char *const fields[4] = {"serial", "label", "manufacturer", "model"};

static void
ident_free(struct ident *id)
{
	size_t i;

	for (i = 0; i < 4; i++)
		free(id->v[i]);
}

static int
ident_of(const struct tok_info *info, struct ident *id)
{
	const char *raw[4] = {info->serial, info->label, info->manufacturer, info->model};
	size_t i;

	memset(id, 0, sizeof(*id));
	for (i = 0; i < 4; i++) {
		if ((id->v[i] = encode(raw[i], record_byte)) == NULL) {
			ident_free(id);
			return P11E_ERR_ALLOC;
		}
	}
	return 0;
}

/* statefile_read's callback: one "key=value" line of the record. */
static int
record_field(void *ud, const char *k, const char *v)
{
	struct ident *id = ud;
	size_t i;

	for (i = 0; i < 4; i++) {
		if (strcmp(k, fields[i]) != 0)
			continue;
		if (id->v[i] != NULL)
			return -1; /* given twice */
		return (id->v[i] = strdup(v)) == NULL ? -1 : 0;
	}
	return 0; /* first_seen, and what later versions add */
}

static int
write_record(const char *path, const struct ident *id)
{
	char when[32], *buf = NULL;
	time_t now = time(NULL);
	struct tm tmv;
	size_t n;
	int r;

	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
	n = 512 + strlen(id->v[0]) + strlen(id->v[1]) + strlen(id->v[2]) + strlen(id->v[3]);
	if ((buf = malloc(n)) == NULL)
		return P11E_ERR_ALLOC;
	snprintf(buf, n,
	         "# p11enroll provision: what the token with this serial reported when this\n"
	         "# station first saw it (bytes outside printable ASCII, blanks and %% as %%XX).\n"
	         "# A token that shows this serial with another label, manufacturer or model\n"
	         "# is refused before it is given a PIN.\n"
	         "serial=%s\nlabel=%s\nmanufacturer=%s\nmodel=%s\nfirst_seen=%s\n",
	         id->v[0], id->v[1], id->v[2], id->v[3], when);
	r = store_write_atomic(path, buf, strlen(buf), 0600);
	free(buf);
	return r;
}

/* Logs why the token is refused: the first of label, model, manufacturer that differs. */
static void
say_mismatch(const char *path, const struct tok_info *info, struct ident *was)
{
	const char *raw[4] = {info->serial, info->label, info->manufacturer, info->model};
	static const size_t order[] = {1, 3, 2};
	char serial[80], a[140], b[140];
	size_t i, f = 1;

	/* The record is not used after this: its values are decoded in place. */
	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (strcmp(raw[order[i]], decode(was->v[order[i]])) != 0) {
			f = order[i];
			break;
		}
	}
	log_error("serial '%s': %s '%s' differs from '%s', recorded when this station first saw "
	          "that serial: a different card? Refused, no PIN given (if it was re-initialised, "
	          "remove %s)",
	          cardid_show(info->serial, serial, sizeof(serial)), fields[f],
	          cardid_show(raw[f], a, sizeof(a)), cardid_show(was->v[f], b, sizeof(b)), path);
}

int
cardid_check(const char *dir, const struct tok_info *info, int *first)
{
	struct ident now, was;
	char *path = NULL, serial[80];
	unsigned line = 0;
	size_t i;
	int r;

	memset(&was, 0, sizeof(was));
	if ((r = ident_of(info, &now)) != 0)
		return r;
	if ((path = store_path_join(dir, CARDID_FILE)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	r = statefile_read(path, RECORD_MAX, record_field, &was, &line);
	if (r == P11E_ERR_NOTFOUND) {
		if ((r = write_record(path, &now)) == 0) {
			log_info("first contact with serial '%s': its label, manufacturer and "
			         "model are recorded in %s",
			         cardid_show(info->serial, serial, sizeof(serial)), path);
			*first = 1;
		}
		goto out;
	}
	if (r == P11E_ERR_MALFORMED)
		log_error("%s:%u: not a token identity record (expected key=value lines); "
		          "the token is refused until it is repaired or removed",
		          path, line);
	if (r != 0) {
		r = P11E_ERR_FILE;
		goto out;
	}
	for (i = 0; i < 4; i++) {
		if (was.v[i] == NULL) {
			log_error("%s: no %s= line; the token is refused until the record is "
			          "repaired or removed",
			          path, fields[i]);
			r = P11E_ERR_FILE;
			goto out;
		}
	}
	if (strcmp(now.v[0], was.v[0]) != 0) {
		log_error("%s names serial '%s', not the token's; the token is refused until "
		          "the record is repaired or removed",
		          path, was.v[0]);
		r = P11E_ERR_FILE;
		goto out;
	}
	for (i = 1; i < 4; i++) {
		if (strcmp(now.v[i], was.v[i]) != 0) {
			say_mismatch(path, info, &was);
			r = P11E_ERR_TOKEN;
			goto out;
		}
	}
	*first = 0;
	r = 0;
out:
	ident_free(&now);
	ident_free(&was);
	free(path);
	return r;
}
