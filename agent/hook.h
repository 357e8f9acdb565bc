/*
 * hook.h: [hooks]: the programs told of a new certificate (after) and of the
 * old pair's coming removal in a renewal (before_remove), run through
 * spawn.h with the certificate's values; what they owe, kept in their record
 * (hookrec.h); `hook-test`.
 *
 * The enrollment pipeline owes the hooks before it stores a certificate
 * (hook_owe), pays them once it is stored, read back and in cert_file
 * (hook_pay), and leaves the old pair on the token while any is owed
 * (hook_owed, asked by tidy.c). A later run pays what is still owed
 * (tidy_settle), the agent when its plan finds something owed.
 */
#ifndef P11E_HOOK_H
#define P11E_HOOK_H

#include <time.h>

#include <openssl/x509.h>

#include "conf.h"
#include "hookrec.h"
#include "tok.h"

enum hook_event {
	HOOK_ENROLLED = 1, /* "enrolled": a first certificate (or one after the last expired) */
	HOOK_RENEWED,      /* "renewed": a renewal's new certificate */
	HOOK_CA_ROLLED,    /* "ca-rolled": the trust dir holds the CA's successor, now in use */
};

/* 1 when [hooks] after or before_remove is configured. */
int hook_configured(const struct conf *c);

/*
 * The longest the hooks of one run can take (each: its timeout, the grace
 * before SIGKILL and a moment), for the agent's deadline of an attempt.
 */
long hook_max_seconds(const struct conf *c);

/*
 * Records, before cert is stored, that the hooks of event ev are owed for it
 * (old: the certificate it replaces, or NULL): after, and in a renewal
 * without keep_old before_remove, as far as configured; nothing to owe is a
 * no-op. Hooks still owed for cert stay owed. Errors: the record's
 * (P11E_ERR_FILE, logged; the caller stops before storing), P11E_ERR_ALLOC.
 */
int hook_owe(const struct conf *c, enum hook_event ev, X509 *cert, X509 *old);

/*
 * Runs the hooks owed for cert (the current certificate, key k on t), in
 * order (after, then before_remove), each told of the event they are owed
 * for; a failed one (non-zero exit, a signal, its timeout, not started) is
 * logged with its output's first lines and stops the rest. The record is
 * saved after each. Owed hooks of another certificate are dropped. Returns
 * 0 also when a hook failed (hook_owed says what is left); errors of the
 * record only (P11E_ERR_FILE, logged).
 */
int hook_pay(const struct conf *c, struct tok *t, const struct tok_key *k, X509 *cert);

/*
 * *owed = 1 when a configured hook is owed for cert: the old pair must stay
 * on the token (tidy.c) and the agent must act. Reads the record only when
 * hooks are configured. A damaged record is ignored (logged); errors:
 * hookrec_load's.
 */
int hook_owed(const struct conf *c, X509 *cert, int *owed);

/*
 * A run that finds cert (key k on t) current and goes on without storing a
 * new one (an enrollment already done, a renewal not due yet or about to be
 * made): when hooks are owed for cert, cert_file is brought in line with it
 * (certfile_sync) and they are paid (hook_pay). Errors as those.
 */
int hook_settle(const struct conf *c, struct tok *t, const struct tok_key *k, X509 *cert);

/*
 * The CA rolled over (the agent's look for its successor found it in use):
 * the hooks owe "ca-rolled" for the current certificate, and are run. No
 * current certificate: nothing. Errors: the token's, the record's.
 */
int hook_ca_rolled(const struct conf *c);

/*
 * `p11enroll hook-test`: runs after and then before_remove (those
 * configured) once, with the current certificate's values and
 * P11ENROLL_EVENT=test (P11ENROLL_OLD_SERIAL empty), each to its end
 * whatever the other did; prints each one's command, result and first lines
 * of output on stdout. Writes nothing to state_dir, owes nothing, pays
 * nothing; needs no login. Returns 0 when each ran and exited 0;
 * P11E_ERR_HOOK when one did not; P11E_ERR_CONFIG when no hook is configured
 * and P11E_ERR_TOKEN when the token holds no certificate of the profile
 * (both logged); the token's errors.
 */
int hook_test_run(const struct conf *c);

#endif
