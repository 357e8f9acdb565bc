/*
 * schedule.c: renewal moment and retry backoff (pure arithmetic).
 */
#include <stdio.h>

#include "schedule.h"

#define SAFETY_MARGIN_MAX 3600 /* seconds before notAfter a renewal is due at the latest */

void
schedule_policy_from_conf(const struct conf *c, struct schedule_policy *out)
{
	out->interval = c->renew_interval;
	out->before_secs = c->renew_before_secs;
	out->before_pct = c->renew_before_pct;
	out->jitter_pct = c->renew_jitter_pct;
}

/* splitmix64's finaliser: spreads similar seeds (consecutive serials) apart. */
static uint64_t
mix(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void
schedule_fmt_time(time_t when, char *buf, size_t len)
{
	struct tm tmv;

	strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", gmtime_r(&when, &tmv));
}

void
schedule_fmt_duration(long secs, char *buf, size_t len)
{
	static const struct {
		long mult;
		char unit;
	} units[] = {{604800, 'w'}, {86400, 'd'}, {3600, 'h'}, {60, 'm'}};
	size_t i;

	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (secs != 0 && secs % units[i].mult == 0) {
			snprintf(buf, len, "%ld%c", secs / units[i].mult, units[i].unit);
			return;
		}
	}
	snprintf(buf, len, "%lds", secs);
}

time_t
schedule_due(const struct schedule_policy *p, time_t not_before, time_t not_after, uint64_t seed,
             char *why, size_t why_len)
{
	long long life = (long long)not_after - (long long)not_before, before, window, spread;
	long long due, by_expiry, margin;
	char d[32];
	int interval_rule = 0;

	if (life <= 0) {
		if (why != NULL && why_len > 0)
			snprintf(why, why_len, "the certificate has no validity period");
		return not_before < not_after ? not_before : not_after;
	}
	before = p->before_secs > 0 ? p->before_secs : life * p->before_pct / 100;
	by_expiry = (long long)not_after - before;
	due = by_expiry;
	if (p->interval > 0 && (long long)not_before + p->interval < by_expiry) {
		due = (long long)not_before + p->interval;
		interval_rule = 1;
	}
	/* The spread is a share of the renewal window, but never more than that share
	 * of the time since issuance: with an interval rule the window (until expiry)
	 * can be far longer than the interval, and a jitter reaching back before
	 * issuance would make a fresh certificate due at once, again and again. */
	window = (long long)not_after - due;
	if (window > due - (long long)not_before)
		window = due - (long long)not_before;
	if (window < 0)
		window = 0;
	spread = window * p->jitter_pct / 100;
	if (spread > 0)
		due -= (long long)(mix(seed) % (uint64_t)(spread + 1));
	margin = life / 10 < SAFETY_MARGIN_MAX ? life / 10 : SAFETY_MARGIN_MAX;
	if (due > (long long)not_after - margin)
		due = (long long)not_after - margin;
	if (due < (long long)not_before)
		due = not_before;
	if (why != NULL && why_len > 0) {
		if (interval_rule) {
			schedule_fmt_duration(p->interval, d, sizeof(d));
			snprintf(why, why_len, "%s after issuance", d);
		} else if (p->before_secs > 0) {
			schedule_fmt_duration(p->before_secs, d, sizeof(d));
			snprintf(why, why_len, "%s before expiry", d);
		} else {
			snprintf(why, why_len, "%d%% of the lifetime left", p->before_pct);
		}
	}
	return (time_t)due;
}

long
schedule_backoff(unsigned attempt, long base, long cap, uint64_t rnd)
{
	long d = base;

	if (base <= 0 || cap <= 0)
		return 0;
	while (attempt-- > 0 && d < cap)
		d = d > cap / 2 ? cap : d * 2;
	if (d > cap)
		d = cap;
	return (long)(rnd % ((uint64_t)d + 1));
}

long
schedule_retry_delay(unsigned failures, long min, long max, long retry_after, uint64_t rnd,
                     int *asked)
{
	long d = schedule_backoff(failures > 0 ? failures - 1 : 0, min, max, rnd);

	*asked = 0;
	if (d < 1)
		d = 1;
	if (retry_after > 0 && retry_after >= d) {
		d = retry_after + 1;
		*asked = 1;
	}
	return d;
}
