/*
 * fault_io.c: an LD_PRELOAD shim of the tests' own that ends the process with
 * SIGKILL in the middle of its file writes, as a crash or a power cut would
 * (short of losing the page cache). The environment is read at load time:
 *
 *   FAULT_IO_KILL=OP:GLOB[:N][:WHEN]
 *                 the Nth call (default 1st) of OP on a path matching GLOB
 *                 (fnmatch(3) without flags: '*' also matches '/') is the last:
 *                   OP    write (write, pwrite), fsync (fsync, fdatasync),
 *                         rename (rename, renameat, renameat2: the new or the old
 *                         path), symlink (symlink, symlinkat: the link's path),
 *                         unlink (unlink, unlinkat)
 *                   WHEN  before (default): the call never happens;
 *                         after: right after it returned;
 *                         half: (write only) half of the bytes are written first
 *   FAULT_IO_LOG=FILE
 *                 appends "OP PATH" for every call of an OP on a path (whatever the
 *                 GLOB), and "OP PATH KILLED" for the fatal one. Relative paths of
 *                 the *at() calls are joined to their directory.
 *
 * write and fsync see the path of their file descriptor through /proc/self/fd,
 * so files opened by any means (mkstemp included) count. Writes to anything
 * but a regular file (the terminal, pipes, sockets) are neither logged nor
 * counted. A bad setting ends the process with a message on stderr, so a
 * mistyped test fails loudly. Not thread-safe; p11enroll writes from one thread.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

enum op { OP_WRITE, OP_FSYNC, OP_RENAME, OP_SYMLINK, OP_UNLINK, NOPS };
enum when { W_BEFORE, W_AFTER, W_HALF };

static const char *const opnames[NOPS] = {"write", "fsync", "rename", "symlink", "unlink"};

static struct {
	int op; /* -1: no kill */
	char glob[PATH_MAX];
	unsigned long n, seen;
	int when;
	char log[PATH_MAX]; /* "" for none */
} S = {.op = -1};

/* The log goes straight to the kernel: write() here would be this shim's own. */
static void
log_line(int op, const char *path, int killed)
{
	char line[PATH_MAX + 64];
	int fd, n;

	if (S.log[0] == '\0')
		return;
	n = snprintf(line, sizeof(line), "%s %s%s\n", opnames[op], path, killed ? " KILLED" : "");
	if (n <= 0 || (size_t)n >= sizeof(line))
		return;
	fd = (int)syscall(SYS_openat, AT_FDCWD, S.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
	                  0600);
	if (fd < 0)
		return;
	(void)syscall(SYS_write, fd, line, (size_t)n);
	(void)syscall(SYS_close, fd);
}

static void
die(const char *val, const char *why)
{
	fprintf(stderr, "fault-io: FAULT_IO_KILL=%s: %s\n", val, why);
	_exit(70);
}

__attribute__((constructor)) static void
configure(void)
{
	const char *v = getenv("FAULT_IO_KILL"), *l = getenv("FAULT_IO_LOG");
	char buf[PATH_MAX + 64], *f[4] = {NULL, NULL, NULL, NULL}, *p, *end;
	int i, nf = 0;

	if (l != NULL && *l != '\0' && strlen(l) < sizeof(S.log))
		strcpy(S.log, l);
	if (v == NULL || *v == '\0')
		return;
	if (strlen(v) >= sizeof(buf))
		die(v, "too long");
	strcpy(buf, v);
	for (p = buf; p != NULL && nf < 4; nf++) {
		f[nf] = p;
		if ((p = strchr(p, ':')) != NULL)
			*p++ = '\0';
	}
	if (p != NULL || nf < 2 || *f[1] == '\0')
		die(v, "expected OP:GLOB[:N][:before|after|half]");
	for (i = 0; i < NOPS; i++)
		if (strcmp(f[0], opnames[i]) == 0)
			S.op = i;
	if (S.op < 0)
		die(v, "OP must be write, fsync, rename, symlink or unlink");
	strcpy(S.glob, f[1]);
	S.n = 1;
	if (nf > 2 && *f[2] != '\0') {
		S.n = strtoul(f[2], &end, 10);
		if (*end != '\0' || S.n == 0 || f[2][0] < '0' || f[2][0] > '9')
			die(v, "N must be a number >= 1");
	}
	S.when = W_BEFORE;
	if (nf > 3 && strcmp(f[3], "after") == 0)
		S.when = W_AFTER;
	else if (nf > 3 && strcmp(f[3], "half") == 0 && S.op == OP_WRITE)
		S.when = W_HALF;
	else if (nf > 3 && strcmp(f[3], "before") != 0)
		die(v, "WHEN must be before, after or half (half: write only)");
}

/* The path of fd when it is a regular file; 0 when it is not, or unknown. */
static int
fd_path(int fd, char *out, size_t len)
{
	char link[64];
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, out, len - 1)) <= 0)
		return 0;
	out[n] = '\0';
	return 1;
}

