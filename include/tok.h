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
#include <sys/types.h>

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

#define TOK_TOKEN_INITIALIZED 0x400UL /* CKF_TOKEN_INITIALIZED, in tok_info.flags */

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
 * objects). *keys is an array of *n keys to release
 * with tok_keys_free (empty: *keys may be NULL and *n 0).
 */
int tok_find_keys(struct tok *t, const char *label, struct tok_key ***keys, size_t *n);
void tok_keys_free(struct tok_key **keys, size_t n);
void tok_key_free(struct tok_key *k);

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
};

/*
 * Generates a key pair on the token with CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE=TRUE, CKA_EXTRACTABLE=FALSE set explicitly, CKA_SIGN and
 * CKA_DECRYPT on the private key, CKA_LABEL=label on both, then sets CKA_ID
 * on both to the SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 (1),
 * what a CA puts in the Subject Key Identifier). ids: the temporary CKA_ID and
 * the hook (above); NULL: a random temporary ID and no hook. Needs tok_login
 * first. Any failure after C_GenerateKeyPair destroys both objects. Errors:
 * P11E_ERR_TOKEN (logged with the CKR name), P11E_ERR_CONFIG (key type),
 * named's error.
 */
int tok_generate_key(struct tok *t, const struct tok_keygen_ids *ids,
                     const struct tok_keyspec *spec, const char *label, struct tok_key **out);

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

/* The CKA_ID tok_generate_key would give a key with this public key. */
int tok_key_id_for(EVP_PKEY *pub, unsigned char id[20]);

/*
 * An EVP_PKEY whose private operations (sign, RSA decrypt) run on the token
 * (the key never leaves it). Needs tok_login. The EVP_PKEY must be freed
 * before tok_close. Errors: P11E_ERR_TOKEN.
 */
int tok_key_evp(struct tok *t, const struct tok_key *k, EVP_PKEY **out);

/*
 * Reads the private key's protection attributes (needs login): each 1 (true),
 * 0 (false) or -1 (the module does not report it).
 */
int tok_key_attrs(struct tok *t, const struct tok_key *k, struct tok_key_attrs *out);

/*
 * The certificate object with the key's CKA_ID (CKO_CERTIFICATE, CKC_X_509).
 * P11E_ERR_NOTFOUND (not logged) when there is none.
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

/* Logs out, closes the session, C_Finalize once, unloads. Accepts NULL. */
void tok_close(struct tok *t);

/*
 * Discovery (`p11enroll tokens`, p11list.c): what a module offers, read
 * without logging in and without opening a session.
 */
enum tok_mech_idx {
	TOK_MECH_RSA_KEYGEN, /* CKM_RSA_PKCS_KEY_PAIR_GEN */
	TOK_MECH_EC_KEYGEN,  /* CKM_EC_KEY_PAIR_GEN */
	TOK_MECH_RSA_PKCS,   /* CKM_RSA_PKCS */
	TOK_MECH_SHA256_RSA, /* CKM_SHA256_RSA_PKCS */
	TOK_MECH_ECDSA,      /* CKM_ECDSA */
	TOK_MECH_COUNT
};

struct tok_mech_desc {
	int present;            /* in C_GetMechanismList */
	unsigned long min, max; /* CK_MECHANISM_INFO key sizes (bits) */
	unsigned long flags;    /* CK_MECHANISM_INFO.flags (CKF_SIGN...) */
};

struct tok_slot_desc {
	unsigned long id;
	char description[65], manufacturer[33]; /* trailing blanks removed */
	unsigned long flags;                    /* CK_SLOT_INFO.flags */
	char error[128];                        /* C_GetSlotInfo/C_GetTokenInfo failed */
	int has_token;                          /* token info read: token is valid */
	struct tok_info token;
	struct tok_mech_desc mechs[TOK_MECH_COUNT];
	char mech_error[96]; /* C_GetMechanismList failed */
	char *uri;           /* [token] uri selecting this token; NULL if uninitialised */
	int uri_ambiguous;   /* another token of the module has the same uri */
};

struct tok_module_desc {
	char *path;
	int err;         /* 0; P11E_ERR_CONFIG: not loadable; P11E_ERR_TOKEN: C_* failed */
	char error[384]; /* err != 0: what failed, naming the path */
	char lib_description[33], lib_manufacturer[33];
	unsigned lib_major, lib_minor, ck_major, ck_minor;
	int tpm_backed; /* the library is tpm2-pkcs11 */
	struct tok_slot_desc *slots;
	size_t nslots;
};

