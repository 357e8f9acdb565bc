/*
 * p11cert.c: X.509 certificate objects beside a key pair (same CKA_ID).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "err.h"
#include "log.h"
#include "p11int.h"

int
tok_cert_newer(X509 *a, X509 *b)
{
	int d = ASN1_TIME_compare(X509_get0_notAfter(a), X509_get0_notAfter(b));

	if (d == 0)
		d = ASN1_TIME_compare(X509_get0_notBefore(a), X509_get0_notBefore(b));
	if (d == 0)
		d = ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(b));
	return d > 0;
}

/* The key's newest certificate object (tok_cert_newer; a full tie: the later object). */
int
p11_find_cert(struct p11 *t, const struct tok_key *k, X509 **out)
{
	int r = P11E_ERR_INTERNAL;
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_CERTIFICATE_TYPE ct = CKC_X_509;
	CK_ATTRIBUTE tmpl[3];
	CK_OBJECT_HANDLE *hs = NULL;
	size_t nh = 0, i, len = 0;
	unsigned char *der = NULL;
	const unsigned char *p;
	X509 *best = NULL, *x = NULL;
	CK_RV rv;

	if (t == NULL || k == NULL || out == NULL)
		goto out;
	tmpl[0] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
	tmpl[1] = (CK_ATTRIBUTE){CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)};
	tmpl[2] = (CK_ATTRIBUTE){CKA_ID, (void *)k->id, (CK_ULONG)k->id_len};
	if ((r = tok_find_objects(t, tmpl, 3, "certificates", &hs, &nh)) != 0)
		goto out;
	for (i = 0; i < nh; i++) {
		free(der);
		der = NULL;
		if ((rv = tok_attr_get(t, hs[i], CKA_VALUE, &der, &len)) != CKR_OK) {
			log_error("reading a certificate of key '%s' on token '%s' failed: %s",
			          k->label, t->info.label, tok_rv_name(rv));
			r = P11E_ERR_TOKEN;
			goto out;
		}
		p = der;
		if ((x = d2i_X509(NULL, &p, (long)len)) == NULL || p != der + len) {
			log_openssl(LOG_LVL_WARN,
			            "ignoring an unparsable certificate object of key '%s' "
			            "on token '%s'",
			            k->label, t->info.label);
			X509_free(x);
			x = NULL;
			continue;
		}
		if (best == NULL || !tok_cert_newer(best, x)) {
			X509_free(best);
			best = x;
		} else {
			X509_free(x);
		}
		x = NULL;
	}
	if (best == NULL) {
		r = P11E_ERR_NOTFOUND;
		goto out;
	}
	*out = best;
	best = NULL;
	r = 0;
out:
	X509_free(best);
	free(der);
	free(hs);
	return r;
}

/* DER of cert, its subject, issuer and serial number (OPENSSL_malloc'ed). */
static int
cert_ders(X509 *cert, unsigned char *d[4], int l[4])
{
	l[0] = i2d_X509(cert, &d[0]);
	l[1] = i2d_X509_NAME(X509_get_subject_name(cert), &d[1]);
	l[2] = i2d_X509_NAME(X509_get_issuer_name(cert), &d[2]);
	l[3] = i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), &d[3]);
	if (l[0] <= 0 || l[1] <= 0 || l[2] <= 0 || l[3] <= 0) {
		log_openssl(LOG_LVL_ERROR, "cannot encode the certificate");
		return P11E_ERR_INTERNAL;
	}
	return 0;
}

/*
 * create_cert: the certificate object tmpl describes (n attributes, tmpl[tok_at] its
 * CKA_TOKEN, true) on the token, its handle in *h. With SoftHSM (t->store_by_copy), it is
 * made as a session object first, copied onto the token with C_CopyObject, and the session
 * object destroyed:
 *   - SoftHSM's C_CreateObject writes a new token object's file once for each attribute
 *     its class has a default for, outside any transaction (26 rewrites of the file for a
 *     certificate, each truncating it, which ext4 flushes at close): 4.3 to 4.9 ms a
 *     certificate here. C_CopyObject writes the new object in one transaction: 0.6 ms,
 *     the session object's creation included.
 *   - so a crash can no longer leave a certificate object with only some of its
 *     attributes on the token.
 * Every other module (a card's, tpm2-pkcs11) gets one C_CreateObject on the token, and
 * so does SoftHSM when the session object cannot be made (the same call on the token then
 * says why) or its C_CopyObject answers CKR_FUNCTION_NOT_SUPPORTED. A session object that
 * cannot be destroyed after its copy fails the store, the copy removed.
 */
