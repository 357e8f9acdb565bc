/*
 * ca_next.c: CA rollover on the agent's side: the verified next CA kept in
 * state_dir (ca-next.pem), accepting it when GetCACert starts returning it,
 * and when to look for one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/pem.h>

#include "ca_next.h"
#include "err.h"
#include "log.h"
#include "scep.h"
#include "store.h"

#define NEXT_FILE "ca-next.pem"
#define LOOKED_FILE "ca-next.looked"
#define TRUST_CA_FILE "ca.crt"
#define MAX_PEM (64 * 1024)
#define RELOOK_SECS (24L * 3600)

static char *
join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p != NULL)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/* "sha256:AB:..." of cert into buf (at least 8 + 3 * 32 bytes). */
static int
fp_text(X509 *cert, const EVP_MD *md, char *buf)
{
	unsigned char d[32];
	unsigned int dlen = 0;
	int r;

	if ((r = scep_cert_digest(cert, md, d, &dlen)) != 0)
		return r;
	strcpy(buf, md == EVP_sha1() ? "sha1:" : "sha256:");
	scep_hex_colon(d, dlen, buf + strlen(buf));
	return 0;
}

int
ca_next_is_anchor(X509 *cert, const char *anchor, int *yes)
{
	char a[8 + 96], b[8 + 96];
	int r;

	if ((r = fp_text(cert, EVP_sha256(), a)) != 0 || (r = fp_text(cert, EVP_sha1(), b)) != 0)
		return r;
	*yes = strcmp(a, anchor) == 0 || strcmp(b, anchor) == 0;
	return 0;
}

/* The first certificate of a PEM file and the file's text; NOTFOUND when absent. */
static int
read_pem(const char *dir, const char *name, X509 **cert, char **text)
{
	int r;
	char *path = join(dir, name);
	unsigned char *buf = NULL;
	size_t len = 0;
	BIO *b = NULL;
	X509 *x = NULL;

	if (path == NULL)
		return P11E_ERR_ALLOC;
	if ((r = store_read_state(path, MAX_PEM, &buf, &len)) != 0)
		goto out;
	r = P11E_ERR_MALFORMED;
	if ((b = BIO_new_mem_buf(buf, (int)len)) == NULL ||
	    (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL) {
		log_openssl(LOG_LVL_WARN, "%s holds no PEM certificate: ignoring it", path);
		goto out;
	}
	*cert = x;
	x = NULL;
	if (text != NULL) {
		*text = (char *)buf;
		buf = NULL;
	}
	r = 0;
out:
	X509_free(x);
	BIO_free(b);
	free(buf);
	free(path);
	return r;
}

int
ca_next_save(const struct conf *c, X509 *ca, X509 *next)
{
	int r;
	char *path = NULL, *pem = NULL, *buf = NULL, sha256[8 + 96], sha1[8 + 96];
	size_t pemlen = 0, n;

	if ((r = fp_text(ca, EVP_sha256(), sha256)) != 0 ||
	    (r = fp_text(ca, EVP_sha1(), sha1)) != 0 ||
	    (r = store_cert_pem(next, &pem, &pemlen)) != 0)
		goto out;
	r = P11E_ERR_ALLOC;
	n = pemlen + 2 * sizeof(sha256) + 256;
	if ((path = join(c->state_dir, NEXT_FILE)) == NULL || (buf = malloc(n)) == NULL)
		goto out;
	/* The lines before the PEM block say which CA vouched for it. */
	snprintf(buf, n,
	         "# the next CA, from GetNextCACert, signed by the CA (or its RA) below\n"
	         "# verified-by %s\n# verified-by %s\n%.*s",
	         sha256, sha1, (int)pemlen, pem);
	if ((r = store_mkdirs(c->state_dir, 0700)) != 0 ||
	    (r = store_write_atomic(path, buf, strlen(buf), 0644)) != 0)
		goto out;
	r = 0;
out:
	free(path);
	free(pem);
	free(buf);
	return r;
}

int
ca_next_rolled(const struct conf *c, X509 *ca, const char *anchor, int *rolled, X509 **prev_out)
{
	int r;
	X509 *next = NULL, *prev = NULL;
	char *text = NULL, want[160];
	int same = 0;

	*rolled = 0;
	r = read_pem(c->state_dir, NEXT_FILE, &next, &text);
	if (r == P11E_ERR_NOTFOUND || r == P11E_ERR_MALFORMED)
		return 0;
	if (r != 0)
		return r;
	snprintf(want, sizeof(want), "# verified-by %s\n", anchor);
	if (X509_cmp(next, ca) != 0 || strstr(text, want) == NULL) {
		if (X509_cmp(next, ca) == 0)
			log_warn("the server's CA is the next CA stored in %s/%s, but that was "
			         "verified under another CA than %s: not trusting it",
			         c->state_dir, NEXT_FILE, anchor);
		goto out;
	}
	*rolled = 1;
	/* The previous CA stays trusted: what it issued is valid until it expires. */
	if (read_pem(c->trust_dir, TRUST_CA_FILE, &prev, NULL) == 0) {
		if ((r = ca_next_is_anchor(prev, anchor, &same)) != 0)
			goto out;
		if (!same) {
			X509_free(prev);
			prev = NULL;
		}
	}
	*prev_out = prev;
	prev = NULL;
	r = 0;
out:
	X509_free(next);
	X509_free(prev);
	free(text);
	return r;
}

int
ca_next_looked(const struct conf *c)
{
	int r;
	char *path = join(c->state_dir, LOOKED_FILE);
	const char *msg = "# p11enroll last asked the server for a next CA at this file's mtime\n";

	if (path == NULL)
		return P11E_ERR_ALLOC;
	if ((r = store_mkdirs(c->state_dir, 0700)) == 0)
		r = store_write_atomic(path, msg, strlen(msg), 0644);
	free(path);
	return r;
}

int
ca_next_check_at(const struct conf *c, time_t *when)
{
	int r;
	X509 *cur = NULL, *next = NULL;
	char *path = NULL;
	struct stat st;
	time_t w = 0, now = time(NULL);

	if ((r = read_pem(c->trust_dir, TRUST_CA_FILE, &cur, NULL)) != 0) {
		if (r == P11E_ERR_NOTFOUND || r == P11E_ERR_MALFORMED)
			r = 0; /* not enrolled yet: nothing to schedule */
		goto done;
	}
	r = read_pem(c->state_dir, NEXT_FILE, &next, NULL);
	if (r == 0 && X509_cmp(next, cur) != 0)
		goto done; /* a next CA is already prepared */
	if (r != 0 && r != P11E_ERR_NOTFOUND && r != P11E_ERR_MALFORMED)
		goto done;
	r = 0;
	if ((w = scep_next_window(cur)) == 0 || now < w)
		goto done;
	if ((path = join(c->state_dir, LOOKED_FILE)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto done;
	}
	if (stat(path, &st) == 0 && st.st_mtime + RELOOK_SECS > w)
		w = st.st_mtime + RELOOK_SECS;
done:
	if (r == 0)
		*when = w;
	free(path);
	X509_free(cur);
	X509_free(next);
	return r;
}
