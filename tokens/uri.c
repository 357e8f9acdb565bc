#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "err.h"
#include "log.h"
#include "uri.h"

#define SCHEME "pkcs11:"
#define ID_MAX 64
#define PATH_ATTRS                                                                                 \
	"token, manufacturer, serial, model, object, id, type, library-manufacturer, "             \
	"library-description, library-version, slot-id, slot-description, slot-manufacturer"

enum kind { K_STR, K_ID, K_SLOT_ID, K_TYPE };

struct attr {
	const char *name;
	size_t off;
	enum kind kind;
	int query;
};

static const struct attr attrs[] = {
    {"token", offsetof(struct tok_uri, token), K_STR, 0},
    {"manufacturer", offsetof(struct tok_uri, manufacturer), K_STR, 0},
    {"serial", offsetof(struct tok_uri, serial), K_STR, 0},
    {"model", offsetof(struct tok_uri, model), K_STR, 0},
    {"object", offsetof(struct tok_uri, object), K_STR, 0},
    {"id", 0, K_ID, 0},
    {"type", offsetof(struct tok_uri, type), K_TYPE, 0},
    {"library-manufacturer", offsetof(struct tok_uri, library_manufacturer), K_STR, 0},
    {"library-description", offsetof(struct tok_uri, library_description), K_STR, 0},
    {"library-version", offsetof(struct tok_uri, library_version), K_STR, 0},
    {"slot-id", 0, K_SLOT_ID, 0},
    {"slot-description", offsetof(struct tok_uri, slot_description), K_STR, 0},
    {"slot-manufacturer", offsetof(struct tok_uri, slot_manufacturer), K_STR, 0},
    {"module-path", offsetof(struct tok_uri, module_path), K_STR, 1},
    {"module-name", offsetof(struct tok_uri, module_name), K_STR, 1},
    {"pin-source", offsetof(struct tok_uri, pin_source), K_STR, 1},
    {"pin-value", offsetof(struct tok_uri, pin_value), K_STR, 1},
};

static const char *const types[] = {"private", "public", "cert", "secret-key", "data"};

static const struct attr *
find_attr(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
		if (strlen(attrs[i].name) == len && memcmp(attrs[i].name, name, len) == 0)
			return &attrs[i];
	}
	return NULL;
}

/* Decodes s[0..len) into a malloc'ed, NUL-terminated buffer. */
static int
pct_decode(const char *s, size_t len, const char *name, size_t nlen, unsigned char **out,
           size_t *outlen)
{
	unsigned char *buf = NULL;
	size_t i, n = 0;
	int hi, lo, r = P11E_ERR_INTERNAL;

	if ((buf = malloc(len + 1)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < len; i++) {
		if (s[i] != '%') {
			buf[n++] = (unsigned char)s[i];
			continue;
		}
		if (i + 2 >= len || (hi = OPENSSL_hexchar2int((unsigned char)s[i + 1])) < 0 ||
		    (lo = OPENSSL_hexchar2int((unsigned char)s[i + 2])) < 0) {
			log_error(
			    "PKCS#11 URI: invalid percent-escape in attribute '%.*s' (use %%XX "
			    "with two hex digits)",
			    (int)(nlen > 64 ? 64 : nlen), name);
			r = P11E_ERR_CONFIG;
			goto out;
		}
		buf[n++] = (unsigned char)(hi << 4 | lo);
		i += 2;
	}
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	buf = NULL;
	r = 0;
out:
	if (buf != NULL) {
		OPENSSL_cleanse(buf, len + 1);
		free(buf);
	}
	return r;
}

static int
parse_slot_id(const unsigned char *v, size_t len, unsigned long *out)
{
	unsigned long x = 0;
	size_t i;

	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		if (x > (ULONG_MAX - (unsigned long)(v[i] - '0')) / 10)
			return -1;
		x = x * 10 + (unsigned long)(v[i] - '0');
	}
	*out = x;
	return 0;
}

static int
valid_type(const char *t)
{
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(types[i], t) == 0)
			return 1;
	}
	return 0;
}

