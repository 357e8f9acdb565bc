/*
 * netproc_serve.c: the network process's side (netproc.h): netproc_main,
 * started as the program p11enroll-net (netmain.c) with the request socket on
 * fd 3, confines itself (netproc_confine.c) and serves each request with
 * libcurl (http_curl.c). The process that started it is in netproc.c.
 */
#define _GNU_SOURCE /* close_range */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>

#include "challenge.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "netproc.h"
#include "netproc_confine.h"
#include "netproc_connect.h"
#include "netproc_parse.h"
#include "netproc_wire.h"
#include "scep.h"
#include "secret.h"

/* A request the parent should never have sent: the loop stops, the parent sees why. */
static int
malformed(void)
{
	log_error("malformed request to the network process");
	return -1;
}

/*
 * The header of a parsing job's request, after its op (netproc_parse.h): the
 * parent's log level and tag, applied here, and this job's last error line
 * cleared. 0, -1 for a malformed header, P11E_ERR_ALLOC.
 */
static int
job_head(struct wire_rbuf *r)
{
	char *tag = NULL;
	int level = (int)wire_r_num(r);

	if (wire_r_str(r, &tag) != 0)
		return P11E_ERR_ALLOC;
	if (r->bad)
		return -1;
	log_set_level(level);
	log_set_tag(tag);
	log_clear_last_error();
	secret_wipe_free(tag);
	return 0;
}

/* Serves a CertRep to parse and verify (netproc_parse.h), after its op; the answer goes to w. */
static int
serve_rep(struct wire_rbuf *r, struct wire_wbuf *w)
{
	STACK_OF(X509) *trusted = NULL;
	struct scep_rep *rep = NULL;
	const unsigned char *der;
	unsigned char nonce[16];
	char *txid = NULL;
	size_t len = 0;
	int rc;

	if ((rc = job_head(r)) == 0)
		rc = netproc_rep_request_read(r, &der, &len, &trusted, &txid, nonce);
	if (rc == -1)
		return malformed();
	if (rc == 0 && (rc = scep_rep_parse(der, len, trusted, txid, nonce, &rep)) == 0)
		log_debug("network process: CertRep parsed, signature and transaction verified");
	netproc_rep_answer_write(w, rc, log_last_error(), rep, trusted);
	scep_rep_free(rep);
	sk_X509_pop_free(trusted, X509_free);
	secret_wipe_free(txid);
	return 0;
}

/*
 * Answers a job whose result is certificates (netproc_parse.h): more than
 * NETPROC_CERTS_MAX are refused, said at level (what names them), else done
 * is logged with their number. Frees certs.
 */
static void
answer_certs(struct wire_wbuf *w, int rc, STACK_OF(X509) * certs, int level, const char *what,
             const char *done)
{
	if (rc == 0 && sk_X509_num(certs) > NETPROC_CERTS_MAX) {
		log_msg(level, "%s holds %d certificates; p11enroll takes at most %d", what,
		        sk_X509_num(certs), NETPROC_CERTS_MAX);
		rc = P11E_ERR_MALFORMED;
	} else if (rc == 0) {
		log_debug("network process: %s, %d certificate%s", done, sk_X509_num(certs),
		          sk_X509_num(certs) == 1 ? "" : "s");
	}
	netproc_certs_answer_write(w, rc, log_last_error(), certs);
	sk_X509_pop_free(certs, X509_free);
}

/*
 * Serves a body to take apart into certificates (netproc_parse.h), after its op: a
 * GetCACert body (scep_ca_certs) or a decrypted CertRep envelope (scep_rep_certs),
 * what the log calls it.
 */
static int
serve_certs(struct wire_rbuf *r, struct wire_wbuf *w,
            int (*take_apart)(const unsigned char *, size_t, STACK_OF(X509) **), const char *what)
{
	char done[96];
	STACK_OF(X509) *certs = NULL;
	const unsigned char *der = NULL;
	size_t len = 0;
	int rc;

	if ((rc = job_head(r)) == 0 &&
	    ((der = wire_r_bytes(r, &len)) == NULL || r->bad || r->off != r->len))
		rc = -1;
	if (rc == -1)
		return malformed();
	if (rc == 0)
		rc = take_apart(der, len, &certs);
	snprintf(done, sizeof(done), "%s taken apart", what);
	answer_certs(w, rc, certs, LOG_LVL_ERROR, what, done);
	return 0;
}

/* Serves a GetNextCACert body to check and take apart (netproc_parse.h), after its op.
 * What it refuses is a warning: the run goes on without a next CA. */
