/*
 * statefile.h: the small per-profile text files in state_dir (the pending
 * transaction, the record of the last attempt, the hooks' and the keys'
 * records): their names, their key=value lines and how a damaged one is
 * reported.
 */
#ifndef P11E_STATEFILE_H
#define P11E_STATEFILE_H

#include <stddef.h>

#include "conf.h"

/*
 * state_dir/<prefix><key_label><suffix>, the label reduced to [A-Za-z0-9.-]
 * (other bytes become '_'). *out is malloc'ed. Errors: P11E_ERR_ALLOC.
 */
int statefile_path(const struct conf *c, const char *prefix, const char *suffix, char **out);

/*
 * Reads the file at path (at most max bytes, store_read_state: never through
 * a link, only ours and not writable by others) and calls field(ud, key, value)
 * for each "key=value" line in order, skipping lines that start with '#'.
 * Returns 0; P11E_ERR_NOTFOUND when there is no file (not logged);
 * P11E_ERR_FILE when it cannot be read, P11E_ERR_CONFIG when it is refused
 * (both logged); P11E_ERR_MALFORMED (not
 * logged: the caller names the file) when it holds a NUL byte, a line
 * without '=', or field returns non-zero, with *lineno the line at fault.
 */
int statefile_read(const char *path, size_t max,
                   int (*field)(void *ud, const char *k, const char *v), void *ud,
                   unsigned *lineno);

/*
 * One kind of state file, for statefile_load: its name, how much of it is
 * read, how its lines are read and what a damaged one means.
 */
struct statefile_kind {
	const char *prefix, *suffix; /* state_dir/<prefix><label><suffix> (statefile_path) */
	size_t max;                  /* bytes read at most (statefile_read) */
	/* each key=value line in order (statefile_read); non-zero: the file is damaged */
	int (*field)(void *ud, const char *k, const char *v);
	/* NULL, or the last word on a file whose lines all read well: NULL when it is
	 * whole, else the key of a line it lacks (the file is damaged) */
	const char *(*missing)(const void *ud);
	/*
	 * A damaged file (its line N at fault, or a line missing): with replaced_by
	 * (what writes it anew, "the next attempt") a warning "PATH is damaged
	 * (line N); ignored, <replaced_by> replaces it" and it counts as none;
	 * without, an error "PATH is damaged (line N): <remedy>".
	 */
	const char *replaced_by;
	const char *remedy;
};

/*
 * Reads the profile's file of kind k (statefile_path, statefile_read with
 * k->field and ud, then k->missing) into ud. Returns 0;
 * P11E_ERR_NOTFOUND when there is none (not logged), and with k->replaced_by
 * also when it is damaged (logged as a warning naming the file and what
 * replaces it); without k->replaced_by a damaged file is P11E_ERR_FILE
 * (logged naming the file and k->remedy); P11E_ERR_FILE when it cannot be
 * read and P11E_ERR_CONFIG when it is refused (both logged: store_read_state);
 * P11E_ERR_ALLOC. ud may hold part of a file that did not load: read into a
 * scratch copy and keep it only on 0.
 */
int statefile_load(const struct conf *c, const struct statefile_kind *k, void *ud);

/*
 * s escaped into out (at least 4 * strlen(s) + 1 bytes): '\\' doubled,
 * control bytes and DEL as \xHH, so that any text fits on one line.
 */
void statefile_escape(const char *s, char *out);

/*
 * The inverse of statefile_escape into out (size bytes, NUL-terminated); -1
 * on a bad escape (or \x00) or when it does not fit.
 */
int statefile_unescape(const char *s, char *out, size_t size);

/*
 * store_check_dir of state_dir and the trust dir: refuses (P11E_ERR_CONFIG,
 * logged) directories that another user could write or swap.
 */
int statefile_check_dirs(const struct conf *c);

/*
 * Takes the profile's lock, state_dir/lock-<key_label> (created 0600, and
 * state_dir with it), so that two runs (the agent, a timer, a manual renew)
 * never work on one profile's token objects and state files at once. Does
 * not wait; checks the directories first (statefile_check_dirs). On success *fd holds the lock
 * until statefile_unlock(*fd) or the process ends (a crash releases it). Errors: P11E_ERR_BUSY
 * (logged: another run holds it), P11E_ERR_FILE (logged), P11E_ERR_ALLOC.
 */
int statefile_lock(const struct conf *c, int *fd);

/* Releases a lock taken by statefile_lock. Accepts -1. */
void statefile_unlock(int fd);

#endif
