/*
 * fleet.c: `make fleet`. A fleet of 10,000 agents whose certificates were all
 * issued within the same hour, scheduled by the real schedule_due() and
 * schedule_backoff() (linked from libp11enroll.a). Reports renewal requests
 * per minute, peak against mean, with and without a one-hour CA outage.
 * Deterministic (fixed PRNG seed).
 *
 * A peak passes when it is at most twice its mean or, where requests are so
 * sparse (about 1/min) that Poisson noise alone exceeds 2x, at most the peak
 * of the same number of requests thrown uniformly at random over the same
 * minutes (what perfect jitter gives). -s (strict): 2x mean only.
 * Exit 0 when every peak passes, 1 otherwise, 2 on an internal error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "schedule.h"

#define AGENTS 10000
#define DAY 86400L
#define LIFETIME (365 * DAY)
#define ISSUE_START ((time_t)1767225600) /* 2026-01-01 00:00:00Z */
#define ISSUE_SPAN 3600L
#define OUTAGE 3600L
#define BACKOFF_BASE 60L  /* seconds; [agent] retry_min's default... */
#define BACKOFF_CAP 3600L /* ...and retry_max's */
#define MAX_RATIO 2.0

struct agent {
	time_t not_before;
	uint64_t seed;
	time_t due;
};

struct load {
	size_t n;
	time_t first, last;
	long minutes;
	double mean;
	long peak;
	time_t peak_at;
};

static uint64_t rng_state = 0x11e2011ULL;
static int strict;

/* splitmix64: the simulation's only randomness (issuance moments, retry draws). */
static uint64_t
rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/*
 * The seed renew.c's due_seed() derives: the first 8 bytes (big-endian) of
 * SHA-256(certificate serial || token serial). Fake, distinct serials: a
 * 16-byte certificate serial and a SoftHSM-style 16-hex-digit token serial.
 */
static int
agent_seed(unsigned i, uint64_t *out)
{
	unsigned char sn[16], d[32];
	char ts[17];
	uint64_t seed = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int r = -1, k;

	memset(sn, 0, sizeof(sn));
	sn[0] = 0x4a;
	for (k = 0; k < 4; k++)
		sn[15 - k] = (unsigned char)(i >> (8 * k));
	snprintf(ts, sizeof(ts), "%016x", 0x5a3c0000u + i);
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, sn, sizeof(sn)) != 1 ||
	    EVP_DigestUpdate(ctx, ts, strlen(ts)) != 1 || EVP_DigestFinal_ex(ctx, d, NULL) != 1)
		goto out;
	for (k = 0; k < 8; k++)
		seed = seed << 8 | d[k];
	*out = seed;
	r = 0;
out:
	EVP_MD_CTX_free(ctx);
	return r;
}

static int
cmp_time(const void *a, const void *b)
{
	time_t x = *(const time_t *)a, y = *(const time_t *)b;

	return (x > y) - (x < y);
}

/* Requests per minute over the span from the first to the last one. t is sorted. */
static int
load_of(const time_t *t, size_t n, struct load *out)
{
	long *count = NULL, m;
	struct load l;
	size_t i;

	if (n == 0)
		return -1;
	memset(&l, 0, sizeof(l));
	l.n = n;
	l.first = t[0];
	l.last = t[n - 1];
	l.minutes = (long)(l.last / 60 - l.first / 60) + 1;
	if ((count = calloc((size_t)l.minutes, sizeof(*count))) == NULL)
		return -1;
	for (i = 0; i < n; i++)
		count[t[i] / 60 - l.first / 60]++;
	for (m = 0; m < l.minutes; m++)
		if (count[m] > l.peak) {
			l.peak = count[m];
			l.peak_at = (l.first / 60 + m) * 60;
		}
	l.mean = (double)n / (double)l.minutes;
	free(count);
	*out = l;
	return 0;
}

/*
 * The peak per minute of n requests thrown uniformly at random over the same
 * number of minutes: what perfect jitter would give (Poisson noise included).
 */
static long
uniform_peak(size_t n, long minutes)
{
	long *count = calloc((size_t)minutes, sizeof(long)), peak = 0;
	size_t i;

	if (count == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		long m = (long)(rng() % (uint64_t)minutes);

		if (++count[m] > peak)
			peak = count[m];
	}
	free(count);
	return peak;
}

static void
fmt_time(time_t when, char *buf, size_t len)
{
	struct tm tmv;

	strftime(buf, len, "%Y-%m-%d %H:%M", gmtime_r(&when, &tmv));
}

/* Prints one load block; returns 1 when the peak fails (see the top of this file). */
static int
report(const char *what, const struct load *l)
{
	char a[32], b[32], p[32], w[32];
	long up = uniform_peak(l->n, l->minutes);
	double ratio = (double)l->peak / l->mean;
	int over2x = ratio > MAX_RATIO, fail = over2x && (strict || l->peak > up);

	fmt_time(l->first, a, sizeof(a));
	fmt_time(l->last, b, sizeof(b));
	fmt_time(l->peak_at, p, sizeof(p));
	schedule_fmt_duration((l->minutes) * 60, w, sizeof(w));
	printf("  %s\n", what);
	printf("    requests %zu, window %s .. %s (%ld min, %s)\n", l->n, a, b, l->minutes, w);
	printf("    mean %.2f/min, peak %ld/min at %s, peak/mean %.2f (goal <= %.0fx: %s)\n",
	       l->mean, l->peak, p, ratio, MAX_RATIO, over2x ? "over" : "met");
	printf("    uniform-random reference: peak %ld/min (%.2fx mean) -> %s\n", up,
	       (double)up / l->mean, fail ? "FAIL" : "PASS");
	return fail;
}

