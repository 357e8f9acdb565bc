/*
 * enroll.c: the enrollment flow:
 * token check -> caps, CA certs, trust -> login, key (or the pending request's)
 * -> challenge -> exchange (exchange.c) -> certificate on the token (read
 * back) -> files. PENDING answers are kept in state_dir and polled.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "challenge.h"
#include "csr.h"
#include "enroll.h"
#include "err.h"
#include "exchange.h"
#include "keyrec.h"
#include "log.h"
#include "pending.h"
#include "progress.h"
#include "scep.h"
#include "secret.h"
#include "store.h"
#include "tidy.h"
#include "tok.h"
#include "uri.h"

int
enroll_open_token(const struct conf *c, struct tok **out)
{
	int r;
	struct tok_uri *u = NULL;
	const char *module;

	if ((r = tok_uri_parse(c->token_uri, &u)) != 0)
		return r;
	module = u->module_path ? u->module_path : c->module;
	if (module == NULL) {
		log_error("%s: [token] module is not set and the URI has no module-path", c->path);
		r = P11E_ERR_CONFIG;
	} else {
		r = tok_open(module, u, out);
	}
	tok_uri_free(u);
	return r;
}

int
enroll_blame_token(struct tok *t, int r)
{
	if (r == 0 || r == P11E_ERR_TOKEN || r == P11E_ERR_PIN || r == P11E_ERR_PENDING ||
	    t == NULL || tok_present(t))
		return r;
	log_error("token '%s' was removed or stopped responding", tok_get_info(t)->label);
	return P11E_ERR_TOKEN;
}

int
enroll_cert_valid_now(X509 *cert)
{
	return X509_cmp_current_time(X509_get0_notBefore(cert)) < 0 &&
	       X509_cmp_current_time(X509_get0_notAfter(cert)) > 0;
}

static void
print_time(FILE *f, const char *label, const ASN1_TIME *t)
{
	BIO *b = BIO_new_fp(f, BIO_NOCLOSE);

	if (b == NULL)
		return;
	BIO_printf(b, "%s", label);
	ASN1_TIME_print_ex(b, t, ASN1_DTFLGS_ISO8601);
	BIO_printf(b, "\n");
	BIO_free(b);
}

/* The certificate's serial number in hex (OPENSSL_free), or NULL. */
static char *
serial_hex(X509 *cert)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

	BN_free(bn);
	return hex;
}

/* The result's key and certificate as progress lines (progress.h), when wanted. */
static void
note_cert(const struct tok *t, const struct tok_key *k, X509 *cert)
{
	char *ku = NULL, *hex = NULL, when[64];
	BIO *b = NULL;
	int n;

	if (!progress_on())
		return;
	if (tok_object_uri(t, k, "private", &ku) == 0)
		progress_note("key", "%s", ku);
	if ((hex = serial_hex(cert)) != NULL)
		progress_note("cert-serial", "%s", hex);
	if ((b = BIO_new(BIO_s_mem())) != NULL &&
	    ASN1_TIME_print_ex(b, X509_get0_notAfter(cert), ASN1_DTFLGS_ISO8601) == 1 &&
	    (n = BIO_read(b, when, sizeof(when) - 1)) > 0) {
		when[n] = '\0';
		progress_note("not-after", "%s", when);
	}
	BIO_free(b);
	OPENSSL_free(hex);
	free(ku);
}

void
enroll_print_cert(FILE *f, const struct tok *t, const struct tok_key *k, X509 *cert)
{
	char *ku = NULL, *cu = NULL, *hex = NULL;
	BIO *b = BIO_new_fp(f, BIO_NOCLOSE);

	if (tok_object_uri(t, k, "private", &ku) == 0)
		fprintf(f, "key:         %s\n", ku);
	if (cert == NULL)
		goto out;
	if (tok_object_uri(t, k, "cert", &cu) == 0)
		fprintf(f, "certificate: %s\n", cu);
	if (b != NULL) {
		BIO_printf(b, "subject:     ");
		X509_NAME_print_ex(b, X509_get_subject_name(cert), 0,
		                   XN_FLAG_SEP_COMMA_PLUS | ASN1_STRFLGS_RFC2253);
		BIO_printf(b, "\nissuer:      ");
		X509_NAME_print_ex(b, X509_get_issuer_name(cert), 0,
		                   XN_FLAG_SEP_COMMA_PLUS | ASN1_STRFLGS_RFC2253);
		BIO_printf(b, "\n");
		BIO_flush(b);
	}
	if ((hex = serial_hex(cert)) != NULL)
		fprintf(f, "serial:      %s\n", hex);
	print_time(f, "not before:  ", X509_get0_notBefore(cert));
	print_time(f, "not after:   ", X509_get0_notAfter(cert));
out:
	fflush(f);
	BIO_free(b);
	OPENSSL_free(hex);
	free(ku);
	free(cu);
}

