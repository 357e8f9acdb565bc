/*
 * store_trust.c: the trust directory: PEM certificates plus the OpenSSL
 * subject-hash links that `openssl verify -CApath` and OpenSSL's by_dir
 * lookup follow.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "err.h"
#include "log.h"
#include "store.h"

#define LINK_MAX_N 1000

/* A hash link in the trust directory that points at one of this call's files. */
struct link {
	unsigned long hash, n;
	size_t cert; /* index of the certificate whose file it points at */
	int state;   /* L_KEEP, L_DROP (stale or duplicate), L_REUSED */
};

enum { L_KEEP, L_DROP, L_REUSED };

struct links {
	struct link *v;
	size_t len, cap;
};

static int
links_add(struct links *ls, unsigned long hash, unsigned long n, size_t cert)
{
	struct link *nv;
	size_t cap;

	if (ls->len == ls->cap) {
		cap = ls->cap ? ls->cap * 2 : 8;
		if ((nv = realloc(ls->v, cap * sizeof(*nv))) == NULL)
			return P11E_ERR_ALLOC;
		ls->v = nv;
		ls->cap = cap;
	}
	ls->v[ls->len++] = (struct link){hash, n, cert, L_KEEP};
	return 0;
}

static int
parse_link_name(const char *s, unsigned long *hash, unsigned long *n)
{
	unsigned long h = 0, x = 0;
	size_t i;

	for (i = 0; i < 8; i++) {
		if (s[i] >= '0' && s[i] <= '9')
			h = h << 4 | (unsigned long)(s[i] - '0');
		else if (s[i] >= 'a' && s[i] <= 'f')
			h = h << 4 | (unsigned long)(s[i] - 'a' + 10);
		else
			return -1;
	}
	if (s[8] != '.' || s[9] == '\0')
		return -1;
	for (i = 9; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i > 9 + 6)
			return -1;
		x = x * 10 + (unsigned long)(s[i] - '0');
	}
	*hash = h;
	*n = x;
	return 0;
}

/* Collects the hash links whose target is "<name>.crt" of one of certs. */
static int
scan_links(DIR *d, const char *dir, char **files, size_t nfiles, struct links *ls)
{
	struct dirent *e;
	char target[256];
	unsigned long hash, n;
	ssize_t k;
	size_t i;
	int r;

	for (;;) {
		errno = 0;
		if ((e = readdir(d)) == NULL)
			break;
		if (parse_link_name(e->d_name, &hash, &n) != 0)
			continue;
		if ((k = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1)) < 0)
			continue;
		target[k] = '\0';
		for (i = 0; i < nfiles; i++) {
			if (strcmp(target, files[i]) == 0) {
				if ((r = links_add(ls, hash, n, i)) != 0)
					return r;
				break;
			}
		}
	}
	if (errno != 0) {
		log_error("cannot read directory %s: %s", dir, strerror(errno));
		return P11E_ERR_FILE;
	}
	return 0;
}

static struct link *
links_find(struct links *ls, unsigned long hash, unsigned long n)
{
	size_t i;

	for (i = 0; i < ls->len; i++) {
		if (ls->v[i].hash == hash && ls->v[i].n == n)
			return &ls->v[i];
	}
	return NULL;
}

/* Points DIR/<hash>.<n> at target, replacing what is there atomically. */
static int
put_link(int dfd, const char *dir, unsigned long hash, unsigned long n, const char *target)
{
	char name[32], tmp[40];
	int err;

	snprintf(name, sizeof(name), "%08lx.%lu", hash, n);
	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	if (unlinkat(dfd, tmp, 0) != 0 && errno != ENOENT)
		goto fail;
	if (symlinkat(target, dfd, tmp) != 0)
		goto fail;
	if (renameat(dfd, tmp, dfd, name) != 0) {
		err = errno;
		unlinkat(dfd, tmp, 0);
		errno = err;
		goto fail;
	}
	log_debug("trust link %s/%s -> %s", dir, name, target);
	return 0;
fail:
	log_error("cannot create link %s/%s: %s", dir, name, strerror(errno));
	return P11E_ERR_FILE;
}

