/*
 * station.c: the cards of a provisioning run (station.h): states read from
 * the enrollment processes' progress lines (progress.h), progress on a
 * terminal or log lines elsewhere, the report, the summary.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cardid.h"
#include "err.h"
#include "log.h"
#include "pinmap.h"
#include "progress.h"
#include "provreport.h"
#include "secret.h"
#include "spawn.h"
#include "station.h"
#include "template.h"
#include "tok_scan.h"

static const char *const state_names[] = {
    [CARD_WAITING] = "waiting", [CARD_KEY] = "key",       [CARD_REQUEST] = "request",
    [CARD_PENDING] = "pending", [CARD_STORED] = "stored", [CARD_DONE] = "done",
    [CARD_SKIPPED] = "skipped", [CARD_FAILED] = "failed", [CARD_PENDING_FINAL] = "pending",
};

/* What the report and the summary call a final state. */
static const char *
result_name(int state)
{
	switch (state) {
	case CARD_DONE:
		return "enrolled";
	case CARD_SKIPPED:
		return "skipped";
	case CARD_PENDING_FINAL:
		return "pending";
	default:
		return "failed";
	}
}

int
station_add(struct station *s, const struct tok_info *info)
{
	struct card *v;
	size_t cap;

	if (s->n == s->cap) {
		cap = s->cap == 0 ? 16 : 2 * s->cap;
		if ((v = realloc(s->cards, cap * sizeof(*v))) == NULL) {
			log_error("out of memory");
			return P11E_ERR_ALLOC;
		}
		s->cards = v;
		s->cap = cap;
	}
	memset(&s->cards[s->n], 0, sizeof(s->cards[s->n]));
	s->cards[s->n].info = *info;
	s->cards[s->n].blank = !(info->flags & TOK_F_INITIALIZED);
	s->cards[s->n].fd[0] = s->cards[s->n].fd[1] = -1;
	s->cards[s->n].worker = -1;
	if (info->flags & TOK_F_TPM2_PKCS11)
		s->tpm2_pkcs11 = 1;
	/* The SO PIN goes to a blank card only when this run was asked to (--init). */
	if (s->cards[s->n].blank && !s->init) {
		s->cards[s->n].left = 1;
		s->cards[s->n].state = CARD_SKIPPED;
		snprintf(s->cards[s->n].reason, sizeof(s->cards[s->n].reason), "%s",
		         "blank token left alone: initialising it needs --init");
	}
	s->n++;
	if (s->begun && s->cards[s->n - 1].left)
		station_finish(s, &s->cards[s->n - 1]);
	else if (s->begun)
		station_set_state(s, &s->cards[s->n - 1], CARD_WAITING, NULL);
	return 0;
}

struct card *
station_find(struct station *s, const struct tok_info *info)
{
	size_t i;
	const struct tok_info *t;

	for (i = 0; i < s->n; i++) {
		t = &s->cards[i].info;
		if (strcmp(t->serial, info->serial) == 0 && strcmp(t->label, info->label) == 0 &&
		    strcmp(t->manufacturer, info->manufacturer) == 0 &&
		    strcmp(t->model, info->model) == 0 &&
		    ((info->flags & TOK_F_INITIALIZED) || t->slot_id == info->slot_id))
			return &s->cards[i];
	}
	return NULL;
}

int
station_new_pin(struct card *k)
{
	unsigned char b[8];
	size_t i;
	int r;

	if (k->new_pin == NULL && (r = secret_alloc(16, (void **)&k->new_pin)) != 0)
		return r;
	if (RAND_bytes(b, sizeof(b)) != 1) {
		log_openssl(LOG_LVL_ERROR, "cannot generate a PIN");
		return P11E_ERR_INTERNAL;
	}
	/* Only 0..249, so that every digit is as likely. */
	for (i = 0; i < 8; i++) {
		while (b[i] >= 250 && RAND_bytes(&b[i], 1) == 1)
			;
		k->new_pin[i] = (char)('0' + b[i] % 10);
	}
	k->new_pin[8] = '\0';
	OPENSSL_cleanse(b, sizeof(b));
	return 0;
}

