#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "store.h"
#include "tmpdir.h"

struct fx {
	char dir[256];
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL || tmpdir_make(f->dir, sizeof(f->dir), "store") != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	int rc = tmpdir_remove(f->dir);

	free(f);
	return rc;
}

/* f->dir/name in one of four rotating static buffers. */
static char *
pj(const struct fx *f, const char *name)
{
	static char buf[4][512];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", f->dir, name);
	return buf[i];
}

static void
put_file(const char *path, const char *s)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fputs(s, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

static void
assert_content(const char *path, const char *want)
{
	unsigned char *buf = NULL;
	size_t len = 0;

	assert_int_equal(store_read_file(path, 1 << 20, &buf, &len), 0);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(buf, want, len);
	free(buf);
}

/* Number of entries of dir whose name contains s. */
static int
count_names(const char *dir, const char *s)
{
	struct dirent *e;
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (strstr(e->d_name, s) != NULL)
			n++;
	}
	closedir(d);
	return n;
}

static int
count_symlinks(const char *dir)
{
	struct dirent *e;
	struct stat st;
	char p[600];
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (lstat(p, &st) == 0 && S_ISLNK(st.st_mode))
			n++;
	}
	closedir(d);
	return n;
}

static void
test_mkdirs(void **state)
{
	struct fx *f = *state;
	struct stat st;

	assert_int_equal(store_mkdirs(pj(f, "a/b//c/"), 0750), 0);
	assert_int_equal(stat(pj(f, "a/b/c"), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(stat(pj(f, "a"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(store_mkdirs(pj(f, "a/b/c"), 0700), 0);
	assert_int_equal(stat(pj(f, "a/b/c"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);

	put_file(pj(f, "file"), "x");
	assert_int_equal(store_mkdirs(pj(f, "file"), 0755), P11E_ERR_FILE);
	assert_int_equal(store_mkdirs(pj(f, "file/sub"), 0755), P11E_ERR_FILE);
}

static void
test_write_atomic(void **state)
{
	struct fx *f = *state;
	const char *p = pj(f, "out.txt");
	struct stat st;

	assert_int_equal(store_write_atomic(p, "hello\n", 6, 0640), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_content(p, "hello\n");

	assert_int_equal(store_write_atomic(p, "replaced", 8, 0644), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_content(p, "replaced");

	assert_int_equal(store_write_atomic(p, "", 0, 0600), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(count_names(f->dir, ".tmp"), 0);
}

static void
test_write_atomic_bad_dir(void **state)
{
	struct fx *f = *state;

	put_file(pj(f, "plain"), "old");
	assert_int_equal(store_write_atomic(pj(f, "plain/x"), "new", 3, 0644), P11E_ERR_FILE);
	assert_int_equal(store_write_atomic(pj(f, "missing/x"), "new", 3, 0644), P11E_ERR_FILE);
	assert_content(pj(f, "plain"), "old");
	assert_int_equal(count_names(f->dir, ".tmp"), 0);
}

static void
test_write_atomic_rename_fails(void **state)
{
	struct fx *f = *state;

	assert_int_equal(mkdir(pj(f, "isdir"), 0755), 0);
	put_file(pj(f, "isdir/keep"), "old");
	assert_int_equal(store_write_atomic(pj(f, "isdir"), "new", 3, 0644), P11E_ERR_FILE);
	assert_content(pj(f, "isdir/keep"), "old");
	assert_int_equal(count_names(f->dir, ".tmp"), 0);
}

/* A write that fails half-way (EFBIG here, as ENOSPC would) leaves the old file. */
static void
test_write_atomic_short_write(void **state)
{
	struct fx *f = *state;
	const char *p = pj(f, "big");
	struct rlimit old, lim;
	void (*oldsig)(int);
	char *buf = malloc(65536);
	int r;

	assert_non_null(buf);
	memset(buf, 'x', 65536);
	put_file(p, "old content");
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 4096;
	oldsig = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	r = store_write_atomic(p, buf, 65536, 0644);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, oldsig);
	free(buf);
	assert_int_equal(r, P11E_ERR_FILE);
	assert_content(p, "old content");
	assert_int_equal(count_names(f->dir, ".tmp"), 0);
}

/*
 * A temporary file a killed writer left ("<name>.tmp.<pid>.XXXXXX", that pid
 * gone) is removed by the next write of the file; a live writer's stays, and
 * so do other files' temporaries.
 */
static void
test_write_atomic_sweeps_dead_temps(void **state)
{
	struct fx *f = *state;
	char dead[64], live[64], other[64];
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	snprintf(dead, sizeof(dead), "cert.pem.tmp.%ld.AbCdEf", (long)pid);
	snprintf(live, sizeof(live), "cert.pem.tmp.%ld.GhIjKl", (long)getppid());
	snprintf(other, sizeof(other), "other.pem.tmp.%ld.MnOpQr", (long)pid);
	put_file(pj(f, dead), "half a cert");
	put_file(pj(f, live), "being written");
	put_file(pj(f, other), "not ours");
	assert_int_equal(store_write_atomic(pj(f, "cert.pem"), "new", 3, 0644), 0);
	assert_content(pj(f, "cert.pem"), "new");
	assert_int_equal(access(pj(f, dead), F_OK), -1);
	assert_int_equal(access(pj(f, live), F_OK), 0);
	assert_int_equal(access(pj(f, other), F_OK), 0);
	assert_int_equal(count_names(f->dir, ".tmp"), 2);
}

static void
test_read_file(void **state)
{
	struct fx *f = *state;
	unsigned char *buf = (unsigned char *)(uintptr_t)1;
	size_t len = 7;

	assert_int_equal(store_read_file(pj(f, "nope"), 100, &buf, &len), P11E_ERR_NOTFOUND);
	assert_ptr_equal(buf, (unsigned char *)(uintptr_t)1);
	assert_int_equal(len, 7);

	put_file(pj(f, "ten"), "0123456789");
	assert_int_equal(store_read_file(pj(f, "ten"), 10, &buf, &len), 0);
	assert_int_equal(len, 10);
	assert_string_equal((char *)buf, "0123456789");
	free(buf);
	buf = (unsigned char *)(uintptr_t)1;
	assert_int_equal(store_read_file(pj(f, "ten"), 9, &buf, &len), P11E_ERR_FILE);
	assert_ptr_equal(buf, (unsigned char *)(uintptr_t)1);

	put_file(pj(f, "empty"), "");
	assert_int_equal(store_read_file(pj(f, "empty"), 0, &buf, &len), 0);
	assert_int_equal(len, 0);
	assert_int_equal(buf[0], '\0');
	free(buf);
	buf = NULL;

	assert_int_equal(store_read_file(f->dir, 100, &buf, &len), P11E_ERR_FILE);
	assert_null(buf);
	assert_int_equal(store_read_file("/dev/zero", 10000, &buf, &len), P11E_ERR_FILE);
	assert_null(buf);
	assert_int_equal(store_read_file(pj(f, "ten/x"), 100, &buf, &len), P11E_ERR_FILE);
	assert_null(buf);
}

static void
add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	assert_non_null(e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value));
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

/* A certificate for cn with key, signed by issuer/ikey (self-signed when NULL). */
static X509 *
make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, long serial)
{
	X509 *x = X509_new();

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                                            (const unsigned char *)cn, -1, -1, 0),
	                 1);
	assert_int_equal(
	    X509_set_issuer_name(x, X509_get_subject_name(issuer != NULL ? issuer : x)), 1);
	assert_int_equal(X509_set_pubkey(x, key), 1);
	add_ext(x, issuer != NULL ? issuer : x, NID_subject_key_identifier, "hash");
	if (issuer == NULL) {
		add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		add_ext(x, issuer, NID_basic_constraints, "CA:FALSE");
		add_ext(x, issuer, NID_authority_key_identifier, "keyid");
	}
	assert_true(X509_sign(x, issuer != NULL ? ikey : key, EVP_sha256()) > 0);
	return x;
}

struct pki {
	EVP_PKEY *cakey, *leafkey;
	X509 *ca, *leaf;
};

static void
pki_make(struct pki *p, const char *ca_cn)
{
	assert_non_null(p->cakey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
	assert_non_null(p->leafkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
	p->ca = make_cert(ca_cn, p->cakey, NULL, NULL, 1);
	p->leaf = make_cert("p11enroll test leaf", p->leafkey, p->ca, p->cakey, 2);
}

static void
pki_free(struct pki *p)
{
	X509_free(p->ca);
	X509_free(p->leaf);
	EVP_PKEY_free(p->cakey);
	EVP_PKEY_free(p->leafkey);
}

static void
assert_link(const char *dir, X509 *cert, unsigned n, const char *target)
{
	char p[600], buf[256];
	ssize_t k;

	snprintf(p, sizeof(p), "%s/%08lx.%u", dir, X509_subject_name_hash(cert), n);
	k = readlink(p, buf, sizeof(buf) - 1);
	assert_true(k > 0);
	buf[k] = '\0';
	assert_string_equal(buf, target);
}

static int
lexists(const char *dir, X509 *cert, unsigned n)
{
	char p[600];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%08lx.%u", dir, X509_subject_name_hash(cert), n);
	return lstat(p, &st) == 0;
}

/*
 * `openssl verify -CApath` of the system's openssl and of every older build
 * listed in $P11E_OPENSSL_BINS (colon-separated wrappers made by
 * tests/old-openssl.sh; their by_dir lookup differs): 0 when all accept.
 */
static int
verify(const char *capath, const char *certfile)
{
	char cmd[2048], bins[4096], *bin, *save = NULL;
	const char *list = getenv("P11E_OPENSSL_BINS");
	int bad = 0;

	snprintf(bins, sizeof(bins), "openssl:%s", list != NULL ? list : "");
	for (bin = strtok_r(bins, ":", &save); bin != NULL; bin = strtok_r(NULL, ":", &save)) {
		snprintf(cmd, sizeof(cmd),
		         "'%s' verify -no-CAfile -no-CAstore -CApath '%s' '%s' >/dev/null 2>&1",
		         bin, capath, certfile);
		if (system(cmd) != 0) {
			print_message("verify: %s refuses %s with -CApath %s\n", bin, certfile,
			              capath);
			bad++;
		}
	}
	return bad;
}

static void
test_cert_pem(void **state)
{
	struct pki p = {0};
	char *pem = NULL;
	size_t len = 0;
	BIO *b;
	X509 *x;

	(void)state;
	pki_make(&p, "p11enroll test CA");
	assert_int_equal(store_cert_pem(p.ca, &pem, &len), 0);
	assert_int_equal(len, strlen(pem));
	assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE-----\n"));
	assert_non_null(b = BIO_new_mem_buf(pem, (int)len));
	assert_non_null(x = PEM_read_bio_X509(b, NULL, NULL, NULL));
	assert_int_equal(X509_cmp(x, p.ca), 0);
	X509_free(x);
	BIO_free(b);
	free(pem);
	pki_free(&p);
}

static void
test_trust_write(void **state)
{
	struct fx *f = *state;
	char dir[512];
	struct pki p = {0};
	struct store_cert certs[2];
	struct stat st;
	char *pem = NULL;
	size_t len;

	snprintf(dir, sizeof(dir), "%s", pj(f, "etc/trust"));
	pki_make(&p, "p11enroll test CA");
	certs[0] = (struct store_cert){"ca", p.ca};
	certs[1] = (struct store_cert){"leaf", p.leaf};

	assert_int_equal(store_cert_pem(p.leaf, &pem, &len), 0);
	assert_int_equal(store_write_atomic(pj(f, "leaf.pem"), pem, len, 0644), 0);
	free(pem);
	assert_int_not_equal(verify(dir, pj(f, "leaf.pem")), 0);

	assert_int_equal(store_trust_write(dir, certs, 2, NULL, 0), 0);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(stat(pj(f, "etc/trust/ca.crt"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(stat(pj(f, "etc/trust/leaf.crt"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_link(dir, p.ca, 0, "ca.crt");
	assert_link(dir, p.leaf, 0, "leaf.crt");
	assert_int_equal(count_symlinks(dir), 2);
	assert_int_equal(verify(dir, pj(f, "leaf.pem")), 0);

	assert_int_equal(store_trust_write(dir, certs, 2, NULL, 0), 0);
	assert_link(dir, p.ca, 0, "ca.crt");
	assert_link(dir, p.leaf, 0, "leaf.crt");
	assert_int_equal(count_symlinks(dir), 2);
	assert_int_equal(count_names(dir, ".tmp"), 0);
	assert_int_equal(verify(dir, pj(f, "leaf.pem")), 0);
	pki_free(&p);
}

/* ino of path (lstat). */
static ino_t
ino_of(const char *path)
{
	struct stat st;

	assert_int_equal(lstat(path, &st), 0);
	return st.st_ino;
}

/*
 * A trust file that already holds its certificate (content, 0644, a regular
 * file of ours) is left alone: same inode. Any difference rewrites it.
 */
static void
test_trust_unchanged_kept(void **state)
{
	struct fx *f = *state;
	char dir[512], ca[600], other[600];
	struct pki p = {0};
	struct store_cert certs[1];
	char *pem = NULL;
	size_t len;
	ino_t ino;
	struct stat st;
	FILE *fp;

	snprintf(dir, sizeof(dir), "%s", pj(f, "trust"));
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	snprintf(other, sizeof(other), "%s", pj(f, "elsewhere.pem"));
	pki_make(&p, "p11enroll test CA");
	certs[0] = (struct store_cert){"ca", p.ca};
	assert_int_equal(store_cert_pem(p.ca, &pem, &len), 0);

	assert_int_equal(store_trust_write(dir, certs, 1, NULL, 0), 0);
	assert_int_equal(store_holds(ca, pem, len, 0644), 1);
	assert_int_equal(store_holds(ca, pem, len, 0600), 0);
	assert_int_equal(store_holds(ca, pem, len - 1, 0644), 0);
	assert_int_equal(store_holds(pj(f, "nosuch"), pem, len, 0644), 0);
	ino = ino_of(ca);
	assert_int_equal(store_trust_write(dir, certs, 1, NULL, 0), 0);
	assert_int_equal(ino_of(ca), ino);

	/* another mode: rewritten with 0644 */
	assert_int_equal(chmod(ca, 0664), 0);
	assert_int_equal(store_trust_write(dir, certs, 1, NULL, 0), 0);
	assert_int_not_equal(ino_of(ca), ino);
	assert_int_equal(stat(ca, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	ino = ino_of(ca);

	/* one byte more: rewritten to the certificate alone */
	assert_non_null(fp = fopen(ca, "a"));
	fputc('\n', fp);
	fclose(fp);
	assert_int_equal(store_holds(ca, pem, len, 0644), 0);
	assert_int_equal(store_trust_write(dir, certs, 1, NULL, 0), 0);
	assert_int_not_equal(ino_of(ca), ino);
	assert_int_equal(store_holds(ca, pem, len, 0644), 1);

	/* a symbolic link to the same content: replaced by a file of ours */
	assert_int_equal(store_write_atomic(other, pem, len, 0644), 0);
	assert_int_equal(unlink(ca), 0);
	assert_int_equal(symlink(other, ca), 0);
	assert_int_equal(store_holds(ca, pem, len, 0644), 0);
	assert_int_equal(store_trust_write(dir, certs, 1, NULL, 0), 0);
	assert_int_equal(lstat(ca, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(store_holds(ca, pem, len, 0644), 1);
	assert_int_equal(count_names(dir, ".tmp"), 0);
	free(pem);
	pki_free(&p);
}

static void
test_trust_replace(void **state)
{
	struct fx *f = *state;
	char dir[512];
	struct pki a = {0}, b = {0};
	struct store_cert certs[2];
	char *pem = NULL, target[600];
	size_t len;

	snprintf(dir, sizeof(dir), "%s", pj(f, "trust"));
	pki_make(&a, "p11enroll old CA");
	pki_make(&b, "p11enroll new CA");
	assert_int_not_equal(X509_subject_name_hash(a.ca), X509_subject_name_hash(b.ca));

	certs[0] = (struct store_cert){"ca", a.ca};
	certs[1] = (struct store_cert){"leaf", a.leaf};
	assert_int_equal(store_trust_write(dir, certs, 2, NULL, 0), 0);
	assert_link(dir, a.ca, 0, "ca.crt");

	/* Someone else's entries under the new CA's hash: a file that is not a
	 * certificate and a dangling link, where OpenSSL before 3.0.22 stops looking. */
	snprintf(target, sizeof(target), "%s/%08lx.0", dir, X509_subject_name_hash(b.ca));
	put_file(target, "not ours");
	snprintf(target, sizeof(target), "%s/%08lx.1", dir, X509_subject_name_hash(b.ca));
	assert_int_equal(symlink("other.crt", target), 0);
	/* A duplicate link of ours goes away. */
	snprintf(target, sizeof(target), "%s/%08lx.5", dir, X509_subject_name_hash(a.leaf));
	assert_int_equal(symlink("leaf.crt", target), 0);

	certs[0] = (struct store_cert){"ca", b.ca};
	certs[1] = (struct store_cert){"leaf", b.leaf};
	assert_int_equal(store_trust_write(dir, certs, 2, NULL, 0), 0);
	assert_false(lexists(dir, a.ca, 0));
	assert_false(lexists(dir, a.leaf, 5));
	/* ours first; theirs kept, in their order, behind it, with no gap */
	assert_link(dir, b.ca, 0, "ca.crt");
	snprintf(target, sizeof(target), "%s/%08lx.1", dir, X509_subject_name_hash(b.ca));
	assert_content(target, "not ours");
	assert_link(dir, b.ca, 2, "other.crt");
	assert_false(lexists(dir, b.ca, 3));
	assert_link(dir, b.leaf, 0, "leaf.crt");
	assert_int_equal(count_symlinks(dir), 3);
	assert_int_equal(count_names(dir, ".mv"), 0);
	assert_int_equal(store_cert_pem(b.ca, &pem, &len), 0);
	assert_content(pj(f, "trust/ca.crt"), pem);
	free(pem);
	assert_int_equal(store_cert_pem(b.leaf, &pem, &len), 0);
	assert_int_equal(store_write_atomic(pj(f, "leaf.pem"), pem, len, 0644), 0);
	free(pem);
	assert_int_equal(verify(dir, pj(f, "leaf.pem")), 0);

	/* Rewriting changes nothing. */
	assert_int_equal(store_trust_write(dir, certs, 2, NULL, 0), 0);
	assert_link(dir, b.ca, 0, "ca.crt");
	assert_content(target, "not ours");
	assert_link(dir, b.ca, 2, "other.crt");
	assert_int_equal(count_symlinks(dir), 3);
	pki_free(&a);
	pki_free(&b);
}

/* A gap below a link (someone removed .0) hides it from every OpenSSL: closed. */
static void
test_trust_gap_closed(void **state)
{
	struct fx *f = *state;
	char dir[512], name[600];
	struct pki a = {0}, other = {0};
	struct store_cert certs[2];
	char *pem = NULL;
	size_t len;

	snprintf(dir, sizeof(dir), "%s", pj(f, "trust"));
	pki_make(&a, "p11enroll gap CA");
	pki_make(&other, "p11enroll other CA");
	certs[0] = (struct store_cert){"ca", a.ca};
	certs[1] = (struct store_cert){"leaf", a.leaf};
	assert_int_equal(store_trust_write(dir, certs, 2, NULL, 0), 0);
	/* our link moved up to .3 behind a gap; a foreign certificate at .5 */
	snprintf(name, sizeof(name), "%s/%08lx.0", dir, X509_subject_name_hash(a.ca));
	assert_int_equal(unlink(name), 0);
	snprintf(name, sizeof(name), "%s/%08lx.3", dir, X509_subject_name_hash(a.ca));
	assert_int_equal(symlink("ca.crt", name), 0);
	assert_int_equal(store_cert_pem(other.ca, &pem, &len), 0);
	snprintf(name, sizeof(name), "%s/%08lx.5", dir, X509_subject_name_hash(a.ca));
	put_file(name, pem);
	free(pem);
	assert_int_equal(store_cert_pem(a.leaf, &pem, &len), 0);
	assert_int_equal(store_write_atomic(pj(f, "leaf.pem"), pem, len, 0644), 0);
	free(pem);
	assert_int_not_equal(verify(dir, pj(f, "leaf.pem")), 0);

	assert_int_equal(store_trust_write(dir, certs, 2, NULL, 0), 0);
	assert_link(dir, a.ca, 0, "ca.crt");
	assert_true(lexists(dir, a.ca, 1));
	assert_false(lexists(dir, a.ca, 2));
	assert_false(lexists(dir, a.ca, 3));
	assert_false(lexists(dir, a.ca, 5));
	assert_int_equal(verify(dir, pj(f, "leaf.pem")), 0);
	pki_free(&a);
	pki_free(&other);
}

/* Files of ours that a write no longer names go, with their links; others stay. */
static void
test_trust_stale_removed(void **state)
{
	struct fx *f = *state;
	char dir[512];
	struct pki a = {0}, b = {0};
	struct store_cert certs[3];
	static const char *const owned[] = {"ca", "ra", "ca-int-#"};

	snprintf(dir, sizeof(dir), "%s", pj(f, "trust"));
	pki_make(&a, "p11enroll stale CA");
	pki_make(&b, "p11enroll stale RA");
	certs[0] = (struct store_cert){"ca", a.ca};
	certs[1] = (struct store_cert){"ra", b.ca};
	certs[2] = (struct store_cert){"ca-int-12", b.leaf};
	assert_int_equal(store_trust_write(dir, certs, 3, owned, 3), 0);
	put_file(pj(f, "trust/other.crt"), "someone else's");
	put_file(pj(f, "trust/ca-int-x.crt"), "not a name of ours");
	assert_int_equal(count_symlinks(dir), 3);

	assert_int_equal(store_trust_write(dir, certs, 1, owned, 3), 0);
	assert_link(dir, a.ca, 0, "ca.crt");
	assert_false(lexists(dir, b.ca, 0));
	assert_false(lexists(dir, b.leaf, 0));
	assert_int_equal(count_symlinks(dir), 1);
	assert_int_equal(access(pj(f, "trust/ra.crt"), F_OK), -1);
	assert_int_equal(access(pj(f, "trust/ca-int-12.crt"), F_OK), -1);
	assert_int_equal(access(pj(f, "trust/other.crt"), F_OK), 0);
	assert_int_equal(access(pj(f, "trust/ca-int-x.crt"), F_OK), 0);
	pki_free(&a);
	pki_free(&b);
}

/* Two certificates with one subject (a CA roll-over) get .0 and .1, kept on rewrite. */
static void
test_trust_same_subject(void **state)
{
	struct fx *f = *state;
	char dir[512];
	struct pki a = {0}, b = {0};
	struct store_cert certs[2];
	int round;

	snprintf(dir, sizeof(dir), "%s", pj(f, "trust"));
	pki_make(&a, "p11enroll CA");
	pki_make(&b, "p11enroll CA");
	certs[0] = (struct store_cert){"ca", a.ca};
	certs[1] = (struct store_cert){"ca-next", b.ca};
	for (round = 0; round < 2; round++) {
		assert_int_equal(store_trust_write(dir, certs, 2, NULL, 0), 0);
		assert_link(dir, a.ca, 0, "ca.crt");
		assert_link(dir, b.ca, 1, "ca-next.crt");
		assert_int_equal(count_symlinks(dir), 2);
	}
	assert_int_equal(store_trust_write(dir, certs + 1, 1, NULL, 0), 0);
	assert_link(dir, a.ca, 0, "ca.crt");
	assert_link(dir, b.ca, 1, "ca-next.crt");
	pki_free(&a);
	pki_free(&b);
}

static void
test_trust_bad_names(void **state)
{
	struct fx *f = *state;
	struct pki a = {0};
	struct store_cert certs[2];

	pki_make(&a, "p11enroll CA");
	certs[0] = (struct store_cert){"../ca", a.ca};
	assert_int_equal(store_trust_write(pj(f, "t"), certs, 1, NULL, 0), P11E_ERR_INTERNAL);
	certs[0] = (struct store_cert){"ca", a.ca};
	certs[1] = (struct store_cert){"ca", a.leaf};
	assert_int_equal(store_trust_write(pj(f, "t"), certs, 2, NULL, 0), P11E_ERR_INTERNAL);
	put_file(pj(f, "file"), "x");
	assert_int_equal(store_trust_write(pj(f, "file/t"), certs, 1, NULL, 0), P11E_ERR_FILE);
	pki_free(&a);
}

/* StrictModes for state_dir and the trust dir: ours or root's, writable by nobody else. */
static void
test_check_dir(void **state)
{
	struct fx *f = *state;
	char link[600];

	assert_int_equal(store_mkdirs(pj(f, "good/state"), 0700), 0);
	assert_int_equal(store_check_dir(pj(f, "good/state"), "state_dir"), 0);
	/* not there yet: judged by what exists above it */
	assert_int_equal(store_check_dir(pj(f, "good/state/sub/deeper"), "state_dir"), 0);
	assert_int_equal(store_check_dir("relative/dir", "state_dir"), P11E_ERR_CONFIG);

	assert_int_equal(chmod(pj(f, "good/state"), 0777), 0);
	assert_int_equal(store_check_dir(pj(f, "good/state"), "state_dir"), P11E_ERR_CONFIG);
	assert_int_equal(chmod(pj(f, "good/state"), 0770), 0);
	assert_int_equal(store_check_dir(pj(f, "good/state"), "state_dir"), P11E_ERR_CONFIG);
	assert_int_equal(chmod(pj(f, "good/state"), 0755), 0);
	assert_int_equal(store_check_dir(pj(f, "good/state"), "state_dir"), 0);
	/* a parent that others can write, without the sticky bit */
	assert_int_equal(chmod(pj(f, "good"), 0777), 0);
	assert_int_equal(store_check_dir(pj(f, "good/state"), "state_dir"), P11E_ERR_CONFIG);
	assert_int_equal(store_check_dir(pj(f, "good/state/new"), "state_dir"), P11E_ERR_CONFIG);
	assert_int_equal(chmod(pj(f, "good"), 0700), 0);
	assert_int_equal(store_check_dir(pj(f, "good/state"), "state_dir"), 0);

	if (geteuid() != 0)
		return; /* the rest needs another owner */
	/* owned by someone else */
	assert_int_equal(chown(pj(f, "good/state"), 65534, 65534), 0);
	assert_int_equal(store_check_dir(pj(f, "good/state"), "state_dir"), P11E_ERR_CONFIG);
	assert_int_equal(chown(pj(f, "good/state"), 0, 0), 0);
	/* a root-owned sticky directory that all can write is fine above it (/tmp) */
	assert_int_equal(chmod(pj(f, "good"), 01777), 0);
	assert_int_equal(store_check_dir(pj(f, "good/state"), "state_dir"), 0);
	/* ... but not as the state_dir itself */
	assert_int_equal(store_check_dir(pj(f, "good"), "state_dir"), P11E_ERR_CONFIG);
	/* a symbolic link of another user's in the path */
	snprintf(link, sizeof(link), "%s", pj(f, "good/link"));
	assert_int_equal(symlink(pj(f, "good/state"), link), 0);
	assert_int_equal(store_check_dir(link, "state_dir"), 0);
	assert_int_equal(lchown(link, 65534, 65534), 0);
	assert_int_equal(store_check_dir(link, "state_dir"), P11E_ERR_CONFIG);
	assert_int_equal(chmod(pj(f, "good"), 0700), 0);
}

/* State files: never through a link; ours or root's; not writable by others. */
static void
test_read_state(void **state)
{
	struct fx *f = *state;
	unsigned char *buf = NULL;
	size_t len = 0;

	put_file(pj(f, "ca.pin"), "sha256:AB\n");
	assert_int_equal(chmod(pj(f, "ca.pin"), 0644), 0);
	assert_int_equal(store_read_state(pj(f, "ca.pin"), 4096, &buf, &len), 0);
	assert_int_equal(len, 10);
	free(buf);
	buf = NULL;
	assert_int_equal(store_read_state(pj(f, "none"), 4096, &buf, &len), P11E_ERR_NOTFOUND);
	assert_int_equal(chmod(pj(f, "ca.pin"), 0666), 0);
	assert_int_equal(store_read_state(pj(f, "ca.pin"), 4096, &buf, &len), P11E_ERR_CONFIG);
	assert_null(buf);
	assert_int_equal(chmod(pj(f, "ca.pin"), 0600), 0);
	assert_int_equal(symlink(pj(f, "ca.pin"), pj(f, "link.pin")), 0);
	assert_int_equal(store_read_state(pj(f, "link.pin"), 4096, &buf, &len), P11E_ERR_CONFIG);
	assert_null(buf);
	assert_int_equal(mkdir(pj(f, "dir.pin"), 0700), 0);
	assert_int_equal(store_read_state(pj(f, "dir.pin"), 4096, &buf, &len), P11E_ERR_CONFIG);
	if (geteuid() == 0) {
		assert_int_equal(chown(pj(f, "ca.pin"), 65534, 65534), 0);
		assert_int_equal(store_read_state(pj(f, "ca.pin"), 4096, &buf, &len),
		                 P11E_ERR_CONFIG);
		assert_null(buf);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_mkdirs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_atomic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_atomic_bad_dir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_atomic_rename_fails, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_atomic_short_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_atomic_sweeps_dead_temps, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_file, setup, teardown),
	    cmocka_unit_test(test_cert_pem),
	    cmocka_unit_test_setup_teardown(test_trust_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trust_replace, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trust_unchanged_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trust_gap_closed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_check_dir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_state, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trust_stale_removed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trust_same_subject, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trust_bad_names, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
