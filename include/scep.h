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
	STACK_OF(X509) * certs;   /* everything GetCACert returned */
	STACK_OF(X509) * chain;   /* the CA chain: the issuing CA first, then each one's
	                             issuer (references); the last is the top, a
	                             self-signed root when the chain is complete */
	X509 *ca;                 /* the issuing CA: chain[0], borrowed */
	X509 *ra_enc;             /* recipient of requests, borrowed */
	X509 *ra_sign;            /* signer of CertReps, borrowed */
	STACK_OF(X509) * signers; /* who may sign a reply: ra_sign, and ca (references) */
	STACK_OF(X509) * ignored; /* certificates of certs in no role: strangers (references) */
};

/* What a certificate is to a struct scep_ca (scep_ca_role). */
enum scep_role {
	SCEP_ROLE_IGNORED = 0, /* not issued by the CA chain, or an RA certificate not used */
	SCEP_ROLE_ROOT,        /* the self-signed top of the chain, above the issuing CA */
	SCEP_ROLE_INTERMEDIATE,
	SCEP_ROLE_ISSUING, /* the CA that issues end-entity certificates */
	SCEP_ROLE_RA,      /* RA certificate that receives requests and signs replies */
	SCEP_ROLE_RA_ENC,
	SCEP_ROLE_RA_SIGN,
};

/*
 * Parses a GetCACert response: one DER certificate
 * (application/x-x509-ca-cert) or a degenerate PKCS#7 SignedData
 * (application/x-x509-ca-ra-cert); the content type is advisory, the bytes
 * decide. Then the roles, by issuance (names, key identifiers, keyCertSign and
 * a verified signature), never by order:
 * - the issuing CA is a CA certificate of the bundle that issued no other CA
 *   certificate of it (never a root that issued an intermediate in the same
 *   reply); among several, the one that issued an RA certificate of the
 *   bundle, then one whose issuer is in the bundle, then the first;
 * - the chain goes from it up through the bundle's CA certificates;
 * - RA certificates are the non-CA certificates issued by a CA of the chain:
 *   keyUsage keyEncipherment (else dataEncipherment) receives requests,
 *   digitalSignature signs replies, one without keyUsage does both; without
 *   them the issuing CA does both;
 * - everything else (a stranger's certificate) is ignored.
 * A lone self-signed certificate counts as a CA. Errors: P11E_ERR_MALFORMED
 * (logged: unparsable, no CA certificate), P11E_ERR_ALLOC.
 */
int scep_ca_parse(const unsigned char *der, size_t len, struct scep_ca **out);

/*
 * scep_ca_parse in two steps (the network process does the first): the
 * certificates of a GetCACert body (one DER certificate, or a degenerate
 * PKCS#7 SignedData), *out new; errors as scep_ca_parse's. Then the roles of
 * certs, which scep_ca_from_certs takes over (freed also on failure).
 */
int scep_ca_certs(const unsigned char *der, size_t len, STACK_OF(X509) * *out);
int scep_ca_from_certs(STACK_OF(X509) * certs, struct scep_ca **out);
void scep_ca_free(struct scep_ca *ca);

/*
 * Extends ca->chain upwards with certificates of candidates (CA certificates
 * that issued the current top, signature verified), until it ends in a
 * self-signed root or no candidate fits. *added (may be NULL) counts them.
 * Errors: P11E_ERR_ALLOC.
 */
int scep_ca_complete(struct scep_ca *ca, STACK_OF(X509) * candidates, int *added);

/* The top of the chain, borrowed; and whether it is a self-signed root. */
X509 *scep_ca_top(const struct scep_ca *ca);
int scep_ca_complete_p(const struct scep_ca *ca);

/*
 * Verifies now, with the chain's top as the only trust anchor: the issuing
 * CA and the RA certificates chain to it (signatures, validity, CA flags).
 * P11E_ERR_VERIFY with the reason in why (not logged), P11E_ERR_ALLOC.
 */
int scep_ca_verify(const struct scep_ca *ca, char *why, size_t len);

/* enum scep_role of x (compared by content), and its name ("issuing CA"...). */
int scep_ca_role(const struct scep_ca *ca, X509 *x);
const char *scep_role_str(int role);

/*
 * Parses and verifies a GetNextCACert response (RFC 8894 section 4.7): a
 * SignedData with exactly one signer, which must be among cur->signers (the
 * current issuing CA or its RA signing certificate; certificates inside the
 * message are not trusted) and chain to the current CA; signature and digest
 * must verify. Its content is a degenerate SignedData (or one DER certificate)
 * holding the next CA and its RA certificates; its chain is completed from
 * cur->chain (a new issuing CA under the same root); roles are selected as by
 * scep_ca_parse. The next CA must be a CA certificate (basicConstraints
 * CA:TRUE), differ from the current one and not have expired. *out is new.
 * Errors (logged): P11E_ERR_MALFORMED (cannot parse), P11E_ERR_VERIFY
 * (signer, signature, digest, not a new CA).
 */
int scep_next_parse(const unsigned char *der, size_t len, const struct scep_ca *cur,
                    struct scep_ca **out);

/*
 * scep_next_parse in two steps (the network process does the first): the
 * message's checks (signers_ok are cur->signers, ca cur->ca, bundle
 * cur->certs) and the certificates of its content, *out new; then the next CA
 * made of them, checked against cur (scep_next_from_certs takes certs over,
 * freed also on failure). Errors as scep_next_parse's.
 */
