/*
 * ca.h: talking to the SCEP server: capabilities, CA certificates and their
 * pinning, the trust directory, PKIOperation. Used by check and enroll.
 */
#ifndef P11E_CA_H
#define P11E_CA_H

#include <stddef.h>

#include "conf.h"
#include "http.h"
#include "scep.h"

struct ca_info {
	unsigned caps;
	int caps_answered; /* GetCACaps gave a 200 with a body */
	struct scep_ca *ca;
	unsigned char fp[32]; /* SHA-256 of the CA certificate */
	struct http_opts http;
};

/*
 * GetCACert then GetCACaps. A failing GetCACaps means "no capabilities";
 * an unreachable server or a failing GetCACert is P11E_ERR_NETWORK,
 * an unusable bundle P11E_ERR_MALFORMED. All logged.
 */
int ca_fetch(const struct conf *c, struct ca_info **out);
void ca_info_free(struct ca_info *ci);

enum ca_trust {
	CA_TRUST_FINGERPRINT = 1, /* matches [scep] ca_fingerprint */
	CA_TRUST_PIN,             /* matches the pin recorded on first contact */
	CA_TRUST_UNPINNED,        /* no fingerprint, no pin yet (not pinned by this call) */
	CA_TRUST_PINNED_NOW,      /* no fingerprint: pinned by this call */
};

/*
 * Checks the CA against [scep] ca_fingerprint, else against the pin in
 * state_dir recorded on first contact. With pin_first_contact, an unpinned CA
 * is pinned (with a warning that prints its SHA-256 fingerprint). *how says
 * which (enum ca_trust). Mismatch: P11E_ERR_VERIFY.
 */
int ca_check_trust(const struct conf *c, const struct ca_info *ci, int pin_first_contact, int *how);

/* Writes the CA and RA certificates to [trust] dir. */
int ca_write_trust(const struct conf *c, const struct ca_info *ci);

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
