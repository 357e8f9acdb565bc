/*
 * p11util.c: what every file of tokens/ uses: CK_RV names for messages,
 * attribute reads, object searches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "p11int.h"

#define RV(x)                                                                                      \
	{                                                                                          \
		x, #x                                                                              \
	}
static const struct {
	CK_RV rv;
	const char *name;
} rv_names[] = {
    RV(CKR_OK),
    RV(CKR_CANCEL),
    RV(CKR_HOST_MEMORY),
    RV(CKR_SLOT_ID_INVALID),
    RV(CKR_GENERAL_ERROR),
    RV(CKR_FUNCTION_FAILED),
    RV(CKR_ARGUMENTS_BAD),
    RV(CKR_NO_EVENT),
    RV(CKR_NEED_TO_CREATE_THREADS),
    RV(CKR_CANT_LOCK),
    RV(CKR_ATTRIBUTE_READ_ONLY),
    RV(CKR_ATTRIBUTE_SENSITIVE),
    RV(CKR_ATTRIBUTE_TYPE_INVALID),
    RV(CKR_ATTRIBUTE_VALUE_INVALID),
    RV(CKR_ACTION_PROHIBITED),
    RV(CKR_DATA_INVALID),
    RV(CKR_DATA_LEN_RANGE),
    RV(CKR_DEVICE_ERROR),
    RV(CKR_DEVICE_MEMORY),
    RV(CKR_DEVICE_REMOVED),
    RV(CKR_ENCRYPTED_DATA_INVALID),
    RV(CKR_ENCRYPTED_DATA_LEN_RANGE),
    RV(CKR_FUNCTION_CANCELED),
    RV(CKR_FUNCTION_NOT_PARALLEL),
    RV(CKR_FUNCTION_NOT_SUPPORTED),
    RV(CKR_KEY_HANDLE_INVALID),
    RV(CKR_KEY_SIZE_RANGE),
    RV(CKR_KEY_TYPE_INCONSISTENT),
    RV(CKR_KEY_NOT_NEEDED),
    RV(CKR_KEY_CHANGED),
    RV(CKR_KEY_NEEDED),
    RV(CKR_KEY_INDIGESTIBLE),
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
    RV(CKR_KEY_NOT_WRAPPABLE),
    RV(CKR_KEY_UNEXTRACTABLE),
    RV(CKR_MECHANISM_INVALID),
    RV(CKR_MECHANISM_PARAM_INVALID),
    RV(CKR_OBJECT_HANDLE_INVALID),
    RV(CKR_OPERATION_ACTIVE),
    RV(CKR_OPERATION_NOT_INITIALIZED),
    RV(CKR_PIN_INCORRECT),
    RV(CKR_PIN_INVALID),
    RV(CKR_PIN_LEN_RANGE),
    RV(CKR_PIN_EXPIRED),
    RV(CKR_PIN_LOCKED),
    RV(CKR_SESSION_CLOSED),
    RV(CKR_SESSION_COUNT),
    RV(CKR_SESSION_HANDLE_INVALID),
    RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    RV(CKR_SESSION_READ_ONLY),
    RV(CKR_SESSION_EXISTS),
    RV(CKR_SESSION_READ_ONLY_EXISTS),
    RV(CKR_SESSION_READ_WRITE_SO_EXISTS),
    RV(CKR_SIGNATURE_INVALID),
    RV(CKR_SIGNATURE_LEN_RANGE),
    RV(CKR_TEMPLATE_INCOMPLETE),
    RV(CKR_TEMPLATE_INCONSISTENT),
    RV(CKR_TOKEN_NOT_PRESENT),
    RV(CKR_TOKEN_NOT_RECOGNIZED),
    RV(CKR_TOKEN_WRITE_PROTECTED),
    RV(CKR_UNWRAPPING_KEY_SIZE_RANGE),
    RV(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
    RV(CKR_USER_ALREADY_LOGGED_IN),
    RV(CKR_USER_NOT_LOGGED_IN),
    RV(CKR_USER_PIN_NOT_INITIALIZED),
    RV(CKR_USER_TYPE_INVALID),
    RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    RV(CKR_USER_TOO_MANY_TYPES),
    RV(CKR_WRAPPED_KEY_INVALID),
    RV(CKR_WRAPPED_KEY_LEN_RANGE),
    RV(CKR_WRAPPING_KEY_HANDLE_INVALID),
    RV(CKR_WRAPPING_KEY_SIZE_RANGE),
    RV(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
    RV(CKR_RANDOM_SEED_NOT_SUPPORTED),
    RV(CKR_RANDOM_NO_RNG),
    RV(CKR_DOMAIN_PARAMS_INVALID),
    RV(CKR_CURVE_NOT_SUPPORTED),
    RV(CKR_BUFFER_TOO_SMALL),
    RV(CKR_SAVED_STATE_INVALID),
    RV(CKR_INFORMATION_SENSITIVE),
    RV(CKR_STATE_UNSAVEABLE),
    RV(CKR_CRYPTOKI_NOT_INITIALIZED),
    RV(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    RV(CKR_MUTEX_BAD),
    RV(CKR_MUTEX_NOT_LOCKED),
    RV(CKR_NEW_PIN_MODE),
    RV(CKR_NEXT_OTP),
    RV(CKR_EXCEEDED_MAX_ITERATIONS),
    RV(CKR_FIPS_SELF_TEST_FAILED),
    RV(CKR_LIBRARY_LOAD_FAILED),
    RV(CKR_PIN_TOO_WEAK),
    RV(CKR_PUBLIC_KEY_INVALID),
    RV(CKR_FUNCTION_REJECTED),
};
#undef RV

/* What a card pulled out, or a token that stopped answering, returns. */
static int
rv_gone(CK_RV rv)
{
	return rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
	       rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	       rv == CKR_DEVICE_ERROR;
}

