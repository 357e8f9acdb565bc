#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "uri.h"

static struct tok_uri *
parse_ok(const char *s)
{
	struct tok_uri *u = NULL;

	assert_int_equal(tok_uri_parse(s, &u), 0);
	assert_non_null(u);
	return u;
}

static void
parse_fails(const char *s, int want)
{
	struct tok_uri *u = (struct tok_uri *)(uintptr_t)1;

	assert_int_equal(tok_uri_parse(s, &u), want);
	assert_ptr_equal(u, (struct tok_uri *)(uintptr_t)1);
}

static void
roundtrip(const char *s)
{
	struct tok_uri *u = parse_ok(s);
	char *out = NULL;

	assert_int_equal(tok_uri_format(u, &out), 0);
	assert_string_equal(out, s);
	free(out);
	tok_uri_free(u);
}

static void
test_parse_all_path_attrs(void **state)
{
	struct tok_uri *u;

	(void)state;
	u = parse_ok("pkcs11:token=t;manufacturer=m;serial=s;model=mo;object=o;id=%01%02;"
	             "type=private;library-manufacturer=lm;library-description=ld;"
	             "library-version=2.1;slot-id=42;slot-description=sd;slot-manufacturer=sm");
	assert_string_equal(u->token, "t");
	assert_string_equal(u->manufacturer, "m");
	assert_string_equal(u->serial, "s");
	assert_string_equal(u->model, "mo");
	assert_string_equal(u->object, "o");
	assert_int_equal(u->id_len, 2);
	assert_memory_equal(u->id, "\x01\x02", 2);
	assert_string_equal(u->type, "private");
	assert_string_equal(u->library_manufacturer, "lm");
	assert_string_equal(u->library_description, "ld");
	assert_string_equal(u->library_version, "2.1");
	assert_int_equal(u->has_slot_id, 1);
	assert_int_equal(u->slot_id, 42);
	assert_string_equal(u->slot_description, "sd");
	assert_string_equal(u->slot_manufacturer, "sm");
	assert_null(u->module_path);
	assert_null(u->pin_value);
	tok_uri_free(u);
}

static void
test_parse_empty(void **state)
{
	struct tok_uri *u;
	char *out = NULL;

	(void)state;
	u = parse_ok("pkcs11:");
	assert_null(u->token);
	assert_null(u->id);
	assert_int_equal(u->has_slot_id, 0);
	assert_int_equal(tok_uri_format(u, &out), 0);
	assert_string_equal(out, "pkcs11:");
	free(out);
	tok_uri_free(u);
	tok_uri_free(NULL);
}

static void
test_percent_decoding(void **state)
{
	struct tok_uri *u;

	(void)state;
	u = parse_ok("pkcs11:token=My%20Token;object=a%2fb%3Bc%25;manufacturer=caf%C3%A9");
	assert_string_equal(u->token, "My Token");
	assert_string_equal(u->object, "a/b;c%");
	assert_string_equal(u->manufacturer, "caf\xc3\xa9");
	tok_uri_free(u);
}

static void
test_binary_id(void **state)
{
	static const unsigned char want[] = {0x00, 0xff, 0x41, 0x7f, 0x25};
	struct tok_uri *u;
	char *out = NULL;

	(void)state;
	u = parse_ok("pkcs11:id=%00%FFA%7f%25");
	assert_int_equal(u->id_len, sizeof(want));
	assert_memory_equal(u->id, want, sizeof(want));
	assert_int_equal(tok_uri_format(u, &out), 0);
	assert_string_equal(out, "pkcs11:id=%00%FF%41%7F%25");
	free(out);
	tok_uri_free(u);
}

static void
test_query(void **state)
{
	struct tok_uri *u;
	char *out = NULL;

	(void)state;
	u = parse_ok("pkcs11:token=softhsm;object=key?module-path=/usr/lib/softhsm/"
	             "libsofthsm2.so&pin-value=12%2634&x-unknown=whatever&module-name=softhsm2&"
	             "pin-source=file:/etc/pin");
	assert_string_equal(u->token, "softhsm");
	assert_string_equal(u->object, "key");
	assert_string_equal(u->module_path, "/usr/lib/softhsm/libsofthsm2.so");
	assert_string_equal(u->module_name, "softhsm2");
	assert_string_equal(u->pin_value, "12&34");
	assert_string_equal(u->pin_source, "file:/etc/pin");
	assert_int_equal(tok_uri_format(u, &out), 0);
	assert_string_equal(out, "pkcs11:token=softhsm;object=key");
	free(out);
	tok_uri_free(u);
}

static void
test_format_roundtrips(void **state)
{
	struct tok_uri u;
	char *out = NULL;

	(void)state;
	roundtrip("pkcs11:token=My%20Token;manufacturer=SoftHSM%20project;serial=0a1b2c3d;"
	          "model=SoftHSM%20v2;object=p11enroll-key;id=%01%AB;type=private");
	roundtrip("pkcs11:object=a.b_c-d~e");
	roundtrip("pkcs11:token=%2F%3B%3F%26%3D%25%40%2B%C3%A9");
	roundtrip("pkcs11:id=%00");

	memset(&u, 0, sizeof(u));
	u.object = "lab el;=?";
	u.type = "cert";
	u.has_slot_id = 1;
	u.slot_description = "not printed";
	assert_int_equal(tok_uri_format(&u, &out), 0);
	assert_string_equal(out, "pkcs11:object=lab%20el%3B%3D%3F;type=cert");
	free(out);
}

