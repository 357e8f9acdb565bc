/*
 * http.h: the transport. libcurl lives behind this interface only, and only
 * in the network process (http_curl.c, netproc_serve.c): the functions marked
 * "libcurl" below are not in the main program.
 */
#ifndef P11E_HTTP_H
#define P11E_HTTP_H

#include <stddef.h>

/* struct http_opts.auth bits */
#define HTTP_AUTH_NTLM 0x1u  /* NTLM (what IIS offers as "NTLM" and inside "Negotiate") */
#define HTTP_AUTH_BASIC 0x2u /* Basic: sends the password in clear, use over https only */

/*
 * Zero-initialise, then set what you need: every field but max_body that is
 * 0/NULL is off and leaves libcurl's default behaviour. max_body is required:
 * every answer has a size cap, and 0 is refused as a bug.
 */
struct http_opts {
	long timeout_s;              /* total deadline of one exchange */
	size_t max_body;             /* required, at least 1: larger bodies are an error */
	int secret_body;             /* the body holds a secret: it is kept in the secret arena (a
	                                caller that takes resp->body releases it with
	                                secret_release) */
	const char *ca_file;         /* trust anchors for https, or NULL for the system's */
	const unsigned char *ca_pem; /* instead of ca_file: its PEM bytes (the network
	                                process gets them so, netproc.c) */
	size_t ca_pem_len;
	int quiet;            /* log transfer failures at debug level only: the caller reports */
	int no_proxy;         /* use no proxy at all, not even the environment's http(s)_proxy */
	const char *proxy;    /* proxy URL; NULL: the environment's (http_proxy, https_proxy) */
	const char *user;     /* with auth: the user name */
	const char *password; /* with auth: secret, never logged, never put in a URL */
	unsigned auth;        /* HTTP_AUTH_* bits; 0 = send no credentials. Both bits: the
	                         server's 401 picks, NTLM preferred over Basic. Never
	                         Negotiate/Kerberos. */
	/* The network process's (netproc_connect.h): libcurl neither resolves nor connects.
	 * resolve: n_resolve CURLOPT_RESOLVE entries, "host:port:addr[,addr...]". connect:
	 * for each address libcurl would connect to, a connected socket, or -1 with *err
	 * set (an errno). NULL: libcurl's own resolver and connect. */
	char *const *resolve;
	size_t n_resolve;
	int (*connect)(void *ud, const void *addr, size_t len, int *err);
	void *connect_ud;
};

struct http_resp {
	long status;        /* HTTP status */
	char *content_type; /* lower-cased, parameters removed; or NULL */
	unsigned char *body;
	size_t len;
	char *location; /* 3xx only: the absolute redirect target without user:password@, or
	                   NULL. Never followed by this module. */
	int location_same_https; /* with location: http_same_host_https(url, location),
	                            judged by the parser that would follow it (libcurl's) */
};

/*
 * libcurl. Once per process, before any request. libcurl gets an allocator that wipes
 * every block it frees (secret_wipe_*): its copies of the user, the password,
 * the Authorization header and the pages it received do not outlive the
 * request.
 */
int http_init(void);
void http_cleanup(void);

/*
 * How many requests this process has started so far (whether they were
 * answered or not): tells a caller whether a run contacted a server.
 */
unsigned long http_request_count(void);

/*
 * GET/POST url. No redirects are followed. Returns 0 with *out set for any
 * HTTP status (the caller judges it; a refused authentication is a 401).
 * NTLM runs its whole handshake within this one call on one keep-alive
 * connection. Errors: P11E_ERR_NETWORK (cannot connect, timeout, too slow,
 * TLS failure, body larger than max_body: logged naming the URL and the
 * reason), P11E_ERR_ALLOC, P11E_ERR_INTERNAL (auth bits without a user, a
 * user without auth bits, max_body 0: logged as a bug, no request made).
 * After a request with credentials the stack libcurl used is zeroed.
 */
int http_get(const char *url, const struct http_opts *o, struct http_resp **out);
int http_post(const char *url, const char *content_type, const unsigned char *body, size_t len,
              const struct http_opts *o, struct http_resp **out);

/*
 * What http_get and http_post run: netproc.c's, which sends them to the
 * network process (set by netproc_enable), or http_request_here (in the
 * network process, and in unit tests). None set: they fail with
 * P11E_ERR_INTERNAL. fn gets "GET" or "POST"; for a GET, ctype and body are
 * NULL.
 */
typedef int (*http_request_fn)(const char *method, const char *url, const char *ctype,
                               const unsigned char *body, size_t len, const struct http_opts *o,
                               struct http_resp **out);
void http_set_remote(http_request_fn fn);

/*
 * libcurl. One request with this process's libcurl, whatever http_set_remote
 * says (the network process serves its requests with it); as
 * http_get/http_post.
 */
int http_request_here(const char *method, const char *url, const char *ctype,
                      const unsigned char *body, size_t len, const struct http_opts *o,
                      struct http_resp **out);

/*
 * The server's wish to be left alone: the seconds of the Retry-After header of
 * the latest HTTP 429 or 503 answer since http_retry_after_reset() (at most a
 * day), 1 for such an answer without the header, 0 when there was none. The
 * daemon waits at least this long before its next attempt.
 */
long http_retry_after(void);
void http_retry_after_reset(void);
/* Records secs (> 0) as the latest wish (the network process's, netproc.c). */
void http_retry_after_note(long secs);
/*
 * The seconds a connection may take to be made, and a transfer may stay
 * under its speed floor, for a request whose whole deadline is timeout_s (0:
 * none): that deadline, at most 10 s. libcurl's connect (http_curl.c) and
 * the connections p11enroll makes for the network process
 * (netproc_connect.c) use it.
 */
long http_connect_timeout(long timeout_s);

/* Counts n requests started elsewhere for this process (netproc.c). */
void http_request_count_add(unsigned long n);

/* The longest reason http_resp_reason copies, in characters of the body. */
#define HTTP_REASON_MAX 200

/*
 * The server's reason in an error answer, for a log line: the first line of
 * the body that is not blank, at most HTTP_REASON_MAX bytes of it, control
 * and non-ASCII bytes written as \xNN; "" when there is none. buf gets at
 * most size - 1 characters (4 * HTTP_REASON_MAX + 1 holds any reason whole).
 * Only for bodies that cannot hold a secret (SCEP error answers).
 */
void http_resp_reason(const struct http_resp *r, char *buf, size_t size);

/* Wipes the body and frees the response. Accepts NULL. */
void http_resp_free(struct http_resp *r);

/*
 * libcurl. Whether a redirect from url `from` to url `to` may carry the same
 * credentials: 1 if `to` is https, has no user:password@, and names the same
 * host (compared case-insensitively) and the same port as `from`; the one
 * exception to the port is the upgrade from http on port 80 to https on 443.
 * 0 otherwise, also when either URL cannot be parsed (or out of memory).
 */
int http_same_host_https(const char *from, const char *to);

/*
 * Writes url into buf (size bytes, at least 8) for a log line or a message:
 * without user:password@, shortened with "..." when longer than size - 1.
 * Also for values that are no valid URL (a rejected setting): everything up
 * to the last '@' is then taken for user information, whatever characters
 * (':', '/', '#', '?') the password holds, and a value without "scheme://"
 * ("user:pw@proxy:3128") is treated the same way.
 */
void http_url_for_log(const char *url, char *buf, size_t size);

#endif
