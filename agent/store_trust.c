/*
 * store_trust.c: the trust directory: PEM certificates plus the OpenSSL
 * subject-hash links that `openssl verify -CApath` and OpenSSL's by_dir
 * lookup follow.
 *
 * by_dir looks for HASH.0, HASH.1, ... and stops at the first index that does
 * not exist; before OpenSSL 3.0.22 it also stops at the first entry that does
 * not load as a PEM certificate (a dangling link, a CRL, anything else). So
 * for every hash this file touches, the links form a run without gaps in
 * which ours come before every entry that does not load; such an entry of
 * someone else's is moved behind ours, never removed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "err.h"
#include "log.h"
#include "store.h"

#define LINK_MAX_N 1000
#define MAX_FOREIGN (1024 * 1024)

/* A hash-named entry of the directory: a link of ours, or someone else's. */
enum { E_OURS, E_STALE, E_GOOD, E_BAD };

struct entry {
	unsigned long hash, n;
	int kind;    /* E_OURS: points at files[cert]; E_STALE: at a file of ours
	                being removed; E_GOOD/E_BAD: foreign, loads as a PEM
	                certificate or not */
	size_t cert; /* E_OURS */
	int moved;   /* renamed to its temporary name */
};

struct entries {
	struct entry *v;
	size_t len, cap;
};

