/*
 * pinmap.h: `provision`'s PIN per token: a file of "serial = PIN" lines
 * ([token] pin_map_file). A secret file: refused when group or others can
 * access it; PINs are wiped when freed and never logged.
 */
#ifndef P11E_PINMAP_H
#define P11E_PINMAP_H

#include <stddef.h>

struct pinmap;

/*
 * Parses text (len bytes): "serial = PIN" lines, '#' comment lines and blank
 * lines; blanks around the serial and the PIN are removed, the PIN is what
 * follows the first '='. Errors (logged as "WHERE:LINE: ...", never with a
 * PIN): P11E_ERR_CONFIG for a line without '=', an empty serial or PIN, a
 * serial longer than 16 bytes, a serial given twice; P11E_ERR_ALLOC.
 * *out: pinmap_free.
 */
int pinmap_parse(const char *text, size_t len, const char *where, struct pinmap **out);

/*
 * Reads and parses the file at path (at most 1 MiB; no symlink; regular;
 * mode & 077 == 0, else P11E_ERR_CONFIG naming the path and mode).
 * Missing or unreadable: P11E_ERR_FILE. All logged.
 */
int pinmap_load(const char *path, struct pinmap **out);

/* The PIN for serial, or NULL when the map has none. Valid until pinmap_free. */
const char *pinmap_get(const struct pinmap *m, const char *serial);

/* Number of entries. */
size_t pinmap_count(const struct pinmap *m);

/* Wipes and frees. Accepts NULL. */
void pinmap_free(struct pinmap *m);

#endif
