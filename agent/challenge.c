/*
 * challenge.c: one-time challenges from a Microsoft NDES MSCEP_ADMIN page.
 * The page is received into the secret arena and decoded into an ASCII
 * working buffer there (both hold the challenge), then searched for its
 * marker texts; every buffer is wiped when released (secret.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "challenge.h"
#include "conf.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "netproc.h"
#include "secret.h"

#define NON_ASCII '\x7f' /* what a non-ASCII character becomes: a control, never matched */
#define SNIFF_BYTES 64   /* bytes examined for NULs when a page has no byte-order mark */
#define THUMB_MAX 128    /* hex digits (SHA-512) */
#define FETCH_MAX_BODY (256 * 1024)
#define FETCH_MAX_REDIRECTS 3
#define URL_LOG 121

#define MARK_CHALLENGE "enrollment challenge password is:"
#define MARK_THUMBPRINT "thumbprint (hash value) for the CA certificate is:"
#define MARK_CACHE_FULL "password cache is full"
#define MARK_NO_PERMISSION "do not have sufficient permission"
#define WS " \t\r\n\f\v"

enum encoding { ENC_UTF8, ENC_UTF16LE, ENC_UTF16BE };

/* The encoding of body, and how many byte-order-mark bytes to skip. */
static enum encoding
detect(const unsigned char *b, size_t len, size_t *skip)
{
	size_t i, n, even = 0, odd = 0;

	*skip = 0;
	if (len >= 2 && b[0] == 0xff && b[1] == 0xfe) {
		*skip = 2;
		return ENC_UTF16LE;
	}
	if (len >= 2 && b[0] == 0xfe && b[1] == 0xff) {
		*skip = 2;
		return ENC_UTF16BE;
	}
	if (len >= 3 && b[0] == 0xef && b[1] == 0xbb && b[2] == 0xbf) {
		*skip = 3;
		return ENC_UTF8;
	}
	n = (len < SNIFF_BYTES ? len : SNIFF_BYTES) / 2;
	for (i = 0; i < n; i++) {
		even += b[2 * i] == 0;
		odd += b[2 * i + 1] == 0;
	}
	if (n > 0 && 2 * odd >= n && odd > even)
		return ENC_UTF16LE;
	if (n > 0 && 2 * even >= n && even > odd)
		return ENC_UTF16BE;
	return ENC_UTF8;
}

/* ASCII characters as they are, NUL as a space, anything else as NON_ASCII. */
static char
ascii(unsigned long u)
{
	if (u == 0)
		return ' ';
	return u < 0x80 ? (char)u : NON_ASCII;
}

/* The page as a NUL-terminated ASCII string in the arena (secret_release). */
static int
decode(const unsigned char *b, size_t len, char **out)
{
	enum encoding enc;
	size_t i, skip, n = 0, pending = 0;
	unsigned long u, lo;
	char *w = NULL;
	int r;

	enc = detect(b, len, &skip);
	if (len == SIZE_MAX)
		return P11E_ERR_ALLOC;
	if ((r = secret_alloc(len + 1, (void **)&w)) != 0)
		return r;
	if (enc == ENC_UTF8) {
		for (i = skip; i < len; i++) {
			if (b[i] >= 0x80 && b[i] < 0xc0 && pending > 0) {
				pending--;
				continue;
			}
			w[n++] = ascii(b[i]);
			pending = b[i] >= 0xf0 ? 3 : b[i] >= 0xe0 ? 2 : b[i] >= 0xc0 ? 1 : 0;
		}
	} else {
		for (i = skip; i + 1 < len; i += 2) {
			u = enc == ENC_UTF16LE ? b[i] | (unsigned long)b[i + 1] << 8
			                       : (unsigned long)b[i] << 8 | b[i + 1];
			if (u >= 0xd800 && u <= 0xdbff && i + 3 < len) {
				lo = enc == ENC_UTF16LE ? b[i + 2] | (unsigned long)b[i + 3] << 8
				                        : (unsigned long)b[i + 2] << 8 | b[i + 3];
				if (lo >= 0xdc00 && lo <= 0xdfff)
					i += 2;
			}
			w[n++] = ascii(u);
		}
	}
	w[n] = '\0';
	*out = w;
	return 0;
}

