/*
 * test_provreport.c: provision's JSON-lines report (provreport.c).
 */
#include <fcntl.h>
#include <limits.h>
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

#include "err.h"
#include "memscan.h"
#include "provreport.h"
#include "secret.h"
#include "spawn.h"
#include "tmpdir.h"

static char dir[256];
static char path[PATH_MAX];

static int
setup(void **state)
{
	(void)state;
	if (tmpdir_make(dir, sizeof(dir), "provreport") != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/report.jsonl", dir);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return tmpdir_remove(dir);
}

static size_t
read_all(char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
	return n;
}

/* Each record is one line appended; strings are escaped, absent ones are null. */
static void
test_lines(void **state)
{
	struct provreport_rec a = {"0a1b",
	                           "card \"1\"\n",
	                           "enrolled",
	                           "1F",
	                           "2027-11-25 22:24:03Z",
	                           "pkcs11:token=card;type=private",
	                           NULL,
	                           NULL,
	                           NULL};
	struct provreport_rec b = {"0a1c", "card-2",    "failed", NULL, NULL,
	                           NULL,   "wrong PIN", NULL,     NULL};
	char buf[2048];
	struct stat st;
	int fd = -1;

	(void)state;
	unlink(path);
	assert_int_equal(provreport_open(path, 0, &fd), 0);
	assert_int_equal(provreport_write(fd, path, &a), 0);
	assert_int_equal(provreport_write(fd, path, &b), 0);
	close(fd);
	/* Opened again, it appends. */
	assert_int_equal(provreport_open(path, 0, &fd), 0);
	assert_int_equal(provreport_write(fd, path, &b), 0);
	close(fd);
	read_all(buf, sizeof(buf));
	assert_non_null(strstr(buf,
	                       "\"serial\":\"0a1b\",\"label\":\"card \\\"1\\\"\\n\",\"result\":"
	                       "\"enrolled\",\"certificate_serial\":\"1F\",\"not_after\":"
	                       "\"2027-11-25 22:24:03Z\",\"key_uri\":\"pkcs11:token=card;type="
	                       "private\",\"error\":null,\"hook\":null}\n"));
	assert_non_null(strstr(buf,
	                       "\"serial\":\"0a1c\",\"label\":\"card-2\",\"result\":\"failed\","
	                       "\"certificate_serial\":null,\"not_after\":null,\"key_uri\":null,"
	                       "\"error\":\"wrong PIN\",\"hook\":null}\n"));
	assert_null(strstr(buf, "\"pin\""));
	assert_int_equal(strncmp(buf, "{\"time\":\"", 9), 0);
	assert_non_null(strstr(strstr(buf, "wrong PIN") + 1, "wrong PIN"));
	assert_null(strchr(strstr(strstr(buf, "wrong PIN") + 1, "wrong PIN"), '{'));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0022, 0); /* 0644 less the umask */
}

/*
 * A card whose hook failed: enrolled, its error and its hook (named as in
 * `status --json`): an exit status, a signal, a timeout, a hook not started.
 */
