/*
 * cmdline.c: the command line as data (cmdline.h): the tables' checks and
 * one getopt_long loop for every option list. The help is cmdline_help.c.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cmdline.h"
#include "conf.h"
#include "err.h"
#include "log.h"

#define OPTS_MAX 24  /* options in one list, -h/--help not counted */
#define VAL_BASE 256 /* getopt_long's val of an option without a letter: VAL_BASE + index */

/* How an option list ended. */
enum end {
	END_OPERAND, /* at the first operand, "--" or the end of argv */
	END_HELP,    /* at -h or --help */
	END_STOP,    /* at a CMDLINE_STOP option */
};

/* ------------------------------------------------------------------- tables */

size_t
cmdline_opts_count(const struct cmdline_opt *opts)
{
	size_t n = 0;

	while (opts != NULL && opts[n].name != NULL)
		n++;
	return n;
}

static int
takes_arg(const struct cmdline_opt *o)
{
	return o->kind != CMDLINE_SET && o->kind != CMDLINE_STOP;
}

static const struct cmdline_opt *
opt_by_val(const struct cmdline_opt *opts, int val)
{
	size_t i, n = cmdline_opts_count(opts);

	for (i = 0; i < n; i++)
		if (opts[i].letter != 0 ? opts[i].letter == val : VAL_BASE + (int)i == val)
			return &opts[i];
	return NULL;
}

static const struct cmdline_opt *
opt_by_name(const struct cmdline_opt *opts, const char *name)
{
	size_t i, n = cmdline_opts_count(opts);

	for (i = 0; i < n; i++)
		if (strcmp(opts[i].name, name) == 0)
			return &opts[i];
	return NULL;
}

/* The global option that collects the profiles' paths (-c), or NULL. */
static const struct cmdline_opt *
list_opt(const struct cmdline_prog *p)
{
	size_t i, n = cmdline_opts_count(p->opts);

	for (i = 0; i < n; i++)
		if (p->opts[i].kind == CMDLINE_LIST)
			return &p->opts[i];
	return NULL;
}

const char *
cmdline_opt_name(const struct cmdline_opt *o, char *buf, size_t len)
{
	if (o->letter != 0)
		snprintf(buf, len, "-%c", o->letter);
	else
		snprintf(buf, len, "--%s", o->name);
	return buf;
}

const char *
cmdline_cmd_names(const struct cmdline_prog *p, unsigned flag, const char *last_sep, char *buf,
                  size_t len)
{
	const struct cmdline_cmd *c;
	size_t n = 0, i = 0, used = 0;

	for (c = p->cmds; c->name != NULL; c++)
		n += flag == 0 || (c->flags & flag) != 0;
	buf[0] = '\0';
	for (c = p->cmds; c->name != NULL && used < len; c++) {
		if (flag != 0 && (c->flags & flag) == 0)
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
		                         i == 0       ? ""
		                         : i + 1 == n ? last_sep
		                                      : ", ",
		                         c->name);
		i++;
	}
	return buf;
}

