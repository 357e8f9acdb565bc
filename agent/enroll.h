/*
 * enroll.h: the commands behind `check`, `enroll` and `status`.
 */
#ifndef P11E_ENROLL_H
#define P11E_ENROLL_H

#include <stdio.h>

#include <openssl/x509.h>

#include "conf.h"
#include "tok.h"

struct enroll_opts {
	int allow_final_pin_try;
	int wait;      /* on PENDING, keep polling until issued, failed or max_wait */
	long max_wait; /* seconds */
};

/*
 * The whole enrollment: token check (the keys under the label must be the
 * profile's, keyrec_check_token), CA, key, request, CertRep, store.
 * Returns 0 or a P11E_ERR_* (already logged). Results go to stdout.
 */
int enroll_run(const struct conf *c, const struct enroll_opts *o);

/*
 * Connection test: transport, caps, the CA chain and the RA certificates
 * with their roles, the trust decision (ca_check_trust, nothing pinned), the
 * challenge page (logging in and spending a challenge only with
 * fetch_challenge); a summary on stdout, or with json one JSON object
 * (fields in p11enroll(8)). Returns the first failure.
 */
int check_run(const struct conf *c, int fetch_challenge, int json);

/*
 * What is on the token for this profile (no login needed), when it is due
 * for renewal, the last enroll/renew attempt and a pending request: text,
 * or with json one JSON object (fields in p11enroll(8)) on stdout.
 */
int status_run(const struct conf *c, int json);

/* Opens the token the profile names (URI's module-path, else [token] module). */
int enroll_open_token(const struct conf *c, struct tok **out);

/* Prints key/certificate URIs and the certificate's subject, serial, dates. */
void enroll_print_cert(FILE *f, const struct tok *t, const struct tok_key *k, X509 *cert);

/*
 * The profile's current certificate among keys (tok_find_keys): of the keys
 * whose certificate carries their public key (valid now, with valid_only),
 * the one with the latest notAfter (ties: notBefore, serial). *which indexes
 * keys, *cert is a new reference. P11E_ERR_NOTFOUND (not logged) when none.
 */
int enroll_find_current(struct tok *t, struct tok_key **keys, size_t n, int valid_only,
                        size_t *which, X509 **cert);

/*
 * Reuses a key of the profile (keyrec.h) left without certificate by an
 * earlier attempt (matching [key] type), or generates one (keyrec_generate,
 * *generated = 1). A key to reuse must be certifiable (keyrec_certifiable):
 * else P11E_ERR_TOKEN, logged. Needs login.
 */
int enroll_get_key(struct tok *t, const struct conf *c, struct tok_key **out, int *generated);

struct pending;

/*
 * The key (of the profile's label) a pending request was made with.
 * P11E_ERR_NOTFOUND (not logged) when it is gone from the token;
 * P11E_ERR_TOKEN (logged) when it is not certifiable (keyrec_certifiable)
 * or not the key of the request (another public key under its CKA_ID).
 * Needs login.
 */
int enroll_pending_key(struct tok *t, const struct conf *c, const struct pending *p,
                       struct tok_key **out);

struct ca_info;

/*
 * A one-time challenge from the NDES page (c->challenge_url), fetched right
 * before it is used; warns when the page names a CA thumbprint that is none
 * of ci's certificates. *challenge: secret_free. Errors as challenge_fetch.
 */
int enroll_fetch_challenge(const struct conf *c, const struct ca_info *ci, char **challenge);

/* Writes cert_file (PEM, 0644, atomically) when configured. */
int enroll_write_cert_file(const struct conf *c, X509 *cert);

/* cert_file (when configured) holds cert: rewritten when missing or different. */
int enroll_sync_cert_file(const struct conf *c, X509 *cert);

/* *stale: cert_file is configured and missing or not exactly cert (PEM). */
int enroll_cert_file_stale(const struct conf *c, X509 *cert, int *stale);

/* 1 when cert is within its validity period now. */
int enroll_cert_valid_now(X509 *cert);

/*
 * The error a failed run reports: when the token no longer answers, whatever
 * failed (often a signature or decryption inside OpenSSL that hid the cause)
 * is reported as the token gone, P11E_ERR_TOKEN, logged naming it; else r.
 */
int enroll_blame_token(struct tok *t, int r);

#endif
