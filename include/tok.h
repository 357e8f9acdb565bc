/*
 * tok.h: a session with one token, through PKCS#11: open, login, keys
 * (find, generate, destroy), private key operations, certificates, close.
 * Nothing outside tokens/ calls C_*; no CK_ type or CKF_ flag crosses this
 * header: tokens/ translates them (tok_info.flags, enum tok_key_type).
 * Discovery (what modules and tokens a machine offers) is tok_scan.h.
 *
 * One struct tok is one token process (tokens/tokproc.h), forked by tok_open:
 * it loads the module (dlopen of the configured path, never p11-kit-proxy),
 * C_Initialize's it once, selects one token, opens one R/W session, logs in
 * and runs every operation below; the caller holds a socket to it, never the
 * module. Every key operation, signatures and decryption included, runs in
 * that session on the object handles it generated or listed, under the key
 * label it was opened for. tok_close ends it, which finalizes the module: one
 * enrollment per initialise/finalize (tpm2-pkcs11 holds TPM objects until
 * C_Finalize). Its errors are logged by it, and its last error line becomes
 * the caller's (log_last_error). A token process that dies (a module that
 * crashes) makes the call in progress fail with P11E_ERR_TOKEN naming why.
 */
#ifndef P11E_TOK_H
#define P11E_TOK_H

#include <stddef.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "uri.h"

struct tok;

/* The token's state: bits of tok_info.flags (from CK_TOKEN_INFO.flags, CKF_*). */
enum tok_flag {
	TOK_F_INITIALIZED = 1u << 0,         /* CKF_TOKEN_INITIALIZED */
	TOK_F_LOGIN_REQUIRED = 1u << 1,      /* CKF_LOGIN_REQUIRED */
	TOK_F_PROTECTED_AUTH_PATH = 1u << 2, /* CKF_PROTECTED_AUTHENTICATION_PATH (PIN pad) */
	TOK_F_USER_PIN_INITIALIZED = 1u << 3,
	TOK_F_WRITE_PROTECTED = 1u << 4,
	TOK_F_USER_PIN_COUNT_LOW = 1u << 5,
	TOK_F_USER_PIN_FINAL_TRY = 1u << 6,
	TOK_F_USER_PIN_LOCKED = 1u << 7,
	TOK_F_USER_PIN_TO_BE_CHANGED = 1u << 8,
	TOK_F_SO_PIN_COUNT_LOW = 1u << 9,
	TOK_F_SO_PIN_FINAL_TRY = 1u << 10,
	TOK_F_SO_PIN_LOCKED = 1u << 11,
	TOK_F_SO_PIN_TO_BE_CHANGED = 1u << 12,
	/* Not CK_TOKEN_INFO's: the module is tpm2-pkcs11 (its C_GetInfo), set by
	 * tok_list_tokens. */
	TOK_F_TPM2_PKCS11 = 1u << 13,
};

struct tok_info {
	/* NUL-terminated copies of CK_TOKEN_INFO fields, trailing blanks removed */
	char label[33], manufacturer[33], model[17], serial[17];
	unsigned flags; /* enum tok_flag bits */
	unsigned long slot_id;
};

/* The key types tokens/ generates and uses (the agent maps [key] type onto them). */
enum tok_key_type {
	TOK_KEY_RSA = 1, /* CKK_RSA */
	TOK_KEY_EC = 2,  /* CKK_EC */
};

struct tok_keyspec {
	enum tok_key_type type;
	int bits;  /* RSA modulus bits; EC field bits (256, 384) */
	int curve; /* EC: OpenSSL NID; else 0 */
};

struct tok_key {
	unsigned char id[64]; /* CKA_ID */
	size_t id_len;
	char *label; /* CKA_LABEL */
	enum tok_key_type type;
	EVP_PKEY *pub;                         /* the public key as read from the token */
	unsigned long pub_handle, priv_handle; /* CK_OBJECT_HANDLE; priv 0 if not visible */
};

struct tok_key_attrs {
	int sensitive, always_sensitive, extractable, never_extractable, local;
	int priv_token, priv_private; /* CKA_TOKEN, CKA_PRIVATE of the private key */
};

/*
 * Starts the token process, which loads the module at module_path,
 * C_Initialize, and selects the one token matching uri among slots with a
 * token present. It serves only the key pairs labelled key_label (NULL: any),
 * and refuses requests about others. Errors (all logged):
 * module missing or not a PKCS#11 module -> P11E_ERR_CONFIG naming the path;
 * no matching token -> P11E_ERR_TOKEN listing what was scanned (token labels,
 * empty readers); several match -> P11E_ERR_TOKEN listing them; no process
 * -> P11E_ERR_INTERNAL.
 */
int tok_open(const char *module_path, const struct tok_uri *uri, const char *key_label,
             struct tok **out);

const struct tok_info *tok_get_info(const struct tok *t);

