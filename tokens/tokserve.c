/*
 * tokserve.c: the token process (tokproc.h). Forked by tok_open before the
 * module is loaded, it loads it, selects the token and opens the session
 * (p11_open), then answers requests until its socket closes, and closes the
 * token. It is the only process that holds the module, the session and the
 * login; the process that opened the token holds a socket.
 *
 * What it refuses, whoever asks:
 *   - keys it did not list or generate itself, or under another label than
 *     the one it was opened for (the profile's): requests name keys by the
 *     handles it gave out, checked against that list;
 *   - a private key operation outside a grant (tok_key_evp): a grant allows
 *     at most TOKPROC_GRANT_SIGNS signatures and TOKPROC_GRANT_DECRYPTS
 *     decryptions (one exchange's), and a key gets at most TOK_KEY_GRANTS
 *     grants in the process's life (one attempt), whatever a flaw in the
 *     flow, or a process that opened the token and went wrong, asks for.
 * The mechanism of each operation is chosen here from the key's type.
 */
#define _GNU_SOURCE /* close_range */

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "err.h"
#include "log.h"
#include "p11int.h"
#include "secret.h"
#include "tokproc.h"

/* A key this process listed or generated: the handles it gave out. */
struct served {
	struct tok_key *k;
	int pub_gone, priv_gone; /* its halves destroyed since (requests may still name them) */
	int grants;              /* tok_key_evp's of it so far */
};

struct grant {
	size_t key; /* index in server.keys */
	int allowed[2], used[2];
	int live;
};

struct tokproc_server {
	int fd;
	struct p11 *p;
	const char *label; /* NULL: any */
	struct served *keys;
	size_t n;
	struct grant *grants;
	size_t ngrants;
};

static const char *const op_names[2] = {"signature", "decryption"};

/* The lines logged since the last message out (log_set_sink): every message carries them. */
static struct wire_wbuf lines;
static int64_t nlines;

static void
keep_line(void *ud, int level, const char *line)
{
	(void)ud;
	if (nlines >= 256)
		return;
	wire_w_num(&lines, level);
	wire_w_str(&lines, line);
	nlines++;
}

/* Starts a message out: its code, then the lines logged since the last one. */
static void
begin_out(struct wire_wbuf *w, int code)
{
	memset(w, 0, sizeof(*w));
	wire_w_num(w, code);
	wire_w_num(w, nlines);
	wire_w_append(w, &lines);
	wire_w_free(&lines);
	nlines = 0;
}

/* Refuses what the process that opened the token asked: logged, P11E_ERR_INTERNAL. */
#define refuse(...) (log_error("token process: refused: " __VA_ARGS__), P11E_ERR_INTERNAL)

/* ---------------------------------------------------------------- keys */

/* Keeps k (taken) in the list: a key listed again replaces its older copy. */
static int
keep_key(struct tokproc_server *s, struct tok_key *k)
{
	struct served *nk;
	size_t i;

	for (i = 0; i < s->n; i++)
		if (s->keys[i].k->pub_handle == k->pub_handle) {
			tok_key_free(s->keys[i].k);
			s->keys[i].k = k;
			s->keys[i].pub_gone = s->keys[i].priv_gone = 0;
			return 0;
		}
	if ((nk = realloc(s->keys, (s->n + 1) * sizeof(*nk))) == NULL) {
		tok_key_free(k);
		return P11E_ERR_ALLOC;
	}
	s->keys = nk;
	memset(&s->keys[s->n], 0, sizeof(s->keys[s->n]));
	s->keys[s->n].k = k;
	s->n++;
	return 0;
}

/*
 * The key a request names by its handles (pub, priv; either may be 0 for
 * one half of a pair): *view is that key with those handles only. -1 with
 * the refusal logged when it is not one of the listed keys, or, when the
 * operation acts on the objects themselves (objects), when a half it names
 * was destroyed: a module may give that handle to a new object.
 */