/* a is newer than b: later notAfter, then later notBefore, then higher serial. */
static int
cert_newer(X509 *a, X509 *b)
{
	int d = ASN1_TIME_compare(X509_get0_notAfter(a), X509_get0_notAfter(b));

	if (d == 0)
		d = ASN1_TIME_compare(X509_get0_notBefore(a), X509_get0_notBefore(b));
	if (d == 0)
		d = ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(b));
	return d > 0;
}

int
enroll_find_current(struct tok *t, struct tok_key **keys, size_t n, int valid_only, size_t *which,
                    X509 **cert)
{
	size_t i, bi = 0;
	X509 *x = NULL, *best = NULL;
	int r;

	for (i = 0; i < n; i++) {
		if ((r = tok_find_cert(t, keys[i], &x)) == P11E_ERR_NOTFOUND)
			continue;
		if (r != 0)
			goto out;
		if ((!valid_only || enroll_cert_valid_now(x)) &&
		    EVP_PKEY_eq(X509_get0_pubkey(x), keys[i]->pub) == 1 &&
		    (best == NULL || cert_newer(x, best))) {
			X509_free(best);
			best = x;
			bi = i;
		} else {
			X509_free(x);
		}
		x = NULL;
	}
	if (best == NULL) {
		r = P11E_ERR_NOTFOUND;
		goto out;
	}
	*which = bi;
	*cert = best;
	best = NULL;
	r = 0;
out:
	X509_free(best);
	return r;
}

int
enroll_get_key(struct tok *t, const struct conf *c, struct tok_key **out, int *generated)
{
	int r;
	struct tok_key **keys = NULL;
	struct keyrec *rec = NULL;
	size_t n = 0, i;
	X509 *x = NULL;

	if ((r = keyrec_load(c, &rec)) != 0 || (r = tok_find_keys(t, c->key_label, &keys, &n)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		if (keys[i]->priv_handle == 0 || !keyrec_fits_profile(c, keys[i]) ||
		    !keyrec_owns(rec, keys[i]))
			continue;
		r = tok_find_cert(t, keys[i], &x);
		X509_free(x);
		x = NULL;
		if (r == P11E_ERR_NOTFOUND) {
			if ((r = keyrec_certifiable(t, keys[i])) != 0)
				goto out;
			log_info("reusing key '%s' left without certificate by an earlier attempt",
			         c->key_label);
			if ((r = keyrec_fix_id(c, t, keys[i])) != 0)
				goto out;
			*out = keys[i];
			keys[i] = NULL;
			r = 0;
			goto out;
		}
		if (r != 0)
			goto out;
	}
	if ((r = keyrec_generate(c, t, out)) == 0)
		*generated = 1;
out:
	tok_keys_free(keys, n);
	keyrec_free(rec);
	return r;
}

static int
read_challenge(const struct conf *c, char **out)
{
	*out = NULL;
	if (c->challenge != NULL)
		return secret_dup(c->challenge, out);
	if (c->challenge_file != NULL)
		return secret_read_file(c->challenge_file, "challenge file", out);
	return 0;
}

int
enroll_write_cert_file(const struct conf *c, X509 *cert)
{
	int r;
	char *pem = NULL, *dir = NULL, *slash;
	size_t len = 0;

	if (c->cert_file == NULL)
		return 0;
	if ((dir = strdup(c->cert_file)) == NULL)
		return P11E_ERR_ALLOC;
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if ((r = store_mkdirs(dir, 0755)) != 0)
			goto out;
	}
	if ((r = store_cert_pem(cert, &pem, &len)) != 0)
		goto out;
	r = store_write_atomic(c->cert_file, pem, len, 0644);
out:
	free(pem);
	free(dir);
	return r;
}

