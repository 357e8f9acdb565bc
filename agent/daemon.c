/*
 * daemon.c: `p11enroll run`. The parent keeps one schedule per profile and
 * sleeps; each attempt (plan, then enroll, renew or poll) runs in a child.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "attempt.h"
#include "ca.h"
#include "conf.h"
#include "current.h"
#include "daemon.h"
#include "enroll.h"
#include "err.h"
#include "hook.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "netproc.h"
#include "pending.h"
#include "profile.h"
#include "scep.h"
#include "schedule.h"
#include "statefile.h"
#include "tidy.h"
#include "tok.h"

enum action { ACT_NONE = 0, ACT_ENROLL, ACT_RENEW, ACT_CA };

/* What a child reports back over its pipe. */
struct tick_result {
	int err;          /* outcome: of the action when one ran, else of planning */
	time_t next_at;   /* the plan's next moment after the attempt; 0 = none */
	long retry_after; /* seconds the server asked for (HTTP 429/503), 0 = none */
	char what[256];   /* what next_at is for */
	int cert_known;   /* the token was read: cert holds what it has */
	struct metrics_cert cert;
};

struct daemon {
	char *const *paths;
	size_t npaths;
	struct profile *p;
	size_t n;
	int sfd, tfd;
	int stop, reload;
};

/* The profile's side of the token as plan() reads it. */
struct view {
	struct current_view v;
	time_t due; /* when v.cert is due for renewal */
	char why[96];
};

/*
 * Opens the token without logging in, finds the current valid certificate
 * and when it is due; its facts go to res (cert_known) for the metrics.
 * A token without one is not an error (v->cert stays NULL).
 */
static int
view_read(const struct conf *c, struct view *v, struct tick_result *res)
{
	int r;

	memset(v, 0, sizeof(*v));
	r = current_view_open(c, 1, &v->v);
	if (r == 0)
		r = current_due(c, v->v.t, v->v.cert, &v->due, v->why, sizeof(v->why));
	else if (r == P11E_ERR_NOTFOUND && v->v.t != NULL)
		r = 0;
	if (r == 0 && metrics_cert_facts(v->v.cert, v->due, &res->cert) == 0)
		res->cert_known = 1;
	return r;
}

/*
 * What the profile needs now: a pending transaction is polled, a token
 * without a valid certificate of the profile is enrolled, else the renewal
 * moment decides. Opens the token without logging in.
 */
static int
plan(const struct conf *c, enum action *act, time_t *at, struct tick_result *res)
{
	struct pending pend;
	struct view v;
	time_t now = time(NULL), ca_at = 0;
	char when[32], *what = res->what;
	size_t len = sizeof(res->what);
	int r, mess = 0, owed = 0;

	if ((r = pending_load(c, &pend)) == 0) {
		*act = pend.renewal ? ACT_RENEW : ACT_ENROLL;
		*at = now;
		snprintf(what, len, "poll of pending %s %s",
		         pend.renewal ? "renewal" : "enrollment", pend.txid);
		(void)view_read(c, &v, res); /* for the metrics only */
		current_view_close(&v.v);
		return 0;
	}
	if (r != P11E_ERR_NOTFOUND)
		return r;
	if ((r = view_read(c, &v, res)) != 0)
		goto out;
	if (v.v.cert == NULL) {
		*act = ACT_ENROLL;
		*at = now;
		snprintf(what, len, "enrollment (no valid certificate for key '%s')", c->key_label);
		goto out;
	}
	if ((r = ca_rollover_check_at(c, &ca_at)) != 0)
		goto out;
	schedule_fmt_time(v.due, when, sizeof(when));
	*act = v.due <= now ? ACT_RENEW : ACT_NONE;
	*at = v.due;
	snprintf(what, len, "renewal due %s (%s)", when, v.why);
	/* A hook failed (or a crash came before it ran): `renew` runs it again now,
	 * due or not, and then removes the old pair (hook.h). */
	if (*act == ACT_NONE && ((r = hook_owed(c, v.v.cert, &owed)) != 0 || owed)) {
		if (r != 0)
			goto out;
		*act = ACT_RENEW;
		*at = now;
		snprintf(what, len, "the hooks owed for the current certificate");
	}
	/* A renewal cut short (a crash) left objects or an old cert_file: `renew`
	 * tidies up now, due or not (tidy.h). */
	if (*act == ACT_NONE &&
	    ((r = tidy_needed(c, v.v.t, v.v.keys[v.v.cur], v.v.cert, &mess)) != 0 || mess)) {
		if (r != 0)
			goto out;
		*act = ACT_RENEW;
		*at = now;
		snprintf(what, len, "tidying up after an interrupted renewal");
	}
	/* Before the CA expires, its successor must reach the trust dir (GetNextCACert). */
	if (*act == ACT_NONE && ca_at != 0 && ca_at < v.due) {
		schedule_fmt_time(ca_at, when, sizeof(when));
		*act = ca_at <= now ? ACT_CA : ACT_NONE;
		*at = ca_at;
		snprintf(what, len, "look for the CA's successor %s (the CA expires soon)", when);
	}
	r = 0;
out:
	current_view_close(&v.v);
	return r;
}

