/*
 * test_http.c: the pure parts of the transport: the reason line taken from
 * a server's error body.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

static void
reason_of(const char *body, size_t len, char *buf, size_t size)
{
	struct http_resp r;

	memset(&r, 0, sizeof(r));
	r.status = 500;
	r.body = (unsigned char *)body;
	r.len = len;
	http_resp_reason(&r, buf, size);
}

static void
test_first_line(void **state)
{
	char buf[4 * HTTP_REASON_MAX + 1];
	const char *step = "no enveloped recipient\n";
	(void)state;

	reason_of(step, strlen(step), buf, sizeof(buf));
	assert_string_equal(buf, "no enveloped recipient");
	reason_of("\r\n  \n\tfirst  \r\nsecond\n", 22, buf, sizeof(buf));
	assert_string_equal(buf, "first");
	reason_of("", 0, buf, sizeof(buf));
	assert_string_equal(buf, "");
	reason_of(" \r\n\n", 4, buf, sizeof(buf));
	assert_string_equal(buf, "");
	http_resp_reason(NULL, buf, sizeof(buf));
	assert_string_equal(buf, "");
}

static void
test_control_and_binary_escaped(void **state)
{
	char buf[4 * HTTP_REASON_MAX + 1];
	static const char body[] = {'a', '\x1b', '[', '2', 'J', 'b', '\0', 'c', '\x7f', '\xe9'};
	(void)state;

	reason_of(body, sizeof(body), buf, sizeof(buf));
	assert_string_equal(buf, "a\\x1b[2Jb\\x00c\\x7f\\xe9");
}

static void
test_length_capped(void **state)
{
	char body[1000], buf[4 * HTTP_REASON_MAX + 1], small[10];
	(void)state;

	memset(body, 'x', sizeof(body));
	reason_of(body, sizeof(body), buf, sizeof(buf));
	assert_int_equal(strlen(buf), HTTP_REASON_MAX);
	/* every byte escaped still fits the documented buffer */
	memset(body, '\x01', sizeof(body));
	reason_of(body, sizeof(body), buf, sizeof(buf));
	assert_int_equal(strlen(buf), 4 * HTTP_REASON_MAX);
	/* a small buffer gets whole escapes only */
	reason_of(body, sizeof(body), small, sizeof(small));
	assert_string_equal(small, "\\x01\\x01");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_line),
	    cmocka_unit_test(test_control_and_binary_escaped),
	    cmocka_unit_test(test_length_capped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
