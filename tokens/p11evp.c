/*
 * p11evp.c: the EVP_PKEY bridge. The private operations OpenSSL asks of a
 * token key are requests to the token process (tokproc.h), which runs them
 * in its session on the private key handle it generated or found, in the
 * manner of OpenSSH's ssh-pkcs11.c and ssh-pkcs11-helper:
 *
 *   RSA  an RSA_METHOD whose priv_enc (signatures: OpenSSL has built the
 *        DigestInfo) and priv_dec (CMS key transport) are C_Sign and
 *        C_Decrypt with CKM_RSA_PKCS there; the public operations are
 *        OpenSSL's, here.
 *   EC   an EC_KEY_METHOD whose sign_sig is C_Sign with CKM_ECDSA on the
 *        digest there, r||s turned into an ECDSA_SIG here.
 *
 * OpenSSL 3 routes a key with such a method (a "foreign" legacy key) through
 * its legacy EVP_PKEY_METHODs, so X509_REQ_sign, CMS_add1_signer/CMS_final
 * and CMS_decrypt reach these callbacks.
 *
 * Each EVP_PKEY carries a struct tok_evp_key (ex_data of its RSA or EC_KEY),
 * which is on its token's list until the EVP_PKEY is freed; tok_close cuts
 * the list off, so a key used after its token was closed fails cleanly. Its
 * budget of signatures and decryptions is a grant of the token process, which
 * counts them and refuses the one after: this side only asks.
 */
/* RSA_METHOD and EC_KEY_METHOD are deprecated in OpenSSL 3, and the only way
 * to put a PKCS#11 key behind an EVP_PKEY without a provider. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "err.h"
#include "log.h"
#include "tokproc.h"

struct tok_evp_key {
	struct tok *t;            /* NULL once tok_close ran */
	long grant;               /* the token process's grant of its operations */
	char *label;              /* for messages */
	struct tok_evp_key *next; /* t->evp_keys */
};

static CRYPTO_ONCE once = CRYPTO_ONCE_STATIC_INIT;
static RSA_METHOD *rsa_meth;
static EC_KEY_METHOD *ec_meth;
static int rsa_idx = -1, ec_idx = -1;

static void
unlink_key(struct tok_evp_key *ek)
{
	struct tok_evp_key **p;

	if (ek->t == NULL)
		return;
	for (p = &ek->t->evp_keys; *p != NULL; p = &(*p)->next)
		if (*p == ek) {
			*p = ek->next;
			break;
		}
	ek->t = NULL;
}

/* Ends the grant of a key still linked to its token, and frees it. */
static void
key_free(struct tok_evp_key *ek)
{
	if (ek == NULL)
		return;
	if (ek->t != NULL)
		tokproc_release(ek->t, ek->grant);
	unlink_key(ek);
	free(ek->label);
	free(ek);
}

/* ex_data free callback: the RSA or EC_KEY of a bridge EVP_PKEY is freed (ptr NULL: another). */
static void
ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	key_free(ptr);
}

/*
 * ex_data dup callback: a copy of the RSA or EC_KEY (OpenSSL's own method, no
 * private half) does not share the hold, which only the original frees.
 */
static int
ex_dup(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d, int idx, long argl,
       void *argp)
{
	(void)to;
	(void)from;
	(void)idx;
	(void)argl;
	(void)argp;
	*from_d = NULL;
	return 1;
}

void
tok_evp_detach(struct tok *t)
{
	struct tok_evp_key *ek, *next;

	for (ek = t->evp_keys; ek != NULL; ek = next) {
		next = ek->next;
		ek->t = NULL;
		ek->next = NULL;
	}
	t->evp_keys = NULL;
}

/* One signature (decrypt 0) or decryption (decrypt 1) by the token process.
 * *outlen: room in out, then the bytes written. */
static int
key_op(struct tok_evp_key *ek, int decrypt, const unsigned char *in, size_t inlen,
       unsigned char *out, size_t *outlen)
{
	if (ek->t == NULL) {
		log_error("private key '%s' used after its token was closed", ek->label);
		return P11E_ERR_INTERNAL;
	}
	return tokproc_key_op(ek->t, ek->grant, decrypt, in, inlen, out, outlen);
}

