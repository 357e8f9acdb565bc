/*
 * store.h: files p11enroll writes: atomic replacement, the trust directory
 * (PEM certificates plus OpenSSL hash links), reading bounded files.
 */
#ifndef P11E_STORE_H
#define P11E_STORE_H

#include <stddef.h>
#include <sys/types.h>

#include <openssl/x509.h>

/* "dir/name", malloc'ed; NULL when out of memory. */
char *store_path_join(const char *dir, const char *name);

/* mkdir -p with mode for the directories it creates. P11E_ERR_FILE (logged). */
int store_mkdirs(const char *dir, mode_t mode);

/*
 * Replaces path with buf atomically: a temporary file in the same directory
 * ("<path>.tmp.<pid>.XXXXXX", created O_EXCL with mode), written in full,
 * fsync'ed, renamed over path, then the directory fsync'ed. On any failure
 * the old file is untouched and the temporary removed; temporaries that a
 * killed writer (its pid gone) left beside path are removed after a success. Errors: P11E_ERR_FILE,
 * logged with the path and the reason (e.g. "No space left on device").
 */
int store_write_atomic(const char *path, const void *buf, size_t len, mode_t mode);

/*
 * 1 when path already is what store_write_atomic(path, buf, len, mode) would
 * make: a regular file (not through a symbolic link) of the running user,
 * with exactly mode's permission bits and exactly len bytes equal to buf;
 * else 0 (also when it cannot be read). Logs nothing.
 */
int store_holds(const char *path, const void *buf, size_t len, mode_t mode);

/*
 * Removes path (absent is fine), then fsyncs its directory so that the
 * removal survives a crash. Errors: P11E_ERR_FILE, logged with the path.
 */
int store_unlink(const char *path);

/*
 * Reads a whole file of at most max bytes. *out is malloc'ed (and
 * NUL-terminated one past *len). Errors: P11E_ERR_NOTFOUND when it does not
 * exist (not logged), P11E_ERR_FILE otherwise (logged).
 */
int store_read_file(const char *path, size_t max, unsigned char **out, size_t *len);

/*
 * As store_read_file, for a file of p11enroll's state (a pin, a pending
 * transaction, a record): never through a symbolic link (O_NOFOLLOW), and only
 * a regular file owned by the running user or root that group and others
 * cannot write. Refused: P11E_ERR_CONFIG, logged naming the path, its owner
 * and mode. P11E_ERR_NOTFOUND (not logged) when it does not exist.
 */
int store_read_state(const char *path, size_t max, unsigned char **out, size_t *len);

/*
 * Whether p11enroll may keep its state (or trust) in dir, as OpenSSH's
 * StrictModes judges: dir and every directory above it must belong to the
 * running user or root and not be writable by group or others (a root-owned
 * sticky directory such as /tmp may be, above dir), and no component of the
 * path may be a symbolic link of another user's. A dir that does not exist yet
 * is judged by its existing ancestors (store_mkdirs creates the rest, 0700 or
 * 0755). what names it in the message ("state_dir"). Refused:
 * P11E_ERR_CONFIG, logged naming the path, owner and mode.
 */
int store_check_dir(const char *dir, const char *what);

struct store_cert {
	const char *name; /* file stem: "ca", "ra-sign", "ra-enc", ... */
	X509 *cert;
};

/*
 * Writes each certificate as DIR/<name>.crt (PEM, 0644, atomically; a file
 * that already holds exactly that is left alone, store_holds) and an
 * OpenSSL hash link DIR/<subject-hash>.N -> <name>.crt for it, so that
 * `openssl verify -CApath DIR` finds it with every OpenSSL 3.0 (whose lookup
 * stops at the first missing HASH.N, and before 3.0.22 also at the first one
 * that does not load as a PEM certificate). For each hash involved the
 * entries then form a run from .0 without gaps: other certificates keep
 * their order, our links follow (reused when they already point right), and
 * entries that do not load (someone else's junk, a dangling link, a CRL) are
 * moved behind ours, never removed. Stale or duplicate links of ours go.
 * Files "<stem>.crt" whose stem matches one of owned[0..nowned) (a pattern in
 * which '#' stands for one or more digits) and that certs does not name are
 * removed with their links: certificates of ours that are no longer trusted.
 * Creates DIR (0755) if needed. Errors: P11E_ERR_FILE, P11E_ERR_ALLOC,
 * P11E_ERR_INTERNAL (an invalid or repeated name).
 */
int store_trust_write(const char *dir, const struct store_cert *certs, size_t n,
                      const char *const *owned, size_t nowned);

/* PEM encoding of a certificate; *out malloc'ed. */
int store_cert_pem(X509 *cert, char **out, size_t *len);

#endif
