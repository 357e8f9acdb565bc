/*
 * hookrec.c: the record of a profile's hooks, state_dir/hook-<label>.txt
 * (hookrec.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "hookrec.h"
#include "log.h"
#include "statefile.h"
#include "store.h"

#define MSG_SIZE (sizeof(((struct hook_record *)NULL)->message))
#define MAX_FILE (2048 + 4 * MSG_SIZE)
#define MAX_FAILURES 1000000u

static const char *const how_names[] = {"exited", "signaled", "timeout", "failed"};

static const struct {
	unsigned bit;
	const char *name;
} hooks[] = {{HOOK_AFTER, "after"}, {HOOK_BEFORE_REMOVE, "before_remove"}};

#define NHOOKS (sizeof(hooks) / sizeof(hooks[0]))

const char *
hookrec_name(unsigned bit)
{
	size_t i;

	for (i = 0; i < NHOOKS; i++)
		if (hooks[i].bit == bit)
			return hooks[i].name;
	return "?";
}

void
hookrec_owed_names(unsigned owed, const char *sep, char *buf, size_t len)
{
	size_t i, o = 0;

	buf[0] = '\0';
	for (i = 0; i < NHOOKS; i++)
		if (owed & hooks[i].bit && o < len)
			o += (size_t)snprintf(buf + o, len - o, "%s%s", o > 0 ? sep : "",
			                      hooks[i].name);
}

/* v into out (size bytes): only [a-z_-] (names) or [0-9A-F] (serials), possibly empty. */
static int
word_field(const char *v, char *out, size_t size, int hex)
{
	size_t i, n = strlen(v);

	if (n >= size)
		return -1;
	for (i = 0; i < n; i++)
		if (hex ? !((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'A' && v[i] <= 'F'))
		        : !((v[i] >= 'a' && v[i] <= 'z') || v[i] == '_' || v[i] == '-'))
			return -1;
	memcpy(out, v, n + 1);
	return 0;
}

static int
owed_field(const char *v, unsigned *owed)
{
	size_t i, l;

	*owed = 0;
	while (*v != '\0') {
		l = strcspn(v, ",");
		for (i = 0; i < NHOOKS; i++)
			if (strlen(hooks[i].name) == l && strncmp(v, hooks[i].name, l) == 0)
				break;
		if (i == NHOOKS)
			return -1;
		*owed |= hooks[i].bit;
		v += l;
		if (*v == ',' && *++v == '\0')
			return -1;
	}
	return 0;
}

static int
parse_line(void *ud, const char *k, const char *v)
{
	struct hook_record *h = ud;
	char *end = NULL;
	long long n;
	size_t i;

	if (strcmp(k, "message") == 0)
		return statefile_unescape(v, h->message, sizeof(h->message));
	if (strcmp(k, "hook") == 0)
		return word_field(v, h->hook, sizeof(h->hook), 0);
	if (strcmp(k, "event") == 0)
		return word_field(v, h->event, sizeof(h->event), 0);
	if (strcmp(k, "owed_event") == 0)
		return word_field(v, h->owed_event, sizeof(h->owed_event), 0);
	if (strcmp(k, "serial") == 0)
		return word_field(v, h->serial, sizeof(h->serial), 1);
	if (strcmp(k, "old_serial") == 0)
		return word_field(v, h->old_serial, sizeof(h->old_serial), 1);
	if (strcmp(k, "owed") == 0)
		return owed_field(v, &h->owed);
	if (strcmp(k, "result") == 0) {
		for (i = 0; i < sizeof(how_names) / sizeof(how_names[0]); i++)
			if (strcmp(v, how_names[i]) == 0) {
				h->result = (int)i;
				return 0;
			}
		return -1;
	}
	n = strtoll(v, &end, 10);
	if (end == v || *end != '\0')
		return -1;
	if (strcmp(k, "last_run") == 0 && n >= 0)
		h->last_run = (time_t)n;
	else if (strcmp(k, "code") == 0 && n >= -1000 && n <= 1000)
		h->code = (int)n;
	else if (strcmp(k, "failures") == 0 && n >= 0 && n <= MAX_FAILURES)
		h->failures = (unsigned)n;
	else
		return -1;
	return 0;
}

static const struct statefile_kind hook_file = {
    "hook-", ".txt", MAX_FILE, parse_line, NULL, "the next hook run", NULL,
};

int
hookrec_load(const struct conf *c, struct hook_record *out)
{
	struct hook_record h;
	int r;

	memset(&h, 0, sizeof(h));
	if ((r = statefile_load(c, &hook_file, &h)) == 0)
		*out = h;
	return r;
}

int
hookrec_save(const struct conf *c, const struct hook_record *h)
{
	char *path = NULL, *msg = NULL, *buf = NULL, owed[64];
	size_t size = MAX_FILE;
	int n, r = P11E_ERR_ALLOC;

	if ((r = statefile_path(c, hook_file.prefix, hook_file.suffix, &path)) != 0)
		return r;
	r = P11E_ERR_ALLOC;
	if ((msg = malloc(4 * MSG_SIZE)) == NULL || (buf = malloc(size)) == NULL)
		goto out;
	statefile_escape(h->message, msg);
	hookrec_owed_names(h->owed, ",", owed, sizeof(owed));
	n = snprintf(buf, size,
	             "# p11enroll: the [hooks] of this profile: the last one run, and those still "
	             "owed; `p11enroll status` shows it\n"
	             "last_run=%lld\nhook=%s\nevent=%s\nresult=%s\ncode=%d\nfailures=%u\n"
	             "message=%s\nowed=%s\nowed_event=%s\nserial=%s\nold_serial=%s\n",
	             (long long)h->last_run, h->hook, h->event, how_names[h->result & 3], h->code,
	             h->failures, msg, owed, h->owed_event, h->serial, h->old_serial);
	r = P11E_ERR_INTERNAL;
	if (n < 0 || (size_t)n >= size)
		goto out;
	if ((r = store_mkdirs(c->state_dir, 0700)) == 0)
		r = store_write_atomic(path, buf, (size_t)n, 0600);
out:
	if (r == P11E_ERR_ALLOC)
		log_error("out of memory");
	free(path);
	free(msg);
	free(buf);
	return r;
}
