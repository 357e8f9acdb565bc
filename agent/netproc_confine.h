/*
 * netproc_confine.h: what the network process gives up before its first
 * request (netproc_confine.c), private to agent/.
 */
#ifndef P11E_NETPROC_CONFINE_H
#define P11E_NETPROC_CONFINE_H

/*
 * The NSS modules of the hosts database loaded now (no library can be
 * loaded later); as root, the user nobody for good; SIGKILL when the
 * process that started it ends (PR_SET_PDEATHSIG); no_new_privs; the
 * kernel's Landlock where it has it: files read only among the resolver's
 * and TLS's configuration, the CA store and time zones (EACCES otherwise),
 * whatever its user may read; the seccomp filter: only the system calls
 * HTTP(S) over libcurl and OpenSSL needs, anything else kills the process
 * (SIGSYS); files open read-only (EACCES otherwise); no executable mapping;
 * no socket of its own (socket() EACCES, bind() kills, connect() answered 0
 * without reaching the kernel: its sockets come connected from p11enroll,
 * netproc_connect.h); threads, never processes. Call it
 * after everything that loads a library or reads configuration. Errors:
 * P11E_ERR_INTERNAL, logged.
 *
 * Built with P11E_TEST_HOOKS (the tests' own program, never installed), it
 * then tries what P11E_TEST_NETPROC_TRY says ("open:PATH", "write:PATH",
 * "dlopen:PATH", "exec:PATH", "mmap-exec", "connect:IPV4:PORT" with a socket
 * of its own, "ask:IPV4:PORT" of p11enroll): refused, it logs how and exits
 * 70; a success is logged as "SUCCEEDED" and the process goes on (the test
 * fails on it).
 */
int netproc_confine(void);

/* The Landlock ABI netproc_confine applied (its rules as of that version), 0 for none. */
int netproc_landlock_abi(void);

#endif
