/*
 * test_template.c: provision's subject/SAN templates (template.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "template.h"

static const struct tmpl_vars vars = {
    "card 7", "0A1B2C3D", "SoftHSM project", "SoftHSM v2", "station1", "2026-11-25",
};

static void
expect_with(const struct tmpl_vars *v, const char *in, int esc, const char *want)
{
	char *out = NULL;

	assert_int_equal(tmpl_expand(in, v, esc, &out), 0);
	assert_string_equal(out, want);
	free(out);
}

static void
expect(const char *in, int esc, const char *want)
{
	expect_with(&vars, in, esc, want);
}

static void
test_every_placeholder(void **state)
{
	(void)state;
	expect("CN=card-{token.serial},O=Example", TMPL_DN, "CN=card-0A1B2C3D,O=Example");
	expect("{token.label}|{token.manufacturer}|{token.model}|{hostname}|{date}", TMPL_RAW,
	       "card 7|SoftHSM project|SoftHSM v2|station1|2026-11-25");
	expect("{token.serial}.{hostname}.example.com", TMPL_RAW, "0A1B2C3D.station1.example.com");
	expect("no placeholder", TMPL_DN, "no placeholder");
	expect("", TMPL_DN, "");
}

static void
test_literal_braces(void **state)
{
	(void)state;
	expect("CN={{x}}-{date}", TMPL_DN, "CN={x}-2026-11-25");
	assert_int_equal(tmpl_has_placeholders("CN={{x}}"), 0);
	assert_int_equal(tmpl_has_placeholders("CN={date}"), 1);
	assert_int_equal(tmpl_has_placeholders("CN=plain"), 0);
}

/* A value that holds dn syntax cannot add attributes or change the parse. */
static void
test_dn_escaping(void **state)
{
	struct tmpl_vars v = vars;

	(void)state;
	v.label = "a,O=Evil+CN=x\\y\"<>;";
	expect_with(&v, "CN={token.label}", TMPL_DN, "CN=a\\,O\\=Evil\\+CN\\=x\\\\y\\\"\\<\\>\\;");
	expect_with(&v, "san:{token.label}", TMPL_RAW, "san:a,O=Evil+CN=x\\y\"<>;");
	v.label = "#lead and trail ";
	expect_with(&v, "CN={token.label}", TMPL_DN, "CN=\\#lead and trail\\ ");
	v.label = " ";
	expect_with(&v, "CN=x{token.label}", TMPL_DN, "CN=x\\ ");
	v.label = NULL;
	expect_with(&v, "CN=x{token.label}y", TMPL_DN, "CN=xy");
}

static void
test_errors(void **state)
{
	char why[256], *out = (char *)(uintptr_t)0x5a5a;

	(void)state;
	assert_int_equal(tmpl_check("CN={token.colour}", why, sizeof(why)), P11E_ERR_CONFIG);
	assert_non_null(strstr(why, "unknown placeholder {token.colour}"));
	assert_non_null(strstr(why, "{token.serial}"));
	assert_int_equal(tmpl_check("CN={date", why, sizeof(why)), P11E_ERR_CONFIG);
	assert_non_null(strstr(why, "without a closing"));
	assert_int_equal(tmpl_check("CN=date}", why, sizeof(why)), P11E_ERR_CONFIG);
	assert_non_null(strstr(why, "without an opening"));
	assert_int_equal(tmpl_check("CN={}", why, sizeof(why)), P11E_ERR_CONFIG);
	assert_int_equal(tmpl_check("CN={TOKEN.SERIAL}", why, sizeof(why)), P11E_ERR_CONFIG);
	assert_int_equal(tmpl_check("CN={token.serial}{{}}", why, sizeof(why)), 0);
	/* Expansion refuses what the check refuses, and leaves *out alone. */
	assert_int_equal(tmpl_expand("CN={nope}", &vars, TMPL_DN, &out), P11E_ERR_CONFIG);
	assert_ptr_equal(out, (char *)(uintptr_t)0x5a5a);
	/* A tiny buffer for the reason is fine. */
	assert_int_equal(tmpl_check("{x}", why, 4), P11E_ERR_CONFIG);
	assert_int_equal(strlen(why), 3);
}

/* The worst case for the buffer: many short placeholders with long escaped values. */
static void
test_growth(void **state)
{
	struct tmpl_vars v = vars;
	char in[6 * 50 + 1], want[2 * 32 * 50 + 1], *out = NULL;
	int i;

	(void)state;
	v.date = ",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,";
	in[0] = want[0] = '\0';
	for (i = 0; i < 50; i++) {
		strcat(in, "{date}");
		strcat(want, "\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,"
		             "\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,\\,");
	}
	assert_int_equal(tmpl_expand(in, &v, TMPL_DN, &out), 0);
	assert_string_equal(out, want);
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_placeholder),
	    cmocka_unit_test(test_literal_braces),
	    cmocka_unit_test(test_dn_escaping),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_growth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
