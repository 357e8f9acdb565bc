/*
 * netproc.c: the network process (netproc.h), seen from the process that
 * starts it: its start and end, and the requests and answers exchanged over a
 * socketpair (netproc_wire.h). Its own side is netproc_serve.c.
 */
#define _GNU_SOURCE /* close_range, setresuid */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "http.h"
#include "log.h"
#include "netproc.h"
#include "netproc_connect.h"
#include "netproc_parse.h"
#include "netproc_wire.h"
#include "secret.h"
#include "store.h"

#define CA_PEM_MAX (1u << 20)

#ifndef P11E_LIBEXECDIR
#define P11E_LIBEXECDIR "/usr/local/libexec/p11enroll"
#endif

extern char **environ;

/* This process's network process: its PID, its request socket, the socket of its
 * connection requests (netproc_connect.h). */
static struct netproc_handle np = {-1, -1, -1};
static pid_t owner = -1; /* the process that started it: a forked copy starts its own */
static int broken;       /* the network process ended: no further request */

/* Where the request in progress may connect; zeroed (nowhere) between requests. */
static struct netconn_plan plan;

static int at_exit_set;
static int enabled; /* netproc_enable was called */
static int adopted; /* the station's (netproc_adopt): not this process's child */

static int start(void);
static void finish(void);

/* Closes h's two sockets (the network process reads EOF once no copy is left). */
static void
close_sockets(struct netproc_handle *h)
{
	if (h->sock >= 0)
		close(h->sock);
	if (h->csock >= 0)
		close(h->csock);
	h->sock = h->csock = -1;
}

/* How a network process ended (a wait status), for a message. */
static void
describe_end(int status, char *buf, size_t size)
{
	if (WIFSIGNALED(status))
		snprintf(buf, size, "was killed by signal %d (%s)%s", WTERMSIG(status),
		         strsignal(WTERMSIG(status)),
		         WTERMSIG(status) == SIGSYS
		             ? ": it made a system call its confinement forbids"
		             : "");
	else
		snprintf(buf, size, "ended with exit status %d", WEXITSTATUS(status));
}

/* In a fork of the process that started one: its network process is not ours to use. */
static void
forget_inherited(void)
{
	if (owner == getpid())
		return;
	close_sockets(&np);
	np.pid = -1;
	broken = 0;
}

void
netproc_end(void)
{
	if (owner != getpid() || np.pid <= 0 || adopted)
		return;
	close_sockets(&np);
	while (waitpid(np.pid, NULL, 0) < 0 && errno == EINTR)
		;
	np.pid = -1;
}

/* At exit: netproc_end (the CPU time of the network process counts in this process's children). */
static void
finish(void)
{
	netproc_end();
}

/* ---------------------------------------------------------------- the client side */

/* Why the network process is gone, once; later requests fail quietly. */
static void
reap(void)
{
	char why[128];
	int status = 0;

	broken = 1;
	close_sockets(&np);
	if (np.pid <= 0)
		return;
	if (adopted) { /* the station waits for it and says how it ended */
		log_error("the station's network process %ld ended in the middle of a request",
		          (long)np.pid);
		np.pid = -1;
		return;
	}
	while (waitpid(np.pid, &status, 0) < 0 && errno == EINTR)
		;
	describe_end(status, why, sizeof(why));
	log_error("the network process %s", why);
	np.pid = -1;
}

/* The trust anchors of o->ca_file as PEM bytes, read here (the network process may not). */
static int
load_ca(const struct http_opts *o, unsigned char **pem, size_t *len)
{
	*pem = NULL;
	*len = 0;
	if (o->ca_file == NULL || o->ca_pem != NULL)
		return 0;
	return store_read_file(o->ca_file, CA_PEM_MAX, pem, len) == 0 ? 0 : P11E_ERR_FILE;
}

