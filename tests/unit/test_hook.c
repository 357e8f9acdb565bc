/*
 * test_hook.c: [hooks]: the command lines conf_load splits and refuses, a
 * program run by spawn_run (exactly the environment given, stdin /dev/null,
 * no descriptor beyond 0-2, its own process group, exit status, signal, a
 * start that fails, a time limit that kills its whole group, output that is
 * bounded and never blocks), and the record of owed hooks (hook.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
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

#include "capture.h"
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "conf.h"
#include "err.h"
#include "hook.h"
#include "hookrec.h"
#include "log.h"
#include "spawn.h"
#include "tmpdir.h"

/* The six lines every valid file needs; what a test appends starts at line 7. */
#define MIN                                                                                        \
	"[scep]\n"                                                                                 \
	"url = http://ca.example.com/scep\n"                                                       \
	"[token]\n"                                                                                \
	"uri = pkcs11:token=t\n"                                                                   \
	"[subject]\n"                                                                              \
	"dn = CN=host\n"

static char dir[256];
static char conf_path[300];
static char errbuf[8192];

static int
setup(void **state)
{
	(void)state;
	if (tmpdir_make(dir, sizeof(dir), "hook") != 0)
		return -1;
	snprintf(conf_path, sizeof(conf_path), "%s/p.conf", dir);
	log_set_level(LOG_LVL_WARN);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return tmpdir_remove(dir);
}

/* Writes MIN + text to the test's file and loads it, stderr into errbuf. */
static int
load(const char *text, struct conf **out)
{
	struct capture cap;
	FILE *f = fopen(conf_path, "w");
	int r;

	assert_non_null(f);
	fprintf(f, "%s%s", MIN, text);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(conf_path, 0600), 0);
	capture_begin(&cap);
	r = conf_load(conf_path, out);
	capture_end(&cap, errbuf, sizeof(errbuf));
	return r;
}

static void
assert_err(const char *text, const char *expect)
{
	struct conf *c = NULL;
	char want[1024];

	assert_int_equal(load(text, &c), P11E_ERR_CONFIG);
	assert_null(c);
	snprintf(want, sizeof(want), "%s:%s", conf_path, expect);
	if (strstr(errbuf, want) == NULL)
		fail_msg("expected\n  %s\ngot\n  %s", want, errbuf);
}

static void
test_command_split(void **state)
{
	struct conf *c = NULL;

	(void)state;
	assert_int_equal(load("[hooks]\n"
	                      "after = /bin/echo a  \"b c\"\td\"e f\"g \"\" \\x\n"
	                      "before_remove = \"/opt/my tools/x\" \"# not a comment\" # one\n"
	                      "timeout = 5m\n",
	                      &c),
	                 0);
	assert_int_equal(c->hook_after.n, 6);
	assert_string_equal(c->hook_after.v[0], "/bin/echo");
	assert_string_equal(c->hook_after.v[1], "a");
	assert_string_equal(c->hook_after.v[2], "b c");
	assert_string_equal(c->hook_after.v[3], "de fg");
	assert_string_equal(c->hook_after.v[4], "");
	assert_string_equal(c->hook_after.v[5], "\\x");
	assert_null(c->hook_after.v[6]);
	assert_int_equal(c->hook_before_remove.n, 2);
	assert_string_equal(c->hook_before_remove.v[0], "/opt/my tools/x");
	assert_string_equal(c->hook_before_remove.v[1], "# not a comment");
	assert_null(c->hook_before_remove.v[2]);
	assert_int_equal(c->hook_timeout, 300);
	/* A program that is not there yet: a warning, not an error. */
	assert_non_null(strstr(errbuf, "[hooks] before_remove: /opt/my tools/x: No such file"));
	conf_free(c);
}

