/*
 * tokproc.c: tok.h for the process that opens a token: tok_open forks the
 * token process (tokproc.h, tokserve.c) before anything loads the module, and
 * every call after it is one request and its answer. What the token process
 * answers is checked for form here (lengths, one DER object, a key of a type
 * tok.h knows); it is a copy of this program and holds the token, so its
 * results are believed.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "err.h"
#include "log.h"
#include "p11int.h"
#include "secret.h"
#include "tokproc.h"

/* Results the token process may give: 0 or a P11E_ERR_* code. */
#define RC_MIN (-64)

/* ---------------------------------------------------------------- shared with tokserve.c */

void
tokproc_w_info(struct wire_wbuf *w, const struct tok_info *info)
{
	wire_w_str(w, info->label);
	wire_w_str(w, info->manufacturer);
	wire_w_str(w, info->model);
	wire_w_str(w, info->serial);
	wire_w_num(w, info->flags);
	wire_w_num(w, (int64_t)info->slot_id);
}

/* A string field of at most size - 1 bytes into dst. */
static int
r_field(struct wire_rbuf *r, char *dst, size_t size)
{
	size_t n = 0;
	const unsigned char *p = wire_r_bytes(r, &n);

	if (p == NULL || n >= size || memchr(p, '\0', n) != NULL) {
		r->bad = 1;
		return -1;
	}
	memcpy(dst, p, n);
	dst[n] = '\0';
	return 0;
}

int
tokproc_r_info(struct wire_rbuf *r, struct tok_info *info)
{
	struct tok_info i;

	memset(&i, 0, sizeof(i));
	if (r_field(r, i.label, sizeof(i.label)) != 0 ||
	    r_field(r, i.manufacturer, sizeof(i.manufacturer)) != 0 ||
	    r_field(r, i.model, sizeof(i.model)) != 0 ||
	    r_field(r, i.serial, sizeof(i.serial)) != 0)
		return -1;
	i.flags = (unsigned)wire_r_num(r);
	i.slot_id = (unsigned long)wire_r_num(r);
	if (r->bad)
		return -1;
	*info = i;
	return 0;
}

/*
 * A key's public half travels as its parts (RSA n and e, or the curve's name
 * and the point), which OpenSSL takes apart and puts together in tens of
 * microseconds; an SPKI in DER costs its encoder and decoder, ten times that
 * and a few milliseconds for the first one of a process.
 */
#define PART_MAX 2048 /* RSA 16384, the most SoftHSM generates */

/* Appends k's public parts; out of memory or a key it cannot read sets w->oom. */
static void
w_pub(struct wire_wbuf *w, EVP_PKEY *pub, enum tok_key_type type)
{
	unsigned char a[PART_MAX], b[PART_MAX];
	char group[64];
	BIGNUM *n = NULL, *e = NULL;
	size_t len = 0;
	int an, bn;

	if (type == TOK_KEY_RSA) {
		if (EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
		    EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_E, &e) != 1 ||
		    BN_num_bytes(n) > PART_MAX || BN_num_bytes(e) > PART_MAX ||
		    (an = BN_bn2binpad(n, a, BN_num_bytes(n))) <= 0 ||
		    (bn = BN_bn2binpad(e, b, BN_num_bytes(e))) <= 0) {
			w->oom = 1;
		} else {
			wire_w_bytes(w, a, (size_t)an);
			wire_w_bytes(w, b, (size_t)bn);
		}
	} else if (EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group,
	                                          sizeof(group), NULL) != 1 ||
	           EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_PUB_KEY, a, sizeof(a),
	                                           &len) != 1) {
		w->oom = 1;
	} else {
		wire_w_str(w, group);
		wire_w_bytes(w, a, len);
	}
	BN_free(n);
	BN_free(e);
}

void
tokproc_w_key(struct wire_wbuf *w, const struct tok_key *k)
{
	if (k == NULL) {
		wire_w_num(w, 0);
		return;
	}
	wire_w_num(w, 1);
	wire_w_num(w, (int64_t)k->pub_handle);
	wire_w_num(w, (int64_t)k->priv_handle);
	wire_w_bytes(w, k->id, k->id_len);
	wire_w_str(w, k->label);
	wire_w_num(w, k->type);
	w_pub(w, k->pub, k->type);
}

