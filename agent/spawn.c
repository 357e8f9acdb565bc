/*
 * spawn.c: one external program, time-boxed, its output bounded (spawn.h).
 */
#define _GNU_SOURCE /* pipe2, F_DUPFD_CLOEXEC */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "spawn.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#define TICK_MS 50   /* polling step where no descriptor says when a process ends */
#define DRAIN_MS 200 /* reading what an ended program left in the pipe, at most */
#define REAP_MS 1000 /* waiting for a SIGKILLed leader to end, at most */
#define READS_PER_WAKE 16

/* The program being run, as the parent sees it. */
struct proc {
	pid_t pid;
	int out;    /* read end of its stdout/stderr pipe, non-blocking; -1 at end of file */
	int pidfd;  /* readable once it ended (pidfd_open), or -1 */
	int reaped; /* waitpid has collected status */
	int status;
	size_t lines; /* of res->out */
	size_t len;   /* bytes in res->out */
	int full;     /* res->out holds all it keeps */
};

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Moves *fd above 2, so that the child's dup2 onto 0-2 cannot clobber it. */
static int
above_stdio(int *fd)
{
	int n;

	if (*fd > 2)
		return 0;
	if ((n = fcntl(*fd, F_DUPFD_CLOEXEC, 3)) < 0)
		return -1;
	close(*fd);
	*fd = n;
	return 0;
}

/* In the child, before execve: every descriptor above 2 is closed by it. */
static void
cloexec_above_stdio(void)
{
	struct rlimit rl;
	long max = 65536, fd;

#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
		return;
#endif
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)max)
		max = (long)rl.rlim_cur;
	for (fd = 3; fd < max; fd++)
		(void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
}

/*
 * The child between fork and execve: only async-signal-safe calls. A failed
 * execve sends its errno through report (closed by a successful one).
 */
static void
child(char *const argv[], char *const envp[], int out, int report)
{
	struct sigaction sa;
	sigset_t none;
	int sig, null, e;

	(void)setpgid(0, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	if ((null = open("/dev/null", O_RDONLY)) < 0 || dup2(null, STDIN_FILENO) < 0 ||
	    dup2(out, STDOUT_FILENO) < 0 || dup2(out, STDERR_FILENO) < 0 || chdir("/") != 0)
		goto fail;
	cloexec_above_stdio();
	execve(argv[0], argv, envp);
fail:
	e = errno;
	(void)!write(report, &e, sizeof(e));
	_exit(127);
}

/* Keeps the first lines of b (n bytes) in res->out; counts the rest as dropped. */
static void
keep(struct proc *p, struct spawn_result *res, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n && !p->full; i++) {
		res->out[p->len++] = b[i] == '\0' ? ' ' : b[i];
		if ((b[i] == '\n' && ++p->lines >= SPAWN_OUT_LINES) || p->len >= SPAWN_OUT_MAX)
			p->full = 1;
	}
	res->out[p->len] = '\0';
	res->dropped += n - i;
}

