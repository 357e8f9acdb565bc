/*
 * daemon.h: `p11enroll run`, the long-lived agent for one or more profiles.
 */
#ifndef P11E_DAEMON_H
#define P11E_DAEMON_H

#include <stddef.h>

/*
 * Runs until SIGTERM or SIGINT (then returns 0). paths: configuration files
 * or directories (every "*.conf" in them, in name order), as given with -c;
 * read again on SIGHUP. Each profile is enrolled when it has no valid
 * certificate, renewed when due, polled when pending; failures are retried
 * after a capped exponential pause with full jitter ([agent] retry_min,
 * retry_max), or later when the server asks (Retry-After). A refused PIN or a
 * bad configuration parks the profile until SIGHUP. Between attempts the
 * process sleeps in one poll() on a timerfd (CLOCK_REALTIME, absolute) and a
 * signalfd: no wake-ups while nothing is due. Each attempt runs in a child
 * process with a deadline, so a hung token or leak cannot stall the agent.
 * Errors (at start only): P11E_ERR_CONFIG, P11E_ERR_FILE, P11E_ERR_INTERNAL.
 */
int daemon_run(char *const *paths, size_t npaths);

#endif
