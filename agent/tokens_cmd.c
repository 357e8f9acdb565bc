/*
 * tokens_cmd.c: `p11enroll tokens`: which PKCS#11 modules, slots and tokens
 * this machine offers, what they can do for enrollment, the [token] settings
 * that select each token, and the TPM. Needs no configuration file.
 *
 * Each module is loaded in a child process that renders its part of the
 * report into a pipe: a module that hangs (a TPM resource manager that does
 * not answer) is killed after the timeout, one that crashes does not take
 * the report with it, and modules' own messages stay off stderr unless -v.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "box.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "tok_scan.h"
#include "tokens_cmd.h"
#include "tpm.h"

/* One module's part of the report, as its child process rendered it. */
struct part {
	int err;   /* 0 or P11E_ERR_*: the module could not be loaded or read */
	char *msg; /* err != 0: what failed */
	char *text;
};

/* The key types of [key] type, and what each needs from the token. */
static const struct {
	const char *name;
	int keygen, sign;
	unsigned long bits;
} key_types[] = {
    {"rsa:2048", TOK_MECH_RSA_KEYGEN, TOK_MECH_RSA_PKCS, 2048},
    {"rsa:3072", TOK_MECH_RSA_KEYGEN, TOK_MECH_RSA_PKCS, 3072},
    {"rsa:4096", TOK_MECH_RSA_KEYGEN, TOK_MECH_RSA_PKCS, 4096},
    {"ec:P-256", TOK_MECH_EC_KEYGEN, TOK_MECH_ECDSA, 256},
    {"ec:P-384", TOK_MECH_EC_KEYGEN, TOK_MECH_ECDSA, 384},
};
#define NKEY_TYPES (sizeof(key_types) / sizeof(key_types[0]))

/* Token flags a user acts on: JSON name, human text when set. */
static const struct {
	unsigned flag; /* enum tok_flag */
	const char *json, *text;
} token_flags[] = {
    {TOK_F_INITIALIZED, "initialized", NULL},
    {TOK_F_LOGIN_REQUIRED, "login_required", "login required"},
    {TOK_F_PROTECTED_AUTH_PATH, "protected_authentication_path",
     "PIN entered on the reader (protected authentication path)"},
    {TOK_F_USER_PIN_INITIALIZED, "user_pin_initialized", NULL},
    {TOK_F_WRITE_PROTECTED, "write_protected", "write-protected"},
    {TOK_F_USER_PIN_COUNT_LOW, "user_pin_count_low", "user PIN: failed attempts, few left"},
    {TOK_F_USER_PIN_FINAL_TRY, "user_pin_final_try", "user PIN: one attempt left"},
    {TOK_F_USER_PIN_LOCKED, "user_pin_locked", "user PIN LOCKED"},
    {TOK_F_USER_PIN_TO_BE_CHANGED, "user_pin_to_be_changed", "user PIN must be changed"},
    {TOK_F_SO_PIN_COUNT_LOW, "so_pin_count_low", "SO PIN: failed attempts, few left"},
    {TOK_F_SO_PIN_FINAL_TRY, "so_pin_final_try", "SO PIN: one attempt left"},
    {TOK_F_SO_PIN_LOCKED, "so_pin_locked", "SO PIN LOCKED"},
    {TOK_F_SO_PIN_TO_BE_CHANGED, "so_pin_to_be_changed", "SO PIN must be changed"},
};
#define NTOKEN_FLAGS (sizeof(token_flags) / sizeof(token_flags[0]))

static const char *const mech_json[TOK_MECH_COUNT] = {
    [TOK_MECH_RSA_KEYGEN] = "rsa_pkcs_key_pair_gen",
    [TOK_MECH_EC_KEYGEN] = "ec_key_pair_gen",
    [TOK_MECH_RSA_PKCS] = "rsa_pkcs",
    [TOK_MECH_SHA256_RSA] = "sha256_rsa_pkcs",
    [TOK_MECH_ECDSA] = "ecdsa",
};
static const char *const mech_text[TOK_MECH_COUNT] = {
    [TOK_MECH_RSA_KEYGEN] = "RSA key generation",
    [TOK_MECH_EC_KEYGEN] = "EC key generation",
    [TOK_MECH_RSA_PKCS] = "RSA PKCS#1 v1.5",
    [TOK_MECH_SHA256_RSA] = "SHA256-RSA-PKCS",
    [TOK_MECH_ECDSA] = "ECDSA",
};

