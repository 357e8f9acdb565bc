/*
 * spawn.h: running one external program the way hooks run (spawn.c): no
 * shell, the environment given and nothing else, stdin from /dev/null, no
 * descriptor beyond 0-2, its own process group, a time limit, and its stdout
 * and stderr read through one pipe of which only the first lines are kept.
 */
#ifndef P11E_SPAWN_H
#define P11E_SPAWN_H

#include <stddef.h>

#define SPAWN_OUT_MAX 4096 /* bytes of output kept */
#define SPAWN_OUT_LINES 20 /* lines of output kept */
#define SPAWN_GRACE 5      /* seconds between SIGTERM and SIGKILL after the time limit */

enum spawn_how {
	SPAWN_EXITED = 0, /* code: its exit status */
	SPAWN_SIGNALED,   /* code: the signal that ended it */
	SPAWN_TIMEOUT,    /* ran past the limit: its process group was killed */
	SPAWN_FAILED,     /* could not be started; code: errno (execve's, or fork's) */
};

struct spawn_result {
	int how;  /* enum spawn_how */
	int code; /* see enum spawn_how; 0 for SPAWN_TIMEOUT */
	/* the first SPAWN_OUT_LINES lines (at most SPAWN_OUT_MAX bytes) of its stdout and
	 * stderr together, NUL-terminated; NUL bytes in the output become spaces */
	char out[SPAWN_OUT_MAX + 1];
	size_t dropped; /* bytes of output read after those and thrown away */
	long ms;        /* from start to end, milliseconds */
	int sigkill;    /* SPAWN_TIMEOUT: 1 when SIGTERM was not enough (SIGKILL after the grace) */
};

/*
 * Runs argv[0] (an absolute path) with argv and exactly the environment envp
 * (both NULL-terminated), in the working directory "/", with default signal
 * dispositions and mask, in a new process group. Waits until it exits or
 * timeout seconds have passed; then the whole group gets SIGTERM and, what is
 * left of it SPAWN_GRACE seconds later, SIGKILL (then it waits, at most a
 * second, until the group is gone). The output pipe is drained all along,
 * so a program that writes without end never blocks; once the program
 * exited, what it left in the pipe is read and whatever it left running
 * (a background child still holding the pipe) is no longer waited for. So it
 * returns at most timeout + SPAWN_GRACE + 1 seconds after the start (plus a
 * moment). Returns 0 with *res filled whatever the program did (SPAWN_FAILED
 * included); P11E_ERR_INTERNAL (logged) when no pipe or process could be
 * made, *res then SPAWN_FAILED with that errno.
 */
int spawn_run(char *const argv[], char *const envp[], long timeout, struct spawn_result *res);

/* What became of the program, for messages: "exit status 3", "killed by signal 9", ... */
void spawn_describe(const struct spawn_result *res, long timeout, char *buf, size_t len);

#endif
