/*
 * test_scep_env.c: a CertRep's envelope, taken apart in the network process
 * (scep_env_parse) and decrypted in the token's (scep_env_open), against
 * bare envelopes made by the independent generator (tests/data/gen-fixtures.py:
 * Python, asn1crypto + cryptography; `--envelopes-only` remakes just these).
 * Every fixture is opened both ways, in one process (scep_rep_open) and in two
 * steps over the network process's real messages, and both must agree; the
 * answer's reader is then fed answers no honest network process writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "err.h"
#include "log.h"
#include "netproc_parse.h"
#include "netproc_wire.h"
#include "scep.h"
#include "capture.h"
#include "scep_fixture.h"
#include "secret.h"

static EVP_PKEY *key;
static X509 *self;

static int
setup(void **state)
{
	(void)state;
	log_set_level(getenv("P11E_TEST_VERBOSE") ? LOG_LVL_DEBUG : -1);
	assert_int_equal(scep_init(), 0);
	key = load_key("client.key.pem");
	self = load_cert("client-selfsigned.der");
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(key);
	X509_free(self);
	scep_cleanup();
	return 0;
}

/*
 * The envelope der opened as the two processes do it between them: the request
 * written and read back as netproc_serve.c reads it, scep_env_parse there, its
 * answer written and read back as netproc.c reads it, then scep_env_open.
 */
static int
open_in_two_steps(const unsigned char *der, size_t len, unsigned char **plain, size_t *plain_len,
                  int *cipher)
{
	struct wire_wbuf req = {NULL, 0, 0, 0}, ans = {NULL, 0, 0, 0};
	struct wire_rbuf r;
	struct scep_env *env = NULL, *got_env = NULL;
	const unsigned char *d = NULL;
	X509 *to = NULL;
	size_t n = 0;
	char *err = NULL;
	int rc, got = 0;

	*plain = NULL;
	*cipher = NID_undef;
	netproc_env_request_write(&req, der, len, self);
	assert_false(req.oom);
	r = (struct wire_rbuf){req.p, req.len, 0, 0};
	assert_int_equal(netproc_env_request_read(&r, &d, &n, &to), 0);
	assert_int_equal(n, len);
	assert_int_equal(X509_cmp(to, self), 0);
	rc = scep_env_parse(d, n, to, &env);
	netproc_env_answer_write(&ans, rc, rc != 0 ? "refused" : NULL, env);
	assert_false(ans.oom);
	assert_int_equal(netproc_env_answer_read(ans.p, ans.len, len, &got, &err, &got_env), 0);
	assert_int_equal(got, rc);
	if (rc == 0) {
		assert_int_equal(got_env->cipher_nid, env->cipher_nid);
		assert_int_equal(got_env->data_len, env->data_len);
		*cipher = got_env->cipher_nid;
		rc = scep_env_open(got_env, key, plain, plain_len);
	} else {
		assert_null(got_env);
		assert_string_equal(err, "refused");
	}
	wire_w_free(&req);
	wire_w_free(&ans);
	secret_wipe_free(err);
	scep_env_free(env);
	scep_env_free(got_env);
	X509_free(to);
	return rc;
}

/*
 * Opens fixture name both ways; they must agree on the error, the cipher and the
 * content. Returns the error; *why is the last error line of the one-process way.
 */
static int
open_fixture(const char *name, int *cipher, char *why, size_t why_len)
{
	size_t len, n1 = 0, n2 = 0;
	unsigned char *d = load(name, &len), *p1 = NULL, *p2 = NULL;
	struct scep_rep rep;
	int c1 = -1, c2 = -1, r1, r2;

	memset(&rep, 0, sizeof(rep));
	rep.envelope = d;
	rep.envelope_len = len;
	log_clear_last_error();
	r1 = scep_rep_open(&rep, key, self, &p1, &n1, &c1);
	snprintf(why, why_len, "%s", log_last_error());
	r2 = open_in_two_steps(d, len, &p2, &n2, &c2);
	assert_int_equal(r2, r1);
	if (r1 == 0) {
		assert_int_equal(c2, c1);
		assert_int_equal(n2, n1);
		assert_memory_equal(p2, p1, n1);
	} else {
		assert_null(p1);
		assert_null(p2);
	}
	*cipher = c1;
	OPENSSL_free(p1);
	OPENSSL_free(p2);
	free(d);
	return r1;
}