/* -------------------------------------------------------------- analysis */

/* A key generation mechanism that makes keys of this size. */
static int
keygen_usable(const struct tok_mech_desc *m, unsigned long bits)
{
	if (!m->present || !m->generates)
		return 0;
	return (m->min == 0 || bits >= m->min) && (m->max == 0 || bits <= m->max);
}

/* Which [key] types the token can generate and sign with: bit i = key_types[i]. */
static unsigned
usable_key_types(const struct tok_slot_desc *s)
{
	unsigned mask = 0;
	size_t i;

	for (i = 0; i < NKEY_TYPES; i++)
		if (keygen_usable(&s->mechs[key_types[i].keygen], key_types[i].bits) &&
		    s->mechs[key_types[i].sign].present && s->mechs[key_types[i].sign].signs)
			mask |= 1u << i;
	return mask;
}

/* Why p11enroll cannot enroll on this token, or NULL when it can. */
static const char *
enrollment_problem(const struct tok_slot_desc *s)
{
	unsigned fl = s->token.flags;

	if (!(fl & TOK_F_INITIALIZED))
		return "the token is not initialised (initialise it with its own tools: "
		       "softhsm2-util --init-token, tpm2_ptool addtoken, the card's software)";
	if (fl & TOK_F_WRITE_PROTECTED)
		return "the token is write-protected";
	if (fl & TOK_F_USER_PIN_LOCKED)
		return "the user PIN is locked (the token's security officer must unlock it)";
	if ((fl & TOK_F_LOGIN_REQUIRED) && !(fl & TOK_F_USER_PIN_INITIALIZED))
		return "no user PIN is set (set one with the token's tools)";
	if (s->mech_error[0] != '\0')
		return "its mechanisms could not be read";
	if (usable_key_types(s) == 0)
		return "it can generate none of p11enroll's key types (rsa:2048-4096 with "
		       "RSA PKCS#1 v1.5, ec:P-256/P-384 with ECDSA)";
	if (s->uri_ambiguous)
		return "another token of this module has the same label, manufacturer, serial "
		       "and model, so no [token] uri can tell them apart (relabel one)";
	return NULL;
}

/* ----------------------------------------------------------------- human */

static void
human_mechanisms(FILE *f, const struct tok_slot_desc *s)
{
	const char *sep = "";
	int k, any = 0;

	fputs("    mechanisms:   ", f);
	if (s->mech_error[0] != '\0') {
		fprintf(f, "unknown (%s)\n", s->mech_error);
		return;
	}
	for (k = 0; k < TOK_MECH_COUNT; k++) {
		if (!s->mechs[k].present)
			continue;
		fprintf(f, "%s%s", sep, mech_text[k]);
		if ((k == TOK_MECH_RSA_KEYGEN || k == TOK_MECH_EC_KEYGEN) &&
		    (s->mechs[k].min != 0 || s->mechs[k].max != 0))
			fprintf(f, " %lu-%lu bits", s->mechs[k].min, s->mechs[k].max);
		sep = ", ";
		any = 1;
	}
	fputs(any ? "\n" : "none of RSA/EC key generation, RSA PKCS#1 v1.5, ECDSA\n", f);
}

