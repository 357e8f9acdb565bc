/*
 * test_statefile.c: loading a state file (statefile_load): none, a good one,
 * a damaged one (a bad line, a missing line) ignored with a warning that names
 * the file and what replaces it or refused with an error that names the
 * remedy, a file refused for its mode; and the two loaders of the other kind
 * (pending_load, keyrec_load) saying so.
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
#include "conf.h"
#include "err.h"
#include "keyrec.h"
#include "log.h"
#include "pending.h"
#include "statefile.h"
#include "tmpdir.h"

struct fx {
	char dir[256];
	char path[320];
	struct conf c;
};

/* What the test kind reads: a=NUMBER (needed) and b=TEXT. */
struct rec {
	int a, lines;
	char b[16];
};

static int
field(void *ud, const char *k, const char *v)
{
	struct rec *r = ud;

	r->lines++;
	if (strcmp(k, "a") == 0 && v[0] >= '0' && v[0] <= '9' && v[1] == '\0') {
		r->a = v[0] - '0';
		return 0;
	}
	if (strcmp(k, "b") == 0 && strlen(v) < sizeof(r->b)) {
		memcpy(r->b, v, strlen(v) + 1);
		return 0;
	}
	return -1;
}

static const char *
missing(const void *ud)
{
	return ((const struct rec *)ud)->a == 0 ? "a" : NULL;
}

static const struct statefile_kind ignored = {
    "test-", ".txt", 1024, field, missing, "the next test run", NULL,
};
static const struct statefile_kind refused = {
    "test-", ".txt", 1024, field, missing, NULL, "remove it and try again",
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL || tmpdir_make(f->dir, sizeof(f->dir), "statefile") != 0) {
		free(f);
		return -1;
	}
	/* The label reduced to [A-Za-z0-9.-]: "my key" is my_key. */
	snprintf(f->path, sizeof(f->path), "%s/test-my_key.txt", f->dir);
	f->c.state_dir = f->dir;
	f->c.key_label = "my key";
	log_set_level(LOG_LVL_WARN);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	int rc = tmpdir_remove(f->dir);

	free(f);
	return rc;
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(path, mode), 0);
}

/* statefile_load of kind k into *r with stderr captured into err; returns its result. */
static int
load(struct fx *f, const struct statefile_kind *k, struct rec *r, char *err, size_t len)
{
	struct capture cap;
	int rv;

	memset(r, 0, sizeof(*r));
	capture_begin(&cap);
	rv = statefile_load(&f->c, k, r);
	capture_end(&cap, err, len);
	return rv;
}

static void
test_none(void **state)
{
	struct fx *f = *state;
	struct rec r;
	char err[1024];

	assert_int_equal(load(f, &ignored, &r, err, sizeof(err)), P11E_ERR_NOTFOUND);
	assert_string_equal(err, "");
	assert_int_equal(load(f, &refused, &r, err, sizeof(err)), P11E_ERR_NOTFOUND);
	assert_string_equal(err, "");
	assert_int_equal(r.lines, 0);
}

