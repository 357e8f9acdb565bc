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

/* enroll_run with renewal set (enroll.h). */
int renew_run(const struct conf *c, const struct renew_opts *o);

#endif