/* The public half of a key of type: 0, -1 malformed, P11E_ERR_ALLOC. */
static int
r_pub(struct wire_rbuf *r, int64_t type, EVP_PKEY **out)
{
	const unsigned char *a, *b;
	size_t alen = 0, blen = 0;
	char *group = NULL;
	int rc = -1;

	if (type == TOK_KEY_RSA) {
		a = wire_r_bytes(r, &alen);
		b = wire_r_bytes(r, &blen);
		if (!r->bad && a != NULL && b != NULL && alen > 0 && alen <= PART_MAX && blen > 0 &&
		    blen <= 16 && p11_pub_rsa(a, alen, b, blen, out) == 0)
			rc = 0;
	} else {
		if (wire_r_str(r, &group) != 0)
			return P11E_ERR_ALLOC;
		a = wire_r_bytes(r, &alen);
		if (!r->bad && group != NULL && strlen(group) < 64 && a != NULL && alen > 0 &&
		    alen <= 2 * 66 + 1 && p11_pub_ec(group, a, alen, out) == 0)
			rc = 0;
		secret_wipe_free(group);
	}
	ERR_clear_error();
	return rc;
}

int
tokproc_r_key(struct wire_rbuf *r, struct tok_key **out)
{
	struct tok_key *k = NULL;
	const unsigned char *id;
	size_t idlen = 0;
	int64_t present, type;
	int r2 = 0, bad = 1;

	*out = NULL;
	if ((present = wire_r_num(r)) == 0 && !r->bad)
		return 0;
	if (present != 1)
		goto out;
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		r2 = P11E_ERR_ALLOC;
		goto out;
	}
	k->pub_handle = (unsigned long)wire_r_num(r);
	k->priv_handle = (unsigned long)wire_r_num(r);
	id = wire_r_bytes(r, &idlen);
	if (r->bad || idlen > sizeof(k->id) || (idlen > 0 && id == NULL))
		goto out;
	if (idlen > 0)
		memcpy(k->id, id, idlen);
	k->id_len = idlen;
	if (wire_r_str(r, &k->label) != 0) {
		r2 = P11E_ERR_ALLOC;
		goto out;
	}
	type = wire_r_num(r);
	if (r->bad || k->label == NULL || k->pub_handle == 0 ||
	    (type != TOK_KEY_RSA && type != TOK_KEY_EC))
		goto out;
	k->type = (enum tok_key_type)type;
	if ((r2 = r_pub(r, type, &k->pub)) != 0) {
		r2 = r2 == -1 ? 0 : r2;
		goto out;
	}
	*out = k;
	k = NULL;
	bad = 0;
out:
	if (bad && r2 == 0)
		r->bad = 1;
	tok_key_free(k);
	return r2;
}

/* ---------------------------------------------------------------- the token process's end */

/* Why the token process ended, for a message ("exited with 0", "killed by signal 11"). */
static void
describe_status(int status, char *buf, size_t size)
{
	if (WIFSIGNALED(status))
		snprintf(buf, size, "killed by signal %d%s", WTERMSIG(status),
		         WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGABRT ||
		                 WTERMSIG(status) == SIGBUS
		             ? ": the PKCS#11 module crashed?"
		         : WTERMSIG(status) == SIGSYS
		             ? " (Bad system call: forbidden in the token process)"
		             : "");
	else
		snprintf(buf, size, "exited with %d", WEXITSTATUS(status));
}

/* Closes the socket and waits for the token process (kill: SIGKILL first); its status. */
static int
reap(struct tok *t, int kill_it)
{
	int status = 0;

	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	if (t->pid <= 0 || t->owner != getpid())
		return 0;
	if (kill_it)
		(void)kill(t->pid, SIGKILL);
	while (waitpid(t->pid, &status, 0) < 0 && errno == EINTR)
		;
	t->pid = -1;
	return status;
}

/* Closes t's socket and waits for its token process (reap); an unclean end is logged as
 * "WHO killed by signal 11... WHEN". */
static void
end_process(struct tok *t, const char *who, const char *when)
{
	char why[96];
	int status = reap(t, 0);

	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		describe_status(status, why, sizeof(why));
		log_warn("%s %s %s", who, why, when);
	}
}

/* In a card's process: a session in the station's token process ended with it. */
static int station_lost;

/* The token process went away in the middle of a request. */
static int
lost(struct tok *t)
{
	char why[96];
	pid_t pid = t->pid;
	int status = reap(t, 0);

	describe_status(status, why, sizeof(why));
	station_lost |= t->session;
	if (t->session) /* not this process's child: the station says how it ended */
		snprintf(t->failure, sizeof(t->failure),
		         "the station's token process serving token '%s' ended in the middle of a "
		         "request",
		         t->info.label);
	else
		snprintf(t->failure, sizeof(t->failure),
		         "the token process of token '%s' (pid %ld) ended in the middle of a "
		         "request (%s)",
		         t->info.label, (long)pid, why);
	log_error("%s", t->failure);
	return P11E_ERR_TOKEN;
}

