/*
 * p11key.c: key pairs on the token: generation with an explicit
 * non-exportable template, lookup by label, public keys read back into
 * EVP_PKEYs, the CKA_ID derived from the public key, protection attributes
 * (object URIs: tokproc.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "err.h"
#include "log.h"
#include "p11int.h"

/* A public key from OSSL_PARAMs (RSA n/e or EC group/point). */
static int
pub_fromdata(const char *alg, OSSL_PARAM_BLD *bld, EVP_PKEY **out)
{
	int r = P11E_ERR_INTERNAL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;

	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		goto out;
	*out = pkey;
	pkey = NULL;
	r = 0;
out:
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return r;
}

int
p11_pub_rsa(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen,
            EVP_PKEY **out)
{
	int r = P11E_ERR_INTERNAL;
	OSSL_PARAM_BLD *bld = NULL;
	BIGNUM *bn = NULL, *be = NULL;

	if ((bld = OSSL_PARAM_BLD_new()) == NULL || (bn = BN_bin2bn(n, (int)nlen, NULL)) == NULL ||
	    (be = BN_bin2bn(e, (int)elen, NULL)) == NULL ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
		goto out;
	r = pub_fromdata("RSA", bld, out);
out:
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	return r;
}

int
p11_pub_ec(const char *group, const unsigned char *pt, size_t ptlen, EVP_PKEY **out)
{
	int r = P11E_ERR_INTERNAL;
	OSSL_PARAM_BLD *bld = NULL;

	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, ptlen))
		goto out;
	r = pub_fromdata("EC", bld, out);
out:
	OSSL_PARAM_BLD_free(bld);
	return r;
}

/*
 * CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 2.40; SoftHSM)
 * or, on some tokens, the raw point: try the wrapped form, then the raw one.
 * OpenSSL rejects a point that is not on the curve, so a raw point whose
 * bytes happen to parse as DER is not mistaken for a wrapped one.
 */
static int
ec_pub(const unsigned char *params, size_t plen, const unsigned char *point, size_t ptlen,
       EVP_PKEY **out)
{
	int r = P11E_ERR_INTERNAL;
	ASN1_OBJECT *oid = NULL;
	ASN1_OCTET_STRING *os = NULL;
	const unsigned char *p;
	const char *group;
	int nid;

	p = params;
	if ((oid = d2i_ASN1_OBJECT(NULL, &p, (long)plen)) == NULL || p != params + plen ||
	    (nid = OBJ_obj2nid(oid)) == NID_undef || (group = OBJ_nid2sn(nid)) == NULL) {
		r = P11E_ERR_MALFORMED;
		goto out;
	}
	p = point;
	os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)ptlen);
	if (os != NULL && p == point + ptlen &&
	    p11_pub_ec(group, ASN1_STRING_get0_data(os), (size_t)ASN1_STRING_length(os), out) ==
	        0) {
		r = 0;
		goto out;
	}
	ERR_clear_error();
	r = p11_pub_ec(group, point, ptlen, out) == 0 ? 0 : P11E_ERR_MALFORMED;
out:
	ASN1_OBJECT_free(oid);
	ASN1_OCTET_STRING_free(os);
	return r;
}

/* Reads the public key object h (CKK_RSA or CKK_EC) into *out. */
static int
read_pub(struct p11 *t, CK_OBJECT_HANDLE h, CK_KEY_TYPE kt, EVP_PKEY **out)
{
	int r = P11E_ERR_INTERNAL;
	unsigned char *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;
	CK_RV rv;

	if (kt == CKK_RSA) {
		if ((rv = tok_attr_get2(t, h, CKA_MODULUS, &a, &alen, CKA_PUBLIC_EXPONENT, &b,
		                        &blen)) != CKR_OK)
			goto fail;
		r = p11_pub_rsa(a, alen, b, blen, out);
	} else {
		if ((rv = tok_attr_get2(t, h, CKA_EC_PARAMS, &a, &alen, CKA_EC_POINT, &b, &blen)) !=
		    CKR_OK)
			goto fail;
		r = ec_pub(a, alen, b, blen, out);
	}
	if (r != 0) {
		log_openssl(LOG_LVL_ERROR, "public key object on token '%s' is not a usable %s key",
		            t->info.label, kt == CKK_RSA ? "RSA" : "EC");
		r = P11E_ERR_TOKEN;
	}
	goto out;
fail:
	log_error("reading the public key on token '%s' failed: %s", t->info.label,
	          tok_rv_name(rv));
	r = P11E_ERR_TOKEN;
out:
	free(a);
	free(b);
	return r;
}