static void
test_errors(void **state)
{
	char longid[4 + 7 + 65 * 3 + 1];
	size_t i;

	(void)state;
	parse_fails("token=x", P11E_ERR_CONFIG);
	parse_fails("pkcs11", P11E_ERR_CONFIG);
	parse_fails("", P11E_ERR_CONFIG);
	parse_fails("pkcs11:token=a%2", P11E_ERR_CONFIG);
	parse_fails("pkcs11:token=a%zz", P11E_ERR_CONFIG);
	parse_fails("pkcs11:token=a%", P11E_ERR_CONFIG);
	parse_fails("pkcs11:id=%g1", P11E_ERR_CONFIG);
	parse_fails("pkcs11:token=a?pin-value=%4", P11E_ERR_CONFIG);
	parse_fails("pkcs11:token=a?x-ignored=%4", P11E_ERR_CONFIG);
	parse_fails("pkcs11:foo=bar", P11E_ERR_CONFIG);
	parse_fails("pkcs11:token=a;Token=b", P11E_ERR_CONFIG);
	parse_fails("pkcs11:pin-value=1234", P11E_ERR_CONFIG);
	parse_fails("pkcs11:token=a;token=b", P11E_ERR_CONFIG);
	parse_fails("pkcs11:id=%01;id=%01", P11E_ERR_CONFIG);
	parse_fails("pkcs11:slot-id=1;slot-id=1", P11E_ERR_CONFIG);
	parse_fails("pkcs11:?module-path=/a&module-path=/b", P11E_ERR_CONFIG);
	parse_fails("pkcs11:token", P11E_ERR_CONFIG);
	parse_fails("pkcs11:token=a;", P11E_ERR_CONFIG);
	parse_fails("pkcs11:;token=a", P11E_ERR_CONFIG);
	parse_fails("pkcs11:id=", P11E_ERR_CONFIG);
	parse_fails("pkcs11:slot-id=", P11E_ERR_CONFIG);
	parse_fails("pkcs11:slot-id=12a", P11E_ERR_CONFIG);
	parse_fails("pkcs11:slot-id=-1", P11E_ERR_CONFIG);
	parse_fails("pkcs11:slot-id=99999999999999999999999", P11E_ERR_CONFIG);
	parse_fails("pkcs11:type=key", P11E_ERR_CONFIG);
	parse_fails("pkcs11:token=a%00b", P11E_ERR_CONFIG);

	strcpy(longid, "pkcs11:id=");
	for (i = 0; i < 65; i++)
		strcat(longid, "%AA");
	parse_fails(longid, P11E_ERR_CONFIG);
	longid[strlen(longid) - 3] = '\0';
	tok_uri_free(parse_ok(longid));
}

static void
test_scheme_case(void **state)
{
	struct tok_uri *u;

	(void)state;
	u = parse_ok("PKCS11:token=a");
	assert_string_equal(u->token, "a");
	tok_uri_free(u);
}

static void
pad(unsigned char *dst, size_t width, const char *s)
{
	memset(dst, ' ', width);
	memcpy(dst, s, strlen(s));
}

static void
test_match_token(void **state)
{
	unsigned char label[32], manuf[32], model[16], serial[16];
	struct tok_uri *u;

	(void)state;
	pad(label, sizeof(label), "My Token");
	pad(manuf, sizeof(manuf), "SoftHSM project");
	pad(model, sizeof(model), "SoftHSM v2");
	pad(serial, sizeof(serial), "0a1b2c3d4e5f6071");

	u = parse_ok("pkcs11:");
	assert_int_equal(tok_uri_match_token(u, label, manuf, model, serial), 1);
	tok_uri_free(u);

	u = parse_ok("pkcs11:token=My%20Token;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;"
	             "serial=0a1b2c3d4e5f6071;object=whatever");
	assert_int_equal(tok_uri_match_token(u, label, manuf, model, serial), 1);
	tok_uri_free(u);

	u = parse_ok("pkcs11:token=My%20Token%20%20");
	assert_int_equal(tok_uri_match_token(u, label, manuf, model, serial), 1);
	tok_uri_free(u);

	u = parse_ok("pkcs11:token=my%20token");
	assert_int_equal(tok_uri_match_token(u, label, manuf, model, serial), 0);
	tok_uri_free(u);

	u = parse_ok("pkcs11:token=My");
	assert_int_equal(tok_uri_match_token(u, label, manuf, model, serial), 0);
	tok_uri_free(u);

	u = parse_ok("pkcs11:token=My%20Token%20X");
	assert_int_equal(tok_uri_match_token(u, label, manuf, model, serial), 0);
	tok_uri_free(u);

	u = parse_ok("pkcs11:token=My%20Token;serial=0a1b2c3d4e5f6070");
	assert_int_equal(tok_uri_match_token(u, label, manuf, model, serial), 0);
	tok_uri_free(u);

	u = parse_ok("pkcs11:token=;model=SoftHSM%20v2");
	assert_int_equal(tok_uri_match_token(u, label, manuf, model, serial), 0);
	pad(label, sizeof(label), "");
	assert_int_equal(tok_uri_match_token(u, label, manuf, model, serial), 1);
	tok_uri_free(u);

	pad(label, sizeof(label), "0123456789abcdef0123456789abcdef");
	u = parse_ok("pkcs11:token=0123456789abcdef0123456789abcdef");
	assert_int_equal(tok_uri_match_token(u, label, manuf, model, serial), 1);
	tok_uri_free(u);
	u = parse_ok("pkcs11:token=0123456789abcdef0123456789abcdefX");
	assert_int_equal(tok_uri_match_token(u, label, manuf, model, serial), 0);
	tok_uri_free(u);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_all_path_attrs),
	    cmocka_unit_test(test_parse_empty),
	    cmocka_unit_test(test_percent_decoding),
	    cmocka_unit_test(test_binary_id),
	    cmocka_unit_test(test_query),
	    cmocka_unit_test(test_format_roundtrips),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_scheme_case),
	    cmocka_unit_test(test_match_token),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
