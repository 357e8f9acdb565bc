/*
 * test_scep.c: the SCEP core against fixtures made by an independent
 * generator (tests/data/gen-fixtures.py: Python, asn1crypto + cryptography).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/cms.h>
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

/* GetCACaps */

static unsigned
caps_of(const char *name)
{
	size_t len;
	unsigned char *d = load(name, &len);
	unsigned c = scep_caps_parse(d, len);
	free(d);
	return c;
}

static void
test_caps_scepserver(void **state)
{
	unsigned c = caps_of("caps-scepserver.txt");
	(void)state;
	assert_int_equal(c, SCEP_CAP_POST | SCEP_CAP_AES | SCEP_CAP_DES3 | SCEP_CAP_SHA1 |
	                        SCEP_CAP_SHA256 | SCEP_CAP_RENEWAL | SCEP_CAP_STANDARD);
}

static void
test_caps_mixed_case_crlf_unknown(void **state)
{
	unsigned c = caps_of("caps-mixed.txt");
	(void)state;
	assert_true(c & SCEP_CAP_POST);
	assert_true(c & SCEP_CAP_SHA256);
	assert_true(c & SCEP_CAP_AES);
	assert_false(c & SCEP_CAP_DES3);
	assert_false(c & SCEP_CAP_STANDARD);
}

static void
test_caps_empty_and_des3(void **state)
{
	(void)state;
	assert_int_equal(caps_of("caps-empty.txt"), 0);
	assert_int_equal(caps_of("caps-des3-only.txt"), SCEP_CAP_DES3 | SCEP_CAP_SHA1);
	assert_int_equal(scep_caps_parse((const unsigned char *)"POSTPKIOperationX\nAE", 20), 0);
	assert_int_equal(scep_caps_parse((const unsigned char *)"SCEPStandard", 12),
	                 SCEP_CAP_STANDARD | SCEP_CAP_AES | SCEP_CAP_POST | SCEP_CAP_SHA256);
}

/* GetCACert and RA selection */

static void
test_ca_only(void **state)
{
	struct scep_ca *ca = ca_of("getcacert-ca-only.der");
	(void)state;
	assert_int_equal(sk_X509_num(ca->certs), 1);
	assert_subject(ca->ca, "ca.der");
	assert_ptr_equal(ca->ra_enc, ca->ca);
	assert_ptr_equal(ca->ra_sign, ca->ca);
	scep_ca_free(ca);
}

static void
test_ra_split(void **state)
{
	const char *bundles[] = {"getcacert-ra.p7", "getcacert-ra-reversed.p7"};
	size_t i;
	(void)state;
	for (i = 0; i < 2; i++) {
		struct scep_ca *ca = ca_of(bundles[i]);
		assert_int_equal(sk_X509_num(ca->certs), 3);
		assert_subject(ca->ca, "ca.der");
		assert_subject(ca->ra_enc, "ra-enc.der");
		assert_subject(ca->ra_sign, "ra-sign.der");
		scep_ca_free(ca);
	}
}

static void
test_ra_both_and_intermediate(void **state)
{
	struct scep_ca *ca = ca_of("getcacert-ra-both.p7");
	(void)state;
	assert_subject(ca->ca, "ca.der");
	assert_subject(ca->ra_enc, "ra-both.der");
	assert_ptr_equal(ca->ra_enc, ca->ra_sign);
	scep_ca_free(ca);

	ca = ca_of("getcacert-intermediate.p7");
	assert_subject(ca->ca, "intermediate.der");
	assert_subject(ca->ra_enc, "ra-int.der");
	assert_ptr_equal(ca->ra_enc, ca->ra_sign);
	scep_ca_free(ca);
}

static void
test_cacert_garbage(void **state)
{
	struct scep_ca *ca = NULL;
	size_t len;
	unsigned char *d = load("certrep-garbage.der", &len);
	(void)state;
	assert_int_equal(scep_ca_parse(d, len, &ca), P11E_ERR_MALFORMED);
	assert_null(ca);
	assert_int_equal(scep_ca_parse(d, 0, &ca), P11E_ERR_MALFORMED);
	free(d);
}

