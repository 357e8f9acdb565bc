/*
 * cmdline_help.c: the help generated from the command line's tables
 * (cmdline.h): the usage lines, the whole help and each command's, wrapped
 * at WIDTH columns. The parser is cmdline.c.
 */
#include <stdio.h>
#include <string.h>

#include "cmdline.h"
#include "err.h"

#define WIDTH 79 /* of the help text */

/* A help being written: words wrap at WIDTH onto lines starting at indent. */
struct out {
	FILE *f;
	int col;    /* columns written on this line */
	int indent; /* where continuation lines start */
	int fresh;  /* nothing written since the line or column began: no space needed */
};

static void
out_nl(struct out *w)
{
	fputc('\n', w->f);
	w->col = 0;
	w->fresh = 1;
}

/* To column col: on a new line when this one is already past it. */
static void
out_col(struct out *w, int col)
{
	if (w->col > col)
		out_nl(w);
	for (; w->col < col; w->col++)
		fputc(' ', w->f);
	w->fresh = 1;
}

/* s[0..n) kept on one line; on the next one when it would pass WIDTH. */
static void
out_unit(struct out *w, const char *s, size_t n)
{
	if (!w->fresh && w->col + 1 + (int)n > WIDTH)
		out_nl(w);
	if (w->col < w->indent) {
		out_col(w, w->indent);
	} else if (!w->fresh) {
		fputc(' ', w->f);
		w->col++;
	}
	fwrite(s, 1, n, w->f);
	w->col += (int)n;
	w->fresh = 0;
}

static void
out_str(struct out *w, const char *s)
{
	out_unit(w, s, strlen(s));
}

/* Words of s, wrapped. */
static void
out_text(struct out *w, const char *s)
{
	size_t n;

	while (*s != '\0') {
		s += strspn(s, " ");
		if ((n = strcspn(s, " ")) > 0)
			out_unit(w, s, n);
		s += n;
	}
}

/*
 * The synopsis of a list: "[--name ARG]" each, SETs that share one `at` as
 * one "[-v|-q]"; STOPs left out. The LIST: list 0 left out, 1 "[-c FILE]",
 * 2 "[-c FILE|DIR]...".
 */
static void
out_synopsis(struct out *w, const struct cmdline_opt *opts, int list)
{
	const struct cmdline_opt *o;
	size_t i, j, n = cmdline_opts_count(opts);
	char buf[256], name[64];
	int used;

	for (i = 0; i < n; i++) {
		o = &opts[i];
		if (o->kind == CMDLINE_STOP || (o->kind == CMDLINE_LIST && list == 0))
			continue;
		if (o->kind != CMDLINE_SET) {
			snprintf(buf, sizeof(buf), "[%s %s%s]%s",
			         cmdline_opt_name(o, name, sizeof(name)), o->arg,
			         o->kind == CMDLINE_LIST && list == 2 ? "|DIR" : "",
			         o->kind == CMDLINE_LIST && list == 2 ? "..." : "");
			out_str(w, buf);
			continue;
		}
		for (j = 0; j < i && !(opts[j].kind == CMDLINE_SET && opts[j].at == o->at); j++)
			;
		if (j < i)
			continue; /* in the group of an earlier one */
		used = snprintf(buf, sizeof(buf), "[%s", cmdline_opt_name(o, name, sizeof(name)));
		for (j = i + 1; j < n && used < (int)sizeof(buf); j++)
			if (opts[j].kind == CMDLINE_SET && opts[j].at == o->at)
				used += snprintf(buf + used, sizeof(buf) - (size_t)used, "|%s",
				                 cmdline_opt_name(&opts[j], name, sizeof(name)));
		if (used < (int)sizeof(buf) - 1)
			strcat(buf, "]");
		out_str(w, buf);
	}
}

/* "usage: PROG [GLOBAL OPTIONS] CMD [ITS OPTIONS]"; cmd NULL: the program's. */
static void
out_usage(struct out *w, const struct cmdline_prog *p, const struct cmdline_cmd *cmd)
{
	int list = 1;

	if (cmd != NULL && (cmd->flags & CMDLINE_PROFILES) != 0)
		list = 2;
	else if (cmd != NULL && (cmd->flags & CMDLINE_CONF) == 0)
		list = 0;
	w->indent = 0;
	out_str(w, "usage:");
	out_str(w, p->name);
	w->indent = (int)(strlen("usage: ") + strlen(p->name) + 1);
	out_synopsis(w, p->opts, list);
	if (cmd == NULL) {
		out_text(w, "COMMAND [OPTIONS]");
		out_nl(w);
		w->indent = 0;
		out_col(w, (int)strlen("usage: "));
		out_str(w, p->name);
		out_text(w, CMDLINE_HELP_CMD " [COMMAND]");
	} else {
		out_str(w, cmd->name);
		out_synopsis(w, cmd->opts, 0);
	}
	out_nl(w);
}

void
cmdline_usage(FILE *f, const struct cmdline_prog *p, const struct cmdline_cmd *cmd)
{
	struct out w = {f, 0, 0, 1};

	out_usage(&w, p, cmd);
	if (cmd != NULL)
		fprintf(f, "(%s " CMDLINE_HELP_CMD " %s: what each option does)\n", p->name,
		        cmd->name);
	else
		fprintf(f, "(%s --help: every command and its options)\n", p->name);
}

