/*
 * keypool_rsa.c: an LD_PRELOAD shim of the tests' own that hands SoftHSM RSA-2048
 * keys made beforehand instead of new primes.
 *
 * SoftHSM makes an RSA key pair with OpenSSL's RSA_generate_key_ex; for 2048 bits
 * that is 50 to 150 ms of CPU, and the integration passes make hundreds of keys:
 * about 13% of a pass's CPU, measured with perf. This shim answers
 * RSA_generate_key_ex called from libsofthsm2.so (and from nothing else) for
 * 2048 bits and the exponent 65537 with the next key of a PEM file. Everything
 * else about the key is SoftHSM's: C_GenerateKeyPair, its templates, CKA_LOCAL,
 * sensitivity, storage. The environment is read at each call:
 *
 *   P11E_RSA_POOL=FILE        PEM private keys (RSA-2048, e = 65537)
 *   P11E_RSA_POOL_STATE=FILE  a counter, locked while it is read and advanced, so
 *                             that every key handed out under one counter is a
 *                             different one, across processes (the tests keep
 *                             one per test)
 *
 * Without both variables, for another size or exponent, another caller, or once
 * the pool is used up, the real RSA_generate_key_ex runs: slower, never wrong.
 * The shim links only libc and libdl: it looks OpenSSL's functions up in the
 * process that called it (which has libcrypto loaded), so preloading it costs
 * the tests' other programs nothing measurable. A file it cannot use ends the
 * process with a message on stderr, so a broken setting fails loudly.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* OpenSSL's types, opaque here. */
typedef struct rsa_st RSA;
typedef struct bignum_st BIGNUM;
typedef struct bn_gencb_st BN_GENCB;
typedef struct bio_st BIO;
typedef struct evp_pkey_st EVP_PKEY;

typedef int (*genkey_fn)(RSA *, int, BIGNUM *, BN_GENCB *);

static struct {
	BIO *(*bio_new_mem_buf)(const void *, int);
	void (*bio_free_all)(BIO *);
	EVP_PKEY *(*pem_read_bio_privatekey)(BIO *, EVP_PKEY **, void *, void *);
	void (*evp_pkey_free)(EVP_PKEY *);
	const RSA *(*evp_pkey_get0_rsa)(const EVP_PKEY *);
	void (*rsa_get0_key)(const RSA *, const BIGNUM **, const BIGNUM **, const BIGNUM **);
	void (*rsa_get0_factors)(const RSA *, const BIGNUM **, const BIGNUM **);
	void (*rsa_get0_crt_params)(const RSA *, const BIGNUM **, const BIGNUM **, const BIGNUM **);
	int (*rsa_set0_key)(RSA *, BIGNUM *, BIGNUM *, BIGNUM *);
	int (*rsa_set0_factors)(RSA *, BIGNUM *, BIGNUM *);
	int (*rsa_set0_crt_params)(RSA *, BIGNUM *, BIGNUM *, BIGNUM *);
	int (*rsa_bits)(const RSA *);
	BIGNUM *(*bn_dup)(const BIGNUM *);
	void (*bn_free)(BIGNUM *);
	unsigned long (*bn_get_word)(const BIGNUM *);
	int (*bn_num_bits)(const BIGNUM *);
} F;

static void
die(const char *what, const char *path)
{
	fprintf(stderr, "keypool_rsa: %s: %s\n", what, path != NULL ? path : "");
	_exit(70);
}

static int
resolve(void)
{
	static int done;
	struct {
		void **slot;
		const char *name;
	} want[] = {
	    {(void **)&F.bio_new_mem_buf, "BIO_new_mem_buf"},
	    {(void **)&F.bio_free_all, "BIO_free_all"},
	    {(void **)&F.pem_read_bio_privatekey, "PEM_read_bio_PrivateKey"},
	    {(void **)&F.evp_pkey_free, "EVP_PKEY_free"},
	    {(void **)&F.evp_pkey_get0_rsa, "EVP_PKEY_get0_RSA"},
	    {(void **)&F.rsa_get0_key, "RSA_get0_key"},
	    {(void **)&F.rsa_get0_factors, "RSA_get0_factors"},
	    {(void **)&F.rsa_get0_crt_params, "RSA_get0_crt_params"},
	    {(void **)&F.rsa_set0_key, "RSA_set0_key"},
	    {(void **)&F.rsa_set0_factors, "RSA_set0_factors"},
	    {(void **)&F.rsa_set0_crt_params, "RSA_set0_crt_params"},
	    {(void **)&F.rsa_bits, "RSA_bits"},
	    {(void **)&F.bn_dup, "BN_dup"},
	    {(void **)&F.bn_free, "BN_free"},
	    {(void **)&F.bn_get_word, "BN_get_word"},
	    {(void **)&F.bn_num_bits, "BN_num_bits"},
	};
	void *lib;
	size_t i;

	if (done)
		return 0;
	if ((lib = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_NOLOAD)) == NULL)
		return -1;
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if ((*want[i].slot = dlsym(lib, want[i].name)) == NULL)
			return -1;
	done = 1;
	return 0;
}

/* Whether the code at ADDR belongs to SoftHSM's module. */
static int
from_softhsm(const void *addr)
{
	Dl_info info;

	return dladdr(addr, &info) != 0 && info.dli_fname != NULL &&
	       strstr(info.dli_fname, "libsofthsm2") != NULL;
}

