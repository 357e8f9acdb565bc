/*
 * check.c: `check`, the connection test: transport, capabilities, the CA
 * chain and the RA certificates with their roles, the trust decision, the
 * NDES challenge page; as text or as one JSON document.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ca.h"
#include "challenge.h"
#include "check.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "secret.h"
#include "statefile.h"

/* What the challenge page said (check_page). */
struct page {
	int fetched;                             /* logged in (--challenge) */
	long status;                             /* without credentials: the HTTP status */
	size_t len, digits, upper, lower, other; /* the challenge's characters */
	int thumb;                               /* the page names a CA thumbprint */
	int thumb_matches;                       /* ...that is the issuing CA's MD5 */
};

/* One certificate as check shows it. */
struct shown {
	X509 *x;
	int role; /* enum scep_role */
	const char *source;
	char subject[512];
	char sha256[3 * 32 + 1], sha1[3 * 20 + 1], md5[3 * 16 + 1];
	char not_after[32];
};

static void
fill(const struct ca_info *ci, X509 *x, struct shown *s)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	struct tm tm;

	memset(s, 0, sizeof(*s));
	s->x = x;
	s->role = scep_ca_role(ci->ca, x);
	s->source = ca_cert_source(ci, x);
	scep_name_str(X509_get_subject_name(x), s->subject, sizeof(s->subject));
	if (scep_cert_digest(x, EVP_sha256(), d, &n) == 0)
		scep_hex_colon(d, n, s->sha256);
	if (scep_cert_digest(x, EVP_sha1(), d, &n) == 0)
		scep_hex_colon(d, n, s->sha1);
	if (scep_cert_digest(x, EVP_md5(), d, &n) == 0)
		scep_hex_colon(d, n, s->md5);
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm))
		strftime(s->not_after, sizeof(s->not_after), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The certificates in the order check shows them: the chain from the top, the RA, the rest. */
static int
gather(const struct ca_info *ci, struct shown **out, size_t *n)
{
	const struct scep_ca *ca = ci->ca;
	size_t cap = (size_t)sk_X509_num(ca->chain) + 2 + (size_t)sk_X509_num(ca->ignored), k = 0;
	struct shown *v = calloc(cap, sizeof(*v));
	int i;

	if (v == NULL)
		return P11E_ERR_ALLOC;
	for (i = sk_X509_num(ca->chain) - 1; i >= 0; i--)
		fill(ci, sk_X509_value(ca->chain, i), &v[k++]);
	if (ca->ra_enc != ca->ca)
		fill(ci, ca->ra_enc, &v[k++]);
	if (ca->ra_sign != ca->ca && ca->ra_sign != ca->ra_enc)
		fill(ci, ca->ra_sign, &v[k++]);
	for (i = 0; i < sk_X509_num(ca->ignored); i++)
		fill(ci, sk_X509_value(ca->ignored, i), &v[k++]);
	*out = v;
	*n = k;
	return 0;
}

/* The role as shown: the issuing CA of a one-certificate chain is its own root. */
static const char *
role_name(const struct ca_info *ci, const struct shown *s)
{
	if (s->role == SCEP_ROLE_ISSUING && sk_X509_num(ci->ca->chain) == 1 &&
	    scep_ca_complete_p(ci->ca))
		return "issuing CA (root)";
	return scep_role_str(s->role);
}

/* What the challenge page says without credentials, or with them and --challenge. */
static int
check_page(const struct conf *c, const struct ca_info *ci, int fetch, struct page *pg)
{
	int r;
	struct http_resp *resp = NULL;
	struct http_opts o = ci->http;
	char *ch = NULL, *thumb = NULL, hex[33];
	unsigned char d[16];
	unsigned int dl = 0, i;

	if (!fetch) {
		o.max_body = 256 * 1024;
		if ((r = http_get(c->challenge_url, &o, &resp)) != 0)
			return r;
		pg->status = resp->status;
		http_resp_free(resp);
		return 0;
	}
	if ((r = challenge_fetch(c, &ch, &thumb)) != 0)
		return r;
	pg->fetched = 1;
	for (pg->len = 0; ch[pg->len] != '\0'; pg->len++) {
		char x = ch[pg->len];
		if (x >= '0' && x <= '9')
			pg->digits++;
		else if (x >= 'A' && x <= 'Z')
			pg->upper++;
		else if (x >= 'a' && x <= 'z')
			pg->lower++;
		else
			pg->other++;
	}
	if (thumb != NULL && scep_cert_digest(ci->ca->ca, EVP_md5(), d, &dl) == 0) {
		for (i = 0; i < dl; i++)
			sprintf(hex + 2 * i, "%02X", d[i]);
		pg->thumb = 1;
		pg->thumb_matches = strcasecmp(hex, thumb) == 0;
	}
	secret_free(ch);
	free(thumb);
	return 0;
}

static const char *
trust_text(int how)
{
	switch (how) {
	case CA_TRUST_FINGERPRINT:
		return "fingerprint";
	case CA_TRUST_PIN:
		return "pin";
	case CA_TRUST_ROOT_FILE:
		return "root_file";
	default:
		return "unpinned";
	}
}

static void
print_text(const struct ca_info *ci, const struct shown *v, size_t n, int trust_r, int how)
{
	char caps[256], label[32];
	size_t i;

	scep_caps_str(ci->caps, caps, sizeof(caps));
	printf("capabilities:  %s%s\n", caps, ci->caps_answered ? "" : " (GetCACaps unanswered)");
	printf("requests:      %s, %s, %s\n", (ci->caps & SCEP_CAP_POST) ? "POST" : "GET",
	       EVP_CIPHER_get0_name(ca_cipher(ci)), EVP_MD_get0_name(ca_digest(ci)));
	printf("certificates:  %d from GetCACert; %s\n", sk_X509_num(ci->ca->certs),
	       scep_ca_complete_p(ci->ca) ? "the chain reaches a root"
	                                  : "the chain does NOT reach a root");
	for (i = 0; i < n; i++) {
		const struct shown *s = &v[i];
		snprintf(label, sizeof(label), "%s:", role_name(ci, s));
		printf("%-15s%s\n", label, s->subject);
		if (s->role == SCEP_ROLE_IGNORED) {
			printf(
			    "  why:         neither a CA of the chain nor an RA certificate that "
			    "it issued\n");
			continue;
		}
		printf("  SHA-256:     %s\n", s->sha256);
		printf("  SHA-1:       %s\n", s->sha1);
		if (s->role == SCEP_ROLE_ISSUING)
			printf("  MD5:         %s\n", s->md5);
		printf("  not after:   %s\n", s->not_after);
		printf("  from:        %s\n", s->source);
		if (s->x == ci->ca->ra_enc || s->x == ci->ca->ra_sign)
			printf("  does:        %s%s%s\n",
			       s->x == ci->ca->ra_enc ? "receives the requests (encrypted to it)"
			                              : "",
			       s->x == ci->ca->ra_enc && s->x == ci->ca->ra_sign ? ", " : "",
			       s->x == ci->ca->ra_sign ? "signs the replies" : "");
	}
	if (!scep_ca_complete_p(ci->ca))
		printf("root:          MISSING: the server does not send it; set [trust] root_file "
		       "(or fetch_aia = yes)\n");
	if (trust_r != 0)
		printf("trust:         FAILED: %s\n", log_last_error());
	else if (how == CA_TRUST_FINGERPRINT)
		printf(
		    "trust:         the chain holds the certificate [scep] ca_fingerprint names\n");
	else if (how == CA_TRUST_ROOT_FILE)
		printf("trust:         the chain ends at a root of [trust] root_file\n");
	else if (how == CA_TRUST_PIN)
		printf("trust:         the chain holds the CA pinned on first contact\n");
	else
		printf(
		    "trust:         not pinned yet: the first enroll will trust and pin this CA;\n"
		    "               compare the root's SHA-256 above and set [scep] "
		    "ca_fingerprint\n");
}

static void
print_page_text(const struct conf *c, int r, const struct page *pg)
{
	printf("challenge URL: %s (user %s)\n", c->challenge_url_shown, c->challenge_user);
	if (r != 0)
		printf("  FAILED: %s\n", log_last_error());
	else if (!pg->fetched && pg->status == 401)
		printf(
		    "  reachable, asks for authentication; not tried: `check --challenge` logs in "
		    "and spends one one-time challenge\n");
	else if (!pg->fetched)
		printf("  answered HTTP %ld without credentials (expected 401)\n", pg->status);
	else
		printf("  authenticated; obtained a challenge of %zu characters (%zu digits, %zu "
		       "upper, %zu lower, %zu other); it is spent\n",
		       pg->len, pg->digits, pg->upper, pg->lower, pg->other);
	if (r == 0 && pg->thumb)
		printf("  page's CA thumbprint %s\n",
		       pg->thumb_matches ? "matches the issuing CA's MD5"
		                         : "differs from the issuing CA's MD5 above");
}

static void
print_json(const struct conf *c, const struct ca_info *ci, const struct shown *v, size_t n,
           int trust_r, int how, int page_r, const struct page *pg)
{
	int first = 1, f2, f3;
	char caps[256];
	size_t i;

	printf("{");
	json_kstr(stdout, &first, "server", c->scep_url_shown);
	if (ci == NULL) {
		json_kstr(stdout, &first, "error", log_last_error());
		printf("}\n");
		return;
	}
	scep_caps_str(ci->caps, caps, sizeof(caps));
	json_kstr(stdout, &first, "capabilities", caps);
	json_kbool(stdout, &first, "capabilities_answered", ci->caps_answered);
	json_key(stdout, &first, "requests");
	f2 = 1;
	printf("{");
	json_kstr(stdout, &f2, "method", (ci->caps & SCEP_CAP_POST) ? "POST" : "GET");
	json_kstr(stdout, &f2, "cipher", EVP_CIPHER_get0_name(ca_cipher(ci)));
	json_kstr(stdout, &f2, "digest", EVP_MD_get0_name(ca_digest(ci)));
	printf("}");
	json_kulong(stdout, &first, "getcacert_certificates",
	            (unsigned long)sk_X509_num(ci->ca->certs));
	json_kbool(stdout, &first, "chain_complete", scep_ca_complete_p(ci->ca));
	json_key(stdout, &first, "certificates");
	printf("[");
	for (i = 0; i < n; i++) {
		const struct shown *s = &v[i];
		f3 = 1;
		printf("%s{", i ? "," : "");
		json_kstr(stdout, &f3, "role", scep_role_str(s->role));
		json_kstr(stdout, &f3, "subject", s->subject);
		json_kstr(stdout, &f3, "sha256", s->sha256);
		json_kstr(stdout, &f3, "sha1", s->sha1);
		if (s->role == SCEP_ROLE_ISSUING)
			json_kstr(stdout, &f3, "md5", s->md5);
		json_kstr(stdout, &f3, "not_after", s->not_after);
		json_kstr(stdout, &f3, "source", s->source);
		json_kbool(stdout, &f3, "receives_requests", s->x == ci->ca->ra_enc);
		json_kbool(stdout, &f3, "signs_replies", s->x == ci->ca->ra_sign);
		printf("}");
	}
	printf("]");
	json_key(stdout, &first, "trust");
	f2 = 1;
	printf("{");
	json_kbool(stdout, &f2, "ok", trust_r == 0);
	json_kstr(stdout, &f2, "how", trust_r == 0 ? trust_text(how) : NULL);
	json_kstr(stdout, &f2, "error", trust_r == 0 ? NULL : log_last_error());
	printf("}");
	if (c->challenge_url != NULL && trust_r == 0) {
		json_key(stdout, &first, "challenge_page");
		f2 = 1;
		printf("{");
		json_kstr(stdout, &f2, "url", c->challenge_url_shown);
		json_kstr(stdout, &f2, "user", c->challenge_user);
		json_kbool(stdout, &f2, "ok", page_r == 0);
		json_kstr(stdout, &f2, "error", page_r == 0 ? NULL : log_last_error());
		if (page_r == 0 && !pg->fetched)
			json_klong(stdout, &f2, "http_status", pg->status);
		json_kbool(stdout, &f2, "challenge_fetched", pg->fetched);
		if (pg->fetched)
			json_kulong(stdout, &f2, "challenge_length", (unsigned long)pg->len);
		if (pg->thumb) {
			json_key(stdout, &f2, "thumbprint_matches");
			printf("%s", pg->thumb_matches ? "true" : "false");
		}
		printf("}");
	}
	printf("}\n");
}

int
check_run(const struct conf *c, int fetch_challenge, int json)
{
	int r, trust_r = 0, how = 0, page_r = 0;
	struct ca_info *ci = NULL;
	struct shown *v = NULL;
	struct page pg;
	size_t n = 0;

	memset(&pg, 0, sizeof(pg));
	if (!json) {
		printf("server:        %s\n", c->scep_url_shown);
		printf("transport:     %s\n",
		       strncasecmp(c->scep_url, "https:", 6) != 0
		           ? "http, no TLS (the SCEP messages are signed and encrypted)"
		       : c->ca_file != NULL
		           ? "https, server verified against [scep] ca_file"
		           : "https, server verified against the system trust store");
		printf("proxy:         %s\n", !c->use_proxy ? "none (use_proxy = no)"
		                              : c->proxy    ? c->proxy_shown
		                                            : "from the environment, if set");
	}
	if ((r = statefile_check_dirs(c)) != 0 || (r = ca_fetch(c, &ci)) != 0) {
		if (json)
			print_json(c, NULL, NULL, 0, r, 0, 0, NULL);
		goto out;
	}
	if ((r = gather(ci, &v, &n)) != 0)
		goto out;
	log_clear_last_error();
	trust_r = ca_check_trust(c, ci, 0, &how);
	if (trust_r == 0 && c->challenge_url != NULL) {
		log_clear_last_error();
		page_r = check_page(c, ci, fetch_challenge, &pg);
	}
	if (json) {
		print_json(c, ci, v, n, trust_r, how, page_r, &pg);
	} else {
		print_text(ci, v, n, trust_r, how);
		if (trust_r == 0 && c->challenge_url != NULL)
			print_page_text(c, page_r, &pg);
	}
	r = trust_r != 0 ? trust_r : page_r;
out:
	free(v);
	ca_info_free(ci);
	return r;
}
