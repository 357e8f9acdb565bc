/*
 * test_conf.c: conf_load on files written to a temporary directory.
 */
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "capture.h"
#include <openssl/obj_mac.h>

#include "conf.h"
#include "err.h"

/* The six lines every valid file needs; what a test appends starts at line 7. */
#define MIN                                                                                        \
	"[scep]\n"                                                                                 \
	"url = http://ca.example.com/scep\n"                                                       \
	"[token]\n"                                                                                \
	"uri = pkcs11:token=t\n"                                                                   \
	"[subject]\n"                                                                              \
	"dn = CN=host\n"

#define SENTINEL ((struct conf *)(uintptr_t)0x5a5a)

static char tmpdir[PATH_MAX];
static char conf_path[PATH_MAX + 16];
static char errbuf[8192];

static void
write_bytes(const char *path, const char *content, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

/* Loads path with stderr redirected into errbuf. */
static int
load_path(const char *path, struct conf **out)
{
	struct capture cap;
	int r;

	capture_begin(&cap);
	r = conf_load(path, out);
	capture_end(&cap, errbuf, sizeof(errbuf));
	return r;
}

/* Writes text to tmpdir/p.conf with mode and loads it. */
static int
load_text(const char *text, mode_t mode, struct conf **out)
{
	write_bytes(conf_path, text, strlen(text), mode);
	return load_path(conf_path, out);
}

static struct conf *
load_ok(const char *text)
{
	struct conf *c = NULL;

	if (load_text(text, 0600, &c) != 0)
		fail_msg("conf_load failed: %s", errbuf);
	assert_non_null(c);
	return c;
}

/* Asserts errbuf holds expect, with '@' standing for the config path. */
static void
assert_logged(const char *expect)
{
	char want[2048];
	size_t n = 0, plen = strlen(conf_path);

	for (; *expect != '\0'; expect++) {
		if (*expect == '@') {
			assert_true(n + plen < sizeof(want));
			memcpy(want + n, conf_path, plen);
			n += plen;
		} else {
			assert_true(n + 1 < sizeof(want));
			want[n++] = *expect;
		}
	}
	want[n] = '\0';
	assert_true(n > 0);
	if (strstr(errbuf, want) == NULL)
		fail_msg("expected message\n  %s\ngot\n  %s", want, errbuf);
}

/* Removes dir and what it holds (files and directories, no symlinks followed). */
static int
rm_rf(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *d = opendir(dir);
	int r = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			r |= rm_rf(path);
		else
			r |= unlink(path);
	}
	closedir(d);
	return r | rmdir(dir);
}

static int
group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/p11e-conf-XXXXXX",
	         getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(conf_path, sizeof(conf_path), "%s/p.conf", tmpdir);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	return rm_rf(tmpdir);
}

static void
test_every_key(void **state)
{
	static const unsigned char fp[32] = {0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89,
	                                     0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
	                                     0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
	                                     0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80};
	struct conf *c;

	(void)state;
	c = load_ok("[scep]\n"
	            "url = https://ca.example.com/scep/pkiclient.exe\n"
	            "challenge_file = /etc/p11enroll/challenge\n"
	            "ca_fingerprint = AB:CD:EF:01:23:45:67:89:00:11:22:33:44:55:66:77:"
	            "88:99:AA:BB:CC:DD:EE:FF:10:20:30:40:50:60:70:80\n"
	            "timeout = 120\n"
	            "[token]\n"
	            "uri = pkcs11:token=t;object=k\n"
	            "module = /usr/lib/softhsm/libsofthsm2.so\n"
	            "pin_file = /etc/p11enroll/pin\n"
	            "[key]\n"
	            "type = ec:P-256\n"
	            "label = host key\n"
	            "[subject]\n"
	            "dn = CN=host.example.com,O=Example\n"
	            "san_dns = host.example.com\n"
	            "san_email = admin@example.com\n"
	            "san_uri = https://example.com/id\n"
	            "san_ip = 192.0.2.1\n"
	            "san_upn = host$@example.com\n"
	            "[trust]\n"
	            "dir = /etc/p11enroll/trust\n"
	            "[agent]\n"
	            "state_dir = /srv/p11enroll\n"
	            "cert_file = /etc/ssl/host.pem\n");
	assert_string_equal(c->path, conf_path);
	assert_string_equal(c->scep_url, "https://ca.example.com/scep/pkiclient.exe");
	assert_null(c->challenge);
	assert_string_equal(c->challenge_file, "/etc/p11enroll/challenge");
	assert_int_equal(c->ca_fp_alg, CONF_FP_SHA256);
	assert_int_equal(c->ca_fp_len, 32);
	assert_memory_equal(c->ca_fp, fp, 32);
	assert_int_equal(c->timeout, 120);
	assert_string_equal(c->token_uri, "pkcs11:token=t;object=k");
	assert_string_equal(c->module, "/usr/lib/softhsm/libsofthsm2.so");
	assert_string_equal(c->pin_file, "/etc/p11enroll/pin");
	assert_int_equal(c->key_type, CONF_KEY_EC);
	assert_int_equal(c->key_bits, 256);
	assert_int_equal(c->key_curve, NID_X9_62_prime256v1);
	assert_string_equal(c->key_type_str, "ec:P-256");
	assert_string_equal(c->key_label, "host key");
	assert_string_equal(c->dn, "CN=host.example.com,O=Example");
	assert_int_equal(c->san_dns.n, 1);
	assert_string_equal(c->san_dns.v[0], "host.example.com");
	assert_int_equal(c->san_email.n, 1);
	assert_string_equal(c->san_email.v[0], "admin@example.com");
	assert_int_equal(c->san_uri.n, 1);
	assert_string_equal(c->san_uri.v[0], "https://example.com/id");
	assert_int_equal(c->san_ip.n, 1);
	assert_string_equal(c->san_ip.v[0], "192.0.2.1");
	assert_int_equal(c->san_upn.n, 1);
	assert_string_equal(c->san_upn.v[0], "host$@example.com");
	assert_string_equal(c->trust_dir, "/etc/p11enroll/trust");
	assert_string_equal(c->state_dir, "/srv/p11enroll");
	assert_string_equal(c->cert_file, "/etc/ssl/host.pem");
	conf_free(c);
}

