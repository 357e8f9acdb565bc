/*
 * netproc_wire.c: the messages between p11enroll and its network process
 * (netproc_wire.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "http.h"
#include "netproc_wire.h"
#include "secret.h"

#define NO_LEN UINT32_MAX
static void
wput(struct netproc_wbuf *w, const void *d, size_t n)
{
	unsigned char *np;
	size_t cap;

	if (w->oom)
		return;
	if (n > NETPROC_MSG_MAX || w->len + n > NETPROC_MSG_MAX) {
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
netproc_w_num(struct netproc_wbuf *w, int64_t v)
{
	wput(w, &v, sizeof(v));
}

void
netproc_w_bytes(struct netproc_wbuf *w, const void *d, size_t n)
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
netproc_w_str(struct netproc_wbuf *w, const char *s)
{
	netproc_w_bytes(w, s, s != NULL ? strlen(s) : 0);
}

void
netproc_w_free(struct netproc_wbuf *w)
{
	secret_wipe_free(w->p);
	memset(w, 0, sizeof(*w));
}

int64_t
netproc_r_num(struct netproc_rbuf *r)
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
netproc_r_bytes(struct netproc_rbuf *r, size_t *n)
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
netproc_r_str(struct netproc_rbuf *r, char **out)
{
	size_t n;
	const unsigned char *d = netproc_r_bytes(r, &n);

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
netproc_send(int fd, const struct netproc_wbuf *w)
{
	uint32_t l = (uint32_t)w->len;

	if (io_all(fd, &l, sizeof(l), 1) != 0 || io_all(fd, w->p, w->len, 1) != 0)
		return -1;
	return 0;
}

/* The next message into *buf (secret_wipe_malloc, *len bytes); 1 at EOF, -1 on error. */
int
netproc_recv(int fd, unsigned char **buf, size_t *len)
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
	if (l > NETPROC_MSG_MAX || (b = secret_wipe_malloc(l ? l : 1)) == NULL)
		return -1;
	if (io_all(fd, b, l, 0) != 0) {
		secret_wipe_free(b);
		return -1;
	}
	*buf = b;
	*len = l;
	return 0;
}

void
netproc_answer_write(struct netproc_wbuf *w, const struct netproc_answer *a,
                     const struct http_resp *resp)
{
	netproc_w_num(w, a->rc);
	netproc_w_num(w, (int64_t)a->started);
	netproc_w_num(w, a->retry_after);
	netproc_w_str(w, a->err);
	if (a->rc != 0)
		return;
	netproc_w_num(w, resp->status);
	netproc_w_str(w, resp->content_type);
	netproc_w_str(w, resp->location);
	netproc_w_num(w, resp->location_same_https);
	netproc_w_bytes(w, resp->body != NULL ? resp->body : (const unsigned char *)"", resp->len);
}

int
netproc_answer_read(const unsigned char *msg, size_t len, const struct http_opts *o,
                    struct netproc_answer *a, struct http_resp **out)
{
	struct netproc_rbuf r = {msg, len, 0, 0};
	struct netproc_answer got = {0, 0, 0, NULL};
	struct http_resp *resp = NULL;
	const unsigned char *b;
	int64_t v;
	size_t n;
	int ret = -1;

	*out = NULL;
	v = netproc_r_num(&r);
	if (v > 0 || v < P11E_ERR_HOOK) /* an error code of ours, or 0 */
		goto out;
	got.rc = (int)v;
	v = netproc_r_num(&r);
	got.started = v > 0 && v <= 16 ? (unsigned long)v : 0; /* one request, some tries */
	v = netproc_r_num(&r);
	got.retry_after = v > 0 && v <= 86400 ? (long)v : 0;
	if (netproc_r_str(&r, &got.err) != 0) {
		ret = P11E_ERR_ALLOC;
		goto out;
	}
	if (got.rc == 0) {
		if ((resp = calloc(1, sizeof(*resp))) == NULL) {
			ret = P11E_ERR_ALLOC;
			goto out;
		}
		v = netproc_r_num(&r);
		resp->status = v >= 100 && v <= 999 ? (long)v : 0;
		if (netproc_r_str(&r, &resp->content_type) != 0 ||
		    netproc_r_str(&r, &resp->location) != 0) {
			ret = P11E_ERR_ALLOC;
			goto out;
		}
		v = netproc_r_num(&r);
		if (v != 0 && (v != 1 || resp->location == NULL))
			goto out;
		resp->location_same_https = (int)v;
		b = netproc_r_bytes(&r, &n);
		if (r.bad || b == NULL || n > o->max_body || resp->status == 0)
			goto out;
		if (o->secret_body ? secret_alloc(n + 1, (void **)&resp->body) != 0
		                   : (resp->body = malloc(n + 1)) == NULL) {
			ret = P11E_ERR_ALLOC;
			goto out;
		}
		memcpy(resp->body, b, n);
		resp->body[n] = '\0';
		resp->len = n;
	}
	if (r.bad || r.off != r.len)
		goto out;
	*a = got;
	got.err = NULL;
	*out = resp;
	resp = NULL;
	ret = 0;
out:
	secret_wipe_free(got.err);
	http_resp_free(resp);
	return ret;
}