static CK_RV
create_cert(struct p11 *t, CK_ATTRIBUTE *tmpl, CK_ULONG n, size_t tok_at, CK_OBJECT_HANDLE *h,
            const char **call)
{
	CK_BBOOL no = CK_FALSE;
	CK_BBOOL *on_token = tmpl[tok_at].pValue;
	CK_ATTRIBUTE to_token = {CKA_TOKEN, on_token, sizeof(*on_token)};
	CK_OBJECT_HANDLE s = CK_INVALID_HANDLE;
	CK_RV rv, drv;

	*call = "C_CreateObject";
	if (t->store_by_copy) {
		tmpl[tok_at].pValue = &no;
		rv = t->f->C_CreateObject(t->session, tmpl, n, &s);
		tmpl[tok_at].pValue = on_token;
		if (rv == CKR_OK) {
			rv = t->f->C_CopyObject(t->session, s, &to_token, 1, h);
			drv = t->f->C_DestroyObject(t->session, s);
			if (rv == CKR_OK && drv != CKR_OK) {
				/* Left, it would be found beside the token's copy in this
				 * session: neither stays. */
				tok_destroy_object(t, *h, "the copied certificate");
				*h = CK_INVALID_HANDLE;
				*call = "C_DestroyObject";
				return drv;
			}
			if (rv != CKR_FUNCTION_NOT_SUPPORTED) {
				*call = "C_CopyObject";
				return rv;
			}
		}
		log_debug("token '%s': storing the certificate as a session object and copying "
		          "it failed (%s); creating it on the token",
		          t->info.label, tok_rv_name(rv));
	}
	return t->f->C_CreateObject(t->session, tmpl, n, h);
}

/* Adds the certificate object, then reads CKA_VALUE back to check it. */
int
p11_store_cert(struct p11 *t, const struct tok_key *k, X509 *cert)
{
	int r = P11E_ERR_INTERNAL;
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_CERTIFICATE_TYPE ct = CKC_X_509;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
	unsigned char *d[4] = {NULL, NULL, NULL, NULL}, *back = NULL;
	int l[4] = {0, 0, 0, 0};
	size_t backlen = 0, i;
	const char *call = "C_CreateObject";
	CK_RV rv;

	if (t == NULL || k == NULL || cert == NULL)
		goto out;
	if ((r = cert_ders(cert, d, l)) != 0)
		goto out;
	{
		CK_ATTRIBUTE tmpl[] = {
		    {CKA_CLASS, &cls, sizeof(cls)},
		    {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
		    {CKA_TOKEN, &yes, sizeof(yes)},
		    {CKA_PRIVATE, &no, sizeof(no)},
		    {CKA_ID, (void *)k->id, (CK_ULONG)k->id_len},
		    {CKA_LABEL, k->label, (CK_ULONG)strlen(k->label)},
		    {CKA_SUBJECT, d[1], (CK_ULONG)l[1]},
		    {CKA_ISSUER, d[2], (CK_ULONG)l[2]},
		    {CKA_SERIAL_NUMBER, d[3], (CK_ULONG)l[3]},
		    {CKA_VALUE, d[0], (CK_ULONG)l[0]},
		};

		rv = create_cert(t, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), 2, &h, &call);
	}
	if (rv != CKR_OK) {
		log_error("%s (certificate of key '%s') on token '%s' failed: %s%s", call, k->label,
		          t->info.label, tok_rv_name(rv),
		          rv == CKR_DEVICE_MEMORY ? " (the token is full)" : "");
		h = CK_INVALID_HANDLE;
		r = P11E_ERR_TOKEN;
		goto out;
	}
	if ((rv = tok_attr_get(t, h, CKA_VALUE, &back, &backlen)) != CKR_OK) {
		log_error("reading back the certificate of key '%s' on token '%s' failed: %s",
		          k->label, t->info.label, tok_rv_name(rv));
		r = P11E_ERR_TOKEN;
		goto out;
	}
	if (backlen != (size_t)l[0] || memcmp(back, d[0], backlen) != 0) {
		log_error("the certificate stored on token '%s' reads back different; removed it",
		          t->info.label);
		r = P11E_ERR_TOKEN;
		goto out;
	}
	h = CK_INVALID_HANDLE;
	r = 0;
out:
	if (h != CK_INVALID_HANDLE)
		tok_destroy_object(t, h, "the half-written certificate");
	for (i = 0; i < 4; i++)
		OPENSSL_free(d[i]);
	free(back);
	return r;
}

