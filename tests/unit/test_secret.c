/*
 * test_secret.c: secret_read_file on files written to a temporary directory;
 * the arena (locked, excluded from dumps, wiped); the start-up hardening and
 * how it fails closed (in children whose system calls seccomp makes fail).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "capture.h"
#include <openssl/crypto.h>

#include "err.h"
#include "memscan.h"
#include "secret.h"

#define SENTINEL ((char *)(uintptr_t)0x5a5a)

static char tmpdir[PATH_MAX];
static char pin_path[PATH_MAX + 16];
static char err_path[PATH_MAX + 16];
static char errbuf[8192];

static void
write_bytes(const char *path, const char *content, size_t len, mode_t mode)
{
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

/* secret_read_file(path, what) with stderr captured into errbuf. */
static int
read_what(const char *path, const char *what, char **out)
{
	struct capture cap;
	int r;

	capture_begin(&cap);
	r = secret_read_file(path, what, out);
	capture_end(&cap, errbuf, sizeof(errbuf));
	return r;
}

static int
read_path(const char *path, char **out)
{
	return read_what(path, "PIN file", out);
}

/* Writes len bytes to tmpdir/pin with mode and reads it back. */
static int
read_bytes(const char *content, size_t len, mode_t mode, char **out)
{
	write_bytes(pin_path, content, len, mode);
	return read_path(pin_path, out);
}

static void
assert_reads(const char *content, size_t len, mode_t mode, const char *want)
{
	char *s = NULL;

	if (read_bytes(content, len, mode, &s) != 0)
		fail_msg("secret_read_file failed: %s", errbuf);
	assert_string_equal(s, want);
	assert_string_equal(errbuf, "");
	secret_free(s);
}

static void
assert_refused(const char *content, size_t len, mode_t mode, int err, const char *msg)
{
	char *s = SENTINEL;

	assert_int_equal(read_bytes(content, len, mode, &s), err);
	assert_ptr_equal(s, SENTINEL);
	if (strstr(errbuf, msg) == NULL)
		fail_msg("expected message\n  %s\ngot\n  %s", msg, errbuf);
}

static int
group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/p11e-secret-XXXXXX",
	         getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(pin_path, sizeof(pin_path), "%s/pin", tmpdir);
	snprintf(err_path, sizeof(err_path), "%s/stderr.txt", tmpdir);
	return 0;
}

static int
group_teardown(void **state)
{
	static const char *const names[] = {"pin", "stderr.txt", "link", "target"};
	char path[PATH_MAX + 16];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/dir", tmpdir);
	rmdir(path);
	return rmdir(tmpdir);
}

static void
test_mode_0600_ok(void **state)
{
	(void)state;
	assert_reads("1234\n", 5, 0600, "1234");
	assert_reads("no newline", 10, 0600, "no newline");
	assert_reads("pin with spaces \n", 17, 0600, "pin with spaces ");
}

static void
test_mode_0400_ok(void **state)
{
	(void)state;
	assert_reads("4321\n", 5, 0400, "4321");
}

static void
test_crlf_stripped(void **state)
{
	(void)state;
	assert_reads("1234\r\n", 6, 0600, "1234");
	/* a lone CR is not a line end */
	assert_reads("1234\r", 5, 0600, "1234\r");
}

static void
test_mode_0640_refused(void **state)
{
	char msg[3 * PATH_MAX];

	(void)state;
	snprintf(msg, sizeof(msg),
	         "PIN file %s is readable by others (mode 0640); run chmod 600 %s", pin_path,
	         pin_path);
	assert_refused("1234\n", 5, 0640, P11E_ERR_CONFIG, msg);
	assert_null(strstr(errbuf, "1234"));
}

static void
test_mode_0604_refused(void **state)
{
	char msg[3 * PATH_MAX];

	(void)state;
	snprintf(msg, sizeof(msg),
	         "PIN file %s is readable by others (mode 0604); run chmod 600 %s", pin_path,
	         pin_path);
	assert_refused("1234\n", 5, 0604, P11E_ERR_CONFIG, msg);
}

