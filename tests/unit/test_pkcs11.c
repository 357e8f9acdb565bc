/*
 * test_pkcs11.c: tokens/ against a real SoftHSM token made for the test in a
 * mkdtemp directory (softhsm2-util). Skips only when SoftHSM is not installed.
 * With OpenSC's pkcs11-spy present, also counts the PKCS#11 calls (one
 * C_Initialize, C_OpenSession, C_Login and C_Finalize for everything, private
 * key operations included); with pkcs11-tool present, checks how it sees the
 * generated keys.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/ec.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "log.h"
#include "p11int.h" /* white box: test_keygen_errors, test_keygen_ids, test_keygen_cut_between_ids */
#include "tok.h"
#include "tokproc.h" /* white box: test_token_process (its pid) */

#define SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"
#define SPY "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so"
#define UTIL "softhsm2-util"
#define PIN "5678"

static char dir[64];
static int have_softhsm, have_spy;

/* What tok_key_evp allows the bridge's own tests, which are not about its budget: the
 * most the token process grants at once. */
#define ANY_S 3
#define ANY_D 1

/* pkcs11-spy's own leaks (it never frees what it logs) under LeakSanitizer. */
const char *__lsan_default_suppressions(void);
const char *
__lsan_default_suppressions(void)
{
	return "leak:pkcs11-spy.so\n";
}

static int
run(const char *cmd)
{
	char buf[1024];

	snprintf(buf, sizeof(buf), "%s >/dev/null 2>&1", cmd);
	return system(buf);
}

static const char *
spy_log(void)
{
	static char path[128];

	snprintf(path, sizeof(path), "%s/spy.log", dir);
	return path;
}

static int
group_setup(void **state)
{
	char path[128], cmd[512];
	FILE *f;

	(void)state;
	if (access(SOFTHSM, R_OK) != 0)
		return 0;
	strcpy(dir, "/tmp/p11e-test-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/tokens", dir);
	if (mkdir(path, 0700) != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/softhsm2.conf", dir);
	if ((f = fopen(path, "w")) == NULL)
		return -1;
	fprintf(f,
	        "directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
	        "log.level = ERROR\n",
	        dir);
	fclose(f);
	setenv("SOFTHSM2_CONF", path, 1);
	snprintf(cmd, sizeof(cmd), UTIL " --init-token --free --label t1 --so-pin 1234 --pin " PIN);
	if (run(cmd) != 0)
		return -1;
	have_softhsm = 1;
	log_set_level(LOG_LVL_DEBUG);
	if (access(SPY, R_OK) == 0) {
		setenv("PKCS11SPY", SOFTHSM, 1);
		setenv("PKCS11SPY_OUTPUT", spy_log(), 1);
		have_spy = dlopen(SPY, RTLD_NOW | RTLD_NODELETE) != NULL;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	if (dir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		run(cmd);
	}
	return 0;
}

/* stderr to a file while a call runs, to check the messages. */
static int saved_fd = -1;

static void
cap_begin(void)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/stderr", dir);
	fflush(stderr);
	saved_fd = dup(2);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0 && saved_fd >= 0);
	dup2(fd, 2);
	close(fd);
}

static char *
cap_end(void)
{
	static char buf[8192];
	char path[128];
	FILE *f;
	size_t n;

	fflush(stderr);
	dup2(saved_fd, 2);
	close(saved_fd);
	snprintf(path, sizeof(path), "%s/stderr", dir);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	fputs(buf, stderr);
	return buf;
}

/*
 * pkcs11-spy reads its environment once and leaks a little when unloaded:
 * group_setup loads it for good (RTLD_NODELETE) with one log for the whole
 * run, and the tests count calls by difference. NULL when absent.
 */
static const char *
spy_module(void)
{
	return have_spy ? SPY : SOFTHSM;
}

static int
spy_count(const char *fn)
{
	char line[512], pat[64];
	FILE *f;
	int n = 0;

	snprintf(pat, sizeof(pat), ": %s\n", fn);
	if (!have_spy || (f = fopen(spy_log(), "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *p = strchr(line, ':');
		if (line[0] >= '0' && line[0] <= '9' && p != NULL && strcmp(p, pat) == 0)
			n++;
	}
	fclose(f);
	return n;
}

static void
open_t1(const char *module, struct tok **t)
{
	struct tok_uri u;

	memset(&u, 0, sizeof(u));
	u.token = "t1";
	assert_int_equal(tok_open(module, &u, NULL, t), 0);
	assert_string_equal(tok_get_info(*t)->label, "t1");
	assert_string_equal(tok_get_info(*t)->model, "SoftHSM v2");
}

static void
open_login(struct tok **t)
{
	open_t1(SOFTHSM, t);
	assert_int_equal(tok_login(*t, PIN, 0), 0);
}

/* White box: token t1 opened and logged in in this process, as the token process does. */
static void
p11_open_login(struct p11 **p)
{
	struct tok_uri u;

	memset(&u, 0, sizeof(u));
	u.token = "t1";
	assert_int_equal(p11_open(SOFTHSM, &u, p), 0);
	assert_int_equal(p11_login(*p, PIN, 0), 0);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static struct tok_key *
gen(struct tok *t, enum tok_key_type type, int bits, const char *label)
{
	struct tok_keyspec spec = {type, bits, 0};
	struct tok_key *k = NULL;
	unsigned char id[20];
	double t0 = now_ms();

	assert_int_equal(tok_generate_key(t, NULL, &spec, label, &k), 0);
	print_message("keygen %s-%d: %.1f ms\n", type == TOK_KEY_RSA ? "RSA" : "EC", bits,
	              now_ms() - t0);
	assert_non_null(k->pub);
	assert_int_equal(EVP_PKEY_get_bits(k->pub), bits);
	assert_int_equal(EVP_PKEY_get_id(k->pub), type == TOK_KEY_RSA ? EVP_PKEY_RSA : EVP_PKEY_EC);
	assert_int_equal(tok_key_id_for(k->pub, id), 0);
	assert_int_equal(k->id_len, 20);
	assert_memory_equal(k->id, id, 20);
	assert_true(k->priv_handle != 0 && k->pub_handle != 0);
	return k;
}

/* A self-signed certificate for k, signed on the token. */
static X509 *
self_signed(struct tok_key *k, EVP_PKEY *priv, int days)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	assert_non_null(x);
	assert_non_null(n);
	assert_true(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	                                       (const unsigned char *)k->label, -1, -1, 0));
	assert_true(X509_set_version(x, 2));
	assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), 1000 + days));
	assert_true(X509_set_subject_name(x, n) && X509_set_issuer_name(x, n));
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL));
	assert_true(X509_set_pubkey(x, k->pub));
	/* OpenSSL's "hash" key identifier is RFC 5280's method (1), as CKA_ID */
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
	assert_non_null(ext);
	assert_true(X509_add_ext(x, ext, -1));
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(x, priv, EVP_sha256()) > 0);
	assert_int_equal(ASN1_STRING_length(X509_get0_subject_key_id(x)), 20);
	assert_memory_equal(ASN1_STRING_get0_data(X509_get0_subject_key_id(x)), k->id, 20);
	assert_int_equal(X509_verify(x, k->pub), 1);
	X509_NAME_free(n);
	return x;
}

/* self_signed with a subjectAltName of count DNS names (about 26 bytes each). */
static X509 *
self_signed_sans(struct tok_key *k, EVP_PKEY *priv, int days, int count)
{
	X509 *x = self_signed(k, priv, days), *y;
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	unsigned char *der = NULL;
	const unsigned char *p;
	char name[64];
	int i, n;

	assert_non_null(gens);
	for (i = 0; i < count; i++) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();

		snprintf(name, sizeof(name), "host-%04d.example.com", i);
		assert_true(g != NULL && s != NULL && ASN1_STRING_set(s, name, -1));
		GENERAL_NAME_set0_value(g, GEN_DNS, s);
		assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
	}
	assert_true(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT));
	GENERAL_NAMES_free(gens);
	assert_true(X509_sign(x, priv, EVP_sha256()) > 0);
	/* A fresh object: x's cached hash (X509_cmp's) is still the first signature's. */
	assert_true((n = i2d_X509(x, &der)) > 0);
	p = der;
	assert_non_null(y = d2i_X509(NULL, &p, n));
	OPENSSL_free(der);
	X509_free(x);
	return y;
}

/* A CSR signed on the token with md, verified with the public key. */
static void
csr_sign_verify_md(struct tok_key *k, EVP_PKEY *priv, const EVP_MD *md)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *n = X509_NAME_new();
	double t0;

	assert_true(X509_NAME_add_entry_by_txt(
	    n, "CN", MBSTRING_ASC, (const unsigned char *)"host.example.com", -1, -1, 0));
	assert_true(X509_REQ_set_subject_name(req, n));
	assert_true(X509_REQ_set_pubkey(req, k->pub));
	t0 = now_ms();
	assert_true(X509_REQ_sign(req, priv, md) > 0);
	print_message("CSR sign %s %s: %.2f ms\n", k->label, EVP_MD_get0_name(md), now_ms() - t0);
	assert_int_equal(X509_REQ_verify(req, k->pub), 1);
	X509_NAME_free(n);
	X509_REQ_free(req);
}

static void
csr_sign_verify(struct tok_key *k, EVP_PKEY *priv)
{
	csr_sign_verify_md(k, priv, EVP_sha256());
}

/* CMS SignedData (CMS_add1_signer, CMS_final) signed on the token with md, then verified. */
static void
cms_sign_verify(X509 *cert, EVP_PKEY *priv, const EVP_MD *md)
{
	static const char data[] = "a SCEP pkiMessage would go here";
	CMS_ContentInfo *cms = NULL;
	BIO *in = BIO_new_mem_buf(data, sizeof(data)), *out = BIO_new(BIO_s_mem());
	X509_STORE *st = X509_STORE_new();
	char *p = NULL;
	long len;

	cms = CMS_sign(NULL, NULL, NULL, NULL, CMS_PARTIAL | CMS_BINARY);
	assert_non_null(cms);
	assert_non_null(CMS_add1_signer(cms, cert, priv, md, CMS_BINARY));
	assert_int_equal(CMS_final(cms, in, NULL, CMS_BINARY), 1);
	assert_true(X509_STORE_add_cert(st, cert));
	assert_int_equal(CMS_verify(cms, NULL, st, NULL, out, CMS_BINARY), 1);
	len = BIO_get_mem_data(out, &p);
	assert_int_equal(len, sizeof(data));
	assert_memory_equal(p, data, sizeof(data));
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	BIO_free(out);
	X509_STORE_free(st);
}

