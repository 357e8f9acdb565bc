/*
 * http_parse.h: what http.c makes of the response headers it reads, as pure
 * functions of the header values libcurl hands over (private to agent/; the
 * fuzz target tests/fuzz/fuzz_http.c calls them directly).
 */
#ifndef P11E_HTTP_PARSE_H
#define P11E_HTTP_PARSE_H

/*
 * The media type of a Content-Type value raw: the text before the first ';',
 * blanks (space, tab) trimmed at both ends, lower-cased. *out is malloc'ed,
 * or NULL when raw is NULL or the type is empty. Errors (*out NULL):
 * P11E_ERR_ALLOC.
 */
int http_content_type_parse(const char *raw, char **out);

/*
 * The seconds to wait after a 429 or 503 answer, from ra, libcurl's reading
 * of its Retry-After header (seconds; 0 or less when absent, unreadable or a
 * date in the past): at least 1 (the answer alone asks for a pause), at most
 * a day (a typo at the server must not park the agent).
 */
long http_retry_after_secs(long long ra);

#endif
