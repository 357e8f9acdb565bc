/*
 * scep_ca.c: the SCEP core's view of a GetCACert answer (RFC 8894 section
 * 4.2): the certificates, the CA chain from the issuing CA up to the root,
 * the RA certificates and who may sign a reply, chosen by issuance, never by
 * order. Pure: no network, no token, no files.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "log.h"
#include "scep.h"

/* GetCACert: the CA chain and the RA certificates */

/* issuer issued subject: names, key identifiers and keyCertSign agree; the signature verifies. */
static int
issued(X509 *issuer, X509 *subject)
{
	EVP_PKEY *pub;
	int ok;

	if (issuer == subject || X509_cmp(issuer, subject) == 0 ||
	    X509_check_issued(issuer, subject) != X509_V_OK ||
	    (pub = X509_get0_pubkey(issuer)) == NULL)
		return 0;
	ok = X509_verify(subject, pub) == 1;
	ERR_clear_error();
	return ok;
}

static int
self_signed(X509 *x)
{
	int ok = X509_self_signed(x, 1) == 1;

	ERR_clear_error();
	return ok;
}

/* A CA certificate (basicConstraints CA, a v1 root, keyCertSign); a lone self-signed one also. */
static int
is_ca(X509 *x, int lone)
{
	return X509_check_ca(x) != 0 || (lone && self_signed(x));
}

static int
in_stack(STACK_OF(X509) * sk, X509 *x)
{
	int i;

	for (i = 0; i < sk_X509_num(sk); i++)
		if (X509_cmp(sk_X509_value(sk, i), x) == 0)
			return 1;
	return 0;
}

/* Pushes a new reference of x. */
static int
push_ref(STACK_OF(X509) * sk, X509 *x)
{
	if (X509_up_ref(x) != 1)
		return 0;
	if (!sk_X509_push(sk, x)) {
		X509_free(x);
		return 0;
	}
	return 1;
}

/* Key usages that make a certificate issued by the chain an RA certificate. */
#define KU_RA (KU_KEY_ENCIPHERMENT | KU_DATA_ENCIPHERMENT | KU_DIGITAL_SIGNATURE)

/* x issued by a CA of the chain, not a CA itself: a candidate RA certificate. */
static int
ra_candidate(const struct scep_ca *ca, X509 *x, int lone)
{
	int i;

	if (is_ca(x, lone) || in_stack(ca->chain, x))
		return 0;
	for (i = 0; i < sk_X509_num(ca->chain); i++)
		if (issued(sk_X509_value(ca->chain, i), x))
			return 1;
	return 0;
}

/*
 * The issuing CA: a CA certificate of the bundle that issued no other CA
 * certificate of it. Among several, the one that issued an RA certificate of
 * the bundle, then one whose issuer is in the bundle, then the first.
 */
static X509 *
pick_issuing(STACK_OF(X509) * certs)
{
	int i, j, n = sk_X509_num(certs), lone = n == 1, best_score = -1;
	X509 *best = NULL;

	for (i = 0; i < n; i++) {
		X509 *c = sk_X509_value(certs, i);
		int score = 0, lower = 0;

		if (!is_ca(c, lone))
			continue;
		for (j = 0; j < n && !lower; j++) {
			X509 *d = sk_X509_value(certs, j);
			if (is_ca(d, lone) && issued(c, d))
				lower = 1;
		}
		if (lower)
			continue;
		for (j = 0; j < n; j++) {
			X509 *d = sk_X509_value(certs, j);
			uint32_t ku = X509_get_key_usage(d);
			if (!is_ca(d, lone) && issued(c, d) && (ku == UINT32_MAX || (ku & KU_RA)))
				score |= 2;
			else if (issued(d, c))
				score |= 1;
		}
		if (score > best_score) {
			best = c;
			best_score = score;
		}
	}
	return best;
}

/* Appends to ca->chain the issuers of its top found in from, while there are. */
static int
extend_chain(struct scep_ca *ca, STACK_OF(X509) * from, int *added)
{
	int i, grew = 1;
	X509 *top;

	while (grew && !self_signed(top = sk_X509_value(ca->chain, sk_X509_num(ca->chain) - 1))) {
		grew = 0;
		for (i = 0; i < sk_X509_num(from) && !grew; i++) {
			X509 *c = sk_X509_value(from, i);
			if (in_stack(ca->chain, c) || X509_check_ca(c) == 0 || !issued(c, top))
				continue;
			if (!push_ref(ca->chain, c))
				return P11E_ERR_ALLOC;
			grew = 1;
			if (added != NULL)
				(*added)++;
		}
	}
	return 0;
}

