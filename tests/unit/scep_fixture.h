/*
 * scep_fixture.h: reading the SCEP fixtures in tests/data (made by
 * tests/data/gen-fixtures.py) for the cmocka tests of the SCEP core.
 * Include after <cmocka.h>. $P11E_TEST_DATA overrides the directory.
 */
#ifndef P11E_SCEP_FIXTURE_H
#define P11E_SCEP_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "scep.h"

/* The whole file; malloc'ed, one spare byte at the end. */
static inline unsigned char *
load(const char *name, size_t *len)
{
	char path[512];
	const char *dir = getenv("P11E_TEST_DATA");
	FILE *f;
	unsigned char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/data", name);
	f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* A DER certificate file. */
static inline X509 *
load_cert(const char *name)
{
	size_t len;
	unsigned char *d = load(name, &len);
	const unsigned char *p = d;
	X509 *x = d2i_X509(NULL, &p, (long)len);

	assert_non_null(x);
	free(d);
	return x;
}

/* A PEM private key file. */
static inline EVP_PKEY *
load_key(const char *name)
{
	size_t len;
	unsigned char *d = load(name, &len);
	BIO *b = BIO_new_mem_buf(d, (int)len);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);

	assert_non_null(k);
	BIO_free(b);
	free(d);
	return k;
}

/* TXID and NONCE of fixtures.txt: what the CertRep fixtures answer. */
static inline void
load_txid_nonce(char txid[128], unsigned char nonce[16])
{
	size_t len, i;
	char *t = (char *)load("fixtures.txt", &len), *p;
	unsigned v;

	t[len] = '\0';
	p = strstr(t, "TXID=");
	assert_non_null(p);
	assert_int_equal(sscanf(p + 5, "%127s", txid), 1);
	p = strstr(t, "NONCE=");
	assert_non_null(p);
	for (i = 0; i < 16; i++) {
		assert_int_equal(sscanf(p + 6 + 2 * i, "%2x", &v), 1);
		nonce[i] = (unsigned char)v;
	}
	free(t);
}

/* A GetCACert response file, parsed. */
static inline struct scep_ca *
ca_of(const char *name)
{
	size_t len;
	unsigned char *d = load(name, &len);
	struct scep_ca *ca = NULL;

	assert_int_equal(scep_ca_parse(d, len, &ca), 0);
	free(d);
	return ca;
}

/* x is the certificate in file. */
static inline void
assert_subject(X509 *x, const char *file)
{
	X509 *want = load_cert(file);
	assert_non_null(x);
	assert_int_equal(X509_cmp(x, want), 0);
	X509_free(want);
}

#endif