static int
entries_add(struct entries *es, const struct entry *e)
{
	struct entry *nv;
	size_t cap;

	if (es->len == es->cap) {
		cap = es->cap ? es->cap * 2 : 8;
		if ((nv = realloc(es->v, cap * sizeof(*nv))) == NULL)
			return P11E_ERR_ALLOC;
		es->v = nv;
		es->cap = cap;
	}
	es->v[es->len++] = *e;
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

/* Whether DIR/name (links followed, as by_dir does) holds a PEM certificate. */
static int
loadable(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK), ok = 0;
	struct stat st;
	unsigned char *buf = NULL;
	ssize_t k;
	BIO *b = NULL;
	X509 *x = NULL;

	if (fd < 0)
		return 0;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
	    st.st_size <= MAX_FOREIGN && (buf = malloc((size_t)st.st_size)) != NULL &&
	    (k = read(fd, buf, (size_t)st.st_size)) > 0 &&
	    (b = BIO_new_mem_buf(buf, (int)k)) != NULL &&
	    (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		ok = 1;
	ERR_clear_error();
	X509_free(x);
	BIO_free(b);
	free(buf);
	close(fd);
	return ok;
}

static int
hash_wanted(unsigned long h, const unsigned long *hs, size_t nh)
{
	size_t i;

	for (i = 0; i < nh; i++)
		if (hs[i] == h)
			return 1;
	return 0;
}

/*
 * Every hash-named entry of d that is a link to one of files (files[0..n)
 * this call's, files[n..nfiles) being removed), and then every other entry
 * under one of the hashes involved: hs gets those hashes.
 */
static int
scan(DIR *d, const char *dir, char **files, size_t n, size_t nfiles, unsigned long *hs, size_t *nh,
     size_t maxh, struct entries *es)
{
	struct dirent *e;
	char target[256];
	unsigned long hash, k;
	ssize_t len;
	size_t i;
	int r, pass;

	for (pass = 0; pass < 2; pass++) {
		rewinddir(d);
		for (;;) {
			errno = 0;
			if ((e = readdir(d)) == NULL)
				break;
			if (parse_link_name(e->d_name, &hash, &k) != 0 || k >= LINK_MAX_N)
				continue;
			len = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);
			target[len > 0 ? len : 0] = '\0';
			for (i = 0; len > 0 && i < nfiles && strcmp(target, files[i]) != 0; i++)
				;
			if (pass == 0 && len > 0 && i < nfiles) {
				struct entry en = {hash, k, i < n ? E_OURS : E_STALE, i, 0};
				if ((r = entries_add(es, &en)) != 0)
					return r;
				if (!hash_wanted(hash, hs, *nh) && *nh < maxh)
					hs[(*nh)++] = hash;
			} else if (pass == 1 && !(len > 0 && i < nfiles) &&
			           hash_wanted(hash, hs, *nh)) {
				struct entry en = {
				    hash, k, loadable(dirfd(d), e->d_name) ? E_GOOD : E_BAD, 0, 0};
				if ((r = entries_add(es, &en)) != 0)
					return r;
			}
		}
		if (errno != 0) {
			log_error("cannot read directory %s: %s", dir, strerror(errno));
			return P11E_ERR_FILE;
		}
	}
	return 0;
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

static int
move_entry(int dfd, const char *dir, const char *from, const char *to)
{
	if (renameat(dfd, from, dfd, to) != 0) {
		log_error("cannot rename %s/%s to %s: %s", dir, from, to, strerror(errno));
		return P11E_ERR_FILE;
	}
	return 0;
}

/* One slot of the run a hash should have: a foreign entry, or certificate cert of ours. */
struct slot {
	struct entry *e; /* foreign (E_GOOD/E_BAD) or ours already there; NULL: new link */
	size_t cert;
};

/*
 * Rewrites hash h's run: foreign entries that load, and our links (one per
 * certificate of this hash), in the order of their indices; then new links of
 * ours; then the foreign entries that do not load. Stale links go.
 */
static int
fix_hash(int dfd, const char *dir, struct entries *es, unsigned long h, const unsigned long *hashes,
         char **files, size_t n)
{
	struct entry *cur[LINK_MAX_N] = {NULL};
	struct slot *t = NULL;
	unsigned char *seen = NULL;
	size_t i, nt = 0, k, max = 0;
	char name[32], tmp[48];
	int r = P11E_ERR_ALLOC, pass;

	for (i = 0; i < es->len; i++) {
		if (es->v[i].hash != h)
			continue;
		cur[es->v[i].n] = &es->v[i];
		if (es->v[i].n + 1 > max)
			max = es->v[i].n + 1;
	}
	if ((t = calloc(max + n + 1, sizeof(*t))) == NULL || (seen = calloc(n + 1, 1)) == NULL)
		goto out;
	for (pass = 0; pass < 3; pass++) {
		for (k = 0; pass != 1 && k < max; k++) {
			struct entry *e = cur[k];
			if (e == NULL)
				continue;
			if ((pass == 0 && e->kind == E_GOOD) || (pass == 2 && e->kind == E_BAD)) {
				t[nt++].e = e;
			} else if (pass == 0 && e->kind == E_OURS && hashes[e->cert] == h &&
			           !seen[e->cert]) {
				seen[e->cert] = 1;
				t[nt].e = e;
				t[nt++].cert = e->cert;
			}
		}
		for (i = 0; pass == 1 && i < n; i++) {
			if (hashes[i] == h && !seen[i]) {
				seen[i] = 1;
				t[nt].e = NULL;
				t[nt++].cert = i;
			}
		}
	}
	if (nt > LINK_MAX_N) {
		log_error("cannot link in %s: %d hash links %08lx.N already exist", dir, LINK_MAX_N,
		          h);
		r = P11E_ERR_FILE;
		goto out;
	}
	/* Foreign entries that change places go aside first. */
	for (k = 0; k < nt; k++) {
		struct entry *e = t[k].e;
		if (e == NULL || e->kind == E_OURS || e->n == k)
			continue;
		snprintf(name, sizeof(name), "%08lx.%lu", h, e->n);
		snprintf(tmp, sizeof(tmp), ".%08lx.%lu.mv", h, e->n);
		if ((r = move_entry(dfd, dir, name, tmp)) != 0)
			goto out;
		e->moved = 1;
		cur[e->n] = NULL;
	}
	for (k = 0; k < nt; k++) {
		struct entry *e = t[k].e;
		snprintf(name, sizeof(name), "%08lx.%lu", h, (unsigned long)k);
		if (e != NULL && e->moved) {
			snprintf(tmp, sizeof(tmp), ".%08lx.%lu.mv", h, e->n);
			if ((r = move_entry(dfd, dir, tmp, name)) != 0)
				goto out;
			log_info("%s/%08lx.%lu (not ours%s) is now %s, so that OpenSSL finds every "
			         "certificate of this hash",
			         dir, h, e->n,
			         e->kind == E_BAD ? ", not a loadable certificate" : "", name);
		} else if (e == NULL || (e->kind == E_OURS && e->n != k)) {
			if ((r = put_link(dfd, dir, h, k, files[t[k].cert])) != 0)
				goto out;
		}
		cur[k] = NULL;
	}
	for (k = nt; k < max; k++) {
		if (cur[k] == NULL)
			continue;
		snprintf(name, sizeof(name), "%08lx.%lu", h, (unsigned long)k);
		if (unlinkat(dfd, name, 0) != 0 && errno != ENOENT) {
			log_error("cannot remove stale link %s/%s: %s", dir, name, strerror(errno));
			r = P11E_ERR_FILE;
			goto out;
		}
		log_debug("trust link %s/%s removed", dir, name);
	}
	r = 0;
out:
	free(t);
	free(seen);
	return r;
}

static int
valid_name(const char *s)
{
	return s != NULL && s[0] != '\0' && s[0] != '.' && strchr(s, '/') == NULL &&
	       strlen(s) < 200;
}

/* stem matches pattern, where '#' stands for one or more digits. */
static int
name_matches(const char *stem, const char *pattern)
{
	for (; *pattern != '\0'; pattern++) {
		if (*pattern == '#') {
			if (*stem < '0' || *stem > '9')
				return 0;
			while (*stem >= '0' && *stem <= '9')
				stem++;
		} else if (*stem++ != *pattern) {
			return 0;
		}
	}
	return *stem == '\0';
}

/* Appends to files the "<stem>.crt" regular files of ours that certs does not name. */
static int
find_stale(DIR *d, const struct store_cert *certs, size_t n, const char *const *owned,
           size_t nowned, char ***files, size_t *nfiles)
{
	struct dirent *e;
	struct stat st;
	size_t i, len;
	char stem[256], **nv;

	rewinddir(d);
	while ((e = readdir(d)) != NULL) {
		len = strlen(e->d_name);
		if (len < 5 || len >= sizeof(stem) || strcmp(e->d_name + len - 4, ".crt") != 0)
			continue;
		memcpy(stem, e->d_name, len - 4);
		stem[len - 4] = '\0';
		for (i = 0; i < n && strcmp(certs[i].name, stem) != 0; i++)
			;
		if (i < n)
			continue;
		for (i = 0; i < nowned && !name_matches(stem, owned[i]); i++)
			;
		if (i == nowned || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if ((nv = realloc(*files, (*nfiles + 2) * sizeof(*nv))) == NULL)
			return P11E_ERR_ALLOC;
		*files = nv;
		if ((nv[*nfiles] = strdup(e->d_name)) == NULL)
			return P11E_ERR_ALLOC;
		nv[++*nfiles] = NULL;
	}
	return 0;
}

int
store_trust_write(const char *dir, const struct store_cert *certs, size_t n,
                  const char *const *owned, size_t nowned)
{
	struct entries es = {NULL, 0, 0};
	unsigned long *hashes = NULL, *hs = NULL;
	char **files = NULL, *path = NULL, *pem = NULL;
	size_t i, j, pemlen, nfiles = n, nh = 0;
	DIR *d = NULL;
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
		/* Unchanged files stay as they are (no write for its readers to notice). */
		if (!store_holds(path, pem, pemlen, 0644) &&
		    (r = store_write_atomic(path, pem, pemlen, 0644)) != 0)
			goto out;
		free(pem);
		pem = NULL;
	}

	if ((d = opendir(dir)) == NULL) {
		log_error("cannot open directory %s: %s", dir, strerror(errno));
		r = P11E_ERR_FILE;
		goto out;
	}
	if ((r = find_stale(d, certs, n, owned, nowned, &files, &nfiles)) != 0)
		goto out;
	r = P11E_ERR_ALLOC;
	if ((hs = calloc(n + LINK_MAX_N, sizeof(*hs))) == NULL)
		goto out;
	for (i = 0; i < n; i++)
		if (!hash_wanted(hashes[i], hs, nh))
			hs[nh++] = hashes[i];
	if ((r = scan(d, dir, files, n, nfiles, hs, &nh, n + LINK_MAX_N, &es)) != 0)
		goto out;
	for (i = 0; i < nh; i++)
		if ((r = fix_hash(dirfd(d), dir, &es, hs[i], hashes, files, n)) != 0)
			goto out;
	for (i = n; i < nfiles; i++) {
		if (unlinkat(dirfd(d), files[i], 0) != 0 && errno != ENOENT) {
			log_error("cannot remove %s/%s: %s", dir, files[i], strerror(errno));
			r = P11E_ERR_FILE;
			goto out;
		}
		log_info("removed %s/%s: p11enroll no longer trusts it for this CA", dir, files[i]);
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
	for (i = 0; files != NULL && i < nfiles; i++)
		free(files[i]);
	free(files);
	free(hashes);
	free(hs);
	free(es.v);
	free(path);
	free(pem);
	return r;
}
