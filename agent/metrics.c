/*
 * metrics.c: the Prometheus text format of the profiles' state (metrics.h).
 */
#define _GNU_SOURCE /* open_memstream */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "current.h"
#include "err.h"
#include "hookrec.h"
#include "json.h"
#include "metrics.h"
#include "pending.h"
#include "store.h"

/* What a family's value is for one profile; 0 when the profile has none. */
typedef int (*metrics_value_fn)(const struct metrics_profile *m, long long *v);

struct family {
	const char *name;
	const char *help;
	metrics_value_fn value;
};

static int
v_not_before(const struct metrics_profile *m, long long *v)
{
	*v = (long long)m->cert.not_before;
	return m->cert.have;
}

static int
v_not_after(const struct metrics_profile *m, long long *v)
{
	*v = (long long)m->cert.not_after;
	return m->cert.have;
}

static int
v_due(const struct metrics_profile *m, long long *v)
{
	*v = (long long)m->cert.due;
	return m->cert.have;
}

static int
v_last_at(const struct metrics_profile *m, long long *v)
{
	*v = (long long)m->last.at;
	return m->have_last;
}

static int
v_last_code(const struct metrics_profile *m, long long *v)
{
	*v = p11e_exit_code(m->last.err);
	return m->have_last;
}

static int
v_failures(const struct metrics_profile *m, long long *v)
{
	*v = m->have_last ? m->last.failures : 0;
	return 1;
}

static int
v_next(const struct metrics_profile *m, long long *v)
{
	*v = (long long)m->last.next_at;
	return m->have_last && m->last.next_at != 0;
}

static int
v_pending(const struct metrics_profile *m, long long *v)
{
	*v = m->pending != 0;
	return 1;
}

static int
v_pending_since(const struct metrics_profile *m, long long *v)
{
	*v = (long long)m->pending_since;
	return m->pending;
}

static int
v_hook_failures(const struct metrics_profile *m, long long *v)
{
	*v = m->have_hook ? m->hook_failures : 0;
	return 1;
}

static int
v_hooks_owed(const struct metrics_profile *m, long long *v)
{
	*v = m->have_hook ? m->hooks_owed : 0;
	return 1;
}

static const struct family families[] = {
    {"p11enroll_certificate_not_before_seconds",
     "Start of the current certificate's validity, seconds since the epoch.", v_not_before},
    {"p11enroll_certificate_not_after_seconds",
     "End of the current certificate's validity, seconds since the epoch.", v_not_after},
    {"p11enroll_renewal_due_seconds",
     "When the current certificate is due for renewal under [renewal], seconds since the epoch.",
     v_due},
    {"p11enroll_last_attempt_seconds",
     "When the last enroll, renew or CA check attempt ended, seconds since the epoch.", v_last_at},
    {"p11enroll_last_attempt_exit_code",
     "Exit code of the last attempt (0 success, 69 network, 74 token, 75 pending or busy, 76 "
     "verification, 77 rejected, 78 configuration).",
     v_last_code},
    {"p11enroll_consecutive_failures", "Failed attempts in a row (0 after a success).", v_failures},
    {"p11enroll_next_attempt_seconds",
     "When the agent plans its next attempt, seconds since the epoch.", v_next},
    {"p11enroll_pending", "1 while the CA holds a request of the profile as pending, else 0.",
     v_pending},
    {"p11enroll_pending_since_seconds",
     "When the CA first answered PENDING to the request it holds, seconds since the epoch.",
     v_pending_since},
    {"p11enroll_hook_failures", "Failed hook runs in a row (0 after a success).", v_hook_failures},
    {"p11enroll_hooks_owed",
     "Hooks still to run for the current certificate (after, before_remove).", v_hooks_owed},
};

/* A label value: '\\', '"' and newline escaped; bytes that are not printable UTF-8 as '?'. */
static void
put_label(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
	size_t n = strlen((const char *)p), len;

	fputc('"', f);
	while (n > 0) {
		if (*p == '\\' || *p == '"') {
			fputc('\\', f);
			fputc(*p, f);
			len = 1;
		} else if (*p == '\n') {
			fputs("\\n", f);
			len = 1;
		} else if (*p < 0x20 || *p == 0x7f || (len = json_utf8_len(p, n)) == 0) {
			fputc('?', f);
			len = 1;
		} else {
			fwrite(p, 1, len, f);
		}
		p += len;
		n -= len;
	}
	fputc('"', f);
}