static long
named_key(struct tokproc_server *s, struct wire_rbuf *r, int objects, struct tok_key *view)
{
	unsigned long pub = (unsigned long)wire_r_num(r), priv = (unsigned long)wire_r_num(r);
	size_t i;

	if (r->bad)
		return -1;
	for (i = 0; i < s->n; i++) {
		const struct tok_key *k = s->keys[i].k;

		if ((pub != 0 && k->pub_handle != pub) || (pub == 0 && k->priv_handle != priv))
			continue;
		if ((pub == 0 && priv == 0) || (priv != 0 && k->priv_handle != priv))
			break;
		if (objects &&
		    ((pub != 0 && s->keys[i].pub_gone) || (priv != 0 && s->keys[i].priv_gone))) {
			(void)refuse(
			    "an operation on key objects %lu/%lu of key '%s', destroyed in "
			    "this run",
			    pub, priv, k->label);
			return -1;
		}
		*view = *k;
		view->pub_handle = pub;
		view->priv_handle = priv;
		return (long)i;
	}
	(void)refuse("an operation on key objects %lu/%lu, which are not a key it listed under "
	             "label '%s'",
	             pub, priv, s->label != NULL ? s->label : "(any)");
	return -1;
}

/* The request was read to its end, and well; else it is refused (before anything is done). */
static int
whole(struct wire_rbuf *r)
{
	if (!r->bad && r->off == r->len)
		return 1;
	(void)refuse("a malformed request");
	return 0;
}

static int
label_ok(const struct tokproc_server *s, const char *label)
{
	if (s->label == NULL || strcmp(s->label, label) == 0)
		return 1;
	(void)refuse("keys labelled '%s': this token process serves the keys labelled '%s'", label,
	             s->label);
	return 0;
}

/* ---------------------------------------------------------------- operations */

static int
op_login(struct tokproc_server *s, struct wire_rbuf *r, struct wire_wbuf *f)
{
	char *pin = NULL;
	int64_t final;
	int rc;

	(void)f;
	if (wire_r_str(r, &pin) != 0)
		return P11E_ERR_ALLOC;
	final = wire_r_num(r);
	rc = !whole(r) ? P11E_ERR_INTERNAL : p11_login(s->p, pin, final == 1);
	secret_wipe_free(pin);
	return rc;
}

static int
op_find_keys(struct tokproc_server *s, struct wire_rbuf *r, struct wire_wbuf *f)
{
	struct tok_key **keys = NULL;
	char *label = NULL;
	size_t n = 0, i;
	int rc;

	if (wire_r_str(r, &label) != 0)
		return P11E_ERR_ALLOC;
	if (!whole(r) || label == NULL || !label_ok(s, label))
		rc = P11E_ERR_INTERNAL;
	else
		rc = p11_find_keys(s->p, label, &keys, &n);
	secret_wipe_free(label);
	wire_w_num(f, rc == 0 ? (int64_t)n : 0);
	for (i = 0; rc == 0 && i < n; i++)
		tokproc_w_key(f, keys[i]);
	for (i = 0; i < n; i++) {
		if (rc == 0)
			rc = keep_key(s, keys[i]); /* takes it, also on failure */
		else
			tok_key_free(keys[i]);
	}
	free(keys);
	return rc;
}

/*
 * The private key of a key listed before login (named by its public key
 * alone): looked for as a listing after login would (p11_find_private), and
 * kept with the key. Before login, none (0), as tok_find_keys gives.
 */
static int
op_find_private(struct tokproc_server *s, struct wire_rbuf *r, struct wire_wbuf *f)
{
	struct tok_key view;
	long i;
	int rc = P11E_ERR_INTERNAL;

	view.priv_handle = 0;
	if ((i = named_key(s, r, 1, &view)) >= 0 && whole(r)) {
		if (view.pub_handle == 0 || view.priv_handle != 0)
			(void)refuse("a private key looked for by other than its public key");
		else if (!s->p->logged_in)
			rc = 0;
		else if ((rc = p11_find_private(s->p, &view)) == 0 && view.priv_handle != 0) {
			s->keys[i].k->priv_handle = view.priv_handle;
			s->keys[i].priv_gone = 0;
		}
	}
	wire_w_num(f, rc == 0 ? (int64_t)view.priv_handle : 0);
	return rc;
}