/*
 * Logs in as CKU_USER with pin, at most one C_Login per call and per struct
 * tok. Before it, reads the token flags: TOK_F_USER_PIN_LOCKED -> refuse;
 * TOK_F_USER_PIN_FINAL_TRY -> refuse unless allow_final_try; COUNT_LOW -> warn.
 * CKR_USER_ALREADY_LOGGED_IN counts as success. A token with a protected
 * authentication path gets a NULL PIN. Errors: P11E_ERR_PIN when the PIN is
 * wrong, locked, on its final try, missing or refused for its form (message:
 * "wrong PIN for token 'X'; not retried ..."; the PIN never appears in it),
 * P11E_ERR_TOKEN when the token fails otherwise.
 */
int tok_login(struct tok *t, const char *pin, int allow_final_try);

/*
 * Key pairs whose public key object has CKA_LABEL == label, in handle order,
 * each with the private key of its CKA_ID (priv_handle 0 when none is
 * visible; for a pair whose generation stopped between setting its two
 * CKA_IDs, the private key that has the final one). Needs no login (public
 * objects); before tok_login every priv_handle is 0, also on a token that
 * shows private keys without login (they are not looked for: the same view
 * on every token, two searches less). *keys is an array of *n keys to release
 * with tok_keys_free (empty: *keys may be NULL and *n 0).
 */
int tok_find_keys(struct tok *t, const char *label, struct tok_key ***keys, size_t *n);

/*
 * After tok_login: the private key of each of the n keys that tok_find_keys
 * listed before it (priv_handle 0), looked for as a listing after login
 * would, without listing the public keys again. Keys that have a
 * priv_handle, and every key before login, are left as they are. A key that
 * is not one listed or generated by this struct tok, or whose public key
 * this run destroyed, is refused by the token process (P11E_ERR_INTERNAL).
 */
int tok_find_private(struct tok *t, struct tok_key **keys, size_t n);
void tok_keys_free(struct tok_key **keys, size_t n);
void tok_key_free(struct tok_key *k);
/* A copy of k to release with tok_key_free (the same public key, referenced); NULL: no memory. */
struct tok_key *tok_key_dup(const struct tok_key *k);

/*
 * How tok_generate_key names a new pair. It is created with CKA_ID tmp_id
 * (tmp_len bytes, 1 to 64), which the caller can record first, so that a
 * crash right after the generation leaves a pair the caller recognises; then
 * named(ud, id, len), when set, is told the final CKA_ID before it replaces
 * tmp_id on the token (the caller records it too). A non-zero result of named
 * is returned, after the pair is destroyed.
 */
struct tok_keygen_ids {
	const unsigned char *tmp_id;
	size_t tmp_len;
	int (*named)(void *ud, const unsigned char *id, size_t len);
	void *ud;
	/* out: 1 when a failed generation could not destroy what it made (the token
	 * went away): the pair stays on the token, under tmp_id or, once named
	 * heard it, partly under the final CKA_ID; 0 otherwise */
	int left;
};

/*
 * Generates a key pair on the token with CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE=TRUE, CKA_EXTRACTABLE=FALSE set explicitly, CKA_SIGN and
 * CKA_DECRYPT on the private key, CKA_LABEL=label on both, then sets CKA_ID
 * on both to the SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 (1),
 * what a CA puts in the Subject Key Identifier). ids: the temporary CKA_ID and
 * the hook (above); NULL: a random temporary ID and no hook. Needs tok_login
 * first. Any failure after C_GenerateKeyPair destroys both objects; when
 * that fails too, ids->left says so. Errors: P11E_ERR_TOKEN (logged with the
 * CKR name), P11E_ERR_CONFIG (key type), named's error.
 */
int tok_generate_key(struct tok *t, struct tok_keygen_ids *ids, const struct tok_keyspec *spec,
                     const char *label, struct tok_key **out);

/*
 * Destroys the key pair's objects (to take back a key this run generated
 * and could not use). Failures are logged as warnings naming the object and
 * give P11E_ERR_TOKEN (what could not be destroyed stays on the token).
 */
int tok_destroy_key(struct tok *t, const struct tok_key *k);

/*
 * Gives a key pair the CKA_ID tok_generate_key would have given it (SHA-1 of
 * the subjectPublicKey), if it has another one: a run that stopped between
 * key generation and setting the ID leaves its temporary ID. Needs login.
 */
int tok_key_fix_id(struct tok *t, struct tok_key *k);

/* 1 when the token still answers (C_GetTokenInfo), 0 when it is gone. */
int tok_present(struct tok *t);

/*
 * When the token process ended in the middle of a request (a module that
 * crashed), the error line that said so; NULL otherwise. Every call after it
 * fails without a message of its own.
 */
const char *tok_failure(const struct tok *t);

/* The CKA_ID tok_generate_key would give a key with this public key. */
int tok_key_id_for(EVP_PKEY *pub, unsigned char id[20]);

