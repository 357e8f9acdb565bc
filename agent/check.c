/*
 * check.c: `check`, the connection test: transport, capabilities, the CA
 * chain and the RA certificates with their roles, the trust decision, the
 * NDES challenge page.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ca.h"
#include "challenge.h"
#include "enroll.h"
#include "err.h"
#include "log.h"
#include "secret.h"

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

/* What the challenge page says without credentials, or with them and --challenge. */
static int
check_challenge_page(const struct conf *c, const struct ca_info *ci, int fetch)
{
	int r;
	struct http_resp *resp = NULL;
	struct http_opts o = ci->http;
	char *ch = NULL, *thumb = NULL;
	unsigned char d[16];
	unsigned int dl = 0;
	char hex[33];
	size_t i, digits = 0, upper = 0, lower = 0, other = 0;

	printf("challenge URL: %s (user %s)\n", c->challenge_url, c->challenge_user);
	if (!fetch) {
		o.max_body = 256 * 1024;
		if ((r = http_get(c->challenge_url, &o, &resp)) != 0) {
			printf("  FAILED: unreachable (see above)\n");
			return r;
		}
		if (resp->status == 401)
			printf(
			    "  reachable, asks for authentication; not tried: `check --challenge` "
			    "logs in and spends one one-time challenge\n");
		else
			printf("  answered HTTP %ld without credentials (expected 401)\n",
			       resp->status);
		http_resp_free(resp);
		return 0;
	}
	if ((r = challenge_fetch(c, &ch, &thumb)) != 0) {
		printf("  FAILED (see above)\n");
		return r;
	}
	for (i = 0; ch[i] != '\0'; i++) {
		if (ch[i] >= '0' && ch[i] <= '9')
			digits++;
		else if (ch[i] >= 'A' && ch[i] <= 'Z')
			upper++;
		else if (ch[i] >= 'a' && ch[i] <= 'z')
			lower++;
		else
			other++;
	}
	printf("  authenticated; obtained a challenge of %zu characters (%zu digits, %zu upper, "
	       "%zu lower, %zu other); it is spent\n",
	       i, digits, upper, lower, other);
	if (thumb != NULL) {
		if (scep_cert_digest(ci->ca->ca, EVP_md5(), d, &dl) == 0) {
			for (i = 0; i < dl; i++)
				sprintf(hex + 2 * i, "%02X", d[i]);
			printf("  page's CA thumbprint %s: %s\n", thumb,
			       strcasecmp(hex, thumb) == 0 ? "matches the CA's MD5"
			                                   : "differs from the CA's MD5 above");
		}
	}
	secret_free(ch);
	free(thumb);
	return 0;
}

int
check_run(const struct conf *c, int fetch_challenge)
{
	int r, trust = 0;
	struct ca_info *ci = NULL;
	char caps[256];

	printf("server:        %s\n", c->scep_url);
	printf("transport:     %s\n",
	       strncasecmp(c->scep_url, "https:", 6) != 0
	           ? "http, no TLS (the SCEP messages are signed and encrypted)"
	       : c->ca_file != NULL ? "https, server verified against [scep] ca_file"
	                            : "https, server verified against the system trust store");
	printf("proxy:         %s\n", !c->use_proxy ? "none (use_proxy = no)"
	                              : c->proxy    ? c->proxy
	                                            : "from the environment, if set");
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
	if (r == 0 && c->challenge_url != NULL)
		r = check_challenge_page(c, ci, fetch_challenge);
out:
	ca_info_free(ci);
	return r;
}
