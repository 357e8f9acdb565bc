/*
 * current.h: the profile's token and its current certificate, as every
 * command sees them (enroll, renew, status, the agent's plan).
 */
#ifndef P11E_CURRENT_H
#define P11E_CURRENT_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <openssl/x509.h>

#include "conf.h"
#include "tok.h"
#include "uri.h"

/*
 * The module the profile names (the URI's module-path, else [token] module;
 * *module: free) and its parsed URI (*uri: tok_uri_free). Neither module
 * given: P11E_ERR_CONFIG, logged.
 */
int current_token_module(const struct conf *c, char **module, struct tok_uri **uri);

/* Opens the token the profile names (current_token_module). */
int current_open_token(const struct conf *c, struct tok **out);

/*
 * The profile's current certificate among keys (tok_find_keys): of the keys
 * whose newest certificate (tok_find_cert) carries their public key (valid
 * now, with valid_only), the newest (tok_cert_newer). *which indexes keys,
 * *cert is a new reference. P11E_ERR_NOTFOUND (not logged) when none.
 */
int current_find(struct tok *t, struct tok_key **keys, size_t n, int valid_only, size_t *which,
                 X509 **cert);

/* The profile's side of its token, as every command sees it. */
struct current_view {
	struct tok *t;         /* opened without logging in */
	struct tok_key **keys; /* the profile's keys (tok_find_keys) */
	size_t n, cur;         /* keys[cur] holds cert */
	X509 *cert;            /* the current certificate (current_find), or NULL */
};

/*
 * Opens the profile's token (current_open_token), finds its keys and the
 * current certificate (current_find with valid_only) into *v, which is
 * zeroed first and is always to be closed with current_view_close.
 * P11E_ERR_NOTFOUND (not logged) when there is no current certificate:
 * v->t is open (v->t != NULL tells this case apart), v->keys found, v->cert
 * NULL. Other errors: those of the steps, logged.
 */
int current_view_open(const struct conf *c, int valid_only, struct current_view *v);

/* Frees what current_view_open found and closes the token. Accepts a zeroed view. */
void current_view_close(struct current_view *v);

/*
 * When cert (the current certificate) is due for renewal under [renewal]
 * (schedule.h), with its reason in why; the jitter is seeded with the
 * certificate's and the token's serials, so every run agrees.
 * P11E_ERR_MALFORMED (logged) when its dates cannot be read.
 */
int current_due(const struct conf *c, const struct tok *t, X509 *cert, time_t *due, char *why,
                size_t why_len);

/* 1 when cert is within its validity period now. */
int current_valid_now(X509 *cert);

/* The certificate's serial number in upper-case hex (OPENSSL_free), or NULL. */
char *current_serial_hex(X509 *cert);

/* A name as an RFC 4514 string, the order [subject] dn is written in ("CN=host,O=Example");
 * malloc'ed, NULL when out of memory. */
char *current_name_str(const X509_NAME *name);

/* An ASN1_TIME in seconds since the epoch; P11E_ERR_MALFORMED (not logged) when unreadable. */
int current_time_t(const ASN1_TIME *a, time_t *out);

/* An ASN1_TIME as "2026-01-31T12:00:00Z" into buf; -1 when it cannot be read. */
int current_time_str(const ASN1_TIME *a, char *buf, size_t len);

/* Prints key/certificate URIs and the certificate's subject, serial, dates. */
void current_print(FILE *f, const struct tok *t, const struct tok_key *k, X509 *cert);

/* The key and certificate as progress lines (progress.h), when wanted. */
void current_note(const struct tok *t, const struct tok_key *k, X509 *cert);

#endif
