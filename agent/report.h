/*
 * report.h: `p11enroll status` (report.c).
 */
#ifndef P11E_REPORT_H
#define P11E_REPORT_H

#include <stddef.h>

#include "conf.h"

/*
 * What is on the token for this profile (no login needed), when it is due
 * for renewal, the last enroll/renew attempt and a pending request: text,
 * or with json one JSON object (fields in p11enroll(8)) on stdout.
 */
int status_run(const struct conf *c, int json);

/*
 * `status --metrics`: the series the agent writes to [agent] metrics_file
 * (metrics.h) for every profile the paths name (profile_load_all), read
 * now from each token (no login) and state_dir, on stdout. A profile whose
 * token cannot be read keeps its state_dir series; the first error decides
 * the result, after everything is printed.
 */
int status_metrics(char *const *paths, size_t npaths);

#endif
