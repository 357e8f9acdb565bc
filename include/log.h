/*
 * log.h: messages to stderr with levels. Results go to stdout, never here.
 * Never pass a secret (PIN, challenge, password) to these functions.
 */
#ifndef P11E_LOG_H
#define P11E_LOG_H

#include <stddef.h>

enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARN = 1,
	LOG_LVL_INFO = 2,
	LOG_LVL_DEBUG = 3,
};

/* Lines carry "p11enroll[t]: " instead of "p11enroll: " (the daemon's profile
 * name); NULL or "" for none. Copied, at most 63 bytes. */
void log_set_tag(const char *t);
/* The tag log_set_tag set ("" for none). */
const char *log_get_tag(void);

/* Messages above this level are dropped. Default LOG_LVL_INFO. */
void log_set_level(int level);
int log_get_level(void);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs the message followed by the queued OpenSSL errors (at debug level
 * the whole queue, else the first reason only); clears the queue. */
void log_openssl(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * The last line logged at error level in this process, as printed but
 * without the "p11enroll: error: " prefix (log_openssl's first OpenSSL
 * reason included), truncated to 255 bytes; "" when there has been none
 * since the start or log_clear_last_error(). Only what was already printed,
 * so never a secret. The string is static: copy it before logging again.
 */
const char *log_last_error(void);
/* Makes s the last error line, as if it had been logged here (netproc.c: the network
 * process's own last error). */
void log_set_last_error(const char *s);
void log_clear_last_error(void);

/*
 * With fn set, each line goes to fn (its level, the message without the
 * "p11enroll: error: " prefix, up to 4095 bytes) instead of stderr: the token
 * process hands its lines to the process that opened the token, which logs
 * them as its own (tokens/tokproc.h). NULL: stderr again.
 */
void log_set_sink(void (*fn)(void *ud, int level, const char *line), void *ud);

/*
 * What this process has used so far, for -v and make bench: "peak RSS N KiB, CPU
 * N.N ms, N page faults" (getrusage of itself: user + system time, minor faults; a
 * wait4 figure would add the children it waited for) into buf. buf is "" when
 * getrusage fails. Returns buf.
 */
char *log_usage_text(char *buf, size_t size);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
