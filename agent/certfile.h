/*
 * certfile.h: [files] cert_file, the PEM copy of the token's certificate for
 * consumers that read a file.
 */
#ifndef P11E_CERTFILE_H
#define P11E_CERTFILE_H

#include <openssl/x509.h>

#include "conf.h"

/* Writes cert_file (PEM, 0644, atomically) when configured. */
int certfile_write(const struct conf *c, X509 *cert);

/* cert_file (when configured) holds cert: rewritten when missing or different. */
int certfile_sync(const struct conf *c, X509 *cert);

/* *stale: cert_file is configured and missing or not exactly cert (PEM). */
int certfile_stale(const struct conf *c, X509 *cert, int *stale);

#endif
