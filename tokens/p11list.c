/*
 * p11list.c: discovery: what a PKCS#11 module offers (slots, tokens,
 * mechanisms), and which modules p11-kit registers. Read-only: no login,
 * no session.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>

#include "box.h"
#include "err.h"
#include "log.h"
#include "p11int.h"
#include "tok_scan.h"

static const CK_MECHANISM_TYPE mech_types[TOK_MECH_COUNT] = {
    [TOK_MECH_RSA_KEYGEN] = CKM_RSA_PKCS_KEY_PAIR_GEN,
    [TOK_MECH_EC_KEYGEN] = CKM_EC_KEY_PAIR_GEN,
    [TOK_MECH_RSA_PKCS] = CKM_RSA_PKCS,
    [TOK_MECH_SHA256_RSA] = CKM_SHA256_RSA_PKCS,
    [TOK_MECH_ECDSA] = CKM_ECDSA,
};

static void set_error(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_error(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

/* tpm2-pkcs11 says "TPM2.0 Cryptoki", made by "tpm2-software.github.io". */
static int
is_tpm2_pkcs11(const char *description, const char *manufacturer)
{
	return strncmp(description, "TPM2", 4) == 0 ||
	       strstr(manufacturer, "tpm2-software") != NULL;
}

static void
read_mechanisms(CK_FUNCTION_LIST_PTR f, struct tok_slot_desc *s)
{
	CK_MECHANISM_TYPE *list = NULL;
	CK_MECHANISM_INFO mi;
	CK_ULONG n = 0, i;
	CK_RV rv;
	int k;

	if ((rv = f->C_GetMechanismList(s->id, NULL, &n)) != CKR_OK ||
	    (list = calloc(n + 1, sizeof(*list))) == NULL ||
	    (rv = f->C_GetMechanismList(s->id, list, &n)) != CKR_OK) {
		set_error(s->mech_error, sizeof(s->mech_error), "C_GetMechanismList failed: %s",
		          rv != CKR_OK ? tok_rv_name(rv) : "out of memory");
		goto out;
	}
	for (k = 0; k < TOK_MECH_COUNT; k++) {
		for (i = 0; i < n && list[i] != mech_types[k]; i++)
			;
		if (i == n)
			continue;
		s->mechs[k].present = 1;
		s->mechs[k].generates = s->mechs[k].signs = 1;
		if (f->C_GetMechanismInfo(s->id, mech_types[k], &mi) == CKR_OK) {
			s->mechs[k].min = mi.ulMinKeySize;
			s->mechs[k].max = mi.ulMaxKeySize;
			s->mechs[k].info_flags = mi.flags;
			if (mi.flags != 0) {
				s->mechs[k].generates = (mi.flags & CKF_GENERATE_KEY_PAIR) != 0;
				s->mechs[k].signs = (mi.flags & CKF_SIGN) != 0;
			}
		}
	}
out:
	free(list);
}

static int
token_uri(struct tok_slot_desc *s)
{
	struct tok_uri u;

	memset(&u, 0, sizeof(u));
	u.token = s->token.label;
	u.manufacturer = s->token.manufacturer;
	u.serial = s->token.serial;
	u.model = s->token.model;
	return tok_uri_format(&u, &s->uri);
}

static int
read_slot(CK_FUNCTION_LIST_PTR f, struct tok_slot_desc *s)
{
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_RV rv;

	if ((rv = f->C_GetSlotInfo(s->id, &si)) != CKR_OK) {
		set_error(s->error, sizeof(s->error), "C_GetSlotInfo failed: %s", tok_rv_name(rv));
		return 0;
	}
	tok_copy_field(s->description, si.slotDescription, sizeof(si.slotDescription));
	tok_copy_field(s->manufacturer, si.manufacturerID, sizeof(si.manufacturerID));
	s->token_present = (si.flags & CKF_TOKEN_PRESENT) != 0;
	s->removable = (si.flags & CKF_REMOVABLE_DEVICE) != 0;
	s->hardware = (si.flags & CKF_HW_SLOT) != 0;
	if (!(si.flags & CKF_TOKEN_PRESENT))
		return 0;
	if ((rv = f->C_GetTokenInfo(s->id, &ti)) != CKR_OK) {
		set_error(
		    s->error, sizeof(s->error), "C_GetTokenInfo failed: %s%s", tok_rv_name(rv),
		    rv == CKR_TOKEN_NOT_RECOGNIZED ? " (the module does not know this card)" : "");
		return 0;
	}
	s->has_token = 1;
	tok_fill_info(&s->token, s->id, &ti);
	read_mechanisms(f, s);
	if ((ti.flags & CKF_TOKEN_INITIALIZED) && token_uri(s) != 0)
		return P11E_ERR_ALLOC;
	return 0;
}

