/*
 * hook.c: [hooks] around the enrollment pipeline: what they owe, running
 * them, hook-test (hook.h). Each hook runs through spawn.c with an environment
 * made here and nothing else: never a PIN, challenge or password, which are
 * never put there.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "certfile.h"
#include "current.h"
#include "err.h"
#include "hook.h"
#include "hookrec.h"
#include "log.h"
#include "profile.h"
#include "spawn.h"
#include "statefile.h"

#define ENV_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define NENV 12 /* PATH, LANG and the ten P11ENROLL_ variables */
#define MAX_FAILURES 1000000u

static const char *const event_names[] = {"", "enrolled", "renewed", "ca-rolled"};
static const unsigned hooks[] = {HOOK_AFTER, HOOK_BEFORE_REMOVE}; /* in the order they run */

#define NHOOKS (sizeof(hooks) / sizeof(hooks[0]))

static const struct conf_list *
command_of(const struct conf *c, unsigned bit)
{
	return bit == HOOK_AFTER ? &c->hook_after : &c->hook_before_remove;
}

/* The configured hooks as bits. */
static unsigned
configured(const struct conf *c)
{
	return (c->hook_after.n > 0 ? HOOK_AFTER : 0) |
	       (c->hook_before_remove.n > 0 ? HOOK_BEFORE_REMOVE : 0);
}

int
hook_configured(const struct conf *c)
{
	return configured(c) != 0;
}

long
hook_max_seconds(const struct conf *c)
{
	long n = (c->hook_after.n > 0) + (c->hook_before_remove.n > 0);

	return n * (c->hook_timeout + SPAWN_GRACE + 2);
}

/* --------------------------------------------------------- the environment */

static void
free_env(char **env)
{
	size_t i;

	for (i = 0; i < NENV; i++)
		free(env[i]);
}

static int
kv(char **slot, const char *name, const char *value)
{
	size_t n = strlen(name) + strlen(value) + 2;

	if ((*slot = malloc(n)) == NULL)
		return -1;
	snprintf(*slot, n, "%s=%s", name, value);
	return 0;
}

/*
 * The hooks' whole environment (env[NENV], NULL-terminated, free_env): the
 * fixed PATH, LANG=C and the P11ENROLL_ values of key k and its certificate
 * cert on t; old_serial may be "".
 */
static int
make_env(const struct conf *c, const struct tok *t, const struct tok_key *k, X509 *cert,
         const char *event, const char *old_serial, char *env[NENV + 1])
{
	char *key_uri = NULL, *cert_uri = NULL, *subject = NULL, *serial = NULL, *profile = NULL;
	char when[32] = "";
	int i = 0, r = P11E_ERR_ALLOC;

	memset(env, 0, (NENV + 1) * sizeof(*env));
	if ((r = tok_object_uri(t, k, "private", &key_uri)) != 0 ||
	    (r = tok_object_uri(t, k, "cert", &cert_uri)) != 0)
		goto out;
	r = P11E_ERR_ALLOC;
	if ((subject = current_name_str(X509_get_subject_name(cert))) == NULL ||
	    (serial = current_serial_hex(cert)) == NULL ||
	    (profile = profile_name(c->path)) == NULL)
		goto out;
	(void)current_time_str(X509_get0_notAfter(cert), when, sizeof(when));
	if ((env[i++] = strdup(ENV_PATH)) == NULL || (env[i++] = strdup("LANG=C")) == NULL ||
	    kv(&env[i++], "P11ENROLL_EVENT", event) != 0 ||
	    kv(&env[i++], "P11ENROLL_PROFILE", profile) != 0 ||
	    kv(&env[i++], "P11ENROLL_KEY_URI", key_uri) != 0 ||
	    kv(&env[i++], "P11ENROLL_CERT_URI", cert_uri) != 0 ||
	    kv(&env[i++], "P11ENROLL_CERT_FILE", c->cert_file != NULL ? c->cert_file : "") != 0 ||
	    kv(&env[i++], "P11ENROLL_TRUST_DIR", c->trust_dir) != 0 ||
	    kv(&env[i++], "P11ENROLL_SUBJECT", subject) != 0 ||
	    kv(&env[i++], "P11ENROLL_SERIAL", serial) != 0 ||
	    kv(&env[i++], "P11ENROLL_NOT_AFTER", when) != 0 ||
	    kv(&env[i++], "P11ENROLL_OLD_SERIAL", old_serial) != 0)
		goto out;
	r = 0;
out:
	if (r == P11E_ERR_ALLOC)
		log_error("out of memory");
	if (r != 0)
		free_env(env);
	free(key_uri);
	free(cert_uri);
	free(subject);
	free(profile);
	OPENSSL_free(serial);
	return r;
}

