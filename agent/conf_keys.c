/*
 * conf_keys.c: the keyword table and what a single value means.
 *
 * Each [section] key of the file has one entry (OpenSSH readconf style): the
 * handler that checks its value and the field of struct conf it fills. The
 * handlers of list values (the SAN lists, hook command lines) are conf_list.c's.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/obj_mac.h>

#include "conf.h"
#include "conf_int.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "secret.h"
#include "template.h"

#define LABEL_MAX 64
#define TIMEOUT_MAX 3600
#define CHALLENGE_LENGTH_MAX 256
#define DURATION_MAX (10L * 366 * 86400)
#define HOOK_TIMEOUT_MAX 3600

static int set_str(struct parser *, const struct keyword *, char *);
static int set_template(struct parser *, const struct keyword *, char *);
static int set_init_label(struct parser *, const struct keyword *, char *);
static int set_url(struct parser *, const struct keyword *, char *);
static int set_token_uri(struct parser *, const struct keyword *, char *);
static int set_challenge(struct parser *, const struct keyword *, char *);
static int set_path(struct parser *, const struct keyword *, char *);
static int set_fingerprint(struct parser *, const struct keyword *, char *);
static int set_timeout(struct parser *, const struct keyword *, char *);
static int set_key_type(struct parser *, const struct keyword *, char *);
static int set_label(struct parser *, const struct keyword *, char *);
static int set_proxy(struct parser *, const struct keyword *, char *);
static int set_bool(struct parser *, const struct keyword *, char *);
static int set_duration(struct parser *, const struct keyword *, char *);
static int set_chars(struct parser *, const struct keyword *, char *);
static int set_length(struct parser *, const struct keyword *, char *);
static int set_interval(struct parser *, const struct keyword *, char *);
static int set_before_expiry(struct parser *, const struct keyword *, char *);
static int set_jitter(struct parser *, const struct keyword *, char *);
static int set_hook_timeout(struct parser *, const struct keyword *, char *);

#define F(field) offsetof(struct conf, field)

/* Grouped by section, in the order the sections are listed in messages. */
const struct keyword conf_keywords[] = {
    {"scep", "url", set_url, F(scep_url)},
    {"scep", "challenge", set_challenge, F(challenge)},
    {"scep", "challenge_file", set_path, F(challenge_file)},
    {"scep", "ca_fingerprint", set_fingerprint, F(ca_fp)},
    {"scep", "timeout", set_timeout, F(timeout)},
    {"scep", "challenge_url", set_url, F(challenge_url)},
    {"scep", "challenge_user", set_str, F(challenge_user)},
    {"scep", "challenge_password_file", set_path, F(challenge_password_file)},
    {"scep", "challenge_chars", set_chars, F(challenge_chars)},
    {"scep", "challenge_length", set_length, F(challenge_length)},
    {"scep", "challenge_insecure_http", set_bool, F(challenge_insecure_http)},
    {"scep", "use_proxy", set_bool, F(use_proxy)},
    {"scep", "proxy", set_proxy, F(proxy)},
    {"scep", "ca_file", set_path, F(ca_file)},
    {"token", "uri", set_token_uri, F(token_uri)},
    {"token", "module", set_path, F(module)},
    {"token", "pin_file", set_path, F(pin_file)},
    {"token", "pin_map_file", set_path, F(pin_map_file)},
    {"token", "init", set_bool, F(token_init)},
    {"token", "so_pin_file", set_path, F(so_pin_file)},
    {"token", "init_label", set_init_label, F(init_label)},
    {"key", "type", set_key_type, F(key_type)},
    {"key", "label", set_label, F(key_label)},
    {"subject", "dn", set_template, F(dn)},
    {"subject", "san_dns", conf_set_list, F(san_dns)},
    {"subject", "san_email", conf_set_list, F(san_email)},
    {"subject", "san_uri", conf_set_list, F(san_uri)},
    {"subject", "san_ip", conf_set_ip_list, F(san_ip)},
    {"subject", "san_upn", conf_set_list, F(san_upn)},
    {"trust", "dir", set_path, F(trust_dir)},
    {"trust", "root_file", set_path, F(trust_root_file)},
    {"trust", "fetch_aia", set_bool, F(trust_fetch_aia)},
    {"agent", "state_dir", set_path, F(state_dir)},
    {"agent", "cert_file", set_path, F(cert_file)},
    {"agent", "metrics_file", set_path, F(metrics_file)},
    {"agent", "retry_min", set_duration, F(retry_min)},
    {"agent", "retry_max", set_duration, F(retry_max)},
    {"renewal", "interval", set_interval, F(renew_interval)},
    {"renewal", "before_expiry", set_before_expiry, F(renew_before_pct)},
    {"renewal", "new_key", set_bool, F(renew_new_key)},
    {"renewal", "keep_old", set_bool, F(renew_keep_old)},
    {"renewal", "jitter", set_jitter, F(renew_jitter_pct)},
    {"hooks", "after", conf_set_command, F(hook_after)},
    {"hooks", "before_remove", conf_set_command, F(hook_before_remove)},
    {"hooks", "timeout", set_hook_timeout, F(hook_timeout)},
};