size_t
station_waiting(const struct station *s)
{
	size_t i, n = 0;

	for (i = 0; i < s->n; i++)
		n += s->cards[i].state == CARD_WAITING;
	return n;
}

/* A card's serial and label as they may be printed (cardid_show). */
struct shown {
	char serial[72], label[136], reason[300];
};

static const struct shown *
show(const struct card *k, struct shown *sh)
{
	cardid_show(k->info.serial, sh->serial, sizeof(sh->serial));
	cardid_show(k->info.label, sh->label, sizeof(sh->label));
	cardid_show(k->reason, sh->reason, sizeof(sh->reason));
	return sh;
}

/* Progress lines: every card's line, redrawn in place. */
static void
draw(struct station *s)
{
	size_t i;
	struct shown sh;
	struct winsize ws;
	int width = 80;
	char row[512];

	/* A line longer than the terminal would wrap and throw the redraw off. */
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 8)
		width = ws.ws_col;
	if (s->drawn > 0)
		fprintf(stderr, "\033[%zuA", s->drawn);
	for (i = 0; i < s->n; i++) {
		show(&s->cards[i], &sh);
		snprintf(row, sizeof(row), "  %-16s  %-24.32s  %s%s%s", sh.serial, sh.label,
		         state_names[s->cards[i].state], sh.reason[0] != '\0' ? ": " : "",
		         sh.reason);
		fprintf(stderr, "\r\033[K%.*s\n", width - 1, row);
	}
	s->drawn = s->n;
	fflush(stderr);
}

void
station_begin(struct station *s)
{
	time_t now = time(NULL);
	struct tm tmv;
	size_t i;

	s->begun = 1;
	s->tty = isatty(STDERR_FILENO) && log_get_level() == LOG_LVL_INFO;
	if (gethostname(s->hostname, sizeof(s->hostname) - 1) != 0)
		snprintf(s->hostname, sizeof(s->hostname), "localhost");
	strftime(s->date, sizeof(s->date), "%Y-%m-%d", gmtime_r(&now, &tmv));
	if (s->tty)
		draw(s);
	for (i = 0; i < s->n; i++) {
		if (s->cards[i].left)
			station_finish(s, &s->cards[i]);
		else if (!s->tty)
			station_set_state(s, &s->cards[i], CARD_WAITING, NULL);
	}
}

void
station_set_state(struct station *s, struct card *k, int state, const char *reason)
{
	struct shown sh;

	if (reason != NULL && k->reason[0] == '\0')
		snprintf(k->reason, sizeof(k->reason), "%s", reason);
	k->state = state;
	show(k, &sh);
	if (s->tty)
		draw(s);
	else if (k->left)
		log_warn("blank token in slot %lu left alone: initialising it needs --init "
		         "(p11enroll provision --init)",
		         k->info.slot_id);
	else if (k->blank && !k->inited)
		log_msg(state == CARD_FAILED ? LOG_LVL_ERROR : LOG_LVL_INFO,
		        "blank token in slot %lu: %s%s%s", k->info.slot_id, state_names[state],
		        state == CARD_FAILED ? ": " : "", state == CARD_FAILED ? sh.reason : "");
	else if (state == CARD_FAILED)
		log_error("token '%s' (serial %s): failed: %s", sh.label, sh.serial,
		          sh.reason[0] != '\0' ? sh.reason : "see the log");
	else if (k->hook_failed)
		log_error("token '%s' (serial %s): %s, but %s (the certificate is on the card)",
		          sh.label, sh.serial, state_names[state], sh.reason);
	else
		log_info("token '%s' (serial %s): %s", sh.label, sh.serial, state_names[state]);
}

/* Expands one template into *out. */
static int
expand(const struct tmpl_vars *v, const char *in, int esc, char **out)
{
	if (tmpl_expand(in, v, esc, out) != 0) {
		log_error("cannot expand '%s'", in);
		return P11E_ERR_CONFIG;
	}
	return 0;
}

static int
expand_list(const struct tmpl_vars *v, struct conf_list *l)
{
	char **nv = calloc(l->n + 1, sizeof(*nv));
	size_t i;
	int r;

	if (nv == NULL)
		return P11E_ERR_ALLOC;
	for (i = 0; i < l->n; i++)
		if ((r = expand(v, l->v[i], TMPL_RAW, &nv[i])) != 0)
			return r;
	l->v = nv; /* the child's copy: the old array stays the parent's */
	return 0;
}

