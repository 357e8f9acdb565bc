/*
 * test_challenge.c: NDES MSCEP_ADMIN page parsing (fixtures written by
 * tests/data/gen-ndes-pages.py), challenge_check, challenge_hresult_text,
 * and the URL helpers of http.h that need no network.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "challenge.h"
#include "conf.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "secret.h"

#define SENTINEL ((char *)(uintptr_t)0x5a5a)
#define CHALLENGE "8CE317021F690069"
#define THUMBPRINT "2A74C2A10E1F7C3D50E2C1A98D4F1E62"

static char errbuf[16384];
static FILE *capture_file;
static int saved_stderr = -1;

/* Sends stderr to a temporary file until end_capture() copies it to errbuf. */
static void
begin_capture(void)
{
	fflush(stderr);
	capture_file = tmpfile();
	assert_non_null(capture_file);
	saved_stderr = dup(STDERR_FILENO);
	assert_true(saved_stderr >= 0);
	assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

static void
end_capture(void)
{
	size_t n;

	fflush(stderr);
	assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
	close(saved_stderr);
	rewind(capture_file);
	n = fread(errbuf, 1, sizeof(errbuf) - 1, capture_file);
	errbuf[n] = '\0';
	fclose(capture_file);
}

static void
assert_logged(const char *want)
{
	if (strstr(errbuf, want) == NULL)
		fail_msg("expected message containing\n  %s\ngot\n  %s", want, errbuf);
}

static void
assert_not_logged(const char *secret)
{
	if (strstr(errbuf, secret) != NULL)
		fail_msg("a secret reached the log:\n  %s", errbuf);
}

static unsigned char *
load(const char *name, size_t *len)
{
	char path[PATH_MAX];
	const char *dir = getenv("P11E_TEST_DATA");
	FILE *f;
	unsigned char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/ndes/%s", dir ? dir : "tests/data", name);
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s (run tests/data/gen-ndes-pages.py)", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* challenge_parse on bytes with stderr captured. */
static int
parse(const void *body, size_t len, char **ch, char **tp)
{
	int r;

	begin_capture();
	r = challenge_parse(body, len, ch, tp);
	end_capture();
	return r;
}

static int
parse_str(const char *page, char **ch, char **tp)
{
	return parse(page, strlen(page), ch, tp);
}

static void
assert_page(const char *name, const char *want_ch, const char *want_tp)
{
	unsigned char *body;
	char *ch = NULL, *tp = NULL;
	size_t len;
	int r;

	body = load(name, &len);
	if ((r = parse(body, len, &ch, &tp)) != 0)
		fail_msg("%s: challenge_parse returned %d: %s", name, r, errbuf);
	assert_string_equal(ch, want_ch);
	assert_true(secret_in_arena(ch)); /* locked, kept out of dumps, wiped */
	if (want_tp == NULL)
		assert_null(tp);
	else
		assert_string_equal(tp, want_tp);
	assert_string_equal(errbuf, "");
	free(body);
	free(tp);
	secret_free(ch);
}

static void
assert_page_fails(const char *name, int err, const char *msg)
{
	unsigned char *body;
	char *ch = SENTINEL, *tp = SENTINEL;
	size_t len;

	body = load(name, &len);
	assert_int_equal(parse(body, len, &ch, &tp), err);
	assert_ptr_equal(ch, SENTINEL);
	assert_ptr_equal(tp, SENTINEL);
	if (msg != NULL)
		assert_logged(msg);
	else
		assert_string_equal(errbuf, "");
	free(body);
}

static void
assert_str_fails(const char *page, const char *msg)
{
	char *ch = SENTINEL, *tp = SENTINEL;

	assert_int_equal(parse_str(page, &ch, &tp), P11E_ERR_MALFORMED);
	assert_ptr_equal(ch, SENTINEL);
	assert_ptr_equal(tp, SENTINEL);
	assert_logged(msg);
}

static void
assert_str_ok(const char *page, const char *want_ch, const char *want_tp)
{
	char *ch = NULL, *tp = NULL;
	int r;

	if ((r = parse_str(page, &ch, &tp)) != 0)
		fail_msg("challenge_parse(\"%s\") returned %d: %s", page, r, errbuf);
	assert_string_equal(ch, want_ch);
	if (want_tp == NULL)
		assert_null(tp);
	else
		assert_string_equal(tp, want_tp);
	free(tp);
	secret_free(ch);
}

/* ---- fixtures ---- */

static void
test_success_utf16le(void **state)
{
	(void)state;
	assert_page("success-utf16le.html", CHALLENGE, THUMBPRINT);
}

static void
test_success_utf16le_bom(void **state)
{
	(void)state;
	assert_page("success-utf16le-bom.html", CHALLENGE, THUMBPRINT);
}

static void
test_success_utf16be_bom(void **state)
{
	(void)state;
	assert_page("success-utf16be-bom.html", CHALLENGE, THUMBPRINT);
}

static void
test_success_utf8(void **state)
{
	(void)state;
	assert_page("success-utf8.html", CHALLENGE, THUMBPRINT);
}

static void
test_challenge32(void **state)
{
	(void)state;
	assert_page("challenge32.html", "3F8A1C5D9E0B27461A2B3C4D5E6F7081", THUMBPRINT);
}

static void
test_no_expire(void **state)
{
	(void)state;
	assert_page("no-expire.html", CHALLENGE, THUMBPRINT);
}

static void
test_no_bold(void **state)
{
	(void)state;
	assert_page("no-bold.html", CHALLENGE, THUMBPRINT);
}

static void
test_lowercase_hex(void **state)
{
	(void)state;
	assert_page("lowercase-hex.html", "8ce317021f690069", THUMBPRINT);
}

static void
test_cache_full(void **state)
{
	(void)state;
	assert_page_fails("cache-full.html", P11E_ERR_PENDING, NULL);
}

static void
test_no_permission(void **state)
{
	(void)state;
	assert_page_fails("no-permission.html", P11E_ERR_REJECTED, NULL);
}

static void
test_no_marker(void **state)
{
	(void)state;
	assert_page_fails("no-marker.html", P11E_ERR_MALFORMED,
	                  "has no \"The enrollment challenge password is:\"");
}

static void
test_evil_huge_token(void **state)
{
	(void)state;
	assert_page_fails("evil-huge-token.html", P11E_ERR_MALFORMED,
	                  "longer than 256 characters (5000)");
	assert_not_logged("AAAAAAAA");
}

static void
test_thumbprint_optional_out(void **state)
{
	unsigned char *body;
	char *ch = NULL;
	size_t len;

	(void)state;
	body = load("success-utf16le.html", &len);
	assert_int_equal(parse(body, len, &ch, NULL), 0);
	assert_string_equal(ch, CHALLENGE);
	secret_free(ch);
	free(body);
}

/* ---- pages built here ---- */

static void
test_marker_and_tags_case_insensitive(void **state)
{
	(void)state;
	assert_str_ok("THE ENROLLMENT CHALLENGE PASSWORD IS: <b>x1Y2</b>", "x1Y2", NULL);
	assert_str_ok("the Enrollment Challenge Password Is:<b class=\"pw\">\n\t AbC \r\n</B>",
	              "AbC", NULL);
	assert_str_ok("The Thumbprint (Hash Value) for the ca certificate IS: <b>ab cd\tEF 01</b>"
	              "The enrollment challenge password is: <B>Z</B>",
	              "Z", "ABCDEF01");
}

static void
test_token_without_bold(void **state)
{
	(void)state;
	assert_str_ok("The enrollment challenge password is:  ABC123<P>next", "ABC123", NULL);
	assert_str_ok("The enrollment challenge password is:\r\nABC123", "ABC123", NULL);
	/* a <B> that is never closed is not a token */
	assert_str_fails("The enrollment challenge password is: <B> ABC123", "no challenge after");
	/* a tag that is not bold */
	assert_str_fails("The enrollment challenge password is: <I>ABC</I>", "no challenge after");
}

static void
test_empty_token(void **state)
{
	(void)state;
	assert_str_fails("The enrollment challenge password is: <B>  </B>", "no challenge after");
	assert_str_fails("The enrollment challenge password is:", "no challenge after");
	assert_str_fails("The enrollment challenge password is:   \r\n", "no challenge after");
}

static void
test_bad_characters(void **state)
{
	(void)state;
	assert_str_fails("The enrollment challenge password is: <B>AB\x01"
	                 "CD</B>",
	                 "control or non-ASCII");
	assert_str_fails("The enrollment challenge password is: <B>AB\x7f"
	                 "CD</B>",
	                 "control or non-ASCII");
	assert_str_fails("The enrollment challenge password is: <B>AB\xc3\xa9"
	                 "CD</B>",
	                 "control or non-ASCII");
	assert_str_fails("The enrollment challenge password is: <B>AB CD</B>", "spaces");
	assert_str_fails("The enrollment challenge password is: <B><font>AB</font></B>",
	                 "HTML markup");
	assert_str_fails("The enrollment challenge password is: <B>A&amp;B</B>", "HTML markup");
	assert_not_logged("AB");
}

static void
test_non_ascii_utf16_token(void **state)
{
	/* "is: <B>A\u00e9B</B>" in UTF-16LE */
	static const char text[] = "The enrollment challenge password is: <B>A?B</B>";
	unsigned char page[2 * sizeof(text)];
	char *ch = SENTINEL, *tp = SENTINEL;
	size_t i, n = strlen(text);

	(void)state;
	for (i = 0; i < n; i++) {
		page[2 * i] = (unsigned char)(text[i] == '?' ? 0xe9 : text[i]);
		page[2 * i + 1] = 0;
	}
	assert_int_equal(parse(page, 2 * n, &ch, &tp), P11E_ERR_MALFORMED);
	assert_ptr_equal(ch, SENTINEL);
	assert_logged("non-ASCII");
}

static void
test_utf16_surrogates_and_odd_length(void **state)
{
	/* U+1F600 (D83D DE00) before the marker, and a stray last byte */
	static const char text[] = "XX The enrollment challenge password is: <B>AB12</B>";
	unsigned char page[2 * sizeof(text) + 1];
	char *ch = NULL, *tp = NULL;
	size_t i, n = strlen(text);

	(void)state;
	for (i = 0; i < n; i++) {
		page[2 * i] = (unsigned char)text[i];
		page[2 * i + 1] = 0;
	}
	page[0] = 0x3d;
	page[1] = 0xd8;
	page[2] = 0x00;
	page[3] = 0xde;
	page[2 * n] = 'Z';
	assert_int_equal(parse(page, 2 * n + 1, &ch, &tp), 0);
	assert_string_equal(ch, "AB12");
	assert_null(tp);
	secret_free(ch);
}

static void
test_utf16be_without_bom(void **state)
{
	static const char text[] = "The enrollment challenge password is: <B>BE42</B>";
	unsigned char page[2 * sizeof(text)];
	char *ch = NULL, *tp = NULL;
	size_t i, n = strlen(text);

	(void)state;
	for (i = 0; i < n; i++) {
		page[2 * i] = 0;
		page[2 * i + 1] = (unsigned char)text[i];
	}
	assert_int_equal(parse(page, 2 * n, &ch, &tp), 0);
	assert_string_equal(ch, "BE42");
	secret_free(ch);
}

static void
test_utf8_bom_and_nul(void **state)
{
	static const char page[] = "\xef\xbb\xbf<P>\xc3\xa9t\xc3\xa9\0 The enrollment challenge "
	                           "password is: <B>U8</B>";
	char *ch = NULL, *tp = NULL;

	(void)state;
	assert_int_equal(parse(page, sizeof(page) - 1, &ch, &tp), 0);
	assert_string_equal(ch, "U8");
	secret_free(ch);
}

static void
test_length_limits(void **state)
{
	char page[512], tok[300];

	(void)state;
	memset(tok, 'A', 256);
	tok[256] = '\0';
	snprintf(page, sizeof(page), "The enrollment challenge password is: <B>%s</B>", tok);
	assert_str_ok(page, tok, NULL);
	tok[256] = 'A';
	tok[257] = '\0';
	snprintf(page, sizeof(page), "The enrollment challenge password is: <B>%s</B>", tok);
	assert_str_fails(page, "longer than 256 characters (257)");
	snprintf(page, sizeof(page), "The enrollment challenge password is: %s", tok);
	assert_str_fails(page, "longer than 256 characters (257)");
}

static void
test_megabyte_token(void **state)
{
	static const char head[] = "The enrollment challenge password is: <B>";
	size_t n = 1 << 20, hl = sizeof(head) - 1;
	char *page = malloc(hl + n + 8);

	(void)state;
	assert_non_null(page);
	memcpy(page, head, hl);
	memset(page + hl, 'Q', n);
	strcpy(page + hl + n, "</B>");
	assert_str_fails(page, "longer than 256 characters (1048576)");
	assert_not_logged("QQQQ");
	/* without bold tags the bare token is as long */
	memcpy(page + hl - 3, "QQQ", 3);
	page[hl + n] = '\0';
	assert_str_fails(page, "longer than 256 characters (1048579)");
	assert_not_logged("QQQQ");
	free(page);
}

static void
test_empty_and_null_body(void **state)
{
	char *ch = SENTINEL, *tp = SENTINEL;

	(void)state;
	assert_int_equal(parse("", 0, &ch, &tp), P11E_ERR_MALFORMED);
	assert_int_equal(parse(NULL, 0, &ch, &tp), P11E_ERR_MALFORMED);
	assert_int_equal(parse("\xff\xfe", 2, &ch, &tp), P11E_ERR_MALFORMED);
	assert_int_equal(parse("\xfe", 1, &ch, &tp), P11E_ERR_MALFORMED);
	assert_ptr_equal(ch, SENTINEL);
	assert_ptr_equal(tp, SENTINEL);
}

static void
test_thumbprint_variants(void **state)
{
	static const char *const mark = "The thumbprint (hash value) for the CA certificate is: ";
	char page[512];

	(void)state;
	snprintf(page, sizeof(page),
	         "%s<B> 2a74c2a1 0e1f7c3d </B> "
	         "The enrollment challenge password is: <B>X</B>",
	         mark);
	assert_str_ok(page, "X", "2A74C2A10E1F7C3D");
	/* not hex, odd, empty, no bold: treated as absent */
	snprintf(page, sizeof(page),
	         "%s<B> 2A74C2AZ </B> "
	         "The enrollment challenge password is: <B>X</B>",
	         mark);
	assert_str_ok(page, "X", NULL);
	snprintf(page, sizeof(page),
	         "%s<B> 2A7 </B> "
	         "The enrollment challenge password is: <B>X</B>",
	         mark);
	assert_str_ok(page, "X", NULL);
	snprintf(page, sizeof(page),
	         "%s<B></B> "
	         "The enrollment challenge password is: <B>X</B>",
	         mark);
	assert_str_ok(page, "X", NULL);
	snprintf(page, sizeof(page),
	         "%s 2A74C2A1 "
	         "The enrollment challenge password is: <B>X</B>",
	         mark);
	assert_str_ok(page, "X", NULL);
}

static void
test_error_pages_win(void **state)
{
	char *ch = SENTINEL, *tp = SENTINEL;

	(void)state;
	/* marker texts are found in any case and anywhere, before the challenge marker */
	assert_int_equal(parse_str("THE PASSWORD CACHE IS FULL. The enrollment challenge "
	                           "password is: <B>X</B>",
	                           &ch, &tp),
	                 P11E_ERR_PENDING);
	assert_int_equal(parse_str("You Do Not Have Sufficient Permission to enroll", &ch, &tp),
	                 P11E_ERR_REJECTED);
	assert_ptr_equal(ch, SENTINEL);
	assert_ptr_equal(tp, SENTINEL);
}

/* ---- challenge_check ---- */

static int
check(const char *ch, int chars, long length)
{
	int r;

	begin_capture();
	r = challenge_check(ch, chars, length);
	end_capture();
	return r;
}

static void
assert_check_fails(const char *ch, int chars, long length, const char *msg)
{
	assert_int_equal(check(ch, chars, length), P11E_ERR_VERIFY);
	assert_logged(msg);
	if (ch[0] != '\0')
		assert_not_logged(ch);
}

static void
test_check_any(void **state)
{
	(void)state;
	assert_int_equal(check(CHALLENGE, CONF_CHARS_ANY, 0), 0);
	assert_int_equal(check("a!b#C~9", CONF_CHARS_ANY, 7), 0);
	assert_check_fails("ab cd", CONF_CHARS_ANY, 0,
	                   "expected printable ASCII characters without spaces of any length, got "
	                   "5 characters (lowercase a-f, spaces, control or non-ASCII "
	                   "characters)");
	assert_check_fails("ab\tcd", CONF_CHARS_ANY, 0, "control");
}

static void
test_check_hex(void **state)
{
	(void)state;
	assert_int_equal(check(CHALLENGE, CONF_CHARS_HEX, 16), 0);
	assert_int_equal(check("8ce317021f690069", CONF_CHARS_HEX, 16), 0);
	assert_int_equal(check("0123456789abcdefABCDEF", CONF_CHARS_HEX, 0), 0);
	assert_check_fails("8CE317021F69006G", CONF_CHARS_HEX, 16,
	                   "expected 16 hexadecimal characters (0-9 A-F a-f), got 16 characters "
	                   "(digits, uppercase A-F, uppercase G-Z)");
	assert_check_fails("hello-world", CONF_CHARS_HEX, 0,
	                   "(lowercase a-f, lowercase g-z, punctuation)");
}

static void
test_check_digits(void **state)
{
	(void)state;
	assert_int_equal(check("0123456789", CONF_CHARS_DIGITS, 10), 0);
	assert_check_fails("01a", CONF_CHARS_DIGITS, 0,
	                   "expected digits of any length, got 3 characters (digits, lowercase "
	                   "a-f)");
}

static void
test_check_alnum(void **state)
{
	(void)state;
	assert_int_equal(check("aZ09xY", CONF_CHARS_ALNUM, 0), 0);
	assert_check_fails("a-b", CONF_CHARS_ALNUM, 0, "letters and digits");
	assert_check_fails("a-b", CONF_CHARS_ALNUM, 0, "(lowercase a-f, punctuation)");
}

static void
test_check_length(void **state)
{
	(void)state;
	assert_int_equal(check(CHALLENGE, CONF_CHARS_HEX, 16), 0);
	assert_check_fails("3F8A1C5D9E0B27461A2B3C4D5E6F7081", CONF_CHARS_HEX, 16,
	                   "expected 16 hexadecimal characters (0-9 A-F a-f), got 32 characters "
	                   "(digits, uppercase A-F)");
	assert_check_fails("ABC", CONF_CHARS_ANY, 4, "expected 4 printable ASCII");
	assert_check_fails("", CONF_CHARS_ANY, 4, "got 0 characters;");
	assert_int_equal(check("", CONF_CHARS_ANY, 0), 0);
}

static void
test_check_unknown_chars(void **state)
{
	(void)state;
	assert_int_equal(check("X", 99, 0), P11E_ERR_INTERNAL);
	assert_logged("unknown challenge character set 99");
}

/* ---- challenge_hresult_text ---- */

static void
assert_hresult(const char *text, const char *want_prefix)
{
	const char *s = challenge_hresult_text(text);

	if (want_prefix == NULL) {
		if (s != NULL)
			fail_msg("\"%s\": expected NULL, got \"%s\"", text ? text : "(null)", s);
		return;
	}
	if (s == NULL || strncmp(s, want_prefix, strlen(want_prefix)) != 0)
		fail_msg("\"%s\": expected \"%s...\", got \"%s\"", text ? text : "(null)",
		         want_prefix, s ? s : "(null)");
}

static void
test_hresult_known(void **state)
{
	(void)state;
	assert_hresult("0x800b0110", "0x800b0110: the challenge password was already used");
	assert_hresult("failed: 0x80096004 (-2146869244)", "0x80096004: NDES requires");
	assert_hresult("The password is unknown 0x80070490.", "0x80070490: NDES does not know");
	assert_hresult("0x80094001", "0x80094001: the CA refused the subject");
	assert_hresult("RPC 0x800706ba", "0x800706ba: NDES cannot reach its CA");
	assert_hresult("0x80090005", "0x80090005: NDES cannot decrypt the client's PKCS7 message");
}

static void
test_hresult_case_and_decimal(void **state)
{
	(void)state;
	assert_hresult("0X800B0110", "0x800b0110:");
	assert_hresult("hr=0x800706BA", "0x800706ba:");
	assert_hresult("error -2147023728 (not found)", "0x80070490:");
}

static void
test_hresult_boundaries(void **state)
{
	(void)state;
	assert_hresult(NULL, NULL);
	assert_hresult("", NULL);
	assert_hresult("badRequest", NULL);
	assert_hresult("0x800b01101", NULL);  /* a longer number */
	assert_hresult("0x800b011", NULL);    /* a shorter one */
	assert_hresult("a0x80070490", NULL);  /* inside a hex run */
	assert_hresult("-21470237281", NULL); /* a longer decimal */
	assert_hresult("0x80070491", NULL);
}

static void
test_hresult_first_in_text(void **state)
{
	(void)state;
	assert_hresult("0x800706ba then 0x800b0110", "0x800706ba:");
	assert_hresult("0x800b0110 then 0x800706ba", "0x800b0110:");
}

static void
test_url_for_log(void **state)
{
	char buf[64], small[12];

	(void)state;
	http_url_for_log("https://u:secret@ndes.example.com/x", buf, sizeof(buf));
	assert_string_equal(buf, "https://ndes.example.com/x");
	http_url_for_log("https://ndes.example.com/a@b", buf, sizeof(buf));
	assert_string_equal(buf, "https://ndes.example.com/a@b");
	http_url_for_log("https://ndes.example.com/CertSrv/MSCEP_ADMIN", small, sizeof(small));
	assert_string_equal(small, "https://...");
	http_url_for_log("https://u:secret@ndes.example.com/", small, sizeof(small));
	assert_string_equal(small, "https://...");
	http_url_for_log("https://ndes.example.com/CertSrv/MSCEP_ADMIN/0123456789012345678901234",
	                 buf, sizeof(buf));
	assert_int_equal(strlen(buf), sizeof(buf) - 1);
	assert_string_equal(buf + sizeof(buf) - 4, "...");
}

/* Passwords holding '@', '#', '/', '?' or ':', and values without a scheme. */
static void
test_url_for_log_odd_passwords(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"https://u:p@ss@ndes.example.com/x", "https://ndes.example.com/x"},
	    {"http://u:p#ss@ndes.example.com/", "http://ndes.example.com/"},
	    {"http://u:p/ss@ndes.example.com/", "http://ndes.example.com/"},
	    {"http://u:p?ss@ndes.example.com/a", "http://ndes.example.com/a"},
	    {"http://u:p:ss@ndes.example.com:8080/a", "http://ndes.example.com:8080/a"},
	    {"http://user@ndes.example.com/", "http://ndes.example.com/"},
	    {"u:pss@proxy.example.com:3128", "proxy.example.com:3128"},
	    {"socks5h://u:pss@proxy:1080", "socks5h://proxy:1080"},
	    {"https://u:pss@[::1]:8443/x", "https://[::1]:8443/x"},
	    /* no user information: as written */
	    {"https://ndes.example.com:8443/a@b?c=d@e", "https://ndes.example.com:8443/a@b?c=d@e"},
	    {"https://[::1]:8443/x", "https://[::1]:8443/x"},
	    {"proxy.example.com:3128", "proxy.example.com:3128"},
	    {"http://ca/a b", "http://ca/a b"},
	    {"", ""},
	};
	char buf[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		http_url_for_log(cases[i].in, buf, sizeof(buf));
		if (strcmp(buf, cases[i].out) != 0)
			fail_msg("%s: expected %s, got %s", cases[i].in, cases[i].out, buf);
	}
}