static void
test_defaults(void **state)
{
	struct conf *c = NULL;

	(void)state;
	assert_int_equal(load("", &c), 0);
	assert_int_equal(c->hook_after.n, 0);
	assert_int_equal(c->hook_before_remove.n, 0);
	assert_int_equal(c->hook_timeout, 60);
	assert_false(hook_configured(c));
	assert_int_equal(hook_max_seconds(c), 0);
	conf_free(c);
	assert_int_equal(load("[hooks]\nafter = /bin/true\n", &c), 0);
	assert_true(hook_configured(c));
	assert_int_equal(hook_max_seconds(c), 60 + SPAWN_GRACE + 2);
	conf_free(c);
}

static void
test_command_errors(void **state)
{
	(void)state;
	assert_err("[hooks]\nafter = /bin/echo \"a b\n", "8: [hooks] after: word 2 of the command "
	                                                 "has no closing '\"'");
	assert_err("[hooks]\nafter = reload-vpn now\n",
	           "8: [hooks] after: the program 'reload-vpn' is not an absolute path");
	assert_err("[hooks]\nbefore_remove = ./x\n",
	           "8: [hooks] before_remove: the program './x' is not an absolute path");
	assert_err("[hooks]\nafter = \"\" x\n", "8: [hooks] after: empty command");
	assert_err("[hooks]\nafter =\n", "8: [hooks] after: empty value");
	assert_err("[hooks]\nafter = # only a comment\n", "8: [hooks] after: empty value");
	assert_err("[hooks]\ntimeout = 0\n", "8: [hooks] timeout: '0' is not a duration");
	assert_err("[hooks]\ntimeout = 2h\n", "8: [hooks] timeout: '2h' is not a duration");
	assert_err("[hooks]\ntimeout = soon\n", "8: [hooks] timeout: 'soon' is not a duration");
	assert_err("[hooks]\nafter = /bin/true\nafter = /bin/false\n",
	           "9: [hooks] after: duplicate key");
	assert_err("[hooks]\nbefore = /bin/true\n", "8: [hooks] before: unknown key");
}

static void
test_program_others_could_change(void **state)
{
	char path[300], text[400], want[600];
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/hook.sh", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs("#!/bin/sh\n", f);
	fclose(f);
	assert_int_equal(chmod(path, 0775), 0);
	snprintf(text, sizeof(text), "[hooks]\nafter = %s arg\n", path);
	snprintf(want, sizeof(want), "8: [hooks] after: %s is writable by group or others", path);
	assert_err(text, want);
	snprintf(text, sizeof(text), "[hooks]\nbefore_remove = %s\n", dir);
	snprintf(want, sizeof(want), "8: [hooks] before_remove: %s is not a regular file", dir);
	assert_err(text, want);
	assert_int_equal(chmod(path, 0755), 0);
	{
		struct conf *c = NULL;

		snprintf(text, sizeof(text), "[hooks]\nafter = %s arg\n", path);
		assert_int_equal(load(text, &c), 0);
		assert_string_equal(errbuf, "");
		conf_free(c);
	}
}

static void
test_keep_old_warns(void **state)
{
	struct conf *c = NULL;

	(void)state;
	assert_int_equal(
	    load("[renewal]\nkeep_old = yes\n[hooks]\nbefore_remove = /bin/true\n", &c), 0);
	assert_non_null(strstr(errbuf, "before_remove never runs"));
	conf_free(c);
}

/* Runs /bin/sh -c script with env (NULL: none) and limit seconds. */
static void
sh(const char *script, char *const *env, long limit, struct spawn_result *res)
{
	char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
	char *none[] = {NULL};

	assert_int_equal(spawn_run(argv, env != NULL ? env : none, limit, res), 0);
}

static void
test_spawn_exact_environment(void **state)
{
	char *argv[] = {"/usr/bin/env", NULL};
	char *env[] = {"PATH=/usr/bin:/bin", "LANG=C", "P11ENROLL_EVENT=test", NULL};
	struct spawn_result res;

	(void)state;
	setenv("P11E_TEST_SECRET", "do-not-pass", 1);
	assert_int_equal(spawn_run(argv, env, 10, &res), 0);
	assert_int_equal(res.how, SPAWN_EXITED);
	assert_int_equal(res.code, 0);
	assert_string_equal(res.out, "PATH=/usr/bin:/bin\nLANG=C\nP11ENROLL_EVENT=test\n");
	assert_int_equal(res.dropped, 0);
}