/*
 * The SHA-1 of what a SubjectPublicKeyInfo's BIT STRING holds, without
 * OpenSSL's encoder and decoder (X509_PUBKEY_set encodes the whole SPKI, then
 * decodes it again: most of an enrollment's OpenSSL time outside the RSA
 * operations): for RSA the RSAPublicKey (PKCS#1: SEQUENCE of the modulus and
 * the exponent, DER), for EC the point in the key's own form. -1 for another
 * key or on failure (then tok_key_id_for takes the SPKI's way).
 */
static int
pub_bits(EVP_PKEY *pub, unsigned char id[20])
{
	BIGNUM *n = NULL, *e = NULL;
	ASN1_INTEGER *an = NULL, *ae = NULL;
	unsigned char pt[160], *der = NULL, *p;
	size_t ptlen = 0;
	int ln, le, len, r = -1;

	if (EVP_PKEY_is_a(pub, "EC")) {
		if (EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt),
		                                    &ptlen) == 1 &&
		    ptlen > 0 && SHA1(pt, ptlen, id) != NULL)
			r = 0;
		return r;
	}
	if (!EVP_PKEY_is_a(pub, "RSA") ||
	    EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
	    EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_E, &e) != 1 ||
	    (an = BN_to_ASN1_INTEGER(n, NULL)) == NULL ||
	    (ae = BN_to_ASN1_INTEGER(e, NULL)) == NULL || (ln = i2d_ASN1_INTEGER(an, NULL)) <= 0 ||
	    (le = i2d_ASN1_INTEGER(ae, NULL)) <= 0 ||
	    (len = ASN1_object_size(1, ln + le, V_ASN1_SEQUENCE)) <= 0 ||
	    (der = OPENSSL_malloc((size_t)len)) == NULL)
		goto out;
	p = der;
	ASN1_put_object(&p, 1, ln + le, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	if (i2d_ASN1_INTEGER(an, &p) != ln || i2d_ASN1_INTEGER(ae, &p) != le || p != der + len)
		goto out;
	if (SHA1(der, (size_t)len, id) != NULL)
		r = 0;
out:
	OPENSSL_free(der);
	ASN1_INTEGER_free(an);
	ASN1_INTEGER_free(ae);
	BN_free(n);
	BN_free(e);
	return r;
}

/* SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 4.2.1.2 (1)). */
int
tok_key_id_for(EVP_PKEY *pub, unsigned char id[20])
{
	int r = P11E_ERR_INTERNAL;
	X509_PUBKEY *xpk = NULL;
	const unsigned char *pk = NULL;
	int pklen = 0;

	if (pub == NULL)
		goto out;
	if (pub_bits(pub, id) == 0)
		return 0;
	/* Another kind of key: the SubjectPublicKeyInfo's BIT STRING itself. */
	if (X509_PUBKEY_set(&xpk, pub) != 1 ||
	    X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, xpk) != 1 || pklen <= 0)
		goto out;
	if (SHA1(pk, (size_t)pklen, id) == NULL)
		goto out;
	r = 0;
out:
	if (r != 0)
		log_openssl(LOG_LVL_ERROR, "cannot encode the public key");
	X509_PUBKEY_free(xpk);
	return r;
}

static int
curve_of(const struct tok_keyspec *spec)
{
	if (spec->curve != 0)
		return spec->curve;
	switch (spec->bits) {
	case 256:
		return NID_X9_62_prime256v1;
	case 384:
		return NID_secp384r1;
	case 521:
		return NID_secp521r1;
	}
	return NID_undef;
}

