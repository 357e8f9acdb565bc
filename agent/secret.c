/*
 * secret.c: reading secrets (PIN, challenge, passwords) from files.
 * Every buffer that held a secret is wiped with OPENSSL_cleanse.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "err.h"
#include "log.h"
#include "secret.h"

#define SECRET_MAX 4096

/*
 * Opens path without following a symlink, checks it is a regular file that
 * neither group nor others can access, reads at most SECRET_MAX bytes, strips
 * one trailing "\n" or "\r\n". *out is set only on success (secret_free it).
 */
int
secret_read_file(const char *path, const char *what, char **out)
{
	char buf[SECRET_MAX + 2];
	struct stat st;
	size_t len = 0;
	ssize_t k;
	int fd = -1, r = P11E_ERR_INTERNAL;

	if (what == NULL)
		what = "secret file";
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		if (errno == ELOOP) {
			log_error("%s %s is a symbolic link (refused); name the file itself", what,
			          path);
			r = P11E_ERR_CONFIG;
		} else {
			log_error("cannot read %s %s: %s", what, path, strerror(errno));
			r = P11E_ERR_FILE;
		}
		goto out;
	}
	if (fstat(fd, &st) == -1) {
		log_error("cannot read %s %s: %s", what, path, strerror(errno));
		r = P11E_ERR_FILE;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		log_error("%s %s is not a regular file", what, path);
		r = P11E_ERR_CONFIG;
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		log_error("%s %s is readable by others (mode %04o); run chmod 600 %s", what, path,
		          (unsigned)(st.st_mode & 07777), path);
		r = P11E_ERR_CONFIG;
		goto out;
	}
	while (len < SECRET_MAX + 1) {
		if ((k = read(fd, buf + len, SECRET_MAX + 1 - len)) == -1 && errno == EINTR)
			continue;
		if (k == -1) {
			log_error("cannot read %s %s: %s", what, path, strerror(errno));
			r = P11E_ERR_FILE;
			goto out;
		}
		if (k == 0)
			break;
		len += (size_t)k;
	}
	if (len > SECRET_MAX) {
		log_error("%s %s is larger than %d bytes", what, path, SECRET_MAX);
		r = P11E_ERR_CONFIG;
		goto out;
	}
	if (len > 0 && buf[len - 1] == '\n') {
		len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
	}
	if (len == 0) {
		log_error("%s %s is empty", what, path);
		r = P11E_ERR_CONFIG;
		goto out;
	}
	if (memchr(buf, '\n', len) != NULL || memchr(buf, '\0', len) != NULL) {
		log_error("%s %s must hold a single line (more than one line or a NUL byte found)",
		          what, path);
		r = P11E_ERR_CONFIG;
		goto out;
	}
	buf[len] = '\0';
	r = secret_dup(buf, out);
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	if (fd != -1)
		close(fd);
	return r;
}

/* Copies s into a new buffer for secret_free. P11E_ERR_ALLOC (logged). */
int
secret_dup(const char *s, char **out)
{
	size_t n;
	char *d = NULL;

	if (s == NULL)
		return P11E_ERR_INTERNAL;
	n = strlen(s) + 1;
	if ((d = malloc(n)) == NULL) {
		log_error("out of memory");
		return P11E_ERR_ALLOC;
	}
	memcpy(d, s, n);
	*out = d;
	return 0;
}

/* Wipes the string (up to its NUL) and frees it. Accepts NULL. */
void
secret_free(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}