static int
label(const struct cmdline_opt *o, char *buf, size_t len)
{
	int n = 0;

	if (o->letter != 0)
		n = snprintf(buf, len, "-%c, ", o->letter);
	return n + snprintf(buf + n, len - (size_t)n, "--%s%s%s", o->name,
	                    o->arg != NULL ? " " : "", o->arg != NULL ? o->arg : "");
}

/* One row: the label at column indent, the text wrapped from column col. */
static void
out_row(struct out *w, int indent, const char *lbl, int col, const char *text)
{
	w->indent = indent;
	out_col(w, indent);
	out_str(w, lbl);
	w->indent = col;
	out_col(w, col);
	out_text(w, text);
}

/* One row per option at column indent, their help aligned; then -h, --help with own_help. */
static void
out_opts(struct out *w, const struct cmdline_prog *p, const struct cmdline_opt *opts, int indent,
         const char *own_help)
{
	static const char help_label[] = "-h, --help";
	size_t i, n = cmdline_opts_count(opts);
	char buf[128], names[256], text[512];
	int col = own_help != NULL ? (int)strlen(help_label) : 0, len;

	for (i = 0; i < n; i++)
		if ((len = label(&opts[i], buf, sizeof(buf))) > col)
			col = len;
	col += indent + 2;
	for (i = 0; i < n; i++) {
		label(&opts[i], buf, sizeof(buf));
		if (opts[i].kind == CMDLINE_LIST) {
			snprintf(
			    text, sizeof(text),
			    "%s; repeatable, or a directory of *.conf files, for %s", opts[i].help,
			    cmdline_cmd_names(p, CMDLINE_PROFILES, " and ", names, sizeof(names)));
		}
		out_row(w, indent, buf, col, opts[i].kind == CMDLINE_LIST ? text : opts[i].help);
		out_nl(w);
	}
	if (own_help != NULL) {
		out_row(w, indent, help_label, col, own_help);
		out_nl(w);
	}
}

static void
help_all(struct out *w, const struct cmdline_prog *p)
{
	const struct cmdline_cmd *c;
	int col = (int)strlen(CMDLINE_HELP_CMD);

	out_usage(w, p, NULL);
	fprintf(w->f, "\n%s\n\nCommands:\n", p->about);
	for (c = p->cmds; c->name != NULL; c++)
		if ((int)strlen(c->name) > col)
			col = (int)strlen(c->name);
	col += 2 + 2;
	for (c = p->cmds; c->name != NULL; c++) {
		out_row(w, 2, c->name, col, c->summary);
		out_nl(w);
		out_opts(w, p, c->opts, col, NULL);
	}
	out_row(w, 2, CMDLINE_HELP_CMD, col,
	        "this text, or one command's in full (also: COMMAND --help)");
	out_nl(w);
	fputs("\nOptions:\n", w->f);
	out_opts(w, p, p->opts, 2, "this text");
	if (p->epilogue != NULL)
		fprintf(w->f, "\n%s", p->epilogue);
}

/* What the command's flags ask of main(), in words. */
static void
out_needs(struct out *w, const struct cmdline_cmd *c)
{
	char buf[128];

	if ((c->flags & CMDLINE_PROFILES) != 0)
		out_text(w, "Profiles: every -c FILE, and every *.conf file of a -c DIR.");
	else if ((c->flags & CMDLINE_CONF) != 0)
		out_text(w, "Profile: one configuration file, -c FILE.");
	else
		out_text(w, "Reads no configuration file.");
	if ((c->flags & CMDLINE_PLAIN_SUBJECT) != 0)
		out_text(w, "A [subject] with {placeholders} is refused.");
	if ((c->flags & CMDLINE_LOCK) != 0) {
		snprintf(buf, sizeof(buf),
		         "Works on the profile only while no other run does (else: exit %d).",
		         p11e_exit_code(P11E_ERR_BUSY));
		out_text(w, buf);
	}
	if ((c->flags & CMDLINE_RECORD) != 0)
		out_text(w, "Records the attempt, which status shows.");
	out_nl(w);
}

static void
help_cmd(struct out *w, const struct cmdline_prog *p, const struct cmdline_cmd *c)
{
	out_usage(w, p, c);
	fputc('\n', w->f);
	w->indent = 0;
	out_text(w, c->summary);
	out_nl(w);
	if (c->about != NULL) {
		fputc('\n', w->f);
		out_text(w, c->about);
		out_nl(w);
	}
	fputc('\n', w->f);
	out_needs(w, c);
	fputs("\nOptions:\n", w->f);
	out_opts(w, p, c->opts, 2, "this text");
	fprintf(w->f, "\nGlobal options and exit codes: %s --help.\n", p->name);
}

void
cmdline_help(FILE *f, const struct cmdline_prog *p, const struct cmdline_cmd *cmd)
{
	struct out w = {f, 0, 0, 1};

	if (cmd == NULL)
		help_all(&w, p);
	else
		help_cmd(&w, p, cmd);
}