/* The token process answered what this program never writes: a bug. */
static int
malformed(struct tok *t)
{
	(void)reap(t, 1);
	log_error("the token process of token '%s' answered malformed data: stopped it",
	          t->info.label);
	return P11E_ERR_INTERNAL;
}

/* ---------------------------------------------------------------- requests */

/*
 * The lines the token process logged since its last message, logged here as
 * this process's own (their level, this process's tag and stderr; an error
 * line becomes log_last_error). -1: malformed.
 */
static int
relog(struct wire_rbuf *r)
{
	int64_t n = wire_r_num(r), level;
	const unsigned char *p;
	size_t len = 0;
	char line[4096];

	if (r->bad || n < 0 || n > 256)
		return -1;
	while (n-- > 0) {
		level = wire_r_num(r);
		p = wire_r_bytes(r, &len);
		if (r->bad || p == NULL || len >= sizeof(line) || level < LOG_LVL_ERROR ||
		    level > LOG_LVL_DEBUG || memchr(p, '\0', len) != NULL)
			return -1;
		memcpy(line, p, len);
		line[len] = '\0';
		log_msg((int)level, "%s", line);
	}
	return 0;
}

/* An answer's head after its lines: result and token description. 0 with *rc set. */
static int
read_head(struct tok *t, struct wire_rbuf *r, int *rc)
{
	int64_t v = wire_r_num(r);

	if (r->bad || v > 0 || v < RC_MIN || tokproc_r_info(r, &t->info) != 0)
		return malformed(t);
	*rc = (int)v;
	return 0;
}

/*
 * Sends req (NULL: none, the answer to the fork) and reads the answer to it
 * into *buf (secret_wipe_free) and r, positioned at the operation's fields;
 * answers TOKPROC_NAMED through ids on the way. 0 with *rc the operation's
 * result, or the error of the exchange itself (the token process is gone).
 */
static int
call(struct tok *t, struct wire_wbuf *req, struct tok_keygen_ids *ids, unsigned char **buf,
     struct wire_rbuf *r, int *rc)
{
	struct wire_wbuf w = {0};
	const unsigned char *id;
	size_t len = 0, idlen = 0;
	int64_t code;
	int v;

	*buf = NULL;
	if (t->owner != getpid()) {
		log_error("token '%s': its token process belongs to another process",
		          t->info.label);
		return P11E_ERR_INTERNAL;
	}
	if (t->fd < 0) { /* lost() or malformed() said why */
		log_debug("token '%s': its token process is gone", t->info.label);
		return P11E_ERR_TOKEN;
	}
	if (req != NULL && req->oom)
		return P11E_ERR_ALLOC;
	if (req != NULL && wire_send(t->fd, req) != 0)
		return lost(t);
	for (;;) {
		if (wire_recv(t->fd, buf, &len) != 0)
			return lost(t);
		*r = (struct wire_rbuf){*buf, len, 0, 0};
		code = wire_r_num(r);
		if (relog(r) != 0) {
			v = malformed(t);
			goto fail;
		}
		if (code == TOKPROC_ANSWER) {
			if ((v = read_head(t, r, rc)) != 0)
				goto fail;
			return 0;
		}
		id = wire_r_bytes(r, &idlen);
		if (code != TOKPROC_NAMED || ids == NULL || ids->named == NULL || r->bad ||
		    id == NULL || idlen == 0 || idlen > sizeof(((struct tok_key *)0)->id) ||
		    r->off != r->len) {
			v = malformed(t);
			goto fail;
		}
		v = ids->named(ids->ud, id, idlen);
		secret_wipe_free(*buf);
		*buf = NULL;
		wire_w_num(&w, v);
		if (w.oom) {
			wire_w_free(&w);
			return P11E_ERR_ALLOC;
		}
		v = wire_send(t->fd, &w);
		wire_w_free(&w);
		if (v != 0)
			return lost(t);
	}
fail:
	secret_wipe_free(*buf);
	*buf = NULL;
	return v;
}

/* The end of an answer: nothing after its fields. rc, or the error of a malformed answer. */
static int
done(struct tok *t, struct wire_rbuf *r, unsigned char *buf, int rc)
{
	int bad = r->bad || r->off != r->len;

	secret_wipe_free(buf);
	return bad ? malformed(t) : rc;
}

/* A request of one operation and a key (its handles). */
static void
begin(struct wire_wbuf *w, enum tokproc_op op, const struct tok_key *k)
{
	memset(w, 0, sizeof(*w));
	wire_w_num(w, op);
	if (k != NULL) {
		wire_w_num(w, (int64_t)k->pub_handle);
		wire_w_num(w, (int64_t)k->priv_handle);
	}
}

