/*
 * netmain.c: main() of p11enroll-net, the network process (netproc.h). Only
 * p11enroll starts it, with the request socket on NETPROC_FD; by hand it says
 * so and exits 64.
 */
#include "err.h"
#include "netproc.h"
#include "secret.h"

int
main(void)
{
	int r;

	/* First, before OpenSSL or libcurl allocate: no core dumps, not dumpable,
	 * the secret arena, OpenSSL wiping what it frees (secret.h). */
	if ((r = secret_harden()) != 0)
		return p11e_exit_code(r);
	return netproc_main();
}
