/*
 * p11scan.c: for `provision`: the tokens of a module that a (possibly
 * partial) [token] uri matches, read with a fresh C_Initialize each time, and
 * a process that reports the module's slot events.
 */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "p11int.h"

/* A trimmed tok_info field back into its blank-padded CK_TOKEN_INFO form. */
static void
pad(unsigned char *dst, const char *src, size_t n)
{
	size_t len = strlen(src);

	memset(dst, ' ', n);
	memcpy(dst, src, len < n ? len : n);
}

static int
matches(const struct tok_uri *uri, const struct tok_slot_desc *s)
{
	unsigned char label[32], manufacturer[32], model[16], serial[16];

	if (!s->has_token || !(s->token.flags & CKF_TOKEN_INITIALIZED))
		return 0;
	if (uri == NULL)
		return 1;
	if (uri->has_slot_id && uri->slot_id != s->id)
		return 0;
	pad(label, s->token.label, sizeof(label));
	pad(manufacturer, s->token.manufacturer, sizeof(manufacturer));
	pad(model, s->token.model, sizeof(model));
	pad(serial, s->token.serial, sizeof(serial));
	return tok_uri_match_token(uri, label, manufacturer, model, serial);
}

/*
 * Loads the module (tok_describe_module: dlopen, C_Initialize, every slot,
 * C_Finalize, dlclose), keeps the initialised tokens uri matches (NULL: all),
 * in slot order. *out (free()) and *n are set on success, also when none
 * matches. Errors (logged): P11E_ERR_CONFIG (module not loadable),
 * P11E_ERR_TOKEN (C_Initialize or C_GetSlotList failed), P11E_ERR_ALLOC.
 */
int
tok_list_tokens(const char *module_path, const struct tok_uri *uri, struct tok_info **out,
                size_t *n)
{
	int r = P11E_ERR_INTERNAL;
	struct tok_module_desc *m = NULL;
	struct tok_info *v = NULL;
	size_t i, k = 0;

	if ((r = tok_describe_module(module_path, &m)) != 0) {
		log_error("out of memory");
		goto out;
	}
	if (m->err != 0) {
		log_error("%s", m->error);
		r = m->err;
		goto out;
	}
	if ((v = calloc(m->nslots + 1, sizeof(*v))) == NULL) {
		log_error("out of memory");
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < m->nslots; i++)
		if (matches(uri, &m->slots[i]))
			v[k++] = m->slots[i].token;
	*out = v;
	*n = k;
	v = NULL;
	r = 0;
out:
	free(v);
	tok_module_desc_free(m);
	return r;
}

/* In the watcher process: one byte per slot event; returns when events stop. */
static void
watch_events(const char *module_path, int fd)
{
	void *dl = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
	CK_C_GetFunctionList get_list = NULL;
	CK_FUNCTION_LIST_PTR f = NULL;
	CK_C_INITIALIZE_ARGS args;
	CK_SLOT_ID slot;
	CK_RV rv;

	if (dl == NULL)
		return;
	*(void **)(&get_list) = dlsym(dl, "C_GetFunctionList");
	if (get_list == NULL || get_list(&f) != CKR_OK || f == NULL)
		return;
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	if ((rv = f->C_Initialize(&args)) == CKR_CANT_LOCK)
		rv = f->C_Initialize(NULL);
	if (rv != CKR_OK)
		return;
	while ((rv = f->C_WaitForSlotEvent(0, &slot, NULL)) == CKR_OK)
		if (write(fd, "e", 1) != 1)
			break;
	log_debug("C_WaitForSlotEvent of %s: %s", module_path, tok_rv_name(rv));
	(void)f->C_Finalize(NULL);
}

int
tok_watch_start(const char *module_path, pid_t *pid, int *fd)
{
	int p[2];
	pid_t child;

	if (pipe(p) == -1) {
		log_error("cannot create a pipe: %s", strerror(errno));
		return P11E_ERR_INTERNAL;
	}
	fflush(stdout);
	fflush(stderr);
	if ((child = fork()) == -1) {
		log_error("cannot start the slot event watcher: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return P11E_ERR_INTERNAL;
	}
	if (child == 0) {
		signal(SIGINT, SIG_IGN);
		close(p[0]);
		watch_events(module_path, p[1]);
		_exit(0);
	}
	close(p[1]);
	*pid = child;
	*fd = p[0];
	return 0;
}

void
tok_watch_stop(pid_t pid, int fd)
{
	if (fd != -1)
		close(fd);
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
		;
}
