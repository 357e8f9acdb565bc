/*
 * main.c: the commands (cmdline.h's tables), what main() does around each as
 * its flags ask, exit codes. Parsing is cmdline.c's, the help cmdline_help.c's.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>

#include "attempt.h"
#include "cmdline.h"
#include "conf.h"
#include "daemon.h"
#include "check.h"
#include "enroll.h"
#include "err.h"
#include "hook.h"
#include "http.h"
#include "log.h"
#include "netproc.h"
#include "provision.h"
#include "report.h"
#include "scep.h"
#include "secret.h"
#include "profile.h"
#include "statefile.h"
#include "tokens_cmd.h"

#ifndef P11E_VERSION
#define P11E_VERSION "0"
#endif
#ifndef P11E_SYSCONFDIR
#define P11E_SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONF P11E_SYSCONFDIR "/p11enroll/p11enroll.conf"

/* Everything the command line sets: each option of the tables below writes one member. */
struct cmdline_args {
	struct cmdline_list config; /* -c: files or directories, in order */
	int level;                  /* -v, -q */
	int version;                /* -V */
	struct enroll_opts enroll;  /* enroll and renew */
	struct provision_opts provision;
	struct tokens_opts tokens;
	int challenge; /* check --challenge */
	int json;      /* check, status --json */
	int metrics;   /* status --metrics */
};

#define AT(member, ctype) CMDLINE_AT(struct cmdline_args, member, ctype)
#define FLAG(member) .kind = CMDLINE_SET, .at = AT(member, int), .value = 1

static char default_conf[] = DEFAULT_CONF;

static const char exit_codes[] =
    "Exit codes:\n"
    "  0  success                        74  token or file error (no token, wrong PIN)\n"
    "  64 usage error                    75  pending at the CA, or another run\n"
    "                                        holds the profile: try again later\n"
    "  69 server unreachable, HTTP error 76  response failed verification\n"
    "     (hook-test, provision: a hook      (fingerprint, signature, nonce, malformed)\n"
    "     failed)\n"
    "  70 internal error\n"
    "  77 rejected by the CA             78  configuration error\n";

static int
is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * status of every profile the paths name (files, directories of *.conf):
 * text sections headed "== NAME (FILE)", or one JSON array of the objects.
 * The first error among them decides the result.
 */
static int
status_many(char *const *paths, size_t npaths, int json)
{
	struct profile *p = NULL;
	size_t n = 0, i;
	int r, first_err = 0;

	if ((r = profile_load_all(paths, npaths, NULL, &p, &n)) != 0)
		return r;
	if (json)
		fputs("[\n", stdout);
	for (i = 0; i < n; i++) {
		if (json && i > 0)
			fputs(",\n", stdout);
		else if (!json)
			printf("%s== %s (%s)\n", i > 0 ? "\n" : "", p[i].name, p[i].c->path);
		r = status_run(p[i].c, json);
		fflush(stdout);
		if (r != 0 && first_err == 0)
			first_err = r;
	}
	if (json)
		fputs("]\n", stdout);
	profile_free_all(p, n);
	return first_err;
}

static void
harden(void)
{
	/* A file size limit makes write() fail with EFBIG, reported like a full
	 * disk, instead of killing the process mid-write. */
	signal(SIGXFSZ, SIG_IGN);
}

/* The run functions: each hands what the command line set to its command. */

static int
run_check(const struct conf *c, const struct cmdline_args *a)
{
	return check_run(c, a->challenge, a->json);
}

static int
run_enroll(const struct conf *c, const struct cmdline_args *a)
{
	return enroll_run(c, &a->enroll);
}

static int
run_provision(const struct conf *c, const struct cmdline_args *a)
{
	return provision_run(c, &a->provision);
}

static int
run_renew(const struct conf *c, const struct cmdline_args *a)
{
	struct enroll_opts o = a->enroll;

	o.renewal = 1;
	return enroll_run(c, &o);
}