static void
test_missing_file(void **state)
{
	char path[PATH_MAX + 32], msg[2 * PATH_MAX];
	char *s = SENTINEL;

	(void)state;
	snprintf(path, sizeof(path), "%s/absent", tmpdir);
	assert_int_equal(read_path(path, &s), P11E_ERR_FILE);
	assert_ptr_equal(s, SENTINEL);
	snprintf(msg, sizeof(msg), "cannot read PIN file %s: No such file or directory", path);
	assert_non_null(strstr(errbuf, msg));
}

/* As root, the read is done by a child that drops to nobody (65534). */
static void
test_unreadable_file(void **state)
{
	char msg[2 * PATH_MAX];
	int status = 0, fd;
	ssize_t n;
	pid_t pid;

	(void)state;
	snprintf(msg, sizeof(msg), "cannot read PIN file %s: Permission denied", pin_path);
	if (geteuid() != 0) {
		assert_refused("1234\n", 5, 0000, P11E_ERR_FILE, msg);
		return;
	}
	write_bytes(pin_path, "1234\n", 5, 0600);
	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == 0) {
		char *s = NULL;

		fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || dup2(fd, STDERR_FILENO) < 0 || setgid(65534) != 0 ||
		    setuid(65534) != 0)
			_exit(2);
		_exit(secret_read_file(pin_path, "PIN file", &s) == P11E_ERR_FILE ? 0 : 1);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 2)
		skip(); /* cannot drop privileges here */
	assert_int_equal(WEXITSTATUS(status), 0);
	fd = open(err_path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, errbuf, sizeof(errbuf) - 1);
	assert_true(n >= 0);
	errbuf[n] = '\0';
	close(fd);
	if (strstr(errbuf, msg) == NULL)
		fail_msg("expected message\n  %s\ngot\n  %s", msg, errbuf);
}

static void
test_empty_refused(void **state)
{
	char msg[2 * PATH_MAX];

	(void)state;
	snprintf(msg, sizeof(msg), "PIN file %s is empty", pin_path);
	assert_refused("", 0, 0600, P11E_ERR_CONFIG, msg);
	assert_refused("\n", 1, 0600, P11E_ERR_CONFIG, msg);
	assert_refused("\r\n", 2, 0600, P11E_ERR_CONFIG, msg);
}

static void
test_more_than_one_line_refused(void **state)
{
	(void)state;
	/* only one trailing line end is stripped */
	assert_refused("1234\n\n", 6, 0600, P11E_ERR_CONFIG, "must hold a single line");
	assert_refused("1234\n5678\n", 10, 0600, P11E_ERR_CONFIG, "must hold a single line");
	assert_null(strstr(errbuf, "1234"));
	assert_refused("12\0"
	               "34",
	               5, 0600, P11E_ERR_CONFIG, "must hold a single line");
}

static void
test_size_limit(void **state)
{
	char *big = malloc(4098);
	char *s = NULL;
	char msg[2 * PATH_MAX];

	(void)state;
	assert_non_null(big);
	memset(big, '7', 4097);
	big[4097] = '\0';
	assert_int_equal(read_bytes(big, 4096, 0600, &s), 0);
	assert_int_equal(strlen(s), 4096);
	secret_free(s);
	snprintf(msg, sizeof(msg), "PIN file %s is larger than 4096 bytes", pin_path);
	assert_refused(big, 4097, 0600, P11E_ERR_CONFIG, msg);
	free(big);
}

static void
test_symlink_refused(void **state)
{
	char target[PATH_MAX + 16], link[PATH_MAX + 16];
	char *s = SENTINEL;

	(void)state;
	snprintf(target, sizeof(target), "%s/target", tmpdir);
	snprintf(link, sizeof(link), "%s/link", tmpdir);
	write_bytes(target, "1234\n", 5, 0600);
	unlink(link);
	assert_int_equal(symlink(target, link), 0);
	assert_int_equal(read_path(link, &s), P11E_ERR_CONFIG);
	assert_ptr_equal(s, SENTINEL);
	assert_non_null(strstr(errbuf, "is a symbolic link"));
}

