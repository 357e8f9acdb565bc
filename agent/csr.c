/*
 * csr.c: PKCS#10 request and the SCEP transaction's self-signed certificate.
 */
#include <arpa/inet.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "csr.h"
#include "err.h"
#include "log.h"

#define OID_MS_UPN "1.3.6.1.4.1.311.20.2.3"

static int
is_printable(const char *s, size_t len)
{
	static const char extra[] = " '()+,-./:=?";
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      (c != '\0' && strchr(extra, c) != NULL)))
			return 0;
	}
	return 1;
}

static int
add_entry(X509_NAME *name, const char *type, const char *val, size_t vlen, int loc, int set)
{
	int nid = OBJ_txt2nid(type), stype = MBSTRING_UTF8;
	ASN1_STRING_TABLE *tbl;

	if (nid == NID_undef) {
		log_error("subject dn: unknown attribute type '%s'", type);
		return P11E_ERR_CONFIG;
	}
	if (memchr(val, '\0', vlen) != NULL) {
		log_error("subject dn: the value of '%s' holds a NUL byte (\\00), which names "
		          "must not contain",
		          type);
		return P11E_ERR_CONFIG;
	}
	tbl = ASN1_STRING_TABLE_get(nid);
	if (is_printable(val, vlen) && (tbl == NULL || (tbl->mask & B_ASN1_PRINTABLESTRING)))
		stype = V_ASN1_PRINTABLESTRING;
	if (!X509_NAME_add_entry_by_NID(name, nid, stype, (const unsigned char *)val, (int)vlen,
	                                loc, set)) {
		log_openssl(LOG_LVL_ERROR,
		            "subject dn: value of '%s' is not acceptable (not UTF-8, or too long?)",
		            type);
		return P11E_ERR_CONFIG;
	}
	return 0;
}

/*
 * The RFC 4514 form "#" hexstring: the BER encoding of the value itself, a
 * string type, taken as it is (type and bytes).
 */
static int
add_ber_entry(X509_NAME *name, const char *type, const char *hex, size_t hn, int loc, int set)
{
	unsigned char *der = NULL;
	const unsigned char *q;
	ASN1_TYPE *t = NULL;
	size_t i, dn = hn / 2;
	int nid = OBJ_txt2nid(type), h1, h2, r = P11E_ERR_CONFIG;

	if (nid == NID_undef) {
		log_error("subject dn: unknown attribute type '%s'", type);
		return P11E_ERR_CONFIG;
	}
	if (hn == 0 || hn % 2 != 0 || hn / 2 > 4096) {
		log_error("subject dn: the value of '%s' starts with '#', the hex-encoded form of "
		          "RFC 4514, but is no even number of hex digits; write \\# for a "
		          "literal '#'",
		          type);
		return P11E_ERR_CONFIG;
	}
	if ((der = malloc(dn)) == NULL)
		return P11E_ERR_ALLOC;
	for (i = 0; i < dn; i++) {
		if ((h1 = OPENSSL_hexchar2int((unsigned char)hex[2 * i])) < 0 ||
		    (h2 = OPENSSL_hexchar2int((unsigned char)hex[2 * i + 1])) < 0) {
			log_error("subject dn: the value of '%s' starts with '#', the hex-encoded "
			          "form of RFC 4514, but holds other characters than hex digits; "
			          "write \\# for a literal '#'",
			          type);
			goto out;
		}
		der[i] = (unsigned char)(h1 << 4 | h2);
	}
	q = der;
	if ((t = d2i_ASN1_TYPE(NULL, &q, (long)dn)) == NULL || q != der + dn ||
	    !(ASN1_tag2bit(t->type) & (B_ASN1_DIRECTORYSTRING | B_ASN1_IA5STRING |
	                               B_ASN1_NUMERICSTRING | B_ASN1_VISIBLESTRING))) {
		log_error("subject dn: the value of '%s' after '#' is no BER-encoded string (RFC "
		          "4514); write \\# for a literal '#'",
		          type);
		goto out;
	}
	if (memchr(ASN1_STRING_get0_data(t->value.asn1_string), '\0',
	           (size_t)ASN1_STRING_length(t->value.asn1_string)) != NULL &&
	    t->type != V_ASN1_BMPSTRING && t->type != V_ASN1_UNIVERSALSTRING) {
		log_error("subject dn: the value of '%s' holds a NUL byte, which names must not "
		          "contain",
		          type);
		goto out;
	}
	if (!X509_NAME_add_entry_by_NID(name, nid, t->type,
	                                ASN1_STRING_get0_data(t->value.asn1_string),
	                                ASN1_STRING_length(t->value.asn1_string), loc, set)) {
		log_openssl(LOG_LVL_ERROR, "subject dn: value of '%s' is not acceptable", type);
		goto out;
	}
	r = 0;
out:
	ASN1_TYPE_free(t);
	free(der);
	return r;
}

