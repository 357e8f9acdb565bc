/*
 * enroll.c: the one enrollment pipeline (enroll.h). `enroll`, `renew`, the
 * agent's attempts and the station's per-card child all run it; they differ
 * in struct enroll_opts, not in code:
 *   prepare:  the profile's keys and current certificate, whether anything is
 *             due, a pending request, the secrets, the CA and trust, login;
 *   exchange: the key to certify, the challenge, the SCEP round trips
 *             (exchange.c) with their PENDING bookkeeping;
 *   commit:   the hooks owed, store, read back, pending cleared, cert_file,
 *             the hooks run (hook.c), the old pair removed (tidy.c) unless
 *             one of them failed.
 * The old key and certificate stay in use until the new certificate reads
 * back; a key this run made and could not use is taken back.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/rand.h>
#include <openssl/x509.h>

#include "ca.h"
#include "certfile.h"
#include "challenge.h"
#include "current.h"
#include "enroll.h"
#include "err.h"
#include "exchange.h"
#include "hook.h"
#include "keyrec.h"
#include "log.h"
#include "netproc.h"
#include "pending.h"
#include "pin.h"
#include "progress.h"
#include "scep.h"
#include "schedule.h"
#include "secret.h"
#include "tidy.h"
#include "tok.h"

/* One run of the pipeline: what each stage finds, for the next. */
struct run {
	const struct conf *c;
	const struct enroll_opts *o;
	const char *cmd; /* "enroll" or "renew", for messages */
	struct tok *t;
	struct tok_key **keys; /* the profile's keys (with private handles after login) */
	size_t n, cur;
	X509 *curcert;         /* renewal: the current certificate, of keys[cur] */
	struct tok_key *old;   /* renewal: keys[cur] (borrowed) */
	struct pending pend;   /* loaded: the profile's pending request, of either kind */
	int loaded, have_pend; /* have_pend: this run polls pend */
	char *pin, *challenge;
	struct ca_info *ci;
	struct tok_key *key; /* the key to certify; == old: borrowed */
	int generated;       /* key was made by this run: taken back if the run fails */
	int pend_key;        /* key is a pending request's: taken back if the CA refuses it */
	X509 *cert;          /* the new certificate */
	struct timing tm;
};

#define DONE 1 /* prepare: nothing to exchange (valid certificate, not due) */

/* At -v: what this process used itself (not its token and network processes, which
 * log their own), for make bench. */
static void
log_self_usage(void)
{
	char u[128];

	if (log_usage_text(u, sizeof(u))[0] != '\0')
		log_debug("this process: %s", u);
}

/*
 * The error a failed run reports: when the token process died, or the token
 * no longer answers, whatever failed (often a signature or decryption inside
 * OpenSSL that hid the cause) is reported as that, P11E_ERR_TOKEN: the token
 * process's end is made the last error line again (for the attempt record),
 * the token gone is logged; else r.
 */
static int
blame_token(struct tok *t, int r)
{
	/* the token process died: that is the cause, whatever failed after it */
	if (r != 0 && tok_failure(t) != NULL) {
		log_set_last_error(tok_failure(t));
		return P11E_ERR_TOKEN;
	}
	if (r == 0 || r == P11E_ERR_TOKEN || r == P11E_ERR_PIN || r == P11E_ERR_PENDING ||
	    t == NULL || tok_present(t))
		return r;
	log_error("token '%s' was removed or stopped responding", tok_get_info(t)->label);
	return P11E_ERR_TOKEN;
}

/*
 * The current key signs a renewal only when it is RSA: the CA encrypts its
 * reply to the signer's certificate with RSA key transport (servers offer no
 * key agreement). Else the renewal is a PKCSReq as at enrollment (a transient
 * RSA key carries it) that the configured challenge authenticates.
 */
static int
signs_with_old(const struct run *u)
{
	return u->old != NULL && u->old->type == TOK_KEY_RSA;
}

/* A new request (no pending one to poll) that needs the challenge. */
static int
needs_challenge(const struct run *u)
{
	return !u->have_pend && !signs_with_old(u);
}

static int
same_key(const struct tok_key *a, const struct tok_key *b)
{
	return a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0;
}