static const struct cmdline_cmd *
find_cmd(const struct cmdline_prog *p, const char *name)
{
	const struct cmdline_cmd *c;
	char names[512];

	for (c = p->cmds; c->name != NULL; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	log_error("unknown command '%s' (%s, " CMDLINE_HELP_CMD "; see --help)", name,
	          cmdline_cmd_names(p, 0, ", ", names, sizeof(names)));
	return NULL;
}

static int
bad_entry(const char *where, const char *name, const char *why)
{
	log_error("command table: %s%s%s: %s", where, name != NULL ? ": --" : "",
	          name != NULL ? name : "", why);
	return P11E_ERR_INTERNAL;
}

static int
check_opts(const char *where, const struct cmdline_opt *opts, int global)
{
	const struct cmdline_opt *o, *also;
	size_t i, j, n = cmdline_opts_count(opts);
	int lists = 0;

	if (n > OPTS_MAX)
		return bad_entry(where, NULL, "too many options");
	for (i = 0; i < n; i++) {
		o = &opts[i];
		if (strcmp(o->name, "help") == 0 || o->letter == 'h')
			return bad_entry(where, o->name, "-h and --help are every list's own");
		if (o->letter != 0 && !isalnum((unsigned char)o->letter))
			return bad_entry(where, o->name, "a letter must be a letter or digit");
		if (takes_arg(o) != (o->arg != NULL) || o->help == NULL)
			return bad_entry(where, o->name, "argument name or help text");
		if (o->kind == CMDLINE_STOP && !global)
			return bad_entry(where, o->name, "STOP is for global options");
		if (o->kind == CMDLINE_LIST && (!global || ++lists > 1))
			return bad_entry(where, o->name, "one LIST, among the global options");
		if (o->kind == CMDLINE_NUMBER && o->min > o->max)
			return bad_entry(where, o->name, "min > max");
		if (o->implies != NULL &&
		    ((also = opt_by_name(opts, o->implies)) == NULL || also->kind != CMDLINE_SET))
			return bad_entry(where, o->name, "implies no SET option of its list");
		for (j = 0; j < i; j++)
			if (strcmp(opts[j].name, o->name) == 0 ||
			    (o->letter != 0 && opts[j].letter == o->letter))
				return bad_entry(where, o->name, "given twice");
	}
	return 0;
}

int
cmdline_check(const struct cmdline_prog *p)
{
	const unsigned one = CMDLINE_LOCK | CMDLINE_RECORD | CMDLINE_PLAIN_SUBJECT;
	const struct cmdline_cmd *c, *d;
	int r;

	if ((r = check_opts("global options", p->opts, 1)) != 0)
		return r;
	for (c = p->cmds; c->name != NULL; c++) {
		if (strcmp(c->name, CMDLINE_HELP_CMD) == 0)
			return bad_entry(c->name, NULL, "`help` is built in");
		if (c->summary == NULL || c->run == NULL)
			return bad_entry(c->name, NULL, "summary or run function missing");
		if ((c->flags & one) != 0 &&
		    ((c->flags & CMDLINE_CONF) == 0 || (c->flags & CMDLINE_PROFILES) != 0))
			return bad_entry(c->name, NULL,
			                 "LOCK, RECORD and PLAIN_SUBJECT need CONF, not PROFILES");
		if ((c->flags & (CMDLINE_CONF | CMDLINE_PROFILES)) != 0 && list_opt(p) == NULL)
			return bad_entry(c->name, NULL, "a profile, but no LIST global option");
		for (d = p->cmds; d != c; d++)
			if (strcmp(d->name, c->name) == 0)
				return bad_entry(c->name, NULL, "given twice");
		if ((r = check_opts(c->name, c->opts, 0)) != 0)
			return r;
	}
	return 0;
}

/* ------------------------------------------------------------------ parsing */

/* getopt_long's view of a list: lo[OPTS_MAX + 2], shorts[2 * OPTS_MAX + 4]. */
static void
getopt_table(const struct cmdline_opt *opts, struct option *lo, char *shorts)
{
	size_t i, n = cmdline_opts_count(opts);
	char *s = shorts;

	*s++ = '+'; /* stop at the first operand: the command, or one too many */
	*s++ = ':'; /* a missing argument returns ':' */
	for (i = 0; i < n; i++) {
		lo[i].name = opts[i].name;
		lo[i].has_arg = takes_arg(&opts[i]) ? required_argument : no_argument;
		lo[i].flag = NULL;
		lo[i].val = opts[i].letter != 0 ? opts[i].letter : VAL_BASE + (int)i;
		if (opts[i].letter != 0) {
			*s++ = opts[i].letter;
			if (takes_arg(&opts[i]))
				*s++ = ':';
		}
	}
	lo[n] = (struct option){"help", no_argument, NULL, 'h'};
	lo[n + 1] = (struct option){NULL, 0, NULL, 0};
	*s++ = 'h';
	*s = '\0';
}

/* "1h", "90s": a number of seconds for a message. */
static const char *
secs_text(long secs, char *buf, size_t len)
{
	static const struct {
		char unit;
		long mult;
	} units[] = {{'w', 604800}, {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
	size_t i = 0;

	while (secs % units[i].mult != 0)
		i++;
	snprintf(buf, len, "%ld%c", secs / units[i].mult, units[i].unit);
	return buf;
}

/* Stores the value of option o (its argument arg) in dst, and what it implies. */
static int
apply(const struct cmdline_opt *opts, const struct cmdline_opt *o, char *arg, void *dst)
{
	const struct cmdline_opt *also;
	struct cmdline_list *l;
	char *at = (char *)dst + o->at, *end = NULL, name[64], max[32];
	long v = 0;

	cmdline_opt_name(o, name, sizeof(name));
	switch (o->kind) {
	case CMDLINE_SET:
	case CMDLINE_STOP:
		*(int *)at = (int)o->value;
		break;
	case CMDLINE_STRING:
	case CMDLINE_LIST:
		if (*arg == '\0') {
			log_error("%s needs a %s, not an empty string", name, o->arg);
			return P11E_ERR_USAGE;
		}
		if (o->kind == CMDLINE_STRING) {
			*(const char **)at = arg;
			break;
		}
		l = (struct cmdline_list *)at;
		if (l->n == CMDLINE_LIST_MAX) {
			log_error("at most %d %s options", CMDLINE_LIST_MAX, name);
			return P11E_ERR_USAGE;
		}
		l->v[l->n++] = arg;
		break;
	case CMDLINE_DURATION:
		if (conf_parse_duration(arg, &v) != 0 || (o->max > 0 && v > o->max)) {
			if (o->max > 0)
				log_error("%s '%s' is not a duration from 1s to %s", name, arg,
				          secs_text(o->max, max, sizeof(max)));
			else
				log_error("%s '%s' is not a duration (e.g. 90s, 30m, 1h, 2d)", name,
				          arg);
			return P11E_ERR_USAGE;
		}
		*(long *)at = v;
		break;
	case CMDLINE_NUMBER:
		errno = 0;
		v = strtol(arg, &end, 10);
		if (*arg == '\0' || *end != '\0' || errno != 0 || v < o->min || v > o->max) {
			log_error("%s '%s' is not a number from %ld to %ld", name, arg, o->min,
			          o->max);
			return P11E_ERR_USAGE;
		}
		*(int *)at = (int)v;
		break;
	}
	if (o->implies != NULL && (also = opt_by_name(opts, o->implies)) != NULL)
		*(int *)((char *)dst + also->at) = (int)also->value;
	return 0;
}

/* Logs why getopt_long returned ch ('?' or ':'); cmd: the list's command or NULL. */
static void
bad_option(const char *cmd, const struct cmdline_opt *opts, int ch, char **argv)
{
	const struct cmdline_opt *o = optopt != 0 ? opt_by_val(opts, optopt) : NULL;
	char name[64];
	const char *sep = cmd != NULL ? " for " : "", *who = cmd != NULL ? cmd : "";

	if (ch == ':' && o != NULL)
		log_error("%s needs its argument, %s", cmdline_opt_name(o, name, sizeof(name)),
		          o->arg);
	else if (o != NULL)
		log_error("%s takes no argument", cmdline_opt_name(o, name, sizeof(name)));
	else if (optopt == 'h')
		log_error("--help takes no argument");
	else if (optopt != 0)
		log_error("unknown option '-%c'%s%s", optopt, sep, who);
	else
		log_error("unknown option '%s'%s%s", argv[optind - 1], sep, who);
}

/*
 * One getopt_long loop over argv (argv[0] skipped) for the options of one
 * list; *next: the first argument not read, *end: why the loop ended.
 */
static int
parse_opts(const char *cmd, const struct cmdline_opt *opts, int argc, char **argv, void *dst,
           enum end *end, int *next)
{
	struct option lo[OPTS_MAX + 2];
	char shorts[2 * OPTS_MAX + 4];
	const struct cmdline_opt *o = NULL;
	int ch, r;

	if (cmdline_opts_count(opts) > OPTS_MAX)
		return bad_entry(cmd != NULL ? cmd : "global options", NULL, "too many options");
	getopt_table(opts, lo, shorts);
	*end = END_OPERAND;
	opterr = 0;
	optind = 0; /* a full reset, also after a list that ended early */
	while ((ch = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
		if (ch == 'h') {
			*end = END_HELP;
			break;
		}
		if (ch == '?' || ch == ':' || (o = opt_by_val(opts, ch)) == NULL) {
			bad_option(cmd, opts, ch, argv);
			return P11E_ERR_USAGE;
		}
		if ((r = apply(opts, o, optarg, dst)) != 0)
			return r;
		if (o->kind == CMDLINE_STOP) {
			*end = END_STOP;
			break;
		}
	}
	*next = optind;
	return 0;
}

/* An operand after the options: none is taken. */
static int
unexpected(const struct cmdline_prog *p, const struct cmdline_cmd *cmd, const char *arg)
{
	const char *hint = "";

	if (cmd != NULL && (cmd->flags & CMDLINE_PROFILES) != 0)
		hint = " (profiles are given with -c)";
	else if (cmd != NULL && (cmd->flags & CMDLINE_CONF) != 0)
		hint = " (the profile is given with -c)";
	log_error("unexpected argument '%s' for %s%s", arg,
	          cmd != NULL ? cmd->name : CMDLINE_HELP_CMD, hint);
	cmdline_usage(stderr, p, cmd);
	return P11E_ERR_USAGE;
}

/* `help [COMMAND]`; argv[0] is "help". */
static int
parse_help(const struct cmdline_prog *p, int argc, char **argv, void *dst,
           struct cmdline_parsed *out)
{
	const struct cmdline_cmd *cmd = NULL;
	enum end end;
	int next = 0, r;

	if ((r = parse_opts(CMDLINE_HELP_CMD, NULL, argc, argv, dst, &end, &next)) != 0) {
		cmdline_usage(stderr, p, NULL);
		return r;
	}
	if (end == END_OPERAND && next + 1 < argc)
		return unexpected(p, NULL, argv[next + 1]);
	if (end == END_OPERAND && next < argc && strcmp(argv[next], CMDLINE_HELP_CMD) != 0 &&
	    (cmd = find_cmd(p, argv[next])) == NULL)
		return P11E_ERR_USAGE;
	*out = (struct cmdline_parsed){cmd, 1, 0, NULL};
	return 0;
}

int
cmdline_parse(const struct cmdline_prog *p, int argc, char **argv, void *dst,
              struct cmdline_parsed *out)
{
	const struct cmdline_opt *lo = list_opt(p);
	const struct cmdline_list *l = NULL;
	const struct cmdline_cmd *cmd = NULL;
	char name[64], names[256];
	enum end end;
	int next = 0, r;

	if ((r = parse_opts(NULL, p->opts, argc, argv, dst, &end, &next)) != 0) {
		cmdline_usage(stderr, p, NULL);
		return r;
	}
	if (end != END_OPERAND) {
		*out = (struct cmdline_parsed){NULL, end == END_HELP, 0, NULL};
		return 0;
	}
	if (next >= argc) {
		cmdline_help(stderr, p, NULL);
		return P11E_ERR_USAGE;
	}
	argc -= next;
	argv += next;
	if (strcmp(argv[0], CMDLINE_HELP_CMD) == 0)
		return parse_help(p, argc, argv, dst, out);
	if ((cmd = find_cmd(p, argv[0])) == NULL)
		return P11E_ERR_USAGE;
	if ((r = parse_opts(cmd->name, cmd->opts, argc, argv, dst, &end, &next)) != 0) {
		cmdline_usage(stderr, p, cmd);
		return r;
	}
	if (end == END_OPERAND && next < argc)
		return unexpected(p, cmd, argv[next]);
	if (lo != NULL)
		l = (const struct cmdline_list *)((const char *)dst + lo->at);
	if (end == END_OPERAND && (cmd->flags & CMDLINE_CONF) != 0 &&
	    (cmd->flags & CMDLINE_PROFILES) == 0 && l != NULL && l->n > 1) {
		log_error("several %s options are for `%s` only; %s takes one configuration",
		          cmdline_opt_name(lo, name, sizeof(name)),
		          cmdline_cmd_names(p, CMDLINE_PROFILES, "` and `", names, sizeof(names)),
		          cmd->name);
		return P11E_ERR_USAGE;
	}
	*out = (struct cmdline_parsed){cmd, end == END_HELP, argc, argv};
	return 0;
}
