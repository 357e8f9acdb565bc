/*
 * conf.c: the configuration file, parsed once into struct conf.
 *
 * One keyword table (OpenSSH readconf style) maps [section] key to a handler
 * and the field it fills. ini.c reads the file and hands out its lines; this
 * file decides what they mean and checks the values.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/obj_mac.h>

#include "conf.h"
#include "err.h"
#include "http.h"
#include "ini.h"
#include "log.h"
#include "secret.h"
#include "template.h"

#define LABEL_MAX 64
#define DEFAULT_STATE_DIR "/var/lib/p11enroll"
#define DEFAULT_LABEL "p11enroll"
#define DEFAULT_KEY_TYPE "rsa:2048"
#define DEFAULT_TIMEOUT 30
#define TIMEOUT_MAX 3600
#define CHALLENGE_LENGTH_MAX 256
#define DURATION_MAX (10L * 366 * 86400)
#define URL_SHOWN 200 /* longest URL a message shows */
#define HOOK_TIMEOUT 60
#define HOOK_TIMEOUT_MAX 3600
#define COMMAND_WORDS_MAX 64

struct parser;
struct keyword;

typedef int (*handler_fn)(struct parser *, const struct keyword *, char *);

struct keyword {
	const char *section;
	const char *key;
	handler_fn handler;
	size_t off; /* field in struct conf the handler fills */
};

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
static int set_list(struct parser *, const struct keyword *, char *);
static int set_ip_list(struct parser *, const struct keyword *, char *);
static int set_proxy(struct parser *, const struct keyword *, char *);
static int set_bool(struct parser *, const struct keyword *, char *);
static int set_duration(struct parser *, const struct keyword *, char *);
static int set_chars(struct parser *, const struct keyword *, char *);
static int set_length(struct parser *, const struct keyword *, char *);
static int set_interval(struct parser *, const struct keyword *, char *);
static int set_before_expiry(struct parser *, const struct keyword *, char *);
static int set_jitter(struct parser *, const struct keyword *, char *);
static int set_command(struct parser *, const struct keyword *, char *);
static int set_hook_timeout(struct parser *, const struct keyword *, char *);

#define F(field) offsetof(struct conf, field)

/* Grouped by section, in the order the sections are listed in messages. */
static const struct keyword keywords[] = {
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
    {"subject", "san_dns", set_list, F(san_dns)},
    {"subject", "san_email", set_list, F(san_email)},
    {"subject", "san_uri", set_list, F(san_uri)},
    {"subject", "san_ip", set_ip_list, F(san_ip)},
    {"subject", "san_upn", set_list, F(san_upn)},
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
    {"hooks", "after", set_command, F(hook_after)},
    {"hooks", "before_remove", set_command, F(hook_before_remove)},
    {"hooks", "timeout", set_hook_timeout, F(hook_timeout)},
};

#define NKEYWORDS (sizeof(keywords) / sizeof(keywords[0]))

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

struct parser {
	const char *file;           /* the path as given, for messages */
	char *base;                 /* absolute directory relative paths resolve against */
	mode_t mode;                /* of the file, for the inline challenge check */
	unsigned line;              /* current line, from 1 */
	unsigned seen[NKEYWORDS];   /* line each keyword was set at, 0 if not */
	unsigned opened[NKEYWORDS]; /* first line of the keyword's section header, 0 if none */
	struct conf *c;
};

static int kw_error(const struct parser *, const struct keyword *, const char *, ...)
    __attribute__((format(printf, 3, 4)));

/* Logs "FILE:LINE: [section] key: what" and returns P11E_ERR_CONFIG. */
static int
kw_error(const struct parser *p, const struct keyword *kw, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("%s:%u: [%s] %s: %s", p->file, p->line, kw->section, kw->key, msg);
	return P11E_ERR_CONFIG;
}

static void *
field(struct parser *p, const struct keyword *kw)
{
	return (char *)p->c + kw->off;
}

/* Joins names as "a, b or c" (each wrapped in pre/post) into buf. */
static void
join_names(const char *const *names, size_t n, const char *pre, const char *post, char *buf,
           size_t size)
{
	size_t i, len = 0;

	buf[0] = '\0';
	for (i = 0; i < n && len < size; i++) {
		const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
		int w = snprintf(buf + len, size - len, "%s%s%s%s", sep, pre, names[i], post);

		if (w < 0)
			break;
		len += (size_t)w;
	}
}

