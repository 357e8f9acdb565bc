/*
 * conf_check.c: what needs the whole configuration file: keys that need or
 * exclude each other, required keys, the hooks' programs; then the defaults
 * that depend on other keys.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "conf.h"
#include "conf_int.h"
#include "err.h"
#include "http.h"
#include "log.h"

#define DEFAULT_STATE_DIR "/var/lib/p11enroll"
#define DEFAULT_LABEL "p11enroll"
#define DEFAULT_KEY_TYPE "rsa:2048"

static unsigned
seen_at(const struct parser *p, const char *section, const char *key)
{
	return p->seen[conf_find_keyword(section, key) - conf_keywords];
}

static int
required(const struct parser *p, const char *section, const char *key)
{
	unsigned at = p->opened[conf_find_keyword(section, key) - conf_keywords];

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
	char shown[CONF_URL_SHOWN + 1];

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
	if ((*out = malloc(CONF_URL_SHOWN + 1)) == NULL)
		return P11E_ERR_ALLOC;
	http_url_for_log(url, *out, CONF_URL_SHOWN + 1);
	return 0;
}

/* Checks that need the whole file, then fills defaults. */
int
conf_finish(struct parser *p)
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
	if (c->key_type_str == NULL && (r = conf_dup_str(DEFAULT_KEY_TYPE, &c->key_type_str)) != 0)
		return r;
	if (c->key_label == NULL && (r = conf_dup_str(DEFAULT_LABEL, &c->key_label)) != 0)
		return r;
	if (c->state_dir == NULL && (r = conf_dup_str(DEFAULT_STATE_DIR, &c->state_dir)) != 0)
		return r;
	if (c->trust_dir == NULL && (r = conf_path_join(c->state_dir, "trust", &c->trust_dir)) != 0)
		return r;
	if ((r = shown_url(c->scep_url, &c->scep_url_shown)) != 0 ||
	    (r = shown_url(c->challenge_url, &c->challenge_url_shown)) != 0 ||
	    (r = shown_url(c->proxy, &c->proxy_shown)) != 0)
		return r;
	return 0;
}
