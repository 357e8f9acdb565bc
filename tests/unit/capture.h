/*
 * capture.h: what a call writes to stderr, for unit tests that assert on the
 * messages. Include after <cmocka.h>.
 */
#ifndef P11E_CAPTURE_H
#define P11E_CAPTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct capture {
	int saved, fd;
};

/* From now on stderr goes to a temporary file. */
static inline void
capture_begin(struct capture *c)
{
	char tmpl[512];
	const char *t = getenv("TMPDIR");

	snprintf(tmpl, sizeof(tmpl), "%s/p11e-stderr.XXXXXX", t != NULL ? t : "/tmp");
	fflush(stderr);
	c->fd = mkstemp(tmpl);
	assert_true(c->fd >= 0);
	unlink(tmpl);
	c->saved = dup(STDERR_FILENO);
	assert_true(c->saved >= 0);
	assert_true(dup2(c->fd, STDERR_FILENO) >= 0);
}

/* stderr back as it was; what was written since capture_begin into buf (len bytes, NUL). */
static inline void
capture_end(struct capture *c, char *buf, size_t len)
{
	ssize_t n;

	fflush(stderr);
	assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
	close(c->saved);
	assert_int_equal(lseek(c->fd, 0, SEEK_SET), 0);
	n = read(c->fd, buf, len - 1);
	assert_true(n >= 0);
	buf[n] = '\0';
	close(c->fd);
}

#endif
