/*
 * fuzz_dn.c: the subject DN (csr_parse_dn, RFC 4514 with escapes, '+' and
 * '#' hex values) and the templates of `provision` (tmpl_check,
 * tmpl_expand). Each input is read:
 *   1. as a DN;
 *   2. as a template, expanded with hostile token values both raw and
 *      escaped for a DN, the latter read back as a DN;
 *   3. as a token label: "name={token.label}" expanded with TMPL_DN must read
 *      back, when the label is non-empty well-formed UTF-8, as exactly the
 *      label's bytes (the escaping and the DN parser agree).
 */
#include <openssl/x509.h>

#include "csr.h"
#include "fuzz_common.h"
#include "scep.h"
#include "template.h"

FUZZ_INITIALIZE_QUIET

static void
parse_dn(const char *s)
{
	X509_NAME *name = NULL;
	char buf[256];

	if (csr_parse_dn(s, &name) != 0) {
		if (name != NULL)
			abort();
		return;
	}
	if (X509_NAME_entry_count(name) < 1)
		abort();
	scep_name_str(name, buf, sizeof(buf));
	X509_NAME_free(name);
}

/* Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF). */
static int
utf8_ok(const unsigned char *s, size_t n)
{
	size_t i = 0, k, len;
	unsigned long cp;

	while (i < n) {
		unsigned char c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (i + len > n)
			return 0;
		for (k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

static void
label_round_trip(const char *label)
{
	struct tmpl_vars v = {label, "0123", "maker", "model", "host", "2024-01-01"};
	char *dn = NULL;
	X509_NAME *name = NULL;
	const ASN1_STRING *val;
	size_t n = strlen(label);
	int ok = n > 0 && n <= 1024 && utf8_ok((const unsigned char *)label, n);

	if (tmpl_expand("name={token.label}", &v, TMPL_DN, &dn) != 0)
		abort(); /* a valid template expands */
	if (csr_parse_dn(dn, &name) != 0) {
		if (ok)
			abort(); /* an escaped label must read back */
		goto out;
	}
	if (ok) {
		if (X509_NAME_entry_count(name) != 1)
			abort();
		val = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, 0));
		if ((size_t)ASN1_STRING_length(val) != n ||
		    memcmp(ASN1_STRING_get0_data(val), label, n) != 0)
			abort(); /* exactly the label's bytes */
	}
out:
	X509_NAME_free(name);
	free(dn);
}

static void
expand(const char *s)
{
	static const struct tmpl_vars hostile = {" a,b+c=\"d\"\\<e>;#f ", "\x01\x7f\x1b[31m",
	                                         "\xff\xc3(\xe2\x82",     "  ",
	                                         "host.example",          "2024-01-01"};
	char why[128], *out = NULL;

	if (tmpl_check(s, why, sizeof(why)) != 0) {
		if (memchr(why, '\0', sizeof(why)) == NULL)
			abort();
		return;
	}
	(void)tmpl_has_placeholders(s);
	if (tmpl_expand(s, &hostile, TMPL_RAW, &out) != 0)
		abort();
	free(out);
	out = NULL;
	if (tmpl_expand(s, &hostile, TMPL_DN, &out) != 0)
		abort();
	parse_dn(out);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_str(data, size);
	size_t i;

	parse_dn(s);
	expand(s);
	label_round_trip(s);
	for (i = 0; s[i] != '\0';
	     i += tmpl_printable_len(s + i) > 0 ? tmpl_printable_len(s + i) : 1)
		;
	free(s);
	return 0;
}
