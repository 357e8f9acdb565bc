/*
 * test_scep_next.c: GetNextCACert verification (CA rollover) against
 * fixtures made by the independent generator (tests/data/gen-fixtures.py:
 * Python, asn1crypto + cryptography; `--nextca-only` remakes just these).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "log.h"
#include "netproc_parse.h"
#include "netproc_wire.h"
#include "scep.h"
#include "secret.h"
#include "scep_fixture.h"

static int
setup(void **state)
{
	(void)state;
	log_set_level(getenv("P11E_TEST_VERBOSE") ? LOG_LVL_DEBUG : -1);
	assert_int_equal(scep_init(), 0);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	scep_cleanup();
	return 0;
}

/*
 * The next CA of der as the network process and p11enroll make it between them:
 * the request written and read back as netproc_serve.c reads it, scep_next_certs
 * there, its answer written and read back as netproc.c reads it, then
 * scep_next_from_certs. Returns the error, as scep_next_parse.
 */
static int
next_in_two_steps(const unsigned char *der, size_t len, const struct scep_ca *cur,
                  struct scep_ca **out)
{
	struct wire_wbuf req = {NULL, 0, 0, 0}, ans = {NULL, 0, 0, 0};
	struct wire_rbuf r;
	STACK_OF(X509) *signers = NULL, *ca = NULL, *bundle = NULL, *certs = NULL;
	const unsigned char *d = NULL;
	size_t n = 0;
	char *err = NULL;
	int rc, got = 0;

	*out = NULL;
	netproc_next_request_write(&req, der, len, cur);
	assert_false(req.oom);
	r = (struct wire_rbuf){req.p, req.len, 0, 0};
	assert_int_equal(netproc_next_request_read(&r, &d, &n, &signers, &ca, &bundle), 0);
	assert_int_equal(n, len);
	assert_int_equal(sk_X509_num(signers), sk_X509_num(cur->signers));
	assert_int_equal(X509_cmp(sk_X509_value(ca, 0), cur->ca), 0);
	assert_int_equal(sk_X509_num(bundle), sk_X509_num(cur->certs));
	rc = scep_next_certs(d, n, signers, sk_X509_value(ca, 0), bundle, &certs);
	netproc_certs_answer_write(&ans, rc, rc != 0 ? "refused" : NULL, certs);
	sk_X509_pop_free(certs, X509_free);
	certs = NULL;
	assert_int_equal(
	    netproc_certs_answer_read(ans.p, ans.len, 2 * len + 4096, &got, &err, &certs), 0);
	assert_int_equal(got, rc);
	if (rc == 0)
		rc = scep_next_from_certs(certs, cur, out);
	else
		assert_null(certs);
	wire_w_free(&req);
	wire_w_free(&ans);
	secret_wipe_free(err);
	sk_X509_pop_free(signers, X509_free);
	sk_X509_pop_free(ca, X509_free);
	sk_X509_pop_free(bundle, X509_free);
	return rc;
}

/* Parses fixture name against the GetCACert bundle cur; returns the error. Both ways
 * (in one process, and in two steps over the network process's messages) must agree. */
static int
next_of(const char *cur_name, const char *name, struct scep_ca **out)
{
	size_t len;
	unsigned char *d = load(name, &len);
	struct scep_ca *cur = ca_of(cur_name), *next = NULL, *next2 = NULL;
	int r = scep_next_parse(d, len, cur, &next);

	assert_int_equal(next_in_two_steps(d, len, cur, &next2), r);
	if (r != 0) {
		assert_null(next);
		assert_null(next2);
	} else {
		assert_int_equal(X509_cmp(next->ca, next2->ca), 0);
		assert_int_equal(sk_X509_num(next->certs), sk_X509_num(next2->certs));
		assert_int_equal(sk_X509_num(next->chain), sk_X509_num(next2->chain));
	}
	scep_ca_free(next2);
	if (out != NULL)
		*out = next;
	else
		scep_ca_free(next);
	scep_ca_free(cur);
	free(d);
	return r;
}

static void
test_signed_by_ra(void **state)
{
	struct scep_ca *next = NULL;

	(void)state;
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-by-ra.der", &next), 0);
	assert_subject(next->ca, "next-ca.der");
	assert_int_equal(sk_X509_num(next->certs), 2);
	/* its RA (digitalSignature only) signs; the CA stays the recipient */
	assert_ptr_not_equal(next->ra_sign, next->ca);
	assert_ptr_equal(next->ra_enc, next->ca);
	scep_ca_free(next);
	/* the same answer when the bundle lists the RA first */
	assert_int_equal(next_of("getcacert-ra-reversed.p7", "nextca-by-ra.der", NULL), 0);
}

static void
test_signed_by_ca(void **state)
{
	struct scep_ca *next = NULL;

	(void)state;
	/* scepserver's shape: the CA alone in GetCACert, signing itself */
	assert_int_equal(next_of("getcacert-ca-only.der", "nextca-by-ca.der", &next), 0);
	assert_subject(next->ca, "next-ca.der");
	scep_ca_free(next);
	/* SHA-1, signer certificate left out of the message: found in GetCACert */
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-by-ca-sha1-no-cert.der", &next), 0);
	assert_subject(next->ca, "next-ca.der");
	scep_ca_free(next);
	/* content a bare DER certificate instead of a degenerate SignedData */
	assert_int_equal(next_of("getcacert-ca-only.der", "nextca-raw-cert.der", &next), 0);
	assert_subject(next->ca, "next-ca.der");
	scep_ca_free(next);
}

