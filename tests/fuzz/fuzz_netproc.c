/*
 * fuzz_netproc.c: the answers of the network process, which p11enroll does
 * not trust: to a request (netproc_answer_read), to a CertRep to parse
 * (netproc_rep_answer_read), to a GetCACert or GetNextCACert body to take
 * apart (netproc_certs_answer_read), to a CertRep's envelope to take apart
 * (netproc_env_answer_read) and to an NDES page to read
 * (netproc_page_answer_read). The first input byte picks which, and the
 * options (secret body or not, a small or a large size limit); the rest is
 * the message. An answer that reads must hold what it claims: a code of ours,
 * a status of 100..999 and a body within the limit; a SCEP status, a trusted
 * signer, an accepted digest and an envelope on SUCCESS only; an envelope's
 * known cipher, its IV, a bounded key and whole blocks within the limit; 1 to
 * NETPROC_CERTS_MAX whole certificates within the limit; a printable
 * challenge within the limit and a hex thumbprint. Then the fields
 * read are written again with the writer and must read back the same.
 * With bit 64 of the first byte, the rest is a connection request of the
 * network process instead (netconn_serve, over a socket pair, for a request
 * that may go to 127.0.0.1 port 1 only): it is served only when it is that
 * address whole, and refused otherwise.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "err.h"
#include "fuzz_common.h"
#include "http.h"
#include "netproc_connect.h"
#include "netproc_parse.h"
#include "netproc_wire.h"
#include "secret.h"

static STACK_OF(X509) * trusted;
static struct netconn_plan plan; /* 127.0.0.1 port 1 */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct http_opts o;

	(void)argc;
	(void)argv;
	fuzz_quiet();
	if ((trusted = sk_X509_new_null()) == NULL || !sk_X509_push(trusted, fuzz_cert("ca.der")) ||
	    !sk_X509_push(trusted, fuzz_cert("ra-sign.der")))
		fuzz_die("out of memory", NULL);
	memset(&o, 0, sizeof(o));
	o.no_proxy = 1;
	if (netconn_plan_make("http://127.0.0.1:1/", &o, &plan) != 0 || plan.n_addr != 1)
		fuzz_die("cannot make the connection plan", NULL);
	return 0;
}

