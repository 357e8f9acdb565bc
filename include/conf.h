/*
 * conf.h: the configuration file, parsed once into struct conf.
 *
 * INI style: [section], key = value, '#' or ';' starts a comment line (and a
 * comment after whitespace at the end of a value). Unknown sections or keys,
 * duplicate keys and bad values are errors that name file:line and the key.
 * Relative paths in values are resolved against the config file's directory.
 */
#ifndef P11E_CONF_H
#define P11E_CONF_H

#include <stddef.h>

enum conf_key_type { CONF_KEY_RSA = 1, CONF_KEY_EC = 2 };
enum conf_fp_alg { CONF_FP_NONE = 0, CONF_FP_SHA1 = 1, CONF_FP_SHA256 = 2 };
enum conf_chars {
	CONF_CHARS_ANY = 0, /* any printable ASCII except space (default) */
	CONF_CHARS_HEX,     /* 0-9 A-F a-f (NDES: uppercase hex) */
	CONF_CHARS_DIGITS,  /* 0-9 */
	CONF_CHARS_ALNUM,   /* 0-9 A-Z a-z */
};

struct conf_list {
	char **v;
	size_t n;
};

struct conf {
	char *path; /* the file as given */

	/* [scep] */
	char *scep_url;       /* required, http:// or https:// */
	char *challenge;      /* inline challenge (secret, wiped on free) or NULL */
	char *challenge_file; /* absolute path or NULL; at most one of the two */
	int ca_fp_alg;        /* enum conf_fp_alg */
	unsigned char ca_fp[32];
	size_t ca_fp_len; /* 20 (sha1) or 32 (sha256); 0 when none */
	long timeout;     /* seconds per HTTP exchange; default 30, 1..3600 */
	/* one-time challenges from an NDES MSCEP_ADMIN page (excludes challenge/_file) */
	char *challenge_url;           /* http(s) URL or NULL */
	char *challenge_user;          /* "user@domain" or "DOMAIN\\user"; required with the URL */
	char *challenge_password_file; /* absolute path; required with the URL */
	int challenge_chars;           /* enum conf_chars */
	long challenge_length;         /* expected length, 0 = any (default 0), 0..256 */
	int challenge_insecure_http;   /* 1: NTLM to an http:// challenge_url is accepted */
	int use_proxy; /* default 1; 0 = bypass every proxy, also the environment's */
	char *proxy;   /* explicit proxy URL or NULL (then the environment's) */
	char *ca_file; /* trust anchors for https (absolute path) or NULL */
	/* scep_url, challenge_url and proxy as messages show them: without user:password@
	 * (http_url_for_log), shortened; NULL where the URL is */
	char *scep_url_shown, *challenge_url_shown, *proxy_shown;

	/* [token] */
	char *token_uri; /* required, "pkcs11:..." */
	char *module;    /* absolute path or NULL (then the URI must carry module-path) */
	char *pin_file;  /* absolute path or NULL */
	/* `provision`: "serial = PIN" lines (absolute path or NULL); wins over pin_file */
	char *pin_map_file;
	/* `provision`: blank tokens get C_InitToken with so_pin_file's PIN and
	 * init_label (a template; default "p11enroll"), then a generated user PIN */
	int token_init;
	char *so_pin_file;
	char *init_label;
	/* not from the file: the token's PIN (secret, not owned, never freed here),
	 * set by `provision` on its per-token copy; read instead of pin_file */
	char *pin;

	/* [key] */
	int key_type;       /* enum conf_key_type; default RSA */
	int key_bits;       /* RSA: 2048 | 3072 | 4096; EC: 256 | 384 */
	int key_curve;      /* EC: OpenSSL NID (NID_X9_62_prime256v1, NID_secp384r1); else 0 */
	char *key_type_str; /* as written, e.g. "rsa:2048" */
	char *key_label;    /* default "p11enroll" */

	/* [subject] dn and the SAN lists but san_ip may hold {placeholders} (template.h),
	 * expanded per token by `provision`, checked here */
	char *dn; /* required, e.g. "CN=host.example.com,O=Example" */
	struct conf_list san_dns, san_email, san_uri, san_ip, san_upn;

	/* [trust] */
	char *trust_dir;       /* default <state_dir>/trust */
	char *trust_root_file; /* PEM root certificates completing the CA chain (absolute), or
	                          NULL; when set, the chain must end at one of them */
	int trust_fetch_aia;   /* 1: complete the chain from the CA's AIA caIssuers URL */

	/* [agent] */
	char *state_dir;    /* default /var/lib/p11enroll */
	char *cert_file;    /* or NULL */
	char *metrics_file; /* `run`: Prometheus text file (metrics.h), or NULL */
	long retry_min;     /* `run`: first pause after a failed attempt, seconds (default 60) */
	long retry_max;     /* `run`: the pause doubles up to this, seconds (default 3600) */

	/* [renewal] */
	long renew_interval;    /* seconds after notBefore; 0 = no interval rule (default) */
	long renew_before_secs; /* before_expiry as a duration (seconds), or 0 */
	int renew_before_pct;   /* before_expiry as a percentage of the lifetime (default 20) */
	int renew_new_key;      /* 1 = a new key pair per renewal (default) */
	int renew_keep_old;     /* 1 = keep the old certificate and key (default 0) */
	int renew_jitter_pct;   /* percentage of the renewal window (default 10), 0..100 */

	/* [hooks]: each command as its argv (v[0] an absolute path, v[n] == NULL), or n == 0
	 * when not configured; split as p11enroll.conf(5) says (spaces, double quotes) */
	struct conf_list hook_after;         /* after a new certificate is stored */
	struct conf_list hook_before_remove; /* in a renewal, before the old pair goes */
	long hook_timeout;                   /* seconds per hook; default 60, 1..3600 */
};

/*
 * Parses and validates the file at path. On success *out is a new struct conf
 * (free with conf_free). Errors: P11E_ERR_CONFIG (message logged with
 * file:line and key), P11E_ERR_FILE (file unreadable), P11E_ERR_ALLOC.
 * An inline "challenge =" in a file that group or others can read is refused.
 */
int conf_load(const char *path, struct conf **out);

/*
 * A duration: digits with an optional unit s, m, h, d or w ("90", "30m",
 * "1h", "14d"), more than 0 and at most ten years, into *secs. Not logged:
 * P11E_ERR_USAGE when s is not one.
 */
int conf_parse_duration(const char *s, long *secs);

/* Frees everything, wiping secrets. Accepts NULL. */
void conf_free(struct conf *c);

#endif
