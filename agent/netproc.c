/*
 * netproc.c: the network process (netproc.h): its start and end, the
 * requests and answers it exchanges with the process that started it over a
 * socketpair (netproc_wire.h), and its loop; its confinement is in
 * netproc_confine.c.
 */
#define _GNU_SOURCE /* close_range, setresuid */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "err.h"
#include "http.h"
#include "log.h"
#include "netproc.h"
#include "netproc_confine.h"
#include "netproc_wire.h"
#include "secret.h"
#include "store.h"

#define NETPROC_FD 3
#define CA_PEM_MAX (1u << 20)

extern char **environ;

static pid_t child = -1;
static pid_t owner = -1; /* the process that started it: a forked copy starts its own */
static int sock = -1;
static int broken; /* the network process ended: no further request */

static int at_exit_set;
static int enabled; /* netproc_enable was called */

static int start(void);
static void finish(void);

/* In a fork of the process that started one: its network process is not ours to use. */
static void
forget_inherited(void)
{
	if (owner == getpid())
		return;
	if (sock >= 0)
		close(sock);
	sock = -1;
	child = -1;
	broken = 0;
}

void
netproc_end(void)
{
	if (owner != getpid() || child <= 0)
		return;
	if (sock >= 0)
		close(sock);
	sock = -1;
	while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
		;
	child = -1;
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
	int status = 0;

	broken = 1;
	if (sock >= 0)
		close(sock);
	sock = -1;
	if (child <= 0)
		return;
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(status))
		log_error("the network process was killed by signal %d (%s)%s", WTERMSIG(status),
		          strsignal(WTERMSIG(status)),
		          WTERMSIG(status) == SIGSYS ? ": it made a system call its confinement "
		                                       "forbids"
		                                     : "");
	else
		log_error("the network process ended with exit status %d", WEXITSTATUS(status));
	child = -1;
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

static int
remote_request(const char *method, const char *url, const char *ctype, const unsigned char *body,
               size_t len, const struct http_opts *o, struct http_resp **out)
{
	struct netproc_wbuf w = {NULL, 0, 0, 0};
	struct netproc_answer a = {0, 0, 0, NULL};
	struct http_resp *resp = NULL;
	unsigned char *msg = NULL, *ca = NULL;
	size_t mlen = 0, calen = 0;
	int rc = P11E_ERR_INTERNAL, got;

	*out = NULL;
	forget_inherited();
	if (sock < 0 && !broken && start() != 0)
		return P11E_ERR_INTERNAL;
	if (broken || sock < 0) {
		log_error("the network process has ended; no further request in this run");
		return P11E_ERR_INTERNAL;
	}
	if (load_ca(o, &ca, &calen) != 0) {
		log_error("cannot read [scep] ca_file %s", o->ca_file);
		return P11E_ERR_FILE;
	}
	netproc_w_str(&w, method);
	netproc_w_str(&w, url);
	netproc_w_str(&w, ctype);
	netproc_w_bytes(&w, body, len);
	netproc_w_num(&w, o->timeout_s);
	netproc_w_num(&w, (int64_t)o->max_body);
	netproc_w_num(&w, o->secret_body);
	netproc_w_bytes(&w, ca != NULL ? ca : o->ca_pem, ca != NULL ? calen : o->ca_pem_len);
	netproc_w_num(&w, o->quiet);
	netproc_w_num(&w, o->no_proxy);
	netproc_w_str(&w, o->proxy);
	netproc_w_str(&w, o->user);
	netproc_w_str(&w, o->password);
	netproc_w_num(&w, o->auth);
	netproc_w_num(&w, log_get_level());
	netproc_w_str(&w, log_get_tag());
	free(ca);
	if (w.oom) {
		rc = P11E_ERR_ALLOC;
		goto out;
	}
	if (netproc_send(sock, &w) != 0 || (got = netproc_recv(sock, &msg, &mlen)) != 0) {
		reap();
		goto out;
	}
	if ((got = netproc_answer_read(msg, mlen, o, &a, &resp)) != 0) {
		if (got == P11E_ERR_ALLOC) {
			rc = P11E_ERR_ALLOC;
		} else { /* not to be trusted any more: stopped, no further request */
			log_error("the network process sent a malformed answer; stopped it");
			kill(child, SIGKILL);
			reap();
		}
		goto out;
	}
	http_request_count_add(a.started);
	http_retry_after_note(a.retry_after);
	if ((rc = a.rc) != 0 && a.err != NULL && a.err[0] != '\0')
		log_set_last_error(a.err);
	*out = resp;
	resp = NULL;
out:
	netproc_w_free(&w);
	if (msg != NULL)
		OPENSSL_cleanse(msg, mlen);
	secret_wipe_free(msg);
	secret_wipe_free(a.err);
	http_resp_free(resp);
	return rc;
}

static int
start(void)
{
	char *argv[] = {"p11enroll", NETPROC_ARG, NULL};
	int sv[2] = {-1, -1}, err[2] = {-1, -1}, e = 0;
	ssize_t k;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ||
	    pipe2(err, O_CLOEXEC) != 0 || (pid = fork()) < 0) {
		e = errno;
		goto fail;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls here: dup2 clears FD_CLOEXEC on the copy, so
		 * the socket is fd 3 there; the program closes every descriptor above it. */
		if (dup2(sv[1], NETPROC_FD) == NETPROC_FD)
			execve("/proc/self/exe", argv, environ);
		e = errno;
		(void)!write(err[1], &e, sizeof(e));
		_exit(P11E_EXIT_SOFTWARE);
	}
	close(sv[1]);
	close(err[1]);
	sv[1] = err[1] = -1;
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
	child = pid;
	owner = getpid();
	sock = sv[0];
	if (!at_exit_set && atexit(finish) == 0)
		at_exit_set = 1;
	log_debug("network process %ld started", (long)pid);
	return 0;
