/*
 * wire.c: length-prefixed messages of numbers and byte strings between this
 * program's own processes (wire.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "secret.h"
#include "wire.h"

#define NO_LEN UINT32_MAX
static void
wput(struct wire_wbuf *w, const void *d, size_t n)
{
	unsigned char *np;
	size_t cap;

	if (w->oom)
		return;
	if (n > WIRE_MSG_MAX || w->len + n > WIRE_MSG_MAX) {
		w->oom = 1;
		return;
	}
	if (w->len + n > w->cap) {
		cap = w->cap ? w->cap : 256;
		while (cap < w->len + n)
			cap *= 2;
		if ((np = secret_wipe_realloc(w->p, cap)) == NULL) {
			w->oom = 1;
			return;
		}
		w->p = np;
		w->cap = cap;
	}
	memcpy(w->p + w->len, d, n);
	w->len += n;
}

void
wire_w_num(struct wire_wbuf *w, int64_t v)
{
	wput(w, &v, sizeof(v));
}

void
wire_w_bytes(struct wire_wbuf *w, const void *d, size_t n)
{
	uint32_t l = d == NULL ? NO_LEN : (uint32_t)n;

	if (d != NULL && n >= NO_LEN) {
		w->oom = 1;
		return;
	}
	wput(w, &l, sizeof(l));
	if (d != NULL)
		wput(w, d, n);
}

void
wire_w_str(struct wire_wbuf *w, const char *s)
{
	wire_w_bytes(w, s, s != NULL ? strlen(s) : 0);
}

void
wire_w_append(struct wire_wbuf *w, const struct wire_wbuf *tail)
{
	if (tail->oom)
		w->oom = 1;
	else if (tail->len > 0)
		wput(w, tail->p, tail->len);
}

void
wire_w_free(struct wire_wbuf *w)
{
	secret_wipe_free(w->p);
	memset(w, 0, sizeof(*w));
}

int64_t
wire_r_num(struct wire_rbuf *r)
{
	int64_t v = 0;

	if (r->bad || r->len - r->off < sizeof(v)) {
		r->bad = 1;
		return 0;
	}
	memcpy(&v, r->p + r->off, sizeof(v));
	r->off += sizeof(v);
	return v;
}

/* The next byte string as a pointer into the message (NULL for NULL) and its length. */
const unsigned char *
wire_r_bytes(struct wire_rbuf *r, size_t *n)
{
	uint32_t l;
	const unsigned char *d;

	*n = 0;
	if (r->bad || r->len - r->off < sizeof(l)) {
		r->bad = 1;
		return NULL;
	}
	memcpy(&l, r->p + r->off, sizeof(l));
	r->off += sizeof(l);
	if (l == NO_LEN)
		return NULL;
	if (r->len - r->off < l) {
		r->bad = 1;
		return NULL;
	}
	d = r->p + r->off;
	r->off += l;
	*n = l;
	return d;
}

/* The next byte string as a new NUL-terminated string (*out NULL for NULL); -1 out of memory. */
int
wire_r_str(struct wire_rbuf *r, char **out)
{
	size_t n;
	const unsigned char *d = wire_r_bytes(r, &n);

	*out = NULL;
	if (d == NULL)
		return 0;
	if (memchr(d, '\0', n) != NULL) {
		r->bad = 1;
		return 0;
	}
	if ((*out = secret_wipe_malloc(n + 1)) == NULL)
		return -1;
	memcpy(*out, d, n);
	(*out)[n] = '\0';
	return 0;
}

static int
io_all(int fd, void *buf, size_t n, int writing)
{
	unsigned char *b = buf;
	ssize_t k;

	while (n > 0) {
		k = writing ? send(fd, b, n, MSG_NOSIGNAL) : read(fd, b, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

int
wire_send(int fd, const struct wire_wbuf *w)
{
	uint32_t l = (uint32_t)w->len;

	if (io_all(fd, &l, sizeof(l), 1) != 0 || io_all(fd, w->p, w->len, 1) != 0)
		return -1;
	return 0;
}

/* The next message into *buf (secret_wipe_malloc, *len bytes); 1 at EOF, -1 on error. */
int
wire_recv(int fd, unsigned char **buf, size_t *len)
{
	uint32_t l;
	ssize_t k;
	unsigned char *b;

	*buf = NULL;
	while ((k = read(fd, &l, sizeof(l))) < 0 && errno == EINTR)
		;
	if (k == 0)
		return 1;
	if (k != (ssize_t)sizeof(l) &&
	    (k < 0 || io_all(fd, (unsigned char *)&l + k, sizeof(l) - (size_t)k, 0) != 0))
		return -1;
	if (l > WIRE_MSG_MAX || (b = secret_wipe_malloc(l ? l : 1)) == NULL)
		return -1;
	if (io_all(fd, b, l, 0) != 0) {
		secret_wipe_free(b);
		return -1;
	}
	*buf = b;
	*len = l;
	return 0;
}

int
wire_send_fd(int sock, int code, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	struct iovec iov = {&code, sizeof(code)};
	struct msghdr m;
	ssize_t k;

	memset(&m, 0, sizeof(m));
	memset(&c, 0, sizeof(c));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	if (fd >= 0) {
		m.msg_control = c.buf;
		m.msg_controllen = sizeof(c.buf);
		c.h.cmsg_level = SOL_SOCKET;
		c.h.cmsg_type = SCM_RIGHTS;
		c.h.cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(&c.h), &fd, sizeof(int));
	}
	while ((k = sendmsg(sock, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	return k == (ssize_t)sizeof(code) ? 0 : -1;
}

int
wire_recv_fd(int sock, int *code, int *fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	struct iovec iov = {code, sizeof(*code)};
	struct msghdr m;
	struct cmsghdr *h;
	ssize_t k;
	int s = -1;

	*fd = -1;
	memset(&m, 0, sizeof(m));
	memset(&c, 0, sizeof(c));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = c.buf;
	m.msg_controllen = sizeof(c.buf);
	while ((k = recvmsg(sock, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	for (h = k > 0 ? CMSG_FIRSTHDR(&m) : NULL; h != NULL; h = CMSG_NXTHDR(&m, h))
		if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS &&
		    h->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&s, CMSG_DATA(h), sizeof(int));
	if (k == (ssize_t)sizeof(*code)) {
		*fd = s;
		return 0;
	}
	if (s >= 0)
		close(s);
	return k == 0 ? 1 : -1;
}