/* ---- challenge_fetch without a network ---- */

static void
test_fetch_config_errors(void **state)
{
	struct conf c;
	char *ch = SENTINEL, *tp = SENTINEL;
	int r;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.challenge_url = "https://ndes.example.com/CertSrv/MSCEP_ADMIN";
	c.challenge_user = "enroll@example.com";
	begin_capture();
	r = challenge_fetch(&c, &ch, &tp);
	end_capture();
	assert_int_equal(r, P11E_ERR_CONFIG);
	assert_logged("challenge_password_file");
	c.challenge_password_file = "/nonexistent/ndes-password";
	begin_capture();
	r = challenge_fetch(&c, &ch, &tp);
	end_capture();
	assert_int_equal(r, P11E_ERR_FILE);
	assert_logged("NDES password file /nonexistent/ndes-password");
	assert_ptr_equal(ch, SENTINEL);
	assert_ptr_equal(tp, SENTINEL);
}

/* NTLM over plain http: refused without challenge_insecure_http, before the password is
 * read or anything is sent; with it, a warning on each call. */
static void
test_fetch_http_needs_consent(void **state)
{
	struct conf c;
	char *ch = SENTINEL, *tp = SENTINEL;
	unsigned long before = http_request_count();
	int r;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.challenge_url = "http://u:Url-S3cret@127.0.0.1:9/CertSrv/MSCEP_ADMIN/";
	c.challenge_user = "enroll@example.com";
	c.challenge_password_file = "/nonexistent/ndes-password";
	c.timeout = 5;
	begin_capture();
	r = challenge_fetch(&c, &ch, &tp);
	end_capture();
	assert_int_equal(r, P11E_ERR_CONFIG);
	assert_logged("the NDES challenge page http://127.0.0.1:9/CertSrv/MSCEP_ADMIN/ is plain "
	              "http: the NTLM login to it could be captured and cracked offline or "
	              "relayed; use https, or accept that risk with [scep] "
	              "challenge_insecure_http = yes");
	assert_not_logged("Url-S3cret");
	assert_not_logged("ndes-password");
	assert_int_equal(http_request_count(), before);
	assert_ptr_equal(ch, SENTINEL);
	c.challenge_insecure_http = 1;
	begin_capture();
	r = challenge_fetch(&c, &ch, &tp);
	end_capture();
	assert_int_equal(r, P11E_ERR_FILE); /* on to the password file */
	assert_logged("warning: the NDES challenge page http://127.0.0.1:9/CertSrv/MSCEP_ADMIN/ "
	              "is plain http: the NTLM login to it can be captured and cracked offline or "
	              "relayed ([scep] challenge_insecure_http = yes accepts that); use https");
	assert_not_logged("Url-S3cret");
	assert_ptr_equal(ch, SENTINEL);
	assert_ptr_equal(tp, SENTINEL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_success_utf16le),
	    cmocka_unit_test(test_success_utf16le_bom),
	    cmocka_unit_test(test_success_utf16be_bom),
	    cmocka_unit_test(test_success_utf8),
	    cmocka_unit_test(test_challenge32),
	    cmocka_unit_test(test_no_expire),
	    cmocka_unit_test(test_no_bold),
	    cmocka_unit_test(test_lowercase_hex),
	    cmocka_unit_test(test_cache_full),
	    cmocka_unit_test(test_no_permission),
	    cmocka_unit_test(test_no_marker),
	    cmocka_unit_test(test_evil_huge_token),
	    cmocka_unit_test(test_thumbprint_optional_out),
	    cmocka_unit_test(test_marker_and_tags_case_insensitive),
	    cmocka_unit_test(test_token_without_bold),
	    cmocka_unit_test(test_empty_token),
	    cmocka_unit_test(test_bad_characters),
	    cmocka_unit_test(test_non_ascii_utf16_token),
	    cmocka_unit_test(test_utf16_surrogates_and_odd_length),
	    cmocka_unit_test(test_utf16be_without_bom),
	    cmocka_unit_test(test_utf8_bom_and_nul),
	    cmocka_unit_test(test_length_limits),
	    cmocka_unit_test(test_megabyte_token),
	    cmocka_unit_test(test_empty_and_null_body),
	    cmocka_unit_test(test_thumbprint_variants),
	    cmocka_unit_test(test_error_pages_win),
	    cmocka_unit_test(test_check_any),
	    cmocka_unit_test(test_check_hex),
	    cmocka_unit_test(test_check_digits),
	    cmocka_unit_test(test_check_alnum),
	    cmocka_unit_test(test_check_length),
	    cmocka_unit_test(test_check_unknown_chars),
	    cmocka_unit_test(test_hresult_known),
	    cmocka_unit_test(test_hresult_case_and_decimal),
	    cmocka_unit_test(test_hresult_boundaries),
	    cmocka_unit_test(test_hresult_first_in_text),
	    cmocka_unit_test(test_url_for_log),
	    cmocka_unit_test(test_url_for_log_odd_passwords),
	    cmocka_unit_test(test_fetch_config_errors),
	    cmocka_unit_test(test_fetch_http_needs_consent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
