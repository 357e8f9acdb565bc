/*
 * secret.c: secrets (PIN, challenge, passwords) in memory that is locked,
 * excluded from core dumps and wiped when released; reading them from files;
 * the process's start-up hardening against dumps.
 *
 * The arena is a list of anonymous mappings: small blocks come from 16 KiB
 * chunks managed with a bitmap of 16-byte granules, larger ones get a mapping
 * of their own that goes when they are released. Its bookkeeping holds no
 * secret and lives on the ordinary heap.
 */
#include <alloca.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "err.h"
#include "log.h"
#include "secret.h"

#define SECRET_MAX 4096
#define GRAN 16                   /* bytes per granule: the alignment of blocks */
#define CHUNK_SIZE (16 * 1024)    /* a chunk of small blocks */
#define NGRAN (CHUNK_SIZE / GRAN) /* granules per chunk */
#define BIG_MIN (CHUNK_SIZE / 2)  /* blocks larger than this get a mapping of their own */
#define BURN_MAX (256 * 1024)     /* most stack secret_burn_stack zeroes */
#define NO_RUN ((size_t)-1)

struct chunk {
	unsigned char *base;
	size_t size;               /* bytes mapped */
	int big;                   /* one block of its own, at base */
	size_t hint;               /* no free granule below this one */
	unsigned short len[NGRAN]; /* at a block's first granule: its granules; else 0 */
	unsigned char used[NGRAN / 8];
	struct chunk *next;
};

static struct chunk *chunks;
static int lock_warned, atfork_set;

static int
is_used(const struct chunk *c, size_t i)
{
	return (c->used[i / 8] >> (i % 8)) & 1;
}

static void
set_used(struct chunk *c, size_t i, size_t n, int on)
{
	for (; n > 0; i++, n--) {
		if (on)
			c->used[i / 8] |= (unsigned char)(1u << (i % 8));
		else
			c->used[i / 8] &= (unsigned char)~(1u << (i % 8));
	}
}

/* mlock(2) itself: sanitizers replace the libc call with one that locks nothing. */
static int
lock(void *p, size_t size)
{
	return (int)syscall(SYS_mlock, p, size);
}

/* A forked child does not inherit memory locks: take them again. */
static void
relock_in_child(void)
{
	struct chunk *c;

	for (c = chunks; c != NULL; c = c->next)
		(void)lock(c->base, c->size);
}

static void
warn_unlocked(size_t size, int err)
{
	struct rlimit rl;
	char lim[48] = "unknown";

	if (lock_warned)
		return;
	lock_warned = 1;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
		if (rl.rlim_cur == RLIM_INFINITY)
			snprintf(lim, sizeof(lim), "unlimited");
		else
			snprintf(lim, sizeof(lim), "%llu KiB",
			         (unsigned long long)rl.rlim_cur / 1024);
	}
	log_warn("cannot lock %zu bytes of memory for secrets (mlock: %s; locked-memory limit "
	         "%s): they may be written to swap; raise the limit (`ulimit -l`, systemd "
	         "LimitMEMLOCK=)",
	         size, strerror(err), lim);
}

/* Maps size bytes (a multiple of the page size) excluded from dumps, locked if possible. */
static int
new_chunk(size_t size, int big, struct chunk **out)
{
	struct chunk *c = NULL;
	void *p;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_error("out of memory");
		return P11E_ERR_ALLOC;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		log_error("out of memory (mapping %zu bytes for secrets: %s)", size,
		          strerror(errno));
		free(c);
		return P11E_ERR_ALLOC;
	}
	if (madvise(p, size, MADV_DONTDUMP) != 0) {
		log_error("cannot exclude the memory for secrets from core dumps (madvise "
		          "MADV_DONTDUMP: %s); refusing to keep secrets there",
		          strerror(errno));
		munmap(p, size);
		free(c);
		return P11E_ERR_INTERNAL;
	}
	if (lock(p, size) != 0)
		warn_unlocked(size, errno);
	if (!atfork_set && pthread_atfork(NULL, NULL, relock_in_child) == 0)
		atfork_set = 1;
	c->base = p;
	c->size = size;
	c->big = big;
	c->next = chunks;
	chunks = c;
	*out = c;
	return 0;
}

