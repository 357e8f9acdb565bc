/*
 * fuzz_cacert.c: GetCACert responses (scep_ca_parse: one DER certificate or
 * a degenerate PKCS#7), and what is done with a parsed bundle: verifying its
 * chain, each certificate's role, completing the chain from its own
 * certificates, names, digests and the rollover window.
 */
#include <openssl/evp.h>

#include "fuzz_common.h"
#include "scep.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	if (scep_init() != 0)
		fuzz_die("scep_init failed", NULL);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct scep_ca *ca = NULL;
	char why[256], name[64], tiny[4];
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen;
	int i, added = 0;

	if (scep_ca_parse(data, size, &ca) != 0) {
		if (ca != NULL)
			abort(); /* set only on success */
		return 0;
	}
	if (ca->ca == NULL || sk_X509_num(ca->chain) < 1 || sk_X509_value(ca->chain, 0) != ca->ca ||
	    ca->ra_enc == NULL || ca->ra_sign == NULL)
		abort();
	(void)scep_ca_verify(ca, why, sizeof(why));
	for (i = 0; i < sk_X509_num(ca->certs); i++) {
		X509 *x = sk_X509_value(ca->certs, i);
		(void)scep_role_str(scep_ca_role(ca, x));
		scep_name_str(X509_get_subject_name(x), name, sizeof(name));
		scep_name_str(X509_get_issuer_name(x), tiny, sizeof(tiny));
		(void)scep_cert_digest(x, EVP_sha256(), d, &dlen);
		(void)scep_next_window(x);
	}
	(void)scep_ca_top(ca);
	(void)scep_ca_complete_p(ca);
	(void)scep_ca_complete(ca, ca->certs, &added);
	(void)scep_ca_verify(ca, why, sizeof(why));
	scep_ca_free(ca);
	return 0;
}
