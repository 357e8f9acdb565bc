/*
 * err.h: p11enroll's error codes and process exit codes.
 *
 * Functions return 0 on success or one of the negative P11E_ERR_* values.
 * The function that detects a failure logs a message naming what failed and
 * what the user can do (log.h); callers only propagate the code.
 */
#ifndef P11E_ERR_H
#define P11E_ERR_H

enum p11e_err {
	P11E_OK = 0,
	P11E_ERR_INTERNAL = -1,  /* a bug or an OpenSSL failure we cannot explain */
	P11E_ERR_ALLOC = -2,     /* out of memory */
	P11E_ERR_USAGE = -3,     /* bad command line */
	P11E_ERR_CONFIG = -4,    /* bad configuration (file:line logged) */
	P11E_ERR_NETWORK = -5,   /* server unreachable, timeout, HTTP error */
	P11E_ERR_PENDING = -6,   /* the CA answered PENDING */
	P11E_ERR_REJECTED = -7,  /* the CA answered FAILURE, challenge refused */
	P11E_ERR_VERIFY = -8,    /* response failed verification (signature, nonce,
	                            transaction, fingerprint, pinned CA) */
	P11E_ERR_MALFORMED = -9, /* response could not be parsed */
	P11E_ERR_TOKEN = -10,    /* no token, token failure, PIN refused */
	P11E_ERR_FILE = -11,     /* file could not be read or written */
	P11E_ERR_NOTFOUND = -12, /* an object looked up does not exist */
	P11E_ERR_PIN = -13,      /* PIN refused, locked, final try or missing: never retried
	                            without a change (the daemon parks the profile) */
	P11E_ERR_BUSY = -14,     /* another p11enroll run holds the profile's lock */
	P11E_ERR_HOOK = -15,     /* hook-test: a [hooks] command failed or could not start */
};

/* Process exit codes: part of the interface, stable, never reordered. */
enum p11e_exit {
	P11E_EXIT_OK = 0,
	P11E_EXIT_USAGE = 64,
	P11E_EXIT_SOFTWARE = 70,
	P11E_EXIT_UNAVAILABLE = 69,
	P11E_EXIT_IOERR = 74,
	P11E_EXIT_TEMPFAIL = 75,
	P11E_EXIT_PROTOCOL = 76,
	P11E_EXIT_NOPERM = 77,
	P11E_EXIT_CONFIG = 78,
};

/* Short text for an error code; never NULL. */
const char *p11e_strerror(int err);

/* The exit code the program uses for an error code. */
int p11e_exit_code(int err);

#endif
