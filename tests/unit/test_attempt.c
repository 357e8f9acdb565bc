/*
 * test_attempt.c: the record of the last attempt (attempt.c): a round trip
 * of every field, messages with any bytes, damaged files read as none,
 * consecutive failures counted, and the last error line it takes from log.c.
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

#include "attempt.h"
#include "conf.h"
#include "err.h"
#include "log.h"
#include "tmpdir.h"

struct fx {
	char dir[256];
	char path[300];
	struct conf c;
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL || tmpdir_make(f->dir, sizeof(f->dir), "attempt") != 0) {
		free(f);
		return -1;
	}
	/* state_dir does not exist yet: attempt_save creates it. */
	snprintf(f->path, sizeof(f->path), "%s/state/last-p11enroll.txt", f->dir);
	f->c.state_dir = malloc(strlen(f->dir) + 7);
	sprintf(f->c.state_dir, "%s/state", f->dir);
	f->c.key_label = "p11enroll";
	log_set_level(LOG_LVL_ERROR); /* errors only: the tests log some on purpose */
	log_clear_last_error();
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	int rc = tmpdir_remove(f->dir);

	free(f->c.state_dir);
	free(f);
	return rc;
}

static void
write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

static void
test_none(void **state)
{
	struct fx *f = *state;
	struct attempt a;

	memset(&a, 0x55, sizeof(a));
	assert_int_equal(attempt_load(&f->c, &a), P11E_ERR_NOTFOUND);
	assert_int_equal(a.err, 0x55555555); /* untouched */
}

static void
test_round_trip(void **state)
{
	struct fx *f = *state;
	struct attempt a, b;
	struct stat st;

	memset(&a, 0, sizeof(a));
	a.at = 1795644928;
	snprintf(a.command, sizeof(a.command), "renew");
	a.err = P11E_ERR_NETWORK;
	snprintf(a.message, sizeof(a.message), "cannot reach http://127.0.0.1:1/scep: refused");
	a.failures = 7;
	a.next_at = 1795648528;
	assert_int_equal(attempt_save(&f->c, &a), 0);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	memset(&b, 0x55, sizeof(b));
	assert_int_equal(attempt_load(&f->c, &b), 0);
	assert_int_equal(b.at, a.at);
	assert_string_equal(b.command, "renew");
	assert_int_equal(b.err, P11E_ERR_NETWORK);
	assert_string_equal(b.message, a.message);
	assert_int_equal(b.failures, 7);
	assert_int_equal(b.next_at, a.next_at);
}

/* Any bytes but NUL survive, and the file keeps one field per line. */
static void
test_message_escaped(void **state)
{
	struct fx *f = *state;
	static const char *const msgs[] = {
	    "two\nlines",
	    "back\\slash \\x41 not an escape",
	    "ctl \x01\x1f\x7f\r\t end",
	    "utf-8 \xc3\xa9t\xc3\xa9 and latin-1 \xe9",
	    "message=at=1\nat=2",
	    "",
	};
	struct attempt a, b;
	size_t i;
	char *text = NULL;
	FILE *fp;
	long len;

	for (i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		memset(&a, 0, sizeof(a));
		a.at = 1000;
		snprintf(a.command, sizeof(a.command), "enroll");
		a.err = P11E_ERR_TOKEN;
		snprintf(a.message, sizeof(a.message), "%s", msgs[i]);
		assert_int_equal(attempt_save(&f->c, &a), 0);
		assert_int_equal(attempt_load(&f->c, &b), 0);
		assert_string_equal(b.message, msgs[i]);
		assert_int_equal(b.at, 1000);
	}
	/* The file has the seven lines it should: the comment and six fields. */
	assert_non_null(fp = fopen(f->path, "r"));
	fseek(fp, 0, SEEK_END);
	len = ftell(fp);
	rewind(fp);
	text = calloc(1, (size_t)len + 1);
	assert_int_equal(fread(text, 1, (size_t)len, fp), (size_t)len);
	fclose(fp);
	for (i = 0, len = 0; text[i] != '\0'; i++)
		len += text[i] == '\n';
	assert_int_equal(len, 7);
	free(text);

	/* The longest message (255 bytes of control characters) still fits. */
	memset(a.message, '\n', sizeof(a.message) - 1);
	a.message[sizeof(a.message) - 1] = '\0';
	assert_int_equal(attempt_save(&f->c, &a), 0);
	assert_int_equal(attempt_load(&f->c, &b), 0);
	assert_memory_equal(b.message, a.message, sizeof(a.message));
}

