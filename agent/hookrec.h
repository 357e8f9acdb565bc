/*
 * hookrec.h: the record of a profile's hooks (hookrec.c), one small text file
 * in state_dir: "hook-<label>.txt" with key=value lines (statefile.h), 0600:
 * the last hook run and what became of it, and the hooks still owed for
 * which certificate. hook.c writes it; `status` shows it.
 */
#ifndef P11E_HOOKREC_H
#define P11E_HOOKREC_H

#include <stddef.h>
#include <time.h>

#include "conf.h"
#include "spawn.h"

/* The hooks as bits (struct hook_record.owed). */
#define HOOK_AFTER 1u
#define HOOK_BEFORE_REMOVE 2u

struct hook_record {
	time_t last_run;   /* when the last hook run ended; 0: none has run */
	char hook[16];     /* it: "after" or "before_remove" */
	char event[16];    /* the event it was told of ("enrolled", "renewed", "ca-rolled") */
	int result;        /* enum spawn_how */
	int code;          /* exit status, signal or errno (spawn.h) */
	unsigned failures; /* failed runs in a row */
	/* what became of it and the first lines of its output */
	char message[SPAWN_OUT_MAX + 192];
	unsigned owed;       /* HOOK_AFTER | HOOK_BEFORE_REMOVE still to run */
	char owed_event[16]; /* the event they are owed for */
	char serial[96];     /* the certificate they are owed for (hex, as status shows it) */
	char old_serial[96]; /* in a renewal, the certificate it replaces; else "" */
};

/* The name of one bit: "after" or "before_remove" ("?" for another value). */
const char *hookrec_name(unsigned bit);

/* The names of the bits in owed joined by sep ("" for none), into buf. */
void hookrec_owed_names(unsigned owed, const char *sep, char *buf, size_t len);

/*
 * The profile's record. P11E_ERR_NOTFOUND when there is none, and when it is
 * damaged (logged as a warning naming the file: the next hook run replaces
 * it); P11E_ERR_FILE, P11E_ERR_CONFIG (refused: store_read_state) logged.
 */
int hookrec_load(const struct conf *c, struct hook_record *out);

/*
 * Writes the record atomically (store_write_atomic, 0600), creating
 * state_dir if needed; the message is stored escaped (statefile_escape), so
 * it may hold any text. Errors: P11E_ERR_FILE (logged), P11E_ERR_ALLOC.
 */
int hookrec_save(const struct conf *c, const struct hook_record *h);

#endif
