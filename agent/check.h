/*
 * check.h: `p11enroll check`, the connection test (check.c).
 */
#ifndef P11E_CHECK_H
#define P11E_CHECK_H

#include "conf.h"

/*
 * Connection test: transport, caps, the CA chain and the RA certificates
 * with their roles, the trust decision (ca_check_trust, nothing pinned), the
 * challenge page (logging in and spending a challenge only with
 * fetch_challenge); a summary on stdout, or with json one JSON object
 * (fields in p11enroll(8)). Returns the first failure.
 */
int check_run(const struct conf *c, int fetch_challenge, int json);

#endif