/* CMS EnvelopedData for cert (RSA key transport), decrypted on the token. */
static void
cms_decrypt_check(X509 *cert, EVP_PKEY *priv)
{
	static const char data[] = "a CertRep's degenerate PKCS#7 would go here";
	STACK_OF(X509) *certs = sk_X509_new_null();
	CMS_ContentInfo *cms = NULL;
	BIO *in = BIO_new_mem_buf(data, sizeof(data)), *out = BIO_new(BIO_s_mem());
	char *p = NULL;
	long len;

	assert_true(sk_X509_push(certs, cert) > 0);
	cms = CMS_encrypt(certs, in, EVP_aes_128_cbc(), CMS_BINARY);
	assert_non_null(cms);
	assert_int_equal(CMS_decrypt(cms, priv, cert, NULL, out, CMS_BINARY), 1);
	len = BIO_get_mem_data(out, &p);
	assert_int_equal(len, sizeof(data));
	assert_memory_equal(p, data, sizeof(data));
	sk_X509_free(certs);
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	BIO_free(out);
}

static void
test_open_errors(void **state)
{
	struct tok_uri u;
	struct tok *t = NULL;
	const char *msg;

	(void)state;
	if (!have_softhsm)
		skip();
	memset(&u, 0, sizeof(u));
	u.token = "nosuch";
	cap_begin();
	assert_int_equal(tok_open(SOFTHSM, &u, NULL, &t), P11E_ERR_TOKEN);
	msg = cap_end();
	assert_null(t);
	assert_non_null(strstr(msg, "no token matches pkcs11:token=nosuch ("));
	assert_non_null(strstr(msg, "token 't1'"));
	assert_non_null(strstr(msg, "uninitialised token in slot"));
	assert_non_null(strstr(msg, "check [token] uri"));

	cap_begin();
	assert_int_equal(tok_open("/nonexistent/libx.so", &u, NULL, &t), P11E_ERR_CONFIG);
	msg = cap_end();
	assert_non_null(strstr(msg, "cannot load PKCS#11 module /nonexistent/libx.so: "));

	cap_begin();
	assert_int_equal(tok_open("/lib/x86_64-linux-gnu/libc.so.6", &u, NULL, &t),
	                 P11E_ERR_CONFIG);
	msg = cap_end();
	assert_non_null(strstr(msg, "not a PKCS#11 module"));
	tok_close(NULL);
}

static void
test_login_wrong_pin(void **state)
{
	struct tok *t = NULL;
	const char *msg;
	int logins = spy_count("C_Login"), fins = spy_count("C_Finalize");

	(void)state;
	if (!have_softhsm)
		skip();
	open_t1(spy_module(), &t);
	cap_begin();
	assert_int_equal(tok_login(t, "0000", 0), P11E_ERR_PIN);
	msg = cap_end();
	assert_non_null(strstr(msg, "wrong PIN for token 't1'"));
	assert_non_null(strstr(msg, "not retried"));
	assert_null(strstr(msg, "0000"));
	cap_begin();
	assert_int_equal(tok_login(t, PIN, 0), P11E_ERR_PIN);
	msg = cap_end();
	assert_non_null(strstr(msg, "not retried"));
	tok_close(t);
	if (have_spy) {
		assert_int_equal(spy_count("C_Login") - logins, 1);
		assert_int_equal(spy_count("C_Finalize") - fins, 1);
	}
}

static void
test_rsa_key(void **state)
{
	struct tok *t = NULL;
	struct tok_key *k = NULL, **ks = NULL;
	struct tok_key_attrs a;
	EVP_PKEY *priv = NULL;
	X509 *cert = NULL, *found = NULL;
	size_t n = 0;
	char *uri = NULL;

	(void)state;
	if (!have_softhsm)
		skip();
	open_login(&t);
	k = gen(t, TOK_KEY_RSA, 2048, "rsa1");

	assert_int_equal(tok_key_attrs(t, k, &a), 0);
	assert_int_equal(a.sensitive, 1);
	assert_int_equal(a.always_sensitive, 1);
	assert_int_equal(a.extractable, 0);
	assert_int_equal(a.never_extractable, 1);
	assert_int_equal(a.local, 1);
	assert_int_equal(a.priv_token, 1);
	assert_int_equal(a.priv_private, 1);

	assert_int_equal(tok_find_keys(t, "rsa1", &ks, &n), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(ks[0]->id, k->id, 20);
	assert_int_equal(ks[0]->priv_handle, k->priv_handle);
	assert_int_equal(ks[0]->type, TOK_KEY_RSA);
	assert_int_equal(EVP_PKEY_eq(ks[0]->pub, k->pub), 1);
	tok_keys_free(ks, n);

	assert_int_equal(tok_key_evp(t, k, ANY_S, ANY_D, &priv), 0);
	csr_sign_verify(k, priv);
	cert = self_signed(k, priv, 30);

	assert_int_equal(tok_find_cert(t, k, &found), P11E_ERR_NOTFOUND);
	assert_int_equal(tok_store_cert(t, k, cert), 0);
	assert_int_equal(tok_find_cert(t, k, &found), 0);
	assert_int_equal(X509_cmp(found, cert), 0);
	X509_free(found);

	assert_int_equal(tok_object_uri(t, k, "private", &uri), 0);
	print_message("%s\n", uri);
	assert_true(strncmp(uri, "pkcs11:token=t1;manufacturer=SoftHSM%20project;serial=",
	                    strlen("pkcs11:token=t1;manufacturer=SoftHSM%20project;serial=")) == 0);
	assert_non_null(strstr(uri, ";model=SoftHSM%20v2;object=rsa1;id=%"));
	assert_non_null(strstr(uri, ";type=private"));
	free(uri);

	EVP_PKEY_free(priv);
	X509_free(cert);
	tok_key_free(k);
	tok_close(t);
}

/*
 * Through pkcs11-spy: one client of the module. One C_Initialize, one
 * session, one C_Login and one C_Finalize for keygen, signatures and
 * decryption; the EVP_PKEY reads no slot, token or object list: it signs
 * with the handle the key was generated under.
 */
static void
test_spy_counts(void **state)
{
	struct tok *t = NULL;
	struct tok_key *k = NULL;
	EVP_PKEY *priv = NULL;
	X509 *cert = NULL;
	int logins = spy_count("C_Login"), fins = spy_count("C_Finalize");
	int inits = spy_count("C_Initialize"), sessions = spy_count("C_OpenSession");
	int closeall = spy_count("C_CloseAllSessions");
	int slots, infos, finds, signs, decrypts;

	(void)state;
	if (!have_softhsm || !have_spy)
		skip();
	open_t1(SPY, &t);
	assert_int_equal(tok_login(t, PIN, 0), 0);
	assert_int_equal(tok_login(t, PIN, 0), 0);
	k = gen(t, TOK_KEY_RSA, 2048, "spy1");
	slots = spy_count("C_GetSlotList") + spy_count("C_GetSlotInfo");
	infos = spy_count("C_GetTokenInfo");
	finds = spy_count("C_FindObjectsInit");
	signs = spy_count("C_Sign");
	decrypts = spy_count("C_Decrypt");
	assert_int_equal(tok_key_evp(t, k, ANY_S, ANY_D, &priv), 0);
	csr_sign_verify(k, priv);
	cert = self_signed(k, priv, 30);
	cms_decrypt_check(cert, priv);
	assert_int_equal(spy_count("C_GetSlotList") + spy_count("C_GetSlotInfo"), slots);
	assert_int_equal(spy_count("C_GetTokenInfo"), infos);
	assert_int_equal(spy_count("C_FindObjectsInit"), finds);
	assert_int_equal(spy_count("C_Sign") - signs, 2);
	assert_int_equal(spy_count("C_Decrypt") - decrypts, 1);
	X509_free(cert);
	EVP_PKEY_free(priv);
	tok_key_free(k);
	tok_close(t);
	assert_int_equal(spy_count("C_Initialize") - inits, 1);
	assert_int_equal(spy_count("C_OpenSession") - sessions, 1);
	assert_int_equal(spy_count("C_Login") - logins, 1);
	assert_int_equal(spy_count("C_Finalize") - fins, 1);
	assert_int_equal(spy_count("C_CloseAllSessions") - closeall, 0);
}

/* One signature (SHA-256 over a short text) with priv, which pub verifies unless NULL;
 * whether it was made (and verified). */
static int
signs_for(EVP_PKEY *priv, EVP_PKEY *pub)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[512];
	size_t len = sizeof(sig);
	int ok;

	assert_non_null(ctx);
	ok = EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, priv) == 1 &&
	     EVP_DigestSign(ctx, sig, &len, (const unsigned char *)"x", 1) == 1 &&
	     (pub == NULL || (EVP_MD_CTX_reset(ctx) == 1 &&
	                      EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub) == 1 &&
	                      EVP_DigestVerify(ctx, sig, len, (const unsigned char *)"x", 1) == 1));
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

static int
sign_once(EVP_PKEY *priv)
{
	return signs_for(priv, NULL);
}

