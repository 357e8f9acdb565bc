/*
 * main.c: command line, dispatch, exit codes.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "attempt.h"
#include "conf.h"
#include "daemon.h"
#include "enroll.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "provision.h"
#include "renew.h"
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

static const char usage_text[] =
    "usage: p11enroll [-c FILE] [-v|-q] COMMAND [OPTIONS]\n"
    "\n"
    "Enrolls a non-exportable key on a PKCS#11 token with a CA over SCEP.\n"
    "\n"
    "Commands:\n"
    "  check     connection test: GetCACaps, GetCACert, the CA chain and RA\n"
    "            certificates with their roles, fingerprint/pin/root_file, the\n"
    "            NDES challenge page (without logging in)\n"
    "            --challenge  also log in to it and obtain a challenge (spends one)\n"
    "            --json       one JSON object (fields: p11enroll(8))\n"
    "  enroll    key on the token -> SCEP -> certificate on the token + trust dir\n"
    "            --allow-final-pin-try  log in even when the token says one PIN\n"
    "                                   attempt is left\n"
    "            --wait                 when the CA answers PENDING, keep polling\n"
    "                                   (capped, jittered backoff) until issued\n"
    "            --max-wait DURATION    give up waiting after this (default 1h;\n"
    "                                   implies --wait); e.g. 90s, 30m, 2h, 1d\n"
    "  provision every token that [token] uri matches (it may be partial) and\n"
    "            that holds no valid certificate yet, several at a time\n"
    "            --jobs N       at most N at once (default: the number of\n"
    "                           tokens, at most 8)\n"
    "            --watch        keep running, enroll tokens as they appear;\n"
    "                           Ctrl-C stops after the cards in flight\n"
    "            --report FILE  append one JSON line per token\n"
    "            --init         initialise blank tokens of the uri's make\n"
    "                           ([token] init = yes); without it they are\n"
    "                           left alone\n"
    "            --allow-final-pin-try  as for enroll\n"
    "  renew     a new certificate (and, with [renewal] new_key = yes, a new key)\n"
    "            requested with the current certificate; the old ones are removed\n"
    "            once the new certificate is on the token. When not due under\n"
    "            [renewal], says when and exits 0 without contacting the CA\n"
    "            --force                renew now, due or not\n"
    "            --allow-final-pin-try  as for enroll\n"
    "  run       the agent: enrolls each profile that has no valid certificate,\n"
    "            renews when due, polls pending requests, retries failures with\n"
    "            capped, jittered backoff (or as the server's Retry-After asks);\n"
    "            sleeps in between. -c may be repeated, or name a directory of\n"
    "            *.conf files. SIGHUP reloads, SIGTERM stops\n"
    "  status    what the token holds for this profile, when it is due for\n"
    "            renewal, the last enroll/renew attempt and a pending request\n"
    "            (no PIN needed)\n"
    "            --json              one JSON object (fields: p11enroll(8))\n"
    "  tokens    the PKCS#11 modules, slots and tokens of this machine, what each\n"
    "            can do, the [token] uri that selects it, and the TPM; needs no\n"
    "            configuration file, never logs in\n"
    "            --module PATH       this module only (default: the modules\n"
    "                                registered with p11-kit)\n"
    "            --json              one JSON document\n"
    "            --timeout DURATION  per module and for the TPM (default 15s)\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE   configuration (default " P11E_SYSCONFDIR "/p11enroll/p11enroll.conf);\n"
    "                      run, status: repeatable, or a directory of *.conf files\n"
    "  -v, --verbose       more detail on stderr\n"
    "  -q, --quiet         errors only on stderr\n"
    "  -h, --help          this text\n"
    "  -V, --version       version\n"
    "\n"
    "Exit codes:\n"
    "  0  success                        74  token or file error (no token, wrong PIN)\n"
    "  64 usage error                    75  pending at the CA, or another run\n"
    "                                        holds the profile: try again later\n"
    "  69 server unreachable, HTTP error 76  response failed verification\n"
    "  70 internal error                     (fingerprint, signature, nonce, malformed)\n"
    "  77 rejected by the CA             78  configuration error\n";

#define MAX_PROFILES 64

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

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'}, {"verbose", no_argument, NULL, 'v'},
	    {"quiet", no_argument, NULL, 'q'},        {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
	};
	static const struct option renew_opts[] = {
	    {"force", no_argument, NULL, 'f'},
	    {"allow-final-pin-try", no_argument, NULL, 'F'},
	    {NULL, 0, NULL, 0},
	};
	static const struct option check_opts[] = {
	    {"challenge", no_argument, NULL, 'C'},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	static const struct option status_opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	static const struct option provision_opts[] = {
	    {"jobs", required_argument, NULL, 'j'},
	    {"watch", no_argument, NULL, 'w'},
	    {"report", required_argument, NULL, 'r'},
	    {"allow-final-pin-try", no_argument, NULL, 'F'},
	    {"init", no_argument, NULL, 'I'},
	    {NULL, 0, NULL, 0},
	};
	static const struct option enroll_opts[] = {
	    {"allow-final-pin-try", no_argument, NULL, 'F'},
	    {"wait", no_argument, NULL, 'w'},
	    {"max-wait", required_argument, NULL, 'W'},
	    {NULL, 0, NULL, 0},
	};
	char *paths[MAX_PROFILES], *defpath = P11E_SYSCONFDIR "/p11enroll/p11enroll.conf";
	const char *path, *cmd;
	size_t npaths = 0;
	int lock = -1;
	int ch, r, level = LOG_LVL_INFO, fetch_challenge = 0;
	struct conf *c = NULL;
	struct enroll_opts eo = {0, 0, 3600, 0, 0};
	struct renew_opts ro = {0, 0};
	struct provision_opts po = {0, 0, NULL, 0, 0};
	char *end = NULL;
	int status_json = 0, check_json = 0;

	/* First, before OpenSSL or libcurl allocate: no core dumps, not dumpable,
	 * the secret arena, OpenSSL wiping what it frees (secret.h). */
	if ((r = secret_harden()) != 0)
		return p11e_exit_code(r);
	harden();
	while ((ch = getopt_long(argc, argv, "+c:vqhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			if (npaths == MAX_PROFILES) {
				log_error("at most %d -c options", MAX_PROFILES);
				return P11E_EXIT_USAGE;
			}
			paths[npaths++] = optarg;
			break;
		case 'v':
			level = LOG_LVL_DEBUG;
			break;
		case 'q':
			level = LOG_LVL_ERROR;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return P11E_EXIT_OK;
		case 'V':
			printf("p11enroll %s\n", P11E_VERSION);
			return P11E_EXIT_OK;
		default:
			fputs(usage_text, stderr);
			return P11E_EXIT_USAGE;
		}
	}
	log_set_level(level);
	if (optind >= argc) {
		fputs(usage_text, stderr);
		return P11E_EXIT_USAGE;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	optind = 1;
	if (strcmp(cmd, "tokens") == 0)
		return p11e_exit_code(tokens_run(argc, argv));
	if (strcmp(cmd, "enroll") == 0) {
		while ((ch = getopt_long(argc, argv, "+", enroll_opts, NULL)) != -1) {
			if (ch == 'F') {
				eo.allow_final_pin_try = 1;
			} else if (ch == 'w') {
				eo.wait = 1;
			} else if (ch == 'W' && conf_parse_duration(optarg, &eo.max_wait) == 0) {
				eo.wait = 1;
			} else {
				if (ch == 'W')
					log_error(
					    "--max-wait '%s' is not a duration (e.g. 90s, 30m, "
					    "1h, 2d)",
					    optarg);
				fputs(usage_text, stderr);
				return P11E_EXIT_USAGE;
			}
		}
	} else if (strcmp(cmd, "renew") == 0) {
		while ((ch = getopt_long(argc, argv, "+", renew_opts, NULL)) != -1) {
			if (ch == 'f') {
				ro.force = 1;
			} else if (ch == 'F') {
				ro.allow_final_pin_try = 1;
			} else {
				fputs(usage_text, stderr);
				return P11E_EXIT_USAGE;
			}
		}
	} else if (strcmp(cmd, "provision") == 0) {
		while ((ch = getopt_long(argc, argv, "+", provision_opts, NULL)) != -1) {
			if (ch == 'j') {
				po.jobs = (int)strtol(optarg, &end, 10);
				if (*optarg == '\0' || *end != '\0' || po.jobs < 1 ||
				    po.jobs > PROVISION_JOBS_MAX) {
					log_error("--jobs '%s' is not a number from 1 to %d",
					          optarg, PROVISION_JOBS_MAX);
					return P11E_EXIT_USAGE;
				}
			} else if (ch == 'w') {
				po.watch = 1;
			} else if (ch == 'r') {
				po.report = optarg;
			} else if (ch == 'F') {
				po.allow_final_pin_try = 1;
			} else if (ch == 'I') {
				po.init = 1;
			} else {
				fputs(usage_text, stderr);
				return P11E_EXIT_USAGE;
			}
		}
	} else if (strcmp(cmd, "check") == 0) {
		while ((ch = getopt_long(argc, argv, "+", check_opts, NULL)) != -1) {
			if (ch == 'C') {
				fetch_challenge = 1;
			} else if (ch == 'j') {
				check_json = 1;
			} else {
				fputs(usage_text, stderr);
				return P11E_EXIT_USAGE;
			}
		}
	} else if (strcmp(cmd, "run") == 0) {
		if (argc > 1) {
			log_error("run takes no arguments; profiles are given with -c");
			return P11E_EXIT_USAGE;
		}
		if (npaths == 0)
			paths[npaths++] = defpath;
		return p11e_exit_code(daemon_run(paths, npaths));
	} else if (strcmp(cmd, "status") == 0) {
		while ((ch = getopt_long(argc, argv, "+", status_opts, NULL)) != -1) {
			if (ch != 'j') {
				fputs(usage_text, stderr);
				return P11E_EXIT_USAGE;
			}
			status_json = 1;
		}
	} else {
		log_error(
		    "unknown command '%s' (check, enroll, provision, renew, run, status, tokens; "
		    "see --help)",
		    cmd);
		return P11E_EXIT_USAGE;
	}
	if (optind < argc) {
		log_error("unexpected argument '%s'", argv[optind]);
		return P11E_EXIT_USAGE;
	}
	path = npaths == 1 ? paths[0] : defpath;
	if (strcmp(cmd, "status") == 0 && (npaths > 1 || is_dir(path))) {
		if (npaths == 0)
			paths[npaths++] = defpath;
		if ((r = scep_init()) == 0)
			r = status_many(paths, npaths, status_json);
		scep_cleanup();
		return p11e_exit_code(r);
	}
	if (npaths > 1) {
		log_error("several -c options are for `run` and `status` only; %s takes one "
		          "configuration",
		          cmd);
		return P11E_EXIT_USAGE;
	}
	if ((r = conf_load(path, &c)) != 0)
		goto out;
	if ((strcmp(cmd, "enroll") == 0 || strcmp(cmd, "renew") == 0) &&
	    (r = profile_check_subject(c, cmd)) != 0)
		goto out;
	if ((r = scep_init()) != 0 || (r = http_init()) != 0)
		goto out;
	/* One run per profile at a time: a busy profile is no attempt to record. */
	if ((strcmp(cmd, "enroll") == 0 || strcmp(cmd, "renew") == 0) &&
	    (r = statefile_lock(c, &lock)) != 0) {
		http_cleanup();
		goto out;
	}
	if (strcmp(cmd, "enroll") == 0)
		r = enroll_run(c, &eo);
	else if (strcmp(cmd, "renew") == 0)
		r = renew_run(c, &ro);
	else if (strcmp(cmd, "check") == 0)
		r = check_run(c, fetch_challenge, check_json);
	else if (strcmp(cmd, "provision") == 0)
		r = provision_run(c, &po);
	else
		r = status_run(c, status_json);
	/* An attempt is a run that reached the CA or failed; a renew not due is none. */
	if ((strcmp(cmd, "enroll") == 0 || strcmp(cmd, "renew") == 0) &&
	    (r != 0 || http_request_count() > 0))
		attempt_record(c, cmd, r);
	statefile_unlock(lock);
	http_cleanup();
out:
	scep_cleanup();
	conf_free(c);
	if (r != 0)
		log_debug("exiting: %s", p11e_strerror(r));
	return p11e_exit_code(r);
}