static void
test_defaults(void **state)
{
	struct conf *c;

	(void)state;
	c = load_ok(MIN);
	assert_string_equal(c->scep_url, "http://ca.example.com/scep");
	assert_string_equal(c->token_uri, "pkcs11:token=t");
	assert_string_equal(c->dn, "CN=host");
	assert_null(c->challenge);
	assert_null(c->challenge_file);
	assert_int_equal(c->ca_fp_alg, CONF_FP_NONE);
	assert_int_equal(c->ca_fp_len, 0);
	assert_int_equal(c->timeout, 30);
	assert_null(c->module);
	assert_null(c->pin_file);
	assert_int_equal(c->key_type, CONF_KEY_RSA);
	assert_int_equal(c->key_bits, 2048);
	assert_int_equal(c->key_curve, 0);
	assert_string_equal(c->key_type_str, "rsa:2048");
	assert_string_equal(c->key_label, "p11enroll");
	assert_int_equal(c->san_dns.n, 0);
	assert_null(c->san_dns.v);
	assert_int_equal(c->san_ip.n, 0);
	assert_string_equal(c->state_dir, "/var/lib/p11enroll");
	assert_string_equal(c->trust_dir, "/var/lib/p11enroll/trust");
	assert_null(c->challenge_url);
	assert_int_equal(c->challenge_chars, CONF_CHARS_ANY);
	assert_int_equal(c->challenge_length, 0);
	assert_int_equal(c->use_proxy, 1);
	assert_null(c->proxy);
	assert_null(c->ca_file);
	assert_null(c->cert_file);
	assert_int_equal(c->renew_interval, 0);
	assert_int_equal(c->renew_before_secs, 0);
	assert_int_equal(c->renew_before_pct, 20);
	assert_int_equal(c->renew_new_key, 1);
	assert_int_equal(c->renew_keep_old, 0);
	assert_int_equal(c->renew_jitter_pct, 10);
	conf_free(c);
}

static void
test_trust_dir_follows_state_dir(void **state)
{
	struct conf *c;

	(void)state;
	c = load_ok(MIN "[agent]\nstate_dir = /srv/p11e/\n");
	assert_string_equal(c->state_dir, "/srv/p11e/");
	assert_string_equal(c->trust_dir, "/srv/p11e/trust");
	conf_free(c);
}

static void
test_trust_keys(void **state)
{
	struct conf *c;

	(void)state;
	c = load_ok(MIN "[trust]\nroot_file = roots.pem\nfetch_aia = yes\n");
	assert_non_null(c->trust_root_file);
	assert_int_equal(c->trust_root_file[0], '/');
	assert_non_null(strstr(c->trust_root_file, "/roots.pem"));
	assert_int_equal(c->trust_fetch_aia, 1);
	conf_free(c);
	c = load_ok(MIN);
	assert_null(c->trust_root_file);
	assert_int_equal(c->trust_fetch_aia, 0);
	conf_free(c);
}

static void
test_comments_quotes_whitespace(void **state)
{
	struct conf *c;

	(void)state;
	c = load_ok("# leading comment\r\n"
	            "  ; indented comment\r\n"
	            "\r\n"
	            "   \t \r\n"
	            "  [scep]   # the CA\r\n"
	            "\turl\t=\thttp://ca.example.com/scep#frag   # trailing comment\r\n"
	            "[token]\n"
	            "uri=pkcs11:token=a;object=b ; trailing\n"
	            "[subject]\n"
	            "dn = \"CN=a # b; c\"   # comment after a quoted value\n"
	            "[key]\n"
	            "label = \"  padded  \"\n");
	assert_string_equal(c->scep_url, "http://ca.example.com/scep#frag");
	assert_string_equal(c->token_uri, "pkcs11:token=a;object=b");
	assert_string_equal(c->dn, "CN=a # b; c");
	assert_string_equal(c->key_label, "  padded  ");
	conf_free(c);
}

static void
test_key_types(void **state)
{
	static const struct {
		const char *written;
		int type, bits, curve;
	} t[] = {
	    {"rsa:2048", CONF_KEY_RSA, 2048, 0},
	    {"RSA:3072", CONF_KEY_RSA, 3072, 0},
	    {"rsa:4096", CONF_KEY_RSA, 4096, 0},
	    {"ec:P-256", CONF_KEY_EC, 256, NID_X9_62_prime256v1},
	    {"EC:p-384", CONF_KEY_EC, 384, NID_secp384r1},
	};
	char text[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct conf *c;

		snprintf(text, sizeof(text), MIN "[key]\ntype = %s\n", t[i].written);
		c = load_ok(text);
		assert_int_equal(c->key_type, t[i].type);
		assert_int_equal(c->key_bits, t[i].bits);
		assert_int_equal(c->key_curve, t[i].curve);
		assert_string_equal(c->key_type_str, t[i].written);
		conf_free(c);
	}
}

static void
test_label_limits(void **state)
{
	char text[512];
	struct conf *c;

	(void)state;
	snprintf(text, sizeof(text), MIN "[key]\nlabel = %.64s\n",
	         "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL");
	c = load_ok(text);
	assert_int_equal(strlen(c->key_label), 64);
	conf_free(c);
}

static void
test_relative_paths(void **state)
{
	char want[PATH_MAX + 64];
	struct conf *c;

	(void)state;
	c = load_ok(MIN "[scep]\nchallenge_file = ../challenge\n"
	                "[token]\nmodule = lib/module.so\npin_file = ./pin\n"
	                "[agent]\nstate_dir = state\ncert_file = /abs/cert.pem\n");
	snprintf(want, sizeof(want), "%s/../challenge", tmpdir);
	assert_string_equal(c->challenge_file, want);
	snprintf(want, sizeof(want), "%s/lib/module.so", tmpdir);
	assert_string_equal(c->module, want);
	snprintf(want, sizeof(want), "%s/pin", tmpdir);
	assert_string_equal(c->pin_file, want);
	snprintf(want, sizeof(want), "%s/state", tmpdir);
	assert_string_equal(c->state_dir, want);
	snprintf(want, sizeof(want), "%s/state/trust", tmpdir);
	assert_string_equal(c->trust_dir, want);
	assert_string_equal(c->cert_file, "/abs/cert.pem");
	conf_free(c);
}

