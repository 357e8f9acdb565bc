/*
 * netproc.h: the network process. libcurl, TLS and every byte a server sends
 * are handled in a process of their own: the program p11enroll-net
 * (netmain.c, netproc_serve.c), executed afresh by netproc.c, so it never
 * shares memory with the process that holds the PKCS#11 module, the PIN, the
 * challenge or state_dir, and p11enroll itself does not link libcurl.
 * Started as root it becomes the user "nobody"; then it is confined: no new
 * privileges, and a seccomp filter that kills it on any system call outside
 * what HTTP(S) needs (no execve, no ptrace, no new executable mappings, so no
 * library can be loaded), and refuses files opened for writing. It opens no
 * socket: p11enroll resolves each request's names and connects for it, to
 * that request's server or proxy only (netproc_connect.h).
 *
 * http_get and http_post (http.h) run there after netproc_enable; their
 * interface does not change.
 */
#ifndef P11E_NETPROC_H
#define P11E_NETPROC_H

#include <stddef.h>
#include <sys/types.h>

#include <openssl/x509.h>

struct scep_ca;
struct scep_rep;
struct scep_env;

/* The network process's request socket. */
#define NETPROC_FD 3

/* Its program's name: found beside the running p11enroll (a build tree, a
 * side-by-side install), else in P11E_LIBEXECDIR. */
#define NETPROC_PROG "p11enroll-net"

/*
 * Routes http_get/http_post to the network process, which the first request
 * starts (a command that makes none starts none). A forked child starts its
 * own at its first request. The network process ends when the socket to it
 * closes, at the latest when this process ends. If it cannot be started, or
 * it dies (killed by its filter, say), that request fails with
 * P11E_ERR_INTERNAL (logged, with the signal) and so does every later one.
 */
void netproc_enable(void);

/*
 * scep_rep_parse (scep.h), run in the network process: the CertRep's CMS is
 * parsed and its signature, transactionID and nonce verified there, never in
 * this process, which gets back struct scep_rep's fields and checks them
 * again (netproc_parse.h). Errors as scep_rep_parse's (logged by the network
 * process), and P11E_ERR_INTERNAL when it is gone or answers nonsense. Without
 * netproc_enable (unit tests): scep_rep_parse here.
 */
int netproc_rep_parse(const unsigned char *der, size_t len, STACK_OF(X509) * trusted,
                      const char *txid, const unsigned char nonce[16], struct scep_rep **out);

/*
 * scep_ca_parse (scep.h) of a GetCACert body, its PKCS#7 bundle taken apart
 * in the network process (scep_ca_certs): this process gets the
 * certificates' DER, parses them and picks their roles (scep_ca_from_certs).
 * Errors as scep_ca_parse's, and P11E_ERR_INTERNAL as netproc_rep_parse's.
 * Without netproc_enable: scep_ca_parse here.
 */
int netproc_ca_parse(const unsigned char *der, size_t len, struct scep_ca **out);

/*
 * scep_rep_certs (scep.h) of a CertRep's decrypted envelope, run in the
 * network process: this process, which decrypted it with the token's key,
 * gets back the certificates' DER (1 to 64, each parsed again here), *certs
 * new. Errors as scep_rep_certs's, P11E_ERR_INTERNAL as netproc_rep_parse's.
 * Without netproc_enable: scep_rep_certs here.
 */
int netproc_rep_certs(const unsigned char *plain, size_t len, STACK_OF(X509) * *certs);

/*
 * scep_env_parse (scep.h) of a CertRep's envelope, run in the network
 * process: this process gets back the fields decrypting it needs (checked
 * again: a known cipher and its IV, 1 to SCEP_ENV_KEY_MAX bytes of encrypted
 * key, whole blocks of content no longer than the envelope) and decrypts them
 * with scep_env_open; the content-encryption key never goes there. *out new
 * (scep_env_free). Errors as scep_env_parse's, P11E_ERR_INTERNAL as
 * netproc_rep_parse's. Without netproc_enable: scep_env_parse here.
 */
int netproc_env_parse(const unsigned char *der, size_t len, X509 *to, struct scep_env **out);

/*
 * scep_next_parse (scep.h) of a GetNextCACert body against the current CA
 * cur, its CMS checked in the network process (scep_next_certs, given cur's
 * signers, issuing CA and bundle): this process gets the certificates' DER
 * and makes the next CA of them (scep_next_from_certs). Errors as
 * scep_next_parse's, and P11E_ERR_INTERNAL as netproc_rep_parse's. Without
 * netproc_enable: scep_next_parse here.
 */
int netproc_next_parse(const unsigned char *der, size_t len, const struct scep_ca *cur,
                       struct scep_ca **out);

/* Whether netproc_enable was called: requests and parsing go to the network process. */
int netproc_enabled(void);

/*
 * challenge_parse (challenge.h) of an NDES page, run in the network process:
 * the page (its encodings, its HTML) is read there; this process gets back
 * the challenge (checked again: printable ASCII, 1..max characters; in the
 * secret arena, secret_free) and, when thumbprint is not NULL, the CA
 * thumbprint (free(); or NULL). Errors as challenge_parse's (logged by the
 * network process), P11E_ERR_INTERNAL as netproc_rep_parse's. Only after
 * netproc_enable (netproc_enabled).
 */
int netproc_page_parse(const unsigned char *body, size_t len, size_t max, char **challenge,
                       char **thumbprint);

/*
 * Starts the network process now, before the first request, so that its
 * start (exec, dynamic linking, libcurl, its filter) runs while this process
 * opens the token. Nothing without netproc_enable or when one runs already.
 */
void netproc_prestart(void);

/*
 * Ends this process's network process (it reads EOF) and waits for it;
 * nothing in a forked copy (it is not that process's parent) or when none
 * runs. exit() does it; a child that ends with _exit calls it first, so that
 * no orphan is left to a PID 1 that may not reap.
 */
void netproc_end(void);

/*
 * The provisioning station's network processes (provision.c): one serves the
 * cards of one of its slots in turn, so that each card does not pay the
 * program's start (exec, dynamic linking, libcurl: about 10 ms of CPU). Each
 * request carries all it needs (URL, CA, where it may connect), so nothing of
 * one card's exchange is used for the next. netproc_spawn starts one (h: its
 * PID and its two sockets; errfd: its stderr, -1: this process's;
 * P11E_ERR_INTERNAL, logged); it ignores SIGINT, as the cards' processes
 * do, so that a terminal's Ctrl-C lets the cards in flight finish. netproc_alive: 1 while
 * it runs (0 once it has ended, a kill by a signal logged). netproc_stop
 * closes its sockets (kill_it: SIGKILL first, for one a card's process left
 * in the middle of a request) and waits for it; called in a fork of the
 * station, it only closes that process's copies (the wait fails there).
 * netproc_adopt, in a card's process after netproc_enable: its requests go
 * to h's process, which is not its own to wait for or to end.
 */
struct netproc_handle {
	pid_t pid;
	int sock, csock;
};
int netproc_spawn(struct netproc_handle *h, int errfd);
int netproc_alive(struct netproc_handle *h);
void netproc_stop(struct netproc_handle *h, int kill_it);
void netproc_adopt(const struct netproc_handle *h);

/*
 * The network process's main() (netproc_serve.c), with the request socket on
 * NETPROC_FD: confines itself, then serves requests until EOF. Returns the
 * exit code.
 */
int netproc_main(void);

#endif