/* What every cipher's envelope holds: the bundle [issued, ca]. */
static void
assert_bundle(const char *name, int want_cipher)
{
	size_t len, n = 0;
	unsigned char *d = load(name, &len), *plain = NULL;
	struct scep_rep rep;
	STACK_OF(X509) *certs = NULL;
	X509 *issued = load_cert("issued.der"), *ca = load_cert("ca.der");
	int cipher = -1;
	char why[256];

	assert_int_equal(open_fixture(name, &cipher, why, sizeof(why)), 0);
	assert_int_equal(cipher, want_cipher);
	memset(&rep, 0, sizeof(rep));
	rep.envelope = d;
	rep.envelope_len = len;
	assert_int_equal(scep_rep_open(&rep, key, self, &plain, &n, &cipher), 0);
	assert_int_equal(scep_rep_certs(plain, n, &certs), 0);
	assert_int_equal(sk_X509_num(certs), 2);
	assert_int_equal(X509_cmp(sk_X509_value(certs, 0), issued), 0);
	assert_int_equal(X509_cmp(sk_X509_value(certs, 1), ca), 0);
	sk_X509_pop_free(certs, X509_free);
	OPENSSL_free(plain);
	X509_free(issued);
	X509_free(ca);
	free(d);
}

static void
test_every_cipher(void **state)
{
	(void)state;
	assert_bundle("envelope-aes128.der", NID_aes_128_cbc);
	assert_bundle("envelope-aes192.der", NID_aes_192_cbc);
	assert_bundle("envelope-aes256.der", NID_aes_256_cbc);
	assert_bundle("envelope-des3.der", NID_des_ede3_cbc);
	assert_bundle("envelope-des.der", NID_des_cbc);
	/* a recipient that is not us first: ours is found among them */
	assert_bundle("envelope-two-recipients.der", NID_aes_128_cbc);
	/* BER of indefinite lengths, the content in pieces: as streaming encoders write it */
	assert_bundle("envelope-aes128-ber.der", NID_aes_128_cbc);
}

/* Fixture name is refused with error want, its message holding text. */
static void
refused(const char *name, int want, const char *text)
{
	struct capture cap;
	char why[256], out[4096];
	int cipher, r;

	/* the messages are the point here: at the error level, stderr kept apart */
	log_set_level(LOG_LVL_ERROR);
	capture_begin(&cap);
	r = open_fixture(name, &cipher, why, sizeof(why));
	capture_end(&cap, out, sizeof(out));
	log_set_level(getenv("P11E_TEST_VERBOSE") ? LOG_LVL_DEBUG : -1);
	if (r != want)
		fail_msg("%s: error %d, want %d ('%s')", name, r, want, why);
	if (strstr(why, text) == NULL)
		fail_msg("%s: '%s' does not say '%s'", name, why, text);
}

static void
test_hostile_envelopes(void **state)
{
	(void)state;
	refused("envelope-other-recipient.der", P11E_ERR_VERIFY,
	        "not addressed to the certificate");
	refused("envelope-oaep.der", P11E_ERR_MALFORMED, "rsaEncryption");
	refused("envelope-aes128-ofb.der", P11E_ERR_MALFORMED, "content cipher AES-128-OFB");
	refused("envelope-short-iv.der", P11E_ERR_MALFORMED, "not a 16-byte IV");
	refused("envelope-partial-block.der", P11E_ERR_MALFORMED, "whole number of cipher blocks");
	refused("envelope-no-content.der", P11E_ERR_MALFORMED, "missing or empty");
	refused("envelope-key-too-short.der", P11E_ERR_VERIFY, "AES-256-CBC takes 32");
	refused("envelope-cut-padding.der", P11E_ERR_VERIFY, "cannot decrypt the CertRep envelope");
	refused("envelope-trailing.der", P11E_ERR_MALFORMED, "not a valid EnvelopedData");
}

/* Every prefix of a good envelope is refused, the same way by both. */
static void
test_truncated(void **state)
{
	size_t len, n, k = 0;
	unsigned char *d = load("envelope-aes128.der", &len), *p1 = NULL, *p2 = NULL;
	struct scep_rep rep;
	int c = -1;
	(void)state;

	for (n = 0; n < len; n += (n < 64 ? 1 : 37)) {
		memset(&rep, 0, sizeof(rep));
		rep.envelope = d;
		rep.envelope_len = n;
		assert_int_not_equal(scep_rep_open(&rep, key, self, &p1, &k, &c), 0);
		assert_int_not_equal(open_in_two_steps(d, n, &p2, &k, &c), 0);
		assert_null(p1);
		assert_null(p2);
	}
	free(d);
}

