/*
 * keyrec.c: the record of the profile's own key pairs, and the checks that
 * follow from it (keyrec.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "err.h"
#include "keyrec.h"
#include "log.h"
#include "pin.h"
#include "pending.h"
#include "secret.h"
#include "statefile.h"
#include "store.h"

#define MAX_FILE (256 * 1024)
#define MAX_ID 64
#define TMP_ID_LEN 16

struct keyrec_id {
	unsigned char id[MAX_ID];
	size_t len;
};

struct keyrec {
	char *path;
	struct keyrec_id *ids;
	size_t n;
	int migrate; /* no record yet, and state_dir shows an earlier version's runs */
};

/* Lower-case hex of id (as pkcs11-tool prints and takes it) into buf (2 * MAX_ID + 1). */
static const char *
hex(const unsigned char *id, size_t len, char *buf)
{
	size_t i;

	for (i = 0; i < len && i < MAX_ID; i++)
		snprintf(buf + 2 * i, 3, "%02x", id[i]);
	buf[2 * i] = '\0';
	return buf;
}

void
keyrec_free(struct keyrec *r)
{
	if (r == NULL)
		return;
	free(r->path);
	free(r->ids);
	free(r);
}

static int
find(const struct keyrec *r, const unsigned char *id, size_t len)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		if (r->ids[i].len == len && memcmp(r->ids[i].id, id, len) == 0)
			return (int)i;
	return -1;
}

static int
add(struct keyrec *r, const unsigned char *id, size_t len)
{
	struct keyrec_id *v;

	if (len == 0 || len > MAX_ID)
		return P11E_ERR_INTERNAL;
	if (find(r, id, len) >= 0)
		return 0;
	if ((v = realloc(r->ids, (r->n + 1) * sizeof(*v))) == NULL)
		return P11E_ERR_ALLOC;
	r->ids = v;
	memcpy(v[r->n].id, id, len);
	v[r->n].len = len;
	r->n++;
	return 0;
}

static void
drop(struct keyrec *r, const unsigned char *id, size_t len)
{
	int i = find(r, id, len);

	if (i < 0)
		return;
	memmove(&r->ids[i], &r->ids[i + 1], (r->n - (size_t)i - 1) * sizeof(*r->ids));
	r->n--;
}

