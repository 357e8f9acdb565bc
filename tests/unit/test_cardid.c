/*
 * test_cardid.c: what provision makes of the strings a card reports
 * (cardid.c): directory names, printable forms, identity records.
 */
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

#include "cardid.h"
#include "err.h"
#include "tmpdir.h"

static char dir[256];
static char errbuf[4096];

static int
setup(void **state)
{
	(void)state;
	return tmpdir_make(dir, sizeof(dir), "cardid");
}

static int
teardown(void **state)
{
	(void)state;
	return tmpdir_remove(dir);
}

static char *
name_of(const char *serial)
{
	char *name = NULL;

	assert_int_equal(cardid_dirname(serial, &name), 0);
	assert_non_null(name);
	return name;
}

static void
expect_name(const char *serial, const char *want)
{
	char *name = name_of(serial);

	assert_string_equal(name, want);
	free(name);
}

/* A name is one path component: not "", ".", "..", no '/', and printable. */
static void
assert_component(const char *name)
{
	size_t i;

	assert_true(name[0] != '\0');
	assert_string_not_equal(name, ".");
	assert_string_not_equal(name, "..");
	for (i = 0; name[i] != '\0'; i++) {
		assert_true(name[i] != '/');
		assert_true(name[i] > 0x20 && name[i] < 0x7f);
	}
	assert_true(i <= 255);
}

/* Serials made of [A-Za-z0-9_-] keep their directory (no migration). */
static void
test_plain_serials_unchanged(void **state)
{
	(void)state;
	expect_name("0A1B2C3D4E5F6071", "0A1B2C3D4E5F6071");
	expect_name("acc31744a7064f96", "acc31744a7064f96");
	expect_name("A_B-9", "A_B-9");
	expect_name("_", "_");
	expect_name("-", "-");
}

/* What would be a path, or another card's directory, is a name of its own. */
static void
test_hostile_serials(void **state)
{
	(void)state;
	expect_name("..", "%2E%2E");
	expect_name(".", "%2E");
	expect_name("ABC/../x", "ABC%2F%2E%2E%2Fx");
	expect_name("/", "%2F");
	expect_name("A B", "A%20B");
	expect_name("50%", "50%25");
	expect_name("", "%empty");
	expect_name("\x01\x7f\x80\xff", "%01%7F%80%FF");
	expect_name("caf\xc3\xa9", "caf%C3%A9");
}