/* Reads what the pipe holds now (a bounded number of reads). */
static void
drain(struct proc *p, struct spawn_result *res)
{
	char buf[65536];
	ssize_t n;
	int i;

	for (i = 0; p->out >= 0 && i < READS_PER_WAKE; i++) {
		n = read(p->out, buf, sizeof(buf));
		if (n > 0) {
			keep(p, res, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || errno != EAGAIN) {
			close(p->out);
			p->out = -1;
		}
		break;
	}
}

/* Collects the leader's status when it has ended. */
static void
try_reap(struct proc *p)
{
	pid_t w;

	if (p->reaped)
		return;
	while ((w = waitpid(p->pid, &p->status, WNOHANG)) < 0 && errno == EINTR)
		;
	if (w == p->pid || (w < 0 && errno == ECHILD)) {
		p->reaped = 1;
		if (w < 0)
			p->status = 0;
		if (p->pidfd >= 0) {
			close(p->pidfd);
			p->pidfd = -1;
		}
	}
}

/* Waits up to ms for output or the leader's end, reading the output. */
static void
wait_once(struct proc *p, struct spawn_result *res, long ms)
{
	struct pollfd pf[2];
	nfds_t n = 0;

	if (ms < 0)
		ms = 0;
	if (p->out >= 0) {
		pf[n].fd = p->out;
		pf[n++].events = POLLIN;
	}
	if (p->pidfd >= 0) {
		pf[n].fd = p->pidfd;
		pf[n++].events = POLLIN;
	} else if (ms > TICK_MS) {
		ms = TICK_MS;
	}
	(void)poll(n > 0 ? pf : NULL, n, (int)ms);
	drain(p, res);
	try_reap(p);
}

/* The ended leader's output, what is left of it, for at most DRAIN_MS. */
static void
drain_after(struct proc *p, struct spawn_result *res)
{
	long stop = now_ms() + DRAIN_MS;
	struct pollfd pf;

	while (p->out >= 0 && now_ms() < stop) {
		pf.fd = p->out;
		pf.events = POLLIN;
		if (poll(&pf, 1, 0) <= 0)
			break;
		drain(p, res);
	}
}

/* Past the time limit: SIGTERM to the group, SIGKILL to what is left after the grace. */
static void
stop_group(struct proc *p, struct spawn_result *res)
{
	long kill_at = now_ms() + SPAWN_GRACE * 1000L, reap_by;

	(void)kill(-p->pid, SIGTERM);
	while (!p->reaped && now_ms() < kill_at)
		wait_once(p, res, kill_at - now_ms());
	/* The leader is gone; while another member lives, the group id stays its own. */
	while (p->reaped && kill(-p->pid, 0) == 0 && now_ms() < kill_at)
		wait_once(p, res, TICK_MS);
	if (!p->reaped || kill(-p->pid, 0) == 0) {
		(void)kill(-p->pid, SIGKILL);
		res->sigkill = 1;
	}
	/* Until the leader is collected and the group empty (a moment), at most REAP_MS. */
	reap_by = now_ms() + REAP_MS;
	while ((!p->reaped || kill(-p->pid, 0) == 0) && now_ms() < reap_by)
		wait_once(p, res, p->reaped ? TICK_MS : reap_by - now_ms());
	if (!p->reaped)
		log_warn("process %ld did not end after SIGKILL; not waiting for it", (long)p->pid);
}

int
spawn_run(char *const argv[], char *const envp[], long timeout, struct spawn_result *res)
{
	struct proc p;
	int out[2] = {-1, -1}, rep[2] = {-1, -1}, e = 0, r = P11E_ERR_INTERNAL;
	long start = now_ms(), end = start + timeout * 1000L;
	ssize_t n;

	memset(res, 0, sizeof(*res));
	memset(&p, 0, sizeof(p));
	p.out = p.pidfd = -1;
	res->how = SPAWN_FAILED;
	if (pipe2(out, O_CLOEXEC) != 0 || pipe2(rep, O_CLOEXEC) != 0 || above_stdio(&out[0]) != 0 ||
	    above_stdio(&out[1]) != 0 || above_stdio(&rep[0]) != 0 || above_stdio(&rep[1]) != 0 ||
	    fcntl(out[0], F_SETFL, O_NONBLOCK) != 0) {
		res->code = errno;
		log_error("cannot create a pipe to run %s: %s", argv[0], strerror(errno));
		goto out;
	}
	if ((p.pid = fork()) < 0) {
		res->code = errno;
		log_error("cannot start a process for %s: %s", argv[0], strerror(errno));
		goto out;
	}
	if (p.pid == 0)
		child(argv, envp, out[1], rep[1]);
	(void)setpgid(p.pid, p.pid); /* as the child does: whichever comes first */
	close(out[1]);
	close(rep[1]);
	out[1] = rep[1] = -1;
	p.out = out[0];
	out[0] = -1;
	while ((n = read(rep[0], &e, sizeof(e))) < 0 && errno == EINTR)
		;
	if (n == (ssize_t)sizeof(e)) {
		while (waitpid(p.pid, &p.status, 0) < 0 && errno == EINTR)
			;
		res->code = e;
		r = 0;
		goto out;
	}
#ifdef SYS_pidfd_open
	p.pidfd = (int)syscall(SYS_pidfd_open, p.pid, 0);
#endif
	while (!p.reaped && now_ms() < end)
		wait_once(&p, res, end - now_ms());
	if (p.reaped) {
		drain_after(&p, res);
		res->how = WIFSIGNALED(p.status) ? SPAWN_SIGNALED : SPAWN_EXITED;
		res->code = WIFSIGNALED(p.status) ? WTERMSIG(p.status) : WEXITSTATUS(p.status);
	} else {
		stop_group(&p, res);
		drain_after(&p, res);
		res->how = SPAWN_TIMEOUT;
	}
	r = 0;
out:
	res->ms = now_ms() - start;
	if (p.out >= 0)
		close(p.out);
	if (p.pidfd >= 0)
		close(p.pidfd);
	for (e = 0; e < 2; e++) {
		if (out[e] >= 0)
			close(out[e]);
		if (rep[e] >= 0)
			close(rep[e]);
	}
	return r;
}

void
spawn_describe(const struct spawn_result *res, long timeout, char *buf, size_t len)
{
	switch (res->how) {
	case SPAWN_EXITED:
		snprintf(buf, len, "exit status %d", res->code);
		break;
	case SPAWN_SIGNALED:
		snprintf(buf, len, "killed by signal %d (%s)", res->code, strsignal(res->code));
		break;
	case SPAWN_TIMEOUT:
		snprintf(buf, len, "still running after %ld s: its process group was killed",
		         timeout);
		break;
	default:
		snprintf(buf, len, "could not be started: %s", strerror(res->code));
		break;
	}
}