static void
test_relative_paths_relative_config(void **state)
{
	static const char text[] = MIN "[token]\nmodule = m.so\n[trust]\ndir = trust.d\n";
	char cwd[PATH_MAX], real[PATH_MAX], sub[PATH_MAX + 16], want[2 * PATH_MAX];
	struct conf *c = NULL;
	int r;

	(void)state;
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_non_null(realpath(tmpdir, real));
	snprintf(sub, sizeof(sub), "%s/sub", tmpdir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(sub, sizeof(sub), "%s/sub/q.conf", tmpdir);
	write_bytes(sub, text, strlen(text), 0600);
	write_bytes(conf_path, text, strlen(text), 0600);
	assert_int_equal(chdir(tmpdir), 0);

	r = load_path("p.conf", &c);
	if (r != 0) {
		assert_int_equal(chdir(cwd), 0);
		fail_msg("conf_load failed: %s", errbuf);
	}
	assert_string_equal(c->path, "p.conf");
	snprintf(want, sizeof(want), "%s/m.so", real);
	assert_string_equal(c->module, want);
	snprintf(want, sizeof(want), "%s/trust.d", real);
	assert_string_equal(c->trust_dir, want);
	conf_free(c);
	c = NULL;

	r = load_path("sub/q.conf", &c);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(r, 0);
	snprintf(want, sizeof(want), "%s/sub/m.so", real);
	assert_string_equal(c->module, want);
	conf_free(c);
}

static void
format_fp(char *out, size_t size, const char *prefix, const unsigned char *fp, size_t n,
          const char *sep, int upper)
{
	size_t i, len;

	len = (size_t)snprintf(out, size, "%s", prefix);
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(out + len, size - len, upper ? "%s%02X" : "%s%02x",
		                        i == 0 ? "" : sep, fp[i]);
}

static void
test_fingerprint_forms(void **state)
{
	static const struct {
		const char *prefix, *sep;
		int upper;
		size_t n;
		int alg;
	} t[] = {
	    {"", ":", 1, 32, CONF_FP_SHA256},        {"", "", 0, 32, CONF_FP_SHA256},
	    {"sha256:", " ", 0, 32, CONF_FP_SHA256}, {"SHA256:", "", 1, 32, CONF_FP_SHA256},
	    {"sha1:", ":", 1, 20, CONF_FP_SHA1},     {"SHA1:", "", 0, 20, CONF_FP_SHA1},
	    {"", ":", 0, 20, CONF_FP_SHA1},
	};
	unsigned char fp[32];
	char value[256], text[1024];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(fp); i++)
		fp[i] = (unsigned char)(i * 37 + 11);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct conf *c;

		format_fp(value, sizeof(value), t[i].prefix, fp, t[i].n, t[i].sep, t[i].upper);
		snprintf(text, sizeof(text), MIN "[scep]\nca_fingerprint = %s\n", value);
		c = load_ok(text);
		assert_int_equal(c->ca_fp_alg, t[i].alg);
		assert_int_equal(c->ca_fp_len, t[i].n);
		assert_memory_equal(c->ca_fp, fp, t[i].n);
		conf_free(c);
	}
}

static void
test_fingerprint_wrong_length(void **state)
{
	static const struct {
		const char *prefix;
		size_t n;
		const char *expect;
	} t[] = {
	    {"sha256:", 20, "has 20 bytes (a SHA-256 fingerprint has 32)"},
	    {"sha1:", 32, "has 32 bytes (a SHA-1 fingerprint has 20)"},
	    {"", 31, "has 31 bytes (expected 32 for SHA-256 or 20 for SHA-1)"},
	    {"", 33, "has 33 bytes (expected 32 for SHA-256 or 20 for SHA-1)"},
	};
	unsigned char fp[40];
	char value[256], text[1024], expect[512];
	size_t i;

	(void)state;
	memset(fp, 0x5c, sizeof(fp));
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct conf *c = SENTINEL;

		format_fp(value, sizeof(value), t[i].prefix, fp, t[i].n, ":", 1);
		snprintf(text, sizeof(text), MIN "[scep]\nca_fingerprint = %s\n", value);
		assert_int_equal(load_text(text, 0600, &c), P11E_ERR_CONFIG);
		assert_ptr_equal(c, SENTINEL);
		snprintf(expect, sizeof(expect), "@:8: [scep] ca_fingerprint: '%s' %s", value,
		         t[i].expect);
		assert_logged(expect);
	}
}

static void
test_san_lists(void **state)
{
	struct conf *c;

	(void)state;
	c = load_ok(MIN "san_dns =  a.example.com ,b.example.com,\tc.example.com  \n"
	                "san_ip = 192.0.2.1, 2001:db8::1 ,::ffff:10.0.0.1\n"
	                "san_email = x@example.com,y@example.com\n"
	                "san_upn = u@example.com\n");
	assert_int_equal(c->san_dns.n, 3);
	assert_string_equal(c->san_dns.v[0], "a.example.com");
	assert_string_equal(c->san_dns.v[1], "b.example.com");
	assert_string_equal(c->san_dns.v[2], "c.example.com");
	assert_int_equal(c->san_ip.n, 3);
	assert_string_equal(c->san_ip.v[0], "192.0.2.1");
	assert_string_equal(c->san_ip.v[1], "2001:db8::1");
	assert_string_equal(c->san_ip.v[2], "::ffff:10.0.0.1");
	assert_int_equal(c->san_email.n, 2);
	assert_string_equal(c->san_email.v[1], "y@example.com");
	assert_int_equal(c->san_upn.n, 1);
	assert_int_equal(c->san_uri.n, 0);
	conf_free(c);
}

/* `provision`: placeholders are checked at load and kept as written; the PIN map file. */
static void
test_templates_pin_map(void **state)
{
	struct conf *c;

	(void)state;
	c = load_ok("[scep]\nurl = http://ca.example.com/scep\n"
	            "[token]\nuri = pkcs11:manufacturer=SoftHSM%20project\n"
	            "pin_map_file = pins.txt\n"
	            "[subject]\ndn = CN=card-{token.serial},OU={token.model},O=Ex {{x}}\n"
	            "san_dns = {token.serial}.{hostname}.example.com, fixed.example.com\n"
	            "san_email = {token.label}@example.com\n");
	assert_string_equal(c->dn, "CN=card-{token.serial},OU={token.model},O=Ex {{x}}");
	assert_string_equal(c->san_dns.v[0], "{token.serial}.{hostname}.example.com");
	assert_string_equal(c->san_email.v[0], "{token.label}@example.com");
	assert_non_null(strstr(c->pin_map_file, "/pins.txt"));
	assert_true(c->pin_map_file[0] == '/');
	assert_null(c->pin_file);
	assert_int_equal(c->token_init, 0);
	conf_free(c);
	c = load_ok(MIN "[token]\ninit = yes\nso_pin_file = /etc/so-pin\n"
	                "init_label = c-{date}\n");
	assert_int_equal(c->token_init, 1);
	assert_string_equal(c->so_pin_file, "/etc/so-pin");
	assert_string_equal(c->init_label, "c-{date}");
	conf_free(c);
}