static void
test_signed_by_ra_under_intermediate(void **state)
{
	struct scep_ca *next = NULL;

	(void)state;
	/* RA <- intermediate <- root: the RA chains to the root through the bundle */
	assert_int_equal(next_of("getcacert-intermediate.p7", "nextca-by-ra-int.der", &next), 0);
	assert_int_equal(X509_check_ca(next->ca), 1);
	scep_ca_free(next);
	/* that RA is no signer for another CA's bundle */
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-by-ra-int.der", NULL), P11E_ERR_VERIFY);
}

static void
test_wrong_signers(void **state)
{
	(void)state;
	/* a self-signed stranger, its certificate inside the message */
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-rogue-signer.der", NULL),
	                 P11E_ERR_VERIFY);
	/* a certificate of the GetCACert bundle that another CA issued */
	assert_int_equal(next_of("getcacert-ra-stranger.p7", "nextca-stranger-signer.der", NULL),
	                 P11E_ERR_VERIFY);
	/* the RA of the bundle signs, but the bundle given is only the CA: RA unknown */
	assert_int_equal(next_of("getcacert-ca-only.der", "nextca-by-ra.der", NULL),
	                 P11E_ERR_VERIFY);
	/* the next CA's own key did not sign it (nobody signed it) */
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-degenerate-only.der", NULL),
	                 P11E_ERR_VERIFY);
}

static void
test_forged(void **state)
{
	(void)state;
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-bad-signature.der", NULL),
	                 P11E_ERR_VERIFY);
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-bad-digest.der", NULL),
	                 P11E_ERR_VERIFY);
}

static void
test_not_a_new_ca(void **state)
{
	(void)state;
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-same-ca.der", NULL), P11E_ERR_VERIFY);
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-not-ca.der", NULL), P11E_ERR_VERIFY);
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-expired.der", NULL), P11E_ERR_VERIFY);
}

static void
test_garbage(void **state)
{
	(void)state;
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-garbage.der", NULL),
	                 P11E_ERR_MALFORMED);
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-truncated.der", NULL),
	                 P11E_ERR_MALFORMED);
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-content-garbage.der", NULL),
	                 P11E_ERR_MALFORMED);
	assert_int_equal(next_of("getcacert-ra.p7", "nextca-no-content.der", NULL),
	                 P11E_ERR_MALFORMED);
	/* a next CA certificate alone, unsigned */
	assert_int_equal(next_of("getcacert-ra.p7", "next-ca.der", NULL), P11E_ERR_MALFORMED);
}

static void
test_truncated_every_length(void **state)
{
	size_t len, n;
	unsigned char *d = load("nextca-by-ra.der", &len), *cut;
	struct scep_ca *cur = ca_of("getcacert-ra.p7"), *next = NULL;

	(void)state;
	for (n = 0; n < len; n++) {
		/* a copy of exactly n bytes, so that ASan sees any overread */
		cut = malloc(n + 1);
		assert_non_null(cut);
		memcpy(cut, d, n);
		assert_int_not_equal(scep_next_parse(cut, n, cur, &next), 0);
		assert_null(next);
		free(cut);
	}
	assert_int_equal(scep_next_parse(d, len, cur, &next), 0);
	scep_ca_free(next);
	scep_ca_free(cur);
	free(d);
}

static time_t
utc(int y, int mo, int d)
{
	struct tm t = {0};

	t.tm_year = y - 1900;
	t.tm_mon = mo - 1;
	t.tm_mday = d;
	return timegm(&t);
}

static X509 *
cert_valid(time_t nb, time_t na)
{
	X509 *x = X509_new();

	assert_non_null(x);
	assert_non_null(X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &nb));
	assert_non_null(X509_time_adj_ex(X509_getm_notAfter(x), 0, 0, &na));
	return x;
}

static void
test_window(void **state)
{
	X509 *x;

	(void)state;
	/* fixtures: 2020-01-01 .. 2049-12-31 23:59:59: 20% (6 years) before the end */
	x = load_cert("ca.der");
	assert_int_equal(scep_next_window(x),
	                 utc(2050, 1, 1) - 1 - (utc(2050, 1, 1) - 1 - utc(2020, 1, 1)) / 5);
	X509_free(x);
	/* one year: 20% is 73 days */
	x = cert_valid(utc(2030, 1, 1), utc(2031, 1, 1));
	assert_int_equal(scep_next_window(x), utc(2031, 1, 1) - 73 * 86400);
	X509_free(x);
	/* 90 days: 20% is 18 days, less than 30 days */
	x = cert_valid(utc(2030, 1, 1), utc(2030, 4, 1));
	assert_int_equal(scep_next_window(x), utc(2030, 4, 1) - 30 * 86400);
	X509_free(x);
	/* 10 days: the whole lifetime */
	x = cert_valid(utc(2030, 1, 1), utc(2030, 1, 11));
	assert_int_equal(scep_next_window(x), utc(2030, 1, 1));
	X509_free(x);
	/* notAfter before notBefore */
	x = cert_valid(utc(2030, 1, 2), utc(2030, 1, 1));
	assert_int_equal(scep_next_window(x), 0);
	X509_free(x);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_signed_by_ra),
	    cmocka_unit_test(test_signed_by_ca),
	    cmocka_unit_test(test_signed_by_ra_under_intermediate),
	    cmocka_unit_test(test_wrong_signers),
	    cmocka_unit_test(test_forged),
	    cmocka_unit_test(test_not_a_new_ca),
	    cmocka_unit_test(test_garbage),
	    cmocka_unit_test(test_truncated_every_length),
	    cmocka_unit_test(test_window),
	};
	return cmocka_run_group_tests_name("scep_next", tests, setup, teardown);
}