/* This process's network process, started if need be: 0, or -1 (logged). */
static int
ready(void)
{
	forget_inherited();
	if (np.sock < 0 && !broken && start() != 0)
		return -1;
	if (broken || np.sock < 0) {
		log_error("the network process has ended; no further request in this run");
		return -1;
	}
	return 0;
}

/*
 * Waits for the answer on sock, meanwhile serving the connections the network process
 * asks for (plan's addresses only): 0 when the answer is there to read, -1 when the
 * network process asked for another address or sent nonsense (stopped, reaped, logged)
 * or is gone (reaped).
 */
static int
await_answer(void)
{
	struct pollfd p[2];
	int k;

	for (;;) {
		p[0].fd = np.sock;
		p[0].events = POLLIN;
		p[1].fd = np.csock;
		p[1].events = POLLIN;
		p[0].revents = p[1].revents = 0;
		if ((k = poll(p, 2, -1)) < 0 && errno == EINTR)
			continue;
		if (k < 0)
			break;
		if (p[1].revents & POLLIN) {
			if ((k = netconn_serve(np.csock, &plan)) == 1)
				break; /* it ended: reap says how */
			if (k != 0) {
				log_error("stopped the network process: it asked for a connection "
				          "p11enroll does not make for it");
				kill(np.pid, SIGKILL);
				break;
			}
			continue;
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
			return 0;
		if (p[1].revents & (POLLHUP | POLLERR))
			break;
	}
	reap();
	return -1;
}

#ifdef P11E_TEST_HOOKS
/*
 * Tests only (never in the installed program): P11E_TEST_CARD_DIES=FILE:N
 * kills a station card's process (one that adopted the station's network
 * process) right after its Nth request was sent (SIGKILL), unless FILE
 * exists, which it creates first: the one card's process that gets there
 * first dies with its network process in the middle of a request.
 */
static void
test_card_dies(void)
{
	static int sent;
	const char *t = getenv("P11E_TEST_CARD_DIES"), *colon;
	char path[4096];
	int fd;

	if (!adopted || t == NULL || (colon = strrchr(t, ':')) == NULL ||
	    (size_t)(colon - t) >= sizeof(path) || ++sent != atoi(colon + 1))
		return;
	memcpy(path, t, (size_t)(colon - t));
	path[colon - t] = '\0';
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0)
		raise(SIGKILL);
}
#endif

/* Sends the request in w and reads the answer into *msg (secret_wipe_free): 0, or -1
 * when the network process is gone (reaped, logged). */
static int
call(const struct wire_wbuf *w, unsigned char **msg, size_t *mlen)
{
	*msg = NULL;
	*mlen = 0;
	if (wire_send(np.sock, w) != 0) {
		reap();
		return -1;
	}
#ifdef P11E_TEST_HOOKS
	test_card_dies();
#endif
	if (await_answer() != 0)
		return -1;
	if (wire_recv(np.sock, msg, mlen) != 0) {
		reap();
		return -1;
	}
	return 0;
}

/* After a malformed answer: the network process is not to be trusted any more. It is
 * stopped, no further request goes to it. Returns P11E_ERR_INTERNAL. */
static int
distrust(void)
{
	log_error("the network process sent a malformed answer; stopped it");
	kill(np.pid, SIGKILL);
	reap();
	return P11E_ERR_INTERNAL;
}

/* A parsing job's request (netproc_parse.h) begins with its op and this process's log
 * level and tag. 0, or P11E_ERR_INTERNAL when no network process can be had (logged). */
static int
job_begin(struct wire_wbuf *w, const char *op)
{
	if (ready() != 0)
		return P11E_ERR_INTERNAL;
	wire_w_str(w, op);
	wire_w_num(w, log_get_level());
	wire_w_str(w, log_get_tag());
	return 0;
}

/* Sends the request built in w and reads the answer into *msg (secret_wipe_free): 0,
 * P11E_ERR_ALLOC when w could not be built, P11E_ERR_INTERNAL when the network process
 * is gone (reaped, logged). */
