/*
 * fuzz_envelope.c: the envelope of a SUCCESS CertRep (scep_rep_decrypt) and
 * the certificate bundle inside it (scep_pick_issued). Each input is tried
 * twice:
 *   1. as the envelope itself (an EnvelopedData to our key);
 *   2. as the plaintext inside: the target encrypts it to our certificate
 *      (client-selfsigned.der) with a cipher the input's length picks (AES-128,
 *      AES-256, DES3, single DES), so the degenerate PKCS#7 after decryption,
 *      its trailing bytes and the certificates in it are what is fuzzed.
 */
#include <openssl/cms.h>
#include <openssl/err.h>

#include "fuzz_common.h"
#include "scep.h"

static X509 *self, *ca_cert;
static EVP_PKEY *key;
static STACK_OF(X509) * recips;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	if (scep_init() != 0)
		fuzz_die("scep_init failed", NULL);
	key = fuzz_key("client.key.pem");
	self = fuzz_cert("client-selfsigned.der");
	ca_cert = fuzz_cert("ca.der");
	if ((recips = sk_X509_new_null()) == NULL || !sk_X509_push(recips, self))
		fuzz_die("out of memory", NULL);
	return 0;
}

static void
open_envelope(const unsigned char *env, size_t len)
{
	struct scep_rep rep;
	STACK_OF(X509) *certs = NULL, *chain = sk_X509_new_null();
	X509 *issued = NULL;
	int nid = -1, r;

	memset(&rep, 0, sizeof(rep));
	rep.status = SCEP_STATUS_SUCCESS;
	rep.fail_info = -1;
	rep.envelope = (unsigned char *)env;
	rep.envelope_len = len;
	if (chain == NULL)
		abort();
	r = scep_rep_decrypt(&rep, key, self, &certs, &nid);
	if (r == 0) {
		if (sk_X509_num(certs) < 1)
			abort();
		if (scep_pick_issued(certs, X509_get0_pubkey(self), ca_cert, chain, &issued) == 0 &&
		    EVP_PKEY_eq(X509_get0_pubkey(issued), X509_get0_pubkey(self)) != 1)
			abort();
	} else if (certs != NULL) {
		abort(); /* set only on success */
	}
	X509_free(issued);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_free(chain);
	ERR_clear_error();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const EVP_CIPHER *ciphers[] = {EVP_aes_128_cbc(), EVP_aes_256_cbc(), EVP_des_ede3_cbc(),
	                               NULL};
	const EVP_CIPHER *c = ciphers[size % 4];
	EVP_CIPHER *des = NULL;
	CMS_ContentInfo *env = NULL;
	BIO *in = NULL;
	unsigned char *der = NULL;
	int n;

	if (size > 1 << 16)
		return 0;
	open_envelope(data, size);
	/* single DES lives in the legacy provider, which scep_init loaded */
	if (c == NULL && (c = des = EVP_CIPHER_fetch(NULL, "DES-CBC", NULL)) == NULL)
		c = EVP_aes_128_cbc();
	if ((in = BIO_new_mem_buf(data, (int)size)) != NULL &&
	    (env = CMS_encrypt(recips, in, c, CMS_BINARY)) != NULL &&
	    (n = i2d_CMS_ContentInfo(env, &der)) > 0)
		open_envelope(der, (size_t)n);
	OPENSSL_free(der);
	CMS_ContentInfo_free(env);
	BIO_free(in);
	EVP_CIPHER_free(des);
	ERR_clear_error();
	return 0;
}