/* ------------------------------------------------------------- running */

/* Calls line(ud, text) for each line of out, escaped (no control bytes reach a terminal). */
static void
each_line(const char *out, void (*line)(void *, const char *), void *ud)
{
	char raw[SPAWN_OUT_MAX + 1], esc[4 * SPAWN_OUT_MAX + 1];
	size_t l;

	while (*out != '\0') {
		l = strcspn(out, "\n");
		memcpy(raw, out, l);
		raw[l] = '\0';
		statefile_escape(raw, esc);
		line(ud, esc);
		out += l;
		if (*out == '\n')
			out++;
	}
}

struct log_ctx {
	int level;
	const char *name;
};

static void
log_line(void *ud, const char *s)
{
	const struct log_ctx *x = ud;

	log_msg(x->level, "hook %s: | %s", x->name, s);
}

/*
 * Runs hook bit with env, logs what became of it and fills rec's fields of
 * the last run; 1 when it exited 0.
 */
static int
run_one(const struct conf *c, unsigned bit, const char *name, const char *event, char **env,
        struct hook_record *rec)
{
	const struct conf_list *cmd = command_of(c, bit);
	struct spawn_result res;
	struct log_ctx x = {LOG_LVL_DEBUG, name};
	char what[160];
	size_t n;
	int ok;

	log_info("running hook %s (%s) for event %s", name, cmd->v[0], event);
	(void)spawn_run(cmd->v, env, c->hook_timeout, &res);
	spawn_describe(&res, c->hook_timeout, what, sizeof(what));
	ok = res.how == SPAWN_EXITED && res.code == 0;
	n = strlen(res.out);
	while (n > 0 && (res.out[n - 1] == '\n' || res.out[n - 1] == ' ' || res.out[n - 1] == '\t'))
		res.out[--n] = '\0';
	rec->last_run = time(NULL);
	snprintf(rec->hook, sizeof(rec->hook), "%s", name);
	snprintf(rec->event, sizeof(rec->event), "%s", event);
	rec->result = res.how;
	rec->code = res.code;
	snprintf(rec->message, sizeof(rec->message), "%s%s%s%s", what, n > 0 ? ": " : "", res.out,
	         res.dropped > 0 ? "\n(more output not kept)" : "");
	if (ok) {
		rec->failures = 0;
		log_info("hook %s: %s after %.1f s", name, what, res.ms / 1000.0);
	} else {
		if (rec->failures < MAX_FAILURES)
			rec->failures++;
		x.level = LOG_LVL_ERROR;
		log_error("hook %s (%s) failed for event %s: %s after %.1f s%s", name, cmd->v[0],
		          event, what, res.ms / 1000.0,
		          n > 0 ? "; the first lines of its output:" : "; it printed nothing");
	}
	each_line(res.out, log_line, &x);
	if (res.dropped > 0)
		log_msg(x.level, "hook %s: (%zu more bytes of output not kept)", name, res.dropped);
	return ok;
}

/* What a failed hook leaves owed, said once. */
static void
say_owed(const struct tok *t, const struct hook_record *rec, const char *name)
{
	char left[64];

	hookrec_owed_names(rec->owed, ", ", left, sizeof(left));
	if (strcmp(rec->owed_event, "renewed") == 0)
		log_warn("the old certificate and key stay on token '%s' while hook %s has not "
		         "succeeded (owed: %s); `p11enroll renew` and the agent run it again",
		         tok_get_info(t)->label, name, left);
	else
		log_warn("the certificate is in place; hook %s has not succeeded (owed: %s) and "
		         "`p11enroll renew` and the agent run it again",
		         name, left);
}

