/*
 * cmdline.h: the command line as data. The program describes its global
 * options and a table of commands (name, summary, options, what each needs,
 * its run function); one parser reads every option list the same way
 * (cmdline.c), and the help is generated from the same tables
 * (cmdline_help.c), so that it cannot drift from what is parsed.
 */
#ifndef P11E_CMDLINE_H
#define P11E_CMDLINE_H

#include <stddef.h>
#include <stdio.h>

struct conf;

/* The values the options write: defined by the program that owns the tables. */
struct cmdline_args;

/* What an option does; the C type it writes at `at` is given in brackets. */
enum cmdline_kind {
	CMDLINE_SET,      /* [int] value; no argument. SETs with one `at` are alternatives */
	CMDLINE_STOP,     /* [int] value; no argument, and nothing after it is read */
	CMDLINE_STRING,   /* [const char *] the argument (in argv), not empty */
	CMDLINE_DURATION, /* [long] seconds (conf_parse_duration), at most max if max > 0 */
	CMDLINE_NUMBER,   /* [int] the decimal argument, from min to max */
	CMDLINE_LIST,     /* [struct cmdline_list] the argument appended; repeatable */
};

#define CMDLINE_LIST_MAX 64
#define CMDLINE_HELP_CMD "help" /* the built-in command: `help [COMMAND]` */

struct cmdline_list {
	char *v[CMDLINE_LIST_MAX];
	size_t n;
};

/* The offset of member in type, which must be of type ctype (checked when compiled). */
#define CMDLINE_AT(type, member, ctype)                                                            \
	_Generic(((type *)0)->member, ctype : offsetof(type, member))

struct cmdline_opt {
	const char *name; /* long name, without "--"; NULL ends a list */
	char letter;      /* short name, or 0 */
	const char *arg;  /* the argument's name in the help and messages; NULL: none */
	enum cmdline_kind kind;
	size_t at;           /* where in struct cmdline_args the value goes (CMDLINE_AT) */
	long value;          /* SET, STOP */
	long min, max;       /* NUMBER; DURATION: max only */
	const char *implies; /* name of a SET option of the same list that this one also sets */
	const char *help;    /* one phrase (the generator wraps it) */
};

/* What a command needs from main() before its run function is called. */
enum cmdline_flags {
	/* One profile: the file -c names (default: the program's), loaded and handed to
	 * run; SCEP and HTTP initialised. */
	CMDLINE_CONF = 1 << 0,
	/* Every profile -c names (repeatable, or a directory of *.conf files): run reads
	 * them from cmdline_args itself (with CMDLINE_CONF: when there are several or a
	 * directory; else as CMDLINE_CONF). */
	CMDLINE_PROFILES = 1 << 1,
	/* Holds the profile's lock (statefile_lock) while run runs. Needs CMDLINE_CONF. */
	CMDLINE_LOCK = 1 << 2,
	/* Records the attempt (attempt_record) when run reached the CA or failed. */
	CMDLINE_RECORD = 1 << 3,
	/* Refuses a [subject] with {placeholders} (profile_check_subject). */
	CMDLINE_PLAIN_SUBJECT = 1 << 4,
};

struct cmdline_cmd {
	const char *name;               /* NULL ends the table */
	const char *summary;            /* one line, in the overview */
	const char *about;              /* more, in the command's own help; or NULL */
	const struct cmdline_opt *opts; /* its options; NULL: none */
	unsigned flags;                 /* enum cmdline_flags */
	/* c: the profile with CMDLINE_CONF (NULL when run reads several itself, or
	 * without the flag); a: everything the command line set. 0 or P11E_ERR_*. */
	int (*run)(const struct conf *c, const struct cmdline_args *a);
};

struct cmdline_prog {
	const char *name;               /* as in the usage lines */
	const char *about;              /* one line under them */
	const struct cmdline_opt *opts; /* global options, before the command */
	const struct cmdline_cmd *cmds; /* the commands; `help` is built in */
	const char *epilogue;           /* the end of the whole help (exit codes); or NULL */
};

struct cmdline_parsed {
	const struct cmdline_cmd *cmd; /* NULL: no command (help asked, or a STOP option) */
	int help;                      /* print cmd's help (cmd NULL: the whole help) */
	int argc;                      /* the command's own arguments; argv[0] is its name */
	char **argv;
};

/*
 * Checks the tables p describes: command and option names unique, `help`
 * and -h not among them, each option's argument name and implies, LIST
 * (at most one) and STOP only among the global options, LOCK, RECORD and
 * PLAIN_SUBJECT only with CONF and without PROFILES, a summary and a run
 * function each. Returns 0, or P11E_ERR_INTERNAL (logged, naming the entry).
 */
int cmdline_check(const struct cmdline_prog *p);

/*
 * Parses argv (argv[0]: the program): global options, the command (or the
 * built-in `help [COMMAND]`), its options, nothing after them. Options take
 * GNU getopt_long syntax (long names may be abbreviated, "--" ends them);
 * each list also takes -h and --help. Values are written into dst (a struct
 * cmdline_args) at their offsets as they are read (so also before an
 * error). Without CMDLINE_PROFILES, a command that reads a profile refuses
 * several -c. On success *out says what to do (its argv points into argv).
 * Returns 0 or P11E_ERR_USAGE (logged, and the usage of the command or the
 * program printed on stderr). Uses getopt's globals.
 */
int cmdline_parse(const struct cmdline_prog *p, int argc, char **argv, void *dst,
                  struct cmdline_parsed *out);

/*
 * Prints the help generated from p: with cmd NULL, the usage, every command
 * with its summary and options, the global options and the epilogue; else
 * the command's usage, summary, about, what it needs and its options.
 * Lines are at most 79 columns wide.
 */
void cmdline_help(FILE *f, const struct cmdline_prog *p, const struct cmdline_cmd *cmd);

/*
 * Prints the short usage that follows a usage error: the usage line of cmd
 * (NULL: of the program) and where the full help is.
 */
void cmdline_usage(FILE *f, const struct cmdline_prog *p, const struct cmdline_cmd *cmd);

/* The table queries that cmdline.c and cmdline_help.c share. */

/* The number of options in opts (a list ended by a NULL name; opts may be NULL). */
size_t cmdline_opts_count(const struct cmdline_opt *opts);

/*
 * How messages and synopses name o: "-c" when it has a letter, else
 * "--name"; written into buf (len bytes, truncated to fit). Returns buf.
 */
const char *cmdline_opt_name(const struct cmdline_opt *o, char *buf, size_t len);

/*
 * The names of p's commands with flag among their flags (0: all of them),
 * in table order, joined by ", " and by last_sep before the last; written
 * into buf (len bytes, truncated to fit; len > 0). Returns buf.
 */
const char *cmdline_cmd_names(const struct cmdline_prog *p, unsigned flag, const char *last_sep,
                              char *buf, size_t len);

#endif
