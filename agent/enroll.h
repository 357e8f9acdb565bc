/*
 * enroll.h: the enrollment pipeline behind `enroll`, `renew`, the agent's
 * attempts and the station's per-card child (enroll.c).
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
	int renewal;   /* renew the current certificate (with it, when it is RSA) */
	int force;     /* renewal: even when not due under [renewal] */
};

/*
 * The whole enrollment: token check (the keys under the label must be the
 * profile's, keyrec_check_token), CA, key, request, CertRep, store, read
 * back; a renewal then removes the old pair. Without renewal, a valid
 * certificate in place means nothing to do; with it, a renewal that is not
 * due (and not forced, and not pending) says when it is due. Both then only
 * tidy what an interrupted renewal left (tidy.h). Returns 0 or a P11E_ERR_*
 * (already logged). Results go to stdout.
 */
int enroll_run(const struct conf *c, const struct enroll_opts *o);

#endif
