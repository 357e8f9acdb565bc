/*
 * test_cmdline.c: the command line as data: one parser for every option
 * list and usage errors (cmdline.c), and the help generated from the same
 * tables (cmdline_help.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "capture.h"

#include "cmdline.h"
#include "err.h"

struct cmdline_args {
	struct cmdline_list config;
	int level, version, force, wait, json;
	long max_wait, timeout;
	int jobs;
	const char *report;
};

#define AT(member, ctype) CMDLINE_AT(struct cmdline_args, member, ctype)

static int
run_nothing(const struct conf *c, const struct cmdline_args *a)
{
	(void)c;
	(void)a;
	return 0;
}

static const struct cmdline_opt globals[] = {
    {.name = "config",
     .letter = 'c',
     .arg = "FILE",
     .kind = CMDLINE_LIST,
     .at = AT(config, struct cmdline_list),
     .help = "configuration"},
    {.name = "verbose",
     .letter = 'v',
     .kind = CMDLINE_SET,
     .at = AT(level, int),
     .value = 3,
     .help = "more"},
    {.name = "quiet", .letter = 'q', .kind = CMDLINE_SET, .at = AT(level, int), .help = "less"},
    {.name = "version",
     .letter = 'V',
     .kind = CMDLINE_STOP,
     .at = AT(version, int),
     .value = 1,
     .help = "version"},
    {.name = NULL},
};

static const struct cmdline_opt get_opts[] = {
    {.name = "force",
     .kind = CMDLINE_SET,
     .at = AT(force, int),
     .value = 1,
     .help = "even when not due"},
    {.name = "wait", .kind = CMDLINE_SET, .at = AT(wait, int), .value = 1, .help = "keep polling"},
    {.name = "max-wait",
     .arg = "DURATION",
     .kind = CMDLINE_DURATION,
     .at = AT(max_wait, long),
     .implies = "wait",
     .help = "give up after this"},
    {.name = "jobs",
     .arg = "N",
     .kind = CMDLINE_NUMBER,
     .at = AT(jobs, int),
     .min = 1,
     .max = 64,
     .help = "at most N at once"},
    {.name = "report",
     .arg = "FILE",
     .kind = CMDLINE_STRING,
     .at = AT(report, const char *),
     .help = "one line per token"},
    {.name = NULL},
};

static const struct cmdline_opt list_opts[] = {
    {.name = "json", .kind = CMDLINE_SET, .at = AT(json, int), .value = 1, .help = "as JSON"},
    {.name = "timeout",
     .arg = "DURATION",
     .kind = CMDLINE_DURATION,
     .at = AT(timeout, long),
     .max = 3600,
     .help = "per module"},
    {.name = NULL},
};

static const struct cmdline_cmd cmds[] = {
    {.name = "get",
     .summary = "get the thing",
     .about = "At length.",
     .opts = get_opts,
     .flags = CMDLINE_CONF | CMDLINE_LOCK | CMDLINE_RECORD,
     .run = run_nothing},
    {.name = "show",
     .summary = "show every profile",
     .opts = list_opts,
     .flags = CMDLINE_CONF | CMDLINE_PROFILES,
     .run = run_nothing},
    {.name = "agent", .summary = "the agent", .flags = CMDLINE_PROFILES, .run = run_nothing},
    {.name = "list", .summary = "list, no profile", .opts = list_opts, .run = run_nothing},
    {.name = NULL},
};

static const struct cmdline_prog prog = {
    .name = "prog",
    .about = "A test program.",
    .opts = globals,
    .cmds = cmds,
    .epilogue = "Exit codes: 0, 64\n",
};

static char errbuf[8192];

/* cmdline_parse of the words of line ('' an empty one), stderr into errbuf. */
static int
parse(const char *line, struct cmdline_args *a, struct cmdline_parsed *out)
{
	static char copy[2048];
	static char *argv[256];
	struct capture cap;
	char *save = NULL, *w;
	int argc = 0, r;

	snprintf(copy, sizeof(copy), "prog %s", line);
	for (w = strtok_r(copy, " ", &save); w != NULL && argc < 255;
	     w = strtok_r(NULL, " ", &save))
		argv[argc++] = strcmp(w, "''") == 0 ? w + 2 : w;
	argv[argc] = NULL;
	memset(a, 0, sizeof(*a));
	capture_begin(&cap);
	r = cmdline_parse(&prog, argc, argv, a, out);
	capture_end(&cap, errbuf, sizeof(errbuf));
	return r;
}