/* A 16-byte key encrypted to pub (PKCS#1 v1.5) and decrypted with priv; whether it came back. */
static int
decrypt_once(EVP_PKEY *pub, EVP_PKEY *priv)
{
	unsigned char cek[16] = "0123456789abcdef", enc[512], dec[512];
	size_t elen = sizeof(enc), dlen = sizeof(dec);
	EVP_PKEY_CTX *e = EVP_PKEY_CTX_new(pub, NULL), *d = EVP_PKEY_CTX_new(priv, NULL);
	int ok;

	assert_non_null(e);
	assert_non_null(d);
	assert_int_equal(EVP_PKEY_encrypt_init(e), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(e, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_encrypt(e, enc, &elen, cek, sizeof(cek)), 1);
	ok = EVP_PKEY_decrypt_init(d) == 1 &&
	     EVP_PKEY_CTX_set_rsa_padding(d, RSA_PKCS1_PADDING) == 1 &&
	     EVP_PKEY_decrypt(d, dec, &dlen, enc, elen) == 1 && dlen == sizeof(cek) &&
	     memcmp(dec, cek, sizeof(cek)) == 0;
	EVP_PKEY_CTX_free(e);
	EVP_PKEY_CTX_free(d);
	ERR_clear_error();
	return ok;
}

/*
 * A token key's EVP_PKEY does what its caller said it needs and no more: the
 * signature or decryption after is refused, with a message, before it reaches
 * the module (the spy counts no C_Sign or C_Decrypt for it). What is left of
 * one kind does not carry over to the other.
 */
static void
test_evp_budget(void **state)
{
	struct tok *t = NULL;
	struct tok_key *k, *e;
	EVP_PKEY *priv = NULL, *epriv = NULL, *none = NULL;
	int signs, decrypts;

	(void)state;
	if (!have_softhsm || !have_spy)
		skip();
	open_t1(SPY, &t);
	assert_int_equal(tok_login(t, PIN, 0), 0);
	k = gen(t, TOK_KEY_RSA, 2048, "budget-rsa");
	e = gen(t, TOK_KEY_EC, 256, "budget-ec");
	signs = spy_count("C_Sign");
	decrypts = spy_count("C_Decrypt");
	assert_int_equal(tok_key_evp(t, k, 2, 1, &priv), 0);
	assert_int_equal(tok_key_evp(t, e, 1, 0, &epriv), 0);
	assert_int_equal(tok_key_evp(t, k, 0, 0, &none), 0);

	assert_true(sign_once(priv));
	assert_true(decrypt_once(k->pub, priv));
	assert_false(decrypt_once(k->pub, priv));
	assert_non_null(strstr(log_last_error(), "private key 'budget-rsa': a decryption more "
	                                         "than the 1 this use of it needs: refused"));
	assert_true(sign_once(priv)); /* the second of two, after the refused decryption */
	assert_false(sign_once(priv));
	assert_non_null(strstr(log_last_error(), "a signature more than the 2 this use"));

	assert_true(sign_once(epriv));
	assert_false(sign_once(epriv));
	assert_non_null(strstr(log_last_error(), "private key 'budget-ec': a signature more"));

	/* an EVP_PKEY allowed nothing (an EC key's while a transient key carries the
	 * exchange) reaches the token for nothing */
	assert_false(sign_once(none));
	assert_false(decrypt_once(k->pub, none));

	assert_int_equal(spy_count("C_Sign") - signs, 3);
	assert_int_equal(spy_count("C_Decrypt") - decrypts, 1);
	EVP_PKEY_free(priv);
	EVP_PKEY_free(epriv);
	EVP_PKEY_free(none);
	tok_key_free(k);
	tok_key_free(e);
	tok_close(t);
}

/* Whether /proc/PID/maps (0: this process) maps a file whose path contains what. */
static int
maps_has(pid_t pid, const char *what)
{
	char path[64], line[1024];
	FILE *f;
	int found = 0;

	if (pid == 0)
		snprintf(path, sizeof(path), "/proc/self/maps");
	else
		snprintf(path, sizeof(path), "/proc/%ld/maps", (long)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, what) != NULL)
			found = 1;
	fclose(f);
	return found;
}