static void
section_names(char *buf, size_t size)
{
	const char *names[NKEYWORDS];
	size_t i, n = 0;

	for (i = 0; i < NKEYWORDS; i++)
		if (n == 0 || strcmp(names[n - 1], keywords[i].section) != 0)
			names[n++] = keywords[i].section;
	join_names(names, n, "[", "]", buf, size);
}

static void
key_names(const char *section, char *buf, size_t size)
{
	const char *names[NKEYWORDS];
	size_t i, n = 0;

	for (i = 0; i < NKEYWORDS; i++)
		if (strcmp(keywords[i].section, section) == 0)
			names[n++] = keywords[i].key;
	join_names(names, n, "", "", buf, size);
}

static const struct keyword *
find_keyword(const char *section, const char *key)
{
	size_t i;

	for (i = 0; i < NKEYWORDS; i++)
		if ((section == NULL || strcmp(keywords[i].section, section) == 0) &&
		    strcmp(keywords[i].key, key) == 0)
			return &keywords[i];
	return NULL;
}

static int
dup_str(const char *v, char **out)
{
	if ((*out = strdup(v)) == NULL) {
		log_error("out of memory");
		return P11E_ERR_ALLOC;
	}
	return 0;
}

static int
set_str(struct parser *p, const struct keyword *kw, char *v)
{
	return dup_str(v, field(p, kw));
}

/* A value that may hold provision's {placeholders}: each must be known. */
static int
check_template(struct parser *p, const struct keyword *kw, const char *v)
{
	char why[256];

	if (tmpl_check(v, why, sizeof(why)) != 0)
		return kw_error(p, kw, "%s", why);
	return 0;
}

static int
set_template(struct parser *p, const struct keyword *kw, char *v)
{
	int r;

	if ((r = check_template(p, kw, v)) != 0)
		return r;
	return set_str(p, kw, v);
}

/* A token label to give blank tokens: a template, at most 32 bytes as written. */
static int
set_init_label(struct parser *p, const struct keyword *kw, char *v)
{
	if (strlen(v) > 32)
		return kw_error(p, kw, "the label is %zu bytes long (a token label has 1 to 32)",
		                strlen(v));
	return set_template(p, kw, v);
}

