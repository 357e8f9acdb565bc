/*
 * ca.c: the SCEP server seen from the agent: caps, CA certificates, pinning,
 * trust directory, PKIOperation over HTTP.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "ca_next.h"
#include "err.h"
#include "log.h"
#include "netproc.h"
#include "store.h"

#define MAX_CACERT (1024 * 1024)
#define MAX_CERTREP (1024 * 1024)
#define MAX_CAPS (64 * 1024)
#define PIN_FILE "ca.pin"

static char *
op_url(const char *base, const char *op, const char *msg)
{
	size_t n = strlen(base) + strlen(op) + (msg ? strlen(msg) : 0) + 32;
	char *u = malloc(n);

	if (u != NULL)
		snprintf(u, n, "%s%soperation=%s%s%s", base, strchr(base, '?') ? "&" : "?", op,
		         msg ? "&message=" : "", msg ? msg : "");
	return u;
}

/* GetCACaps; any failure means "no capabilities" (RFC 8894 3.5.2). */
static int
fetch_caps(const struct conf *c, struct ca_info *ci)
{
	int r;
	struct http_resp *resp = NULL;
	char *url = NULL, caps[256];

	if ((url = op_url(c->scep_url, "GetCACaps", NULL)) == NULL)
		return P11E_ERR_ALLOC;
	ci->http.max_body = MAX_CAPS;
	ci->http.quiet = 1;
	r = http_get(url, &ci->http, &resp);
	ci->http.quiet = 0;
	if (r == 0 && resp->status == 200 && resp->len > 0) {
		ci->caps = scep_caps_parse(resp->body, resp->len);
		ci->caps_answered = 1;
	} else if (r == 0 || r == P11E_ERR_NETWORK) {
		/* Old NDES closes the connection instead of answering. */
		log_info("GetCACaps %s: assuming no capabilities (3DES, SHA-1, GET)",
		         r != 0 ? "got no answer" : "failed");
		if (r == 0)
			log_debug("GetCACaps answered HTTP %ld, %zu bytes", resp->status,
			          resp->len);
		r = 0;
	}
	scep_caps_str(ci->caps, caps, sizeof(caps));
	log_debug("server capabilities: %s", caps);
	http_resp_free(resp);
	free(url);
	return r;
}

/* "YYYY-MM-DD" of t. */
static void
day(const ASN1_TIME *t, char *buf, size_t len)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm) || strftime(buf, len, "%Y-%m-%d", &tm) == 0)
		snprintf(buf, len, "?");
}

/* At -v: what GetCACert sent that plays no role (a stranger's certificate). */
static void
log_ignored(const struct scep_ca *ca)
{
	char subj[256];
	int i;

	for (i = 0; i < sk_X509_num(ca->ignored); i++) {
		scep_name_str(X509_get_subject_name(sk_X509_value(ca->ignored, i)), subj,
		              sizeof(subj));
		log_debug("GetCACert: ignoring %s: neither a CA of the chain nor an RA certificate "
		          "that it issued",
		          subj);
	}
}

/* GetNextCACert when advertised; anything but a verified next CA only logs. */
static int
fetch_next(const struct conf *c, struct ca_info *ci)
{
	int r;
	struct http_resp *resp = NULL;
	char *url = NULL, fp[3 * 32 + 1], nb[40] = "?", na[40] = "?";
	unsigned char d[32];

	if (!(ci->caps & SCEP_CAP_NEXTCA)) {
		log_debug("GetNextCACert not advertised: not looking for a next CA");
		return 0;
	}
	if ((url = op_url(c->scep_url, "GetNextCACert", "p11enroll")) == NULL)
		return P11E_ERR_ALLOC;
	ci->next_asked = 1;
	ci->http.max_body = MAX_CACERT;
	ci->http.quiet = 1;
	r = http_get(url, &ci->http, &resp);
	ci->http.quiet = 0;
	if (r == P11E_ERR_ALLOC)
		goto out;
	if (r != 0) {
		log_warn("GetNextCACert got no answer: looking for a next CA again next time");
	} else if (resp->status == 404 || (resp->status == 200 && resp->len == 0)) {
		log_debug("GetNextCACert: no next CA (HTTP %ld, %zu bytes): no rollover in "
		          "progress",
		          resp->status, resp->len);
	} else if (resp->status != 200) {
		log_warn("GetNextCACert failed: HTTP %ld; looking for a next CA again next time",
		         resp->status);
	} else if ((r = netproc_next_parse(resp->body, resp->len, ci->ca, &ci->next)) != 0) {
		/* a network process gone or distrusted stops the run (logged) */
		if (r == P11E_ERR_INTERNAL || r == P11E_ERR_ALLOC)
			goto out;
		log_warn("ignoring the next CA that %s offers: it is not trusted, and nothing is "
		         "written for it",
		         c->scep_url_shown);
	} else if ((r = scep_cert_digest(ci->next->ca, EVP_sha256(), d, NULL)) == 0) {
		scep_hex_colon(d, 32, fp);
		day(X509_get0_notBefore(ci->next->ca), nb, sizeof(nb));
		day(X509_get0_notAfter(ci->next->ca), na, sizeof(na));
		log_info("the CA announced its next CA (GetNextCACert, signed by the current "
		         "one), valid %s to %s, sha256:%s",
		         nb, na, fp);
	}
	r = r == P11E_ERR_ALLOC ? r : 0;
out:
	free(url);
	http_resp_free(resp);
	return r;
}