static int
set_attr(struct tok_uri *u, const struct attr *a, unsigned char **val, size_t len)
{
	char **field;

	switch (a->kind) {
	case K_ID:
		if (u->id != NULL)
			goto dup;
		if (len < 1 || len > ID_MAX) {
			log_error("PKCS#11 URI: attribute 'id' must be 1 to %d bytes (got %zu)",
			          ID_MAX, len);
			return P11E_ERR_CONFIG;
		}
		u->id = *val;
		u->id_len = len;
		*val = NULL;
		return 0;
	case K_SLOT_ID:
		if (u->has_slot_id)
			goto dup;
		if (parse_slot_id(*val, len, &u->slot_id) != 0) {
			log_error("PKCS#11 URI: attribute 'slot-id' must be a decimal number");
			return P11E_ERR_CONFIG;
		}
		u->has_slot_id = 1;
		return 0;
	case K_STR:
	case K_TYPE:
		field = (char **)((char *)u + a->off);
		if (*field != NULL)
			goto dup;
		if (memchr(*val, '\0', len) != NULL) {
			log_error("PKCS#11 URI: attribute '%s' contains %%00", a->name);
			return P11E_ERR_CONFIG;
		}
		if (a->kind == K_TYPE && !valid_type((char *)*val)) {
			log_error("PKCS#11 URI: unknown type '%s' (one of private, public, cert, "
			          "secret-key, data)",
			          (char *)*val);
			return P11E_ERR_CONFIG;
		}
		*field = (char *)*val;
		*val = NULL;
		return 0;
	}
	return P11E_ERR_INTERNAL;
dup:
	log_error("PKCS#11 URI: attribute '%s' given twice", a->name);
	return P11E_ERR_CONFIG;
}

/* One "name=value" of the path (query == 0) or the query (query == 1). */
static int
parse_attr(struct tok_uri *u, const char *s, size_t len, int query)
{
	const struct attr *a;
	const char *eq;
	unsigned char *val = NULL;
	size_t nlen, vlen = 0;
	int r = P11E_ERR_INTERNAL;

	if (len == 0) {
		log_error("PKCS#11 URI: empty attribute (stray '%c')", query ? '&' : ';');
		r = P11E_ERR_CONFIG;
		goto out;
	}
	if ((eq = memchr(s, '=', len)) == NULL) {
		log_error("PKCS#11 URI: %s attribute without '=' (expected name=value)",
		          query ? "query" : "path");
		r = P11E_ERR_CONFIG;
		goto out;
	}
	nlen = (size_t)(eq - s);
	a = find_attr(s, nlen);
	if (query && (a == NULL || !a->query)) {
		log_debug("PKCS#11 URI: ignoring query attribute '%.*s'",
		          (int)(nlen > 64 ? 64 : nlen), s);
		r = pct_decode(eq + 1, len - nlen - 1, s, nlen, &val, &vlen);
		goto out;
	}
	if (!query && (a == NULL || a->query)) {
		log_error(
		    "PKCS#11 URI: unknown attribute '%.*s' (RFC 7512 path attributes: " PATH_ATTRS
		    "%s)",
		    (int)(nlen > 64 ? 64 : nlen), s,
		    a != NULL ? "; this one belongs in the query, after '?'" : "");
		r = P11E_ERR_CONFIG;
		goto out;
	}
	if ((r = pct_decode(eq + 1, len - nlen - 1, s, nlen, &val, &vlen)) != 0)
		goto out;
	if ((r = set_attr(u, a, &val, vlen)) != 0)
		goto out;
	r = 0;
out:
	if (val != NULL) {
		OPENSSL_cleanse(val, vlen);
		free(val);
	}
	return r;
}

static int
parse_list(struct tok_uri *u, const char *s, size_t len, char sep, int query)
{
	const char *end = s + len, *p;
	int r;

	while (s < end) {
		if ((p = memchr(s, sep, (size_t)(end - s))) == NULL)
			p = end;
		if ((r = parse_attr(u, s, (size_t)(p - s), query)) != 0)
			return r;
		if (p == end)
			break;
		s = p + 1;
		if (s == end)
			return parse_attr(u, s, 0, query);
	}
	return 0;
}