/* A connection request: served (0) only for the plan's address, as one whole field. */
static void
one_connect(const uint8_t *data, size_t size)
{
	struct wire_wbuf w = {(unsigned char *)(uintptr_t)data, size, size, 0};
	struct sockaddr_in a;
	uint32_t len = 0;
	int sv[2], r, e = -1;
	ssize_t k;

	if (size > 4096 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return;
	if (wire_send(sv[0], &w) != 0)
		abort();
	r = netconn_serve(sv[1], &plan);
	if (r == 0) {
		/* one field (its length, then its bytes): 127.0.0.1 port 1 */
		if (size != 4 + sizeof(a))
			abort();
		memcpy(&len, data, 4);
		memcpy(&a, data + 4, sizeof(a));
		if (len != sizeof(a) || a.sin_family != AF_INET || a.sin_port != htons(1) ||
		    a.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
			abort();
		/* the answer: an errno (nothing listens on port 1), or a socket if something does
		 */
		k = recv(sv[0], &e, sizeof(e), 0);
		if (k != (ssize_t)sizeof(e))
			abort();
	} else if (r != -1) {
		abort();
	}
	close(sv[0]);
	close(sv[1]);
}

/* A CertRep answer: read, checked, written again, read back the same. */
static void
one_rep(const uint8_t *data, size_t size, size_t max)
{
	struct wire_wbuf w = {NULL, 0, 0, 0};
	struct scep_rep *rep = NULL, *rep2 = NULL;
	char *err = NULL, *err2 = NULL;
	int rc = 0, rc2 = 0;

	if (netproc_rep_answer_read(data, size, trusted, max, &rc, &err, &rep) != 0) {
		if (rep != NULL || err != NULL)
			abort();
		return;
	}
	if (rc > 0 || rc < P11E_ERR_HOOK || (rc == 0) != (rep != NULL))
		abort();
	if (rep != NULL &&
	    ((rep->status != SCEP_STATUS_SUCCESS && rep->status != SCEP_STATUS_FAILURE &&
	      rep->status != SCEP_STATUS_PENDING) ||
	     rep->signer == NULL || rep->sig_md == NULL || rep->envelope_len > max ||
	     (rep->status == SCEP_STATUS_SUCCESS) != (rep->envelope_len > 0) ||
	     (rep->fail_text != NULL && strlen(rep->fail_text) > NETPROC_FAIL_TEXT_MAX)))
		abort();
	netproc_rep_answer_write(&w, rc, err, rep, trusted);
	if (w.oom || netproc_rep_answer_read(w.p, w.len, trusted, max, &rc2, &err2, &rep2) != 0)
		abort();
	if (rc2 != rc || (err == NULL) != (err2 == NULL) ||
	    (err != NULL && strcmp(err, err2) != 0) ||
	    (rep != NULL &&
	     (rep2->status != rep->status || rep2->fail_info != rep->fail_info ||
	      X509_cmp(rep2->signer, rep->signer) != 0 || strcmp(rep2->sig_md, rep->sig_md) != 0 ||
	      rep2->envelope_len != rep->envelope_len ||
	      (rep->envelope_len > 0 &&
	       memcmp(rep2->envelope, rep->envelope, rep->envelope_len) != 0) ||
	      (rep->fail_text == NULL) != (rep2->fail_text == NULL) ||
	      (rep->fail_text != NULL && strcmp(rep->fail_text, rep2->fail_text) != 0))))
		abort();
	wire_w_free(&w);
	secret_wipe_free(err);
	secret_wipe_free(err2);
	scep_rep_free(rep);
	scep_rep_free(rep2);
}

static void
check(const struct netproc_answer *a, const struct http_resp *resp, const struct http_opts *o)
{
	if (a->rc > 0 || a->rc < P11E_ERR_HOOK)
		abort();
	if ((a->rc == 0) != (resp != NULL))
		abort();
	if (resp != NULL && (resp->status < 100 || resp->status > 999 || resp->len > o->max_body ||
	                     resp->body == NULL || resp->body[resp->len] != '\0' ||
	                     (resp->location_same_https && resp->location == NULL)))
		abort();
}

/* An NDES page answer: read, checked, written again, read back the same. */
static void
one_page(const uint8_t *data, size_t size, size_t max)
{
	struct wire_wbuf w = {NULL, 0, 0, 0};
	char *err = NULL, *err2 = NULL, *ch = NULL, *ch2 = NULL, *tp = NULL, *tp2 = NULL;
	int rc = 0, rc2 = 0;

	if (netproc_page_answer_read(data, size, max, &rc, &err, &ch, &tp) != 0) {
		if (ch != NULL || tp != NULL || err != NULL)
			abort();
		return;
	}
	if (rc > 0 || rc < P11E_ERR_HOOK || (rc == 0) != (ch != NULL) ||
	    (ch != NULL && (strlen(ch) < 1 || strlen(ch) > max)) || (tp != NULL && strlen(tp) % 2))
		abort();
	netproc_page_answer_write(&w, rc, err, ch, tp);
	if (w.oom || netproc_page_answer_read(w.p, w.len, max, &rc2, &err2, &ch2, &tp2) != 0)
		abort();
	if (rc2 != rc || (err == NULL) != (err2 == NULL) ||
	    (err != NULL && strcmp(err, err2) != 0) || (ch == NULL) != (ch2 == NULL) ||
	    (ch != NULL && strcmp(ch, ch2) != 0) || (tp == NULL) != (tp2 == NULL) ||
	    (tp != NULL && strcmp(tp, tp2) != 0))
		abort();
	wire_w_free(&w);
	secret_wipe_free(err);
	secret_wipe_free(err2);
	secret_free(ch);
	secret_free(ch2);
	free(tp);
	free(tp2);
}

/* A CertRep envelope's answer: read, checked, written again, read back the same. */
static void
one_env(const uint8_t *data, size_t size, size_t max)
{
	struct wire_wbuf w = {NULL, 0, 0, 0};
	struct scep_env *env = NULL, *env2 = NULL;
	char *err = NULL, *err2 = NULL;
	int rc = 0, rc2 = 0;

	if (netproc_env_answer_read(data, size, max, &rc, &err, &env) != 0) {
		if (env != NULL || err != NULL)
			abort();
		return;
	}
	if (rc > 0 || rc < P11E_ERR_HOOK || (rc == 0) != (env != NULL))
		abort();
	if (env != NULL &&
	    (scep_env_iv_len(env->cipher_nid) != env->iv_len || env->iv_len == 0 ||
	     env->key_len < 1 || env->key_len > SCEP_ENV_KEY_MAX || env->data_len < 1 ||
	     env->data_len > max || env->data_len % env->iv_len != 0))
		abort();
	netproc_env_answer_write(&w, rc, err, env);
	if (w.oom || netproc_env_answer_read(w.p, w.len, max, &rc2, &err2, &env2) != 0)
		abort();
	if (rc2 != rc || (err == NULL) != (err2 == NULL) ||
	    (err != NULL && strcmp(err, err2) != 0) ||
	    (env != NULL &&
	     (env2->cipher_nid != env->cipher_nid || env2->iv_len != env->iv_len ||
	      memcmp(env2->iv, env->iv, env->iv_len) != 0 || env2->key_len != env->key_len ||
	      memcmp(env2->key, env->key, env->key_len) != 0 || env2->data_len != env->data_len ||
	      memcmp(env2->data, env->data, env->data_len) != 0)))
		abort();
	wire_w_free(&w);
	secret_wipe_free(err);
	secret_wipe_free(err2);
	scep_env_free(env);
	scep_env_free(env2);
}

/* A GetCACert answer: read, checked, written again, read back the same. */
static void
one_certs(const uint8_t *data, size_t size, size_t max)
{
	struct wire_wbuf w = {NULL, 0, 0, 0};
	STACK_OF(X509) *certs = NULL, *certs2 = NULL;
	char *err = NULL, *err2 = NULL;
	int rc = 0, rc2 = 0, i;

	if (netproc_certs_answer_read(data, size, max, &rc, &err, &certs) != 0) {
		if (certs != NULL || err != NULL)
			abort();
		return;
	}
	if (rc > 0 || rc < P11E_ERR_HOOK || (rc == 0) != (certs != NULL) ||
	    (certs != NULL && (sk_X509_num(certs) < 1 || sk_X509_num(certs) > NETPROC_CERTS_MAX)))
		abort();
	netproc_certs_answer_write(&w, rc, err, certs);
	/* re-encoded certificates may differ in length from what was read: no limit here */
	if (w.oom || netproc_certs_answer_read(w.p, w.len, SIZE_MAX, &rc2, &err2, &certs2) != 0)
		abort();
	if (rc2 != rc || (err == NULL) != (err2 == NULL) ||
	    (err != NULL && strcmp(err, err2) != 0) || sk_X509_num(certs) != sk_X509_num(certs2))
		abort();
	for (i = 0; i < sk_X509_num(certs); i++)
		if (X509_cmp(sk_X509_value(certs, i), sk_X509_value(certs2, i)) != 0)
			abort();
	wire_w_free(&w);
	secret_wipe_free(err);
	secret_wipe_free(err2);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(certs2, X509_free);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_opts o;
	struct netproc_answer a = {0, 0, 0, NULL}, a2 = {0, 0, 0, NULL};
	struct http_resp *resp = NULL, *resp2 = NULL;
	struct wire_wbuf w = {NULL, 0, 0, 0};

	if (size < 1)
		return 0;
	if (data[0] & 64) {
		one_connect(data + 1, size - 1);
		return 0;
	}
	if (data[0] & 32) {
		one_env(data + 1, size - 1, data[0] & 2 ? 1u << 20 : 64);
		return 0;
	}
	if (data[0] & 16) {
		one_page(data + 1, size - 1, data[0] & 2 ? 256 : 16);
		return 0;
	}
	if (data[0] & 8) {
		one_certs(data + 1, size - 1, data[0] & 2 ? 1u << 20 : 4096);
		return 0;
	}
	if (data[0] & 4) {
		one_rep(data + 1, size - 1, data[0] & 2 ? 1u << 20 : 64);
		return 0;
	}
	memset(&o, 0, sizeof(o));
	o.secret_body = data[0] & 1;
	o.max_body = data[0] & 2 ? 1u << 20 : 64;
	if (netproc_answer_read(data + 1, size - 1, &o, &a, &resp) != 0) {
		if (resp != NULL || a.err != NULL)
			abort();
		return 0;
	}
	check(&a, resp, &o);
	netproc_answer_write(&w, &a, resp);
	if (w.oom)
		abort();
	if (netproc_answer_read(w.p, w.len, &o, &a2, &resp2) != 0)
		abort(); /* what it read writes and reads back */
	if (a2.rc != a.rc || a2.started != a.started || a2.retry_after != a.retry_after ||
	    (a.err == NULL) != (a2.err == NULL) || (a.err != NULL && strcmp(a.err, a2.err) != 0) ||
	    (resp != NULL && (resp2->status != resp->status || resp2->len != resp->len ||
	                      resp2->location_same_https != resp->location_same_https ||
	                      memcmp(resp2->body, resp->body, resp->len) != 0)))
		abort();
	wire_w_free(&w);
	secret_wipe_free(a.err);
	secret_wipe_free(a2.err);
	http_resp_free(resp);
	http_resp_free(resp2);
	return 0;
}
