/*
 * report.c: `status`: what the token holds, when it is due, the last
 * attempt, a pending request, the hooks; text or JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>

#include "attempt.h"
#include "current.h"
#include "report.h"
#include "err.h"
#include "hookrec.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "pending.h"
#include "profile.h"
#include "schedule.h"
#include "statefile.h"
#include "tok.h"

/* What `status` reports, gathered once for the text and the JSON output. */
struct status {
	struct current_view v; /* the token, the profile's keys, the current certificate */
	time_t due;            /* when v.cert is due for renewal */
	char why[96];
	struct attempt last;
	int have_last;
	struct pending pend;
	int have_pend;
	unsigned hooks;          /* configured: HOOK_AFTER | HOOK_BEFORE_REMOVE */
	struct hook_record hook; /* the hooks' record (hook.h) */
	int have_hook;
};

static void
status_free(struct status *s)
{
	current_view_close(&s->v);
}

/* The record of the last attempt and the pending request; problems are logged and skipped. */
static void
status_state(const struct conf *c, struct status *s)
{
	s->have_last = attempt_load(c, &s->last) == 0;
	s->have_pend = pending_load(c, &s->pend) == 0;
	s->have_hook = hookrec_load(c, &s->hook) == 0;
}

/* The token's side: its keys, the current certificate and when it is due. */
static int
status_token(const struct conf *c, struct status *s)
{
	int r;

	if ((r = current_view_open(c, 0, &s->v)) == P11E_ERR_NOTFOUND && s->v.t != NULL)
		return 0;
	if (r != 0)
		return r;
	return current_due(c, s->v.t, s->v.cert, &s->due, s->why, sizeof(s->why));
}

/* "renewal: due ..." for the profile's current certificate (latest notAfter). */
static void
print_renewal(const struct status *s)
{
	BIGNUM *bn = NULL;
	char *hex = NULL, when[40];

	if (s->v.cert == NULL)
		return;
	printf("\n");
	if (s->v.n > 1 &&
	    (bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(s->v.cert), NULL)) != NULL &&
	    (hex = BN_bn2hex(bn)) != NULL)
		printf("current:     serial %s (the latest notAfter; enroll and renew use it)\n",
		       hex);
	if (time(NULL) >= s->due) {
		printf("renewal:     due now (%s)\n", s->why);
	} else {
		schedule_fmt_time(s->due, when, sizeof(when));
		printf("renewal:     due %s (%s)\n", when, s->why);
	}
	BN_free(bn);
	OPENSSL_free(hex);
}

/* Each line of text, escaped (no control byte reaches the terminal), indented. */
static void
print_lines(const char *text)
{
	char line[sizeof(((struct hook_record *)NULL)->message)], esc[4 * sizeof(line)];
	size_t l;

	do {
		l = strcspn(text, "\n");
		snprintf(line, sizeof(line), "%.*s", (int)l, text);
		statefile_escape(line, esc);
		printf("             %s\n", esc);
		text += l;
	} while (*text++ != '\0');
}

/* The hooks: configured, the last one run, those owed. */
static void
print_hooks(const struct status *s)
{
	const struct hook_record *h = &s->hook;
	char when[40], names[64], head[160];

	if (!s->hooks && !s->have_hook)
		return;
	printf("\n");
	hookrec_owed_names(s->hooks, ", ", names, sizeof(names));
	if (!s->have_hook || h->last_run == 0)
		printf("hooks:       %s; none has run yet\n", s->hooks ? names : "none configured");
	if (s->have_hook && h->last_run != 0) {
		schedule_fmt_time(h->last_run, when, sizeof(when));
		snprintf(head, sizeof(head), "hook %s %s %s, event %s:", h->hook,
		         h->result == SPAWN_EXITED && h->code == 0 ? "ran" : "FAILED", when,
		         h->event);
		printf("hooks:       %s\n", head);
		print_lines(h->message);
		if (h->failures > 1)
			printf("             %u failed runs in a row\n", h->failures);
	}
	if (s->have_hook && h->owed != 0) {
		hookrec_owed_names(h->owed, ", ", names, sizeof(names));
		printf(
		    "hooks owed:  %s, for certificate %s (event %s); the old pair stays until they "
		    "succeed, `renew` or the agent runs them\n",
		    names, h->serial, h->owed_event);
	}
}