int
enroll_cert_file_stale(const struct conf *c, X509 *cert, int *stale)
{
	int r;
	unsigned char *old = NULL;
	char *pem = NULL;
	size_t oldlen = 0, len = 0;

	if (c->cert_file == NULL) {
		*stale = 0;
		return 0;
	}
	if ((r = store_cert_pem(cert, &pem, &len)) != 0)
		goto out;
	r = store_read_file(c->cert_file, 1024 * 1024, &old, &oldlen);
	if (r != 0 && r != P11E_ERR_NOTFOUND)
		goto out;
	*stale = r != 0 || oldlen != len || memcmp(old, pem, len) != 0;
	r = 0;
out:
	free(old);
	free(pem);
	return r;
}

int
enroll_sync_cert_file(const struct conf *c, X509 *cert)
{
	int r, stale = 0;

	if ((r = enroll_cert_file_stale(c, cert, &stale)) != 0 || !stale)
		return r;
	log_info("writing the token's certificate to %s", c->cert_file);
	return enroll_write_cert_file(c, cert);
}

#define POLL_BASE 2  /* seconds before the first CertPoll */
#define POLL_CAP 600 /* longest pause between CertPolls */

/* Pause before poll number n (from 0): doubling from POLL_BASE, capped, with jitter. */
static long
poll_delay(unsigned n, int jitter)
{
	long d = POLL_BASE;
	unsigned char r = 0;

	while (n-- > 0 && d < POLL_CAP)
		d *= 2;
	if (d > POLL_CAP)
		d = POLL_CAP;
	if (jitter && RAND_bytes(&r, 1) == 1)
		d = d / 2 + (d / 2 + 1) * r / 256;
	return d < 1 ? 1 : d;
}

