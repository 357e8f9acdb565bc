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
#include "log.h"
#include "pending.h"
#include "store.h"

#define MAX_FILE 4096

/* state_dir/pending-<label>.txn, the label reduced to [A-Za-z0-9._-]. */
static int
txn_path(const struct conf *c, char **out)
{
	size_t n = strlen(c->state_dir) + strlen(c->key_label) + 32, i, o;
	char *p = malloc(n);

	if (p == NULL)
		return P11E_ERR_ALLOC;
	o = (size_t)snprintf(p, n, "%s/pending-", c->state_dir);
	for (i = 0; c->key_label[i] != '\0'; i++) {
		char ch = c->key_label[i];
		p[o++] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		                 (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'
		             ? ch
		             : '_';
	}
	snprintf(p + o, n - o, ".txn");
	*out = p;
	return 0;
}

static int
parse_line(struct pending *p, char *k, char *v)
{
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

int
pending_load(const struct conf *c, struct pending *out)
{
	int r;
	char *path = NULL, *line, *save = NULL, *eq;
	unsigned char *buf = NULL;
	size_t len = 0;
	struct pending p;

	memset(&p, 0, sizeof(p));
	if ((r = txn_path(c, &path)) != 0)
		return r;
	if ((r = store_read_file(path, MAX_FILE, &buf, &len)) != 0)
		goto out;
	r = P11E_ERR_FILE;
	for (line = strtok_r((char *)buf, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#')
			continue;
		if ((eq = strchr(line, '=')) == NULL)
			goto bad;
		*eq = '\0';
		if (parse_line(&p, line, eq + 1) != 0)
			goto bad;
	}
	if (p.txid[0] == '\0' || p.key_id_len == 0)
		goto bad;
	*out = p;
	r = 0;
	goto out;
bad:
	log_error("%s is damaged; remove it to start a new request", path);
out:
	free(path);
	free(buf);
	return r;
}

int
pending_save(const struct conf *c, const struct pending *p)
{
	int r;
	char *path = NULL, buf[1024];
	size_t i, o;

	if ((r = txn_path(c, &path)) != 0)
		return r;
	o = (size_t)snprintf(buf, sizeof(buf),
	                     "# p11enroll: a request the CA put on hold; `p11enroll enroll` "
	                     "polls it\ntransaction_id=%s\nkey_id=",
	                     p->txid);
	for (i = 0; i < p->key_id_len && o + 3 < sizeof(buf); i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%02x", p->key_id[i]);
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

	if ((r = txn_path(c, &path)) != 0)
		return r;
	if (unlink(path) != 0 && errno != ENOENT) {
		log_error("cannot remove %s: %s", path, strerror(errno));
		r = P11E_ERR_FILE;
	}
	free(path);
	return r;
}