int
hook_owe(const struct conf *c, enum hook_event ev, X509 *cert, X509 *old)
{
	struct hook_record rec;
	char *serial = NULL, *prev = NULL;
	unsigned owed = configured(c);
	int r;

	if (ev != HOOK_RENEWED || c->renew_keep_old)
		owed &= ~HOOK_BEFORE_REMOVE;
	if (owed == 0)
		return 0;
	memset(&rec, 0, sizeof(rec));
	if ((r = hookrec_load(c, &rec)) != 0 && r != P11E_ERR_NOTFOUND)
		return r;
	if ((serial = current_serial_hex(cert)) == NULL ||
	    (old != NULL && (prev = current_serial_hex(old)) == NULL)) {
		log_error("out of memory");
		r = P11E_ERR_ALLOC;
		goto out;
	}
	if (rec.owed != 0 && strcmp(rec.serial, serial) == 0) {
		rec.owed |= owed; /* its event stays: "renewed" says more than "ca-rolled" */
	} else {
		rec.owed = owed;
		snprintf(rec.owed_event, sizeof(rec.owed_event), "%s", event_names[ev]);
		snprintf(rec.serial, sizeof(rec.serial), "%s", serial);
		snprintf(rec.old_serial, sizeof(rec.old_serial), "%s", prev != NULL ? prev : "");
	}
	r = hookrec_save(c, &rec);
out:
	OPENSSL_free(serial);
	OPENSSL_free(prev);
	return r;
}

int
hook_pay(const struct conf *c, struct tok *t, const struct tok_key *k, X509 *cert)
{
	struct hook_record rec;
	char *env[NENV + 1], *serial = NULL;
	size_t i;
	int r;

	memset(env, 0, sizeof(env));
	if ((r = hookrec_load(c, &rec)) != 0)
		return r == P11E_ERR_NOTFOUND ? 0 : r;
	if (rec.owed == 0)
		return 0;
	if ((serial = current_serial_hex(cert)) == NULL) {
		log_error("out of memory");
		return P11E_ERR_ALLOC;
	}
	if (strcmp(serial, rec.serial) != 0) {
		log_info("the hooks owed for certificate %s are dropped: %s is the current one",
		         rec.serial, serial);
		rec.owed = 0;
		r = hookrec_save(c, &rec);
		goto out;
	}
	for (i = 0; i < NHOOKS && r == 0; i++) {
		if (!(rec.owed & hooks[i]))
			continue;
		if (command_of(c, hooks[i])->n > 0) {
			if (env[0] == NULL &&
			    (r = make_env(c, t, k, cert, rec.owed_event, rec.old_serial, env)) != 0)
				break;
			if (!run_one(c, hooks[i], hookrec_name(hooks[i]), rec.owed_event, env,
			             &rec)) {
				if ((r = hookrec_save(c, &rec)) == 0)
					say_owed(t, &rec, hookrec_name(hooks[i]));
				break;
			}
		}
		rec.owed &= ~hooks[i]; /* ran, or no longer configured */
		r = hookrec_save(c, &rec);
	}
out:
	free_env(env);
	OPENSSL_free(serial);
	return r;
}

int
hook_owed(const struct conf *c, X509 *cert, int *owed)
{
	struct hook_record rec;
	char *serial = NULL;
	int r;

	*owed = 0;
	if (!hook_configured(c) || cert == NULL)
		return 0;
	if ((r = hookrec_load(c, &rec)) != 0)
		return r == P11E_ERR_NOTFOUND ? 0 : r;
	if ((rec.owed & configured(c)) == 0)
		return 0;
	if ((serial = current_serial_hex(cert)) == NULL) {
		log_error("out of memory");
		return P11E_ERR_ALLOC;
	}
	*owed = strcmp(serial, rec.serial) == 0;
	OPENSSL_free(serial);
	return 0;
}

