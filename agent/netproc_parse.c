/*
 * netproc_parse.c: the messages of the parsing jobs of the network process
 * (netproc_parse.h).
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "err.h"
#include "netproc_parse.h"
#include "secret.h"

#define TRUSTED_MAX 64

/* Every answer begins with the job's code and its last error line; the job's fields
 * follow only for 0. Returns whether they do. */
static int
write_head(struct wire_wbuf *w, int rc, const char *err)
{
	wire_w_num(w, rc);
	wire_w_str(w, err);
	return rc == 0;
}

/* Reads an answer's head: *rc a code of ours (0 or a P11E_ERR_*), *err the error line
 * or NULL (secret_wipe_free). 0, -1 for any other code, P11E_ERR_ALLOC. */
static int
read_head(struct wire_rbuf *r, int64_t *rc, char **err)
{
	*rc = wire_r_num(r);
	if (*rc > 0 || *rc < P11E_ERR_HOOK)
		return -1;
	return wire_r_str(r, err) != 0 ? P11E_ERR_ALLOC : 0;
}

/*
 * Reads a whole answer: its head, for 0 the job's fields by body (which keeps what it
 * made in ctx), then nothing more. On 0, *rc and *err (or NULL; secret_wipe_free) are
 * set. Returns 0, -1 for anything else, P11E_ERR_ALLOC (or body's error); what body made
 * is the caller's, to keep on 0 and to free otherwise.
 */
static int
read_answer(const unsigned char *msg, size_t len, int (*body)(struct wire_rbuf *, void *),
            void *ctx, int *rc, char **err)
{
	struct wire_rbuf r = {msg, len, 0, 0};
	char *e = NULL;
	int64_t v;
	int ret;

	*rc = 0;
	*err = NULL;
	if ((ret = read_head(&r, &v, &e)) != 0 || (v == 0 && (ret = body(&r, ctx)) != 0))
		goto out;
	ret = -1;
	if (r.bad || r.off != r.len)
		goto out;
	*rc = (int)v;
	*err = e;
	e = NULL;
	ret = 0;
out:
	secret_wipe_free(e);
	return ret;
}

/* A list of certificates: their number, then each one's DER. A certificate that cannot
 * be encoded sets w->oom. */
static void
write_certs(struct wire_wbuf *w, STACK_OF(X509) * certs)
{
	int i, n = sk_X509_num(certs);

	wire_w_num(w, n);
	for (i = 0; i < n && !w->oom; i++) {
		unsigned char *d = NULL;
		int k = i2d_X509(sk_X509_value(certs, i), &d);

		if (k <= 0)
			w->oom = 1;
		else
			wire_w_bytes(w, d, (size_t)k);
		OPENSSL_free(d);
	}
}

/* Reads such a list into *out (new, sk_X509_pop_free): min..max certificates, each a
 * whole DER certificate, together at most max_len bytes. 0, -1 for anything else,
 * P11E_ERR_ALLOC. */
static int
read_certs(struct wire_rbuf *r, int64_t min, int64_t max, size_t max_len, STACK_OF(X509) * *out)
{
	STACK_OF(X509) *certs = NULL;
	const unsigned char *d, *p;
	int64_t i, n = wire_r_num(r);
	size_t k, total = 0;
	X509 *x = NULL;
	int ret = -1;

	*out = NULL;
	if (r->bad || n < min || n > max)
		return -1;
	if ((certs = sk_X509_new_null()) == NULL)
		return P11E_ERR_ALLOC;
	for (i = 0; i < n; i++) {
		if ((d = wire_r_bytes(r, &k)) == NULL || k > max_len - total || k > LONG_MAX)
			goto out;
		total += k;
		p = d;
		if ((x = d2i_X509(NULL, &p, (long)k)) == NULL || p != d + k)
			goto out;
		if (!sk_X509_push(certs, x)) {
			ret = P11E_ERR_ALLOC;
			goto out;
		}
		x = NULL;
	}
	*out = certs;
	certs = NULL;
	ret = 0;
out:
	ERR_clear_error();
	X509_free(x);
	sk_X509_pop_free(certs, X509_free);
	return ret;
}

void
netproc_rep_request_write(struct wire_wbuf *w, const unsigned char *der, size_t len,
                          STACK_OF(X509) * trusted, const char *txid, const unsigned char nonce[16])
{
	wire_w_bytes(w, der, len);
	write_certs(w, trusted);
	wire_w_str(w, txid);
	wire_w_bytes(w, nonce, 16);
}

