/*
 * scep.c: the SCEP core (RFC 8894). Pure: no network, no token, no files.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "log.h"
#include "scep.h"

/* SCEP signed attributes, RFC 8894 section 3.2.1 */
#define OID_MESSAGE_TYPE "2.16.840.1.113733.1.9.2"
#define OID_PKI_STATUS "2.16.840.1.113733.1.9.3"
#define OID_FAIL_INFO "2.16.840.1.113733.1.9.4"
#define OID_SENDER_NONCE "2.16.840.1.113733.1.9.5"
#define OID_RECIPIENT_NONCE "2.16.840.1.113733.1.9.6"
#define OID_TRANSACTION_ID "2.16.840.1.113733.1.9.7"
#define OID_FAIL_INFO_TEXT "1.3.6.1.5.5.7.24.1"
/* step-ca (its pkcs7/scep library) sends failInfoText under the id-scep arc itself */
#define OID_FAIL_INFO_TEXT_ARC "1.3.6.1.5.5.7.24"

static OSSL_PROVIDER *prov_default, *prov_legacy;
static int nid_message_type, nid_pki_status, nid_fail_info, nid_sender_nonce, nid_recipient_nonce,
    nid_transaction_id, nid_fail_info_text, nid_fail_info_text_arc;

static int
make_nid(const char *oid, const char *name)
{
	int nid = OBJ_txt2nid(oid);

	if (nid == NID_undef)
		nid = OBJ_create(oid, name, name);
	return nid;
}

static int init(int legacy);

int
scep_init(void)
{
	return init(1);
}

int
scep_init_verify_only(void)
{
	return init(0);
}

static int
init(int legacy)
{
	if (nid_transaction_id != 0)
		return 0;
	if ((prov_default = OSSL_PROVIDER_load(NULL, "default")) == NULL) {
		log_openssl(LOG_LVL_ERROR, "cannot load the OpenSSL default provider");
		return P11E_ERR_INTERNAL;
	}
	if (legacy && (prov_legacy = OSSL_PROVIDER_load(NULL, "legacy")) == NULL)
		log_openssl(LOG_LVL_DEBUG, "OpenSSL legacy provider not available; "
		                           "single-DES CertReps cannot be decrypted");
	nid_message_type = make_nid(OID_MESSAGE_TYPE, "scepMessageType");
	nid_pki_status = make_nid(OID_PKI_STATUS, "scepPkiStatus");
	nid_fail_info = make_nid(OID_FAIL_INFO, "scepFailInfo");
	nid_sender_nonce = make_nid(OID_SENDER_NONCE, "scepSenderNonce");
	nid_recipient_nonce = make_nid(OID_RECIPIENT_NONCE, "scepRecipientNonce");
	nid_transaction_id = make_nid(OID_TRANSACTION_ID, "scepTransactionID");
	nid_fail_info_text = make_nid(OID_FAIL_INFO_TEXT, "scepFailInfoText");
	nid_fail_info_text_arc = make_nid(OID_FAIL_INFO_TEXT_ARC, "scepFailInfoTextArc");
	if (nid_message_type == NID_undef || nid_pki_status == NID_undef ||
	    nid_fail_info == NID_undef || nid_sender_nonce == NID_undef ||
	    nid_recipient_nonce == NID_undef || nid_transaction_id == NID_undef ||
	    nid_fail_info_text == NID_undef || nid_fail_info_text_arc == NID_undef) {
		log_openssl(LOG_LVL_ERROR, "cannot register the SCEP attribute OIDs");
		nid_transaction_id = 0;
		return P11E_ERR_INTERNAL;
	}
	return 0;
}

void
scep_cleanup(void)
{
	if (prov_legacy != NULL)
		OSSL_PROVIDER_unload(prov_legacy);
	if (prov_default != NULL)
		OSSL_PROVIDER_unload(prov_default);
	prov_legacy = prov_default = NULL;
	nid_transaction_id = 0;
}

/* GetCACaps */