static int
select_roles(struct scep_ca *ca)
{
	int i, lone = sk_X509_num(ca->certs) == 1, r;
	X509 *both = NULL, *issuing;

	if ((issuing = pick_issuing(ca->certs)) == NULL) {
		log_error("the CA certificate bundle (GetCACert, GetNextCACert) holds no CA "
		          "certificate: %d certificate(s), none with basicConstraints CA:TRUE",
		          sk_X509_num(ca->certs));
		return P11E_ERR_MALFORMED;
	}
	if ((ca->chain = sk_X509_new_null()) == NULL ||
	    (ca->signers = sk_X509_new_null()) == NULL ||
	    (ca->ignored = sk_X509_new_null()) == NULL || !push_ref(ca->chain, issuing))
		return P11E_ERR_ALLOC;
	ca->ca = issuing;
	if ((r = extend_chain(ca, ca->certs, NULL)) != 0)
		return r;

	for (i = 0; i < sk_X509_num(ca->certs); i++) {
		X509 *c = sk_X509_value(ca->certs, i);
		uint32_t ku;

		if (in_stack(ca->chain, c))
			continue;
		if (!ra_candidate(ca, c, lone)) {
			if (!push_ref(ca->ignored, c))
				return P11E_ERR_ALLOC;
			continue;
		}
		ku = X509_get_key_usage(c);
		if (ku == UINT32_MAX) {
			if (both == NULL)
				both = c;
			continue;
		}
		if (ca->ra_enc == NULL && (ku & KU_KEY_ENCIPHERMENT))
			ca->ra_enc = c;
		if (ca->ra_sign == NULL && (ku & KU_DIGITAL_SIGNATURE))
			ca->ra_sign = c;
	}
	for (i = 0; ca->ra_enc == NULL && i < sk_X509_num(ca->certs); i++) {
		X509 *c = sk_X509_value(ca->certs, i);
		uint32_t ku = X509_get_key_usage(c);
		if (ku != UINT32_MAX && (ku & KU_DATA_ENCIPHERMENT) && ra_candidate(ca, c, lone))
			ca->ra_enc = c;
	}
	if (ca->ra_enc == NULL)
		ca->ra_enc = both != NULL ? both : ca->ca;
	if (ca->ra_sign == NULL)
		ca->ra_sign = both != NULL ? both : ca->ca;
	/* RA certificates of the chain that play no role are ignored too. */
	for (i = 0; i < sk_X509_num(ca->certs); i++) {
		X509 *c = sk_X509_value(ca->certs, i);
		if (c != ca->ra_enc && c != ca->ra_sign && !in_stack(ca->chain, c) &&
		    !in_stack(ca->ignored, c) && !push_ref(ca->ignored, c))
			return P11E_ERR_ALLOC;
	}
	if (!push_ref(ca->signers, ca->ra_sign) ||
	    (ca->ra_sign != ca->ca && !push_ref(ca->signers, ca->ca)))
		return P11E_ERR_ALLOC;
	return 0;
}

int
scep_ca_complete(struct scep_ca *ca, STACK_OF(X509) * candidates, int *added)
{
	int n = 0, r;

	if ((r = extend_chain(ca, candidates, &n)) != 0)
		return r;
	if (added != NULL)
		*added = n;
	return 0;
}

X509 *
scep_ca_top(const struct scep_ca *ca)
{
	return sk_X509_value(ca->chain, sk_X509_num(ca->chain) - 1);
}

int
scep_ca_complete_p(const struct scep_ca *ca)
{
	return self_signed(scep_ca_top(ca));
}

int
scep_ca_verify(const struct scep_ca *ca, char *why, size_t len)
{
	int r = P11E_ERR_ALLOC, i;
	X509_STORE *st = NULL;
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509) *untrusted = NULL;
	X509 *leafs[2];

	snprintf(why, len, "out of memory");
	if ((st = X509_STORE_new()) == NULL || !X509_STORE_add_cert(st, scep_ca_top(ca)) ||
	    (untrusted = sk_X509_dup(ca->chain)) == NULL)
		goto out;
	/* The issuing CA, then the RA certificates, each up to the root. */
	leafs[0] = ca->ra_enc;
	leafs[1] = ca->ra_sign;
	for (i = -1; i < 2; i++) {
		X509 *x = i < 0 ? ca->ca : leafs[i];
		if (i >= 0 && in_stack(ca->chain, x))
			continue;
		X509_STORE_CTX_free(ctx);
		if ((ctx = X509_STORE_CTX_new()) == NULL ||
		    !X509_STORE_CTX_init(ctx, st, x, untrusted))
			goto out;
		if (X509_verify_cert(ctx) != 1) {
			X509 *at = X509_STORE_CTX_get_current_cert(ctx);
			char subj[256];
			scep_name_str(X509_get_subject_name(at != NULL ? at : x), subj,
			              sizeof(subj));
			snprintf(why, len, "%s (at %s)",
			         X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)),
			         subj);
			r = P11E_ERR_VERIFY;
			goto out;
		}
	}
	r = 0;
out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	sk_X509_free(untrusted);
	return r;
}