int
netproc_rep_request_read(struct wire_rbuf *r, const unsigned char **der, size_t *len,
                         STACK_OF(X509) * *trusted, char **txid, unsigned char nonce[16])
{
	const unsigned char *d;
	size_t n;
	int got;

	*trusted = NULL;
	*txid = NULL;
	if ((*der = wire_r_bytes(r, len)) == NULL)
		return -1;
	if ((got = read_certs(r, 0, TRUSTED_MAX, SIZE_MAX, trusted)) != 0)
		return got;
	if (wire_r_str(r, txid) != 0) {
		got = P11E_ERR_ALLOC;
		goto bad;
	}
	d = wire_r_bytes(r, &n);
	if (r->bad || r->off != r->len || *txid == NULL || d == NULL || n != 16) {
		got = -1;
		goto bad;
	}
	memcpy(nonce, d, 16);
	return 0;
bad:
	sk_X509_pop_free(*trusted, X509_free);
	*trusted = NULL;
	secret_wipe_free(*txid);
	*txid = NULL;
	return got;
}

void
netproc_rep_answer_write(struct wire_wbuf *w, int rc, const char *err, const struct scep_rep *rep,
                         STACK_OF(X509) * trusted)
{
	int i, idx = -1;

	if (!write_head(w, rc, err))
		return;
	for (i = 0; i < sk_X509_num(trusted); i++)
		if (X509_cmp(sk_X509_value(trusted, i), rep->signer) == 0)
			idx = i;
	wire_w_num(w, rep->status);
	wire_w_num(w, rep->fail_info);
	wire_w_str(w, rep->fail_text);
	wire_w_num(w, idx);
	wire_w_str(w, rep->sig_md);
	wire_w_bytes(w, rep->envelope, rep->envelope_len);
}

/* The digest's short name as OpenSSL's own static string, if a CertRep may use it. */
static const char *
known_md(const char *name)
{
	X509_ALGOR *alg;
	const char *sn = NULL;
	int nid = name != NULL ? OBJ_sn2nid(name) : NID_undef;

	if (nid == NID_undef || (alg = X509_ALGOR_new()) == NULL)
		return NULL;
	if (X509_ALGOR_set0(alg, OBJ_nid2obj(nid), V_ASN1_UNDEF, NULL) == 1 &&
	    scep_digest_acceptable(alg))
		sn = OBJ_nid2sn(nid);
	X509_ALGOR_free(alg);
	return sn;
}

/* Whether s is printable ASCII (what scep_rep_parse makes of failInfoText). */
static int
printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

struct rep_read {
	STACK_OF(X509) * trusted;
	size_t max_envelope;
	struct scep_rep *rep;
};

/* A CertRep answer's fields into c->rep (read_answer's body). */
static int
rep_body(struct wire_rbuf *r, void *ctx)
{
	struct rep_read *c = ctx;
	struct scep_rep *rep;
	const unsigned char *env;
	char *md = NULL, *text = NULL;
	int64_t v, idx;
	size_t n;
	int ret = P11E_ERR_ALLOC;

	if ((rep = c->rep = calloc(1, sizeof(*rep))) == NULL)
		return P11E_ERR_ALLOC;
	rep->status = (int)wire_r_num(r);
	v = wire_r_num(r);
	if (wire_r_str(r, &text) != 0)
		goto out;
	idx = wire_r_num(r);
	if (wire_r_str(r, &md) != 0)
		goto out;
	env = wire_r_bytes(r, &n);
	ret = -1;
	if (r->bad ||
	    (rep->status != SCEP_STATUS_SUCCESS && rep->status != SCEP_STATUS_FAILURE &&
	     rep->status != SCEP_STATUS_PENDING) ||
	    v < -1 || v > 999 ||
	    (text != NULL && (strlen(text) > NETPROC_FAIL_TEXT_MAX || !printable(text))) ||
	    idx < 0 || idx >= sk_X509_num(c->trusted) || (rep->sig_md = known_md(md)) == NULL ||
	    (rep->status == SCEP_STATUS_SUCCESS) != (env != NULL && n > 0) || n > c->max_envelope)
		goto out;
	rep->fail_info = (int)v;
	ret = P11E_ERR_ALLOC;
	/* scep_rep_free frees them with free() */
	if ((text != NULL && (rep->fail_text = strdup(text)) == NULL) ||
	    (n > 0 && (rep->envelope = malloc(n)) == NULL))
		goto out;
	if (n > 0)
		memcpy(rep->envelope, env, n);
	rep->envelope_len = n;
	rep->signer = sk_X509_value(c->trusted, (int)idx);
	if (!X509_up_ref(rep->signer)) {
		rep->signer = NULL;
		goto out;
	}
	ret = 0;
out:
	secret_wipe_free(md);
	secret_wipe_free(text);
	return ret;
}

