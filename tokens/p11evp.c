/*
 * p11evp.c: the EVP_PKEY bridge through libp11. libp11 loads the same module
 * path (one library in the process: its C_Initialize gets
 * CKR_CRYPTOKI_ALREADY_INITIALIZED, which it accepts) and opens sessions of
 * its own. PKCS#11 login state belongs to the application, not the session,
 * so libp11's sessions see the private key after tok_login's C_Login:
 * libp11 never logs in (verified with pkcs11-spy: one C_Login in all).
 * PKCS11_CTX_unload calls C_Finalize: when libp11 was used, that is the one
 * C_Finalize of the struct tok.
 */
/* libp11.h uses RSA_METHOD and EC_KEY_METHOD, deprecated in OpenSSL 3. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libp11.h>

#include "err.h"
#include "log.h"
#include "p11int.h"

#define ENUM_TRIES 5 /* PKCS11_enumerate_slots/_keys: 20, 40, 80, 160 ms apart */

struct tok_evp {
	PKCS11_CTX *ctx;
	int loaded; /* PKCS11_CTX_load succeeded */
	PKCS11_SLOT *slots;
	unsigned int nslots;
};

static int
evp_load(struct tok *t)
{
	int r = P11E_ERR_INTERNAL, tries = 0;
	struct tok_evp *e = NULL;
	struct timespec pause = {0, 20 * 1000000L};

	if ((e = calloc(1, sizeof(*e))) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	t->evp = e;
	if ((e->ctx = PKCS11_CTX_new()) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	if (PKCS11_CTX_load(e->ctx, t->module_path) != 0) {
		log_openssl(LOG_LVL_ERROR, "libp11 cannot load PKCS#11 module %s", t->module_path);
		r = P11E_ERR_TOKEN;
		goto out;
	}
	e->loaded = 1;
	/* libp11 reads every slot's token; SoftHSM fails C_GetTokenInfo of a token
	 * another process is writing at that moment (`provision`: CKR_GENERAL_ERROR
	 * seen about once in 400 enrollments): a few more tries, a little later. */
	while (PKCS11_enumerate_slots(e->ctx, &e->slots, &e->nslots) != 0) {
		e->slots = NULL;
		e->nslots = 0;
		if (++tries < ENUM_TRIES) {
			log_openssl(LOG_LVL_DEBUG, "libp11 cannot list the slots (try %d of %d)",
			            tries, ENUM_TRIES);
			nanosleep(&pause, NULL);
			pause.tv_nsec *= 2;
			continue;
		}
		log_openssl(LOG_LVL_ERROR, "libp11 cannot list the slots of token '%s'",
		            t->info.label);
		r = P11E_ERR_TOKEN;
		goto out;
	}
	r = 0;
out:
	return r;
}

static PKCS11_SLOT *
evp_slot(struct tok *t)
{
	unsigned int i;

	for (i = 0; i < t->evp->nslots; i++)
		if (PKCS11_get_slotid_from_slot(&t->evp->slots[i]) == t->info.slot_id &&
		    t->evp->slots[i].token != NULL)
			return &t->evp->slots[i];
	return NULL;
}

/*
 * PKCS11_enumerate_keys searches the token again on every call (libp11
 * 0.4.12), so a key generated after an earlier tok_key_evp is found, and the
 * EVP_PKEYs handed out before stay usable (test_pkcs11.c, under ASan).
 */
static PKCS11_KEY *
evp_find_key(struct tok *t, const struct tok_key *k)
{
	PKCS11_SLOT *slot;
	PKCS11_KEY *keys = NULL;
	unsigned int n = 0, i;
	struct timespec pause = {0, 20 * 1000000L};
	int tries;

	if ((slot = evp_slot(t)) == NULL)
		return NULL;
	/* The key is there (our own C_FindObjects saw it), but under several
	 * processes on one SoftHSM directory libp11's search can come back without
	 * it (`provision`: 2 in 800 enrollments): search again, a little later. */
	for (tries = 1;; tries++) {
		if (PKCS11_enumerate_keys(slot->token, &keys, &n) == 0)
			for (i = 0; i < n; i++)
				if (keys[i].id_len == k->id_len &&
				    memcmp(keys[i].id, k->id, k->id_len) == 0)
					return &keys[i];
		if (tries == ENUM_TRIES)
			return NULL;
		log_openssl(LOG_LVL_DEBUG, "libp11 does not see key '%s' (try %d of %d)", k->label,
		            tries, ENUM_TRIES);
		nanosleep(&pause, NULL);
		pause.tv_nsec *= 2;
	}
}

/* An EVP_PKEY of k's private key that signs and decrypts on the token. */
int
tok_key_evp(struct tok *t, const struct tok_key *k, EVP_PKEY **out)
{
	int r = P11E_ERR_INTERNAL;
	PKCS11_KEY *key;
	EVP_PKEY *pkey = NULL;

	if (t == NULL || k == NULL || out == NULL)
		goto out;
	if (t->evp == NULL && (r = evp_load(t)) != 0)
		goto out;
	if (evp_slot(t) == NULL) {
		log_error("libp11 does not see token '%s' in slot %lu", t->info.label,
		          t->info.slot_id);
		r = P11E_ERR_TOKEN;
		goto out;
	}
	if ((key = evp_find_key(t, k)) == NULL) {
		log_error("private key '%s' not found on token '%s'%s", k->label, t->info.label,
		          t->logged_in ? "" : " (not logged in)");
		r = P11E_ERR_TOKEN;
		goto out;
	}
	if ((pkey = PKCS11_get_private_key(key)) == NULL) {
		log_openssl(LOG_LVL_ERROR, "libp11 cannot use private key '%s' on token '%s'",
		            k->label, t->info.label);
		r = P11E_ERR_TOKEN;
		goto out;
	}
	*out = pkey;
	pkey = NULL;
	r = 0;
out:
	EVP_PKEY_free(pkey);
	return r;
}

int
tok_evp_unload(struct tok *t)
{
	struct tok_evp *e = t->evp;
	int finalized = 0;

	if (e == NULL)
		return 0;
	if (e->slots != NULL)
		PKCS11_release_all_slots(e->ctx, e->slots, e->nslots);
	if (e->loaded) {
		PKCS11_CTX_unload(e->ctx);
		finalized = 1;
	}
	if (e->ctx != NULL)
		PKCS11_CTX_free(e->ctx);
	free(e);
	t->evp = NULL;
	return finalized;
}