/* Two cards whose serials differ only in such characters never share a directory. */
static void
test_no_collisions(void **state)
{
	static const char *const serials[] = {
	    "A/B",
	    "A_B",
	    "A.B",
	    "A%2FB",
	    "A%2fB",
	    "A B",
	    "A\x01B",
	    "A\xff"
	    "B",
	    "AB",
	    "A-B",
	    "",
	    "%",
	    "%2E",
	    ".",
	    "..",
	    "...",
	    "_",
	    "%2E%2E",
	    "%empty",
	    "empty",
	    "a/b",
	    "slot",
	};
	size_t n = sizeof(serials) / sizeof(serials[0]), i, j;
	char *names[sizeof(serials) / sizeof(serials[0])];

	(void)state;
	for (i = 0; i < n; i++) {
		names[i] = name_of(serials[i]);
		assert_component(names[i]);
	}
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			if (strcmp(names[i], names[j]) == 0)
				fail_msg("serials '%s' and '%s' share directory '%s'", serials[i],
				         serials[j], names[i]);
	for (i = 0; i < n; i++)
		free(names[i]);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every serial of up to 3 bytes over a nasty alphabet: distinct names, each one component. */
static void
test_no_collisions_exhaustive(void **state)
{
	static const char alpha[] = "A2F_-./% \x01\xff";
	const size_t a = sizeof(alpha) - 1;
	size_t total = 1 + a + a * a + a * a * a, k = 0, i, p, x, len, count;
	char **names = calloc(total, sizeof(*names)), s[4];

	(void)state;
	assert_non_null(names);
	for (len = 0, count = 1; len <= 3; len++, count *= a) {
		for (i = 0; i < count; i++) {
			for (p = 0, x = i; p < len; p++, x /= a)
				s[p] = alpha[x % a];
			s[len] = '\0';
			names[k] = name_of(s);
			assert_component(names[k]);
			k++;
		}
	}
	assert_int_equal(k, total);
	qsort(names, total, sizeof(*names), cmp_str);
	for (i = 0; i + 1 < total; i++)
		if (strcmp(names[i], names[i + 1]) == 0)
			fail_msg("two serials share directory '%s'", names[i]);
	for (i = 0; i < total; i++)
		free(names[i]);
	free(names);
}

/* PKCS#11 serials have 16 bytes; longer strings still give one bounded component. */
static void
test_long_serials(void **state)
{
	char s[101], want[3 * 64 + 1], *name = NULL;

	(void)state;
	memset(s, '/', 16);
	s[16] = '\0';
	name = name_of(s);
	assert_int_equal(strlen(name), 48);
	assert_component(name);
	free(name);
	memset(s, 'x', 64);
	s[64] = '\0';
	expect_name(s, s);
	memset(s, '.', 64);
	s[64] = '\0';
	want[0] = '\0';
	for (int i = 0; i < 64; i++)
		strcat(want, "%2E");
	expect_name(s, want);
	/* Beyond 255 bytes of name: refused, never cut (a cut name could collide). */
	memset(s, '/', 100);
	s[100] = '\0';
	name = (char *)(uintptr_t)0x5a5a;
	assert_int_equal(cardid_dirname(s, &name), P11E_ERR_INTERNAL);
	assert_ptr_equal(name, (char *)(uintptr_t)0x5a5a);
}

static void
test_show(void **state)
{
	char out[64];

	(void)state;
	assert_string_equal(cardid_show("card-01", out, sizeof(out)), "card-01");
	assert_string_equal(cardid_show("a\x1b[2Jb\n", out, sizeof(out)), "a\\x1B[2Jb\\x0A");
	assert_string_equal(cardid_show("csi\xc2\x9b", out, sizeof(out)), "csi\\xC2\\x9B");
	assert_string_equal(cardid_show("caf\xc3\xa9", out, sizeof(out)), "caf\xc3\xa9");
	assert_string_equal(cardid_show("\xff", out, sizeof(out)), "\\xFF");
	/* Cut to fit, never in the middle of an escape. */
	assert_string_equal(cardid_show("abc\x01", out, 6), "abc");
	assert_string_equal(cardid_show("abcdef", out, 4), "abc");
}

/* cardid_check with stderr captured into errbuf. */
static int
check(const struct tok_info *info, int *first)
{
	struct capture cap;
	int r;

	capture_begin(&cap);
	r = cardid_check(dir, info, first);
	capture_end(&cap, errbuf, sizeof(errbuf));
	return r;
}

static struct tok_info
card(const char *serial, const char *label, const char *manufacturer, const char *model)
{
	struct tok_info t;

	memset(&t, 0, sizeof(t));
	snprintf(t.serial, sizeof(t.serial), "%s", serial);
	snprintf(t.label, sizeof(t.label), "%s", label);
	snprintf(t.manufacturer, sizeof(t.manufacturer), "%s", manufacturer);
	snprintf(t.model, sizeof(t.model), "%s", model);
	return t;
}

static void
read_record(char *buf, size_t len)
{
	char path[512];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, CARDID_FILE);
	assert_non_null(f = fopen(path, "r"));
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/* First contact records the card; the same card passes; another card with its serial does not. */
static void
test_identity(void **state)
{
	struct tok_info a = card("0A1B2C3D", "card 1", "SoftHSM project", "SoftHSM v2"), b;
	char path[512], rec[1024];
	struct stat st;
	int first = -1;

	(void)state;
	assert_int_equal(check(&a, &first), 0);
	assert_int_equal(first, 1);
	snprintf(path, sizeof(path), "%s/%s", dir, CARDID_FILE);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	read_record(rec, sizeof(rec));
	assert_non_null(strstr(rec, "\nserial=0A1B2C3D\n"));
	assert_non_null(strstr(rec, "\nlabel=card%201\n"));
	assert_non_null(strstr(rec, "\nmanufacturer=SoftHSM%20project\n"));
	assert_non_null(strstr(rec, "\nmodel=SoftHSM%20v2\n"));

	first = -1;
	assert_int_equal(check(&a, &first), 0);
	assert_int_equal(first, 0);

	b = card("0A1B2C3D", "evil", "SoftHSM project", "SoftHSM v2");
	assert_int_equal(check(&b, &first), P11E_ERR_TOKEN);
	assert_non_null(strstr(errbuf, "serial '0A1B2C3D': label 'evil' differs from 'card 1', "
	                               "recorded when this station first saw that serial"));
	assert_non_null(strstr(errbuf, "Refused, no PIN given"));
	assert_non_null(strstr(errbuf, path));
	b = card("0A1B2C3D", "card 1", "SoftHSM project", "Other");
	assert_int_equal(check(&b, &first), P11E_ERR_TOKEN);
	assert_non_null(strstr(errbuf, "model 'Other' differs from 'SoftHSM v2'"));
	b = card("0A1B2C3D", "card 1", "Evil Corp", "SoftHSM v2");
	assert_int_equal(check(&b, &first), P11E_ERR_TOKEN);
	assert_non_null(strstr(errbuf, "manufacturer 'Evil Corp' differs from 'SoftHSM project'"));
	/* A refusal leaves the record as it was. */
	read_record(path, sizeof(path));
	assert_string_equal(path, rec);
}

/* Values with any bytes are recorded and compared exactly; a printed value is safe. */
static void
test_identity_binary(void **state)
{
	struct tok_info a = card("\x01/..\xff", "a=b\nc %41", "M", "m"), b = a;
	int first = -1;

	(void)state;
	assert_int_equal(check(&a, &first), 0);
	assert_int_equal(first, 1);
	assert_int_equal(check(&a, &first), 0);
	assert_int_equal(first, 0);
	snprintf(b.label, sizeof(b.label), "%s", "a=b\nc A");
	assert_int_equal(check(&b, &first), P11E_ERR_TOKEN);
	assert_non_null(strstr(errbuf, "serial '\\x01/..\\xFF': label 'a=b\\x0Ac A' differs from "
	                               "'a=b\\x0Ac %41'"));
}

static void
write_file(const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, CARDID_FILE);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

/* A record that cannot be read as one refuses the card (fail closed). */
static void
test_identity_bad_record(void **state)
{
	struct tok_info a = card("S1", "L", "M", "m");
	int first = -1;

	(void)state;
	write_file("serial=S1\nlabel=L\nmanufacturer=M\n");
	assert_int_equal(check(&a, &first), P11E_ERR_FILE);
	assert_non_null(strstr(errbuf, "no model= line"));
	write_file("garbage\n");
	assert_int_equal(check(&a, &first), P11E_ERR_FILE);
	assert_non_null(strstr(errbuf, "not a token identity record"));
	write_file("serial=S2\nlabel=L\nmanufacturer=M\nmodel=m\n");
	assert_int_equal(check(&a, &first), P11E_ERR_FILE);
	assert_non_null(strstr(errbuf, "names serial 'S2'"));
	write_file("serial=S1\nlabel=L\nmanufacturer=M\nmodel=m\nfirst_seen=x\n");
	assert_int_equal(check(&a, &first), 0);
	assert_int_equal(first, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain_serials_unchanged),
	    cmocka_unit_test(test_hostile_serials),
	    cmocka_unit_test(test_no_collisions),
	    cmocka_unit_test(test_no_collisions_exhaustive),
	    cmocka_unit_test(test_long_serials),
	    cmocka_unit_test(test_show),
	    cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_identity_binary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_identity_bad_record, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