static void
human_token(FILE *f, const struct tok_module_desc *m, const struct tok_slot_desc *s)
{
	const struct tok_info *t = &s->token;
	const char *problem, *sep = "";
	unsigned mask;
	size_t i;

	if (!(t->flags & TOK_F_INITIALIZED)) {
		fprintf(f, "    token:        not initialised%s\n",
		        m->tpm_backed ? " (TPM-backed)" : "");
		fprintf(f, "    enrollment:   not possible: %s\n", enrollment_problem(s));
		return;
	}
	fprintf(f, "    token:        %s%s\n", t->label, m->tpm_backed ? " (TPM-backed)" : "");
	fprintf(f, "    manufacturer: %s\n", t->manufacturer);
	fprintf(f, "    model:        %s\n", t->model);
	fprintf(f, "    serial:       %s\n", t->serial);
	fputs("    flags:        initialised", f);
	for (i = 0; i < NTOKEN_FLAGS; i++)
		if ((t->flags & token_flags[i].flag) && token_flags[i].text != NULL)
			fprintf(f, ", %s", token_flags[i].text);
	if (!(t->flags & TOK_F_USER_PIN_INITIALIZED))
		fputs(", no user PIN set", f);
	fputc('\n', f);
	human_mechanisms(f, s);
	if ((problem = enrollment_problem(s)) != NULL) {
		fprintf(f, "    enrollment:   not possible: %s\n", problem);
	} else {
		mask = usable_key_types(s);
		fputs("    enrollment:   possible; [key] type ", f);
		for (i = 0; i < NKEY_TYPES; i++)
			if (mask & (1u << i)) {
				fprintf(f, "%s%s", sep, key_types[i].name);
				sep = ", ";
			}
		fputc('\n', f);
	}
	if (s->uri != NULL) {
		fputs("    p11enroll.conf:\n", f);
		fputs("      [token]\n", f);
		fprintf(f, "      uri = %s\n", s->uri);
		fprintf(f, "      module = %s\n", m->path);
	}
}

static void
human_module(FILE *f, const struct tok_module_desc *m, const char *name)
{
	const struct tok_slot_desc *s;
	size_t i;

	fprintf(f, "module: %s\n", m->path);
	if (name != NULL && name[0] != '\0')
		fprintf(f, "  p11-kit name: %s\n", name);
	if (m->lib_description[0] != '\0' || m->lib_manufacturer[0] != '\0')
		fprintf(f, "  library:      %s, %s, version %u.%u (Cryptoki %u.%u)%s\n",
		        m->lib_description, m->lib_manufacturer, m->lib_major, m->lib_minor,
		        m->ck_major, m->ck_minor,
		        m->tpm_backed ? ", TPM-backed (tpm2-pkcs11)" : "");
	if (m->err != 0) {
		fprintf(f, "  error:        %s\n", m->error);
		return;
	}
	if (m->nslots == 0)
		fputs("  no slots\n", f);
	for (i = 0; i < m->nslots; i++) {
		s = &m->slots[i];
		fprintf(f, "  slot %lu: %s (%s%s%s)\n", s->id,
		        s->description[0] ? s->description : "(no description)",
		        s->token_present ? "token present" : "no token",
		        s->removable ? ", removable" : "", s->hardware ? ", hardware" : "");
		if (s->error[0] != '\0')
			fprintf(f, "    error:        %s\n", s->error);
		else if (s->has_token)
			human_token(f, m, s);
	}
}

/* ------------------------------------------------------------------ JSON */

static void
json_token(FILE *f, const struct tok_module_desc *m, const struct tok_slot_desc *s)
{
	const struct tok_info *t = &s->token;
	unsigned mask = usable_key_types(s);
	int first = 1, mfirst, k;
	size_t i;

	fputc('{', f);
	json_kstr(f, &first, "label", t->label);
	json_kstr(f, &first, "manufacturer", t->manufacturer);
	json_kstr(f, &first, "model", t->model);
	json_kstr(f, &first, "serial", t->serial);
	for (i = 0; i < NTOKEN_FLAGS; i++)
		json_kbool(f, &first, token_flags[i].json, (t->flags & token_flags[i].flag) != 0);
	json_kbool(f, &first, "tpm_backed", m->tpm_backed);
	json_key(f, &first, "mechanisms");
	fputc('{', f);
	mfirst = 1;
	for (k = 0; k < TOK_MECH_COUNT; k++) {
		json_key(f, &mfirst, mech_json[k]);
		if (!s->mechs[k].present) {
			fputs("null", f);
			continue;
		}
		fprintf(f, "{\"min_key_size\":%lu,\"max_key_size\":%lu,\"flags\":%lu}",
		        s->mechs[k].min, s->mechs[k].max, s->mechs[k].info_flags);
	}
	fputc('}', f);
	json_kstr(f, &first, "mechanisms_error", s->mech_error[0] ? s->mech_error : NULL);
	json_key(f, &first, "key_types");
	fputc('[', f);
	for (i = 0, k = 0; i < NKEY_TYPES; i++)
		if (mask & (1u << i)) {
			fputs(k++ ? "," : "", f);
			json_str(f, key_types[i].name);
		}
	fputc(']', f);
	json_kstr(f, &first, "enrollment_problem", enrollment_problem(s));
	json_kstr(f, &first, "uri", s->uri);
	json_kbool(f, &first, "uri_ambiguous", s->uri_ambiguous);
	fputc('}', f);
}