int
hook_settle(const struct conf *c, struct tok *t, const struct tok_key *k, X509 *cert)
{
	int r, owed = 0;

	if ((r = hook_owed(c, cert, &owed)) != 0 || !owed)
		return r;
	/* The hooks are told of cert_file: it must hold cert first. */
	if ((r = certfile_sync(c, cert)) != 0)
		return r;
	return hook_pay(c, t, k, cert);
}

/* ------------------------------------------- the current certificate */

int
hook_ca_rolled(const struct conf *c)
{
	struct current_view x;
	int r;

	if (c->hook_after.n == 0)
		return 0;
	r = current_view_open(c, 1, &x);
	if (r == 0 && (r = hook_owe(c, HOOK_CA_ROLLED, x.cert, NULL)) == 0)
		r = hook_pay(c, x.t, x.keys[x.cur], x.cert);
	current_view_close(&x);
	return r == P11E_ERR_NOTFOUND ? 0 : r;
}

/* ------------------------------------------------------------ hook-test */

static void
print_line(void *ud, const char *s)
{
	int *first = ud;

	printf("%s%s\n", *first ? "output:        " : "               ", s);
	*first = 0;
}

/* The command as written, each word escaped, quoted when it holds a blank or is empty. */
static void
print_command(const struct conf_list *cmd)
{
	char esc[4 * 4096 + 1];
	size_t i;

	for (i = 0; i < cmd->n; i++) {
		if (strlen(cmd->v[i]) > 4096)
			continue;
		statefile_escape(cmd->v[i], esc);
		printf(cmd->v[i][0] == '\0' || strpbrk(cmd->v[i], " \t") != NULL ? "%s\"%s\""
		                                                                 : "%s%s",
		       i > 0 ? " " : "", esc);
	}
	printf("\n");
}

/* Runs one hook for hook-test; 1 when it exited 0. */
static int
try_one(const struct conf *c, size_t i, char **env)
{
	const struct conf_list *cmd = command_of(c, hooks[i]);
	struct spawn_result res;
	char what[160];
	int first = 1, ok;

	printf("%-14s ", hookrec_name(hooks[i]));
	fflush(stdout);
	if (cmd->n == 0) {
		printf("not configured\n");
		return 1;
	}
	print_command(cmd);
	fflush(stdout);
	(void)spawn_run(cmd->v, env, c->hook_timeout, &res);
	spawn_describe(&res, c->hook_timeout, what, sizeof(what));
	ok = res.how == SPAWN_EXITED && res.code == 0;
	printf("result:        %s after %.1f s\n", what, res.ms / 1000.0);
	each_line(res.out, print_line, &first);
	if (res.dropped > 0)
		printf("               (%zu more bytes of output not kept)\n", res.dropped);
	fflush(stdout);
	if (!ok)
		log_error("hook %s (%s) failed: %s", hookrec_name(hooks[i]), cmd->v[0], what);
	return ok;
}

int
hook_test_run(const struct conf *c)
{
	struct current_view x;
	char *env[NENV + 1], *serial = NULL;
	size_t i;
	int r, ok = 1;

	memset(env, 0, sizeof(env));
	if (!hook_configured(c)) {
		log_error("%s has no [hooks] after or before_remove to try", c->path);
		return P11E_ERR_CONFIG;
	}
	if ((r = current_view_open(c, 0, &x)) == P11E_ERR_NOTFOUND && x.t != NULL) {
		log_error("token '%s' holds no certificate for key '%s', and the hooks are told of "
		          "one: run `p11enroll enroll` first",
		          tok_get_info(x.t)->label, c->key_label);
		r = P11E_ERR_TOKEN;
	}
	if (r != 0 || (r = make_env(c, x.t, x.keys[x.cur], x.cert, "test", "", env)) != 0)
		goto out;
	serial = current_serial_hex(x.cert);
	printf("event:         test (certificate serial %s)\n", serial != NULL ? serial : "?");
	for (i = 0; i < NHOOKS; i++)
		ok &= try_one(c, i, env);
	r = ok ? 0 : P11E_ERR_HOOK;
out:
	free_env(env);
	OPENSSL_free(serial);
	current_view_close(&x);
	return r;
}
