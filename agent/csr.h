/*
 * csr.h: the certificate request and the transaction's self-signed
 * certificate, built from the profile and signed by a key that may live on a
 * token.
 */
#ifndef P11E_CSR_H
#define P11E_CSR_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "conf.h"

/*
 * Parses an RFC 4514 string ("CN=host,O=Example"; '\' escapes, '+' for
 * multi-valued RDNs) into a name the RFC 4514 way: the first RDN written is
 * the most specific, the last one in the encoding ("CN=host,O=Example" is
 * encoded O, then CN, and every CA and LDAP tool prints it back as written).
 * A value holds exactly the bytes written: "\X" is the character X, "\XX"
 * the byte with that hex value (so "\C3\A9" is UTF-8 e-acute); unescaped
 * spaces around a value are dropped, escaped ones ("\ ", "\20") kept, also
 * at either end. "#" hexstring first is RFC 4514's BER form, a string type
 * taken as encoded ("\#" is a literal '#'). PrintableString where the value
 * allows, else UTF8String. Errors: P11E_ERR_CONFIG (logged, naming the
 * attribute) also for a NUL byte or bytes that are not UTF-8.
 */
int csr_parse_dn(const char *dn, X509_NAME **out);

/*
 * A PKCS#10 request: subject from c->dn, key's public key, SANs from the
 * profile, keyUsage (digitalSignature, plus keyEncipherment for RSA),
 * challengePassword (PrintableString when possible) if challenge is not NULL,
 * signed with key (the token key: proof of possession) using SHA-256.
 */
int csr_build(const struct conf *c, EVP_PKEY *key, const char *challenge, X509_REQ **out);

/*
 * Frees a request after wiping the values of its challengePassword
 * attribute (X509_REQ_free leaves them in freed memory). Accepts NULL. Use
 * it for every request that may hold a challenge.
 */
void csr_req_free(X509_REQ *req);

/*
 * A self-signed certificate of key with the given subject, keyUsage
 * digitalSignature+keyEncipherment, valid from one hour ago for two days,
 * signed with key using SHA-256.
 */
int csr_selfsigned(X509_NAME *subject, EVP_PKEY *key, X509 **out);

#endif
