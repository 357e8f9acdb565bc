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

/*
 * An RFC 4514 attribute value read back as a parser that follows the RFC
 * must read it: NULL when s is not a valid value (an unescaped special
 * character, leading '#' or blank, trailing blank, or a dangling '\\').
 * *len gets the length (the value may hold any byte).
 */
static char *
rfc4514_value(const char *s, size_t *len)
{
	static char out[512];
	size_t n = strlen(s), i, o = 0;
	int h1, h2, last_plain_blank = 0;

	if (s[0] == '#' || s[0] == ' ')
		return NULL;
	for (i = 0; i < n; i++) {
		if (s[i] != '\\') {
			if (strchr("\"+,;<>", s[i]) != NULL)
				return NULL;
			last_plain_blank = s[i] == ' ';
			out[o++] = s[i];
			continue;
		}
		last_plain_blank = 0;
		if (i + 1 >= n)
			return NULL;
		if (strchr("\"+,;<>\\ #=", s[i + 1]) != NULL) {
			out[o++] = s[++i];
			continue;
		}
		h1 = s[i + 1] >= 'A' && s[i + 1] <= 'F' ? s[i + 1] - 'A' + 10 : s[i + 1] - '0';
		h2 = i + 2 < n ? (s[i + 2] >= 'A' && s[i + 2] <= 'F' ? s[i + 2] - 'A' + 10
		                                                     : s[i + 2] - '0')
		               : -1;
		if (h1 < 0 || h1 > 15 || h2 < 0 || h2 > 15)
			return NULL;
		out[o++] = (char)(h1 << 4 | h2);
		i += 2;
	}
	if (last_plain_blank)
		return NULL;
	*len = o;
	return out;
}

/* The value the dn holds after "CN=" is exactly label, and the dn is printable. */
static void
expect_exact(const char *label, const char *want)
{
	struct tmpl_vars v = vars;
	char *out = NULL, *back;
	size_t i, n = 0;

	v.label = label;
	assert_int_equal(tmpl_expand("CN={token.label}", &v, TMPL_DN, &out), 0);
	assert_string_equal(out, want);
	for (i = 0; out[i] != '\0'; i++) {
		/* one printable line: no C0 control, DEL or C1 control in the dn */
		assert_true((unsigned char)out[i] >= 0x20 && (unsigned char)out[i] != 0x7f);
		if ((unsigned char)out[i] == 0xc2)
			assert_true((unsigned char)out[i + 1] >= 0xa0);
	}
	back = rfc4514_value(out + 3, &n);
	assert_non_null(back);
	assert_int_equal(n, strlen(label));
	assert_memory_equal(back, label, n);
	free(out);
}

/*
 * A label whose edges are blanks or '#', or that holds bytes a terminal
 * acts on, survives into the dn exactly (RFC 4514): every blank of a leading
 * or trailing run is escaped (a parser trims unescaped edge blanks), and
 * controls, C1 controls and malformed UTF-8 are \XX pairs.
 */
static void
test_dn_edges_exact(void **state)
{
	(void)state;
	expect_exact("abc ", "CN=abc\\ ");
	expect_exact("abc  ", "CN=abc\\ \\ ");
	expect_exact("  abc", "CN=\\ \\ abc");
	expect_exact(" a b ", "CN=\\ a b\\ ");
	expect_exact("   ", "CN=\\ \\ \\ ");
	expect_exact("# x", "CN=\\# x");
	expect_exact("a#", "CN=a#");
	expect_exact("\\20", "CN=\\\\20");
	expect_exact("a\x1b[2Jb\n", "CN=a\\1B[2Jb\\0A");
	expect_exact("\x7f\x01", "CN=\\7F\\01");
	expect_exact("csi\xc2\x9b", "CN=csi\\C2\\9B");
	expect_exact("bad\xff\xc3", "CN=bad\\FF\\C3");
	expect_exact("caf\xc3\xa9 \xe2\x82\xac", "CN=caf\xc3\xa9 \xe2\x82\xac");
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
	char in[6 * 50 + 1], want[3 * 32 * 50 + 1], *out = NULL;
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
	/* Controls take 3 bytes each (\XX). */
	v.date = "\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01"
	         "\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01";
	want[0] = '\0';
	for (i = 0; i < 50 * 32; i++)
		strcat(want, "\\01");
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
	    cmocka_unit_test(test_dn_edges_exact),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_growth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