/* The pool's next index under the counter file STATE, or -1 if it could not be taken. */
static long
next_index(const char *state)
{
	char buf[32];
	long n = 0;
	ssize_t got;
	int fd;

	if ((fd = open(state, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		die("cannot open the counter", state);
	if (flock(fd, LOCK_EX) != 0)
		die("cannot lock the counter", state);
	if ((got = pread(fd, buf, sizeof(buf) - 1, 0)) < 0)
		die("cannot read the counter", state);
	buf[got] = '\0';
	if (got > 0)
		n = strtol(buf, NULL, 10);
	got = snprintf(buf, sizeof(buf), "%ld\n", n + 1);
	if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)got, 0) != got)
		die("cannot write the counter", state);
	close(fd); /* also releases the lock */
	return n;
}

/* The PEM block number IDX of the file POOL into a malloc'd string (NULL: the pool
 * holds fewer keys). */
static char *
pem_block(const char *pool, long idx)
{
	static const char begin[] = "-----BEGIN ";
	static const char end[] = "-----END ";
	char *text = NULL, *p, *e, *out;
	struct stat st;
	ssize_t got;
	int fd;

	if ((fd = open(pool, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0)
		die("cannot open the pool", pool);
	if ((text = malloc((size_t)st.st_size + 1)) == NULL)
		die("out of memory reading the pool", pool);
	if ((got = read(fd, text, (size_t)st.st_size)) != st.st_size)
		die("cannot read the pool", pool);
	close(fd);
	text[got] = '\0';
	for (p = strstr(text, begin); p != NULL && idx > 0; idx--)
		p = strstr(p + 1, begin);
	if (p == NULL || (e = strstr(p, end)) == NULL ||
	    (e = strchr(e + sizeof(end) - 1, '\n')) == NULL) {
		free(text);
		return NULL;
	}
	if ((out = strndup(p, (size_t)(e + 1 - p))) == NULL)
		die("out of memory reading the pool", pool);
	free(text);
	return out;
}

/* Moves a copy of KEY's components into RSA. */
static int
copy_key(RSA *rsa, const RSA *key)
{
	const BIGNUM *n, *e, *d, *p, *q, *dp, *dq, *qi;
	BIGNUM *v[8] = {NULL};
	int i;

	F.rsa_get0_key(key, &n, &e, &d);
	F.rsa_get0_factors(key, &p, &q);
	F.rsa_get0_crt_params(key, &dp, &dq, &qi);
	if (n == NULL || e == NULL || d == NULL || p == NULL || q == NULL || dp == NULL ||
	    dq == NULL || qi == NULL)
		return -1;
	v[0] = F.bn_dup(n), v[1] = F.bn_dup(e), v[2] = F.bn_dup(d), v[3] = F.bn_dup(p);
	v[4] = F.bn_dup(q), v[5] = F.bn_dup(dp), v[6] = F.bn_dup(dq), v[7] = F.bn_dup(qi);
	for (i = 0; i < 8; i++)
		if (v[i] == NULL)
			goto fail;
	if (!F.rsa_set0_key(rsa, v[0], v[1], v[2]))
		goto fail;
	v[0] = v[1] = v[2] = NULL;
	if (!F.rsa_set0_factors(rsa, v[3], v[4]))
		goto fail;
	v[3] = v[4] = NULL;
	if (!F.rsa_set0_crt_params(rsa, v[5], v[6], v[7]))
		goto fail;
	return 0;
fail:
	for (i = 0; i < 8; i++)
		F.bn_free(v[i]);
	return -1;
}

/* The pool's next key into RSA: 1 done, 0 not answered here (the real generator runs). */
static int
from_pool(RSA *rsa, int bits, const BIGNUM *e)
{
	const char *pool = getenv("P11E_RSA_POOL"), *state = getenv("P11E_RSA_POOL_STATE");
	const RSA *key;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	char *pem;
	long idx;

	if (pool == NULL || *pool == '\0' || state == NULL || *state == '\0' || bits != 2048 ||
	    e == NULL || resolve() != 0 || F.bn_num_bits(e) > 32 || F.bn_get_word(e) != 65537)
		return 0;
	idx = next_index(state);
	if ((pem = pem_block(pool, idx)) == NULL)
		return 0; /* used up */
	if ((bio = F.bio_new_mem_buf(pem, -1)) == NULL ||
	    (pkey = F.pem_read_bio_privatekey(bio, NULL, NULL, NULL)) == NULL ||
	    (key = F.evp_pkey_get0_rsa(pkey)) == NULL || F.rsa_bits(key) != 2048 ||
	    copy_key(rsa, key) != 0)
		die("a key of the pool cannot be used (RSA-2048 PEM expected)", pool);
	F.evp_pkey_free(pkey);
	F.bio_free_all(bio);
	free(pem);
	return 1;
}

/* OpenSSL's own RSA_generate_key_ex: the next definition after this shim's, or, where
 * libcrypto was loaded with RTLD_LOCAL (Python's extension modules), libcrypto's. */
static genkey_fn
real_generator(void)
{
	void *fn, *lib;

	if ((fn = dlsym(RTLD_NEXT, "RSA_generate_key_ex")) == NULL &&
	    ((lib = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_NOLOAD)) == NULL ||
	     (fn = dlsym(lib, "RSA_generate_key_ex")) == NULL))
		die("RSA_generate_key_ex not found", dlerror());
	return (genkey_fn)fn;
}

int RSA_generate_key_ex(RSA *rsa, int bits, BIGNUM *e, BN_GENCB *cb);

int
RSA_generate_key_ex(RSA *rsa, int bits, BIGNUM *e, BN_GENCB *cb)
{
	static genkey_fn real;
	int saved = errno;

	if (from_softhsm(__builtin_return_address(0)) && from_pool(rsa, bits, e)) {
		errno = saved;
		return 1;
	}
	if (real == NULL)
		real = real_generator();
	return real(rsa, bits, e, cb);
}