int
csr_parse_dn(const char *dn, X509_NAME **out)
{
	int r = P11E_ERR_CONFIG, set = 0, h1, h2, ber;
	X509_NAME *name = NULL;
	char *type = NULL, *val = NULL;
	size_t tn, vn, keep, n = strlen(dn);
	const char *p = dn, *end = dn + n;

	if ((name = X509_NAME_new()) == NULL || (type = malloc(n + 1)) == NULL ||
	    (val = malloc(n + 1)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	while (p < end) {
		tn = vn = 0;
		while (p < end && *p == ' ')
			p++;
		while (p < end && *p != '=' && *p != ',' && *p != '+')
			type[tn++] = *p++;
		while (tn > 0 && type[tn - 1] == ' ')
			tn--;
		type[tn] = '\0';
		if (p >= end || *p != '=' || tn == 0) {
			log_error("subject dn '%s': expected TYPE=value near offset %zu", dn,
			          (size_t)(p - dn));
			goto out;
		}
		p++;
		while (p < end && *p == ' ')
			p++;
		/* An unescaped '#' first: the value is its BER encoding in hex. */
		ber = p < end && *p == '#';
		if (ber)
			p++;
		/* keep: the value up to its last escaped character, which stays
		 * even when it is a space; unescaped trailing spaces go. */
		keep = 0;
		while (p < end && *p != ',' && *p != '+') {
			if (*p == '\\') {
				if (p + 1 >= end) {
					log_error("subject dn '%s': dangling '\\'", dn);
					goto out;
				}
				if (p + 2 < end &&
				    (h1 = OPENSSL_hexchar2int((unsigned char)p[1])) >= 0 &&
				    (h2 = OPENSSL_hexchar2int((unsigned char)p[2])) >= 0) {
					val[vn++] = (char)(h1 << 4 | h2);
					p += 3;
				} else {
					val[vn++] = p[1];
					p += 2;
				}
				keep = vn;
				continue;
			}
			val[vn++] = *p++;
		}
		while (vn > keep && val[vn - 1] == ' ')
			vn--;
		if (vn == 0 && !ber) {
			log_error("subject dn '%s': empty value for %s", dn, type);
			goto out;
		}
		/* RFC 4514 writes the most specific RDN first: each RDN goes in
		 * front of the ones before it, a '+' value into that same RDN. */
		if ((r = ber ? add_ber_entry(name, type, val, vn, 0, set)
		             : add_entry(name, type, val, vn, 0, set)) != 0)
			goto out;
		r = P11E_ERR_CONFIG;
		set = (p < end && *p == '+') ? 1 : 0;
		if (p < end)
			p++;
	}
	if (X509_NAME_entry_count(name) == 0) {
		log_error("subject dn is empty");
		goto out;
	}
	*out = name;
	name = NULL;
	r = 0;
out:
	X509_NAME_free(name);
	free(type);
	free(val);
	return r;
}

static int
push_name(GENERAL_NAMES *gens, int type, const char *v)
{
	GENERAL_NAME *gen = NULL;
	ASN1_IA5STRING *ia5 = NULL;
	ASN1_OCTET_STRING *ip = NULL;
	unsigned char addr[16];
	int alen = 0;

	if ((gen = GENERAL_NAME_new()) == NULL)
		return P11E_ERR_ALLOC;
	if (type == GEN_IPADD) {
		if (inet_pton(AF_INET, v, addr) == 1)
			alen = 4;
		else if (inet_pton(AF_INET6, v, addr) == 1)
			alen = 16;
		if (alen == 0 || (ip = ASN1_OCTET_STRING_new()) == NULL ||
		    !ASN1_OCTET_STRING_set(ip, addr, alen))
			goto fail;
		GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
	} else if (type == GEN_OTHERNAME) {
		ASN1_TYPE *t = ASN1_TYPE_new();
		ASN1_UTF8STRING *u = ASN1_UTF8STRING_new();
		ASN1_OBJECT *oid = OBJ_txt2obj(OID_MS_UPN, 1);
		if (t == NULL || u == NULL || oid == NULL ||
		    !ASN1_STRING_set(u, v, (int)strlen(v))) {
			ASN1_TYPE_free(t);
			ASN1_UTF8STRING_free(u);
			ASN1_OBJECT_free(oid);
			goto fail;
		}
		ASN1_TYPE_set(t, V_ASN1_UTF8STRING, u);
		if (!GENERAL_NAME_set0_othername(gen, oid, t)) {
			ASN1_TYPE_free(t);
			ASN1_OBJECT_free(oid);
			goto fail;
		}
	} else {
		if ((ia5 = ASN1_IA5STRING_new()) == NULL ||
		    !ASN1_STRING_set(ia5, v, (int)strlen(v)))
			goto fail;
		GENERAL_NAME_set0_value(gen, type, ia5);
	}
	if (!sk_GENERAL_NAME_push(gens, gen)) {
		GENERAL_NAME_free(gen);
		return P11E_ERR_ALLOC;
	}
	return 0;
fail:
	ASN1_IA5STRING_free(ia5);
	ASN1_OCTET_STRING_free(ip);
	GENERAL_NAME_free(gen);
	log_error("subjectAltName '%s' cannot be encoded", v);
	return P11E_ERR_CONFIG;
}

static int
build_exts(const struct conf *c, EVP_PKEY *pub, STACK_OF(X509_EXTENSION) * *out)
{
	int r = P11E_ERR_ALLOC;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	ASN1_BIT_STRING *ku = NULL;
	X509_EXTENSION *ext = NULL;
	const struct {
		const struct conf_list *l;
		int type;
	} lists[] = {{&c->san_dns, GEN_DNS},
	             {&c->san_email, GEN_EMAIL},
	             {&c->san_uri, GEN_URI},
	             {&c->san_ip, GEN_IPADD},
	             {&c->san_upn, GEN_OTHERNAME}};
	size_t i, j;

	if ((exts = sk_X509_EXTENSION_new_null()) == NULL || (gens = GENERAL_NAMES_new()) == NULL ||
	    (ku = ASN1_BIT_STRING_new()) == NULL)
		goto out;
	for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		for (j = 0; j < lists[i].l->n; j++)
			if ((r = push_name(gens, lists[i].type, lists[i].l->v[j])) != 0)
				goto out;
	r = P11E_ERR_ALLOC;
	if (sk_GENERAL_NAME_num(gens) > 0) {
		if ((ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens)) == NULL ||
		    !sk_X509_EXTENSION_push(exts, ext))
			goto out;
		ext = NULL;
	}
	if (!ASN1_BIT_STRING_set_bit(ku, 0, 1) ||
	    (EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA && !ASN1_BIT_STRING_set_bit(ku, 2, 1)))
		goto out;
	if ((ext = X509V3_EXT_i2d(NID_key_usage, 1, ku)) == NULL ||
	    !sk_X509_EXTENSION_push(exts, ext))
		goto out;
	ext = NULL;
	*out = exts;
	exts = NULL;
	r = 0;
out:
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	GENERAL_NAMES_free(gens);
	ASN1_BIT_STRING_free(ku);
	X509_EXTENSION_free(ext);
	return r;
}

int
csr_build(const struct conf *c, EVP_PKEY *key, const char *challenge, X509_REQ **out)
{
	int r = P11E_ERR_INTERNAL;
	X509_REQ *req = NULL;
	X509_NAME *name = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;

	if ((r = csr_parse_dn(c->dn, &name)) != 0 || (r = build_exts(c, key, &exts)) != 0)
		goto out;
	r = P11E_ERR_INTERNAL;
	if ((req = X509_REQ_new()) == NULL || !X509_REQ_set_version(req, 0) ||
	    !X509_REQ_set_subject_name(req, name) || !X509_REQ_set_pubkey(req, key) ||
	    !X509_REQ_add_extensions(req, exts)) {
		log_openssl(LOG_LVL_ERROR, "cannot build the certificate request");
		goto out;
	}
	if (challenge != NULL &&
	    !X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword,
	                               is_printable(challenge, strlen(challenge))
	                                   ? V_ASN1_PRINTABLESTRING
	                                   : V_ASN1_UTF8STRING,
	                               (const unsigned char *)challenge, (int)strlen(challenge))) {
		log_openssl(LOG_LVL_ERROR, "cannot add the challenge to the request");
		goto out;
	}
	if (X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
		log_openssl(LOG_LVL_ERROR, "the token could not sign the certificate request");
		r = P11E_ERR_TOKEN;
		goto out;
	}
	*out = req;
	req = NULL;
	r = 0;
out:
	csr_req_free(req);
	X509_NAME_free(name);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return r;
}

