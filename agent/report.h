/*
 * report.h: `p11enroll status` (report.c).
 */
#ifndef P11E_REPORT_H
#define P11E_REPORT_H

#include "conf.h"

/*
 * What is on the token for this profile (no login needed), when it is due
 * for renewal, the last enroll/renew attempt and a pending request: text,
 * or with json one JSON object (fields in p11enroll(8)) on stdout.
 */
int status_run(const struct conf *c, int json);

#endif