/* The child's whole job: plan, act when due (unless look_only), plan again. */
static void
tick(const struct conf *c, int look_only, struct tick_result *res)
{
	struct enroll_opts eo = {0, 0, 0, 0, 0};
	enum action act = ACT_NONE;
	time_t at = 0;
	int lock = -1, rolled = 0;

	memset(res, 0, sizeof(*res));
	http_retry_after_reset();
	log_clear_last_error();
	if ((res->err = plan(c, &act, &at, res)) != 0)
		return;
	res->next_at = at;
	if (act == ACT_NONE || look_only)
		return;
	if ((res->err = statefile_lock(c, &lock)) != 0)
		return;
	log_info("now: %s", res->what);
	eo.renewal = act == ACT_RENEW;
	if (act == ACT_ENROLL || act == ACT_RENEW)
		res->err = enroll_run(c, &eo);
	else if ((res->err = ca_refresh(c, &rolled)) == 0 && rolled)
		res->err = hook_ca_rolled(c);
	attempt_record(c,
	               act == ACT_ENROLL  ? "enroll"
	               : act == ACT_RENEW ? "renew"
	                                  : "ca-check",
	               res->err);
	statefile_unlock(lock);
	res->retry_after = http_retry_after();
	res->next_at = 0;
	if (res->err == 0 && plan(c, &act, &at, res) == 0)
		res->next_at = at;
}

static long
deadline_of(const struct conf *c)
{
	/* GetCACert, GetCACaps, the challenge page and two PKIOperations, each
	 * within the timeout, plus the token's own work, plus the hooks (each
	 * time-boxed: hook.h) of an earlier run and of this one. */
	return 6 * c->timeout + 120 + 2 * hook_max_seconds(c);
}

static void
child_main(struct daemon *d, const struct profile *p, int look_only, int wfd)
{
	struct tick_result res;
	sigset_t all;
	const char *b = (const char *)&res;
	size_t off = 0;
	ssize_t w;

	close(d->sfd);
	close(d->tfd);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	sigfillset(&all);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	if (d->n > 1)
		log_set_tag(p->name);
	/* OpenSSL is set up here, in the child: the parent, which rests for
	 * months, keeps only the pages the dynamic linker touched. */
	memset(&res, 0, sizeof(res));
	if ((res.err = scep_init()) == 0)
		tick(p->c, look_only, &res);
	while (off < sizeof(res) &&
	       ((w = write(wfd, b + off, sizeof(res) - off)) > 0 || (w < 0 && errno == EINTR)))
		off += w > 0 ? (size_t)w : 0;
	netproc_end();
	fflush(NULL);
	_exit(0);
}