/*
 * A one-hour CA outage starting at the minute that opens the busiest hour of
 * renewals. Agents due inside it fail, pause schedule_retry_delay() (the
 * daemon's own pause: full jitter, at least 1 s) and retry until the CA is back. Reports the retry
 * wave after the outage (the requests of the agents that failed) and all requests in that span
 * (retries plus agents due then anyway).
 */
static int
outage(const struct agent *ag, const time_t *due_sorted, int *bad)
{
	size_t i, j, n_fail = 0, n_wave = 0, n_all = 0, attempts_in = 0;
	time_t start = 0, end, *wave = NULL, *all = NULL, t;
	unsigned attempt, max_attempt = 0;
	int asked;
	struct load lw, la;
	char s[32];
	int r = -1;

	/* the busiest hour: the 3600 s window holding most due moments */
	for (i = 0, j = 0; i < AGENTS; i++) {
		while (due_sorted[i] - due_sorted[j] >= OUTAGE)
			j++;
		if (i - j + 1 > n_fail) {
			n_fail = i - j + 1;
			start = due_sorted[j];
		}
	}
	end = start + OUTAGE;
	if ((wave = calloc(AGENTS, sizeof(*wave))) == NULL ||
	    (all = calloc(AGENTS, sizeof(*all))) == NULL)
		goto out;
	for (i = 0; i < AGENTS; i++) {
		if (ag[i].due < start || ag[i].due >= end)
			continue;
		for (t = ag[i].due, attempt = 0; t < end; attempt++) {
			attempts_in++;
			t += schedule_retry_delay(attempt + 1, BACKOFF_BASE, BACKOFF_CAP, 0, rng(),
			                          &asked);
		}
		if (attempt > max_attempt)
			max_attempt = attempt;
		wave[n_wave++] = t;
	}
	qsort(wave, n_wave, sizeof(*wave), cmp_time);
	if (load_of(wave, n_wave, &lw) != 0)
		goto out;
	for (i = 0; i < n_wave; i++)
		all[n_all++] = wave[i];
	for (i = 0; i < AGENTS; i++)
		if (due_sorted[i] >= end && due_sorted[i] <= lw.last)
			all[n_all++] = due_sorted[i];
	qsort(all, n_all, sizeof(*all), cmp_time);
	if (load_of(all, n_all, &la) != 0)
		goto out;
	fmt_time(start, s, sizeof(s));
	printf("  CA outage %s + 1h (the busiest hour): %zu agents due in it, %zu failed attempts "
	       "(at most %u per agent; backoff base %lds, cap %lds)\n",
	       s, n_wave, attempts_in, max_attempt, BACKOFF_BASE, BACKOFF_CAP);
	*bad |= report("retries after the outage (the agents that failed)", &lw);
	*bad |= report("all requests in that span (retries + agents due then anyway)", &la);
	r = 0;
out:
	free(wave);
	free(all);
	return r;
}

static int
scenario(const char *name, const struct schedule_policy *p, struct agent *ag, int *bad)
{
	time_t *due = NULL;
	char why[64];
	struct load l;
	size_t i, at_issue = 0;
	int r = -1;

	if ((due = calloc(AGENTS, sizeof(*due))) == NULL)
		return -1;
	for (i = 0; i < AGENTS; i++) {
		ag[i].due = schedule_due(p, ag[i].not_before, ag[i].not_before + LIFETIME,
		                         ag[i].seed, why, sizeof(why));
		due[i] = ag[i].due;
		if (ag[i].due == ag[i].not_before)
			at_issue++;
	}
	qsort(due, AGENTS, sizeof(*due), cmp_time);
	if (load_of(due, AGENTS, &l) != 0)
		goto out;
	printf("\n%s (%s)\n", name, why);
	*bad |= report("renewals", &l);
	printf("    due at issuance (jitter clamped to notBefore): %zu agents%s\n", at_issue,
	       at_issue > 0 ? " <- renew again right after every renewal" : "");
	if (outage(ag, due, bad) != 0)
		goto out;
	r = 0;
out:
	free(due);
	return r;
}

int
main(int argc, char **argv)
{
	struct schedule_policy def = {0, 0, 20, 10}, iv = {30 * DAY, 0, 20, 10};
	struct agent *ag = calloc(AGENTS, sizeof(*ag));
	int bad = 0, rc = 2;
	char s[32];
	size_t i;

	if (argc > 1 && strcmp(argv[1], "-s") == 0)
		strict = 1;
	if (ag == NULL)
		goto out;
	for (i = 0; i < AGENTS; i++) {
		ag[i].not_before = ISSUE_START + (time_t)(rng() % ISSUE_SPAN);
		if (agent_seed((unsigned)i, &ag[i].seed) != 0)
			goto out;
	}
	fmt_time(ISSUE_START, s, sizeof(s));
	printf("fleet: %d agents, certificates issued %s + 1h (uniform), lifetime 365d\n", AGENTS,
	       s);
	if (scenario("default policy: before_expiry 20%, jitter 10%, no interval", &def, ag,
	             &bad) != 0 ||
	    scenario("interval 30d, before_expiry 20%, jitter 10%", &iv, ag, &bad) != 0)
		goto out;
	printf("\nfleet: %s\n", !bad     ? "PASS"
	                        : strict ? "FAIL (a peak above 2x its mean)"
	                                 : "FAIL (a peak above 2x its mean and above "
	                                   "uniform random)");
	rc = bad ? 1 : 0;
out:
	if (rc == 2)
		fprintf(stderr, "fleet: out of memory or SHA-256 unavailable\n");
	free(ag);
	return rc;
}