/* The pending request and the last attempt, from state_dir. */
static void
print_state(const struct status *s)
{
	char when[40], next[40];

	print_hooks(s);
	if (s->have_pend || s->have_last)
		printf("\n");
	if (s->have_pend) {
		schedule_fmt_time(s->pend.created, when, sizeof(when));
		schedule_fmt_time(s->pend.next_poll, next, sizeof(next));
		printf("pending:     %s request, transactionID %s\n"
		       "             since %s, %u polls; next poll from %s\n",
		       s->pend.renewal ? "renewal" : "enrollment", s->pend.txid, when,
		       s->pend.polls, next);
	}
	if (!s->have_last)
		return;
	schedule_fmt_time(s->last.at, when, sizeof(when));
	printf("last attempt: %s %s %s", when, s->last.command,
	       s->last.err == 0 ? "ok" : p11e_strerror(s->last.err));
	if (s->last.err != 0)
		printf(", exit %d", p11e_exit_code(s->last.err));
	if (s->last.message[0] != '\0')
		printf(" (%s)", s->last.message);
	printf("\n");
	if (s->last.failures > 0)
		printf("failures:    %u in a row\n", s->last.failures);
	if (s->last.next_at != 0) {
		schedule_fmt_time(s->last.next_at, next, sizeof(next));
		printf("next attempt: %s\n", next);
	}
}

static int
status_text(const struct conf *c, struct status *s)
{
	int r;
	size_t i;
	X509 *x = NULL;
	const struct tok_info *ti = tok_get_info(s->v.t);

	printf("token:       '%s' (%s %s, serial %s)\n", ti->label, ti->manufacturer, ti->model,
	       ti->serial);
	printf("profile:     key label '%s', %s\n", c->key_label, c->key_type_str);
	if (s->v.n == 0)
		printf("state:       not enrolled (no key with this label)\n");
	for (i = 0; i < s->v.n; i++) {
		r = tok_find_cert(s->v.t, s->v.keys[i], &x);
		if (r != 0 && r != P11E_ERR_NOTFOUND)
			return r;
		if (s->v.n > 1)
			printf("\n");
		if (x == NULL)
			printf("state:       key without certificate (enroll will reuse it)\n");
		else if (current_valid_now(x))
			printf("state:       enrolled, certificate valid\n");
		else
			printf(
			    "state:       certificate not valid now (expired or not yet valid)\n");
		current_print(stdout, s->v.t, s->v.keys[i], x);
		X509_free(x);
		x = NULL;
	}
	print_renewal(s);
	return 0;
}

/* ------------------------------------------------------------------ JSON */

static void
json_kasn1time(FILE *f, int *first, const char *key, const ASN1_TIME *a)
{
	char buf[32];

	json_kstr(f, first, key, current_time_str(a, buf, sizeof(buf)) == 0 ? buf : NULL);
}

/* The key status speaks of: the current certificate's, else the pending request's, else the first.
 */
static const struct tok_key *
status_key(const struct status *s)
{
	size_t i;

	if (s->v.cert != NULL)
		return s->v.keys[s->v.cur];
	for (i = 0; s->have_pend && i < s->v.n; i++)
		if (s->v.keys[i]->id_len == s->pend.key_id_len &&
		    memcmp(s->v.keys[i]->id, s->pend.key_id, s->pend.key_id_len) == 0)
			return s->v.keys[i];
	return s->v.n > 0 ? s->v.keys[0] : NULL;
}

static void
json_key_cert(FILE *f, int *first, const struct status *s)
{
	const struct tok_key *k = status_key(s);
	char *uri = NULL, *name = NULL, id[2 * sizeof(k->id) + 1], *hex = NULL;
	BIGNUM *bn = NULL;
	size_t i;
	int sub = 1;

	json_key(f, first, "key");
	if (k == NULL) {
		fputs("null", f);
	} else {
		for (i = 0; i < k->id_len; i++)
			snprintf(id + 2 * i, 3, "%02x", k->id[i]);
		id[2 * k->id_len] = '\0';
		fputc('{', f);
		tok_object_uri(s->v.t, k, "private", &uri);
		json_kstr(f, &sub, "uri", uri);
		json_kstr(f, &sub, "id", id);
		json_kstr(f, &sub, "label", k->label);
		fputc('}', f);
		free(uri);
		uri = NULL;
	}
	json_key(f, first, "certificate");
	if (s->v.cert == NULL) {
		fputs("null", f);
		return;
	}
	sub = 1;
	fputc('{', f);
	tok_object_uri(s->v.t, k, "cert", &uri);
	json_kstr(f, &sub, "uri", uri);
	name = current_name_str(X509_get_subject_name(s->v.cert));
	json_kstr(f, &sub, "subject", name);
	free(name);
	name = current_name_str(X509_get_issuer_name(s->v.cert));
	json_kstr(f, &sub, "issuer", name);
	free(name);
	if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(s->v.cert), NULL)) != NULL)
		hex = BN_bn2hex(bn);
	json_kstr(f, &sub, "serial", hex);
	json_kasn1time(f, &sub, "not_before", X509_get0_notBefore(s->v.cert));
	json_kasn1time(f, &sub, "not_after", X509_get0_notAfter(s->v.cert));
	json_kbool(f, &sub, "valid", current_valid_now(s->v.cert));
	fputc('}', f);
	BN_free(bn);
	OPENSSL_free(hex);
	free(uri);
}

