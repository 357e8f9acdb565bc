/*
 * progress.c: an enrollment's steps as "key value" lines (progress.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"

static int progress_fd = -1;

void
progress_set_fd(int fd)
{
	progress_fd = fd;
}

int
progress_on(void)
{
	return progress_fd != -1;
}

void
progress_note(const char *key, const char *fmt, ...)
{
	char line[PROGRESS_LINE_MAX];
	size_t n, i, done = 0;
	va_list ap;
	int k;
	ssize_t w;

	if (progress_fd == -1)
		return;
	k = snprintf(line, sizeof(line), "%s ", key);
	if (k < 0 || (size_t)k >= sizeof(line) - 1)
		return;
	va_start(ap, fmt);
	vsnprintf(line + k, sizeof(line) - 1 - (size_t)k, fmt, ap);
	va_end(ap);
	n = strlen(line);
	for (i = (size_t)k; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = ' ';
	line[n++] = '\n';
	/* One write: the line arrives whole (a pipe keeps writes up to PIPE_BUF together). */
	while (done < n) {
		w = write(progress_fd, line + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		done += (size_t)w;
	}
}

char *
progress_split(char *line, const char **value)
{
	char *sp;

	if (line[0] == '\0' || line[0] == ' ')
		return NULL;
	if ((sp = strchr(line, ' ')) != NULL) {
		*sp = '\0';
		*value = sp + 1;
	} else {
		*value = line + strlen(line);
	}
	return line;
}
