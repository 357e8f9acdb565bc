/*
 * scep_next.c: the SCEP core's part of CA rollover (RFC 8894 section 4.7):
 * verifying a GetNextCACert response against the current CA. Pure: no
 * network, no token, no files.
 */
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "log.h"
#include "scep.h"

/* A certificate, or a SignedData that carries at least one. */
static int
is_bundle(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	CMS_ContentInfo *cms = NULL;
	STACK_OF(X509) *certs = NULL;
	int ok = x != NULL && p == der + len;

	if (!ok) {
		p = der;
		cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
		ok = cms != NULL && p == der + len &&
		     OBJ_obj2nid(CMS_get0_type(cms)) == NID_pkcs7_signed &&
		     (certs = CMS_get1_certs(cms)) != NULL && sk_X509_num(certs) > 0;
	}
	X509_free(x);
	CMS_ContentInfo_free(cms);
	sk_X509_pop_free(certs, X509_free);
	ERR_clear_error();
	return ok;
}

/* The signer is the current CA, or a certificate of the current bundle that chains to it. */
static int
signer_chains(X509 *signer, X509 *ca, STACK_OF(X509) * bundle)
{
	int r = P11E_ERR_ALLOC;
	X509_STORE *st = NULL;
	X509_STORE_CTX *ctx = NULL;

	if (X509_cmp(signer, ca) == 0)
		return 0;
	if ((st = X509_STORE_new()) == NULL || (ctx = X509_STORE_CTX_new()) == NULL ||
	    !X509_STORE_add_cert(st, ca))
		goto out;
	X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
	if (!X509_STORE_CTX_init(ctx, st, signer, bundle))
		goto out;
	if (X509_verify_cert(ctx) != 1) {
		log_warn("GetNextCACert is signed by a certificate of the GetCACert bundle that "
		         "does not chain to the current CA (%s): refusing the next CA",
		         X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		r = P11E_ERR_VERIFY;
		goto out;
	}
	r = 0;
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	return r;
}

/* The next CA must be a CA, new, and not expired. */
static int
check_next(X509 *next, X509 *cur)
{
	if (X509_check_ca(next) != 1) {
		log_warn("GetNextCACert offers a certificate that is not a CA certificate "
		         "(no basicConstraints CA:TRUE with keyCertSign): refusing it");
		return P11E_ERR_VERIFY;
	}
	if (X509_cmp(next, cur) == 0) {
		log_warn("GetNextCACert offers the current CA certificate as the next one: "
		         "refusing it");
		return P11E_ERR_VERIFY;
	}
	if (X509_cmp_time(X509_get0_notAfter(next), NULL) <= 0) {
		log_warn("GetNextCACert offers a CA certificate that has already expired: "
		         "refusing it");
		return P11E_ERR_VERIFY;
	}
	return 0;
}

int
scep_next_certs(const unsigned char *der, size_t len, STACK_OF(X509) * signers_ok, X509 *ca,
                STACK_OF(X509) * bundle, STACK_OF(X509) * *out)
{
	int r = P11E_ERR_MALFORMED;
	CMS_ContentInfo *cms = NULL;
	STACK_OF(CMS_SignerInfo) * sis;
	STACK_OF(X509) *signers = NULL;
	BIO *content = NULL;
	const unsigned char *p = der;
	unsigned char *inner = NULL;
	long ilen;
	X509_ALGOR *dig = NULL;

	*out = NULL;
	cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
	if (cms == NULL || p != der + len || OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
		log_openssl(LOG_LVL_WARN,
		            "GetNextCACert response is not a CMS SignedData (%zu bytes%s)", len,
		            cms != NULL && p != der + len ? ", trailing data" : "");
		goto out;
	}
	if ((sis = CMS_get0_SignerInfos(cms)) == NULL || sk_CMS_SignerInfo_num(sis) != 1) {
		log_warn("GetNextCACert response is not signed by exactly one signer (%d): "
		         "refusing it",
		         sis != NULL ? sk_CMS_SignerInfo_num(sis) : 0);
		r = P11E_ERR_VERIFY;
		goto out;
	}
	CMS_SignerInfo_get0_algs(sk_CMS_SignerInfo_value(sis, 0), NULL, NULL, &dig, NULL);
	if (!scep_digest_acceptable(dig)) {
		log_warn("GetNextCACert response is signed with %s, not SHA-1 or SHA-2: refusing "
		         "the next CA",
		         dig != NULL ? OBJ_nid2sn(OBJ_obj2nid(dig->algorithm)) : "no digest");
		r = P11E_ERR_VERIFY;
		goto out;
	}
	if ((content = BIO_new(BIO_s_mem())) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	/* Only the current CA or its RA signing certificate can be the signer
	 * (CMS_NOINTERN); its chain to the current CA is checked below. */
	if (CMS_verify(cms, signers_ok, NULL, NULL, content,
	               CMS_NOINTERN | CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY) != 1) {
		log_openssl(LOG_LVL_WARN,
		            "GetNextCACert response is not signed by the current CA or its RA "
		            "(signer unknown, or signature or digest wrong): refusing the next CA");
		r = P11E_ERR_VERIFY;
		goto out;
	}
	if ((signers = CMS_get0_signers(cms)) == NULL || sk_X509_num(signers) != 1) {
		r = P11E_ERR_VERIFY;
		goto out;
	}
	if ((r = signer_chains(sk_X509_value(signers, 0), ca, bundle)) != 0)
		goto out;
	r = P11E_ERR_MALFORMED;
	ilen = BIO_get_mem_data(content, (char **)&inner);
	if (ilen <= 0 || !is_bundle(inner, (size_t)ilen)) {
		log_warn("GetNextCACert response is signed correctly but holds no certificate "
		         "bundle (%ld bytes of content)",
		         ilen);
		goto out;
	}
	r = scep_ca_certs(inner, (size_t)ilen, out);
out:
	sk_X509_free(signers);
	BIO_free(content);
	CMS_ContentInfo_free(cms);
	return r;
}

int
scep_next_from_certs(STACK_OF(X509) * certs, const struct scep_ca *cur, struct scep_ca **out)
{
	struct scep_ca *next = NULL;
	int r;

	*out = NULL;
	/* It is a bundle: what scep_ca_from_certs can still refuse is one without a CA. */
	if ((r = scep_ca_from_certs(certs, &next)) == P11E_ERR_MALFORMED)
		r = P11E_ERR_VERIFY;
	if (r != 0 || (r = scep_ca_complete(next, cur->chain, NULL)) != 0 ||
	    (r = check_next(next->ca, cur->ca)) != 0)
		goto out;
	*out = next;
	next = NULL;
out:
	scep_ca_free(next);
	return r;
}

int
scep_next_parse(const unsigned char *der, size_t len, const struct scep_ca *cur,
                struct scep_ca **out)
{
	STACK_OF(X509) *certs = NULL;
	int r;

	*out = NULL;
	if ((r = scep_next_certs(der, len, cur->signers, cur->ca, cur->certs, &certs)) != 0)
		return r;
	return scep_next_from_certs(certs, cur, out);
}

time_t
scep_next_window(X509 *ca)
{
	const ASN1_TIME *nb = X509_get0_notBefore(ca), *na = X509_get0_notAfter(ca);
	struct tm b, a;
	time_t tb, ta, lead;

	if (nb == NULL || na == NULL || !ASN1_TIME_to_tm(nb, &b) || !ASN1_TIME_to_tm(na, &a))
		return 0;
	tb = timegm(&b);
	ta = timegm(&a);
	if (tb == (time_t)-1 || ta == (time_t)-1 || ta <= tb)
		return 0;
	lead = (ta - tb) / 5;
	if (lead < SCEP_NEXT_LEAD_MIN)
		lead = SCEP_NEXT_LEAD_MIN;
	return ta - lead > tb ? ta - lead : tb;
}
