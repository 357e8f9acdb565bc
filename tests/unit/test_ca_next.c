/*
 * test_ca_next.c: when the daemon should look for a next CA
 * (ca_next_check_at), whether the server's CA is the stored next CA
 * (ca_next_save, ca_next_rolled, ca_next_is_anchor), over files in a
 * temporary state and trust dir.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ca_next.h"
#include "conf.h"
#include "err.h"
#include "log.h"
#include "scep.h"

#define DAY 86400L

struct env {
	char dir[64];
	char path[256];
	struct conf c;
	EVP_PKEY *key;
};

static X509 *
ca_valid(struct env *e, time_t nb, time_t na)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();

	assert_non_null(x);
	assert_non_null(n);
	assert_true(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"CA",
	                                       -1, -1, 0));
	assert_true(X509_set_subject_name(x, n) && X509_set_issuer_name(x, n));
	assert_non_null(X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &nb));
	assert_non_null(X509_time_adj_ex(X509_getm_notAfter(x), 0, 0, &na));
	assert_true(X509_set_pubkey(x, e->key));
	assert_true(X509_sign(x, e->key, EVP_sha256()) > 0);
	X509_NAME_free(n);
	return x;
}

static void
write_pem(struct env *e, const char *dir, const char *name, X509 *x)
{
	FILE *f;

	snprintf(e->path, sizeof(e->path), "%s/%s", dir, name);
	assert_non_null(f = fopen(e->path, "w"));
	assert_true(PEM_write_X509(f, x));
	fclose(f);
}

static time_t
check_at(struct env *e)
{
	time_t w = 12345;

	assert_int_equal(ca_next_check_at(&e->c, &w), 0);
	return w;
}

static int
setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	log_set_level(getenv("P11E_TEST_VERBOSE") ? LOG_LVL_DEBUG : -1);
	strcpy(e->dir, "/tmp/p11e-ca-next.XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	e->c.state_dir = e->dir;
	e->c.trust_dir = e->dir;
	assert_non_null(e->key = EVP_EC_gen("P-256"));
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	struct env *e = *state;
	const char *names[] = {"ca.crt", "ca-next.pem", "ca-next.looked"};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(e->path, sizeof(e->path), "%s/%s", e->dir, names[i]);
		unlink(e->path);
	}
	rmdir(e->dir);
	EVP_PKEY_free(e->key);
	free(e);
	return 0;
}

static void
test_not_enrolled(void **state)
{
	struct env *e = *state;

	assert_int_equal(check_at(e), 0);
}

static void
test_window_ahead(void **state)
{
	struct env *e = *state;
	time_t now = time(NULL);
	X509 *ca = ca_valid(e, now - 100 * DAY, now + 900 * DAY);

	write_pem(e, e->dir, "ca.crt", ca);
	/* 1000 days: 20% is 200 days before notAfter, 700 days from now */
	assert_int_equal(check_at(e), now + 700 * DAY);
	assert_int_equal(check_at(e), scep_next_window(ca));
	X509_free(ca);
}

static void
test_window_open_then_daily(void **state)
{
	struct env *e = *state;
	time_t now = time(NULL), w;
	X509 *ca = ca_valid(e, now - 300 * DAY, now + 20 * DAY);
	struct stat st;

	write_pem(e, e->dir, "ca.crt", ca);
	/* never looked: the start of the window, in the past: look now */
	w = check_at(e);
	assert_int_equal(w, scep_next_window(ca));
	assert_true(w <= now);
	/* looked: one day after that look */
	assert_int_equal(ca_next_looked(&e->c), 0);
	snprintf(e->path, sizeof(e->path), "%s/ca-next.looked", e->dir);
	assert_int_equal(stat(e->path, &st), 0);
	assert_int_equal(check_at(e), st.st_mtime + DAY);
	/* a next CA already stored: nothing to look for */
	X509 *next = ca_valid(e, now, now + 1000 * DAY);
	write_pem(e, e->dir, "ca-next.pem", next);
	assert_int_equal(check_at(e), 0);
	/* after the rollover the next CA is the current one: its window counts */
	write_pem(e, e->dir, "ca.crt", next);
	assert_int_equal(check_at(e), scep_next_window(next));
	X509_free(next);
	X509_free(ca);
}