/* Sends w (then frees it) and reads the answer's head; see call. */
static int
send_req(struct tok *t, struct wire_wbuf *w, unsigned char **buf, struct wire_rbuf *r, int *rc)
{
	int e = call(t, w, NULL, buf, r, rc);

	wire_w_free(w);
	return e;
}

/* An operation with no fields of its own in the answer. */
static int
simple(struct tok *t, struct wire_wbuf *w)
{
	unsigned char *buf;
	struct wire_rbuf r;
	int rc, e;

	if ((e = send_req(t, w, &buf, &r, &rc)) != 0)
		return e;
	return done(t, &r, buf, rc);
}

/*
 * The answer's byte string, which must be min to max bytes: on the result rc 0
 * copied to dst and its length to *len; else (and when it is not) dst is left
 * alone, and a wrong one sets r->bad.
 */
static void
r_copy(struct wire_rbuf *r, int rc, unsigned char *dst, size_t min, size_t max, size_t *len)
{
	size_t n = 0;
	const unsigned char *p = wire_r_bytes(r, &n);

	if (rc != 0)
		return;
	if (p == NULL || n < min || n > max) {
		r->bad = 1;
		return;
	}
	memcpy(dst, p, n);
	*len = n;
}

/* Appends cert's DER (NULL: NULL); out of memory sets w->oom. */
static void
w_cert(struct wire_wbuf *w, X509 *cert)
{
	unsigned char *der = NULL;
	int len;

	if (cert == NULL) {
		wire_w_bytes(w, NULL, 0);
		return;
	}
	if ((len = i2d_X509(cert, &der)) <= 0) {
		w->oom = 1;
		return;
	}
	wire_w_bytes(w, der, (size_t)len);
	OPENSSL_free(der);
}

/* ---------------------------------------------------------------- tok.h */

/* Forks the token process that runs st, with t its opener's side. Logs. */
static int
start(struct tok *t, const struct tokproc_start *st)
{
	int sv[2];
	pid_t pid;

	t->fd = -1;
	t->pid = -1;
	fflush(NULL); /* no buffered output may be written twice */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		log_error("cannot start the token process: %s", strerror(errno));
		return P11E_ERR_INTERNAL;
	}
	if ((pid = fork()) < 0) {
		log_error("cannot start the token process: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return P11E_ERR_INTERNAL;
	}
	if (pid == 0) {
		close(sv[0]);
		tokproc_child(sv[1], st);
	}
	close(sv[1]);
	t->fd = sv[0];
	t->pid = pid;
	t->owner = getpid();
	return 0;
}

/* tok_use_station's socket: the next tok_open of that module is a session through it. */
static struct {
	int fd;
	char module[PATH_MAX];
} station = {-1, ""};

void
tok_use_station(int fd, const char *module_path)
{
	if (station.fd >= 0)
		close(station.fd);
	station.fd = -1;
	if (fd >= 0 && module_path != NULL && strlen(module_path) < sizeof(station.module)) {
		strcpy(station.module, module_path);
		station.fd = fd;
	} else if (fd >= 0) {
		close(fd);
	}
}

/*
 * tok_open through the station's token process: TOKPROC_OPEN on its socket
 * (taken), and its answer read as call does. 1 (nothing logged, the socket
 * closed) when the process ended before it answered: it died with another
 * card's session in it, which the station could not know yet when it handed
 * this socket out; the token is then opened in a token process of this
 * card's own. Nothing was done on the token before that answer.
 */
static int
open_session(struct tok *t, const struct tok_uri *uri, const char *key_label, unsigned char **buf,
             struct wire_rbuf *r, int *rc)
{
	struct wire_wbuf w;
	char *text = NULL, c;
	ssize_t k = -1;
	int sent;

	t->fd = station.fd;
	t->pid = -1;
	t->owner = getpid();
	t->session = 1;
	station.fd = -1;
	if (tok_uri_format(uri, &text) != 0)
		return P11E_ERR_ALLOC;
	begin(&w, TOKPROC_OPEN, NULL);
	wire_w_str(&w, text);
	wire_w_str(&w, key_label);
	free(text);
	sent = !w.oom && wire_send(t->fd, &w) == 0;
	wire_w_free(&w);
	while (sent && (k = recv(t->fd, &c, 1, MSG_PEEK)) < 0 && errno == EINTR)
		;
	if (k != 1) {
		close(t->fd);
		t->fd = -1;
		t->session = 0;
		return 1;
	}
	return call(t, NULL, NULL, buf, r, rc);
}

