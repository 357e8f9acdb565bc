/*
 * exchange.c: one SCEP round trip for a token key (PKCSReq or CertPoll).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "challenge.h"
#include "csr.h"
#include "err.h"
#include "exchange.h"
#include "log.h"
#include "netproc.h"
#include "progress.h"
#include "scep.h"

/* exchange_set_transient: the RSA key every EC exchange of this process uses, or NULL. */
static EVP_PKEY *shared_transient;

void
exchange_set_transient(EVP_PKEY *pkey)
{
	if (pkey != NULL && EVP_PKEY_up_ref(pkey) != 1)
		pkey = NULL;
	EVP_PKEY_free(shared_transient);
	shared_transient = pkey;
}

static void
report_failure(const struct scep_rep *rep, int had_challenge)
{
	const char *hr = rep->fail_text ? challenge_hresult_text(rep->fail_text) : NULL;

	log_error("the CA rejected the request: failInfo %s (%d)%s%s%s",
	          rep->fail_info < 0 ? "absent" : scep_fail_info_str(rep->fail_info),
	          rep->fail_info, rep->fail_text ? ": \"" : "",
	          rep->fail_text ? rep->fail_text : "", rep->fail_text ? "\"" : "");
	if (hr != NULL)
		log_error("%s", hr);
	else if (had_challenge && rep->fail_info == 2)
		log_error("badRequest: the CA refused the request itself, e.g. a wrong or used "
		          "challenge or its policy for this subject; the CA's log tells which");
}

/* At -v: who signed the reply and with which digest; SHA-1 is accepted with a warning
 * (once per process). */
static void
report_signature(const struct scep_rep *rep)
{
	static int warned_sha1;
	char subj[256];

	scep_name_str(X509_get_subject_name(rep->signer), subj, sizeof(subj));
	log_debug("reply signed by %s, digest %s", subj, rep->sig_md);
	if (strcasecmp(rep->sig_md, "SHA1") == 0 && !warned_sha1++)
		log_warn("the server signed its answer with SHA-1; accepted, as RFC 8894 allows, "
		         "but SHA-1 signatures can be forged: ask the CA to sign with SHA-256");
}

double
exchange_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* transactionID: hex SHA-256 of the public key (RFC 8894 3.2.1.1). */
static int
make_txid(EVP_PKEY *pub, char txid[129])
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

