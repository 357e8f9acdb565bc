/*
 * tokproc.h: the token process, private to tokens/. tok_open forks it
 * (tokproc.c) before anything loads the PKCS#11 module; it loads the module,
 * logs in and runs every operation of tok.h on the token (tokserve.c), and
 * the process that opened the token holds only a socket to it: never the
 * module, its session or its private key handles' use.
 *
 * The messages are wire.h's. A request: the operation (enum tokproc_op), then
 * its fields. What comes back: TOKPROC_NAMED or TOKPROC_ANSWER, then the
 * lines the token process logged since its last message (a count, then each
 * line's level and text: the opener logs them as its own, so they have its
 * tag, its stderr and its last error line), then for TOKPROC_NAMED
 * (tok_keygen_ids.named, during a generation) the final CKA_ID, which the
 * opener answers with its result as one number; for TOKPROC_ANSWER the
 * result (0 or P11E_ERR_*), the token's tok_info (tokproc_w_info), then the
 * operation's fields, always all of them (zeros and NULLs when the result
 * is not 0).
 *
 * A key travels as its handles (pub, priv; 0: none), which the token
 * process checks against the keys it listed or generated under the label
 * it was opened for, and as a whole (tokproc_w_key) in what it answers.
 */
#ifndef P11E_TOKPROC_H
#define P11E_TOKPROC_H

#include <stddef.h>
#include <sys/types.h>

#include "tok.h"
#include "wire.h"

enum tokproc_op {
	TOKPROC_ANSWER = 0,
	TOKPROC_NAMED = 1,
	TOKPROC_PRESENT = 2,
	TOKPROC_LOGIN = 3,         /* pin (NULL: none), allow_final_try */
	TOKPROC_FIND_KEYS = 4,     /* label -> count, keys */
	TOKPROC_GENERATE = 5,      /* tmp_id, named?, type, bits, curve, label -> left, key */
	TOKPROC_DESTROY_KEY = 6,   /* key */
	TOKPROC_FIX_ID = 7,        /* key -> id */
	TOKPROC_ATTRS = 8,         /* key -> 7 numbers */
	TOKPROC_FIND_CERT = 9,     /* key -> DER */
	TOKPROC_STORE_CERT = 10,   /* key, DER */
	TOKPROC_HAS_CERT = 11,     /* key, DER */
	TOKPROC_DESTROY_CERT = 12, /* key, DER */
	TOKPROC_OTHER_CERTS = 13,  /* key, DER or NULL, destroy -> count */
	TOKPROC_GRANT = 14,        /* key, signatures, decryptions -> grant */
	TOKPROC_KEY_OP = 15,       /* grant, decrypt, input, room -> output */
	TOKPROC_RELEASE = 16,      /* grant */
	TOKPROC_OPEN = 17,         /* a station's session: token URI, label (NULL: any) */
	TOKPROC_END = 18,          /* its end: logged out, closed (the answer after it) */
	TOKPROC_FIND_PRIVATE = 19, /* key (its public key's handle) -> private key handle */
};

/* What one tok_key_evp may ask of the token process (one exchange's needs);
 * TOK_KEY_GRANTS (tok.h) bounds how many of one key. */
#define TOKPROC_GRANT_SIGNS 3
#define TOKPROC_GRANT_DECRYPTS 1

/* The largest input and output of one private key operation (RSA 16384, the most
 * SoftHSM generates). */
#define TOKPROC_OP_MAX 2048

struct p11;         /* the token process's session (p11int.h) */
struct tok_evp_key; /* an EVP_PKEY's hold on the token (p11evp.c) */

/* The process that opened the token: its side of the token process. */
struct tok {
	int fd;      /* the socket; -1 once the token process is gone */
	pid_t pid;   /* the token process; -1 once waited for */
	pid_t owner; /* the process that forked it (a fork of that one may not use it) */
	struct tok_info info;
	int logged_in;                /* tok_login succeeded */
	char failure[256];            /* how the token process ended mid-request ("" if not) */
	struct tok_evp_key *evp_keys; /* the EVP_PKEYs of tok_key_evp still alive */
	int session;                  /* a session in a station's token process (tok_use_station) */
};

/* A station's token process, from the station's side (tok.h's tok_worker_*): t.fd is
 * its control socket, where the sockets of the sessions go. */
struct tok_worker {
	struct tok t;
};

/* The token's description, and a key, as both sides write and read them. */
void tokproc_w_info(struct wire_wbuf *w, const struct tok_info *info);
int tokproc_r_info(struct wire_rbuf *r, struct tok_info *info);
void tokproc_w_key(struct wire_wbuf *w, const struct tok_key *k);
/* A key as the token process described it (*out NULL for none); a malformed
 * one sets r->bad. 0 or P11E_ERR_ALLOC. */