#define NKEYWORDS (sizeof(conf_keywords) / sizeof(conf_keywords[0]))

_Static_assert(NKEYWORDS <= CONF_KEYWORDS_MAX, "raise CONF_KEYWORDS_MAX in conf_int.h");

const size_t conf_nkeywords = NKEYWORDS;

static const struct {
	const char *name;
	int type;
	int bits;
	int curve;
} key_types[] = {
    {"rsa:2048", CONF_KEY_RSA, 2048, 0},
    {"rsa:3072", CONF_KEY_RSA, 3072, 0},
    {"rsa:4096", CONF_KEY_RSA, 4096, 0},
    {"ec:P-256", CONF_KEY_EC, 256, NID_X9_62_prime256v1},
    {"ec:P-384", CONF_KEY_EC, 384, NID_secp384r1},
};

static int
set_str(struct parser *p, const struct keyword *kw, char *v)
{
	return conf_dup_str(v, conf_field(p, kw));
}

/* A value that may hold provision's {placeholders}: each must be known. */
int
conf_check_template(struct parser *p, const struct keyword *kw, const char *v)
{
	char why[256];

	if (tmpl_check(v, why, sizeof(why)) != 0)
		return conf_kw_error(p, kw, "%s", why);
	return 0;
}

static int
set_template(struct parser *p, const struct keyword *kw, char *v)
{
	int r;

	if ((r = conf_check_template(p, kw, v)) != 0)
		return r;
	return set_str(p, kw, v);
}

/* A token label to give blank tokens: a template, at most 32 bytes as written. */
static int
set_init_label(struct parser *p, const struct keyword *kw, char *v)
{
	if (strlen(v) > 32)
		return conf_kw_error(
		    p, kw, "the label is %zu bytes long (a token label has 1 to 32)", strlen(v));
	return set_template(p, kw, v);
}

static int
set_url(struct parser *p, const struct keyword *kw, char *v)
{
	char shown[CONF_URL_SHOWN + 1];
	size_t skip = 0, i;

	if (strncasecmp(v, "http://", 7) == 0)
		skip = 7;
	else if (strncasecmp(v, "https://", 8) == 0)
		skip = 8;
	for (i = 0; skip != 0 && v[i] != '\0'; i++)
		if ((unsigned char)v[i] <= ' ' || v[i] == 0x7f)
			skip = 0;
	if (skip == 0 || v[skip] == '\0' || v[skip] == '/') {
		http_url_for_log(v, shown, sizeof(shown)); /* never a user:password@ */
		return conf_kw_error(p, kw,
		                     "'%s' is not an http:// or https:// URL (expected e.g. "
		                     "http://ca.example.com/scep)",
		                     shown);
	}
	return set_str(p, kw, v);
}

/* Whether s contains the lower-case ASCII needle, ignoring case. */
static int
contains_ci(const char *s, const char *needle)
{
	size_t n = strlen(needle);

	for (; *s != '\0'; s++)
		if (strncasecmp(s, needle, n) == 0)
			return 1;
	return 0;
}

static int
set_token_uri(struct parser *p, const struct keyword *kw, char *v)
{
	if (strncmp(v, "pkcs11:", 7) == 0)
		return set_str(p, kw, v);
	/* A pin-value attribute is a PIN: a rejected value is not shown then. */
	if (contains_ci(v, "pin-value"))
		return conf_kw_error(
		    p, kw,
		    "the value (not shown: it has a pin-value) is not a PKCS#11 URI "
		    "(expected e.g. pkcs11:token=mytoken)");
	return conf_kw_error(p, kw,
	                     "'%s' is not a PKCS#11 URI (expected e.g. pkcs11:token=mytoken)", v);
}

static int
set_challenge(struct parser *p, const struct keyword *kw, char *v)
{
	char **dst = conf_field(p, kw);

	if ((p->mode & 077) != 0) {
		log_error("%s: [%s] %s: the file holds a secret but is readable by others "
		          "(mode %04o); chmod 600 it or use challenge_file",
		          p->file, kw->section, kw->key, (unsigned)(p->mode & 07777));
		return P11E_ERR_CONFIG;
	}
	return secret_dup(v, dst);
}

