/*
 * pending.h: a request the CA put on hold (PENDING), kept in state_dir so
 * that the next `enroll` polls it (CertPoll, same transactionID) instead of
 * starting over.
 */
#ifndef P11E_PENDING_H
#define P11E_PENDING_H

#include <stddef.h>
#include <time.h>

#include "conf.h"

struct pending {
	char txid[129];           /* transactionID as sent */
	unsigned char key_id[64]; /* CKA_ID of the key the request is for */
	size_t key_id_len;
	unsigned char key_pub[20]; /* SHA-1 of that key's public key (tok_key_id_for) */
	int has_key_pub;           /* 0 in a file an earlier version wrote */
	time_t created;            /* first PENDING answer */
	time_t next_poll;          /* when polling is worth it again */
	unsigned polls;            /* CertPolls answered PENDING so far */
	int renewal;               /* 1: a `renew` request (signed with the current certificate) */
};

/*
 * Reads the profile's pending transaction. P11E_ERR_NOTFOUND (not logged)
 * when there is none; a damaged file is P11E_ERR_FILE naming it.
 */
int pending_load(const struct conf *c, struct pending *out);

/* Writes it atomically (0600), creating state_dir if needed. */
int pending_save(const struct conf *c, const struct pending *p);

/* Removes it; absent is fine. */
int pending_clear(const struct conf *c);

#endif