static int
run_agent(const struct conf *c, const struct cmdline_args *a)
{
	(void)c;
	return daemon_run(a->config.v, a->config.n);
}

static int
run_status(const struct conf *c, const struct cmdline_args *a)
{
	if (a->metrics && a->json) {
		log_error("status: --json and --metrics are two formats; choose one");
		return P11E_ERR_USAGE;
	}
	if (a->metrics)
		return status_metrics(a->config.v, a->config.n);
	if (c == NULL)
		return status_many(a->config.v, a->config.n, a->json);
	return status_run(c, a->json);
}

static int
run_hook_test(const struct conf *c, const struct cmdline_args *a)
{
	(void)a;
	return hook_test_run(c);
}

static int
run_tokens(const struct conf *c, const struct cmdline_args *a)
{
	(void)c;
	return tokens_run(&a->tokens);
}

static const struct cmdline_opt global_opts[] = {
    {.name = "config",
     .letter = 'c',
     .arg = "FILE",
     .kind = CMDLINE_LIST,
     .at = AT(config, struct cmdline_list),
     .help = "configuration (default " DEFAULT_CONF ")"},
    {.name = "verbose",
     .letter = 'v',
     .kind = CMDLINE_SET,
     .at = AT(level, int),
     .value = LOG_LVL_DEBUG,
     .help = "more detail on stderr"},
    {.name = "quiet",
     .letter = 'q',
     .kind = CMDLINE_SET,
     .at = AT(level, int),
     .value = LOG_LVL_ERROR,
     .help = "errors only on stderr"},
    {.name = "version",
     .letter = 'V',
     .kind = CMDLINE_STOP,
     .at = AT(version, int),
     .value = 1,
     .help = "version"},
    {.name = NULL},
};

static const struct cmdline_opt check_opts[] = {
    {.name = "challenge",
     FLAG(challenge),
     .help = "also log in to the NDES page and obtain a challenge (spends one)"},
    {.name = "json", FLAG(json), .help = "one JSON object (fields: p11enroll(8))"},
    {.name = NULL},
};

static const struct cmdline_opt enroll_opts[] = {
    {.name = "allow-final-pin-try",
     FLAG(enroll.allow_final_pin_try),
     .help = "log in even when the token says one PIN attempt is left"},
    {.name = "wait",
     FLAG(enroll.wait),
     .help = "when the CA answers PENDING, keep polling (capped, jittered backoff) until "
             "issued"},
    {.name = "max-wait",
     .arg = "DURATION",
     .kind = CMDLINE_DURATION,
     .at = AT(enroll.max_wait, long),
     .implies = "wait",
     .help = "give up waiting after this (default 1h; implies --wait); e.g. 90s, 30m, 2h, 1d"},
    {.name = NULL},
};

static const struct cmdline_opt provision_opts[] = {
    {.name = "jobs",
     .arg = "N",
     .kind = CMDLINE_NUMBER,
     .at = AT(provision.jobs, int),
     .min = 1,
     .max = PROVISION_JOBS_MAX,
     .help = "at most N at once (default: the number of tokens, at most 8)"},
    {.name = "watch",
     FLAG(provision.watch),
     .help = "keep running, enroll tokens as they appear; Ctrl-C stops after the cards in "
             "flight"},
    {.name = "report",
     .arg = "FILE",
     .kind = CMDLINE_STRING,
     .at = AT(provision.report, const char *),
     .help = "append one JSON line per token"},
    {.name = "init",
     FLAG(provision.init),
     .help = "initialise blank tokens of the uri's make ([token] init = yes); without it "
             "they are left alone"},
    {.name = "allow-final-pin-try", FLAG(provision.allow_final_pin_try), .help = "as for enroll"},
    {.name = NULL},
};

static const struct cmdline_opt renew_opts[] = {
    {.name = "force", FLAG(enroll.force), .help = "renew now, due or not"},
    {.name = "allow-final-pin-try", FLAG(enroll.allow_final_pin_try), .help = "as for enroll"},
    {.name = NULL},
};

