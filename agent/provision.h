/*
 * provision.h: `p11enroll provision`, the provisioning station: every token
 * of the module that [token] uri matches is enrolled, several at a time,
 * with progress, a summary and an optional JSON-lines report.
 */
#ifndef P11E_PROVISION_H
#define P11E_PROVISION_H

#include "conf.h"

struct provision_opts {
	int watch;               /* keep running; enroll tokens as they appear */
	int jobs;                /* at most this many at once; 0 = default */
	const char *report;      /* --report FILE or NULL */
	int allow_final_pin_try; /* as for enroll */
	int init;                /* --init: [token] init = yes may initialise blank cards */
};

#define PROVISION_JOBS_MAX 64

/*
 * Lists the matching tokens (with --watch: again every second, until SIGINT
 * or SIGTERM, after which the cards in flight are finished), and enrolls each
 * in a child process running enroll_run on the profile narrowed to that
 * token (URI with its serial, [subject] templates expanded, state in
 * state_dir/tokens/NAME (cardid_dirname), no cert_file). Before a card is
 * given a PIN, its identity record there (cardid_check) must match: a
 * mismatch fails that card (P11E_ERR_TOKEN) without a login. A token that
 * already holds a valid certificate is skipped. Blank tokens ([token]
 * init = yes, whose uri must name a manufacturer or model, else
 * P11E_ERR_CONFIG) are initialised only with o->init, else left alone
 * (skipped); o->init without init = yes is P11E_ERR_USAGE. The [hooks]
 * run in each card's process as enroll runs them; a card whose hook failed
 * keeps its certificate and is shown as enrolled (or skipped) with the
 * hook's failure. Returns 0 when every token was enrolled or skipped and no
 * hook failed; else the error of the first failed token (in slot order);
 * else P11E_ERR_HOOK when a card's hook failed (its certificate is in
 * place; the next run, which skips the card, runs the hook again); else
 * P11E_ERR_PENDING when some are pending. Logged.
 */
int provision_run(const struct conf *c, const struct provision_opts *o);

#endif
