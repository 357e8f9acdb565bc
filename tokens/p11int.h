/*
 * p11int.h: what the files of tokens/ share about a struct p11. Private to
 * tokens/: nothing else includes it.
 *
 * pkcs11.c  module loading, token selection, login, close
 * p11util.c CK_RV names, attribute reads, object searches
 * p11key.c  key generation, key lookup, public keys, key ids, object URIs
 * p11cert.c certificate objects
 * p11evp.c  the EVP_PKEY bridge: private key operations in our session
 * p11list.c discovery: modules, slots, mechanisms; the p11-kit registry
 * p11scan.c tokens a partial URI matches, blank token init, slot events
 */
#ifndef P11E_P11INT_H
#define P11E_P11INT_H

#include <stddef.h>

#include <p11-kit/pkcs11.h>

#include "tok.h"

struct p11 {
	char *module_path;
	void *dl; /* our dlopen handle */
	CK_FUNCTION_LIST_PTR f;
	int initialized; /* our C_Initialize returned CKR_OK: we finalize */
	CK_SESSION_HANDLE session;
	int has_session;
	int login_tried; /* C_Login was called (never twice) */
	int logged_in;
	/* The module is SoftHSM (C_GetInfo): p11_store_cert creates the certificate as a
	 * session object and copies it onto the token (p11cert.c says why). */
	int store_by_copy;
	struct tok_info info;
	/* What the last full scan of the slots saw (select_token): each token serial seen on
	 * exactly one slot, and that slot. */
	struct p11_seen {
		CK_SLOT_ID slot;
		char serial[17];
	} * seen;
	size_t nseen;
};

/*
 * p11_open: p11_load, then p11_select. p11_load: dlopen and C_Initialize
 * (no token yet). p11_select: the one initialised token that uri matches, a
 * R/W session on it (none open before). p11_end: C_Logout and
 * C_CloseSession, the module left initialised for the next p11_select (the
 * station's token processes). p11_close: p11_end, C_Finalize, dlclose.
 */
int p11_open(const char *module_path, const struct tok_uri *uri, struct p11 **out);
int p11_load(const char *module_path, struct p11 **out);
int p11_select(struct p11 *t, const struct tok_uri *uri);
void p11_end(struct p11 *t);
int p11_present(struct p11 *t);
int p11_login(struct p11 *t, const char *pin, int allow_final_try);
int p11_find_keys(struct p11 *t, const char *label, struct tok_key ***keys, size_t *n);
int p11_find_private(struct p11 *t, struct tok_key *k);
int p11_generate_key(struct p11 *t, struct tok_keygen_ids *ids, const struct tok_keyspec *spec,
                     const char *label, struct tok_key **out);
int p11_destroy_key(struct p11 *t, const struct tok_key *k);
int p11_key_fix_id(struct p11 *t, struct tok_key *k);
int p11_key_attrs(struct p11 *t, const struct tok_key *k, struct tok_key_attrs *out);
int p11_find_cert(struct p11 *t, const struct tok_key *k, X509 **out);
int p11_has_cert(struct p11 *t, const struct tok_key *k, X509 *cert);
int p11_destroy_cert(struct p11 *t, const struct tok_key *k, X509 *cert);
int p11_other_certs(struct p11 *t, const struct tok_key *k, X509 *keep, int destroy, size_t *n);
int p11_store_cert(struct p11 *t, const struct tok_key *k, X509 *cert);
void p11_close(struct p11 *t);

/*
 * A public key of its parts (p11key.c: also what the token process sends, tokproc.c):
 * RSA modulus and exponent (big-endian), or an EC curve's OpenSSL name and its
 * uncompressed point. P11E_ERR_INTERNAL when OpenSSL refuses them.
 */
int p11_pub_rsa(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen,
                EVP_PKEY **out);
int p11_pub_ec(const char *group, const unsigned char *pt, size_t ptlen, EVP_PKEY **out);

/*
 * One private key operation on k's private key (p11sign.c): a signature
 * (decrypt 0: CKM_RSA_PKCS on a DigestInfo, CKM_ECDSA on a digest, by k's
 * type) or an RSA decryption (decrypt 1: CKM_RSA_PKCS). *outlen: room in out,
 * then the bytes written. Logs what failed; P11E_ERR_TOKEN.
 */
int p11_key_op(struct p11 *t, const struct tok_key *k, int decrypt, const unsigned char *in,
               size_t inlen, unsigned char *out, size_t *outlen);

/* Copies a blank-padded CK_*_INFO field of n bytes into dst (n + 1), trailing blanks removed. */
void tok_copy_field(char *dst, const unsigned char *src, size_t n);

/* info from a CK_TOKEN_INFO (fields trimmed, flags as enum tok_flag) and its slot. */
void tok_fill_info(struct tok_info *info, CK_SLOT_ID slot, const CK_TOKEN_INFO *ti);

/* CK_TOKEN_INFO.flags as enum tok_flag bits (the CKF_ bits tok.h knows). */
unsigned tok_flags_from_ck(CK_FLAGS flags);

/* "CKR_PIN_INCORRECT", or "CKR_0x..." for an unknown value; never NULL. */
const char *tok_rv_name(CK_RV rv);

/*
 * Reads one attribute of object h into a malloc'ed buffer (*val, *len; a
 * zero-length value gives a non-NULL buffer): one C_GetAttributeValue for a
 * value up to 4 KiB, else three (its length, then the value). Logs nothing;
 * returns the CK_RV (CKR_OK on success) so that callers choose their message.
 */
CK_RV tok_attr_get(struct p11 *t, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, unsigned char **val,
                   size_t *len);

/*
 * Reads two attributes of object h as tok_attr_get does each: one
 * C_GetAttributeValue for both when each value is up to 4 KiB and the
 * module answers CKR_OK; on any other answer, each again alone (so that the
 * CK_RV returned is the one of the first that fails, as two tok_attr_get
 * would give). On failure *va and *vb are NULL.
 */
CK_RV tok_attr_get2(struct p11 *t, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE ta, unsigned char **va,
                    size_t *la, CK_ATTRIBUTE_TYPE tb, unsigned char **vb, size_t *lb);

/*
 * All objects matching the template, ascending by handle. *out (malloc'ed,
 * NULL when none) and *n are set on success. Errors logged, naming what (e.g.
 * "public keys").
 */
int tok_find_objects(struct p11 *t, CK_ATTRIBUTE *tmpl, CK_ULONG ntmpl, const char *what,
                     CK_OBJECT_HANDLE **out, size_t *n);

/* Destroys object h; logs a warning on failure and returns P11E_ERR_TOKEN. */
int tok_destroy_object(struct p11 *t, CK_OBJECT_HANDLE h, const char *what);

#endif