/* The one key pair labelled label on t (logged in), destroyed. */
static void
destroy_only_key(struct tok *t, const char *label)
{
	struct tok_key **ks = NULL;
	size_t n = 0;

	assert_int_equal(tok_find_keys(t, label, &ks, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(tok_destroy_key(t, ks[0]), 0);
	tok_keys_free(ks, n);
}

/*
 * The token process (tokens/tokserve.c): it holds the module, this process
 * does not; it serves the keys of the label it was opened for and refuses
 * others, by label and by forged handles; it grants at most 3 signatures and
 * 1 decryption at once, and 64 grants of one key in its life; when it dies, the
 * call in progress fails and says how, and nothing after it reaches a token.
 */
static void
test_token_process(void **state)
{
	struct tok *t = NULL, *o = NULL;
	struct tok_key *mine, *other, *other2 = NULL, forged, **ks = NULL;
	struct tok_keyspec ec = {TOK_KEY_EC, 256, 0};
	struct tok_uri u;
	EVP_PKEY *p1 = NULL, *p2 = NULL, *p3 = NULL;
	size_t n = 0;
	pid_t pid;
	int status;

	(void)state;
	if (!have_softhsm)
		skip();
	memset(&u, 0, sizeof(u));
	u.token = "t1";
	assert_int_equal(tok_open(SOFTHSM, &u, "other", &o), 0);
	assert_int_equal(tok_login(o, PIN, 0), 0);
	assert_int_equal(tok_generate_key(o, NULL, &ec, "other", &other), 0);

	assert_int_equal(tok_open(SOFTHSM, &u, "mine", &t), 0);
	assert_int_equal(tok_login(t, PIN, 0), 0);
	mine = gen(t, TOK_KEY_RSA, 2048, "mine");
	pid = t->pid;
	assert_true(maps_has(pid, "libsofthsm2"));
	assert_false(maps_has(0, "libsofthsm2"));

	/* another label, and another key's handles under this key's name */
	assert_int_equal(tok_find_keys(t, "other", &ks, &n), P11E_ERR_INTERNAL);
	assert_non_null(strstr(log_last_error(), "token process: refused: keys labelled 'other': "
	                                         "this token process serves the keys labelled "
	                                         "'mine'"));
	assert_int_equal(tok_generate_key(t, NULL, &ec, "other", &other2), P11E_ERR_INTERNAL);
	assert_null(other2);
	/* handles it never gave out (another process's handles mean nothing here) */
	forged = *mine;
	forged.pub_handle = mine->pub_handle + 100;
	forged.priv_handle = mine->priv_handle + 100;
	assert_int_equal(tok_key_evp(t, &forged, 1, 0, &p1), P11E_ERR_INTERNAL);
	assert_null(p1);
	assert_non_null(strstr(log_last_error(), "which are not a key it listed under label "
	                                         "'mine'"));
	assert_int_equal(tok_destroy_key(t, &forged), P11E_ERR_INTERNAL);
	forged.pub_handle = mine->priv_handle; /* the halves swapped */
	forged.priv_handle = mine->pub_handle;
	assert_int_equal(tok_destroy_key(t, &forged), P11E_ERR_INTERNAL);
	forged.pub_handle = mine->pub_handle; /* a half of another pair */
	forged.priv_handle = mine->priv_handle + 100;
	assert_int_equal(tok_key_attrs(t, &forged, &(struct tok_key_attrs){0}), P11E_ERR_INTERNAL);
	assert_int_equal(tok_find_keys(t, "mine", &ks, &n), 0);
	assert_int_equal(n, 1); /* still there, whole */
	assert_true(ks[0]->priv_handle == mine->priv_handle &&
	            ks[0]->pub_handle == mine->pub_handle);
	tok_keys_free(ks, n);

	/* the grants */
	assert_int_equal(tok_key_evp(t, mine, 4, 0, &p1), P11E_ERR_INTERNAL);
	assert_non_null(strstr(log_last_error(), "4 signatures and 0 decryptions of private key "
	                                         "'mine' at once"));
	assert_int_equal(tok_key_evp(t, mine, 0, 2, &p1), P11E_ERR_INTERNAL);
	assert_int_equal(tok_key_evp(t, mine, 3, 1, &p1), 0);
	assert_int_equal(tok_key_evp(t, mine, 3, 1, &p2), 0);
	for (int i = 2; i < TOK_KEY_GRANTS; i++) {
		assert_int_equal(tok_key_evp(t, mine, 1, 0, &p3), 0);
		EVP_PKEY_free(p3);
		p3 = NULL;
	}
	assert_int_equal(tok_key_evp(t, mine, 1, 0, &p3), P11E_ERR_INTERNAL);
	assert_non_null(strstr(log_last_error(), "a use of private key 'mine' more than the 64 "
	                                         "of one attempt"));
	assert_true(sign_once(p1));
	assert_true(sign_once(p2));
	assert_true(decrypt_once(mine->pub, p2));

	/* a half destroyed (tidy removes the private key first): its handle is refused to
	 * what acts on objects, a module may give it to a new object; the certificates of
	 * the pair, found by CKA_ID, are still reachable */
	{
		struct tok_key *two = gen(t, TOK_KEY_EC, 256, "mine"), half = *two;
		struct tok_key_attrs a;
		size_t nc = 1;

		half.pub_handle = 0;
		assert_int_equal(tok_destroy_key(t, &half), 0);
		assert_int_equal(tok_key_attrs(t, two, &a), P11E_ERR_INTERNAL);
		assert_non_null(strstr(log_last_error(), "of key 'mine', destroyed in this run"));
		assert_int_equal(tok_destroy_key(t, &half), P11E_ERR_INTERNAL);
		assert_int_equal(tok_other_certs(t, two, NULL, 1, &nc), 0);
		assert_int_equal(nc, 0);
		half = *two;
		half.priv_handle = 0;
		assert_int_equal(tok_destroy_key(t, &half), 0);
		tok_key_free(two);
	}

	/* a result asked into less room than it needs (found by fuzz_tokserve: the module
	 * answered CKR_BUFFER_TOO_SMALL and left the decryption active, so that every
	 * operation after it failed): refused, and the session goes on */
	{
		struct tok_key *three =
		    gen(t, TOK_KEY_RSA, 2048, "mine"); /* mine's grants are spent */
		unsigned char cek[16] = "0123456789abcdef", enc[256], dec[256];
		size_t elen = sizeof(enc), dlen = 16;
		EVP_PKEY_CTX *e = EVP_PKEY_CTX_new(three->pub, NULL);
		long g = -1;

		assert_non_null(e);
		assert_int_equal(EVP_PKEY_encrypt_init(e), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(e, RSA_PKCS1_PADDING), 1);
		assert_int_equal(EVP_PKEY_encrypt(e, enc, &elen, cek, sizeof(cek)), 1);
		EVP_PKEY_CTX_free(e);
		assert_int_equal(tokproc_grant(t, three, 0, 1, &g), 0);
		dlen = 8;
		assert_int_equal(tokproc_key_op(t, g, 1, enc, elen, dec, &dlen), P11E_ERR_INTERNAL);
		assert_non_null(strstr(log_last_error(), "a decryption of 16 bytes into 8"));
		tokproc_release(t, g);
		assert_int_equal(tokproc_grant(t, three, 1, 1, &g), 0);
		dlen = sizeof(dec);
		assert_int_equal(tokproc_key_op(t, g, 1, enc, elen, dec, &dlen), 0);
		assert_int_equal(dlen, 16);
		assert_memory_equal(dec, cek, 16);
		tokproc_release(t, g);
		assert_int_equal(tok_destroy_key(t, three), 0);
		tok_key_free(three);
	}

	/* the token process dies */
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(tok_find_keys(t, "mine", &ks, &n), P11E_ERR_TOKEN);
	assert_non_null(strstr(log_last_error(), "ended in the middle of a request (killed by "
	                                         "signal 9)"));
	assert_false(sign_once(p1));
	assert_int_equal(tok_present(t), 0);
	assert_true(waitpid(pid, &status, WNOHANG) < 0); /* already waited for */
	EVP_PKEY_free(p1);
	EVP_PKEY_free(p2);
	tok_close(t);

	assert_int_equal(tok_find_keys(o, "other", &ks, &n), 0);
	assert_int_equal(tok_destroy_key(o, ks[0]), 0);
	tok_keys_free(ks, n);
	tok_key_free(other);
	tok_close(o);
	open_login(&t);
	destroy_only_key(t, "mine");
	tok_key_free(mine);
	tok_close(t);
}

/* A session of the station's token process w for token t1 under label (station.c's way). */
static void
station_open(struct tok_worker *w, const char *module, const char *label, struct tok **t)
{
	struct tok_uri u;
	int fd = -1;

	memset(&u, 0, sizeof(u));
	u.token = "t1";
	assert_int_equal(tok_worker_connect(w, &fd), 0);
	tok_use_station(fd, module);
	assert_int_equal(tok_open(module, &u, label, t), 0);
	assert_true((*t)->session);
	assert_int_equal((*t)->pid, -1);
	assert_string_equal(tok_get_info(*t)->label, "t1");
}

/*
 * The station's token process (tok_worker_*): one C_Initialize and one
 * C_Finalize for all its sessions, one C_OpenSession, C_Login and
 * C_CloseSession each; each session serves its own label, and the keys and
 * grants of the session before it are gone (their handles refused); the
 * session of a card process that dies without ending it is logged out and
 * closed all the same; a card whose socket was queued when the process died
 * opens the token in a token process of its own; a module that does not load
 * fails the session with the error tok_open gives, and the process ends; the
 * module is never mapped here.
 */
static void
test_station_sessions(void **state)
{
	const char *module = spy_module();
	struct tok_worker *w = NULL;
	struct tok *t = NULL;
	struct tok_key *k, **ks = NULL, forged;
	struct tok_uri u;
	EVP_PKEY *p = NULL;
	size_t n = 0;
	int inits = spy_count("C_Initialize"), fins = spy_count("C_Finalize");
	int opens = spy_count("C_OpenSession"), closes = spy_count("C_CloseSession");
	int logins = spy_count("C_Login"), logouts = spy_count("C_Logout"), status, fd = -1;
	pid_t pid;

	(void)state;
	if (!have_softhsm)
		skip();
	assert_int_equal(tok_worker_start(module, &w), 0);

	station_open(w, module, "card-a", &t);
	assert_int_equal(tok_login(t, PIN, 0), 0);
	k = gen(t, TOK_KEY_EC, 256, "card-a");
	assert_int_equal(tok_key_evp(t, k, 1, 0, &p), 0);
	assert_true(sign_once(p));
	assert_false(maps_has(0, "libsofthsm2"));
	tok_close(t);
	assert_false(sign_once(p)); /* cut off with its session */
	EVP_PKEY_free(p);
	p = NULL;

	station_open(w, module, "card-b", &t);
	assert_int_equal(tok_find_keys(t, "card-a", &ks, &n), P11E_ERR_INTERNAL);
	assert_non_null(strstr(log_last_error(), "serves the keys labelled 'card-b'"));
	forged = *k; /* the last session's handles: not this one's */
	assert_int_equal(tok_key_attrs(t, &forged, &(struct tok_key_attrs){0}), P11E_ERR_INTERNAL);
	assert_non_null(strstr(log_last_error(), "which are not a key it listed under label "
	                                         "'card-b'"));
	assert_int_equal(tok_login(t, PIN, 0), 0);
	tok_close(t);

	/* a card process that dies in its session */
	memset(&u, 0, sizeof(u));
	u.token = "t1";
	assert_int_equal(tok_worker_connect(w, &fd), 0);
	if ((pid = fork()) == 0) {
		tok_use_station(fd, module);
		_exit(tok_open(module, &u, "card-a", &t) == 0 && tok_login(t, PIN, 0) == 0 ? 0 : 1);
	}
	close(fd);
	assert_true(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	station_open(w, module, "card-a", &t); /* its C_Logout and C_CloseSession: counted below */
	assert_int_equal(tok_login(t, PIN, 0), 0);
	destroy_only_key(t, "card-a");
	tok_close(t);

	/* it dies with a card's socket queued (another card's session crashed it, say):
	 * that card opens the token in a token process of its own */
	assert_int_equal(tok_worker_connect(w, &fd), 0);
	assert_int_equal(kill(w->t.pid, SIGKILL), 0);
	tok_use_station(fd, module);
	assert_int_equal(tok_open(module, &u, "card-a", &t), 0);
	assert_false(t->session);
	assert_true(t->pid > 0);
	assert_int_equal(tok_login(t, PIN, 0), 0);
	tok_close(t);
	assert_false(tok_worker_alive(w));
	tok_worker_stop(w);
	tok_key_free(k);
	if (have_spy) {
		/* the station's token process (killed: no C_Finalize) and the card's own */
		assert_int_equal(spy_count("C_Initialize") - inits, 2);
		assert_int_equal(spy_count("C_Finalize") - fins, 1);
		assert_int_equal(spy_count("C_OpenSession") - opens, 5);
		assert_int_equal(spy_count("C_CloseSession") - closes, 5);
		assert_int_equal(spy_count("C_Login") - logins, 5);
		assert_int_equal(spy_count("C_Logout") - logouts, 5);
	}

	/* a module that does not load */
	assert_int_equal(tok_worker_start("/nonexistent/module.so", &w), 0);
	assert_int_equal(tok_worker_connect(w, &fd), 0);
	tok_use_station(fd, "/nonexistent/module.so");
	t = NULL;
	assert_int_equal(tok_open("/nonexistent/module.so", &u, "card-a", &t), P11E_ERR_CONFIG);
	assert_non_null(strstr(log_last_error(), "/nonexistent/module.so"));
	assert_null(t);
	for (int i = 0; i < 100 && tok_worker_alive(w); i++)
		usleep(10000);
	assert_false(tok_worker_alive(w));
	tok_worker_stop(w);
}

static void
test_ec_keys(void **state)
{
	struct tok *t = NULL;
	struct tok_key *k = NULL, *k2 = NULL, **ks = NULL;
	struct tok_key_attrs a;
	EVP_PKEY *priv = NULL, *priv2 = NULL;
	X509 *cert = NULL;
	size_t n = 0;

	(void)state;
	if (!have_softhsm)
		skip();
	open_login(&t);
	k = gen(t, TOK_KEY_EC, 256, "ec1");
	assert_int_equal(tok_key_attrs(t, k, &a), 0);
	assert_true(a.sensitive == 1 && a.extractable == 0 && a.never_extractable == 1);
	assert_int_equal(tok_key_evp(t, k, ANY_S, ANY_D, &priv), 0);
	csr_sign_verify(k, priv);
	cert = self_signed(k, priv, 10);
	cms_sign_verify(cert, priv, EVP_sha256());
	EVP_PKEY_free(priv); /* a key's grant is 3 signatures at most */
	assert_int_equal(tok_key_evp(t, k, ANY_S, ANY_D, &priv), 0);
	/* a digest longer than the curve's order: cut as ECDSA cuts it */
	csr_sign_verify_md(k, priv, EVP_sha384());
	cms_sign_verify(cert, priv, EVP_sha512());
	X509_free(cert);

	/* a second key, made while the first one's EVP_PKEY is alive: both sign */
	k2 = gen(t, TOK_KEY_EC, 384, "ec1");
	assert_int_equal(tok_key_evp(t, k2, ANY_S, ANY_D, &priv2), 0);
	csr_sign_verify_md(k2, priv2, EVP_sha384());
	cert = self_signed(k2, priv2, 10);
	cms_sign_verify(cert, priv2, EVP_sha384());
	EVP_PKEY_free(priv2);
	assert_int_equal(tok_key_evp(t, k2, ANY_S, ANY_D, &priv2), 0);
	cms_sign_verify(cert, priv2, EVP_sha256());
	X509_free(cert);
	csr_sign_verify(k, priv);

	assert_int_equal(tok_find_keys(t, "ec1", &ks, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(ks[0]->id, k->id, 20);
	assert_memory_equal(ks[1]->id, k2->id, 20);
	assert_int_equal(EVP_PKEY_eq(ks[1]->pub, k2->pub), 1);
	tok_keys_free(ks, n);

	assert_int_equal(tok_find_keys(t, "none", &ks, &n), 0);
	assert_int_equal(n, 0);
	tok_keys_free(ks, n);

	EVP_PKEY_free(priv);
	EVP_PKEY_free(priv2);
	tok_key_free(k);
	tok_key_free(k2);
	tok_close(t);
}

/*
 * SignedData with CMS_add1_signer/CMS_final, then EnvelopedData decrypted on
 * the token; as a renewal does, with two RSA keys at once: the current key
 * signs, the new one decrypts, in one session.
 */
static void
test_cms(void **state)
{
	struct tok *t = NULL;
	struct tok_key *k = NULL, *k2 = NULL;
	EVP_PKEY *priv = NULL, *priv2 = NULL;
	X509 *cert = NULL, *cert2 = NULL;

	(void)state;
	if (!have_softhsm)
		skip();
	open_login(&t);
	k = gen(t, TOK_KEY_RSA, 2048, "cms1");
	assert_int_equal(tok_key_evp(t, k, ANY_S, ANY_D, &priv), 0);
	cert = self_signed(k, priv, 30);
	cms_sign_verify(cert, priv, EVP_sha256());
	cms_sign_verify(cert, priv, EVP_sha384());
	cms_decrypt_check(cert, priv);

	k2 = gen(t, TOK_KEY_RSA, 3072, "cms1");
	assert_int_equal(tok_key_evp(t, k2, ANY_S, ANY_D, &priv2), 0);
	cert2 = self_signed(k2, priv2, 30);
	EVP_PKEY_free(priv); /* a key's grant is 3 signatures and 1 decryption at most */
	assert_int_equal(tok_key_evp(t, k, ANY_S, ANY_D, &priv), 0);
	cms_sign_verify(cert, priv, EVP_sha256());
	cms_decrypt_check(cert2, priv2);
	cms_decrypt_check(cert, priv);

	X509_free(cert);
	X509_free(cert2);
	EVP_PKEY_free(priv);
	EVP_PKEY_free(priv2);
	tok_key_free(k);
	tok_key_free(k2);
	tok_close(t);
}

static void
test_certs(void **state)
{
	struct tok *t = NULL;
	struct tok_key *k = NULL;
	EVP_PKEY *priv = NULL;
	X509 *c1 = NULL, *c2 = NULL, *c3 = NULL, *c4 = NULL, *found = NULL;

	(void)state;
	if (!have_softhsm)
		skip();
	open_login(&t);
	k = gen(t, TOK_KEY_EC, 256, "cert1");
	assert_int_equal(tok_key_evp(t, k, ANY_S, ANY_D, &priv), 0);
	c1 = self_signed(k, priv, 10);
	c2 = self_signed(k, priv, 400);
	c3 = self_signed(k, priv, 100);
	assert_int_equal(tok_store_cert(t, k, c1), 0);
	assert_int_equal(tok_store_cert(t, k, c2), 0);
	assert_int_equal(tok_store_cert(t, k, c3), 0);
	assert_int_equal(tok_find_cert(t, k, &found), 0);
	assert_int_equal(X509_cmp(found, c2), 0);
	X509_free(found);
	/* Larger than one read's first buffer (4 KiB, tok_attr_get): read in full. */
	EVP_PKEY_free(priv);
	priv = NULL;
	assert_int_equal(tok_key_evp(t, k, ANY_S, ANY_D, &priv), 0);
	c4 = self_signed_sans(k, priv, 800, 250);
	assert_true(i2d_X509(c4, NULL) > 6000);
	assert_int_equal(tok_store_cert(t, k, c4), 0);
	assert_int_equal(tok_has_cert(t, k, c4), 0);
	assert_int_equal(tok_find_cert(t, k, &found), 0);
	assert_int_equal(X509_cmp(found, c4), 0);
	X509_free(found);
	EVP_PKEY_free(priv);
	X509_free(c1);
	X509_free(c2);
	X509_free(c3);
	X509_free(c4);
	tok_close(t);

	/* certificates and public keys are public: no login needed */
	open_t1(SOFTHSM, &t);
	{
		struct tok_key **ks = NULL;
		size_t n = 0;

		assert_int_equal(tok_find_keys(t, "cert1", &ks, &n), 0);
		assert_int_equal(n, 1);
		assert_int_equal(ks[0]->priv_handle, 0);
		assert_int_equal(tok_find_cert(t, ks[0], &found), 0);
		assert_int_equal(X509_cmp_time(X509_get0_notAfter(found), NULL), 1);
		X509_free(found);
		tok_keys_free(ks, n);
	}
	tok_key_free(k);
	tok_close(t);
}

/*
 * Before login, tok_find_keys looks for the public keys only (one search,
 * counted by pkcs11-spy) and gives every key priv_handle 0; after login the
 * private key is searched for too.
 */
static void
test_keys_before_login(void **state)
{
	struct tok *t = NULL;
	struct tok_key *k, **ks = NULL;
	size_t n = 0;
	unsigned long priv;
	int finds, reads;

	(void)state;
	if (!have_softhsm || !have_spy)
		skip();
	open_login(&t);
	k = gen(t, TOK_KEY_EC, 256, "prelogin");
	tok_close(t);
	open_t1(SPY, &t);
	finds = spy_count("C_FindObjectsInit");
	reads = spy_count("C_GetAttributeValue");
	assert_int_equal(tok_find_keys(t, "prelogin", &ks, &n), 0);
	assert_int_equal(spy_count("C_FindObjectsInit") - finds, 1);
	/* Two reads a key: its type and CKA_ID, then its public parts (tok_attr_get2). */
	assert_int_equal(spy_count("C_GetAttributeValue") - reads, 2);
	assert_int_equal(n, 1);
	assert_int_equal(ks[0]->priv_handle, 0);
	assert_memory_equal(ks[0]->id, k->id, k->id_len);
	/* tok_find_private before login: nothing asked, nothing found. */
	finds = spy_count("C_FindObjectsInit");
	assert_int_equal(tok_find_private(t, ks, n), 0);
	assert_int_equal(spy_count("C_FindObjectsInit") - finds, 0);
	assert_int_equal(ks[0]->priv_handle, 0);
	assert_int_equal(tok_login(t, PIN, 0), 0);
	/* After login: the private key of the list made before it, one search, no
	 * listing and no attribute read; the handle a listing after login gives. */
	finds = spy_count("C_FindObjectsInit");
	reads = spy_count("C_GetAttributeValue");
	assert_int_equal(tok_find_private(t, ks, n), 0);
	assert_int_equal(spy_count("C_FindObjectsInit") - finds, 1);
	assert_int_equal(spy_count("C_GetAttributeValue") - reads, 0);
	assert_true(ks[0]->priv_handle != 0);
	priv = ks[0]->priv_handle;
	tok_keys_free(ks, n);
	finds = spy_count("C_FindObjectsInit");
	assert_int_equal(tok_find_keys(t, "prelogin", &ks, &n), 0);
	assert_int_equal(spy_count("C_FindObjectsInit") - finds, 2);
	assert_int_equal(n, 1);
	assert_int_equal(ks[0]->priv_handle, priv);
	/* It signs with the handle found (the token process kept it). */
	{
		EVP_PKEY *sk = NULL;
		struct tok_key *d = tok_key_dup(ks[0]);

		assert_non_null(d);
		tok_keys_free(ks, n);
		ks = &d;
		n = 1;
		d->priv_handle = 0;
		assert_int_equal(tok_find_private(t, ks, n), 0);
		assert_int_equal(d->priv_handle, priv);
		assert_int_equal(tok_key_evp(t, d, ANY_S, ANY_D, &sk), 0);
		csr_sign_verify(d, sk);
		EVP_PKEY_free(sk);
		/* A key the token process did not list: refused, nothing found. */
		d->pub_handle += 1000;
		d->priv_handle = 0;
		cap_begin();
		assert_int_equal(tok_find_private(t, ks, n), P11E_ERR_INTERNAL);
		assert_non_null(strstr(cap_end(), "not a key it listed"));
		assert_int_equal(d->priv_handle, 0);
		tok_key_free(d);
	}
	tok_key_free(k);
	tok_close(t);
}

/* The CKA_ID by its definition: SHA-1 of the SubjectPublicKeyInfo's BIT STRING. */
static void
spki_id(EVP_PKEY *k, unsigned char id[20])
{
	unsigned char *der = NULL;
	const unsigned char *p, *pk = NULL;
	int len = i2d_PUBKEY(k, &der), pklen = 0;
	X509_PUBKEY *x;

	assert_true(len > 0);
	p = der;
	assert_non_null(x = d2i_X509_PUBKEY(NULL, &p, len));
	assert_int_equal(X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, x), 1);
	assert_non_null(SHA1(pk, (size_t)pklen, id));
	X509_PUBKEY_free(x);
	OPENSSL_free(der);
}

/* A public key from params: RSA n (hex) and e, or an EC curve and point. */
static EVP_PKEY *
pub_from(const char *type, const char *n_hex, unsigned long e, const char *curve,
         const unsigned char *pt, size_t ptlen)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *k = NULL;
	BIGNUM *n = NULL, *be = NULL;

	if (n_hex != NULL) {
		assert_true(BN_hex2bn(&n, n_hex) > 0);
		assert_non_null(be = BN_new());
		assert_int_equal(BN_set_word(be, e), 1);
		assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n), 1);
		assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be), 1);
	} else {
		assert_int_equal(
		    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curve, 0), 1);
		assert_int_equal(
		    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, ptlen), 1);
	}
	assert_non_null(params = OSSL_PARAM_BLD_to_param(bld));
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params), 1);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	BN_free(n);
	BN_free(be);
	return k;
}