static void
test_challenge_inline_0600(void **state)
{
	struct conf *c;

	(void)state;
	c = load_ok(MIN "[scep]\nchallenge = \"pass # word\"\n");
	assert_string_equal(c->challenge, "pass # word");
	assert_null(c->challenge_file);
	conf_free(c);
	c = load_ok(MIN "[scep]\nchallenge = hunter2   # comment\n");
	assert_string_equal(c->challenge, "hunter2");
	conf_free(c);
}

static void
test_challenge_inline_readable(void **state)
{
	static const mode_t modes[] = {0644, 0640, 0604, 0620};
	char expect[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct conf *c = SENTINEL;

		assert_int_equal(load_text(MIN "[scep]\nchallenge = Sup3rSecret\n", modes[i], &c),
		                 P11E_ERR_CONFIG);
		assert_ptr_equal(c, SENTINEL);
		snprintf(expect, sizeof(expect),
		         "@: [scep] challenge: the file holds a secret but is readable by others "
		         "(mode %04o); chmod 600 it or use challenge_file",
		         (unsigned)modes[i]);
		assert_logged(expect);
		assert_null(strstr(errbuf, "Sup3rSecret"));
	}
}

/* A challenge set before a later error is freed (LeakSanitizer) and never logged. */
static void
test_challenge_then_error(void **state)
{
	struct conf *c = SENTINEL;

	(void)state;
	assert_int_equal(load_text("[scep]\nchallenge = Sup3rSecret\nbogus = 1\n", 0600, &c),
	                 P11E_ERR_CONFIG);
	assert_ptr_equal(c, SENTINEL);
	assert_logged("@:3: [scep] bogus: unknown key");
	assert_null(strstr(errbuf, "Sup3rSecret"));

	assert_int_equal(load_text("[scep]\nchallenge = \"Sup3rSecret\n", 0600, &c),
	                 P11E_ERR_CONFIG);
	assert_logged("@:2: [scep] challenge: the quoted value has no closing '\"'");
	assert_null(strstr(errbuf, "Sup3rSecret"));
}

static void
test_missing_file(void **state)
{
	char path[PATH_MAX + 32];
	struct conf *c = SENTINEL;

	(void)state;
	snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
	assert_int_equal(load_path(path, &c), P11E_ERR_FILE);
	assert_ptr_equal(c, SENTINEL);
	assert_non_null(strstr(errbuf, "cannot read configuration "));
	assert_non_null(strstr(errbuf, "does-not-exist.conf: No such file or directory"));

	assert_int_equal(load_path(tmpdir, &c), P11E_ERR_FILE);
	assert_ptr_equal(c, SENTINEL);
	assert_non_null(strstr(errbuf, "not a regular file"));
}

/* MIN, then "[key]" and a line 8 "label=xxx..." of line_len bytes. */
static char *
text_with_long_line(size_t line_len)
{
	static const char prefix[] = MIN "[key]\nlabel=";
	size_t plen = strlen(prefix);
	char *text = malloc(plen + line_len + 2);

	assert_non_null(text);
	memcpy(text, prefix, plen);
	memset(text + plen, 'x', line_len - strlen("label="));
	strcpy(text + plen + line_len - strlen("label="), "\n");
	return text;
}

static void
test_line_length(void **state)
{
	struct conf *c = SENTINEL;
	char *text;

	(void)state;
	/* 4096 bytes: read whole, so the label check sees all of it */
	text = text_with_long_line(4096);
	assert_int_equal(load_text(text, 0600, &c), P11E_ERR_CONFIG);
	assert_logged("@:8: [key] label: the label is 4090 bytes long (use 1 to 64)");
	free(text);

	text = text_with_long_line(4097);
	assert_int_equal(load_text(text, 0600, &c), P11E_ERR_CONFIG);
	assert_logged("@:8: the line is longer than 4096 bytes");
	assert_ptr_equal(c, SENTINEL);
	free(text);
}

static void
test_nul_byte(void **state)
{
	static const char text[] = MIN "[key]\nlabel = a\0b\n";
	struct conf *c = SENTINEL;

	(void)state;
	write_bytes(conf_path, text, sizeof(text) - 1, 0600);
	assert_int_equal(load_path(conf_path, &c), P11E_ERR_CONFIG);
	assert_ptr_equal(c, SENTINEL);
	assert_logged("@:8: the line contains a NUL byte");
}

static void
test_free_null(void **state)
{
	(void)state;
	conf_free(NULL);
}

struct error_case {
	const char *text;
	const char *expect; /* '@' is the config path */
};

static void
test_error_case(void **state)
{
	const struct error_case *e = *state;
	struct conf *c = SENTINEL;

	assert_int_equal(load_text(e->text, 0600, &c), P11E_ERR_CONFIG);
	assert_ptr_equal(c, SENTINEL);
	assert_logged(e->expect);
}

#define ERROR_CASE(name, text, expect) static const struct error_case name = {text, expect};

ERROR_CASE(e_unknown_key, MIN "[key]\ncolour = red\n",
           "@:8: [key] colour: unknown key (expected type or label)")
ERROR_CASE(e_unknown_key_scep, MIN "[scep]\nchalenge = x\n",
           "@:8: [scep] chalenge: unknown key (expected url, challenge, challenge_file, "
           "ca_fingerprint, timeout, challenge_url, challenge_user, challenge_password_file, "
           "challenge_chars, challenge_length, challenge_insecure_http, use_proxy, proxy or "
           "ca_file)")