static void
json_module(FILE *f, const struct tok_module_desc *m, const char *name)
{
	const struct tok_slot_desc *s;
	char v[32];
	int first = 1, sfirst;
	size_t i;

	fputc('{', f);
	json_kstr(f, &first, "path", m->path);
	json_kstr(f, &first, "p11kit_name", name != NULL && name[0] != '\0' ? name : NULL);
	json_kstr(f, &first, "error", m->err != 0 ? m->error : NULL);
	json_key(f, &first, "library");
	if (m->lib_description[0] == '\0' && m->lib_manufacturer[0] == '\0') {
		fputs("null", f);
	} else {
		sfirst = 1;
		fputc('{', f);
		json_kstr(f, &sfirst, "description", m->lib_description);
		json_kstr(f, &sfirst, "manufacturer", m->lib_manufacturer);
		snprintf(v, sizeof(v), "%u.%u", m->lib_major, m->lib_minor);
		json_kstr(f, &sfirst, "version", v);
		snprintf(v, sizeof(v), "%u.%u", m->ck_major, m->ck_minor);
		json_kstr(f, &sfirst, "cryptoki_version", v);
		fputc('}', f);
	}
	json_kbool(f, &first, "tpm_backed", m->tpm_backed);
	json_key(f, &first, "slots");
	fputc('[', f);
	for (i = 0; i < m->nslots; i++) {
		s = &m->slots[i];
		fputs(i ? ",{" : "{", f);
		sfirst = 1;
		json_kulong(f, &sfirst, "id", s->id);
		json_kstr(f, &sfirst, "description", s->description);
		json_kstr(f, &sfirst, "manufacturer", s->manufacturer);
		json_kbool(f, &sfirst, "token_present", s->token_present);
		json_kbool(f, &sfirst, "removable", s->removable);
		json_kbool(f, &sfirst, "hardware", s->hardware);
		json_kstr(f, &sfirst, "error", s->error[0] ? s->error : NULL);
		json_key(f, &sfirst, "token");
		if (s->has_token)
			json_token(f, m, s);
		else
			fputs("null", f);
		fputc('}', f);
	}
	fputs("]}", f);
}