/* A damaged record is none (logged), never a half-read one. */
static void
test_damaged(void **state)
{
	struct fx *f = *state;
	static const char *const bad[] = {
	    "",
	    "garbage\n",
	    "at=1000\n",                                   /* no command */
	    "command=renew\n",                             /* no time */
	    "at=1000\ncommand=renew\nerr=5\n",             /* not an error code */
	    "at=1000\ncommand=renew\nerr=-5x\n",           /* not a number */
	    "at=1000\ncommand=Renew!\n",                   /* not a command name */
	    "at=1000\ncommand=averyveryverylongcommand\n", /* too long */
	    "at=1000\ncommand=renew\nfailures=-1\n",
	    "at=1000\ncommand=renew\nmessage=bad \\q escape\n",
	    "at=1000\ncommand=renew\nmessage=short \\x4\n",
	    "at=1000\ncommand=renew\nmessage=nul \\x00\n",
	    "at=1000\ncommand=renew\nwhat=1\n", /* unknown key */
	    "at=-5\ncommand=renew\n",
	};
	struct attempt a;
	size_t i;
	char msg[600];

	assert_int_equal(mkdir(f->c.state_dir, 0700), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(f->path, bad[i]);
		memset(&a, 0x55, sizeof(a));
		assert_int_equal(attempt_load(&f->c, &a), P11E_ERR_NOTFOUND);
		assert_int_equal(a.at, (time_t)0x5555555555555555LL);
	}
	/* A message longer than the struct holds. */
	memset(msg, 'a', sizeof(msg));
	memcpy(msg, "at=1\ncommand=run\nmessage=", 25);
	msg[sizeof(msg) - 2] = '\n';
	msg[sizeof(msg) - 1] = '\0';
	write_file(f->path, msg);
	assert_int_equal(attempt_load(&f->c, &a), P11E_ERR_NOTFOUND);
	/* A NUL byte inside. */
	assert_non_null(memcpy(msg, "at=1\ncommand=run\n\0err=-5\n", 26));
	{
		FILE *fp = fopen(f->path, "w");
		assert_non_null(fp);
		fwrite(msg, 1, 26, fp);
		fclose(fp);
	}
	assert_int_equal(attempt_load(&f->c, &a), P11E_ERR_NOTFOUND);
	/* Comments and a minimal record are fine. */
	write_file(f->path, "# hello\nat=1000\ncommand=run\n");
	assert_int_equal(attempt_load(&f->c, &a), 0);
	assert_int_equal(a.err, 0);
	assert_string_equal(a.message, "");
	/* And a damaged record does not stop the next one from being written. */
	write_file(f->path, "garbage\n");
	assert_int_equal(attempt_record(&f->c, "renew", P11E_ERR_NETWORK), 0);
	assert_int_equal(attempt_load(&f->c, &a), 0);
	assert_int_equal(a.failures, 1);
}