/*
 * tok_key_id_for gives the CKA_ID of its definition (the SPKI's BIT STRING,
 * hashed) without encoding an SPKI: RSA of several sizes, with a modulus
 * whose top bit is set (a 0x00 byte before it in DER) and one whose is not,
 * exponents 3, 65537 and 2^32+1; EC P-256, P-384 and P-521, and a key made
 * of a compressed point (its ID is that form's, as in its SPKI); Ed25519 by
 * OpenSSL's SPKI.
 */
static void
test_key_id_for(void **state)
{
	const char *curves[] = {"P-256", "P-384", "P-521"};
	EVP_PKEY *k;
	unsigned char want[20], got[20], pt[200];
	size_t i, ptlen = 0;
	char hex[1026];

	(void)state;
	for (i = 0; i < 3; i++) {
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curves[i]);
		assert_non_null(k);
		spki_id(k, want);
		assert_int_equal(tok_key_id_for(k, got), 0);
		assert_memory_equal(got, want, sizeof(want));
		if (i == 0) {
			/* The same point compressed. */
			EC_POINT *p;
			EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
			EVP_PKEY *c;

			assert_int_equal(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY,
			                                                 pt, sizeof(pt), &ptlen),
			                 1);
			assert_non_null(p = EC_POINT_new(g));
			assert_int_equal(EC_POINT_oct2point(g, p, pt, ptlen, NULL), 1);
			ptlen = EC_POINT_point2oct(g, p, POINT_CONVERSION_COMPRESSED, pt,
			                           sizeof(pt), NULL);
			assert_int_equal(ptlen, 33);
			c = pub_from("EC", NULL, 0, "P-256", pt, ptlen);
			spki_id(c, want);
			assert_int_equal(tok_key_id_for(c, got), 0);
			assert_memory_equal(got, want, sizeof(want));
			EVP_PKEY_free(c);
			EC_POINT_free(p);
			EC_GROUP_free(g);
		}
		EVP_PKEY_free(k);
	}
	k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	assert_non_null(k);
	spki_id(k, want);
	assert_int_equal(tok_key_id_for(k, got), 0);
	assert_memory_equal(got, want, sizeof(want));
	EVP_PKEY_free(k);
	/* Another kind of key: by OpenSSL's SPKI. */
	k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(k);
	spki_id(k, want);
	assert_int_equal(tok_key_id_for(k, got), 0);
	assert_memory_equal(got, want, sizeof(want));
	EVP_PKEY_free(k);
	{
		static const unsigned long exps[] = {3, 65537, 4294967297UL};
		static const char tops[] = {'c', '5'}; /* top bit set, and not */
		size_t j, b;

		for (b = 0; b < 2; b++)
			for (j = 0; j < 3; j++) {
				/* A 4096-bit (or 4095-bit) odd modulus: only its encoding matters.
				 */
				for (i = 0; i < 1024; i++)
					hex[i] = "0123456789abcdef"[(i * 7 + j + b) % 16];
				hex[0] = tops[b];
				hex[1023] = 'b';
				hex[1024] = '\0';
				k = pub_from("RSA", hex, exps[j], NULL, NULL, 0);
				spki_id(k, want);
				assert_int_equal(tok_key_id_for(k, got), 0);
				assert_memory_equal(got, want, sizeof(want));
				EVP_PKEY_free(k);
			}
	}
}

/* The SPKI of key (i2d_PUBKEY) or of xpk (i2d_X509_PUBKEY) is want's wl bytes. */
static void
same_der(EVP_PKEY *key, X509_PUBKEY *xpk, const unsigned char *want, int wl)
{
	unsigned char *got = NULL;
	int len;

	len = key != NULL ? i2d_PUBKEY(key, &got) : i2d_X509_PUBKEY(xpk, &got);
	assert_int_equal(len, wl);
	assert_memory_equal(got, want, (size_t)wl);
	OPENSSL_free(got);
}

/*
 * The public key of tok_key_evp's key (an OpenSSL RSA or EC_KEY, encoded
 * without OpenSSL's encoder) is the token key's, byte for byte, as a request
 * and a certificate carry it (exchange.c builds both with it) and as
 * exchange.c's transactionID hashes it: RSA and EC.
 */
