/*
 * p11sign.c: one private key operation in the token process's session, on
 * the private key handle tokens/ generated or found (p11int.h). The budget of
 * such operations is tokserve.c's; the EVP_PKEY around them is p11evp.c's, in
 * the process that asks.
 */
#include <stddef.h>
#include <stdlib.h>

#include <openssl/crypto.h>

#include "err.h"
#include "log.h"
#include "p11int.h"

/*
 * After CKR_BUFFER_TOO_SMALL the operation is still active in the session
 * (PKCS#11 2.40, 5.2), and every C_*Init after it fails: it is ended by
 * letting it finish into a buffer of the size the module asked for, whose
 * content is dropped.
 */
static void
end_operation(struct p11 *t, int decrypt, const unsigned char *in, size_t inlen, CK_ULONG need)
{
	unsigned char *buf;
	CK_ULONG len = need;

	if (need == 0 || need > 65536 || (buf = malloc(need)) == NULL)
		return;
	(void)(decrypt ? t->f->C_Decrypt(t->session, (CK_BYTE_PTR)in, (CK_ULONG)inlen, buf, &len)
	               : t->f->C_Sign(t->session, (CK_BYTE_PTR)in, (CK_ULONG)inlen, buf, &len));
	OPENSSL_cleanse(buf, need);
	free(buf);
}

int
p11_key_op(struct p11 *t, const struct tok_key *k, int decrypt, const unsigned char *in,
           size_t inlen, unsigned char *out, size_t *outlen)
{
	CK_MECHANISM_TYPE mech = !decrypt && k->type == TOK_KEY_EC ? CKM_ECDSA : CKM_RSA_PKCS;
	CK_MECHANISM m = {mech, NULL, 0};
	CK_ULONG len = (CK_ULONG)*outlen;
	const char *fn = decrypt ? "C_DecryptInit" : "C_SignInit";
	const char *mn = mech == CKM_ECDSA ? "CKM_ECDSA" : "CKM_RSA_PKCS";
	CK_RV rv;

	if (decrypt && k->type != TOK_KEY_RSA) {
		log_error("private key '%s' is not an RSA key: it decrypts nothing", k->label);
		return P11E_ERR_TOKEN;
	}
	rv = decrypt ? t->f->C_DecryptInit(t->session, &m, k->priv_handle)
	             : t->f->C_SignInit(t->session, &m, k->priv_handle);
	if (rv == CKR_OK) {
		fn = decrypt ? "C_Decrypt" : "C_Sign";
		rv = decrypt
		         ? t->f->C_Decrypt(t->session, (CK_BYTE_PTR)in, (CK_ULONG)inlen, out, &len)
		         : t->f->C_Sign(t->session, (CK_BYTE_PTR)in, (CK_ULONG)inlen, out, &len);
	}
	if (rv == CKR_BUFFER_TOO_SMALL)
		end_operation(t, decrypt, in, inlen, len);
	if (rv != CKR_OK) {
		log_error("%s (%s) with private key '%s' on token '%s' failed: %s%s", fn, mn,
		          k->label, t->info.label, tok_rv_name(rv),
		          rv == CKR_USER_NOT_LOGGED_IN
		              ? " (not logged in, or the key wants its PIN for every use)"
		              : "");
		return P11E_ERR_TOKEN;
	}
	if (len > *outlen) {
		log_error("%s with private key '%s' on token '%s' returned %lu bytes for %zu", fn,
		          k->label, t->info.label, (unsigned long)len, *outlen);
		return P11E_ERR_TOKEN;
	}
	*outlen = len;
	return 0;
}