/* The help for cmd (NULL: all) as a string; free it. */
static char *
help_text(const struct cmdline_cmd *cmd)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	cmdline_help(f, &prog, cmd);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void
test_values(void **state)
{
	struct cmdline_args a;
	struct cmdline_parsed p;

	(void)state;
	assert_int_equal(
	    parse("-c one.conf -v get --force --max-wait 2m --jobs 8 --report r.jsonl", &a, &p), 0);
	assert_ptr_equal(p.cmd, &cmds[0]);
	assert_int_equal(p.help, 0);
	assert_int_equal(p.argc, 8);
	assert_string_equal(p.argv[0], "get");
	assert_int_equal(a.config.n, 1);
	assert_string_equal(a.config.v[0], "one.conf");
	assert_int_equal(a.level, 3);
	assert_int_equal(a.force, 1);
	assert_int_equal(a.max_wait, 120);
	assert_int_equal(a.wait, 1); /* implied by --max-wait */
	assert_int_equal(a.jobs, 8);
	assert_string_equal(a.report, "r.jsonl");
	assert_string_equal(errbuf, "");

	/* Alternatives: the last one wins; long names may be abbreviated. */
	assert_int_equal(parse("-v -q --verb --config=a -c b -c c show --js --timeout=1h", &a, &p),
	                 0);
	assert_int_equal(a.level, 3);
	assert_int_equal(a.config.n, 3);
	assert_string_equal(a.config.v[2], "c");
	assert_int_equal(a.json, 1);
	assert_int_equal(a.timeout, 3600);
	/* -c is ignored by a command without a profile, however often given. */
	assert_int_equal(parse("-c a -c b list --json", &a, &p), 0);
	assert_ptr_equal(p.cmd, &cmds[3]);
}

static void
test_help_and_stop(void **state)
{
	struct cmdline_args a;
	struct cmdline_parsed p;

	(void)state;
	assert_int_equal(parse("--help", &a, &p), 0);
	assert_null(p.cmd);
	assert_int_equal(p.help, 1);
	assert_int_equal(parse("-h --no-such-option", &a, &p), 0);
	assert_int_equal(p.help, 1);
	assert_int_equal(parse("help", &a, &p), 0);
	assert_null(p.cmd);
	assert_int_equal(p.help, 1);
	assert_int_equal(parse("help get", &a, &p), 0);
	assert_ptr_equal(p.cmd, &cmds[0]);
	assert_int_equal(p.help, 1);
	assert_int_equal(parse("get --force --help", &a, &p), 0);
	assert_ptr_equal(p.cmd, &cmds[0]);
	assert_int_equal(p.help, 1);
	assert_int_equal(parse("agent -h", &a, &p), 0);
	assert_ptr_equal(p.cmd, &cmds[2]);
	assert_int_equal(p.help, 1);
	/* A STOP option ends the command line: no command needed. */
	assert_int_equal(parse("-V", &a, &p), 0);
	assert_null(p.cmd);
	assert_int_equal(p.help, 0);
	assert_int_equal(a.version, 1);
	assert_int_equal(parse("-V get --no-such-option", &a, &p), 0);
	assert_int_equal(a.version, 1);
}

static void
test_usage_errors(void **state)
{
	static const struct {
		const char *line, *message, *usage;
	} t[] = {
	    {"", "", "usage: prog [-c FILE] [-v|-q] COMMAND [OPTIONS]"},
	    {"frob", "unknown command 'frob' (get, show, agent, list, help; see --help)", NULL},
	    {"--no-such-option get", "unknown option '--no-such-option'", "usage: prog"},
	    {"-x get", "unknown option '-x'", "usage: prog"},
	    {"-c", "-c needs its argument, FILE", "usage: prog"},
	    {"-c '' get", "-c needs a FILE, not an empty string", "usage: prog"},
	    {"get --no-such-option", "unknown option '--no-such-option' for get",
	     "usage: prog [-c FILE] [-v|-q] get [--force] [--wait]"},
	    {"get --force=yes", "--force takes no argument", "(prog help get: "},
	    {"get --max-wait", "--max-wait needs its argument, DURATION", "usage: prog"},
	    {"get --max-wait never", "--max-wait 'never' is not a duration (e.g. 90s, 30m, 1h, 2d)",
	     "usage: prog"},
	    {"get --jobs 0", "--jobs '0' is not a number from 1 to 64", "usage: prog"},
	    {"get --jobs 65", "--jobs '65' is not a number from 1 to 64", "usage: prog"},
	    {"get --jobs 4x", "--jobs '4x' is not a number from 1 to 64", "usage: prog"},
	    {"get --report ''", "--report needs a FILE, not an empty string", "usage: prog"},
	    {"get extra", "unexpected argument 'extra' for get (the profile is given with -c)",
	     "usage: prog"},
	    {"agent extra", "unexpected argument 'extra' for agent (profiles are given with -c)",
	     "usage: prog [-c FILE|DIR]... [-v|-q] agent"},
	    {"list -- extra", "unexpected argument 'extra' for list", "usage: prog [-v|-q] list"},
	    {"list --timeout 2h", "--timeout '2h' is not a duration from 1s to 1h", "usage: prog"},
	    {"-c a -c b get",
	     "several -c options are for `show` and `agent` only; get takes one "
	     "configuration",
	     NULL},
	    {"help frob", "unknown command 'frob'", NULL},
	    {"help get show", "unexpected argument 'show' for help", "usage: prog"},
	    {"help --force", "unknown option '--force' for help", "usage: prog"},
	};
	struct cmdline_args a;
	struct cmdline_parsed p = {NULL, 0, 0, NULL};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		p.argc = -1;
		assert_int_equal(parse(t[i].line, &a, &p), P11E_ERR_USAGE);
		assert_int_equal(p.argc, -1); /* *out untouched */
		if (strstr(errbuf, t[i].message) == NULL)
			fail_msg("'%s': '%s' not in:\n%s", t[i].line, t[i].message, errbuf);
		if (t[i].usage != NULL ? strstr(errbuf, t[i].usage) == NULL
		                       : strstr(errbuf, "usage:") != NULL)
			fail_msg("'%s': usage '%s' expected:\n%s", t[i].line,
			         t[i].usage != NULL ? t[i].usage : "(none)", errbuf);
	}
}