static void
sleep_s(long s)
{
	struct timespec ts = {s, 0};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int
enroll_pending_key(struct tok *t, const struct conf *c, const struct pending *p,
                   struct tok_key **out)
{
	int r;
	struct tok_key **keys = NULL;
	size_t n = 0, i, j;
	unsigned char pub[20];
	char hex[2 * sizeof(p->key_id) + 1];

	if ((r = tok_find_keys(t, c->key_label, &keys, &n)) != 0)
		return r;
	r = P11E_ERR_NOTFOUND;
	for (i = 0; i < n; i++) {
		if (keys[i]->priv_handle == 0 || keys[i]->id_len != p->key_id_len ||
		    memcmp(keys[i]->id, p->key_id, p->key_id_len) != 0)
			continue;
		if ((r = keyrec_certifiable(t, keys[i])) != 0)
			break;
		/* The transaction names the key of its request: its public key too. */
		if (p->has_key_pub && (tok_key_id_for(keys[i]->pub, pub) != 0 ||
		                       memcmp(pub, p->key_pub, sizeof(pub)) != 0)) {
			for (j = 0; j < p->key_id_len; j++)
				snprintf(hex + 2 * j, 3, "%02x", p->key_id[j]);
			log_error(
			    "key '%s' (CKA_ID %s) on token '%s' has the CKA_ID of pending "
			    "transaction %s but not the public key of its request: it is not "
			    "the key the transaction names (nothing on the token was changed)",
			    keys[i]->label, hex, tok_get_info(t)->label, p->txid);
			r = P11E_ERR_TOKEN;
			break;
		}
		*out = keys[i];
		keys[i] = NULL;
		r = 0;
		break;
	}
	tok_keys_free(keys, n);
	return r;
}

/* Secrets are checked before anything is spent: the CA, a login, a key. */
static int
read_secrets(const struct conf *c, char **pin, char **challenge)
{
	int r;
	char *probe = NULL;

	if ((r = c->pin != NULL ? secret_dup(c->pin, pin)
	                        : secret_read_file(c->pin_file, "PIN file", pin)) != 0 ||
	    (r = read_challenge(c, challenge)) != 0)
		return r;
	if (c->challenge_url != NULL &&
	    (r = secret_read_file(c->challenge_password_file, "NDES password file", &probe)) == 0)
		secret_free(probe);
	return r;
}

int
enroll_fetch_challenge(const struct conf *c, const struct ca_info *ci, char **challenge)
{
	int r, i, match = 0;
	char *thumb = NULL, hex[33];
	unsigned char d[16];
	unsigned int dl = 0;

	if ((r = challenge_fetch(c, challenge, &thumb)) != 0)
		return r;
	log_info("obtained a one-time challenge from %s", c->challenge_url_shown);
	for (i = 0; thumb != NULL && !match && i < sk_X509_num(ci->ca->certs); i++) {
		if (scep_cert_digest(sk_X509_value(ci->ca->certs, i), EVP_md5(), d, &dl) != 0)
			break;
		for (unsigned k = 0; k < dl; k++)
			sprintf(hex + 2 * k, "%02X", d[k]);
		match = strcasecmp(hex, thumb) == 0;
	}
	if (thumb != NULL && !match)
		log_warn("the NDES page names CA thumbprint %s, which is none of the GetCACert "
		         "certificates: check that [scep] url and challenge_url are the same NDES",
		         thumb);
	free(thumb);
	return 0;
}

static void
say_pending(const struct pending *p)
{
	char when[64];
	struct tm tmv;

	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", localtime_r(&p->next_poll, &tmv));
	log_error("the CA holds the request (PENDING, transactionID %s, %u poll%s so far); run "
	          "`p11enroll enroll` again after %s to poll it, or `enroll --wait`",
	          p->txid, p->polls, p->polls == 1 ? "" : "s", when);
}

/* After login: the exchange, and the PENDING bookkeeping around it. */
static int
enroll_key(const struct conf *c, const struct enroll_opts *o, const struct ca_info *ci,
           struct tok *t, struct pending *pend, int have_pend, X509 **cert, struct tok_key **keyp,
           int *generated, char **challenge, struct timing *tm)
{
	int r;
	double t1 = exchange_now_ms();
	time_t deadline = time(NULL) + (o->wait ? o->max_wait : 0);
	struct exchange x;
	long delay;

	if (have_pend && (r = enroll_pending_key(t, c, pend, keyp)) != 0) {
		if (r != P11E_ERR_NOTFOUND)
			return r;
		log_warn("the key of pending transaction %s is gone from the token; starting a "
		         "new request",
		         pend->txid);
		if ((r = pending_clear(c)) != 0)
			return r;
		have_pend = 0;
	}
	/* The one-time challenge first: a refused login to the challenge page then
	 * costs no key; a failed key generation costs one challenge. */
	if (!have_pend && c->challenge_url != NULL &&
	    (r = enroll_fetch_challenge(c, ci, challenge)) != 0)
		return r;
	t1 = exchange_now_ms();
	progress_note("state", "key");
	if (!have_pend && (r = enroll_get_key(t, c, keyp, generated)) != 0)
		return r;
	tm->keygen = exchange_now_ms() - t1;
	for (;;) {
		memset(&x, 0, sizeof(x));
		x.c = c;
		x.ci = ci;
		x.t = t;
		x.key = *keyp;
		x.challenge = *challenge;
		x.poll_txid = have_pend ? pend->txid : NULL;
		r = exchange_run(&x, cert, tm);
		if (r == P11E_ERR_REJECTED && have_pend)
			pending_clear(c);
		if (r != P11E_ERR_PENDING)
			return r;
		if (!have_pend) {
			memset(pend, 0, sizeof(*pend));
			snprintf(pend->txid, sizeof(pend->txid), "%s", x.txid);
			memcpy(pend->key_id, (*keyp)->id, (*keyp)->id_len);
			pend->key_id_len = (*keyp)->id_len;
			pend->has_key_pub = tok_key_id_for((*keyp)->pub, pend->key_pub) == 0;
			pend->created = time(NULL);
			have_pend = 1;
		} else {
			pend->polls++;
		}
		delay = poll_delay(pend->polls, o->wait);
		pend->next_poll = time(NULL) + delay;
		if ((r = pending_save(c, pend)) != 0)
			return r;
		progress_note("state", "pending");
		if (!o->wait || pend->next_poll > deadline) {
			if (o->wait)
				log_error("--max-wait reached");
			say_pending(pend);
			return P11E_ERR_PENDING;
		}
		log_info("PENDING (transactionID %s): polling again in %ld s", pend->txid, delay);
		sleep_s(delay);
	}
}

int
enroll_run(const struct conf *c, const struct enroll_opts *o)
{
	int r, trust = 0, have_pend, generated = 0;
	struct tok *t = NULL;
	struct tok_key **keys = NULL, *key = NULL;
	size_t n = 0, which = 0;
	struct ca_info *ci = NULL;
	char *pin = NULL, *challenge = NULL;
	X509 *cert = NULL, *back = NULL;
	struct timing tm = {0, 0, 0, 0, 0};
	struct pending pend;
	double t0 = exchange_now_ms();

	/* First: before anything this run leaves in state_dir (keyrec.h). */
	if ((r = keyrec_init(c)) != 0)
		return r;
	if (c->pin_file == NULL && c->pin == NULL) {
		log_error("%s: [token] pin_file is required to enroll", c->path);
		return P11E_ERR_CONFIG;
	}
	if ((r = enroll_open_token(c, &t)) != 0 ||
	    (r = keyrec_check_token(c, t, o->allow_final_pin_try)) != 0)
		goto out;
	if ((r = tok_find_keys(t, c->key_label, &keys, &n)) != 0)
		goto out;
	if ((r = enroll_find_current(t, keys, n, 1, &which, &cert)) == 0) {
		log_info("token '%s' already holds a valid certificate for key '%s'; nothing to do",
		         tok_get_info(t)->label, c->key_label);
		enroll_print_cert(stdout, t, keys[which], cert);
		progress_note("state", "skipped");
		note_cert(t, keys[which], cert);
		/* An earlier run may have stored it and then lost the token; a
		 * pending renewal stays for `renew`. */
		r = pending_load(c, &pend);
		have_pend = r == 0 && pend.renewal;
		if (!have_pend)
			r = pending_clear(c);
		/* What an interrupted renewal left goes (tidy.h). */
		if (r == 0)
			r = tidy_settle(c, t, keys[which], cert, have_pend ? &pend : NULL,
			                o->allow_final_pin_try);
		goto out;
	}
	if (r != P11E_ERR_NOTFOUND)
		goto out;
	if ((r = pending_load(c, &pend)) != 0 && r != P11E_ERR_NOTFOUND)
		goto out;
	have_pend = r == 0;
	if (have_pend)
		log_info("polling pending transaction %s", pend.txid);
	if ((r = read_secrets(c, &pin, &challenge)) != 0)
		goto out;
	tm.token = exchange_now_ms() - t0;
	t0 = exchange_now_ms();
	if ((r = ca_fetch(c, &ci)) != 0)
		goto out;
	tm.network = exchange_now_ms() - t0;
	if ((r = ca_check_trust(c, ci, 1, &trust)) != 0 || (r = ca_write_trust(c, ci)) != 0)
		goto out;
	t0 = exchange_now_ms();
	r = tok_login(t, pin, o->allow_final_pin_try);
	secret_free(pin);
	pin = NULL;
	if (r != 0)
		goto out;
	tm.token += exchange_now_ms() - t0;
	if ((r = enroll_key(c, o, ci, t, &pend, have_pend, &cert, &key, &generated, &challenge,
	                    &tm)) != 0)
		goto out;
	t0 = exchange_now_ms();
	if ((r = tok_store_cert(t, key, cert)) != 0)
		goto out;
	if ((r = tok_find_cert(t, key, &back)) != 0 || X509_cmp(back, cert) != 0) {
		log_error("the certificate stored on token '%s' does not read back",
		          tok_get_info(t)->label);
		r = P11E_ERR_TOKEN;
		goto out;
	}
	if ((r = pending_clear(c)) != 0 || (r = enroll_write_cert_file(c, cert)) != 0)
		goto out;
	tm.store += exchange_now_ms() - t0;
	log_info("enrolled: certificate stored on token '%s' next to its key",
	         tok_get_info(t)->label);
	progress_note("state", "stored");
	note_cert(t, key, cert);
	log_debug("timing (ms): token open+login %.1f, key %.1f, CSR+sign %.1f, "
	          "network+server %.1f, decrypt+check+store %.1f",
	          tm.token, tm.keygen, tm.csr, tm.network, tm.store);
	enroll_print_cert(stdout, t, key, cert);
	r = 0;
out:
	/* A key this run generated and could not use is taken back (a PENDING
	 * request still needs it); earlier runs' keys are left for reuse. */
	if (r != 0 && r != P11E_ERR_PENDING && generated && key != NULL) {
		if (tok_destroy_key(t, key) == 0) {
			keyrec_forget(c, key);
			log_info("removed the key this attempt generated; the token is as it was");
		} else {
			log_info("the key this attempt generated stays on token '%s'; the next "
			         "`p11enroll enroll` uses it",
			         tok_get_info(t)->label);
		}
	}
	r = enroll_blame_token(t, r);
	secret_free(pin);
	secret_free(challenge);
	X509_free(cert);
	X509_free(back);
	tok_keys_free(keys, n);
	tok_key_free(key);
	ca_info_free(ci);
	tok_close(t);
	return r;
}