static int
job_call(const struct wire_wbuf *w, unsigned char **msg, size_t *mlen)
{
	*msg = NULL;
	*mlen = 0;
	if (w->oom)
		return P11E_ERR_ALLOC;
	return call(w, msg, mlen) == 0 ? 0 : P11E_ERR_INTERNAL;
}

/* The outcome of an answer whose reader returned got: a malformed answer stops the
 * network process (distrust); else the network process's code for the request, its
 * error line kept as this process's last (the attempt record). */
static int
job_result(int got, int rc, const char *err)
{
	if (got != 0)
		return got == P11E_ERR_ALLOC ? P11E_ERR_ALLOC : distrust();
	if (rc != 0 && err != NULL && err[0] != '\0')
		log_set_last_error(err);
	return rc;
}

static int
remote_request(const char *method, const char *url, const char *ctype, const unsigned char *body,
               size_t len, const struct http_opts *o, struct http_resp **out)
{
	struct wire_wbuf w = {NULL, 0, 0, 0};
	struct netproc_answer a = {0, 0, 0, NULL};
	struct http_resp *resp = NULL;
	unsigned char *msg = NULL, *ca = NULL;
	size_t mlen = 0, calen = 0;
	int rc, got;

	*out = NULL;
	if (ready() != 0)
		return P11E_ERR_INTERNAL;
	if (load_ca(o, &ca, &calen) != 0) {
		log_error("cannot read [scep] ca_file %s", o->ca_file);
		return P11E_ERR_FILE;
	}
	if ((rc = netconn_plan_make(url, o, &plan)) != 0) {
		free(ca);
		return rc;
	}
	wire_w_str(&w, method);
	wire_w_str(&w, url);
	wire_w_str(&w, ctype);
	wire_w_bytes(&w, body, len);
	wire_w_num(&w, o->timeout_s);
	wire_w_num(&w, (int64_t)o->max_body);
	wire_w_num(&w, o->secret_body);
	wire_w_bytes(&w, ca != NULL ? ca : o->ca_pem, ca != NULL ? calen : o->ca_pem_len);
	wire_w_num(&w, o->quiet);
	wire_w_num(&w, o->no_proxy);
	wire_w_str(&w, o->proxy);
	wire_w_str(&w, o->user);
	wire_w_str(&w, o->password);
	wire_w_num(&w, o->auth);
	wire_w_num(&w, log_get_level());
	wire_w_str(&w, log_get_tag());
	netconn_plan_write(&w, &plan);
	free(ca);
	if ((rc = job_call(&w, &msg, &mlen)) != 0)
		goto out;
	if ((got = netproc_answer_read(msg, mlen, o, &a, &resp)) == 0) {
		http_request_count_add(a.started);
		http_retry_after_note(a.retry_after);
	}
	if ((rc = job_result(got, a.rc, a.err)) != 0)
		goto out;
	*out = resp;
	resp = NULL;
out:
	netconn_plan_free(&plan);
	wire_w_free(&w);
	secret_wipe_free(msg);
	secret_wipe_free(a.err);
	http_resp_free(resp);
	return rc;
}

/*
 * The path of p11enroll-net: beside this program (readlink of /proc/self/exe:
 * a build tree, or both installed in one directory), else in P11E_LIBEXECDIR.
 * Only directories root or this user own can hold this program in the first
 * place, so the one beside it is as trusted as it.
 */
static int
prog_path(char *buf, size_t size)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (n > 0) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL) {
			*slash = '\0';
			if ((size_t)snprintf(buf, size, "%s/%s", self, NETPROC_PROG) < size &&
			    access(buf, X_OK) == 0)
				return 0;
		}
	}
	if ((size_t)snprintf(buf, size, "%s/%s", P11E_LIBEXECDIR, NETPROC_PROG) >= size)
		return -1;
	return 0;
}

