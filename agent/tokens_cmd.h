/*
 * tokens_cmd.h: `p11enroll tokens`: the PKCS#11 modules, slots and tokens
 * this machine offers and the TPM, without a configuration file.
 */
#ifndef P11E_TOKENS_CMD_H
#define P11E_TOKENS_CMD_H

#define TOKENS_TIMEOUT_DEFAULT 15 /* seconds, per module and for the TPM */
#define TOKENS_TIMEOUT_MAX 3600

/* What `tokens` is asked; the command line (main.c's table) fills it. */
struct tokens_opts {
	const char *module; /* --module: this PKCS#11 module only; NULL: p11-kit's modules */
	int json;           /* --json: one JSON document instead of text */
	long timeout;       /* --timeout: seconds, 1 to TOKENS_TIMEOUT_MAX */
};

/*
 * Runs the command as o asks (o is only read). Reads no configuration.
 * Each module is examined in a child process killed after o->timeout.
 * Prints the report on stdout. Returns 0; P11E_ERR_INTERNAL when
 * o->timeout is out of range; with o->module, P11E_ERR_CONFIG when the
 * module cannot be loaded and P11E_ERR_TOKEN when it fails or does not
 * answer (both logged); P11E_ERR_TOKEN when p11-kit cannot be asked.
 */
int tokens_run(const struct tokens_opts *o);

#endif
