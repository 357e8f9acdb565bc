/*
 * http.h: the transport. libcurl lives behind this interface only.
 */
#ifndef P11E_HTTP_H
#define P11E_HTTP_H

#include <stddef.h>

struct http_opts {
	long timeout_s;      /* total deadline of one exchange */
	size_t max_body;     /* larger bodies are an error */
	const char *ca_file; /* trust anchors for https, or NULL for the system's */
	int quiet;           /* log transfer failures at debug level only: the caller reports */
};

struct http_resp {
	long status;        /* HTTP status */
	char *content_type; /* lower-cased, parameters removed; or NULL */
	unsigned char *body;
	size_t len;
};

/* Once per process, before any request. */
int http_init(void);
void http_cleanup(void);

/*
 * GET/POST url. No redirects are followed. Returns 0 with *out set for any
 * HTTP status (the caller judges it). Errors: P11E_ERR_NETWORK (cannot
 * connect, timeout, too slow, TLS failure, body larger than max_body: logged
 * naming the URL and the reason), P11E_ERR_ALLOC.
 */
int http_get(const char *url, const struct http_opts *o, struct http_resp **out);
int http_post(const char *url, const char *content_type, const unsigned char *body, size_t len,
              const struct http_opts *o, struct http_resp **out);

void http_resp_free(struct http_resp *r);

#endif