/* CertRep */

/* Who may sign replies under getcacert-ra.p7: its RA signing certificate and the CA. */
static STACK_OF(X509) * trusted_ra(void)
{
	struct scep_ca *ca = ca_of("getcacert-ra.p7");
	STACK_OF(X509) *s = ca->signers;
	ca->signers = NULL;
	scep_ca_free(ca);
	return s;
}

static int
parse(const char *name, struct scep_rep **rep)
{
	size_t len;
	unsigned char *d = load(name, &len);
	STACK_OF(X509) *tr = trusted_ra();
	int r = scep_rep_parse(d, len, tr, txid, nonce, rep);
	sk_X509_pop_free(tr, X509_free);
	free(d);
	return r;
}

static void
decrypt_ok(struct scep_rep *rep, int want_cipher)
{
	EVP_PKEY *key = load_key("client.key.pem"), *pub;
	X509 *self = load_cert("client-selfsigned.der"), *ca = load_cert("ca.der"), *issued = NULL;
	STACK_OF(X509) *certs = NULL, *chain = sk_X509_new_null();
	int cipher = -1;

	assert_int_equal(scep_rep_decrypt(rep, key, self, &certs, &cipher), 0);
	assert_int_equal(cipher, want_cipher);
	pub = X509_get0_pubkey(self);
	assert_int_equal(scep_pick_issued(certs, pub, ca, chain, &issued), 0);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(issued), pub), 1);
	X509_free(issued);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_free(chain);
	X509_free(ca);
	X509_free(self);
	EVP_PKEY_free(key);
}

static void
test_success_aes(void **state)
{
	struct scep_rep *rep = NULL;
	(void)state;
	assert_int_equal(parse("certrep-success.der", &rep), 0);
	assert_int_equal(rep->status, SCEP_STATUS_SUCCESS);
	assert_subject(rep->signer, "ra-sign.der");
	decrypt_ok(rep, NID_aes_128_cbc);
	scep_rep_free(rep);
}

static void
test_success_des3_and_des(void **state)
{
	struct scep_rep *rep = NULL;
	(void)state;
	assert_int_equal(parse("certrep-success-des3.der", &rep), 0);
	decrypt_ok(rep, NID_des_ede3_cbc);
	scep_rep_free(rep);
	rep = NULL;
	assert_int_equal(parse("certrep-success-des.der", &rep), 0);
	decrypt_ok(rep, NID_des_cbc);
	scep_rep_free(rep);
}

static void
test_success_sha1_signed_by_ca(void **state)
{
	struct scep_rep *rep = NULL;
	(void)state;
	assert_int_equal(parse("certrep-success-sha1-by-ca.der", &rep), 0);
	assert_subject(rep->signer, "ca.der");
	assert_string_equal(rep->sig_md, "SHA1");
	decrypt_ok(rep, NID_aes_128_cbc);
	scep_rep_free(rep);
}

static void
test_failure_and_pending(void **state)
{
	struct scep_rep *rep = NULL;
	(void)state;
	assert_int_equal(parse("certrep-failure.der", &rep), 0);
	assert_int_equal(rep->status, SCEP_STATUS_FAILURE);
	assert_int_equal(rep->fail_info, 2);
	assert_string_equal(scep_fail_info_str(rep->fail_info), "badRequest");
	assert_null(rep->envelope);
	scep_rep_free(rep);
	rep = NULL;
	assert_int_equal(parse("certrep-failure-badcertid.der", &rep), 0);
	assert_int_equal(rep->fail_info, 4);
	scep_rep_free(rep);
	rep = NULL;
	assert_int_equal(parse("certrep-pending.der", &rep), 0);
	assert_int_equal(rep->status, SCEP_STATUS_PENDING);
	scep_rep_free(rep);
}

