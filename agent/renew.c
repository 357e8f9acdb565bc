/*
 * renew.c: renewal of the profile's certificate with the current one
 * (RFC 8894 2.3, 2.5): schedule check -> CA, trust -> login -> new key ->
 * exchange signed by the old certificate (an EC one: a new PKCSReq with the
 * challenge) -> store, read back -> remove old.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "ca.h"
#include "enroll.h"
#include "err.h"
#include "exchange.h"
#include "keyrec.h"
#include "log.h"
#include "pending.h"
#include "renew.h"
#include "schedule.h"
#include "scep.h"
#include "secret.h"
#include "tidy.h"
#include "tok.h"

static int
asn1_to_time(const ASN1_TIME *a, time_t *out)
{
	struct tm tmv;

	memset(&tmv, 0, sizeof(tmv));
	if (ASN1_TIME_to_tm(a, &tmv) != 1)
		return P11E_ERR_MALFORMED;
	*out = timegm(&tmv);
	return 0;
}

/* The jitter seed: SHA-256 of the certificate serial and the token serial. */
static uint64_t
due_seed(const struct tok *t, X509 *cert)
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(cert);
	const char *ts = tok_get_info(t)->serial;
	unsigned char d[32];
	uint64_t seed = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int i;

	if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, ASN1_STRING_get0_data(sn), (size_t)ASN1_STRING_length(sn)) == 1 &&
	    EVP_DigestUpdate(ctx, ts, strlen(ts)) == 1 && EVP_DigestFinal_ex(ctx, d, NULL) == 1)
		for (i = 0; i < 8; i++)
			seed = seed << 8 | d[i];
	EVP_MD_CTX_free(ctx);
	return seed;
}

static int
read_challenge(const struct conf *c, char **out)
{
	if (c->challenge != NULL)
		return secret_dup(c->challenge, out);
	return secret_read_file(c->challenge_file, "challenge file", out);
}

/*
 * The current key signs the renewal only when it is RSA: the CA encrypts its
 * reply to the signer's certificate with RSA key transport (servers offer no
 * key agreement). Else the renewal is a PKCSReq as at enrollment (a transient
 * RSA key carries it) that the configured challenge authenticates.
 */
static int
signs_with_old(const struct tok_key *old)
{
	return old->type == TOK_KEY_RSA;
}

/*
 * The challenge of a renewal that the current key cannot sign: the static
 * one, read before anything is spent (ci NULL: warns when none is
 * configured), or a one-time one from NDES (ci given: right before use). No
 * challenge: *out stays NULL (the CA's policy decides).
 */
static int
unsigned_challenge(const struct conf *c, const struct ca_info *ci, char **out)
{
	if (c->challenge_url != NULL)
		return ci == NULL ? 0 : enroll_fetch_challenge(c, ci, out);
	if (c->challenge != NULL || c->challenge_file != NULL)
		return read_challenge(c, out);
	if (ci != NULL)
		return 0;
	log_warn("%s: the current key is not RSA, so the renewal is a new request that only a "
	         "challenge authenticates, and none is configured ([scep] challenge, "
	         "challenge_file or challenge_url): the CA's policy decides",
	         c->path);
	return 0;
}

/* A new request (no pending one to poll) that old cannot sign, still without challenge. */
static int
needs_challenge(const struct tok_key *old, int have_pend, const char *uc)
{
	return !have_pend && !signs_with_old(old) && uc == NULL;
}

int
renew_due(const struct conf *c, const struct tok *t, X509 *cert, time_t *due, char *why,
          size_t why_len)
{
	struct schedule_policy p;
	time_t nb, na;

	if (asn1_to_time(X509_get0_notBefore(cert), &nb) != 0 ||
	    asn1_to_time(X509_get0_notAfter(cert), &na) != 0) {
		log_error("cannot read the validity dates of the certificate on token '%s'",
		          tok_get_info(t)->label);
		return P11E_ERR_MALFORMED;
	}
	schedule_policy_from_conf(c, &p);
	*due = schedule_due(&p, nb, na, due_seed(t, cert), why, why_len);
	return 0;
}

static int
same_key(const struct tok_key *a, const struct tok_key *b)
{
	return a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0;
}

