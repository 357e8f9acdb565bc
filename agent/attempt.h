/*
 * attempt.h: the record of a profile's last enroll/renew attempt, one small
 * text file in state_dir: "last-<label>.txt" with key=value lines. `status`
 * shows it; the daemon plans its next attempt from it.
 */
#ifndef P11E_ATTEMPT_H
#define P11E_ATTEMPT_H

#include <time.h>

#include "conf.h"

struct attempt {
	time_t at;         /* when the attempt ended (UTC seconds) */
	char command[16];  /* "enroll", "renew", "run" */
	int err;           /* P11E_ERR_* value, 0 = success */
	char message[256]; /* the last error line logged during the attempt, or "" */
	unsigned failures; /* consecutive failed attempts up to and including this one */
	time_t next_at;    /* when the daemon plans the next attempt; 0 = not planned */
};

/*
 * Writes state_dir/last-<key_label>.txt (the label reduced to
 * [A-Za-z0-9.-], others as '_') atomically with mode 0600, creating
 * state_dir if needed. The message is stored escaped (\\, \xHH for control
 * bytes), so it may hold any text. Errors: P11E_ERR_FILE (logged),
 * P11E_ERR_ALLOC.
 */
int attempt_save(const struct conf *c, const struct attempt *a);

/*
 * Reads the profile's record into *out. P11E_ERR_NOTFOUND when there is
 * none (not logged), and also when it is damaged (logged as a warning
 * naming the file: the next attempt replaces it). P11E_ERR_FILE when it
 * cannot be read (logged).
 */
int attempt_load(const struct conf *c, struct attempt *out);

/*
 * Records the outcome err of `command` (at most 15 characters) just run on
 * the profile: at = now, next_at = 0; on failure, message = log_last_error()
 * and failures = the previous record's failures + 1 (1 without one); on
 * success and on P11E_ERR_PENDING (the CA answered and holds the request:
 * its polls are counted in the pending transaction, not here), failures = 0
 * and, on success, message = "". Then saves it and clears the last error
 * (log_clear_last_error), so that the next attempt in the same process
 * starts clean. A daemon calls log_clear_last_error() before each attempt.
 * Returns attempt_save's error, logged as a warning; callers may ignore it
 * (the attempt itself happened).
 */
int attempt_record(const struct conf *c, const char *command, int err);

#endif
