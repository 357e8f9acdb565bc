/*
 * certfile.c: [files] cert_file (certfile.h).
 */
#include <stdlib.h>
#include <string.h>

#include "certfile.h"
#include "err.h"
#include "log.h"
#include "store.h"

int
certfile_write(const struct conf *c, X509 *cert)
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

int
certfile_stale(const struct conf *c, X509 *cert, int *stale)
{
	int r;
	unsigned char *old = NULL;
	char *pem = NULL;
	size_t oldlen = 0, len = 0;

	if (c->cert_file == NULL) {
		*stale = 0;
		return 0;
	}
	if ((r = store_cert_pem(cert, &pem, &len)) != 0)
		goto out;
	r = store_read_file(c->cert_file, 1024 * 1024, &old, &oldlen);
	if (r != 0 && r != P11E_ERR_NOTFOUND)
		goto out;
	*stale = r != 0 || oldlen != len || memcmp(old, pem, len) != 0;
	r = 0;
out:
	free(old);
	free(pem);
	return r;
}

int
certfile_sync(const struct conf *c, X509 *cert)
{
	int r, stale = 0;

	if ((r = certfile_stale(c, cert, &stale)) != 0 || !stale)
		return r;
	log_info("writing the token's certificate to %s", c->cert_file);
	return certfile_write(c, cert);
}
