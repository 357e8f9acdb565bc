/*
 * http_parse.c: the response headers http.c reads, as pure functions of
 * their values (http_parse.h). No libcurl here: it hands the values over.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "http_parse.h"

#define RETRY_AFTER_MAX 86400L

int
http_content_type_parse(const char *raw, char **out)
{
	const char *ct = raw;
	char *p;
	size_t n;

	*out = NULL;
	if (ct == NULL)
		return 0;
	n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	while (n > 0 && (*ct == ' ' || *ct == '\t')) {
		ct++;
		n--;
	}
	if (n == 0)
		return 0;
	if ((p = strndup(ct, n)) == NULL)
		return P11E_ERR_ALLOC;
	for (n = 0; p[n] != '\0'; n++)
		p[n] = (char)tolower((unsigned char)p[n]);
	*out = p;
	return 0;
}

long
http_retry_after_secs(long long ra)
{
	if (ra <= 0)
		return 1;
	return ra > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (long)ra;
}
