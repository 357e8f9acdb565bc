/*
 * conf_list.c: the values that are lists: [subject]'s SAN lists (items split
 * at commas) and [hooks]' command lines (split into words), each into a
 * struct conf_list.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "conf_int.h"
#include "err.h"
#include "ini.h"
#include "log.h"

#define COMMAND_WORDS_MAX 64

void
conf_list_clear(struct conf_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Splits a comma-separated list, trimming items; with ip, each must be an address. */
static int
split_list(struct parser *p, const struct keyword *kw, char *v, int ip)
{
	struct conf_list l = {NULL, 0};
	unsigned char addr[sizeof(struct in6_addr)];
	char *item, *next;
	size_t n = 1;
	int r = P11E_ERR_INTERNAL;

	for (item = v; *item != '\0'; item++)
		if (*item == ',')
			n++;
	if ((l.v = calloc(n, sizeof(*l.v))) == NULL) {
		log_error("out of memory");
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (item = v; item != NULL; item = next) {
		if ((next = strchr(item, ',')) != NULL)
			*next++ = '\0';
		item = ini_trim(item);
		if (*item == '\0') {
			r = conf_kw_error(p, kw,
			                  "item %zu of the list is empty (separate items with ',')",
			                  l.n + 1);
			goto out;
		}
		if (ip && inet_pton(AF_INET, item, addr) != 1 &&
		    inet_pton(AF_INET6, item, addr) != 1) {
			r = conf_kw_error(p, kw, "'%s' is not an IPv4 or IPv6 address", item);
			goto out;
		}
		if (!ip && (r = conf_check_template(p, kw, item)) != 0)
			goto out;
		if ((r = conf_dup_str(item, &l.v[l.n])) != 0)
			goto out;
		l.n++;
	}
	*(struct conf_list *)conf_field(p, kw) = l;
	l.v = NULL;
	l.n = 0;
	r = 0;
out:
	conf_list_clear(&l);
	return r;
}

int
conf_set_list(struct parser *p, const struct keyword *kw, char *v)
{
	return split_list(p, kw, v, 0);
}

int
conf_set_ip_list(struct parser *p, const struct keyword *kw, char *v)
{
	return split_list(p, kw, v, 1);
}

static int
is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/*
 * A hook's command line, split in place into words: spaces and tabs separate
 * words; a double-quoted part keeps its spaces and tabs and loses its quotes
 * (x"a b"y is the one word xa by, "" an empty one); nothing else is special.
 * The first word, the program, must be an absolute path (no shell, no PATH
 * search). The list it fills ends with a NULL, for execve.
 */
int
conf_set_command(struct parser *p, const struct keyword *kw, char *v)
{
	struct conf_list l = {NULL, 0};
	char **words = NULL, *rd = v, *wr = v, at;
	size_t n = 0, i;
	int quoted = 0, r = P11E_ERR_INTERNAL;

	if ((words = calloc(strlen(v) + 1, sizeof(*words))) == NULL) {
		log_error("out of memory");
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (;;) {
		while (is_blank(*rd))
			rd++;
		if (*rd == '\0')
			break;
		words[n++] = wr;
		for (; *rd != '\0' && (quoted || !is_blank(*rd)); rd++)
			if (*rd == '"')
				quoted = !quoted;
			else
				*wr++ = *rd;
		if (quoted) {
			r = conf_kw_error(
			    p, kw,
			    "word %zu of the command has no closing '\"' (double quotes "
			    "group words that hold spaces: \"/opt/my tools/hook\" arg)",
			    n);
			goto out;
		}
		at = *rd;
		*wr++ = '\0';
		if (at == '\0')
			break;
		rd++;
	}
	if (n == 0 || words[0][0] == '\0') {
		r = conf_kw_error(p, kw,
		                  "empty command (give the program's absolute path, or remove "
		                  "the line)");
		goto out;
	}
	if (words[0][0] != '/') {
		r = conf_kw_error(
		    p, kw,
		    "the program '%s' is not an absolute path (hooks run without a shell "
		    "and without a PATH search: give e.g. /usr/local/sbin/%s)",
		    words[0], words[0]);
		goto out;
	}
	if (n > COMMAND_WORDS_MAX) {
		r = conf_kw_error(p, kw, "%zu words (at most %d; put a longer command in a script)",
		                  n, COMMAND_WORDS_MAX);
		goto out;
	}
	if ((l.v = calloc(n + 1, sizeof(*l.v))) == NULL) {
		log_error("out of memory");
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < n; i++, l.n++)
		if ((r = conf_dup_str(words[i], &l.v[i])) != 0)
			goto out;
	*(struct conf_list *)conf_field(p, kw) = l;
	l.v = NULL;
	l.n = 0;
	r = 0;
out:
	conf_list_clear(&l);
	free(words);
	return r;
}
