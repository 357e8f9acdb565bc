/*
 * conf.c: the configuration file, parsed once into struct conf.
 *
 * One keyword table (OpenSSH readconf style, conf_keys.c and conf_list.c) maps
 * [section] key to a handler and the field it fills. ini.c reads the file and
 * hands out its lines; this file loads it, feeds each line to the table and
 * holds what the handlers share; conf_check.c checks what needs the whole file.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "conf.h"
#include "conf_int.h"
#include "err.h"
#include "ini.h"
#include "log.h"
#include "secret.h"

#define DEFAULT_TIMEOUT 30
#define HOOK_TIMEOUT 60

/* Logs "FILE:LINE: [section] key: what" and returns P11E_ERR_CONFIG. */
int
conf_kw_error(const struct parser *p, const struct keyword *kw, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("%s:%u: [%s] %s: %s", p->file, p->line, kw->section, kw->key, msg);
	return P11E_ERR_CONFIG;
}

void *
conf_field(struct parser *p, const struct keyword *kw)
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
	const char *names[CONF_KEYWORDS_MAX];
	size_t i, n = 0;

	for (i = 0; i < conf_nkeywords; i++)
		if (n == 0 || strcmp(names[n - 1], conf_keywords[i].section) != 0)
			names[n++] = conf_keywords[i].section;
	join_names(names, n, "[", "]", buf, size);
}

static void
key_names(const char *section, char *buf, size_t size)
{
	const char *names[CONF_KEYWORDS_MAX];
	size_t i, n = 0;

	for (i = 0; i < conf_nkeywords; i++)
		if (strcmp(conf_keywords[i].section, section) == 0)
			names[n++] = conf_keywords[i].key;
	join_names(names, n, "", "", buf, size);
}

const struct keyword *
conf_find_keyword(const char *section, const char *key)
{
	size_t i;

	for (i = 0; i < conf_nkeywords; i++)
		if ((section == NULL || strcmp(conf_keywords[i].section, section) == 0) &&
		    strcmp(conf_keywords[i].key, key) == 0)
			return &conf_keywords[i];
	return NULL;
}

int
conf_dup_str(const char *v, char **out)
{
	if ((*out = strdup(v)) == NULL) {
		log_error("out of memory");
		return P11E_ERR_ALLOC;
	}
	return 0;
}

/* *out = dir/name, without doubling a '/' at the end of dir. */
int
conf_path_join(const char *dir, const char *name, char **out)
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

/* A "[name]" header: name must be a section of the keyword table. */
static int
parse_section(struct parser *p, const char *name)
{
	char expected[128];
	size_t i;
	int known = 0;

	for (i = 0; i < conf_nkeywords; i++) {
		if (strcmp(conf_keywords[i].section, name) != 0)
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
		kw = conf_find_keyword(NULL, key);
		log_error("%s:%u: %s: key outside any section (put it under [%s])", p->file,
		          p->line, key, kw != NULL ? kw->section : "section");
		return P11E_ERR_CONFIG;
	}
	if ((kw = conf_find_keyword(section, key)) == NULL) {
		key_names(section, expected, sizeof(expected));
		log_error("%s:%u: [%s] %s: unknown key (expected %s)", p->file, p->line, section,
		          key, expected);
		return P11E_ERR_CONFIG;
	}
	idx = (size_t)(kw - conf_keywords);
	if (p->seen[idx] != 0)
		return conf_kw_error(p, kw, "duplicate key (first set at line %u)", p->seen[idx]);
	/* A command keeps its quotes: they group its words (conf_set_command). */
	if (kw->handler == conf_set_command)
		r = ini_value_raw(ini, &v);
	else
		r = ini_value(ini, &v);
	if (r != 0)
		return r;
	if (*v == '\0')
		return conf_kw_error(p, kw, "empty value (give a value or remove the line)");
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

	if ((r = conf_dup_str(path, &dir)) != 0)
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
	if ((r = conf_dup_str(path, &c->path)) != 0)
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
	if ((r = conf_finish(&p)) != 0)
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
	conf_list_clear(&c->san_dns);
	conf_list_clear(&c->san_email);
	conf_list_clear(&c->san_uri);
	conf_list_clear(&c->san_ip);
	conf_list_clear(&c->san_upn);
	free(c->trust_dir);
	free(c->trust_root_file);
	free(c->state_dir);
	free(c->cert_file);
	free(c->metrics_file);
	conf_list_clear(&c->hook_after);
	conf_list_clear(&c->hook_before_remove);
	OPENSSL_cleanse(c, sizeof(*c));
	free(c);
}