/* Reads the signals that arrived; sets d->stop / d->reload. */
static void
drain_signals(struct daemon *d)
{
	struct signalfd_siginfo si;

	while (read(d->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			d->reload = 1;
		} else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			if (!d->stop)
				log_info("signal %s: stopping",
				         si.ssi_signo == SIGTERM ? "TERM" : "INT");
			d->stop = 1;
		}
	}
}

/*
 * One attempt in a child (with look_only, only its plan: what the token
 * holds). Signals arriving meanwhile are noted; a stop lets the attempt
 * finish (its writes are crash-safe anyway, but a clean end leaves nothing
 * to tidy). Past the deadline the child is killed.
 */
static void
run_child(struct daemon *d, const struct profile *p, int look_only, struct tick_result *res)
{
	struct pollfd pf[2];
	long limit = deadline_of(p->c);
	time_t end = time(NULL) + limit;
	size_t got = 0;
	ssize_t k;
	int fds[2] = {-1, -1}, status = 0, killed = 0;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	res->err = P11E_ERR_INTERNAL;
	fflush(NULL);
	if (pipe2(fds, O_CLOEXEC) != 0 || (pid = fork()) < 0) {
		log_error("cannot start an attempt: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		close(fds[0]);
		child_main(d, p, look_only, fds[1]);
	}
	close(fds[1]);
	fds[1] = -1;
	pf[0].fd = fds[0];
	pf[0].events = POLLIN;
	pf[1].fd = d->sfd;
	pf[1].events = POLLIN;
	while (got < sizeof(*res)) {
		long left = (long)(end - time(NULL));

		if (left <= 0) {
			log_error("the attempt took longer than %ld s (token or server hung); "
			          "stopped it",
			          limit);
			kill(pid, SIGKILL);
			killed = 1;
			break;
		}
		if (poll(pf, 2, (int)(left > 3600 ? 3600000 : left * 1000)) < 0 && errno != EINTR)
			break;
		if (pf[1].revents & POLLIN)
			drain_signals(d);
		if (pf[0].revents & (POLLIN | POLLHUP)) {
			k = read(fds[0], (char *)res + got, sizeof(*res) - got);
			if (k <= 0 && !(k < 0 && errno == EINTR))
				break;
			got += k > 0 ? (size_t)k : 0;
		}
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got != sizeof(*res)) {
		memset(res, 0, sizeof(*res));
		res->err = P11E_ERR_INTERNAL;
		if (!killed)
			log_error("the attempt ended without a result (%s %d)",
			          WIFSIGNALED(status) ? "signal" : "exit status",
			          WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	}
out:
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
}

static uint64_t
random64(void)
{
	uint64_t v = 0;

	/* getrandom, not OpenSSL: the resting parent never initialises libcrypto. */
	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
		v = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
	return v;
}

/* Keeps the daemon's plan in the profile's attempt record, for `status`. */
static void
note_next(const struct profile *p)
{
	struct attempt a;

	if (attempt_load(p->c, &a) != 0 || a.next_at == p->next_at)
		return;
	a.next_at = p->next_at;
	(void)attempt_save(p->c, &a);
}

/* The next moment of p after an attempt's result. */
static void
schedule(struct profile *p, const struct tick_result *res)
{
	time_t now = time(NULL);
	char d[32];
	long delay;
	int asked = 0;

	if (res->err == P11E_ERR_PIN || res->err == P11E_ERR_CONFIG) {
		p->parked = 1;
		log_error("%s; no further attempt until the configuration is reloaded "
		          "(fix it, then `systemctl reload p11enroll` or SIGHUP)",
		          res->err == P11E_ERR_PIN
		              ? "the token refused the PIN (a retry could lock it)"
		              : "the configuration is not usable");
		return;
	}
	if (res->err == 0 && res->next_at > now) {
		p->failures = 0;
		p->next_at = res->next_at;
		snprintf(p->what, sizeof(p->what), "%s", res->what);
		log_info("next: %s", p->what);
		note_next(p);
		return;
	}
	if (res->err == 0) /* still due right after a successful attempt: never spin */
		log_warn("still due after the attempt (%s); retrying later", res->what);
	p->failures++;
	delay = schedule_retry_delay(p->failures, p->c->retry_min, p->c->retry_max,
	                             res->retry_after, random64(), &asked);
	p->next_at = now + delay;
	schedule_fmt_duration(delay, d, sizeof(d));
	snprintf(p->what, sizeof(p->what), "retry %u", p->failures);
	if (res->err == 0)
		log_info("retry %u in %s", p->failures, d);
	else
		log_info("attempt failed (%s); retry %u in %s%s", p11e_strerror(res->err),
		         p->failures, d, asked ? " (as the server asked)" : "");
	note_next(p);
}

/* A restart continues the backoff of the last failed attempt, and a refused
 * PIN stays refused while its file is unchanged. */
static void
resume(struct profile *p)
{
	struct attempt a;
	struct stat st;
	time_t now = time(NULL);
	char when[32];

	p->next_at = now;
	if (attempt_load(p->c, &a) != 0 || a.err == 0)
		return;
	/* A boot or restart must not spend one more PIN attempt on the same PIN. */
	if (a.err == P11E_ERR_PIN && p->c->pin_file != NULL && stat(p->c->pin_file, &st) == 0 &&
	    st.st_mtime <= a.at) {
		p->parked = 1;
		schedule_fmt_time(a.at, when, sizeof(when));
		log_error("the token refused the PIN at %s and %s has not changed since; no "
		          "attempt until the configuration is reloaded (fix the PIN file, or the "
		          "token's PIN, then SIGHUP)",
		          when, p->c->pin_file);
		return;
	}
	p->failures = a.failures;
	if (a.next_at > now && a.next_at - now <= p->c->retry_max)
		p->next_at = a.next_at;
}

/*
 * Writes each [agent] metrics_file with the series of every profile that
 * names it: the token's side as the profile's last child saw it, the rest
 * from state_dir. A file that cannot be written is logged and skipped.
 */
static void
write_metrics(const struct daemon *d)
{
	struct metrics_profile *m = NULL;
	const char *path;
	size_t i, j, k;

	for (i = 0; i < d->n; i++) {
		if ((path = d->p[i].c->metrics_file) == NULL)
			continue;
		for (j = 0; j < i; j++)
			if (d->p[j].c->metrics_file != NULL &&
			    strcmp(d->p[j].c->metrics_file, path) == 0)
				break;
		if (j < i) /* written with profile j */
			continue;
		if (m == NULL && (m = calloc(d->n, sizeof(*m))) == NULL) {
			log_warn("cannot write %s: out of memory", path);
			return;
		}
		for (j = i, k = 0; j < d->n; j++) {
			if (d->p[j].c->metrics_file == NULL ||
			    strcmp(d->p[j].c->metrics_file, path) != 0)
				continue;
			memset(&m[k], 0, sizeof(m[k]));
			m[k].name = d->p[j].name;
			m[k].token_uri = d->p[j].c->token_uri;
			m[k].cert = d->p[j].cert;
			metrics_load_state(d->p[j].c, &m[k]);
			k++;
		}
		(void)metrics_write_file(path, m, k);
	}
	free(m);
}

/* At start, what each token holds for the profiles with a metrics_file, then the file. */
static void
first_metrics(struct daemon *d)
{
	struct tick_result res;
	size_t i;
	int any = 0;

	for (i = 0; i < d->n && !d->stop; i++) {
		if (d->p[i].c->metrics_file == NULL)
			continue;
		any = 1;
		run_child(d, &d->p[i], 1, &res);
		if (res.cert_known)
			d->p[i].cert = res.cert;
	}
	if (any)
		write_metrics(d);
}

static int
reload(struct daemon *d)
{
	struct profile *np = NULL;
	size_t nn = 0, i, j;
	int r;

	d->reload = 0;
	if ((r = profile_load_all(d->paths, d->npaths, "run", &np, &nn)) != 0) {
		log_error("configuration not reloaded; the profiles loaded before stay in use");
		return r;
	}
	for (i = 0; i < nn; i++) {
		np[i].next_at = time(NULL);
		for (j = 0; j < d->n; j++)
			if (strcmp(np[i].c->path, d->p[j].c->path) == 0) {
				np[i].failures = d->p[j].failures;
				np[i].cert = d->p[j].cert;
			}
	}
	profile_free_all(d->p, d->n);
	d->p = np;
	d->n = nn;
	log_info("configuration reloaded: %zu profile%s", nn, nn == 1 ? "" : "s");
	return 0;
}

/* Arms the timer for the earliest moment of the profiles not parked (none: disarmed). */
static void
arm(struct daemon *d)
{
	struct itimerspec its;
	size_t i, best = d->n;
	char when[32];

	for (i = 0; i < d->n; i++)
		if (!d->p[i].parked && (best == d->n || d->p[i].next_at < d->p[best].next_at))
			best = i;
	memset(&its, 0, sizeof(its));
	if (best < d->n) {
		its.it_value.tv_sec = d->p[best].next_at;
		its.it_value.tv_nsec = 1; /* 0/0 would disarm */
	}
	if (timerfd_settime(d->tfd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL) != 0)
		log_warn("cannot set the timer: %s", strerror(errno));
	if (best == d->n) {
		log_info("nothing scheduled (every profile is parked); waiting for SIGHUP or "
		         "SIGTERM");
		return;
	}
	schedule_fmt_time(d->p[best].next_at, when, sizeof(when));
	log_debug("sleeping until %s (%s: %s)", when, d->p[best].name, d->p[best].what);
}

static int
setup(struct daemon *d)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0 ||
	    (d->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0 ||
	    (d->tfd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK)) < 0) {
		log_error("cannot set up signals and timer: %s", strerror(errno));
		return P11E_ERR_INTERNAL;
	}
	return 0;
}