static void
test_evp_spki(void **state)
{
	struct tok *t = NULL;
	struct tok_key *k[2];
	EVP_PKEY *bridge = NULL;
	X509_REQ *req;
	X509 *x;
	unsigned char *want = NULL;
	int wl, i;

	(void)state;
	if (!have_softhsm)
		skip();
	open_login(&t);
	k[0] = gen(t, TOK_KEY_RSA, 2048, "spki-rsa");
	k[1] = gen(t, TOK_KEY_EC, 384, "spki-ec");
	for (i = 0; i < 2; i++) {
		assert_int_equal(tok_key_evp(t, k[i], 2, 0, &bridge), 0);
		assert_true((wl = i2d_PUBKEY(k[i]->pub, &want)) > 0);
		assert_non_null(req = X509_REQ_new());
		assert_non_null(x = X509_new());
		assert_int_equal(X509_REQ_set_pubkey(req, bridge), 1);
		assert_int_equal(X509_set_pubkey(x, bridge), 1);
		same_der(bridge, NULL, want, wl);
		same_der(NULL, X509_REQ_get_X509_PUBKEY(req), want, wl);
		same_der(NULL, X509_get_X509_PUBKEY(x), want, wl);
		assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), k[i]->pub), 1);
		OPENSSL_free(want);
		want = NULL;
		X509_free(x);
		X509_REQ_free(req);
		EVP_PKEY_free(bridge);
		bridge = NULL;
		tok_key_free(k[i]);
	}
	tok_close(t);
}

/*
 * A module that refuses to read two attributes in one call (here: the first
 * C_GetAttributeValue of a listing fails, through the tests' fault module)
 * still gives the key: each attribute is then read alone. RSA (modulus and
 * exponent) and EC (parameters and point), the same key as a plain listing.
 */
static void
test_keys_attrs_one_by_one(void **state)
{
	const char *fault = getenv("P11E_FAULT_MODULE");
	static const char *const rules[] = {
	    "C_GetAttributeValue:CKR_FUNCTION_FAILED:1@C_FindObjectsInit", /* type and ID */
	    "C_GetAttributeValue:CKR_FUNCTION_FAILED:2@C_FindObjectsInit", /* public parts */
	};
	struct tok *t = NULL;
	struct tok_key *k[2], **ks = NULL;
	size_t n = 0, i, j;

	(void)state;
	if (!have_softhsm)
		skip();
	assert_non_null(fault);
	open_login(&t);
	k[0] = gen(t, TOK_KEY_RSA, 2048, "onebyone-rsa");
	k[1] = gen(t, TOK_KEY_EC, 256, "onebyone-ec");
	tok_close(t);
	for (i = 0; i < 2; i++)
		for (j = 0; j < 2; j++) {
			setenv("FAULT_RV_AT", rules[j], 1);
			open_t1(fault, &t);
			unsetenv("FAULT_RV_AT");
			assert_int_equal(tok_find_keys(t, k[i]->label, &ks, &n), 0);
			assert_int_equal(n, 1);
			assert_int_equal(ks[0]->id_len, k[i]->id_len);
			assert_memory_equal(ks[0]->id, k[i]->id, k[i]->id_len);
			assert_int_equal(ks[0]->type, k[i]->type);
			assert_int_equal(EVP_PKEY_eq(ks[0]->pub, k[i]->pub), 1);
			tok_keys_free(ks, n);
			tok_close(t);
		}
	tok_key_free(k[0]);
	tok_key_free(k[1]);
}

/* The calls the bridge must never make, counted by pkcs11-spy. */
static int
stray_calls(void)
{
	static const char *const fns[] = {
	    "C_GetSlotList", "C_GetSlotInfo",      "C_GetTokenInfo", "C_FindObjectsInit",
	    "C_OpenSession", "C_CloseAllSessions", "C_Login"};
	size_t i;
	int n = 0;

	for (i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
		n += spy_count(fns[i]);
	return n;
}

/*
 * The cause of libp11 0.4.12's "private key not found": a second client that
 * enumerates every slot again (and, on one slot's failure, closes every
 * session of the slots it had read, ours included: C_CloseAllSessions). The
 * bridge signs and decrypts, RSA and EC, CSRs, certificates, CMS, with no
 * slot, token or object listing, no new session and no login: the token
 * process uses its session and the handle the key was generated under,
 * nothing else (counted by pkcs11-spy in the token process).
 */
static void
test_evp_one_view(void **state)
{
	struct tok *t = NULL;
	struct tok_key *rsa = NULL, *ec = NULL;
	EVP_PKEY *rpriv = NULL, *epriv = NULL;
	X509 *rcert = NULL, *ecert = NULL;
	int stray, signs, decrypts;

	(void)state;
	if (!have_softhsm || !have_spy)
		skip();
	open_t1(SPY, &t);
	assert_int_equal(tok_login(t, PIN, 0), 0);
	rsa = gen(t, TOK_KEY_RSA, 2048, "view1");
	ec = gen(t, TOK_KEY_EC, 256, "view1");
	stray = stray_calls();
	signs = spy_count("C_Sign");
	decrypts = spy_count("C_Decrypt");
	assert_int_equal(tok_key_evp(t, rsa, ANY_S, ANY_D, &rpriv), 0);
	assert_int_equal(tok_key_evp(t, ec, ANY_S, ANY_D, &epriv), 0);
	csr_sign_verify(rsa, rpriv);
	csr_sign_verify(ec, epriv);
	rcert = self_signed(rsa, rpriv, 5);
	ecert = self_signed(ec, epriv, 5);
	cms_sign_verify(rcert, rpriv, EVP_sha256());
	cms_sign_verify(ecert, epriv, EVP_sha256());
	cms_decrypt_check(rcert, rpriv);
	assert_int_equal(stray_calls(), stray);
	assert_int_equal(spy_count("C_Sign") - signs, 6);
	assert_int_equal(spy_count("C_Decrypt") - decrypts, 1);
	/* a copy OpenSSL makes shares no hold on the token: both are freed once */
	EVP_PKEY_free(EVP_PKEY_dup(rpriv));
	EVP_PKEY_free(EVP_PKEY_dup(epriv));
	ERR_clear_error();
	X509_free(rcert);
	X509_free(ecert);
	EVP_PKEY_free(rpriv);
	EVP_PKEY_free(epriv);
	tok_key_free(rsa);
	tok_key_free(ec);
	tok_close(t);
}

/*
 * What the bridge refuses, with a message: a key whose private key is not
 * visible (listed before login), RSA padding other than PKCS#1 v1.5, a
 * failing C_Sign, a key used after its token was closed (freed after it:
 * fine, under ASan too).
 */
static void
test_evp_errors(void **state)
{
	struct tok *t = NULL;
	struct tok_key *k = NULL, *ek = NULL, **ks = NULL, **ks2 = NULL;
	EVP_PKEY *priv = NULL, *epriv = NULL;
	size_t n2 = 0;
	EVP_MD_CTX *mctx = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	const char *fault = getenv("P11E_FAULT_MODULE");
	unsigned char sig[512];
	size_t siglen = sizeof(sig), n = 0;
	const char *msg;

	(void)state;
	if (!have_softhsm)
		skip();
	open_login(&t);
	k = gen(t, TOK_KEY_RSA, 2048, "err1");
	tok_key_free(k);
	tok_close(t);

	open_t1(SOFTHSM, &t);
	assert_int_equal(tok_find_keys(t, "err1", &ks, &n), 0);
	assert_int_equal(n, 1);
	cap_begin();
	assert_int_equal(tok_key_evp(t, ks[0], ANY_S, ANY_D, &priv), P11E_ERR_TOKEN);
	msg = cap_end();
	assert_null(priv);
	assert_non_null(
	    strstr(msg, "private key 'err1' is not visible on token 't1' (not logged in)"));
	tok_keys_free(ks, n);
	assert_int_equal(tok_login(t, PIN, 0), 0);
	assert_int_equal(tok_find_keys(t, "err1", &ks, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(tok_key_evp(t, ks[0], ANY_S, ANY_D, &priv), 0);

	mctx = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestSignInit(mctx, &pctx, EVP_sha256(), NULL, priv), 1);
	assert_true(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0);
	cap_begin();
	assert_true(EVP_DigestSign(mctx, sig, &siglen, (const unsigned char *)"x", 1) <= 0);
	msg = cap_end();
	assert_non_null(strstr(msg, "private key 'err1': the token is used with RSA PKCS#1 v1.5 "
	                            "only"));
	EVP_MD_CTX_free(mctx);
	ERR_clear_error();
	csr_sign_verify(ks[0], priv);

	ek = gen(t, TOK_KEY_EC, 256, "err2");
	tok_key_free(ek);
	tok_keys_free(ks, n);
	EVP_PKEY_free(priv);
	tok_close(t);

	/* the module's C_Sign fails (the token's own module, through the tests' fault
	 * module: the token process loads it) */
	assert_non_null(fault);
	setenv("FAULT_RV_AT", "C_Sign:CKR_DEVICE_REMOVED", 1);
	open_t1(fault, &t);
	unsetenv("FAULT_RV_AT");
	assert_int_equal(tok_login(t, PIN, 0), 0);
	assert_int_equal(tok_find_keys(t, "err2", &ks, &n), 0);
	assert_int_equal(n, 1);
	ek = ks[0];
	assert_int_equal(tok_key_evp(t, ek, 1, 0, &epriv), 0);
	cap_begin();
	{
		X509_REQ *req = X509_REQ_new();

		assert_true(X509_REQ_set_pubkey(req, ek->pub));
		assert_true(X509_REQ_sign(req, epriv, EVP_sha256()) <= 0);
		X509_REQ_free(req);
	}
	msg = cap_end();
	ERR_clear_error();
	assert_non_null(strstr(msg, "C_Sign (CKM_ECDSA) with private key 'err2' on token 't1' "
	                            "failed: CKR_DEVICE_REMOVED"));
	EVP_PKEY_free(epriv);
	tok_close(t);

	/* the key signs again in a new token process, and is taken away */
	open_login(&t);
	tok_keys_free(ks, n);
	assert_int_equal(tok_find_keys(t, "err2", &ks, &n), 0);
	assert_int_equal(n, 1);
	ek = ks[0];
	assert_int_equal(tok_key_evp(t, ek, ANY_S, ANY_D, &epriv), 0);
	csr_sign_verify(ek, epriv);
	assert_int_equal(tok_find_keys(t, "err1", &ks2, &n2), 0);
	assert_int_equal(n2, 1);
	assert_int_equal(tok_destroy_key(t, ek), 0);
	assert_int_equal(tok_destroy_key(t, ks2[0]), 0);
	tok_keys_free(ks2, n2);
	tok_close(t);
	cap_begin();
	{
		X509_REQ *req = X509_REQ_new();

		assert_true(X509_REQ_set_pubkey(req, ek->pub));
		assert_true(X509_REQ_sign(req, epriv, EVP_sha256()) <= 0);
		X509_REQ_free(req);
	}
	msg = cap_end();
	ERR_clear_error();
	assert_non_null(strstr(msg, "private key 'err2' used after its token was closed"));
	EVP_PKEY_free(epriv);
	tok_keys_free(ks, n);
}

/* How pkcs11-tool sees a generated key. */
static void
test_pkcs11_tool(void **state)
{
	struct tok *t = NULL;
	struct tok_key *k = NULL;
	char cmd[256], line[512];
	FILE *f;
	int found = 0;

	(void)state;
	if (!have_softhsm || run("command -v pkcs11-tool") != 0)
		skip();
	open_login(&t);
	k = gen(t, TOK_KEY_RSA, 2048, "tool1");
	tok_key_free(k);
	tok_close(t);
	snprintf(cmd, sizeof(cmd),
	         "pkcs11-tool --module " SOFTHSM " --token-label t1 -O --login --pin " PIN
	         " --type privkey --label tool1 2>&1");
	f = popen(cmd, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, "Access:") &&
		    strstr(line, "sensitive, always sensitive, never extractable"))
			found = 1;
	pclose(f);
	assert_true(found);
}

/*
 * Two RSA key pairs under one label and one CKA_ID (pkcs11-tool run twice
 * with the same --id): each public key gets the private key whose modulus is
 * its own, so that what it signs verifies with it (before: both got the
 * first private key).
 */
static void
test_twin_private_keys(void **state)
{
	struct tok *t = NULL;
	struct tok_key **ks = NULL;
	EVP_PKEY *p = NULL;
	size_t n = 0, i;

	(void)state;
	if (!have_softhsm || run("command -v pkcs11-tool") != 0)
		skip();
	for (i = 0; i < 2; i++)
		assert_int_equal(run("pkcs11-tool --module " SOFTHSM
		                     " --token-label t1 --login --pin " PIN
		                     " --keypairgen --key-type rsa:1024 --label twin --id 0a0a"),
		                 0);
	open_login(&t);
	cap_begin();
	assert_int_equal(tok_find_keys(t, "twin", &ks, &n), 0);
	assert_non_null(strstr(cap_end(), "has 2 private keys with the CKA_ID of key 'twin'; "
	                                  "using the one whose modulus is the public key's"));
	assert_int_equal(n, 2);
	assert_true(ks[0]->priv_handle != ks[1]->priv_handle);
	for (i = 0; i < n; i++) {
		assert_int_equal(tok_key_evp(t, ks[i], 1, 0, &p), 0);
		assert_true(signs_for(p, ks[i]->pub));
		EVP_PKEY_free(p);
		p = NULL;
	}
	for (i = 0; i < n; i++)
		assert_int_equal(tok_destroy_key(t, ks[i]), 0);
	tok_keys_free(ks, n);
	tok_close(t);
}

static CK_C_DestroyObject C_DestroyObject_real;
static CK_RV copy_answer;

static CK_RV
fail_set_attr(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR a, CK_ULONG n)
{
	(void)s;
	(void)o;
	(void)a;
	(void)n;
	return CKR_DEVICE_REMOVED;
}

static CK_RV
fail_destroy(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
	(void)s;
	(void)o;
	return CKR_DEVICE_REMOVED;
}

/*
 * Keygen failures: a clear message, and no half-made key pair left behind;
 * one that cannot be taken back (the token went away) is reported as left.
 */
static void
test_keygen_errors(void **state)
{
	struct p11 *t = NULL;
	struct tok_key *k = NULL, **ks = NULL;
	struct tok_keyspec big = {TOK_KEY_RSA, 32768, 0}, ec = {TOK_KEY_EC, 256, 0};
	CK_FUNCTION_LIST fl, *real;
	const char *msg;
	size_t n = 0;

	(void)state;
	if (!have_softhsm)
		skip();
	p11_open_login(&t);
	cap_begin();
	assert_int_equal(p11_generate_key(t, NULL, &big, "bad1", &k), P11E_ERR_TOKEN);
	msg = cap_end();
	assert_null(k);
	assert_non_null(strstr(msg, "C_GenerateKeyPair (RSA-32768) on token 't1' failed: CKR_"));

	/* white box: the module's C_SetAttributeValue fails after the key pair is made */
	real = t->f;
	fl = *real;
	fl.C_SetAttributeValue = fail_set_attr;
	t->f = &fl;
	cap_begin();
	assert_int_equal(p11_generate_key(t, NULL, &ec, "bad2", &k), P11E_ERR_TOKEN);
	msg = cap_end();
	t->f = real;
	assert_null(k);
	assert_non_null(strstr(msg, "C_SetAttributeValue(CKA_ID) on token 't1' failed: "
	                            "CKR_DEVICE_REMOVED"));
	assert_int_equal(p11_find_keys(t, "bad2", &ks, &n), 0);
	assert_int_equal(n, 0);
	{
		CK_OBJECT_CLASS c = CKO_PRIVATE_KEY;
		CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &c, sizeof(c)}, {CKA_LABEL, "bad2", 4}};
		CK_OBJECT_HANDLE *hs = NULL;

		assert_int_equal(tok_find_objects(t, tmpl, 2, "test", &hs, &n), 0);
		assert_int_equal(n, 0);
		free(hs);
	}

	{
		static const unsigned char tmp[16] = "p11e-left-over!";
		struct tok_keygen_ids ids = {tmp, sizeof(tmp), NULL, NULL, 0};

		fl.C_DestroyObject = fail_destroy;
		t->f = &fl;
		cap_begin();
		assert_int_equal(p11_generate_key(t, &ids, &ec, "bad3", &k), P11E_ERR_TOKEN);
		msg = cap_end();
		t->f = real;
		assert_null(k);
		assert_int_equal(ids.left, 1);
		assert_non_null(strstr(msg, "it stays on the token"));
		assert_int_equal(p11_find_keys(t, "bad3", &ks, &n), 0);
		assert_int_equal(n, 1);
		assert_int_equal(ks[0]->id_len, sizeof(tmp));
		assert_memory_equal(ks[0]->id, tmp, sizeof(tmp));
		assert_true(ks[0]->priv_handle != 0);
		assert_int_equal(p11_destroy_key(t, ks[0]), 0);
		tok_keys_free(ks, n);
	}
	p11_close(t);
}