int
tok_open(const char *module_path, const struct tok_uri *uri, const char *key_label,
         struct tok **out)
{
	struct tokproc_start st = {module_path, key_label, uri, NULL, NULL, 0};
	struct tok *t = NULL;
	unsigned char *buf = NULL;
	struct wire_rbuf r;
	int rc, e;

	if (module_path == NULL || out == NULL)
		return P11E_ERR_INTERNAL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return P11E_ERR_ALLOC;
	snprintf(t->info.label, sizeof(t->info.label), "%s",
	         uri != NULL && uri->token != NULL ? uri->token : "?");
	e = 1; /* 1: a token process of its own */
	if (uri != NULL && station.fd >= 0 && strcmp(station.module, module_path) == 0 &&
	    (e = open_session(t, uri, key_label, &buf, &r, &rc)) == 1)
		log_debug("the station's token process has ended; token '%s' is opened in a token "
		          "process of its own",
		          t->info.label);
	if (e == 1) {
		if ((rc = start(t, &st)) != 0)
			goto out;
		e = call(t, NULL, NULL, &buf, &r, &rc);
	}
	if (e != 0) {
		rc = e;
		goto out;
	}
	if ((rc = done(t, &r, buf, rc)) != 0)
		goto out;
	if (t->session)
		log_debug("the station's token process holds token '%s'", t->info.label);
	else
		log_debug("token process %ld holds token '%s'", (long)t->pid, t->info.label);
	*out = t;
	t = NULL;
out:
	if (t != NULL && t->session)
		(void)reap(t, 0); /* no session to end: it was never opened */
	tok_close(t);
	return rc;
}

int
tokproc_run(int (*job)(void *arg, struct wire_wbuf *out),
            int (*read)(void *arg, struct wire_rbuf *r), void *arg)
{
	struct tokproc_start st = {NULL, NULL, NULL, job, arg, 0};
	struct tok t;
	unsigned char *buf = NULL;
	struct wire_rbuf r;
	int rc, e;

	memset(&t, 0, sizeof(t));
	snprintf(t.info.label, sizeof(t.info.label), "(none)");
	if ((rc = start(&t, &st)) != 0)
		return rc;
	if ((e = call(&t, NULL, NULL, &buf, &r, &rc)) != 0) {
		(void)reap(&t, 1);
		return e;
	}
	if (rc == 0 && read(arg, &r) != 0) {
		secret_wipe_free(buf);
		(void)reap(&t, 1);
		return P11E_ERR_ALLOC;
	}
	rc = done(&t, &r, buf, rc);
	(void)reap(&t, 0);
	return rc;
}

const char *
tok_failure(const struct tok *t)
{
	return t != NULL && t->failure[0] != '\0' ? t->failure : NULL;
}

const struct tok_info *
tok_get_info(const struct tok *t)
{
	return &t->info;
}

int
tok_present(struct tok *t)
{
	struct wire_wbuf w;
	unsigned char *buf;
	struct wire_rbuf r;
	int rc;
	int64_t present;

	if (t == NULL || t->fd < 0)
		return 0;
	begin(&w, TOKPROC_PRESENT, NULL);
	if (send_req(t, &w, &buf, &r, &rc) != 0)
		return 0;
	present = wire_r_num(&r);
	return done(t, &r, buf, rc) == 0 && present == 1;
}

int
tok_login(struct tok *t, const char *pin, int allow_final_try)
{
	struct wire_wbuf w;
	int r;

	begin(&w, TOKPROC_LOGIN, NULL);
	wire_w_str(&w, pin);
	wire_w_num(&w, allow_final_try != 0);
	if ((r = simple(t, &w)) == 0)
		t->logged_in = 1;
	return r;
}

/* The keys of an answer: a count, then each key. */
static int
r_keys(struct wire_rbuf *r, struct tok_key ***keys, size_t *n)
{
	int64_t count = wire_r_num(r);
	struct tok_key **ks = NULL;
	size_t i;
	int e = 0;

	if (r->bad || count < 0 || count > 65536) {
		r->bad = 1;
		return 0;
	}
	if (count > 0 && (ks = calloc((size_t)count, sizeof(*ks))) == NULL)
		return P11E_ERR_ALLOC;
	for (i = 0; i < (size_t)count && e == 0; i++)
		if ((e = tokproc_r_key(r, &ks[i])) == 0 && ks[i] == NULL)
			r->bad = 1;
	if (e != 0 || r->bad) {
		tok_keys_free(ks, (size_t)count);
		return e;
	}
	*keys = ks;
	*n = (size_t)count;
	return 0;
}