static int
serve_next(struct wire_rbuf *r, struct wire_wbuf *w)
{
	STACK_OF(X509) *signers = NULL, *ca = NULL, *bundle = NULL, *certs = NULL;
	const unsigned char *der = NULL;
	size_t len = 0;
	int rc;

	if ((rc = job_head(r)) == 0)
		rc = netproc_next_request_read(r, &der, &len, &signers, &ca, &bundle);
	if (rc == -1)
		return malformed();
	if (rc == 0)
		rc = scep_next_certs(der, len, signers, sk_X509_value(ca, 0), bundle, &certs);
	answer_certs(w, rc, certs, LOG_LVL_WARN, "GetNextCACert bundle",
	             "GetNextCACert verified, signed by the current CA");
	sk_X509_pop_free(signers, X509_free);
	sk_X509_pop_free(ca, X509_free);
	sk_X509_pop_free(bundle, X509_free);
	return 0;
}

/* Serves a CertRep's envelope to take apart (netproc_parse.h), after its op. */
static int
serve_env(struct wire_rbuf *r, struct wire_wbuf *w)
{
	struct scep_env *env = NULL;
	const unsigned char *der = NULL;
	X509 *to = NULL;
	size_t len = 0;
	int rc;

	if ((rc = job_head(r)) == 0)
		rc = netproc_env_request_read(r, &der, &len, &to);
	if (rc == -1)
		return malformed();
	if (rc == 0 && (rc = scep_env_parse(der, len, to, &env)) == 0)
		log_debug("network process: CertRep's envelope taken apart: %s, its key encrypted "
		          "to the request's certificate, %zu bytes of content",
		          OBJ_nid2sn(env->cipher_nid), env->data_len);
	netproc_env_answer_write(w, rc, log_last_error(), env);
	scep_env_free(env);
	X509_free(to);
	return 0;
}

/* Serves an NDES page to read (netproc_parse.h), after its op. */
static int
serve_page(struct wire_rbuf *r, struct wire_wbuf *w)
{
	const unsigned char *page = NULL;
	char *ch = NULL, *tp = NULL;
	size_t len = 0;
	int rc, want_tp = 0;

	if ((rc = job_head(r)) == 0) {
		page = wire_r_bytes(r, &len);
		want_tp = (int)wire_r_num(r);
		if (page == NULL || r->bad || r->off != r->len)
			rc = -1;
	}
	if (rc == -1)
		return malformed();
	if (rc == 0 && (rc = challenge_parse(page, len, &ch, want_tp ? &tp : NULL)) == 0)
		log_debug("network process: NDES page read, a challenge%s",
		          tp != NULL ? " and the CA thumbprint" : "");
	netproc_page_answer_write(w, rc, log_last_error(), ch, tp);
	secret_free(ch);
	free(tp);
	return 0;
}

/* http_opts.connect here: the process that started this one connects (netproc_connect.h). */
static int
ask_parent(void *ud, const void *addr, size_t len, int *err)
{
	(void)ud;
	return netconn_ask(NETPROC_CONNECT_FD, addr, (socklen_t)len, err);
}

