/*
 * fuzz_netproc.c: the answers of the network process, which p11enroll does
 * not trust (netproc_answer_read). The first input byte picks the options
 * (secret body or not, a small or a large size limit); the rest is the
 * message. An answer that reads must hold what it claims: a code of ours, a
 * status of 100..999 and a body within the limit. Then the fields read are
 * written again with the writer and must read back the same.
 */
#include "err.h"
#include "fuzz_common.h"
#include "http.h"
#include "netproc_wire.h"
#include "secret.h"

FUZZ_INITIALIZE_QUIET

static void
check(const struct netproc_answer *a, const struct http_resp *resp, const struct http_opts *o)
{
	if (a->rc > 0 || a->rc < P11E_ERR_HOOK)
		abort();
	if ((a->rc == 0) != (resp != NULL))
		abort();
	if (resp != NULL && (resp->status < 100 || resp->status > 999 || resp->len > o->max_body ||
	                     resp->body == NULL || resp->body[resp->len] != '\0' ||
	                     (resp->location_same_https && resp->location == NULL)))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_opts o;
	struct netproc_answer a = {0, 0, 0, NULL}, a2 = {0, 0, 0, NULL};
	struct http_resp *resp = NULL, *resp2 = NULL;
	struct netproc_wbuf w = {NULL, 0, 0, 0};

	if (size < 1)
		return 0;
	memset(&o, 0, sizeof(o));
	o.secret_body = data[0] & 1;
	o.max_body = data[0] & 2 ? 1u << 20 : 64;
	if (netproc_answer_read(data + 1, size - 1, &o, &a, &resp) != 0) {
		if (resp != NULL || a.err != NULL)
			abort();
		return 0;
	}
	check(&a, resp, &o);
	netproc_answer_write(&w, &a, resp);
	if (w.oom)
		abort();
	if (netproc_answer_read(w.p, w.len, &o, &a2, &resp2) != 0)
		abort(); /* what it read writes and reads back */
	if (a2.rc != a.rc || a2.started != a.started || a2.retry_after != a.retry_after ||
	    (a.err == NULL) != (a2.err == NULL) || (a.err != NULL && strcmp(a.err, a2.err) != 0) ||
	    (resp != NULL && (resp2->status != resp->status || resp2->len != resp->len ||
	                      resp2->location_same_https != resp->location_same_https ||
	                      memcmp(resp2->body, resp->body, resp->len) != 0)))
		abort();
	netproc_w_free(&w);
	secret_wipe_free(a.err);
	secret_wipe_free(a2.err);
	http_resp_free(resp);
	http_resp_free(resp2);
	return 0;
}