static const struct {
	const char *name;
	unsigned bit;
} cap_names[] = {
    {"POSTPKIOperation", SCEP_CAP_POST},
    {"AES", SCEP_CAP_AES},
    {"DES3", SCEP_CAP_DES3},
    {"SHA-1", SCEP_CAP_SHA1},
    {"SHA-256", SCEP_CAP_SHA256},
    {"SHA-512", SCEP_CAP_SHA512},
    {"Renewal", SCEP_CAP_RENEWAL},
    {"SCEPStandard", SCEP_CAP_STANDARD},
    {"GetNextCACert", SCEP_CAP_NEXTCA},
};

unsigned
scep_caps_parse(const unsigned char *body, size_t len)
{
	unsigned caps = 0;
	size_t i = 0, s, e, k;

	while (i < len) {
		s = i;
		while (i < len && body[i] != '\n')
			i++;
		e = i++;
		while (s < e && isspace(body[s]))
			s++;
		while (e > s && isspace(body[e - 1]))
			e--;
		for (k = 0; k < sizeof(cap_names) / sizeof(cap_names[0]); k++) {
			if (strlen(cap_names[k].name) == e - s &&
			    strncasecmp((const char *)body + s, cap_names[k].name, e - s) == 0)
				caps |= cap_names[k].bit;
		}
	}
	if (caps & SCEP_CAP_STANDARD)
		caps |= SCEP_CAP_AES | SCEP_CAP_POST | SCEP_CAP_SHA256;
	return caps;
}

void
scep_caps_str(unsigned caps, char *buf, size_t len)
{
	size_t k, off = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	for (k = 0; k < sizeof(cap_names) / sizeof(cap_names[0]); k++) {
		if (!(caps & cap_names[k].bit))
			continue;
		int n = snprintf(buf + off, len - off, "%s%s", off ? " " : "", cap_names[k].name);
		if (n < 0 || (size_t)n >= len - off)
			return;
		off += (size_t)n;
	}
	if (off == 0)
		snprintf(buf, len, "(none)");
}

/* pkiMessage */

static int
add_attr_string(CMS_SignerInfo *si, int nid, int type, const void *v, int len)
{
	if (!CMS_signed_add1_attr_by_NID(si, nid, type, v, len)) {
		log_openssl(LOG_LVL_ERROR, "cannot add a SCEP attribute");
		return P11E_ERR_INTERNAL;
	}
	return 0;
}