void
csr_req_free(X509_REQ *req)
{
	X509_ATTRIBUTE *a;
	ASN1_TYPE *t;
	int i, j;

	if (req == NULL)
		return;
	for (i = 0; i < X509_REQ_get_attr_count(req); i++) {
		a = X509_REQ_get_attr(req, i);
		if (OBJ_obj2nid(X509_ATTRIBUTE_get0_object(a)) != NID_pkcs9_challengePassword)
			continue;
		for (j = 0; j < X509_ATTRIBUTE_count(a); j++) {
			t = X509_ATTRIBUTE_get0_type(a, j);
			if (t == NULL || t->type == V_ASN1_BOOLEAN || t->type == V_ASN1_NULL ||
			    t->type == V_ASN1_OBJECT || t->value.asn1_string == NULL)
				continue;
			OPENSSL_cleanse((void *)ASN1_STRING_get0_data(t->value.asn1_string),
			                (size_t)ASN1_STRING_length(t->value.asn1_string));
		}
	}
	X509_REQ_free(req);
}

int
csr_selfsigned(X509_NAME *subject, EVP_PKEY *key, X509 **out)
{
	int r = P11E_ERR_INTERNAL;
	X509 *x = NULL;
	ASN1_BIT_STRING *ku = NULL;
	BIGNUM *bn = NULL;
	unsigned char serial[16];

	if (RAND_bytes(serial, sizeof(serial)) != 1)
		goto out;
	serial[0] &= 0x7f;
	serial[0] |= 0x01;
	if ((x = X509_new()) == NULL || (ku = ASN1_BIT_STRING_new()) == NULL ||
	    (bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL || !X509_set_version(x, 2) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
	    !X509_set_subject_name(x, subject) || !X509_set_issuer_name(x, subject) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 2 * 86400) || !X509_set_pubkey(x, key) ||
	    !ASN1_BIT_STRING_set_bit(ku, 0, 1) || !ASN1_BIT_STRING_set_bit(ku, 2, 1) ||
	    !X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_DEFAULT)) {
		log_openssl(LOG_LVL_ERROR, "cannot build the self-signed request certificate");
		goto out;
	}
	if (X509_sign(x, key, EVP_sha256()) <= 0) {
		log_openssl(LOG_LVL_ERROR, "cannot sign the self-signed request certificate");
		r = P11E_ERR_TOKEN;
		goto out;
	}
	*out = x;
	x = NULL;
	r = 0;
out:
	X509_free(x);
	ASN1_BIT_STRING_free(ku);
	BN_free(bn);
	return r;
}
