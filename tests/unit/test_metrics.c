/*
 * test_metrics.c: the Prometheus text format (metrics.c): every family's
 * HELP and TYPE once with the profiles' series in order, series left out
 * when a profile has no such value, label values escaped (quote, backslash,
 * newline; bytes that are not UTF-8 text as '?'), a certificate's facts,
 * the file written whole with mode 0644.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/x509.h>

#include "err.h"
#include "metrics.h"
#include "tmpdir.h"

static struct metrics_profile
full_profile(const char *name)
{
	struct metrics_profile m;

	memset(&m, 0, sizeof(m));
	m.name = name;
	m.token_uri = "pkcs11:token=laptop";
	m.cert.have = 1;
	m.cert.not_before = 1700000000;
	m.cert.not_after = 1731536000;
	m.cert.due = 1725000000;
	snprintf(m.cert.subject, sizeof(m.cert.subject), "CN=host.example.com,O=Example");
	snprintf(m.cert.serial, sizeof(m.cert.serial), "1A2B");
	m.have_last = 1;
	m.last.at = 1700000100;
	m.last.err = P11E_ERR_NETWORK;
	m.last.failures = 3;
	m.last.next_at = 1700000700;
	m.pending = 1;
	m.pending_since = 1700000050;
	m.have_hook = 1;
	m.hook_failures = 2;
	m.hooks_owed = 1;
	return m;
}

static char *
format(const struct metrics_profile *p, size_t n)
{
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(metrics_format(p, n, &text, &len), 0);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	return text;
}

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (hay = strstr(hay, needle); hay != NULL; hay = strstr(hay + 1, needle))
		n++;
	return n;
}

static void
test_every_series(void **state)
{
	struct metrics_profile m = full_profile("vpn");
	char *t = format(&m, 1);
	static const char *const want[] = {
	    "p11enroll_certificate_not_before_seconds{profile=\"vpn\"} 1700000000\n",
	    "p11enroll_certificate_not_after_seconds{profile=\"vpn\"} 1731536000\n",
	    "p11enroll_renewal_due_seconds{profile=\"vpn\"} 1725000000\n",
	    "p11enroll_last_attempt_seconds{profile=\"vpn\"} 1700000100\n",
	    "p11enroll_last_attempt_exit_code{profile=\"vpn\"} 69\n",
	    "p11enroll_consecutive_failures{profile=\"vpn\"} 3\n",
	    "p11enroll_next_attempt_seconds{profile=\"vpn\"} 1700000700\n",
	    "p11enroll_pending{profile=\"vpn\"} 1\n",
	    "p11enroll_pending_since_seconds{profile=\"vpn\"} 1700000050\n",
	    "p11enroll_hook_failures{profile=\"vpn\"} 2\n",
	    "p11enroll_hooks_owed{profile=\"vpn\"} 1\n",
	    "p11enroll_certificate_info{profile=\"vpn\",subject=\"CN=host.example.com,O=Example\","
	    "serial=\"1A2B\",token_uri=\"pkcs11:token=laptop\"} 1\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_non_null(strstr(t, want[i]));
	assert_int_equal(count(t, "# HELP "), 12);
	assert_int_equal(count(t, "# TYPE "), 12);
	assert_int_equal(count(t, " gauge\n"), 12);
	assert_int_equal(count(t, "{profile="), 12);
	free(t);
}

static void
test_families_once_profiles_in_order(void **state)
{
	struct metrics_profile m[2] = {full_profile("vpn"), full_profile("wifi")};
	char *t, *a, *b, *h;

	(void)state;
	m[1].last.err = 0;
	t = format(m, 2);
	assert_int_equal(count(t, "# HELP p11enroll_certificate_not_after_seconds "), 1);
	h = strstr(t, "# TYPE p11enroll_last_attempt_exit_code gauge\n");
	a = strstr(t, "p11enroll_last_attempt_exit_code{profile=\"vpn\"} 69\n");
	b = strstr(t, "p11enroll_last_attempt_exit_code{profile=\"wifi\"} 0\n");
	assert_non_null(h);
	assert_non_null(a);
	assert_non_null(b);
	assert_true(h < a && a < b);
	assert_int_equal(count(t, "p11enroll_certificate_info{"), 2);
	free(t);
}

/* A profile with nothing known yet: the counts say 0, the moments are left out. */
static void
test_nothing_known(void **state)
{
	struct metrics_profile m;
	char *t;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.name = "new";
	t = format(&m, 1);
	assert_non_null(strstr(t, "p11enroll_consecutive_failures{profile=\"new\"} 0\n"));
	assert_non_null(strstr(t, "p11enroll_pending{profile=\"new\"} 0\n"));
	assert_non_null(strstr(t, "p11enroll_hook_failures{profile=\"new\"} 0\n"));
	assert_non_null(strstr(t, "p11enroll_hooks_owed{profile=\"new\"} 0\n"));
	assert_int_equal(count(t, "{profile="), 4);
	assert_null(strstr(t, "p11enroll_certificate_info{"));
	/* the families are announced anyway */
	assert_non_null(strstr(t, "# TYPE p11enroll_certificate_not_after_seconds gauge\n"));
	free(t);
}

