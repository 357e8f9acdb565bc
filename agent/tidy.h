/*
 * tidy.h: what an interrupted renewal leaves on the token for the profile,
 * and its removal. A renewal stores the new certificate before it removes the
 * old pair, so a crash in between leaves two pairs; one before the new
 * certificate is stored leaves a key without certificate.
 */
#ifndef P11E_TIDY_H
#define P11E_TIDY_H

#include <stddef.h>

#include <openssl/x509.h>

#include "conf.h"
#include "pending.h"
#include "tok.h"

/* What tidy_run keeps besides the current pair. */
struct tidy_keep {
	const struct pending *pend; /* its key stays (NULL: no pending request) */
	int reuse; /* this run goes on to make a new key: one key without certificate stays */
};

/*
 * Among the profile's keys (label c->key_label, and only those its record
 * names: keyrec.h) other than cur (whose certificate is curcert): superseded
 * pairs (a key with a certificate),
 * certificates of cur other than curcert, keys without certificate, and key
 * halves whose private key is gone. With keep_old, and while a hook is owed
 * for curcert (hook_owed: a consumer may still use the old pair), pairs and
 * certificates stay. With dry, *n counts them (no login needed: private objects are not
 * looked at); else, logged in, they are removed (private key, certificates,
 * then public key, so that a crash leaves what this function recognises)
 * and *n counts what was removed (and is dropped from the record). Failures
 * to remove are warnings (P11E_ERR_TOKEN; the next run tries again); a key
 * under the label that the record does not name is never touched.
 */
int tidy_run(const struct conf *c, struct tok *t, const struct tok_key *cur, X509 *curcert,
             const struct tidy_keep *keep, int dry, size_t *n);

/*
 * With the current pair (cur, curcert) in place and nothing to renew: hooks
 * still owed for it run (hook_settle), then the leftovers of tidy_run go
 * (logged in only when there are some; the key of pend, when given, stays)
 * and cert_file is made to hold curcert. Errors as hook_settle, tidy_run,
 * tok_login, certfile_sync.
 */
int tidy_settle(const struct conf *c, struct tok *t, const struct tok_key *cur, X509 *curcert,
                const struct pending *pend, int allow_final_pin_try);

/*
 * *needed: `renew` has work to do now for the current pair cur and curcert,
 * due or not: leftovers (tidy_run, dry, nothing pending), a cert_file that
 * does not hold curcert, or keys to check (keyrec_unsettled: a migration to
 * make, a key under the label the record does not name, which renew then
 * refuses naming it). No login needed. For the agent, which otherwise runs
 * `renew` only when due.
 */
int tidy_needed(const struct conf *c, struct tok *t, const struct tok_key *cur, X509 *curcert,
                int *needed);

#endif