/* tok_keygen_ids.named across the socket: the opener records the final CKA_ID. */
static int
named(void *ud, const unsigned char *id, size_t len)
{
	struct tokproc_server *s = ud;
	struct wire_wbuf w;
	struct wire_rbuf r;
	unsigned char *buf = NULL;
	size_t n = 0;
	int64_t v;

	begin_out(&w, TOKPROC_NAMED);
	wire_w_bytes(&w, id, len);
	if (w.oom || wire_send(s->fd, &w) != 0 || wire_recv(s->fd, &buf, &n) != 0) {
		wire_w_free(&w);
		secret_wipe_free(buf);
		return P11E_ERR_INTERNAL;
	}
	wire_w_free(&w);
	r = (struct wire_rbuf){buf, n, 0, 0};
	v = wire_r_num(&r);
	if (r.bad || r.off != r.len || v > 0 || v < -64)
		v = P11E_ERR_INTERNAL;
	secret_wipe_free(buf);
	return (int)v;
}

static int
op_generate(struct tokproc_server *s, struct wire_rbuf *r, struct wire_wbuf *f)
{
	struct tok_keygen_ids ids;
	struct tok_keyspec spec;
	struct tok_key *k = NULL;
	const unsigned char *tmp;
	char *label = NULL;
	size_t tmplen = 0;
	int64_t hook;
	int rc;

	memset(&ids, 0, sizeof(ids));
	tmp = wire_r_bytes(r, &tmplen);
	hook = wire_r_num(r);
	spec.type = (enum tok_key_type)wire_r_num(r);
	spec.bits = (int)wire_r_num(r);
	spec.curve = (int)wire_r_num(r);
	if (wire_r_str(r, &label) != 0)
		return P11E_ERR_ALLOC;
	if (!whole(r) || label == NULL || !label_ok(s, label))
		rc = P11E_ERR_INTERNAL;
	else if ((tmp != NULL && (tmplen == 0 || tmplen > sizeof(k->id))) ||
	         (tmp == NULL && hook) || (spec.type != TOK_KEY_RSA && spec.type != TOK_KEY_EC) ||
	         spec.bits <= 0 || spec.bits > 16384 || spec.curve < 0)
		rc = refuse("a key generation of malformed parameters");
	else {
		ids.tmp_id = tmp;
		ids.tmp_len = tmplen;
		ids.named = hook ? named : NULL;
		ids.ud = s;
		rc = p11_generate_key(s->p, tmp != NULL ? &ids : NULL, &spec, label, &k);
	}
	secret_wipe_free(label);
	wire_w_num(f, ids.left);
	tokproc_w_key(f, rc == 0 ? k : NULL);
	if (rc == 0)
		rc = keep_key(s, k);
	else
		tok_key_free(k);
	return rc;
}

static int
op_destroy_key(struct tokproc_server *s, struct wire_rbuf *r, struct wire_wbuf *f)
{
	struct tok_key view;
	long i;
	int rc;

	(void)f;
	if ((i = named_key(s, r, 1, &view)) < 0 || !whole(r))
		return P11E_ERR_INTERNAL;
	if ((rc = p11_destroy_key(s->p, &view)) == 0) {
		if (view.pub_handle != 0)
			s->keys[i].pub_gone = 1;
		if (view.priv_handle != 0)
			s->keys[i].priv_gone = 1;
	}
	return rc;
}

static int
op_fix_id(struct tokproc_server *s, struct wire_rbuf *r, struct wire_wbuf *f)
{
	struct tok_key view;
	long i;
	int rc = P11E_ERR_INTERNAL;

	if ((i = named_key(s, r, 1, &view)) >= 0 && whole(r) &&
	    (rc = p11_key_fix_id(s->p, &view)) == 0) {
		memcpy(s->keys[i].k->id, view.id, view.id_len);
		s->keys[i].k->id_len = view.id_len;
	}
	wire_w_bytes(f, rc == 0 ? view.id : NULL, rc == 0 ? view.id_len : 0);
	return rc;
}

static int
op_attrs(struct tokproc_server *s, struct wire_rbuf *r, struct wire_wbuf *f)
{
	struct tok_key view;
	struct tok_key_attrs a;
	int rc = P11E_ERR_INTERNAL;

	memset(&a, 0, sizeof(a));
	if (named_key(s, r, 1, &view) >= 0 && whole(r))
		rc = p11_key_attrs(s->p, &view, &a);
	wire_w_num(f, a.sensitive);
	wire_w_num(f, a.always_sensitive);
	wire_w_num(f, a.extractable);
	wire_w_num(f, a.never_extractable);
	wire_w_num(f, a.local);
	wire_w_num(f, a.priv_token);
	wire_w_num(f, a.priv_private);
	return rc;
}

