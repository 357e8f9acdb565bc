/*
 * p11scan.c: for `provision`: the tokens of a module that a (possibly
 * partial) [token] uri matches, read with a fresh C_Initialize each time, and
 * a process that reports the module's slot events, and initialising a blank
 * token.
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
#include "tokproc.h"
#include "tok_scan.h"

/* A trimmed tok_info field back into its blank-padded CK_TOKEN_INFO form. */
static void
pad(unsigned char *dst, const char *src, size_t n)
{
	size_t len = strlen(src);

	memset(dst, ' ', n);
	memcpy(dst, src, len < n ? len : n);
}

static int
matches(const struct tok_uri *uri, int blank, const struct tok_slot_desc *s)
{
	unsigned char label[32], manufacturer[32], model[16], serial[16];

	if (!s->has_token || (!blank && !(s->token.flags & TOK_F_INITIALIZED)))
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
 * and with blank the uninitialised ones too, in slot order. *out (free()) and *n are set on
 * success, also when none matches. Errors (logged): P11E_ERR_CONFIG (module not loadable),
 * P11E_ERR_TOKEN (C_Initialize or C_GetSlotList failed), P11E_ERR_ALLOC.
 */
static int
list_here(const char *module_path, const struct tok_uri *uri, int blank, struct tok_info **out,
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
		if (matches(uri, blank, &m->slots[i])) {
			v[k] = m->slots[i].token;
			if (m->tpm_backed)
				v[k].flags |= TOK_F_TPM2_PKCS11;
			k++;
		}
	*out = v;
	*n = k;
	v = NULL;
	r = 0;
out:
	free(v);
	tok_module_desc_free(m);
	return r;
}

/* dlopen, C_GetFunctionList, C_Initialize (ours: the caller finalizes). Logs. */
static int
load(const char *module_path, void **dl, CK_FUNCTION_LIST_PTR *fl)
{
	CK_C_GetFunctionList get_list = NULL;
	CK_FUNCTION_LIST_PTR f = NULL;
	CK_C_INITIALIZE_ARGS args;
	CK_RV rv = CKR_OK;

	if ((*dl = dlopen(module_path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		log_error("cannot load PKCS#11 module %s", module_path);
		return P11E_ERR_CONFIG;
	}
	*(void **)(&get_list) = dlsym(*dl, "C_GetFunctionList");
	if (get_list == NULL || get_list(&f) != CKR_OK || f == NULL) {
		log_error("%s is not a PKCS#11 module", module_path);
		return P11E_ERR_CONFIG;
	}
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	if ((rv = f->C_Initialize(&args)) == CKR_CANT_LOCK)
		rv = f->C_Initialize(NULL);
	if (rv != CKR_OK) {
		log_error("C_Initialize of PKCS#11 module %s failed: %s", module_path,
		          tok_rv_name(rv));
		return P11E_ERR_TOKEN;
	}
	*fl = f;
	return 0;
}

/* In the watcher process: one byte per slot event; returns when events stop. */
static void
watch_events(const char *module_path, int fd)
{
	void *dl = NULL;
	CK_FUNCTION_LIST_PTR f = NULL;
	CK_SLOT_ID slot;
	CK_RV rv;

	if (load(module_path, &dl, &f) != 0)
		return;
	while ((rv = f->C_WaitForSlotEvent(0, &slot, NULL)) == CKR_OK)
		if (write(fd, "e", 1) != 1)
			break;
	log_debug("C_WaitForSlotEvent of %s: %s", module_path, tok_rv_name(rv));
	(void)f->C_Finalize(NULL);
}

/* SO login, C_InitPIN, logout, on a R/W session of the slot. */
static int
init_pin(CK_FUNCTION_LIST_PTR f, CK_SLOT_ID slot, const char *so_pin, const char *user_pin)
{
	CK_SESSION_HANDLE h = 0;
	CK_RV rv;
	const char *what = "C_OpenSession";

	if ((rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h)) ==
	    CKR_OK) {
		what = "C_Login as security officer";
		rv = f->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, (CK_ULONG)strlen(so_pin));
		if (rv == CKR_OK) {
			what = "C_InitPIN";
			rv = f->C_InitPIN(h, (CK_UTF8CHAR_PTR)user_pin, (CK_ULONG)strlen(user_pin));
			(void)f->C_Logout(h);
		}
		(void)f->C_CloseSession(h);
	}
	if (rv != CKR_OK) {
		log_error("%s on the new token in slot %lu failed: %s", what, (unsigned long)slot,
		          tok_rv_name(rv));
		return P11E_ERR_TOKEN;
	}
	return 0;
}

static int
init_here(const char *module_path, unsigned long slot_id, const char *so_pin, const char *label,
          const char *user_pin, struct tok_info *out)
{
	int r = P11E_ERR_INTERNAL;
	void *dl = NULL;
	CK_FUNCTION_LIST_PTR f = NULL;
	CK_TOKEN_INFO ti;
	unsigned char lab[32];
	CK_RV rv;

	if ((r = load(module_path, &dl, &f)) != 0)
		goto out;
	if ((rv = f->C_GetTokenInfo(slot_id, &ti)) != CKR_OK ||
	    (ti.flags & CKF_TOKEN_INITIALIZED)) {
		log_error("the token in slot %lu is %s; not initialised", slot_id,
		          rv != CKR_OK ? "gone" : "already initialised");
		r = P11E_ERR_TOKEN;
		goto out;
	}
	pad(lab, label, sizeof(lab));
	if ((rv = f->C_InitToken(slot_id, (CK_UTF8CHAR_PTR)so_pin, (CK_ULONG)strlen(so_pin),
	                         lab)) != CKR_OK) {
		log_error("C_InitToken in slot %lu failed: %s%s", slot_id, tok_rv_name(rv),
		          rv == CKR_PIN_INCORRECT ? " (check [token] so_pin_file)" : "");
		r = P11E_ERR_TOKEN;
		goto out;
	}
	if ((r = init_pin(f, slot_id, so_pin, user_pin)) != 0)
		goto out;
	if ((rv = f->C_GetTokenInfo(slot_id, &ti)) != CKR_OK) {
		log_error("C_GetTokenInfo of the new token in slot %lu failed: %s", slot_id,
		          tok_rv_name(rv));
		r = P11E_ERR_TOKEN;
		goto out;
	}
	tok_fill_info(out, slot_id, &ti);
	r = 0;
out:
	if (f != NULL)
		(void)f->C_Finalize(NULL);
	if (dl != NULL)
		dlclose(dl);
	return r;
}

/* tok_list_tokens and tok_init_token run in a token process (tokproc_run): only such
 * processes map a module. */
struct scan_job {
	const char *module_path;
	const struct tok_uri *uri;
	int blank;
	unsigned long slot_id;
	const char *so_pin, *label, *user_pin;
	struct tok_info *v; /* what came back */
	size_t n;
};

static int
list_job(void *arg, struct wire_wbuf *out)
{
	struct scan_job *j = arg;
	struct tok_info *v = NULL;
	size_t n = 0, i;
	int r = list_here(j->module_path, j->uri, j->blank, &v, &n);

	wire_w_num(out, r == 0 ? (int64_t)n : 0);
	for (i = 0; r == 0 && i < n; i++)
		tokproc_w_info(out, &v[i]);
	free(v);
	return r;
}

static int
init_job(void *arg, struct wire_wbuf *out)
{
	struct scan_job *j = arg;
	struct tok_info ni;
	int r;

	memset(&ni, 0, sizeof(ni));
	r = init_here(j->module_path, j->slot_id, j->so_pin, j->label, j->user_pin, &ni);
	wire_w_num(out, 1);
	tokproc_w_info(out, &ni);
	return r;
}

/* The tokens a job sent: a count, then each one's description. */
static int
read_infos(void *arg, struct wire_rbuf *r)
{
	struct scan_job *j = arg;
	int64_t n = wire_r_num(r), i;

	if (r->bad || n < 0 || n > 65536) {
		r->bad = 1;
		return 0;
	}
	if ((j->v = calloc((size_t)n + 1, sizeof(*j->v))) == NULL)
		return -1;
	for (i = 0; i < n; i++)
		if (tokproc_r_info(r, &j->v[i]) != 0)
			return 0;
	j->n = (size_t)n;
	return 0;
}

int
tok_list_tokens(const char *module_path, const struct tok_uri *uri, int blank,
                struct tok_info **out, size_t *n)
{
	struct scan_job j = {module_path, uri, blank, 0, NULL, NULL, NULL, NULL, 0};
	int r = tokproc_run(list_job, read_infos, &j);

	if (r != 0) {
		free(j.v);
		return r;
	}
	*out = j.v;
	*n = j.n;
	return 0;
}

int
tok_init_token(const char *module_path, unsigned long slot_id, const char *so_pin,
               const char *label, const char *user_pin, struct tok_info *out)
{
	struct scan_job j = {module_path, NULL, 0, slot_id, so_pin, label, user_pin, NULL, 0};
	int r = tokproc_run(init_job, read_infos, &j);

	if (r == 0 && j.n != 1)
		r = P11E_ERR_INTERNAL;
	if (r == 0)
		*out = j.v[0];
	free(j.v);
	return r;
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