/*
 * Loads the module at path (dlopen, C_GetFunctionList, C_Initialize with
 * CKF_OS_LOCKING_OK; ALREADY_INITIALIZED accepted), reads C_GetInfo, every
 * slot (C_GetSlotList(FALSE), C_GetSlotInfo), the token of each slot that has
 * one and the enrollment mechanisms, then C_Finalize and dlclose. Never logs
 * in, never opens a session. Logs nothing: a module that cannot be loaded or
 * initialised still gives *out, with err and error set. Returns 0, or
 * P11E_ERR_ALLOC. Free *out with tok_module_desc_free.
 */
int tok_describe_module(const char *path, struct tok_module_desc **out);
void tok_module_desc_free(struct tok_module_desc *m);

/*
 * The initialised tokens of the module at module_path that uri matches (NULL
 * or a URI without token attributes: all), in slot order, read with a fresh
 * C_Initialize..C_Finalize (so a token that appeared since the last call is
 * seen; SoftHSM reads its token directory at C_Initialize); with blank, the
 * uninitialised tokens too (CKF_TOKEN_INITIALIZED clear). *out (free())
 * and *n are set on success, also when none matches. Errors (logged):
 * P11E_ERR_CONFIG (module not loadable), P11E_ERR_TOKEN, P11E_ERR_ALLOC.
 */
int tok_list_tokens(const char *module_path, const struct tok_uri *uri, int blank,
                    struct tok_info **out, size_t *n);

/*
 * Initialises the blank token in slot_id (C_InitToken with so_pin and label,
 * then as security officer C_InitPIN with user_pin) through its own
 * C_Initialize..C_Finalize; *out is the token as it is then. A token that is
 * already initialised is refused (never wiped). Errors (logged, never with a
 * PIN): P11E_ERR_TOKEN, P11E_ERR_CONFIG (module not loadable).
 */
int tok_init_token(const char *module_path, unsigned long slot_id, const char *so_pin,
                   const char *label, const char *user_pin, struct tok_info *out);

/*
 * Starts a process that loads the module and waits for its slot events
 * (C_WaitForSlotEvent, blocking), writing one byte to *fd per event. When the
 * module has no slot events (SoftHSM: CKR_FUNCTION_NOT_SUPPORTED) or fails,
 * the process ends and *fd reads end-of-file: the caller then polls with
 * tok_list_tokens. *pid and *fd (the read end) are set on success. Errors
 * (logged): P11E_ERR_INTERNAL (pipe, fork). Stop it with tok_watch_stop.
 */
int tok_watch_start(const char *module_path, pid_t *pid, int *fd);

/* Closes fd (-1: none) and kills and reaps the watcher (pid <= 0: none). */
void tok_watch_stop(pid_t pid, int fd);

/*
 * The modules p11-kit's configuration registers, asked in a child process
 * with timeout_s (p11-kit loads every module, and some start threads: OpenSC
 * connects to D-Bus, which breaks GDBus in processes forked later; p11-kit
 * itself is loaded with dlopen there only). *paths (absolute) and their
 * p11-kit names *names are NULL-terminated arrays of malloc'ed strings, freed
 * with tok_strv_free. Errors (logged): P11E_ERR_TOKEN when p11-kit is not
 * installed, fails or does not answer in time.
 */
int tok_registered_modules(unsigned timeout_s, char ***paths, char ***names);
void tok_strv_free(char **v);

/* How a child process of tok_run_boxed ended. */
enum tok_box_end {
	TOK_BOX_EXITED,   /* code: its exit status */
	TOK_BOX_TIMEOUT,  /* killed after timeout_s */
	TOK_BOX_SIGNALED, /* code: the signal */
};

struct tok_box {
	char *out;  /* what the child wrote, NUL-terminated; NULL if nothing */
	size_t len; /* bytes in out, without the NUL */
	int end;    /* enum tok_box_end */
	int code;
};

/*
 * Runs fn(fd, arg) in a child process, then _exit(0) there, and collects
 * what it writes to fd until it exits or timeout_s pass (then it is killed
 * with SIGKILL and reaped). Used to examine PKCS#11 modules and the TPM:
 * one that hangs or crashes does not take the caller with it. With quiet
 * set and a log level below debug, the child's stderr goes to /dev/null
 * (modules and tpm2-tss print there). *out is set on success (free out->out
 * with tok_box_clear). Errors (logged): P11E_ERR_INTERNAL (pipe, fork).
 */
int tok_run_boxed(unsigned timeout_s, int quiet, void (*fn)(int fd, void *arg), void *arg,
                  struct tok_box *out);
void tok_box_clear(struct tok_box *b);

#endif