/* The codes of a token gone away carry that explanation in every message. */
const char *
tok_rv_name(CK_RV rv)
{
	static char buf[64];
	size_t i;

	switch (rv) {
	case CKR_DEVICE_REMOVED:
		return "CKR_DEVICE_REMOVED (the token was removed or stopped responding)";
	case CKR_TOKEN_NOT_PRESENT:
		return "CKR_TOKEN_NOT_PRESENT (the token was removed or stopped responding)";
	case CKR_SESSION_HANDLE_INVALID:
		return "CKR_SESSION_HANDLE_INVALID (the token was removed or stopped responding)";
	case CKR_SESSION_CLOSED:
		return "CKR_SESSION_CLOSED (the token was removed or stopped responding)";
	case CKR_DEVICE_ERROR:
		return "CKR_DEVICE_ERROR (the token was removed or stopped responding)";
	}
	for (i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
		if (rv_names[i].rv == rv)
			return rv_names[i].name;
	snprintf(buf, sizeof(buf), "CKR_0x%lx%s", (unsigned long)rv,
	         rv >= CKR_VENDOR_DEFINED ? " (vendor defined)" : "");
	return buf;
}

/* Values up to this size (certificates, moduli, IDs) come in one call. */
#define ATTR_FIRST 4096

CK_RV
tok_attr_get(struct p11 *t, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, unsigned char **val,
             size_t *len)
{
	unsigned char first[ATTR_FIRST];
	CK_ATTRIBUTE a = {type, first, sizeof(first)};
	unsigned char *buf = NULL;
	CK_RV rv;

	rv = t->f->C_GetAttributeValue(t->session, h, &a, 1);
	if (rv == CKR_OK) {
		if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > sizeof(first))
			return CKR_ATTRIBUTE_TYPE_INVALID;
		if ((buf = malloc(a.ulValueLen + 1)) == NULL)
			return CKR_HOST_MEMORY;
		memcpy(buf, first, a.ulValueLen);
		*val = buf;
		*len = a.ulValueLen;
		return CKR_OK;
	}
	if (rv != CKR_BUFFER_TOO_SMALL)
		return rv;
	/* Larger: its length first (PKCS#11 3.0 5.7: a NULL pValue asks for it). */
	a = (CK_ATTRIBUTE){type, NULL, 0};
	if ((rv = t->f->C_GetAttributeValue(t->session, h, &a, 1)) != CKR_OK)
		goto out;
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > 1024 * 1024) {
		rv = CKR_ATTRIBUTE_TYPE_INVALID;
		goto out;
	}
	if ((buf = malloc(a.ulValueLen + 1)) == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	a.pValue = buf;
	if ((rv = t->f->C_GetAttributeValue(t->session, h, &a, 1)) != CKR_OK)
		goto out;
	*val = buf;
	*len = a.ulValueLen;
	buf = NULL;
out:
	free(buf);
	return rv;
}