static void
test_labels_escaped(void **state)
{
	struct metrics_profile m = full_profile("a\"b\\c\nd");
	char *t;

	(void)state;
	snprintf(m.cert.subject, sizeof(m.cert.subject), "CN=caf\xc3\xa9\x01,O=\xff\"x\"");
	m.token_uri = NULL;
	t = format(&m, 1);
	assert_non_null(strstr(t, "p11enroll_pending{profile=\"a\\\"b\\\\c\\nd\"} 1\n"));
	assert_non_null(strstr(
	    t, "subject=\"CN=caf\xc3\xa9?,O=?\\\"x\\\"\",serial=\"1A2B\",token_uri=\"\"} 1\n"));
	free(t);
}

static X509 *
make_cert(void)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();

	assert_non_null(x);
	assert_non_null(n);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC,
	                                            (const unsigned char *)"Example", -1, -1, 0),
	                 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	                                            (const unsigned char *)"host", -1, -1, 0),
	                 1);
	assert_int_equal(X509_set_subject_name(x, n), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 0xBEEF), 1);
	assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), 1700000000));
	assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), 1731536000));
	X509_NAME_free(n);
	return x;
}

static void
test_cert_facts(void **state)
{
	struct metrics_cert mc;
	X509 *x = make_cert();

	(void)state;
	memset(&mc, 0x55, sizeof(mc));
	assert_int_equal(metrics_cert_facts(x, 1725000000, &mc), 0);
	assert_int_equal(mc.have, 1);
	assert_int_equal(mc.not_before, 1700000000);
	assert_int_equal(mc.not_after, 1731536000);
	assert_int_equal(mc.due, 1725000000);
	assert_string_equal(mc.serial, "BEEF");
	assert_string_equal(mc.subject, "CN=host,O=Example");
	assert_int_equal(metrics_cert_facts(NULL, 5, &mc), 0);
	assert_int_equal(mc.have, 0);
	X509_free(x);
}

static void
test_write_file(void **state)
{
	struct metrics_profile m = full_profile("vpn");
	char dir[256], path[300], *want = NULL, buf[8192];
	struct stat st;
	size_t len = 0, got;
	FILE *f;

	(void)state;
	assert_int_equal(tmpdir_make(dir, sizeof(dir), "metrics"), 0);
	snprintf(path, sizeof(path), "%s/p11enroll.prom", dir);
	assert_int_equal(metrics_write_file(path, &m, 1), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(metrics_format(&m, 1, &want, &len), 0);
	assert_non_null(f = fopen(path, "rb"));
	got = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_int_equal(got, len);
	assert_memory_equal(buf, want, len);
	free(want);
	/* a directory that is not there: an error, nothing left behind */
	snprintf(path, sizeof(path), "%s/none/p11enroll.prom", dir);
	assert_int_equal(metrics_write_file(path, &m, 1), P11E_ERR_FILE);
	tmpdir_remove(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_series),
	    cmocka_unit_test(test_families_once_profiles_in_order),
	    cmocka_unit_test(test_nothing_known),
	    cmocka_unit_test(test_labels_escaped),
	    cmocka_unit_test(test_cert_facts),
	    cmocka_unit_test(test_write_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