/*
 * The environment p11enroll-net runs with: this process's, and GnuTLS told not to
 * initialise itself. Debian's libcurl (OpenSSL flavour) pulls GnuTLS in through
 * librtmp and libldap, protocols the network process never allows; GnuTLS's
 * constructor would otherwise build its ASN.1 tables and read its configuration
 * in every network process (about 1.5 ms of CPU here), code a confined process
 * has no use for. Built before the fork, since the child may not allocate.
 * NULL when out of memory.
 */
#define GNUTLS_NO_INIT "GNUTLS_NO_IMPLICIT_INIT="
static char **
child_env(void)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n] != NULL)
		n++;
	if ((env = calloc(n + 2, sizeof(*env))) == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], GNUTLS_NO_INIT, strlen(GNUTLS_NO_INIT)) != 0)
			env[k++] = environ[i];
	env[k] = GNUTLS_NO_INIT "1";
	return env;
}

/* Executes p11enroll-net with its two sockets (and errfd as its stderr, unless -1; SIGINT
 * ignored when ignore_int): 0 with h set, or P11E_ERR_INTERNAL (logged). */
static int
spawn(struct netproc_handle *h, int errfd, int ignore_int)
{
	struct sigaction ign;

	char *argv[] = {NETPROC_PROG, NULL};
	char path[4096 + sizeof(NETPROC_PROG) + 1] = "";
	char **env = NULL;
	int sv[2] = {-1, -1}, cv[2] = {-1, -1}, err[2] = {-1, -1}, e = 0;
	ssize_t k;
	pid_t pid;

	h->pid = -1;
	h->sock = h->csock = -1;
	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;

	if (prog_path(path, sizeof(path)) != 0) {
		e = ENAMETOOLONG;
		goto fail;
	}
	if ((env = child_env()) == NULL) {
		e = ENOMEM;
		goto fail;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cv) != 0 ||
	    pipe2(err, O_CLOEXEC) != 0 || (pid = fork()) < 0) {
		e = errno;
		goto fail;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls here: dup2 clears FD_CLOEXEC on the copy, so
		 * the sockets are fds 3 and 4 there (cv was made after sv: cv[1] is above 3);
		 * the program closes every descriptor above 4. */
		if ((!ignore_int || sigaction(SIGINT, &ign, NULL) == 0) &&
		    dup2(sv[1], NETPROC_FD) == NETPROC_FD &&
		    dup2(cv[1], NETPROC_CONNECT_FD) == NETPROC_CONNECT_FD &&
		    (errfd < 0 || dup2(errfd, STDERR_FILENO) == STDERR_FILENO))
			execve(path, argv, env);
		e = errno;
		(void)!write(err[1], &e, sizeof(e));
		_exit(P11E_EXIT_SOFTWARE);
	}
	free(env);
	env = NULL;
	close(sv[1]);
	close(cv[1]);
	close(err[1]);
	sv[1] = cv[1] = err[1] = -1;
	/* EOF: the exec happened (the pipe is close-on-exec); else its errno. */
	while ((k = read(err[0], &e, sizeof(e))) < 0 && errno == EINTR)
		;
	close(err[0]);
	err[0] = -1;
	if (k > 0) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		goto fail;
	}
	h->pid = pid;
	h->sock = sv[0];
	h->csock = cv[0];
	log_debug("network process %ld started (%s)", (long)pid, path);
	return 0;
fail:
	log_error("cannot start the network process (%s): %s", path, strerror(e));
	free(env);
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (cv[0] >= 0)
		close(cv[0]);
	if (cv[1] >= 0)
		close(cv[1]);
	if (err[0] >= 0)
		close(err[0]);
	if (err[1] >= 0)
		close(err[1]);
	return P11E_ERR_INTERNAL;
}

static int
start(void)
{
	struct netproc_handle h;

	if (spawn(&h, -1, 0) != 0)
		return P11E_ERR_INTERNAL;
	np = h;
	owner = getpid();
	adopted = 0;
	if (!at_exit_set && atexit(finish) == 0)
		at_exit_set = 1;
	return 0;
}

