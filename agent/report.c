/*
 * report.c: `check` (connection test) and `status` (what the token holds).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ca.h"
#include "enroll.h"
#include "err.h"
#include "log.h"
#include "tok.h"

static void
print_name(const char *label, X509 *x)
{
	BIO *b = BIO_new_fp(stdout, BIO_NOCLOSE);

	if (b == NULL)
		return;
	BIO_printf(b, "%s", label);
	X509_NAME_print_ex(b, X509_get_subject_name(x), 0,
	                   XN_FLAG_SEP_COMMA_PLUS | ASN1_STRFLGS_RFC2253);
	BIO_printf(b, "\n");
	BIO_free(b);
}

static void
print_digest(const char *label, X509 *x, const EVP_MD *md)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	char hex[3 * EVP_MAX_MD_SIZE + 1];

	if (scep_cert_digest(x, md, d, &n) != 0)
		return;
	scep_hex_colon(d, n, hex);
	printf("%s%s\n", label, hex);
}

int
check_run(const struct conf *c)
{
	int r, trust = 0;
	struct ca_info *ci = NULL;
	char caps[256];

	printf("server:        %s\n", c->scep_url);
	if ((r = ca_fetch(c, &ci)) != 0)
		goto out;
	scep_caps_str(ci->caps, caps, sizeof(caps));
	printf("capabilities:  %s%s\n", caps, ci->caps_answered ? "" : " (GetCACaps unanswered)");
	printf("requests:      %s, %s, %s\n", (ci->caps & SCEP_CAP_POST) ? "POST" : "GET",
	       EVP_CIPHER_get0_name(ca_cipher(ci)), EVP_MD_get0_name(ca_digest(ci)));
	print_name("CA:            ", ci->ca->ca);
	print_digest("  SHA-256:     ", ci->ca->ca, EVP_sha256());
	print_digest("  SHA-1:       ", ci->ca->ca, EVP_sha1());
	print_digest("  MD5:         ", ci->ca->ca, EVP_md5());
	print_name("RA encrypt:    ", ci->ca->ra_enc);
	print_name("RA sign:       ", ci->ca->ra_sign);
	printf("certificates:  %d from GetCACert\n", sk_X509_num(ci->ca->certs));
	r = ca_check_trust(c, ci, 0, &trust);
	if (r != 0)
		printf("trust:         FAILED (see above)\n");
	else if (trust == CA_TRUST_FINGERPRINT)
		printf("trust:         CA matches [scep] ca_fingerprint\n");
	else if (trust == CA_TRUST_PIN)
		printf("trust:         CA matches the one pinned on first contact\n");
	else
		printf(
		    "trust:         not pinned yet: the first enroll will trust and pin this CA;\n"
		    "               compare its SHA-256 above and set [scep] ca_fingerprint\n");
out:
	ca_info_free(ci);
	return r;
}

int
status_run(const struct conf *c)
{
	int r;
	struct tok *t = NULL;
	struct tok_key **keys = NULL;
	size_t n = 0, i;
	X509 *x = NULL;
	const struct tok_info *ti;

	if ((r = enroll_open_token(c, &t)) != 0)
		goto out;
	ti = tok_get_info(t);
	printf("token:       '%s' (%s %s, serial %s)\n", ti->label, ti->manufacturer, ti->model,
	       ti->serial);
	printf("profile:     key label '%s', %s\n", c->key_label, c->key_type_str);
	if ((r = tok_find_keys(t, c->key_label, &keys, &n)) != 0)
		goto out;
	if (n == 0)
		printf("state:       not enrolled (no key with this label)\n");
	for (i = 0; i < n; i++) {
		r = tok_find_cert(t, keys[i], &x);
		if (r != 0 && r != P11E_ERR_NOTFOUND)
			goto out;
		if (n > 1)
			printf("\n");
		if (x == NULL)
			printf("state:       key without certificate (enroll will reuse it)\n");
		else if (enroll_cert_valid_now(x))
			printf("state:       enrolled, certificate valid\n");
		else
			printf(
			    "state:       certificate not valid now (expired or not yet valid)\n");
		enroll_print_cert(stdout, t, keys[i], x);
		X509_free(x);
		x = NULL;
	}
	r = 0;
out:
	X509_free(x);
	tok_keys_free(keys, n);
	tok_close(t);
	return r;
}