int tokproc_r_key(struct wire_rbuf *r, struct tok_key **out);

/* What a token process runs: a struct tok's session (tok_open), or one job (tokproc_run). */
struct tokproc_start {
	const char *module_path, *label; /* tok_open's */
	const struct tok_uri *uri;
	int (*job)(void *arg, struct wire_wbuf *out); /* tokproc_run's */
	void *arg;
	int worker; /* tok_worker_start's: module_path loaded once, sessions from fd */
};

/*
 * The token process, in the child of the fork (tokserve.c): keeps fd (as 3)
 * and stdio, ignores the signals that end a run, hands its log lines to its
 * parent. For tok_open: loads st->module_path and selects the token st->uri
 * names (p11_open), answers how that went, then serves requests until fd
 * closes, closes the token and exits; st->label is the only CKA_LABEL whose
 * keys it lists, generates and uses (NULL: any). For tokproc_run: runs
 * st->job and answers its result and fields. For tok_worker_start
 * (st->worker): loads st->module_path, then serves the card sessions whose
 * sockets arrive on fd (wire_send_fd), one at a time: each begins with
 * TOKPROC_OPEN (the token's URI and the label), answered as tok_open's fork
 * is, and ends with TOKPROC_END or its socket's end (C_Logout,
 * C_CloseSession); C_Finalize when fd closes.
 */
void tokproc_child(int fd, const struct tokproc_start *st) __attribute__((noreturn));

/*
 * The token process's confinement (tokconfine.c), before the module is
 * loaded: no_new_privs and a seccomp filter that kills the process on
 * execve, execveat, ptrace and process_vm_readv/writev (a module has no
 * program to run and no process to read), and fails socket() for AF_INET,
 * AF_INET6 and AF_PACKET with EACCES (the token process never touches the
 * network) unless TPM2_PKCS11_TCTI, TPM2TOOLS_TCTI or TSS2_TCTI names a TCP
 * TCTI (mssim, swtpm: a TPM simulator). Everything else stays allowed: what
 * a module reads, writes and talks to is its own. P11E_ERR_INTERNAL, logged.
 */
int tokproc_confine(void);

/*
 * The token process's requests, one at a time (tokserve.c; its loop, and
 * tests/fuzz/fuzz_tokserve.c): a server for the session p holds, serving the
 * keys labelled label (NULL: any); fd is where a generation's TOKPROC_NAMED
 * goes (-1: none, the generation then fails). tokproc_server_request reads
 * one request message (untrusted: refused, with the reason logged, unless
 * read whole and well before anything is done) and appends its answer to
 * *out (out->oom when it could not).
 */
struct tokproc_server;
struct tokproc_server *tokproc_server_new(int fd, struct p11 *p, const char *label);
void tokproc_server_request(struct tokproc_server *s, const unsigned char *msg, size_t len,
                            struct wire_wbuf *out);
void tokproc_server_free(struct tokproc_server *s);

/*
 * Runs job(arg, out) in a token process of its own and waits for it: what
 * loads a module (discovery, blank-token initialisation) does it there, so
 * that only such processes ever map one. Its log lines are logged here. On
 * the job's result 0, read(arg, r) reads the fields it wrote (a malformed
 * answer: r->bad). Returns the job's result, or the error of the process's
 * end (P11E_ERR_TOKEN: it died; P11E_ERR_INTERNAL: no process).
 */
int tokproc_run(int (*job)(void *arg, struct wire_wbuf *out),
                int (*read)(void *arg, struct wire_rbuf *r), void *arg);

/*
 * The requests of p11evp.c (tokproc.c): tokproc_grant allows k signs
 * signatures and decrypts decryptions, under the grant number *grant;
 * tokproc_key_op runs one (*outlen: room in out, then bytes written);
 * tokproc_release ends the grant (the token process logs what was used).
 * Errors as the token process's.
 */
int tokproc_grant(struct tok *t, const struct tok_key *k, int signs, int decrypts, long *grant);
int tokproc_key_op(struct tok *t, long grant, int decrypt, const unsigned char *in, size_t inlen,
                   unsigned char *out, size_t *outlen);
void tokproc_release(struct tok *t, long grant);

/*
 * Cuts the EVP_PKEYs of tok_key_evp that are still alive off t (tok_close,
 * before the token process ends): their private operations fail from then on.
 */
void tok_evp_detach(struct tok *t);

#endif