static void
json_renewal(FILE *f, int *first, const struct status *s)
{
	int sub = 1;

	json_key(f, first, "renewal");
	fputc('{', f);
	json_ktime(f, &sub, "due", s->v.cert != NULL ? s->due : 0);
	json_kstr(f, &sub, "why", s->v.cert != NULL ? s->why : NULL);
	json_kstr(f, &sub, "state",
	          s->have_pend           ? "pending"
	          : s->v.cert == NULL    ? "not-enrolled"
	          : time(NULL) >= s->due ? "due"
	                                 : "not-due");
	fputc('}', f);
}

static void
json_state(FILE *f, int *first, const struct status *s)
{
	int sub = 1;

	json_key(f, first, "last_attempt");
	if (!s->have_last) {
		fputs("null", f);
	} else {
		fputc('{', f);
		json_ktime(f, &sub, "at", s->last.at);
		json_kstr(f, &sub, "command", s->last.command);
		json_kstr(f, &sub, "result",
		          s->last.err == 0                  ? "ok"
		          : s->last.err == P11E_ERR_PENDING ? "pending"
		                                            : "error");
		json_klong(f, &sub, "exit_code", p11e_exit_code(s->last.err));
		json_kstr(f, &sub, "error", s->last.err == 0 ? NULL : p11e_strerror(s->last.err));
		json_kstr(f, &sub, "message", s->last.message);
		json_kulong(f, &sub, "failures", s->last.failures);
		json_ktime(f, &sub, "next_at", s->last.next_at);
		fputc('}', f);
	}
	json_key(f, first, "pending");
	if (!s->have_pend) {
		fputs("null", f);
		return;
	}
	sub = 1;
	fputc('{', f);
	json_kstr(f, &sub, "transaction_id", s->pend.txid);
	json_ktime(f, &sub, "created", s->pend.created);
	json_kulong(f, &sub, "polls", s->pend.polls);
	json_ktime(f, &sub, "next_poll", s->pend.next_poll);
	json_kbool(f, &sub, "renewal", s->pend.renewal);
	fputc('}', f);
}

/* The names of the bits in owed as a JSON array. */
static void
json_kowed(FILE *f, int *first, const char *key, unsigned owed)
{
	static const unsigned bits[] = {HOOK_AFTER, HOOK_BEFORE_REMOVE};
	size_t i;
	int sub = 1;

	json_key(f, first, key);
	fputc('[', f);
	for (i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
		if (!(owed & bits[i]))
			continue;
		if (!sub)
			fputc(',', f);
		json_str(f, hookrec_name(bits[i]));
		sub = 0;
	}
	fputc(']', f);
}

/* "hooks": null without [hooks] and without a record; else what p11enroll(8) lists. */
static void
json_hooks(FILE *f, int *first, const struct status *s)
{
	static const char *const results[] = {"failed", "signal", "timeout", "not-started"};
	const struct hook_record *h = &s->hook;
	int sub = 1, ran = s->have_hook && h->last_run != 0;
	int exited = ran && h->result == SPAWN_EXITED;

	json_key(f, first, "hooks");
	if (!s->hooks && !s->have_hook) {
		fputs("null", f);
		return;
	}
	fputc('{', f);
	json_kowed(f, &sub, "configured", s->hooks);
	json_ktime(f, &sub, "last_run", ran ? h->last_run : 0);
	json_kstr(f, &sub, "hook", ran ? h->hook : NULL);
	json_kstr(f, &sub, "event", ran ? h->event : NULL);
	json_kstr(f, &sub, "result",
	          !ran                     ? NULL
	          : exited && h->code == 0 ? "ok"
	                                   : results[h->result & 3]);
	if (exited)
		json_klong(f, &sub, "exit_code", h->code);
	else
		json_kstr(f, &sub, "exit_code", NULL);
	if (ran && h->result == SPAWN_SIGNALED)
		json_klong(f, &sub, "signal", h->code);
	else
		json_kstr(f, &sub, "signal", NULL);
	json_kstr(f, &sub, "message", ran ? h->message : NULL);
	json_kulong(f, &sub, "failures", s->have_hook ? h->failures : 0);
	json_kowed(f, &sub, "owed", s->have_hook ? h->owed : 0);
	json_kstr(f, &sub, "owed_event", s->have_hook && h->owed ? h->owed_event : NULL);
	json_kstr(f, &sub, "owed_serial", s->have_hook && h->owed ? h->serial : NULL);
	json_kstr(f, &sub, "old_serial",
	          s->have_hook && h->owed && h->old_serial[0] ? h->old_serial : NULL);
	fputc('}', f);
}

