/*
 * scep_env.c: the envelope of a SUCCESS CertRep (scep.h), in two halves that
 * run in different processes. scep_env_parse reads the server's EnvelopedData
 * (in the network process); scep_env_open decrypts its fields with the
 * request's key (in the process that holds the token), and parses no ASN.1
 * from the server at all.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "err.h"
#include "log.h"
#include "scep.h"

/* The content ciphers a CertRep may use and their IV lengths (CBC: the block's). */
static const struct {
	int nid;
	size_t iv;
} ciphers[] = {
    {NID_aes_128_cbc, 16}, {NID_aes_192_cbc, 16}, {NID_aes_256_cbc, 16},
    {NID_des_ede3_cbc, 8}, {NID_des_cbc, 8},
};

/* The IV length of a content cipher a CertRep may use (its block length: CBC), else 0. */
size_t
scep_env_iv_len(int nid)
{
	size_t i;

	for (i = 0; i < sizeof(ciphers) / sizeof(ciphers[0]); i++)
		if (ciphers[i].nid == nid)
			return ciphers[i].iv;
	return 0;
}

void
scep_env_free(struct scep_env *env)
{
	if (env == NULL)
		return;
	OPENSSL_free(env->key);
	OPENSSL_free(env->data);
	free(env);
}

/* Whether ri names to (issuerAndSerialNumber). */
static int
addressed_to(PKCS7_RECIP_INFO *ri, X509 *to)
{
	const PKCS7_ISSUER_AND_SERIAL *is = ri->issuer_and_serial;

	return is != NULL && is->issuer != NULL && is->serial != NULL &&
	       X509_NAME_cmp(is->issuer, X509_get_issuer_name(to)) == 0 &&
	       ASN1_INTEGER_cmp(is->serial, X509_get0_serialNumber(to)) == 0;
}

/* The recipient of env addressed to to, or NULL (logged). */
static PKCS7_RECIP_INFO *
find_recipient(PKCS7_ENVELOPE *env, X509 *to)
{
	int i, n = sk_PKCS7_RECIP_INFO_num(env->recipientinfo);

	for (i = 0; i < n; i++)
		if (addressed_to(sk_PKCS7_RECIP_INFO_value(env->recipientinfo, i), to))
			return sk_PKCS7_RECIP_INFO_value(env->recipientinfo, i);
	log_error("CertRep envelope is not addressed to the certificate the request was signed "
	          "with (%d recipient%s, none with its issuer and serial number)",
	          n, n == 1 ? "" : "s");
	return NULL;
}

/* A copy of s's bytes into *out (OPENSSL_free). 0, P11E_ERR_ALLOC. */
static int
copy_bytes(const ASN1_OCTET_STRING *s, unsigned char **out, size_t *len)
{
	if ((*out = OPENSSL_memdup(ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s))) ==
	    NULL)
		return P11E_ERR_ALLOC;
	*len = (size_t)ASN1_STRING_length(s);
	return 0;
}

