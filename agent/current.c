/*
 * current.c: the profile's token and its current certificate (current.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "current.h"
#include "err.h"
#include "log.h"
#include "progress.h"
#include "schedule.h"
#include "uri.h"

int
current_token_module(const struct conf *c, char **module, struct tok_uri **uri)
{
	int r;
	struct tok_uri *u = NULL;
	const char *m;

	if ((r = tok_uri_parse(c->token_uri, &u)) != 0)
		return r;
	m = u->module_path ? u->module_path : c->module;
	if (m == NULL) {
		log_error("%s: [token] module is not set and the URI has no module-path", c->path);
		r = P11E_ERR_CONFIG;
	} else if ((*module = strdup(m)) == NULL) {
		r = P11E_ERR_ALLOC;
	} else {
		*uri = u;
		return 0;
	}
	tok_uri_free(u);
	return r;
}

int
current_open_token(const struct conf *c, struct tok **out)
{
	struct tok_uri *u = NULL;
	char *module = NULL;
	int r;

	if ((r = current_token_module(c, &module, &u)) != 0)
		return r;
	r = tok_open(module, u, c->key_label, out);
	free(module);
	tok_uri_free(u);
	return r;
}

int
current_valid_now(X509 *cert)
{
	return X509_cmp_current_time(X509_get0_notBefore(cert)) < 0 &&
	       X509_cmp_current_time(X509_get0_notAfter(cert)) > 0;
}

static void
print_time(FILE *f, const char *label, const ASN1_TIME *t)
{
	BIO *b = BIO_new_fp(f, BIO_NOCLOSE);

	if (b == NULL)
		return;
	BIO_printf(b, "%s", label);
	ASN1_TIME_print_ex(b, t, ASN1_DTFLGS_ISO8601);
	BIO_printf(b, "\n");
	BIO_free(b);
}

char *
current_serial_hex(X509 *cert)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

	BN_free(bn);
	return hex;
}

char *
current_name_str(const X509_NAME *name)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *out = NULL, *p = NULL;
	long len;

	if (b == NULL)
		return NULL;
	if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0 &&
	    (len = BIO_get_mem_data(b, &p)) >= 0 && (out = malloc((size_t)len + 1)) != NULL) {
		memcpy(out, p, (size_t)len);
		out[len] = '\0';
	}
	BIO_free(b);
	return out;
}

int
current_time_str(const ASN1_TIME *a, char *buf, size_t len)
{
	struct tm tmv;

	memset(&tmv, 0, sizeof(tmv));
	if (ASN1_TIME_to_tm(a, &tmv) != 1 || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tmv) == 0)
		return -1;
	return 0;
}

void
current_note(const struct tok *t, const struct tok_key *k, X509 *cert)
{
	char *ku = NULL, *hex = NULL, when[64];
	BIO *b = NULL;
	int n;

	if (!progress_on())
		return;
	if (tok_object_uri(t, k, "private", &ku) == 0)
		progress_note("key", "%s", ku);
	if ((hex = current_serial_hex(cert)) != NULL)
		progress_note("cert-serial", "%s", hex);
	if ((b = BIO_new(BIO_s_mem())) != NULL &&
	    ASN1_TIME_print_ex(b, X509_get0_notAfter(cert), ASN1_DTFLGS_ISO8601) == 1 &&
	    (n = BIO_read(b, when, sizeof(when) - 1)) > 0) {
		when[n] = '\0';
		progress_note("not-after", "%s", when);
	}
	BIO_free(b);
	OPENSSL_free(hex);
	free(ku);
}

void
current_print(FILE *f, const struct tok *t, const struct tok_key *k, X509 *cert)
{
	char *ku = NULL, *cu = NULL, *hex = NULL;
	BIO *b = BIO_new_fp(f, BIO_NOCLOSE);

	if (tok_object_uri(t, k, "private", &ku) == 0)
		fprintf(f, "key:         %s\n", ku);
	if (cert == NULL)
		goto out;
	if (tok_object_uri(t, k, "cert", &cu) == 0)
		fprintf(f, "certificate: %s\n", cu);
	if (b != NULL) {
		BIO_printf(b, "subject:     ");
		X509_NAME_print_ex(b, X509_get_subject_name(cert), 0,
		                   XN_FLAG_SEP_COMMA_PLUS | ASN1_STRFLGS_RFC2253);
		BIO_printf(b, "\nissuer:      ");
		X509_NAME_print_ex(b, X509_get_issuer_name(cert), 0,
		                   XN_FLAG_SEP_COMMA_PLUS | ASN1_STRFLGS_RFC2253);
		BIO_printf(b, "\n");
		BIO_flush(b);
	}
	if ((hex = current_serial_hex(cert)) != NULL)
		fprintf(f, "serial:      %s\n", hex);
	print_time(f, "not before:  ", X509_get0_notBefore(cert));
	print_time(f, "not after:   ", X509_get0_notAfter(cert));
out:
	fflush(f);
	BIO_free(b);
	OPENSSL_free(hex);
	free(ku);
	free(cu);
}

int
current_find(struct tok *t, struct tok_key **keys, size_t n, int valid_only, size_t *which,
             X509 **cert)
{
	size_t i, bi = 0;
	X509 *x = NULL, *best = NULL;
	int r;

	for (i = 0; i < n; i++) {
		if ((r = tok_find_cert(t, keys[i], &x)) == P11E_ERR_NOTFOUND)
			continue;
		if (r != 0)
			goto out;
		if ((!valid_only || current_valid_now(x)) &&
		    EVP_PKEY_eq(X509_get0_pubkey(x), keys[i]->pub) == 1 &&
		    (best == NULL || tok_cert_newer(x, best))) {
			X509_free(best);
			best = x;
			bi = i;
		} else {
			X509_free(x);
		}
		x = NULL;
	}
	if (best == NULL) {
		r = P11E_ERR_NOTFOUND;
		goto out;
	}
	*which = bi;
	*cert = best;
	best = NULL;
	r = 0;
out:
	X509_free(best);
	return r;
}

int
current_time_t(const ASN1_TIME *a, time_t *out)
{
	struct tm tmv;

	memset(&tmv, 0, sizeof(tmv));
	if (ASN1_TIME_to_tm(a, &tmv) != 1)
		return P11E_ERR_MALFORMED;
	*out = timegm(&tmv);
	return 0;
}

/* The jitter seed: SHA-256 of the certificate serial and the token serial. */
static uint64_t
due_seed(const struct tok *t, X509 *cert)
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(cert);
	const char *ts = tok_get_info(t)->serial;
	unsigned char d[32];
	uint64_t seed = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int i;

	if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, ASN1_STRING_get0_data(sn), (size_t)ASN1_STRING_length(sn)) == 1 &&
	    EVP_DigestUpdate(ctx, ts, strlen(ts)) == 1 && EVP_DigestFinal_ex(ctx, d, NULL) == 1)
		for (i = 0; i < 8; i++)
			seed = seed << 8 | d[i];
	EVP_MD_CTX_free(ctx);
	return seed;
}

int
current_due(const struct conf *c, const struct tok *t, X509 *cert, time_t *due, char *why,
            size_t why_len)
{
	struct schedule_policy p;
	time_t nb, na;

	if (current_time_t(X509_get0_notBefore(cert), &nb) != 0 ||
	    current_time_t(X509_get0_notAfter(cert), &na) != 0) {
		log_error("cannot read the validity dates of the certificate on token '%s'",
		          tok_get_info(t)->label);
		return P11E_ERR_MALFORMED;
	}
	schedule_policy_from_conf(c, &p);
	*due = schedule_due(&p, nb, na, due_seed(t, cert), why, why_len);
	return 0;
}

int
current_view_open(const struct conf *c, int valid_only, struct current_view *v)
{
	int r;

	memset(v, 0, sizeof(*v));
	if ((r = current_open_token(c, &v->t)) != 0 ||
	    (r = tok_find_keys(v->t, c->key_label, &v->keys, &v->n)) != 0)
		return r;
	return current_find(v->t, v->keys, v->n, valid_only, &v->cur, &v->cert);
}

void
current_view_close(struct current_view *v)
{
	X509_free(v->cert);
	tok_keys_free(v->keys, v->n);
	tok_close(v->t);
	memset(v, 0, sizeof(*v));
}