int
scep_req_build(const struct scep_req *req, unsigned char **der, size_t *der_len)
{
	int r = P11E_ERR_INTERNAL, n;
	STACK_OF(X509) *recips = NULL;
	BIO *in = NULL, *envbio = NULL;
	CMS_ContentInfo *env = NULL, *sd = NULL;
	CMS_SignerInfo *si;
	unsigned char *envder = NULL, *outder = NULL;
	char mt[8];

	if (req->cipher == NULL || EVP_CIPHER_get_nid(req->cipher) == NID_des_cbc) {
		log_error("refusing to encrypt a request with single DES");
		return P11E_ERR_INTERNAL;
	}
	if ((recips = sk_X509_new_null()) == NULL || !sk_X509_push(recips, req->recipient) ||
	    (in = BIO_new_mem_buf(req->inner, (int)req->inner_len)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	if ((env = CMS_encrypt(recips, in, req->cipher, CMS_BINARY)) == NULL ||
	    (n = i2d_CMS_ContentInfo(env, &envder)) <= 0) {
		log_openssl(LOG_LVL_ERROR, "cannot encrypt the request to the RA certificate");
		goto out;
	}
	if ((envbio = BIO_new_mem_buf(envder, n)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	if ((sd = CMS_sign(NULL, NULL, NULL, NULL, CMS_PARTIAL | CMS_BINARY)) == NULL ||
	    (si = CMS_add1_signer(sd, req->signer_cert, req->signer_key, req->md,
	                          CMS_BINARY | CMS_NOSMIMECAP)) == NULL) {
		log_openssl(LOG_LVL_ERROR, "cannot prepare the signed request");
		goto out;
	}
	snprintf(mt, sizeof(mt), "%d", req->msg_type);
	if ((r = add_attr_string(si, nid_transaction_id, V_ASN1_PRINTABLESTRING, req->txid,
	                         (int)strlen(req->txid))) != 0 ||
	    (r = add_attr_string(si, nid_message_type, V_ASN1_PRINTABLESTRING, mt,
	                         (int)strlen(mt))) != 0 ||
	    (r = add_attr_string(si, nid_sender_nonce, V_ASN1_OCTET_STRING, req->nonce,
	                         (int)sizeof(req->nonce))) != 0)
		goto out;
	if (!CMS_final(sd, envbio, NULL, CMS_BINARY)) {
		log_openssl(LOG_LVL_ERROR, "cannot sign the request with the token key");
		r = P11E_ERR_TOKEN;
		goto out;
	}
	if ((n = i2d_CMS_ContentInfo(sd, &outder)) <= 0) {
		log_openssl(LOG_LVL_ERROR, "cannot encode the request");
		r = P11E_ERR_INTERNAL;
		goto out;
	}
	*der = outder;
	*der_len = (size_t)n;
	outder = NULL;
	r = 0;
out:
	sk_X509_free(recips);
	BIO_free(in);
	BIO_free(envbio);
	CMS_ContentInfo_free(env);
	CMS_ContentInfo_free(sd);
	OPENSSL_free(envder);
	OPENSSL_free(outder);
	return r;
}

/* CertRep */

static const char *const fail_names[] = {"badAlg", "badMessageCheck", "badRequest", "badTime",
                                         "badCertId"};

const char *
scep_fail_info_str(int fi)
{
	if (fi >= 0 && fi < (int)(sizeof(fail_names) / sizeof(fail_names[0])))
		return fail_names[fi];
	return "unknown failInfo";
}

/* The single-valued string attribute nid, or NULL. */
static ASN1_STRING *
get_attr(CMS_SignerInfo *si, int nid, int type)
{
	ASN1_OBJECT *obj = OBJ_nid2obj(nid);
	ASN1_STRING *s;

	s = CMS_signed_get0_data_by_OBJ(si, obj, -3, type);
	ERR_clear_error();
	return s;
}

static ASN1_STRING *
get_attr_text(CMS_SignerInfo *si, int nid)
{
	ASN1_STRING *s = get_attr(si, nid, V_ASN1_PRINTABLESTRING);

	if (s == NULL)
		s = get_attr(si, nid, V_ASN1_UTF8STRING);
	if (s == NULL)
		s = get_attr(si, nid, V_ASN1_IA5STRING);
	return s;
}

static int
small_int(ASN1_STRING *s, int *v)
{
	int i, n = 0;

	if (s == NULL || ASN1_STRING_length(s) < 1 || ASN1_STRING_length(s) > 3)
		return -1;
	for (i = 0; i < ASN1_STRING_length(s); i++) {
		unsigned char c = ASN1_STRING_get0_data(s)[i];
		if (c < '0' || c > '9')
			return -1;
		n = n * 10 + (c - '0');
	}
	*v = n;
	return 0;
}

static void
printable_copy(ASN1_STRING *s, char *buf, size_t len)
{
	size_t i, n = (size_t)ASN1_STRING_length(s);
	const unsigned char *d = ASN1_STRING_get0_data(s);

	if (n >= len)
		n = len - 1;
	for (i = 0; i < n; i++)
		buf[i] = (d[i] >= 0x20 && d[i] < 0x7f) ? (char)d[i] : '?';
	buf[n] = '\0';
}

static X509 *
find_signer(CMS_SignerInfo *si, STACK_OF(X509) * trusted)
{
	int i;

	for (i = 0; i < sk_X509_num(trusted); i++) {
		if (CMS_SignerInfo_cert_cmp(si, sk_X509_value(trusted, i)) == 0)
			return sk_X509_value(trusted, i);
	}
	return NULL;
}

static int
check_content_digest(CMS_SignerInfo *si, const unsigned char *content, size_t len)
{
	X509_ALGOR *dig = NULL;
	const EVP_MD *md;
	ASN1_OCTET_STRING *want;
	unsigned char got[EVP_MAX_MD_SIZE];
	unsigned int glen = 0;

	CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, NULL);
	if (dig == NULL || (md = EVP_get_digestbyobj(dig->algorithm)) == NULL)
		return P11E_ERR_MALFORMED;
	want = get_attr(si, NID_pkcs9_messageDigest, V_ASN1_OCTET_STRING);
	if (want == NULL)
		return P11E_ERR_MALFORMED;
	if (!EVP_Digest(content, len, got, &glen, md, NULL))
		return P11E_ERR_INTERNAL;
	if ((int)glen != ASN1_STRING_length(want) ||
	    memcmp(got, ASN1_STRING_get0_data(want), glen) != 0)
		return P11E_ERR_VERIFY;
	return 0;
}

int
scep_digest_acceptable(const X509_ALGOR *alg)
{
	switch (alg != NULL ? OBJ_obj2nid(alg->algorithm) : NID_undef) {
	case NID_sha1:
	case NID_sha224:
	case NID_sha256:
	case NID_sha384:
	case NID_sha512:
		return 1;
	default:
		return 0;
	}
}

int
scep_rep_parse(const unsigned char *der, size_t len, STACK_OF(X509) * trusted, const char *txid,
               const unsigned char nonce[16], struct scep_rep **out)
{
	int r = P11E_ERR_MALFORMED, v;
	CMS_ContentInfo *cms = NULL;
	STACK_OF(CMS_SignerInfo) * sis;
	CMS_SignerInfo *si;
	struct scep_rep *rep = NULL;
	const unsigned char *p = der;
	ASN1_OCTET_STRING **content;
	ASN1_STRING *s;
	X509_ALGOR *dig = NULL;
	char buf[128];

	if ((rep = calloc(1, sizeof(*rep))) == NULL)
		return P11E_ERR_ALLOC;
	rep->fail_info = -1;
	cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
	if (cms == NULL || p != der + len) {
		log_openssl(LOG_LVL_ERROR, "CertRep is not a valid CMS message (%zu bytes%s)", len,
		            cms != NULL ? ", trailing data" : "");
		goto out;
	}
	if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed ||
	    (sis = CMS_get0_SignerInfos(cms)) == NULL || sk_CMS_SignerInfo_num(sis) != 1) {
		log_error("CertRep is not a SignedData with exactly one signer");
		goto out;
	}
	if (OBJ_obj2nid(CMS_get0_eContentType(cms)) != NID_pkcs7_data) {
		log_error("CertRep's content type is %s, not data (RFC 8894 3.1)",
		          OBJ_nid2sn(OBJ_obj2nid(CMS_get0_eContentType(cms))));
		goto out;
	}
	si = sk_CMS_SignerInfo_value(sis, 0);
	if (CMS_signed_get_attr_count(si) <= 0) {
		log_error("CertRep carries no signed attributes");
		goto out;
	}
	CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, NULL);
	if (!scep_digest_acceptable(dig)) {
		log_error("CertRep is signed with %s: only SHA-1 and SHA-2 are accepted (RFC 8894 "
		          "2.9 forbids MD5)",
		          dig != NULL ? OBJ_nid2sn(OBJ_obj2nid(dig->algorithm)) : "no digest");
		r = P11E_ERR_VERIFY;
		goto out;
	}
	if ((rep->signer = find_signer(si, trusted)) == NULL || !X509_up_ref(rep->signer)) {
		rep->signer = NULL;
		log_error("CertRep is signed by a certificate that is neither the issuing CA nor "
		          "its RA signing certificate from GetCACert: refusing it");
		r = P11E_ERR_VERIFY;
		goto out;
	}
	CMS_SignerInfo_set1_signer_cert(si, rep->signer);
	if (CMS_SignerInfo_verify(si) != 1) {
		log_openssl(LOG_LVL_ERROR, "CertRep signature does not verify");
		r = P11E_ERR_VERIFY;
		goto out;
	}
	content = CMS_get0_content(cms);
	if ((r = check_content_digest(
	         si, content && *content ? ASN1_STRING_get0_data(*content) : NULL,
	         content && *content ? (size_t)ASN1_STRING_length(*content) : 0)) != 0) {
		log_error("CertRep content does not match its signed digest");
		if (r == P11E_ERR_MALFORMED)
			r = P11E_ERR_VERIFY;
		goto out;
	}
	rep->sig_md = OBJ_nid2sn(OBJ_obj2nid(dig->algorithm));

	r = P11E_ERR_VERIFY;
	if (small_int(get_attr_text(si, nid_message_type), &v) != 0 || v != SCEP_MSG_CERTREP) {
		log_error("response is not a CertRep (messageType %s)",
		          get_attr_text(si, nid_message_type) ? "is another type" : "missing");
		goto out;
	}
	s = get_attr_text(si, nid_transaction_id);
	if (s == NULL || (size_t)ASN1_STRING_length(s) != strlen(txid) ||
	    memcmp(ASN1_STRING_get0_data(s), txid, strlen(txid)) != 0) {
		if (s != NULL)
			printable_copy(s, buf, sizeof(buf));
		log_error("CertRep transactionID %s%s%s does not match ours (%s)", s ? "'" : "",
		          s ? buf : "missing", s ? "'" : "", txid);
		goto out;
	}
	s = get_attr(si, nid_recipient_nonce, V_ASN1_OCTET_STRING);
	if (s == NULL || ASN1_STRING_length(s) != 16 ||
	    memcmp(ASN1_STRING_get0_data(s), nonce, 16) != 0) {
		log_error("CertRep recipientNonce %s the senderNonce we sent: refusing it "
		          "(a replayed or forged answer)",
		          s ? "differs from" : "is missing; it must echo");
		goto out;
	}
	if (small_int(get_attr_text(si, nid_pki_status), &rep->status) != 0 ||
	    (rep->status != SCEP_STATUS_SUCCESS && rep->status != SCEP_STATUS_FAILURE &&
	     rep->status != SCEP_STATUS_PENDING)) {
		log_error("CertRep pkiStatus is missing or invalid");
		r = P11E_ERR_MALFORMED;
		goto out;
	}
	if (rep->status == SCEP_STATUS_FAILURE &&
	    small_int(get_attr_text(si, nid_fail_info), &rep->fail_info) != 0)
		rep->fail_info = -1;
	if ((s = get_attr_text(si, nid_fail_info_text)) != NULL ||
	    (s = get_attr_text(si, nid_fail_info_text_arc)) != NULL) {
		printable_copy(s, buf, sizeof(buf));
		if ((rep->fail_text = strdup(buf)) == NULL) {
			r = P11E_ERR_ALLOC;
			goto out;
		}
	}
	if (rep->status == SCEP_STATUS_SUCCESS) {
		if (content == NULL || *content == NULL || ASN1_STRING_length(*content) <= 0) {
			log_error("CertRep says SUCCESS but carries no certificate envelope");
			r = P11E_ERR_MALFORMED;
			goto out;
		}
		rep->envelope_len = (size_t)ASN1_STRING_length(*content);
		if ((rep->envelope = malloc(rep->envelope_len)) == NULL) {
			r = P11E_ERR_ALLOC;
			goto out;
		}
		memcpy(rep->envelope, ASN1_STRING_get0_data(*content), rep->envelope_len);
	}
	*out = rep;
	rep = NULL;
	r = 0;
out:
	CMS_ContentInfo_free(cms);
	scep_rep_free(rep);
	return r;
}

void
scep_rep_free(struct scep_rep *rep)
{
	if (rep == NULL)
		return;
	X509_free(rep->signer);
	free(rep->fail_text);
	free(rep->envelope);
	free(rep);
}

int
scep_rep_open(const struct scep_rep *rep, EVP_PKEY *key, X509 *cert, unsigned char **plain,
              size_t *plain_len, int *cipher_nid)
{
	struct scep_env *env = NULL;
	int r;

	*plain = NULL;
	*plain_len = 0;
	*cipher_nid = NID_undef;
	if ((r = scep_env_parse(rep->envelope, rep->envelope_len, cert, &env)) != 0)
		return r;
	*cipher_nid = env->cipher_nid;
	r = scep_env_open(env, key, plain, plain_len);
	scep_env_free(env);
	return r;
}

int
scep_rep_certs(const unsigned char *data, size_t len, STACK_OF(X509) * *certs)
{
	int r = P11E_ERR_MALFORMED;
	CMS_ContentInfo *deg = NULL;
	const unsigned char *p = data;
	STACK_OF(X509) *got = NULL;

	*certs = NULL;
	deg = d2i_CMS_ContentInfo(NULL, &p, (long)len);
	if (deg == NULL || OBJ_obj2nid(CMS_get0_type(deg)) != NID_pkcs7_signed) {
		log_openssl(LOG_LVL_ERROR, "CertRep envelope does not hold a certificate bundle");
		goto out;
	}
	if (p != data + len) {
		log_error(
		    "CertRep envelope holds %ld bytes after its certificate bundle: refusing it",
		    (long)(data + len - p));
		goto out;
	}
	got = CMS_get1_certs(deg);
	if (got == NULL || sk_X509_num(got) == 0) {
		log_error("CertRep says SUCCESS but holds no certificate");
		goto out;
	}
	*certs = got;
	got = NULL;
	r = 0;
out:
	CMS_ContentInfo_free(deg);
	sk_X509_pop_free(got, X509_free);
	return r;
}

int
scep_rep_decrypt(const struct scep_rep *rep, EVP_PKEY *key, X509 *cert, STACK_OF(X509) * *certs,
                 int *cipher_nid)
{
	unsigned char *plain = NULL;
	size_t len = 0;
	int r;

	*certs = NULL;
	if ((r = scep_rep_open(rep, key, cert, &plain, &len, cipher_nid)) == 0)
		r = scep_rep_certs(plain, len, certs);
	OPENSSL_free(plain);
	return r;
}

int
scep_pick_issued(STACK_OF(X509) * got, EVP_PKEY *pub, X509 *ca, STACK_OF(X509) * chain, X509 **out)
{
	int r = P11E_ERR_VERIFY, i;
	X509 *issued = NULL;
	X509_STORE *st = NULL;
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509) *untrusted = NULL;

	for (i = 0; i < sk_X509_num(got) && issued == NULL; i++)
		if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(got, i)), pub) == 1)
			issued = sk_X509_value(got, i);
	if (issued == NULL) {
		log_error("the CA returned %d certificate(s), none for our key: refusing them",
		          sk_X509_num(got));
		return P11E_ERR_VERIFY;
	}
	if ((st = X509_STORE_new()) == NULL || (ctx = X509_STORE_CTX_new()) == NULL ||
	    (untrusted = sk_X509_new_null()) == NULL || !X509_STORE_add_cert(st, ca)) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < sk_X509_num(chain); i++)
		if (!sk_X509_push(untrusted, sk_X509_value(chain, i)))
			goto out;
	for (i = 0; i < sk_X509_num(got); i++)
		if (!sk_X509_push(untrusted, sk_X509_value(got, i)))
			goto out;
	X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
	if (!X509_STORE_CTX_init(ctx, st, issued, untrusted))
		goto out;
	if (X509_verify_cert(ctx) != 1) {
		log_error("the issued certificate does not chain to the CA: %s",
		          X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		r = P11E_ERR_VERIFY;
		goto out;
	}
	if (!X509_up_ref(issued))
		goto out;
	*out = issued;
	r = 0;
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	sk_X509_free(untrusted);
	return r;
}