static void
test_failures_counted(void **state)
{
	struct fx *f = *state;
	struct attempt a;
	time_t before = time(NULL);

	log_error("cannot reach %s: %s", "http://127.0.0.1:9/scep", "Connection refused");
	assert_int_equal(attempt_record(&f->c, "renew", P11E_ERR_NETWORK), 0);
	assert_int_equal(attempt_load(&f->c, &a), 0);
	assert_int_equal(a.failures, 1);
	assert_int_equal(a.err, P11E_ERR_NETWORK);
	assert_string_equal(a.command, "renew");
	assert_string_equal(a.message, "cannot reach http://127.0.0.1:9/scep: Connection refused");
	assert_true(a.at >= before && a.at <= time(NULL));
	assert_int_equal(a.next_at, 0);
	/* attempt_record took the line: the next attempt starts clean. */
	assert_string_equal(log_last_error(), "");

	log_error("token 'x' not found");
	log_warn("a warning is not an error");
	assert_int_equal(attempt_record(&f->c, "enroll", P11E_ERR_TOKEN), 0);
	assert_int_equal(attempt_load(&f->c, &a), 0);
	assert_int_equal(a.failures, 2);
	assert_string_equal(a.message, "token 'x' not found");
	assert_string_equal(a.command, "enroll");

	/* An error without a logged line: message "". */
	assert_int_equal(attempt_record(&f->c, "renew", P11E_ERR_INTERNAL), 0);
	assert_int_equal(attempt_load(&f->c, &a), 0);
	assert_int_equal(a.failures, 3);
	assert_string_equal(a.message, "");

	/* PENDING: the CA answered; not a failure. */
	assert_int_equal(attempt_record(&f->c, "enroll", P11E_ERR_PENDING), 0);
	assert_int_equal(attempt_load(&f->c, &a), 0);
	assert_int_equal(a.failures, 0);
	assert_int_equal(a.err, P11E_ERR_PENDING);

	assert_int_equal(attempt_record(&f->c, "renew", P11E_ERR_REJECTED), 0);
	assert_int_equal(attempt_load(&f->c, &a), 0);
	assert_int_equal(a.failures, 1);

	/* Success resets, and an error line logged on the way is not kept. */
	log_error("something that was retried");
	assert_int_equal(attempt_record(&f->c, "renew", 0), 0);
	assert_int_equal(attempt_load(&f->c, &a), 0);
	assert_int_equal(a.failures, 0);
	assert_int_equal(a.err, 0);
	assert_string_equal(a.message, "");
	assert_string_equal(log_last_error(), "");
}

/* The last error line is cut at 255 bytes, and log_openssl's reason is part of it. */
static void
test_last_error(void **state)
{
	char big[400];

	(void)state;
	log_clear_last_error();
	assert_string_equal(log_last_error(), "");
	memset(big, 'e', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_error("%s", big);
	assert_int_equal(strlen(log_last_error()), 255);
	log_info("info does not replace it");
	assert_int_equal(strlen(log_last_error()), 255);
	log_openssl(LOG_LVL_ERROR, "signing failed");
	assert_string_equal(log_last_error(), "signing failed");
	log_clear_last_error();
	assert_string_equal(log_last_error(), "");
}

/* The label is part of the file name, reduced to safe characters. */
static void
test_label_in_name(void **state)
{
	struct fx *f = *state;
	struct attempt a;
	char path[400];

	f->c.key_label = "web/server 1";
	assert_int_equal(attempt_record(&f->c, "enroll", 0), 0);
	snprintf(path, sizeof(path), "%s/last-web_server_1.txt", f->c.state_dir);
	assert_int_equal(access(path, R_OK), 0);
	assert_int_equal(attempt_load(&f->c, &a), 0);
	f->c.key_label = "p11enroll";
	assert_int_equal(attempt_load(&f->c, &a), P11E_ERR_NOTFOUND);
}

/* A state_dir that cannot be created: the error is returned, nothing crashes. */
static void
test_save_fails(void **state)
{
	struct fx *f = *state;
	char file[300];

	snprintf(file, sizeof(file), "%s/state", f->dir);
	write_file(file, "a file where state_dir should be\n");
	assert_int_equal(attempt_record(&f->c, "renew", P11E_ERR_NETWORK), P11E_ERR_FILE);
	assert_string_equal(log_last_error(), "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_none, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_message_escaped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failures_counted, setup, teardown),
	    cmocka_unit_test(test_last_error),
	    cmocka_unit_test_setup_teardown(test_label_in_name, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_fails, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