static int
lower(int ch)
{
	return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

static int
is_ws(int ch)
{
	return ch != '\0' && strchr(WS, ch) != NULL;
}

/* Whether s starts with the ASCII prefix p, ignoring case. */
static int
starts_ci(const char *s, const char *p)
{
	for (; *p != '\0'; s++, p++)
		if (lower((unsigned char)*s) != lower((unsigned char)*p))
			return 0;
	return 1;
}

/* First occurrence of the ASCII needle in h, ignoring case; or NULL. */
static const char *
find_ci(const char *h, const char *needle)
{
	for (; *h != '\0'; h++)
		if (starts_ci(h, needle))
			return h;
	return NULL;
}

static const char *
skip_ws(const char *p)
{
	return p + strspn(p, WS);
}

/* If p (after whitespace) is a <B> tag, the text up to the next </B>: [*b, *e). */
static int
bold(const char *p, const char **b, const char **e)
{
	const char *end;

	p = skip_ws(p);
	if (!starts_ci(p, "<b") || (p[2] != '>' && !is_ws((unsigned char)p[2])))
		return 0;
	if ((p = strchr(p, '>')) == NULL || (end = find_ci(p + 1, "</b>")) == NULL)
		return 0;
	p = skip_ws(p + 1);
	while (end > p && is_ws((unsigned char)end[-1]))
		end--;
	*b = p;
	*e = end;
	return 1;
}

static int
is_hex(int ch)
{
	return (ch >= '0' && ch <= '9') || (lower(ch) >= 'a' && lower(ch) <= 'f');
}

/* The thumbprint after its marker, upper-cased hex without spaces; NULL if unusable. */
static int
thumbprint_of(const char *w, char **out)
{
	const char *p, *b, *e;
	char buf[THUMB_MAX + 1], *t;
	size_t n = 0;

	*out = NULL;
	if ((p = find_ci(w, MARK_THUMBPRINT)) == NULL || !bold(p + strlen(MARK_THUMBPRINT), &b, &e))
		return 0;
	for (; b < e; b++) {
		if (is_ws((unsigned char)*b))
			continue;
		if (!is_hex((unsigned char)*b) || n == THUMB_MAX)
			return 0;
		buf[n++] = (char)(*b >= 'a' ? *b - 'a' + 'A' : *b);
	}
	if (n == 0 || n % 2 != 0)
		return 0;
	buf[n] = '\0';
	if ((t = strdup(buf)) == NULL)
		return P11E_ERR_ALLOC;
	*out = t;
	return 0;
}

int
challenge_parse(const unsigned char *body, size_t len, char **challenge, char **thumbprint)
{
	char *w = NULL, *ch = NULL, *tp = NULL;
	const char *p, *b, *e;
	size_t n, i;
	int r = P11E_ERR_INTERNAL;

	if ((r = decode(body != NULL ? body : (const unsigned char *)"", len, &w)) != 0)
		goto out;
	if (find_ci(w, MARK_CACHE_FULL) != NULL) {
		r = P11E_ERR_PENDING;
		goto out;
	}
	if (find_ci(w, MARK_NO_PERMISSION) != NULL) {
		r = P11E_ERR_REJECTED;
		goto out;
	}
	r = P11E_ERR_MALFORMED;
	if ((p = find_ci(w, MARK_CHALLENGE)) == NULL) {
		log_error("the NDES page has no \"The " MARK_CHALLENGE "\"");
		goto out;
	}
	p += strlen(MARK_CHALLENGE);
	if (!bold(p, &b, &e)) {
		b = skip_ws(p);
		e = b + strcspn(b, WS "<");
	}
	if ((n = (size_t)(e - b)) == 0) {
		log_error("the NDES page has no challenge after \"" MARK_CHALLENGE "\"");
		goto out;
	}
	if (n > CHALLENGE_MAX) {
		log_error("the challenge on the NDES page is longer than %d characters (%zu)",
		          CHALLENGE_MAX, n);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (b[i] <= ' ' || b[i] >= 0x7f || strchr("<>&", b[i]) != NULL) {
			log_error("the challenge on the NDES page holds spaces, control or "
			          "non-ASCII characters, or HTML markup");
			goto out;
		}
	}
	if (thumbprint != NULL && (r = thumbprint_of(w, &tp)) != 0)
		goto out;
	if ((r = secret_alloc(n + 1, (void **)&ch)) != 0)
		goto out;
	memcpy(ch, b, n);
	ch[n] = '\0';
	*challenge = ch;
	ch = NULL;
	if (thumbprint != NULL) {
		*thumbprint = tp;
		tp = NULL;
	}
	r = 0;
out:
	secret_release(w);
	secret_free(ch);
	free(tp);
	return r;
}

enum char_class {
	CC_DIGIT = 1 << 0,
	CC_UPPER_HEX = 1 << 1,
	CC_UPPER_OTHER = 1 << 2,
	CC_LOWER_HEX = 1 << 3,
	CC_LOWER_OTHER = 1 << 4,
	CC_PUNCT = 1 << 5,
	CC_OTHER = 1 << 6, /* space, control, non-ASCII */
};

static const struct {
	unsigned bit;
	const char *name;
} class_names[] = {
    {CC_DIGIT, "digits"},
    {CC_UPPER_HEX, "uppercase A-F"},
    {CC_UPPER_OTHER, "uppercase G-Z"},
    {CC_LOWER_HEX, "lowercase a-f"},
    {CC_LOWER_OTHER, "lowercase g-z"},
    {CC_PUNCT, "punctuation"},
    {CC_OTHER, "spaces, control or non-ASCII characters"},
};

static unsigned
char_class(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return CC_DIGIT;
	if (ch >= 'A' && ch <= 'Z')
		return ch <= 'F' ? CC_UPPER_HEX : CC_UPPER_OTHER;
	if (ch >= 'a' && ch <= 'z')
		return ch <= 'f' ? CC_LOWER_HEX : CC_LOWER_OTHER;
	if (ch > ' ' && ch < 0x7f)
		return CC_PUNCT;
	return CC_OTHER;
}

int
challenge_check(const char *ch, int chars, long length)
{
	unsigned allowed, seen = 0;
	const char *expect;
	char classes[160], want_len[32];
	size_t i, n, pos = 0;
	int k;

	switch (chars) {
	case CONF_CHARS_ANY:
		allowed = CC_DIGIT | CC_UPPER_HEX | CC_UPPER_OTHER | CC_LOWER_HEX | CC_LOWER_OTHER |
		          CC_PUNCT;
		expect = "printable ASCII characters without spaces";
		break;
	case CONF_CHARS_HEX:
		allowed = CC_DIGIT | CC_UPPER_HEX | CC_LOWER_HEX;
		expect = "hexadecimal characters (0-9 A-F a-f)";
		break;
	case CONF_CHARS_DIGITS:
		allowed = CC_DIGIT;
		expect = "digits";
		break;
	case CONF_CHARS_ALNUM:
		allowed = CC_DIGIT | CC_UPPER_HEX | CC_UPPER_OTHER | CC_LOWER_HEX | CC_LOWER_OTHER;
		expect = "letters and digits";
		break;
	default:
		log_error("unknown challenge character set %d (a bug)", chars);
		return P11E_ERR_INTERNAL;
	}
	if (ch == NULL)
		return P11E_ERR_INTERNAL;
	n = strlen(ch);
	for (i = 0; i < n; i++)
		seen |= char_class((unsigned char)ch[i]);
	if ((seen & ~allowed) == 0 && (length <= 0 || (size_t)length == n))
		return 0;
	classes[0] = '\0';
	for (i = 0; i < sizeof(class_names) / sizeof(class_names[0]); i++) {
		if (!(seen & class_names[i].bit))
			continue;
		k = snprintf(classes + pos, sizeof(classes) - pos, "%s%s", pos ? ", " : "",
		             class_names[i].name);
		if (k < 0 || (size_t)k >= sizeof(classes) - pos)
			break;
		pos += (size_t)k;
	}
	if (length > 0)
		snprintf(want_len, sizeof(want_len), "%ld ", length);
	else
		want_len[0] = '\0';
	log_error("the NDES challenge does not match [scep] challenge_chars/challenge_length: "
	          "expected %s%s%s, got %zu characters%s%s%s; check those settings or ask the "
	          "NDES administrator",
	          want_len, expect, length > 0 ? "" : " of any length", n, pos ? " (" : "", classes,
	          pos ? ")" : "");
	return P11E_ERR_VERIFY;
}

static int
is_https(const char *url)
{
	return strncasecmp(url, "https://", 8) == 0;
}

/* Statuses a proxy answers with. */
static int
proxy_status(long status)
{
	return status == 407 || status == 502 || status == 503 || status == 504;
}

/* GETs the page, following allowed redirects; *out is the final non-3xx response. */
static int
fetch_page(const struct conf *c, const char *password, char *logurl, struct http_resp **out)
{
	struct http_opts o;
	struct http_resp *resp = NULL;
	char *url = NULL, logto[URL_LOG], first[URL_LOG];
	int r = P11E_ERR_INTERNAL, hops;

	http_url_for_log(c->challenge_url, first, sizeof(first));
	if ((url = strdup(c->challenge_url)) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (hops = 0;; hops++) {
		memset(&o, 0, sizeof(o));
		o.timeout_s = c->timeout;
		o.max_body = FETCH_MAX_BODY;
		o.secret_body = 1; /* the page holds the challenge */
		o.ca_file = c->ca_file;
		o.no_proxy = !c->use_proxy;
		o.proxy = c->proxy;
		o.user = c->challenge_user;
		o.password = password;
		o.auth = HTTP_AUTH_NTLM | (is_https(url) ? HTTP_AUTH_BASIC : 0);
		http_url_for_log(url, logurl, URL_LOG);
		log_debug("NDES challenge page %s: user %s, %s", logurl, c->challenge_user,
		          is_https(url) ? "NTLM or Basic (https)"
		                        : "NTLM only (no Basic over http: it sends the password "
		                          "in clear)");
		http_resp_free(resp);
		resp = NULL;
		if ((r = http_get(url, &o, &resp)) != 0)
			goto out;
		if (resp->status < 300 || resp->status > 399)
			break;
		r = P11E_ERR_NETWORK;
		if (resp->location == NULL) {
			log_error(
			    "NDES challenge page %s answered HTTP %ld without a Location; check "
			    "[scep] challenge_url",
			    logurl, resp->status);
			goto out;
		}
		http_url_for_log(resp->location, logto, sizeof(logto));
		if (!resp->location_same_https) {
			log_error(
			    "NDES challenge page %s redirects to %s, which is not https on the "
			    "same host and port: the credentials of %s are not sent there; if "
			    "that is the right page, set [scep] challenge_url to it",
			    logurl, logto, c->challenge_user);
			goto out;
		}
		if (hops == FETCH_MAX_REDIRECTS) {
			log_error(
			    "NDES challenge page %s: more than %d redirects (the last to %s); "
			    "check [scep] challenge_url",
			    first, FETCH_MAX_REDIRECTS, logto);
			goto out;
		}
		log_debug("NDES challenge page %s: HTTP %ld, redirected to %s", logurl,
		          resp->status, logto);
		free(url);
		url = resp->location;
		resp->location = NULL;
	}
	*out = resp;
	resp = NULL;
	r = 0;
out:
	http_resp_free(resp);
	free(url);
	return r;
}

/*
 * libcurl's NTLM turns each password byte into one UTF-16 unit, i.e. reads
 * it as Latin-1, while Windows hashes the UTF-16 of the real characters.
 * Re-encode a UTF-8 password as Latin-1 so both agree; characters beyond
 * U+00FF cannot be sent that way.
 */
static int
latin1_in_place(char *pw, const char *file)
{
	unsigned char *s = (unsigned char *)pw, *d = s;

	while (*s != '\0') {
		if (*s < 0x80) {
			*d++ = *s++;
		} else if ((s[0] == 0xc2 || s[0] == 0xc3) && (s[1] & 0xc0) == 0x80) {
			*d++ = (unsigned char)(((s[0] & 0x03) << 6) | (s[1] & 0x3f));
			s += 2;
		} else {
			log_error(
			    "the NDES password in %s has characters beyond Latin-1 (or is not "
			    "UTF-8), which NTLM as libcurl speaks it cannot send; use a "
			    "password of Latin-1 characters",
			    file);
			return P11E_ERR_CONFIG;
		}
	}
	*d = '\0';
	return 0;
}

int
challenge_fetch(const struct conf *c, char **challenge, char **thumbprint)
{
	struct http_resp *resp = NULL;
	char *pw = NULL, *ch = NULL, *tp = NULL, logurl[URL_LOG];
	int r = P11E_ERR_INTERNAL;

	if (c->challenge_url == NULL || c->challenge_user == NULL ||
	    c->challenge_password_file == NULL) {
		log_error("[scep] challenge_url needs challenge_user and challenge_password_file");
		r = P11E_ERR_CONFIG;
		goto out;
	}
	if (!is_https(c->challenge_url)) {
		http_url_for_log(c->challenge_url, logurl, sizeof(logurl));
		if (!c->challenge_insecure_http) {
			log_error("the NDES challenge page %s is plain http: the NTLM login to it "
			          "could be captured and cracked offline or relayed; use https, or "
			          "accept that risk with [scep] challenge_insecure_http = yes",
			          logurl);
			r = P11E_ERR_CONFIG;
			goto out;
		}
		log_warn("the NDES challenge page %s is plain http: the NTLM login to it can be "
		         "captured and cracked offline or relayed ([scep] challenge_insecure_http "
		         "= yes accepts that); use https",
		         logurl);
	}
	if ((r = secret_read_file(c->challenge_password_file, "NDES password file", &pw)) != 0 ||
	    (r = latin1_in_place(pw, c->challenge_password_file)) != 0)
		goto out;
	if ((r = fetch_page(c, pw, logurl, &resp)) != 0)
		goto out;
	if (resp->status == 401) {
		log_error("the NDES challenge page %s refused the credentials of %s (HTTP 401%s); "
		          "check [scep] challenge_user and challenge_password_file",
		          logurl, c->challenge_user,
		          is_https(logurl) ? "" : "; over http only NTLM is tried");
		r = P11E_ERR_REJECTED;
		goto out;
	}
	if (resp->status != 200) {
		log_error("the NDES challenge page %s answered HTTP %ld; check [scep] "
		          "challenge_url%s",
		          logurl, resp->status,
		          c->use_proxy && proxy_status(resp->status)
		              ? ", or [scep] proxy and use_proxy (a proxy may have answered)"
		              : "");
		r = P11E_ERR_NETWORK;
		goto out;
	}
	/* The page (its encodings, its HTML) is read in the network process. */
	r = netproc_enabled()
	        ? netproc_page_parse(resp->body, resp->len, CHALLENGE_MAX, &ch,
	                             thumbprint != NULL ? &tp : NULL)
	        : challenge_parse(resp->body, resp->len, &ch, thumbprint != NULL ? &tp : NULL);
	if (r == P11E_ERR_PENDING)
		log_error("NDES's password cache is full (it keeps a few unused one-time passwords "
		          "for 60 minutes): wait, or ask the NDES administrator to raise the cache "
		          "size");
	else if (r == P11E_ERR_REJECTED)
		log_error("NDES: %s does not have sufficient permission to enroll with SCEP; ask "
		          "the NDES administrator",
		          c->challenge_user);
	else if (r == P11E_ERR_MALFORMED)
		log_error("no usable challenge on %s; check that [scep] challenge_url names the "
		          "MSCEP_ADMIN page (https://SERVER/CertSrv/MSCEP_ADMIN)",
		          logurl);
	if (r != 0)
		goto out;
	if ((r = challenge_check(ch, c->challenge_chars, c->challenge_length)) != 0)
		goto out;
	log_debug("NDES challenge page %s: a %zu-character challenge%s%s", logurl, strlen(ch),
	          tp != NULL ? ", CA thumbprint " : "", tp != NULL ? tp : "");
	*challenge = ch;
	ch = NULL;
	if (thumbprint != NULL) {
		*thumbprint = tp;
		tp = NULL;
	}
	r = 0;
out:
	http_resp_free(resp);
	secret_free(pw);
	secret_free(ch);
	free(tp);
	return r;
}

static const struct {
	const char *hex, *dec, *text;
} hresults[] = {
    {"0x800b0110", "-2146762480",
     "0x800b0110: the challenge password was already used; fetch a new one"},
    {"0x80096004", "-2146869244",
     "0x80096004: NDES requires a challenge password and the request had none; set [scep] "
     "challenge_url or challenge_file"},
    {"0x80070490", "-2147023728",
     "0x80070490: NDES does not know the challenge password (mistyped, expired after 60 "
     "minutes, or issued by another NDES server)"},
    {"0x80094001", "-2146877439",
     "0x80094001: the CA refused the subject of the request; check [subject]"},
    {"0x800706ba", "-2147023174",
     "0x800706ba: NDES cannot reach its CA (RPC server unavailable); ask the NDES "
     "administrator"},
    {"0x80090005", "-2146893819",
     "0x80090005: NDES cannot decrypt the client's PKCS7 message (wrong RA encryption "
     "certificate or a cipher it does not support)"},
};

static int
is_digit(int ch)
{
	return ch >= '0' && ch <= '9';
}

/* First occurrence in text of needle not followed by another digit of its kind. */
static const char *
find_code(const char *text, const char *needle, int (*digit)(int))
{
	const char *p = text, *q;

	while ((q = find_ci(p, needle)) != NULL) {
		if (!digit((unsigned char)q[strlen(needle)]) &&
		    (q == text || !digit((unsigned char)q[-1])))
			return q;
		p = q + 1;
	}
	return NULL;
}

const char *
challenge_hresult_text(const char *text)
{
	const char *best = NULL, *at = NULL, *p;
	size_t i;

	if (text == NULL)
		return NULL;
	for (i = 0; i < sizeof(hresults) / sizeof(hresults[0]); i++) {
		if ((p = find_code(text, hresults[i].hex, is_hex)) == NULL)
			p = find_code(text, hresults[i].dec, is_digit);
		if (p != NULL && (at == NULL || p < at)) {
			at = p;
			best = hresults[i].text;
		}
	}
	return best;
}