static void
test_list_max(void **state)
{
	struct cmdline_args a;
	struct cmdline_parsed p;
	char line[1024] = "";
	size_t i;

	(void)state;
	for (i = 0; i < CMDLINE_LIST_MAX; i++)
		strcat(line, "-c x ");
	strcat(line, "show");
	assert_int_equal(parse(line, &a, &p), 0);
	assert_int_equal(a.config.n, CMDLINE_LIST_MAX);
	memmove(line + 5, line, strlen(line) + 1);
	assert_int_equal(parse(line, &a, &p), P11E_ERR_USAGE);
	assert_non_null(strstr(errbuf, "at most 64 -c options"));
}

/* Every command, option and argument name the parser takes is in the help. */
static void
test_help_is_the_table(void **state)
{
	const struct cmdline_cmd *c;
	const struct cmdline_opt *o;
	char *all, *one, label[128];

	(void)state;
	all = help_text(NULL);
	assert_non_null(strstr(all, "usage: prog [-c FILE] [-v|-q] COMMAND [OPTIONS]\n"));
	assert_non_null(strstr(all, "A test program."));
	assert_non_null(strstr(all, "  help "));
	assert_non_null(strstr(all, "Exit codes: 0, 64\n"));
	assert_non_null(strstr(all, "-c, --config FILE"));
	assert_non_null(strstr(all, "for show and agent"));
	for (o = globals; o->name != NULL; o++) {
		snprintf(label, sizeof(label), "-%c, --%s", o->letter, o->name);
		assert_non_null(strstr(all, label));
	}
	for (c = cmds; c->name != NULL; c++) {
		assert_non_null(strstr(all, c->summary));
		one = help_text(c);
		snprintf(label, sizeof(label), " %s", c->name);
		assert_non_null(strstr(one, label));
		assert_non_null(strstr(one, c->summary));
		assert_non_null(strstr(one, "-h, --help"));
		for (o = c->opts; o != NULL && o->name != NULL; o++) {
			snprintf(label, sizeof(label), "--%s%s%s", o->name, o->arg ? " " : "",
			         o->arg ? o->arg : "");
			if (strstr(all, label) == NULL || strstr(one, label) == NULL)
				fail_msg("%s: '%s' not in its help", c->name, label);
			assert_non_null(strstr(one, o->help));
		}
		free(one);
	}
	free(all);
	/* The command's help says what its flags ask. */
	one = help_text(&cmds[0]);
	assert_non_null(strstr(one, "usage: prog [-c FILE] [-v|-q] get [--force] [--wait]"));
	assert_non_null(strstr(one, "At length."));
	assert_non_null(strstr(one, "Profile: one configuration file"));
	assert_non_null(strstr(one, "(else: exit 75)"));
	assert_non_null(strstr(one, "Records the attempt"));
	free(one);
	one = help_text(&cmds[3]);
	assert_non_null(strstr(one, "usage: prog [-v|-q] list [--json] [--timeout DURATION]\n"));
	assert_non_null(strstr(one, "Reads no configuration file."));
	free(one);
}

