/*
 * pending.c: the PENDING transaction of a profile, one small text file in
 * state_dir: "pending-<label>.txn" with key=value lines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "err.h"
#include "pending.h"
#include "statefile.h"
#include "store.h"

#define MAX_FILE 4096

static int
parse_line(void *ud, const char *k, const char *v)
{
	struct pending *p = ud;
	char *end = NULL;
	long long n;
	size_t i, len = strlen(v);

	if (strcmp(k, "transaction_id") == 0) {
		if (len == 0 || len >= sizeof(p->txid))
			return -1;
		memcpy(p->txid, v, len + 1);
		return 0;
	}
	if (strcmp(k, "key_id") == 0) {
		if (len == 0 || len % 2 != 0 || len / 2 > sizeof(p->key_id))
			return -1;
		for (i = 0; i < len / 2; i++) {
			int hi = OPENSSL_hexchar2int((unsigned char)v[2 * i]);
			int lo = OPENSSL_hexchar2int((unsigned char)v[2 * i + 1]);
			if (hi < 0 || lo < 0)
				return -1;
			p->key_id[i] = (unsigned char)(hi << 4 | lo);
		}
		p->key_id_len = len / 2;
		return 0;
	}
	if (strcmp(k, "key_pub") == 0) {
		if (len != 2 * sizeof(p->key_pub))
			return -1;
		for (i = 0; i < sizeof(p->key_pub); i++) {
			int hi = OPENSSL_hexchar2int((unsigned char)v[2 * i]);
			int lo = OPENSSL_hexchar2int((unsigned char)v[2 * i + 1]);
			if (hi < 0 || lo < 0)
				return -1;
			p->key_pub[i] = (unsigned char)(hi << 4 | lo);
		}
		p->has_key_pub = 1;
		return 0;
	}
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < 0)
		return -1;
	if (strcmp(k, "created") == 0)
		p->created = (time_t)n;
	else if (strcmp(k, "next_poll") == 0)
		p->next_poll = (time_t)n;
	else if (strcmp(k, "polls") == 0 && n <= 1000000)
		p->polls = (unsigned)n;
	else if (strcmp(k, "renewal") == 0 && n <= 1)
		p->renewal = (int)n;
	else
		return -1;
	return 0;
}

/* A transaction needs its ID and its key. */
static const char *
missing(const void *ud)
{
	const struct pending *p = ud;

	return p->txid[0] == '\0' ? "transaction_id" : p->key_id_len == 0 ? "key_id" : NULL;
}

static const struct statefile_kind pending_file = {
    "pending-", ".txn", MAX_FILE, parse_line, missing, NULL, "remove it to start a new request",
};

int
pending_load(const struct conf *c, struct pending *out)
{
	struct pending p;
	int r;

	memset(&p, 0, sizeof(p));
	if ((r = statefile_load(c, &pending_file, &p)) == 0)
		*out = p;
	return r;
}

int
pending_save(const struct conf *c, const struct pending *p)
{
	int r;
	char *path = NULL, buf[1024];
	size_t i, o;

	if ((r = statefile_path(c, pending_file.prefix, pending_file.suffix, &path)) != 0)
		return r;
	o = (size_t)snprintf(buf, sizeof(buf),
	                     "# p11enroll: a request the CA put on hold; `p11enroll enroll` "
	                     "polls it\ntransaction_id=%s\nkey_id=",
	                     p->txid);
	for (i = 0; i < p->key_id_len && o + 3 < sizeof(buf); i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%02x", p->key_id[i]);
	if (p->has_key_pub) {
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\nkey_pub=");
		for (i = 0; i < sizeof(p->key_pub); i++)
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%02x", p->key_pub[i]);
	}
	o += (size_t)snprintf(buf + o, sizeof(buf) - o,
	                      "\ncreated=%lld\nnext_poll=%lld\npolls=%u\nrenewal=%d\n",
	                      (long long)p->created, (long long)p->next_poll, p->polls, p->renewal);
	if ((r = store_mkdirs(c->state_dir, 0700)) == 0)
		r = store_write_atomic(path, buf, o, 0600);
	free(path);
	return r;
}

int
pending_clear(const struct conf *c)
{
	int r;
	char *path = NULL;

	if ((r = statefile_path(c, pending_file.prefix, pending_file.suffix, &path)) != 0)
		return r;
	r = store_unlink(path);
	free(path);
	return r;
}
