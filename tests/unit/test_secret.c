/*
 * test_secret.c: secret_read_file on files written to a temporary directory.
 */
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
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
	int saved, fd, r;
	ssize_t n;

	fflush(stderr);
	fd = open(err_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	r = secret_read_file(path, what, out);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	n = read(fd, errbuf, sizeof(errbuf) - 1);
	assert_true(n >= 0);
	errbuf[n] = '\0';
	close(fd);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
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
