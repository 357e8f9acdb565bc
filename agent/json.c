/*
 * json.c: JSON members and strings on a stdio stream (json.h).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "json.h"

size_t
json_utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned long cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void
json_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, len;

	if (s == NULL) {
		fputs("null", f);
		return;
	}
	n = strlen(s);
	fputc('"', f);
	while (n > 0) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (*p < 0x20) {
				fprintf(f, "\\u%04x", *p);
			} else if ((len = json_utf8_len(p, n)) == 0) {
				fputs("\\ufffd", f); /* not UTF-8: a token field in Latin-1? */
			} else {
				fwrite(p, 1, len, f);
				p += len - 1;
				n -= len - 1;
			}
			break;
		}
		p++;
		n--;
	}
	fputc('"', f);
}

void
json_key(FILE *f, int *first, const char *key)
{
	fputs(*first ? "" : ",", f);
	*first = 0;
	json_str(f, key);
	fputc(':', f);
}

void
json_kstr(FILE *f, int *first, const char *key, const char *val)
{
	json_key(f, first, key);
	json_str(f, val);
}

void
json_kbool(FILE *f, int *first, const char *key, int val)
{
	json_key(f, first, key);
	fputs(val ? "true" : "false", f);
}

void
json_kulong(FILE *f, int *first, const char *key, unsigned long val)
{
	json_key(f, first, key);
	fprintf(f, "%lu", val);
}

void
json_klong(FILE *f, int *first, const char *key, long val)
{
	json_key(f, first, key);
	fprintf(f, "%ld", val);
}

void
json_time(time_t t, char *buf, size_t len)
{
	struct tm tmv;

	if (gmtime_r(&t, &tmv) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tmv) == 0)
		snprintf(buf, len, "%s", "1970-01-01T00:00:00Z");
}

void
json_ktime(FILE *f, int *first, const char *key, time_t t)
{
	char buf[32];

	if (t == 0) {
		json_kstr(f, first, key, NULL);
		return;
	}
	json_time(t, buf, sizeof(buf));
	json_kstr(f, first, key, buf);
}
