/*
 * scep.h: the SCEP core (RFC 8894): GetCACaps parsing, GetCACert parsing and
 * RA selection, pkiMessage building, CertRep parsing and verification.
 * Pure: bytes in, bytes out. No network, no token, no files.
 */
#ifndef P11E_SCEP_H
#define P11E_SCEP_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

enum scep_cap {
	SCEP_CAP_POST = 1 << 0,     /* POSTPKIOperation */
	SCEP_CAP_AES = 1 << 1,      /* AES (AES-128-CBC) */
	SCEP_CAP_DES3 = 1 << 2,     /* DES3 */
	SCEP_CAP_SHA1 = 1 << 3,     /* SHA-1 */
	SCEP_CAP_SHA256 = 1 << 4,   /* SHA-256 */
	SCEP_CAP_SHA512 = 1 << 5,   /* SHA-512 */
	SCEP_CAP_RENEWAL = 1 << 6,  /* Renewal */
	SCEP_CAP_STANDARD = 1 << 7, /* SCEPStandard: implies AES, POST, SHA-256 */
	SCEP_CAP_NEXTCA = 1 << 8,   /* GetNextCACert */
};

enum scep_msg_type {
	SCEP_MSG_CERTREP = 3,
	SCEP_MSG_RENEWALREQ = 17,
	SCEP_MSG_PKCSREQ = 19,
	SCEP_MSG_CERTPOLL = 20,
	SCEP_MSG_GETCERT = 21,
	SCEP_MSG_GETCRL = 22,
};

enum scep_status { SCEP_STATUS_SUCCESS = 0, SCEP_STATUS_FAILURE = 2, SCEP_STATUS_PENDING = 3 };

/*
 * Parses a GetCACaps body (keywords case-insensitive, one per line, CRLF or
 * LF, unknown ones ignored) into enum scep_cap bits. SCEPStandard implies
 * AES, POST and SHA-256. An empty body gives 0. Never fails.
 */
unsigned scep_caps_parse(const unsigned char *body, size_t len);

/* Space-separated names of the caps, into buf. */
void scep_caps_str(unsigned caps, char *buf, size_t len);

struct scep_ca {
	STACK_OF(X509) * certs; /* everything GetCACert returned */
	X509 *ca;               /* the CA (root of the bundle), borrowed from certs */
	X509 *ra_enc;           /* recipient of requests, borrowed */
	X509 *ra_sign;          /* signer of CertReps, borrowed */
};

/*
 * Parses a GetCACert response: one DER certificate
 * (application/x-x509-ca-cert) or a degenerate PKCS#7 SignedData
 * (application/x-x509-ca-ra-cert); the content type is advisory, the bytes
 * decide. Selects the RA certificates: certificates that issued another one
 * in the bundle are skipped; among the rest keyUsage keyEncipherment (else
 * dataEncipherment) marks the recipient, digitalSignature the signer, a leaf
 * without keyUsage serves both; with no leaf at all the CA is both. The CA is
 * the self-signed certificate, else the top of the chain. Errors:
 * P11E_ERR_MALFORMED (logged).
 */
int scep_ca_parse(const unsigned char *der, size_t len, struct scep_ca **out);
void scep_ca_free(struct scep_ca *ca);

/*
 * Parses and verifies a GetNextCACert response (RFC 8894 section 4.7): a
 * SignedData with exactly one signer, which must be among cur->certs (the
 * current GetCACert certificates; certificates inside the message are not
 * trusted) and be the current CA or chain to it; signature and digest must
 * verify. Its content is a degenerate SignedData (or one DER certificate)
 * holding the next CA and its RA certificates; roles are selected as by
 * scep_ca_parse. The next CA must be a CA certificate (basicConstraints
 * CA:TRUE), differ from the current one and not have expired. *out is new.
 * Errors (logged): P11E_ERR_MALFORMED (cannot parse), P11E_ERR_VERIFY
 * (signer, signature, digest, not a new CA).
 */
int scep_next_parse(const unsigned char *der, size_t len, const struct scep_ca *cur,
                    struct scep_ca **out);

/* The least lead time of the rollover window: 30 days. */
#define SCEP_NEXT_LEAD_MIN (30L * 24 * 3600)

/*
 * When a client should start looking for the next CA of ca: notAfter minus
 * the larger of 20% of its lifetime and SCEP_NEXT_LEAD_MIN, but not before
 * notBefore. 0 when the validity cannot be read.
 */
