/*
 * netproc_parse.h: the network process's second job (netproc.h): what
 * servers send is parsed there, so that the process holding the token never
 * parses it: a CertRep (scep_rep_parse; only the fields of struct scep_rep
 * come back), a GetCACert bundle, a GetNextCACert answer and the bundle in a
 * CertRep's decrypted envelope (the DER of their certificates come back), a
 * CertRep's envelope (the fields decrypting it needs), an NDES page (the
 * challenge and the thumbprint).
 * The parent checks each answer again. The messages of those exchanges
 * (netproc_wire.h), private to agent/.
 */
#ifndef P11E_NETPROC_PARSE_H
#define P11E_NETPROC_PARSE_H

#include <stddef.h>

#include <openssl/x509.h>

#include "netproc_wire.h"
#include "scep.h"

/* The request's first field (a GET/POST request has its method there). */
#define NETPROC_OP_CERTREP "CERTREP"
#define NETPROC_OP_CACERT "CACERT"
#define NETPROC_OP_NDESPAGE "NDESPAGE"
#define NETPROC_OP_NEXTCA "NEXTCA"
#define NETPROC_OP_REPCERTS "REPCERTS"
#define NETPROC_OP_ENVELOPE "ENVELOPE"

/* The most certificates a GetCACert or GetNextCACert answer may carry. */
#define NETPROC_CERTS_MAX 64

/* The longest failInfoText kept from the answer. */
#define NETPROC_FAIL_TEXT_MAX 512

/*
 * The request, after its op, log level and tag: the CertRep's DER, the
 * trusted signers' DER, the transactionID and the sender nonce sent.
 */
void netproc_rep_request_write(struct wire_wbuf *w, const unsigned char *der, size_t len,
                               STACK_OF(X509) * trusted, const char *txid,
                               const unsigned char nonce[16]);

/*
 * Reads that request's fields (after op, level and tag) in the network
 * process: *der into the message, *trusted new (sk_X509_pop_free), *txid
 * (secret_wipe_free), nonce. -1 for a malformed request, P11E_ERR_ALLOC.
 */
int netproc_rep_request_read(struct wire_rbuf *r, const unsigned char **der, size_t *len,
                             STACK_OF(X509) * *trusted, char **txid, unsigned char nonce[16]);

/*
 * The answer: rc (0 or a P11E_ERR_* code), the last error line err (or NULL)
 * and, when rc is 0, rep's fields, its signer as an index into trusted.
 */
void netproc_rep_answer_write(struct wire_wbuf *w, int rc, const char *err,
                              const struct scep_rep *rep, STACK_OF(X509) * trusted);

/*
 * Reads an answer, which is not trusted: on 0, *rc and *err (or NULL;
 * secret_wipe_free) are set and, when *rc is 0, *out (scep_rep_free): a
 * status SCEP allows, failInfo -1..999, failInfoText printable and at most
 * NETPROC_FAIL_TEXT_MAX bytes, a signer of trusted (a new reference), a
 * digest scep_digest_acceptable takes, and an envelope on SUCCESS only, of at
 * most max_envelope bytes. -1 for anything else, P11E_ERR_ALLOC. Logs nothing.
 */
int netproc_rep_answer_read(const unsigned char *msg, size_t len, STACK_OF(X509) * trusted,
                            size_t max_envelope, int *rc, char **err, struct scep_rep **out);

/*
 * The answer to a GetCACert body, or to a CertRep's decrypted envelope (the
 * request: op, level, tag, the bytes): rc, the last error line err (or NULL) and, when rc is 0, the
 * DER of each of certs (at most NETPROC_CERTS_MAX; more is written as rc P11E_ERR_MALFORMED).
 */
void netproc_certs_answer_write(struct wire_wbuf *w, int rc, const char *err,
                                STACK_OF(X509) * certs);

/*
 * Reads that answer, which is not trusted: on 0, *rc and *err (or NULL;
 * secret_wipe_free) are set and, when *rc is 0, *out (sk_X509_pop_free): 1 to
 * NETPROC_CERTS_MAX certificates, each a whole DER certificate, together no
 * larger than max_len bytes. -1 for anything else, P11E_ERR_ALLOC. Logs
 * nothing.
 */
int netproc_certs_answer_read(const unsigned char *msg, size_t len, size_t max_len, int *rc,
                              char **err, STACK_OF(X509) * *out);

/*
 * A GetNextCACert body to check (scep_next_certs), after op, level and tag:
 * the body, then what it is checked against: cur's signers, its issuing CA
 * and its GetCACert bundle. Its answer is a certificates answer (above).
 */
void netproc_next_request_write(struct wire_wbuf *w, const unsigned char *der, size_t len,
                                const struct scep_ca *cur);

/*
 * Reads that request in the network process: *der into the message, *signers,
 * *ca (a stack of one) and *bundle new (sk_X509_pop_free). -1 for a malformed
 * request, P11E_ERR_ALLOC.
 */
int netproc_next_request_read(struct wire_rbuf *r, const unsigned char **der, size_t *len,
                              STACK_OF(X509) * *signers, STACK_OF(X509) * *ca,
                              STACK_OF(X509) * *bundle);

/*
 * A CertRep's envelope to take apart (scep_env_parse), after op, level and
 * tag: its DER, then to, the certificate the request was signed with (whose
 * key decrypts it).
 */
void netproc_env_request_write(struct wire_wbuf *w, const unsigned char *der, size_t len, X509 *to);

/*
 * Reads that request in the network process: *der into the message, *to new
 * (X509_free). -1 for a malformed request, P11E_ERR_ALLOC.
 */
int netproc_env_request_read(struct wire_rbuf *r, const unsigned char **der, size_t *len,
                             X509 **to);

/* The answer: rc, the last error line err (or NULL) and, when rc is 0, env's fields. */
void netproc_env_answer_write(struct wire_wbuf *w, int rc, const char *err,
                              const struct scep_env *env);

/*
 * Reads that answer, which is not trusted: on 0, *rc and *err (or NULL;
 * secret_wipe_free) are set and, when *rc is 0, *out (scep_env_free): a
 * cipher scep_env_iv_len takes and an IV of its length, an encrypted key of 1
 * to SCEP_ENV_KEY_MAX bytes, 1 to max_data bytes of content in whole blocks.
 * -1 for anything else, P11E_ERR_ALLOC. Logs nothing.
 */
int netproc_env_answer_read(const unsigned char *msg, size_t len, size_t max_data, int *rc,
                            char **err, struct scep_env **out);

/*
 * The answer to an NDES page (the request: op, level, tag, the page's bytes,
 * whether the thumbprint is wanted): rc, the last error line err (or NULL)
 * and, when rc is 0, the challenge and the thumbprint (or NULL).
 */
void netproc_page_answer_write(struct wire_wbuf *w, int rc, const char *err, const char *challenge,
                               const char *thumbprint);

/*
 * Reads that answer, which is not trusted: on 0, *rc and *err (or NULL;
 * secret_wipe_free) are set and, when *rc is 0, *challenge (printable ASCII,
 * 1..max characters, in the secret arena: secret_free) and *thumbprint
 * (upper-case hex, an even number of at most 128 digits, free(); or NULL).
 * -1 for anything else, P11E_ERR_ALLOC. Logs nothing.
 */
int netproc_page_answer_read(const unsigned char *msg, size_t len, size_t max, int *rc, char **err,
                             char **challenge, char **thumbprint);

#endif
