/*
 * box.h: a function run in a child process with a deadline, its output
 * collected through a pipe. For code that loads foreign libraries which may
 * hang or crash (PKCS#11 modules, p11-kit, tpm2-tss): `p11enroll tokens`, the
 * p11-kit registry, the TPM probe.
 */
#ifndef P11E_BOX_H
#define P11E_BOX_H

#include <stddef.h>

/* How a child process of box_run ended. */
enum box_end {
	BOX_EXITED,   /* code: its exit status */
	BOX_TIMEOUT,  /* killed after timeout_s */
	BOX_SIGNALED, /* code: the signal */
};

struct box {
	char *out;  /* what the child wrote, NUL-terminated; NULL if nothing */
	size_t len; /* bytes in out, without the NUL */
	int end;    /* enum box_end */
	int code;
};

/*
 * Runs fn(fd, arg) in a child process, then _exit(0) there, and collects
 * what it writes to fd until it exits or timeout_s pass (then it is killed
 * with SIGKILL and reaped): one that hangs or crashes does not take the
 * caller with it. With quiet set and a log level below debug, the child's
 * stderr goes to /dev/null (modules and tpm2-tss print there). *out is set
 * on success (free out->out with box_clear). Errors (logged):
 * P11E_ERR_INTERNAL (pipe, fork), P11E_ERR_ALLOC.
 */
int box_run(unsigned timeout_s, int quiet, void (*fn)(int fd, void *arg), void *arg,
            struct box *out);
void box_clear(struct box *b);

#endif
