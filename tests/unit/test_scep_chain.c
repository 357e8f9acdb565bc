/*
 * test_scep_chain.c: what the SCEP core makes of every GetCACert shape met in
 * the field: which certificate is the issuing CA, the chain up to the root,
 * which RA certificate receives requests and which signs replies, what is
 * ignored, and whose replies are accepted. Fixtures come from an independent
 * generator (tests/data/gen-fixtures.py --chains-only: Python, asn1crypto +
 * cryptography).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "err.h"
#include "log.h"
#include "scep.h"
#include "scep_fixture.h"

static char txid[128];
static unsigned char nonce[16];

static int
setup(void **state)
{
	(void)state;
	load_txid_nonce(txid, nonce);
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

/* The chain is exactly files..., from the issuing CA up. */
static void
assert_chain(const struct scep_ca *ca, const char *const *files, int n)
{
	int i;

	assert_int_equal(sk_X509_num(ca->chain), n);
	for (i = 0; i < n; i++)
		assert_subject(sk_X509_value(ca->chain, i), files[i]);
	assert_ptr_equal(ca->ca, sk_X509_value(ca->chain, 0));
}

/* The role of the certificate in file. */
static int
role_of(const struct scep_ca *ca, const char *file)
{
	X509 *x = load_cert(file);
	int role = scep_ca_role(ca, x);

	X509_free(x);
	return role;
}

static STACK_OF(X509) * stack_of(const char *file)
{
	STACK_OF(X509) *sk = sk_X509_new_null();

	assert_non_null(sk);
	assert_true(sk_X509_push(sk, load_cert(file)) > 0);
	return sk;
}

static void
assert_verifies(const struct scep_ca *ca)
{
	char why[256];

	if (scep_ca_verify(ca, why, sizeof(why)) != 0)
		fail_msg("chain does not verify: %s", why);
}

/* A single-tier CA: it is issuing CA and root, and does both RA jobs. */
static void
test_single_ca(void **state)
{
	struct scep_ca *ca = ca_of("getcacert-ca-only.der");
	static const char *const chain[] = {"ca.der"};
	(void)state;
	assert_chain(ca, chain, 1);
	assert_true(scep_ca_complete_p(ca));
	assert_ptr_equal(ca->ra_enc, ca->ca);
	assert_ptr_equal(ca->ra_sign, ca->ca);
	assert_int_equal(sk_X509_num(ca->signers), 1);
	assert_int_equal(sk_X509_num(ca->ignored), 0);
	assert_int_equal(role_of(ca, "ca.der"), SCEP_ROLE_ISSUING);
	assert_verifies(ca);
	scep_ca_free(ca);
}

/* Root and intermediate without RA usages, in both orders: never the root. */
static void
test_two_tier_both_orders(void **state)
{
	static const char *const bundles[] = {"getcacert-2tier.p7", "getcacert-2tier-reversed.p7"};
	static const char *const chain[] = {"issuing1.der", "root2.der"};
	size_t i;
	(void)state;
	for (i = 0; i < 2; i++) {
		struct scep_ca *ca = ca_of(bundles[i]);
		assert_chain(ca, chain, 2);
		assert_true(scep_ca_complete_p(ca));
		assert_subject(ca->ra_enc, "issuing1.der");
		assert_subject(ca->ra_sign, "issuing1.der");
		assert_int_equal(role_of(ca, "root2.der"), SCEP_ROLE_ROOT);
		assert_int_equal(role_of(ca, "issuing1.der"), SCEP_ROLE_ISSUING);
		assert_int_equal(sk_X509_num(ca->signers), 1);
		assert_subject(sk_X509_value(ca->signers, 0), "issuing1.der");
		assert_int_equal(sk_X509_num(ca->ignored), 0);
		assert_verifies(ca);
		scep_ca_free(ca);
	}
}

/* The issuing CA alone (DER or PKCS#7): incomplete until its root is given. */
static void
test_issuing_only_completed(void **state)
{
	static const char *const bundles[] = {"getcacert-issuing-only.der",
	                                      "getcacert-issuing-only.p7"};
	static const char *const full[] = {"issuing1.der", "root2.der"};
	size_t i;
	int added = -1;
	(void)state;
	for (i = 0; i < 2; i++) {
		struct scep_ca *ca = ca_of(bundles[i]);
		STACK_OF(X509) *wrong = stack_of("ca.der"), *root = stack_of("root2.der");

		assert_int_equal(sk_X509_num(ca->chain), 1);
		assert_false(scep_ca_complete_p(ca));
		assert_subject(ca->ra_enc, "issuing1.der");
		/* a root that did not issue it is not taken */
		assert_int_equal(scep_ca_complete(ca, wrong, &added), 0);
		assert_int_equal(added, 0);
		assert_false(scep_ca_complete_p(ca));
		assert_int_equal(scep_ca_complete(ca, root, &added), 0);
		assert_int_equal(added, 1);
		assert_chain(ca, full, 2);
		assert_true(scep_ca_complete_p(ca));
		assert_int_equal(role_of(ca, "root2.der"), SCEP_ROLE_ROOT);
		assert_verifies(ca);
		/* completing again adds nothing */
		assert_int_equal(scep_ca_complete(ca, root, &added), 0);
		assert_int_equal(added, 0);
		sk_X509_pop_free(wrong, X509_free);
		sk_X509_pop_free(root, X509_free);
		scep_ca_free(ca);
	}
}