/*
 * An EVP_PKEY for k whose private operations run on the token, in t's own
 * session, on k's private key handle (the key never leaves the token; no
 * search, no second view of the token): RSA signatures and decryption with
 * PKCS#1 v1.5 padding (CKM_RSA_PKCS: X509_REQ and CMS signing with any
 * digest, CMS_decrypt of key transport) and ECDSA (CKM_ECDSA on the digest).
 * Other RSA paddings (PSS, OAEP) fail. k comes from tok_generate_key, or from
 * tok_find_keys after tok_login (before it, the private key is not visible:
 * P11E_ERR_TOKEN). The EVP_PKEY holds no reference on t and may be freed
 * before or after tok_close; after it, its private operations fail (logged).
 * A failing operation logs the C_* call, the CKR_ name, key and token.
 * The EVP_PKEY does at most signs signatures and decrypts decryptions on the
 * token, what the caller's use of it needs: the token process grants them,
 * and refuses the one after before it reaches the module, so a flaw in that
 * use cannot make the token an oracle. It grants at most 3 signatures and 1
 * decryption at once (an exchange's), and TOK_KEY_GRANTS grants of one key
 * in its life (an attempt), whatever it is asked. Freeing the EVP_PKEY ends
 * the grant; the token process logs (debug) how many it did.
 * Errors: P11E_ERR_TOKEN, P11E_ERR_ALLOC, P11E_ERR_INTERNAL (a refused grant).
 */
int tok_key_evp(struct tok *t, const struct tok_key *k, int signs, int decrypts, EVP_PKEY **out);

/* How many tok_key_evp of one key one struct tok allows: the exchanges of one
 * attempt, `enroll --wait`'s polls included (enroll.c stops waiting before). */
#define TOK_KEY_GRANTS 64

/*
 * Reads the private key's protection attributes (needs login): each 1 (true),
 * 0 (false) or -1 (the module does not report it).
 */
int tok_key_attrs(struct tok *t, const struct tok_key *k, struct tok_key_attrs *out);

/*
 * The rule for "the current certificate", here and in the agent: a is newer
 * than b when its notAfter is later, then its notBefore, then its serial is
 * higher. 1 or 0.
 */
int tok_cert_newer(X509 *a, X509 *b);

/*
 * The key's newest certificate object (CKO_CERTIFICATE, CKC_X_509, the key's
 * CKA_ID; tok_cert_newer). P11E_ERR_NOTFOUND (not logged) when there is none.
 */
int tok_find_cert(struct tok *t, const struct tok_key *k, X509 **out);

/*
 * tok_has_cert: 0 when a certificate object with the key's CKA_ID and exactly
 * cert's DER is on the token, P11E_ERR_NOTFOUND (not logged) when not.
 * tok_destroy_cert destroys every such object (absent is fine); failures are
 * logged as warnings and give P11E_ERR_TOKEN.
 */
int tok_has_cert(struct tok *t, const struct tok_key *k, X509 *cert);
int tok_destroy_cert(struct tok *t, const struct tok_key *k, X509 *cert);

/*
 * The certificate objects with the key's CKA_ID other than keep (exactly its
 * DER; NULL: all of them): *n counts them, and with destroy they are
 * destroyed (failures logged as warnings give P11E_ERR_TOKEN, *n still set).
 */
int tok_other_certs(struct tok *t, const struct tok_key *k, X509 *keep, int destroy, size_t *n);

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

/* Logs out, closes the session, C_Finalize once, unloads. Accepts NULL. (A
 * station's session: logs out and closes the session; the module stays loaded.) */
void tok_close(struct tok *t);

/*
 * A station's token processes (provision): one loads the module once
 * (C_Initialize) and serves the cards' enrollments one after another, each a
 * session of its own (the token its URI names, the keys of its label, its
 * grants), so that a station of many tokens does not pay the module's
 * initialisation once per card (SoftHSM reads its whole token store in
 * C_Initialize). The station's own process never loads the module.
 *
 * tok_worker_start forks one (the module is loaded there, the answer comes
 * with the first session). tok_worker_connect gives a card's process its
 * socket to it (*fd; the card's process passes it to tok_use_station), queued
 * behind the sessions before it; P11E_ERR_TOKEN when the process is gone.
 * tok_worker_alive: 1 while it runs (0, with how it ended logged, once it
 * has ended). tok_worker_stop closes it (C_Finalize once its sessions end)
 * and waits for it; in a fork of the process that started it, it only
 * closes this process's copy. tok_worker_lost: the same, for a token process
 * that a card's process saw end in the middle of its session
 * (tok_station_lost): it is ending, and how it ended is logged. The card's
 * process says so because the station cannot see it in time by itself: the
 * kernel releases a dying process's sockets in no order that the peers can
 * rely on, so a card may see its session end before the station sees the
 * control socket close.
 *
 * tok_use_station, in a card's process: the next tok_open of module_path
 * is a session through fd (taken) instead of a token process of its own;
 * fd -1 forgets it. tok_station_lost, there: 1 once such a session ended
 * because the station's token process did (P11E_ERR_TOKEN for the request).
 */
struct tok_worker;
int tok_worker_start(const char *module_path, struct tok_worker **out);
int tok_worker_connect(struct tok_worker *w, int *fd);
int tok_worker_alive(struct tok_worker *w);
void tok_worker_stop(struct tok_worker *w);
void tok_worker_lost(struct tok_worker *w);
void tok_use_station(int fd, const char *module_path);
int tok_station_lost(void);

#endif