int
tok_uri_parse(const char *s, struct tok_uri **out)
{
	struct tok_uri *u = NULL;
	const char *path, *q;
	int r = P11E_ERR_INTERNAL;

	if (strncasecmp(s, SCHEME, strlen(SCHEME)) != 0) {
		log_error("PKCS#11 URI must start with '" SCHEME "' (RFC 7512), e.g. "
		          "pkcs11:token=MyToken");
		r = P11E_ERR_CONFIG;
		goto out;
	}
	if ((u = calloc(1, sizeof(*u))) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	path = s + strlen(SCHEME);
	q = strchr(path, '?');
	if ((r = parse_list(u, path, q != NULL ? (size_t)(q - path) : strlen(path), ';', 0)) != 0)
		goto out;
	if (q != NULL && (r = parse_list(u, q + 1, strlen(q + 1), '&', 1)) != 0)
		goto out;
	*out = u;
	u = NULL;
	r = 0;
out:
	tok_uri_free(u);
	return r;
}

void
tok_uri_free(struct tok_uri *u)
{
	if (u == NULL)
		return;
	free(u->token);
	free(u->manufacturer);
	free(u->serial);
	free(u->model);
	free(u->object);
	free(u->id);
	free(u->type);
	free(u->library_manufacturer);
	free(u->library_description);
	free(u->library_version);
	free(u->slot_description);
	free(u->slot_manufacturer);
	free(u->module_path);
	free(u->module_name);
	free(u->pin_source);
	if (u->pin_value != NULL) {
		OPENSSL_cleanse(u->pin_value, strlen(u->pin_value));
		free(u->pin_value);
	}
	free(u);
}

static int
unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

static char *
put_attr(char *p, int *first, const char *name, const unsigned char *v, size_t len, int all)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	if (!*first)
		*p++ = ';';
	*first = 0;
	memcpy(p, name, strlen(name));
	p += strlen(name);
	*p++ = '=';
	for (i = 0; i < len; i++) {
		if (!all && unreserved(v[i])) {
			*p++ = (char)v[i];
		} else {
			*p++ = '%';
			*p++ = hex[v[i] >> 4];
			*p++ = hex[v[i] & 0xf];
		}
	}
	return p;
}

int
tok_uri_format(const struct tok_uri *u, char **out)
{
	const struct {
		const char *name;
		const unsigned char *v;
		size_t len;
		int all;
	} f[] = {
	    {"token", (const unsigned char *)u->token, u->token ? strlen(u->token) : 0, 0},
	    {"manufacturer", (const unsigned char *)u->manufacturer,
	     u->manufacturer ? strlen(u->manufacturer) : 0, 0},
	    {"serial", (const unsigned char *)u->serial, u->serial ? strlen(u->serial) : 0, 0},
	    {"model", (const unsigned char *)u->model, u->model ? strlen(u->model) : 0, 0},
	    {"object", (const unsigned char *)u->object, u->object ? strlen(u->object) : 0, 0},
	    {"id", u->id, u->id_len, 1},
	    {"type", (const unsigned char *)u->type, u->type ? strlen(u->type) : 0, 0},
	};
	char *buf = NULL, *p;
	size_t i, cap = strlen(SCHEME) + 1;
	int first = 1, r = P11E_ERR_INTERNAL;

	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (f[i].v != NULL)
			cap += strlen(f[i].name) + 2 + 3 * f[i].len;
	}
	if ((buf = malloc(cap)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	memcpy(buf, SCHEME, strlen(SCHEME));
	p = buf + strlen(SCHEME);
	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (f[i].v != NULL)
			p = put_attr(p, &first, f[i].name, f[i].v, f[i].len, f[i].all);
	}
	*p = '\0';
	*out = buf;
	buf = NULL;
	r = 0;
out:
	free(buf);
	return r;
}

static size_t
trimmed_len(const unsigned char *s, size_t len)
{
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\0'))
		len--;
	return len;
}

static int
field_eq(const char *want, const unsigned char *field, size_t width)
{
	size_t wl, fl;

	if (want == NULL)
		return 1;
	wl = trimmed_len((const unsigned char *)want, strlen(want));
	fl = trimmed_len(field, width);
	return wl == fl && memcmp(want, field, wl) == 0;
}

int
tok_uri_match_token(const struct tok_uri *u, const unsigned char label[32],
                    const unsigned char manufacturer[32], const unsigned char model[16],
                    const unsigned char serial[16])
{
	return field_eq(u->token, label, 32) && field_eq(u->manufacturer, manufacturer, 32) &&
	       field_eq(u->model, model, 16) && field_eq(u->serial, serial, 16);
}
