/*
 * netproc_wire.h: the messages between p11enroll and its network process
 * (netproc.c), private to agent/, in wire.h's framing: a request may hold the
 * NDES password, an answer the challenge page.
 */
#ifndef P11E_NETPROC_WIRE_H
#define P11E_NETPROC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* What the network process says of one request besides the response. */
struct netproc_answer {
	int rc;                /* the request's outcome: 0 or a P11E_ERR_* code */
	unsigned long started; /* requests it started for it (http_request_count) */
	long retry_after;      /* the server's Retry-After, seconds (http.h), 0 none */
	char *err;             /* its last error line, or NULL (secret_wipe_free) */
};

struct http_opts;
struct http_resp;

/*
 * Writes the answer message (a; resp when a->rc is 0) to w, as
 * netproc_answer_read reads it; a failure to grow w sets w->oom.
 */
void netproc_answer_write(struct wire_wbuf *w, const struct netproc_answer *a,
                          const struct http_resp *resp);

/*
 * An answer message of the network process, which is not trusted: on 0 *a
 * is set and, when a->rc is 0, *out is the response (http_resp_free; its
 * body in the secret arena when o->secret_body) of at most o->max_body
 * bytes, with an HTTP status of 100..999. -1 for a malformed answer (an
 * unknown code, a missing or extra field, a body too large: the caller
 * says so), P11E_ERR_ALLOC. Nothing is logged.
 */
int netproc_answer_read(const unsigned char *msg, size_t len, const struct http_opts *o,
                        struct netproc_answer *a, struct http_resp **out);

#endif