int
station_expand(const struct station *s, const struct card *k, struct conf *c)
{
	struct tmpl_vars v = {k->info.label, k->info.serial, k->info.manufacturer,
	                      k->info.model, s->hostname,    s->date};
	char *dir = NULL, *name = NULL;
	size_t n;
	int r;

	if ((r = expand(&v, c->dn, TMPL_DN, &c->dn)) != 0 ||
	    (r = expand_list(&v, &c->san_dns)) != 0 || (r = expand_list(&v, &c->san_email)) != 0 ||
	    (r = expand_list(&v, &c->san_uri)) != 0 || (r = expand_list(&v, &c->san_upn)) != 0)
		return r;
	/* The serial is the card's word: never a path of its own (cardid.h). */
	if ((r = cardid_dirname(k->info.serial, &name)) != 0)
		return r;
	n = strlen(c->state_dir) + strlen("/tokens/") + strlen(name) + 1;
	if ((dir = malloc(n)) == NULL) {
		free(name);
		return P11E_ERR_ALLOC;
	}
	snprintf(dir, n, "%s/tokens/%s", c->state_dir, name);
	free(name);
	c->state_dir = dir;
	return 0;
}

/* The steps of enroll_run as its progress lines name them (progress.h). */
static const struct {
	const char *name;
	int state;
} steps[] = {
    {"key", CARD_KEY},
    {"request", CARD_REQUEST},
    {"pending", CARD_PENDING},
    {"stored", CARD_STORED},
};

/* "hook-failed NAME EVENT HOW CODE SERIAL" (provision.c); a line of another shape is dropped. */
static void
hook_failed_line(struct card *k, const char *v)
{
	char name[16], event[16], serial[96];
	int how, code;

	if (sscanf(v, "%15s %15s %d %d %95s", name, event, &how, &code, serial) != 5 || how < 0 ||
	    how > SPAWN_FAILED)
		return;
	memcpy(k->hook.name, name, sizeof(name));
	memcpy(k->hook.event, event, sizeof(event));
	memcpy(k->hook.serial, serial, sizeof(serial));
	k->hook.how = how;
	k->hook.code = code;
}

/* One progress line of the child: a step, or a fact for the report. */
static void
progress_line(struct station *s, struct card *k, char *line)
{
	const char *v = NULL, *key = progress_split(line, &v);
	struct {
		const char *name;
		char *dst;
		size_t size;
	} facts[] = {
	    {"token-serial", k->info.serial, sizeof(k->info.serial)},
	    {"token-label", k->info.label, sizeof(k->info.label)},
	    {"key", k->key_uri, sizeof(k->key_uri)},
	    {"cert-serial", k->cert_serial, sizeof(k->cert_serial)},
	    {"not-after", k->not_after, sizeof(k->not_after)},
	    {"hook-message", k->hook.message, sizeof(k->hook.message)},
	};
	size_t i;

	if (key == NULL)
		return;
	if (strcmp(key, "state") == 0) {
		k->holds |= strcmp(v, "skipped") == 0;
		for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
			if (strcmp(v, steps[i].name) == 0 && k->state != steps[i].state)
				station_set_state(s, k, steps[i].state, NULL);
		return;
	}
	if (strcmp(key, "error") == 0 && k->reason[0] == '\0')
		snprintf(k->reason, sizeof(k->reason), "%s", v);
	if (strcmp(key, "token-process") == 0) {
		k->worker_lost = strcmp(v, "lost") == 0;
		return;
	}
	if (strcmp(key, "hook-failed") == 0) {
		hook_failed_line(k, v);
		return;
	}
	k->inited |= strcmp(key, "token-serial") == 0;
	for (i = 0; i < sizeof(facts) / sizeof(facts[0]); i++)
		if (strcmp(key, facts[i].name) == 0)
			snprintf(facts[i].dst, facts[i].size, "%s", v);
}