/*
 * After the new certificate (cert, of nk) is on the token: the old one (and
 * key) go, with what earlier interrupted runs left (tidy.h).
 */
static void
remove_old(const struct conf *c, struct tok *t, const struct tok_key *old, X509 *cert,
           const struct tok_key *nk)
{
	struct tidy_keep keep = {NULL, 0};
	size_t n = 0;

	if (c->renew_keep_old)
		log_info("keeping the old certificate%s (keep_old = yes)",
		         same_key(old, nk) ? "" : " and key");
	if (tidy_run(c, t, nk, cert, &keep, 0, &n) != 0)
		log_warn("the old certificate or key stays on token '%s'; the new one is used "
		         "(latest notAfter) and the next `p11enroll renew` removes the rest",
		         tok_get_info(t)->label);
}

/*
 * Before a renewal: leftovers of an interrupted one go, but for the key of a
 * pending request and one key without certificate that pick_key reuses.
 */
static void
tidy_before(const struct conf *c, struct tok *t, const struct tok_key *old, X509 *oldcert,
            const struct pending *pend)
{
	struct tidy_keep keep = {pend, c->renew_new_key && (pend == NULL || !pend->renewal)};
	size_t n = 0;

	if (tidy_run(c, t, old, oldcert, &keep, 0, &n) != 0)
		log_warn("leftovers of an earlier renewal stay on token '%s'; renewing anyway",
		         tok_get_info(t)->label);
}

/*
 * The key to certify: a pending renewal's, else a new one (new_key; a key
 * of the profile left without certificate is reused, *generated says when
 * this run made it), else the current one (*nk == old, borrowed).
 */
static int
pick_key(const struct conf *c, struct tok *t, struct tok_key *old, struct pending *pend,
         int *have_pend, struct tok_key **nk, int *generated)
{
	int r;

	if (*have_pend) {
		if ((r = enroll_pending_key(t, c, pend, nk)) != P11E_ERR_NOTFOUND)
			return r;
		log_warn("the key of pending renewal %s is gone from the token; starting a new "
		         "request",
		         pend->txid);
		if ((r = pending_clear(c)) != 0)
			return r;
		*have_pend = 0;
	}
	if (!c->renew_new_key) {
		if ((r = keyrec_certifiable(t, old)) != 0)
			return r;
		*nk = old;
		return 0;
	}
	return enroll_get_key(t, c, nk, generated);
}

/*
 * The exchange signed by the current certificate, or for a current key that
 * cannot sign it (signs_with_old) a PKCSReq with challenge uc (may be NULL);
 * PENDING kept in state_dir.
 */