int
scep_ca_role(const struct scep_ca *ca, X509 *x)
{
	int i, n = sk_X509_num(ca->chain), enc, sign;

	for (i = 0; i < n; i++) {
		if (X509_cmp(sk_X509_value(ca->chain, i), x) != 0)
			continue;
		if (i == 0)
			return SCEP_ROLE_ISSUING;
		return i == n - 1 && self_signed(x) ? SCEP_ROLE_ROOT : SCEP_ROLE_INTERMEDIATE;
	}
	enc = X509_cmp(x, ca->ra_enc) == 0;
	sign = X509_cmp(x, ca->ra_sign) == 0;
	return enc && sign ? SCEP_ROLE_RA
	       : enc       ? SCEP_ROLE_RA_ENC
	       : sign      ? SCEP_ROLE_RA_SIGN
	                   : SCEP_ROLE_IGNORED;
}

const char *
scep_role_str(int role)
{
	switch (role) {
	case SCEP_ROLE_ROOT:
		return "root";
	case SCEP_ROLE_INTERMEDIATE:
		return "intermediate";
	case SCEP_ROLE_ISSUING:
		return "issuing CA";
	case SCEP_ROLE_RA:
		return "RA";
	case SCEP_ROLE_RA_ENC:
		return "RA encrypt";
	case SCEP_ROLE_RA_SIGN:
		return "RA sign";
	default:
		return "ignored";
	}
}

int
scep_ca_certs(const unsigned char *der, size_t len, STACK_OF(X509) * *out)
{
	int r = P11E_ERR_MALFORMED;
	STACK_OF(X509) *certs = NULL;
	X509 *one = NULL;
	CMS_ContentInfo *cms = NULL;
	const unsigned char *p = der;

	*out = NULL;
	if (len == 0) {
		log_error("GetCACert returned an empty body");
		return P11E_ERR_MALFORMED;
	}
	if ((one = d2i_X509(NULL, &p, (long)len)) != NULL && p == der + len) {
		if ((certs = sk_X509_new_null()) == NULL || !sk_X509_push(certs, one)) {
			r = P11E_ERR_ALLOC;
			goto out;
		}
		one = NULL;
	} else {
		ERR_clear_error();
		p = der;
		cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
		if (cms == NULL || p != der + len ||
		    OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
			log_openssl(LOG_LVL_ERROR, "GetCACert response is neither a certificate "
			                           "nor a PKCS#7 certificate bundle");
			goto out;
		}
		certs = CMS_get1_certs(cms);
		if (certs == NULL || sk_X509_num(certs) == 0) {
			log_error("GetCACert bundle holds no certificate");
			goto out;
		}
	}
	*out = certs;
	certs = NULL;
	r = 0;
out:
	X509_free(one);
	CMS_ContentInfo_free(cms);
	sk_X509_pop_free(certs, X509_free);
	return r;
}

int
scep_ca_from_certs(STACK_OF(X509) * certs, struct scep_ca **out)
{
	struct scep_ca *ca;
	int r;

	*out = NULL;
	if ((ca = calloc(1, sizeof(*ca))) == NULL) {
		sk_X509_pop_free(certs, X509_free);
		return P11E_ERR_ALLOC;
	}
	ca->certs = certs;
	if ((r = select_roles(ca)) != 0) {
		scep_ca_free(ca);
		return r;
	}
	*out = ca;
	return 0;
}

int
scep_ca_parse(const unsigned char *der, size_t len, struct scep_ca **out)
{
	STACK_OF(X509) *certs = NULL;
	int r;

	*out = NULL;
	if ((r = scep_ca_certs(der, len, &certs)) != 0)
		return r;
	return scep_ca_from_certs(certs, out);
}

void
scep_ca_free(struct scep_ca *ca)
{
	if (ca == NULL)
		return;
	sk_X509_pop_free(ca->certs, X509_free);
	sk_X509_pop_free(ca->chain, X509_free);
	sk_X509_pop_free(ca->signers, X509_free);
	sk_X509_pop_free(ca->ignored, X509_free);
	free(ca);
}

int
scep_cert_digest(X509 *cert, const EVP_MD *md, unsigned char *out, unsigned int *len)
{
	if (!X509_digest(cert, md, out, len)) {
		log_openssl(LOG_LVL_ERROR, "cannot compute a certificate digest");
		return P11E_ERR_INTERNAL;
	}
	return 0;
}

void
scep_name_str(const X509_NAME *name, char *buf, size_t len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL;
	long n = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	if (b != NULL &&
	    X509_NAME_print_ex(b, name, 0, XN_FLAG_SEP_COMMA_PLUS | ASN1_STRFLGS_RFC2253) >= 0 &&
	    (n = BIO_get_mem_data(b, &p)) > 0)
		snprintf(buf, len, "%.*s", (int)n, p);
	BIO_free(b);
}

void
scep_hex_colon(const unsigned char *d, size_t len, char *buf)
{
	size_t i;

	for (i = 0; i < len; i++)
		sprintf(buf + 3 * i, "%02X%s", d[i], i + 1 < len ? ":" : "");
	if (len == 0)
		buf[0] = '\0';
}