/* An answer whose fields are written by hand: cipher sn, an IV, key and data lengths. */
static int
read_forged(const char *sn, size_t iv_len, size_t key_len, size_t data_len, int extra,
            size_t max_data)
{
	struct wire_wbuf w = {NULL, 0, 0, 0};
	struct scep_env *env = NULL;
	unsigned char *buf = calloc(1, 4096);
	char *err = NULL;
	int rc = -5, got;

	assert_non_null(buf);
	wire_w_num(&w, 0);
	wire_w_str(&w, NULL);
	wire_w_str(&w, sn);
	wire_w_bytes(&w, buf, iv_len);
	wire_w_bytes(&w, buf, key_len);
	wire_w_bytes(&w, buf, data_len);
	if (extra)
		wire_w_num(&w, 1);
	assert_false(w.oom);
	got = netproc_env_answer_read(w.p, w.len, max_data, &rc, &err, &env);
	if (got != 0) {
		assert_null(env);
		assert_null(err);
	} else {
		assert_int_equal(rc, 0);
		assert_non_null(env);
		assert_int_equal(env->data_len, data_len);
	}
	scep_env_free(env);
	wire_w_free(&w);
	free(buf);
	return got;
}

static void
test_answer_read_as_untrusted(void **state)
{
	(void)state;
	assert_int_equal(read_forged("AES-128-CBC", 16, 256, 64, 0, 4096), 0);
	assert_int_equal(read_forged("DES-CBC", 8, 256, 8, 0, 4096), 0);
	/* a cipher no envelope may use, or none */
	assert_int_equal(read_forged("AES-128-OFB", 16, 256, 64, 0, 4096), -1);
	assert_int_equal(read_forged("AES-128-GCM", 12, 256, 64, 0, 4096), -1);
	assert_int_equal(read_forged("nonsense", 16, 256, 64, 0, 4096), -1);
	assert_int_equal(read_forged(NULL, 16, 256, 64, 0, 4096), -1);
	/* an IV of another length than the cipher's */
	assert_int_equal(read_forged("AES-256-CBC", 8, 256, 64, 0, 4096), -1);
	assert_int_equal(read_forged("DES-EDE3-CBC", 16, 256, 64, 0, 4096), -1);
	/* no key, or one longer than any RSA key we use */
	assert_int_equal(read_forged("AES-128-CBC", 16, 0, 64, 0, 4096), -1);
	assert_int_equal(read_forged("AES-128-CBC", 16, SCEP_ENV_KEY_MAX + 1, 64, 0, 4096), -1);
	assert_int_equal(read_forged("AES-128-CBC", 16, SCEP_ENV_KEY_MAX, 64, 0, 4096), 0);
	/* no content, a partial block, more than the envelope held */
	assert_int_equal(read_forged("AES-128-CBC", 16, 256, 0, 0, 4096), -1);
	assert_int_equal(read_forged("AES-128-CBC", 16, 256, 63, 0, 4096), -1);
	assert_int_equal(read_forged("AES-128-CBC", 16, 256, 64, 0, 48), -1);
	/* a field after the last */
	assert_int_equal(read_forged("AES-128-CBC", 16, 256, 64, 1, 4096), -1);
}

/* scep_env_open checks what it is handed even from a reader that let it through. */
static void
test_open_rejects_inconsistent_fields(void **state)
{
	struct scep_env env;
	unsigned char k[256] = {0}, data[32] = {0}, *plain = NULL;
	size_t n = 0;
	(void)state;

	memset(&env, 0, sizeof(env));
	env.cipher_nid = NID_aes_128_cbc;
	env.iv_len = 8; /* AES's block is 16 */
	env.key = k;
	env.key_len = sizeof(k);
	env.data = data;
	env.data_len = sizeof(data);
	assert_int_equal(scep_env_open(&env, key, &plain, &n), P11E_ERR_MALFORMED);
	env.iv_len = 16;
	env.data_len = 17;
	assert_int_equal(scep_env_open(&env, key, &plain, &n), P11E_ERR_MALFORMED);
	/* consistent, but a key that is no PKCS#1 block for our key */
	env.data_len = 32;
	assert_int_equal(scep_env_open(&env, key, &plain, &n), P11E_ERR_VERIFY);
	assert_null(plain);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_cipher),
	    cmocka_unit_test(test_hostile_envelopes),
	    cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_answer_read_as_untrusted),
	    cmocka_unit_test(test_open_rejects_inconsistent_fields),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