/* ca_share: the station's CA, who shared it, and when. */
static struct ca_info *shared_ci;
static pid_t shared_by;
static struct timespec shared_at;

void
ca_share(struct ca_info *ci)
{
	ca_info_free(shared_ci);
	/* As ca_fetch left it: what the station's ca_check_trust decided is the station's. */
	if (ci != NULL) {
		X509_free(ci->prev);
		ci->prev = NULL;
		ci->rolled = 0;
	}
	shared_ci = ci;
	shared_by = getpid();
	clock_gettime(CLOCK_MONOTONIC, &shared_at);
}

/* This process's copy of the station's CA, once, in a child forked in time; else NULL. */
static struct ca_info *
take_shared(void)
{
	struct ca_info *ci = shared_ci;
	struct timespec now;

	if (ci == NULL || getpid() == shared_by)
		return NULL;
	shared_ci = NULL;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec - shared_at.tv_sec > CA_SHARE_SECONDS) {
		ca_info_free(ci);
		return NULL;
	}
	log_debug("the CA as the station fetched it %lld s ago (GetCACert, GetCACaps%s)",
	          (long long)(now.tv_sec - shared_at.tv_sec),
	          ci->next_asked ? ", GetNextCACert" : "");
	return ci;
}

int
ca_fetch(const struct conf *c, struct ca_info **out)
{
	int r = P11E_ERR_ALLOC;
	struct ca_info *ci = NULL;
	struct http_resp *resp = NULL;
	char *url = NULL, reason[4 * HTTP_REASON_MAX + 1];

	if ((*out = take_shared()) != NULL)
		return 0;
	if ((ci = calloc(1, sizeof(*ci))) == NULL)
		return P11E_ERR_ALLOC;
	ci->http.timeout_s = c->timeout;
	ci->http.max_body = MAX_CACERT;
	ci->http.ca_file = c->ca_file;
	ci->http.no_proxy = !c->use_proxy;
	ci->http.proxy = c->proxy;
	/* GetCACert first: it tells whether the server is there at all, so that
	 * a missing GetCACaps answer can safely mean "no capabilities". */
	if ((url = op_url(c->scep_url, "GetCACert", "p11enroll")) == NULL)
		goto out;
	if ((r = http_get(url, &ci->http, &resp)) != 0)
		goto out;
	if (resp->status != 200) {
		http_resp_reason(resp, reason, sizeof(reason));
		log_error("GetCACert from %s failed: HTTP %ld%s%s%s (check [scep] url)",
		          c->scep_url_shown, resp->status, reason[0] ? ": \"" : "", reason,
		          reason[0] ? "\"" : "");
		r = P11E_ERR_NETWORK;
		goto out;
	}
	/* Its PKCS#7 bundle is taken apart in the network process. */
	if ((r = netproc_ca_parse(resp->body, resp->len, &ci->ca)) != 0 ||
	    (r = ca_complete_chain(c, ci)) != 0 ||
	    (r = scep_cert_digest(scep_ca_top(ci->ca), EVP_sha256(), ci->fp, NULL)) != 0 ||
	    (r = fetch_caps(c, ci)) != 0 || (r = fetch_next(c, ci)) != 0)
		goto out;
	log_ignored(ci->ca);
	ci->http.max_body = MAX_CERTREP;
	*out = ci;
	ci = NULL;
	r = 0;
out:
	free(url);
	http_resp_free(resp);
	ca_info_free(ci);
	return r;
}