/* root -> policy CA -> issuing CA, sent out of order. */
static void
test_three_tier(void **state)
{
	struct scep_ca *ca = ca_of("getcacert-3tier.p7");
	static const char *const chain[] = {"issuing2.der", "policy2.der", "root2.der"};
	(void)state;
	assert_chain(ca, chain, 3);
	assert_true(scep_ca_complete_p(ca));
	assert_int_equal(role_of(ca, "policy2.der"), SCEP_ROLE_INTERMEDIATE);
	assert_int_equal(role_of(ca, "root2.der"), SCEP_ROLE_ROOT);
	assert_subject(ca->ra_enc, "issuing2.der");
	assert_subject(ca->ra_sign, "issuing2.der");
	assert_verifies(ca);
	scep_ca_free(ca);
}

/* NDES on a two-tier AD CS: the RA pair and the issuing CA, with and without the root. */
static void
test_ndes_two_tier(void **state)
{
	static const char *const full[] = {"issuing1.der", "root2.der"};
	struct scep_ca *ca = ca_of("getcacert-ndes-2tier.p7");
	STACK_OF(X509) *root = stack_of("root2.der");
	(void)state;

	assert_subject(ca->ca, "issuing1.der");
	assert_subject(ca->ra_enc, "ra2-enc.der");
	assert_subject(ca->ra_sign, "ra2-sign.der");
	assert_int_equal(role_of(ca, "ra2-enc.der"), SCEP_ROLE_RA_ENC);
	assert_int_equal(role_of(ca, "ra2-sign.der"), SCEP_ROLE_RA_SIGN);
	assert_false(scep_ca_complete_p(ca));
	assert_int_equal(scep_ca_complete(ca, root, NULL), 0);
	assert_chain(ca, full, 2);
	assert_verifies(ca);
	assert_int_equal(sk_X509_num(ca->signers), 2);
	assert_subject(sk_X509_value(ca->signers, 0), "ra2-sign.der");
	assert_subject(sk_X509_value(ca->signers, 1), "issuing1.der");
	scep_ca_free(ca);

	ca = ca_of("getcacert-ndes-2tier-root.p7");
	assert_chain(ca, full, 2);
	assert_subject(ca->ra_enc, "ra2-enc.der");
	assert_subject(ca->ra_sign, "ra2-sign.der");
	assert_int_equal(sk_X509_num(ca->ignored), 0);
	assert_verifies(ca);
	scep_ca_free(ca);
	sk_X509_pop_free(root, X509_free);
}

/* One RA certificate with both usages (under a single CA and under an intermediate). */
static void
test_ra_with_both_usages(void **state)
{
	struct scep_ca *ca = ca_of("getcacert-2tier-ra-both.p7");
	(void)state;
	assert_subject(ca->ca, "issuing1.der");
	assert_subject(ca->ra_enc, "ra2-both.der");
	assert_ptr_equal(ca->ra_enc, ca->ra_sign);
	assert_int_equal(role_of(ca, "ra2-both.der"), SCEP_ROLE_RA);
	assert_true(scep_ca_complete_p(ca));
	assert_verifies(ca);
	scep_ca_free(ca);

	ca = ca_of("getcacert-ra-both.p7");
	assert_subject(ca->ca, "ca.der");
	assert_subject(ca->ra_enc, "ra-both.der");
	assert_ptr_equal(ca->ra_enc, ca->ra_sign);
	scep_ca_free(ca);

	/* RA without keyUsage under an intermediate: both jobs; the intermediate issues */
	ca = ca_of("getcacert-intermediate.p7");
	assert_subject(ca->ca, "intermediate.der");
	assert_subject(ca->ra_enc, "ra-int.der");
	assert_ptr_equal(ca->ra_enc, ca->ra_sign);
	assert_true(scep_ca_complete_p(ca));
	assert_verifies(ca);
	scep_ca_free(ca);
}