int scep_next_certs(const unsigned char *der, size_t len, STACK_OF(X509) * signers_ok, X509 *ca,
                    STACK_OF(X509) * bundle, STACK_OF(X509) * *out);
int scep_next_from_certs(STACK_OF(X509) * certs, const struct scep_ca *cur, struct scep_ca **out);

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

/* A name as p11enroll prints names ("O=Example,CN=host", RFC 2253 escapes), cut at len - 1. */
void scep_name_str(const X509_NAME *name, char *buf, size_t len);

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
	char *fail_text;         /* failInfoText (RFC 8894's OID, or step-ca's id-scep arc) if
	                            present, non-printable bytes as '?'; else NULL */
	X509 *signer;            /* which of the trusted certs signed it (a reference) */
	const char *sig_md;      /* digest the signer used, e.g. "SHA1" */
	unsigned char *envelope; /* DER EnvelopedData on SUCCESS */
	size_t envelope_len;
};

/* 1 when a signer's digest is SHA-1 or SHA-2 (224 to 512), the ones SCEP replies may use. */
int scep_digest_acceptable(const X509_ALGOR *alg);

/*
 * Parses and verifies a CertRep against what was sent: the signature must be
 * by one of trusted (struct scep_ca's signers: the RA signing certificate and
 * the issuing CA; certificates inside the message are not trusted),
 * messageType CertRep, transactionID exactly txid,
 * recipientNonce exactly nonce, a valid pkiStatus, eContentType data, a
 * SHA-1 or SHA-2 digest (scep_digest_acceptable); SUCCESS needs an envelope.
 * Errors (logged, naming what was wrong): P11E_ERR_MALFORMED (cannot parse),
 * P11E_ERR_VERIFY (signature, signer, transaction, nonce).
 */
int scep_rep_parse(const unsigned char *der, size_t len, STACK_OF(X509) * trusted, const char *txid,
                   const unsigned char nonce[16], struct scep_rep **out);
void scep_rep_free(struct scep_rep *rep);

/*
 * Decrypts a SUCCESS envelope with key/cert (the request signer) and returns
 * the certificates of the degenerate PKCS#7 inside. *cipher_nid is set to the
 * envelope's content cipher (NID_undef when unreadable) also on failure;
 * single DES (NID_des_cbc) needs the legacy provider, loaded by scep_init.
 * Errors: P11E_ERR_VERIFY/MALFORMED (logged), P11E_ERR_TOKEN.
 */
int scep_rep_decrypt(const struct scep_rep *rep, EVP_PKEY *key, X509 *cert, STACK_OF(X509) * *certs,
                     int *cipher_nid);

/*
 * scep_rep_decrypt in two steps (the network process does the second): the
 * envelope decrypted, *plain its content (OPENSSL_free; *cipher_nid as
 * above); then the certificates of that content, a degenerate SignedData
 * with nothing after it, *certs new (at least one). Errors as
 * scep_rep_decrypt's.
 */
int scep_rep_open(const struct scep_rep *rep, EVP_PKEY *key, X509 *cert, unsigned char **plain,
                  size_t *plain_len, int *cipher_nid);
int scep_rep_certs(const unsigned char *data, size_t len, STACK_OF(X509) * *certs);

/* The longest encrypted key an envelope may carry (RSA-8192). */
#define SCEP_ENV_KEY_MAX 1024

/* A CertRep's EnvelopedData taken apart: what decrypting it needs, and nothing else. */
struct scep_env {
	int cipher_nid;       /* AES-128/192/256-CBC, DES-EDE3-CBC or DES-CBC */
	unsigned char iv[16]; /* iv_len bytes: the cipher's block */
	size_t iv_len;
	unsigned char *key;  /* the content-encryption key, RSA-encrypted to our certificate */
	size_t key_len;      /* 1..SCEP_ENV_KEY_MAX */
	unsigned char *data; /* the encrypted content, whole blocks */
	size_t data_len;
};

/*
 * scep_rep_open in two steps, each in its own process. scep_env_parse (the
 * network process) reads the envelope's DER: an EnvelopedData with nothing
 * after it, a recipient named by to's issuer and serial number whose key is
 * encrypted with rsaEncryption, a content cipher of scep_env_iv_len's with its
 * IV, whole blocks of content; *out new (scep_env_free). Errors:
 * P11E_ERR_MALFORMED, P11E_ERR_VERIFY (no recipient is to), P11E_ERR_ALLOC,
 * logged. scep_env_open (the token's process) decrypts the key with key
 * (RSA PKCS#1 v1.5, on the token for a token key), checks its length against
 * the cipher's and decrypts the content: *plain (OPENSSL_free). It parses
 * no ASN.1. Errors: P11E_ERR_VERIFY (key or padding), P11E_ERR_MALFORMED,
 * P11E_ERR_ALLOC, logged. The content-encryption key never leaves it.
 */
int scep_env_parse(const unsigned char *der, size_t len, X509 *to, struct scep_env **out);
int scep_env_open(const struct scep_env *env, EVP_PKEY *key, unsigned char **plain,
                  size_t *plain_len);
void scep_env_free(struct scep_env *env);

/* The IV length (the block length) of a content cipher an envelope may use, else 0. */
size_t scep_env_iv_len(int nid);

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
/* As scep_init without the legacy provider: enough to parse and verify (the
 * network process), not to decrypt a single-DES envelope. */
int scep_init_verify_only(void);

/* Unloads what scep_init loaded. */
void scep_cleanup(void);

#endif