static int
request(const struct conf *c, const struct ca_info *ci, struct tok *t, struct tok_key *old,
        X509 *oldcert, struct tok_key *nk, struct pending *pend, int have_pend, const char *uc,
        X509 **cert)
{
	struct timing tm = {0, 0, 0, 0, 0};
	struct exchange x;
	char *challenge = NULL;
	int r, by_old = signs_with_old(old);

	memset(&x, 0, sizeof(x));
	x.c = c;
	x.ci = ci;
	x.t = t;
	x.key = nk;
	x.signer_cert = by_old ? oldcert : NULL;
	x.signer_key = by_old ? old : NULL;
	x.challenge = by_old ? NULL : uc;
	x.poll_txid = have_pend ? pend->txid : NULL;
	x.msg_type =
	    by_old && (ci->caps & SCEP_CAP_RENEWAL) ? SCEP_MSG_RENEWALREQ : SCEP_MSG_PKCSREQ;
	if (by_old)
		log_info("sending a %s signed with the current certificate",
		         have_pend                           ? "CertPoll"
		         : x.msg_type == SCEP_MSG_RENEWALREQ ? "RenewalReq"
		                                             : "PKCSReq (no Renewal in caps)");
	else
		log_info("the current key is %s, which cannot receive SCEP's RSA-encrypted reply: "
		         "sending a %s signed with a transient RSA key%s",
		         old->type == TOK_KEY_EC ? "EC" : "not RSA",
		         have_pend ? "CertPoll" : "new PKCSReq",
		         have_pend    ? ""
		         : uc != NULL ? ", with the challenge"
		                      : ", without challenge");
	/* RFC 8894 2.4: no challenge in a renewal; a CA that insists on one (the
	 * micromdm scepserver checks it on every request) gets one more request
	 * with the configured static challenge. */
	x.quiet_reject =
	    by_old && !have_pend && (c->challenge != NULL || c->challenge_file != NULL);
	r = exchange_run(&x, cert, &tm);
	if (r == P11E_ERR_REJECTED && x.quiet_reject) {
		log_info("the CA refused the renewal without a challenge (failInfo %s); asking "
		         "again with the configured challenge",
		         x.fail_info < 0 ? "absent" : scep_fail_info_str(x.fail_info));
		if ((r = read_challenge(c, &challenge)) != 0)
			goto out;
		x.challenge = challenge;
		x.quiet_reject = 0;
		r = exchange_run(&x, cert, &tm);
	}
	if (r == P11E_ERR_REJECTED && have_pend)
		pending_clear(c);
	if (r != P11E_ERR_PENDING)
		goto out;
	if (!have_pend) {
		memset(pend, 0, sizeof(*pend));
		snprintf(pend->txid, sizeof(pend->txid), "%s", x.txid);
		memcpy(pend->key_id, nk->id, nk->id_len);
		pend->key_id_len = nk->id_len;
		pend->has_key_pub = tok_key_id_for(nk->pub, pend->key_pub) == 0;
		pend->created = time(NULL);
		pend->renewal = 1;
	} else {
		pend->polls++;
	}
	pend->next_poll = time(NULL);
	if ((r = pending_save(c, pend)) != 0)
		goto out;
	log_error("the CA holds the renewal request (PENDING, transactionID %s); the new key "
	          "stays on token '%s', the current certificate stays in use, and the next "
	          "`p11enroll renew` polls it",
	          pend->txid, tok_get_info(t)->label);
	r = P11E_ERR_PENDING;
out:
	secret_free(challenge);
	return r;
}

/* Reads the keys (after login, with private handles) and the current certificate. */
static int
find_current(const struct conf *c, struct tok *t, struct tok_key ***keys, size_t *n, size_t *cur,
             X509 **oldcert)
{
	int r;

	if ((r = tok_find_keys(t, c->key_label, keys, n)) != 0)
		return r;
	if ((r = enroll_find_current(t, *keys, *n, 0, cur, oldcert)) == P11E_ERR_NOTFOUND) {
		log_error("token '%s' holds no certificate for key '%s' to renew; run "
		          "`p11enroll enroll` first",
		          tok_get_info(t)->label, c->key_label);
		r = P11E_ERR_TOKEN;
	}
	return r;
}