time_t scep_next_window(X509 *ca);

/* Digest of a DER certificate (md = EVP_sha256(), EVP_sha1(), EVP_md5()). */
int scep_cert_digest(X509 *cert, const EVP_MD *md, unsigned char *out, unsigned int *len);

/* "AB:CD:..." of a digest; buf needs 3*len bytes. */
void scep_hex_colon(const unsigned char *d, size_t len, char *buf);

struct scep_req {
	int msg_type;               /* SCEP_MSG_PKCSREQ, ... */
	const char *txid;           /* transactionID (PrintableString) */
	unsigned char nonce[16];    /* senderNonce */
	X509 *signer_cert;          /* self-signed or current certificate */
	EVP_PKEY *signer_key;       /* its private key (may live on a token) */
	const EVP_MD *md;           /* signature digest */
	X509 *recipient;            /* the RA encryption certificate */
	const EVP_CIPHER *cipher;   /* AES-128-CBC or DES-EDE3-CBC, never DES */
	const unsigned char *inner; /* DER of the message content (the CSR) */
	size_t inner_len;
};

/*
 * Builds the pkiMessage: EnvelopedData of inner to recipient inside
 * SignedData by signer with signed attributes transactionID, messageType,
 * senderNonce. *der is OPENSSL_malloc'ed. Errors: P11E_ERR_INTERNAL (logged),
 * P11E_ERR_TOKEN when the signing key fails.
 */
int scep_req_build(const struct scep_req *req, unsigned char **der, size_t *der_len);

struct scep_rep {
	int status;              /* enum scep_status */
	int fail_info;           /* -1 when absent */
	char *fail_text;         /* pkiStatusText / failInfoText if present, else NULL */
	X509 *signer;            /* which of the trusted certs signed it (a reference) */
	const char *sig_md;      /* digest the signer used, e.g. "SHA1" */
	unsigned char *envelope; /* DER EnvelopedData on SUCCESS */
	size_t envelope_len;
};

/*
 * Parses and verifies a CertRep against what was sent: the signature must be
 * by one of trusted (the GetCACert certificates; certificates inside the
 * message are not trusted), messageType CertRep, transactionID exactly txid,
 * recipientNonce exactly nonce, a valid pkiStatus; SUCCESS needs an envelope.
 * Errors (logged, naming what was wrong): P11E_ERR_MALFORMED (cannot parse),
 * P11E_ERR_VERIFY (signature, signer, transaction, nonce).
 */
int scep_rep_parse(const unsigned char *der, size_t len, STACK_OF(X509) * trusted, const char *txid,
                   const unsigned char nonce[16], struct scep_rep **out);
void scep_rep_free(struct scep_rep *rep);

/*
 * Decrypts a SUCCESS envelope with key/cert (the request signer) and returns
 * the certificates of the degenerate PKCS#7 inside. *weak_cipher is set to 1
 * when the server used single DES (needs the legacy provider, loaded by
 * scep_init). Errors: P11E_ERR_VERIFY/MALFORMED (logged), P11E_ERR_TOKEN.
 */
int scep_rep_decrypt(const struct scep_rep *rep, EVP_PKEY *key, X509 *cert, STACK_OF(X509) * *certs,
                     int *weak_cipher);

/*
 * Finds among got (the certificates a CertRep delivered) the one whose public
 * key is pub, and checks it chains to ca (through chain and got).
 * *out gets a new reference. Errors: P11E_ERR_VERIFY (logged).
 */
int scep_pick_issued(STACK_OF(X509) * got, EVP_PKEY *pub, X509 *ca, STACK_OF(X509) * chain,
                     X509 **out);

/*
 * DER of IssuerAndSubject (RFC 8894 3.3.3), the content of a CertPoll:
 * SEQUENCE { issuer Name, subject Name }. *der is OPENSSL_malloc'ed.
 */
int scep_issuer_and_subject(X509_NAME *issuer, X509_NAME *subject, unsigned char **der,
                            size_t *len);

/* Text for a failInfo value ("badRequest", ...). */
const char *scep_fail_info_str(int fail_info);

/*
 * Loads the OpenSSL default and legacy providers (legacy only decrypts the
 * single-DES CertReps some servers send; scep_req_build never uses it) and
 * registers the SCEP attribute OIDs. Once per process.
 */
int scep_init(void);

/* Unloads what scep_init loaded. */
void scep_cleanup(void);

#endif
