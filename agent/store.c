/*
 * store.c: files p11enroll writes and reads: directories, atomic replacement,
 * bounded reads, PEM encoding. The trust directory is store_trust.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
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

char *
store_path_join(const char *dir, const char *name)
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
store_holds(const char *path, const void *buf, size_t len, mode_t mode)
{
	struct stat st;
	unsigned char *cur = NULL;
	size_t n = 0;
	ssize_t k = 0;
	int fd, same = 0;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0)
		return 0;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 07777) != mode ||
	    st.st_uid != geteuid() || st.st_size < 0 || (size_t)st.st_size != len ||
	    (cur = malloc(len + 1)) == NULL)
		goto out;
	/* One byte more than len: a file that grew since fstat is not the same. */
	while (n < len + 1 &&
	       ((k = read(fd, cur + n, len + 1 - n)) > 0 || (k < 0 && errno == EINTR)))
		if (k > 0)
			n += (size_t)k;
	same = k == 0 && n == len && memcmp(cur, buf, len) == 0;
out:
	free(cur);
	close(fd);
	return same;
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

/* Reads the open file fd (path for messages) whole, at most max bytes. */
static int
read_fd(int fd, const char *path, size_t max, unsigned char **out, size_t *len)
{
	struct stat st;
	unsigned char *buf = NULL, *nb;
	size_t cap, n = 0, limit = max < SIZE_MAX - 1 ? max : SIZE_MAX - 2;
	ssize_t k;
	int r = P11E_ERR_INTERNAL, err;

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
	free(buf);
	return r;
}

int
store_read_file(const char *path, size_t max, unsigned char **out, size_t *len)
{
	int fd, r;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			return P11E_ERR_NOTFOUND;
		log_error("cannot read %s: %s", path, strerror(errno));
		return P11E_ERR_FILE;
	}
	r = read_fd(fd, path, max, out, len);
	close(fd);
	return r;
}

/* uid's name for a message ("uid 1234" when it has none). */
static void
user_name(uid_t uid, char *buf, size_t len)
{
	struct passwd *pw = getpwuid(uid);

	if (pw != NULL)
		snprintf(buf, len, "%s", pw->pw_name);
	else
		snprintf(buf, len, "uid %lu", (unsigned long)uid);
}

/* Owned by us or root and writable by nobody else, or (sticky_ok) root's and sticky. */
static int
safe_owner_mode(const struct stat *st, int sticky_ok)
{
	uid_t me = geteuid();

	if (st->st_uid != me && st->st_uid != 0)
		return 0;
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) == 0)
		return 1;
	return sticky_ok && S_ISDIR(st->st_mode) && st->st_uid == 0 && (st->st_mode & S_ISVTX);
}

/* The message for a path that is not safe_owner_mode. */
static int
refuse(const char *what, const char *path, const struct stat *st)
{
	char owner[64], me[80] = "root";

	user_name(st->st_uid, owner, sizeof(owner));
	if (geteuid() != 0) {
		user_name(geteuid(), me, sizeof(me) - 8);
		strcat(me, " or root");
	}
	log_error("refusing %s %s: owned by %s, mode %04o; it must belong to %s and not be "
	          "writable by group or others (chown/chmod it, or choose another path)",
	          what, path, owner, (unsigned)(st->st_mode & 07777), me);
	return P11E_ERR_CONFIG;
}

int
store_read_state(const char *path, size_t max, unsigned char **out, size_t *len)
{
	struct stat st;
	int fd, r;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0) {
		if (errno == ENOENT)
			return P11E_ERR_NOTFOUND;
		if (errno == ELOOP) {
			log_error("refusing state file %s: it is a symbolic link", path);
			return P11E_ERR_CONFIG;
		}
		log_error("cannot read %s: %s", path, strerror(errno));
		return P11E_ERR_FILE;
	}
	if (fstat(fd, &st) != 0) {
		log_error("cannot read %s: %s", path, strerror(errno));
		r = P11E_ERR_FILE;
	} else if (!S_ISREG(st.st_mode)) {
		log_error("refusing state file %s: not a regular file", path);
		r = P11E_ERR_CONFIG;
	} else if (!safe_owner_mode(&st, 0)) {
		r = refuse("state file", path, &st);
	} else {
		r = read_fd(fd, path, max, out, len);
	}
	close(fd);
	return r;
}

int
store_check_dir(const char *dir, const char *what)
{
	char *p = NULL, *real = NULL, *slash;
	struct stat st;
	int r = P11E_ERR_ALLOC, last, whole = 1;

	if (dir == NULL || dir[0] != '/') {
		log_error("%s %s is not an absolute path", what, dir != NULL ? dir : "(none)");
		return P11E_ERR_CONFIG;
	}
	if ((p = strdup(dir)) == NULL)
		goto out;
	/* Each prefix as given: a symbolic link must be ours or root's. */
	for (slash = p + 1, last = 0; !last; slash++) {
		if (*slash != '/' && *slash != '\0')
			continue;
		last = *slash == '\0';
		*slash = '\0';
		if (lstat(p, &st) != 0)
			break;
		if (S_ISLNK(st.st_mode) && st.st_uid != 0 && st.st_uid != geteuid()) {
			r = refuse(what, p, &st);
			goto out;
		}
		*slash = last ? '\0' : '/';
	}
	/* The part that exists, resolved: every directory ours or root's and not
	 * writable by others (above dir, a root-owned sticky one such as /tmp may be). */
	strcpy(p, dir);
	while ((real = realpath(p, NULL)) == NULL) {
		if (errno != ENOENT) {
			log_error("cannot resolve %s: %s", p, strerror(errno));
			r = P11E_ERR_FILE;
			goto out;
		}
		whole = 0;
		if ((slash = strrchr(p, '/')) == p) {
			p[1] = '\0';
			continue;
		}
		*slash = '\0';
	}
	for (;;) {
		if (stat(real, &st) != 0) {
			log_error("cannot inspect %s: %s", real, strerror(errno));
			r = P11E_ERR_FILE;
			goto out;
		}
		if (!safe_owner_mode(&st, !whole)) {
			r = refuse(whole ? what : "parent directory", real, &st);
			goto out;
		}
		whole = 0;
		if (strcmp(real, "/") == 0)
			break;
		if ((slash = strrchr(real, '/')) == real)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
	r = 0;
out:
	free(p);
	free(real);
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
