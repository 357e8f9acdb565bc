/*
 * profile.c: loading the daemon's profiles from files and directories.
 */
#define _GNU_SOURCE /* asprintf */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "err.h"
#include "log.h"
#include "profile.h"
#include "template.h"
#include "uri.h"

static int
list_has_placeholders(const struct conf_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (tmpl_has_placeholders(l->v[i]))
			return 1;
	return 0;
}

/* The first [subject] key of c that holds a placeholder, or NULL. */
static const char *
subject_placeholder(const struct conf *c)
{
	if (c->dn != NULL && tmpl_has_placeholders(c->dn))
		return "dn";
	if (list_has_placeholders(&c->san_dns))
		return "san_dns";
	if (list_has_placeholders(&c->san_email))
		return "san_email";
	if (list_has_placeholders(&c->san_uri))
		return "san_uri";
	if (list_has_placeholders(&c->san_upn))
		return "san_upn";
	return NULL;
}

int
profile_check_subject(const struct conf *c, const char *cmd)
{
	const char *which = subject_placeholder(c);

	if (which == NULL)
		return 0;
	log_error("%s: [subject] %s holds {placeholders}, which only `provision` expands (per "
	          "card); write the values out for `%s`",
	          c->path, which, cmd);
	return P11E_ERR_CONFIG;
}

void
profile_free_all(struct profile *p, size_t n)
{
	size_t i;

	for (i = 0; p != NULL && i < n; i++) {
		free(p[i].name);
		conf_free(p[i].c);
	}
	free(p);
}

static int
has_conf_suffix(const struct dirent *e)
{
	size_t l = strlen(e->d_name);

	return e->d_name[0] != '.' && l > 5 && strcmp(e->d_name + l - 5, ".conf") == 0;
}

char *
profile_name(const char *path)
{
	const char *base = strrchr(path, '/');
	size_t l;

	base = base != NULL ? base + 1 : path;
	l = strlen(base);
	if (l > 5 && strcmp(base + l - 5, ".conf") == 0)
		l -= 5;
	return strndup(base, l);
}

static int
add_profile(struct profile **p, size_t *n, const char *path, const char *cmd)
{
	struct profile *np;
	int r;

	if ((np = realloc(*p, (*n + 1) * sizeof(**p))) == NULL)
		return P11E_ERR_ALLOC;
	*p = np;
	np = &(*p)[*n];
	memset(np, 0, sizeof(*np));
	if ((np->name = profile_name(path)) == NULL)
		return P11E_ERR_ALLOC;
	(*n)++;
	if ((r = conf_load(path, &np->c)) != 0)
		return r;
	return cmd != NULL ? profile_check_subject(np->c, cmd) : 0;
}

/* Where a profile's keys live: its token URI (parsed) and its module. */
struct where {
	struct tok_uri *u;
	char *module; /* realpath of the module, or the path as written */
};

static int
where_of(const struct conf *c, struct where *w)
{
	const char *m;
	int r;

	if ((r = tok_uri_parse(c->token_uri, &w->u)) != 0)
		return r;
	m = w->u->module_path != NULL ? w->u->module_path : c->module != NULL ? c->module : "";
	if ((w->module = realpath(m, NULL)) == NULL && (w->module = strdup(m)) == NULL)
		return P11E_ERR_ALLOC;
	return 0;
}

/* Two values of one token attribute that tell two tokens apart; NULL matches anything. */
static int
differ(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) != 0;
}

/* 1 when the two profiles' URIs may select one token of one module. */
static int
same_token(const struct where *a, const struct where *b)
{
	return strcmp(a->module, b->module) == 0 && !differ(a->u->token, b->u->token) &&
	       !differ(a->u->manufacturer, b->u->manufacturer) &&
	       !differ(a->u->serial, b->u->serial) && !differ(a->u->model, b->u->model) &&
	       !(a->u->has_slot_id && b->u->has_slot_id && a->u->slot_id != b->u->slot_id);
}