/* RSA private operation: PKCS#1 v1.5 only (the token pads or unpads). */
static int
rsa_priv(int decrypt, int flen, const unsigned char *from, unsigned char *to, RSA *rsa, int padding)
{
	struct tok_evp_key *ek = RSA_get_ex_data(rsa, rsa_idx);
	size_t len = (size_t)RSA_size(rsa);

	if (ek == NULL || flen < 0)
		return -1;
	if (padding != RSA_PKCS1_PADDING) {
		log_error("private key '%s': the token is used with RSA PKCS#1 v1.5 only "
		          "(OpenSSL asked for padding %d)",
		          ek->label, padding);
		return -1;
	}
	if (key_op(ek, decrypt, from, (size_t)flen, to, &len) != 0)
		return -1;
	return (int)len;
}

static int
rsa_priv_enc(int flen, const unsigned char *from, unsigned char *to, RSA *rsa, int padding)
{
	return rsa_priv(0, flen, from, to, rsa, padding);
}

static int
rsa_priv_dec(int flen, const unsigned char *from, unsigned char *to, RSA *rsa, int padding)
{
	return rsa_priv(1, flen, from, to, rsa, padding);
}

/*
 * ECDSA on the token. CKM_ECDSA signs what it is given; ECDSA uses the
 * digest's leftmost bits up to the order's length (FIPS 186-4 6.4), so a
 * longer digest (SHA-384 with P-256) is cut here, where OpenSSL would cut it,
 * rather than left to each module.
 */
