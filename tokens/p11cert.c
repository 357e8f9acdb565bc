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

		rv = t->f->C_CreateObject(t->session, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
	}
	if (rv != CKR_OK) {
		log_error("C_CreateObject (certificate of key '%s') on token '%s' failed: %s%s",
		          k->label, t->info.label, tok_rv_name(rv),
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