static void
test_directory_refused(void **state)
{
	char dir[PATH_MAX + 16];
	char *s = SENTINEL;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/dir", tmpdir);
	rmdir(dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(read_path(dir, &s), P11E_ERR_CONFIG);
	assert_ptr_equal(s, SENTINEL);
	assert_non_null(strstr(errbuf, "is not a regular file"));
}

static void
test_default_what(void **state)
{
	char path[PATH_MAX + 32];
	char *s = SENTINEL;

	(void)state;
	snprintf(path, sizeof(path), "%s/absent", tmpdir);
	assert_int_equal(read_what(path, NULL, &s), P11E_ERR_FILE);
	assert_ptr_equal(s, SENTINEL);
	assert_non_null(strstr(errbuf, "cannot read secret file "));
	assert_int_equal(read_what(path, "password file", &s), P11E_ERR_FILE);
	assert_non_null(strstr(errbuf, "cannot read password file "));
}

static void
test_dup_and_free(void **state)
{
	const char *orig = "s3cret";
	char *s = NULL;

	(void)state;
	assert_int_equal(secret_dup(orig, &s), 0);
	assert_non_null(s);
	assert_ptr_not_equal(s, orig);
	assert_string_equal(s, orig);
	secret_free(s);
	secret_free(NULL);
}

/* ---- the arena ---- */

/* The VmFlags line of the mapping holding p, into flags. */
static void
flags_of(const void *p, char *flags, size_t size)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[1024];
	unsigned long lo, hi, a = (unsigned long)(uintptr_t)p;
	int in = 0;

	assert_non_null(f);
	flags[0] = '\0';
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') != NULL &&
		    line[0] != 'V')
			in = a >= lo && a < hi;
		else if (in && strncmp(line, "VmFlags:", 8) == 0) {
			strncpy(flags, line, size - 1);
			flags[size - 1] = '\0';
		}
	}
	fclose(f);
}

static int
all_zero(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

/* Blocks are in the arena, aligned, zeroed, apart; a released block is wiped and reused. */
static void
test_arena_blocks(void **state)
{
	static const size_t sizes[] = {1, 16, 17, 4000, 8192, 20000, 0};
	unsigned char *p[sizeof(sizes) / sizeof(sizes[0])], *again = NULL;
	char flags[512], *h;
	size_t i, j;

	(void)state;
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		assert_int_equal(secret_alloc(sizes[i], (void **)&p[i]), 0);
		assert_true(secret_in_arena(p[i]));
		assert_int_equal((uintptr_t)p[i] % 16, 0);
		assert_true(all_zero(p[i], sizes[i]));
		memset(p[i], 0xa5, sizes[i] > 0 ? sizes[i] : 1);
		flags_of(p[i], flags, sizeof(flags));
		if (strstr(flags, " dd") == NULL || strstr(flags, " lo") == NULL)
			fail_msg("block of %zu bytes: mapping not locked and excluded: %s",
			         sizes[i], flags);
	}
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++)
			if (i != j)
				assert_true(p[i] + (sizes[i] ? sizes[i] : 1) <= p[j] ||
				            p[j] + (sizes[j] ? sizes[j] : 1) <= p[i]);
	/* released: wiped, and the place is handed out again */
	secret_release(p[2]);
	assert_true(all_zero(p[2], 32));
	assert_int_equal(secret_alloc(20, (void **)&again), 0);
	assert_ptr_equal(again, p[2]);
	secret_release(again);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if (i != 2)
			secret_release(p[i]);
	assert_false(secret_in_arena(p[5])); /* a big block's mapping is gone */
	secret_release(NULL);
	/* a secret some library malloc'ed is wiped and freed */
	h = malloc(32);
	assert_non_null(h);
	strcpy(h, "library copy");
	assert_false(secret_in_arena(h));
	secret_release(h);
}

