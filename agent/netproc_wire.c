/*
 * netproc_wire.c: the messages between p11enroll and its network process
 * (netproc_wire.h).
 */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "http.h"
#include "netproc_wire.h"
#include "secret.h"

void
netproc_answer_write(struct wire_wbuf *w, const struct netproc_answer *a,
                     const struct http_resp *resp)
{
	wire_w_num(w, a->rc);
	wire_w_num(w, (int64_t)a->started);
	wire_w_num(w, a->retry_after);
	wire_w_str(w, a->err);
	if (a->rc != 0)
		return;
	wire_w_num(w, resp->status);
	wire_w_str(w, resp->content_type);
	wire_w_str(w, resp->location);
	wire_w_num(w, resp->location_same_https);
	wire_w_bytes(w, resp->body != NULL ? resp->body : (const unsigned char *)"", resp->len);
}

int
netproc_answer_read(const unsigned char *msg, size_t len, const struct http_opts *o,
                    struct netproc_answer *a, struct http_resp **out)
{
	struct wire_rbuf r = {msg, len, 0, 0};
	struct netproc_answer got = {0, 0, 0, NULL};
	struct http_resp *resp = NULL;
	const unsigned char *b;
	int64_t v;
	size_t n;
	int ret = -1;

	*out = NULL;
	v = wire_r_num(&r);
	if (v > 0 || v < P11E_ERR_HOOK) /* an error code of ours, or 0 */
		goto out;
	got.rc = (int)v;
	v = wire_r_num(&r);
	got.started = v > 0 && v <= 16 ? (unsigned long)v : 0; /* one request, some tries */
	v = wire_r_num(&r);
	got.retry_after = v > 0 && v <= 86400 ? (long)v : 0;
	if (wire_r_str(&r, &got.err) != 0) {
		ret = P11E_ERR_ALLOC;
		goto out;
	}
	if (got.rc == 0) {
		if ((resp = calloc(1, sizeof(*resp))) == NULL) {
			ret = P11E_ERR_ALLOC;
			goto out;
		}
		v = wire_r_num(&r);
		resp->status = v >= 100 && v <= 999 ? (long)v : 0;
		if (wire_r_str(&r, &resp->content_type) != 0 ||
		    wire_r_str(&r, &resp->location) != 0) {
			ret = P11E_ERR_ALLOC;
			goto out;
		}
		v = wire_r_num(&r);
		if (v != 0 && (v != 1 || resp->location == NULL))
			goto out;
		resp->location_same_https = (int)v;
		b = wire_r_bytes(&r, &n);
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
