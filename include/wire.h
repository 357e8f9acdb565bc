/*
 * wire.h: the messages between this program's own processes (the network
 * process, netproc_wire.h; the token process, tokens/tokproc.h). A message is
 * a 4-byte length (host order: both ends are this program) and that many
 * bytes of fields, each an 8-byte number or a length-prefixed byte string
 * (length ~0: NULL); at most WIRE_MSG_MAX bytes. Buffers are wiped when
 * freed: a message may hold a password, a PIN or a challenge page.
 */
#ifndef P11E_WIRE_H
#define P11E_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_MSG_MAX (32u << 20) /* larger than any max_body the callers set */

/* A message being built; its buffer is wiped when freed (it may hold the password). */
struct wire_wbuf {
	unsigned char *p;
	size_t len, cap;
	int oom;
};

/* Appends a number, a byte string (d NULL: NULL), a string (NULL: NULL); on overflow
 * or out of memory w->oom is set and later appends do nothing. */
void wire_w_num(struct wire_wbuf *w, int64_t v);
void wire_w_bytes(struct wire_wbuf *w, const void *d, size_t n);
void wire_w_str(struct wire_wbuf *w, const char *s);

/* Appends the fields of tail (its oom too). */
void wire_w_append(struct wire_wbuf *w, const struct wire_wbuf *tail);

/* Wipes and frees the buffer; the struct is zeroed for reuse. */
void wire_w_free(struct wire_wbuf *w);

/* A message being read: fields point into it (bytes are NUL-terminated copies). */
struct wire_rbuf {
	const unsigned char *p;
	size_t len, off;
	int bad;
};

/* The next number; 0 and r->bad set when the message ends first. */
int64_t wire_r_num(struct wire_rbuf *r);

/* The next byte string as a pointer into the message (NULL for NULL, or on a
 * malformed message: r->bad) and its length in *n. */
const unsigned char *wire_r_bytes(struct wire_rbuf *r, size_t *n);

/* The next byte string as a new NUL-terminated string (*out NULL for NULL;
 * free with secret_wipe_free); an embedded NUL sets r->bad. -1 out of memory. */
int wire_r_str(struct wire_rbuf *r, char **out);

/* Sends the message in w on fd (MSG_NOSIGNAL); -1 when the peer is gone. */
int wire_send(int fd, const struct wire_wbuf *w);

/* The next message from fd into *buf (secret_wipe_free; *len bytes): 0, 1 at a
 * clean EOF, -1 on error, a truncated or oversized message. */
int wire_recv(int fd, unsigned char **buf, size_t *len);

/*
 * A descriptor passed between this program's processes over a UNIX socket
 * (SCM_RIGHTS, MSG_NOSIGNAL) with an int beside it (code: an errno, a
 * count). wire_send_fd: fd -1 sends code alone; 0 or -1. wire_recv_fd: 0
 * with *code and *fd (close-on-exec; -1 when none came), 1 at a clean EOF,
 * -1 otherwise (a descriptor that came with a short message is closed).
 */
int wire_send_fd(int sock, int code, int fd);
int wire_recv_fd(int sock, int *code, int *fd);

#endif