int
tok_find_keys(struct tok *t, const char *label, struct tok_key ***keys, size_t *n)
{
	struct wire_wbuf w;
	unsigned char *buf;
	struct wire_rbuf r;
	struct tok_key **ks = NULL;
	size_t nk = 0;
	int rc, e;

	if (t == NULL || label == NULL || keys == NULL || n == NULL)
		return P11E_ERR_INTERNAL;
	begin(&w, TOKPROC_FIND_KEYS, NULL);
	wire_w_str(&w, label);
	if ((e = send_req(t, &w, &buf, &r, &rc)) != 0)
		return e;
	if ((e = r_keys(&r, &ks, &nk)) != 0) {
		secret_wipe_free(buf);
		return e;
	}
	if ((rc = done(t, &r, buf, rc)) != 0) {
		tok_keys_free(ks, nk);
		return rc;
	}
	*keys = ks;
	*n = nk;
	return 0;
}

int
tok_find_private(struct tok *t, struct tok_key **keys, size_t n)
{
	struct wire_wbuf w;
	unsigned char *buf;
	struct wire_rbuf r;
	int64_t h;
	size_t i;
	int rc, e;

	if (t == NULL || (n > 0 && keys == NULL))
		return P11E_ERR_INTERNAL;
	for (i = 0; t->logged_in && i < n; i++) {
		if (keys[i]->priv_handle != 0 || keys[i]->pub_handle == 0)
			continue;
		begin(&w, TOKPROC_FIND_PRIVATE, keys[i]);
		if ((e = send_req(t, &w, &buf, &r, &rc)) != 0)
			return e;
		if ((h = wire_r_num(&r)) < 0 || (uint64_t)h > ULONG_MAX || (rc != 0 && h != 0))
			r.bad = 1;
		if ((rc = done(t, &r, buf, rc)) != 0)
			return rc;
		keys[i]->priv_handle = (unsigned long)h;
	}
	return 0;
}

int
tok_generate_key(struct tok *t, struct tok_keygen_ids *ids, const struct tok_keyspec *spec,
                 const char *label, struct tok_key **out)
{
	struct wire_wbuf w;
	unsigned char *buf;
	struct wire_rbuf r;
	struct tok_key *k = NULL;
	int rc, e;
	int64_t left;

	if (t == NULL || spec == NULL || label == NULL || out == NULL)
		return P11E_ERR_INTERNAL;
	begin(&w, TOKPROC_GENERATE, NULL);
	wire_w_bytes(&w, ids != NULL ? ids->tmp_id : NULL, ids != NULL ? ids->tmp_len : 0);
	wire_w_num(&w, ids != NULL && ids->named != NULL);
	wire_w_num(&w, spec->type);
	wire_w_num(&w, spec->bits);
	wire_w_num(&w, spec->curve);
	wire_w_str(&w, label);
	e = call(t, &w, ids, &buf, &r, &rc);
	wire_w_free(&w);
	if (e != 0)
		return e;
	left = wire_r_num(&r);
	if ((e = tokproc_r_key(&r, &k)) != 0) {
		secret_wipe_free(buf);
		return e;
	}
	if (ids != NULL)
		ids->left = left == 1;
	if ((rc = done(t, &r, buf, rc)) == 0 && k == NULL)
		rc = malformed(t);
	if (rc != 0) {
		tok_key_free(k);
		return rc;
	}
	*out = k;
	return 0;
}

int
tok_destroy_key(struct tok *t, const struct tok_key *k)
{
	struct wire_wbuf w;

	begin(&w, TOKPROC_DESTROY_KEY, k);
	return simple(t, &w);
}

int
tok_key_fix_id(struct tok *t, struct tok_key *k)
{
	struct wire_wbuf w;
	unsigned char *buf;
	struct wire_rbuf r;
	int rc, e;

	begin(&w, TOKPROC_FIX_ID, k);
	if ((e = send_req(t, &w, &buf, &r, &rc)) != 0)
		return e;
	r_copy(&r, rc, k->id, 1, sizeof(k->id), &k->id_len);
	return done(t, &r, buf, rc);
}

int
tok_key_attrs(struct tok *t, const struct tok_key *k, struct tok_key_attrs *out)
{
	struct wire_wbuf w;
	unsigned char *buf;
	struct wire_rbuf r;
	int64_t v[7];
	int rc, e, i;

	begin(&w, TOKPROC_ATTRS, k);
	if ((e = send_req(t, &w, &buf, &r, &rc)) != 0)
		return e;
	for (i = 0; i < 7; i++)
		if ((v[i] = wire_r_num(&r)) < -1 || v[i] > 1)
			r.bad = 1;
	if ((rc = done(t, &r, buf, rc)) != 0)
		return rc;
	*out = (struct tok_key_attrs){(int)v[0], (int)v[1], (int)v[2], (int)v[3],
	                              (int)v[4], (int)v[5], (int)v[6]};
	return 0;
}

