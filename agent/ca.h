/*
 * ca.h: talking to the SCEP server: capabilities, CA certificates and their
 * pinning, the trust directory, PKIOperation. Used by check and enroll.
 * Implemented by ca.c and ca_chain.c; ca.c keeps the next CA through
 * ca_next.h, the layer below, which knows nothing of this header.
 */
#ifndef P11E_CA_H
#define P11E_CA_H

#include <stddef.h>
#include <time.h>

#include "conf.h"
#include "http.h"
#include "scep.h"

struct ca_info {
	unsigned caps;
	int caps_answered;      /* GetCACaps gave a 200 with a body */
	struct scep_ca *ca;     /* GetCACert, its chain completed by ca_complete_chain */
	unsigned char fp[32];   /* SHA-256 of the top of the chain (what a pin records) */
	STACK_OF(X509) * roots; /* [trust] root_file's certificates, or NULL */
	STACK_OF(X509) * aia;   /* certificates fetched from AIA caIssuers URLs, or NULL */
	struct http_opts http;
	struct scep_ca *next; /* the next CA (GetNextCACert), verified against ca; or NULL */
	int next_asked;       /* GetNextCACert was asked (advertised) */
	int rolled;           /* ca_check_trust accepted ca as the verified next CA */
	X509 *prev;           /* then the previous CA, from the trust dir, or NULL */
};

/*
 * GetCACert then GetCACaps. A failing GetCACaps means "no capabilities";
 * an unreachable server or a failing GetCACert is P11E_ERR_NETWORK,
 * an unusable bundle P11E_ERR_MALFORMED, an unusable [trust] root_file
 * P11E_ERR_CONFIG. All logged. The CA chain is completed (ca_complete_chain)
 * but not judged: an incomplete one is refused by ca_check_trust. When the caps advertise
 * GetNextCACert it is asked too: a verified next CA lands in ci->next; no
 * next CA (404, empty) is logged at debug level, an unverifiable one as a
 * warning, and neither fails the call.
 */
int ca_fetch(const struct conf *c, struct ca_info **out);
void ca_info_free(struct ca_info *ci);

/*
 * The station's CA for the children it forks (provision.c): ci, as ca_fetch
 * returned it (what ca_check_trust set since, the rollover's previous CA, is
 * dropped: each child judges the CA itself), taken; NULL frees it.
 * In a child forked less than CA_SHARE_SECONDS after, the first ca_fetch
 * gives that copy of it instead of asking the server again (GetCACert,
 * GetCACaps, GetNextCACert for every card); later, and in the process that
 * shared it, ca_fetch asks the server.
 */
#define CA_SHARE_SECONDS 300
void ca_share(struct ca_info *ci);

/*
 * Completes ci->ca's chain up to a self-signed root with issuers whose
 * signatures verify, taken from [trust] root_file (kept in ci->roots), then
 * the trust directory's certificates, then (with [trust] fetch_aia) the AIA
 * caIssuers URL of the top, over http(s) with a size cap, hop by hop. Leaves
 * the chain incomplete when nothing fits (not an error). Errors:
 * P11E_ERR_CONFIG (root_file missing, unreadable, not roots: logged),
 * P11E_ERR_ALLOC.
 */
int ca_complete_chain(const struct conf *c, struct ca_info *ci);

/* [trust] root_file's certificates (*out NULL when not configured). Errors as above. */
int ca_load_roots(const struct conf *c, STACK_OF(X509) * *out);

/* Where x came from: "GetCACert", "root_file", "AIA" or "trust dir". */
const char *ca_cert_source(const struct ca_info *ci, X509 *x);

enum ca_trust {
	CA_TRUST_FINGERPRINT = 1, /* matches [scep] ca_fingerprint */
	CA_TRUST_PIN,             /* matches the pin recorded on first contact */
	CA_TRUST_UNPINNED,        /* no fingerprint, no pin yet (not pinned by this call) */
	CA_TRUST_PINNED_NOW,      /* no fingerprint: pinned by this call */
	CA_TRUST_ROOT_FILE,       /* no fingerprint: the chain ends at a root of root_file */
};

/*
 * Judges the CA chain: it must end in a self-signed root (else
 * P11E_ERR_CONFIG, naming [trust] root_file and fetch_aia), verify now from
 * that root down to the issuing CA and the RA certificates, and end at a root
 * of [trust] root_file when that is set. Then the anchor: [scep]
 * ca_fingerprint naming any certificate of the chain; else root_file; else
 * the pin in state_dir recorded on first contact (naming any certificate of
 * the chain). With pin_first_contact, an unpinned CA is pinned (the top of
 * the chain, with a warning that prints its SHA-256 fingerprint). *how says
 * which (enum ca_trust). A CA that differs from the fingerprint or pin is
 * accepted when it is the next CA stored by ca_write_trust and verified under
 * that very fingerprint or pin (CA rollover): ci->rolled is set, the pin
 * moves to it (only with pin_first_contact; logged at info level), and a
 * fingerprint in the configuration draws a warning to update it.
 * Mismatch: P11E_ERR_VERIFY.
 */
int ca_check_trust(const struct conf *c, struct ca_info *ci, int pin_first_contact, int *how);

/*
 * Writes the verified chain and the RA certificates to [trust] dir: "ca"
 * (the issuing CA), "ca-int-N" (CAs between it and the root, upwards),
 * "root", "ra" (one RA certificate for both jobs) or "ra-enc" and "ra-sign";
 * plus "ca-next" (the verified next CA, also kept in state_dir/ca-next.pem)
 * and, after a rollover, "ca-prev" (the previous CA). Files of those names
 * (and "ca-N" of older versions) that this write does not hold are removed:
 * certificates GetCACert sent that play no role are never written. Call only
 * after ca_check_trust.
 */
int ca_write_trust(const struct conf *c, const struct ca_info *ci);

/*
 * For a daemon: when to look for a next CA next. *when is 0 when there is
 * nothing to schedule (not enrolled yet: no [trust] dir/ca.crt; or a next CA
 * different from the current one is already stored). Otherwise it is the
 * start of the rollover window of the current CA (notAfter minus the larger
 * of 20% of its lifetime and 30 days; see scep_next_window), or, once the
 * window has begun, one day after the last look (ca_write_trust records each
 * one); a value <= now means "look now" (ca_refresh). The rule is
 * ca_next_check_at's (ca_next.h). Errors: P11E_ERR_FILE, P11E_ERR_CONFIG (a
 * state file others may write), P11E_ERR_ALLOC (logged); *when is then
 * untouched.
 */
int ca_rollover_check_at(const struct conf *c, time_t *when);

/*
 * Looks for a next CA the way enroll does before a request: ca_fetch,
 * ca_check_trust (pinning on first contact), ca_write_trust. *rolled: the
 * server's CA was the next CA announced earlier, now accepted and written to
 * the trust dir (ci->rolled). Errors as those.
 */
int ca_refresh(const struct conf *c, int *rolled);

/* The request protection the caps allow: AES-128-CBC or 3DES; SHA-256 or SHA-1. */
const EVP_CIPHER *ca_cipher(const struct ca_info *ci);
const EVP_MD *ca_digest(const struct ca_info *ci);

/*
 * Sends a pkiMessage (POST when advertised, else GET) and returns the CertRep
 * body. HTTP errors: P11E_ERR_NETWORK, with a message for 414.
 */
int ca_pkioperation(const struct conf *c, const struct ca_info *ci, const unsigned char *msg,
                    size_t len, unsigned char **rep, size_t *rep_len);

#endif
