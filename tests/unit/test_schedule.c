/*
 * test_schedule.c: renewal moments and retry backoff.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "schedule.h"

#define DAY 86400L
#define NB ((time_t)1700000000)
#define YEAR (365 * DAY)

static void
test_default_pct(void **state)
{
	struct schedule_policy p = {0, 0, 20, 0};
	char why[64];

	(void)state;
	assert_int_equal(schedule_due(&p, NB, NB + YEAR, 1, why, sizeof(why)),
	                 NB + YEAR - 73 * DAY);
	assert_string_equal(why, "20% of the lifetime left");
}

static void
test_before_duration(void **state)
{
	struct schedule_policy p = {0, 14 * DAY, 0, 0};
	char why[64];

	(void)state;
	assert_int_equal(schedule_due(&p, NB, NB + YEAR, 1, why, sizeof(why)),
	                 NB + YEAR - 14 * DAY);
	assert_string_equal(why, "2w before expiry");
	p.before_secs = 10 * DAY;
	schedule_due(&p, NB, NB + YEAR, 1, why, sizeof(why));
	assert_string_equal(why, "10d before expiry");
}

static void
test_interval_earlier(void **state)
{
	struct schedule_policy p = {30 * DAY, 0, 20, 0};
	char why[64];

	(void)state;
	assert_int_equal(schedule_due(&p, NB, NB + YEAR, 1, why, sizeof(why)), NB + 30 * DAY);
	assert_string_equal(why, "30d after issuance");
	/* The expiry rule wins when it comes first. */
	p.interval = 300 * DAY;
	assert_int_equal(schedule_due(&p, NB, NB + YEAR, 1, why, sizeof(why)),
	                 NB + YEAR - 73 * DAY);
	assert_string_equal(why, "20% of the lifetime left");
}

/* A 30-day interval on a one-year certificate: the window until expiry (335 days)
 * is longer than the interval; the jitter must not reach back to issuance. */
static void
test_interval_jitter_stays_after_issuance(void **state)
{
	struct schedule_policy p = {30 * DAY, 0, 20, 10};
	uint64_t seed;
	time_t due;

	(void)state;
	for (seed = 0; seed < 20000; seed += 7) {
		due = schedule_due(&p, NB, NB + YEAR, seed * 0x9e3779b97f4a7c15ULL, NULL, 0);
		assert_true(due <= NB + 30 * DAY);
		assert_true(due >= NB + 27 * DAY);
	}
}

static void
test_jitter_bounds_and_determinism(void **state)
{
	struct schedule_policy p = {0, 0, 20, 10};
	time_t base = NB + YEAR - 73 * DAY, lo = base - (73 * DAY) / 10, t, first;
	uint64_t s;
	int spread = 0;

	(void)state;
	first = schedule_due(&p, NB, NB + YEAR, 0, NULL, 0);
	for (s = 0; s < 1000; s++) {
		t = schedule_due(&p, NB, NB + YEAR, s, NULL, 0);
		assert_true(t <= base);
		assert_true(t >= lo);
		assert_int_equal(t, schedule_due(&p, NB, NB + YEAR, s, NULL, 0));
		if (t != first)
			spread = 1;
	}
	assert_true(spread);
	/* Consecutive seeds land far apart (the seed is mixed). */
	assert_true(labs((long)(schedule_due(&p, NB, NB + YEAR, 1, NULL, 0) -
	                        schedule_due(&p, NB, NB + YEAR, 2, NULL, 0))) > 60);
}

static void
test_safety_margin(void **state)
{
	struct schedule_policy p = {0, 1, 0, 0};

	(void)state;
	/* before_expiry 1s: still due an hour before expiry. */
	assert_int_equal(schedule_due(&p, NB, NB + YEAR, 1, NULL, 0), NB + YEAR - 3600);
	/* short lifetimes: a tenth of it */
	assert_int_equal(schedule_due(&p, NB, NB + 1000, 1, NULL, 0), NB + 900);
}