/* Many blocks across several chunks, released in an interleaved order. */
static void
test_arena_many(void **state)
{
	enum { N = 3000 };
	char **v = calloc(N, sizeof(*v));
	size_t i;

	(void)state;
	assert_non_null(v);
	for (i = 0; i < N; i++) {
		assert_int_equal(secret_alloc(1 + i % 70, (void **)&v[i]), 0);
		memset(v[i], (int)(i & 0xff), 1 + i % 70);
	}
	for (i = 0; i < N; i += 2)
		secret_release(v[i]);
	for (i = 0; i < N; i += 2) {
		assert_int_equal(secret_alloc(1 + i % 70, (void **)&v[i]), 0);
		memset(v[i], (int)(i & 0xff), 1 + i % 70);
	}
	for (i = 0; i < N; i++) {
		assert_int_equal((unsigned char)v[i][i % 70], (unsigned char)(i & 0xff));
		secret_release(v[i]);
	}
	free(v);
}

/* What secret_dup and secret_read_file hand out lives in the arena. */
static void
test_secrets_in_arena(void **state)
{
	char *s = NULL;

	(void)state;
	assert_int_equal(secret_dup("s3cret", &s), 0);
	assert_true(secret_in_arena(s));
	secret_free(s);
	assert_int_equal(read_bytes("1234\n", 5, 0600, &s), 0);
	assert_true(secret_in_arena(s));
	secret_free(s);
}

/* 32 random letters into the arena: a marker no other memory holds. */
static char *
new_marker(void)
{
	char *m = NULL;
	int fd = open("/dev/urandom", O_RDONLY);
	size_t i;

	assert_int_equal(secret_alloc(33, (void **)&m), 0);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, m, 32), 32);
	close(fd);
	for (i = 0; i < 32; i++)
		m[i] = (char)('a' + (unsigned char)m[i] % 26);
	return m;
}

/* Leaves the marker 32 KiB down the stack, below what memscan's calls reach. */
__attribute__((noinline)) static void
leave_on_stack(const char *marker)
{
	volatile char pad[32 * 1024];

	memcpy((char *)pad, marker, 32);
	__asm__ volatile("" : : "r"(pad) : "memory");
}

static int
on_stack_dumped(const char *marker)
{
	struct memscan_hit hit;

	memscan(marker + 8, 24, &hit);
	return hit.dumped;
}

/* secret_burn_stack zeroes what a callee left on the stack. */
static void
test_burn_stack(void **state)
{
	char *m = new_marker();

	(void)state;
	if (!MEMSCAN_EXACT) {
		secret_release(m);
		skip();
	}
	leave_on_stack(m);
	assert_true(on_stack_dumped(m) > 0); /* the check itself */
	leave_on_stack(m);
	secret_burn_stack(64 * 1024);
	assert_int_equal(on_stack_dumped(m), 0);
	secret_release(m);
}

/* ---- start-up hardening, in children ---- */

#if defined(__x86_64__)
#define SECCOMP_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SECCOMP_ARCH AUDIT_ARCH_AARCH64
#endif

#define ANY_ARG (-1)

struct deny {
	long nr;        /* system call */
	int argi;       /* argument to compare (low 32 bits), or ANY_ARG */
	unsigned value; /* its value */
	int err;        /* errno returned */
};

#ifdef SECCOMP_ARCH
/* Makes the listed calls fail with their errno from now on (this process only). */
static int
deny_calls(const struct deny *d, size_t n)
{
	struct sock_filter f[64];
	struct sock_fprog prog;
	size_t i, k = 0;

	f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
	                                      offsetof(struct seccomp_data, arch));
	f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SECCOMP_ARCH, 1, 0);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	for (i = 0; i < n && k + 6 < sizeof(f) / sizeof(f[0]); i++) {
		f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		                                      offsetof(struct seccomp_data, nr));
		if (d[i].argi == ANY_ARG) {
			f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
			                                      (unsigned)d[i].nr, 0, 1);
		} else {
			f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
			                                      (unsigned)d[i].nr, 0, 3);
			f[k++] = (struct sock_filter)BPF_STMT(
			    BPF_LD | BPF_W | BPF_ABS,
			    offsetof(struct seccomp_data, args[d[i].argi]));
			f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, d[i].value,
			                                      0, 1);
		}
		f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
		                                      SECCOMP_RET_ERRNO | (unsigned)d[i].err);
	}
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	prog.len = (unsigned short)k;
	prog.filter = f;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
		return -1;
	return 0;
}
#endif

