/*
 * schedule.h: when a certificate is due for renewal, and how long to wait
 * between attempts. Pure functions: no clock, no I/O, no randomness of their
 * own (the caller passes seeds), so they are unit-tested exactly.
 */
#ifndef P11E_SCHEDULE_H
#define P11E_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "conf.h"

struct schedule_policy {
	long interval;    /* seconds after notBefore; 0 = no interval rule */
	long before_secs; /* renew this long before notAfter, or 0 to use before_pct */
	int before_pct;   /* renew when this percentage of the lifetime is left */
	int jitter_pct;   /* spread over this percentage of the renewal window */
};

/* The [renewal] settings of c as a policy. */
void schedule_policy_from_conf(const struct conf *c, struct schedule_policy *out);

/*
 * The moment a certificate valid from not_before to not_after is due for
 * renewal: the earlier of not_before + interval and not_after - before_expiry,
 * moved earlier by a jitter in [0, jitter_pct% of the renewal window (from
 * that moment to not_after, but at most the time since not_before, so that a
 * short interval never jitters back to issuance)] chosen deterministically
 * from seed (the same
 * certificate on the same token always gets the same moment; a fleet
 * spreads). Never earlier than not_before, never later than not_after minus a
 * safety margin (a tenth of the lifetime, at most one hour). why (why_len
 * bytes, may be NULL) says which rule decided, e.g. "30d after issuance" or
 * "20% of the lifetime left".
 */
time_t schedule_due(const struct schedule_policy *p, time_t not_before, time_t not_after,
                    uint64_t seed, char *why, size_t why_len);

/*
 * Capped exponential backoff with full jitter: a pause in [0, min(cap,
 * base * 2^attempt)] chosen by rnd (any 64-bit random value). base and cap
 * in any unit (seconds); base <= 0 or cap <= 0 give 0.
 */
long schedule_backoff(unsigned attempt, long base, long cap, uint64_t rnd);

/*
 * The daemon's pause before its next attempt after `failures` consecutive
 * failed ones (1 = the first failure): schedule_backoff(failures - 1, min,
 * max, rnd), at least 1 s (full jitter may draw 0: never spin). When the
 * server asked for retry_after seconds (HTTP 503/429 Retry-After; 0 = not
 * asked) and that is not shorter, retry_after + 1 (the caller's clock has
 * whole seconds: never cut the server's wait short), and *asked = 1 (else 0).
 */
long schedule_retry_delay(unsigned failures, long min, long max, long retry_after, uint64_t rnd,
                          int *asked);

/* A moment as "2026-11-25 22:15:28Z" (UTC). */
void schedule_fmt_time(time_t when, char *buf, size_t len);

/* A duration as the largest exact unit: "30d", "12h", "90m", "45s", "2w". */
void schedule_fmt_duration(long secs, char *buf, size_t len);

#endif
