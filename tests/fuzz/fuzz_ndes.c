/*
 * fuzz_ndes.c: NDES MSCEP_ADMIN pages (challenge_parse) in every encoding it
 * reads: each input as it comes (the UTF-8/ASCII and UTF-16 fixtures of
 * tests/data/ndes as seeds), then re-encoded by the target as UTF-16LE and
 * UTF-16BE, each with and without a BOM. A challenge found is checked
 * against every character class (challenge_check), and the page's text is
 * searched for NDES HRESULTs (challenge_hresult_text).
 */
#include "challenge.h"
#include "conf.h"
#include "err.h"
#include "fuzz_common.h"
#include "secret.h"

#define WIDE_MAX (64 * 1024)

FUZZ_INITIALIZE_QUIET

static void
parse(const unsigned char *page, size_t len)
{
	char *ch = NULL, *tp = NULL;
	size_t n, i;
	int r = challenge_parse(page, len, &ch, &tp);

	if (r != 0) {
		if (ch != NULL || tp != NULL)
			abort(); /* untouched on failure */
		return;
	}
	if (ch == NULL || (n = strlen(ch)) < 1 || n > CHALLENGE_MAX)
		abort();
	for (i = 0; i < n; i++)
		if (ch[i] < 0x20 || ch[i] >= 0x7f)
			abort(); /* printable ASCII */
	if (tp != NULL)
		for (i = 0; tp[i] != '\0'; i++)
			if (strchr("0123456789ABCDEF", tp[i]) == NULL)
				abort();
	(void)challenge_check(ch, CONF_CHARS_ANY, 0);
	(void)challenge_check(ch, CONF_CHARS_HEX, 16);
	(void)challenge_check(ch, CONF_CHARS_DIGITS, (long)n);
	(void)challenge_check(ch, CONF_CHARS_ALNUM, 8);
	secret_free(ch);
	free(tp);
}

/* data as UTF-16 (each byte one code unit), big- or little-endian, with or without a BOM. */
static void
parse_wide(const uint8_t *data, size_t size, int be, int bom)
{
	unsigned char *w = malloc(2 * size + 2), *o = w;
	size_t i;

	if (w == NULL)
		abort();
	if (bom) {
		*o++ = be ? 0xfe : 0xff;
		*o++ = be ? 0xff : 0xfe;
	}
	for (i = 0; i < size; i++) {
		*o++ = be ? 0 : data[i];
		*o++ = be ? data[i] : 0;
	}
	parse(w, (size_t)(o - w));
	free(w);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;

	parse(data, size);
	if (size <= WIDE_MAX) {
		parse_wide(data, size, 0, 1);
		parse_wide(data, size, 0, 0);
		parse_wide(data, size, 1, 1);
		parse_wide(data, size, 1, 0);
	}
	text = fuzz_str(data, size);
	(void)challenge_hresult_text(text);
	free(text);
	return 0;
}