static int
read_static_challenge(const struct conf *c, char **out)
{
	*out = NULL;
	if (c->challenge != NULL)
		return secret_dup(c->challenge, out);
	if (c->challenge_file != NULL)
		return secret_read_file(c->challenge_file, "challenge file", out);
	return 0;
}
/*
 * Reuses a key of the profile (keyrec.h) left without certificate by an
 * earlier attempt (matching [key] type), or generates one (keyrec_generate,
 * *generated = 1). A key to reuse must be certifiable (keyrec_certifiable):
 * else P11E_ERR_TOKEN, logged. keys: the profile's keys with their private
 * keys (tok_find_private, after login); *out is a copy.
 */
static int
get_key(struct tok *t, const struct conf *c, struct tok_key **keys, size_t n, struct tok_key **out,
        int *generated)
{
	int r;
	struct keyrec *rec = NULL;
	size_t i;
	X509 *x = NULL;

	if ((r = keyrec_load(c, &rec)) != 0)
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
			r = (*out = tok_key_dup(keys[i])) != NULL ? 0 : P11E_ERR_ALLOC;
			goto out;
		}
		if (r != 0)
			goto out;
	}
	if ((r = keyrec_generate(c, t, out)) == 0)
		*generated = 1;
out:
	keyrec_free(rec);
	return r;
}

/*
 * The key (of the profile's label) a pending request was made with, of keys
 * (the profile's, with their private keys: tok_find_private, after login);
 * *out is a copy. P11E_ERR_NOTFOUND (not logged) when it is gone from the
 * token; P11E_ERR_TOKEN (logged) when it is not certifiable
 * (keyrec_certifiable) or not the key of the request (another public key
 * under its CKA_ID).
 */
static int
pending_key(struct tok *t, struct tok_key **keys, size_t n, const struct pending *p,
            struct tok_key **out)
{
	int r = P11E_ERR_NOTFOUND;
	size_t i, j;
	unsigned char pub[20];
	char hex[2 * sizeof(p->key_id) + 1];

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
		r = (*out = tok_key_dup(keys[i])) != NULL ? 0 : P11E_ERR_ALLOC;
		break;
	}
	return r;
}

/*
 * A one-time challenge from the NDES page (c->challenge_url), fetched right
 * before it is used; warns when the page names a CA thumbprint that is none
 * of ci's certificates. *challenge: secret_free. Errors as challenge_fetch.
 */
static int
fetch_challenge(const struct conf *c, const struct ca_info *ci, char **challenge)
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

/*
 * Renewal: leftovers of an interrupted one go (tidy.h), but for the pending
 * request's key and one key without certificate that get_key reuses.
 */
static void
tidy_before(struct run *u)
{
	const struct conf *c = u->c;
	struct tidy_keep keep = {u->loaded ? &u->pend : NULL,
	                         c->renew_new_key && (!u->loaded || !u->pend.renewal)};
	size_t n = 0;

	if (tidy_run(c, u->t, u->old, u->curcert, &keep, 0, &n) != 0)
		log_warn("leftovers of an earlier renewal stay on token '%s'; renewing anyway",
		         tok_get_info(u->t)->label);
}

/* Renewal: when it is due; 0 to go on, DONE (said on stdout) when not. */
static int
check_due(struct run *u)
{
	char why[96], when[40];
	time_t due;
	int r;

	if ((r = current_due(u->c, u->t, u->curcert, &due, why, sizeof(why))) != 0)
		return r;
	schedule_fmt_time(due, when, sizeof(when));
	if (time(NULL) < due && !u->o->force && !u->have_pend) {
		printf("renewal:     not due; due %s (%s)\n", when, why);
		log_info("not due for renewal before %s (%s); `renew --force` renews now", when,
		         why);
		return DONE;
	}
	if (u->have_pend)
		log_info("polling pending renewal %s", u->pend.txid);
	else
		log_info("renewing %s (due %s: %s)", u->o->force ? "on request" : "now", when, why);
	return 0;
}

/*
 * The current certificate (renewal: any, else valid now) of the profile's
 * keys (u->keys, the list keyrec_check_token checked).
 */
