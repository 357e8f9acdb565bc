/*
 * http_curl.c: the requests themselves, with libcurl (http.h: http_init,
 * http_request_here, http_same_host_https). Only the network process links it
 * (netproc_serve.c): the program that holds the token never loads libcurl.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "err.h"
#include "http.h"
#include "http_parse.h"
#include "log.h"
#include "netproc_connect.h"
#include "secret.h"

#ifndef P11E_VERSION
#define P11E_VERSION "0"
#endif

#define LOW_SPEED_LIMIT 64L
#define URL_LOG_MAX 120
#define BURN_STACK (64 * 1024) /* stack zeroed after a request with credentials */

/* The last connection the network process's parent could not make (netproc_connect.h),
 * for the failure's message: "ADDR port PORT: reason". */
static char connect_failure[160];

struct body {
	unsigned char *p;
	size_t len, cap, max;
	int secret; /* p is in the arena */
	int too_big, oom;
};

int
http_init(void)
{
	CURLcode c;

	/* Every block libcurl frees is wiped: its copies of the user, the
	 * password, the Authorization header and received pages. */
	if ((c = curl_global_init_mem(CURL_GLOBAL_DEFAULT, secret_wipe_malloc, secret_wipe_free,
	                              secret_wipe_realloc, secret_wipe_strdup,
	                              secret_wipe_calloc)) != CURLE_OK) {
		log_error("cannot initialise libcurl: %s", curl_easy_strerror(c));
		return P11E_ERR_INTERNAL;
	}
	return 0;
}

void
http_cleanup(void)
{
	curl_global_cleanup();
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	struct body *b = ud;
	size_t n = size * nmemb, cap;
	unsigned char *np;

	if (n > b->max - b->len) {
		b->too_big = 1;
		return 0;
	}
	if (b->len + n > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap = cap > b->max / 2 ? b->max : cap * 2;
		/* not realloc: the old buffer is wiped, a body may hold a secret */
		if (b->secret ? secret_alloc(cap, (void **)&np) != 0 : (np = malloc(cap)) == NULL) {
			b->oom = 1;
			return 0;
		}
		if (b->len > 0)
			memcpy(np, b->p, b->len);
		if (b->p != NULL)
			OPENSSL_cleanse(b->p, b->cap);
		secret_release(b->p);
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	return n;
}

static int
content_type(CURL *h, char **out)
{
	char *ct = NULL;

	*out = NULL;
	if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) != CURLE_OK)
		return 0;
	return http_content_type_parse(ct, out);
}

static void
log_failure(int lvl, CURL *h, CURLcode c, const char *errbuf, const char *url, const struct body *b,
            long slow_s)
{
	double t = 0;

	if (b->too_big || c == CURLE_FILESIZE_EXCEEDED) {
		log_msg(lvl, "response from %s exceeds %zu bytes", url, b->max);
	} else if (b->oom) {
		log_msg(lvl, "cannot read response from %s: out of memory", url);
	} else if (c == CURLE_OPERATION_TIMEDOUT && strstr(errbuf, "too slow") != NULL) {
		log_msg(lvl, "cannot reach %s: transfer too slow (under %ld bytes/s for %ld s)",
		        url, LOW_SPEED_LIMIT, slow_s);
	} else if (c == CURLE_OPERATION_TIMEDOUT) {
		curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, &t);
		log_msg(lvl, "cannot reach %s: timed out after %ld s", url, (long)(t + 0.5));
	} else if (c == CURLE_COULDNT_CONNECT && connect_failure[0] != '\0') {
		log_msg(lvl, "cannot reach %s: %s", url, connect_failure);
	} else {
		log_msg(lvl, "cannot reach %s: %s", url,
		        errbuf[0] != '\0' ? errbuf : curl_easy_strerror(c));
	}
}

/* libcurl's socket, connected by o->connect: it never calls socket() or connect() itself. */
static curl_socket_t
open_cb(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
	const struct http_opts *o = ud;
	int fd, err = 0;
	size_t n;

	if (purpose != CURLSOCKTYPE_IPCXN || a->socktype != SOCK_STREAM)
		return CURL_SOCKET_BAD;
	if ((fd = o->connect(o->connect_ud, &a->addr, a->addrlen, &err)) >= 0)
		return fd;
	netconn_addr_str(&a->addr, a->addrlen, connect_failure, sizeof(connect_failure));
	n = strlen(connect_failure);
	snprintf(connect_failure + n, sizeof(connect_failure) - n, ": %s", strerror(err));
	return CURL_SOCKET_BAD;
}

static int
connected_cb(void *ud, curl_socket_t fd, curlsocktype purpose)
{
	(void)ud;
	(void)fd;
	(void)purpose;
	return CURL_SOCKOPT_ALREADY_CONNECTED;
}