static int
set_path(struct parser *p, const struct keyword *kw, char *v)
{
	if (v[0] == '/')
		return conf_dup_str(v, conf_field(p, kw));
	while (v[0] == '.' && v[1] == '/')
		v += 2;
	return conf_path_join(p->base, v, conf_field(p, kw));
}

static int
set_fingerprint(struct parser *p, const struct keyword *kw, char *v)
{
	unsigned char fp[32];
	const char *s = v;
	size_t digits = 0, len, want = 0;
	int alg = CONF_FP_NONE, h;

	if (strncasecmp(s, "sha256:", 7) == 0) {
		alg = CONF_FP_SHA256;
		s += 7;
	} else if (strncasecmp(s, "sha1:", 5) == 0) {
		alg = CONF_FP_SHA1;
		s += 5;
	}
	for (; *s != '\0'; s++) {
		if (*s == ':' || *s == ' ' || *s == '\t')
			continue;
		if ((h = OPENSSL_hexchar2int((unsigned char)*s)) < 0)
			return conf_kw_error(
			    p, kw,
			    "'%s' is not a hex fingerprint (expected e.g. sha256:AB:CD:..., "
			    "32 bytes for SHA-256 or 20 for SHA-1)",
			    v);
		if (digits / 2 < sizeof(fp))
			fp[digits / 2] = digits % 2 == 0 ? (unsigned char)(h << 4)
			                                 : (unsigned char)(fp[digits / 2] | h);
		digits++;
	}
	if (digits % 2 != 0)
		return conf_kw_error(p, kw, "'%s' has an odd number of hex digits", v);
	len = digits / 2;
	if (alg == CONF_FP_NONE) {
		if (len == 32)
			alg = CONF_FP_SHA256;
		else if (len == 20)
			alg = CONF_FP_SHA1;
		else
			return conf_kw_error(
			    p, kw, "'%s' has %zu bytes (expected 32 for SHA-256 or 20 for SHA-1)",
			    v, len);
	}
	want = alg == CONF_FP_SHA256 ? 32 : 20;
	if (len != want)
		return conf_kw_error(p, kw, "'%s' has %zu bytes (a %s fingerprint has %zu)", v, len,
		                     alg == CONF_FP_SHA256 ? "SHA-256" : "SHA-1", want);
	memcpy(p->c->ca_fp, fp, len);
	p->c->ca_fp_len = len;
	p->c->ca_fp_alg = alg;
	return 0;
}

static int
set_timeout(struct parser *p, const struct keyword *kw, char *v)
{
	long t = 0;

	if (v[strspn(v, "0123456789")] == '\0' && strlen(v) <= 9)
		t = strtol(v, NULL, 10);
	if (t < 1 || t > TIMEOUT_MAX)
		return conf_kw_error(p, kw, "'%s' is not a number of seconds from 1 to %d", v,
		                     TIMEOUT_MAX);
	p->c->timeout = t;
	return 0;
}

static int
set_length(struct parser *p, const struct keyword *kw, char *v)
{
	long n = -1;

	if (v[strspn(v, "0123456789")] == '\0' && strlen(v) <= 4)
		n = strtol(v, NULL, 10);
	if (n < 0 || n > CHALLENGE_LENGTH_MAX)
		return conf_kw_error(p, kw, "'%s' is not a length from 0 (any) to %d", v,
		                     CHALLENGE_LENGTH_MAX);
	p->c->challenge_length = n;
	return 0;
}

static int
set_bool(struct parser *p, const struct keyword *kw, char *v)
{
	int *field = (int *)(void *)((char *)p->c + kw->off);

	if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0)
		*field = 1;
	else if (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0)
		*field = 0;
	else
		return conf_kw_error(p, kw, "'%s' is not yes or no", v);
	return 0;
}

static int
set_duration(struct parser *p, const struct keyword *kw, char *v)
{
	long *field = (long *)(void *)((char *)p->c + kw->off);

	if (conf_parse_duration(v, field) != 0)
		return conf_kw_error(p, kw, "'%s' is not a duration (e.g. 90s, 30m, 1h)", v);
	return 0;
}

/* "20%": 0..max into *out; -1 when v is not a percentage. */
static int
parse_pct(const char *v, int max)
{
	size_t digits = strspn(v, "0123456789");
	long n;

	if (digits == 0 || digits > 3 || strcmp(v + digits, "%") != 0)
		return -1;
	n = strtol(v, NULL, 10);
	return n > max ? -1 : (int)n;
}