static void
expect(const char *name, int err)
{
	struct scep_rep *rep = NULL;
	int r = parse(name, &rep);
	if (r != err)
		fail_msg("%s: got %d (%s), want %d (%s)", name, r, p11e_strerror(r), err,
		         p11e_strerror(err));
	assert_null(rep);
}

static void
test_hostile_replies(void **state)
{
	(void)state;
	expect("certrep-wrong-nonce.der", P11E_ERR_VERIFY);
	expect("certrep-no-recipient-nonce.der", P11E_ERR_VERIFY);
	expect("certrep-txid-prefix.der", P11E_ERR_VERIFY);
	expect("certrep-txid-longer.der", P11E_ERR_VERIFY);
	expect("certrep-bad-signature.der", P11E_ERR_VERIFY);
	expect("certrep-bad-digest.der", P11E_ERR_VERIFY);
	expect("certrep-rogue-signer.der", P11E_ERR_VERIFY);
	expect("certrep-bad-msgtype.der", P11E_ERR_VERIFY);
	expect("certrep-truncated.der", P11E_ERR_MALFORMED);
	expect("certrep-garbage.der", P11E_ERR_MALFORMED);
}

static void
test_truncated_every_length(void **state)
{
	size_t len, n;
	unsigned char *d = load("certrep-success.der", &len);
	STACK_OF(X509) *tr = trusted_ra();
	(void)state;
	for (n = 0; n < len; n += (n < 64 ? 1 : 97)) {
		struct scep_rep *rep = NULL;
		int r = scep_rep_parse(d, n, tr, txid, nonce, &rep);
		assert_int_not_equal(r, 0);
		assert_null(rep);
	}
	sk_X509_pop_free(tr, X509_free);
	free(d);
}

static void
test_success_without_or_with_wrong_cert(void **state)
{
	struct scep_rep *rep = NULL;
	EVP_PKEY *key = load_key("client.key.pem");
	X509 *self = load_cert("client-selfsigned.der"), *ca = load_cert("ca.der"), *issued = NULL;
	STACK_OF(X509) *certs = NULL, *chain = sk_X509_new_null();
	int cipher;
	(void)state;

	assert_int_equal(parse("certrep-success-no-certs.der", &rep), 0);
	assert_int_equal(scep_rep_decrypt(rep, key, self, &certs, &cipher), P11E_ERR_MALFORMED);
	assert_null(certs);
	scep_rep_free(rep);
	rep = NULL;

	assert_int_equal(parse("certrep-wrong-key.der", &rep), 0);
	assert_int_equal(scep_rep_decrypt(rep, key, self, &certs, &cipher), 0);
	assert_int_equal(scep_pick_issued(certs, X509_get0_pubkey(self), ca, chain, &issued),
	                 P11E_ERR_VERIFY);
	assert_null(issued);
	sk_X509_pop_free(certs, X509_free);
	certs = NULL;
	scep_rep_free(rep);
	rep = NULL;

	/* decrypting with a key the envelope was not made for fails cleanly */
	EVP_PKEY *other = load_key("other.key.pem");
	assert_int_equal(parse("certrep-success.der", &rep), 0);
	assert_int_not_equal(scep_rep_decrypt(rep, other, self, &certs, &cipher), 0);
	assert_null(certs);
	EVP_PKEY_free(other);
	scep_rep_free(rep);
	sk_X509_free(chain);
	X509_free(ca);
	X509_free(self);
	EVP_PKEY_free(key);
}

