/*
 * pin.h: where the profile's PIN comes from, the one rule every command
 * follows: [token] pin (a value the station sets per card from its PIN map,
 * never written in a file) else [token] pin_file.
 */
#ifndef P11E_PIN_H
#define P11E_PIN_H

#include "conf.h"
#include "tok.h"

/* A PIN source is configured; else P11E_ERR_CONFIG, logged as pin_read. */
int pin_configured(const struct conf *c, const char *what);

/*
 * The profile's PIN in a secret buffer (*pin: secret_free). Neither source
 * configured: P11E_ERR_CONFIG, logged naming the file and what for
 * ("to enroll"). Errors of secret_read_file (unreadable, readable by others).
 */
int pin_read(const struct conf *c, const char *what, char **pin);

/* pin_read, then tok_login with it; the PIN is wiped before returning. */
int pin_login(const struct conf *c, struct tok *t, int allow_final_pin_try);

#endif
