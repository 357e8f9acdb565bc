/*
 * netproc_wire.h: the messages between p11enroll and its network process
 * (netproc.c), private to agent/. A message is a 4-byte length (host order:
 * both ends are this program) and that many bytes of fields, each an 8-byte
 * number or a length-prefixed byte string (length ~0: NULL); at most
 * NETPROC_MSG_MAX bytes. Buffers are wiped when freed: a request may hold the
 * NDES password, an answer the challenge page.
 */
#ifndef P11E_NETPROC_WIRE_H
#define P11E_NETPROC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define NETPROC_MSG_MAX (32u << 20) /* larger than any max_body the callers set */

/* A message being built; its buffer is wiped when freed (it may hold the password). */
struct netproc_wbuf {
	unsigned char *p;
	size_t len, cap;
	int oom;
};

/* Appends a number, a byte string (d NULL: NULL), a string (NULL: NULL); on overflow
 * or out of memory w->oom is set and later appends do nothing. */
void netproc_w_num(struct netproc_wbuf *w, int64_t v);
void netproc_w_bytes(struct netproc_wbuf *w, const void *d, size_t n);
void netproc_w_str(struct netproc_wbuf *w, const char *s);

/* Wipes and frees the buffer; the struct is zeroed for reuse. */
void netproc_w_free(struct netproc_wbuf *w);

/* A message being read: fields point into it (bytes are NUL-terminated copies). */
struct netproc_rbuf {
	const unsigned char *p;
	size_t len, off;
	int bad;
};

/* The next number; 0 and r->bad set when the message ends first. */
int64_t netproc_r_num(struct netproc_rbuf *r);

/* The next byte string as a pointer into the message (NULL for NULL, or on a
 * malformed message: r->bad) and its length in *n. */
const unsigned char *netproc_r_bytes(struct netproc_rbuf *r, size_t *n);

/* The next byte string as a new NUL-terminated string (*out NULL for NULL;
 * free with secret_wipe_free); an embedded NUL sets r->bad. -1 out of memory. */
int netproc_r_str(struct netproc_rbuf *r, char **out);

/* Sends the message in w on fd (MSG_NOSIGNAL); -1 when the peer is gone. */
int netproc_send(int fd, const struct netproc_wbuf *w);

/* The next message from fd into *buf (secret_wipe_free; *len bytes): 0, 1 at a
 * clean EOF, -1 on error, a truncated or oversized message. */
int netproc_recv(int fd, unsigned char **buf, size_t *len);

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
void netproc_answer_write(struct netproc_wbuf *w, const struct netproc_answer *a,
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