/* PKCSReq: the RA must be able to verify and open what we build. */
static void
test_request_roundtrip(void **state)
{
	EVP_PKEY *key = load_key("client.key.pem"), *ra_key = load_key("ra-enc.key.pem");
	X509 *self = load_cert("client-selfsigned.der"), *ra = load_cert("ra-enc.der");
	unsigned char csr[] = "not really a CSR, the core does not look inside";
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	struct scep_req req;
	CMS_ContentInfo *sd, *env;
	BIO *out = BIO_new(BIO_s_mem()), *plain = BIO_new(BIO_s_mem());
	STACK_OF(X509) *certs = sk_X509_new_null();
	char *data;
	long n;
	(void)state;

	memset(&req, 0, sizeof(req));
	req.msg_type = SCEP_MSG_PKCSREQ;
	req.txid = txid;
	memcpy(req.nonce, nonce, 16);
	req.signer_cert = self;
	req.signer_key = key;
	req.md = EVP_sha256();
	req.recipient = ra;
	req.cipher = EVP_aes_128_cbc();
	req.inner = csr;
	req.inner_len = sizeof(csr);
	assert_int_equal(scep_req_build(&req, &der, &len), 0);

	p = der;
	sd = d2i_CMS_ContentInfo(NULL, &p, (long)len);
	assert_non_null(sd);
	sk_X509_push(certs, self);
	assert_int_equal(CMS_verify(sd, certs, NULL, NULL, out,
	                            CMS_NOINTERN | CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY),
	                 1);
	n = BIO_get_mem_data(out, &data);
	p = (unsigned char *)data;
	env = d2i_CMS_ContentInfo(NULL, &p, n);
	assert_non_null(env);
	assert_int_equal(CMS_decrypt(env, ra_key, ra, NULL, plain, CMS_BINARY), 1);
	n = BIO_get_mem_data(plain, &data);
	assert_int_equal((size_t)n, sizeof(csr));
	assert_memory_equal(data, csr, sizeof(csr));

	/* single DES is never sent */
	OPENSSL_free(der);
	der = NULL;
	req.cipher = EVP_des_cbc();
	assert_int_not_equal(scep_req_build(&req, &der, &len), 0);
	assert_null(der);

	CMS_ContentInfo_free(sd);
	CMS_ContentInfo_free(env);
	BIO_free(out);
	BIO_free(plain);
	sk_X509_free(certs);
	X509_free(self);
	X509_free(ra);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ra_key);
}

static void
test_issuer_and_subject(void **state)
{
	X509 *ca = load_cert("ca.der"), *iss = load_cert("issued.der");
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	X509_NAME *a, *b;
	(void)state;

	assert_int_equal(scep_issuer_and_subject(X509_get_subject_name(ca),
	                                         X509_get_subject_name(iss), &der, &len),
	                 0);
	/* SEQUENCE { Name, Name }: parse both back and compare */
	assert_int_equal(der[0], 0x30);
	p = der + (der[1] < 0x80 ? 2 : 2 + (der[1] & 0x7f));
	a = d2i_X509_NAME(NULL, &p, (long)(len - (size_t)(p - der)));
	assert_non_null(a);
	b = d2i_X509_NAME(NULL, &p, (long)(len - (size_t)(p - der)));
	assert_non_null(b);
	assert_ptr_equal(p, der + len);
	assert_int_equal(X509_NAME_cmp(a, X509_get_subject_name(ca)), 0);
	assert_int_equal(X509_NAME_cmp(b, X509_get_subject_name(iss)), 0);
	X509_NAME_free(a);
	X509_NAME_free(b);
	OPENSSL_free(der);
	X509_free(ca);
	X509_free(iss);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_caps_scepserver),
	    cmocka_unit_test(test_caps_mixed_case_crlf_unknown),
	    cmocka_unit_test(test_caps_empty_and_des3),
	    cmocka_unit_test(test_ca_only),
	    cmocka_unit_test(test_ra_split),
	    cmocka_unit_test(test_ra_both_and_intermediate),
	    cmocka_unit_test(test_cacert_garbage),
	    cmocka_unit_test(test_success_aes),
	    cmocka_unit_test(test_success_des3_and_des),
	    cmocka_unit_test(test_success_sha1_signed_by_ca),
	    cmocka_unit_test(test_failure_and_pending),
	    cmocka_unit_test(test_hostile_replies),
	    cmocka_unit_test(test_truncated_every_length),
	    cmocka_unit_test(test_success_without_or_with_wrong_cert),
	    cmocka_unit_test(test_request_roundtrip),
	    cmocka_unit_test(test_issuer_and_subject),
	};
	return cmocka_run_group_tests_name("scep", tests, setup, teardown);
}