ERROR_CASE(e_unknown_placeholder,
           "[scep]\nurl = http://ca.example.com/scep\n[token]\nuri = pkcs11:\n[subject]\n"
           "dn = CN={token.serial},O={token.colour}\n",
           "@:6: [subject] dn: unknown placeholder {token.colour} (known: {token.label}, "
           "{token.serial}, {token.manufacturer}, {token.model}, {hostname}, {date})")
ERROR_CASE(e_placeholder_san, MIN "san_dns = a.example.com, {serial}.example.com\n",
           "@:7: [subject] san_dns: unknown placeholder {serial}")
ERROR_CASE(e_placeholder_open, MIN "san_uri = https://x/{date\n",
           "@:7: [subject] san_uri: '{' without a closing '}'")
ERROR_CASE(e_init_without_so_pin, MIN "[token]\ninit = yes\n",
           "@:8: [token] init = yes needs so_pin_file")
ERROR_CASE(e_init_label_long, MIN "[token]\ninit_label = 0123456789abcdef0123456789abcdef0\n",
           "@:8: [token] init_label: the label is 33 bytes long")
ERROR_CASE(e_bad_type, MIN "[key]\ntype = rsa:1024\n",
           "@:8: [key] type: 'rsa:1024' is not supported (use rsa:2048, rsa:3072, rsa:4096, "
           "ec:P-256 or ec:P-384)")
ERROR_CASE(e_bad_type_curve, MIN "[key]\ntype = ec:P-521\n",
           "@:8: [key] type: 'ec:P-521' is not supported")
ERROR_CASE(e_missing_url, "[token]\nuri = pkcs11:token=t\n[subject]\ndn = CN=x\n",
           "@:4: [scep] url is required (the file has no [scep] section)")
ERROR_CASE(e_missing_url_in_section,
           "[token]\nuri = pkcs11:token=t\n[scep]\ntimeout = 5\n[subject]\ndn = CN=x\n",
           "@:3: [scep] url is required (missing from the section that starts here)")
ERROR_CASE(e_missing_uri, "[scep]\nurl = http://ca/\n[subject]\ndn = CN=x\n",
           "@:4: [token] uri is required (the file has no [token] section)")
ERROR_CASE(e_missing_dn, "[scep]\nurl = http://ca/\n[token]\nuri = pkcs11:\n",
           "@:4: [subject] dn is required (the file has no [subject] section)")
ERROR_CASE(e_outside_section, "url = http://ca/\n" MIN,
           "@:1: url: key outside any section (put it under [scep])")
ERROR_CASE(e_unknown_section, MIN "[server]\n",
           "@:7: [server]: unknown section (expected [scep], [token], [key], [subject], [trust], "
           "[agent], [renewal] or [hooks])")
ERROR_CASE(e_section_unclosed, MIN "[scep\n", "@:7: a section header needs a closing ']'")
ERROR_CASE(e_section_garbage, MIN "[scep] x\n",
           "@:7: [scep]: unexpected text after the section header")
ERROR_CASE(e_duplicate, MIN "[scep]\nurl = http://other/\n",
           "@:8: [scep] url: duplicate key (first set at line 2)")
ERROR_CASE(e_no_equals, MIN "[scep]\ntimeout 30\n", "@:8: [scep]: expected 'key = value'")
ERROR_CASE(e_no_key, MIN "[scep]\n = 30\n", "@:8: [scep]: expected 'key = value'")
ERROR_CASE(e_bad_url, "[scep]\nurl = ftp://ca.example.com/\n",
           "@:2: [scep] url: 'ftp://ca.example.com/' is not an http:// or https:// URL")
ERROR_CASE(e_url_no_host, "[scep]\nurl = https://\n",
           "@:2: [scep] url: 'https://' is not an http:// or https:// URL")
ERROR_CASE(e_url_space, "[scep]\nurl = \"http://ca/a b\"\n",
           "@:2: [scep] url: 'http://ca/a b' is not an http:// or https:// URL")
ERROR_CASE(e_bad_token_uri, "[token]\nuri = token=t\n",
           "@:2: [token] uri: 'token=t' is not a PKCS#11 URI")
ERROR_CASE(e_timeout_zero, MIN "[scep]\ntimeout = 0\n",
           "@:8: [scep] timeout: '0' is not a number of seconds from 1 to 3600")
ERROR_CASE(e_timeout_big, MIN "[scep]\ntimeout = 3601\n",
           "@:8: [scep] timeout: '3601' is not a number of seconds from 1 to 3600")
ERROR_CASE(e_timeout_unit, MIN "[scep]\ntimeout = 30s\n",
           "@:8: [scep] timeout: '30s' is not a number of seconds from 1 to 3600")
ERROR_CASE(e_timeout_negative, MIN "[scep]\ntimeout = -5\n",
           "@:8: [scep] timeout: '-5' is not a number of seconds")
ERROR_CASE(e_label_long,
           MIN "[key]\nlabel = 01234567890123456789012345678901234567890123456789012345678901234\n",
           "@:8: [key] label: the label is 65 bytes long (use 1 to 64)")
ERROR_CASE(e_empty_value, MIN "[key]\nlabel =   # nothing\n",
           "@:8: [key] label: empty value (give a value or remove the line)")
ERROR_CASE(e_empty_quoted, MIN "[key]\nlabel = \"\"\n", "@:8: [key] label: empty value")
ERROR_CASE(e_unterminated, MIN "[key]\nlabel = \"abc\n",
           "@:8: [key] label: the quoted value has no closing '\"'")
ERROR_CASE(e_after_quote, MIN "[key]\nlabel = \"abc\" def\n",
           "@:8: [key] label: unexpected text after the closing '\"'")
ERROR_CASE(e_bad_ip, MIN "san_ip = 192.0.2.1, 300.1.1.1\n",
           "@:7: [subject] san_ip: '300.1.1.1' is not an IPv4 or IPv6 address")
ERROR_CASE(e_ip_name, MIN "san_ip = host.example.com\n",
           "@:7: [subject] san_ip: 'host.example.com' is not an IPv4 or IPv6 address")
ERROR_CASE(e_empty_item, MIN "san_dns = a.example.com,,b.example.com\n",
           "@:7: [subject] san_dns: item 2 of the list is empty (separate items with ',')")
ERROR_CASE(e_trailing_comma, MIN "san_email = a@example.com, \n",
           "@:7: [subject] san_email: item 2 of the list is empty")