/* First run of n free granules at or above the chunk's hint, or NO_RUN. */
static size_t
find_run(const struct chunk *c, size_t n)
{
	size_t i = c->hint, k;

	while (i + n <= NGRAN) {
		for (k = 0; k < n && !is_used(c, i + k); k++)
			;
		if (k == n)
			return i;
		i += k + 1;
	}
	return NO_RUN;
}

int
secret_alloc(size_t n, void **out)
{
	struct chunk *c;
	size_t g, i = NO_RUN, page;
	int r;

	if (n == 0)
		n = 1;
	if (n > BIG_MIN) {
		page = (size_t)sysconf(_SC_PAGESIZE);
		if (n > SIZE_MAX - page) {
			log_error("out of memory");
			return P11E_ERR_ALLOC;
		}
		if ((r = new_chunk((n + page - 1) / page * page, 1, &c)) != 0)
			return r;
		*out = c->base;
		return 0;
	}
	g = (n + GRAN - 1) / GRAN;
	for (c = chunks; c != NULL; c = c->next)
		if (!c->big && (i = find_run(c, g)) != NO_RUN)
			break;
	if (c == NULL) {
		if ((r = new_chunk(CHUNK_SIZE, 0, &c)) != 0)
			return r;
		i = 0;
	}
	set_used(c, i, g, 1);
	c->len[i] = (unsigned short)g;
	if (i == c->hint)
		c->hint = i + g;
	memset(c->base + i * GRAN, 0, g * GRAN);
	*out = c->base + i * GRAN;
	return 0;
}

static int
holds(const struct chunk *c, const void *p)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)c->base;

	return a >= b && a - b < c->size;
}

int
secret_in_arena(const void *p)
{
	const struct chunk *c;

	for (c = chunks; c != NULL; c = c->next)
		if (holds(c, p))
			return 1;
	return 0;
}

void
secret_release(void *p)
{
	struct chunk *c, **pp;
	size_t off, g;

	if (p == NULL)
		return;
	for (pp = &chunks; (c = *pp) != NULL; pp = &c->next)
		if (holds(c, p))
			break;
	if (c == NULL) {
		secret_wipe_free(p);
		return;
	}
	off = (size_t)((unsigned char *)p - c->base);
	if (c->big) {
		if (off != 0)
			goto bad;
		OPENSSL_cleanse(c->base, c->size);
		munmap(c->base, c->size);
		*pp = c->next;
		free(c);
		return;
	}
	if (off % GRAN != 0 || (g = c->len[off / GRAN]) == 0)
		goto bad;
	OPENSSL_cleanse(p, g * GRAN);
	set_used(c, off / GRAN, g, 0);
	c->len[off / GRAN] = 0;
	if (off / GRAN < c->hint)
		c->hint = off / GRAN;
	return;
bad:
	/* A double release or a pointer into a block: the arena's state is unknown. */
	log_error("releasing %p, which is no block of the secret arena (a bug)", p);
	abort();
}

void
secret_free(char *s)
{
	secret_release(s);
}

int
secret_dup(const char *s, char **out)
{
	size_t n;
	void *d = NULL;
	int r;

	if (s == NULL)
		return P11E_ERR_INTERNAL;
	n = strlen(s) + 1;
	if ((r = secret_alloc(n, &d)) != 0)
		return r;
	memcpy(d, s, n);
	*out = d;
	return 0;
}

/*
 * Opens path without following a symlink, checks it is a regular file that
 * neither group nor others can access, reads at most SECRET_MAX bytes into
 * the arena, strips one trailing "\n" or "\r\n". *out is set only on success.
 */