static int
get_slots(CK_FUNCTION_LIST_PTR f, struct tok_module_desc *m)
{
	CK_SLOT_ID *ids = NULL, *p;
	CK_ULONG count = 0, i;
	CK_RV rv = CKR_OK;
	int tries, r = 0;

	for (tries = 0; tries < 5; tries++) {
		if ((rv = f->C_GetSlotList(CK_FALSE, NULL, &count)) != CKR_OK)
			break;
		if ((p = realloc(ids, (count + 1) * sizeof(*ids))) == NULL) {
			r = P11E_ERR_ALLOC;
			goto out;
		}
		ids = p;
		if ((rv = f->C_GetSlotList(CK_FALSE, ids, &count)) != CKR_BUFFER_TOO_SMALL)
			break;
	}
	if (rv != CKR_OK) {
		m->err = P11E_ERR_TOKEN;
		set_error(m->error, sizeof(m->error),
		          "C_GetSlotList of PKCS#11 module %s failed: %s", m->path,
		          tok_rv_name(rv));
		goto out;
	}
	if ((m->slots = calloc(count + 1, sizeof(*m->slots))) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < count; i++) {
		m->slots[i].id = ids[i];
		m->nslots++;
		if ((r = read_slot(f, &m->slots[i])) != 0)
			goto out;
	}
out:
	free(ids);
	return r;
}

static void
mark_ambiguous(struct tok_module_desc *m)
{
	size_t i, j;

	for (i = 0; i < m->nslots; i++)
		for (j = 0; j < m->nslots; j++)
			if (i != j && m->slots[i].uri != NULL && m->slots[j].uri != NULL &&
			    strcmp(m->slots[i].uri, m->slots[j].uri) == 0)
				m->slots[i].uri_ambiguous = 1;
}

/* Everything after dlopen: function list, initialise, read, finalize. */
static int
describe(void *dl, struct tok_module_desc *m)
{
	CK_C_GetFunctionList get_list = NULL;
	CK_FUNCTION_LIST_PTR f = NULL;
	CK_C_INITIALIZE_ARGS args;
	CK_INFO info;
	CK_RV rv;
	int r = 0, initialized = 0;

	*(void **)(&get_list) = dlsym(dl, "C_GetFunctionList");
	if (get_list == NULL) {
		m->err = P11E_ERR_CONFIG;
		set_error(m->error, sizeof(m->error),
		          "%s is not a PKCS#11 module (no C_GetFunctionList)", m->path);
		goto out;
	}
	if ((rv = get_list(&f)) != CKR_OK || f == NULL) {
		m->err = P11E_ERR_CONFIG;
		set_error(m->error, sizeof(m->error),
		          "C_GetFunctionList of PKCS#11 module %s failed: %s", m->path,
		          rv != CKR_OK ? tok_rv_name(rv) : "no function list");
		goto out;
	}
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	rv = f->C_Initialize(&args);
	if (rv == CKR_CANT_LOCK)
		rv = f->C_Initialize(NULL);
	if (rv == CKR_OK) {
		initialized = 1;
	} else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		m->err = P11E_ERR_TOKEN;
		set_error(m->error, sizeof(m->error),
		          "C_Initialize of PKCS#11 module %s failed: %s", m->path, tok_rv_name(rv));
		goto out;
	}
	if ((rv = f->C_GetInfo(&info)) == CKR_OK) {
		tok_copy_field(m->lib_description, info.libraryDescription,
		               sizeof(info.libraryDescription));
		tok_copy_field(m->lib_manufacturer, info.manufacturerID,
		               sizeof(info.manufacturerID));
		m->lib_major = info.libraryVersion.major;
		m->lib_minor = info.libraryVersion.minor;
		m->ck_major = info.cryptokiVersion.major;
		m->ck_minor = info.cryptokiVersion.minor;
		m->tpm_backed = is_tpm2_pkcs11(m->lib_description, m->lib_manufacturer);
	}
	if ((r = get_slots(f, m)) != 0)
		goto out;
	mark_ambiguous(m);
