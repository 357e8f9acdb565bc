/*
 * station.h: what `provision` knows about each card and how it shows it:
 * the states read from the enrollment processes' progress.h lines, the
 * terminal or log lines, the report records, the summary. Private to
 * provision.c.
 */
#ifndef P11E_STATION_H
#define P11E_STATION_H

#include <stddef.h>
#include <sys/types.h>

#include "conf.h"
#include "netproc.h"
#include "progress.h"
#include "tok.h"
#include "uri.h"

enum card_state {
	CARD_WAITING, /* listed, not started */
	CARD_KEY,     /* started: token, login, key */
	CARD_REQUEST, /* the SCEP request is out */
	CARD_PENDING,
	CARD_STORED, /* certificate on the token, read back */
	CARD_DONE,   /* final states from here on */
	CARD_SKIPPED,
	CARD_FAILED,
	CARD_PENDING_FINAL, /* ended PENDING: the next run polls */
};

struct card {
	struct tok_info info;
	int state; /* enum card_state */
	int holds; /* the child said the token already holds a valid certificate */
	pid_t pid; /* running child, else 0 */
	int fd[2]; /* its progress lines (progress.h), its stderr; -1 when closed */
	char buf[2][PROGRESS_LINE_MAX + 1];
	size_t len[2];
	int err;       /* the child's result as a P11E_ERR_* */
	int blank;     /* not initialised when listed ([token] init = yes) */
	int left;      /* blank, and this run has no --init: never started, SKIPPED */
	int inited;    /* the child initialised it: new_pin is its PIN */
	char *new_pin; /* for a blank card: generated before it is started (secret arena) */
	char reason[256], cert_serial[80], not_after[48], key_uri[512];
	/* a [hooks] command that failed and is still owed (the child's "hook-failed"
	 * and "hook-message" lines, provision.c), and the certificate it is owed for */
	struct {
		char name[16], event[16], serial[96];
		int how, code; /* enum spawn_how and its code (spawn.h) */
		char message[PROGRESS_LINE_MAX];
	} hook;
	int hook_failed; /* ended enrolled or skipped, hook above owed for its certificate */
	int worker;      /* running in the station's slot of this index, else -1 */
	int worker_lost; /* it said its slot's token process ended in its session */
};

/*
 * One of the station's slots (provision.c): --jobs of them, each a token
 * process (tok.h's tok_worker) and a network process (netproc.h) that serve
 * the slot's cards one after another.
 */
struct station_worker {
	struct tok_worker *w;      /* NULL: none started (or stopped) */
	struct netproc_handle net; /* pid -1: none */
	int net_err;               /* the network process's stderr (read end), -1: none */
	char nbuf[PROGRESS_LINE_MAX + 1];
	size_t nlen;
	long card;           /* index of the card running in it, -1: none */
	unsigned cards, gen; /* the cards it took; the station's worker_gen when started */
};

struct pinmap;

struct station {
	const struct conf *c;
	int init;           /* --init: blank cards of the URI's make may be initialised */
	int watch;          /* --watch: keep running */
	int final_pin_try;  /* --allow-final-pin-try */
	const char *report; /* --report FILE or NULL */
	struct pinmap *pins;
	char *so_pin; /* [token] init = yes: the SO PIN (secret) */
	char *module;
	struct tok_uri *uri;
	unsigned char ca_fp[32]; /* the CA as the parent checked it */
	struct card *cards;
	size_t n, cap, running, jobs;
	int report_fd;   /* -1: no report */
	pid_t watch_pid; /* --watch: the slot event watcher (tok_watch_start), else 0 */
	int watch_fd;    /* its pipe; -1 once it has ended (no events: poll) */
	int rescan;      /* it reported an event */
	int begun;       /* station_begin was called: new cards are shown at once */
	int tty;         /* progress lines on a terminal, else log lines */
	size_t drawn;    /* progress lines on the screen */
	char hostname[256], date[16];
	struct station_worker *workers; /* jobs of them (provision.c) */
	unsigned worker_gen;            /* raised when a scan finds new tokens */
	int tpm2_pkcs11;                /* a card's module is tpm2-pkcs11 (TOK_F_TPM2_PKCS11) */
};

/*
 * Appends a card in state WAITING; a blank card when the run has no --init
 * in state SKIPPED ("left alone"), never to be started. P11E_ERR_ALLOC.
 */
int station_add(struct station *s, const struct tok_info *info);

/* The card for this token (same serial, label, manufacturer, model) or NULL. */
struct card *station_find(struct station *s, const struct tok_info *info);

/* A new user PIN for a blank card: 8 random digits into k->new_pin, in the secret
 * arena (released by station_free). P11E_ERR_INTERNAL, P11E_ERR_ALLOC. */
int station_new_pin(struct card *k);

/* Cards not started yet. */
size_t station_waiting(const struct station *s);

/* Sets up the output (terminal or not) and the template values. */
void station_begin(struct station *s);

/*
 * In the child: c (a copy of the profile) gets the card's expanded dn and
 * SANs and its own state_dir, state_dir/tokens/NAME where NAME is
 * cardid_dirname of the serial. P11E_ERR_ALLOC, P11E_ERR_CONFIG (logged),
 * P11E_ERR_INTERNAL.
 */
int station_expand(const struct station *s, const struct card *k, struct conf *c);

/* A new state (reason: why it failed, or NULL), shown at once. */
void station_set_state(struct station *s, struct card *k, int state, const char *reason);

/*
 * Reads the child's progress lines (which 0: the card's state and facts) or
 * its stderr (1: shown at debug level, else dropped); closes it at EOF.
 */
void station_read(struct station *s, struct card *k, int which);

/*
 * Reads what the slot's network process wrote to its stderr (its pipe is
 * non-blocking) until nothing more is there: its lines are the log of the
 * card running in the slot (shown as station_read's which 1). At its end (or
 * an error) the pipe is closed.
 */
void station_read_net(struct station *s, struct station_worker *sw);

/*
 * The child has ended (k->err set): final state, report line. A card that
 * ended enrolled or skipped with a hook still owed for its certificate keeps
 * that state and is marked hook_failed: its reason (shown, and the report's
 * error) names the hook and what became of it, and the report has the hook.
 */
void station_finish(struct station *s, struct card *k);

/* The summary table on stdout (a card whose hook failed: its reason after its certificate). */
void station_end(struct station *s);

/*
 * The first failed card's error; else P11E_ERR_HOOK when a card's hook
 * failed; else P11E_ERR_PENDING when a card is pending (or, without --watch,
 * was not started); else 0 (see provision_run).
 */
int station_result(const struct station *s);

/* Closes what is open, frees, wipes PINs. Running children are not waited for. */
void station_free(struct station *s);

#endif
