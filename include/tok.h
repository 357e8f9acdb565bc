/*
 * tok.h: the token, through PKCS#11. Nothing outside tokens/ calls C_*.
 *
 * One struct tok is one loaded module (dlopen of the configured path, never
 * p11-kit-proxy), C_Initialize'd once, with one selected token and one R/W
 * session. tok_close finalizes the module: one enrollment per
 * initialise/finalize (tpm2-pkcs11 holds TPM objects until C_Finalize).
 */
#ifndef P11E_TOK_H
#define P11E_TOK_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "uri.h"

struct tok;

struct tok_info {
	/* NUL-terminated copies of CK_TOKEN_INFO fields, trailing blanks removed */
	char label[33], manufacturer[33], model[17], serial[17];
	unsigned long flags; /* CK_TOKEN_INFO.flags */
	unsigned long slot_id;
};

struct tok_keyspec {
	int type;  /* CONF_KEY_RSA | CONF_KEY_EC */
	int bits;  /* RSA modulus bits; EC field bits (256, 384) */
	int curve; /* EC: OpenSSL NID; else 0 */
};

struct tok_key {
	unsigned char id[64]; /* CKA_ID */
	size_t id_len;
	char *label;                           /* CKA_LABEL */
	int type;                              /* CONF_KEY_RSA | CONF_KEY_EC */
	EVP_PKEY *pub;                         /* the public key as read from the token */
	unsigned long pub_handle, priv_handle; /* CK_OBJECT_HANDLE; priv 0 if not visible */
};

struct tok_key_attrs {
	int sensitive, always_sensitive, extractable, never_extractable, local;
	int priv_token, priv_private; /* CKA_TOKEN, CKA_PRIVATE of the private key */
};

/*
 * Loads the module at module_path, C_Initialize, and selects the one token
 * matching uri among slots with a token present. Errors (all logged):
 * module missing or not a PKCS#11 module -> P11E_ERR_CONFIG naming the path;
 * no matching token -> P11E_ERR_TOKEN listing what was scanned (token labels,
 * empty readers); several match -> P11E_ERR_TOKEN listing them.
 */
int tok_open(const char *module_path, const struct tok_uri *uri, struct tok **out);

const struct tok_info *tok_get_info(const struct tok *t);

/*
 * Logs in as CKU_USER with pin, at most one C_Login per call and per struct
 * tok. Before it, reads the token flags: CKF_USER_PIN_LOCKED -> refuse;
 * CKF_USER_PIN_FINAL_TRY -> refuse unless allow_final_try; COUNT_LOW -> warn.
 * CKR_USER_ALREADY_LOGGED_IN counts as success. A token with a protected
 * authentication path gets a NULL PIN. Errors: P11E_ERR_TOKEN with a message
 * ("wrong PIN for token 'X'; not retried ..."); the PIN never appears in it.
 */
int tok_login(struct tok *t, const char *pin, int allow_final_try);

/*
 * Key pairs whose public key object has CKA_LABEL == label, in handle order.
 * Needs no login (public objects). *keys is an array of *n keys to release
 * with tok_keys_free (empty: *keys may be NULL and *n 0).
 */
int tok_find_keys(struct tok *t, const char *label, struct tok_key ***keys, size_t *n);
void tok_keys_free(struct tok_key **keys, size_t n);
void tok_key_free(struct tok_key *k);

/*
 * Generates a key pair on the token with CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE=TRUE, CKA_EXTRACTABLE=FALSE set explicitly, CKA_SIGN and
 * CKA_DECRYPT on the private key, CKA_LABEL=label on both, then sets CKA_ID
 * on both to the SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 (1),
 * what a CA puts in the Subject Key Identifier). Needs tok_login first.
 * Errors: P11E_ERR_TOKEN (logged with the CKR name).
 */
int tok_generate_key(struct tok *t, const struct tok_keyspec *spec, const char *label,
                     struct tok_key **out);

/*
 * Destroys the key pair's objects (to take back a key this run generated
 * and could not use). Failures are logged as warnings naming the object.
 */
void tok_destroy_key(struct tok *t, const struct tok_key *k);

/* The CKA_ID tok_generate_key would give a key with this public key. */
int tok_key_id_for(EVP_PKEY *pub, unsigned char id[20]);

/*
 * An EVP_PKEY whose private operations (sign, RSA decrypt) run on the token
 * (the key never leaves it). Needs tok_login. The EVP_PKEY must be freed
 * before tok_close. Errors: P11E_ERR_TOKEN.
 */
int tok_key_evp(struct tok *t, const struct tok_key *k, EVP_PKEY **out);

/* Reads the private key's protection attributes (needs login). */
int tok_key_attrs(struct tok *t, const struct tok_key *k, struct tok_key_attrs *out);

/*
 * The certificate object with the key's CKA_ID (CKO_CERTIFICATE, CKC_X_509).
 * P11E_ERR_NOTFOUND (not logged) when there is none.
 */
int tok_find_cert(struct tok *t, const struct tok_key *k, X509 **out);

/*
 * Stores cert as a token object (CKO_CERTIFICATE, CKC_X_509, CKA_TOKEN=TRUE,
 * CKA_PRIVATE=FALSE, the key's CKA_ID and label, CKA_SUBJECT, CKA_ISSUER,
 * CKA_SERIAL_NUMBER, CKA_VALUE), then reads CKA_VALUE back and compares.
 * Errors: P11E_ERR_TOKEN (a half-written object is destroyed).
 */
int tok_store_cert(struct tok *t, const struct tok_key *k, X509 *cert);

/*
 * The RFC 7512 URI of the key's private key (type "private") or certificate
 * (type "cert"): token, manufacturer, serial, model, object, id, type.
 */
int tok_object_uri(const struct tok *t, const struct tok_key *k, const char *type, char **out);

/* Logs out, closes the session, C_Finalize once, unloads. Accepts NULL. */
void tok_close(struct tok *t);

#endif