int
renew_run(const struct conf *c, const struct renew_opts *o)
{
	int r, trust = 0, generated = 0, have_pend = 0, loaded;
	struct tok *t = NULL;
	struct tok_key **keys = NULL, *nk = NULL, *old = NULL;
	size_t n = 0, cur = 0;
	struct ca_info *ci = NULL;
	char *pin = NULL, *uc = NULL, why[96], when[40];
	X509 *oldcert = NULL, *cert = NULL;
	struct pending pend;
	time_t due;

	/* First: before anything this run leaves in state_dir (keyrec.h). */
	if ((r = keyrec_init(c)) != 0)
		return r;
	if (c->pin_file == NULL) {
		log_error("%s: [token] pin_file is required to renew", c->path);
		return P11E_ERR_CONFIG;
	}
	if ((r = enroll_open_token(c, &t)) != 0 ||
	    (r = keyrec_check_token(c, t, o->allow_final_pin_try)) != 0 ||
	    (r = find_current(c, t, &keys, &n, &cur, &oldcert)) != 0)
		goto out;
	if ((r = pending_load(c, &pend)) != 0 && r != P11E_ERR_NOTFOUND)
		goto out;
	loaded = r == 0;
	have_pend = loaded && pend.renewal;
	if ((r = renew_due(c, t, oldcert, &due, why, sizeof(why))) != 0)
		goto out;
	schedule_fmt_time(due, when, sizeof(when));
	if (time(NULL) < due && !o->force && !have_pend) {
		printf("renewal:     not due; due %s (%s)\n", when, why);
		log_info("not due for renewal before %s (%s); `renew --force` renews now", when,
		         why);
		r = tidy_settle(c, t, keys[cur], oldcert, loaded ? &pend : NULL,
		                o->allow_final_pin_try);
		goto out;
	}
	if (have_pend)
		log_info("polling pending renewal %s", pend.txid);
	else
		log_info("renewing %s (due %s: %s)", o->force ? "on request" : "now", when, why);
	if ((r = secret_read_file(c->pin_file, "PIN file", &pin)) != 0)
		goto out;
	if (needs_challenge(keys[cur], have_pend, uc) &&
	    (r = unsigned_challenge(c, NULL, &uc)) != 0)
		goto out;
	if ((r = ca_fetch(c, &ci)) != 0)
		goto out;
	if ((r = ca_check_trust(c, ci, 1, &trust)) != 0 || (r = ca_write_trust(c, ci)) != 0)
		goto out;
	r = tok_login(t, pin, o->allow_final_pin_try);
	secret_free(pin);
	pin = NULL;
	if (r != 0)
		goto out;
	/* The key list was read before login, without private key handles. */
	tok_keys_free(keys, n);
	keys = NULL;
	n = 0;
	X509_free(oldcert);
	oldcert = NULL;
	if ((r = find_current(c, t, &keys, &n, &cur, &oldcert)) != 0)
		goto out;
	old = keys[cur];
	if (old->priv_handle == 0) {
		log_error("the private key of the current certificate is missing from token '%s'; "
		          "run `p11enroll enroll` for a new one",
		          tok_get_info(t)->label);
		r = P11E_ERR_TOKEN;
		goto out;
	}
	tidy_before(c, t, old, oldcert, loaded ? &pend : NULL);
	/* As enroll: the one-time challenge before the key (a refused challenge
	 * page costs no key), or after it when a pending renewal's key is gone. */
	if (needs_challenge(old, have_pend, uc) && (r = unsigned_challenge(c, ci, &uc)) != 0)
		goto out;
	if ((r = pick_key(c, t, old, &pend, &have_pend, &nk, &generated)) != 0)
		goto out;
	/* A pending renewal's own key is taken back when the CA refuses it. */
	if (have_pend && !same_key(nk, old))
		generated = 1;
	if (needs_challenge(old, have_pend, uc) && (r = unsigned_challenge(c, ci, &uc)) != 0)
		goto out;
	if ((r = request(c, ci, t, old, oldcert, nk, &pend, have_pend, uc, &cert)) != 0)
		goto out;
	if ((r = tok_store_cert(t, nk, cert)) != 0)
		goto out;
	if ((r = tok_has_cert(t, nk, cert)) != 0) {
		log_error("the certificate stored on token '%s' does not read back",
		          tok_get_info(t)->label);
		r = P11E_ERR_TOKEN;
		goto out;
	}
	generated = 0; /* the new key has its certificate: it stays */
	if ((r = pending_clear(c)) != 0 || (r = enroll_write_cert_file(c, cert)) != 0)
		goto out;
	remove_old(c, t, old, cert, nk);
	log_info("renewed: new certificate stored on token '%s' next to its key",
	         tok_get_info(t)->label);
	enroll_print_cert(stdout, t, nk, cert);
	r = 0;
out:
	/* Taken back: a key this run generated and could not use, and a pending
	 * renewal's key the CA refused; kept on PENDING and for the next poll. */
	if (generated && nk != NULL &&
	    (r == P11E_ERR_REJECTED || (r != 0 && r != P11E_ERR_PENDING && !have_pend))) {
		if (tok_destroy_key(t, nk) == 0) {
			keyrec_forget(c, nk);
			log_info("removed the new key; the current key and certificate are "
			         "unchanged");
		} else {
			log_info("the new key stays on token '%s'; the next renewal reuses it",
			         tok_get_info(t)->label);
		}
	}
	r = enroll_blame_token(t, r);
	secret_free(pin);
	secret_free(uc);
	X509_free(cert);
	X509_free(oldcert);
	if (nk != old)
		tok_key_free(nk);
	tok_keys_free(keys, n);
	ca_info_free(ci);
	tok_close(t);
	return r;
}