static long
ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000L + (t1.tv_nsec - t0->tv_nsec) / 1000000L;
}

static void
log_keygen_error(struct p11 *t, const char *what, CK_MECHANISM_TYPE mech, int bits, CK_RV rv)
{
	CK_MECHANISM_INFO mi;
	char range[80] = "";
	CK_RV mrv = t->f->C_GetMechanismInfo(t->info.slot_id, mech, &mi);

	if (mrv == CKR_MECHANISM_INVALID)
		snprintf(range, sizeof(range), " (the token does not list %s key generation)",
		         mech == CKM_RSA_PKCS_KEY_PAIR_GEN ? "RSA" : "EC");
	else if (mrv == CKR_OK && bits > 0 &&
	         ((CK_ULONG)bits < mi.ulMinKeySize || (CK_ULONG)bits > mi.ulMaxKeySize))
		snprintf(range, sizeof(range), " (the token generates %lu to %lu bits)",
		         (unsigned long)mi.ulMinKeySize, (unsigned long)mi.ulMaxKeySize);
	/* A token that cannot even list its mechanisms failed itself, not the key type. */
	log_error("C_GenerateKeyPair (%s) on token '%s' failed: %s%s%s", what, t->info.label,
	          tok_rv_name(rv), range,
	          mrv == CKR_OK || mrv == CKR_MECHANISM_INVALID ? "; check [key] type" : "");
}

static void
add(CK_ATTRIBUTE *tmpl, CK_ULONG *n, CK_ATTRIBUTE_TYPE type, void *value, size_t len)
{
	tmpl[*n].type = type;
	tmpl[*n].pValue = value;
	tmpl[*n].ulValueLen = (CK_ULONG)len;
	(*n)++;
}

static int
set_id(struct p11 *t, CK_OBJECT_HANDLE h, const unsigned char *id, size_t len)
{
	CK_ATTRIBUTE a = {CKA_ID, (void *)id, (CK_ULONG)len};
	CK_RV rv;

	if ((rv = t->f->C_SetAttributeValue(t->session, h, &a, 1)) != CKR_OK) {
		log_error("C_SetAttributeValue(CKA_ID) on token '%s' failed: %s", t->info.label,
		          tok_rv_name(rv));
		return P11E_ERR_TOKEN;
	}
	return 0;
}

/*
 * The key pair gets the temporary CKA_ID (ids->tmp_id, or a random one), then
 * the SHA-1 one once the public key is known and ids->named has heard of it.
 * Any failure after C_GenerateKeyPair destroys both objects.
 */
