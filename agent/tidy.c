/*
 * tidy.c: leftovers of an interrupted renewal on the token (tidy.h).
 */
#include <string.h>

#include "certfile.h"
#include "err.h"
#include "hook.h"
#include "keyrec.h"
#include "log.h"
#include "pin.h"
#include "tidy.h"

static int
same_id(const struct tok_key *k, const unsigned char *id, size_t len)
{
	return k->id_len == len && memcmp(k->id, id, len) == 0;
}

/*
 * Removes the private key, then k's certificates, then the public key: a
 * crash in between leaves a public key that tidy_run recognises (no private
 * key), never a certificate without any key object beside it.
 */
static int
remove_pair(struct tok *t, const struct tok_key *k)
{
	struct tok_key priv = *k, pub = *k;
	size_t n = 0;

	priv.pub_handle = 0;
	pub.priv_handle = 0;
	if ((priv.priv_handle != 0 && tok_destroy_key(t, &priv) != 0) ||
	    tok_other_certs(t, k, NULL, 1, &n) != 0 || tok_destroy_key(t, &pub) != 0)
		return P11E_ERR_TOKEN;
	return 0;
}

/*
 * What to do with key k (not the current one); 1: it goes. keep_old: pairs
 * stay. dry: listed before login, when no private key is visible, so none
 * is judged gone.
 */
static int
goes(const struct conf *c, struct tok *t, const struct tok_key *k, const struct tidy_keep *keep,
     int keep_old, int dry, int *kept, const char **why)
{
	size_t nc = 0;

	if (keep->pend != NULL && same_id(k, keep->pend->key_id, keep->pend->key_id_len))
		return 0;
	if (tok_other_certs(t, k, NULL, 0, &nc) != 0)
		return 0;
	if (nc > 0) {
		*why = "a superseded key and its certificate";
		return !keep_old;
	}
	if (k->priv_handle == 0 && !dry) {
		*why = "a public key whose private key is gone (an interrupted removal)";
		return 1;
	}
	if (keep->reuse && !*kept && keyrec_fits_profile(c, k)) {
		*kept = 1;
		return 0;
	}
	*why = "a key left without certificate by an interrupted run";
	return 1;
}

int
tidy_run(const struct conf *c, struct tok *t, const struct tok_key *cur, X509 *curcert,
         const struct tidy_keep *keep, int dry, size_t *n)
{
	struct tok_key **keys = NULL;
	struct keyrec *rec = NULL;
	size_t nk = 0, i, count = 0, extra = 0;
	const char *why = NULL;
	int r, kept = 0, failed = 0, held = 0, keep_old = c->renew_keep_old;

	/* While a hook is owed, a consumer may still use the old pair (hook.h). */
	if ((r = hook_owed(c, curcert, &held)) != 0 || (r = keyrec_load(c, &rec)) != 0 ||
	    (r = tok_find_keys(t, c->key_label, &keys, &nk)) != 0)
		goto out;
	keep_old |= held;
	for (i = 0; i < nk; i++) {
		if (same_id(keys[i], cur->id, cur->id_len)) {
			if (keep_old)
				continue;
			if (tok_other_certs(t, keys[i], curcert, !dry, &extra) != 0)
				failed = 1;
			else if (extra > 0 && !dry)
				log_info("removed %zu superseded certificate%s of the current key",
				         extra, extra == 1 ? "" : "s");
			count += extra;
			continue;
		}
		/* Only what this profile generated goes (keyrec.h). */
		if (!keyrec_owns(rec, keys[i]))
			continue;
		if (!goes(c, t, keys[i], keep, keep_old, dry, &kept, &why))
			continue;
		count++;
		if (dry)
			continue;
		log_info("removing %s from token '%s'", why, tok_get_info(t)->label);
		if (remove_pair(t, keys[i]) != 0)
			failed = 1;
		else
			keyrec_forget(c, keys[i]);
	}
	*n = count;
	r = failed ? P11E_ERR_TOKEN : 0;
out:
	tok_keys_free(keys, nk);
	keyrec_free(rec);
	return r;
}

int
tidy_settle(const struct conf *c, struct tok *t, const struct tok_key *cur, X509 *curcert,
            const struct pending *pend, int allow_final_pin_try)
{
	struct tidy_keep keep = {pend, 0};
	size_t left = 0;
	int r;

	/* Hooks still owed run first: the old pair goes only after them. */
	if ((r = hook_settle(c, t, cur, curcert)) != 0 ||
	    (r = tidy_run(c, t, cur, curcert, &keep, 1, &left)) != 0)
		return r;
	if (left > 0) {
		log_info("token '%s' holds %zu object%s left by an earlier renewal (interrupted, "
		         "or waiting for its hooks); logging in to remove %s",
		         tok_get_info(t)->label, left, left == 1 ? "" : "s",
		         left == 1 ? "it" : "them");
		if ((r = pin_login(c, t, allow_final_pin_try)) != 0 ||
		    (r = tidy_run(c, t, cur, curcert, &keep, 0, &left)) != 0)
			return r;
	}
	return certfile_sync(c, curcert);
}

int
tidy_needed(const struct conf *c, struct tok *t, const struct tok_key *cur, X509 *curcert,
            int *needed)
{
	struct tidy_keep keep = {NULL, 0};
	size_t n = 0;
	int r, stale = 0, unsettled = 0;

	if ((r = keyrec_unsettled(c, t, &unsettled)) != 0 ||
	    (r = tidy_run(c, t, cur, curcert, &keep, 1, &n)) != 0 ||
	    (r = certfile_stale(c, curcert, &stale)) != 0)
		return r;
	*needed = unsettled || n > 0 || stale;
	return 0;
}