out:
	if (initialized)
		(void)f->C_Finalize(NULL);
	return r;
}

int
tok_describe_module(const char *path, struct tok_module_desc **out)
{
	int r = P11E_ERR_INTERNAL;
	struct tok_module_desc *m = NULL;
	void *dl = NULL;
	const char *e;

	if (path == NULL || out == NULL)
		goto out;
	if ((m = calloc(1, sizeof(*m))) == NULL || (m->path = strdup(path)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	if ((dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		e = dlerror();
		m->err = P11E_ERR_CONFIG;
		set_error(m->error, sizeof(m->error), "cannot load PKCS#11 module %s: %s", path,
		          e != NULL ? e : "unknown error");
	} else if ((r = describe(dl, m)) != 0) {
		goto out;
	}
	*out = m;
	m = NULL;
	r = 0;
out:
	if (dl != NULL)
		dlclose(dl);
	tok_module_desc_free(m);
	return r;
}

void
tok_module_desc_free(struct tok_module_desc *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nslots; i++)
		free(m->slots[i].uri);
	free(m->slots);
	free(m->path);
	free(m);
}

void
tok_strv_free(char **v)
{
	size_t i;

	for (i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* p11-kit, resolved with dlsym; the types come from its header. */
struct kit {
	__typeof__(&p11_kit_modules_load) load;
	__typeof__(&p11_kit_modules_release) release;
	__typeof__(&p11_kit_module_get_filename) filename;
	__typeof__(&p11_kit_module_get_name) name;
	__typeof__(&p11_kit_message) message;
};

static int
kit_sym(void *dl, const char *name, void **fn)
{
	*fn = dlsym(dl, name);
	return *fn != NULL ? 0 : -1;
}

/* In the child of tok_registered_modules: p11-kit loaded with dlopen. */
static int
kit_list(char ***paths, char ***names)
{
	int r = P11E_ERR_INTERNAL;
	void *dl = NULL;
	struct kit k;
	CK_FUNCTION_LIST **mods = NULL;
	char **p = NULL, **n = NULL, *file;
	size_t count = 0, i, j = 0;
	const char *e;

	memset(&k, 0, sizeof(k));
	if ((dl = dlopen("libp11-kit.so.0", RTLD_NOW | RTLD_LOCAL)) == NULL) {
		e = dlerror();
		log_error("cannot list the PKCS#11 modules registered with p11-kit: %s; "
		          "name a module with --module",
		          e != NULL ? e : "libp11-kit.so.0 not loadable");
		r = P11E_ERR_TOKEN;
		goto out;
	}
	if (kit_sym(dl, "p11_kit_modules_load", (void **)&k.load) != 0 ||
	    kit_sym(dl, "p11_kit_modules_release", (void **)&k.release) != 0 ||
	    kit_sym(dl, "p11_kit_module_get_filename", (void **)&k.filename) != 0 ||
	    kit_sym(dl, "p11_kit_module_get_name", (void **)&k.name) != 0 ||
	    kit_sym(dl, "p11_kit_message", (void **)&k.message) != 0) {
		log_error("libp11-kit.so.0 is too old (p11-kit 0.20 or later is needed); "
		          "name a module with --module");
		r = P11E_ERR_TOKEN;
		goto out;
	}
	/* Unmanaged: loaded (dlopen) but neither initialised nor wrapped. */
	if ((mods = k.load(NULL, P11_KIT_MODULE_UNMANAGED)) == NULL) {
		e = k.message();
		log_error("p11-kit could not load its registered modules: %s; "
		          "name a module with --module",
		          e != NULL ? e : "no reason given");
		r = P11E_ERR_TOKEN;
		goto out;
	}
	while (mods[count] != NULL)
		count++;
	if ((p = calloc(count + 1, sizeof(*p))) == NULL ||
	    (n = calloc(count + 1, sizeof(*n))) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < count; i++) {
		if ((file = k.filename(mods[i])) == NULL)
			continue;
		p[j] = file;
		if ((n[j] = k.name(mods[i])) == NULL && (n[j] = strdup("")) == NULL) {
			j++;
			r = P11E_ERR_ALLOC;
			goto out;
		}
		j++;
	}
	*paths = p;
	*names = n;
	p = n = NULL;
	r = 0;
out:
	if (mods != NULL)
		k.release(mods);
	if (dl != NULL)
		dlclose(dl);
	tok_strv_free(p);
	tok_strv_free(n);
	return r;
}

/* The child: "ERR\n", then NAME NUL PATH NUL per module. */
static void
kit_child(int fd, void *arg)
{
	char **p = NULL, **n = NULL;
	FILE *f;
	int r;
	size_t i;

	(void)arg;
	r = kit_list(&p, &n);
	if ((f = fdopen(fd, "w")) == NULL)
		_exit(1);
	fprintf(f, "%d\n", r);
	for (i = 0; r == 0 && p[i] != NULL; i++) {
		fwrite(n[i], 1, strlen(n[i]) + 1, f);
		fwrite(p[i], 1, strlen(p[i]) + 1, f);
	}
	tok_strv_free(p);
	tok_strv_free(n);
	_exit(fclose(f) == 0 ? 0 : 1);
}

/* Splits the child's "NAME NUL PATH NUL ..." (len bytes at s) into two arrays. */
static int
kit_parse(const char *s, size_t len, char ***paths, char ***names)
{
	int r = P11E_ERR_ALLOC;
	char **p = NULL, **n = NULL;
	size_t count = 0, i, j = 0, k;

	for (i = 0; i < len; i++)
		if (s[i] == '\0')
			count++;
	if ((p = calloc(count / 2 + 1, sizeof(*p))) == NULL ||
	    (n = calloc(count / 2 + 1, sizeof(*n))) == NULL)
		goto out;
	for (i = 0; i < len && j < count / 2; j++) {
		k = strlen(s + i);
		if ((n[j] = strdup(s + i)) == NULL)
			goto out;
		i += k + 1;
		if ((p[j] = strdup(s + i)) == NULL)
			goto out;
		i += strlen(s + i) + 1;
	}
	*paths = p;
	*names = n;
	p = n = NULL;
	r = 0;
out:
	tok_strv_free(p);
	tok_strv_free(n);
	return r;
}

int
tok_registered_modules(unsigned timeout_s, char ***paths, char ***names)
{
	int r = P11E_ERR_INTERNAL;
	struct box b = {NULL, 0, BOX_EXITED, 0};
	char *nl = NULL, *end = NULL;
	long err;

	/* Not quiet: p11-kit's warnings about its configuration reach the user. */
	if ((r = box_run(timeout_s, 0, kit_child, NULL, &b)) != 0)
		goto out;
	r = P11E_ERR_TOKEN;
	if (b.end == BOX_TIMEOUT) {
		log_error("p11-kit did not list its registered modules within %u s (a module that "
		          "hangs when loaded?); name a module with --module",
		          timeout_s);
		goto out;
	}
	if (b.end == BOX_SIGNALED || b.out == NULL || (nl = strchr(b.out, '\n')) == NULL) {
		log_error("listing p11-kit's registered modules failed (%s %d); "
		          "name a module with --module",
		          b.end == BOX_SIGNALED ? "signal" : "exit status", b.code);
		goto out;
	}
	*nl = '\0';
	err = strtol(b.out, &end, 10);
	if (end == b.out || *end != '\0' || err > 0 || err < -100) {
		log_error("listing p11-kit's registered modules failed (bad answer)");
		goto out;
	}
	if ((r = (int)err) != 0) /* logged by the child */
		goto out;
	r = kit_parse(nl + 1, b.len - (size_t)(nl + 1 - b.out), paths, names);
out:
	box_clear(&b);
	return r;
}
