/*
 * test_progress.c: the progress lines of an enrollment (progress.c), as
 * `provision` reads them from its children through a pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "progress.h"

static int fds[2] = {-1, -1};

static int
setup(void **state)
{
	(void)state;
	if (pipe(fds) != 0 || fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0)
		return -1;
	progress_set_fd(fds[1]);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	progress_set_fd(-1);
	close(fds[0]);
	close(fds[1]);
	return 0;
}

/* Everything waiting in the pipe; "" when nothing is. */
static size_t
drain(char *buf, size_t size)
{
	ssize_t n = read(fds[0], buf, size - 1);

	if (n < 0) {
		assert_int_equal(errno, EAGAIN);
		n = 0;
	}
	buf[n] = '\0';
	return (size_t)n;
}

/* Each note is one "key value" line, in order. */
static void
test_lines(void **state)
{
	char buf[4096];

	(void)state;
	assert_int_equal(progress_on(), 1);
	progress_note("state", "request");
	progress_note("cert-serial", "%s", "1F2E");
	progress_note("key", "pkcs11:token=%s;id=%%01;type=private", "card-01");
	drain(buf, sizeof(buf));
	assert_string_equal(buf, "state request\n"
	                         "cert-serial 1F2E\n"
	                         "key pkcs11:token=card-01;id=%01;type=private\n");
}

/* A newline (or any control character) in a value cannot start a line of its own. */
static void
test_one_line(void **state)
{
	char buf[4096];

	(void)state;
	progress_note("error", "CA said \"no\"\nstate stored\r\tx\x7f");
	drain(buf, sizeof(buf));
	assert_string_equal(buf, "error CA said \"no\" state stored  x \n");
}

/* A value too long is cut: the line still ends with its newline and fits. */
static void
test_long_value(void **state)
{
	char big[3 * PROGRESS_LINE_MAX], buf[4 * PROGRESS_LINE_MAX];
	size_t n;

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	progress_note("error", "%s", big);
	n = drain(buf, sizeof(buf));
	assert_int_equal(n, PROGRESS_LINE_MAX - 1);
	assert_memory_equal(buf, "error aaaa", 10);
	assert_int_equal(buf[n - 1], '\n');
	assert_null(memchr(buf, '\n', n - 1));
}

/* Without a descriptor nothing is written (enroll and the other commands). */
static void
test_off(void **state)
{
	char buf[64];

	(void)state;
	progress_set_fd(-1);
	assert_int_equal(progress_on(), 0);
	progress_note("state", "stored");
	assert_int_equal(drain(buf, sizeof(buf)), 0);
	progress_set_fd(fds[1]);
	progress_note("state", "stored");
	drain(buf, sizeof(buf));
	assert_string_equal(buf, "state stored\n");
}

/* The reader's side: key, then the value after the first space. */
static void
test_split(void **state)
{
	char a[] = "not-after 2027-11-25 22:24:03Z", b[] = "state", c[] = "", d[] = " x";
	const char *v = "unset", *k;

	(void)state;
	k = progress_split(a, &v);
	assert_string_equal(k, "not-after");
	assert_string_equal(v, "2027-11-25 22:24:03Z");
	k = progress_split(b, &v);
	assert_string_equal(k, "state");
	assert_string_equal(v, "");
	v = "unset";
	assert_null(progress_split(c, &v));
	assert_null(progress_split(d, &v));
	assert_string_equal(v, "unset");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_lines, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_one_line, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_long_value, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_off, setup, teardown),
	    cmocka_unit_test(test_split),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