ERROR_CASE(e_challenge_both,
           "[scep]\nurl = http://ca/\nchallenge = x\nchallenge_file = /c\n"
           "[token]\nuri = pkcs11:\n[subject]\ndn = CN=x\n",
           "@: [scep] challenge (line 3) and challenge_file (line 4) are both set; keep only one")
ERROR_CASE(e_fp_not_hex, MIN "[scep]\nca_fingerprint = sha256:zz\n",
           "@:8: [scep] ca_fingerprint: 'sha256:zz' is not a hex fingerprint")
ERROR_CASE(e_fp_md5, MIN "[scep]\nca_fingerprint = md5:00\n",
           "@:8: [scep] ca_fingerprint: 'md5:00' is not a hex fingerprint")
ERROR_CASE(e_fp_odd, MIN "[scep]\nca_fingerprint = ABC\n",
           "@:8: [scep] ca_fingerprint: 'ABC' has an odd number of hex digits")
ERROR_CASE(e_fp_empty, MIN "[scep]\nca_fingerprint = sha1:\n",
           "@:8: [scep] ca_fingerprint: 'sha1:' has 0 bytes (a SHA-1 fingerprint has 20)")

ERROR_CASE(e_chal_url_no_user,
           "[scep]\nurl = https://n/certsrv/mscep/mscep.dll\n"
           "challenge_url = https://n/certsrv/mscep_admin/\n[token]\nuri = pkcs11:token=t\n"
           "[subject]\ndn = CN=x\n",
           "@:3: [scep] challenge_url needs challenge_user and challenge_password_file (the "
           "account allowed to create challenges)")
ERROR_CASE(e_chal_url_and_static,
           "[scep]\nurl = https://n/s\nchallenge_file = /c\nchallenge_url = https://n/a\n"
           "challenge_user = u@d\nchallenge_password_file = /p\n[token]\nuri = pkcs11:\n"
           "[subject]\ndn = CN=x\n",
           "@:4: [scep] challenge_url: a one-time challenge page and a static challenge (line "
           "3) are both set; keep only one")
ERROR_CASE(e_chal_chars, MIN "[scep]\nchallenge_chars = base64\n",
           "@:8: [scep] challenge_chars: 'base64' is not a character set (use hex, digits, "
           "alnum or any)")
ERROR_CASE(e_chal_length, MIN "[scep]\nchallenge_length = 300\n",
           "@:8: [scep] challenge_length: '300' is not a length from 0 (any) to 256")
ERROR_CASE(e_use_proxy, MIN "[scep]\nuse_proxy = maybe\n",
           "@:8: [scep] use_proxy: 'maybe' is not yes or no")
ERROR_CASE(e_fetch_aia, MIN "[trust]\nfetch_aia = sometimes\n",
           "@:8: [trust] fetch_aia: 'sometimes' is not yes or no")
ERROR_CASE(e_proxy, MIN "[scep]\nproxy = proxy.example.com:3128\n",
           "@:8: [scep] proxy: 'proxy.example.com:3128' is not a proxy URL (expected e.g. "
           "http://proxy.example.com:3128)")

/* NTLM to the challenge page over plain http: refused at load, naming file:line. */
ERROR_CASE(e_chal_url_http,
           "[scep]\nurl = https://n/certsrv/mscep/mscep.dll\n"
           "challenge_url = http://n/certsrv/mscep_admin/\nchallenge_user = u@d\n"
           "challenge_password_file = /p\n[token]\nuri = pkcs11:token=t\n[subject]\ndn = CN=x\n",
           "@:3: [scep] challenge_url: http://n/certsrv/mscep_admin/ is plain http: the NTLM "
           "login to the challenge page could be captured and cracked offline or relayed; use "
           "https, or accept that risk with challenge_insecure_http = yes")
ERROR_CASE(e_chal_url_http_no,
           "[scep]\nurl = https://n/certsrv/mscep/mscep.dll\n"
           "challenge_url = HTTP://n/certsrv/mscep_admin/\nchallenge_user = u@d\n"
           "challenge_password_file = /p\nchallenge_insecure_http = no\n[token]\n"
           "uri = pkcs11:token=t\n[subject]\ndn = CN=x\n",
           "@:3: [scep] challenge_url: HTTP://n/certsrv/mscep_admin/ is plain http")
ERROR_CASE(e_chal_insecure_bad, MIN "[scep]\nchallenge_insecure_http = perhaps\n",
           "@:8: [scep] challenge_insecure_http: 'perhaps' is not yes or no")

/* challenge_insecure_http = yes accepts an http challenge_url; elsewhere it is ignored. */
static void
test_challenge_insecure_http(void **state)
{
	struct conf *c;

	(void)state;
	c = load_ok("[scep]\nurl = http://n/certsrv/mscep/mscep.dll\n"
	            "challenge_url = http://n/certsrv/mscep_admin/\nchallenge_user = u@d\n"
	            "challenge_password_file = /p\nchallenge_insecure_http = yes\n"
	            "[token]\nuri = pkcs11:token=t\n[subject]\ndn = CN=x\n");
	assert_int_equal(c->challenge_insecure_http, 1);
	assert_string_equal(errbuf, "");
	conf_free(c);
	c = load_ok("[scep]\nurl = https://n/certsrv/mscep/mscep.dll\n"
	            "challenge_url = https://n/certsrv/mscep_admin/\nchallenge_user = u@d\n"
	            "challenge_password_file = /p\nchallenge_insecure_http = yes\n"
	            "[token]\nuri = pkcs11:token=t\n[subject]\ndn = CN=x\n");
	assert_logged("@:6: [scep] challenge_insecure_http is ignored: challenge_url is https");
	conf_free(c);
	c = load_ok(MIN "[scep]\nchallenge_insecure_http = yes\n");
	assert_logged("@:8: [scep] challenge_insecure_http is ignored without challenge_url");
	assert_int_equal(c->challenge_insecure_http, 1);
	conf_free(c);
	c = load_ok(MIN);
	assert_int_equal(c->challenge_insecure_http, 0);
	conf_free(c);
}