static const struct cmdline_opt status_opts[] = {
    {.name = "json", FLAG(json), .help = "one JSON object (fields: p11enroll(8))"},
    {.name = "metrics",
     FLAG(metrics),
     .help = "Prometheus text format, as the agent writes [agent] metrics_file"},
    {.name = NULL},
};

static const struct cmdline_opt tokens_opts[] = {
    {.name = "module",
     .arg = "PATH",
     .kind = CMDLINE_STRING,
     .at = AT(tokens.module, const char *),
     .help = "this module only (default: the modules registered with p11-kit)"},
    {.name = "json", FLAG(tokens.json), .help = "one JSON document"},
    {.name = "timeout",
     .arg = "DURATION",
     .kind = CMDLINE_DURATION,
     .at = AT(tokens.timeout, long),
     .max = TOKENS_TIMEOUT_MAX,
     .help = "per module and for the TPM (default 15s)"},
    {.name = NULL},
};

static const struct cmdline_cmd commands[] = {
    {.name = "check",
     .summary = "connection test: caps, CA chain, RA certificates, NDES page",
     .about = "GetCACaps and GetCACert, then the CA chain and the RA certificates with their "
              "roles, the trust decision (fingerprint, pin, root_file) and, with a "
              "challenge_url, the NDES challenge page (without logging in). Nothing is "
              "pinned or written.",
     .opts = check_opts,
     .flags = CMDLINE_CONF,
     .run = run_check},
    {.name = "enroll",
     .summary = "key on the token -> SCEP -> certificate on the token + trust dir",
     .about = "The key is generated on the token (or the profile's key an earlier attempt "
              "left is used), the certificate requested over SCEP and stored next to it, "
              "the CA and RA certificates in the trust directory. A profile that holds a "
              "valid certificate is left as it is.",
     .opts = enroll_opts,
     .flags = CMDLINE_CONF | CMDLINE_PLAIN_SUBJECT | CMDLINE_LOCK | CMDLINE_RECORD,
     .run = run_enroll},
    {.name = "hook-test",
     .summary = "runs the [hooks] once with the current certificate's values",
     .about = "Each configured hook runs once, as after a renewal but with "
              "P11ENROLL_EVENT=test, and its result is printed; nothing is recorded and the "
              "token is not changed. Exit 69 when a hook failed.",
     .flags = CMDLINE_CONF,
     .run = run_hook_test},
    {.name = "provision",
     .summary = "enroll every token [token] uri matches that has no certificate",
     .about = "The uri may be partial (every token of a make). Tokens are enrolled several "
              "at a time, each with a state directory of its own; those that hold a valid "
              "certificate are skipped.",
     .opts = provision_opts,
     .flags = CMDLINE_CONF,
     .run = run_provision},
    {.name = "renew",
     .summary = "a new certificate (and key) requested with the current one",
     .about = "A new key too with [renewal] new_key = yes. The old certificate (and key) "
              "are removed once the new certificate is on the token. When not due under "
              "[renewal], says when and exits 0 without contacting the CA.",
     .opts = renew_opts,
     .flags = CMDLINE_CONF | CMDLINE_PLAIN_SUBJECT | CMDLINE_LOCK | CMDLINE_RECORD,
     .run = run_renew},
    {.name = "run",
     .summary = "the agent: enrolls, renews when due, polls, retries, sleeps",
     .about = "Enrolls each profile that has no valid certificate, renews when due, polls "
              "pending requests, retries failures with capped, jittered backoff (or as the "
              "server's Retry-After asks); sleeps in between. SIGHUP reloads the "
              "configuration, SIGTERM stops.",
     .flags = CMDLINE_PROFILES,
     .run = run_agent},
    {.name = "status",
     .summary = "what the token holds, renewal, last attempt, pending (no PIN)",
     .about = "What the token holds for the profile, when it is due for renewal, the last "
              "enroll or renew attempt and a pending request; needs no PIN. Several "
              "profiles: a section each, or with --json an array of the objects; "
              "--metrics prints what the agent writes to [agent] metrics_file.",
     .opts = status_opts,
     .flags = CMDLINE_CONF | CMDLINE_PROFILES,
     .run = run_status},
    {.name = "tokens",
     .summary = "the PKCS#11 modules, slots and tokens here, and the TPM",
     .about = "What each token can do and the [token] uri that selects it; never logs in. "
              "Each module is examined in a child process with a deadline.",
     .opts = tokens_opts,
     .run = run_tokens},
    {.name = NULL},
};

