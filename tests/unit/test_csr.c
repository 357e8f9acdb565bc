/*
 * test_csr.c: the subject dn string -> X509_NAME (RFC 4514 order, escapes,
 * multi-valued RDNs), the bytes of the subject in a built request, and that
 * freeing a request wipes its challenge.
 */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "conf.h"
#include "csr.h"
#include "err.h"

/* OpenSSL's allocator, watched: while `watching`, every block freed that still
 * holds `watched` (not wiped) is counted in `unwiped`. */
static int watching;
static const char *watched;
static int unwiped;

static void *
watch_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return malloc(n);
}

static void *
watch_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return realloc(p, n);
}

/* Whether the n bytes at h hold the string s. */
static int
holds(const unsigned char *h, size_t n, const char *s)
{
	size_t i, k = strlen(s);

	for (i = 0; i + k <= n; i++)
		if (memcmp(h + i, s, k) == 0)
			return 1;
	return 0;
}

static void
watch_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	if (p != NULL && watching && holds(p, malloc_usable_size(p), watched))
		unwiped++;
	free(p);
}

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
	assert_int_equal(csr_parse_dn("CN=   ", &n), P11E_ERR_CONFIG);
	/* a NUL byte would cut the name short for C code that reads it */
	assert_int_equal(csr_parse_dn("CN=good.example.com\\00.evil.example", &n), P11E_ERR_CONFIG);
	/* bytes that are not UTF-8 */
	assert_int_equal(csr_parse_dn("CN=\\FF", &n), P11E_ERR_CONFIG);
	assert_int_equal(csr_parse_dn("CN=caf\\C3", &n), P11E_ERR_CONFIG);
	/* '#' first: RFC 4514's hex-encoded BER, which must be a string */
	assert_int_equal(csr_parse_dn("CN=#", &n), P11E_ERR_CONFIG);
	assert_int_equal(csr_parse_dn("CN=#abc", &n), P11E_ERR_CONFIG);
	assert_int_equal(csr_parse_dn("CN=#zz", &n), P11E_ERR_CONFIG);
	assert_int_equal(csr_parse_dn("CN=#0C0361", &n), P11E_ERR_CONFIG);     /* short */
	assert_int_equal(csr_parse_dn("CN=#0C01610000", &n), P11E_ERR_CONFIG); /* trailing */
	assert_int_equal(csr_parse_dn("CN=#020101", &n), P11E_ERR_CONFIG);     /* INTEGER */
	assert_int_equal(csr_parse_dn("CN=#0C03610062", &n), P11E_ERR_CONFIG); /* NUL inside */
	assert_null(n);
}

/* The one entry of name n is nid, of ASN.1 type type, and holds exactly len bytes want. */
static void
assert_entry(const X509_NAME *n, int i, int nid, int type, const char *want, size_t len)
{
	const ASN1_STRING *v;

	assert_int_equal(nid_at(n, i), nid);
	v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
	assert_int_equal(ASN1_STRING_type(v), type);
	if ((size_t)ASN1_STRING_length(v) != len || memcmp(ASN1_STRING_get0_data(v), want, len))
		fail_msg("entry %d: expected %zu bytes \"%.*s\", got %d bytes \"%.*s\"", i, len,
		         (int)len, want, ASN1_STRING_length(v), ASN1_STRING_length(v),
		         (const char *)ASN1_STRING_get0_data(v));
}

/* RFC 4514 escapes: escaped spaces at either end, '#', hex pairs and UTF-8 survive. */
static void
test_escapes_exact_bytes(void **state)
{
	static const struct {
		const char *dn, *want;
		int type;
	} cases[] = {
	    {"CN=abc\\ ", "abc ", V_ASN1_PRINTABLESTRING},
	    {"CN=abc\\20", "abc ", V_ASN1_PRINTABLESTRING},
	    {"CN=abc\\20\\20", "abc  ", V_ASN1_PRINTABLESTRING},
	    {"CN=abc \\ ", "abc  ", V_ASN1_PRINTABLESTRING},
	    {"CN=abc\\   ", "abc ", V_ASN1_PRINTABLESTRING},
	    {"CN=abc   ", "abc", V_ASN1_PRINTABLESTRING},
	    {"CN=\\ abc", " abc", V_ASN1_PRINTABLESTRING},
	    {"CN=\\20abc", " abc", V_ASN1_PRINTABLESTRING},
	    {"CN=   \\ abc", " abc", V_ASN1_PRINTABLESTRING},
	    {"CN=\\ ", " ", V_ASN1_PRINTABLESTRING},
	    {"CN=\\#abc", "#abc", V_ASN1_UTF8STRING},
	    {"CN=\\23abc", "#abc", V_ASN1_UTF8STRING},
	    {"CN=a#b", "a#b", V_ASN1_UTF8STRING},
	    {"CN=x\\2Cy\\2by", "x,y+y", V_ASN1_PRINTABLESTRING},
	    {"CN=caf\\C3\\A9", "caf\xc3\xa9", V_ASN1_UTF8STRING},
	    {"CN=caf\\c3\\a9\\ ", "caf\xc3\xa9 ", V_ASN1_UTF8STRING},
	    {"CN=\\E2\\82\\AC 5", "\xe2\x82\xac 5", V_ASN1_UTF8STRING},
	    {"CN=caf\xc3\xa9", "caf\xc3\xa9", V_ASN1_UTF8STRING},
	    {"CN=#0C03616263", "abc", V_ASN1_UTF8STRING},
	    {"CN=#1303612062 ", "a b", V_ASN1_PRINTABLESTRING},
	    {"CN=#1E0400610062", "\0a\0b", V_ASN1_BMPSTRING},
	};
	X509_NAME *n = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (csr_parse_dn(cases[i].dn, &n) != 0)
			fail_msg("%s: refused", cases[i].dn);
		assert_int_equal(X509_NAME_entry_count(n), 1);
		assert_entry(n, 0, NID_commonName, cases[i].type, cases[i].want,
		             cases[i].type == V_ASN1_BMPSTRING ? 4 : strlen(cases[i].want));
		X509_NAME_free(n);
		n = NULL;
	}
	/* several RDNs, each keeping its escaped end */
	assert_int_equal(csr_parse_dn("CN=abc\\ ,OU=\\ x\\C3\\A9\\ +OU=y\\20 ,O=z", &n), 0);
	assert_int_equal(X509_NAME_entry_count(n), 4);
	assert_entry(n, 0, NID_organizationName, V_ASN1_PRINTABLESTRING, "z", 1);
	assert_entry(n, 1, NID_organizationalUnitName, V_ASN1_PRINTABLESTRING, "y ", 2);
	assert_entry(n, 2, NID_organizationalUnitName, V_ASN1_UTF8STRING, " x\xc3\xa9 ", 5);
	assert_entry(n, 3, NID_commonName, V_ASN1_PRINTABLESTRING, "abc ", 4);
	X509_NAME_free(n);
}