/* A self-signed certificate of a key made in memory, named cn: any certificate to store. */
static X509 *
soft_cert(const char *cn)
{
	EVP_PKEY *sw = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();

	assert_non_null(sw);
	assert_non_null(x);
	assert_non_null(n);
	assert_true(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
	                                       -1, 0));
	assert_true(X509_set_version(x, 2));
	assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), 7));
	assert_true(X509_set_subject_name(x, n) && X509_set_issuer_name(x, n));
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_time_adj_ex(X509_getm_notAfter(x), 30, 0, NULL));
	assert_true(X509_set_pubkey(x, sw));
	assert_true(X509_sign(x, sw, EVP_sha256()) > 0);
	X509_NAME_free(n);
	EVP_PKEY_free(sw);
	return x;
}

/* The certificate objects with k's CKA_ID this session finds; *on_token: how many of them
 * have CKA_TOKEN true. */
static size_t
certs_of(struct p11 *t, const struct tok_key *k, size_t *on_token)
{
	CK_OBJECT_CLASS c = CKO_CERTIFICATE;
	CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &c, sizeof(c)},
	                       {CKA_ID, (void *)k->id, (CK_ULONG)k->id_len}};
	CK_OBJECT_HANDLE *hs = NULL;
	unsigned char *v = NULL;
	size_t n = 0, i, len = 0;

	assert_int_equal(tok_find_objects(t, tmpl, 2, "test", &hs, &n), 0);
	*on_token = 0;
	for (i = 0; i < n; i++) {
		assert_int_equal(tok_attr_get(t, hs[i], CKA_TOKEN, &v, &len), CKR_OK);
		assert_int_equal(len, sizeof(CK_BBOOL));
		*on_token += v[0] == CK_TRUE;
		free(v);
		v = NULL;
	}
	free(hs);
	return n;
}

static int destroy_calls;

static CK_RV
fail_first_destroy(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
	if (destroy_calls++ == 0)
		return CKR_DEVICE_ERROR;
	return C_DestroyObject_real(s, o);
}

static CK_RV
copy_rv(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR a, CK_ULONG n,
        CK_OBJECT_HANDLE_PTR h)
{
	(void)s;
	(void)o;
	(void)a;
	(void)n;
	(void)h;
	return copy_answer;
}

/*
 * White box, tokens/p11cert.c's create_cert: on SoftHSM a certificate is stored as a
 * session object copied onto the token, and this session then finds exactly one
 * certificate object, on the token; through a module that does not say it is SoftHSM (the
 * fault module with FAULT_LIB_MANUFACTURER), one C_CreateObject. A copy the module does
 * not support falls back to that; a failed copy fails the store with its call named and
 * leaves no object; a session object that cannot be destroyed fails it too, its copy
 * removed.
 */
static void
test_store_by_copy(void **state)
{
	const char *fault = getenv("P11E_FAULT_MODULE");
	struct p11 *t = NULL;
	struct tok_key *k = NULL;
	struct tok_keyspec ec = {TOK_KEY_EC, 256, 0};
	struct tok_uri u;
	CK_FUNCTION_LIST fl, *real;
	X509 *c1 = soft_cert("copy1"), *c2 = soft_cert("copy2"), *c3 = soft_cert("copy3");
	const char *msg;
	size_t on = 0;

	(void)state;
	if (!have_softhsm)
		skip();
	p11_open_login(&t);
	assert_int_equal(t->store_by_copy, 1);
	assert_int_equal(p11_generate_key(t, NULL, &ec, "copy", &k), 0);
	assert_int_equal(p11_store_cert(t, k, c1), 0);
	assert_int_equal(certs_of(t, k, &on), 1);
	assert_int_equal(on, 1);

	real = t->f;
	fl = *real;
	C_DestroyObject_real = real->C_DestroyObject;
	fl.C_CopyObject = copy_rv;
	t->f = &fl;
	copy_answer = CKR_DEVICE_MEMORY;
	cap_begin();
	assert_int_equal(p11_store_cert(t, k, c2), P11E_ERR_TOKEN);
	msg = cap_end();
	assert_non_null(strstr(msg, "C_CopyObject (certificate of key 'copy') on token 't1' "
	                            "failed: CKR_DEVICE_MEMORY (the token is full)"));
	assert_int_equal(certs_of(t, k, &on), 1);
	copy_answer = CKR_FUNCTION_NOT_SUPPORTED;
	assert_int_equal(p11_store_cert(t, k, c2), 0);
	assert_int_equal(certs_of(t, k, &on), 2);
	assert_int_equal(on, 2);

	fl.C_CopyObject = real->C_CopyObject;
	fl.C_DestroyObject = fail_first_destroy;
	destroy_calls = 0;
	cap_begin();
	assert_int_equal(p11_store_cert(t, k, c3), P11E_ERR_TOKEN);
	msg = cap_end();
	t->f = real;
	assert_int_equal(destroy_calls, 2);
	assert_non_null(strstr(msg, "C_DestroyObject (certificate of key 'copy') on token 't1' "
	                            "failed: CKR_DEVICE_ERROR"));
	/* the session object it could not destroy ends with the session */
	assert_int_equal(certs_of(t, k, &on), 3);
	assert_int_equal(on, 2);
	assert_int_equal(p11_destroy_key(t, k), 0);
	tok_key_free(k);
	k = NULL;
	p11_close(t);

	/* Any other module: the fault module saying so. */
	assert_non_null(fault);
	setenv("FAULT_LIB_MANUFACTURER", "not that one", 1);
	memset(&u, 0, sizeof(u));
	u.token = "t1";
	assert_int_equal(p11_open(fault, &u, &t), 0);
	unsetenv("FAULT_LIB_MANUFACTURER");
	assert_int_equal(p11_login(t, PIN, 0), 0);
	assert_int_equal(t->store_by_copy, 0);
	assert_int_equal(p11_generate_key(t, NULL, &ec, "direct", &k), 0);
	real = t->f;
	fl = *real;
	fl.C_CopyObject = copy_rv;
	copy_answer = CKR_GENERAL_ERROR; /* never called */
	t->f = &fl;
	assert_int_equal(p11_store_cert(t, k, c3), 0);
	t->f = real;
	assert_int_equal(certs_of(t, k, &on), 1);
	assert_int_equal(on, 1);
	assert_int_equal(p11_destroy_key(t, k), 0);
	tok_key_free(k);
	p11_close(t);
	X509_free(c1);
	X509_free(c2);
	X509_free(c3);
}

