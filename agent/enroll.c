/*
 * enroll.c: the enrollment flow:
 * token check -> caps, CA certs, trust -> login, key -> CSR -> pkiMessage ->
 * CertRep -> checks -> certificate on the token (read back) -> files.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "csr.h"
#include "enroll.h"
#include "err.h"
#include "log.h"
#include "scep.h"
#include "secret.h"
#include "store.h"
#include "tok.h"
#include "uri.h"

/* Where the time of one enrollment goes, in ms (shown with -v; make bench reads it). */
struct timing {
	double token, keygen, csr, network, store;
};

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int
enroll_open_token(const struct conf *c, struct tok **out)
{
	int r;
	struct tok_uri *u = NULL;
	const char *module;

	if ((r = tok_uri_parse(c->token_uri, &u)) != 0)
		return r;
	module = u->module_path ? u->module_path : c->module;
	if (module == NULL) {
		log_error("%s: [token] module is not set and the URI has no module-path", c->path);
		r = P11E_ERR_CONFIG;
	} else {
		r = tok_open(module, u, out);
	}
	tok_uri_free(u);
	return r;
}

int
enroll_cert_valid_now(X509 *cert)
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

void
enroll_print_cert(FILE *f, const struct tok *t, const struct tok_key *k, X509 *cert)
{
	char *ku = NULL, *cu = NULL, *hex = NULL;
	BIO *b = BIO_new_fp(f, BIO_NOCLOSE);
	BIGNUM *bn = NULL;

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
	if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL)) != NULL &&
	    (hex = BN_bn2hex(bn)) != NULL)
		fprintf(f, "serial:      %s\n", hex);
	print_time(f, "not before:  ", X509_get0_notBefore(cert));
	print_time(f, "not after:   ", X509_get0_notAfter(cert));
out:
	fflush(f);
	BIO_free(b);
	BN_free(bn);
	OPENSSL_free(hex);
	free(ku);
	free(cu);
}

/* A key of this profile that already holds a valid certificate, if any. */
static int
find_enrolled(struct tok *t, struct tok_key **keys, size_t n, size_t *which, X509 **cert)
{
	size_t i;
	X509 *x = NULL;
	int r;

	for (i = 0; i < n; i++) {
		if ((r = tok_find_cert(t, keys[i], &x)) == P11E_ERR_NOTFOUND)
			continue;
		if (r != 0)
			return r;
		if (enroll_cert_valid_now(x) &&
		    EVP_PKEY_eq(X509_get0_pubkey(x), keys[i]->pub) == 1) {
			*which = i;
			*cert = x;
			return 0;
		}
		X509_free(x);
		x = NULL;
	}
	return P11E_ERR_NOTFOUND;
}

static int
key_matches_spec(const struct tok_key *k, const struct conf *c)
{
	return k->type == c->key_type && EVP_PKEY_get_bits(k->pub) == c->key_bits;
}

/* Reuses a key of the profile left without certificate, or generates one. */
static int
get_key(struct tok *t, const struct conf *c, struct tok_key **out)
{
	int r;
	struct tok_key **keys = NULL;
	size_t n = 0, i;
	X509 *x = NULL;
	struct tok_keyspec spec = {c->key_type, c->key_bits, c->key_curve};

	if ((r = tok_find_keys(t, c->key_label, &keys, &n)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		if (keys[i]->priv_handle == 0 || !key_matches_spec(keys[i], c))
			continue;
		r = tok_find_cert(t, keys[i], &x);
		X509_free(x);
		x = NULL;
		if (r == P11E_ERR_NOTFOUND) {
			log_info("reusing key '%s' left without certificate by an earlier attempt",
			         c->key_label);
			*out = keys[i];
			keys[i] = NULL;
			r = 0;
			goto out;
		}
		if (r != 0)
			goto out;
	}
	log_info("generating a %s key on token '%s'", c->key_type_str, tok_get_info(t)->label);
	r = tok_generate_key(t, &spec, c->key_label, out);
out:
	tok_keys_free(keys, n);
	return r;
}

static int
read_challenge(const struct conf *c, char **out)
{
	*out = NULL;
	if (c->challenge != NULL)
		return secret_dup(c->challenge, out);
	if (c->challenge_file != NULL)
		return secret_read_file(c->challenge_file, "challenge file", out);
	return 0;
}

/* transactionID: hex SHA-256 of the public key (RFC 8894 3.2.1.1). */
static int
make_txid(EVP_PKEY *pub, char txid[65])
{
	unsigned char *der = NULL, d[32];
	int n, i;

	if ((n = i2d_PUBKEY(pub, &der)) <= 0)
		return P11E_ERR_INTERNAL;
	if (!EVP_Digest(der, (size_t)n, d, NULL, EVP_sha256(), NULL)) {
		OPENSSL_free(der);
		return P11E_ERR_INTERNAL;
	}
	OPENSSL_free(der);
	for (i = 0; i < 32; i++)
		sprintf(txid + 2 * i, "%02X", d[i]);
	return 0;
}

static int
write_cert_file(const struct conf *c, X509 *cert)
{
	int r;
	char *pem = NULL, *dir = NULL, *slash;
	size_t len = 0;

	if (c->cert_file == NULL)
		return 0;
	if ((dir = strdup(c->cert_file)) == NULL)
		return P11E_ERR_ALLOC;
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if ((r = store_mkdirs(dir, 0755)) != 0)
			goto out;
	}
	if ((r = store_cert_pem(cert, &pem, &len)) != 0)
		goto out;
	r = store_write_atomic(c->cert_file, pem, len, 0644);
out:
	free(pem);
	free(dir);
	return r;
}

