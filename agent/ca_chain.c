/*
 * ca_chain.c: completing the CA chain that GetCACert returned up to a root:
 * from [trust] root_file, from the certificates already in the trust
 * directory, and (with [trust] fetch_aia) from the issuing CA's AIA
 * caIssuers URL. Which certificate is trusted is decided by ca_check_trust;
 * this only finds issuers whose signatures verify.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "err.h"
#include "log.h"
#include "store.h"

#define MAX_ROOT_FILE (1024 * 1024)
#define MAX_TRUST_FILE (64 * 1024)
#define MAX_AIA_BODY (64 * 1024)
#define MAX_AIA_HOPS 4

/* Appends every PEM certificate of buf to sk; *n counts them. */
static int
pem_certs(const unsigned char *buf, size_t len, STACK_OF(X509) * sk, int *n)
{
	BIO *b = BIO_new_mem_buf(buf, (int)len);
	X509 *x;

	*n = 0;
	if (b == NULL)
		return P11E_ERR_ALLOC;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			BIO_free(b);
			return P11E_ERR_ALLOC;
		}
		(*n)++;
	}
	ERR_clear_error();
	BIO_free(b);
	return 0;
}

int
ca_load_roots(const struct conf *c, STACK_OF(X509) * *out)
{
	int r, n = 0, i;
	unsigned char *buf = NULL;
	size_t len = 0;
	STACK_OF(X509) *sk = NULL;

	*out = NULL;
	if (c->trust_root_file == NULL)
		return 0;
	if ((r = store_read_file(c->trust_root_file, MAX_ROOT_FILE, &buf, &len)) != 0) {
		if (r == P11E_ERR_NOTFOUND)
			log_error("%s: [trust] root_file %s does not exist", c->path,
			          c->trust_root_file);
		r = P11E_ERR_CONFIG;
		goto out;
	}
	r = P11E_ERR_ALLOC;
	if ((sk = sk_X509_new_null()) == NULL || pem_certs(buf, len, sk, &n) != 0)
		goto out;
	r = P11E_ERR_CONFIG;
	if (n == 0) {
		log_error("%s: [trust] root_file %s holds no PEM certificate", c->path,
		          c->trust_root_file);
		goto out;
	}
	for (i = 0; i < n; i++) {
		X509 *x = sk_X509_value(sk, i);
		char subj[256];
		if (X509_self_signed(x, 1) != 1 || X509_check_ca(x) == 0) {
			ERR_clear_error();
			scep_name_str(X509_get_subject_name(x), subj, sizeof(subj));
			log_error(
			    "%s: [trust] root_file %s: certificate %d (%s) is not a "
			    "self-signed CA certificate; root_file holds root certificates only",
			    c->path, c->trust_root_file, i + 1, subj);
			goto out;
		}
	}
	*out = sk;
	sk = NULL;
	r = 0;
out:
	free(buf);
	sk_X509_pop_free(sk, X509_free);
	return r;
}

/* The PEM certificates of the trust directory's regular .crt and .pem files. */
static int
trust_dir_certs(const char *dir, STACK_OF(X509) * sk)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int r = 0, fd, n;
	size_t len;
	unsigned char *buf = NULL;
	struct stat st;
	ssize_t k;

	if (d == NULL) {
		if (errno != ENOENT)
			log_debug("cannot read %s: %s", dir, strerror(errno));
		return 0;
	}
	while (r == 0 && (e = readdir(d)) != NULL) {
		len = strlen(e->d_name);
		if (len < 5 || e->d_name[0] == '.' ||
		    (strcmp(e->d_name + len - 4, ".crt") != 0 &&
		     strcmp(e->d_name + len - 4, ".pem") != 0))
			continue;
		fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_TRUST_FILE ||
		    (buf = malloc((size_t)st.st_size + 1)) == NULL) {
			close(fd);
			continue;
		}
		k = read(fd, buf, (size_t)st.st_size);
		close(fd);
		if (k > 0)
			r = pem_certs(buf, (size_t)k, sk, &n);
		free(buf);
		buf = NULL;
	}
	closedir(d);
	return r;
}

/* The caIssuers URL (http or https) of x's AIA, or NULL; malloc'ed. */
static char *
aia_url(X509 *x)
{
	AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(x, NID_info_access, NULL, NULL);
	char *url = NULL;
	int i;

	for (i = 0; aia != NULL && url == NULL && i < sk_ACCESS_DESCRIPTION_num(aia); i++) {
		ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
		const char *u;
		int n;

		if (OBJ_obj2nid(ad->method) != NID_ad_ca_issuers || ad->location->type != GEN_URI)
			continue;
		u = (const char *)ASN1_STRING_get0_data(ad->location->d.uniformResourceIdentifier);
		n = ASN1_STRING_length(ad->location->d.uniformResourceIdentifier);
		if (n <= 0 || memchr(u, '\0', (size_t)n) != NULL ||
		    (strncasecmp(u, "http://", 7) != 0 && strncasecmp(u, "https://", 8) != 0))
			continue;
		url = strndup(u, (size_t)n);
	}
	AUTHORITY_INFO_ACCESS_free(aia);
	ERR_clear_error();
	return url;
}