static void
test_hook(void **state)
{
	struct provreport_hook h = {"after", "enrolled", SPAWN_EXITED, 3,
	                            "exit status 3: it said \"no\"\tand left"};
	struct provreport_rec a = {"0a1b",
	                           "card",
	                           "enrolled",
	                           "1F",
	                           "2027-11-25 22:24:03Z",
	                           "pkcs11:token=card;type=private",
	                           "hook after failed: exit status 3",
	                           NULL,
	                           &h};
	char buf[4096], *line;
	int fd = -1;

	(void)state;
	unlink(path);
	assert_int_equal(provreport_open(path, 0, &fd), 0);
	assert_int_equal(provreport_write(fd, path, &a), 0);
	h.how = SPAWN_SIGNALED;
	h.code = 9;
	assert_int_equal(provreport_write(fd, path, &a), 0);
	h.how = SPAWN_TIMEOUT;
	h.code = 0;
	assert_int_equal(provreport_write(fd, path, &a), 0);
	h.how = SPAWN_FAILED;
	h.code = 2;
	a.result = "skipped";
	assert_int_equal(provreport_write(fd, path, &a), 0);
	close(fd);
	read_all(buf, sizeof(buf));
	line = strstr(buf, "\"error\":\"hook after failed: exit status 3\",\"hook\":{\"name\":"
	                   "\"after\",\"event\":\"enrolled\",\"result\":\"failed\",\"exit_code\":3,"
	                   "\"signal\":null,\"message\":\"exit status 3: it said \\\"no\\\"\\tand "
	                   "left\"}}\n");
	assert_non_null(line);
	assert_non_null(strstr(buf, "\"result\":\"enrolled\",\"certificate_serial\":\"1F\""));
	assert_non_null(strstr(buf, "\"result\":\"signal\",\"exit_code\":null,\"signal\":9,"));
	assert_non_null(strstr(buf, "\"result\":\"timeout\",\"exit_code\":null,\"signal\":null,"));
	assert_non_null(
	    strstr(buf, "\"result\":\"not-started\",\"exit_code\":null,\"signal\":null,"));
	assert_non_null(strstr(buf, "\"result\":\"skipped\""));
}

/* A report that holds PINs is created 0600 and refused when others can read it. */
static void
test_secret(void **state)
{
	struct provreport_rec a = {"0a1b", "new", "enrolled", NULL, NULL,
	                           NULL,   NULL,  "12345678", NULL};
	char buf[1024];
	struct stat st;
	int fd = -1;

	(void)state;
	unlink(path);
	assert_int_equal(provreport_open(path, 1, &fd), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(provreport_write(fd, path, &a), 0);
	close(fd);
	read_all(buf, sizeof(buf));
	assert_non_null(strstr(buf, "\"error\":null,\"hook\":null,\"pin\":\"12345678\"}\n"));
	assert_int_equal(chmod(path, 0644), 0);
	fd = -1;
	assert_int_equal(provreport_open(path, 1, &fd), P11E_ERR_CONFIG);
	assert_int_equal(fd, -1);
}

/*
 * The line with a generated PIN is built where no dump goes and wiped: after
 * provreport_write, a dump of the process holds no copy of the PIN (a long
 * random one here, kept in the arena, so that only real copies are found).
 */
static void
test_pin_line_leaves_no_copy(void **state)
{
	struct provreport_rec a = {"0a1b", "new", "enrolled", "1F", NULL, NULL, NULL, NULL, NULL};
	struct memscan_hit hit;
	char *pin = NULL, buf[1024];
	int fd = -1, rnd;
	size_t i;

	(void)state;
	assert_int_equal(secret_alloc(41, (void **)&pin), 0);
	assert_true((rnd = open("/dev/urandom", O_RDONLY)) >= 0);
	assert_int_equal(read(rnd, pin, 40), 40);
	close(rnd);
	for (i = 0; i < 40; i++)
		pin[i] = (char)('0' + (unsigned char)pin[i] % 10);
	a.pin = pin;
	unlink(path);
	assert_int_equal(provreport_open(path, 1, &fd), 0);
	assert_int_equal(provreport_write(fd, path, &a), 0);
	close(fd);
	if (!MEMSCAN_EXACT) {
		secret_free(pin);
		skip();
	}
	memscan(pin + 16, 24, &hit);
	assert_int_equal(hit.dumped, 0);
	/* it was written */
	read_all(buf, sizeof(buf));
	assert_non_null(strstr(buf, "\"pin\":\""));
	assert_non_null(strstr(buf, pin));
	memset(buf, 0, sizeof(buf));
	secret_free(pin);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lines),
	    cmocka_unit_test(test_hook),
	    cmocka_unit_test(test_secret),
	    cmocka_unit_test(test_pin_line_leaves_no_copy),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
