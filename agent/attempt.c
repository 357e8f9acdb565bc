/*
 * attempt.c: the record of the last enroll/renew attempt of a profile, one
 * small text file in state_dir: "last-<label>.txt" with key=value lines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attempt.h"
#include "err.h"
#include "log.h"
#include "statefile.h"
#include "store.h"

#define MAX_FILE 4096
#define MAX_FAILURES 1000000u

/* A command name: 1 to 15 characters a-z and '-' ("ca-check"). */
static int
command_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if ((s[i] < 'a' || s[i] > 'z') && s[i] != '-')
			return 0;
	return i > 0 && i < sizeof(((struct attempt *)NULL)->command);
}

static int
parse_line(void *ud, const char *k, const char *v)
{
	struct attempt *a = ud;
	char *end = NULL;
	long long n;

	if (strcmp(k, "command") == 0) {
		if (!command_ok(v))
			return -1;
		memcpy(a->command, v, strlen(v) + 1);
		return 0;
	}
	if (strcmp(k, "message") == 0)
		return statefile_unescape(v, a->message, sizeof(a->message));
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0')
		return -1;
	if (strcmp(k, "at") == 0 && n > 0)
		a->at = (time_t)n;
	else if (strcmp(k, "err") == 0 && n <= 0 && n >= -1000)
		a->err = (int)n;
	else if (strcmp(k, "failures") == 0 && n >= 0 && n <= MAX_FAILURES)
		a->failures = (unsigned)n;
	else if (strcmp(k, "next_at") == 0 && n >= 0)
		a->next_at = (time_t)n;
	else
		return -1;
	return 0;
}

/* A record needs its time and its command. */
static const char *
missing(const void *ud)
{
	const struct attempt *a = ud;

	return a->at == 0 ? "at" : a->command[0] == '\0' ? "command" : NULL;
}

static const struct statefile_kind last_file = {
    "last-", ".txt", MAX_FILE, parse_line, missing, "the next attempt", NULL,
};

int
attempt_load(const struct conf *c, struct attempt *out)
{
	struct attempt a;
	int r;

	memset(&a, 0, sizeof(a));
	if ((r = statefile_load(c, &last_file, &a)) == 0)
		*out = a;
	return r;
}

int
attempt_save(const struct conf *c, const struct attempt *a)
{
	int r;
	char *path = NULL, msg[4 * sizeof(a->message)], buf[1536];
	int n;

	if ((r = statefile_path(c, last_file.prefix, last_file.suffix, &path)) != 0)
		return r;
	statefile_escape(a->message, msg);
	n = snprintf(buf, sizeof(buf),
	             "# p11enroll: the last enroll/renew attempt; `p11enroll status` shows it\n"
	             "at=%lld\ncommand=%s\nerr=%d\nmessage=%s\nfailures=%u\nnext_at=%lld\n",
	             (long long)a->at, a->command, a->err, msg, a->failures, (long long)a->next_at);
	r = P11E_ERR_INTERNAL;
	if (n < 0 || (size_t)n >= sizeof(buf) || !command_ok(a->command))
		goto out;
	if ((r = store_mkdirs(c->state_dir, 0700)) == 0)
		r = store_write_atomic(path, buf, (size_t)n, 0600);
out:
	free(path);
	return r;
}

int
attempt_record(const struct conf *c, const char *command, int err)
{
	struct attempt a, prev;
	int r;

	memset(&a, 0, sizeof(a));
	a.at = time(NULL);
	snprintf(a.command, sizeof(a.command), "%s", command);
	a.err = err;
	if (err != 0 && err != P11E_ERR_PENDING) {
		snprintf(a.message, sizeof(a.message), "%s", log_last_error());
		a.failures = 1;
		if (attempt_load(c, &prev) == 0 && prev.failures < MAX_FAILURES)
			a.failures = prev.failures + 1;
	} else if (err == P11E_ERR_PENDING) {
		snprintf(a.message, sizeof(a.message), "%s", log_last_error());
	}
	if ((r = attempt_save(c, &a)) != 0)
		log_warn("the outcome of this %s is not recorded for `p11enroll status`", command);
	log_clear_last_error();
	return r;
}
