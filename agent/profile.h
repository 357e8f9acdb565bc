/*
 * profile.h: the daemon's profiles: one configuration file each, with its
 * schedule.
 */
#ifndef P11E_PROFILE_H
#define P11E_PROFILE_H

#include <stddef.h>
#include <time.h>

#include "conf.h"
#include "metrics.h"

struct profile {
	char *name; /* config file name without ".conf", for log lines */
	struct conf *c;
	time_t next_at;
	unsigned failures; /* consecutive failed attempts */
	int parked;        /* refused PIN or bad configuration: waits for SIGHUP */
	char what[256];
	struct metrics_cert cert; /* the token's side, as the last attempt saw it (metrics.h) */
};

/*
 * Loads every profile the paths name: a file, or a directory standing for
 * every "*.conf" in it (name order; hidden files skipped; none is an error).
 * Two profiles with the same state_dir and [key] label are refused (their
 * state files would collide), and so are two with the same [key] label
 * whose token URIs may select one token of one module (no token attribute
 * that both name differs; modules compared by their real paths), whatever
 * their state_dirs: each would take the other's keys for its own. On success *out is an array of
 * *nout profiles (schedules zeroed), freed with profile_free_all. With cmd (the command that will
 * act on them: "run"), a subject with {placeholders} is refused (profile_check_subject); NULL reads
 * them as they are. Errors: conf_load's, P11E_ERR_FILE (directory unreadable), P11E_ERR_CONFIG,
 * P11E_ERR_ALLOC.
 */
int profile_load_all(char *const *paths, size_t npaths, const char *cmd, struct profile **out,
                     size_t *nout);

/*
 * 0 when c's subject holds no {placeholder}; else logs that only
 * `provision` expands them (cmd: the command refusing) and returns
 * P11E_ERR_CONFIG.
 */
int profile_check_subject(const struct conf *c, const char *cmd);

/*
 * A profile's name: the file name of its configuration without ".conf"
 * ("/etc/p11enroll/conf.d/vpn.conf" -> "vpn"), as the agent's log lines
 * and hooks (P11ENROLL_PROFILE) show it. malloc'ed; NULL when out of memory.
 */
char *profile_name(const char *path);

/* Frees n profiles and the array. Accepts NULL. */
void profile_free_all(struct profile *p, size_t n);

#endif