fail:
	log_error("cannot start the network process (/proc/self/exe): %s", strerror(e));
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (err[0] >= 0)
		close(err[0]);
	if (err[1] >= 0)
		close(err[1]);
	return P11E_ERR_INTERNAL;
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
	if (!enabled || broken || sock >= 0)
		return;
	(void)start(); /* a failure is logged; the first request reports it again */
}

/* ---------------------------------------------------------------- the network process */

/* Serves one request message; the answer goes to w. */
static int
serve(struct netproc_rbuf *r, struct netproc_wbuf *w)
{
	struct http_opts o;
	struct http_resp *resp = NULL;
	char *method = NULL, *url = NULL, *ctype = NULL, *proxy = NULL, *user = NULL, *pw = NULL;
	char *tag = NULL;
	const unsigned char *body, *ca;
	size_t blen, calen;
	unsigned long before = http_request_count();
	int rc = P11E_ERR_INTERNAL;

	memset(&o, 0, sizeof(o));
	if (netproc_r_str(r, &method) != 0 || netproc_r_str(r, &url) != 0 ||
	    netproc_r_str(r, &ctype) != 0)
		goto oom;
	body = netproc_r_bytes(r, &blen);
	o.timeout_s = (long)netproc_r_num(r);
	o.max_body = (size_t)netproc_r_num(r);
	o.secret_body = (int)netproc_r_num(r);
	ca = netproc_r_bytes(r, &calen);
	o.ca_pem = ca;
	o.ca_pem_len = calen;
	o.quiet = (int)netproc_r_num(r);
	o.no_proxy = (int)netproc_r_num(r);
	if (netproc_r_str(r, &proxy) != 0 || netproc_r_str(r, &user) != 0 ||
	    netproc_r_str(r, &pw) != 0)
		goto oom;
	o.proxy = proxy;
	o.user = user;
	o.password = pw;
	o.auth = (unsigned)netproc_r_num(r);
	log_set_level((int)netproc_r_num(r));
	if (netproc_r_str(r, &tag) != 0)
		goto oom;
	if (r->bad || r->off != r->len || method == NULL || url == NULL ||
	    (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)) {
		log_error("malformed request to the network process");
		return -1;
	}
	log_set_tag(tag);
	log_clear_last_error();
	http_retry_after_reset();
	rc = http_request_here(method, url, ctype, body, blen, &o, &resp);
	goto answer;
oom:
	rc = P11E_ERR_ALLOC;
answer:
	netproc_w_num(w, rc);
	netproc_w_num(w, (int64_t)(http_request_count() - before));
	netproc_w_num(w, http_retry_after());
	netproc_w_str(w, log_last_error());
	if (rc == 0) {
		netproc_w_num(w, resp->status);
		netproc_w_str(w, resp->content_type);
		netproc_w_str(w, resp->location);
		netproc_w_bytes(w, resp->body != NULL ? resp->body : (const unsigned char *)"",
		                resp->len);
	}
	http_resp_free(resp);
	secret_wipe_free(method);
	secret_wipe_free(url);
	secret_wipe_free(ctype);
	secret_wipe_free(proxy);
	secret_wipe_free(user);
	secret_wipe_free(pw);
	secret_wipe_free(tag);
	return 0;
}

int
netproc_main(void)
{
	struct netproc_wbuf w = {NULL, 0, 0, 0};
	struct netproc_rbuf r;
	struct rusage ru;
	unsigned char *msg = NULL;
	size_t len = 0;
	int got;

	signal(SIGPIPE, SIG_IGN);
	if (fcntl(NETPROC_FD, F_GETFD) < 0) {
		log_error("%s is started by p11enroll itself, not by hand", NETPROC_ARG);
		return P11E_EXIT_USAGE;
	}
	(void)close_range(NETPROC_FD + 1, ~0U, 0);
	/* Everything that loads a library or reads configuration, before the filter. */
	if (http_init() != 0 || OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, NULL) != 1)
		return P11E_EXIT_SOFTWARE;
	if (netproc_confine() != 0)
		return P11E_EXIT_SOFTWARE;
	while ((got = netproc_recv(NETPROC_FD, &msg, &len)) == 0) {
		r.p = msg;
		r.len = len;
		r.off = 0;
		r.bad = 0;
		if (serve(&r, &w) != 0 || w.oom || netproc_send(NETPROC_FD, &w) != 0)
			got = -1;
		OPENSSL_cleanse(msg, len);
		secret_wipe_free(msg);
		msg = NULL;
		netproc_w_free(&w);
		if (got != 0)
			break;
	}
	http_cleanup();
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		log_debug("network process: %lu request%s, peak RSS %ld KiB", http_request_count(),
		          http_request_count() == 1 ? "" : "s", ru.ru_maxrss);
#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer's check at exit stops the threads with ptrace from a child process,
	 * which the filter forbids (and a nobody process cannot trace itself): it would spin. */
	_exit(got == 1 ? P11E_EXIT_OK : P11E_EXIT_SOFTWARE);
#endif
	return got == 1 ? P11E_EXIT_OK : P11E_EXIT_SOFTWARE;
}