/* Objects of any class on the token whose CKA_ID is id. */
static size_t
count_with_id(struct p11 *t, const unsigned char *id, size_t len)
{
	CK_ATTRIBUTE tmpl[] = {{CKA_ID, (void *)id, (CK_ULONG)len}};
	CK_OBJECT_HANDLE *hs = NULL;
	size_t n = 0;

	assert_int_equal(tok_find_objects(t, tmpl, 1, "test", &hs, &n), 0);
	free(hs);
	return n;
}

/* What tok_generate_key's hook saw of the token when it was called. */
struct hook_seen {
	struct p11 *t;
	const unsigned char *tmp;
	int calls, fail;
	size_t n_tmp, n_final;
	unsigned char id[20];
};

static int
hook(void *ud, const unsigned char *id, size_t len)
{
	struct hook_seen *h = ud;

	h->calls++;
	assert_int_equal(len, 20);
	memcpy(h->id, id, 20);
	h->n_tmp = count_with_id(h->t, h->tmp, 16);
	h->n_final = count_with_id(h->t, id, len);
	return h->fail;
}

/*
 * The caller names the new pair: created with its temporary CKA_ID, the hook
 * hears the final one while the token still has only the temporary one, and
 * a hook that fails leaves nothing behind.
 */
static void
test_keygen_ids(void **state)
{
	static const unsigned char tmp[16] = "p11e-temporary!";
	struct p11 *t = NULL;
	struct tok_key *k = NULL;
	struct tok_keyspec ec = {TOK_KEY_EC, 256, 0};
	struct hook_seen h = {NULL, tmp, 0, 0, 0, 0, {0}};
	struct tok_keygen_ids ids = {tmp, sizeof(tmp), hook, &h, 0};

	(void)state;
	if (!have_softhsm)
		skip();
	p11_open_login(&t);
	h.t = t;
	assert_int_equal(p11_generate_key(t, &ids, &ec, "ids1", &k), 0);
	assert_int_equal(h.calls, 1);
	assert_int_equal(h.n_tmp, 2); /* the pair, still under the temporary ID */
	assert_int_equal(h.n_final, 0);
	assert_int_equal(k->id_len, 20);
	assert_memory_equal(k->id, h.id, 20);
	assert_int_equal(count_with_id(t, h.id, 20), 2);
	assert_int_equal(count_with_id(t, tmp, sizeof(tmp)), 0);
	tok_key_free(k);
	k = NULL;

	h.fail = P11E_ERR_FILE;
	assert_int_equal(p11_generate_key(t, &ids, &ec, "ids2", &k), P11E_ERR_FILE);
	assert_null(k);
	assert_int_equal(h.calls, 2);
	assert_int_equal(count_with_id(t, tmp, sizeof(tmp)), 0);
	assert_int_equal(count_with_id(t, h.id, 20), 0);
	p11_close(t);
}

/*
 * A generation cut short between its two CKA_IDs (the private key has the
 * final one, the public key still the temporary one): the pair is found
 * whole, and tok_key_fix_id completes it.
 */
static void
test_keygen_cut_between_ids(void **state)
{
	static const unsigned char tmp[16] = "p11e-cut-short!";
	struct p11 *t = NULL;
	struct tok_key *k = NULL, **ks = NULL;
	CK_ATTRIBUTE a = {CKA_ID, (void *)tmp, sizeof(tmp)};
	size_t n = 0;

	(void)state;
	if (!have_softhsm)
		skip();
	p11_open_login(&t);
	{
		struct tok_keyspec spec = {TOK_KEY_EC, 256, 0};

		assert_int_equal(p11_generate_key(t, NULL, &spec, "cut1", &k), 0);
	}
	assert_int_equal(t->f->C_SetAttributeValue(t->session, k->pub_handle, &a, 1), CKR_OK);
	assert_int_equal(p11_find_keys(t, "cut1", &ks, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ks[0]->id_len, sizeof(tmp));
	assert_memory_equal(ks[0]->id, tmp, sizeof(tmp));
	assert_int_equal(ks[0]->priv_handle, k->priv_handle);
	assert_int_equal(p11_key_fix_id(t, ks[0]), 0);
	tok_keys_free(ks, n);
	assert_int_equal(p11_find_keys(t, "cut1", &ks, &n), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(ks[0]->id, k->id, 20);
	assert_int_equal(ks[0]->priv_handle, k->priv_handle);
	tok_keys_free(ks, n);
	tok_key_free(k);
	p11_close(t);
}

/* Run last: adds a second token labelled t1. */
/* p11_select by serial in a process that selects again (a station's token process): the
 * slot where the last scan saw that serial is tried first, one C_GetTokenInfo instead of
 * one per slot; a serial seen on two slots, or a token there that the URI does not match,
 * goes through the scan as before (refused, not found). */
static void
test_select_seen(void **state)
{
	struct p11 *p = NULL;
	struct tok_uri u;
	char serial[17];
	unsigned long slot;
	int n;

	(void)state;
	if (!have_softhsm)
		skip();
	assert_int_equal(run(UTIL " --init-token --free --label dup1 --so-pin 1234 --pin " PIN), 0);
	assert_int_equal(run(UTIL " --init-token --free --label dup2 --so-pin 1234 --pin " PIN), 0);
	assert_int_equal(p11_load(spy_module(), &p), 0);
	memset(&u, 0, sizeof(u));
	u.token = "t1";
	n = spy_count("C_GetTokenInfo");
	assert_int_equal(p11_select(p, &u), 0); /* no serial: the scan */
	if (have_spy)
		assert_true(spy_count("C_GetTokenInfo") - n >= 4);
	snprintf(serial, sizeof(serial), "%s", p->info.serial);
	slot = p->info.slot_id;
	p11_end(p);

	u.serial = serial;
	n = spy_count("C_GetTokenInfo");
	assert_int_equal(p11_select(p, &u), 0);
	assert_int_equal(p->info.slot_id, slot);
	assert_string_equal(p->info.label, "t1");
	if (have_spy)
		assert_int_equal(spy_count("C_GetTokenInfo") - n, 1);
	assert_int_equal(p11_login(p, PIN, 0), 0);
	p11_end(p);

	u.token = "t2"; /* t1's serial, another label: no token matches */
	cap_begin();
	assert_int_equal(p11_select(p, &u), P11E_ERR_TOKEN);
	assert_non_null(strstr(cap_end(), "no token matches"));

	p11_close(p);

	/* two tokens that say the same serial (the tests' fault module makes them so; SoftHSM
	 * refuses two of one serial) */
	assert_non_null(getenv("P11E_FAULT_MODULE"));
	setenv("FAULT_TOKEN_INFO",
	       "label=dup1:serial=5eed5eed5eed5eed;label=dup2:serial=5eed5eed5eed5eed", 1);
	assert_int_equal(p11_load(getenv("P11E_FAULT_MODULE"), &p), 0);
	unsetenv("FAULT_TOKEN_INFO");
	u.token = NULL;
	u.serial = "5eed5eed5eed5eed";
	for (n = 0; n < 2; n++) { /* every time */
		cap_begin();
		assert_int_equal(p11_select(p, &u), P11E_ERR_TOKEN);
		assert_non_null(strstr(cap_end(), "2 tokens match pkcs11:serial=5eed5eed5eed5eed"));
	}
	p11_close(p);
}

static void
test_ambiguous(void **state)
{
	struct tok_uri u;
	struct tok *t = NULL;
	const char *msg;

	(void)state;
	if (!have_softhsm)
		skip();
	assert_int_equal(run(UTIL " --init-token --free --label t1 --so-pin 1234 --pin " PIN), 0);
	memset(&u, 0, sizeof(u));
	u.token = "t1";
	cap_begin();
	assert_int_equal(tok_open(SOFTHSM, &u, NULL, &t), P11E_ERR_TOKEN);
	msg = cap_end();
	assert_non_null(strstr(msg, "2 tokens match pkcs11:token=t1: 't1' (serial "));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_errors),
	    cmocka_unit_test(test_login_wrong_pin),
	    cmocka_unit_test(test_rsa_key),
	    cmocka_unit_test(test_spy_counts),
	    cmocka_unit_test(test_evp_budget),
	    cmocka_unit_test(test_token_process),
	    cmocka_unit_test(test_station_sessions),
	    cmocka_unit_test(test_ec_keys),
	    cmocka_unit_test(test_cms),
	    cmocka_unit_test(test_certs),
	    cmocka_unit_test(test_key_id_for),
	    cmocka_unit_test(test_evp_spki),
	    cmocka_unit_test(test_keys_before_login),
	    cmocka_unit_test(test_keys_attrs_one_by_one),
	    cmocka_unit_test(test_evp_one_view),
	    cmocka_unit_test(test_evp_errors),
	    cmocka_unit_test(test_pkcs11_tool),
	    cmocka_unit_test(test_twin_private_keys),
	    cmocka_unit_test(test_keygen_errors),
	    cmocka_unit_test(test_store_by_copy),
	    cmocka_unit_test(test_keygen_ids),
	    cmocka_unit_test(test_keygen_cut_between_ids),
	    cmocka_unit_test(test_select_seen),
	    cmocka_unit_test(test_ambiguous),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
