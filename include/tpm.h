/*
 * tpm.h: the TPM itself, through tpm2-tss (libtss2-esys), for `p11enroll
 * tokens`: is there a TPM, which one, reachable through which TCTI.
 *
 * tpm2-tss is loaded with dlopen inside tpm_probe only: p11enroll does not
 * link it, and enrollment (which reaches a TPM through tpm2-pkcs11) never
 * loads it.
 */
#ifndef P11E_TPM_H
#define P11E_TPM_H

struct tpm_info {
	int present;          /* 1: a TPM answered TPM2_GetCapability */
	char tcti[128];       /* the TCTI that reached it; or the configured one */
	char tcti_source[32]; /* env variable the TCTI came from, or "default" */
	/* TPM2_PT_MANUFACTURER as text, trailing blanks removed ("IBM", "IFX") */
	char manufacturer[5];
	char vendor[17];         /* TPM2_PT_VENDOR_STRING_1..4, trailing blanks removed */
	char family[5];          /* TPM2_PT_FAMILY_INDICATOR ("2.0") */
	unsigned long level;     /* TPM2_PT_LEVEL */
	unsigned long revision;  /* TPM2_PT_REVISION: 164 = 1.64 */
	unsigned long year, day; /* TPM2_PT_YEAR, TPM2_PT_DAY_OF_YEAR of the spec */
	unsigned long fw1, fw2;  /* TPM2_PT_FIRMWARE_VERSION_1, _2 */
	char problem[1024];      /* present == 0: why, naming every TCTI tried */
};

/* The environment variables that name a TCTI, in the order tpm_probe reads them
 * (an initializer of a const char *[]). */
#define TPM_TCTI_VARS                                                                              \
	{                                                                                          \
		"TPM2_PKCS11_TCTI", "TPM2TOOLS_TCTI", "TSS2_TCTI"                                  \
	}

/*
 * Looks for a TPM. The TCTI is the first of the environment variables
 * TPM2_PKCS11_TCTI (what tpm2-pkcs11, hence enrollment, uses), TPM2TOOLS_TCTI
 * and TSS2_TCTI that is set; else tpm2-tss's default order (tabrmd,
 * device:/dev/tpmrm0, device:/dev/tpm0, swtpm, mssim) is tried until one
 * answers. Each attempt runs in a child process that is killed after
 * timeout_s seconds (a resource manager or D-Bus that does not answer), so
 * one TCTI that hangs does not hide the next. Only read-only
 * TPM2_GetCapability commands are sent. tpm2-tss's own messages are
 * suppressed unless the log level is debug.
 *
 * Returns 0 with *out filled (present or not; when not, out->problem says
 * why in words a user can act on), or P11E_ERR_INTERNAL when the probe
 * could not be run at all (fork, pipe).
 */
int tpm_probe(unsigned timeout_s, struct tpm_info *out);

/* The company behind a TCG vendor id ("IFX" -> "Infineon"), or NULL. */
const char *tpm_vendor_name(const char *manufacturer);

#endif