void
ca_info_free(struct ca_info *ci)
{
	if (ci == NULL)
		return;
	scep_ca_free(ci->ca);
	scep_ca_free(ci->next);
	X509_free(ci->prev);
	sk_X509_pop_free(ci->roots, X509_free);
	sk_X509_pop_free(ci->aia, X509_free);
	free(ci);
}

/* The CA differs from anchor ("sha256:..."): is it the next CA verified under it? */
static int
rolled_over(const struct conf *c, struct ca_info *ci, const char *anchor, const char *hex)
{
	int rolled = 0;
	X509 *prev = NULL;

	if (ca_next_rolled(c, ci->ca->ca, anchor, &rolled, &prev) != 0 || !rolled)
		return 0;
	X509_free(ci->prev);
	ci->prev = prev;
	ci->rolled = 1;
	log_info("the server's CA (sha256:%s) is the next CA that %s announced and signed "
	         "in advance (GetNextCACert): accepting the rollover",
	         hex, anchor);
	return 1;
}

/* The chain must reach a root, verify, and end at a root of root_file when that is set. */
static int
judge_chain(const struct conf *c, const struct ca_info *ci)
{
	X509 *top = scep_ca_top(ci->ca);
	char why[512], s[256], iss[256], hex[3 * 32 + 1];
	int i;

	scep_name_str(X509_get_subject_name(top), s, sizeof(s));
	if (!scep_ca_complete_p(ci->ca)) {
		scep_name_str(X509_get_issuer_name(top), iss, sizeof(iss));
		log_error("the CA chain of %s ends at %s, issued by %s, a root that the server "
		          "does not send%s: set [trust] root_file to that root certificate (PEM)%s",
		          c->scep_url_shown, s, iss,
		          c->trust_root_file != NULL ? " and [trust] root_file does not hold" : "",
		          c->trust_fetch_aia ? ""
		                             : ", or fetch_aia = yes to fetch it from the URL the "
		                               "CA certificate names (AIA), if it names one");
		return P11E_ERR_CONFIG;
	}
	if (scep_ca_verify(ci->ca, why, sizeof(why)) != 0) {
		log_error("the CA chain of %s does not verify: %s; refusing it", c->scep_url_shown,
		          why);
		return P11E_ERR_VERIFY;
	}
	if (ci->roots == NULL)
		return 0;
	for (i = 0; i < sk_X509_num(ci->roots); i++)
		if (X509_cmp(sk_X509_value(ci->roots, i), top) == 0)
			return 0;
	scep_hex_colon(ci->fp, 32, hex);
	log_error("the CA chain of %s ends at the root %s (sha256:%s), which is not in "
	          "[trust] root_file %s: refusing it",
	          c->scep_url_shown, s, hex, c->trust_root_file);
	return P11E_ERR_VERIFY;
}

/* Whether anchor ("sha256:AB:..." or "sha1:...") names a certificate of the chain. */
static int
chain_has(const struct ca_info *ci, const char *anchor, int *yes)
{
	int i, r;

	*yes = 0;
	for (i = 0; i < sk_X509_num(ci->ca->chain) && !*yes; i++)
		if ((r = ca_next_is_anchor(sk_X509_value(ci->ca->chain, i), anchor, yes)) != 0)
			return r;
	return 0;
}

