/*
 * keyrec.h: which key pairs under the profile's label are the profile's own.
 *
 * state_dir/keys-<label>.txt holds the CKA_ID of every key pair the profile
 * generated ("key=<hex>" lines): written before the pair exists (its
 * temporary CKA_ID) and again, with the final CKA_ID, before the pair gets
 * it. A key pair under the label is the profile's when its CKA_ID is in the
 * record or, after a crash between those two steps, the SHA-1 of its public
 * key (the final CKA_ID) is. Only those are reused, renewed and removed
 * (tidy.h); a token that holds any other key under the label is refused
 * (P11E_ERR_TOKEN, exit 74) naming it. A key is certified only when the token
 * says it was generated there and never left it (keyrec_certifiable).
 *
 * Migration: a profile without a record whose state_dir shows that an earlier
 * version ran it (its last-<label>.txt, pending-<label>.txn or cert_file
 * exists) takes over, once, the key pairs under its label that were
 * generated on the token and carry the CKA_ID p11enroll gives its keys (the
 * SHA-1 of the public key), or the one its pending request names. A profile
 * without that history starts with an empty record.
 */
#ifndef P11E_KEYREC_H
#define P11E_KEYREC_H

#include "conf.h"
#include "tok.h"

struct keyrec;

/*
 * Reads the profile's record into *out (free with keyrec_free). A profile
 * with neither a record nor history (above) gets an empty record written
 * now, so that history this version makes later cannot pass for an earlier
 * version's. Errors: P11E_ERR_FILE (unreadable, damaged or not writable;
 * logged naming it), P11E_ERR_ALLOC.
 */
int keyrec_load(const struct conf *c, struct keyrec **out);
void keyrec_free(struct keyrec *r);

/*
 * keyrec_load for its side effect alone: the first call of every run that
 * may leave history in state_dir (enroll, renew), before anything else.
 */
int keyrec_init(const struct conf *c);

/*
 * 1 when k is one of the profile's keys under r; 0 when not, and for every
 * key while a migration is still to be made.
 */
int keyrec_owns(const struct keyrec *r, const struct tok_key *k);

/*
 * Checks the keys under the profile's label on t against the record. Without
 * login it compares CKA_IDs only; when that is not enough (a key the record
 * does not name, or a migration to make) it reads the PIN (c->pin, else
 * pin_file), logs in (tok_login with allow_final_pin_try) and then makes the
 * migration or names what disqualifies each key that is not the profile's.
 * Errors: P11E_ERR_TOKEN (a key that is not the profile's, logged naming its
 * label, CKA_ID and why; nothing changed on the token or in the record),
 * tok_login's, keyrec_load's, secret_read_file's.
 * On success, when listed is not NULL, *listed and *nlisted are the keys it
 * checked (tok_find_keys' list, made after the login when it logged in), for
 * the caller to use instead of listing them again (tok_keys_free).
 */
int keyrec_check_token(const struct conf *c, struct tok *t, int allow_final_pin_try,
                       struct tok_key ***listed, size_t *nlisted);

/*
 * *unsettled = 1 when keyrec_check_token has work that needs a login (a
 * migration to make, a key under the label the record does not name). No
 * login. Errors: keyrec_load's, tok_find_keys'.
 */
int keyrec_unsettled(const struct conf *c, struct tok *t, int *unsettled);

/*
 * 0 when the token reports k's private key as generated on it (CKA_LOCAL),
 * always sensitive and never extractable (an attribute the module does not
 * report is not held against it); else P11E_ERR_TOKEN, logged naming k's
 * label, CKA_ID and the attributes. Needs login (tok_key_attrs' errors).
 */
int keyrec_certifiable(struct tok *t, const struct tok_key *k);

/*
 * Generates a key pair for the profile (tok_generate_key with [key] type and
 * label), recorded before it exists and under its final CKA_ID before it
 * gets it; a pair that fails keyrec_certifiable is destroyed. Errors:
 * tok_generate_key's, keyrec_certifiable's, P11E_ERR_FILE (the record could
 * not be written: then no key was generated, or it was destroyed).
 */
int keyrec_generate(const struct conf *c, struct tok *t, struct tok_key **out);

/* 1 when k is a key of the profile's [key] type and size (reusable as such), else 0. */
int keyrec_fits_profile(const struct conf *c, const struct tok_key *k);

/*
 * Gives the profile's key k the CKA_ID tok_generate_key gives (the SHA-1 of
 * its public key; tok_key_fix_id), recorded first: for a key an interrupted
 * run left with its temporary ID. Errors: P11E_ERR_FILE, tok_key_fix_id's.
 */
int keyrec_fix_id(const struct conf *c, struct tok *t, struct tok_key *k);

/*
 * Drops k's CKA_ID (and the SHA-1 of its public key) from the record, once
 * its objects are gone from the token. Errors: P11E_ERR_FILE (logged; the
 * entry stays, which only keeps a key of that ID the profile's).
 */
int keyrec_forget(const struct conf *c, const struct tok_key *k);

#endif
