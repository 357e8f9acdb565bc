/*
 * pin.c: the profile's PIN (pin.h).
 */
#include <stddef.h>

#include "err.h"
#include "log.h"
#include "pin.h"
#include "secret.h"

int
pin_configured(const struct conf *c, const char *what)
{
	if (c->pin != NULL || c->pin_file != NULL)
		return 0;
	log_error("%s: [token] pin_file is required %s", c->path, what);
	return P11E_ERR_CONFIG;
}

int
pin_read(const struct conf *c, const char *what, char **pin)
{
	int r;

	*pin = NULL;
	if ((r = pin_configured(c, what)) != 0)
		return r;
	if (c->pin != NULL)
		return secret_dup(c->pin, pin);
	return secret_read_file(c->pin_file, "PIN file", pin);
}

int
pin_login(const struct conf *c, struct tok *t, int allow_final_pin_try)
{
	char *pin = NULL;
	int r;

	if ((r = pin_read(c, "to log in", &pin)) != 0)
		return r;
	r = tok_login(t, pin, allow_final_pin_try);
	secret_free(pin);
	return r;
}
