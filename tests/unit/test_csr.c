/*
 * test_csr.c: the subject dn string -> X509_NAME (RFC 4514 order, escapes,
 * multi-valued RDNs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "csr.h"
#include "err.h"

/* The name as RFC 2253/4514 prints it (most specific RDN first). */
static void
assert_prints(const X509_NAME *n, const char *want)
{
	BIO *b = BIO_new(BIO_s_mem());
	char buf[512];
	int len;

	assert_non_null(b);
	assert_true(X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0);
	len = BIO_read(b, buf, sizeof(buf) - 1);
	assert_true(len > 0);
	buf[len] = '\0';
	assert_string_equal(buf, want);
	BIO_free(b);
}

/* The NID of the entry at DER position i. */
static int
nid_at(const X509_NAME *n, int i)
{
	return OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(n, i)));
}

static void
test_order_rfc4514(void **state)
{
	X509_NAME *n = NULL;

	(void)state;
	assert_int_equal(csr_parse_dn("CN=host.example.com,O=Example,C=DE", &n), 0);
	/* encoded least specific first */
	assert_int_equal(X509_NAME_entry_count(n), 3);
	assert_int_equal(nid_at(n, 0), NID_countryName);
	assert_int_equal(nid_at(n, 1), NID_organizationName);
	assert_int_equal(nid_at(n, 2), NID_commonName);
	assert_prints(n, "CN=host.example.com,O=Example,C=DE");
	X509_NAME_free(n);
}

static void
test_multi_valued_rdn(void **state)
{
	X509_NAME *n = NULL;

	(void)state;
	assert_int_equal(csr_parse_dn("CN=a+UID=u1,OU=Lab+OU=Ops,O=Example", &n), 0);
	assert_int_equal(X509_NAME_entry_count(n), 5);
	assert_int_equal(nid_at(n, 0), NID_organizationName);
	/* three RDNs: O, {OU, OU}, {CN, UID} */
	assert_int_equal(X509_NAME_ENTRY_set(X509_NAME_get_entry(n, 0)), 0);
	assert_int_equal(X509_NAME_ENTRY_set(X509_NAME_get_entry(n, 1)), 1);
	assert_int_equal(X509_NAME_ENTRY_set(X509_NAME_get_entry(n, 2)), 1);
	assert_int_equal(X509_NAME_ENTRY_set(X509_NAME_get_entry(n, 3)), 2);
	assert_int_equal(X509_NAME_ENTRY_set(X509_NAME_get_entry(n, 4)), 2);
	assert_prints(n, "CN=a+UID=u1,OU=Lab+OU=Ops,O=Example");
	X509_NAME_free(n);
}

static void
test_escapes(void **state)
{
	X509_NAME *n = NULL;

	(void)state;
	assert_int_equal(csr_parse_dn("CN=Doe\\, John,O=A\\2BB", &n), 0);
	assert_prints(n, "CN=Doe\\, John,O=A\\+B");
	X509_NAME_free(n);
}

static void
test_errors(void **state)
{
	X509_NAME *n = NULL;

	(void)state;
	assert_int_equal(csr_parse_dn("", &n), P11E_ERR_CONFIG);
	assert_int_equal(csr_parse_dn("CN", &n), P11E_ERR_CONFIG);
	assert_int_equal(csr_parse_dn("XX=1", &n), P11E_ERR_CONFIG);
	assert_int_equal(csr_parse_dn("CN=", &n), P11E_ERR_CONFIG);
	assert_null(n);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order_rfc4514),
	    cmocka_unit_test(test_multi_valued_rdn),
	    cmocka_unit_test(test_escapes),
	    cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
