/*
 * fuzz_http.c: what the transport reads from an answer's headers and body.
 * The input is split at its first three newlines into a Content-Type
 * value, a Retry-After value, a Location value, and the body:
 *   - Content-Type: http_content_type_parse (the media type, lower-cased);
 *   - Retry-After: read as libcurl reads it for CURLINFO_RETRY_AFTER (an
 *     HTTP-date, else a number of seconds), then http_retry_after_secs;
 *   - Location: http_same_host_https from two fixed URLs (may a redirect
 *     carry the credentials?) and http_url_for_log into buffers of several
 *     sizes (a value that may hold user:password@);
 *   - body: http_resp_reason (the first line of an error answer).
 */
#include <ctype.h>
#include <time.h>

#include <curl/curl.h>

#include "fuzz_common.h"
#include "http.h"
#include "http_parse.h"

FUZZ_INITIALIZE_QUIET

/* The next field of *s (up to '\n' or the end), NUL-terminated in place. */
static char *
field(char **s, char *end)
{
	char *f = *s, *nl = memchr(f, '\n', (size_t)(end - f));

	if (nl == NULL) {
		*s = end;
		return f;
	}
	*nl = '\0';
	*s = nl + 1;
	return f;
}

static void
content_type(const char *v)
{
	char *ct = NULL;
	size_t n, i;

	if (http_content_type_parse(v, &ct) != 0)
		return;
	if (ct == NULL)
		return;
	n = strlen(ct);
	if (n == 0 || strchr(ct, ';') != NULL || ct[0] == ' ' || ct[0] == '\t' ||
	    ct[n - 1] == ' ' || ct[n - 1] == '\t')
		abort();
	for (i = 0; i < n; i++)
		if (isupper((unsigned char)ct[i]))
			abort();
	free(ct);
}

static void
retry_after(const char *v)
{
	long long ra;
	time_t date = curl_getdate(v, NULL);
	long s;

	ra = date != -1 ? (long long)(date - time(NULL)) : strtoll(v, NULL, 10);
	s = http_retry_after_secs(ra);
	if (s < 1 || s > 86400)
		abort();
}

static void
location(const char *v)
{
	static const size_t sizes[] = {1, 4, 8, 16, 121, 4096};
	char buf[4096 + 1];
	size_t i;

	(void)http_same_host_https("http://ndes.example.com/certsrv/mscep_admin/", v);
	(void)http_same_host_https("https://ndes.example.com:8443/certsrv/", v);
	(void)http_same_host_https(v, v);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(buf, 'x', sizeof(buf));
		http_url_for_log(v, buf, sizes[i]);
		if (memchr(buf, '\0', sizes[i]) == NULL)
			abort();
	}
}

static void
reason(const char *body, size_t len)
{
	static const size_t sizes[] = {1, 2, 5, 64, 4 * HTTP_REASON_MAX + 1};
	struct http_resp r;
	char buf[4 * HTTP_REASON_MAX + 1];
	size_t i;

	memset(&r, 0, sizeof(r));
	r.status = 500;
	r.body = (unsigned char *)body;
	r.len = len;
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(buf, 'x', sizeof(buf));
		http_resp_reason(&r, buf, sizes[i]);
		if (memchr(buf, '\0', sizes[i]) == NULL || strchr(buf, '\n') != NULL)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_str(data, size), *p = s, *end = s + size;
	const char *ct = field(&p, end), *ra = field(&p, end), *loc = field(&p, end);

	content_type(ct);
	retry_after(ra);
	location(loc);
	/* the body keeps its NUL bytes: it is not a C string */
	reason(p, (size_t)(end - p));
	free(s);
	return 0;
}