/* Request, CertRep, checks: *issued on SUCCESS. */
static int
exchange(const struct conf *c, const struct ca_info *ci, struct tok *t, const struct tok_key *key,
         const char *challenge, X509 **issued, struct timing *tm)
{
	int r = P11E_ERR_INTERNAL, n = 0, weak = 0;
	EVP_PKEY *tokkey = NULL, *transient = NULL, *signer;
	X509_REQ *req = NULL;
	X509 *self = NULL;
	char txid[65];
	unsigned char *csr = NULL, *msg = NULL, *rep_der = NULL;
	size_t msg_len = 0, rep_len = 0;
	struct scep_req sr;
	struct scep_rep *rep = NULL;
	STACK_OF(X509) *got = NULL;
	double t0 = now_ms();

	if ((r = tok_key_evp(t, key, &tokkey)) != 0)
		goto out;
	if ((r = csr_build(c, key->pub, tokkey, challenge, &req)) != 0)
		goto out;
	signer = tokkey;
	if (key->type != CONF_KEY_RSA) {
		/* SCEP's envelope needs an RSA key: a transient one carries the
		 * exchange; the CSR inside is the EC token key's. */
		if ((transient = EVP_RSA_gen(2048)) == NULL) {
			log_openssl(LOG_LVL_ERROR, "cannot generate the transient RSA key");
			r = P11E_ERR_INTERNAL;
			goto out;
		}
		signer = transient;
		log_debug("EC key: the SCEP exchange uses a transient RSA-2048 key");
	}
	if ((r = csr_selfsigned(req, signer == tokkey ? key->pub : transient, signer, &self)) != 0)
		goto out;
	if ((n = i2d_X509_REQ(req, &csr)) <= 0 || (r = make_txid(key->pub, txid)) != 0) {
		r = P11E_ERR_INTERNAL;
		goto out;
	}
	memset(&sr, 0, sizeof(sr));
	sr.msg_type = SCEP_MSG_PKCSREQ;
	sr.txid = txid;
	if (RAND_bytes(sr.nonce, sizeof(sr.nonce)) != 1) {
		r = P11E_ERR_INTERNAL;
		goto out;
	}
	sr.signer_cert = self;
	sr.signer_key = signer;
	sr.md = ca_digest(ci);
	sr.recipient = ci->ca->ra_enc;
	sr.cipher = ca_cipher(ci);
	sr.inner = csr;
	sr.inner_len = (size_t)n;
	log_debug("PKCSReq transactionID %s, %s, %s", txid, EVP_CIPHER_get0_name(sr.cipher),
	          EVP_MD_get0_name(sr.md));
	if ((r = scep_req_build(&sr, &msg, &msg_len)) != 0)
		goto out;
	tm->csr = now_ms() - t0;
	t0 = now_ms();
	if ((r = ca_pkioperation(c, ci, msg, msg_len, &rep_der, &rep_len)) != 0)
		goto out;
	tm->network += now_ms() - t0;
	t0 = now_ms();
	if ((r = scep_rep_parse(rep_der, rep_len, ci->ca->certs, txid, sr.nonce, &rep)) != 0)
		goto out;
	if (rep->status == SCEP_STATUS_FAILURE) {
		log_error("the CA rejected the request: failInfo %s (%d)%s%s%s",
		          rep->fail_info < 0 ? "absent" : scep_fail_info_str(rep->fail_info),
		          rep->fail_info, rep->fail_text ? ": \"" : "",
		          rep->fail_text ? rep->fail_text : "", rep->fail_text ? "\"" : "");
		if (challenge != NULL && rep->fail_info == 2)
			log_error("badRequest: the CA refused the request itself, e.g. a wrong or "
			          "used challenge ([scep] challenge_file) or its policy for this "
			          "subject; the CA's log tells which");
		r = P11E_ERR_REJECTED;
		goto out;
	}
	if (rep->status == SCEP_STATUS_PENDING) {
		log_error("the CA put the request on hold (PENDING, transactionID %s); "
		          "try again later",
		          txid);
		r = P11E_ERR_PENDING;
		goto out;
	}
	if ((r = scep_rep_decrypt(rep, signer, self, &got, &weak)) != 0)
		goto out;
	if (weak)
		log_warn("the server encrypted its answer with single DES; accepted, since the "
		         "envelope only carries the public certificate");
	if ((r = scep_pick_issued(got, key->pub, ci->ca->ca, ci->ca->certs, issued)) != 0)
		goto out;
	tm->store = now_ms() - t0;
	r = 0;
out:
	EVP_PKEY_free(tokkey);
	EVP_PKEY_free(transient);
	X509_REQ_free(req);
	X509_free(self);
	OPENSSL_clear_free(csr, (size_t)(n > 0 ? n : 0)); /* holds the challenge */
	OPENSSL_free(msg);
	free(rep_der);
	scep_rep_free(rep);
	sk_X509_pop_free(got, X509_free);
	return r;
}