/* A line of a card's log (k NULL: of no card): printed at debug level only, made safe. */
static void
log_line(const struct card *k, const char *line)
{
	struct shown sh;
	char text[PROGRESS_LINE_MAX * 4 + 1];

	if (log_get_level() < LOG_LVL_DEBUG)
		return;
	/* The card's log names what the card reports: printed as it may be. */
	fprintf(stderr, "[%s] %s\n", k != NULL ? show(k, &sh)->serial : "-",
	        cardid_show(line, text, sizeof(text)));
}

/*
 * One read of fd into b (size bytes, *len of them held from before). Each
 * whole line goes to progress_line (which 0) or log_line (1); so does what
 * is left at the end (0, or an error but EINTR and EAGAIN) or when b is
 * full. Returns read's result, errno as read left it.
 */
static ssize_t
read_lines(struct station *s, struct card *k, int which, int fd, char *b, size_t size, size_t *len)
{
	ssize_t n = read(fd, b + *len, size - 1 - *len);
	int e = errno, end = n == 0 || (n < 0 && e != EINTR && e != EAGAIN && e != EWOULDBLOCK);
	char *nl;

	if (n > 0)
		*len += (size_t)n;
	b[*len] = '\0';
	while ((nl = strchr(b, '\n')) != NULL || (end && *len > 0) || *len == size - 1) {
		if (nl != NULL)
			*nl = '\0';
		if (which == 0)
			progress_line(s, k, b);
		else
			log_line(k, b);
		if (nl == NULL) {
			*len = 0;
			break;
		}
		*len -= (size_t)(nl + 1 - b);
		memmove(b, nl + 1, *len + 1);
	}
	errno = e;
	return n;
}

void
station_read(struct station *s, struct card *k, int which)
{
	ssize_t n = read_lines(s, k, which, k->fd[which], k->buf[which], sizeof(k->buf[which]),
	                       &k->len[which]);

	if (n < 0 && errno == EINTR)
		return;
	if (n <= 0) {
		close(k->fd[which]);
		k->fd[which] = -1;
	}
}

void
station_read_net(struct station *s, struct station_worker *sw)
{
	struct card *k = sw->card >= 0 ? &s->cards[sw->card] : NULL;
	ssize_t n;

	while (sw->net_err >= 0) {
		n = read_lines(s, k, 1, sw->net_err, sw->nbuf, sizeof(sw->nbuf), &sw->nlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			close(sw->net_err);
			sw->net_err = -1;
		}
	}
}

void
station_finish(struct station *s, struct card *k)
{
	struct provreport_rec rec;
	struct provreport_hook hook;
	char *cut;
	int state = k->err == 0                  ? (k->holds ? CARD_SKIPPED : CARD_DONE)
	            : k->err == P11E_ERR_PENDING ? CARD_PENDING_FINAL
	                                         : CARD_FAILED;

	if (state == CARD_FAILED && k->reason[0] == '\0')
		snprintf(k->reason, sizeof(k->reason), "%s", p11e_strerror(k->err));
	if (k->left)
		state = CARD_SKIPPED; /* keeps its reason */
	else if (state != CARD_FAILED && state != CARD_PENDING_FINAL)
		k->reason[0] = '\0';
	/* enroll's advice names `enroll`; here the next `provision` polls. */
	if (state == CARD_PENDING_FINAL && (cut = strstr(k->reason, "; run `p11enroll enroll`")))
		snprintf(cut, sizeof(k->reason) - (size_t)(cut - k->reason),
		         "; the next `p11enroll provision` polls it");
	/* Enrolled all the same: the certificate is on the card. */
	k->hook_failed = (state == CARD_DONE || state == CARD_SKIPPED) && !k->left &&
	                 k->hook.name[0] != '\0' && strcmp(k->hook.serial, k->cert_serial) == 0;
	if (k->hook_failed) {
		struct spawn_result res = {.how = k->hook.how, .code = k->hook.code};
		char what[160];

		spawn_describe(&res, s->c->hook_timeout, what, sizeof(what));
		snprintf(k->reason, sizeof(k->reason), "hook %s failed: %s", k->hook.name, what);
	}
	station_set_state(s, k, state, NULL);
	if (s->report_fd == -1)
		return;
	memset(&rec, 0, sizeof(rec));
	rec.serial = k->info.serial;
	rec.label = k->info.label;
	rec.result = result_name(state);
	rec.cert_serial = k->cert_serial[0] != '\0' ? k->cert_serial : NULL;
	rec.not_after = k->not_after[0] != '\0' ? k->not_after : NULL;
	rec.key_uri = k->key_uri[0] != '\0' ? k->key_uri : NULL;
	rec.error = k->reason[0] != '\0' ? k->reason : NULL;
	rec.pin = k->inited ? k->new_pin : NULL;
	if (k->hook_failed) {
		hook.name = k->hook.name;
		hook.event = k->hook.event;
		hook.how = k->hook.how;
		hook.code = k->hook.code;
		hook.message = k->hook.message;
		rec.hook = &hook;
	}
	(void)provreport_write(s->report_fd, s->report, &rec);
}