int
daemon_run(char *const *paths, size_t npaths)
{
	struct daemon d;
	struct tick_result res;
	struct pollfd pf[2];
	uint64_t expirations;
	size_t i;
	int r;

	memset(&d, 0, sizeof(d));
	d.paths = paths;
	d.npaths = npaths;
	d.sfd = d.tfd = -1;
	if ((r = profile_load_all(paths, npaths, "run", &d.p, &d.n)) != 0 || (r = setup(&d)) != 0)
		goto out;
	for (i = 0; i < d.n; i++)
		resume(&d.p[i]);
	log_info("running %zu profile%s; SIGHUP reloads, SIGTERM stops", d.n, d.n == 1 ? "" : "s");
	first_metrics(&d);
	while (!d.stop) {
		for (i = 0; i < d.n && !d.stop && !d.reload; i++) {
			if (d.p[i].parked || d.p[i].next_at > time(NULL))
				continue;
			run_child(&d, &d.p[i], 0, &res);
			if (res.cert_known)
				d.p[i].cert = res.cert;
			log_set_tag(d.n > 1 ? d.p[i].name : NULL);
			schedule(&d.p[i], &res);
			log_set_tag(NULL);
			write_metrics(&d);
		}
		if (d.stop)
			break;
		if (d.reload) {
			(void)reload(&d);
			continue;
		}
		arm(&d);
		pf[0].fd = d.sfd;
		pf[0].events = POLLIN;
		pf[1].fd = d.tfd;
		pf[1].events = POLLIN;
		if (poll(pf, 2, -1) < 0 && errno != EINTR) {
			log_error("poll: %s", strerror(errno));
			r = P11E_ERR_INTERNAL;
			goto out;
		}
		if (pf[0].revents & POLLIN)
			drain_signals(&d);
		/* ECANCELED: the clock was set; the moments are wall-clock, re-arm. */
		if (pf[1].revents & POLLIN)
			(void)!read(d.tfd, &expirations, sizeof(expirations));
	}
	log_info("stopped");
	r = 0;
out:
	if (d.sfd >= 0)
		close(d.sfd);
	if (d.tfd >= 0)
		close(d.tfd);
	profile_free_all(d.p, d.n);
	return r;
}