/* Runs fn in a child, its stderr into errbuf; returns its exit status (255: killed). */
static int
in_child(int (*fn)(void))
{
	int status = 0, fd;
	ssize_t n;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == 0) {
		fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
			_exit(100);
		_exit(fn());
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	fd = open(err_path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, errbuf, sizeof(errbuf) - 1);
	assert_true(n >= 0);
	errbuf[n] = '\0';
	close(fd);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

static int
child_harden(void)
{
	struct rlimit rl;
	char *m = NULL, *s = NULL, flags[512];
	unsigned char *b, *c, after[16];
	volatile uintptr_t at; /* laundered: only looked at through /proc/self/mem */

	if (secret_harden() != 0)
		return 10;
	if (getrlimit(RLIMIT_CORE, &rl) != 0 || rl.rlim_cur != 0 || rl.rlim_max != 0)
		return 11;
	if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
		return 12;
	/* OpenSSL's frees are wiped now: the freed block, looked at through
	 * /proc/self/mem, no longer holds the marker past the allocator's own
	 * first 16 bytes. */
	m = new_marker();
	if ((b = OPENSSL_malloc(64)) == NULL)
		return 13;
	memcpy(b, m, 32);
	at = (uintptr_t)b + 16;
	OPENSSL_free(b);
	if (memscan_peek((const void *)at, after, 16) != 0 || memcmp(after, m + 16, 16) == 0)
		return 14;
	/* the check itself: a plain free() leaves it */
	if ((c = malloc(64)) == NULL)
		return 13;
	memcpy(c, m, 32);
	__asm__ volatile("" : : "r"(c) : "memory"); /* the copy is not optimised away */
	at = (uintptr_t)c + 16;
	free(c);
	if (memscan_peek((const void *)at, after, 16) != 0 || memcmp(after, m + 16, 16) != 0)
		return 15;
	if (secret_dup("x", &s) != 0)
		return 16;
	flags_of(s, flags, sizeof(flags));
	if (strstr(flags, " dd") == NULL || strstr(flags, " lo") == NULL)
		return 17;
	return 0;
}

/* Core dumps off, undumpable, arena ready, OpenSSL wiping what it frees. */
static void
test_harden(void **state)
{
	(void)state;
	assert_int_equal(in_child(child_harden), 0);
	assert_string_equal(errbuf, "");
}

#ifdef SECCOMP_ARCH
static int
child_no_core_limit(void)
{
	static const struct deny d[] = {
#ifdef SYS_setrlimit
	    {SYS_setrlimit, 0, RLIMIT_CORE, EPERM},
#endif
	    {SYS_prlimit64, 1, RLIMIT_CORE, EPERM},
	};

	if (deny_calls(d, sizeof(d) / sizeof(d[0])) != 0)
		return 99;
	return secret_harden() == P11E_ERR_INTERNAL ? 0 : 1;
}

static int
child_dumpable(void)
{
	static const struct deny d[] = {{SYS_prctl, 0, PR_SET_DUMPABLE, EPERM}};

	if (deny_calls(d, 1) != 0)
		return 99;
	return secret_harden() == P11E_ERR_INTERNAL ? 0 : 1;
}

static int
child_no_dontdump(void)
{
	static const struct deny d[] = {{SYS_madvise, 2, MADV_DONTDUMP, EINVAL}};
	void *big = NULL;

	if (deny_calls(d, 1) != 0)
		return 99;
	/* a block that needs a new mapping is refused */
	if (secret_alloc(100000, &big) != P11E_ERR_INTERNAL || big != NULL)
		return 1;
	/* (this child's parent has no arena yet: see main) */
	return secret_harden() == P11E_ERR_INTERNAL ? 0 : 2;
}

static int
child_no_mlock(void)
{
	static const struct deny d[] = {{SYS_mlock, ANY_ARG, 0, EPERM}};
	char *s = NULL, *big = NULL, *big2 = NULL, flags[512];

	if (deny_calls(d, 1) != 0)
		return 99;
	if (secret_dup("x", &s) != 0 || secret_alloc(100000, (void **)&big) != 0 ||
	    secret_alloc(200000, (void **)&big2) != 0)
		return 1;
	flags_of(s, flags, sizeof(flags));
	if (strstr(flags, " dd") == NULL)
		return 2;
	secret_free(s);
	secret_release(big);
	secret_release(big2);
	return 0;
}
#endif

/* Dumps that cannot be disabled: harden fails (main exits 70), naming the call. */
static void
test_harden_fails_closed(void **state)
{
	(void)state;
#ifndef SECCOMP_ARCH
	skip(); /* no seccomp filter for this architecture: the fault cannot be made */
#else
	assert_int_equal(in_child(child_no_core_limit), 0);
	assert_non_null(strstr(errbuf, "cannot disable core dumps (setrlimit RLIMIT_CORE: "
	                               "Operation not permitted): refusing to run"));
	assert_int_equal(in_child(child_dumpable), 0);
	assert_non_null(strstr(errbuf, "cannot make the process undumpable (prctl "
	                               "PR_SET_DUMPABLE: Operation not permitted): refusing "
	                               "to run"));
	assert_int_equal(in_child(child_no_dontdump), 0);
	assert_non_null(strstr(errbuf, "cannot exclude the memory for secrets from core dumps "
	                               "(madvise MADV_DONTDUMP: Invalid argument); refusing to "
	                               "keep secrets there"));
#endif
}

/* Memory that cannot be locked: one warning naming the limit, and secrets still work. */
static void
test_mlock_refused_warns_once(void **state)
{
	const char *w, *again;

	(void)state;
#ifndef SECCOMP_ARCH
	skip();
#else
	assert_int_equal(in_child(child_no_mlock), 0);
	w = strstr(errbuf, "warning: cannot lock ");
	assert_non_null(w);
	assert_non_null(strstr(errbuf, "bytes of memory for secrets (mlock: Operation not "
	                               "permitted; locked-memory limit "));
	assert_non_null(strstr(errbuf, "they may be written to swap; raise the limit (`ulimit "
	                               "-l`, systemd LimitMEMLOCK=)"));
	again = strstr(w + strlen("warning: cannot lock "), "cannot lock");
	assert_null(again);
#endif
}

int
main(void)
{
	/* First: their children must start without an arena, as main() does. */
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_harden),
	    cmocka_unit_test(test_harden_fails_closed),
	    cmocka_unit_test(test_mlock_refused_warns_once),
	    cmocka_unit_test(test_arena_blocks),
	    cmocka_unit_test(test_arena_many),
	    cmocka_unit_test(test_secrets_in_arena),
	    cmocka_unit_test(test_burn_stack),
	    cmocka_unit_test(test_mode_0600_ok),
	    cmocka_unit_test(test_mode_0400_ok),
	    cmocka_unit_test(test_crlf_stripped),
	    cmocka_unit_test(test_mode_0640_refused),
	    cmocka_unit_test(test_mode_0604_refused),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_unreadable_file),
	    cmocka_unit_test(test_empty_refused),
	    cmocka_unit_test(test_more_than_one_line_refused),
	    cmocka_unit_test(test_size_limit),
	    cmocka_unit_test(test_symlink_refused),
	    cmocka_unit_test(test_directory_refused),
	    cmocka_unit_test(test_default_what),
	    cmocka_unit_test(test_dup_and_free),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