static const struct cmdline_prog prog = {
    .name = "p11enroll",
    .about = "Enrolls a non-exportable key on a PKCS#11 token with a CA over SCEP.",
    .opts = global_opts,
    .cmds = commands,
    .epilogue = exit_codes,
};

/*
 * What main() does around a command's run function, as its flags ask: the
 * profile (or the paths it reads itself), SCEP and HTTP, the lock, the
 * attempt record; everything undone before it returns run's result.
 */
static int
dispatch(const struct cmdline_cmd *cmd, struct cmdline_args *a)
{
	const unsigned f = cmd->flags;
	struct conf *c = NULL;
	int r = P11E_ERR_INTERNAL, lock = -1, one;

	if ((f & (CMDLINE_CONF | CMDLINE_PROFILES)) != 0 && a->config.n == 0)
		a->config.v[a->config.n++] = default_conf;
	one = (f & CMDLINE_CONF) != 0 &&
	      !((f & CMDLINE_PROFILES) != 0 && (a->config.n > 1 || is_dir(a->config.v[0])));
	if (one && (r = conf_load(a->config.v[0], &c)) != 0)
		goto out;
	if ((f & CMDLINE_PLAIN_SUBJECT) != 0 && (r = profile_check_subject(c, cmd->name)) != 0)
		goto out;
	if ((f & CMDLINE_CONF) != 0 && (r = scep_init()) != 0)
		goto out;
	/* One run per profile at a time: a busy profile is no attempt to record. */
	if ((f & CMDLINE_LOCK) != 0 && (r = statefile_lock(c, &lock)) != 0)
		goto out;
	r = cmd->run(c, a);
	/* An attempt is a run that reached the CA or failed; a renew not due is none. */
	if ((f & CMDLINE_RECORD) != 0 && (r != 0 || http_request_count() > 0))
		attempt_record(c, cmd->name, r);
out:
	statefile_unlock(lock);
	if ((f & CMDLINE_CONF) != 0)
		scep_cleanup();
	conf_free(c);
	return r;
}

int
main(int argc, char **argv)
{
	struct cmdline_args a = {.level = LOG_LVL_INFO,
	                         .enroll = {.max_wait = 3600},
	                         .tokens = {.timeout = TOKENS_TIMEOUT_DEFAULT}};
	struct cmdline_parsed cl;
	int r;

	/* First, before OpenSSL or libcurl allocate: no core dumps, not dumpable,
	 * the secret arena, OpenSSL wiping what it frees (secret.h). */
	if ((r = secret_harden()) != 0)
		return p11e_exit_code(r);
	harden();
	netproc_enable();
	if ((r = cmdline_check(&prog)) != 0 || (r = cmdline_parse(&prog, argc, argv, &a, &cl)) != 0)
		return p11e_exit_code(r);
	log_set_level(a.level);
	if (cl.help) {
		cmdline_help(stdout, &prog, cl.cmd);
		return P11E_EXIT_OK;
	}
	if (a.version) {
		printf("p11enroll %s\n", P11E_VERSION);
		return P11E_EXIT_OK;
	}
	if ((r = dispatch(cl.cmd, &a)) != 0)
		log_debug("exiting: %s", p11e_strerror(r));
	return p11e_exit_code(r);
}