static void
test_spawn_descriptors_and_group(void **state)
{
	char *ls[] = {"/bin/ls", "/proc/self/fd", NULL};
	char *none[] = {NULL};
	struct spawn_result res;
	char want[128];
	long pid = 0, pgid = -1;
	int leak = open("/dev/null", O_RDONLY); /* not close-on-exec */

	(void)state;
	assert_true(leak > 2);
	/* Only 0-2 reach it (3 is the directory ls reads). */
	assert_int_equal(spawn_run(ls, none, 10, &res), 0);
	assert_int_equal(res.how, SPAWN_EXITED);
	assert_string_equal(res.out, "0\n1\n2\n3\n");
	/* stdin /dev/null, the working directory /, its own process group. */
	sh("/usr/bin/readlink /proc/$$/fd/0; pwd; echo $$ $(/usr/bin/cut -d' ' -f5 /proc/$$/stat)",
	   NULL, 10, &res);
	close(leak);
	assert_int_equal(res.how, SPAWN_EXITED);
	assert_int_equal(res.code, 0);
	if (sscanf(res.out, "/dev/null\n/\n%ld %ld", &pid, &pgid) != 2)
		fail_msg("output: %s", res.out);
	snprintf(want, sizeof(want), "/dev/null\n/\n%ld %ld\n", pid, pid);
	assert_string_equal(res.out, want);
	assert_int_not_equal(pid, (long)getpgrp());
}

static void
test_spawn_exit_signal_failed(void **state)
{
	char *argv[] = {"/nonexistent/hook", NULL};
	char *none[] = {NULL};
	struct spawn_result res;
	char what[160];

	(void)state;
	sh("echo one; echo two >&2; exit 3", NULL, 10, &res);
	assert_int_equal(res.how, SPAWN_EXITED);
	assert_int_equal(res.code, 3);
	assert_string_equal(res.out, "one\ntwo\n");
	spawn_describe(&res, 10, what, sizeof(what));
	assert_string_equal(what, "exit status 3");

	sh("kill -9 $$", NULL, 10, &res);
	assert_int_equal(res.how, SPAWN_SIGNALED);
	assert_int_equal(res.code, SIGKILL);
	spawn_describe(&res, 10, what, sizeof(what));
	assert_non_null(strstr(what, "killed by signal 9"));

	assert_int_equal(spawn_run(argv, none, 10, &res), 0);
	assert_int_equal(res.how, SPAWN_FAILED);
	assert_int_equal(res.code, ENOENT);
	spawn_describe(&res, 10, what, sizeof(what));
	assert_string_equal(what, "could not be started: No such file or directory");
}

/* Whether process pid is gone (or a zombie nobody reaped yet). */
static int
gone_now(long pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return 1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' && p[2] == 'Z';
}

/* gone_now, allowing the kernel a moment to finish a SIGKILLed process. */
static int
gone(long pid)
{
	struct timespec ts = {0, 20 * 1000 * 1000};
	int i;

	for (i = 0; i < 25; i++) {
		if (gone_now(pid))
			return 1;
		nanosleep(&ts, NULL);
	}
	return 0;
}

static long
read_pid(const char *path)
{
	FILE *f = fopen(path, "r");
	long pid = 0;

	assert_non_null(f);
	assert_int_equal(fscanf(f, "%ld", &pid), 1);
	fclose(f);
	return pid;
}

