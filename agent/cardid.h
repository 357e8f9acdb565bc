/*
 * cardid.h: what `provision` makes of the untrusted strings a card reports
 * (CK_TOKEN_INFO's serial, label, manufacturer, model): the name of the
 * card's directory under state_dir/tokens/, a form that is safe to print,
 * and the card's identity record, which binds a serial to the label,
 * manufacturer and model the station saw with it the first time.
 */
#ifndef P11E_CARDID_H
#define P11E_CARDID_H

#include <stddef.h>

#include "tok.h"

/* The identity record's file name in the card's directory. */
#define CARDID_FILE "token-identity.txt"

/*
 * The directory name for a card with this serial (any bytes but NUL): the
 * serial itself when it is made of [A-Za-z0-9_-] only; else each byte
 * outside that set as %XX (upper-case hex), e.g. ".." -> "%2E%2E",
 * "A/B" -> "A%2FB"; "%empty" for an empty serial. Distinct serials give
 * distinct names, a name never is "." or ".." and never holds '/', and a
 * plain serial never has a '%'. *out is malloc'ed. Errors: P11E_ERR_ALLOC,
 * P11E_ERR_INTERNAL when the name would exceed 255 bytes (a serial of more
 * than 85 bytes; PKCS#11 serials have 16). Logs nothing.
 */
int cardid_dirname(const char *serial, char **out);

/*
 * s as it may be printed on a terminal or in a log line: printable ASCII
 * and well-formed UTF-8 (U+00A0 and up) as they are, every other byte
 * (controls, DEL, C1 controls, bytes of malformed UTF-8) as \xHH (for
 * people to read: "\x1B" could also be those 4 characters). Cut to fit len
 * (at least 1) bytes, NUL included; returns out.
 */
char *cardid_show(const char *s, char *out, size_t len);

/*
 * The card's identity record in dir (CARDID_FILE): on first contact (no
 * record) writes it (serial, label, manufacturer, model as info reports
 * them, 0600, atomically) and returns 0 with *first = 1; when the record
 * holds the same four values returns 0 with *first = 0. A record that
 * names another label, manufacturer or model for this serial:
 * P11E_ERR_TOKEN, logged naming the field, both values and the record
 * ("a different card?"). Unreadable or malformed record: P11E_ERR_FILE
 * (logged). P11E_ERR_ALLOC. Nothing is logged in to: callers check before
 * they hand the card a PIN.
 */
int cardid_check(const char *dir, const struct tok_info *info, int *first);

#endif