static void
put_info(FILE *f, const struct metrics_profile *p, size_t n)
{
	size_t i;

	fputs(
	    "# HELP p11enroll_certificate_info The current certificate: subject, serial (hex) and "
	    "the token's URI; the value is 1.\n"
	    "# TYPE p11enroll_certificate_info gauge\n",
	    f);
	for (i = 0; i < n; i++) {
		if (!p[i].cert.have)
			continue;
		fputs("p11enroll_certificate_info{profile=", f);
		put_label(f, p[i].name);
		fputs(",subject=", f);
		put_label(f, p[i].cert.subject);
		fputs(",serial=", f);
		put_label(f, p[i].cert.serial);
		fputs(",token_uri=", f);
		put_label(f, p[i].token_uri);
		fputs("} 1\n", f);
	}
}

int
metrics_format(const struct metrics_profile *p, size_t n, char **out, size_t *len)
{
	char *buf = NULL;
	size_t blen = 0, i, k;
	long long v;
	FILE *f;

	if ((f = open_memstream(&buf, &blen)) == NULL)
		return P11E_ERR_ALLOC;
	for (k = 0; k < sizeof(families) / sizeof(families[0]); k++) {
		fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n", families[k].name, families[k].help,
		        families[k].name);
		for (i = 0; i < n; i++) {
			if (!families[k].value(&p[i], &v))
				continue;
			fprintf(f, "%s{profile=", families[k].name);
			put_label(f, p[i].name);
			fprintf(f, "} %lld\n", v);
		}
	}
	put_info(f, p, n);
	if (ferror(f)) {
		fclose(f);
		free(buf);
		return P11E_ERR_ALLOC;
	}
	if (fclose(f) != 0) {
		free(buf);
		return P11E_ERR_ALLOC;
	}
	*out = buf;
	*len = blen;
	return 0;
}

int
metrics_write_file(const char *path, const struct metrics_profile *p, size_t n)
{
	char *text = NULL;
	size_t len = 0;
	int r;

	if ((r = metrics_format(p, n, &text, &len)) == 0)
		r = store_write_atomic(path, text, len, 0644);
	free(text);
	return r;
}

int
metrics_cert_facts(X509 *cert, time_t due, struct metrics_cert *out)
{
	struct metrics_cert m;
	char *subject = NULL, *serial = NULL;
	int r = P11E_ERR_ALLOC;

	memset(&m, 0, sizeof(m));
	if (cert == NULL) {
		*out = m;
		return 0;
	}
	if (current_time_t(X509_get0_notBefore(cert), &m.not_before) != 0 ||
	    current_time_t(X509_get0_notAfter(cert), &m.not_after) != 0) {
		r = P11E_ERR_MALFORMED;
		goto out;
	}
	if ((subject = current_name_str(X509_get_subject_name(cert))) == NULL ||
	    (serial = current_serial_hex(cert)) == NULL)
		goto out;
	snprintf(m.subject, sizeof(m.subject), "%s", subject);
	snprintf(m.serial, sizeof(m.serial), "%s", serial);
	m.due = due;
	m.have = 1;
	*out = m;
	r = 0;
out:
	free(subject);
	OPENSSL_free(serial);
	return r;
}

void
metrics_load_state(const struct conf *c, struct metrics_profile *m)
{
	struct pending pend;
	struct hook_record h;

	m->have_last = attempt_load(c, &m->last) == 0;
	m->pending = pending_load(c, &pend) == 0;
	m->pending_since = m->pending ? pend.created : 0;
	if ((m->have_hook = hookrec_load(c, &h) == 0)) {
		m->hook_failures = h.failures;
		m->hooks_owed =
		    (h.owed & HOOK_AFTER ? 1u : 0u) + (h.owed & HOOK_BEFORE_REMOVE ? 1u : 0u);
	}
}