int
enroll_run(const struct conf *c, const struct enroll_opts *o)
{
	int r, trust = 0;
	struct tok *t = NULL;
	struct tok_key **keys = NULL, *key = NULL;
	size_t n = 0, which = 0;
	struct ca_info *ci = NULL;
	char *pin = NULL, *challenge = NULL;
	X509 *cert = NULL, *back = NULL;
	struct timing tm = {0, 0, 0, 0, 0};
	double t0 = now_ms(), t1 = 0;

	if (c->pin_file == NULL) {
		log_error("%s: [token] pin_file is required to enroll", c->path);
		return P11E_ERR_CONFIG;
	}
	if ((r = enroll_open_token(c, &t)) != 0)
		goto out;
	if ((r = tok_find_keys(t, c->key_label, &keys, &n)) != 0)
		goto out;
	if ((r = find_enrolled(t, keys, n, &which, &cert)) == 0) {
		log_info("token '%s' already holds a valid certificate for key '%s'; nothing to do",
		         tok_get_info(t)->label, c->key_label);
		enroll_print_cert(stdout, t, keys[which], cert);
		goto out;
	}
	if (r != P11E_ERR_NOTFOUND)
		goto out;
	/* Secrets are checked before anything is spent: the CA, a login, a key. */
	if ((r = secret_read_file(c->pin_file, "PIN file", &pin)) != 0 ||
	    (r = read_challenge(c, &challenge)) != 0)
		goto out;
	tm.token = now_ms() - t0;
	t0 = now_ms();
	if ((r = ca_fetch(c, &ci)) != 0)
		goto out;
	tm.network = now_ms() - t0;
	if ((r = ca_check_trust(c, ci, 1, &trust)) != 0 || (r = ca_write_trust(c, ci)) != 0)
		goto out;
	t0 = now_ms();
	r = tok_login(t, pin, o->allow_final_pin_try);
	secret_free(pin);
	pin = NULL;
	if (r != 0)
		goto out;
	tm.token += (t1 = now_ms()) - t0;
	if ((r = get_key(t, c, &key)) != 0)
		goto out;
	tm.keygen = now_ms() - t1;
	if ((r = exchange(c, ci, t, key, challenge, &cert, &tm)) != 0)
		goto out;
	t0 = now_ms();
	if ((r = tok_store_cert(t, key, cert)) != 0)
		goto out;
	if ((r = tok_find_cert(t, key, &back)) != 0 || X509_cmp(back, cert) != 0) {
		log_error("the certificate stored on token '%s' does not read back",
		          tok_get_info(t)->label);
		r = P11E_ERR_TOKEN;
		goto out;
	}
	if ((r = write_cert_file(c, cert)) != 0)
		goto out;
	tm.store += now_ms() - t0;
	log_info("enrolled: certificate stored on token '%s' next to its key",
	         tok_get_info(t)->label);
	log_debug("timing (ms): token open+login %.1f, key %.1f, CSR+sign %.1f, "
	          "network+server %.1f, decrypt+check+store %.1f",
	          tm.token, tm.keygen, tm.csr, tm.network, tm.store);
	enroll_print_cert(stdout, t, key, cert);
	r = 0;
out:
	secret_free(pin);
	secret_free(challenge);
	X509_free(cert);
	X509_free(back);
	tok_keys_free(keys, n);
	tok_key_free(key);
	ca_info_free(ci);
	tok_close(t);
	return r;
}