int
ca_check_trust(const struct conf *c, struct ca_info *ci, int pin_first_contact, int *how)
{
	int r, yes = 0;
	unsigned char d[32], *old = NULL;
	unsigned int dlen = 0;
	char hex[3 * 32 + 1], want[3 * 32 + 1], line[128], anchor[128], *path = NULL;
	const char *alg = c->ca_fp_alg == CONF_FP_SHA1 ? "sha1" : "sha256";
	size_t olen = 0;

	if ((r = judge_chain(c, ci)) != 0)
		return r;
	scep_hex_colon(ci->fp, 32, hex);
	if (c->ca_fp_len != 0) {
		scep_hex_colon(c->ca_fp, c->ca_fp_len, want);
		snprintf(anchor, sizeof(anchor), "%s:%s", alg, want);
		if ((r = chain_has(ci, anchor, &yes)) != 0)
			return r;
		if (!yes && rolled_over(c, ci, anchor, hex)) {
			log_warn("%s: [scep] ca_fingerprint names the previous CA; update it to\n"
			         "  ca_fingerprint = sha256:%s",
			         c->path, hex);
		} else if (!yes) {
			if ((r = scep_cert_digest(ci->ca->ca,
			                          c->ca_fp_alg == CONF_FP_SHA1 ? EVP_sha1()
			                                                       : EVP_sha256(),
			                          d, &dlen)) != 0)
				return r;
			scep_hex_colon(d, dlen, hex);
			log_error("no certificate of the server's CA chain matches [scep] "
			          "ca_fingerprint:\n  expected   %s:%s\n  issuing CA %s:%s%s\n"
			          "refusing to enroll (wrong server, or the fingerprint is wrong)",
			          alg, want, alg, hex,
			          sk_X509_num(ci->ca->chain) > 1 ? " (and its chain: see `check`)"
			                                         : "");
			return P11E_ERR_VERIFY;
		}
		*how = CA_TRUST_FINGERPRINT;
		return 0;
	}
	if (ci->roots != NULL) {
		*how = CA_TRUST_ROOT_FILE;
		return 0;
	}
	if ((path = store_path_join(c->state_dir, PIN_FILE)) == NULL)
		return P11E_ERR_ALLOC;
	snprintf(line, sizeof(line), "sha256:%s\n", hex);
	r = store_read_state(path, 4096, &old, &olen);
	if (r == 0) {
		snprintf(anchor, sizeof(anchor), "%.*s",
		         (int)(olen > 0 && old[olen - 1] == '\n' ? olen - 1 : olen),
		         (const char *)old);
		*how = CA_TRUST_PIN;
		if ((r = chain_has(ci, anchor, &yes)) != 0 || yes)
			goto out;
		if (!rolled_over(c, ci, anchor, hex)) {
			log_error("the server's CA chain (sha256:%s) does not hold the CA pinned "
			          "on first contact (%s: %s); refusing to enroll. If the CA really "
			          "changed, set [scep] ca_fingerprint or remove the pin file",
			          hex, path, anchor);
			r = P11E_ERR_VERIFY;
		} else if (pin_first_contact &&
		           (r = store_write_atomic(path, line, strlen(line), 0644)) == 0) {
			log_info("CA rolled over to sha256:%s: pin %s moved to it", hex, path);
		}
		goto out;
	}
	if (r != P11E_ERR_NOTFOUND)
		goto out;
	r = 0;
	*how = CA_TRUST_UNPINNED;
	if (!pin_first_contact)
		goto out;
	log_warn("no [scep] ca_fingerprint configured: trusting the CA met on first contact,\n"
	         "  SHA-256 fingerprint %s\n"
	         "  it is pinned from now on (%s); compare it with the CA's published fingerprint\n"
	         "  and set ca_fingerprint = sha256:%s",
	         hex, path, hex);
	if ((r = store_mkdirs(c->state_dir, 0700)) != 0 ||
	    (r = store_write_atomic(path, line, strlen(line), 0644)) != 0)
		goto out;
	*how = CA_TRUST_PINNED_NOW;
out:
	free(path);
	free(old);
	return r;
}

/* Trust-dir names of the chain and the RA certificates: ours, also when stale. */
static const char *const owned_names[] = {"ca",     "ca-int-#", "root", "ra",
                                          "ra-enc", "ra-sign",  "ca-#"};

int
ca_write_trust(const struct conf *c, const struct ca_info *ci)
{
	struct store_cert certs[16];
	char names[16][24];
	size_t n = 0;
	int i, r, nchain = sk_X509_num(ci->ca->chain);
	const struct scep_ca *ca = ci->ca;

	for (i = 0; i < nchain && n < 12; i++) {
		X509 *x = sk_X509_value(ca->chain, i);
		if (i == 0)
			snprintf(names[n], sizeof(names[n]), "ca");
		else if (i == nchain - 1 && scep_ca_role(ca, x) == SCEP_ROLE_ROOT)
			snprintf(names[n], sizeof(names[n]), "root");
		else
			snprintf(names[n], sizeof(names[n]), "ca-int-%d", i);
		certs[n].name = names[n];
		certs[n++].cert = x;
	}
	if (ca->ra_enc != ca->ca) {
		certs[n].name = ca->ra_enc == ca->ra_sign ? "ra" : "ra-enc";
		certs[n++].cert = ca->ra_enc;
	}
	if (ca->ra_sign != ca->ca && ca->ra_sign != ca->ra_enc) {
		certs[n].name = "ra-sign";
		certs[n++].cert = ca->ra_sign;
	}
	if (ci->next != NULL) {
		certs[n].name = "ca-next";
		certs[n++].cert = ci->next->ca;
	}
	if (ci->prev != NULL) {
		certs[n].name = "ca-prev";
		certs[n++].cert = ci->prev;
	}
	if (ci->next != NULL && (r = ca_next_save(c, ci->ca->ca, ci->next->ca)) != 0)
		return r;
	if ((r = store_trust_write(c->trust_dir, certs, n, owned_names,
	                           sizeof(owned_names) / sizeof(owned_names[0]))) != 0)
		return r;
	if (ci->next != NULL)
		log_info("next CA written to %s/ca-next.crt: certificates it issues are trusted "
		         "from now on",
		         c->trust_dir);
	return ci->next_asked ? ca_next_looked(c) : 0;
}