static void
test_spawn_timeout_kills_the_group(void **state)
{
	struct spawn_result res;
	char script[PATH_MAX + 256], pidfile[PATH_MAX + 16], what[160];
	long pid;

	(void)state;
	/* Obeys SIGTERM: ends at the limit, with the child it left in its group. */
	snprintf(pidfile, sizeof(pidfile), "%s/child.pid", dir);
	snprintf(script, sizeof(script),
	         "/bin/sleep 1000 & echo $! >%s; echo started; /bin/sleep 1000", pidfile);
	sh(script, NULL, 1, &res);
	assert_int_equal(res.how, SPAWN_TIMEOUT);
	assert_true(res.ms >= 1000);
	assert_int_equal(res.sigkill, 0); /* SIGTERM was enough: no wait for the grace */
	assert_string_equal(res.out, "started\n");
	pid = read_pid(pidfile);
	assert_true(gone(pid));
	spawn_describe(&res, 1, what, sizeof(what));
	assert_string_equal(what, "still running after 1 s: its process group was killed");

	/* Ignores SIGTERM, and so does its child: SIGKILL after the grace. */
	snprintf(script, sizeof(script),
	         "trap '' TERM; /bin/sleep 1000 & echo $! >%s; /bin/sleep 1000; /bin/sleep 1000",
	         pidfile);
	sh(script, NULL, 1, &res);
	assert_int_equal(res.how, SPAWN_TIMEOUT);
	assert_true(res.ms >= 1000 + SPAWN_GRACE * 1000 - 100);
	assert_int_equal(res.sigkill, 1);
	assert_true(gone(read_pid(pidfile)));
}

static void
test_spawn_output_is_bounded(void **state)
{
	struct spawn_result res;
	size_t lines = 0;
	const char *p;

	(void)state;
	/* About 12 MB without end of line limits: read and dropped, never blocking. */
	sh("i=0; while [ $i -lt 25 ]; do echo line $i; i=$((i+1)); done; "
	   "/usr/bin/head -c 12000000 /dev/zero; echo; exit 4",
	   NULL, 30, &res);
	assert_int_equal(res.how, SPAWN_EXITED);
	assert_int_equal(res.code, 4);
	for (p = res.out; *p != '\0'; p++)
		lines += *p == '\n';
	assert_int_equal(lines, SPAWN_OUT_LINES);
	assert_true(strncmp(res.out, "line 0\nline 1\n", 14) == 0);
	assert_true(res.dropped > 12000000); /* and it exited (above): never stalled to the limit */

	/* One long line: at most SPAWN_OUT_MAX bytes, NUL bytes shown as spaces. */
	sh("/usr/bin/head -c 100000 /dev/zero", NULL, 30, &res);
	assert_int_equal(strlen(res.out), SPAWN_OUT_MAX);
	assert_int_equal(res.out[0], ' ');
	assert_int_equal(res.dropped, 100000 - SPAWN_OUT_MAX);
}

static void
test_spawn_background_child_does_not_stall(void **state)
{
	struct spawn_result res;
	char script[PATH_MAX + 128], pidfile[PATH_MAX + 16];
	long pid;

	(void)state;
	/* It exits at once, leaving a child that holds the pipe: not waited for. */
	snprintf(pidfile, sizeof(pidfile), "%s/bg.pid", dir);
	snprintf(script, sizeof(script), "/bin/sleep 30 & echo $! >%s; echo done", pidfile);
	sh(script, NULL, 20, &res);
	assert_int_equal(res.how, SPAWN_EXITED);
	assert_int_equal(res.code, 0);
	/* EXITED, not TIMEOUT (the child holds the pipe 30 s, past the limit): not waited for */
	assert_string_equal(res.out, "done\n");
	pid = read_pid(pidfile);
	assert_false(gone_now(pid)); /* a program the hook started on purpose is left alone */
	kill((pid_t)pid, SIGKILL);
}

/* A self-signed certificate with serial n (EC P-256: quick). */
static X509 *
make_cert(long n)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();

	assert_non_null(k);
	assert_non_null(x);
	ASN1_INTEGER_set(X509_get_serialNumber(x), n);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"host", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_set_pubkey(x, k);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	EVP_PKEY_free(k);
	return x;
}