int
netproc_spawn(struct netproc_handle *h, int errfd)
{
	return spawn(h, errfd, 1);
}

int
netproc_alive(struct netproc_handle *h)
{
	char why[128];
	int status = 0;
	pid_t r;

	if (h->pid <= 0)
		return 0;
	while ((r = waitpid(h->pid, &status, WNOHANG)) < 0 && errno == EINTR)
		;
	if (r == 0)
		return 1;
	if (r == h->pid) {
		describe_end(status, why, sizeof(why));
		log_msg(WIFSIGNALED(status) ? LOG_LVL_WARN : LOG_LVL_DEBUG,
		        "the station's network process %ld %s", (long)h->pid, why);
	}
	h->pid = -1;
	return 0;
}

void
netproc_stop(struct netproc_handle *h, int kill_it)
{
	close_sockets(h);
	if (h->pid > 0 && kill_it)
		(void)kill(h->pid, SIGKILL);
	if (h->pid > 0)
		while (waitpid(h->pid, NULL, 0) < 0 && errno == EINTR)
			;
	h->pid = -1;
}

void
netproc_adopt(const struct netproc_handle *h)
{
	forget_inherited(); /* the station's own, if it started one */
	if (h->sock < 0 || h->csock < 0)
		return;
	np = *h;
	owner = getpid();
	broken = 0;
	adopted = 1;
}

int
netproc_enabled(void)
{
	return enabled;
}

int
netproc_page_parse(const unsigned char *body, size_t len, size_t max, char **challenge,
                   char **thumbprint)
{
	struct wire_wbuf w = {NULL, 0, 0, 0};
	unsigned char *msg = NULL;
	char *err = NULL, *tp = NULL;
	size_t mlen = 0;
	int rc, got, answer = 0;

	*challenge = NULL;
	if (thumbprint != NULL)
		*thumbprint = NULL;
	if ((rc = job_begin(&w, NETPROC_OP_NDESPAGE)) != 0)
		return rc;
	wire_w_bytes(&w, body != NULL ? body : (const unsigned char *)"", len);
	wire_w_num(&w, thumbprint != NULL);
	if ((rc = job_call(&w, &msg, &mlen)) == 0) {
		got = netproc_page_answer_read(msg, mlen, max, &answer, &err, challenge, &tp);
		rc = job_result(got, answer, err);
	}
	if (thumbprint != NULL) {
		*thumbprint = tp;
		tp = NULL;
	}
	wire_w_free(&w);
	secret_wipe_free(msg);
	secret_wipe_free(err);
	free(tp);
	return rc;
}

/* Sends a request built in w (then freed) whose answer is a list of certificates taken
 * from a body of len bytes: 0 with *certs (sk_X509_pop_free), or the error. */
static int
certs_job(struct wire_wbuf *w, size_t len, STACK_OF(X509) * *certs)
{
	unsigned char *msg = NULL;
	char *err = NULL;
	size_t mlen = 0;
	int rc, got, answer = 0;

	*certs = NULL;
	/* re-encoded, a certificate keeps its length; twice the body leaves room for BER */
	if ((rc = job_call(w, &msg, &mlen)) == 0) {
		got = netproc_certs_answer_read(msg, mlen, 2 * len + 4096, &answer, &err, certs);
		rc = job_result(got, answer, err);
	}
	if (rc != 0) {
		sk_X509_pop_free(*certs, X509_free);
		*certs = NULL;
	}
	wire_w_free(w);
	secret_wipe_free(msg);
	secret_wipe_free(err);
	return rc;
}

/* A job whose request is one body of len bytes and whose answer is certificates. */
static int
body_certs_job(const char *op, const unsigned char *der, size_t len, STACK_OF(X509) * *certs)
{
	struct wire_wbuf w = {NULL, 0, 0, 0};
	int rc;

	*certs = NULL;
	if ((rc = job_begin(&w, op)) != 0)
		return rc;
	wire_w_bytes(&w, der != NULL ? der : (const unsigned char *)"", len);
	return certs_job(&w, len, certs);
}