/* A stranger's self-made "RA" certificate beside the genuine CA is ignored. */
static void
test_stranger_ignored(void **state)
{
	struct scep_ca *ca = ca_of("getcacert-stranger-self.p7");
	(void)state;
	assert_subject(ca->ca, "ca.der");
	assert_ptr_equal(ca->ra_enc, ca->ca);
	assert_ptr_equal(ca->ra_sign, ca->ca);
	assert_int_equal(sk_X509_num(ca->ignored), 1);
	assert_subject(sk_X509_value(ca->ignored, 0), "stranger-self.der");
	assert_int_equal(role_of(ca, "stranger-self.der"), SCEP_ROLE_IGNORED);
	assert_int_equal(sk_X509_num(ca->signers), 1);
	scep_ca_free(ca);

	ca = ca_of("getcacert-ndes-stranger.p7");
	assert_subject(ca->ca, "ca.der");
	assert_subject(ca->ra_enc, "ra-enc.der");
	assert_subject(ca->ra_sign, "ra-sign.der");
	assert_int_equal(sk_X509_num(ca->ignored), 1);
	assert_subject(sk_X509_value(ca->ignored, 0), "stranger-self.der");
	scep_ca_free(ca);

	ca = ca_of("getcacert-2tier-stranger.p7");
	assert_subject(ca->ca, "issuing1.der");
	assert_subject(ca->ra_enc, "issuing1.der");
	assert_int_equal(sk_X509_num(ca->ignored), 1);
	assert_subject(sk_X509_value(ca->ignored, 0), "stranger-self.der");
	assert_true(scep_ca_complete_p(ca));
	scep_ca_free(ca);
}

/* Two unrelated CAs: the one in a longer chain issues; the other is ignored. */
static void
test_two_roots(void **state)
{
	struct scep_ca *ca = ca_of("getcacert-two-roots.p7");
	static const char *const chain[] = {"issuing1.der", "root2.der"};
	(void)state;
	assert_chain(ca, chain, 2);
	assert_int_equal(role_of(ca, "ca.der"), SCEP_ROLE_IGNORED);
	assert_int_equal(sk_X509_num(ca->ignored), 1);
	scep_ca_free(ca);
}

/* Replies: accepted from the RA signing certificate or the issuing CA, nobody else. */
static int
reply(const char *bundle, const char *file)
{
	struct scep_ca *ca = ca_of(bundle);
	struct scep_rep *rep = NULL;
	size_t len;
	unsigned char *d = load(file, &len);
	int r = scep_rep_parse(d, len, ca->signers, txid, nonce, &rep);

	if (r == 0)
		assert_int_equal(rep->status, SCEP_STATUS_PENDING);
	else
		assert_null(rep);
	scep_rep_free(rep);
	scep_ca_free(ca);
	free(d);
	return r;
}

static void
test_reply_signers(void **state)
{
	(void)state;
	assert_int_equal(reply("getcacert-stranger-self.p7", "certrep-stranger-signed.der"),
	                 P11E_ERR_VERIFY);
	assert_int_equal(reply("getcacert-ndes-stranger.p7", "certrep-stranger-signed.der"),
	                 P11E_ERR_VERIFY);
	assert_int_equal(reply("getcacert-2tier.p7", "certrep-issuing1-signed.der"), 0);
	assert_int_equal(reply("getcacert-2tier.p7", "certrep-root2-signed.der"), P11E_ERR_VERIFY);
	assert_int_equal(reply("getcacert-ndes-2tier.p7", "certrep-ra2-signed.der"), 0);
	assert_int_equal(reply("getcacert-ndes-2tier.p7", "certrep-issuing1-signed.der"), 0);
	assert_int_equal(reply("getcacert-ndes-2tier-root.p7", "certrep-root2-signed.der"),
	                 P11E_ERR_VERIFY);
}

/* The CA's reason: failInfoText under RFC 8894's OID and under step-ca's id-scep arc. */
static void
test_fail_text_both_oids(void **state)
{
	static const char *const files[] = {"certrep-failure-text.der",
	                                    "certrep-failure-text-arc.der"};
	size_t i;
	(void)state;
	for (i = 0; i < 2; i++) {
		struct scep_ca *ca = ca_of("getcacert-2tier.p7");
		struct scep_rep *rep = NULL;
		size_t len;
		unsigned char *d = load(files[i], &len);

		assert_int_equal(scep_rep_parse(d, len, ca->signers, txid, nonce, &rep), 0);
		assert_int_equal(rep->status, SCEP_STATUS_FAILURE);
		assert_int_equal(rep->fail_info, 2);
		assert_non_null(rep->fail_text);
		assert_string_equal(rep->fail_text, "wrong password provided");
		scep_rep_free(rep);
		scep_ca_free(ca);
		free(d);
	}
}