static int
op_find_cert(struct tokproc_server *s, struct wire_rbuf *r, struct wire_wbuf *f)
{
	struct tok_key view;
	X509 *x = NULL;
	unsigned char *der = NULL;
	int rc = P11E_ERR_INTERNAL, len = 0;

	if (named_key(s, r, 0, &view) >= 0 && whole(r) &&
	    (rc = p11_find_cert(s->p, &view, &x)) == 0 && (len = i2d_X509(x, &der)) <= 0)
		rc = P11E_ERR_INTERNAL;
	wire_w_bytes(f, rc == 0 ? der : NULL, rc == 0 ? (size_t)len : 0);
	OPENSSL_free(der);
	X509_free(x);
	return rc;
}

/* The certificate of a request (NULL allowed when may_be_null). -1: malformed. */
static int
r_cert(struct wire_rbuf *r, int may_be_null, X509 **out)
{
	size_t n = 0;
	const unsigned char *der = wire_r_bytes(r, &n), *p = der;

	*out = NULL;
	if (r->bad)
		return -1;
	if (der == NULL)
		return may_be_null ? 0 : -1;
	if (n == 0 || (*out = d2i_X509(NULL, &p, (long)n)) == NULL || p != der + n) {
		X509_free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

/* STORE_CERT, HAS_CERT, DESTROY_CERT: a key and a certificate. */
static int
op_key_cert(struct tokproc_server *s, int op, struct wire_rbuf *r)
{
	struct tok_key view;
	X509 *x = NULL;
	int rc = P11E_ERR_INTERNAL;

	if (named_key(s, r, 0, &view) >= 0 && r_cert(r, 0, &x) == 0 && whole(r))
		rc = op == TOKPROC_STORE_CERT ? p11_store_cert(s->p, &view, x)
		     : op == TOKPROC_HAS_CERT ? p11_has_cert(s->p, &view, x)
		                              : p11_destroy_cert(s->p, &view, x);
	X509_free(x);
	return rc;
}

static int
op_other_certs(struct tokproc_server *s, struct wire_rbuf *r, struct wire_wbuf *f)
{
	struct tok_key view;
	X509 *keep = NULL;
	size_t n = 0;
	int64_t destroy;
	int rc = P11E_ERR_INTERNAL;

	if (named_key(s, r, 0, &view) >= 0 && r_cert(r, 1, &keep) == 0) {
		destroy = wire_r_num(r);
		if (whole(r))
			rc = p11_other_certs(s->p, &view, keep, destroy == 1, &n);
	}
	wire_w_num(f, (int64_t)n);
	X509_free(keep);
	return rc;
}

static int
op_grant(struct tokproc_server *s, struct wire_rbuf *r, struct wire_wbuf *f)
{
	struct tok_key view;
	struct grant *g;
	struct served *e;
	int64_t want[2];
	long i;
	int rc = P11E_ERR_INTERNAL;

	if ((i = named_key(s, r, 1, &view)) < 0)
		goto out;
	want[0] = wire_r_num(r);
	want[1] = wire_r_num(r);
	e = &s->keys[i];
	if (!whole(r) || want[0] < 0 || want[1] < 0)
		goto out;
	if (view.priv_handle == 0 || e->priv_gone)
		rc = refuse("operations of public key '%s', which has no private key", view.label);
	else if (want[0] > TOKPROC_GRANT_SIGNS || want[1] > TOKPROC_GRANT_DECRYPTS)
		rc = refuse("%lld signatures and %lld decryptions of private key '%s' at once: an "
		            "enrollment's exchange needs at most %d and %d",
		            (long long)want[0], (long long)want[1], view.label, TOKPROC_GRANT_SIGNS,
		            TOKPROC_GRANT_DECRYPTS);
	else if (e->grants >= TOK_KEY_GRANTS)
		rc = refuse("a use of private key '%s' more than the %d of one attempt", view.label,
		            TOK_KEY_GRANTS);
	else if ((g = realloc(s->grants, (s->ngrants + 1) * sizeof(*g))) == NULL)
		rc = P11E_ERR_ALLOC;
	else {
		s->grants = g;
		g += s->ngrants;
		memset(g, 0, sizeof(*g));
		g->key = (size_t)i;
		g->allowed[0] = (int)want[0];
		g->allowed[1] = (int)want[1];
		g->live = 1;
		e->grants++;
		rc = 0;
	}
out:
	wire_w_num(f, rc == 0 ? (int64_t)s->ngrants++ : -1);
	return rc;
}

/* The live grant a request names by its number. */
static struct grant *
grant_of(struct tokproc_server *s, struct wire_rbuf *r)
{
	int64_t n = wire_r_num(r);

	if (r->bad)
		return NULL;
	if (n < 0 || (uint64_t)n >= s->ngrants || !s->grants[n].live) {
		(void)refuse("a private key operation under grant %lld, which is not one it gave",
		             (long long)n);
		return NULL;
	}
	return &s->grants[n];
}

static int
op_key_op(struct tokproc_server *s, struct wire_rbuf *r, struct wire_wbuf *f)
{
	struct tok_key view;
	struct grant *g;
	unsigned char out[TOKPROC_OP_MAX];
	const unsigned char *in;
	size_t inlen = 0, outlen = 0;
	int64_t decrypt, room;
	int rc = P11E_ERR_INTERNAL, d;

	if ((g = grant_of(s, r)) == NULL)
		goto out;
	decrypt = wire_r_num(r);
	in = wire_r_bytes(r, &inlen);
	room = wire_r_num(r);
	if (!whole(r) || in == NULL || inlen > TOKPROC_OP_MAX || (decrypt != 0 && decrypt != 1) ||
	    room <= 0)
		goto out;
	d = (int)decrypt;
	view = *s->keys[g->key].k;
	if (g->used[d] >= g->allowed[d]) {
		log_error("token process: private key '%s': a %s more than the %d this use of it "
		          "needs: refused, so that no flaw can turn the token into a signing or "
		          "decryption oracle",
		          view.label, op_names[d], g->allowed[d]);
		rc = P11E_ERR_TOKEN;
		goto out;
	}
	if (s->keys[g->key].priv_gone) {
		rc = refuse("private key '%s' was destroyed", view.label);
		goto out;
	}
	g->used[d]++;
	/* the module gets room for any key's result: never CKR_BUFFER_TOO_SMALL from a small ask */
	outlen = sizeof(out);
	if ((rc = p11_key_op(s->p, &view, d, in, inlen, out, &outlen)) == 0 &&
	    outlen > (size_t)room)
		rc = refuse("a %s of %zu bytes into %lld", op_names[d], outlen, (long long)room);
out:
	wire_w_bytes(f, rc == 0 ? out : NULL, rc == 0 ? outlen : 0);
	OPENSSL_cleanse(out, sizeof(out));
	return rc;
}

static int
op_release(struct tokproc_server *s, struct wire_rbuf *r)
{
	struct grant *g;

	if ((g = grant_of(s, r)) == NULL || !whole(r))
		return P11E_ERR_INTERNAL;
	log_debug("private key '%s': %d of %d %ss and %d of %d %ss used", s->keys[g->key].k->label,
	          g->used[0], g->allowed[0], op_names[0], g->used[1], g->allowed[1], op_names[1]);
	g->live = 0;
	return 0;
}

static int
dispatch(struct tokproc_server *s, int64_t op, struct wire_rbuf *r, struct wire_wbuf *f)
{
	switch (op) {
	case TOKPROC_PRESENT:
		wire_w_num(f, whole(r) ? p11_present(s->p) : 0);
		return 0;
	case TOKPROC_LOGIN:
		return op_login(s, r, f);
	case TOKPROC_FIND_KEYS:
		return op_find_keys(s, r, f);
	case TOKPROC_FIND_PRIVATE:
		return op_find_private(s, r, f);
	case TOKPROC_GENERATE:
		return op_generate(s, r, f);
	case TOKPROC_DESTROY_KEY:
		return op_destroy_key(s, r, f);
	case TOKPROC_FIX_ID:
		return op_fix_id(s, r, f);
	case TOKPROC_ATTRS:
		return op_attrs(s, r, f);
	case TOKPROC_FIND_CERT:
		return op_find_cert(s, r, f);
	case TOKPROC_STORE_CERT:
	case TOKPROC_HAS_CERT:
	case TOKPROC_DESTROY_CERT:
		return op_key_cert(s, (int)op, r);
	case TOKPROC_OTHER_CERTS:
		return op_other_certs(s, r, f);
	case TOKPROC_GRANT:
		return op_grant(s, r, f);
	case TOKPROC_KEY_OP:
		return op_key_op(s, r, f);
	case TOKPROC_RELEASE:
		return op_release(s, r);
	default:
		return refuse("an unknown operation %lld", (long long)op);
	}
}

/* ---------------------------------------------------------------- the loop */

/* An answer: head (the lines logged since the last message, rc, the token), then f's fields. */
static void
build_answer(struct wire_wbuf *w, const struct tok_info *info, int rc, const struct wire_wbuf *f)
{
	begin_out(w, TOKPROC_ANSWER);
	wire_w_num(w, rc);
	tokproc_w_info(w, info);
	if (f != NULL)
		wire_w_append(w, f);
}

/* Sends an answer; -1 when the opener is gone. */
static int
answer(int fd, const struct tok_info *info, int rc, const struct wire_wbuf *f)
{
	struct wire_wbuf w;
	int e;

	build_answer(&w, info, rc, f);
	e = w.oom ? -1 : wire_send(fd, &w);
	wire_w_free(&w);
	return e;
}

struct tokproc_server *
tokproc_server_new(int fd, struct p11 *p, const char *label)
{
	struct tokproc_server *s = calloc(1, sizeof(*s));

	if (s != NULL) {
		s->fd = fd;
		s->p = p;
		s->label = label;
	}
	return s;
}

void
tokproc_server_request(struct tokproc_server *s, const unsigned char *msg, size_t len,
                       struct wire_wbuf *out)
{
	struct wire_wbuf f;
	struct wire_rbuf r = {msg, len, 0, 0};
	int64_t op;
	int rc;

	memset(&f, 0, sizeof(f));
	op = wire_r_num(&r);
	rc = r.bad ? refuse("a malformed request") : dispatch(s, op, &r, &f);
	if (f.oom)
		rc = P11E_ERR_ALLOC;
	build_answer(out, &s->p->info, rc, f.oom ? NULL : &f);
	wire_w_free(&f);
}

void
tokproc_server_free(struct tokproc_server *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n; i++)
		tok_key_free(s->keys[i].k);
	free(s->keys);
	free(s->grants);
	free(s);
}

/*
 * Requests on fd until it closes (0) or, in a station's session (ends 1),
 * until TOKPROC_END (1). The token stays open.
 */
static int
serve(int fd, struct p11 *p, const char *label, int ends)
{
	struct tokproc_server *s = tokproc_server_new(fd, p, label);
	struct wire_wbuf w;
	struct wire_rbuf r;
	unsigned char *buf = NULL;
	size_t len = 0;
	int e, end = 0;

	while (s != NULL && wire_recv(fd, &buf, &len) == 0) {
		r = (struct wire_rbuf){buf, len, 0, 0};
		if (ends && wire_r_num(&r) == TOKPROC_END && r.off == r.len) {
			secret_wipe_free(buf);
			end = 1;
			break;
		}
		memset(&w, 0, sizeof(w));
		tokproc_server_request(s, buf, len, &w);
		secret_wipe_free(buf);
		buf = NULL;
		e = w.oom ? -1 : wire_send(fd, &w);
		wire_w_free(&w);
		if (e != 0)
			break;
	}
	tokproc_server_free(s);
	return end;
}

/* The token process's end: the token closed, the module finalised. */
static void __attribute__((noreturn)) finish(struct p11 *p)
{
	char usage[128];

	log_set_sink(NULL, NULL); /* what closing the token says goes to stderr */
	p11_close(p);
	if (log_usage_text(usage, sizeof(usage))[0] != '\0')
		log_debug("token process: %s", usage);
	_exit(0);
}

/* Forgets the lines logged and not yet sent: they belong to no one's message. */
static void
drop_lines(void)
{
	wire_w_free(&lines);
	nlines = 0;
}

/*
 * One card's session in a station's token process (TOKPROC_OPEN first, then
 * requests until TOKPROC_END or the socket's end): the token the URI names
 * is selected and opened, served for the label the card process names (its
 * keys and grants this session's only), then logged out and closed with the
 * module left loaded. load_rc: the module's load failed (answered to OPEN).
 */
static void
session(int fd, struct p11 *p, int load_rc)
{
	struct tok_info none;
	struct tok_uri *u = NULL;
	char *uri = NULL, *label = NULL;
	unsigned char *buf = NULL;
	size_t len = 0;
	struct wire_rbuf r;
	int rc = P11E_ERR_INTERNAL, end = 0;

	memset(&none, 0, sizeof(none));
	if (wire_recv(fd, &buf, &len) != 0)
		return;
	r = (struct wire_rbuf){buf, len, 0, 0};
	if (wire_r_num(&r) != TOKPROC_OPEN || wire_r_str(&r, &uri) != 0 ||
	    wire_r_str(&r, &label) != 0 || !whole(&r) || uri == NULL)
		(void)refuse("a session that does not begin with the token it is for");
	else if (load_rc != 0)
		rc = load_rc;
	else if ((rc = tok_uri_parse(uri, &u)) != 0)
		(void)refuse("a session for a token URI it cannot read");
	else if ((rc = p11_select(p, u)) == 0)
		log_debug("token process %ld: a session on token '%s'", (long)getpid(),
		          p->info.label);
	secret_wipe_free(buf);
	if (answer(fd, rc == 0 ? &p->info : &none, rc, NULL) == 0 && rc == 0)
		end = serve(fd, p, label, 1);
	if (!end)
		log_set_sink(NULL, NULL); /* no END to answer: what closing says goes to stderr */
	if (p != NULL)
		p11_end(p);
	if (end)
		(void)answer(fd, &none, 0, NULL);
	log_set_sink(keep_line, NULL);
	drop_lines();
	tok_uri_free(u);
	secret_wipe_free(uri);
	secret_wipe_free(label);
}

/*
 * A station's token process (tokproc_start.worker): loads the module once,
 * then serves one card's session per socket that arrives on ctl, one at a
 * time, until ctl closes. A module that does not load fails the first
 * session with its error, and the process ends.
 */
static void __attribute__((noreturn)) work(int ctl, const char *module_path)
{
	struct p11 *p = NULL;
	int load_rc, code, fd;

	load_rc = p11_load(module_path, &p);
	if (load_rc == 0)
		drop_lines(); /* the load's debug lines: no card's */
	while (wire_recv_fd(ctl, &code, &fd) == 0 && fd >= 0) {
		session(fd, p, load_rc);
		close(fd);
		if (load_rc != 0)
			break;
	}
	finish(p);
}

/*
 * The token process's start, in the child of tok_open's or tokproc_run's fork:
 * only the socket and stdio stay open; signals that end a run (the
 * terminal's, systemd's stop) leave it to the end of its socket, so that it
 * closes the token (C_Logout, C_Finalize) after the process that opened it is
 * gone.
 */
void
tokproc_child(int fd, const struct tokproc_start *st)
{
	struct wire_wbuf f;
	struct p11 *p = NULL;
	struct tok_info none;
	int rc;

	if (fd != 3 && (dup2(fd, 3) != 3 || close(fd) != 0))
		_exit(P11E_EXIT_SOFTWARE);
	fd = 3;
	(void)close_range(4, ~0U, 0);
	(void)signal(SIGINT, SIG_IGN);
	(void)signal(SIGTERM, SIG_IGN);
	(void)signal(SIGHUP, SIG_IGN);
	(void)signal(SIGPIPE, SIG_IGN);
	(void)signal(SIGCHLD, SIG_DFL);
	log_set_sink(keep_line, NULL);
	memset(&none, 0, sizeof(none));
	if ((rc = tokproc_confine()) != 0) {
		(void)answer(fd, &none, rc, NULL);
		_exit(0);
	}
	if (st->job != NULL) {
		memset(&f, 0, sizeof(f));
		rc = st->job(st->arg, &f);
		if (f.oom)
			rc = P11E_ERR_ALLOC;
		(void)answer(fd, &none, rc, f.oom ? NULL : &f);
		wire_w_free(&f);
		_exit(0);
	}
	if (st->worker)
		work(fd, st->module_path);
	rc = p11_open(st->module_path, st->uri, &p);
	if (answer(fd, p != NULL ? &p->info : &none, rc, NULL) == 0 && rc == 0)
		(void)serve(fd, p, st->label, 0);
	finish(p);
}