/*
 * Two profiles with one state_dir and key label would share their state files;
 * two with one key label on one token, whatever their state_dirs, would each
 * take the other's keys for leftovers of their own (tidy.h).
 */
static int
check_distinct(const struct profile *p, size_t n)
{
	struct where *w = NULL;
	size_t i, j;
	int r = P11E_ERR_INTERNAL;

	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			if (strcmp(p[i].c->state_dir, p[j].c->state_dir) == 0 &&
			    strcmp(p[i].c->key_label, p[j].c->key_label) == 0) {
				log_error("%s and %s: both use key label '%s' in state_dir %s; "
				          "give each profile its own [key] label or [agent] "
				          "state_dir",
				          p[i].c->path, p[j].c->path, p[i].c->key_label,
				          p[i].c->state_dir);
				return P11E_ERR_CONFIG;
			}
	if (n < 2)
		return 0;
	if ((w = calloc(n, sizeof(*w))) == NULL)
		return P11E_ERR_ALLOC;
	for (i = 0; i < n; i++)
		if ((r = where_of(p[i].c, &w[i])) != 0)
			goto out;
	r = 0;
	for (i = 0; r == 0 && i < n; i++)
		for (j = i + 1; r == 0 && j < n; j++)
			if (strcmp(p[i].c->key_label, p[j].c->key_label) == 0 &&
			    same_token(&w[i], &w[j])) {
				log_error(
				    "%s and %s: both use key label '%s' on what may be one token "
				    "(uri %s and %s, module %s), with state_dirs %s and %s: "
				    "each would take the other's keys for its own; give each "
				    "profile its own [key] label",
				    p[i].c->path, p[j].c->path, p[i].c->key_label,
				    p[i].c->token_uri, p[j].c->token_uri, w[i].module,
				    p[i].c->state_dir, p[j].c->state_dir);
				r = P11E_ERR_CONFIG;
			}
out:
	for (i = 0; w != NULL && i < n; i++) {
		tok_uri_free(w[i].u);
		free(w[i].module);
	}
	free(w);
	return r;
}

int
profile_load_all(char *const *paths, size_t npaths, const char *cmd, struct profile **out,
                 size_t *nout)
{
	struct profile *p = NULL;
	struct dirent **ents = NULL;
	struct stat st;
	size_t n = 0, i;
	int r = P11E_ERR_INTERNAL, k, ne = 0;
	char *f = NULL;

	for (i = 0; i < npaths; i++) {
		if (stat(paths[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
			if ((r = add_profile(&p, &n, paths[i], cmd)) != 0)
				goto out;
			continue;
		}
		if ((ne = scandir(paths[i], &ents, has_conf_suffix, alphasort)) < 0) {
			log_error("cannot read directory %s: %s", paths[i], strerror(errno));
			r = P11E_ERR_FILE;
			goto out;
		}
		for (k = 0; k < ne; k++) {
			if (asprintf(&f, "%s/%s", paths[i], ents[k]->d_name) < 0) {
				f = NULL;
				r = P11E_ERR_ALLOC;
				goto out;
			}
			if ((r = add_profile(&p, &n, f, cmd)) != 0)
				goto out;
			free(f);
			f = NULL;
		}
		if (ne == 0) {
			log_error("%s holds no *.conf file", paths[i]);
			r = P11E_ERR_CONFIG;
			goto out;
		}
		for (k = 0; k < ne; k++)
			free(ents[k]);
		free(ents);
		ents = NULL;
		ne = 0;
	}
	if ((r = check_distinct(p, n)) != 0)
		goto out;
	*out = p;
	*nout = n;
	p = NULL;
	n = 0;
	r = 0;
out:
	for (k = 0; k < ne; k++)
		free(ents[k]);
	free(ents);
	free(f);
	profile_free_all(p, n);
	return r;
}