int
netproc_rep_answer_read(const unsigned char *msg, size_t len, STACK_OF(X509) * trusted,
                        size_t max_envelope, int *rc, char **err, struct scep_rep **out)
{
	struct rep_read c = {trusted, max_envelope, NULL};
	int ret = read_answer(msg, len, rep_body, &c, rc, err);

	*out = ret == 0 ? c.rep : NULL;
	if (ret != 0)
		scep_rep_free(c.rep);
	return ret;
}

void
netproc_certs_answer_write(struct wire_wbuf *w, int rc, const char *err, STACK_OF(X509) * certs)
{
	int n = sk_X509_num(certs);

	if (rc == 0 && (n < 1 || n > NETPROC_CERTS_MAX)) {
		rc = P11E_ERR_MALFORMED;
		err = "the bundle holds more certificates than p11enroll takes";
	}
	if (write_head(w, rc, err))
		write_certs(w, certs);
}

struct certs_read {
	size_t max_len;
	STACK_OF(X509) * certs;
};

/* A certificates answer's list into c->certs (read_answer's body). */
static int
certs_body(struct wire_rbuf *r, void *ctx)
{
	struct certs_read *c = ctx;

	return read_certs(r, 1, NETPROC_CERTS_MAX, c->max_len, &c->certs);
}

int
netproc_certs_answer_read(const unsigned char *msg, size_t len, size_t max_len, int *rc, char **err,
                          STACK_OF(X509) * *out)
{
	struct certs_read c = {max_len, NULL};
	int ret = read_answer(msg, len, certs_body, &c, rc, err);

	*out = ret == 0 ? c.certs : NULL;
	if (ret != 0)
		sk_X509_pop_free(c.certs, X509_free);
	return ret;
}

void
netproc_next_request_write(struct wire_wbuf *w, const unsigned char *der, size_t len,
                           const struct scep_ca *cur)
{
	STACK_OF(X509) *ca = sk_X509_new_null();

	wire_w_bytes(w, der != NULL ? der : (const unsigned char *)"", len);
	write_certs(w, cur->signers);
	if (ca == NULL || !sk_X509_push(ca, cur->ca))
		w->oom = 1;
	else
		write_certs(w, ca);
	write_certs(w, cur->certs);
	sk_X509_free(ca);
}

int
netproc_next_request_read(struct wire_rbuf *r, const unsigned char **der, size_t *len,
                          STACK_OF(X509) * *signers, STACK_OF(X509) * *ca, STACK_OF(X509) * *bundle)
{
	int got;

	*signers = *ca = *bundle = NULL;
	if ((*der = wire_r_bytes(r, len)) == NULL)
		return -1;
	if ((got = read_certs(r, 1, TRUSTED_MAX, SIZE_MAX, signers)) == 0 &&
	    (got = read_certs(r, 1, 1, SIZE_MAX, ca)) == 0 &&
	    (got = read_certs(r, 1, NETPROC_CERTS_MAX, SIZE_MAX, bundle)) == 0 &&
	    (r->bad || r->off != r->len))
		got = -1;
	if (got != 0) {
		sk_X509_pop_free(*signers, X509_free);
		sk_X509_pop_free(*ca, X509_free);
		sk_X509_pop_free(*bundle, X509_free);
		*signers = *ca = *bundle = NULL;
	}
	return got;
}

void
netproc_env_request_write(struct wire_wbuf *w, const unsigned char *der, size_t len, X509 *to)
{
	unsigned char *d = NULL;
	int k = i2d_X509(to, &d);

	wire_w_bytes(w, der != NULL ? der : (const unsigned char *)"", len);
	if (k <= 0)
		w->oom = 1;
	else
		wire_w_bytes(w, d, (size_t)k);
	OPENSSL_free(d);
}

int
netproc_env_request_read(struct wire_rbuf *r, const unsigned char **der, size_t *len, X509 **to)
{
	const unsigned char *d, *p;
	size_t k = 0;

	*to = NULL;
	if ((*der = wire_r_bytes(r, len)) == NULL || (d = wire_r_bytes(r, &k)) == NULL || r->bad ||
	    r->off != r->len || k > LONG_MAX)
		return -1;
	p = d;
	if ((*to = d2i_X509(NULL, &p, (long)k)) == NULL || p != d + k) {
		X509_free(*to);
		*to = NULL;
		ERR_clear_error();
		return -1;
	}
	return 0;
}