/* Gives certificate i (subject hash h) a link, reusing one of ours where possible. */
static int
link_cert(int dfd, const char *dir, struct links *ls, size_t i, unsigned long h, const char *file)
{
	struct link *l, *keep = NULL;
	struct stat st;
	char name[32];
	unsigned long n;
	size_t j;

	for (j = 0; j < ls->len; j++) {
		l = &ls->v[j];
		if (l->cert != i || l->hash != h || l->state != L_KEEP)
			continue;
		if (keep == NULL || l->n < keep->n) {
			if (keep != NULL)
				keep->state = L_DROP;
			keep = l;
		} else {
			l->state = L_DROP;
		}
	}
	if (keep != NULL)
		return 0;
	for (n = 0; n < LINK_MAX_N; n++) {
		if ((l = links_find(ls, h, n)) != NULL) {
			if (l->state != L_DROP)
				continue;
			l->state = L_REUSED;
			return put_link(dfd, dir, h, n, file);
		}
		snprintf(name, sizeof(name), "%08lx.%lu", h, n);
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			continue;
		if (errno != ENOENT) {
			log_error("cannot inspect %s/%s: %s", dir, name, strerror(errno));
			return P11E_ERR_FILE;
		}
		if (links_add(ls, h, n, i) != 0)
			return P11E_ERR_ALLOC;
		return put_link(dfd, dir, h, n, file);
	}
	log_error("cannot link %s/%s: %d hash links %08lx.N already exist", dir, file, LINK_MAX_N,
	          h);
	return P11E_ERR_FILE;
}

static int
valid_name(const char *s)
{
	return s != NULL && s[0] != '\0' && s[0] != '.' && strchr(s, '/') == NULL &&
	       strlen(s) < 200;
}

int
store_trust_write(const char *dir, const struct store_cert *certs, size_t n)
{
	struct links ls = {NULL, 0, 0};
	unsigned long *hashes = NULL;
	char **files = NULL, *path = NULL, *pem = NULL;
	size_t i, j, pemlen;
	DIR *d = NULL;
	char name[32];
	int r = P11E_ERR_INTERNAL;

	for (i = 0; i < n; i++) {
		if (!valid_name(certs[i].name) || certs[i].cert == NULL) {
			log_error("trust store %s: invalid certificate name '%s'", dir,
			          certs[i].name != NULL ? certs[i].name : "(null)");
			goto out;
		}
		for (j = 0; j < i; j++) {
			if (strcmp(certs[i].name, certs[j].name) == 0) {
				log_error("trust store %s: certificate name '%s' given twice", dir,
				          certs[i].name);
				goto out;
			}
		}
	}
	if ((files = calloc(n + 1, sizeof(*files))) == NULL ||
	    (hashes = calloc(n + 1, sizeof(*hashes))) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	if ((r = store_mkdirs(dir, 0755)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		if ((files[i] = malloc(strlen(certs[i].name) + sizeof(".crt"))) == NULL) {
			r = P11E_ERR_ALLOC;
			goto out;
		}
		strcpy(files[i], certs[i].name);
		strcat(files[i], ".crt");
		hashes[i] = X509_subject_name_hash(certs[i].cert);
		if ((r = store_cert_pem(certs[i].cert, &pem, &pemlen)) != 0)
			goto out;
		free(path);
		if ((path = store_path_join(dir, files[i])) == NULL) {
			r = P11E_ERR_ALLOC;
			goto out;
		}
		if ((r = store_write_atomic(path, pem, pemlen, 0644)) != 0)
			goto out;
		free(pem);
		pem = NULL;
	}

	if ((d = opendir(dir)) == NULL) {
		log_error("cannot open directory %s: %s", dir, strerror(errno));
		r = P11E_ERR_FILE;
		goto out;
	}
	if ((r = scan_links(d, dir, files, n, &ls)) != 0)
		goto out;
	for (j = 0; j < ls.len; j++) {
		if (ls.v[j].hash != hashes[ls.v[j].cert])
			ls.v[j].state = L_DROP;
	}
	for (i = 0; i < n; i++) {
		if ((r = link_cert(dirfd(d), dir, &ls, i, hashes[i], files[i])) != 0)
			goto out;
	}
	for (j = 0; j < ls.len; j++) {
		if (ls.v[j].state != L_DROP)
			continue;
		snprintf(name, sizeof(name), "%08lx.%lu", ls.v[j].hash, ls.v[j].n);
		if (unlinkat(dirfd(d), name, 0) != 0 && errno != ENOENT) {
			log_error("cannot remove stale link %s/%s: %s", dir, name, strerror(errno));
			r = P11E_ERR_FILE;
			goto out;
		}
		log_debug("trust link %s/%s removed", dir, name);
	}
	if (fsync(dirfd(d)) != 0 && errno != EINVAL) {
		log_error("cannot sync directory %s: %s", dir, strerror(errno));
		r = P11E_ERR_FILE;
		goto out;
	}
	r = 0;
out:
	if (d != NULL)
		closedir(d);
	for (i = 0; files != NULL && i < n; i++)
		free(files[i]);
	free(files);
	free(hashes);
	free(ls.v);
	free(path);
	free(pem);
	return r;
}