static void
test_record_owed(void **state)
{
	struct conf *c = NULL;
	struct hook_record rec;
	X509 *a = make_cert(0x0A), *b = make_cert(0x0B), *d = make_cert(0x0D);
	char text[PATH_MAX + 128], path[PATH_MAX + 64];
	struct capture cap;
	int owed = -1;
	FILE *f;

	(void)state;
	snprintf(text, sizeof(text),
	         "[agent]\nstate_dir = %s/state\n[hooks]\nafter = /bin/true\n"
	         "before_remove = /bin/true\n",
	         dir);
	assert_int_equal(load(text, &c), 0);
	assert_int_equal(hookrec_load(c, &rec), P11E_ERR_NOTFOUND);
	assert_int_equal(hook_owed(c, b, &owed), 0);
	assert_int_equal(owed, 0);

	/* A renewal owes both, for the new certificate only. */
	assert_int_equal(hook_owe(c, HOOK_RENEWED, b, a), 0);
	assert_int_equal(hookrec_load(c, &rec), 0);
	assert_int_equal(rec.owed, HOOK_AFTER | HOOK_BEFORE_REMOVE);
	assert_string_equal(rec.owed_event, "renewed");
	assert_string_equal(rec.serial, "0B");
	assert_string_equal(rec.old_serial, "0A");
	assert_int_equal(rec.last_run, 0);
	assert_int_equal(hook_owed(c, b, &owed), 0);
	assert_int_equal(owed, 1);
	assert_int_equal(hook_owed(c, a, &owed), 0);
	assert_int_equal(owed, 0);
	snprintf(path, sizeof(path), "%s/state/hook-p11enroll.txt", dir);
	{
		struct stat st;

		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
	}

	/* A CA rollover for the same certificate adds to what is owed, its event stays. */
	assert_int_equal(hook_owe(c, HOOK_CA_ROLLED, b, NULL), 0);
	assert_int_equal(hookrec_load(c, &rec), 0);
	assert_int_equal(rec.owed, HOOK_AFTER | HOOK_BEFORE_REMOVE);
	assert_string_equal(rec.owed_event, "renewed");

	/* A new certificate replaces it; an enrollment owes after only. */
	assert_int_equal(hook_owe(c, HOOK_ENROLLED, d, NULL), 0);
	assert_int_equal(hookrec_load(c, &rec), 0);
	assert_int_equal(rec.owed, HOOK_AFTER);
	assert_string_equal(rec.serial, "0D");
	assert_string_equal(rec.old_serial, "");
	conf_free(c);

	/* Without the hook configured any more, nothing is owed. */
	snprintf(text, sizeof(text),
	         "[agent]\nstate_dir = %s/state\n[hooks]\nbefore_remove = /bin/true\n", dir);
	assert_int_equal(load(text, &c), 0);
	assert_int_equal(hook_owed(c, d, &owed), 0);
	assert_int_equal(owed, 0);

	/* A damaged record is ignored, and said so. */
	assert_non_null(f = fopen(path, "a"));
	fputs("bogus line\n", f);
	fclose(f);
	capture_begin(&cap);
	assert_int_equal(hookrec_load(c, &rec), P11E_ERR_NOTFOUND);
	capture_end(&cap, errbuf, sizeof(errbuf));
	assert_non_null(strstr(errbuf, "is damaged"));
	conf_free(c);
	X509_free(a);
	X509_free(b);
	X509_free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_command_split),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_command_errors),
	    cmocka_unit_test(test_program_others_could_change),
	    cmocka_unit_test(test_keep_old_warns),
	    cmocka_unit_test(test_spawn_exact_environment),
	    cmocka_unit_test(test_spawn_descriptors_and_group),
	    cmocka_unit_test(test_spawn_exit_signal_failed),
	    cmocka_unit_test(test_spawn_timeout_kills_the_group),
	    cmocka_unit_test(test_spawn_output_is_bounded),
	    cmocka_unit_test(test_spawn_background_child_does_not_stall),
	    cmocka_unit_test(test_record_owed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