/* The short usage after an error, and the names the parser and the help share. */
static void
test_usage_and_names(void **state)
{
	char *buf = NULL, name[64], names[256];
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	assert_non_null(f);
	cmdline_usage(f, &prog, &cmds[3]);
	cmdline_usage(f, &prog, NULL);
	assert_int_equal(fclose(f), 0);
	assert_string_equal(buf, "usage: prog [-v|-q] list [--json] [--timeout DURATION]\n"
	                         "(prog help list: what each option does)\n"
	                         "usage: prog [-c FILE] [-v|-q] COMMAND [OPTIONS]\n"
	                         "       prog help [COMMAND]\n"
	                         "(prog --help: every command and its options)\n");
	free(buf);
	assert_int_equal(cmdline_opts_count(NULL), 0);
	assert_int_equal(cmdline_opts_count(get_opts), 5);
	assert_string_equal(cmdline_opt_name(&globals[0], name, sizeof(name)), "-c");
	assert_string_equal(cmdline_opt_name(&get_opts[2], name, sizeof(name)), "--max-wait");
	assert_string_equal(cmdline_cmd_names(&prog, 0, " or ", names, sizeof(names)),
	                    "get, show, agent or list");
	assert_string_equal(
	    cmdline_cmd_names(&prog, CMDLINE_PROFILES, " and ", names, sizeof(names)),
	    "show and agent");
	assert_string_equal(cmdline_cmd_names(&prog, CMDLINE_LOCK, " and ", names, sizeof(names)),
	                    "get");
	assert_string_equal(cmdline_cmd_names(&prog, 0, ", ", names, 8), "get, sh");
}

/* No line of the help is wider than 79 columns. */
static void
test_help_width(void **state)
{
	const struct cmdline_cmd *c;
	char *text, *line, *save = NULL;

	(void)state;
	for (c = NULL;; c = c == NULL ? cmds : c + 1) {
		if (c != NULL && c->name == NULL)
			break;
		text = help_text(c);
		for (line = strtok_r(text, "\n", &save); line != NULL;
		     line = strtok_r(NULL, "\n", &save))
			if (strlen(line) > 79)
				fail_msg("too wide: '%s'", line);
		free(text);
	}
}

static void
test_check(void **state)
{
	static const struct cmdline_opt implies_nothing[] = {
	    {.name = "max-wait",
	     .arg = "DURATION",
	     .kind = CMDLINE_DURATION,
	     .at = AT(max_wait, long),
	     .implies = "wait",
	     .help = "x"},
	    {.name = NULL},
	};
	static const struct cmdline_opt no_arg_name[] = {
	    {.name = "jobs", .kind = CMDLINE_NUMBER, .at = AT(jobs, int), .max = 2, .help = "x"},
	    {.name = NULL},
	};
	static const struct cmdline_opt own_help[] = {
	    {.name = "help", .kind = CMDLINE_SET, .at = AT(json, int), .help = "x"},
	    {.name = NULL},
	};
	struct cmdline_cmd bad[2] = {{.name = "x", .summary = "x", .run = run_nothing}, {NULL}};
	struct cmdline_prog p = prog;
	struct capture cap;
	int r;

	(void)state;
	assert_int_equal(cmdline_check(&prog), 0);
	p.cmds = bad;
	assert_int_equal(cmdline_check(&p), 0);
	bad[0].flags = CMDLINE_LOCK; /* a lock needs the one profile */
	capture_begin(&cap);
	r = cmdline_check(&p);
	capture_end(&cap, errbuf, sizeof(errbuf));
	assert_int_equal(r, P11E_ERR_INTERNAL);
	assert_non_null(strstr(errbuf, "command table: x: LOCK"));
	bad[0].flags = CMDLINE_CONF | CMDLINE_PROFILES | CMDLINE_RECORD;
	capture_begin(&cap);
	assert_int_equal(cmdline_check(&p), P11E_ERR_INTERNAL);
	bad[0].flags = 0;
	bad[0].name = "help";
	assert_int_equal(cmdline_check(&p), P11E_ERR_INTERNAL);
	bad[0].name = "x";
	bad[0].opts = implies_nothing;
	assert_int_equal(cmdline_check(&p), P11E_ERR_INTERNAL);
	bad[0].opts = no_arg_name;
	assert_int_equal(cmdline_check(&p), P11E_ERR_INTERNAL);
	bad[0].opts = own_help;
	assert_int_equal(cmdline_check(&p), P11E_ERR_INTERNAL);
	bad[0].opts = globals; /* a LIST or STOP is for the global options */
	assert_int_equal(cmdline_check(&p), P11E_ERR_INTERNAL);
	capture_end(&cap, errbuf, sizeof(errbuf));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_values),
	    cmocka_unit_test(test_help_and_stop),
	    cmocka_unit_test(test_usage_errors),
	    cmocka_unit_test(test_list_max),
	    cmocka_unit_test(test_help_is_the_table),
	    cmocka_unit_test(test_usage_and_names),
	    cmocka_unit_test(test_help_width),
	    cmocka_unit_test(test_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
