/*
 * netproc.h: the network process (netproc.c). libcurl, TLS and every byte a
 * server sends are handled in a process of their own: this program started
 * afresh (posix_spawn of /proc/self/exe), so it never shares memory with the
 * process that holds the PKCS#11 module, the PIN, the challenge or state_dir.
 * Started as root it becomes the user "nobody"; then it is confined: no new
 * privileges, and a seccomp filter that kills it on any system call outside
 * what HTTP(S) needs (no execve, no ptrace, no new executable mappings, so no
 * library can be loaded), and refuses files opened for writing.
 *
 * http_get and http_post (http.h) run there after netproc_enable; their
 * interface does not change.
 */
#ifndef P11E_NETPROC_H
#define P11E_NETPROC_H

/* argv[1] of the network process. */
#define NETPROC_ARG "--network-process"

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
 * The network process's main(), with the request socket on fd 3: confines
 * itself, then serves requests until EOF. Returns the exit code.
 */
int netproc_main(void);

#endif