static int
find_current(struct run *u)
{
	int r;

	r = current_find(u->t, u->keys, u->n, !u->o->renewal, &u->cur, &u->curcert);
	if (r == P11E_ERR_NOTFOUND && u->o->renewal) {
		log_error("token '%s' holds no certificate for key '%s' to renew; run "
		          "`p11enroll enroll` first",
		          tok_get_info(u->t)->label, u->c->key_label);
		return P11E_ERR_TOKEN;
	}
	if (r == 0 && u->o->renewal)
		u->old = u->keys[u->cur];
	return r;
}

/* Enrollment with a valid certificate in place: said, and the token settled. */
static int
already_enrolled(struct run *u)
{
	struct tok_key *k = u->keys[u->cur];
	int r;

	log_info("token '%s' already holds a valid certificate for key '%s'; nothing to do",
	         tok_get_info(u->t)->label, u->c->key_label);
	current_print(stdout, u->t, k, u->curcert);
	progress_note("state", "skipped");
	current_note(u->t, k, u->curcert);
	/* An earlier run may have stored it and then lost the token; a pending
	 * renewal stays for `renew`. */
	if (!(u->loaded && u->pend.renewal) && (r = pending_clear(u->c)) != 0)
		return r;
	/* What an interrupted renewal left goes (tidy.h). */
	return tidy_settle(u->c, u->t, k, u->curcert,
	                   u->loaded && u->pend.renewal ? &u->pend : NULL,
	                   u->o->allow_final_pin_try);
}

/*
 * Secrets are read before anything is spent (the CA, a login, a key): the
 * PIN, the static challenge when the request needs one, and the NDES
 * password is probed (it is read again where NTLM needs it).
 */
static int
read_secrets(struct run *u)
{
	const struct conf *c = u->c;
	char *probe = NULL;
	int r;

	if ((r = pin_read(c, u->o->renewal ? "to renew" : "to enroll", &u->pin)) != 0)
		return r;
	if (u->o->renewal && !needs_challenge(u))
		return 0;
	if ((r = read_static_challenge(c, &u->challenge)) != 0)
		return r;
	if (c->challenge_url != NULL &&
	    (r = secret_read_file(c->challenge_password_file, "NDES password file", &probe)) == 0)
		secret_free(probe);
	if (r == 0 && u->o->renewal && !u->have_pend && u->challenge == NULL &&
	    c->challenge_url == NULL)
		log_warn(
		    "%s: the current key is not RSA, so the renewal is a new request that only "
		    "a challenge authenticates, and none is configured ([scep] challenge, "
		    "challenge_file or challenge_url): the CA's policy decides",
		    c->path);
	return r;
}

/* Stage 1: everything up to and including login. 0, DONE or an error. */
static int
prepare(struct run *u)
{
	const struct conf *c = u->c;
	double t0 = exchange_now_ms();
	int r, trust = 0;

	/* First: before anything this run leaves in state_dir (keyrec.h). */
	if ((r = keyrec_init(c)) != 0 ||
	    (r = pin_configured(c, u->o->renewal ? "to renew" : "to enroll")) != 0)
		return r;
	if ((r = current_open_token(c, &u->t)) != 0 ||
	    (r = keyrec_check_token(c, u->t, u->o->allow_final_pin_try, &u->keys, &u->n)) != 0)
		return r;
	r = find_current(u);
	if (r != 0 && !(r == P11E_ERR_NOTFOUND && !u->o->renewal))
		return r;
	/* A damaged pending file is an error, but next to a valid certificate
	 * (enroll has nothing to poll: it is cleared). */
	r = pending_load(c, &u->pend);
	if (r != 0 && r != P11E_ERR_NOTFOUND && (u->o->renewal || u->curcert == NULL))
		return r;
	u->loaded = r == 0;
	if (u->curcert != NULL && !u->o->renewal)
		return (r = already_enrolled(u)) != 0 ? r : DONE;
	u->have_pend = u->loaded && (!u->o->renewal || u->pend.renewal);
	if (u->o->renewal && (r = check_due(u)) != 0) {
		if (r == DONE &&
		    (r = tidy_settle(c, u->t, u->old, u->curcert, u->loaded ? &u->pend : NULL,
		                     u->o->allow_final_pin_try)) == 0)
			r = DONE;
		return r;
	}
	if (!u->o->renewal && u->have_pend)
		log_info("polling pending transaction %s", u->pend.txid);
	/* Hooks an earlier run owes for the current pair run whatever the CA does now. */
	if (u->o->renewal && (r = hook_settle(c, u->t, u->old, u->curcert)) != 0)
		return r;
	if ((r = read_secrets(u)) != 0)
		return r;
	u->tm.token = exchange_now_ms() - t0;
	t0 = exchange_now_ms();
	if ((r = ca_fetch(c, &u->ci)) != 0)
		return r;
	u->tm.network = exchange_now_ms() - t0;
	if ((r = ca_check_trust(c, u->ci, 1, &trust)) != 0 || (r = ca_write_trust(c, u->ci)) != 0)
		return r;
	t0 = exchange_now_ms();
	r = tok_login(u->t, u->pin, u->o->allow_final_pin_try);
	secret_free(u->pin);
	u->pin = NULL;
	if (r != 0)
		return r;
	/* The keys were listed before login, without their private keys. */
	if ((r = tok_find_private(u->t, u->keys, u->n)) != 0)
		return r;
	u->tm.token += exchange_now_ms() - t0;
	if (!u->o->renewal)
		return 0;
	if (u->old->priv_handle == 0) {
		log_error("the private key of the current certificate is missing from token '%s'; "
		          "run `p11enroll enroll` for a new one",
		          tok_get_info(u->t)->label);
		return P11E_ERR_TOKEN;
	}
	tidy_before(u);
	return 0;
}