static ECDSA_SIG *
ec_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv, const BIGNUM *rp, EC_KEY *ec)
{
	struct tok_evp_key *ek = EC_KEY_get_ex_data(ec, ec_idx);
	const EC_GROUP *g = EC_KEY_get0_group(ec);
	unsigned char sig[2 * 66]; /* r||s, up to P-521 */
	size_t len = sizeof(sig), half;
	int obits;
	BIGNUM *r = NULL, *s = NULL;
	ECDSA_SIG *out = NULL;

	(void)kinv;
	(void)rp;
	if (ek == NULL || g == NULL || dlen < 0 || (obits = EC_GROUP_order_bits(g)) <= 0)
		return NULL;
	if (obits % 8 == 0 && dlen > obits / 8)
		dlen = obits / 8;
	if (key_op(ek, 0, dgst, (size_t)dlen, sig, &len) != 0)
		return NULL;
	half = len / 2;
	if (len == 0 || len % 2 != 0 || half != (size_t)(obits + 7) / 8) {
		log_error("C_Sign (CKM_ECDSA) with private key '%s' returned %zu bytes, not r||s "
		          "of a %d-bit curve",
		          ek->label, len, obits);
		return NULL;
	}
	if ((r = BN_bin2bn(sig, (int)half, NULL)) == NULL ||
	    (s = BN_bin2bn(sig + half, (int)half, NULL)) == NULL ||
	    (out = ECDSA_SIG_new()) == NULL || ECDSA_SIG_set0(out, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(out);
		return NULL;
	}
	return out;
}

/* The methods and ex_data indexes, once per process (never freed). */
static void
methods_init(void)
{
	int (*sign)(int, const unsigned char *, int, unsigned char *, unsigned int *,
	            const BIGNUM *, const BIGNUM *, EC_KEY *) = NULL;
	RSA_METHOD *rm = NULL;
	EC_KEY_METHOD *em = NULL;

	if ((rsa_idx = RSA_get_ex_new_index(0, NULL, NULL, ex_dup, ex_free)) < 0 ||
	    (ec_idx = EC_KEY_get_ex_new_index(0, NULL, NULL, ex_dup, ex_free)) < 0)
		return;
	if ((rm = RSA_meth_dup(RSA_PKCS1_OpenSSL())) == NULL ||
	    RSA_meth_set1_name(rm, "p11enroll token") != 1 ||
	    RSA_meth_set_priv_enc(rm, rsa_priv_enc) != 1 ||
	    RSA_meth_set_priv_dec(rm, rsa_priv_dec) != 1) {
		RSA_meth_free(rm);
		return;
	}
	if ((em = EC_KEY_METHOD_new(EC_KEY_OpenSSL())) == NULL) {
		RSA_meth_free(rm);
		return;
	}
	/* OpenSSL's sign() calls sign_sig(); no sign_setup: there is no private scalar */
	EC_KEY_METHOD_get_sign(em, &sign, NULL, NULL);
	EC_KEY_METHOD_set_sign(em, sign, NULL, ec_sign_sig);
	rsa_meth = rm;
	ec_meth = em;
}

/*
 * pkey becomes a copy of k's public key whose private operations are the
 * token's; on success ek is the ex_data of its RSA or EC_KEY (freed with it).
 */
static int
wrap(const struct tok_key *k, struct tok_evp_key *ek, EVP_PKEY *pkey)
{
	RSA *rsa = NULL;
	EC_KEY *ec = NULL;
	int ok;

	/* the method first: EVP_PKEY_set1_* marks a key with a method of its own "foreign" */
	if (k->type == TOK_KEY_RSA)
		ok = (rsa = RSAPublicKey_dup(EVP_PKEY_get0_RSA(k->pub))) != NULL &&
		     RSA_set_method(rsa, rsa_meth) == 1 && EVP_PKEY_set1_RSA(pkey, rsa) == 1 &&
		     RSA_set_ex_data(rsa, rsa_idx, ek) == 1;
	else
		ok = (ec = EC_KEY_dup(EVP_PKEY_get0_EC_KEY(k->pub))) != NULL &&
		     EC_KEY_set_method(ec, ec_meth) == 1 && EVP_PKEY_set1_EC_KEY(pkey, ec) == 1 &&
		     EC_KEY_set_ex_data(ec, ec_idx, ek) == 1;
	RSA_free(rsa);
	EC_KEY_free(ec);
	return ok;
}

/* An EVP_PKEY of k's public key whose private operations run on the token. */
int
tok_key_evp(struct tok *t, const struct tok_key *k, int signs, int decrypts, EVP_PKEY **out)
{
	int r = P11E_ERR_INTERNAL;
	struct tok_evp_key *ek = NULL;
	EVP_PKEY *pkey = NULL;

	if (t == NULL || k == NULL || k->pub == NULL || out == NULL ||
	    (k->type != TOK_KEY_RSA && k->type != TOK_KEY_EC))
		goto out;
	if (k->priv_handle == 0) {
		log_error("private key '%s' is not visible on token '%s'%s", k->label,
		          t->info.label, t->logged_in ? "" : " (not logged in)");
		r = P11E_ERR_TOKEN;
		goto out;
	}
	if (CRYPTO_THREAD_run_once(&once, methods_init) != 1 || rsa_meth == NULL ||
	    ec_meth == NULL) {
		log_openssl(LOG_LVL_ERROR, "cannot set up OpenSSL methods for token keys");
		goto out;
	}
	if ((ek = calloc(1, sizeof(*ek))) == NULL || (ek->label = strdup(k->label)) == NULL ||
	    (pkey = EVP_PKEY_new()) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	if ((r = tokproc_grant(t, k, signs, decrypts, &ek->grant)) != 0)
		goto out;
	r = P11E_ERR_INTERNAL;
	ek->t = t;
	ek->next = t->evp_keys;
	t->evp_keys = ek;
	if (!wrap(k, ek, pkey)) {
		log_openssl(LOG_LVL_ERROR, "cannot make an OpenSSL key of private key '%s'",
		            k->label);
		goto out;
	}
	ek = NULL; /* the EVP_PKEY's now */
	*out = pkey;
	pkey = NULL;
	r = 0;
out:
	key_free(ek);
	EVP_PKEY_free(pkey);
	return r;
}
