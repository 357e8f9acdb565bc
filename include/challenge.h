/*
 * challenge.h: one-time SCEP challenges from a Microsoft NDES MSCEP_ADMIN
 * page, and what NDES's HRESULTs mean.
 *
 * A challenge is a secret: it lives in buffers released with secret_free
 * (secret.h) and never reaches a log line or an error message.
 */
#ifndef P11E_CHALLENGE_H
#define P11E_CHALLENGE_H

#include <stddef.h>

struct conf;

/* Longest challenge accepted from a page. */
#define CHALLENGE_MAX 256

/*
 * Parses an MSCEP_ADMIN page: no I/O. body is UTF-16LE (with BOM FF FE, or
 * without one: NUL bytes at odd offsets), UTF-16BE (BOM FE FF, or NULs at
 * even offsets), or UTF-8/ASCII; non-ASCII characters never match anything.
 * Marker texts and tags are matched case-insensitively.
 *
 * On success *challenge is the token after "enrollment challenge password
 * is:", between the next <B> and </B> with surrounding whitespace trimmed, or
 * without bold tags the next token (ending at whitespace or '<'); printable
 * ASCII, 1..CHALLENGE_MAX characters, verbatim (case kept), in the secret
 * arena: release it with secret_free. The decoded copy of the page is kept
 * in the arena too and wiped. If thumbprint is not NULL, *thumbprint is the CA thumbprint
 * after "thumbprint (hash value) for the CA certificate is:" between <B> and
 * </B>, whitespace removed, upper-cased (free()); NULL when the page has
 * none or it is not an even number of hex digits.
 *
 * Errors (the out-parameters untouched): P11E_ERR_PENDING: the page says
 * "password cache is full"; P11E_ERR_REJECTED: the page says "do not have
 * sufficient permission" (for both the caller logs the advice);
 * P11E_ERR_MALFORMED: no marker, no token after it, a token that is longer
 * than CHALLENGE_MAX or holds control or non-ASCII characters (logged,
 * without the token); P11E_ERR_ALLOC.
 */
int challenge_parse(const unsigned char *body, size_t len, char **challenge, char **thumbprint);

/*
 * Checks challenge ch against the expected characters (enum conf_chars) and
 * length (0 = any). 0 if it matches. P11E_ERR_VERIFY otherwise, logged
 * naming what was expected and the length and character classes that came
 * (never the challenge). P11E_ERR_INTERNAL for an unknown chars value.
 */
int challenge_check(const char *ch, int chars, long length);

/*
 * Fetches a one-time challenge from c->challenge_url as c->challenge_user,
 * with the password in c->challenge_password_file. Authentication is NTLM,
 * plus Basic when the URL is https. A plain http URL is refused
 * (P11E_ERR_CONFIG, logged) unless c->challenge_insecure_http, and then
 * warned about on every call. The password and the page are kept in the
 * secret arena and wiped. Follows at most 3 redirects, each only
 * to https on the same host and port (http_same_host_https). Honours
 * c->timeout, c->ca_file, c->use_proxy and c->proxy. The result passes
 * challenge_check with c->challenge_chars and c->challenge_length.
 *
 * On success *challenge (secret_free) and, when thumbprint is not NULL,
 * *thumbprint (free(); NULL if the page has none) are set. Every failure is
 * logged with advice. Errors: P11E_ERR_CONFIG (settings missing, password
 * file refused, http without consent), P11E_ERR_FILE (password file unreadable), P11E_ERR_NETWORK
 * (unreachable, HTTP status other than 200/401, a redirect elsewhere or too
 * many), P11E_ERR_REJECTED (HTTP 401, or no permission to enroll),
 * P11E_ERR_PENDING (NDES's password cache is full: try later),
 * P11E_ERR_MALFORMED (no challenge on the page), P11E_ERR_VERIFY
 * (challenge_check), P11E_ERR_ALLOC.
 */
int challenge_fetch(const struct conf *c, char **challenge, char **thumbprint);

/*
 * If text (e.g. a CertRep failure's status text) contains one of the
 * HRESULTs NDES reports (hex "0x800b0110", case-insensitive, or its signed
 * decimal form), returns a static "0x800b0110: meaning" line for the one
 * that comes first in text; else NULL. text may be NULL.
 */
const char *challenge_hresult_text(const char *text);

#endif