int
secret_read_file(const char *path, const char *what, char **out)
{
	char *buf = NULL;
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
	if ((r = secret_alloc(SECRET_MAX + 2, (void **)&buf)) != 0)
		goto out;
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
	r = P11E_ERR_CONFIG;
	if (len > SECRET_MAX) {
		log_error("%s %s is larger than %d bytes", what, path, SECRET_MAX);
		goto out;
	}
	if (len > 0 && buf[len - 1] == '\n') {
		len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
	}
	if (len == 0) {
		log_error("%s %s is empty", what, path);
		goto out;
	}
	if (memchr(buf, '\n', len) != NULL || memchr(buf, '\0', len) != NULL) {
		log_error("%s %s must hold a single line (more than one line or a NUL byte found)",
		          what, path);
		goto out;
	}
	buf[len] = '\0';
	r = secret_dup(buf, out);
out:
	secret_release(buf);
	if (fd != -1)
		close(fd);
	return r;
}

__attribute__((noinline)) void
secret_burn_stack(size_t n)
{
	unsigned char *p;

	if (n == 0)
		return;
	if (n > BURN_MAX)
		n = BURN_MAX;
	p = alloca(n);
	OPENSSL_cleanse(p, n);
}

/* ---- allocators that wipe what they free ---- */

void
secret_wipe_free(void *p)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, malloc_usable_size(p));
	free(p);
}

void *
secret_wipe_malloc(size_t n)
{
	return malloc(n);
}

void *
secret_wipe_calloc(size_t nmemb, size_t size)
{
	return calloc(nmemb, size);
}

void *
secret_wipe_realloc(void *p, size_t n)
{
	size_t old;
	void *q;

	if (p == NULL)
		return malloc(n);
	/* Never in place: a block that moves would leave its old copy unwiped. */
	old = malloc_usable_size(p);
	if ((q = malloc(n > 0 ? n : 1)) == NULL)
		return NULL;
	memcpy(q, p, old < n ? old : n);
	secret_wipe_free(p);
	return q;
}

char *
secret_wipe_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d;

	if ((d = malloc(n)) != NULL)
		memcpy(d, s, n);
	return d;
}

static void *
crypto_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return malloc(n);
}

static void *
crypto_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return secret_wipe_realloc(p, n);
}

static void
crypto_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	secret_wipe_free(p);
}

/* ---- start-up hardening ---- */

int
secret_harden(void)
{
	struct rlimit rl = {0, 0};
	void *probe = NULL;
	int r;

	errno = 0;
	if (setrlimit(RLIMIT_CORE, &rl) != 0 || getrlimit(RLIMIT_CORE, &rl) != 0 ||
	    rl.rlim_cur != 0 || rl.rlim_max != 0) {
		log_error("cannot disable core dumps (setrlimit RLIMIT_CORE: %s): refusing to run, "
		          "since a dump would hold PINs and challenges",
		          errno != 0 ? strerror(errno) : "the limit did not change");
		return P11E_ERR_INTERNAL;
	}
	errno = 0;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) {
		log_error(
		    "cannot make the process undumpable (prctl PR_SET_DUMPABLE: %s): refusing "
		    "to run, since a dump or another user's debugger would see PINs and "
		    "challenges",
		    errno != 0 ? strerror(errno) : "it is still dumpable");
		return P11E_ERR_INTERNAL;
	}
	/* The arena now: if it cannot be kept out of dumps, nothing runs. */
	if ((r = secret_alloc(1, &probe)) != 0)
		return r;
	secret_release(probe);
	/* Fails only when OpenSSL has allocated already, i.e. called too late. */
	if (!CRYPTO_set_mem_functions(crypto_malloc, crypto_realloc, crypto_free))
		log_debug("OpenSSL allocated memory before the start-up hardening: the blocks it "
		          "frees are not wiped");
	return 0;
}
