/*
 * renew.c: `renew` is the enrollment pipeline (enroll.c) configured for a
 * renewal (renew.h).
 */
#include "enroll.h"
#include "renew.h"

int
renew_run(const struct conf *c, const struct renew_opts *o)
{
	struct enroll_opts eo = {o->allow_final_pin_try, 0, 0, 1, o->force};

	return enroll_run(c, &eo);
}