/* Request, CertRep, checks: *issued on SUCCESS. */
int
exchange_run(struct exchange *x, X509 **issued, struct timing *tm)
{
	const struct conf *c = x->c;
	const struct ca_info *ci = x->ci;
	const struct tok_key *key = x->key;
	const char *challenge = x->poll_txid ? NULL : x->challenge;
	X509_NAME *subject = NULL;
	int r = P11E_ERR_INTERNAL, n = 0, cipher = NID_undef, carrier;
	EVP_PKEY *tokkey = NULL, *transient = NULL, *oldkey = NULL, *signer;
	int req_type = x->msg_type != 0 ? x->msg_type : SCEP_MSG_PKCSREQ;
	X509_REQ *req = NULL;
	X509 *self = NULL;
	unsigned char *inner = NULL, *msg = NULL, *rep_der = NULL, *plain = NULL;
	size_t inner_len = 0, msg_len = 0, rep_len = 0, plain_len = 0;
	struct scep_req sr;
	struct scep_rep *rep = NULL;
	struct scep_env *env = NULL;
	STACK_OF(X509) *got = NULL;
	double t0 = exchange_now_ms();

	/* Each token key may do what this exchange needs of it and no more: the CSR's
	 * signature (not in a CertPoll), and for the key that carries the exchange (the
	 * current key in a renewal, else an RSA token key) the self-signed certificate's
	 * (none with a current certificate), the pkiMessage's and one decryption. */
	carrier = x->signer_key == NULL && key->type == TOK_KEY_RSA;
	if ((r = tok_key_evp(x->t, key,
	                     (x->poll_txid == NULL) + (carrier ? 1 + (x->signer_cert == NULL) : 0),
	                     carrier, &tokkey)) != 0)
		goto out;
	signer = tokkey;
	if (x->signer_key != NULL) {
		if ((r = tok_key_evp(x->t, x->signer_key, 1 + (x->signer_cert == NULL), 1,
		                     &oldkey)) != 0)
			goto out;
		signer = oldkey;
		log_debug("signing the request with the current certificate and its key");
	} else if (key->type != TOK_KEY_RSA) {
		/* SCEP's envelope needs an RSA key: a transient one carries the
		 * exchange; the CSR inside is the EC token key's. */
		if (shared_transient != NULL && EVP_PKEY_up_ref(shared_transient) == 1)
			transient = shared_transient;
		else if ((transient = EVP_RSA_gen(2048)) == NULL) {
			log_openssl(LOG_LVL_ERROR, "cannot generate the transient RSA key");
			r = P11E_ERR_INTERNAL;
			goto out;
		}
		signer = transient;
		log_debug("EC key: the SCEP exchange uses %s transient RSA-2048 key",
		          transient == shared_transient ? "this run's shared" : "a");
	}
	/* The public key goes into the request, the certificate and the transactionID
	 * from tokkey (or transient), not key->pub, the same key: OpenSSL encodes a key
	 * of its own kind (tokkey's RSA or EC_KEY) directly, a provider's through its
	 * encoder and decoder, which cost 1 to 2 ms of CPU an enrollment. */
	if (x->poll_txid == NULL) {
		if ((r = csr_build(c, tokkey, challenge, &req)) != 0)
			goto out;
		if ((n = i2d_X509_REQ(req, &inner)) <= 0 || (r = make_txid(tokkey, x->txid)) != 0) {
			r = P11E_ERR_INTERNAL;
			goto out;
		}
		inner_len = (size_t)n;
		if ((subject = X509_NAME_dup(X509_REQ_get_subject_name(req))) == NULL) {
			r = P11E_ERR_ALLOC;
			goto out;
		}
	} else {
		snprintf(x->txid, sizeof(x->txid), "%s", x->poll_txid);
		if ((r = csr_parse_dn(c->dn, &subject)) != 0 ||
		    (r = scep_issuer_and_subject(X509_get_subject_name(ci->ca->ca), subject, &inner,
		                                 &inner_len)) != 0)
			goto out;
	}
	if (x->signer_cert != NULL) {
		if (X509_up_ref(x->signer_cert) != 1) {
			r = P11E_ERR_INTERNAL;
			goto out;
		}
		self = x->signer_cert;
	} else if ((r = csr_selfsigned(subject, signer, &self)) != 0) {
		goto out;
	}
	memset(&sr, 0, sizeof(sr));
	sr.msg_type = x->poll_txid ? SCEP_MSG_CERTPOLL : req_type;
	sr.txid = x->txid;
	if (RAND_bytes(sr.nonce, sizeof(sr.nonce)) != 1) {
		r = P11E_ERR_INTERNAL;
		goto out;
	}
	sr.signer_cert = self;
	sr.signer_key = signer;
	sr.md = ca_digest(ci);
	sr.recipient = ci->ca->ra_enc;
	sr.cipher = ca_cipher(ci);
	sr.inner = inner;
	sr.inner_len = inner_len;
	log_debug("%s transactionID %s, %s, %s",
	          x->poll_txid                      ? "CertPoll"
	          : req_type == SCEP_MSG_RENEWALREQ ? "RenewalReq"
	                                            : "PKCSReq",
	          x->txid, EVP_CIPHER_get0_name(sr.cipher), EVP_MD_get0_name(sr.md));
	if ((r = scep_req_build(&sr, &msg, &msg_len)) != 0)
		goto out;
	/* The request and its DER hold the challenge: gone before the network wait. */
	csr_req_free(req);
	req = NULL;
	OPENSSL_clear_free(inner, inner_len);
	inner = NULL;
	inner_len = 0;
	tm->csr = exchange_now_ms() - t0;
	progress_note("state", "request");
	t0 = exchange_now_ms();
	if ((r = ca_pkioperation(c, ci, msg, msg_len, &rep_der, &rep_len)) != 0)
		goto out;
	tm->network += exchange_now_ms() - t0;
	t0 = exchange_now_ms();
	/* Parsed and verified in the network process: this one never parses its CMS. */
	if ((r = netproc_rep_parse(rep_der, rep_len, ci->ca->signers, x->txid, sr.nonce, &rep)) !=
	    0)
		goto out;
	report_signature(rep);
	if (rep->status == SCEP_STATUS_FAILURE) {
		x->fail_info = rep->fail_info;
		if (!x->quiet_reject)
			report_failure(rep, challenge != NULL || c->challenge_url != NULL);
		r = P11E_ERR_REJECTED;
		goto out;
	}
	if (rep->status == SCEP_STATUS_PENDING) {
		r = P11E_ERR_PENDING;
		goto out;
	}
	/* The envelope is taken apart in the network process and decrypted here with the
	 * token's key; the bundle inside goes back there, which sends the certificates' DER. */
	r = netproc_env_parse(rep->envelope, rep->envelope_len, self, &env);
	if (r == 0) {
		cipher = env->cipher_nid;
		r = scep_env_open(env, signer, &plain, &plain_len);
	}
	if (r == 0)
		r = netproc_rep_certs(plain, plain_len, &got);
	log_debug("reply content cipher: %s",
	          cipher != NID_undef ? OBJ_nid2sn(cipher) : "unknown (envelope unreadable)");
	if (r == 0 && cipher == NID_des_cbc)
		log_warn("the server encrypted its answer with single DES; accepted, since the "
		         "envelope only carries the public certificate");
	if (r == 0)
		r = scep_pick_issued(got, key->pub, ci->ca->ca, ci->ca->chain, issued);
	if (r != 0 && r != P11E_ERR_TOKEN && r != P11E_ERR_ALLOC && r != P11E_ERR_INTERNAL) {
		log_error(
		    "the CA answered SUCCESS, so it may have issued a certificate (transaction "
		    "%s) that p11enroll could not read; nothing was stored. The CA's log and "
		    "its list of issued certificates tell; a certificate that was issued "
		    "can be revoked there",
		    x->txid);
		goto out;
	}
	if (r != 0)
		goto out;
	tm->store = exchange_now_ms() - t0;
	r = 0;
out:
	EVP_PKEY_free(tokkey);
	EVP_PKEY_free(oldkey);
	EVP_PKEY_free(transient);
	csr_req_free(req);
	X509_NAME_free(subject);
	X509_free(self);
	OPENSSL_clear_free(inner, inner_len); /* a CSR holds the challenge */
	OPENSSL_free(msg);
	OPENSSL_free(plain);
	free(rep_der);
	scep_rep_free(rep);
	scep_env_free(env);
	sk_X509_pop_free(got, X509_free);
	return r;
}
