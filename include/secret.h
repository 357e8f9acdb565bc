/*
 * secret.h: secrets (PINs, challenges, passwords) in memory, and the
 * process's protection against dumps.
 *
 * Secrets live in one arena: anonymous mappings that are locked (mlock: they
 * never reach swap) and excluded from core dumps and gcore (MADV_DONTDUMP).
 * Every block is wiped with OPENSSL_cleanse when released. Secrets never
 * reach a log line. The arena is for one thread (p11enroll forks, it does not
 * share secrets between threads); a forked child locks its copy again.
 */
#ifndef P11E_SECRET_H
#define P11E_SECRET_H

#include <stddef.h>

/*
 * The start-up hardening, first thing in main(), before OpenSSL or libcurl
 * allocate anything: no core dumps (RLIMIT_CORE 0, soft and hard), no dumps
 * or ptrace attachment by other users' tools (PR_SET_DUMPABLE 0, read back),
 * the arena mapped (locked, excluded from dumps), and OpenSSL's allocator
 * replaced by one that wipes every block it frees. Each step is checked:
 * P11E_ERR_INTERNAL, logged naming the step and the reason, when dumps cannot
 * be disabled (the caller exits 70: secrets must not run unprotected). A
 * failed mlock is a warning (see secret_alloc), not an error.
 */
int secret_harden(void);

/*
 * Reads the secret in the file at path (what names it in messages, e.g.
 * "PIN file"). One line; a trailing CR/LF is removed. The file must be a
 * regular file that neither group nor others can access (mode & 077 == 0):
 * otherwise P11E_ERR_CONFIG with a message naming the path and its mode.
 * Missing/unreadable: P11E_ERR_FILE. Empty or larger than 4 KiB:
 * P11E_ERR_CONFIG. The bytes are read straight into the arena. On success *out
 * is a NUL-terminated string in the arena, to release with secret_free.
 */
int secret_read_file(const char *path, const char *what, char **out);

/* Copies the string s into the arena; *out (secret_free) set on success.
 * Errors as secret_alloc. */
int secret_dup(const char *s, char **out);

/*
 * n zeroed bytes (at least 1) in the arena, 16-byte aligned; *out set on
 * success, release with secret_release. Errors (logged): P11E_ERR_ALLOC;
 * P11E_ERR_INTERNAL when the memory cannot be excluded from core dumps
 * (never handed out then). When it cannot be locked (RLIMIT_MEMLOCK, see
 * `ulimit -l`), one warning per process and the memory is used unlocked.
 */
int secret_alloc(size_t n, void **out);

/*
 * Wipes every byte of the block and releases it. Accepts NULL. A pointer
 * that is not from the arena (a secret some library malloc'ed) is wiped over
 * malloc_usable_size bytes and free()d.
 */
void secret_release(void *p);

/* secret_release for strings from secret_dup, secret_read_file and the
 * functions documented to return arena strings. Accepts NULL. */
void secret_free(char *s);

/* 1 if p points into the arena's memory (for tests and assertions). */
int secret_in_arena(const void *p);

/*
 * Zeroes n bytes of stack below the caller's frame: what the functions it
 * called left there (a library's password or hash buffers). Call it right
 * after a call that handled a secret.
 */
void secret_burn_stack(size_t n);

/*
 * A malloc family whose free (and realloc, which never resizes in place)
 * wipes the whole block first: for libraries that copy secrets into their
 * own heap memory (libcurl through curl_global_init_mem).
 */
void *secret_wipe_malloc(size_t n);
void *secret_wipe_calloc(size_t nmemb, size_t size);
void *secret_wipe_realloc(void *p, size_t n);
char *secret_wipe_strdup(const char *s);
void secret_wipe_free(void *p);

#endif
