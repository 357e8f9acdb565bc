#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "err.h"
#include "log.h"
#include "store.h"

#define LINK_MAX_N 1000

static char *
path_join(const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);
	char *p;

	if ((p = malloc(dl + nl + 2)) == NULL)
		return NULL;
	memcpy(p, dir, dl);
	p[dl] = '/';
	memcpy(p + dl + 1, name, nl + 1);
	return p;
}

int
store_mkdirs(const char *dir, mode_t mode)
{
	struct stat st;
	char *p = NULL, *s;
	int r = P11E_ERR_INTERNAL, last, err;

	if ((p = strdup(dir)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (s = p; *s == '/'; s++)
		;
	while (*s != '\0') {
		s += strcspn(s, "/");
		last = *s == '\0' || s[strspn(s, "/")] == '\0';
		*s = '\0';
		if (mkdir(p, mode) == 0) {
			if (chmod(p, mode) != 0) {
				err = errno;
				log_error("cannot set mode of directory %s: %s", p, strerror(err));
				r = P11E_ERR_FILE;
				goto out;
			}
		} else {
			err = errno;
			if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
				log_error("cannot create directory %s: %s", p,
				          strerror(err == EEXIST ? ENOTDIR : err));
				r = P11E_ERR_FILE;
				goto out;
			}
		}
		if (last)
			break;
		*s++ = '/';
		while (*s == '/')
			s++;
	}
	r = 0;
out:
	free(p);
	return r;
}

static int
write_all(int fd, const unsigned char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, p, len)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
fsync_dir(const char *dir)
{
	int fd, err;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	if (fsync(fd) != 0 && errno != EINVAL) {
		err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * Removes dname's "<base>.tmp.<pid>.XXXXXX" files whose writer is gone: what
 * a crash between mkstemp and rename left. A live writer's file stays.
 */
static void
sweep_temps(const char *dname, const char *base)
{
	DIR *d;
	struct dirent *e;
	size_t bl = strlen(base);
	char *end;
	long pid;

	if ((d = opendir(dname)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, base, bl) != 0 || strncmp(e->d_name + bl, ".tmp.", 5) != 0)
			continue;
		pid = strtol(e->d_name + bl + 5, &end, 10);
		if (end == e->d_name + bl + 5 || *end != '.' || pid <= 0 ||
		    (long)(pid_t)pid != pid || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 ||
		    errno != ESRCH)
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) == 0)
			log_info("removed %s/%s, left by an interrupted run", dname, e->d_name);
	}
	closedir(d);
}

int
store_write_atomic(const char *path, const void *buf, size_t len, mode_t mode)
{
	char *tmp = NULL, *dir = NULL, *slash;
	const char *dname = ".", *base = path;
	int fd = -1, r = P11E_ERR_INTERNAL, err = 0, made = 0;
	size_t tl = strlen(path) + 48;

	if ((tmp = malloc(tl)) == NULL || (dir = strdup(path)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	/* The writer's PID in the name tells sweep_temps whose it is. */
	snprintf(tmp, tl, "%s.tmp.%ld.XXXXXX", path, (long)getpid());
	if ((slash = strrchr(dir, '/')) != NULL) {
		base = path + (slash - dir) + 1;
		slash[slash == dir ? 1 : 0] = '\0';
		dname = dir;
	}

	if ((fd = mkstemp(tmp)) < 0) {
		err = errno;
		goto fail;
	}
	made = 1;
	if (fchmod(fd, mode) != 0 || write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
		err = errno;
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		err = errno;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		err = errno;
		goto fail;
	}
	made = 0;
	if (fsync_dir(dname) != 0) {
		err = errno;
		log_error("cannot sync directory %s after writing %s: %s", dname, path,
		          strerror(err));
		r = P11E_ERR_FILE;
		goto out;
	}
	sweep_temps(dname, base);
	r = 0;
	goto out;
fail:
	log_error("cannot write %s: %s", path, strerror(err));
	r = P11E_ERR_FILE;
out:
	if (fd >= 0)
		close(fd);
	if (made)
		unlink(tmp);
	free(tmp);
	free(dir);
	return r;
}

int
store_unlink(const char *path)
{
	char *dir = NULL, *slash;
	int r = 0;

	if (unlink(path) != 0) {
		if (errno == ENOENT)
			return 0;
		log_error("cannot remove %s: %s", path, strerror(errno));
		return P11E_ERR_FILE;
	}
	if ((dir = strdup(path)) == NULL)
		return P11E_ERR_ALLOC;
	if ((slash = strrchr(dir, '/')) != NULL)
		slash[slash == dir ? 1 : 0] = '\0';
	if (fsync_dir(slash != NULL ? dir : ".") != 0) {
		log_error("cannot sync directory %s after removing %s: %s",
		          slash != NULL ? dir : ".", path, strerror(errno));
		r = P11E_ERR_FILE;
	}
	free(dir);
	return r;
}

int
store_read_file(const char *path, size_t max, unsigned char **out, size_t *len)
{
	struct stat st;
	unsigned char *buf = NULL, *nb;
	size_t cap, n = 0, limit = max < SIZE_MAX - 1 ? max : SIZE_MAX - 2;
	ssize_t k;
	int fd = -1, r = P11E_ERR_INTERNAL, err;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT) {
			r = P11E_ERR_NOTFOUND;
			goto out;
		}
		err = errno;
		goto fail;
	}
	if (fstat(fd, &st) != 0) {
		err = errno;
		goto fail;
	}
	if (S_ISREG(st.st_mode) && (unsigned long long)st.st_size > (unsigned long long)limit) {
		log_error("cannot read %s: larger than %zu bytes", path, max);
		r = P11E_ERR_FILE;
		goto out;
	}
	cap = S_ISREG(st.st_mode) && st.st_size >= 0 && (size_t)st.st_size < limit
	          ? (size_t)st.st_size + 2
	          : (limit < 4096 ? limit + 2 : 4096);
	if ((buf = malloc(cap)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (;;) {
		if (n + 1 == cap) {
			if (cap - 1 > limit)
				break;
			cap = cap - 1 > limit / 2 ? limit + 2 : cap * 2;
			if ((nb = realloc(buf, cap)) == NULL) {
				r = P11E_ERR_ALLOC;
				goto out;
			}
			buf = nb;
		}
		if ((k = read(fd, buf + n, cap - 1 - n)) < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			goto fail;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	if (n > limit) {
		log_error("cannot read %s: larger than %zu bytes", path, max);
		r = P11E_ERR_FILE;
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
	r = 0;
	goto out;
fail:
	log_error("cannot read %s: %s", path, strerror(err));
	r = P11E_ERR_FILE;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return r;
}

int
store_cert_pem(X509 *cert, char **out, size_t *len)
{
	BIO *b = NULL;
	char *data, *p = NULL;
	long n;
	int r = P11E_ERR_INTERNAL;

	if ((b = BIO_new(BIO_s_mem())) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	if (!PEM_write_bio_X509(b, cert) || (n = BIO_get_mem_data(b, &data)) <= 0) {
		log_openssl(LOG_LVL_ERROR, "cannot PEM-encode certificate");
		goto out;
	}
	if ((p = malloc((size_t)n + 1)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	memcpy(p, data, (size_t)n);
	p[n] = '\0';
	*out = p;
	*len = (size_t)n;
	p = NULL;
	r = 0;
out:
	BIO_free(b);
	free(p);
	return r;
}

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
		if ((path = path_join(dir, files[i])) == NULL) {
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