/* Resolution and connections through o->connect; 0 or a CURLcode. */
static CURLcode
set_connect(CURL *h, const struct http_opts *o, struct curl_slist **names)
{
	struct curl_slist *nl;
	CURLcode c;
	size_t i;

	connect_failure[0] = '\0';
	if (o->connect == NULL)
		return CURLE_OK;
	for (i = 0; i < o->n_resolve; i++) {
		if ((nl = curl_slist_append(*names, o->resolve[i])) == NULL)
			return CURLE_OUT_OF_MEMORY;
		*names = nl;
	}
	c = curl_easy_setopt(h, CURLOPT_RESOLVE, *names);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_cb);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, (void *)(uintptr_t)o);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, connected_cb);
	return c;
}

/* Proxy and authentication options; 0 or a CURLcode. */
static CURLcode
set_proxy_auth(CURL *h, const struct http_opts *o)
{
	CURLcode c = CURLE_OK;
	unsigned long how = 0;

	if (o->no_proxy) {
		/* "" for CURLOPT_PROXY disables proxies, also the environment's */
		c = curl_easy_setopt(h, CURLOPT_PROXY, "");
		if (c == CURLE_OK)
			c = curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	} else if (o->proxy != NULL) {
		c = curl_easy_setopt(h, CURLOPT_PROXY, o->proxy);
	}
	if (c != CURLE_OK || o->auth == 0)
		return c;
	if (o->auth & HTTP_AUTH_NTLM)
		how |= CURLAUTH_NTLM;
	if (o->auth & HTTP_AUTH_BASIC)
		how |= CURLAUTH_BASIC;
	c = curl_easy_setopt(h, CURLOPT_HTTPAUTH, how);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_USERNAME, o->user);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_PASSWORD, o->password != NULL ? o->password : "");
	/* NTLM authenticates a connection: HTTP/1.1 keep-alive, no HTTP/2 */
	if (c == CURLE_OK && (o->auth & HTTP_AUTH_NTLM))
		c = curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	return c;
}

/* A copy of url without user:password@ (NULL if it does not parse). */
static int
strip_userinfo(const char *url, char **out)
{
	CURLU *u = NULL;
	char *s = NULL, *d = NULL;
	int r = P11E_ERR_ALLOC;

	*out = NULL;
	if ((u = curl_url()) == NULL)
		goto out;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_set(u, CURLUPART_USER, NULL, 0) != CURLUE_OK ||
	    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK) {
		r = 0;
		goto out;
	}
	if ((d = strdup(s)) == NULL)
		goto out;
	*out = d;
	r = 0;
out:
	curl_free(s);
	curl_url_cleanup(u);
	return r;
}

static void
note_retry_after(CURL *h, long status)
{
	curl_off_t ra = 0;

	if (status != 429 && status != 503)
		return;
	/* libcurl parses both forms (seconds, HTTP-date); a date in the past is 0. */
	if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &ra) != CURLE_OK || ra <= 0)
		ra = 0;
	http_retry_after_note(http_retry_after_secs((long long)ra));
	log_info("the server is busy (HTTP %ld)%s", status,
	         ra > 0 ? "; it asks to retry later (Retry-After)" : "");
}