/* The certificates of an AIA answer: DER, PEM, or a certs-only PKCS#7 (.p7c). */
static int
aia_certs(const unsigned char *body, size_t len, STACK_OF(X509) * sk)
{
	const unsigned char *p = body;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	PKCS7 *p7 = NULL;
	STACK_OF(X509) *in = NULL;
	int i, n = 0;

	if (x != NULL && p == body + len) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			return -1;
		}
		return 1;
	}
	X509_free(x);
	p = body;
	if ((p7 = d2i_PKCS7(NULL, &p, (long)len)) != NULL && PKCS7_type_is_signed(p7) &&
	    p7->d.sign != NULL)
		in = p7->d.sign->cert;
	for (i = 0; i < sk_X509_num(in); i++) {
		X509 *c = sk_X509_value(in, i);
		if (X509_up_ref(c) != 1)
			continue;
		if (!sk_X509_push(sk, c)) {
			X509_free(c);
			PKCS7_free(p7);
			return -1;
		}
		n++;
	}
	PKCS7_free(p7);
	if (n == 0 && pem_certs(body, len, sk, &n) != 0)
		return -1;
	ERR_clear_error();
	return n;
}

/* One AIA hop for the top of the chain; *grew when it added an issuer. */
static int
aia_hop(struct ca_info *ci, int *grew)
{
	X509 *top = scep_ca_top(ci->ca);
	char *url = aia_url(top), logurl[256];
	struct http_opts o = ci->http;
	struct http_resp *resp = NULL;
	int r, n, added = 0;

	*grew = 0;
	if (url == NULL) {
		log_debug("the CA certificate at the top of the chain names no http(s) caIssuers "
		          "URL (AIA)");
		return 0;
	}
	http_url_for_log(url, logurl, sizeof(logurl));
	o.max_body = MAX_AIA_BODY;
	if ((r = http_get(url, &o, &resp)) != 0) {
		log_warn("cannot fetch the CA's issuer from its AIA URL %s", logurl);
		r = 0;
		goto out;
	}
	if (resp->status != 200) {
		log_warn("the CA's AIA URL %s answered HTTP %ld", logurl, resp->status);
		goto out;
	}
	r = P11E_ERR_ALLOC;
	if (ci->aia == NULL && (ci->aia = sk_X509_new_null()) == NULL)
		goto out;
	if ((n = aia_certs(resp->body, resp->len, ci->aia)) < 0)
		goto out;
	if ((r = scep_ca_complete(ci->ca, ci->aia, &added)) != 0)
		goto out;
	if (added == 0)
		log_warn("the CA's AIA URL %s gave %d certificate(s), none of which issued the CA "
		         "certificate at the top of the chain: ignoring them",
		         logurl, n);
	else
		log_info("completed the CA chain with the issuer from the AIA URL %s", logurl);
	*grew = added > 0;
	r = 0;
out:
	http_resp_free(resp);
	free(url);
	return r;
}

int
ca_complete_chain(const struct conf *c, struct ca_info *ci)
{
	int r = 0, hop, grew = 1;
	STACK_OF(X509) *dir = NULL;

	if ((r = ca_load_roots(c, &ci->roots)) != 0)
		return r;
	if (ci->roots != NULL && (r = scep_ca_complete(ci->ca, ci->roots, NULL)) != 0)
		return r;
	if (!scep_ca_complete_p(ci->ca)) {
		if ((dir = sk_X509_new_null()) == NULL)
			return P11E_ERR_ALLOC;
		if ((r = trust_dir_certs(c->trust_dir, dir)) == 0)
			r = scep_ca_complete(ci->ca, dir, NULL);
		sk_X509_pop_free(dir, X509_free);
		if (r != 0)
			return r;
	}
	for (hop = 0;
	     c->trust_fetch_aia && grew && hop < MAX_AIA_HOPS && !scep_ca_complete_p(ci->ca); hop++)
		if ((r = aia_hop(ci, &grew)) != 0)
			return r;
	return 0;
}

const char *
ca_cert_source(const struct ca_info *ci, X509 *x)
{
	int i;

	for (i = 0; i < sk_X509_num(ci->ca->certs); i++)
		if (X509_cmp(sk_X509_value(ci->ca->certs, i), x) == 0)
			return "GetCACert";
	for (i = 0; i < sk_X509_num(ci->roots); i++)
		if (X509_cmp(sk_X509_value(ci->roots, i), x) == 0)
			return "root_file";
	for (i = 0; i < sk_X509_num(ci->aia); i++)
		if (X509_cmp(sk_X509_value(ci->aia, i), x) == 0)
			return "AIA";
	return "trust dir";
}
