/*
 * tok_scan.h: discovery, for `p11enroll tokens` and `provision`: what a
 * PKCS#11 module offers (slots, tokens, mechanisms), which modules p11-kit
 * registers, the tokens a (partial) [token] uri matches, initialising a blank
 * token, and slot events. Each call loads the module for itself
 * (C_Initialize..C_Finalize) and never keeps a session: the enrollment of a
 * token is tok.h's struct tok. PKCS#11 flags are translated by tokens/.
 */
#ifndef P11E_TOK_SCAN_H
#define P11E_TOK_SCAN_H

#include <stddef.h>
#include <sys/types.h>

#include "tok.h"
#include "uri.h"

/* The mechanisms enrollment needs (`p11enroll tokens`). */
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
	/* What the module says the mechanism does; a module that reports no
	 * flags at all (0) is taken at its word that it lists the mechanism. */
	int generates, signs;
	unsigned long info_flags; /* CK_MECHANISM_INFO.flags as reported, for display only */
};

struct tok_slot_desc {
	unsigned long id;
	char description[65], manufacturer[33]; /* trailing blanks removed */
	int token_present, removable, hardware; /* CK_SLOT_INFO.flags */
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
 * uninitialised tokens too (TOK_F_INITIALIZED clear). Run in a token
 * process of its own (tokens/tokproc.h): the caller never maps the module.
 * *out (free()) and *n are set on success, also when none matches. Errors
 * (logged): P11E_ERR_CONFIG (module not loadable), P11E_ERR_TOKEN (also: that
 * process died), P11E_ERR_ALLOC.
 */
int tok_list_tokens(const char *module_path, const struct tok_uri *uri, int blank,
                    struct tok_info **out, size_t *n);

/*
 * Initialises the blank token in slot_id (C_InitToken with so_pin and label,
 * then as security officer C_InitPIN with user_pin) through its own
 * C_Initialize..C_Finalize, in a token process of its own; *out is the token
 * as it is then. A token that is already initialised is refused (never
 * wiped). Errors (logged, never with a PIN): P11E_ERR_TOKEN, P11E_ERR_CONFIG
 * (module not loadable).
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
 * with timeout_s (box.h: p11-kit loads every module, and some start threads:
 * OpenSC connects to D-Bus, which breaks GDBus in processes forked later;
 * p11-kit itself is loaded with dlopen there only). *paths (absolute) and
 * their p11-kit names *names are NULL-terminated arrays of malloc'ed strings,
 * freed with tok_strv_free. Errors (logged): P11E_ERR_TOKEN when p11-kit is
 * not installed, fails or does not answer in time.
 */
int tok_registered_modules(unsigned timeout_s, char ***paths, char ***names);
void tok_strv_free(char **v);

#endif
