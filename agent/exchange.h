/*
 * exchange.h: one SCEP round trip for a token key: PKCSReq (with the CSR) or
 * CertPoll (IssuerAndSubject, same transactionID), the CertRep verified and
 * decrypted, the issued certificate checked.
 */
#ifndef P11E_EXCHANGE_H
#define P11E_EXCHANGE_H

#include <openssl/x509.h>

#include "ca.h"
#include "conf.h"
#include "tok.h"

/* Where the time of one enrollment goes, in ms (shown with -v; make bench reads it). */
struct timing {
	double token, keygen, csr, network, store;
};

/* Monotonic milliseconds. */
double exchange_now_ms(void);

struct exchange {
	const struct conf *c;
	const struct ca_info *ci;
	struct tok *t;
	const struct tok_key *key;
	const char *challenge; /* PKCSReq: the challenge or NULL; wiped by the caller */
	const char *poll_txid; /* CertPoll of this transaction; NULL for a PKCSReq */
	/* Renewal (RFC 8894 2.3): sign the pkiMessage with the current CA-issued
	 * certificate and its token key (an RSA key), which also decrypts the
	 * reply; NULL: a self-signed certificate of key (or a transient key). */
	X509 *signer_cert;
	const struct tok_key *signer_key;
	int msg_type;     /* SCEP_MSG_PKCSREQ (also when 0) or SCEP_MSG_RENEWALREQ */
	int quiet_reject; /* FAILURE: not logged (the caller retries); see fail_info */
	int fail_info;    /* out: failInfo of a FAILURE, -1 when absent */
	char txid[129];   /* out: the transactionID used */
};

/*
 * The RSA key that signs the envelope of every exchange for an EC key from
 * now on, instead of a transient key generated per exchange (about 150 ms of
 * CPU each): `provision` makes one per run before it starts the cards'
 * processes. Takes a reference of its own (the caller frees pkey as usual)
 * and drops the previous one; NULL goes back to a key per exchange. Each
 * exchange still has its own self-signed certificate, transactionID and
 * senderNonce.
 */
void exchange_set_transient(EVP_PKEY *pkey);

/*
 * Runs the exchange. On SUCCESS *issued is the certificate for x->key,
 * verified to chain to the CA. PENDING: P11E_ERR_PENDING (not logged: the
 * caller says what happens next). FAILURE: P11E_ERR_REJECTED, logged with
 * failInfo, the server's text and what an NDES HRESULT in it means.
 * Other errors as scep_rep_parse/ca_pkioperation/the token, logged.
 */
int exchange_run(struct exchange *x, X509 **issued, struct timing *tm);

#endif