/* dir/rel for an *at() call (rel as is when absolute or dirfd is AT_FDCWD). */
static void
at_path(int dirfd, const char *rel, char *out, size_t len)
{
	char link[64];
	ssize_t n;
	size_t rl = strlen(rel);

	if (rel[0] != '/' && dirfd != AT_FDCWD) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
		if ((n = readlink(link, out, len - 1)) > 0 && (size_t)n + rl + 2 <= len) {
			out[n] = '/';
			memcpy(out + n + 1, rel, rl + 1);
			return;
		}
	}
	snprintf(out, len, "%s", rel);
}

/*
 * Logs one call of op on path (and on path2 when not NULL); the W_* of the
 * kill when this call is the fatal one (W_BEFORE kills here), else -1.
 */
static int
check(int op, const char *path, const char *path2)
{
	int hit;

	log_line(op, path, 0);
	if (op != S.op)
		return -1;
	hit = fnmatch(S.glob, path, 0) == 0 || (path2 != NULL && fnmatch(S.glob, path2, 0) == 0);
	if (!hit || ++S.seen != S.n)
		return -1;
	if (S.when == W_BEFORE) {
		log_line(op, path, 1);
		raise(SIGKILL);
	}
	return S.when;
}

static void
kill_after(int op, const char *path)
{
	log_line(op, path, 1);
	raise(SIGKILL);
}

/* After the real call (result r): the kill when w says so, else r. */
static int
after(int w, int op, const char *path, int r)
{
	if (w == W_AFTER)
		kill_after(op, path);
	return r;
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

/* write (off < 0) or pwrite, under check(); W_HALF writes half first. */
static ssize_t
write_common(int fd, const void *buf, size_t count, off_t off)
{
	char p[PATH_MAX];
	int w = -1;
	ssize_t r;

	if (fd_path(fd, p, sizeof(p)))
		w = check(OP_WRITE, p, NULL);
	if (w == W_HALF) {
		(void)(off < 0 ? REAL(write)(fd, buf, count / 2)
		               : REAL(pwrite)(fd, buf, count / 2, off));
		kill_after(OP_WRITE, p);
	}
	r = off < 0 ? REAL(write)(fd, buf, count) : REAL(pwrite)(fd, buf, count, off);
	if (w == W_AFTER)
		kill_after(OP_WRITE, p);
	return r;
}

ssize_t
write(int fd, const void *buf, size_t count)
{
	return write_common(fd, buf, count, -1);
}

ssize_t
pwrite(int fd, const void *buf, size_t count, off_t off)
{
	return write_common(fd, buf, count, off < 0 ? 0 : off);
}

static int
sync_common(int fd, int data)
{
	char p[PATH_MAX];
	int w = -1, r;

	if (fd_path(fd, p, sizeof(p)))
		w = check(OP_FSYNC, p, NULL);
	r = data ? REAL(fdatasync)(fd) : REAL(fsync)(fd);
	return after(w, OP_FSYNC, p, r);
}

int
fsync(int fd)
{
	return sync_common(fd, 0);
}

int
fdatasync(int fd)
{
	return sync_common(fd, 1);
}

int
renameat2(int od, const char *op, int nd, const char *np, unsigned int flags)
{
	char a[PATH_MAX], b[PATH_MAX];
	int w, r;

	at_path(od, op, a, sizeof(a));
	at_path(nd, np, b, sizeof(b));
	w = check(OP_RENAME, b, a);
	r = REAL(renameat2)(od, op, nd, np, flags);
	return after(w, OP_RENAME, b, r);
}

int
renameat(int od, const char *op, int nd, const char *np)
{
	return renameat2(od, op, nd, np, 0);
}

int
rename(const char *op, const char *np)
{
	return renameat2(AT_FDCWD, op, AT_FDCWD, np, 0);
}

int
symlinkat(const char *target, int dirfd, const char *link)
{
	char p[PATH_MAX];
	int w;

	at_path(dirfd, link, p, sizeof(p));
	w = check(OP_SYMLINK, p, NULL); /* before the call: it may kill */
	return after(w, OP_SYMLINK, p, REAL(symlinkat)(target, dirfd, link));
}

int
symlink(const char *target, const char *link)
{
	return symlinkat(target, AT_FDCWD, link);
}

int
unlinkat(int dirfd, const char *path, int flags)
{
	char p[PATH_MAX];
	int w;

	at_path(dirfd, path, p, sizeof(p));
	w = check(OP_UNLINK, p, NULL); /* before the call: it may kill */
	return after(w, OP_UNLINK, p, REAL(unlinkat)(dirfd, path, flags));
}

int
unlink(const char *path)
{
	return unlinkat(AT_FDCWD, path, 0);
}