/*
 * One object. Without the token (tok_err != 0) token, key, certificate and
 * renewal are null and error says why; state_dir's part is there anyway.
 */
static void
status_json(const struct conf *c, const struct status *s, int tok_err)
{
	FILE *f = stdout;
	int first = 1, sub = 1;
	const struct tok_info *ti;

	fputc('{', f);
	json_kstr(f, &first, "config", c->path);
	json_kstr(f, &first, "key_label", c->key_label);
	json_key(f, &first, "token");
	if (tok_err != 0 || s->v.t == NULL) {
		fputs("null", f);
		json_kstr(f, &first, "key", NULL);
		json_kstr(f, &first, "certificate", NULL);
		json_kstr(f, &first, "renewal", NULL);
	} else {
		ti = tok_get_info(s->v.t);
		fputc('{', f);
		json_kstr(f, &sub, "label", ti->label);
		json_kstr(f, &sub, "manufacturer", ti->manufacturer);
		json_kstr(f, &sub, "model", ti->model);
		json_kstr(f, &sub, "serial", ti->serial);
		json_kstr(f, &sub, "uri", c->token_uri);
		fputc('}', f);
		json_kulong(f, &first, "keys", s->v.n);
		json_key_cert(f, &first, s);
		json_renewal(f, &first, s);
	}
	json_state(f, &first, s);
	json_hooks(f, &first, s);
	json_kstr(f, &first, "error",
	          tok_err == 0               ? NULL
	          : log_last_error()[0] != 0 ? log_last_error()
	                                     : p11e_strerror(tok_err));
	fputs("}\n", f);
	fflush(f);
}

int
status_run(const struct conf *c, int json)
{
	int r, dirs;
	struct status s;

	memset(&s, 0, sizeof(s));
	s.hooks = (c->hook_after.n > 0 ? HOOK_AFTER : 0) |
	          (c->hook_before_remove.n > 0 ? HOOK_BEFORE_REMOVE : 0);
	log_clear_last_error(); /* error: what this run could not read */
	dirs = statefile_check_dirs(c);
	r = status_token(c, &s);
	if (dirs == 0)
		status_state(c, &s);
	else if (r == 0)
		r = dirs;
	if (json)
		status_json(c, &s, r);
	else if (r == 0)
		r = status_text(c, &s);
	if (!json)
		print_state(&s);
	status_free(&s);
	return r != 0 ? r : dirs;
}

int
status_metrics(char *const *paths, size_t npaths)
{
	struct profile *p = NULL;
	struct metrics_profile *m = NULL;
	struct status s;
	char *text = NULL;
	size_t n = 0, i, len = 0;
	int r, dirs, first_err = 0;

	if ((r = profile_load_all(paths, npaths, NULL, &p, &n)) != 0)
		return r;
	if ((m = calloc(n, sizeof(*m))) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < n; i++) {
		memset(&s, 0, sizeof(s));
		m[i].name = p[i].name;
		m[i].token_uri = p[i].c->token_uri;
		if ((dirs = statefile_check_dirs(p[i].c)) == 0)
			metrics_load_state(p[i].c, &m[i]);
		if ((r = status_token(p[i].c, &s)) == 0 && s.v.cert != NULL &&
		    (r = metrics_cert_facts(s.v.cert, s.due, &m[i].cert)) != 0)
			log_error("%s: the current certificate's dates cannot be read", p[i].name);
		if (r == 0)
			r = dirs;
		if (r != 0 && first_err == 0)
			first_err = r;
		status_free(&s);
	}
	if ((r = metrics_format(m, n, &text, &len)) != 0)
		goto out;
	fwrite(text, 1, len, stdout);
	fflush(stdout);
	r = first_err;
out:
	free(text);
	free(m);
	profile_free_all(p, n);
	return r;
}