int
tok_find_cert(struct tok *t, const struct tok_key *k, X509 **out)
{
	struct wire_wbuf w;
	unsigned char *buf;
	struct wire_rbuf r;
	const unsigned char *der, *p;
	size_t n = 0;
	X509 *x = NULL;
	int rc, e;

	begin(&w, TOKPROC_FIND_CERT, k);
	if ((e = send_req(t, &w, &buf, &r, &rc)) != 0)
		return e;
	der = wire_r_bytes(&r, &n);
	if (rc == 0) {
		p = der;
		if (der == NULL || n == 0 || (x = d2i_X509(NULL, &p, (long)n)) == NULL ||
		    p != der + n)
			r.bad = 1;
	}
	if ((rc = done(t, &r, buf, rc)) != 0) {
		X509_free(x);
		return rc;
	}
	*out = x;
	return 0;
}

/* A request naming a key and a certificate, answered with no fields. */
static int
key_cert(struct tok *t, enum tokproc_op op, const struct tok_key *k, X509 *cert)
{
	struct wire_wbuf w;

	begin(&w, op, k);
	w_cert(&w, cert);
	return simple(t, &w);
}

int
tok_store_cert(struct tok *t, const struct tok_key *k, X509 *cert)
{
	return key_cert(t, TOKPROC_STORE_CERT, k, cert);
}

int
tok_has_cert(struct tok *t, const struct tok_key *k, X509 *cert)
{
	return key_cert(t, TOKPROC_HAS_CERT, k, cert);
}

int
tok_destroy_cert(struct tok *t, const struct tok_key *k, X509 *cert)
{
	return key_cert(t, TOKPROC_DESTROY_CERT, k, cert);
}

int
tok_other_certs(struct tok *t, const struct tok_key *k, X509 *keep, int destroy, size_t *n)
{
	struct wire_wbuf w;
	unsigned char *buf;
	struct wire_rbuf r;
	int64_t count;
	int rc, e;

	begin(&w, TOKPROC_OTHER_CERTS, k);
	w_cert(&w, keep);
	wire_w_num(&w, destroy != 0);
	if ((e = send_req(t, &w, &buf, &r, &rc)) != 0)
		return e;
	if ((count = wire_r_num(&r)) < 0)
		r.bad = 1;
	*n = (size_t)count;
	return done(t, &r, buf, rc);
}

int
tokproc_grant(struct tok *t, const struct tok_key *k, int signs, int decrypts, long *grant)
{
	struct wire_wbuf w;
	unsigned char *buf;
	struct wire_rbuf r;
	int64_t g;
	int rc, e;

	begin(&w, TOKPROC_GRANT, k);
	wire_w_num(&w, signs);
	wire_w_num(&w, decrypts);
	if ((e = send_req(t, &w, &buf, &r, &rc)) != 0)
		return e;
	if ((g = wire_r_num(&r)) < (rc == 0 ? 0 : -1) || g > LONG_MAX)
		r.bad = 1;
	*grant = (long)g;
	return done(t, &r, buf, rc);
}

int
tokproc_key_op(struct tok *t, long grant, int decrypt, const unsigned char *in, size_t inlen,
               unsigned char *out, size_t *outlen)
{
	struct wire_wbuf w;
	unsigned char *buf;
	struct wire_rbuf r;
	int rc, e;

	begin(&w, TOKPROC_KEY_OP, NULL);
	wire_w_num(&w, grant);
	wire_w_num(&w, decrypt != 0);
	wire_w_bytes(&w, in, inlen);
	wire_w_num(&w, (int64_t)*outlen);
	if ((e = send_req(t, &w, &buf, &r, &rc)) != 0)
		return e;
	r_copy(&r, rc, out, 0, *outlen, outlen);
	return done(t, &r, buf, rc);
}

void
tokproc_release(struct tok *t, long grant)
{
	struct wire_wbuf w;

	begin(&w, TOKPROC_RELEASE, NULL);
	wire_w_num(&w, grant);
	(void)simple(t, &w);
}