static void
test_unreadable_ca_is_unknown(void **state)
{
	struct env *e = *state;
	FILE *f;

	snprintf(e->path, sizeof(e->path), "%s/ca.crt", e->dir);
	assert_non_null(f = fopen(e->path, "w"));
	fputs("not a certificate\n", f);
	fclose(f);
	assert_int_equal(check_at(e), 0);
}

/* "sha256:AB:..." or "sha1:AB:..." of x, as a pin file holds it. */
static void
anchor_of(X509 *x, const EVP_MD *md, char *buf)
{
	unsigned char d[32];
	unsigned int dlen = 0;

	assert_int_equal(scep_cert_digest(x, md, d, &dlen), 0);
	strcpy(buf, md == EVP_sha1() ? "sha1:" : "sha256:");
	scep_hex_colon(d, dlen, buf + strlen(buf));
}

static void
test_anchor(void **state)
{
	struct env *e = *state;
	time_t now = time(NULL);
	X509 *ca = ca_valid(e, now - DAY, now + 900 * DAY), *other = ca_valid(e, now, now + DAY);
	char a256[8 + 96], a1[8 + 96];
	int yes = -1;

	anchor_of(ca, EVP_sha256(), a256);
	anchor_of(ca, EVP_sha1(), a1);
	assert_int_equal(ca_next_is_anchor(ca, a256, &yes), 0);
	assert_int_equal(yes, 1);
	assert_int_equal(ca_next_is_anchor(ca, a1, &yes), 0);
	assert_int_equal(yes, 1);
	assert_int_equal(ca_next_is_anchor(other, a256, &yes), 0);
	assert_int_equal(yes, 0);
	X509_free(ca);
	X509_free(other);
}

/* A next CA stored under the pinned CA is accepted, with the previous CA kept. */
static void
test_saved_then_rolled(void **state)
{
	struct env *e = *state;
	time_t now = time(NULL);
	X509 *ca = ca_valid(e, now - 300 * DAY, now + 20 * DAY);
	X509 *next = ca_valid(e, now - DAY, now + 1000 * DAY);
	X509 *stranger = ca_valid(e, now - 2 * DAY, now + 10 * DAY);
	X509 *prev = stranger;
	char anchor[8 + 96], other[8 + 96];
	int rolled = -1;

	anchor_of(ca, EVP_sha256(), anchor);
	anchor_of(next, EVP_sha256(), other);
	/* nothing stored yet */
	assert_int_equal(ca_next_rolled(&e->c, next, anchor, &rolled, &prev), 0);
	assert_int_equal(rolled, 0);
	assert_ptr_equal(prev, stranger);
	assert_int_equal(ca_next_save(&e->c, ca, next), 0);
	/* the server still sends the current CA: no rollover */
	assert_int_equal(ca_next_rolled(&e->c, ca, anchor, &rolled, &prev), 0);
	assert_int_equal(rolled, 0);
	/* the next CA, but the anchor is not the CA that vouched for it */
	assert_int_equal(ca_next_rolled(&e->c, next, other, &rolled, &prev), 0);
	assert_int_equal(rolled, 0);
	assert_ptr_equal(prev, stranger);
	/* rolled over, no trust dir CA yet: no previous CA */
	assert_int_equal(ca_next_rolled(&e->c, next, anchor, &rolled, &prev), 0);
	assert_int_equal(rolled, 1);
	assert_null(prev);
	/* rolled over with the pinned CA in the trust dir: that one is kept */
	write_pem(e, e->dir, "ca.crt", ca);
	assert_int_equal(ca_next_rolled(&e->c, next, anchor, &rolled, &prev), 0);
	assert_int_equal(rolled, 1);
	assert_non_null(prev);
	assert_int_equal(X509_cmp(prev, ca), 0);
	X509_free(prev);
	/* a trust dir CA that the anchor does not name is not kept */
	write_pem(e, e->dir, "ca.crt", stranger);
	prev = stranger;
	assert_int_equal(ca_next_rolled(&e->c, next, anchor, &rolled, &prev), 0);
	assert_int_equal(rolled, 1);
	assert_null(prev);
	X509_free(stranger);
	X509_free(next);
	X509_free(ca);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_not_enrolled, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_window_ahead, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_window_open_then_daily, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unreadable_ca_is_unknown, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_anchor, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_saved_then_rolled, setup, teardown),
	};
	return cmocka_run_group_tests_name("ca_next", tests, NULL, NULL);
}