/* A copy of a value read into a buffer of ATTR_FIRST bytes; NULL if it is not one. */
static unsigned char *
attr_copy(const CK_ATTRIBUTE *a)
{
	unsigned char *buf;

	if (a->ulValueLen == CK_UNAVAILABLE_INFORMATION || a->ulValueLen > ATTR_FIRST ||
	    (buf = malloc(a->ulValueLen + 1)) == NULL)
		return NULL;
	memcpy(buf, a->pValue, a->ulValueLen);
	return buf;
}

CK_RV
tok_attr_get2(struct p11 *t, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE ta, unsigned char **va,
              size_t *la, CK_ATTRIBUTE_TYPE tb, unsigned char **vb, size_t *lb)
{
	unsigned char first[2][ATTR_FIRST];
	CK_ATTRIBUTE a[2] = {{ta, first[0], ATTR_FIRST}, {tb, first[1], ATTR_FIRST}};
	unsigned char *x = NULL, *y = NULL;
	CK_RV rv;

	*va = *vb = NULL;
	if (t->f->C_GetAttributeValue(t->session, h, a, 2) == CKR_OK &&
	    (x = attr_copy(&a[0])) != NULL && (y = attr_copy(&a[1])) != NULL) {
		*va = x;
		*la = a[0].ulValueLen;
		*vb = y;
		*lb = a[1].ulValueLen;
		return CKR_OK;
	}
	free(x);
	/* One by one: each value's own answer (too large, sensitive, missing). */
	if ((rv = tok_attr_get(t, h, ta, &x, la)) != CKR_OK)
		return rv;
	if ((rv = tok_attr_get(t, h, tb, &y, lb)) != CKR_OK) {
		free(x);
		return rv;
	}
	*va = x;
	*vb = y;
	return CKR_OK;
}

static int
cmp_handle(const void *a, const void *b)
{
	CK_OBJECT_HANDLE x = *(const CK_OBJECT_HANDLE *)a, y = *(const CK_OBJECT_HANDLE *)b;

	return x < y ? -1 : x > y;
}

int
tok_find_objects(struct p11 *t, CK_ATTRIBUTE *tmpl, CK_ULONG ntmpl, const char *what,
                 CK_OBJECT_HANDLE **out, size_t *n)
{
	int r = P11E_ERR_INTERNAL;
	CK_OBJECT_HANDLE *hs = NULL, *p;
	size_t count = 0, cap = 0;
	CK_ULONG got = 0;
	CK_RV rv;
	int active = 0;

	if ((rv = t->f->C_FindObjectsInit(t->session, tmpl, ntmpl)) != CKR_OK)
		goto fail;
	active = 1;
	for (;;) {
		if (count == cap) {
			cap = cap ? cap * 2 : 16;
			if ((p = realloc(hs, cap * sizeof(*hs))) == NULL) {
				r = P11E_ERR_ALLOC;
				goto out;
			}
			hs = p;
		}
		if ((rv = t->f->C_FindObjects(t->session, hs + count, cap - count, &got)) != CKR_OK)
			goto fail;
		if (got > cap - count) {
			rv = CKR_GENERAL_ERROR;
			goto fail;
		}
		if (got == 0)
			break;
		count += got;
	}
	active = 0;
	if ((rv = t->f->C_FindObjectsFinal(t->session)) != CKR_OK)
		goto fail;
	if (count == 0) {
		free(hs);
		hs = NULL;
	} else {
		qsort(hs, count, sizeof(*hs), cmp_handle);
	}
	*out = hs;
	*n = count;
	hs = NULL;
	r = 0;
	goto out;
fail:
	log_error("searching %s on token '%s' failed: %s", what, t->info.label, tok_rv_name(rv));
	r = P11E_ERR_TOKEN;
out:
	if (active)
		t->f->C_FindObjectsFinal(t->session);
	free(hs);
	return r;
}

int
tok_destroy_object(struct p11 *t, CK_OBJECT_HANDLE h, const char *what)
{
	CK_RV rv;

	if ((rv = t->f->C_DestroyObject(t->session, h)) == CKR_OK)
		return 0;
	if (rv_gone(rv))
		log_warn("could not remove %s from token '%s': %s; it stays on the token", what,
		         t->info.label, tok_rv_name(rv));
	else
		log_warn("C_DestroyObject of %s on token '%s' failed: %s; "
		         "remove it with the token's tools",
		         what, t->info.label, tok_rv_name(rv));
	return P11E_ERR_TOKEN;
}