/* A rejected URL, proxy or token URI is shown without the credentials it carries. */
static void
test_rejected_values_hide_credentials(void **state)
{
	static const struct {
		const char *text, *expect;
	} cases[] = {
	    {"[scep]\nurl = ftp://scepuser:Url-S3cret@ca.example.com/scep\n",
	     "@:2: [scep] url: 'ftp://ca.example.com/scep' is not an http:// or https:// URL"},
	    {"[scep]\nurl = \"http://scepuser:Url-S3cret@ca.example.com/a b\"\n",
	     "@:2: [scep] url: 'http://ca.example.com/a b' is not"},
	    {"[scep]\nurl = \"http://scepuser:Url/S3cret@ca/a b\"\n",
	     "@:2: [scep] url: 'http://ca/a b' is not"},
	    {MIN "[scep]\nproxy = ftp://proxyuser:Url-S3cret@proxy.example.com:3128\n",
	     "@:8: [scep] proxy: 'ftp://proxy.example.com:3128' is not a proxy URL"},
	    {MIN "[scep]\nproxy = proxyuser:Url-S3cret@proxy.example.com:3128\n",
	     "@:8: [scep] proxy: 'proxy.example.com:3128' is not a proxy URL"},
	    {MIN "[scep]\nproxy = \"http://proxyuser:Url S3cret@proxy:3128\"\n",
	     "@:8: [scep] proxy: 'http://proxy:3128' is not a proxy URL"},
	    {"[scep]\nurl = https://n/s\nchallenge_url = http://ndesuser:Url-S3cret@n/a/\n"
	     "challenge_user = u@d\nchallenge_password_file = /p\n[token]\nuri = pkcs11:\n"
	     "[subject]\ndn = CN=x\n",
	     "@:3: [scep] challenge_url: http://n/a/ is plain http"},
	    {"[token]\nuri = token=t;pin-value=Url-S3cret\n",
	     "@:2: [token] uri: the value (not shown: it has a pin-value) is not a PKCS#11 URI"},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf *c = SENTINEL;

		assert_int_equal(load_text(cases[i].text, 0600, &c), P11E_ERR_CONFIG);
		assert_ptr_equal(c, SENTINEL);
		assert_logged(cases[i].expect);
		if (strstr(errbuf, "S3cret") != NULL)
			fail_msg("case %zu: the message shows the password: %s", i, errbuf);
	}
}

static void
test_ndes_keys(void **state)
{
	struct conf *c;

	(void)state;
	c = load_ok("[scep]\n"
	            "url = https://ndes.example.com/certsrv/mscep/mscep.dll\n"
	            "challenge_url = https://ndes.example.com/certsrv/mscep_admin/\n"
	            "challenge_user = EXAMPLE\\enroll\n"
	            "challenge_password_file = ndes.pass\n"
	            "challenge_chars = HEX\n"
	            "challenge_length = 16\n"
	            "use_proxy = no\n"
	            "proxy = http://proxy.example.com:3128\n"
	            "ca_file = /etc/p11enroll/ndes-tls.pem\n"
	            "[token]\nuri = pkcs11:token=t\n[subject]\ndn = CN=x\n");
	assert_string_equal(c->challenge_url, "https://ndes.example.com/certsrv/mscep_admin/");
	assert_string_equal(c->challenge_user, "EXAMPLE\\enroll");
	assert_non_null(c->challenge_password_file);
	assert_int_equal(c->challenge_password_file[0], '/');
	assert_non_null(strstr(c->challenge_password_file, "/ndes.pass"));
	assert_int_equal(c->challenge_chars, CONF_CHARS_HEX);
	assert_int_equal(c->challenge_length, 16);
	assert_int_equal(c->use_proxy, 0);
	assert_string_equal(c->proxy, "http://proxy.example.com:3128");
	assert_string_equal(c->ca_file, "/etc/p11enroll/ndes-tls.pem");
	assert_int_equal(c->challenge_insecure_http, 0);
	conf_free(c);
}

static void
test_renewal_keys(void **state)
{
	struct conf *c;

	(void)state;
	c = load_ok(MIN "[renewal]\ninterval = 30d\nbefore_expiry = 14d\nnew_key = no\n"
	                "keep_old = yes\njitter = 25%\n");
	assert_int_equal(c->renew_interval, 30 * 86400);
	assert_int_equal(c->renew_before_secs, 14 * 86400);
	assert_int_equal(c->renew_before_pct, 0);
	assert_int_equal(c->renew_new_key, 0);
	assert_int_equal(c->renew_keep_old, 1);
	assert_int_equal(c->renew_jitter_pct, 25);
	conf_free(c);
	c = load_ok(MIN "[renewal]\ninterval = 0\nbefore_expiry = 35%\njitter = 0%\n");
	assert_int_equal(c->renew_interval, 0);
	assert_int_equal(c->renew_before_secs, 0);
	assert_int_equal(c->renew_before_pct, 35);
	assert_int_equal(c->renew_jitter_pct, 0);
	conf_free(c);
}

static void
test_retry_keys(void **state)
{
	struct conf *c;

	(void)state;
	c = load_ok(MIN);
	assert_int_equal(c->retry_min, 60);
	assert_int_equal(c->retry_max, 3600);
	conf_free(c);
	c = load_ok(MIN "[agent]\nretry_min = 5s\nretry_max = 10m\n");
	assert_int_equal(c->retry_min, 5);
	assert_int_equal(c->retry_max, 600);
	conf_free(c);
	/* a retry_min above the default retry_max raises it */
	c = load_ok(MIN "[agent]\nretry_min = 2h\n");
	assert_int_equal(c->retry_min, 7200);
	assert_int_equal(c->retry_max, 7200);
	conf_free(c);
}

ERROR_CASE(e_retry_order, MIN "[agent]\nretry_min = 10m\nretry_max = 1m\n",
           "@:9: [agent] retry_max is shorter than retry_min (60 s < 600 s)")
ERROR_CASE(e_retry_word, MIN "[agent]\nretry_min = soon\n",
           "@:8: [agent] retry_min: 'soon' is not a duration (e.g. 90s, 30m, 1h)")

ERROR_CASE(e_renew_interval, MIN "[renewal]\ninterval = monthly\n",
           "@:8: [renewal] interval: 'monthly' is not a duration (e.g. 30d, 12h; 0 = none)")
ERROR_CASE(e_renew_before_pct, MIN "[renewal]\nbefore_expiry = 120%\n",
           "@:8: [renewal] before_expiry: '120%' is not a percentage from 1% to 100%")
