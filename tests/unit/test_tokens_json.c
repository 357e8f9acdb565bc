/*
 * test_tokens_json.c: the JSON string writer of `p11enroll tokens` and `status`
 * (json_str): escapes, control characters, and bytes that are not
 * UTF-8 (a token label in Latin-1 must not make the document invalid).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"

/* json_str(s) as a malloc'ed string. */
static char *
json(const char *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	json_str(f, s);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void
check(const char *in, const char *want)
{
	char *got = json(in);

	assert_string_equal(got, want);
	free(got);
}

static void
test_plain_and_null(void **state)
{
	(void)state;
	check(NULL, "null");
	check("", "\"\"");
	check("SoftHSM project", "\"SoftHSM project\"");
	check("pkcs11:token=a%20b;serial=01", "\"pkcs11:token=a%20b;serial=01\"");
}

static void
test_escapes(void **state)
{
	(void)state;
	check("a\"b", "\"a\\\"b\"");
	check("a\\b", "\"a\\\\b\"");
	check("l1\nl2\r\t", "\"l1\\nl2\\r\\t\"");
	check("\x01\x1f", "\"\\u0001\\u001f\"");
	check("a/b\x7f", "\"a/b\x7f\"");
}

static void
test_utf8_kept(void **state)
{
	(void)state;
	check("Jos\xc3\xa9", "\"Jos\xc3\xa9\"");                   /* U+00E9 */
	check("\xe2\x82\xac", "\"\xe2\x82\xac\"");                 /* U+20AC */
	check("\xf0\x9f\x94\x91 key", "\"\xf0\x9f\x94\x91 key\""); /* U+1F511 */
}

static void
test_invalid_utf8_replaced(void **state)
{
	(void)state;
	check("Jos\xe9", "\"Jos\\ufffd\"");                            /* Latin-1 */
	check("\xc3", "\"\\ufffd\"");                                  /* truncated */
	check("\xc3(", "\"\\ufffd(\"");                                /* bad continuation */
	check("\xc0\xaf", "\"\\ufffd\\ufffd\"");                       /* overlong '/' */
	check("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");            /* overlong, 3 bytes */
	check("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");            /* surrogate D800 */
	check("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* > U+10FFFF */
	check("\xff", "\"\\ufffd\"");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain_and_null),
	    cmocka_unit_test(test_escapes),
	    cmocka_unit_test(test_utf8_kept),
	    cmocka_unit_test(test_invalid_utf8_replaced),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