static int
set_url(struct parser *p, const struct keyword *kw, char *v)
{
	char shown[URL_SHOWN + 1];
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
		return kw_error(p, kw,
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
		return kw_error(p, kw,
		                "the value (not shown: it has a pin-value) is not a PKCS#11 URI "
		                "(expected e.g. pkcs11:token=mytoken)");
	return kw_error(p, kw, "'%s' is not a PKCS#11 URI (expected e.g. pkcs11:token=mytoken)", v);
}

static int
set_challenge(struct parser *p, const struct keyword *kw, char *v)
{
	char **dst = field(p, kw);

	if ((p->mode & 077) != 0) {
		log_error("%s: [%s] %s: the file holds a secret but is readable by others "
		          "(mode %04o); chmod 600 it or use challenge_file",
		          p->file, kw->section, kw->key, (unsigned)(p->mode & 07777));
		return P11E_ERR_CONFIG;
	}
	return secret_dup(v, dst);
}

/* *out = dir/name, without doubling a '/' at the end of dir. */
static int
path_join(const char *dir, const char *name, char **out)
{
	size_t n = strlen(dir);
	const char *sep = n > 0 && dir[n - 1] == '/' ? "" : "/";
	char *s = NULL;

	n += strlen(sep) + strlen(name) + 1;
	if ((s = malloc(n)) == NULL) {
		log_error("out of memory");
		return P11E_ERR_ALLOC;
	}
	snprintf(s, n, "%s%s%s", dir, sep, name);
	*out = s;
	return 0;
}

static int
set_path(struct parser *p, const struct keyword *kw, char *v)
{
	if (v[0] == '/')
		return dup_str(v, field(p, kw));
	while (v[0] == '.' && v[1] == '/')
		v += 2;
	return path_join(p->base, v, field(p, kw));
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
			return kw_error(
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
		return kw_error(p, kw, "'%s' has an odd number of hex digits", v);
	len = digits / 2;
	if (alg == CONF_FP_NONE) {
		if (len == 32)
			alg = CONF_FP_SHA256;
		else if (len == 20)
			alg = CONF_FP_SHA1;
		else
			return kw_error(
			    p, kw, "'%s' has %zu bytes (expected 32 for SHA-256 or 20 for SHA-1)",
			    v, len);
	}
	want = alg == CONF_FP_SHA256 ? 32 : 20;
	if (len != want)
		return kw_error(p, kw, "'%s' has %zu bytes (a %s fingerprint has %zu)", v, len,
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
		return kw_error(p, kw, "'%s' is not a number of seconds from 1 to %d", v,
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
		return kw_error(p, kw, "'%s' is not a length from 0 (any) to %d", v,
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
		return kw_error(p, kw, "'%s' is not yes or no", v);
	return 0;
}

static int
set_duration(struct parser *p, const struct keyword *kw, char *v)
{
	long *field = (long *)(void *)((char *)p->c + kw->off);

	if (conf_parse_duration(v, field) != 0)
		return kw_error(p, kw, "'%s' is not a duration (e.g. 90s, 30m, 1h)", v);
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
		return kw_error(p, kw, "'%s' is not a duration (e.g. 30d, 12h; 0 = none)", v);
	return 0;
}

static int
set_before_expiry(struct parser *p, const struct keyword *kw, char *v)
{
	int pct;

	if (strchr(v, '%') != NULL) {
		if ((pct = parse_pct(v, 100)) < 1)
			return kw_error(p, kw, "'%s' is not a percentage from 1%% to 100%%", v);
		p->c->renew_before_pct = pct;
		p->c->renew_before_secs = 0;
		return 0;
	}
	if (conf_parse_duration(v, &p->c->renew_before_secs) != 0)
		return kw_error(p, kw,
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
		return kw_error(p, kw, "'%s' is not a percentage from 0%% to 100%%", v);
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
	return kw_error(p, kw, "'%s' is not a character set (use hex, digits, alnum or any)", v);
}

static int
set_proxy(struct parser *p, const struct keyword *kw, char *v)
{
	static const char *const schemes[] = {"http://",    "https://",  "socks4://",
	                                      "socks4a://", "socks5://", "socks5h://"};
	char shown[URL_SHOWN + 1];
	size_t i;

	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strncasecmp(v, schemes[i], strlen(schemes[i])) == 0 &&
		    v[strlen(schemes[i])] != '\0' && strpbrk(v, " \t") == NULL)
			return set_str(p, kw, v);
	http_url_for_log(v, shown, sizeof(shown)); /* a proxy URL may carry user:password@ */
	return kw_error(
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
		return dup_str(v, &p->c->key_type_str);
	}
	return kw_error(
	    p, kw, "'%s' is not supported (use rsa:2048, rsa:3072, rsa:4096, ec:P-256 or ec:P-384)",
	    v);
}

static int
set_label(struct parser *p, const struct keyword *kw, char *v)
{
	size_t n = strlen(v);

	if (n > LABEL_MAX)
		return kw_error(p, kw, "the label is %zu bytes long (use 1 to %d)", n, LABEL_MAX);
	return set_str(p, kw, v);
}

static void
list_clear(struct conf_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Splits a comma-separated list, trimming items; with ip, each must be an address. */
static int
split_list(struct parser *p, const struct keyword *kw, char *v, int ip)
{
	struct conf_list l = {NULL, 0};
	unsigned char addr[sizeof(struct in6_addr)];
	char *item, *next;
	size_t n = 1;
	int r = P11E_ERR_INTERNAL;

	for (item = v; *item != '\0'; item++)
		if (*item == ',')
			n++;
	if ((l.v = calloc(n, sizeof(*l.v))) == NULL) {
		log_error("out of memory");
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (item = v; item != NULL; item = next) {
		if ((next = strchr(item, ',')) != NULL)
			*next++ = '\0';
		item = ini_trim(item);
		if (*item == '\0') {
			r = kw_error(p, kw,
			             "item %zu of the list is empty (separate items with ',')",
			             l.n + 1);
			goto out;
		}
		if (ip && inet_pton(AF_INET, item, addr) != 1 &&
		    inet_pton(AF_INET6, item, addr) != 1) {
			r = kw_error(p, kw, "'%s' is not an IPv4 or IPv6 address", item);
			goto out;
		}
		if (!ip && (r = check_template(p, kw, item)) != 0)
			goto out;
		if ((r = dup_str(item, &l.v[l.n])) != 0)
			goto out;
		l.n++;
	}
	*(struct conf_list *)field(p, kw) = l;
	l.v = NULL;
	l.n = 0;
	r = 0;
out:
	list_clear(&l);
	return r;
}

static int
set_list(struct parser *p, const struct keyword *kw, char *v)
{
	return split_list(p, kw, v, 0);
}

static int
set_ip_list(struct parser *p, const struct keyword *kw, char *v)
{
	return split_list(p, kw, v, 1);
}

static int
is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/*
 * A hook's command line, split in place into words: spaces and tabs separate
 * words; a double-quoted part keeps its spaces and tabs and loses its quotes
 * (x"a b"y is the one word xa by, "" an empty one); nothing else is special.
 * The first word, the program, must be an absolute path (no shell, no PATH
 * search). The list it fills ends with a NULL, for execve.
 */
static int
set_command(struct parser *p, const struct keyword *kw, char *v)
{
	struct conf_list l = {NULL, 0};
	char **words = NULL, *rd = v, *wr = v, at;
	size_t n = 0, i;
	int quoted = 0, r = P11E_ERR_INTERNAL;

	if ((words = calloc(strlen(v) + 1, sizeof(*words))) == NULL) {
		log_error("out of memory");
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (;;) {
		while (is_blank(*rd))
			rd++;
		if (*rd == '\0')
			break;
		words[n++] = wr;
		for (; *rd != '\0' && (quoted || !is_blank(*rd)); rd++)
			if (*rd == '"')
				quoted = !quoted;
			else
				*wr++ = *rd;
		if (quoted) {
			r = kw_error(p, kw,
			             "word %zu of the command has no closing '\"' (double quotes "
			             "group words that hold spaces: \"/opt/my tools/hook\" arg)",
			             n);
			goto out;
		}
		at = *rd;
		*wr++ = '\0';
		if (at == '\0')
			break;
		rd++;
	}
	if (n == 0 || words[0][0] == '\0') {
		r = kw_error(p, kw,
		             "empty command (give the program's absolute path, or remove "
		             "the line)");
		goto out;
	}
	if (words[0][0] != '/') {
		r = kw_error(p, kw,
		             "the program '%s' is not an absolute path (hooks run without a shell "
		             "and without a PATH search: give e.g. /usr/local/sbin/%s)",
		             words[0], words[0]);
		goto out;
	}
	if (n > COMMAND_WORDS_MAX) {
		r = kw_error(p, kw, "%zu words (at most %d; put a longer command in a script)", n,
		             COMMAND_WORDS_MAX);
		goto out;
	}
	if ((l.v = calloc(n + 1, sizeof(*l.v))) == NULL) {
		log_error("out of memory");
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < n; i++, l.n++)
		if ((r = dup_str(words[i], &l.v[i])) != 0)
			goto out;
	*(struct conf_list *)field(p, kw) = l;
	l.v = NULL;
	l.n = 0;
	r = 0;
out:
	list_clear(&l);
	free(words);
	return r;
}

static int
set_hook_timeout(struct parser *p, const struct keyword *kw, char *v)
{
	if (conf_parse_duration(v, &p->c->hook_timeout) != 0 ||
	    p->c->hook_timeout > HOOK_TIMEOUT_MAX)
		return kw_error(p, kw, "'%s' is not a duration from 1s to 1h (e.g. 60s, 5m)", v);
	return 0;
}

/* A "[name]" header: name must be a section of the keyword table. */
static int
parse_section(struct parser *p, const char *name)
{
	char expected[128];
	size_t i;
	int known = 0;

	for (i = 0; i < NKEYWORDS; i++) {
		if (strcmp(keywords[i].section, name) != 0)
			continue;
		known = 1;
		if (p->opened[i] == 0)
			p->opened[i] = p->line;
	}
	if (known)
		return 0;
	section_names(expected, sizeof(expected));
	log_error("%s:%u: [%s]: unknown section (expected %s)", p->file, p->line, name, expected);
	return P11E_ERR_CONFIG;
}

/* A "key = value" line: a known key, set once, to a non-empty value. */
static int
parse_key(struct parser *p, struct ini *ini, const char *section, const char *key)
{
	const struct keyword *kw;
	char expected[256];
	char *v = NULL;
	size_t idx;
	int r;

	if (section == NULL) {
		kw = find_keyword(NULL, key);
		log_error("%s:%u: %s: key outside any section (put it under [%s])", p->file,
		          p->line, key, kw != NULL ? kw->section : "section");
		return P11E_ERR_CONFIG;
	}
	if ((kw = find_keyword(section, key)) == NULL) {
		key_names(section, expected, sizeof(expected));
		log_error("%s:%u: [%s] %s: unknown key (expected %s)", p->file, p->line, section,
		          key, expected);
		return P11E_ERR_CONFIG;
	}
	idx = (size_t)(kw - keywords);
	if (p->seen[idx] != 0)
		return kw_error(p, kw, "duplicate key (first set at line %u)", p->seen[idx]);
	/* A command keeps its quotes: they group its words (set_command). */
	if ((r = kw->handler == set_command ? ini_value_raw(ini, &v) : ini_value(ini, &v)) != 0)
		return r;
	if (*v == '\0')
		return kw_error(p, kw, "empty value (give a value or remove the line)");
	p->seen[idx] = p->line;
	return kw->handler(p, kw, v);
}

/* Feeds every line of ini to the keyword table. */
static int
parse_file(struct parser *p, struct ini *ini)
{
	struct ini_event ev;
	int r;

	do {
		if ((r = ini_next(ini, &ev)) != 0)
			return r;
		p->line = ev.line;
		if (ev.kind == INI_SECTION && (r = parse_section(p, ev.section)) != 0)
			return r;
		if (ev.kind == INI_KEY && (r = parse_key(p, ini, ev.section, ev.key)) != 0)
			return r;
	} while (ev.kind != INI_END);
	return 0;
}

/* The absolute directory of path (realpath'ed only when path is relative). */
static int
base_dir(const char *path, char **out)
{
	char *dir = NULL, *abs = NULL, *slash;
	int r = P11E_ERR_INTERNAL;

	if ((r = dup_str(path, &dir)) != 0)
		goto out;
	if ((slash = strrchr(dir, '/')) == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (dir[0] == '/') {
		*out = dir;
		dir = NULL;
		r = 0;
		goto out;
	}
	if ((abs = realpath(dir, NULL)) == NULL) {
		log_error("cannot resolve the directory of %s: %s", path, strerror(errno));
		r = P11E_ERR_FILE;
		goto out;
	}
	*out = abs;
	abs = NULL;
	r = 0;
out:
	free(dir);
	free(abs);
	return r;
}

static unsigned
seen_at(const struct parser *p, const char *section, const char *key)
{
	return p->seen[find_keyword(section, key) - keywords];
}

static int
required(const struct parser *p, const char *section, const char *key)
{
	unsigned at = p->opened[find_keyword(section, key) - keywords];

	if (at != 0)
		log_error("%s:%u: [%s] %s is required (missing from the section that starts here)",
		          p->file, at, section, key);
	else
		log_error("%s:%u: [%s] %s is required (the file has no [%s] section)", p->file,
		          p->line, section, key, section);
	return P11E_ERR_CONFIG;
}

/*
 * challenge_url needs its account, excludes a static challenge, and over plain
 * http needs challenge_insecure_http = yes: the NTLM exchange would go in
 * clear (crackable offline, or relayed).
 */
static int
check_challenge_url(const struct parser *p)
{
	const struct conf *c = p->c;
	unsigned at = seen_at(p, "scep", "challenge_url");
	unsigned st = seen_at(p, "scep", "challenge") + seen_at(p, "scep", "challenge_file");
	unsigned ins = seen_at(p, "scep", "challenge_insecure_http");
	char shown[URL_SHOWN + 1];

	if (at == 0) {
		if (c->challenge_user != NULL || c->challenge_password_file != NULL)
			log_warn("%s: [scep] challenge_user/challenge_password_file are ignored "
			         "without challenge_url",
			         p->file);
		if (ins != 0)
			log_warn("%s:%u: [scep] challenge_insecure_http is ignored without "
			         "challenge_url",
			         p->file, ins);
		return 0;
	}
	http_url_for_log(c->challenge_url, shown, sizeof(shown));
	if (strncasecmp(c->challenge_url, "https://", 8) != 0 && !c->challenge_insecure_http) {
		log_error("%s:%u: [scep] challenge_url: %s is plain http: the NTLM login to the "
		          "challenge page could be captured and cracked offline or relayed; use "
		          "https, or accept that risk with challenge_insecure_http = yes",
		          p->file, at, shown);
		return P11E_ERR_CONFIG;
	}
	if (strncasecmp(c->challenge_url, "https://", 8) == 0 && c->challenge_insecure_http)
		log_warn("%s:%u: [scep] challenge_insecure_http is ignored: challenge_url is https",
		         p->file, ins);
	if (st != 0) {
		log_error("%s:%u: [scep] challenge_url: a one-time challenge page and a static "
		          "challenge (line %u) are both set; keep only one",
		          p->file, at, st);
		return P11E_ERR_CONFIG;
	}
	if (c->challenge_user == NULL || c->challenge_password_file == NULL) {
		log_error("%s:%u: [scep] challenge_url needs challenge_user and "
		          "challenge_password_file (the account allowed to create challenges)",
		          p->file, at);
		return P11E_ERR_CONFIG;
	}
	return 0;
}

/*
 * A hook's program runs as this user: one that another user could change is
 * refused (the file itself; it may be a link to one that is not). One that
 * cannot be run yet is a warning (it may be installed after the file is
 * written), and so is a before_remove that keep_old makes pointless.
 */
static int
check_hooks(const struct parser *p)
{
	static const char *const keys[] = {"after", "before_remove"};
	const struct conf_list *l[] = {&p->c->hook_after, &p->c->hook_before_remove};
	struct stat st;
	size_t i;

	for (i = 0; i < 2; i++) {
		if (l[i]->n == 0)
			continue;
		if (stat(l[i]->v[0], &st) != 0 || access(l[i]->v[0], X_OK) != 0) {
			log_warn("%s:%u: [hooks] %s: %s: %s (the hook fails until it can be run)",
			         p->file, seen_at(p, "hooks", keys[i]), keys[i], l[i]->v[0],
			         strerror(errno));
			continue;
		}
		if (S_ISREG(st.st_mode) && (st.st_mode & 022) == 0 &&
		    (st.st_uid == 0 || st.st_uid == geteuid()))
			continue;
		log_error("%s:%u: [hooks] %s: %s is %s (uid %ld, mode %04o): whoever can change it "
		          "runs commands as this user; make it a file of root's (or yours) that "
		          "group and others cannot write",
		          p->file, seen_at(p, "hooks", keys[i]), keys[i], l[i]->v[0],
		          !S_ISREG(st.st_mode) ? "not a regular file"
		          : (st.st_mode & 022) ? "writable by group or others"
		                               : "another user's",
		          (long)st.st_uid, (unsigned)(st.st_mode & 07777));
		return P11E_ERR_CONFIG;
	}
	if (p->c->renew_keep_old && p->c->hook_before_remove.n > 0)
		log_warn("%s:%u: [hooks] before_remove never runs: with [renewal] keep_old = yes "
		         "no old certificate or key is removed",
		         p->file, seen_at(p, "hooks", "before_remove"));
	return 0;
}

/* url without user:password@, for messages (NULL stays NULL). */
static int
shown_url(const char *url, char **out)
{
	if (url == NULL)
		return 0;
	if ((*out = malloc(URL_SHOWN + 1)) == NULL)
		return P11E_ERR_ALLOC;
	http_url_for_log(url, *out, URL_SHOWN + 1);
	return 0;
}

/* Checks that need the whole file, then fills defaults. */
static int
finish(struct parser *p)
{
	struct conf *c = p->c;
	unsigned l1 = seen_at(p, "scep", "challenge"), l2 = seen_at(p, "scep", "challenge_file");
	int r;

	if (l1 != 0 && l2 != 0) {
		log_error("%s: [scep] challenge (line %u) and challenge_file (line %u) are both "
		          "set; keep only one",
		          p->file, l1, l2);
		return P11E_ERR_CONFIG;
	}
	if (c->scep_url == NULL)
		return required(p, "scep", "url");
	if ((r = check_challenge_url(p)) != 0)
		return r;
	if (c->token_uri == NULL)
		return required(p, "token", "uri");
	if (c->dn == NULL)
		return required(p, "subject", "dn");
	if (c->token_init && c->so_pin_file == NULL) {
		log_error("%s:%u: [token] init = yes needs so_pin_file (the security officer PIN "
		          "that C_InitToken sets)",
		          p->file, seen_at(p, "token", "init"));
		return P11E_ERR_CONFIG;
	}
	if (c->retry_max < c->retry_min && seen_at(p, "agent", "retry_max") == 0)
		c->retry_max = c->retry_min;
	if (c->retry_max < c->retry_min) {
		log_error("%s:%u: [agent] retry_max is shorter than retry_min (%ld s < %ld s)",
		          p->file, seen_at(p, "agent", "retry_max"), c->retry_max, c->retry_min);
		return P11E_ERR_CONFIG;
	}
	if ((r = check_hooks(p)) != 0)
		return r;
	if (c->key_type_str == NULL && (r = dup_str(DEFAULT_KEY_TYPE, &c->key_type_str)) != 0)
		return r;
	if (c->key_label == NULL && (r = dup_str(DEFAULT_LABEL, &c->key_label)) != 0)
		return r;
	if (c->state_dir == NULL && (r = dup_str(DEFAULT_STATE_DIR, &c->state_dir)) != 0)
		return r;
	if (c->trust_dir == NULL && (r = path_join(c->state_dir, "trust", &c->trust_dir)) != 0)
		return r;
	if ((r = shown_url(c->scep_url, &c->scep_url_shown)) != 0 ||
	    (r = shown_url(c->challenge_url, &c->challenge_url_shown)) != 0 ||
	    (r = shown_url(c->proxy, &c->proxy_shown)) != 0)
		return r;
	return 0;
}

int
conf_load(const char *path, struct conf **out)
{
	struct parser p;
	struct ini *ini = NULL;
	struct conf *c = NULL;
	int r = P11E_ERR_INTERNAL;

	memset(&p, 0, sizeof(p));
	p.file = path;
	if ((r = ini_open(path, &ini)) != 0)
		goto out;
	p.mode = ini_mode(ini);
	if ((r = base_dir(path, &p.base)) != 0)
		goto out;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_error("out of memory");
		r = P11E_ERR_ALLOC;
		goto out;
	}
	if ((r = dup_str(path, &c->path)) != 0)
		goto out;
	c->timeout = DEFAULT_TIMEOUT;
	c->use_proxy = 1;
	c->key_type = CONF_KEY_RSA;
	c->key_bits = 2048;
	c->renew_before_pct = 20;
	c->renew_new_key = 1;
	c->renew_jitter_pct = 10;
	c->retry_min = 60;
	c->retry_max = 3600;
	c->hook_timeout = HOOK_TIMEOUT;
	p.c = c;
	if ((r = parse_file(&p, ini)) != 0)
		goto out;
	if ((r = finish(&p)) != 0)
		goto out;
	*out = c;
	c = NULL;
	r = 0;
out:
	ini_free(ini);
	free(p.base);
	conf_free(c);
	return r;
}

void
conf_free(struct conf *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->scep_url);
	secret_free(c->challenge);
	free(c->challenge_file);
	free(c->challenge_url);
	free(c->scep_url_shown);
	free(c->challenge_url_shown);
	free(c->proxy_shown);
	free(c->challenge_user);
	free(c->challenge_password_file);
	free(c->proxy);
	free(c->ca_file);
	free(c->token_uri);
	free(c->module);
	free(c->pin_file);
	free(c->pin_map_file);
	free(c->so_pin_file);
	free(c->init_label);
	free(c->key_type_str);
	free(c->key_label);
	free(c->dn);
	list_clear(&c->san_dns);
	list_clear(&c->san_email);
	list_clear(&c->san_uri);
	list_clear(&c->san_ip);
	list_clear(&c->san_upn);
	free(c->trust_dir);
	free(c->trust_root_file);
	free(c->state_dir);
	free(c->cert_file);
	free(c->metrics_file);
	list_clear(&c->hook_after);
	list_clear(&c->hook_before_remove);
	OPENSSL_cleanse(c, sizeof(*c));
	free(c);
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