static EVP_PKEY *
test_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	assert_non_null(k);
	return k;
}

/* The request's DER, read back: its subject holds the escaped bytes exactly. */
static void
test_request_subject_bytes(void **state)
{
	struct conf c;
	EVP_PKEY *k = test_key();
	X509_REQ *req = NULL, *back = NULL;
	unsigned char *der = NULL;
	const unsigned char *q;
	const X509_NAME *n;
	int len;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.dn = "CN=host\\20,OU=\\ lab \\ ,O=Caf\\C3\\A9\\20";
	assert_int_equal(csr_build(&c, k, NULL, &req), 0);
	assert_true((len = i2d_X509_REQ(req, &der)) > 0);
	q = der;
	assert_non_null(back = d2i_X509_REQ(NULL, &q, len));
	n = X509_REQ_get_subject_name(back);
	assert_int_equal(X509_NAME_entry_count(n), 3);
	assert_entry(n, 0, NID_organizationName, V_ASN1_UTF8STRING, "Caf\xc3\xa9 ", 6);
	assert_entry(n, 1, NID_organizationalUnitName, V_ASN1_PRINTABLESTRING, " lab  ", 6);
	assert_entry(n, 2, NID_commonName, V_ASN1_PRINTABLESTRING, "host ", 5);
	OPENSSL_free(der);
	X509_REQ_free(back);
	csr_req_free(req);
	EVP_PKEY_free(k);
}

/* Freed with csr_req_free, a request leaves no copy of its challenge behind. */
static void
test_req_free_wipes_challenge(void **state)
{
	static const char challenge[] = "Chal-7f3a9c2e5b8d1046";
	struct conf c;
	EVP_PKEY *k = test_key();
	X509_REQ *req = NULL;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.dn = "CN=host";
	watched = challenge;
	assert_int_equal(csr_build(&c, k, challenge, &req), 0);
	watching = 1;
	unwiped = 0;
	csr_req_free(req);
	watching = 0;
	assert_int_equal(unwiped, 0);
	/* The check itself: X509_REQ_free leaves the challenge in freed memory. */
	assert_int_equal(csr_build(&c, k, challenge, &req), 0);
	watching = 1;
	unwiped = 0;
	X509_REQ_free(req);
	watching = 0;
	assert_true(unwiped > 0);
	csr_req_free(NULL);
	EVP_PKEY_free(k);
}

/*
 * provision sets up OpenSSL's random generator before it forks a child per
 * card, and every child makes serials and nonces with it: each child must
 * draw its own bytes, not a copy of its siblings' (OpenSSL's generator
 * reseeds at its first use in a new process).
 */
static void
test_random_after_fork(void **state)
{
	unsigned char b[2][32], mine[32];
	int fd[2], i, st;
	pid_t pid;

	(void)state;
	assert_int_equal(RAND_bytes(mine, sizeof(mine)), 1);
	for (i = 0; i < 2; i++) {
		assert_int_equal(pipe(fd), 0);
		assert_true((pid = fork()) >= 0);
		if (pid == 0) {
			close(fd[0]);
			_exit(RAND_bytes(mine, sizeof(mine)) == 1 &&
			              write(fd[1], mine, sizeof(mine)) == (ssize_t)sizeof(mine)
			          ? 0
			          : 1);
		}
		close(fd[1]);
		assert_int_equal(read(fd[0], b[i], sizeof(b[i])), (ssize_t)sizeof(b[i]));
		close(fd[0]);
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	assert_int_equal(RAND_bytes(mine, sizeof(mine)), 1);
	assert_memory_not_equal(b[0], b[1], sizeof(b[0]));
	assert_memory_not_equal(b[0], mine, sizeof(mine));
	assert_memory_not_equal(b[1], mine, sizeof(mine));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order_rfc4514),
	    cmocka_unit_test(test_multi_valued_rdn),
	    cmocka_unit_test(test_escapes),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_escapes_exact_bytes),
	    cmocka_unit_test(test_request_subject_bytes),
	    cmocka_unit_test(test_req_free_wipes_challenge),
	    cmocka_unit_test(test_random_after_fork),
	};

	/* Before OpenSSL allocates anything. */
	if (!CRYPTO_set_mem_functions(watch_malloc, watch_realloc, watch_free))
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
