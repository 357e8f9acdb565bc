/*
 * conf_int.h: what the files of the configuration parser share (private to
 * conf.c, conf_keys.c, conf_list.c and conf_check.c; the interface is conf.h).
 *
 * struct conf is only declared here: conf.h's module includes this header, and
 * this header including conf.h would make an include circle (tests/layers.sh).
 */
#ifndef P11E_CONF_INT_H
#define P11E_CONF_INT_H

#include <stddef.h>
#include <sys/types.h>

#define CONF_KEYWORDS_MAX 64 /* entries conf_keywords may have (checked as it compiles) */
#define CONF_URL_SHOWN 200   /* longest URL a message shows */

struct conf;
struct conf_list;
struct parser;

/* One [section] key of the file: its handler and the field of struct conf it fills. */
struct keyword {
	const char *section;
	const char *key;
	/* checks the value v (in place, may be changed) and fills the field; 0 or a
	 * P11E_ERR_* code, the message logged */
	int (*handler)(struct parser *, const struct keyword *, char *);
	size_t off; /* field in struct conf the handler fills */
};

struct parser {
	const char *file;                   /* the path as given, for messages */
	char *base;                         /* absolute directory relative paths resolve against */
	mode_t mode;                        /* of the file, for the inline challenge check */
	unsigned line;                      /* current line, from 1 */
	unsigned seen[CONF_KEYWORDS_MAX];   /* line each keyword was set at, 0 if not */
	unsigned opened[CONF_KEYWORDS_MAX]; /* first line of its section header, 0 if none */
	struct conf *c;
};

/* conf_keys.c: every keyword, grouped by section in the order messages list them. */
extern const struct keyword conf_keywords[];
extern const size_t conf_nkeywords;

/* conf.c: the keyword of section and key (any section when section is NULL), or NULL. */
const struct keyword *conf_find_keyword(const char *section, const char *key);

/* conf.c: logs "FILE:LINE: [section] key: what" (at p->line) and returns P11E_ERR_CONFIG. */
int conf_kw_error(const struct parser *p, const struct keyword *kw, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* conf.c: the field of p->c that kw fills. */
void *conf_field(struct parser *p, const struct keyword *kw);

/* conf.c: *out = a copy of v. Errors: P11E_ERR_ALLOC, logged. */
int conf_dup_str(const char *v, char **out);

/* conf.c: *out = dir/name, without doubling a '/' at the end of dir. Errors:
 * P11E_ERR_ALLOC, logged. */
int conf_path_join(const char *dir, const char *name, char **out);

/* conf_keys.c: a value that may hold provision's {placeholders}: each must be
 * known. Errors: P11E_ERR_CONFIG, logged with conf_kw_error. */
int conf_check_template(struct parser *p, const struct keyword *kw, const char *v);

/* conf_list.c: the handlers of list values, as struct keyword's handler says:
 * a comma-separated list, the same of IP addresses, a hook's command line. */
int conf_set_list(struct parser *p, const struct keyword *kw, char *v);
int conf_set_ip_list(struct parser *p, const struct keyword *kw, char *v);
int conf_set_command(struct parser *p, const struct keyword *kw, char *v);

/* conf_list.c: frees the items and the array of l and empties it. */
void conf_list_clear(struct conf_list *l);

/* conf_check.c: the checks that need the whole file (file:line in each
 * message), then the defaults that depend on other keys. Errors:
 * P11E_ERR_CONFIG (logged), P11E_ERR_ALLOC. */
int conf_finish(struct parser *p);

#endif
