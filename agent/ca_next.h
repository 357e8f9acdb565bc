/*
 * ca_next.h: CA rollover on the agent's side (ca_next.c): the verified next
 * CA kept in state_dir (ca-next.pem), whether the server's CA is that next
 * CA, and when to look for one. Below ca.c, which alone uses it: certificates
 * and the configuration in, files in state_dir out; it knows nothing of
 * struct ca_info or of the server.
 */
#ifndef P11E_CA_NEXT_H
#define P11E_CA_NEXT_H

#include <time.h>

#include <openssl/x509.h>

#include "conf.h"

/*
 * *yes: 1 when anchor ("sha256:AB:..." or "sha1:AB:...", upper-case hex with
 * colons, as a pin file holds it or [scep] ca_fingerprint is spelt) is cert's
 * SHA-256 or SHA-1 fingerprint, else 0. Errors: P11E_ERR_INTERNAL (OpenSSL
 * cannot compute a digest; logged); *yes is then untouched.
 */
int ca_next_is_anchor(X509 *cert, const char *anchor, int *yes);

/*
 * Writes state_dir/ca-next.pem (state_dir created 0700 if missing; the file
 * replaced atomically, 0644): next, a next CA the caller verified under ca
 * (GetNextCACert), preceded by "# verified-by" lines naming ca's SHA-256 and
 * SHA-1 fingerprints. Neither certificate is taken. Errors: P11E_ERR_FILE
 * (logged), P11E_ERR_ALLOC, P11E_ERR_INTERNAL.
 */
int ca_next_save(const struct conf *c, X509 *ca, X509 *next);

/*
 * Whether ca, the CA the server sends now, is the next CA stored by
 * ca_next_save and verified under anchor (as for ca_next_is_anchor: a pin or
 * [scep] ca_fingerprint that no longer names the server's CA). *rolled is
 * always set: 0 also when ca-next.pem is absent or holds no certificate
 * (logged as a warning), and when ca is the stored one but verified under
 * another anchor (warning). When *rolled is 1, *prev gets the previous CA,
 * which stays trusted: [trust] dir/ca.crt if it is readable and anchor names
 * it, else NULL; the caller frees it. *prev is set only then. Errors
 * (*prev untouched): P11E_ERR_FILE, P11E_ERR_CONFIG (a ca-next.pem others
 * may write, see store_read_state; logged), P11E_ERR_ALLOC,
 * P11E_ERR_INTERNAL.
 */
int ca_next_rolled(const struct conf *c, X509 *ca, const char *anchor, int *rolled, X509 **prev);

/*
 * Records that the server was just asked for a next CA: the mtime of
 * state_dir/ca-next.looked (state_dir created 0700 if missing), which
 * ca_next_check_at reads. Errors: P11E_ERR_ALLOC, P11E_ERR_FILE (logged).
 */
int ca_next_looked(const struct conf *c);

/*
 * When to look for a next CA next. *when is 0 when there is nothing to
 * schedule ([trust] dir/ca.crt absent or holding no certificate: not
 * enrolled yet; or a stored next CA that differs from it). Otherwise it is the start of the
 * rollover window of that CA (scep_next_window), or, once the window has begun, one day after the
 * last look recorded by ca_next_looked, if that is later; a value <= now means "look now". Errors
 * (logged; *when is then untouched): P11E_ERR_FILE, P11E_ERR_CONFIG (a file others may write, see
 * store_read_state), P11E_ERR_ALLOC.
 */
int ca_next_check_at(const struct conf *c, time_t *when);

#endif
