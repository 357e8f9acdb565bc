/*
 * main.c: command line, dispatch, exit codes.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "conf.h"
#include "enroll.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "scep.h"

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
    "  check     connection test: GetCACaps, GetCACert, CA fingerprint/pin\n"
    "  enroll    key on the token -> SCEP -> certificate on the token + trust dir\n"
    "            --allow-final-pin-try  log in even when the token says one PIN\n"
    "                                   attempt is left\n"
    "  status    what the token holds for this profile (no PIN needed)\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE   configuration (default " P11E_SYSCONFDIR "/p11enroll/p11enroll.conf)\n"
    "  -v, --verbose       more detail on stderr\n"
    "  -q, --quiet         errors only on stderr\n"
    "  -h, --help          this text\n"
    "  -V, --version       version\n"
    "\n"
    "Exit codes:\n"
    "  0  success                        74  token or file error (no token, wrong PIN)\n"
    "  64 usage error                    75  pending at the CA: try again later\n"
    "  69 server unreachable, HTTP error 76  response failed verification\n"
    "  70 internal error                     (fingerprint, signature, nonce, malformed)\n"
    "  77 rejected by the CA             78  configuration error\n";

static void
harden(void)
{
	struct rlimit rl = {0, 0};

	/* PINs and challenges pass through memory: no core dumps, no ptrace by
	 * other users' tools. */
	setrlimit(RLIMIT_CORE, &rl);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
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
	static const struct option enroll_opts[] = {
	    {"allow-final-pin-try", no_argument, NULL, 'F'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = P11E_SYSCONFDIR "/p11enroll/p11enroll.conf", *cmd;
	int ch, r, level = LOG_LVL_INFO;
	struct conf *c = NULL;
	struct enroll_opts eo = {0};

	harden();
	while ((ch = getopt_long(argc, argv, "+c:vqhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
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
	if (strcmp(cmd, "enroll") == 0) {
		while ((ch = getopt_long(argc, argv, "+", enroll_opts, NULL)) != -1) {
			if (ch != 'F') {
				fputs(usage_text, stderr);
				return P11E_EXIT_USAGE;
			}
			eo.allow_final_pin_try = 1;
		}
	} else if (strcmp(cmd, "check") != 0 && strcmp(cmd, "status") != 0) {
		log_error("unknown command '%s' (check, enroll, status; see --help)", cmd);
		return P11E_EXIT_USAGE;
	}
	if (optind < argc && strcmp(cmd, "enroll") != 0) {
		log_error("'%s' takes no arguments", cmd);
		return P11E_EXIT_USAGE;
	}
	if (optind < argc) {
		log_error("unexpected argument '%s'", argv[optind]);
		return P11E_EXIT_USAGE;
	}
	if ((r = conf_load(path, &c)) != 0)
		goto out;
	if ((r = scep_init()) != 0 || (r = http_init()) != 0)
		goto out;
	if (strcmp(cmd, "enroll") == 0)
		r = enroll_run(c, &eo);
	else if (strcmp(cmd, "check") == 0)
		r = check_run(c);
	else
		r = status_run(c);
	http_cleanup();
out:
	scep_cleanup();
	conf_free(c);
	if (r != 0)
		log_debug("exiting: %s", p11e_strerror(r));
	return p11e_exit_code(r);
}
