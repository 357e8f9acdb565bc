/*
 * fuzz_common.h: what the libFuzzer targets in tests/fuzz/ share: the
 * fixtures of tests/data (P11E_TEST_DATA, else the directory the Makefile
 * compiled in), quiet logging, and a private directory for targets whose
 * parser reads a file. Each target includes this once.
 */
#ifndef P11E_FUZZ_COMMON_H
#define P11E_FUZZ_COMMON_H

#include <fcntl.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "log.h"

#ifndef FUZZ_DATA_DIR
#define FUZZ_DATA_DIR "tests/data"
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stops the target: a fixture is missing or the set-up cannot be built. */
static inline void __attribute__((noreturn)) fuzz_die(const char *what, const char *name)
{
	fprintf(stderr, "fuzz set-up: %s %s\n", what, name != NULL ? name : "");
	exit(2);
}

/* Logs only with FUZZ_VERBOSE set: the parsers log every refusal. */
static inline void
fuzz_quiet(void)
{
	log_set_level(getenv("FUZZ_VERBOSE") != NULL ? LOG_LVL_DEBUG : -1);
}

/* The LLVMFuzzerInitialize of a target that needs nothing set up but quiet logging. */
#define FUZZ_INITIALIZE_QUIET                                                                      \
	int LLVMFuzzerInitialize(int *argc, char ***argv)                                          \
	{                                                                                          \
		(void)argc;                                                                        \
		(void)argv;                                                                        \
		fuzz_quiet();                                                                      \
		return 0;                                                                          \
	}

/* The whole fixture tests/data/<name>; malloc'ed. */
static inline unsigned char *
fuzz_load(const char *name, size_t *len)
{
	char path[1024];
	const char *dir = getenv("P11E_TEST_DATA");
	unsigned char *buf;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir != NULL ? dir : FUZZ_DATA_DIR, name);
	if ((f = fopen(path, "rb")) == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || (buf = malloc((size_t)n + 1)) == NULL ||
	    fread(buf, 1, (size_t)n, f) != (size_t)n)
		fuzz_die("cannot read", path);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* A DER certificate of tests/data. */
static inline X509 *
fuzz_cert(const char *name)
{
	size_t len;
	unsigned char *d = fuzz_load(name, &len);
	const unsigned char *p = d;
	X509 *x = d2i_X509(NULL, &p, (long)len);

	if (x == NULL)
		fuzz_die("not a DER certificate:", name);
	free(d);
	return x;
}

/* A PEM private key of tests/data. */
static inline EVP_PKEY *
fuzz_key(const char *name)
{
	size_t len;
	unsigned char *d = fuzz_load(name, &len);
	BIO *b = BIO_new_mem_buf(d, (int)len);
	EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;

	if (k == NULL)
		fuzz_die("not a PEM private key:", name);
	BIO_free(b);
	free(d);
	return k;
}

/* data as a NUL-terminated string (a NUL inside ends it early, as it would in C); malloc'ed. */
static inline char *
fuzz_str(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

static char fuzz_dir_path[512];

/* Removes path and, for a directory, everything in it (not following links). */
static inline void
fuzz_rm(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	char sub[1024];

	if (lstat(path, &st) != 0)
		return;
	if (S_ISDIR(st.st_mode) && (d = opendir(path)) != NULL) {
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
			fuzz_rm(sub);
		}
		closedir(d);
	}
	remove(path);
}

static inline void
fuzz_dir_remove(void)
{
	if (fuzz_dir_path[0] != '\0')
		fuzz_rm(fuzz_dir_path);
}

/*
 * A directory of this process's own (0700) under $TMPDIR, else /tmp, removed
 * at exit; the same one on every call.
 */
static inline const char *
fuzz_dir(const char *tag)
{
	const char *t = getenv("TMPDIR");

	if (fuzz_dir_path[0] != '\0')
		return fuzz_dir_path;
	snprintf(fuzz_dir_path, sizeof(fuzz_dir_path), "%s/p11e-fuzz-%s-XXXXXX",
	         t != NULL ? t : "/tmp", tag);
	if (mkdtemp(fuzz_dir_path) == NULL)
		fuzz_die("cannot create a directory in", t != NULL ? t : "/tmp");
	atexit(fuzz_dir_remove);
	return fuzz_dir_path;
}

/* Replaces the file at path with data, mode 0600. */
static inline void
fuzz_write(const char *path, const uint8_t *data, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd == -1 || (size > 0 && write(fd, data, size) != (ssize_t)size) || close(fd) != 0)
		fuzz_die("cannot write", path);
}

#endif
