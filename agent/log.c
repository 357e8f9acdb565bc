#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "log.h"

static int level = LOG_LVL_INFO;

static const char *const prefix[] = {"error: ", "warning: ", "", ""};

void
log_set_level(int l)
{
	level = l;
}

int
log_get_level(void)
{
	return level;
}

static void
vlog(int l, const char *fmt, va_list ap)
{
	fprintf(stderr, "p11enroll: %s", prefix[l < 0 ? 0 : l > 3 ? 3 : l]);
	vfprintf(stderr, fmt, ap);
}

void
log_msg(int l, const char *fmt, ...)
{
	va_list ap;

	if (l > level)
		return;
	va_start(ap, fmt);
	vlog(l, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void
log_openssl(int l, const char *fmt, ...)
{
	va_list ap;
	unsigned long e;
	char buf[256];
	int first = 1;

	if (l > level) {
		ERR_clear_error();
		return;
	}
	va_start(ap, fmt);
	vlog(l, fmt, ap);
	va_end(ap);
	while ((e = ERR_get_error()) != 0) {
		if (first || level >= LOG_LVL_DEBUG) {
			ERR_error_string_n(e, buf, sizeof(buf));
			fprintf(stderr, "%s%s", first ? ": " : "\n  ", buf);
		}
		first = 0;
	}
	fputc('\n', stderr);
}