static int
parse_line(void *ud, const char *k, const char *v)
{
	struct keyrec *r = ud;
	unsigned char id[MAX_ID];
	size_t i, len = strlen(v);

	if (strcmp(k, "key") != 0 || len == 0 || len % 2 != 0 || len / 2 > MAX_ID)
		return -1;
	for (i = 0; i < len / 2; i++) {
		int hi = OPENSSL_hexchar2int((unsigned char)v[2 * i]);
		int lo = OPENSSL_hexchar2int((unsigned char)v[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		id[i] = (unsigned char)(hi << 4 | lo);
	}
	return add(r, id, len / 2) == 0 ? 0 : -1;
}

static int
save(const struct conf *c, const struct keyrec *r)
{
	static const char head[] =
	    "# p11enroll: the CKA_IDs of the key pairs this profile generated on its token\n"
	    "# under its [key] label. Only these are reused, renewed and removed; any other\n"
	    "# key under the label stops enroll and renew (p11enroll(8)).\n";
	char *buf = NULL, h[2 * MAX_ID + 1];
	size_t i, o, size = sizeof(head) + r->n * (sizeof("key=\n") + 2 * MAX_ID);
	int rv;

	if ((buf = malloc(size)) == NULL)
		return P11E_ERR_ALLOC;
	o = (size_t)snprintf(buf, size, "%s", head);
	for (i = 0; i < r->n; i++)
		o += (size_t)snprintf(buf + o, size - o, "key=%s\n",
		                      hex(r->ids[i].id, r->ids[i].len, h));
	if ((rv = store_mkdirs(c->state_dir, 0700)) == 0)
		rv = store_write_atomic(r->path, buf, o, 0600);
	free(buf);
	return rv;
}

static const struct statefile_kind keys_file = {
    "keys-",
    ".txt",
    MAX_FILE,
    parse_line,
    NULL,
    NULL,
    "it must hold only lines key=<CKA_ID in hex>; correct it",
};

/* An earlier version ran this profile: it left files that this version writes only later. */
static int
has_history(const struct conf *c)
{
	static const char *const names[][2] = {{"last-", ".txt"}, {"pending-", ".txn"}};
	struct stat st;
	char *p = NULL;
	size_t i;
	int found = c->cert_file != NULL && lstat(c->cert_file, &st) == 0;

	for (i = 0; !found && i < sizeof(names) / sizeof(names[0]); i++) {
		if (statefile_path(c, names[i][0], names[i][1], &p) != 0)
			return 1; /* out of memory: the careful answer, a login decides */
		found = lstat(p, &st) == 0;
		free(p);
		p = NULL;
	}
	return found;
}

int
keyrec_load(const struct conf *c, struct keyrec **out)
{
	struct keyrec *r = NULL;
	int rv;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return P11E_ERR_ALLOC;
	if ((rv = statefile_path(c, keys_file.prefix, keys_file.suffix, &r->path)) != 0)
		goto out;
	if ((rv = statefile_load(c, &keys_file, r)) == P11E_ERR_NOTFOUND) {
		if (has_history(c))
			r->migrate = 1;
		else if ((rv = save(c, r)) != 0)
			goto out;
		rv = 0;
	}
	if (rv != 0)
		goto out;
	*out = r;
	r = NULL;
out:
	keyrec_free(r);
	return rv;
}

int
keyrec_init(const struct conf *c)
{
	struct keyrec *r = NULL;
	int rv = keyrec_load(c, &r);

	keyrec_free(r);
	return rv;
}

int
keyrec_owns(const struct keyrec *r, const struct tok_key *k)
{
	unsigned char id[20];

	if (r->migrate)
		return 0;
	if (find(r, k->id, k->id_len) >= 0)
		return 1;
	return tok_key_id_for(k->pub, id) == 0 && find(r, id, sizeof(id)) >= 0;
}

/*
 * What disqualifies k's private key, as "CKA_LOCAL is false, ..." into why
 * ("" when nothing does). Errors: tok_key_attrs'.
 */
static int
disqualifies(struct tok *t, const struct tok_key *k, char *why, size_t size)
{
	struct tok_key_attrs a;
	int r;

	why[0] = '\0';
	if ((r = tok_key_attrs(t, k, &a)) != 0)
		return r;
	if (a.local == 0)
		snprintf(why + strlen(why), size - strlen(why), "%sCKA_LOCAL is false",
		         why[0] ? ", " : "");
	if (a.always_sensitive == 0)
		snprintf(why + strlen(why), size - strlen(why), "%sCKA_ALWAYS_SENSITIVE is false",
		         why[0] ? ", " : "");
	if (a.never_extractable == 0)
		snprintf(why + strlen(why), size - strlen(why), "%sCKA_NEVER_EXTRACTABLE is false",
		         why[0] ? ", " : "");
	if (a.extractable == 1)
		snprintf(why + strlen(why), size - strlen(why), "%sCKA_EXTRACTABLE is true",
		         why[0] ? ", " : "");
	return 0;
}

static void
say_not_from_token(struct tok *t, const struct tok_key *k, const char *why)
{
	char h[2 * MAX_ID + 1];

	log_error("key '%s' (CKA_ID %s) on token '%s' did not come from the token (%s): its "
	          "private part may exist elsewhere, so p11enroll does not certify it; remove it "
	          "or give it another label (nothing on the token was changed)",
	          k->label, hex(k->id, k->id_len, h), tok_get_info(t)->label, why);
}

int
keyrec_certifiable(struct tok *t, const struct tok_key *k)
{
	char why[160];
	int r;

	if ((r = disqualifies(t, k, why, sizeof(why))) != 0)
		return r;
	if (why[0] == '\0')
		return 0;
	say_not_from_token(t, k, why);
	return P11E_ERR_TOKEN;
}

/* A key under the label that is not the profile's: why, logged. Needs login for attributes. */
static void
say_foreign(const struct keyrec *r, struct tok *t, const struct tok_key *k)
{
	char why[160], h[2 * MAX_ID + 1];

	if (k->priv_handle != 0 && disqualifies(t, k, why, sizeof(why)) == 0 && why[0] != '\0') {
		say_not_from_token(t, k, why);
		return;
	}
	hex(k->id, k->id_len, h);
	log_error("key '%s' (CKA_ID %s) on token '%s' is not one this profile generated (its "
	          "CKA_ID is not in %s): likely another profile uses key label '%s' on this "
	          "token with another state_dir; give each profile its own [key] label (nothing "
	          "on the token was changed)",
	          k->label, h, tok_get_info(t)->label, r->path, k->label);
	log_info("if that key is this profile's (its state_dir was lost or replaced), add the "
	         "line 'key=%s' to %s",
	         h, r->path);
}

/*
 * The migration (keyrec.h), logged in: every key pair under the label is
 * taken over and the record written, or none is and each that cannot be is
 * named (P11E_ERR_TOKEN).
 */
static int
migrate(const struct conf *c, struct tok *t, struct keyrec *rec, struct tok_key **keys, size_t n)
{
	struct pending pend;
	unsigned char id[20];
	char h[2 * MAX_ID + 1];
	size_t i;
	int r, have_pend, bad = 0;

	if ((r = pending_load(c, &pend)) != 0 && r != P11E_ERR_NOTFOUND)
		return r;
	have_pend = r == 0;
	for (i = 0; i < n; i++) {
		const struct tok_key *k = keys[i];
		int named = have_pend && k->id_len == pend.key_id_len &&
		            memcmp(k->id, pend.key_id, k->id_len) == 0;

		if ((r = tok_key_id_for(k->pub, id)) != 0)
			return r;
		if (!named && (k->id_len != sizeof(id) || memcmp(k->id, id, sizeof(id)) != 0)) {
			say_foreign(rec, t, k);
			bad = 1;
		} else if (k->priv_handle != 0 && keyrec_certifiable(t, k) != 0) {
			bad = 1;
		} else if ((r = add(rec, k->id, k->id_len)) != 0) {
			return r;
		}
	}
	if (bad) {
		log_info("%s is written once every key under label '%s' is one p11enroll "
		         "generated on the token (with the CKA_ID it gives its keys)",
		         rec->path, c->key_label);
		return P11E_ERR_TOKEN;
	}
	if ((r = save(c, rec)) != 0)
		return r;
	rec->migrate = 0;
	for (i = 0; i < n; i++)
		log_info(
		    "recorded key '%s' (CKA_ID %s) on token '%s' as this profile's in %s (first "
		    "run with a key record; the profile ran before)",
		    keys[i]->label, hex(keys[i]->id, keys[i]->id_len, h), tok_get_info(t)->label,
		    rec->path);
	return 0;
}

/* *all: every key in keys is the profile's (never during a migration with keys to take). */
static void
all_owned(const struct keyrec *rec, struct tok_key **keys, size_t n, int *all)
{
	size_t i;

	*all = !(rec->migrate && n > 0);
	for (i = 0; *all && !rec->migrate && i < n; i++)
		*all = keyrec_owns(rec, keys[i]);
}

int
keyrec_unsettled(const struct conf *c, struct tok *t, int *unsettled)
{
	struct keyrec *rec = NULL;
	struct tok_key **keys = NULL;
	size_t n = 0;
	int r, all = 0;

	if ((r = keyrec_load(c, &rec)) != 0 || (r = tok_find_keys(t, c->key_label, &keys, &n)) != 0)
		goto out;
	all_owned(rec, keys, n, &all);
	*unsettled = !all;
out:
	tok_keys_free(keys, n);
	keyrec_free(rec);
	return r;
}

int
keyrec_check_token(const struct conf *c, struct tok *t, int allow_final_pin_try,
                   struct tok_key ***listed, size_t *nlisted)
{
	struct keyrec *rec = NULL;
	struct tok_key **keys = NULL;
	size_t n = 0, i;
	int r, all = 0;

	if ((r = keyrec_load(c, &rec)) != 0 || (r = tok_find_keys(t, c->key_label, &keys, &n)) != 0)
		goto out;
	all_owned(rec, keys, n, &all);
	if (all) {
		/* A migration with nothing to take over: the record starts empty. */
		if (rec->migrate)
			r = save(c, rec);
		goto out;
	}
	if (rec->migrate)
		log_info("token '%s' holds keys under label '%s' and %s does not exist yet (the "
		         "profile ran with an earlier version); logging in to record them",
		         tok_get_info(t)->label, c->key_label, rec->path);
	else
		log_info("token '%s' holds a key under label '%s' that this profile did not "
		         "record; logging in to look at it",
		         tok_get_info(t)->label, c->key_label);
	if ((r = pin_login(c, t, allow_final_pin_try)) != 0)
		goto out;
	/* Their private keys are visible now. */
	if ((r = tok_find_private(t, keys, n)) != 0)
		goto out;
	if (rec->migrate) {
		r = migrate(c, t, rec, keys, n);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (keyrec_owns(rec, keys[i]))
			continue;
		say_foreign(rec, t, keys[i]);
		r = P11E_ERR_TOKEN;
	}
out:
	if (r == 0 && listed != NULL) {
		*listed = keys;
		*nlisted = n;
		keys = NULL;
		n = 0;
	}
	tok_keys_free(keys, n);
	keyrec_free(rec);
	return r;
}

/* tok_generate_key's hook: the final CKA_ID replaces the temporary one in the record. */
struct named_ctx {
	const struct conf *c;
	struct keyrec *rec;
	const unsigned char *tmp;
	unsigned char final[MAX_ID];
	size_t final_len;
};

static int
named(void *ud, const unsigned char *id, size_t len)
{
	struct named_ctx *x = ud;
	int r;

	if ((r = add(x->rec, id, len)) != 0)
		return r;
	memcpy(x->final, id, len);
	x->final_len = len;
	drop(x->rec, x->tmp, TMP_ID_LEN);
	return save(x->c, x->rec);
}

/* The profile's [key] type in tokens/ terms: conf's CONF_KEY_* translated at the border. */
static void
keyspec(const struct conf *c, struct tok_keyspec *out)
{
	out->type = c->key_type == CONF_KEY_EC ? TOK_KEY_EC : TOK_KEY_RSA;
	out->bits = c->key_bits;
	out->curve = c->key_curve;
}

int
keyrec_fits_profile(const struct conf *c, const struct tok_key *k)
{
	struct tok_keyspec spec;

	keyspec(c, &spec);
	return k->type == spec.type && EVP_PKEY_get_bits(k->pub) == spec.bits;
}

int
keyrec_generate(const struct conf *c, struct tok *t, struct tok_key **out)
{
	struct tok_keyspec spec;
	struct keyrec *rec = NULL;
	struct tok_key *k = NULL;
	unsigned char tmp[TMP_ID_LEN];
	char why[160];
	struct named_ctx x = {c, NULL, tmp, {0}, 0};
	struct tok_keygen_ids ids = {tmp, sizeof(tmp), named, &x, 0};
	int r;

	keyspec(c, &spec);
	if ((r = keyrec_load(c, &rec)) != 0)
		return r;
	x.rec = rec;
	if (RAND_bytes(tmp, sizeof(tmp)) != 1) {
		r = P11E_ERR_INTERNAL;
		goto out;
	}
	/* Recorded before it exists: a crash right after the generation leaves a key of ours. */
	if ((r = add(rec, tmp, sizeof(tmp))) != 0 || (r = save(c, rec)) != 0)
		goto out;
	log_info("generating a %s key on token '%s'", c->key_type_str, tok_get_info(t)->label);
	if ((r = tok_generate_key(t, &ids, &spec, c->key_label, &k)) != 0) {
		/* Taken back: nothing of it is on the token. Left there (the token went
		 * away): the record keeps its IDs, so the next run knows it as ours. */
		if (!ids.left) {
			drop(rec, tmp, sizeof(tmp));
			if (x.final_len > 0)
				drop(rec, x.final, x.final_len);
			save(c, rec);
		}
		goto out;
	}
	/* A module that ignored the template: such a key would be refused at its reuse. */
	if ((r = disqualifies(t, k, why, sizeof(why))) != 0 || why[0] != '\0') {
		if (r == 0) {
			log_error("the key generated on token '%s' is not one that never leaves it "
			          "(%s), although p11enroll asked for that; it was removed",
			          tok_get_info(t)->label, why);
			r = P11E_ERR_TOKEN;
		}
		if (tok_destroy_key(t, k) == 0)
			keyrec_forget(c, k);
		goto out;
	}
	*out = k;
	k = NULL;
	r = 0;
out:
	tok_key_free(k);
	keyrec_free(rec);
	return r;
}

int
keyrec_fix_id(const struct conf *c, struct tok *t, struct tok_key *k)
{
	struct keyrec *rec = NULL;
	unsigned char id[20];
	int r;

	if ((r = tok_key_id_for(k->pub, id)) != 0)
		return r;
	if (k->id_len == sizeof(id) && memcmp(k->id, id, sizeof(id)) == 0)
		return 0;
	/* The final ID first: until the token has it, the SHA-1 rule (keyrec.h) finds the key. */
	if ((r = keyrec_load(c, &rec)) != 0 || (r = add(rec, id, sizeof(id))) != 0)
		goto out;
	drop(rec, k->id, k->id_len);
	if ((r = save(c, rec)) != 0)
		goto out;
	r = tok_key_fix_id(t, k);
out:
	keyrec_free(rec);
	return r;
}

int
keyrec_forget(const struct conf *c, const struct tok_key *k)
{
	struct keyrec *rec = NULL;
	unsigned char id[20];
	size_t before;
	int r;

	if ((r = keyrec_load(c, &rec)) != 0)
		return r;
	before = rec->n;
	drop(rec, k->id, k->id_len);
	if (tok_key_id_for(k->pub, id) == 0)
		drop(rec, id, sizeof(id));
	if (rec->n != before && (r = save(c, rec)) != 0)
		log_warn("%s still names key '%s', which is gone from the token", rec->path,
		         k->label);
	keyrec_free(rec);
	return r;
}
