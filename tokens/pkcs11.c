/*
 * pkcs11.c: loading the PKCS#11 module, selecting the token, login, close.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "err.h"
#include "log.h"
#include "p11int.h"

/* A growing message; on allocation failure it keeps what it has. */
struct sb {
	char *s;
	size_t len, cap;
};

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sb_printf(struct sb *b, const char *fmt, ...)
{
	va_list ap;
	int n;
	size_t cap;
	char *p;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (b->len + (size_t)n + 1 > b->cap) {
		cap = (b->len + (size_t)n + 1) * 2;
		if ((p = realloc(b->s, cap)) == NULL)
			return;
		b->s = p;
		b->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static const char *
sb_str(const struct sb *b)
{
	return b->s != NULL ? b->s : "";
}

void
tok_copy_field(char *dst, const unsigned char *src, size_t n)
{
	memcpy(dst, src, n);
	dst[n] = '\0';
	while (n > 0 && (dst[n - 1] == ' ' || dst[n - 1] == '\0'))
		dst[--n] = '\0';
}

/* The CKF_ token flags tok.h translates, and their enum tok_flag bits. */
static const struct {
	CK_FLAGS ck;
	unsigned tok;
} token_flags[] = {
    {CKF_TOKEN_INITIALIZED, TOK_F_INITIALIZED},
    {CKF_LOGIN_REQUIRED, TOK_F_LOGIN_REQUIRED},
    {CKF_PROTECTED_AUTHENTICATION_PATH, TOK_F_PROTECTED_AUTH_PATH},
    {CKF_USER_PIN_INITIALIZED, TOK_F_USER_PIN_INITIALIZED},
    {CKF_WRITE_PROTECTED, TOK_F_WRITE_PROTECTED},
    {CKF_USER_PIN_COUNT_LOW, TOK_F_USER_PIN_COUNT_LOW},
    {CKF_USER_PIN_FINAL_TRY, TOK_F_USER_PIN_FINAL_TRY},
    {CKF_USER_PIN_LOCKED, TOK_F_USER_PIN_LOCKED},
    {CKF_USER_PIN_TO_BE_CHANGED, TOK_F_USER_PIN_TO_BE_CHANGED},
    {CKF_SO_PIN_COUNT_LOW, TOK_F_SO_PIN_COUNT_LOW},
    {CKF_SO_PIN_FINAL_TRY, TOK_F_SO_PIN_FINAL_TRY},
    {CKF_SO_PIN_LOCKED, TOK_F_SO_PIN_LOCKED},
    {CKF_SO_PIN_TO_BE_CHANGED, TOK_F_SO_PIN_TO_BE_CHANGED},
};

unsigned
tok_flags_from_ck(CK_FLAGS flags)
{
	unsigned out = 0;
	size_t i;

	for (i = 0; i < sizeof(token_flags) / sizeof(token_flags[0]); i++)
		if (flags & token_flags[i].ck)
			out |= token_flags[i].tok;
	return out;
}

void
tok_fill_info(struct tok_info *info, CK_SLOT_ID slot, const CK_TOKEN_INFO *ti)
{
	memset(info, 0, sizeof(*info));
	tok_copy_field(info->label, ti->label, sizeof(ti->label));
	tok_copy_field(info->manufacturer, ti->manufacturerID, sizeof(ti->manufacturerID));
	tok_copy_field(info->model, ti->model, sizeof(ti->model));
	tok_copy_field(info->serial, ti->serialNumber, sizeof(ti->serialNumber));
	info->flags = tok_flags_from_ck(ti->flags);
	info->slot_id = slot;
}

/* SoftHSM's C_GetInfo says it is made by "SoftHSM" (tpm2-pkcs11, OpenSC: others). */
static int
is_softhsm(CK_FUNCTION_LIST_PTR f)
{
	CK_INFO info;
	char m[33];

	if (f->C_GetInfo(&info) != CKR_OK)
		return 0;
	tok_copy_field(m, info.manufacturerID, sizeof(info.manufacturerID));
	return strcmp(m, "SoftHSM") == 0;
}

static int
load_module(struct p11 *t, const char *path)
{
	int r = P11E_ERR_INTERNAL;
	CK_C_GetFunctionList get_list = NULL;
	CK_FUNCTION_LIST_PTR f = NULL;
	CK_C_INITIALIZE_ARGS args;
	CK_RV rv;
	const char *e;

	if ((t->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		e = dlerror();
		log_error("cannot load PKCS#11 module %s: %s", path,
		          e != NULL ? e : "unknown error");
		r = P11E_ERR_CONFIG;
		goto out;
	}
	*(void **)(&get_list) = dlsym(t->dl, "C_GetFunctionList");
	if (get_list == NULL) {
		log_error("%s is not a PKCS#11 module (no C_GetFunctionList); check [token] module",
		          path);
		r = P11E_ERR_CONFIG;
		goto out;
	}
	if ((rv = get_list(&f)) != CKR_OK || f == NULL) {
		log_error("C_GetFunctionList of PKCS#11 module %s failed: %s", path,
		          rv != CKR_OK ? tok_rv_name(rv) : "no function list");
		r = P11E_ERR_CONFIG;
		goto out;
	}
	t->f = f;
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	rv = t->f->C_Initialize(&args);
	if (rv == CKR_CANT_LOCK)
		rv = t->f->C_Initialize(NULL);
	if (rv == CKR_OK) {
		t->initialized = 1;
	} else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		log_error("C_Initialize of PKCS#11 module %s failed: %s", path, tok_rv_name(rv));
		r = P11E_ERR_TOKEN;
		goto out;
	}
	t->store_by_copy = is_softhsm(t->f);
	r = 0;
out:
	return r;
}

static int
slot_list(struct p11 *t, CK_BBOOL present, CK_SLOT_ID **out, CK_ULONG *n)
{
	int r = P11E_ERR_INTERNAL;
	CK_SLOT_ID *ids = NULL, *p;
	CK_ULONG count = 0;
	CK_RV rv;
	int tries;

	for (tries = 0; tries < 5; tries++) {
		if ((rv = t->f->C_GetSlotList(present, NULL, &count)) != CKR_OK)
			break;
		if ((p = realloc(ids, (count + 1) * sizeof(*ids))) == NULL) {
			r = P11E_ERR_ALLOC;
			goto out;
		}
		ids = p;
		if ((rv = t->f->C_GetSlotList(present, ids, &count)) != CKR_BUFFER_TOO_SMALL)
			break;
	}
	if (rv != CKR_OK) {
		log_error("C_GetSlotList of PKCS#11 module %s failed: %s", t->module_path,
		          tok_rv_name(rv));
		r = P11E_ERR_TOKEN;
		goto out;
	}
	*out = ids;
	*n = count;
	ids = NULL;
	r = 0;
out:
	free(ids);
	return r;
}

static char *
uri_text(const struct tok_uri *uri)
{
	char *s = NULL, *full = NULL;
	size_t len;

	if (uri == NULL || tok_uri_format(uri, &s) != 0)
		return NULL;
	if (!uri->has_slot_id)
		return s;
	len = strlen(s) + 48;
	if ((full = malloc(len)) != NULL)
		snprintf(full, len, "%s (slot-id %lu)", s, uri->slot_id);
	free(s);
	return full;
}

/* How a token that C_GetTokenInfo refused is described. */
static const char *
refusal(CK_RV rv)
{
	return rv == CKR_TOKEN_NOT_RECOGNIZED ? "card not recognised by the module"
	                                      : "C_GetTokenInfo failed";
}

/* The slot's description (the reader's name), or "slot N" if C_GetSlotInfo fails. */
static void
slot_desc(struct p11 *t, CK_SLOT_ID slot, char desc[65])
{
	CK_SLOT_INFO si;

	if (t->f->C_GetSlotInfo(slot, &si) == CKR_OK)
		tok_copy_field(desc, si.slotDescription, sizeof(si.slotDescription));
	else
		snprintf(desc, 65, "slot %lu", (unsigned long)slot);
}

/* Records a token's serial and slot in t->seen; a serial seen on two slots is marked
 * ambiguous (select_seen leaves it to the scan, which refuses it). */
static void
see(struct p11 *t, const struct tok_info *info)
{
	size_t i;

	if (info->serial[0] == '\0')
		return;
	for (i = 0; i < t->nseen; i++)
		if (strcmp(t->seen[i].serial, info->serial) == 0) {
			t->seen[i].slot = CK_UNAVAILABLE_INFORMATION; /* ambiguous: scan */
			return;
		}
	t->seen[t->nseen].slot = info->slot_id;
	memcpy(t->seen[t->nseen].serial, info->serial, sizeof(t->seen[0].serial));
	t->nseen++;
}

/*
 * The token of uri's serial in the slot where the last scan saw it, when that scan saw
 * the serial once and the token there still matches uri (*info). A station's token
 * process selects one token per card among all of its module's: this spares it a
 * C_GetTokenInfo of every slot (2.7 ms among 125 SoftHSM tokens, measured). 0: scan.
 */
static int
select_seen(struct p11 *t, const struct tok_uri *uri, struct tok_info *info)
{
	CK_TOKEN_INFO ti;
	size_t i;

	if (uri == NULL || uri->serial == NULL || uri->has_slot_id)
		return 0;
	for (i = 0; i < t->nseen && strcmp(t->seen[i].serial, uri->serial) != 0; i++)
		;
	if (i == t->nseen || t->seen[i].slot == CK_UNAVAILABLE_INFORMATION ||
	    t->f->C_GetTokenInfo(t->seen[i].slot, &ti) != CKR_OK ||
	    !(ti.flags & CKF_TOKEN_INITIALIZED) ||
	    !tok_uri_match_token(uri, ti.label, ti.manufacturerID, ti.model, ti.serialNumber))
		return 0;
	tok_fill_info(info, t->seen[i].slot, &ti);
	return 1;
}

/*
 * Scans every slot; the token slots that match uri go to *match (*nmatch),
 * the description of everything seen to *seen, each serial seen to t->seen.
 */
static int
scan_slots(struct p11 *t, const struct tok_uri *uri, struct tok_info *match, size_t *nmatch,
           struct sb *seen, struct sb *matched, CK_ULONG *nscanned)
{
	int r = P11E_ERR_INTERNAL;
	CK_SLOT_ID *present = NULL, *all = NULL;
	CK_ULONG npresent = 0, nall = 0, i, j;
	CK_TOKEN_INFO ti;
	CK_SLOT_INFO si;
	CK_RV rv;
	struct tok_info info;
	char desc[65];
	const char *sep = "";
	int reader = 0;

	if ((r = slot_list(t, CK_TRUE, &present, &npresent)) != 0 ||
	    (r = slot_list(t, CK_FALSE, &all, &nall)) != 0)
		goto out;
	free(t->seen);
	t->nseen = 0;
	if ((t->seen = calloc(npresent + 1, sizeof(*t->seen))) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	*nmatch = 0;
	for (i = 0; i < npresent; i++, sep = ", ") {
		if ((rv = t->f->C_GetTokenInfo(present[i], &ti)) != CKR_OK) {
			slot_desc(t, present[i], desc);
			sb_printf(seen, "%sreader '%s' (slot %lu): %s (%s)", sep, desc,
			          (unsigned long)present[i], refusal(rv), tok_rv_name(rv));
			continue;
		}
		tok_fill_info(&info, present[i], &ti);
		see(t, &info);
		if (!(ti.flags & CKF_TOKEN_INITIALIZED)) {
			sb_printf(seen, "%suninitialised token in slot %lu", sep,
			          (unsigned long)present[i]);
			continue;
		}
		sb_printf(seen, "%stoken '%s'", sep, info.label);
		if (uri != NULL && uri->has_slot_id && uri->slot_id != present[i])
			continue;
		if (uri != NULL && !tok_uri_match_token(uri, ti.label, ti.manufacturerID, ti.model,
		                                        ti.serialNumber))
			continue;
		sb_printf(matched, "%s'%s' (serial %s, slot %lu)", *nmatch ? ", " : "", info.label,
		          info.serial, info.slot_id);
		if (*nmatch == 0)
			*match = info;
		(*nmatch)++;
	}
	for (i = 0; i < nall; i++) {
		for (j = 0; j < npresent && present[j] != all[i]; j++)
			;
		if (j < npresent)
			continue;
		if (t->f->C_GetSlotInfo(all[i], &si) != CKR_OK)
			continue;
		tok_copy_field(desc, si.slotDescription, sizeof(si.slotDescription));
		sep = seen->len == 0 ? "" : "; ";
		if (reader)
			sep = ", ";
		if (!(si.flags & CKF_TOKEN_PRESENT))
			sb_printf(seen, "%sreader '%s' is empty", sep, desc);
		else if ((rv = t->f->C_GetTokenInfo(all[i], &ti)) != CKR_OK)
			/* A card the module does not list as a token (OpenSC: unrecognised). */
			sb_printf(seen, "%sreader '%s': %s (%s)", sep, desc, refusal(rv),
			          tok_rv_name(rv));
		else
			sb_printf(seen, "%sreader '%s': the module lists no token for its card",
			          sep, desc);
		reader = 1;
	}
	*nscanned = nall > npresent ? nall : npresent;
	r = 0;
out:
	free(present);
	free(all);
	return r;
}

static int
select_token(struct p11 *t, const struct tok_uri *uri)
{
	int r = P11E_ERR_INTERNAL;
	struct sb seen = {NULL, 0, 0}, matched = {NULL, 0, 0};
	struct tok_info info;
	size_t nmatch = 0;
	CK_ULONG nscanned = 0;
	char *u = NULL;

	if (select_seen(t, uri, &info)) {
		t->info = info;
		return 0;
	}
	if ((r = scan_slots(t, uri, &info, &nmatch, &seen, &matched, &nscanned)) != 0)
		goto out;
	u = uri_text(uri);
	if (nmatch == 0) {
		log_error("no token matches %s (%lu slot%s scanned%s%s); check [token] uri",
		          u != NULL ? u : "the [token] uri", (unsigned long)nscanned,
		          nscanned == 1 ? "" : "s", seen.len ? ": " : "", sb_str(&seen));
		r = P11E_ERR_TOKEN;
		goto out;
	}
	if (nmatch > 1) {
		log_error("%zu tokens match %s: %s; make [token] uri select one (add serial=)",
		          nmatch, u != NULL ? u : "the [token] uri", sb_str(&matched));
		r = P11E_ERR_TOKEN;
		goto out;
	}
	t->info = info;
	r = 0;
out:
	free(seen.s);
	free(matched.s);
	free(u);
	return r;
}

int
p11_load(const char *module_path, struct p11 **out)
{
	struct p11 *t = NULL;
	int r;

	if (module_path == NULL || out == NULL)
		return P11E_ERR_INTERNAL;
	if ((t = calloc(1, sizeof(*t))) == NULL || (t->module_path = strdup(module_path)) == NULL) {
		free(t);
		return P11E_ERR_ALLOC;
	}
	if ((r = load_module(t, module_path)) != 0) {
		p11_close(t);
		return r;
	}
	*out = t;
	return 0;
}

int
p11_select(struct p11 *t, const struct tok_uri *uri)
{
	int r;
	CK_RV rv;

	if (t == NULL || t->has_session)
		return P11E_ERR_INTERNAL;
	if ((r = select_token(t, uri)) != 0)
		return r;
	rv = t->f->C_OpenSession(t->info.slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
	                         &t->session);
	if (rv != CKR_OK) {
		log_error("C_OpenSession on token '%s' failed: %s%s", t->info.label,
		          tok_rv_name(rv),
		          rv == CKR_TOKEN_WRITE_PROTECTED ? " (the token is write-protected)" : "");
		return P11E_ERR_TOKEN;
	}
	t->has_session = 1;
	log_debug("token '%s' (serial %s, slot %lu) opened through %s", t->info.label,
	          t->info.serial, t->info.slot_id, t->module_path);
	return 0;
}

int
p11_open(const char *module_path, const struct tok_uri *uri, struct p11 **out)
{
	struct p11 *t = NULL;
	int r;

	if (out == NULL)
		return P11E_ERR_INTERNAL;
	if ((r = p11_load(module_path, &t)) != 0)
		return r;
	if ((r = p11_select(t, uri)) != 0) {
		p11_close(t);
		return r;
	}
	*out = t;
	return 0;
}

int
p11_present(struct p11 *t)
{
	CK_TOKEN_INFO ti;

	return t != NULL && t->f->C_GetTokenInfo(t->info.slot_id, &ti) == CKR_OK;
}

static void
refresh_flags(struct p11 *t)
{
	CK_TOKEN_INFO ti;

	if (t->f->C_GetTokenInfo(t->info.slot_id, &ti) == CKR_OK)
		t->info.flags = tok_flags_from_ck(ti.flags);
}

static void
log_login_error(struct p11 *t, CK_RV rv)
{
	const char *l = t->info.label;
	const char *hint = "";

	switch (rv) {
	case CKR_PIN_INCORRECT:
		refresh_flags(t);
		if (t->info.flags & TOK_F_USER_PIN_LOCKED)
			hint = "; the PIN is now locked";
		else if (t->info.flags & TOK_F_USER_PIN_FINAL_TRY)
			hint = "; one attempt is left before the PIN locks";
		else if (t->info.flags & TOK_F_USER_PIN_COUNT_LOW)
			hint = "; few attempts are left before the PIN locks";
		log_error("wrong PIN for token '%s' (CKR_PIN_INCORRECT); not retried%s; "
		          "check the PIN file",
		          l, hint);
		break;
	case CKR_PIN_LOCKED:
		log_error("the user PIN of token '%s' is locked (CKR_PIN_LOCKED); "
		          "the token's security officer must unlock it",
		          l);
		break;
	case CKR_PIN_LEN_RANGE:
		log_error("token '%s' refused the PIN's length (CKR_PIN_LEN_RANGE); "
		          "check the PIN file",
		          l);
		break;
	case CKR_PIN_INVALID:
		log_error("token '%s' refused characters in the PIN (CKR_PIN_INVALID); "
		          "check the PIN file",
		          l);
		break;
	case CKR_PIN_EXPIRED:
		log_error("the user PIN of token '%s' has expired (CKR_PIN_EXPIRED); "
		          "change it with the token's tools",
		          l);
		break;
	case CKR_USER_PIN_NOT_INITIALIZED:
		log_error("token '%s' has no user PIN (CKR_USER_PIN_NOT_INITIALIZED); "
		          "set one with the token's tools",
		          l);
		break;
	case CKR_USER_ANOTHER_ALREADY_LOGGED_IN:
		log_error("token '%s': another user (the security officer?) is logged in "
		          "(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)",
		          l);
		break;
	default:
		log_error("C_Login on token '%s' failed: %s", l, tok_rv_name(rv));
		break;
	}
}

/* A login failure caused by the PIN (or its state), not by the token. */
static int
pin_rv(CK_RV rv)
{
	return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_LEN_RANGE ||
	       rv == CKR_PIN_INVALID || rv == CKR_PIN_EXPIRED || rv == CKR_USER_PIN_NOT_INITIALIZED;
}

/*
 * One C_Login as CKU_USER at most, ever, for t. The PIN is passed through
 * and never copied or logged.
 */
int
p11_login(struct p11 *t, const char *pin, int allow_final_try)
{
	int r = P11E_ERR_INTERNAL;
	CK_UTF8CHAR_PTR p = NULL;
	CK_ULONG plen = 0;
	CK_RV rv;

	if (t == NULL)
		goto out;
	if (t->logged_in) {
		r = 0;
		goto out;
	}
	if (t->login_tried) {
		log_error("login to token '%s' already failed; not retried", t->info.label);
		r = P11E_ERR_PIN;
		goto out;
	}
	refresh_flags(t);
	if (t->info.flags & TOK_F_USER_PIN_LOCKED) {
		log_error("the user PIN of token '%s' is locked; the token's security officer must "
		          "unlock it (login not tried)",
		          t->info.label);
		r = P11E_ERR_PIN;
		goto out;
	}
	if ((t->info.flags & TOK_F_USER_PIN_FINAL_TRY) && !allow_final_try) {
		log_error("token '%s' has one PIN attempt left before the PIN locks; "
		          "login not tried: check the PIN file, then allow the final try "
		          "with `p11enroll enroll --allow-final-pin-try`",
		          t->info.label);
		r = P11E_ERR_PIN;
		goto out;
	}
	if (t->info.flags & TOK_F_USER_PIN_COUNT_LOW)
		log_warn("token '%s' reports failed PIN attempts (few left before it locks)",
		         t->info.label);
	if (t->info.flags & TOK_F_PROTECTED_AUTH_PATH) {
		log_info("enter the PIN of token '%s' on the reader", t->info.label);
	} else if (pin == NULL) {
		log_error("token '%s' needs a PIN and none is configured; set [token] pin_file",
		          t->info.label);
		r = P11E_ERR_PIN;
		goto out;
	} else {
		p = (CK_UTF8CHAR_PTR)pin;
		plen = (CK_ULONG)strlen(pin);
	}
	t->login_tried = 1;
	rv = t->f->C_Login(t->session, CKU_USER, p, plen);
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		log_login_error(t, rv);
		r = pin_rv(rv) ? P11E_ERR_PIN : P11E_ERR_TOKEN;
		goto out;
	}
	t->logged_in = 1;
	r = 0;
out:
	return r;
}

/* Logs out and closes the session, if any; the module stays initialised. When the
 * session cannot be closed and the token no longer answers, says so, last: what failed
 * before may not have named the token. */
static void
end_session(struct p11 *t)
{
	CK_TOKEN_INFO ti;

	if (t->logged_in)
		(void)t->f->C_Logout(t->session);
	if (t->has_session && t->f->C_CloseSession(t->session) != CKR_OK &&
	    t->f->C_GetTokenInfo(t->info.slot_id, &ti) != CKR_OK)
		log_warn("token '%s' was removed or stopped responding before it was closed",
		         t->info.label);
	t->logged_in = t->login_tried = t->has_session = 0;
	t->session = CK_INVALID_HANDLE;
	memset(&t->info, 0, sizeof(t->info));
}

void
p11_end(struct p11 *t)
{
	if (t != NULL && t->f != NULL)
		end_session(t);
}

/* end_session, then C_Finalize when our C_Initialize initialised the module, dlclose. */
void
p11_close(struct p11 *t)
{
	if (t == NULL)
		return;
	if (t->f != NULL) {
		end_session(t);
		if (t->initialized)
			(void)t->f->C_Finalize(NULL);
	}
	if (t->dl != NULL)
		dlclose(t->dl);
	free(t->module_path);
	free(t->seen);
	OPENSSL_cleanse(t, sizeof(*t));
	free(t);
}
