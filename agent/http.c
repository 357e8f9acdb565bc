/*
 * http.c: what every process needs of the transport (http.h) without libcurl:
 * http_get/http_post handed to the transport set by http_set_remote, the
 * answers' bookkeeping and the URL for a log line. The requests themselves
 * are in http_curl.c, linked only into the network process.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "err.h"
#include "http.h"
#include "http_parse.h"
#include "log.h"
#include "secret.h"

/* Requests started by this process (http_request_count). */
static unsigned long requests;

/* Where http_get/http_post go (http_set_remote), or NULL: none set, a bug. */
static http_request_fn remote;

void
http_set_remote(http_request_fn fn)
{
	remote = fn;
}

void
http_request_count_add(unsigned long n)
{
	requests += n;
}

unsigned long
http_request_count(void)
{
	return requests;
}

void
http_resp_free(struct http_resp *r)
{
	if (r == NULL)
		return;
	free(r->content_type);
	if (r->body != NULL)
		OPENSSL_cleanse(r->body, r->len);
	secret_release(r->body); /* the arena's, or malloc'ed: wiped whole either way */
	free(r->location);
	free(r);
}

void
http_resp_reason(const struct http_resp *r, char *buf, size_t size)
{
	size_t i = 0, o = 0, n = 0;
	const unsigned char *b = r != NULL ? r->body : NULL;
	size_t len = b != NULL ? r->len : 0;

	if (size == 0)
		return;
	buf[0] = '\0';
	while (i < len && (b[i] == '\r' || b[i] == '\n' || b[i] == ' ' || b[i] == '\t'))
		i++;
	for (; i < len && b[i] != '\r' && b[i] != '\n' && n < HTTP_REASON_MAX; i++, n++) {
		char esc[8];
		int k = b[i] >= 0x20 && b[i] < 0x7f ? snprintf(esc, sizeof(esc), "%c", b[i])
		                                    : snprintf(esc, sizeof(esc), "\\x%02x", b[i]);
		if (o + (size_t)k >= size)
			break;
		memcpy(buf + o, esc, (size_t)k);
		o += (size_t)k;
	}
	while (o > 0 && (buf[o - 1] == ' ' || buf[o - 1] == '\t'))
		o--;
	buf[o] = '\0';
}

/* Writes s[0..n) into buf at *pos, stopping at size - 1; returns whether all fit. */
static int
put(char *buf, size_t size, size_t *pos, const char *s, size_t n)
{
	size_t room = size - 1 - *pos;

	if (n > room) {
		memcpy(buf + *pos, s, room);
		*pos += room;
		return 0;
	}
	memcpy(buf + *pos, s, n);
	*pos += n;
	return 1;
}

/* Whether s[0..n) is host[:port]: a name or address, or an [IPv6] literal. */
static int
authority_ok(const char *s, size_t n)
{
	size_t i = 0;

	if (n > 0 && s[0] == '[') {
		while (i < n && s[i] != ']')
			i++;
		if (i == n)
			return 0;
		i++;
	} else {
		while (i < n && (isalnum((unsigned char)s[i]) || strchr(".-_~%", s[i]) != NULL))
			i++;
		if (i == 0)
			return 0;
	}
	if (i < n && s[i] == ':')
		for (i++; i < n && isdigit((unsigned char)s[i]); i++)
			;
	return i == n;
}

void
http_url_for_log(const char *url, char *buf, size_t size)
{
	const char *rest, *host = url, *at;
	size_t pre = 0, scheme, pos = 0, n;

	if (size == 0)
		return;
	scheme = strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
	if (scheme > 0 && scheme < 16 && strncmp(url + scheme, "://", 3) == 0) {
		host = url + scheme + 3;
		pre = (size_t)(host - url);
	}
	rest = host;
	/* A URL: user information ends at the authority's first '@', and a
	 * valid host[:port] follows. Anything else (a password holding '@',
	 * '/', '#' or '?', a value without a scheme): up to the last '@'. */
	n = strcspn(host, "/?#");
	at = memchr(host, '@', n);
	if (at != NULL && authority_ok(at + 1, n - (size_t)(at + 1 - host)))
		rest = at + 1;
	else if (at == NULL && authority_ok(host, n))
		rest = host;
	else if ((at = strrchr(host, '@')) != NULL)
		rest = at + 1;
	if (!put(buf, size, &pos, url, pre) || !put(buf, size, &pos, rest, strlen(rest))) {
		if (size >= 4)
			memcpy(buf + size - 4, "...", 3);
	}
	buf[pos] = '\0';
}

#define CONNECT_TIMEOUT_MAX 10L

long
http_connect_timeout(long timeout_s)
{
	return timeout_s > 0 && timeout_s < CONNECT_TIMEOUT_MAX ? timeout_s : CONNECT_TIMEOUT_MAX;
}

/* Retry-After of the latest 429/503 answer, in seconds (0: none); see http.h. */
static long retry_after;

long
http_retry_after(void)
{
	return retry_after;
}

void
http_retry_after_reset(void)
{
	retry_after = 0;
}

void
http_retry_after_note(long secs)
{
	if (secs > 0)
		retry_after = secs;
}

static int
no_transport(const char *url)
{
	char logurl[121];

	http_url_for_log(url, logurl, sizeof(logurl));
	log_error("request to %s: no transport set (a bug)", logurl);
	return P11E_ERR_INTERNAL;
}

int
http_get(const char *url, const struct http_opts *o, struct http_resp **out)
{
	*out = NULL;
	if (remote == NULL)
		return no_transport(url);
	return remote("GET", url, NULL, NULL, 0, o, out);
}

int
http_post(const char *url, const char *content_type, const unsigned char *body, size_t len,
          const struct http_opts *o, struct http_resp **out)
{
	static const unsigned char empty[1];

	*out = NULL;
	if (remote == NULL)
		return no_transport(url);
	return remote("POST", url, content_type, body != NULL ? body : empty, len, o, out);
}