/*
 * The key to certify: the pending request's (when it is gone, the request
 * goes too), else, after the one-time challenge (a refused challenge page
 * then costs no key), a new one (get_key) or in a renewal without new_key
 * the current one.
 */
static int
choose_key(struct run *u)
{
	const struct conf *c = u->c;
	double t1;
	int r;

	if (u->have_pend) {
		if ((r = pending_key(u->t, u->keys, u->n, &u->pend, &u->key)) == 0) {
			u->pend_key = u->old == NULL || !same_key(u->key, u->old);
			return 0;
		}
		if (r != P11E_ERR_NOTFOUND)
			return r;
		log_warn("the key of pending %s %s is gone from the token; starting a new request",
		         u->o->renewal ? "renewal" : "transaction", u->pend.txid);
		if ((r = pending_clear(c)) != 0)
			return r;
		u->have_pend = 0;
	}
	if (needs_challenge(u) && u->challenge == NULL &&
	    (r = c->challenge_url != NULL ? fetch_challenge(c, u->ci, &u->challenge)
	                                  : read_static_challenge(c, &u->challenge)) != 0)
		return r;
	t1 = exchange_now_ms();
	progress_note("state", "key");
	if (u->o->renewal && !c->renew_new_key) {
		if ((r = keyrec_certifiable(u->t, u->old)) != 0)
			return r;
		u->key = u->old;
	} else if ((r = get_key(u->t, c, u->keys, u->n, &u->key, &u->generated)) != 0) {
		return r;
	}
	u->tm.keygen = exchange_now_ms() - t1;
	return 0;
}

/* The exchange's fields for this run's key, signer and challenge. */
static void
exchange_init(struct run *u, struct exchange *x)
{
	int by_old = signs_with_old(u);

	memset(x, 0, sizeof(*x));
	x->c = u->c;
	x->ci = u->ci;
	x->t = u->t;
	x->key = u->key;
	x->poll_txid = u->have_pend ? u->pend.txid : NULL;
	x->challenge = by_old ? NULL : u->challenge;
	if (!by_old)
		return;
	x->signer_cert = u->curcert;
	x->signer_key = u->old;
	x->msg_type = u->ci->caps & SCEP_CAP_RENEWAL ? SCEP_MSG_RENEWALREQ : SCEP_MSG_PKCSREQ;
	/* RFC 8894 2.4: no challenge in a renewal; a CA that insists on one (the
	 * micromdm scepserver checks it on every request) gets one more request
	 * with the configured static challenge. */
	x->quiet_reject =
	    !u->have_pend && (u->c->challenge != NULL || u->c->challenge_file != NULL);
}