int
scep_env_parse(const unsigned char *der, size_t len, X509 *to, struct scep_env **out)
{
	int r = P11E_ERR_MALFORMED, ptype = V_ASN1_UNDEF;
	const unsigned char *p = der;
	const void *pval = NULL;
	const ASN1_OBJECT *obj = NULL;
	const ASN1_OCTET_STRING *iv;
	PKCS7 *p7 = NULL;
	PKCS7_RECIP_INFO *ri;
	PKCS7_ENC_CONTENT *ec;
	struct scep_env *env = NULL;
	size_t iv_len;

	*out = NULL;
	p7 = d2i_PKCS7(NULL, &p, (long)len);
	if (p7 == NULL || p != der + len || !PKCS7_type_is_enveloped(p7) ||
	    p7->d.enveloped == NULL || (ec = p7->d.enveloped->enc_data) == NULL ||
	    ec->algorithm == NULL) {
		log_openssl(LOG_LVL_ERROR, "CertRep envelope is not a valid EnvelopedData");
		goto out;
	}
	if ((env = calloc(1, sizeof(*env))) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	X509_ALGOR_get0(&obj, &ptype, &pval, ec->algorithm);
	env->cipher_nid = OBJ_obj2nid(obj);
	if ((iv_len = scep_env_iv_len(env->cipher_nid)) == 0) {
		log_error("CertRep envelope uses the content cipher %s; p11enroll reads AES-CBC, "
		          "DES-EDE3-CBC and DES-CBC",
		          env->cipher_nid != NID_undef ? OBJ_nid2sn(env->cipher_nid) : "(unknown)");
		goto out;
	}
	iv = pval;
	if (ptype != V_ASN1_OCTET_STRING || iv == NULL ||
	    (size_t)ASN1_STRING_length(iv) != iv_len) {
		log_error("CertRep envelope's %s parameters are not a %zu-byte IV",
		          OBJ_nid2sn(env->cipher_nid), iv_len);
		goto out;
	}
	memcpy(env->iv, ASN1_STRING_get0_data(iv), iv_len);
	env->iv_len = iv_len;
	if (ec->enc_data == NULL || ASN1_STRING_length(ec->enc_data) <= 0 ||
	    (size_t)ASN1_STRING_length(ec->enc_data) % iv_len != 0) {
		log_error("CertRep envelope's encrypted content is %s",
		          ec->enc_data == NULL || ASN1_STRING_length(ec->enc_data) <= 0
		              ? "missing or empty"
		              : "not a whole number of cipher blocks");
		goto out;
	}
	if ((ri = find_recipient(p7->d.enveloped, to)) == NULL) {
		r = P11E_ERR_VERIFY;
		goto out;
	}
	X509_ALGOR_get0(&obj, NULL, NULL, ri->key_enc_algor);
	if (OBJ_obj2nid(obj) != NID_rsaEncryption) {
		log_error("CertRep envelope's key is encrypted with %s; SCEP uses rsaEncryption "
		          "(RFC 8894), the only one p11enroll reads",
		          OBJ_nid2sn(OBJ_obj2nid(obj)));
		goto out;
	}
	if (ri->enc_key == NULL || ASN1_STRING_length(ri->enc_key) <= 0 ||
	    ASN1_STRING_length(ri->enc_key) > SCEP_ENV_KEY_MAX) {
		log_error("CertRep envelope's encrypted key is missing or longer than %d bytes",
		          SCEP_ENV_KEY_MAX);
		goto out;
	}
	if ((r = copy_bytes(ri->enc_key, &env->key, &env->key_len)) != 0 ||
	    (r = copy_bytes(ec->enc_data, &env->data, &env->data_len)) != 0)
		goto out;
	*out = env;
	env = NULL;
	r = 0;
out:
	PKCS7_free(p7);
	scep_env_free(env);
	return r;
}

/* The content-encryption key: env's key decrypted with key (RSA PKCS#1 v1.5). *cek
 * (OPENSSL_clear_free) of the cipher's key length. 0, P11E_ERR_VERIFY (logged),
 * P11E_ERR_ALLOC. */
static int
unwrap_key(const struct scep_env *env, EVP_PKEY *key, const EVP_CIPHER *cipher, unsigned char **cek,
           size_t *cek_len)
{
	EVP_PKEY_CTX *ctx = NULL;
	unsigned char *buf = NULL;
	size_t n = 0;
	int r = P11E_ERR_VERIFY;

	if (!EVP_PKEY_is_a(key, "RSA")) {
		log_error("CertRep envelope's key is encrypted with RSA; the request key is %s",
		          EVP_PKEY_get0_type_name(key));
		goto out;
	}
	if ((ctx = EVP_PKEY_CTX_new(key, NULL)) == NULL ||
	    (n = (size_t)EVP_PKEY_get_size(key)) == 0 || (buf = OPENSSL_malloc(n)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	if (EVP_PKEY_decrypt_init(ctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0 ||
	    EVP_PKEY_decrypt(ctx, buf, &n, env->key, env->key_len) <= 0) {
		log_openssl(LOG_LVL_ERROR, "cannot decrypt the CertRep envelope's key with the "
		                           "request key");
		goto out;
	}
	if (n != (size_t)EVP_CIPHER_get_key_length(cipher)) {
		log_error("CertRep envelope's key is %zu bytes; %s takes %d", n,
		          EVP_CIPHER_get0_name(cipher), EVP_CIPHER_get_key_length(cipher));
		goto out;
	}
	*cek = buf;
	*cek_len = n;
	buf = NULL;
	r = 0;
out:
	OPENSSL_clear_free(buf, EVP_PKEY_get_size(key) > 0 ? (size_t)EVP_PKEY_get_size(key) : 0);
	EVP_PKEY_CTX_free(ctx);
	return r;
}

int
scep_env_open(const struct scep_env *env, EVP_PKEY *key, unsigned char **plain, size_t *plain_len)
{
	EVP_CIPHER *cipher = NULL;
	EVP_CIPHER_CTX *cctx = NULL;
	unsigned char *cek = NULL, *buf = NULL;
	size_t cek_len = 0;
	int r = P11E_ERR_VERIFY, n1 = 0, n2 = 0;

	*plain = NULL;
	*plain_len = 0;
	if (scep_env_iv_len(env->cipher_nid) != env->iv_len || env->data_len == 0 ||
	    env->data_len % env->iv_len != 0 || env->data_len > INT_MAX) {
		log_error("CertRep envelope's fields are inconsistent");
		return P11E_ERR_MALFORMED;
	}
	if ((cipher = EVP_CIPHER_fetch(NULL, OBJ_nid2sn(env->cipher_nid), NULL)) == NULL) {
		log_openssl(LOG_LVL_ERROR,
		            "cannot decrypt the CertRep envelope: cipher %s is "
		            "not available (single DES needs OpenSSL's legacy "
		            "provider)",
		            OBJ_nid2sn(env->cipher_nid));
		goto out;
	}
	if ((r = unwrap_key(env, key, cipher, &cek, &cek_len)) != 0)
		goto out;
	r = P11E_ERR_ALLOC;
	if ((cctx = EVP_CIPHER_CTX_new()) == NULL || (buf = OPENSSL_malloc(env->data_len)) == NULL)
		goto out;
	r = P11E_ERR_VERIFY;
	if (!EVP_DecryptInit_ex2(cctx, cipher, cek, env->iv, NULL) ||
	    !EVP_DecryptUpdate(cctx, buf, &n1, env->data, (int)env->data_len) ||
	    !EVP_DecryptFinal_ex(cctx, buf + n1, &n2)) {
		log_openssl(LOG_LVL_ERROR,
		            "cannot decrypt the CertRep envelope (cipher %s) with the "
		            "request key",
		            OBJ_nid2sn(env->cipher_nid));
		goto out;
	}
	if (n1 + n2 <= 0) {
		log_error("CertRep envelope does not hold a certificate bundle (it is empty)");
		r = P11E_ERR_MALFORMED;
		goto out;
	}
	*plain = buf;
	*plain_len = (size_t)(n1 + n2);
	buf = NULL;
	r = 0;
out:
	OPENSSL_clear_free(cek, cek_len);
	OPENSSL_free(buf);
	EVP_CIPHER_CTX_free(cctx);
	EVP_CIPHER_free(cipher);
	return r;
}
