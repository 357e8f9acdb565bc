/*
 * tokens_cmd.h: `p11enroll tokens`: the PKCS#11 modules, slots and tokens
 * this machine offers and the TPM, without a configuration file.
 */
#ifndef P11E_TOKENS_CMD_H
#define P11E_TOKENS_CMD_H

/*
 * Runs the command; argv[0] is "tokens", then its options (--module PATH,
 * --json, --timeout DURATION). Reads no configuration. Each module is
 * examined in a child process killed after the timeout. Prints the report
 * on stdout. Returns 0; P11E_ERR_USAGE; with --module, P11E_ERR_CONFIG when
 * the module cannot be loaded and P11E_ERR_TOKEN when it fails or does not
 * answer (both logged); P11E_ERR_TOKEN when p11-kit cannot be asked.
 */
int tokens_run(int argc, char **argv);

#endif