static void
say_request(const struct run *u, const struct exchange *x)
{
	if (!u->o->renewal)
		return;
	if (signs_with_old(u))
		log_info("sending a %s signed with the current certificate",
		         u->have_pend                         ? "CertPoll"
		         : x->msg_type == SCEP_MSG_RENEWALREQ ? "RenewalReq"
		                                              : "PKCSReq (no Renewal in caps)");
	else
		log_info("the current key is %s, which cannot receive SCEP's RSA-encrypted reply: "
		         "sending a %s signed with a transient RSA key%s",
		         u->old->type == TOK_KEY_EC ? "EC" : "not RSA",
		         u->have_pend ? "CertPoll" : "new PKCSReq",
		         u->have_pend           ? ""
		         : u->challenge != NULL ? ", with the challenge"
		                                : ", without challenge");
}

/* One request (and the renewal's retry with the static challenge). */
static int
request(struct run *u, struct exchange *x)
{
	int r;

	exchange_init(u, x);
	say_request(u, x);
	r = exchange_run(x, &u->cert, &u->tm);
	if (r == P11E_ERR_REJECTED && x->quiet_reject) {
		log_info("the CA refused the renewal without a challenge (failInfo %s); asking "
		         "again with the configured challenge",
		         x->fail_info < 0 ? "absent" : scep_fail_info_str(x->fail_info));
		secret_free(u->challenge);
		if ((r = read_static_challenge(u->c, &u->challenge)) != 0)
			return r;
		x->challenge = u->challenge;
		x->quiet_reject = 0;
		r = exchange_run(x, &u->cert, &u->tm);
	}
	return r;
}

static void
say_pending(const struct run *u)
{
	const struct pending *p = &u->pend;
	char when[64];
	struct tm tmv;

	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", localtime_r(&p->next_poll, &tmv));
	if (u->o->renewal)
		log_error("the CA holds the renewal request (PENDING, transactionID %s); the new "
		          "key stays on token '%s', the current certificate stays in use, and the "
		          "next `p11enroll renew` polls it",
		          p->txid, tok_get_info(u->t)->label);
	else
		log_error("the CA holds the request (PENDING, transactionID %s, %u poll%s so far); "
		          "run `p11enroll enroll` again after %s to poll it, or `enroll --wait`",
		          p->txid, p->polls, p->polls == 1 ? "" : "s", when);
}

/* Stage 2: the key, the challenge, the requests; PENDING kept in state_dir. */
static int
exchange(struct run *u)
{
	time_t deadline = time(NULL) + (u->o->wait ? u->o->max_wait : 0);
	struct exchange x;
	long delay;
	int r, sent = 0;

	if ((r = choose_key(u)) != 0)
		return r;
	for (;;) {
		r = request(u, &x);
		if (r == P11E_ERR_REJECTED && u->have_pend)
			pending_clear(u->c);
		if (r != P11E_ERR_PENDING)
			return r;
		if (!u->have_pend) {
			memset(&u->pend, 0, sizeof(u->pend));
			snprintf(u->pend.txid, sizeof(u->pend.txid), "%s", x.txid);
			memcpy(u->pend.key_id, u->key->id, u->key->id_len);
			u->pend.key_id_len = u->key->id_len;
			u->pend.has_key_pub = tok_key_id_for(u->key->pub, u->pend.key_pub) == 0;
			u->pend.created = time(NULL);
			u->pend.renewal = u->o->renewal;
			u->have_pend = 1;
		} else {
			u->pend.polls++;
		}
		delay = poll_delay(u->pend.polls, u->o->wait);
		u->pend.next_poll = time(NULL) + delay;
		if ((r = pending_save(u->c, &u->pend)) != 0)
			return r;
		progress_note("state", "pending");
		/* a request is at most two exchanges, each a use of the key (tok.h) */
		if (u->o->wait && ++sent >= TOK_KEY_GRANTS / 2) {
			log_error(
			    "--wait: %d requests in this run, the most one token session serves",
			    sent);
			say_pending(u);
			return P11E_ERR_PENDING;
		}
		if (!u->o->wait || u->pend.next_poll > deadline) {
			if (u->o->wait)
				log_error("--max-wait reached");
			say_pending(u);
			return P11E_ERR_PENDING;
		}
		log_info("PENDING (transactionID %s): polling again in %ld s", u->pend.txid, delay);
		sleep_s(delay);
	}
}