/* The certificate objects with the key's CKA_ID and exactly cert's DER. */
static int
find_exact(struct p11 *t, const struct tok_key *k, X509 *cert, CK_OBJECT_HANDLE **hs, size_t *nh)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_ATTRIBUTE tmpl[3];
	unsigned char *der = NULL;
	int len, r;

	if ((len = i2d_X509(cert, &der)) <= 0) {
		log_openssl(LOG_LVL_ERROR, "cannot encode the certificate");
		return P11E_ERR_INTERNAL;
	}
	tmpl[0] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
	tmpl[1] = (CK_ATTRIBUTE){CKA_ID, (void *)k->id, (CK_ULONG)k->id_len};
	tmpl[2] = (CK_ATTRIBUTE){CKA_VALUE, der, (CK_ULONG)len};
	r = tok_find_objects(t, tmpl, 3, "certificates", hs, nh);
	OPENSSL_free(der);
	return r;
}

int
p11_has_cert(struct p11 *t, const struct tok_key *k, X509 *cert)
{
	CK_OBJECT_HANDLE *hs = NULL;
	size_t nh = 0;
	int r;

	if ((r = find_exact(t, k, cert, &hs, &nh)) != 0)
		return r;
	free(hs);
	return nh > 0 ? 0 : P11E_ERR_NOTFOUND;
}

int
p11_destroy_cert(struct p11 *t, const struct tok_key *k, X509 *cert)
{
	CK_OBJECT_HANDLE *hs = NULL;
	size_t nh = 0, i;
	int r;

	if ((r = find_exact(t, k, cert, &hs, &nh)) != 0)
		return r;
	for (i = 0; i < nh; i++)
		if (tok_destroy_object(t, hs[i], "the old certificate") != 0)
			r = P11E_ERR_TOKEN;
	free(hs);
	return r;
}

int
p11_other_certs(struct p11 *t, const struct tok_key *k, X509 *keep, int destroy, size_t *n)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_ATTRIBUTE tmpl[2];
	CK_OBJECT_HANDLE *hs = NULL;
	unsigned char *der = NULL, *kder = NULL;
	size_t nh = 0, i, len = 0, found = 0;
	int klen = 0, r;

	if (keep != NULL && (klen = i2d_X509(keep, &kder)) <= 0) {
		log_openssl(LOG_LVL_ERROR, "cannot encode the certificate");
		return P11E_ERR_INTERNAL;
	}
	tmpl[0] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
	tmpl[1] = (CK_ATTRIBUTE){CKA_ID, (void *)k->id, (CK_ULONG)k->id_len};
	if ((r = tok_find_objects(t, tmpl, 2, "certificates", &hs, &nh)) != 0)
		goto out;
	for (i = 0; i < nh; i++) {
		free(der);
		der = NULL;
		if (keep != NULL && tok_attr_get(t, hs[i], CKA_VALUE, &der, &len) == CKR_OK &&
		    len == (size_t)klen && memcmp(der, kder, len) == 0)
			continue;
		found++;
		if (destroy && tok_destroy_object(t, hs[i], "a superseded certificate") != 0)
			r = P11E_ERR_TOKEN;
	}
	*n = found;
out:
	free(der);
	free(hs);
	OPENSSL_free(kder);
	return r;
}