int
netproc_ca_parse(const unsigned char *der, size_t len, struct scep_ca **out)
{
	STACK_OF(X509) *certs = NULL;
	int rc;

	*out = NULL;
	if (!enabled)
		return scep_ca_parse(der, len, out);
	if ((rc = body_certs_job(NETPROC_OP_CACERT, der, len, &certs)) != 0)
		return rc;
	return scep_ca_from_certs(certs, out);
}

int
netproc_rep_certs(const unsigned char *plain, size_t len, STACK_OF(X509) * *certs)
{
	if (!enabled)
		return scep_rep_certs(plain, len, certs);
	return body_certs_job(NETPROC_OP_REPCERTS, plain, len, certs);
}

int
netproc_env_parse(const unsigned char *der, size_t len, X509 *to, struct scep_env **out)
{
	struct wire_wbuf w = {NULL, 0, 0, 0};
	unsigned char *msg = NULL;
	char *err = NULL;
	size_t mlen = 0;
	int rc, got, answer = 0;

	*out = NULL;
	if (!enabled)
		return scep_env_parse(der, len, to, out);
	if ((rc = job_begin(&w, NETPROC_OP_ENVELOPE)) != 0)
		return rc;
	netproc_env_request_write(&w, der, len, to);
	if ((rc = job_call(&w, &msg, &mlen)) == 0) {
		got = netproc_env_answer_read(msg, mlen, len, &answer, &err, out);
		rc = job_result(got, answer, err);
	}
	if (rc != 0) {
		scep_env_free(*out);
		*out = NULL;
	}
	wire_w_free(&w);
	secret_wipe_free(msg);
	secret_wipe_free(err);
	return rc;
}

int
netproc_next_parse(const unsigned char *der, size_t len, const struct scep_ca *cur,
                   struct scep_ca **out)
{
	struct wire_wbuf w = {NULL, 0, 0, 0};
	STACK_OF(X509) *certs = NULL;
	int rc;

	*out = NULL;
	if (!enabled)
		return scep_next_parse(der, len, cur, out);
	if ((rc = job_begin(&w, NETPROC_OP_NEXTCA)) != 0)
		return rc;
	netproc_next_request_write(&w, der, len, cur);
	if ((rc = certs_job(&w, len, &certs)) != 0)
		return rc;
	return scep_next_from_certs(certs, cur, out);
}

int
netproc_rep_parse(const unsigned char *der, size_t len, STACK_OF(X509) * trusted, const char *txid,
                  const unsigned char nonce[16], struct scep_rep **out)
{
	struct wire_wbuf w = {NULL, 0, 0, 0};
	unsigned char *msg = NULL;
	char *err = NULL;
	size_t mlen = 0;
	int rc, got, answer = 0;

	*out = NULL;
	if (!enabled)
		return scep_rep_parse(der, len, trusted, txid, nonce, out);
	if ((rc = job_begin(&w, NETPROC_OP_CERTREP)) != 0)
		return rc;
	netproc_rep_request_write(&w, der, len, trusted, txid, nonce);
	if ((rc = job_call(&w, &msg, &mlen)) == 0) {
		got = netproc_rep_answer_read(msg, mlen, trusted, len, &answer, &err, out);
		rc = job_result(got, answer, err);
	}
	wire_w_free(&w);
	secret_wipe_free(msg);
	secret_wipe_free(err);
	return rc;
}

void
netproc_enable(void)
{
	enabled = 1;
	http_set_remote(remote_request);
}

void
netproc_prestart(void)
{
	forget_inherited();
	if (!enabled || broken || np.sock >= 0)
		return;
	(void)start(); /* a failure is logged; the first request reports it again */
}