int
ca_rollover_check_at(const struct conf *c, time_t *when)
{
	return ca_next_check_at(c, when);
}

int
ca_refresh(const struct conf *c, int *rolled)
{
	int r, how = 0;
	struct ca_info *ci = NULL;

	*rolled = 0;
	if ((r = ca_fetch(c, &ci)) == 0 && (r = ca_check_trust(c, ci, 1, &how)) == 0 &&
	    (r = ca_write_trust(c, ci)) == 0)
		*rolled = ci->rolled;
	ca_info_free(ci);
	return r;
}

const EVP_CIPHER *
ca_cipher(const struct ca_info *ci)
{
	return (ci->caps & SCEP_CAP_AES) ? EVP_aes_128_cbc() : EVP_des_ede3_cbc();
}

const EVP_MD *
ca_digest(const struct ca_info *ci)
{
	return (ci->caps & SCEP_CAP_SHA256) ? EVP_sha256() : EVP_sha1();
}

static char *
b64url(const unsigned char *d, size_t len)
{
	size_t blen = 4 * ((len + 2) / 3) + 1, i, o = 0;
	char *b = malloc(blen), *u = NULL;

	if (b == NULL || EVP_EncodeBlock((unsigned char *)b, d, (int)len) < 0)
		goto out;
	if ((u = malloc(3 * strlen(b) + 1)) == NULL)
		goto out;
	for (i = 0; b[i] != '\0'; i++) {
		if (b[i] == '+' || b[i] == '/' || b[i] == '=')
			o += (size_t)sprintf(u + o, "%%%02X", (unsigned char)b[i]);
		else
			u[o++] = b[i];
	}
	u[o] = '\0';
out:
	free(b);
	return u;
}

int
ca_pkioperation(const struct conf *c, const struct ca_info *ci, const unsigned char *msg,
                size_t len, unsigned char **rep, size_t *rep_len)
{
	int r = P11E_ERR_ALLOC;
	char *url = NULL, *m = NULL, reason[4 * HTTP_REASON_MAX + 1];
	struct http_resp *resp = NULL;
	int post = (ci->caps & SCEP_CAP_POST) != 0;

	if (post)
		url = op_url(c->scep_url, "PKIOperation", NULL);
	else if ((m = b64url(msg, len)) != NULL)
		url = op_url(c->scep_url, "PKIOperation", m);
	if (url == NULL)
		goto out;
	log_debug("PKIOperation by %s (%zu bytes)", post ? "POST" : "GET", len);
	if (post)
		r = http_post(url, "application/x-pki-message", msg, len, &ci->http, &resp);
	else
		r = http_get(url, &ci->http, &resp);
	if (r != 0)
		goto out;
	if (resp->status != 200) {
		if (!post && (resp->status == 414 || resp->status == 404))
			log_error(
			    "PKIOperation failed: HTTP %ld: the request (%zu bytes in a GET "
			    "URL) was probably too long for the server, and it does not offer "
			    "POST",
			    resp->status, strlen(url));
		else {
			http_resp_reason(resp, reason, sizeof(reason));
			log_error("PKIOperation at %s failed: HTTP %ld%s%s%s", c->scep_url_shown,
			          resp->status, reason[0] ? ": \"" : "", reason,
			          reason[0] ? "\"" : "");
		}
		r = P11E_ERR_NETWORK;
		goto out;
	}
	if (resp->content_type == NULL || strcmp(resp->content_type, "application/x-pki-message"))
		log_debug("PKIOperation answered with content type %s",
		          resp->content_type ? resp->content_type : "(none)");
	*rep = resp->body;
	*rep_len = resp->len;
	resp->body = NULL;
	r = 0;
out:
	free(url);
	free(m);
	http_resp_free(resp);
	return r;
}