static void
test_clamped_to_not_before(void **state)
{
	struct schedule_policy p = {0, 2 * YEAR, 0, 10};
	struct schedule_policy q = {1, 0, 20, 10};
	char why[64];

	(void)state;
	assert_int_equal(schedule_due(&p, NB, NB + YEAR, 7, NULL, 0), NB);
	/* The jitter never reaches back before issuance: 1s stays 1s. */
	assert_int_equal(schedule_due(&q, NB, NB + YEAR, 7, why, sizeof(why)), NB + 1);
	assert_string_equal(why, "1s after issuance");
	assert_int_equal(schedule_due(&q, NB, NB, 7, why, sizeof(why)), NB);
	assert_string_equal(why, "the certificate has no validity period");
}

static void
test_backoff(void **state)
{
	unsigned a;
	uint64_t r;

	(void)state;
	assert_int_equal(schedule_backoff(0, 2, 600, 2), 2);
	assert_int_equal(schedule_backoff(0, 2, 600, 3), 0);
	assert_int_equal(schedule_backoff(3, 2, 600, 16), 16);
	assert_int_equal(schedule_backoff(3, 2, 600, 17), 0);
	assert_int_equal(schedule_backoff(20, 2, 600, 600), 600);
	assert_int_equal(schedule_backoff(1000, 2, 600, 600), 600);
	assert_int_equal(schedule_backoff(5, 0, 600, 5), 0);
	for (a = 0; a < 70; a++)
		for (r = 0; r < 50; r++)
			assert_true(schedule_backoff(a, 7, 3600, r * 0x9e3779b97f4a7c15ULL) <=
			            3600);
	assert_int_equal(schedule_backoff(62, 1, 0x7fffffffffffffffL, UINT64_MAX),
	                 (long)(UINT64_MAX % ((uint64_t)0x4000000000000000L + 1)));
}

static void
test_retry_delay(void **state)
{
	int asked = -1;

	(void)state;
	/* first failure: full jitter over [0, min], never 0 */
	assert_int_equal(schedule_retry_delay(1, 60, 3600, 0, 45, &asked), 45);
	assert_int_equal(asked, 0);
	assert_int_equal(schedule_retry_delay(1, 60, 3600, 0, 61, &asked), 1);
	/* third failure: bound 240 */
	assert_int_equal(schedule_retry_delay(3, 60, 3600, 0, 240, &asked), 240);
	assert_int_equal(schedule_retry_delay(3, 60, 3600, 0, 241, &asked), 1);
	/* capped */
	assert_int_equal(schedule_retry_delay(40, 60, 3600, 0, 3600, &asked), 3600);
	/* the server's Retry-After wins when longer, plus a second */
	assert_int_equal(schedule_retry_delay(1, 60, 3600, 120, 45, &asked), 121);
	assert_int_equal(asked, 1);
	assert_int_equal(schedule_retry_delay(1, 60, 3600, 45, 45, &asked), 46);
	assert_int_equal(asked, 1);
	/* ...and not when shorter */
	assert_int_equal(schedule_retry_delay(1, 60, 3600, 10, 45, &asked), 45);
	assert_int_equal(asked, 0);
	/* failures = 0 is treated as the first */
	assert_int_equal(schedule_retry_delay(0, 60, 3600, 0, 30, &asked), 30);
}

static void
test_fmt_duration(void **state)
{
	char b[32];

	(void)state;
	schedule_fmt_duration(30 * DAY, b, sizeof(b));
	assert_string_equal(b, "30d");
	schedule_fmt_duration(7200, b, sizeof(b));
	assert_string_equal(b, "2h");
	schedule_fmt_duration(90, b, sizeof(b));
	assert_string_equal(b, "90s");
	schedule_fmt_duration(0, b, sizeof(b));
	assert_string_equal(b, "0s");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_default_pct),
	    cmocka_unit_test(test_retry_delay),
	    cmocka_unit_test(test_before_duration),
	    cmocka_unit_test(test_interval_earlier),
	    cmocka_unit_test(test_interval_jitter_stays_after_issuance),
	    cmocka_unit_test(test_jitter_bounds_and_determinism),
	    cmocka_unit_test(test_safety_margin),
	    cmocka_unit_test(test_clamped_to_not_before),
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_fmt_duration),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
