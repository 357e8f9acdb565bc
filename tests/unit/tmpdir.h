/*
 * tmpdir.h: a throw-away directory for a unit test, under $TMPDIR (else
 * /tmp), removed with everything in it; for cmocka setup and teardown.
 */
#ifndef P11E_TMPDIR_H
#define P11E_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>

/* Creates <tmp>/p11e-<tag>-XXXXXX into dir (len bytes). 0 or -1. */
static inline int
tmpdir_make(char *dir, size_t len, const char *tag)
{
	const char *t = getenv("TMPDIR");

	snprintf(dir, len, "%s/p11e-%s-XXXXXX", t != NULL ? t : "/tmp", tag);
	return mkdtemp(dir) != NULL ? 0 : -1;
}

/* Removes dir and everything in it. 0 or -1. */
static inline int
tmpdir_remove(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

#endif