int
http_request_here(const char *method, const char *url, const char *ctype, const unsigned char *body,
                  size_t len, const struct http_opts *o, struct http_resp **out)
{
	struct http_resp *resp = NULL;
	struct curl_slist *hdrs = NULL, *nh, *names = NULL;
	struct body b = {NULL, 0, 0, o->max_body, o->secret_body, 0, 0};
	char errbuf[CURL_ERROR_SIZE], logurl[URL_LOG_MAX + 1], logloc[URL_LOG_MAX + 1];
	char *hdr = NULL, *loc = NULL;
	long timeout = o->timeout_s > 0 ? o->timeout_s : 0;
	long short_t = http_connect_timeout(timeout);
	CURL *h = NULL;
	CURLcode c;
	int r = P11E_ERR_INTERNAL;

	errbuf[0] = '\0';
	http_url_for_log(url, logurl, sizeof(logurl));
	log_debug("%s %s", method, logurl);
	if ((o->auth != 0) != (o->user != NULL) ||
	    (o->auth & ~(HTTP_AUTH_NTLM | HTTP_AUTH_BASIC))) {
		log_error(
		    "request to %s: user and authentication method must come together (a bug)",
		    logurl);
		goto out;
	}
	if (o->max_body == 0) {
		log_error("request to %s: no size limit for the answer (a bug)", logurl);
		goto out;
	}
	if ((h = curl_easy_init()) == NULL) {
		log_error("cannot create a libcurl handle for %s", logurl);
		goto out;
	}
	c = curl_easy_setopt(h, CURLOPT_URL, url);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, short_t);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, LOW_SPEED_LIMIT);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, short_t);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_USERAGENT, "p11enroll/" P11E_VERSION);
	if (c == CURLE_OK && o->max_body <= SIZE_MAX / 2)
		c = curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_body);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	if (c == CURLE_OK)
		c = curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	if (c == CURLE_OK && o->ca_pem != NULL) {
		struct curl_blob blob = {(void *)(uintptr_t)o->ca_pem, o->ca_pem_len,
		                         CURL_BLOB_COPY};

		c = curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
	} else if (c == CURLE_OK && o->ca_file != NULL) {
		c = curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file);
	}
	if (c == CURLE_OK && (o->ca_file != NULL || o->ca_pem != NULL))
		c = curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
	if (c == CURLE_OK)
		c = set_proxy_auth(h, o);
	if (c == CURLE_OK)
		c = set_connect(h, o, &names);
	if (c == CURLE_OK && body != NULL) {
		c = curl_easy_setopt(h, CURLOPT_POSTFIELDS, len > 0 ? (const char *)body : "");
		if (c == CURLE_OK)
			c = curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	if (c != CURLE_OK) {
		log_error("cannot set up request to %s: %s", logurl, curl_easy_strerror(c));
		goto out;
	}
	if (ctype != NULL) {
		if ((hdr = malloc(strlen(ctype) + sizeof("Content-Type: "))) == NULL) {
			r = P11E_ERR_ALLOC;
			goto out;
		}
		strcpy(hdr, "Content-Type: ");
		strcat(hdr, ctype);
		if ((nh = curl_slist_append(hdrs, hdr)) == NULL) {
			r = P11E_ERR_ALLOC;
			goto out;
		}
		hdrs = nh;
	}
	if (body != NULL) {
		if ((nh = curl_slist_append(hdrs, "Expect:")) == NULL) {
			r = P11E_ERR_ALLOC;
			goto out;
		}
		hdrs = nh;
	}
	if (hdrs != NULL && (c = curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs)) != CURLE_OK) {
		log_error("cannot set up request to %s: %s", logurl, curl_easy_strerror(c));
		goto out;
	}

	http_request_count_add(1);
	if ((c = curl_easy_perform(h)) != CURLE_OK) {
		log_failure(o->quiet ? LOG_LVL_DEBUG : LOG_LVL_ERROR, h, c, errbuf, logurl, &b,
		            short_t);
		r = b.oom ? P11E_ERR_ALLOC : P11E_ERR_NETWORK;
		goto out;
	}
	if ((resp = calloc(1, sizeof(*resp))) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status) != CURLE_OK)
		resp->status = 0;
	note_retry_after(h, resp->status);
	if ((r = content_type(h, &resp->content_type)) != 0)
		goto out;
	if (resp->status >= 300 && resp->status <= 399 &&
	    curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc != NULL &&
	    (r = strip_userinfo(loc, &resp->location)) != 0)
		goto out;
	if (resp->location != NULL)
		resp->location_same_https = http_same_host_https(url, resp->location);
	resp->body = b.p;
	resp->len = b.len;
	b.p = NULL;
	if (resp->location != NULL)
		http_url_for_log(resp->location, logloc, sizeof(logloc));
	log_debug("%s %s: HTTP %ld, %zu bytes%s%s%s%s", method, logurl, resp->status, resp->len,
	          resp->content_type != NULL ? ", " : "",
	          resp->content_type != NULL ? resp->content_type : "",
	          resp->location != NULL ? ", location " : "",
	          resp->location != NULL ? logloc : "");
	*out = resp;
	resp = NULL;
	r = 0;
out:
	curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	curl_slist_free_all(names);
	free(hdr);
	if (b.p != NULL)
		OPENSSL_cleanse(b.p, b.cap);
	secret_release(b.p);
	http_resp_free(resp);
	/* NTLM hashes the password in stack buffers of libcurl's. */
	if (o->password != NULL)
		secret_burn_stack(BURN_STACK);
	return r;
}

/* Scheme, lower-cased host and port (the scheme's default when absent) of url. */
static int
url_parts(const char *url, char **scheme, char **host, char **port, int *has_userinfo)
{
	CURLU *u = NULL;
	char *user = NULL, *pass = NULL;
	int r = -1;

	*scheme = *host = *port = NULL;
	if ((u = curl_url()) == NULL)
		goto out;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto out;
	curl_url_get(u, CURLUPART_USER, &user, 0);
	curl_url_get(u, CURLUPART_PASSWORD, &pass, 0);
	*has_userinfo = user != NULL || pass != NULL;
	r = 0;
out:
	curl_free(user);
	curl_free(pass);
	curl_url_cleanup(u);
	return r;
}

int
http_same_host_https(const char *from, const char *to)
{
	char *fs = NULL, *fh = NULL, *fp = NULL, *ts = NULL, *th = NULL, *tp = NULL;
	int fu = 0, tu = 0, ok = 0;

	if (from == NULL || to == NULL)
		return 0;
	if (url_parts(from, &fs, &fh, &fp, &fu) != 0 || url_parts(to, &ts, &th, &tp, &tu) != 0)
		goto out;
	if (strcasecmp(ts, "https") != 0 || tu || strcasecmp(fh, th) != 0)
		goto out;
	ok = strcmp(fp, tp) == 0 ||
	     (strcasecmp(fs, "http") == 0 && strcmp(fp, "80") == 0 && strcmp(tp, "443") == 0);
out:
	curl_free(fs);
	curl_free(fh);
	curl_free(fp);
	curl_free(ts);
	curl_free(th);
	curl_free(tp);
	return ok;
}
