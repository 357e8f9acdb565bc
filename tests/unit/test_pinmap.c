/*
 * test_pinmap.c: provision's "serial = PIN" files (pinmap.c).
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
#include <unistd.h>

#include <cmocka.h>

#include "capture.h"

#include "err.h"
#include "pinmap.h"
#include "tmpdir.h"

#define SENTINEL ((struct pinmap *)(uintptr_t)0x5a5a)

static char errbuf[4096];

/* pinmap_parse or pinmap_load (text NULL) with stderr captured into errbuf. */
static int
run(const char *text, const char *path, struct pinmap **out)
{
	struct capture cap;
	int r;

	capture_begin(&cap);
	r = text != NULL ? pinmap_parse(text, strlen(text), "pins", out) : pinmap_load(path, out);
	capture_end(&cap, errbuf, sizeof(errbuf));
	return r;
}

static void
test_parse(void **state)
{
	struct pinmap *m = NULL;

	(void)state;
	assert_int_equal(run("# station PINs\n\n0a1b2c3d = 1234\r\n  ffff0001\t=  pa ss=w0rd  \n"
	                     "   # indented comment\nlast=9999",
	                     NULL, &m),
	                 0);
	assert_int_equal(pinmap_count(m), 3);
	assert_string_equal(pinmap_get(m, "0a1b2c3d"), "1234");
	assert_string_equal(pinmap_get(m, "ffff0001"), "pa ss=w0rd");
	assert_string_equal(pinmap_get(m, "last"), "9999");
	assert_null(pinmap_get(m, "0A1B2C3D"));
	assert_null(pinmap_get(m, ""));
	pinmap_free(m);
	assert_int_equal(run("", NULL, &m), 0);
	assert_int_equal(pinmap_count(m), 0);
	pinmap_free(m);
	pinmap_free(NULL);
}

/* Errors name the line and never the PIN. */
static void
test_errors(void **state)
{
	static const struct {
		const char *text, *expect;
	} t[] = {
	    {"a = 1\nsecretpin\n", "pins:2: expected 'serial = PIN'"},
	    {"a = 1\n = secretpin\n", "pins:2: the serial is empty"},
	    {"a = \n", "pins:1: the PIN is empty"},
	    {"a = secretpin\nb = 2\na = secretpin2\n", "pins:3: serial 'a' is given twice"},
	    {"0123456789abcdef0 = secretpin\n", "is longer than a token serial (16 bytes)"},
	};
	struct pinmap *m;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		m = SENTINEL;
		assert_int_equal(run(t[i].text, NULL, &m), P11E_ERR_CONFIG);
		assert_ptr_equal(m, SENTINEL);
		if (strstr(errbuf, t[i].expect) == NULL)
			fail_msg("expected '%s', got '%s'", t[i].expect, errbuf);
		assert_null(strstr(errbuf, "secretpin"));
	}
}

static void
test_load_modes(void **state)
{
	char dir[256], path[PATH_MAX], link[PATH_MAX];
	struct pinmap *m = SENTINEL;
	int fd;

	(void)state;
	assert_int_equal(tmpdir_make(dir, sizeof(dir), "pinmap"), 0);
	snprintf(path, sizeof(path), "%s/pins", dir);
	snprintf(link, sizeof(link), "%s/link", dir);
	assert_int_equal(run(NULL, path, &m), P11E_ERR_FILE);
	assert_ptr_equal(m, SENTINEL);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "s1 = 1111\n", 10), 10);
	assert_int_equal(fchmod(fd, 0640), 0);
	close(fd);
	assert_int_equal(run(NULL, path, &m), P11E_ERR_CONFIG);
	assert_non_null(strstr(errbuf, "is readable by others (mode 0640); run chmod 600"));
	assert_ptr_equal(m, SENTINEL);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(symlink(path, link), 0);
	assert_int_equal(run(NULL, link, &m), P11E_ERR_CONFIG);
	assert_non_null(strstr(errbuf, "symbolic link"));
	assert_int_equal(run(NULL, path, &m), 0);
	assert_string_equal(pinmap_get(m, "s1"), "1111");
	pinmap_free(m);
	assert_int_equal(tmpdir_remove(dir), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_load_modes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