void
station_end(struct station *s)
{
	size_t i, hooks = 0, count[CARD_PENDING_FINAL + 1];
	const struct card *k;
	struct shown sh;

	memset(count, 0, sizeof(count));
	printf("%-16s  %-24s  %-8s  %s\n", "SERIAL", "LABEL", "RESULT",
	       "CERTIFICATE SERIAL, NOT AFTER / ERROR");
	for (i = 0; i < s->n; i++) {
		k = &s->cards[i];
		count[k->state]++;
		show(k, &sh);
		if (k->state == CARD_WAITING) {
			printf("%-16s  %-24.32s  %-8s  %s\n", sh.serial, sh.label, "-",
			       "not started (interrupted)");
		} else if (k->state == CARD_FAILED || k->state == CARD_PENDING_FINAL || k->left) {
			printf("%-16s  %-24.32s  %-8s  %s\n", sh.serial, sh.label,
			       result_name(k->state), sh.reason);
		} else {
			printf("%-16s  %-24.32s  %-8s  %s, %s%s%s\n", sh.serial, sh.label,
			       result_name(k->state), k->cert_serial, k->not_after,
			       k->hook_failed ? "; " : "", k->hook_failed ? sh.reason : "");
		}
		hooks += k->hook_failed;
	}
	printf("%zu token%s: %zu enrolled, %zu skipped, %zu pending, %zu failed", s->n,
	       s->n == 1 ? "" : "s", count[CARD_DONE], count[CARD_SKIPPED],
	       count[CARD_PENDING_FINAL], count[CARD_FAILED]);
	if (count[CARD_WAITING] > 0)
		printf(", %zu not started", count[CARD_WAITING]);
	if (hooks > 0)
		printf("; a hook failed on %zu (certificate%s in place)", hooks,
		       hooks == 1 ? "" : "s");
	printf("\n");
	fflush(stdout);
}

int
station_result(const struct station *s)
{
	size_t i;
	int pending = 0, waiting = 0, hook = 0;

	for (i = 0; i < s->n; i++) {
		if (s->cards[i].state == CARD_FAILED)
			return s->cards[i].err != 0 ? s->cards[i].err : P11E_ERR_INTERNAL;
		pending |= s->cards[i].state == CARD_PENDING_FINAL;
		waiting |= s->cards[i].state == CARD_WAITING;
		hook |= s->cards[i].hook_failed;
	}
	/* A hook wants the operator (fix it, run again); pending only time. */
	if (hook)
		return P11E_ERR_HOOK;
	return pending || (waiting && !s->watch) ? P11E_ERR_PENDING : 0;
}

void
station_free(struct station *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		if (s->cards[i].fd[0] != -1)
			close(s->cards[i].fd[0]);
		if (s->cards[i].fd[1] != -1)
			close(s->cards[i].fd[1]);
		secret_free(s->cards[i].new_pin);
	}
	if (s->report_fd != -1)
		close(s->report_fd);
	tok_watch_stop(s->watch_pid, s->watch_fd);
	if (s->cards != NULL)
		OPENSSL_cleanse(s->cards, s->n * sizeof(*s->cards));
	free(s->cards);
	secret_free(s->so_pin);
	free(s->module);
	tok_uri_free(s->uri);
	pinmap_free(s->pins);
}
