/*
 * template.c: expansion of {token.serial}-style placeholders, with the
 * values escaped for the dn syntax csr.c parses (RFC 4514 backslash escapes).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "template.h"

static const char *const names[] = {
    "token.label", "token.serial", "token.manufacturer", "token.model", "hostname", "date",
};

#define NNAMES (sizeof(names) / sizeof(names[0]))

static const char *
value_of(const struct tmpl_vars *v, size_t i)
{
	const char *vals[NNAMES] = {v->label, v->serial,   v->manufacturer,
	                            v->model, v->hostname, v->date};

	return vals[i] != NULL ? vals[i] : "";
}

/*
 * The placeholder at s (s[0] == '{', not "{{"): its index in names and its
 * length with the braces in *len; -1 (with why filled) when it is not one.
 */
static int
placeholder(const char *s, size_t *len, char *why, size_t whylen)
{
	const char *end = strchr(s, '}');
	size_t n, i;

	if (end == NULL) {
		snprintf(why, whylen, "'{' without a closing '}' (write {{ for a literal brace)");
		return -1;
	}
	n = (size_t)(end - s - 1);
	for (i = 0; i < NNAMES; i++) {
		if (strlen(names[i]) == n && strncmp(s + 1, names[i], n) == 0) {
			*len = n + 2;
			return (int)i;
		}
	}
	snprintf(why, whylen,
	         "unknown placeholder {%.*s} (known: {token.label}, {token.serial}, "
	         "{token.manufacturer}, {token.model}, {hostname}, {date})",
	         (int)(n > 64 ? 64 : n), s + 1);
	return -1;
}

size_t
tmpl_printable_len(const char *p)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t n, i;
	unsigned long cp;

	if (s[0] >= 0x20 && s[0] < 0x7f)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < 0xa0 || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

/*
 * Appends val escaped as an RFC 4514 attribute value to out at *o: the
 * special characters, a leading '#' and every blank of a leading or
 * trailing run get a backslash; controls, DEL, C1 controls and bytes that
 * are not well-formed UTF-8 become \XX pairs (so the dn is one printable
 * line and a parser gives back exactly these bytes).
 */
static void
escape_dn(const char *val, char *out, size_t *o)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t k, n, vn = strlen(val), lead = 0, trail = vn;
	unsigned char c;

	while (lead < vn && val[lead] == ' ')
		lead++;
	while (trail > lead && val[trail - 1] == ' ')
		trail--;
	for (k = 0; k < vn; k += n) {
		c = (unsigned char)val[k];
		if ((n = tmpl_printable_len(val + k)) == 0) {
			out[(*o)++] = '\\';
			out[(*o)++] = hex[c >> 4];
			out[(*o)++] = hex[c & 15];
			n = 1;
			continue;
		}
		if (strchr(",+=\\\"<>;", c) != NULL || (k == 0 && c == '#') ||
		    (c == ' ' && (k < lead || k >= trail)))
			out[(*o)++] = '\\';
		memcpy(out + *o, val + k, n);
		*o += n;
	}
}

/*
 * Walks s once. With out == NULL only checks; else appends the expansion to
 * out (which has room for the worst case, see tmpl_expand).
 */
static int
walk(const char *s, const struct tmpl_vars *v, int esc, char *out, int *found, char *why,
     size_t whylen)
{
	size_t len = 0, o = 0;
	const char *val;
	int i;

	while (*s != '\0') {
		if ((s[0] == '{' && s[1] == '{') || (s[0] == '}' && s[1] == '}')) {
			if (out != NULL)
				out[o++] = s[0];
			s += 2;
			continue;
		}
		if (s[0] == '}') {
			snprintf(why, whylen,
			         "'}' without an opening '{' (write }} for a literal "
			         "brace)");
			return P11E_ERR_CONFIG;
		}
		if (s[0] != '{') {
			if (out != NULL)
				out[o++] = s[0];
			s++;
			continue;
		}
		if ((i = placeholder(s, &len, why, whylen)) < 0)
			return P11E_ERR_CONFIG;
		*found = 1;
		s += len;
		if (out == NULL)
			continue;
		val = value_of(v, (size_t)i);
		if (esc == TMPL_DN) {
			escape_dn(val, out, &o);
		} else {
			memcpy(out + o, val, strlen(val));
			o += strlen(val);
		}
	}
	if (out != NULL)
		out[o] = '\0';
	return 0;
}

int
tmpl_check(const char *s, char *why, size_t whylen)
{
	int found = 0;

	return walk(s, NULL, TMPL_RAW, NULL, &found, why, whylen);
}

int
tmpl_has_placeholders(const char *s)
{
	char why[8];
	int found = 0;

	return walk(s, NULL, TMPL_RAW, NULL, &found, why, sizeof(why)) == 0 ? found : 0;
}

int
tmpl_expand(const char *s, const struct tmpl_vars *v, int esc, char **out)
{
	char why[8], *buf = NULL;
	size_t i, max = 0, n = strlen(s);
	int found = 0, r;

	if ((r = walk(s, NULL, TMPL_RAW, NULL, &found, why, sizeof(why))) != 0)
		return r;
	/* Every placeholder is at least 6 bytes ({date}); an escaped value is at most 3 times
	 * as long (\XX). */
	for (i = 0; i < NNAMES; i++)
		if (strlen(value_of(v, i)) > max)
			max = strlen(value_of(v, i));
	if ((buf = malloc(n + (n / 6 + 1) * (3 * max) + 1)) == NULL)
		return P11E_ERR_ALLOC;
	walk(s, v, esc, buf, &found, why, sizeof(why));
	*out = buf;
	return 0;
}
