/*
 * template.h: per-token subject and SAN templates for `provision`:
 * {token.label} {token.serial} {token.manufacturer} {token.model}
 * {hostname} {date}; "{{" and "}}" stand for literal braces. Pure: no I/O.
 */
#ifndef P11E_TEMPLATE_H
#define P11E_TEMPLATE_H

#include <stddef.h>

struct tmpl_vars {
	const char *label, *serial, *manufacturer, *model; /* the token's CK_TOKEN_INFO */
	const char *hostname;                              /* gethostname() */
	const char *date;                                  /* YYYY-MM-DD (UTC) */
};

enum tmpl_escape {
	TMPL_RAW = 0, /* values inserted as they are (SAN entries) */
	TMPL_DN = 1,  /* values escaped as RFC 4514 attribute values: \, \+ \= \\ \" \< \> \;, a
	                 leading \#, every blank of a leading or trailing run as "\ ", controls,
	                 DEL, C1 controls and malformed UTF-8 as \XX */
};

/*
 * Length of the printable character at s: 1 for printable ASCII (0x20 to
 * 0x7e), 2 to 4 for well-formed UTF-8 of U+00A0 and up; 0 for anything else
 * (a control, DEL, a C1 control, a byte of malformed UTF-8, the end).
 */
size_t tmpl_printable_len(const char *s);

/*
 * 0 when s is a valid template (or holds no placeholder at all); else
 * P11E_ERR_CONFIG with why (NUL-terminated, at most whylen bytes) saying what
 * is wrong, e.g. "unknown placeholder {token.colour} (known: ...)". Logs nothing.
 */
int tmpl_check(const char *s, char *why, size_t whylen);

/* 1 when s holds at least one placeholder ({{ and }} do not count). */
int tmpl_has_placeholders(const char *s);

/*
 * Expands s (valid per tmpl_check) with v, escaping the values as esc says.
 * A NULL value expands to "". *out is malloc'ed. Errors: P11E_ERR_CONFIG
 * (s is not valid; not logged), P11E_ERR_ALLOC.
 */
int tmpl_expand(const char *s, const struct tmpl_vars *v, int esc, char **out);

#endif