int
scep_issuer_and_subject(X509_NAME *issuer, X509_NAME *subject, unsigned char **der, size_t *len)
{
	unsigned char *i = NULL, *s = NULL, *out = NULL;
	int il, sl, k;
	size_t body, nlen, o = 0;

	if ((il = i2d_X509_NAME(issuer, &i)) <= 0 || (sl = i2d_X509_NAME(subject, &s)) <= 0) {
		OPENSSL_free(i);
		return P11E_ERR_INTERNAL;
	}
	/* SEQUENCE { issuer, subject }: DER length in short or long form (two names of
	 * at most INT_MAX bytes each fit in four length octets). */
	body = (size_t)il + (size_t)sl;
	nlen = 0;
	if (body >= 0x80)
		for (nlen = 1; nlen < sizeof(size_t) && (body >> (8 * nlen)) != 0; nlen++)
			;
	if ((out = OPENSSL_malloc(2 + nlen + body)) == NULL) {
		OPENSSL_free(i);
		OPENSSL_free(s);
		return P11E_ERR_ALLOC;
	}
	out[o++] = 0x30;
	if (nlen == 0) {
		out[o++] = (unsigned char)body;
	} else {
		out[o++] = (unsigned char)(0x80 | nlen);
		for (k = (int)nlen - 1; k >= 0; k--)
			out[o++] = (unsigned char)(body >> (8 * k));
	}
	memcpy(out + o, i, (size_t)il);
	memcpy(out + o + (size_t)il, s, (size_t)sl);
	OPENSSL_free(i);
	OPENSSL_free(s);
	*der = out;
	*len = o + body;
	return 0;
}
