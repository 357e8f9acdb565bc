/*
 * statefile.c: names and key=value lines of the files in state_dir.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "statefile.h"
#include "store.h"

int
statefile_path(const struct conf *c, const char *prefix, const char *suffix, char **out)
{
	size_t n =
	    strlen(c->state_dir) + strlen(prefix) + strlen(c->key_label) + strlen(suffix) + 2;
	size_t i, o;
	char *p = malloc(n);

	if (p == NULL)
		return P11E_ERR_ALLOC;
	o = (size_t)snprintf(p, n, "%s/%s", c->state_dir, prefix);
	for (i = 0; c->key_label[i] != '\0'; i++) {
		char ch = c->key_label[i];
		p[o++] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		                 (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'
		             ? ch
		             : '_';
	}
	snprintf(p + o, n - o, "%s", suffix);
	*out = p;
	return 0;
}

int
statefile_read(const char *path, size_t max, int (*field)(void *ud, const char *k, const char *v),
               void *ud, unsigned *lineno)
{
	int r;
	unsigned char *buf = NULL;
	char *line, *next, *eq;
	size_t len = 0;
	unsigned n = 0;

	if ((r = store_read_file(path, max, &buf, &len)) != 0)
		return r;
	r = P11E_ERR_MALFORMED;
	if (strlen((char *)buf) != len)
		goto out;
	for (line = (char *)buf; *line != '\0'; line = next) {
		n++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		else
			next = line + strlen(line);
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if ((eq = strchr(line, '=')) == NULL)
			goto out;
		*eq = '\0';
		if (field(ud, line, eq + 1) != 0)
			goto out;
	}
	r = 0;
out:
	*lineno = n;
	free(buf);
	return r;
}
