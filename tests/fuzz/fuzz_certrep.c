/*
 * fuzz_certrep.c: CertRep replies (scep_rep_parse), for the transaction of
 * tests/data/fixtures.txt: our key and self-signed certificate
 * (client.key.pem, client-selfsigned.der), and as trusted signers the issuing
 * CAs and RA signing certificates of the GetCACert fixtures. Each input is
 * tried twice:
 *   1. as it is: parsing, signer, signature, digest and every check after;
 *   2. re-signed: when it parses as a SignedData, its signed attributes
 *      (all but messageDigest) and its content are signed again by the CA
 *      (ca.key.pem) with the input's digest, so that mutated attributes
 *      (messageType, pkiStatus, failInfo, failInfoText, transactionID,
 *      nonces) and envelopes get past the signature.
 * A reply that passes is decrypted with our key (scep_rep_decrypt) and the
 * certificate issued to us is looked for (scep_pick_issued).
 */
#include <openssl/cms.h>
#include <openssl/err.h>

#include "fuzz_common.h"
#include "scep.h"

static STACK_OF(X509) * trusted;
static X509 *self, *ca_cert, *resign_cert;
static EVP_PKEY *key, *resign_key;
static char txid[129];
static unsigned char nonce[16];

static const char *const bundles[] = {
    "getcacert-ca-only.der", "getcacert-ra.p7",
    "getcacert-ra-both.p7",  "getcacert-intermediate.p7",
    "getcacert-2tier.p7",    "getcacert-ndes-2tier.p7",
    "getcacert-3tier.p7",    "getcacert-2tier-ra-both.p7",
};

static void
load_txid_nonce(void)
{
	size_t len, i;
	char *t = (char *)fuzz_load("fixtures.txt", &len), *p;
	unsigned v;

	t[len] = '\0';
	if ((p = strstr(t, "TXID=")) == NULL || sscanf(p + 5, "%128s", txid) != 1 ||
	    (p = strstr(t, "NONCE=")) == NULL)
		fuzz_die("no TXID or NONCE in", "fixtures.txt");
	for (i = 0; i < 16; i++) {
		if (sscanf(p + 6 + 2 * i, "%2x", &v) != 1)
			fuzz_die("bad NONCE in", "fixtures.txt");
		nonce[i] = (unsigned char)v;
	}
	free(t);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t i, len;
	int k;

	(void)argc;
	(void)argv;
	fuzz_quiet();
	if (scep_init() != 0 || (trusted = sk_X509_new_null()) == NULL)
		fuzz_die("scep_init failed", NULL);
	for (i = 0; i < sizeof(bundles) / sizeof(bundles[0]); i++) {
		unsigned char *d = fuzz_load(bundles[i], &len);
		struct scep_ca *ca = NULL;
		if (scep_ca_parse(d, len, &ca) != 0)
			fuzz_die("GetCACert fixture does not parse:", bundles[i]);
		for (k = 0; k < sk_X509_num(ca->signers); k++) {
			X509 *x = sk_X509_value(ca->signers, k);
			if (!X509_up_ref(x) || !sk_X509_push(trusted, x))
				fuzz_die("out of memory", NULL);
		}
		scep_ca_free(ca);
		free(d);
	}
	load_txid_nonce();
	key = fuzz_key("client.key.pem");
	self = fuzz_cert("client-selfsigned.der");
	ca_cert = fuzz_cert("ca.der");
	resign_key = fuzz_key("ca.key.pem");
	resign_cert = fuzz_cert("ca.der");
	return 0;
}

/* The SignedData in der with its attributes and content signed again by the CA; or NULL. */
static unsigned char *
resign(const uint8_t *der, size_t len, size_t *outlen)
{
	const unsigned char *p = der;
	CMS_ContentInfo *in = d2i_CMS_ContentInfo(NULL, &p, (long)len), *out = NULL;
	STACK_OF(CMS_SignerInfo) * sis;
	CMS_SignerInfo *si, *nsi;
	ASN1_OCTET_STRING **content;
	X509_ALGOR *dig = NULL;
	const EVP_MD *md;
	BIO *bio = NULL;
	unsigned char *der_out = NULL;
	int i, n;

	if (in == NULL || OBJ_obj2nid(CMS_get0_type(in)) != NID_pkcs7_signed ||
	    (sis = CMS_get0_SignerInfos(in)) == NULL || sk_CMS_SignerInfo_num(sis) < 1)
		goto out;
	si = sk_CMS_SignerInfo_value(sis, 0);
	CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, NULL);
	if (dig == NULL || (md = EVP_get_digestbyobj(dig->algorithm)) == NULL)
		md = EVP_sha256();
	content = CMS_get0_content(in);
	bio = content != NULL && *content != NULL
	          ? BIO_new_mem_buf(ASN1_STRING_get0_data(*content), ASN1_STRING_length(*content))
	          : BIO_new(BIO_s_mem());
	if (bio == NULL ||
	    (out = CMS_sign(NULL, NULL, NULL, NULL, CMS_PARTIAL | CMS_BINARY)) == NULL ||
	    (nsi = CMS_add1_signer(out, resign_cert, resign_key, md,
	                           CMS_PARTIAL | CMS_NOSMIMECAP | CMS_BINARY)) == NULL)
		goto out;
	for (i = 0; i < CMS_signed_get_attr_count(si); i++) {
		X509_ATTRIBUTE *a = CMS_signed_get_attr(si, i);
		if (OBJ_obj2nid(X509_ATTRIBUTE_get0_object(a)) == NID_pkcs9_messageDigest)
			continue;
		if (!CMS_signed_add1_attr(nsi, a))
			goto out;
	}
	if (!CMS_final(out, bio, NULL, CMS_BINARY) || (n = i2d_CMS_ContentInfo(out, &der_out)) <= 0)
		goto out;
	*outlen = (size_t)n;
out:
	ERR_clear_error();
	BIO_free(bio);
	CMS_ContentInfo_free(in);
	CMS_ContentInfo_free(out);
	return der_out;
}

/* A reply that passed: its envelope and the certificate in it. */
static void
decrypt(const struct scep_rep *rep)
{
	STACK_OF(X509) *certs = NULL, *chain = sk_X509_new_null();
	X509 *issued = NULL;
	int nid = -1;

	if (rep->status == SCEP_STATUS_SUCCESS && (rep->envelope == NULL || rep->envelope_len == 0))
		abort(); /* SUCCESS needs an envelope */
	if (rep->status == SCEP_STATUS_SUCCESS && chain != NULL &&
	    scep_rep_decrypt(rep, key, self, &certs, &nid) == 0) {
		if (sk_X509_num(certs) < 1)
			abort();
		if (scep_pick_issued(certs, X509_get0_pubkey(self), ca_cert, chain, &issued) == 0 &&
		    EVP_PKEY_eq(X509_get0_pubkey(issued), X509_get0_pubkey(self)) != 1)
			abort();
	}
	(void)scep_fail_info_str(rep->fail_info);
	X509_free(issued);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_free(chain);
}

static void
parse(const uint8_t *der, size_t len)
{
	struct scep_rep *rep = NULL;

	if (scep_rep_parse(der, len, trusted, txid, nonce, &rep) != 0) {
		if (rep != NULL)
			abort();
		return;
	}
	decrypt(rep);
	scep_rep_free(rep);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *again;
	size_t n = 0;

	parse(data, size);
	if ((again = resign(data, size, &n)) != NULL) {
		parse(again, n);
		OPENSSL_free(again);
	}
	ERR_clear_error();
	return 0;
}