/* The URI names the token by every field it has, and the object. */
int
tok_object_uri(const struct tok *t, const struct tok_key *k, const char *type, char **out)
{
	int r = P11E_ERR_INTERNAL;
	struct tok_info info;
	struct tok_uri u;
	unsigned char id[sizeof(k->id)];
	char ty[16];

	if (t == NULL || k == NULL || type == NULL || out == NULL || strlen(type) >= sizeof(ty) ||
	    (strcmp(type, "private") != 0 && strcmp(type, "public") != 0 &&
	     strcmp(type, "cert") != 0))
		goto out;
	info = t->info;
	memcpy(id, k->id, k->id_len);
	strcpy(ty, type);
	memset(&u, 0, sizeof(u));
	u.token = info.label[0] ? info.label : NULL;
	u.manufacturer = info.manufacturer[0] ? info.manufacturer : NULL;
	u.serial = info.serial[0] ? info.serial : NULL;
	u.model = info.model[0] ? info.model : NULL;
	u.object = k->label;
	u.id = k->id_len > 0 ? id : NULL;
	u.id_len = k->id_len;
	u.type = ty;
	r = tok_uri_format(&u, out);
out:
	return r;
}

/*
 * Cuts the EVP_PKEYs off, ends the token process (it closes the session and
 * finalizes the module when its socket closes) and waits for it, so that the
 * next tok_open of the module starts after this one's C_Finalize.
 */
void
tok_close(struct tok *t)
{
	struct wire_wbuf w;
	char who[96];

	if (t == NULL)
		return;
	tok_evp_detach(t);
	if (t->session && t->owner == getpid() && t->fd >= 0) {
		begin(&w, TOKPROC_END, NULL); /* its answer: the session is closed */
		(void)simple(t, &w);
	}
	/* (a session's process, and a fork's copy's, are not this process's to wait for:
	 * reap only closes the socket then) */
	snprintf(who, sizeof(who), "the token process of token '%s'", t->info.label);
	end_process(t, who, "as it closed the token");
	OPENSSL_cleanse(t, sizeof(*t));
	free(t);
}

/* ---------------------------------------------------------------- a station's token processes */

int
tok_worker_start(const char *module_path, struct tok_worker **out)
{
	struct tokproc_start st = {module_path, NULL, NULL, NULL, NULL, 1};
	struct tok_worker *w;
	int rc;

	if (module_path == NULL || (w = calloc(1, sizeof(*w))) == NULL)
		return module_path == NULL ? P11E_ERR_INTERNAL : P11E_ERR_ALLOC;
	if ((rc = start(&w->t, &st)) != 0) {
		free(w);
		return rc;
	}
	log_debug("token process %ld serves the station's cards through %s", (long)w->t.pid,
	          module_path);
	*out = w;
	return 0;
}

int
tok_worker_connect(struct tok_worker *w, int *fd)
{
	int sv[2];

	*fd = -1;
	if (w == NULL || w->t.fd < 0)
		return P11E_ERR_TOKEN;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		log_error("cannot reach the station's token process: %s", strerror(errno));
		return P11E_ERR_INTERNAL;
	}
	if (wire_send_fd(w->t.fd, 0, sv[1]) != 0) {
		close(sv[0]);
		close(sv[1]);
		return P11E_ERR_TOKEN;
	}
	close(sv[1]);
	*fd = sv[0];
	return 0;
}

int
tok_worker_alive(struct tok_worker *w)
{
	struct pollfd p = {.fd = -1, .events = POLLIN};
	char why[96];
	int status = 0, gone;
	pid_t r;

	if (w == NULL || w->t.pid <= 0 || w->t.owner != getpid())
		return 0;
	/* Its end of the control socket closes as it exits, maybe before it is a zombie:
	 * then it is waited for. It never writes there. Not the only sign: a card that
	 * saw its session end with it may see that first (tok_worker_lost). */
	p.fd = w->t.fd;
	gone = poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLIN)) != 0;
	while ((r = waitpid(w->t.pid, &status, gone ? 0 : WNOHANG)) < 0 && errno == EINTR)
		;
	if (r == 0)
		return 1;
	describe_status(status, why, sizeof(why));
	log_warn("the station's token process %ld %s", (long)w->t.pid, why);
	w->t.pid = -1;
	return 0;
}

int
tok_station_lost(void)
{
	return station_lost;
}

/* Closes w and waits for its process; an unclean end is logged with when. */
static void
worker_end(struct tok_worker *w, const char *when)
{
	char who[64];

	if (w == NULL)
		return;
	snprintf(who, sizeof(who), "the station's token process %ld", (long)w->t.pid);
	end_process(&w->t, who, when);
	free(w);
}

void
tok_worker_lost(struct tok_worker *w)
{
	worker_end(w, "(a card's session ended with it)");
}

void
tok_worker_stop(struct tok_worker *w)
{
	worker_end(w, "as it ended");
}