static void
test_good(void **state)
{
	struct fx *f = *state;
	struct rec r;
	char err[1024];

	write_file(f->path, "# a comment\n\nb=hello\na=7", 0600); /* no final newline */
	assert_int_equal(load(f, &ignored, &r, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(r.a, 7);
	assert_string_equal(r.b, "hello");
	assert_int_equal(r.lines, 2);
	assert_int_equal(load(f, &refused, &r, err, sizeof(err)), 0);
	assert_int_equal(r.a, 7);
}

/* Damaged, with something that replaces it: a warning naming the file, the line and what. */
static void
test_damaged_ignored(void **state)
{
	struct fx *f = *state;
	struct rec r;
	char err[1024], want[600];

	write_file(f->path, "a=1\n# fine\nb=this value is far too long\na=2\n", 0600);
	assert_int_equal(load(f, &ignored, &r, err, sizeof(err)), P11E_ERR_NOTFOUND);
	snprintf(want, sizeof(want),
	         "%s is damaged (line 3); ignored, the next test run replaces it", f->path);
	assert_non_null(strstr(err, want));
	assert_non_null(strstr(err, "warning"));
	assert_int_equal(r.lines, 2); /* it stopped at the bad line */

	/* A line without '=', and a NUL byte. */
	write_file(f->path, "a=1\nb\n", 0600);
	assert_int_equal(load(f, &ignored, &r, err, sizeof(err)), P11E_ERR_NOTFOUND);
	snprintf(want, sizeof(want), "%s is damaged (line 2);", f->path);
	assert_non_null(strstr(err, want));
	{
		FILE *fp = fopen(f->path, "w");
		assert_non_null(fp);
		assert_int_equal(fwrite("a=1\n\0b=x\n", 1, 9, fp), 9);
		assert_int_equal(fclose(fp), 0);
	}
	assert_int_equal(load(f, &ignored, &r, err, sizeof(err)), P11E_ERR_NOTFOUND);
	assert_non_null(strstr(err, "is damaged"));

	/* Every line good, one it needs missing: named. */
	write_file(f->path, "b=x\n", 0600);
	assert_int_equal(load(f, &ignored, &r, err, sizeof(err)), P11E_ERR_NOTFOUND);
	snprintf(want, sizeof(want),
	         "%s is damaged (no a= line); ignored, the next test run replaces it", f->path);
	assert_non_null(strstr(err, want));
	/* An empty file too. */
	write_file(f->path, "", 0600);
	assert_int_equal(load(f, &ignored, &r, err, sizeof(err)), P11E_ERR_NOTFOUND);
	assert_non_null(strstr(err, "(no a= line)"));
}

/* Damaged, with nothing that replaces it: an error naming the file and the remedy. */
static void
test_damaged_refused(void **state)
{
	struct fx *f = *state;
	struct rec r;
	char err[1024], want[600];

	write_file(f->path, "a=1\nc=3\n", 0600);
	assert_int_equal(load(f, &refused, &r, err, sizeof(err)), P11E_ERR_FILE);
	snprintf(want, sizeof(want), "%s is damaged (line 2): remove it and try again", f->path);
	assert_non_null(strstr(err, want));
	assert_non_null(strstr(err, "error"));
	write_file(f->path, "b=x\n", 0600);
	assert_int_equal(load(f, &refused, &r, err, sizeof(err)), P11E_ERR_FILE);
	assert_non_null(strstr(err, "(no a= line): remove it and try again"));
}

/* A file others can write is refused (store_read_state), whatever the kind. */
static void
test_refused_mode(void **state)
{
	struct fx *f = *state;
	struct rec r;
	char err[1024];

	write_file(f->path, "a=1\n", 0666);
	assert_int_equal(load(f, &ignored, &r, err, sizeof(err)), P11E_ERR_CONFIG);
	assert_non_null(strstr(err, f->path));
	assert_null(strstr(err, "is damaged"));
}

/* pending and keyrec refuse a damaged file, naming the line and the remedy. */
static void
test_pending_and_keyrec(void **state)
{
	struct fx *f = *state;
	struct capture cap;
	struct pending p;
	struct keyrec *k = NULL;
	char err[1024], path[400], want[600];

	snprintf(path, sizeof(path), "%s/pending-my_key.txn", f->dir);
	write_file(path, "transaction_id=ABC\nkey_id=zz\n", 0600);
	capture_begin(&cap);
	assert_int_equal(pending_load(&f->c, &p), P11E_ERR_FILE);
	capture_end(&cap, err, sizeof(err));
	snprintf(want, sizeof(want), "%s is damaged (line 2): remove it to start a new request",
	         path);
	assert_non_null(strstr(err, want));
	write_file(path, "transaction_id=ABC\n", 0600);
	capture_begin(&cap);
	assert_int_equal(pending_load(&f->c, &p), P11E_ERR_FILE);
	capture_end(&cap, err, sizeof(err));
	assert_non_null(strstr(err, "is damaged (no key_id= line): remove it"));
	write_file(path, "transaction_id=ABC\nkey_id=0a0b\ncreated=5\n", 0600);
	assert_int_equal(pending_load(&f->c, &p), 0);
	assert_string_equal(p.txid, "ABC");
	assert_int_equal(p.key_id_len, 2);

	snprintf(path, sizeof(path), "%s/keys-my_key.txt", f->dir);
	write_file(path, "key=0a0b\nkey=xyz\n", 0600);
	capture_begin(&cap);
	assert_int_equal(keyrec_load(&f->c, &k), P11E_ERR_FILE);
	capture_end(&cap, err, sizeof(err));
	assert_null(k);
	snprintf(want, sizeof(want),
	         "%s is damaged (line 2): it must hold only lines key=<CKA_ID in hex>; correct it",
	         path);
	assert_non_null(strstr(err, want));
	write_file(path, "key=0a0b\n", 0600);
	assert_int_equal(keyrec_load(&f->c, &k), 0);
	keyrec_free(k);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_none, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_good, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged_ignored, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused_mode, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pending_and_keyrec, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