/* A module part the child could not produce (timeout, crash). */
static char *
failed_part(const char *path, const char *name, const char *msg, int json)
{
	struct tok_module_desc m;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	memset(&m, 0, sizeof(m));
	m.path = (char *)path;
	m.err = P11E_ERR_TOKEN;
	snprintf(m.error, sizeof(m.error), "%s", msg);
	if ((f = open_memstream(&buf, &len)) == NULL)
		return NULL;
	if (json)
		json_module(f, &m, name);
	else
		human_module(f, &m, name);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* --------------------------------------------------------------- the TPM */

static void
firmware_text(const struct tpm_info *t, char *buf, size_t size)
{
	snprintf(buf, size, "%lu.%lu.%lu.%lu", t->fw1 >> 16, t->fw1 & 0xffff, t->fw2 >> 16,
	         t->fw2 & 0xffff);
}

static int
is_swtpm(const struct tpm_info *t)
{
	return strcmp(t->manufacturer, "IBM") == 0 && strcmp(t->vendor, "SW   TPM") == 0;
}

static void
human_tpm(FILE *f, const struct tpm_info *t)
{
	const char *vendor = tpm_vendor_name(t->manufacturer);
	char fw[64];

	if (!t->present) {
		fprintf(f, "TPM: %s\n  %s\n",
		        strncmp(t->problem, "no TPM found", 12) == 0 ? "none found" : "not usable",
		        t->problem);
		return;
	}
	fprintf(f, "TPM: present, through TCTI %s (%s%s)\n", t->tcti,
	        strcmp(t->tcti_source, "default") == 0 ? "" : "from ",
	        strcmp(t->tcti_source, "default") == 0 ? "tpm2-tss default order" : t->tcti_source);
	fprintf(f, "  manufacturer: %s", t->manufacturer);
	if (vendor != NULL && strcmp(vendor, t->manufacturer) != 0)
		fprintf(f, " (%s)", vendor);
	fputc('\n', f);
	fprintf(f, "  vendor:       %s%s\n", t->vendor,
	        is_swtpm(t) ? " (a software TPM: swtpm or IBM's simulator)" : "");
	firmware_text(t, fw, sizeof(fw));
	fprintf(f, "  firmware:     %s\n", fw);
	fprintf(f, "  spec:         TPM %s, level %lu, revision %lu.%02lu (%lu, day %lu)\n",
	        t->family, t->level, t->revision / 100, t->revision % 100, t->year, t->day);
}

static void
json_tpm(FILE *f, const struct tpm_info *t)
{
	char v[64];
	int first = 1;

	fputc('{', f);
	json_kbool(f, &first, "present", t->present);
	json_kstr(f, &first, "tcti", t->tcti[0] ? t->tcti : NULL);
	json_kstr(f, &first, "tcti_source", t->tcti_source);
	json_kstr(f, &first, "problem", t->present ? NULL : t->problem);
	if (t->present) {
		json_kstr(f, &first, "manufacturer", t->manufacturer);
		json_kstr(f, &first, "manufacturer_name", tpm_vendor_name(t->manufacturer));
		json_kstr(f, &first, "vendor", t->vendor);
		json_kbool(f, &first, "software_tpm", is_swtpm(t));
		firmware_text(t, v, sizeof(v));
		json_kstr(f, &first, "firmware_version", v);
		json_kstr(f, &first, "family", t->family);
		json_kulong(f, &first, "level", t->level);
		snprintf(v, sizeof(v), "%lu.%02lu", t->revision / 100, t->revision % 100);
		json_kstr(f, &first, "revision", v);
		json_kulong(f, &first, "spec_year", t->year);
		json_kulong(f, &first, "spec_day_of_year", t->day);
	}
	fputc('}', f);
}

/* ------------------------------------------------------ child processes */

/* What the child examining one module needs. */
struct module_job {
	const char *path, *name;
	int json;
	int no_tpm; /* the TPM probe found none (explains tpm2-pkcs11 failing) */
};

/*
 * In the child: describe the module, write "ERR\tMESSAGE\n" then the
 * rendered part to fd.
 */
static void
describe_child(int fd, void *arg)
{
	const struct module_job *job = arg;
	struct tok_module_desc *m = NULL;
	FILE *f;
	int r;

	if ((f = fdopen(fd, "w")) == NULL)
		_exit(1);
	if ((r = tok_describe_module(job->path, &m)) != 0) {
		fprintf(f, "%d\t%s\n", r, p11e_strerror(r));
	} else {
		if (m->err == P11E_ERR_TOKEN && job->no_tpm &&
		    strstr(job->path, "tpm2_pkcs11") != NULL)
			snprintf(
			    m->error + strlen(m->error), sizeof(m->error) - strlen(m->error),
			    " (tpm2-pkcs11 needs a TPM, and none was found: see the TPM report)");
		fprintf(f, "%d\t%s\n", m->err, m->error);
		if (job->json)
			json_module(f, m, job->name);
		else
			human_module(f, m, job->name);
	}
	tok_module_desc_free(m);
	_exit(fclose(f) == 0 ? 0 : 1);
}

/* Splits the child's output into err, message and text. */
static int
parse_part(char *buf, struct part *out)
{
	char *nl, *tab, *end;
	long err;

	if (buf == NULL || (nl = strchr(buf, '\n')) == NULL || (tab = strchr(buf, '\t')) == NULL ||
	    tab > nl)
		return -1;
	*nl = *tab = '\0';
	err = strtol(buf, &end, 10);
	if (end != tab || err > 0 || err < -100)
		return -1;
	if ((out->msg = strdup(tab + 1)) == NULL || (out->text = strdup(nl + 1)) == NULL)
		return -1;
	out->err = (int)err;
	return 0;
}

/* One module, examined in a child process that gets o->timeout. */
static int
module_part(const char *path, const char *name, const struct tokens_opts *o, int no_tpm,
            struct part *out)
{
	int r = P11E_ERR_INTERNAL;
	struct module_job job = {path, name, o->json, no_tpm};
	struct box b = {NULL, 0, BOX_EXITED, 0};
	char msg[256];

	if ((r = box_run((unsigned)o->timeout, 1, describe_child, &job, &b)) != 0)
		goto out;
	msg[0] = '\0';
	if (b.end == BOX_TIMEOUT)
		snprintf(msg, sizeof(msg),
		         "PKCS#11 module %s did not answer within %ld s (stopped)", path,
		         o->timeout);
	else if (b.end == BOX_SIGNALED)
		snprintf(msg, sizeof(msg), "PKCS#11 module %s crashed (signal %d)", path, b.code);
	else if (parse_part(b.out, out) != 0)
		snprintf(msg, sizeof(msg), "examining PKCS#11 module %s failed (exit status %d)",
		         path, b.code);
	if (msg[0] != '\0') {
		free(out->msg);
		free(out->text);
		out->text = NULL;
		out->err = P11E_ERR_TOKEN;
		if ((out->msg = strdup(msg)) == NULL ||
		    (out->text = failed_part(path, name, msg, o->json)) == NULL) {
			r = P11E_ERR_ALLOC;
			goto out;
		}
	}
	r = 0;
out:
	box_clear(&b);
	return r;
}

/* --------------------------------------------------------------- command */

static void
print_report(const struct tokens_opts *o, const struct part *parts, size_t n,
             const struct tpm_info *tpm)
{
	size_t i;

	if (o->json) {
		fputs("{\"source\":", stdout);
		json_str(stdout, o->module != NULL ? "--module" : "p11-kit");
		fputs(",\"modules\":[", stdout);
		for (i = 0; i < n; i++)
			printf("%s%s", i ? "," : "", parts[i].text);
		fputs("],\"tpm\":", stdout);
		json_tpm(stdout, tpm);
		fputs("}\n", stdout);
		return;
	}
	human_tpm(stdout, tpm);
	if (n == 0)
		printf("\nno PKCS#11 module is registered with p11-kit "
		       "(/usr/share/p11-kit/modules/*.module); name one with --module\n");
	for (i = 0; i < n; i++)
		printf("\n%s", parts[i].text);
}

int
tokens_run(const struct tokens_opts *o)
{
	int r = P11E_ERR_INTERNAL;
	struct tpm_info tpm;
	char **paths = NULL, **names = NULL;
	char *one[2] = {NULL, NULL};
	struct part *parts = NULL;
	size_t n = 0, i;

	if (o->timeout < 1 || o->timeout > TOKENS_TIMEOUT_MAX) {
		log_error("tokens: a timeout of %ld s is not from 1 s to %d s", o->timeout,
		          TOKENS_TIMEOUT_MAX);
		goto out;
	}
	if (o->module != NULL) {
		one[0] = (char *)o->module;
		paths = one;
	} else if ((r = tok_registered_modules((unsigned)o->timeout, &paths, &names)) != 0) {
		goto out;
	}
	while (paths[n] != NULL)
		n++;
	if ((parts = calloc(n + 1, sizeof(*parts))) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	if ((r = tpm_probe((unsigned)o->timeout, &tpm)) != 0)
		goto out;
	for (i = 0; i < n; i++)
		if ((r = module_part(paths[i], names != NULL ? names[i] : NULL, o, !tpm.present,
		                     &parts[i])) != 0)
			goto out;
	print_report(o, parts, n, &tpm);
	if (fflush(stdout) != 0) {
		log_error("cannot write the report: %s", strerror(errno));
		r = P11E_ERR_FILE;
		goto out;
	}
	r = 0;
	/* The module the user named must work; registered ones are reported as found. */
	if (o->module != NULL && parts[0].err != 0) {
		log_error("%s", parts[0].msg);
		r = parts[0].err;
	}
out:
	for (i = 0; parts != NULL && i < n; i++) {
		free(parts[i].msg);
		free(parts[i].text);
	}
	free(parts);
	if (paths != one)
		tok_strv_free(paths);
	tok_strv_free(names);
	return r;
}