/* Digests: SHA-2 accepted, MD5 refused; eContentType must be data. */
static void
test_digest_and_content_type(void **state)
{
	(void)state;
	assert_int_equal(reply("getcacert-2tier.p7", "certrep-sha512-signed.der"), 0);
	assert_int_equal(reply("getcacert-2tier.p7", "certrep-md5-signed.der"), P11E_ERR_VERIFY);
	assert_int_equal(reply("getcacert-2tier.p7", "certrep-econtent-signed-data.der"),
	                 P11E_ERR_MALFORMED);
}

/* Bytes after the certificate bundle inside the envelope: refused. */
static void
test_envelope_trailing_data(void **state)
{
	struct scep_ca *ca = ca_of("getcacert-2tier.p7");
	struct scep_rep *rep = NULL;
	size_t len, klen;
	unsigned char *d = load("certrep-success-trailing.der", &len);
	unsigned char *k = load("client.key.pem", &klen);
	BIO *b = BIO_new_mem_buf(k, (int)klen);
	EVP_PKEY *key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	X509 *self = load_cert("client-selfsigned.der");
	STACK_OF(X509) *certs = NULL;
	int cipher = 0;
	(void)state;

	assert_non_null(key);
	assert_int_equal(scep_rep_parse(d, len, ca->signers, txid, nonce, &rep), 0);
	assert_int_equal(scep_rep_decrypt(rep, key, self, &certs, &cipher), P11E_ERR_MALFORMED);
	assert_null(certs);
	assert_int_equal(cipher, NID_aes_128_cbc);
	scep_rep_free(rep);
	X509_free(self);
	EVP_PKEY_free(key);
	BIO_free(b);
	free(k);
	free(d);
	scep_ca_free(ca);
}

/* A CertPoll's IssuerAndSubject with names longer than 64 KiB is encoded, not refused. */
static void
test_issuer_and_subject_long(void **state)
{
	X509_NAME *issuer = X509_NAME_new(), *subject = X509_NAME_new();
	char *big = malloc(61);
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	long plen;
	int tag, xclass, n;
	(void)state;

	assert_non_null(big);
	memset(big, 'a', 60);
	big[60] = '\0';
	/* 1200 RDNs of 60 characters: a name of about 84 KiB */
	for (n = 0; n < 1200; n++)
		assert_int_equal(X509_NAME_add_entry_by_txt(issuer, "OU", MBSTRING_ASC,
		                                            (const unsigned char *)big, -1, -1, 0),
		                 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
	                                            (const unsigned char *)"host", -1, -1, 0),
	                 1);
	assert_int_equal(scep_issuer_and_subject(issuer, subject, &der, &len), 0);
	p = der;
	assert_int_equal(ASN1_get_object(&p, &plen, &tag, &xclass, (long)len) & 0x80, 0);
	assert_int_equal(tag, V_ASN1_SEQUENCE);
	assert_int_equal((size_t)(p - der) + (size_t)plen, len);
	assert_true(plen > 65536);
	OPENSSL_free(der);
	der = NULL;
	/* and a short one in the short form */
	assert_int_equal(scep_issuer_and_subject(subject, subject, &der, &len), 0);
	assert_int_equal(der[1], len - 2);
	OPENSSL_free(der);
	free(big);
	X509_NAME_free(issuer);
	X509_NAME_free(subject);
}

/* A bundle without a CA certificate is refused. */
static void
test_no_ca(void **state)
{
	struct scep_ca *ca = NULL;
	size_t len;
	unsigned char *d = load("ra-enc.der", &len);
	(void)state;
	/* a lone certificate that is neither a CA nor self-signed */
	assert_int_equal(scep_ca_parse(d, len, &ca), P11E_ERR_MALFORMED);
	assert_null(ca);
	free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_single_ca),
	    cmocka_unit_test(test_two_tier_both_orders),
	    cmocka_unit_test(test_issuing_only_completed),
	    cmocka_unit_test(test_three_tier),
	    cmocka_unit_test(test_ndes_two_tier),
	    cmocka_unit_test(test_ra_with_both_usages),
	    cmocka_unit_test(test_stranger_ignored),
	    cmocka_unit_test(test_two_roots),
	    cmocka_unit_test(test_reply_signers),
	    cmocka_unit_test(test_fail_text_both_oids),
	    cmocka_unit_test(test_digest_and_content_type),
	    cmocka_unit_test(test_envelope_trailing_data),
	    cmocka_unit_test(test_issuer_and_subject_long),
	    cmocka_unit_test(test_no_ca),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
