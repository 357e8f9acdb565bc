/*
 * box.c: a function run in a child process with a deadline (box.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "box.h"
#include "err.h"
#include "log.h"

/* Reads fd to EOF into b, for at most timeout_s. 1: EOF; 0: timeout; -1: no memory. */
static int
collect(int fd, unsigned timeout_s, struct box *b)
{
	struct timespec start, now;
	struct pollfd pfd;
	char chunk[4096], *nb;
	long left;
	ssize_t n;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		left = (long)timeout_s * 1000 - ((now.tv_sec - start.tv_sec) * 1000 +
		                                 (now.tv_nsec - start.tv_nsec) / 1000000);
		if (left <= 0)
			return 0;
		pfd.fd = fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if ((rc = poll(&pfd, 1, (int)left)) < 0 && errno == EINTR)
			continue;
		if (rc == 0)
			return 0;
		if (rc < 0)
			return 1;
		if ((n = read(fd, chunk, sizeof(chunk))) < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return 1;
		if ((nb = realloc(b->out, b->len + (size_t)n + 1)) == NULL)
			return -1;
		b->out = nb;
		memcpy(b->out + b->len, chunk, (size_t)n);
		b->len += (size_t)n;
		b->out[b->len] = '\0';
	}
}

int
box_run(unsigned timeout_s, int quiet, void (*fn)(int fd, void *arg), void *arg, struct box *out)
{
	int r = P11E_ERR_INTERNAL;
	struct box b = {NULL, 0, BOX_EXITED, 0};
	int fds[2] = {-1, -1}, status = 0, done, devnull;
	pid_t pid;

	if (pipe(fds) != 0) {
		log_error("cannot start a child process: pipe: %s", strerror(errno));
		goto out;
	}
	fflush(NULL);
	if ((pid = fork()) < 0) {
		log_error("cannot start a child process: fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		close(fds[0]);
		if (quiet && log_get_level() < LOG_LVL_DEBUG &&
		    (devnull = open("/dev/null", O_WRONLY)) >= 0) {
			dup2(devnull, STDERR_FILENO);
			close(devnull);
		}
		fn(fds[1], arg);
		_exit(0);
	}
	close(fds[1]);
	fds[1] = -1;
	if ((done = collect(fds[0], timeout_s, &b)) != 1)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (done < 0) {
		log_error("out of memory reading from a child process");
		r = P11E_ERR_ALLOC;
		goto out;
	}
	if (done == 0) {
		b.end = BOX_TIMEOUT;
	} else if (WIFSIGNALED(status)) {
		b.end = BOX_SIGNALED;
		b.code = WTERMSIG(status);
	} else {
		b.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	}
	*out = b;
	b.out = NULL;
	r = 0;
out:
	free(b.out);
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	return r;
}

void
box_clear(struct box *b)
{
	if (b == NULL)
		return;
	free(b->out);
	b->out = NULL;
	b->len = 0;
}