static int
set_interval(struct parser *p, const struct keyword *kw, char *v)
{
	if (strcmp(v, "0") == 0) {
		p->c->renew_interval = 0;
		return 0;
	}
	if (conf_parse_duration(v, &p->c->renew_interval) != 0)
		return conf_kw_error(p, kw, "'%s' is not a duration (e.g. 30d, 12h; 0 = none)", v);
	return 0;
}

static int
set_before_expiry(struct parser *p, const struct keyword *kw, char *v)
{
	int pct;

	if (strchr(v, '%') != NULL) {
		if ((pct = parse_pct(v, 100)) < 1)
			return conf_kw_error(p, kw, "'%s' is not a percentage from 1%% to 100%%",
			                     v);
		p->c->renew_before_pct = pct;
		p->c->renew_before_secs = 0;
		return 0;
	}
	if (conf_parse_duration(v, &p->c->renew_before_secs) != 0)
		return conf_kw_error(
		    p, kw,
		    "'%s' is neither a percentage of the lifetime (e.g. 20%%) nor a "
		    "duration (e.g. 14d)",
		    v);
	p->c->renew_before_pct = 0;
	return 0;
}

static int
set_jitter(struct parser *p, const struct keyword *kw, char *v)
{
	int pct = parse_pct(v, 100);

	if (pct < 0)
		return conf_kw_error(p, kw, "'%s' is not a percentage from 0%% to 100%%", v);
	p->c->renew_jitter_pct = pct;
	return 0;
}

static int
set_chars(struct parser *p, const struct keyword *kw, char *v)
{
	static const char *const names[] = {"any", "hex", "digits", "alnum"};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(v, names[i]) == 0) {
			p->c->challenge_chars = (int)i;
			return 0;
		}
	}
	return conf_kw_error(p, kw, "'%s' is not a character set (use hex, digits, alnum or any)",
	                     v);
}

static int
set_proxy(struct parser *p, const struct keyword *kw, char *v)
{
	static const char *const schemes[] = {"http://",    "https://",  "socks4://",
	                                      "socks4a://", "socks5://", "socks5h://"};
	char shown[CONF_URL_SHOWN + 1];
	size_t i;

	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strncasecmp(v, schemes[i], strlen(schemes[i])) == 0 &&
		    v[strlen(schemes[i])] != '\0' && strpbrk(v, " \t") == NULL)
			return set_str(p, kw, v);
	http_url_for_log(v, shown, sizeof(shown)); /* a proxy URL may carry user:password@ */
	return conf_kw_error(
	    p, kw, "'%s' is not a proxy URL (expected e.g. http://proxy.example.com:3128)", shown);
}

static int
set_key_type(struct parser *p, const struct keyword *kw, char *v)
{
	size_t i;

	for (i = 0; i < sizeof(key_types) / sizeof(key_types[0]); i++) {
		if (strcasecmp(v, key_types[i].name) != 0)
			continue;
		p->c->key_type = key_types[i].type;
		p->c->key_bits = key_types[i].bits;
		p->c->key_curve = key_types[i].curve;
		return conf_dup_str(v, &p->c->key_type_str);
	}
	return conf_kw_error(
	    p, kw, "'%s' is not supported (use rsa:2048, rsa:3072, rsa:4096, ec:P-256 or ec:P-384)",
	    v);
}

static int
set_label(struct parser *p, const struct keyword *kw, char *v)
{
	size_t n = strlen(v);

	if (n > LABEL_MAX)
		return conf_kw_error(p, kw, "the label is %zu bytes long (use 1 to %d)", n,
		                     LABEL_MAX);
	return set_str(p, kw, v);
}

static int
set_hook_timeout(struct parser *p, const struct keyword *kw, char *v)
{
	if (conf_parse_duration(v, &p->c->hook_timeout) != 0 ||
	    p->c->hook_timeout > HOOK_TIMEOUT_MAX)
		return conf_kw_error(p, kw, "'%s' is not a duration from 1s to 1h (e.g. 60s, 5m)",
		                     v);
	return 0;
}

int
conf_parse_duration(const char *s, long *secs)
{
	static const struct {
		char unit;
		long mult;
	} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 604800}};
	size_t digits = strspn(s, "0123456789"), i;
	long n, mult = 0;

	if (digits == 0 || digits > 9)
		return P11E_ERR_USAGE;
	if (s[digits] == '\0')
		mult = 1;
	for (i = 0; mult == 0 && s[digits + 1] == '\0' && i < sizeof(units) / sizeof(units[0]); i++)
		if (s[digits] == units[i].unit)
			mult = units[i].mult;
	n = strtol(s, NULL, 10);
	if (mult == 0 || n <= 0 || n > DURATION_MAX / mult)
		return P11E_ERR_USAGE;
	*secs = n * mult;
	return 0;
}