ERROR_CASE(e_renew_before_zero, MIN "[renewal]\nbefore_expiry = 0%\n",
           "@:8: [renewal] before_expiry: '0%' is not a percentage from 1% to 100%")
ERROR_CASE(e_renew_before_word, MIN "[renewal]\nbefore_expiry = soon\n",
           "@:8: [renewal] before_expiry: 'soon' is neither a percentage of the lifetime (e.g. "
           "20%) nor a duration (e.g. 14d)")
ERROR_CASE(e_renew_new_key, MIN "[renewal]\nnew_key = always\n",
           "@:8: [renewal] new_key: 'always' is not yes or no")
ERROR_CASE(e_renew_jitter, MIN "[renewal]\njitter = 10\n",
           "@:8: [renewal] jitter: '10' is not a percentage from 0% to 100%")
ERROR_CASE(e_renew_unknown, MIN "[renewal]\nevery = 1d\n",
           "@:8: [renewal] every: unknown key (expected interval, before_expiry, new_key, "
           "keep_old or jitter)")

static void
test_durations(void **state)
{
	static const struct {
		const char *in;
		long secs;
	} ok[] = {{"90", 90},   {"90s", 90},      {"30m", 1800},
	          {"1h", 3600}, {"14d", 1209600}, {"2w", 1209600}};
	static const char *const bad[] = {"",   "0",    "h",           "1x",    "1hh",
	                                  "-5", "1.5h", "99999999999", "4000d", " 1h"};
	size_t i;
	long v;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		v = -1;
		assert_int_equal(conf_parse_duration(ok[i].in, &v), 0);
		assert_int_equal(v, ok[i].secs);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = -1;
		assert_int_equal(conf_parse_duration(bad[i], &v), P11E_ERR_USAGE);
		assert_int_equal(v, -1);
	}
}

#define ERROR_TEST(name)                                                                           \
	{                                                                                          \
#name, test_error_case, NULL, NULL, (void *)&name                                  \
	}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_key),
	    cmocka_unit_test(test_ndes_keys),
	    cmocka_unit_test(test_challenge_insecure_http),
	    cmocka_unit_test(test_rejected_values_hide_credentials),
	    ERROR_TEST(e_chal_url_http),
	    ERROR_TEST(e_chal_url_http_no),
	    ERROR_TEST(e_chal_insecure_bad),
	    cmocka_unit_test(test_durations),
	    cmocka_unit_test(test_renewal_keys),
	    ERROR_TEST(e_renew_interval),
	    ERROR_TEST(e_renew_before_pct),
	    ERROR_TEST(e_renew_before_zero),
	    ERROR_TEST(e_renew_before_word),
	    ERROR_TEST(e_renew_new_key),
	    ERROR_TEST(e_renew_jitter),
	    ERROR_TEST(e_retry_order),
	    ERROR_TEST(e_retry_word),
	    ERROR_TEST(e_renew_unknown),
	    ERROR_TEST(e_chal_url_no_user),
	    ERROR_TEST(e_chal_url_and_static),
	    ERROR_TEST(e_chal_chars),
	    ERROR_TEST(e_chal_length),
	    ERROR_TEST(e_use_proxy),
	    ERROR_TEST(e_fetch_aia),
	    ERROR_TEST(e_proxy),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_trust_dir_follows_state_dir),
	    cmocka_unit_test(test_trust_keys),
	    cmocka_unit_test(test_comments_quotes_whitespace),
	    cmocka_unit_test(test_key_types),
	    cmocka_unit_test(test_label_limits),
	    cmocka_unit_test(test_relative_paths),
	    cmocka_unit_test(test_relative_paths_relative_config),
	    cmocka_unit_test(test_fingerprint_forms),
	    cmocka_unit_test(test_fingerprint_wrong_length),
	    cmocka_unit_test(test_san_lists),
	    cmocka_unit_test(test_templates_pin_map),
	    cmocka_unit_test(test_challenge_inline_0600),
	    cmocka_unit_test(test_challenge_inline_readable),
	    cmocka_unit_test(test_challenge_then_error),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_line_length),
	    cmocka_unit_test(test_nul_byte),
	    cmocka_unit_test(test_free_null),
	    cmocka_unit_test(test_retry_keys),
	    ERROR_TEST(e_unknown_key),
	    ERROR_TEST(e_unknown_key_scep),
	    ERROR_TEST(e_unknown_placeholder),
	    ERROR_TEST(e_placeholder_san),
	    ERROR_TEST(e_placeholder_open),
	    ERROR_TEST(e_init_without_so_pin),
	    ERROR_TEST(e_init_label_long),
	    ERROR_TEST(e_bad_type),
	    ERROR_TEST(e_bad_type_curve),
	    ERROR_TEST(e_missing_url),
	    ERROR_TEST(e_missing_url_in_section),
	    ERROR_TEST(e_missing_uri),
	    ERROR_TEST(e_missing_dn),
	    ERROR_TEST(e_outside_section),
	    ERROR_TEST(e_unknown_section),
	    ERROR_TEST(e_section_unclosed),
	    ERROR_TEST(e_section_garbage),
	    ERROR_TEST(e_duplicate),
	    ERROR_TEST(e_no_equals),
	    ERROR_TEST(e_no_key),
	    ERROR_TEST(e_bad_url),
	    ERROR_TEST(e_url_no_host),
	    ERROR_TEST(e_url_space),
	    ERROR_TEST(e_bad_token_uri),
	    ERROR_TEST(e_timeout_zero),
	    ERROR_TEST(e_timeout_big),
	    ERROR_TEST(e_timeout_unit),
	    ERROR_TEST(e_timeout_negative),
	    ERROR_TEST(e_label_long),
	    ERROR_TEST(e_empty_value),
	    ERROR_TEST(e_empty_quoted),
	    ERROR_TEST(e_unterminated),
	    ERROR_TEST(e_after_quote),
	    ERROR_TEST(e_bad_ip),
	    ERROR_TEST(e_ip_name),
	    ERROR_TEST(e_empty_item),
	    ERROR_TEST(e_trailing_comma),
	    ERROR_TEST(e_challenge_both),
	    ERROR_TEST(e_fp_not_hex),
	    ERROR_TEST(e_fp_md5),
	    ERROR_TEST(e_fp_odd),
	    ERROR_TEST(e_fp_empty),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
