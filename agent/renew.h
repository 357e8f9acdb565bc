/*
 * renew.h: `p11enroll renew`: a new certificate (and by default a new key)
 * for the profile, requested with the current certificate (RFC 8894 2.3,
 * 2.5), the old one removed only once the new one is on the token.
 */
#ifndef P11E_RENEW_H
#define P11E_RENEW_H

#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

#include "conf.h"
#include "tok.h"

struct renew_opts {
	int force; /* renew even when not due */
	int allow_final_pin_try;
};

/*
 * When the profile's certificate cert (on token t) is due for renewal under
 * [renewal], with the jitter seeded by the certificate serial and the token
 * serial; why as schedule_due. Errors: P11E_ERR_MALFORMED (unreadable dates).
 */
int renew_due(const struct conf *c, const struct tok *t, X509 *cert, time_t *due, char *why,
              size_t why_len);

/*
 * The renewal. First the keys under the label must all be the profile's
 * (keyrec_check_token: else P11E_ERR_TOKEN, nothing done). Not due (and no
 * force): says when, exits 0 without contacting the CA. Else: CA and trust as
 * enroll, login, the new key (new_key=yes; a key of the profile left without
 * certificate is reused) or the current one (if keyrec_certifiable),
 * CSR without challenge, pkiMessage signed with the current certificate and
 * key (RenewalReq when the CA offers Renewal, else PKCSReq); a current key
 * that is not RSA cannot receive the reply, so its renewal is a PKCSReq
 * carried by a transient RSA key, with the configured (or an NDES one-time)
 * challenge in the CSR. Then the new certificate stored and read back,
 * cert_file, and only then the old certificate (and key) removed unless
 * keep_old. Any failure before that leaves the old key and certificate as
 * they were and takes back a key this run generated; PENDING keeps it
 * (P11E_ERR_PENDING; the next renew reuses it). Returns 0 or a P11E_ERR_*
 * (logged).
 */
int renew_run(const struct conf *c, const struct renew_opts *o);

#endif
