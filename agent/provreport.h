/*
 * provreport.h: `provision --report FILE`: one JSON object per line and per
 * token, each appended with a single write and fsync'ed, so that a crash
 * never loses the record of a card that was finished.
 */
#ifndef P11E_PROVREPORT_H
#define P11E_PROVREPORT_H

/* A [hooks] command that failed for the card's certificate (hook.h). */
struct provreport_hook {
	const char *name;    /* "after" or "before_remove" */
	const char *event;   /* the event it was told of ("enrolled") */
	int how, code;       /* enum spawn_how and its code (spawn.h) */
	const char *message; /* what became of it and the first lines of its output */
};

struct provreport_rec {
	const char *serial, *label; /* the token's */
	const char *result;         /* "enrolled", "skipped", "pending" or "failed" */
	const char *cert_serial;    /* hex, or NULL */
	const char *not_after;      /* as p11enroll prints it (ISO 8601), or NULL */
	const char *key_uri;        /* RFC 7512 URI of the private key, or NULL */
	const char *error;          /* why it failed or is pending, or NULL */
	const char *pin; /* [token] init = yes: the new user PIN, else NULL (no member) */
	const struct provreport_hook *hook; /* a hook that failed, or NULL */
};

/*
 * Opens (creates) path for appending: O_APPEND, mode 0600 when it is to hold
 * secrets (an existing file that group or others can read is then refused),
 * else 0644 (umask applies). *fd is set on success. Errors (logged):
 * P11E_ERR_FILE, P11E_ERR_CONFIG (secret report readable by others).
 */
int provreport_open(const char *path, int secret, int *fd);

/*
 * Appends rec as one line ({"time":...,"serial":...,...,"error":...,"hook":...})
 * with a single write(2), then fsync. "hook" is null, or {"name", "event",
 * "result" ("failed": a non-zero exit, "signal", "timeout", "not-started"),
 * "exit_code" and "signal" (each a number or null), "message"}, named as in
 * `status --json`'s hooks. Errors (logged naming path): P11E_ERR_FILE,
 * P11E_ERR_ALLOC.
 */
int provreport_write(int fd, const char *path, const struct provreport_rec *rec);

#endif