void
netproc_env_answer_write(struct wire_wbuf *w, int rc, const char *err, const struct scep_env *env)
{
	if (!write_head(w, rc, err))
		return;
	wire_w_str(w, OBJ_nid2sn(env->cipher_nid));
	wire_w_bytes(w, env->iv, env->iv_len);
	wire_w_bytes(w, env->key, env->key_len);
	wire_w_bytes(w, env->data, env->data_len);
}

struct env_read {
	size_t max_data;
	struct scep_env *env;
};

/* An envelope answer's fields into c->env (read_answer's body). */
static int
env_body(struct wire_rbuf *r, void *ctx)
{
	struct env_read *c = ctx;
	struct scep_env *env;
	const unsigned char *iv, *key, *data;
	char *sn = NULL;
	size_t iv_len = 0, key_len = 0, data_len = 0;
	int ret = P11E_ERR_ALLOC;

	if ((env = c->env = calloc(1, sizeof(*env))) == NULL || wire_r_str(r, &sn) != 0)
		goto out;
	iv = wire_r_bytes(r, &iv_len);
	key = wire_r_bytes(r, &key_len);
	data = wire_r_bytes(r, &data_len);
	ret = -1;
	if (r->bad || sn == NULL || iv == NULL || key == NULL || data == NULL)
		goto out;
	env->cipher_nid = OBJ_sn2nid(sn);
	env->iv_len = scep_env_iv_len(env->cipher_nid);
	if (env->iv_len == 0 || iv_len != env->iv_len || key_len < 1 ||
	    key_len > SCEP_ENV_KEY_MAX || data_len < 1 || data_len > c->max_data ||
	    data_len % env->iv_len != 0)
		goto out;
	memcpy(env->iv, iv, iv_len);
	ret = P11E_ERR_ALLOC;
	if ((env->key = OPENSSL_memdup(key, key_len)) == NULL ||
	    (env->data = OPENSSL_memdup(data, data_len)) == NULL)
		goto out;
	env->key_len = key_len;
	env->data_len = data_len;
	ret = 0;
out:
	secret_wipe_free(sn);
	return ret;
}

int
netproc_env_answer_read(const unsigned char *msg, size_t len, size_t max_data, int *rc, char **err,
                        struct scep_env **out)
{
	struct env_read c = {max_data, NULL};
	int ret = read_answer(msg, len, env_body, &c, rc, err);

	*out = ret == 0 ? c.env : NULL;
	if (ret != 0)
		scep_env_free(c.env);
	return ret;
}

void
netproc_page_answer_write(struct wire_wbuf *w, int rc, const char *err, const char *challenge,
                          const char *thumbprint)
{
	if (!write_head(w, rc, err))
		return;
	wire_w_str(w, challenge);
	wire_w_str(w, thumbprint);
}

/* Whether s is 1..max printable ASCII characters; with hex, upper-case hex digits in pairs. */
static int
token_ok(const char *s, size_t max, int hex)
{
	size_t n = strlen(s), i;

	if (n < 1 || n > max || (hex && n % 2 != 0))
		return 0;
	for (i = 0; i < n; i++)
		if (hex ? strchr("0123456789ABCDEF", s[i]) == NULL : s[i] < 0x21 || s[i] > 0x7e)
			return 0;
	return 1;
}

struct page_read {
	size_t max;
	char *challenge; /* in the secret arena */
	char *thumbprint;
};

/* A page answer's challenge and thumbprint into c (read_answer's body). */
static int
page_body(struct wire_rbuf *r, void *ctx)
{
	struct page_read *c = ctx;
	char *ch = NULL, *tp = NULL;
	int ret = P11E_ERR_ALLOC;

	if (wire_r_str(r, &ch) != 0 || wire_r_str(r, &tp) != 0)
		goto out;
	ret = -1;
	if (r->bad || ch == NULL || !token_ok(ch, c->max, 0) ||
	    (tp != NULL && !token_ok(tp, 128, 1)))
		goto out;
	ret = P11E_ERR_ALLOC;
	if (secret_dup(ch, &c->challenge) != 0 ||
	    (tp != NULL && (c->thumbprint = strdup(tp)) == NULL))
		goto out;
	ret = 0;
out:
	secret_wipe_free(ch);
	secret_wipe_free(tp);
	return ret;
}

int
netproc_page_answer_read(const unsigned char *msg, size_t len, size_t max, int *rc, char **err,
                         char **challenge, char **thumbprint)
{
	struct page_read c = {max, NULL, NULL};
	int ret = read_answer(msg, len, page_body, &c, rc, err);

	*challenge = ret == 0 ? c.challenge : NULL;
	*thumbprint = ret == 0 ? c.thumbprint : NULL;
	if (ret != 0) {
		secret_free(c.challenge);
		free(c.thumbprint);
	}
	return ret;
}
