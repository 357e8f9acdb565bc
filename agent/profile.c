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

int
profile_check_subject(const struct conf *c, const char *cmd)
{
	const char *which = tmpl_conf_placeholder(c);

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

static int
add_profile(struct profile **p, size_t *n, const char *path, const char *cmd)
{
	struct profile *np;
	const char *base = strrchr(path, '/');
	size_t l;
	int r;

	if ((np = realloc(*p, (*n + 1) * sizeof(**p))) == NULL)
		return P11E_ERR_ALLOC;
	*p = np;
	np = &(*p)[*n];
	memset(np, 0, sizeof(*np));
	base = base != NULL ? base + 1 : path;
	l = strlen(base);
	if (l > 5 && strcmp(base + l - 5, ".conf") == 0)
		l -= 5;
	if ((np->name = strndup(base, l)) == NULL)
		return P11E_ERR_ALLOC;
	(*n)++;
	if ((r = conf_load(path, &np->c)) != 0)
		return r;
	return cmd != NULL ? profile_check_subject(np->c, cmd) : 0;
}

/* Two profiles with one state_dir and key label would share their state files. */
static int
check_distinct(const struct profile *p, size_t n)
{
	size_t i, j;

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
	return 0;
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