int
p11_generate_key(struct p11 *t, struct tok_keygen_ids *ids, const struct tok_keyspec *spec,
                 const char *label, struct tok_key **out)
{
	int r = P11E_ERR_INTERNAL;
	CK_OBJECT_CLASS pubc = CKO_PUBLIC_KEY, privc = CKO_PRIVATE_KEY;
	CK_KEY_TYPE kt = CKK_RSA;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG bits = 0;
	CK_BYTE e65537[] = {0x01, 0x00, 0x01};
	CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
	CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
	CK_ATTRIBUTE pubt[10], privt[10];
	CK_ULONG npub = 0, npriv = 0;
	CK_RV rv;
	unsigned char rnd[16], *ecparams = NULL, *p;
	const unsigned char *tmpid = rnd;
	size_t tmplen = sizeof(rnd);
	int eclen = 0, nid = NID_undef, left = 0;
	char what[32];
	struct tok_key *k = NULL;
	struct timespec t0;

	if (t == NULL || spec == NULL || label == NULL || out == NULL ||
	    (ids != NULL && ids->tmp_id != NULL && (ids->tmp_len == 0 || ids->tmp_len > 64)))
		goto out;
	if (spec->type == TOK_KEY_RSA) {
		if (spec->bits < 1024) {
			log_error("RSA key size %d is too small", spec->bits);
			r = P11E_ERR_CONFIG;
			goto out;
		}
		kt = CKK_RSA;
		bits = (CK_ULONG)spec->bits;
		snprintf(what, sizeof(what), "RSA-%d", spec->bits);
	} else if (spec->type == TOK_KEY_EC) {
		kt = CKK_EC;
		mech.mechanism = CKM_EC_KEY_PAIR_GEN;
		if ((nid = curve_of(spec)) == NID_undef ||
		    (eclen = i2d_ASN1_OBJECT(OBJ_nid2obj(nid), NULL)) <= 0) {
			log_error("no EC curve for %d bits; check [key] type", spec->bits);
			r = P11E_ERR_CONFIG;
			goto out;
		}
		if ((p = ecparams = malloc((size_t)eclen)) == NULL) {
			r = P11E_ERR_ALLOC;
			goto out;
		}
		i2d_ASN1_OBJECT(OBJ_nid2obj(nid), &p);
		snprintf(what, sizeof(what), "EC %s", OBJ_nid2sn(nid));
	} else {
		goto out;
	}
	if (ids != NULL && ids->tmp_id != NULL) {
		tmpid = ids->tmp_id;
		tmplen = ids->tmp_len;
	} else if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		goto out;
	}

	add(pubt, &npub, CKA_CLASS, &pubc, sizeof(pubc));
	add(pubt, &npub, CKA_KEY_TYPE, &kt, sizeof(kt));
	add(pubt, &npub, CKA_TOKEN, &yes, sizeof(yes));
	add(pubt, &npub, CKA_PRIVATE, &no, sizeof(no));
	add(pubt, &npub, CKA_VERIFY, &yes, sizeof(yes));
	add(pubt, &npub, CKA_LABEL, (void *)label, strlen(label));
	add(pubt, &npub, CKA_ID, (void *)tmpid, tmplen);
	add(privt, &npriv, CKA_CLASS, &privc, sizeof(privc));
	add(privt, &npriv, CKA_KEY_TYPE, &kt, sizeof(kt));
	add(privt, &npriv, CKA_TOKEN, &yes, sizeof(yes));
	add(privt, &npriv, CKA_PRIVATE, &yes, sizeof(yes));
	add(privt, &npriv, CKA_SENSITIVE, &yes, sizeof(yes));
	add(privt, &npriv, CKA_EXTRACTABLE, &no, sizeof(no));
	add(privt, &npriv, CKA_SIGN, &yes, sizeof(yes));
	add(privt, &npriv, CKA_LABEL, (void *)label, strlen(label));
	add(privt, &npriv, CKA_ID, (void *)tmpid, tmplen);
	if (kt == CKK_RSA) {
		add(pubt, &npub, CKA_ENCRYPT, &yes, sizeof(yes));
		add(pubt, &npub, CKA_MODULUS_BITS, &bits, sizeof(bits));
		add(pubt, &npub, CKA_PUBLIC_EXPONENT, e65537, sizeof(e65537));
		add(privt, &npriv, CKA_DECRYPT, &yes, sizeof(yes));
	} else {
		add(pubt, &npub, CKA_EC_PARAMS, ecparams, eclen);
	}

	clock_gettime(CLOCK_MONOTONIC, &t0);
	rv = t->f->C_GenerateKeyPair(t->session, &mech, pubt, npub, privt, npriv, &hpub, &hpriv);
	if (rv != CKR_OK) {
		log_keygen_error(t, what, mech.mechanism, kt == CKK_RSA ? spec->bits : 0, rv);
		hpub = hpriv = CK_INVALID_HANDLE;
		r = P11E_ERR_TOKEN;
		goto out;
	}
	log_debug("generated %s key pair on token '%s' in %ld ms", what, t->info.label,
	          ms_since(&t0));

	if ((k = calloc(1, sizeof(*k))) == NULL || (k->label = strdup(label)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	k->type = kt == CKK_RSA ? TOK_KEY_RSA : TOK_KEY_EC;
	if ((r = read_pub(t, hpub, kt, &k->pub)) != 0 || (r = tok_key_id_for(k->pub, k->id)) != 0)
		goto out;
	k->id_len = 20;
	/* The private key first: a crash in between leaves a public key with the
	 * temporary ID whose private key load_key finds by the final one. */
	if ((ids != NULL && ids->named != NULL &&
	     (r = ids->named(ids->ud, k->id, k->id_len)) != 0) ||
	    (r = set_id(t, hpriv, k->id, k->id_len)) != 0 ||
	    (r = set_id(t, hpub, k->id, k->id_len)) != 0)
		goto out;
	k->pub_handle = hpub;
	k->priv_handle = hpriv;
	*out = k;
	k = NULL;
	hpub = hpriv = CK_INVALID_HANDLE;
	r = 0;
out:
	if (hpriv != CK_INVALID_HANDLE && tok_destroy_object(t, hpriv, "the new private key") != 0)
		left = 1;
	if (hpub != CK_INVALID_HANDLE && tok_destroy_object(t, hpub, "the new public key") != 0)
		left = 1;
	if (ids != NULL)
		ids->left = left;
	tok_key_free(k);
	free(ecparams);
	return r;
}

/*
 * Of n private keys that share the public key's CKA_ID, the index of the
 * RSA one whose CKA_MODULUS is the public key's, if exactly one is; else n
 * (EC private keys carry no public point to compare).
 * A token with such twins (a tool's mistake, a key imported twice) would
 * otherwise sign with a key that is not the certificate request's.
 */
static size_t
pair_of(struct p11 *t, const struct tok_key *k, const CK_OBJECT_HANDLE *priv, size_t n)
{
	BIGNUM *pn = NULL, *m = NULL;
	unsigned char *a = NULL;
	size_t alen = 0, i, found = n, matches = 0;

	if (k->type != TOK_KEY_RSA ||
	    EVP_PKEY_get_bn_param(k->pub, OSSL_PKEY_PARAM_RSA_N, &pn) != 1)
		return n;
	for (i = 0; i < n; i++) {
		if (tok_attr_get(t, priv[i], CKA_MODULUS, &a, &alen) == CKR_OK &&
		    (m = BN_bin2bn(a, (int)alen, NULL)) != NULL && BN_cmp(m, pn) == 0) {
			found = i;
			matches++;
		}
		BN_free(m);
		m = NULL;
		free(a);
		a = NULL;
	}
	BN_free(pn);
	return matches == 1 ? found : n;
}

/*
 * The private key of k (listed or generated): the one with its CKA_ID, for a
 * pair whose generation stopped between its two CKA_IDs the one with the
 * final CKA_ID, of twins the one pair_of picks. Sets k->priv_handle (0: none
 * visible).
 */
int
p11_find_private(struct p11 *t, struct tok_key *k)
{
	int r;
	unsigned char final[20];
	size_t npriv = 0, pick;
	CK_OBJECT_CLASS privc = CKO_PRIVATE_KEY;
	CK_KEY_TYPE kt = k->type == TOK_KEY_RSA ? CKK_RSA : CKK_EC;
	CK_ATTRIBUTE tmpl[3];
	CK_OBJECT_HANDLE *priv = NULL;

	tmpl[0] = (CK_ATTRIBUTE){CKA_CLASS, &privc, sizeof(privc)};
	tmpl[1] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &kt, sizeof(kt)};
	tmpl[2] = (CK_ATTRIBUTE){CKA_ID, k->id, (CK_ULONG)k->id_len};
	if ((r = tok_find_objects(t, tmpl, 3, "private keys", &priv, &npriv)) != 0)
		goto out;
	/* A generation cut short between the two IDs (tok_generate_key): the
	 * private key already has the final one, the public key not yet. */
	if (npriv == 0 && tok_key_id_for(k->pub, final) == 0 &&
	    (k->id_len != sizeof(final) || memcmp(k->id, final, sizeof(final)) != 0)) {
		tmpl[2] = (CK_ATTRIBUTE){CKA_ID, final, sizeof(final)};
		if ((r = tok_find_objects(t, tmpl, 3, "private keys", &priv, &npriv)) != 0)
			goto out;
	}
	pick = npriv > 1 ? pair_of(t, k, priv, npriv) : 0;
	if (npriv > 1 && pick < npriv)
		log_warn(
		    "token '%s' has %zu private keys with the CKA_ID of key '%s'; using the one "
		    "whose modulus is the public key's",
		    t->info.label, npriv, k->label);
	else if (npriv > 1)
		log_warn("token '%s' has %zu private keys with the CKA_ID of key '%s'; using the "
		         "first, which may not be its pair (a server then refuses the request's "
		         "signature): remove the others",
		         t->info.label, npriv, k->label);
	if (pick >= npriv)
		pick = 0;
	k->priv_handle = npriv > 0 ? priv[pick] : 0;
out:
	free(priv);
	return r;
}

