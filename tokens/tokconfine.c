/*
 * tokconfine.c: what the token process gives up before it loads the module
 * (tokproc.h: tokproc_confine).
 *
 * A PKCS#11 module reads and writes its own files (SoftHSM's token
 * directory, tpm2-pkcs11's store), reaches its device or daemon (pcscd,
 * tpm2-abrmd over D-Bus, /dev/tpmrm0) and starts threads, in places no list
 * here could know; so the filter names what none of them needs instead:
 * running a program, tracing or reading another process, and the network.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <seccomp.h>

#include "err.h"
#include "log.h"
#include "tokproc.h"
#include "tpm.h"

/* Whether the TPM is reached over TCP (the TCTIs mssim and swtpm: a simulator), as one of
 * the variables tpm_probe reads (tpm.h) names it: then the token process needs IP sockets. */
static int
tpm_over_tcp(void)
{
	static const char *const vars[] = TPM_TCTI_VARS;
	const char *v;
	size_t i;

	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if ((v = getenv(vars[i])) != NULL &&
		    (strncmp(v, "mssim", 5) == 0 || strncmp(v, "swtpm", 5) == 0))
			return 1;
	return 0;
}

int
tokproc_confine(void)
{
	static const int killed[] = {
	    SCMP_SYS(execve),           SCMP_SYS(execveat),          SCMP_SYS(ptrace),
	    SCMP_SYS(process_vm_readv), SCMP_SYS(process_vm_writev),
	};
	static const int families[] = {AF_INET, AF_INET6, AF_PACKET};
	scmp_filter_ctx ctx;
	size_t i;
	int rc = 0, ip = tpm_over_tcp();

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		log_error("token process: cannot set no_new_privs: %s", strerror(errno));
		return P11E_ERR_INTERNAL;
	}
	if ((ctx = seccomp_init(SCMP_ACT_ALLOW)) == NULL) {
		log_error("token process: cannot set up its seccomp filter");
		return P11E_ERR_INTERNAL;
	}
	for (i = 0; i < sizeof(killed) / sizeof(killed[0]) && rc == 0; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, killed[i], 0);
	for (i = 0; i < sizeof(families) / sizeof(families[0]) && rc == 0 && !ip; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 1,
		                      SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i], 0));
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc != 0) {
		log_error("token process: cannot load its seccomp filter: %s", strerror(-rc));
		return P11E_ERR_INTERNAL;
	}
	return 0;
}
