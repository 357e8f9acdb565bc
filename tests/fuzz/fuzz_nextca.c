/*
 * fuzz_nextca.c: GetNextCACert responses (scep_next_parse) against the
 * current CA of getcacert-ra.p7. Each input is tried twice:
 *   1. as it is: parsing, signer, signature and digest checks;
 *   2. its content signed again by the current RA signing certificate
 *      (ra-sign.key.pem): the content of the input when it parses as a
 *      SignedData, else the input itself. So the inner bundle, the chain
 *      completed from the current one and the checks of the next CA (a CA,
 *      new, not expired) see mutated certificates past the signature.
 */
#include <openssl/cms.h>
#include <openssl/err.h>

#include "fuzz_common.h"
#include "scep.h"

static struct scep_ca *cur;
static X509 *ra_cert;
static EVP_PKEY *ra_key;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t len;
	unsigned char *d;

	(void)argc;
	(void)argv;
	fuzz_quiet();
	if (scep_init() != 0)
		fuzz_die("scep_init failed", NULL);
	d = fuzz_load("getcacert-ra.p7", &len);
	if (scep_ca_parse(d, len, &cur) != 0)
		fuzz_die("does not parse:", "getcacert-ra.p7");
	free(d);
	ra_cert = fuzz_cert("ra-sign.der");
	ra_key = fuzz_key("ra-sign.key.pem");
	return 0;
}

static void
parse(const unsigned char *der, size_t len)
{
	struct scep_ca *next = NULL;

	if (scep_next_parse(der, len, cur, &next) == 0) {
		if (next == NULL || next->ca == NULL || X509_cmp(next->ca, cur->ca) == 0)
			abort();
		(void)scep_next_window(next->ca);
		scep_ca_free(next);
	} else if (next != NULL) {
		abort();
	}
	ERR_clear_error();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	CMS_ContentInfo *in = d2i_CMS_ContentInfo(NULL, &p, (long)size), *out = NULL;
	ASN1_OCTET_STRING **content = NULL;
	BIO *bio = NULL;
	unsigned char *der = NULL;
	int n;

	parse(data, size);
	if (in != NULL && OBJ_obj2nid(CMS_get0_type(in)) == NID_pkcs7_signed &&
	    (content = CMS_get0_content(in)) != NULL && *content != NULL)
		bio =
		    BIO_new_mem_buf(ASN1_STRING_get0_data(*content), ASN1_STRING_length(*content));
	else
		bio = BIO_new_mem_buf(data, (int)size);
	if (bio != NULL &&
	    (out = CMS_sign(ra_cert, ra_key, NULL, bio, CMS_BINARY | CMS_NOSMIMECAP)) != NULL &&
	    (n = i2d_CMS_ContentInfo(out, &der)) > 0)
		parse(der, (size_t)n);
	OPENSSL_free(der);
	CMS_ContentInfo_free(in);
	CMS_ContentInfo_free(out);
	BIO_free(bio);
	ERR_clear_error();
	return 0;
}