/*
 * Stage 3: the hooks owed for the certificate (so that a crash after the
 * store still runs them), the certificate on the token next to its key, read
 * back (an object with the key's CKA_ID and exactly its DER), then the
 * files, the hooks (hook.h), then (renewal) the old pair and what earlier
 * interrupted runs left (tidy.h), which stay while a hook is owed.
 */
static int
commit(struct run *u)
{
	const struct conf *c = u->c;
	struct tidy_keep keep = {NULL, 0};
	enum hook_event ev = u->o->renewal ? HOOK_RENEWED : HOOK_ENROLLED;
	double t0 = exchange_now_ms();
	size_t n = 0;
	int r;

	if ((r = hook_owe(c, ev, u->cert, u->curcert)) != 0 ||
	    (r = tok_store_cert(u->t, u->key, u->cert)) != 0)
		return r;
	if ((r = tok_has_cert(u->t, u->key, u->cert)) != 0) {
		log_error("the certificate stored on token '%s' does not read back",
		          tok_get_info(u->t)->label);
		return P11E_ERR_TOKEN;
	}
	u->generated = u->pend_key = 0; /* the key has its certificate: it stays */
	if ((r = pending_clear(c)) != 0 || (r = certfile_write(c, u->cert)) != 0 ||
	    (r = hook_pay(c, u->t, u->key, u->cert)) != 0)
		return r;
	if (u->o->renewal) {
		if (c->renew_keep_old)
			log_info("keeping the old certificate%s (keep_old = yes)",
			         same_key(u->old, u->key) ? "" : " and key");
		if (tidy_run(c, u->t, u->key, u->cert, &keep, 0, &n) != 0)
			log_warn(
			    "the old certificate or key stays on token '%s'; the new one is used "
			    "(latest notAfter) and the next `p11enroll renew` removes the rest",
			    tok_get_info(u->t)->label);
	}
	u->tm.store += exchange_now_ms() - t0;
	log_info("%s: %scertificate stored on token '%s' next to its key",
	         u->o->renewal ? "renewed" : "enrolled", u->o->renewal ? "new " : "",
	         tok_get_info(u->t)->label);
	progress_note("state", "stored");
	current_note(u->t, u->key, u->cert);
	log_debug("timing (ms): token open+login %.1f, key %.1f, CSR+sign %.1f, "
	          "network+server %.1f, decrypt+check+store %.1f",
	          u->tm.token, u->tm.keygen, u->tm.csr, u->tm.network, u->tm.store);
	log_self_usage();
	current_print(stdout, u->t, u->key, u->cert);
	return 0;
}

/* A failed run takes back the key it made, and a pending request's key the CA refused. */
static void
take_back(struct run *u, int r)
{
	if (u->key == NULL || u->key == u->old || r == 0 || r == P11E_ERR_PENDING ||
	    !(u->generated || (u->pend_key && r == P11E_ERR_REJECTED)))
		return;
	if (tok_destroy_key(u->t, u->key) == 0) {
		keyrec_forget(u->c, u->key);
		if (u->o->renewal)
			log_info(
			    "removed the new key; the current key and certificate are unchanged");
		else
			log_info("removed the key this attempt %s; the token is as it was",
			         u->generated ? "generated" : "polled for");
	} else {
		log_info("the %s key stays on token '%s'; the next `p11enroll %s` uses it",
		         u->o->renewal ? "new" : "generated", tok_get_info(u->t)->label, u->cmd);
	}
}

int
enroll_run(const struct conf *c, const struct enroll_opts *o)
{
	struct run u;
	int r;

	memset(&u, 0, sizeof(u));
	u.c = c;
	u.o = o;
	u.cmd = o->renewal ? "renew" : "enroll";
	netproc_prestart(); /* its start overlaps the token's */
	if ((r = prepare(&u)) == 0 && (r = exchange(&u)) == 0)
		r = commit(&u);
	if (r == DONE)
		r = 0;
	take_back(&u, r);
	r = blame_token(u.t, r);
	secret_free(u.pin);
	secret_free(u.challenge);
	X509_free(u.cert);
	X509_free(u.curcert);
	if (u.key != u.old)
		tok_key_free(u.key);
	tok_keys_free(u.keys, u.n);
	ca_info_free(u.ci);
	tok_close(u.t);
	return r;
}
