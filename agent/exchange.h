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
	char txid[129];        /* out: the transactionID used */
};

/*
 * Runs the exchange. On SUCCESS *issued is the certificate for x->key,
 * verified to chain to the CA. PENDING: P11E_ERR_PENDING (not logged: the
 * caller says what happens next). FAILURE: P11E_ERR_REJECTED, logged with
 * failInfo, the server's text and what an NDES HRESULT in it means.
 * Other errors as scep_rep_parse/ca_pkioperation/the token, logged.
 */
int exchange_run(struct exchange *x, X509 **issued, struct timing *tm);

#endif
