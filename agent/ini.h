/*
 * ini.h: reading an INI file, one line at a time (private to agent/).
 *
 * The file is read whole into one buffer that is split in place and wiped by
 * ini_free, since it may hold a secret. The lexer knows the syntax only
 * ("[section]", "key = value", comments, quotes); which sections and keys
 * exist is the caller's business. Errors are logged as "FILE:LINE: what" and
 * returned as P11E_ERR_* codes (err.h).
 */
#ifndef P11E_INI_H
#define P11E_INI_H

#include <sys/types.h>

struct ini;

enum ini_kind {
	INI_END,     /* no more lines */
	INI_SECTION, /* a "[name]" header */
	INI_KEY,     /* a "key = value" line; read the value with ini_value() */
};

struct ini_event {
	enum ini_kind kind;
	unsigned line;       /* the line, from 1; at INI_END, the number of lines */
	const char *section; /* INI_SECTION: its name; INI_KEY: the current one, or NULL */
	const char *key;     /* INI_KEY: the key, trimmed; otherwise NULL */
};

/*
 * Reads the regular file at path (at most 1 MiB) into *out, to be released
 * with ini_free. path is borrowed: it must outlive *out (it names the file in
 * messages). Errors: P11E_ERR_FILE, P11E_ERR_ALLOC; logged.
 */
int ini_open(const char *path, struct ini **out);

/* The file's st_mode as ini_open found it. */
mode_t ini_mode(const struct ini *ini);

/*
 * Fills *ev with the next header or key line, skipping blank and comment
 * lines, a UTF-8 BOM and a CR before each LF. The strings in *ev point into
 * the buffer and stay valid until ini_free. Errors (P11E_ERR_CONFIG, logged
 * with file:line): a line over 4096 bytes, a NUL byte, a header without ']'
 * or with text after it, a line that is neither header nor "key = value".
 */
int ini_next(struct ini *ini, struct ini_event *ev);

/*
 * The value of the INI_KEY line ini_next just returned, in place: a quoted
 * string as is, else the text up to a " #" or " ;" comment, trimmed (it may
 * be empty). Call it at most once per line. Errors: P11E_ERR_CONFIG (logged
 * as "FILE:LINE: [section] key: what") for an unclosed quote or text after
 * the closing one; P11E_ERR_INTERNAL when there is no value to read.
 */
int ini_value(struct ini *ini, char **out);

/*
 * As ini_value, for a value with a syntax of its own (a command line): the
 * text up to a " #" or " ;" comment outside double quotes, trimmed, quotes
 * kept for the caller to interpret. Never fails but for
 * P11E_ERR_INTERNAL when there is no value to read.
 */
int ini_value_raw(struct ini *ini, char **out);

/* Trims spaces and tabs at both ends of s, in place; returns the new start. */
char *ini_trim(char *s);

/* Wipes the buffer and frees ini; accepts NULL. */
void ini_free(struct ini *ini);

#endif
