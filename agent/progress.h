/*
 * progress.h: an enrollment's steps and results as lines a program reads,
 * for the process that started it (`provision`'s station): "key value\n",
 * each written with one write(2) to a descriptor set by progress_set_fd.
 * Nothing is written while none is set, so `enroll` and the other commands
 * are unchanged. Independent of the log level and of the wording of the
 * log. Never pass a secret (PIN, challenge, password).
 *
 * Keys and values written by the enrollment flow:
 *   state        key | request | pending | stored | skipped
 *   key          RFC 7512 URI of the private key
 *   cert-serial  the certificate's serial number, hex
 *   not-after    the certificate's notAfter, ISO 8601
 *   token-serial, token-label   a token just initialised
 *   error        why the enrollment failed or is pending (log_last_error)
 *   hook-failed  NAME EVENT HOW CODE SERIAL (provision's card process: a hook still owed)
 *   hook-message what became of it
 *   token-process  lost (provision's card process: its session ended with the slot's
 *                token process, which the station then waits for and replaces)
 */
#ifndef P11E_PROGRESS_H
#define P11E_PROGRESS_H

#include <stddef.h>

/* Longest line written, newline included; longer values are cut. */
#define PROGRESS_LINE_MAX 1024

/* Lines go to fd from now on; -1: none (the default). fd stays the caller's. */
void progress_set_fd(int fd);

/* 1 when a descriptor is set (worth computing what to note), else 0. */
int progress_on(void);

/*
 * Writes "key value\n" (value from fmt) with a single write(2), retried on
 * EINTR; newlines and other control characters in the value become spaces,
 * a value too long is cut to fit PROGRESS_LINE_MAX. Nothing when no
 * descriptor is set. Errors are ignored: progress never fails the flow.
 */
void progress_note(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Splits a line read from the descriptor (without its newline) in place:
 * returns the key and sets *value (the text after the first space, "" when
 * there is none). NULL when the line has no key.
 */
char *progress_split(char *line, const char **value);

#endif
