#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>

#include "log.h"

static int level = LOG_LVL_INFO;

static const char *const prefix[] = {"error: ", "warning: ", "", ""};

/* A profile's name in the daemon: "p11enroll[name]: " ("" = none). */
static char tag[64];

/* The last error line, for the record of an attempt (attempt.c). */
static char last_error[256];

char *
log_usage_text(char *buf, size_t size)
{
	struct rusage ru;

	if (size == 0)
		return buf;
	buf[0] = '\0';
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		snprintf(buf, size, "peak RSS %ld KiB, CPU %.1f ms, %ld page faults", ru.ru_maxrss,
		         (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
		             (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3,
		         ru.ru_minflt);
	return buf;
}

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

void
log_set_tag(const char *t)
{
	snprintf(tag, sizeof(tag), "%s", t != NULL ? t : "");
}

const char *
log_get_tag(void)
{
	return tag;
}

void
log_set_last_error(const char *s)
{
	snprintf(last_error, sizeof(last_error), "%s", s != NULL ? s : "");
}

const char *
log_last_error(void)
{
	return last_error;
}

void
log_clear_last_error(void)
{
	last_error[0] = '\0';
}

/* systemd's test: JOURNAL_STREAM names the device and inode of stderr. Asked
 * per line: a forked child's stderr may be a pipe while its parent's is the
 * journal. */
static int
stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return js != NULL && sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
	       fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
	       (unsigned long long)st.st_ino == ino;
}

/* log_set_sink's: the line being written goes there instead of stderr. */
static void (*sink)(void *ud, int level, const char *line);
static void *sink_ud;
static char sink_line[4096];
static int sink_level;

void
log_set_sink(void (*fn)(void *ud, int level, const char *line), void *ud)
{
	sink = fn;
	sink_ud = ud;
}

/* The rest of the current line: to the sink's line, or to stderr. */
static void out_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
out_printf(const char *fmt, ...)
{
	va_list ap;
	size_t n = strlen(sink_line);

	va_start(ap, fmt);
	if (sink != NULL)
		vsnprintf(sink_line + n, sizeof(sink_line) - n, fmt, ap);
	else
		vfprintf(stderr, fmt, ap);
	va_end(ap);
}

/* The end of the line. */
static void
end_line(void)
{
	if (sink == NULL) {
		fputc('\n', stderr);
		return;
	}
	sink(sink_ud, sink_level, sink_line);
	sink_line[0] = '\0';
}

static void
vlog(int l, const char *fmt, va_list ap)
{
	static const int syslog_pri[] = {3, 4, 6, 7}; /* err, warning, info, debug */
	int i = l < 0 ? 0 : l > 3 ? 3 : l;
	va_list copy;

	if (l <= LOG_LVL_ERROR) {
		va_copy(copy, ap);
		vsnprintf(last_error, sizeof(last_error), fmt, copy);
		va_end(copy);
	}
	if (sink != NULL) {
		sink_level = i;
		vsnprintf(sink_line, sizeof(sink_line), fmt, ap);
		return;
	}
	/* Under systemd, stderr is the journal's stream: "<N>" sets the priority
	 * (`journalctl -p err` then finds the errors). */
	if (stderr_is_journal())
		fprintf(stderr, "<%d>", syslog_pri[i]);
	fprintf(stderr, "p11enroll%s%s%s: %s", tag[0] ? "[" : "", tag, tag[0] ? "]" : "",
	        prefix[i]);
	vfprintf(stderr, fmt, ap);
}

/* Appends s to last_error (as far as it fits). */
static void
last_error_append(const char *s)
{
	size_t n = strlen(last_error);

	snprintf(last_error + n, sizeof(last_error) - n, "%s", s);
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
	end_line();
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
			out_printf("%s%s", first ? ": " : "\n  ", buf);
			if (first && l <= LOG_LVL_ERROR) {
				last_error_append(": ");
				last_error_append(buf);
			}
		}
		first = 0;
	}
	end_line();
}