/*
 * The key pair whose public key object is h; *out stays NULL (and 0 is
 * returned) for a key this program cannot use.
 */
static int
load_key(struct p11 *t, CK_OBJECT_HANDLE h, const char *label, struct tok_key **out)
{
	int r = P11E_ERR_INTERNAL;
	struct tok_key *k = NULL;
	unsigned char *id = NULL, *ktv = NULL;
	size_t idlen = 0, ktlen = 0;
	CK_KEY_TYPE kt = 0;
	CK_RV rv;

	if ((rv = tok_attr_get2(t, h, CKA_KEY_TYPE, &ktv, &ktlen, CKA_ID, &id, &idlen)) == CKR_OK &&
	    ktlen != sizeof(kt))
		rv = CKR_ATTRIBUTE_VALUE_INVALID;
	if (rv == CKR_OK)
		memcpy(&kt, ktv, sizeof(kt));
	free(ktv);
	if (rv != CKR_OK) {
		log_error("reading key '%s' on token '%s' failed: %s", label, t->info.label,
		          tok_rv_name(rv));
		r = P11E_ERR_TOKEN;
		goto out;
	}
	if ((kt != CKK_RSA && kt != CKK_EC) || idlen > sizeof(k->id)) {
		log_warn("ignoring public key object '%s' on token '%s': %s", label, t->info.label,
		         idlen > sizeof(k->id) ? "CKA_ID too long" : "neither RSA nor EC");
		r = 0;
		goto out;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL || (k->label = strdup(label)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	memcpy(k->id, id, idlen);
	k->id_len = idlen;
	k->type = kt == CKK_RSA ? TOK_KEY_RSA : TOK_KEY_EC;
	k->pub_handle = h;
	if ((r = read_pub(t, h, kt, &k->pub)) != 0)
		goto out;
	/* Before login a private key is not looked for (tok_find_keys). */
	if (t->logged_in && (r = p11_find_private(t, k)) != 0)
		goto out;
	*out = k;
	k = NULL;
	r = 0;
out:
	tok_key_free(k);
	free(id);
	return r;
}

/* Public keys labelled label, in handle order, each with its private key. */
int
p11_find_keys(struct p11 *t, const char *label, struct tok_key ***keys, size_t *n)
{
	int r = P11E_ERR_INTERNAL;
	CK_OBJECT_CLASS pubc = CKO_PUBLIC_KEY;
	CK_ATTRIBUTE tmpl[2];
	CK_OBJECT_HANDLE *hs = NULL;
	size_t nh = 0, i, count = 0;
	struct tok_key **ks = NULL, *k;

	if (t == NULL || label == NULL || keys == NULL || n == NULL)
		goto out;
	tmpl[0] = (CK_ATTRIBUTE){CKA_CLASS, &pubc, sizeof(pubc)};
	tmpl[1] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, (CK_ULONG)strlen(label)};
	if ((r = tok_find_objects(t, tmpl, 2, "public keys", &hs, &nh)) != 0)
		goto out;
	if (nh > 0 && (ks = calloc(nh, sizeof(*ks))) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < nh; i++) {
		k = NULL;
		if ((r = load_key(t, hs[i], label, &k)) != 0)
			goto out;
		if (k != NULL)
			ks[count++] = k;
	}
	if (count == 0) {
		free(ks);
		ks = NULL;
	}
	*keys = ks;
	*n = count;
	ks = NULL;
	count = 0;
	r = 0;
out:
	tok_keys_free(ks, count);
	free(hs);
	return r;
}

int
p11_key_fix_id(struct p11 *t, struct tok_key *k)
{
	unsigned char id[20];
	int r;

	if ((r = tok_key_id_for(k->pub, id)) != 0)
		return r;
	if (k->id_len == sizeof(id) && memcmp(k->id, id, sizeof(id)) == 0)
		return 0;
	if ((k->priv_handle != 0 && (r = set_id(t, k->priv_handle, id, sizeof(id))) != 0) ||
	    (k->pub_handle != 0 && (r = set_id(t, k->pub_handle, id, sizeof(id))) != 0))
		return r;
	memcpy(k->id, id, sizeof(id));
	k->id_len = sizeof(id);
	return 0;
}

int
p11_destroy_key(struct p11 *t, const struct tok_key *k)
{
	int r = 0;

	if (k->priv_handle != 0 && tok_destroy_object(t, k->priv_handle, "the private key") != 0)
		r = P11E_ERR_TOKEN;
	if (k->pub_handle != 0 && tok_destroy_object(t, k->pub_handle, "the public key") != 0)
		r = P11E_ERR_TOKEN;
	return r;
}

struct tok_key *
tok_key_dup(const struct tok_key *k)
{
	struct tok_key *d;

	if ((d = malloc(sizeof(*d))) == NULL)
		return NULL;
	*d = *k;
	d->label = NULL;
	if ((k->label != NULL && (d->label = strdup(k->label)) == NULL) ||
	    (k->pub != NULL && EVP_PKEY_up_ref(k->pub) != 1)) {
		free(d->label);
		free(d);
		return NULL;
	}
	return d;
}

void
tok_key_free(struct tok_key *k)
{
	if (k == NULL)
		return;
	free(k->label);
	EVP_PKEY_free(k->pub);
	free(k);
}

void
tok_keys_free(struct tok_key **keys, size_t n)
{
	size_t i;

	if (keys == NULL)
		return;
	for (i = 0; i < n; i++)
		tok_key_free(keys[i]);
	free(keys);
}

/* Attributes the token does not report come back as -1. */
int
p11_key_attrs(struct p11 *t, const struct tok_key *k, struct tok_key_attrs *out)
{
	int r = P11E_ERR_INTERNAL;
	CK_BBOOL v[7] = {0};
	CK_ATTRIBUTE a[7] = {
	    {CKA_SENSITIVE, &v[0], 1},   {CKA_ALWAYS_SENSITIVE, &v[1], 1},
	    {CKA_EXTRACTABLE, &v[2], 1}, {CKA_NEVER_EXTRACTABLE, &v[3], 1},
	    {CKA_LOCAL, &v[4], 1},       {CKA_TOKEN, &v[5], 1},
	    {CKA_PRIVATE, &v[6], 1},
	};
	int res[7];
	size_t i;
	CK_RV rv;

	if (t == NULL || k == NULL || out == NULL)
		goto out;
	if (k->priv_handle == 0) {
		log_error("private key '%s' is not visible on token '%s' (not logged in?)",
		          k->label, t->info.label);
		r = P11E_ERR_TOKEN;
		goto out;
	}
	rv = t->f->C_GetAttributeValue(t->session, k->priv_handle, a, 7);
	if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE) {
		log_error("reading the attributes of private key '%s' on token '%s' failed: %s",
		          k->label, t->info.label, tok_rv_name(rv));
		r = P11E_ERR_TOKEN;
		goto out;
	}
	for (i = 0; i < 7; i++)
		res[i] = a[i].ulValueLen == 1 ? v[i] != CK_FALSE : -1;
	out->sensitive = res[0];
	out->always_sensitive = res[1];
	out->extractable = res[2];
	out->never_extractable = res[3];
	out->local = res[4];
	out->priv_token = res[5];
	out->priv_private = res[6];
	r = 0;
out:
	return r;
}
