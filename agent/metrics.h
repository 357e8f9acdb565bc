/*
 * metrics.h: the profiles' state in the Prometheus text format (metrics.c),
 * for node_exporter's textfile collector ([agent] metrics_file, written by
 * the agent) and for `status --metrics`. Every series is a gauge labelled
 * with profile="<name>" (profile.h); the names are listed in p11enroll(8).
 */
#ifndef P11E_METRICS_H
#define P11E_METRICS_H

#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

#include "attempt.h"
#include "conf.h"

/* The profile's current certificate, as far as it is known. */
struct metrics_cert {
	int have;                     /* 0: none known (no token yet, or none on it) */
	time_t not_before, not_after; /* seconds since the epoch */
	time_t due;                   /* the renewal moment under [renewal] */
	char subject[512];            /* RFC 4514, as hooks see it (P11ENROLL_SUBJECT) */
	char serial[96];              /* upper-case hex */
};

/* One profile's series. */
struct metrics_profile {
	const char *name;      /* the profile label */
	const char *token_uri; /* the profile's [token] uri */
	struct metrics_cert cert;
	int have_last; /* the last attempt (attempt.h) */
	struct attempt last;
	int pending;          /* the CA holds a request of the profile (pending.h) */
	time_t pending_since; /* since then */
	int have_hook;        /* the hooks' record (hookrec.h) */
	unsigned hook_failures, hooks_owed;
};

/*
 * The facts of cert (NULL: none) with its renewal moment due, into *out.
 * P11E_ERR_MALFORMED (not logged) when its dates cannot be read;
 * P11E_ERR_ALLOC.
 */
int metrics_cert_facts(X509 *cert, time_t due, struct metrics_cert *out);

/*
 * Fills the state_dir part of *m (the last attempt, a pending request, the
 * hooks' record) from c's files; what cannot be read is left out (problems
 * are logged by the loaders). name, token_uri and cert are left as they are.
 */
void metrics_load_state(const struct conf *c, struct metrics_profile *m);

/*
 * The text format of n profiles (each family's HELP and TYPE once, then its
 * series in profile order), malloc'ed into *out (NUL-terminated, *len
 * bytes). Label values are escaped as the format requires; bytes that are
 * not printable UTF-8 text become '?'. Errors: P11E_ERR_ALLOC.
 */
int metrics_format(const struct metrics_profile *p, size_t n, char **out, size_t *len);

/*
 * metrics_format into path, atomically (store_write_atomic), mode 0644: a
 * collector never reads half a file. Errors: P11E_ERR_FILE (logged with the
 * path), P11E_ERR_ALLOC.
 */
int metrics_write_file(const char *path, const struct metrics_profile *p, size_t n);

#endif