/* Serves one request message; the answer goes to w. */
static int
serve(struct wire_rbuf *r, struct wire_wbuf *w)
{
	struct http_opts o;
	struct http_resp *resp = NULL;
	struct netproc_answer a;
	char *method = NULL, *url = NULL, *ctype = NULL, *proxy = NULL, *user = NULL, *pw = NULL;
	char *tag = NULL, *names[NETCONN_NAMES_MAX];
	const unsigned char *body, *ca;
	size_t blen, calen, n_names = 0, i;
	int64_t n;
	unsigned long before = http_request_count();
	int rc = P11E_ERR_INTERNAL;

	memset(&o, 0, sizeof(o));
	if (wire_r_str(r, &method) != 0)
		goto oom;
	if (method != NULL && strcmp(method, NETPROC_OP_CERTREP) == 0) {
		secret_wipe_free(method);
		return serve_rep(r, w);
	}
	if (method != NULL && strcmp(method, NETPROC_OP_CACERT) == 0) {
		secret_wipe_free(method);
		return serve_certs(r, w, scep_ca_certs, "GetCACert bundle");
	}
	if (method != NULL && strcmp(method, NETPROC_OP_REPCERTS) == 0) {
		secret_wipe_free(method);
		return serve_certs(r, w, scep_rep_certs, "CertRep's certificate bundle");
	}
	if (method != NULL && strcmp(method, NETPROC_OP_ENVELOPE) == 0) {
		secret_wipe_free(method);
		return serve_env(r, w);
	}
	if (method != NULL && strcmp(method, NETPROC_OP_NEXTCA) == 0) {
		secret_wipe_free(method);
		return serve_next(r, w);
	}
	if (method != NULL && strcmp(method, NETPROC_OP_NDESPAGE) == 0) {
		secret_wipe_free(method);
		return serve_page(r, w);
	}
	if (wire_r_str(r, &url) != 0 || wire_r_str(r, &ctype) != 0)
		goto oom;
	body = wire_r_bytes(r, &blen);
	o.timeout_s = (long)wire_r_num(r);
	o.max_body = (size_t)wire_r_num(r);
	o.secret_body = (int)wire_r_num(r);
	ca = wire_r_bytes(r, &calen);
	o.ca_pem = ca;
	o.ca_pem_len = calen;
	o.quiet = (int)wire_r_num(r);
	o.no_proxy = (int)wire_r_num(r);
	if (wire_r_str(r, &proxy) != 0 || wire_r_str(r, &user) != 0 || wire_r_str(r, &pw) != 0)
		goto oom;
	o.proxy = proxy;
	o.user = user;
	o.password = pw;
	o.auth = (unsigned)wire_r_num(r);
	log_set_level((int)wire_r_num(r));
	if (wire_r_str(r, &tag) != 0)
		goto oom;
	if ((n = wire_r_num(r)) < 0 || n > NETCONN_NAMES_MAX)
		r->bad = 1;
	for (; !r->bad && n_names < (size_t)n; n_names++)
		if (wire_r_str(r, &names[n_names]) != 0)
			goto oom;
		else if (names[n_names] == NULL)
			r->bad = 1;
	o.resolve = names;
	o.n_resolve = n_names;
	o.connect = ask_parent;
	if (r->bad || r->off != r->len || method == NULL || url == NULL ||
	    (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0))
		return malformed();
	log_set_tag(tag);
	log_clear_last_error();
	http_retry_after_reset();
	rc = http_request_here(method, url, ctype, body, blen, &o, &resp);
	goto answer;
oom:
	rc = P11E_ERR_ALLOC;
answer:
	a.rc = rc;
	a.started = http_request_count() - before;
	a.retry_after = http_retry_after();
	a.err = (char *)log_last_error(); /* only read */
	netproc_answer_write(w, &a, resp);
	http_resp_free(resp);
	secret_wipe_free(method);
	secret_wipe_free(url);
	secret_wipe_free(ctype);
	secret_wipe_free(proxy);
	secret_wipe_free(user);
	secret_wipe_free(pw);
	secret_wipe_free(tag);
	for (i = 0; i < n_names; i++)
		secret_wipe_free(names[i]);
	return 0;
}

int
netproc_main(void)
{
	struct wire_wbuf w = {NULL, 0, 0, 0};
	struct wire_rbuf r;
	char usage[128];
	unsigned char *msg = NULL;
	size_t len = 0;
	int got;

	signal(SIGPIPE, SIG_IGN);
	if (fcntl(NETPROC_FD, F_GETFD) < 0 || fcntl(NETPROC_CONNECT_FD, F_GETFD) < 0) {
		log_error("p11enroll-net is started by p11enroll itself, not by hand");
		return P11E_EXIT_USAGE;
	}
	(void)close_range(NETPROC_CONNECT_FD + 1, ~0U, 0);
	/* Everything that loads a library or reads configuration, before the filter. */
	if (http_init() != 0 || OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, NULL) != 1 ||
	    scep_init_verify_only() != 0)
		return P11E_EXIT_SOFTWARE;
	if (netproc_confine() != 0)
		return P11E_EXIT_SOFTWARE;
	while ((got = wire_recv(NETPROC_FD, &msg, &len)) == 0) {
		r.p = msg;
		r.len = len;
		r.off = 0;
		r.bad = 0;
		if (serve(&r, &w) != 0 || w.oom || wire_send(NETPROC_FD, &w) != 0)
			got = -1;
		OPENSSL_cleanse(msg, len);
		secret_wipe_free(msg);
		msg = NULL;
		wire_w_free(&w);
		if (got != 0)
			break;
	}
	http_cleanup();
	scep_cleanup();
	if (log_usage_text(usage, sizeof(usage))[0] != '\0')
		log_debug("network process: %lu request%s, %s; %s%.0d", http_request_count(),
		          http_request_count() == 1 ? "" : "s", usage,
		          netproc_landlock_abi() > 0
		              ? "files it could read bounded by Landlock ABI "
		              : "no Landlock on this kernel",
		          netproc_landlock_abi());
#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer's check at exit stops the threads with ptrace from a child process,
	 * which the filter forbids (and a nobody process cannot trace itself): it would spin. */
	_exit(got == 1 ? P11E_EXIT_OK : P11E_EXIT_SOFTWARE);
#endif
	return got == 1 ? P11E_EXIT_OK : P11E_EXIT_SOFTWARE;
}
