/*
 * tpm.c: is there a TPM, and which: tpm2-tss (tctildr + esys) loaded with
 * dlopen in a child process that is killed when it does not answer in time.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include "box.h"
#include "err.h"
#include "log.h"
#include "tpm.h"

/* tpm2-tss, resolved with dlsym; the types come from its headers. */
struct tss {
	void *ldr, *esys, *rc;
	__typeof__(&Tss2_TctiLdr_Initialize) tcti_init;
	__typeof__(&Tss2_TctiLdr_Finalize) tcti_fini;
	__typeof__(&Esys_Initialize) esys_init;
	__typeof__(&Esys_Finalize) esys_fini;
	__typeof__(&Esys_GetCapability) getcap;
	__typeof__(&Esys_Free) esys_free;
	const char *(*rc_decode)(TSS2_RC rc);
};

static const char *const tcti_env[] = TPM_TCTI_VARS;

/* tpm2-tss's own default order (tctildr_get_default). */
static const struct {
	const char *conf, *unreachable;
} tcti_defaults[] = {
    {"tabrmd", "no tpm2-abrmd on the system D-Bus"},
    {"device:/dev/tpmrm0", NULL},
    {"device:/dev/tpm0", NULL},
    {"swtpm", "no swtpm on 127.0.0.1:2321"},
    {"mssim", "no TPM simulator (mssim) on 127.0.0.1:2321"},
};

/* TCG vendor ids (TCG TPM Vendor ID Registry). */
static const struct {
	const char *id, *name;
} vendors[] = {
    {"AMD", "AMD"},
    {"ATML", "Atmel"},
    {"BRCM", "Broadcom"},
    {"CSCO", "Cisco"},
    {"FLYS", "Flyslice"},
    {"GOOG", "Google"},
    {"HISI", "Huawei"},
    {"HPE", "HPE"},
    {"IBM", "IBM"},
    {"IFX", "Infineon"},
    {"INTC", "Intel"},
    {"LEN", "Lenovo"},
    {"MSFT", "Microsoft"},
    {"NSM", "National Semi"},
    {"NTC", "Nuvoton"},
    {"NTZ", "Nationz"},
    {"QCOM", "Qualcomm"},
    {"ROCC", "Fuzhou Rockchip"},
    {"SMSC", "SMSC"},
    {"SMSN", "Samsung"},
    {"SNS", "Sinosun"},
    {"STM", "STMicroelectronics"},
    {"TXN", "Texas Instruments"},
    {"WEC", "Winbond"},
};

const char *
tpm_vendor_name(const char *manufacturer)
{
	size_t i;

	for (i = 0; manufacturer != NULL && i < sizeof(vendors) / sizeof(vendors[0]); i++)
		if (strcmp(manufacturer, vendors[i].id) == 0)
			return vendors[i].name;
	return NULL;
}

static void append(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
append(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	size_t len = strlen(buf);

	if (len + 1 >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + len, size - len, fmt, ap);
	va_end(ap);
}

static int
sym(void *dl, const char *name, void **fn)
{
	*fn = dlsym(dl, name);
	return *fn != NULL ? 0 : -1;
}

/* Loads tpm2-tss; on failure says what is missing in problem[]. */
static int
tss_load(struct tss *s, char *problem, size_t size)
{
	const char *e;

	if ((s->ldr = dlopen("libtss2-tctildr.so.0", RTLD_NOW | RTLD_LOCAL)) == NULL ||
	    (s->esys = dlopen("libtss2-esys.so.0", RTLD_NOW | RTLD_LOCAL)) == NULL) {
		e = dlerror();
		snprintf(problem, size,
		         "tpm2-tss is not installed, so the TPM cannot be asked (%s; Debian: "
		         "libtss2-esys-3.0.2-0, libtss2-tctildr0)",
		         e != NULL ? e : "dlopen failed");
		return -1;
	}
	if (sym(s->ldr, "Tss2_TctiLdr_Initialize", (void **)&s->tcti_init) != 0 ||
	    sym(s->ldr, "Tss2_TctiLdr_Finalize", (void **)&s->tcti_fini) != 0 ||
	    sym(s->esys, "Esys_Initialize", (void **)&s->esys_init) != 0 ||
	    sym(s->esys, "Esys_Finalize", (void **)&s->esys_fini) != 0 ||
	    sym(s->esys, "Esys_GetCapability", (void **)&s->getcap) != 0 ||
	    sym(s->esys, "Esys_Free", (void **)&s->esys_free) != 0) {
		snprintf(problem, size,
		         "tpm2-tss (libtss2-esys.so.0, libtss2-tctildr.so.0) lacks a function "
		         "p11enroll needs; the TPM cannot be asked");
		return -1;
	}
	/* Optional: readable TSS2_RC texts. */
	if ((s->rc = dlopen("libtss2-rc.so.0", RTLD_NOW | RTLD_LOCAL)) != NULL)
		(void)sym(s->rc, "Tss2_RC_Decode", (void **)&s->rc_decode);
	return 0;
}

static void
tss_unload(struct tss *s)
{
	if (s->rc != NULL)
		dlclose(s->rc);
	if (s->esys != NULL)
		dlclose(s->esys);
	if (s->ldr != NULL)
		dlclose(s->ldr);
}

static const char *
rc_text(const struct tss *s, TSS2_RC rc, char *buf, size_t size)
{
	if (rc == TPM2_RC_INITIALIZE)
		snprintf(buf, size, "the TPM was not started (TPM2_RC_INITIALIZE)");
	else if (s->rc_decode != NULL)
		snprintf(buf, size, "%s (0x%x)", s->rc_decode(rc), (unsigned)rc);
	else
		snprintf(buf, size, "TSS2_RC 0x%x", (unsigned)rc);
	return buf;
}

/* Big-endian UINT32 of characters, appended without NULs or blanks at the end. */
static void
add_chars(char *dst, size_t size, UINT32 v)
{
	size_t len = strlen(dst);
	int shift;
	char c;

	for (shift = 24; shift >= 0 && len + 1 < size; shift -= 8) {
		c = (char)((v >> shift) & 0xff);
		if (c >= 0x20 && c < 0x7f)
			dst[len++] = c;
	}
	dst[len] = '\0';
}

static void
trim(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && s[n - 1] == ' ')
		s[--n] = '\0';
}

static void
take_property(struct tpm_info *info, const TPMS_TAGGED_PROPERTY *p)
{
	switch (p->property) {
	case TPM2_PT_FAMILY_INDICATOR:
		add_chars(info->family, sizeof(info->family), p->value);
		break;
	case TPM2_PT_LEVEL:
		info->level = p->value;
		break;
	case TPM2_PT_REVISION:
		info->revision = p->value;
		break;
	case TPM2_PT_DAY_OF_YEAR:
		info->day = p->value;
		break;
	case TPM2_PT_YEAR:
		info->year = p->value;
		break;
	case TPM2_PT_MANUFACTURER:
		add_chars(info->manufacturer, sizeof(info->manufacturer), p->value);
		break;
	case TPM2_PT_VENDOR_STRING_1:
	case TPM2_PT_VENDOR_STRING_2:
	case TPM2_PT_VENDOR_STRING_3:
	case TPM2_PT_VENDOR_STRING_4:
		add_chars(info->vendor, sizeof(info->vendor), p->value);
		break;
	case TPM2_PT_FIRMWARE_VERSION_1:
		info->fw1 = p->value;
		break;
	case TPM2_PT_FIRMWARE_VERSION_2:
		info->fw2 = p->value;
		break;
	default:
		break;
	}
}

/* TPM2_GetCapability of the fixed properties up to the firmware version. */
static TSS2_RC
read_properties(const struct tss *s, ESYS_CONTEXT *esys, struct tpm_info *info)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more = TPM2_YES;
	TPM2_PT prop = TPM2_PT_FAMILY_INDICATOR, last = 0;
	TSS2_RC rc = TSS2_RC_SUCCESS;
	UINT32 i, n;

	/* Vendor strings are assembled in order: read them all in one pass. */
	while (more && prop <= TPM2_PT_FIRMWARE_VERSION_2) {
		rc = s->getcap(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
		               TPM2_CAP_TPM_PROPERTIES, prop, TPM2_PT_FIRMWARE_VERSION_2 - prop + 1,
		               &more, &cap);
		if (rc != TSS2_RC_SUCCESS || cap == NULL)
			break;
		n = cap->data.tpmProperties.count;
		for (i = 0; i < n; i++) {
			last = cap->data.tpmProperties.tpmProperty[i].property;
			if (last >= prop && last <= TPM2_PT_FIRMWARE_VERSION_2)
				take_property(info, &cap->data.tpmProperties.tpmProperty[i]);
		}
		s->esys_free(cap);
		cap = NULL;
		if (n == 0 || last < prop)
			break;
		prop = last + 1;
	}
	trim(info->manufacturer);
	trim(info->vendor);
	return rc;
}

/*
 * Asks the TPM behind one TCTI. 1: it answered (info filled); 0: it did not
 * (why[] says so).
 */
static int
try_tcti(const struct tss *s, const char *conf, struct tpm_info *info, char *why, size_t size)
{
	TSS2_TCTI_CONTEXT *tcti = NULL;
	ESYS_CONTEXT *esys = NULL;
	TSS2_RC rc;
	char rcbuf[160];
	int ok = 0;

	why[0] = '\0';
	if ((rc = s->tcti_init(conf, &tcti)) != TSS2_RC_SUCCESS) {
		snprintf(why, size, "cannot connect (%s)", rc_text(s, rc, rcbuf, sizeof(rcbuf)));
		goto out;
	}
	if ((rc = s->esys_init(&esys, tcti, NULL)) != TSS2_RC_SUCCESS) {
		snprintf(why, size, "Esys_Initialize failed: %s",
		         rc_text(s, rc, rcbuf, sizeof(rcbuf)));
		goto out;
	}
	if ((rc = read_properties(s, esys, info)) != TSS2_RC_SUCCESS) {
		snprintf(why, size, "connected, but TPM2_GetCapability failed: %s",
		         rc_text(s, rc, rcbuf, sizeof(rcbuf)));
		goto out;
	}
	ok = 1;
out:
	if (esys != NULL)
		s->esys_fini(&esys);
	if (tcti != NULL)
		s->tcti_fini(&tcti);
	return ok;
}

/* A device TCTI whose file is missing or closed to us: no need to ask tpm2-tss. */
static int
device_unusable(const char *path, char *why, size_t size)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		snprintf(why, size, "%s %s", path,
		         errno == ENOENT ? "does not exist" : strerror(errno));
		return 1;
	}
	if (access(path, R_OK | W_OK) != 0) {
		snprintf(why, size,
		         "%s exists but is not accessible (%s): add the user to the group "
		         "that owns it (usually 'tss') or use tpm2-abrmd",
		         path, strerror(errno));
		return 1;
	}
	return 0;
}

/* What one attempt's child process reports back (shared memory). */
struct attempt {
	int present;   /* the TPM answered: info is filled */
	int no_tss;    /* tpm2-tss is missing: no other attempt can do better */
	char why[512]; /* !present: why not */
	struct tpm_info info;
};

/* In the child: one TCTI. Writes only into *a. */
static void
attempt_child(const char *conf, struct attempt *a)
{
	struct tss s;

	memset(&s, 0, sizeof(s));
	if (tss_load(&s, a->why, sizeof(a->why)) != 0) {
		a->no_tss = 1;
	} else {
		a->present = try_tcti(&s, conf, &a->info, a->why, sizeof(a->why));
	}
	tss_unload(&s);
}

/* What an attempt's child needs. */
struct attempt_job {
	const char *conf;
};

/* In the child: one TCTI; the struct attempt goes to fd as bytes. */
static void
attempt_fn(int fd, void *arg)
{
	const struct attempt_job *job = arg;
	struct attempt a;
	const char *p = (const char *)&a;
	size_t off = 0;
	ssize_t n;

	if (log_get_level() < LOG_LVL_DEBUG)
		setenv("TSS2_LOG", "all+NONE", 1);
	memset(&a, 0, sizeof(a));
	attempt_child(job->conf, &a);
	while (off < sizeof(a)) {
		if ((n = write(fd, p + off, sizeof(a) - off)) < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(1);
		off += (size_t)n;
	}
}

/*
 * Runs one attempt in a child process with timeout_s. 0 with *a filled (a
 * timeout or a crash is a failed attempt), or P11E_ERR_INTERNAL/ALLOC.
 */
static int
run_attempt(const char *conf, unsigned timeout_s, struct attempt *a)
{
	int r = P11E_ERR_INTERNAL;
	struct attempt_job job = {conf};
	struct box b = {NULL, 0, BOX_EXITED, 0};

	if ((r = box_run(timeout_s, 1, attempt_fn, &job, &b)) != 0)
		goto out;
	memset(a, 0, sizeof(*a));
	if (b.end == BOX_TIMEOUT)
		snprintf(a->why, sizeof(a->why),
		         "no answer within %u s (a resource manager or D-Bus that does not "
		         "answer?)",
		         timeout_s);
	else if (b.end == BOX_SIGNALED)
		snprintf(a->why, sizeof(a->why), "tpm2-tss crashed (signal %d)", b.code);
	else if (b.len != sizeof(*a))
		snprintf(a->why, sizeof(a->why), "the probe failed (exit status %d)", b.code);
	else
		memcpy(a, b.out, sizeof(*a));
	a->why[sizeof(a->why) - 1] = '\0';
	a->info.problem[sizeof(a->info.problem) - 1] = '\0';
	r = 0;
out:
	box_clear(&b);
	return r;
}

/* Adds why the device files are (not) there, for a machine without tpm2-tss. */
static void
describe_devices(struct tpm_info *out)
{
	char why[256];
	size_t i;

	for (i = 0; i < sizeof(tcti_defaults) / sizeof(tcti_defaults[0]); i++) {
		if (strncmp(tcti_defaults[i].conf, "device:", 7) != 0)
			continue;
		if (device_unusable(tcti_defaults[i].conf + 7, why, sizeof(why)))
			append(out->problem, sizeof(out->problem), "; %s", why);
		else
			append(out->problem, sizeof(out->problem), "; %s exists",
			       tcti_defaults[i].conf + 7);
	}
}

int
tpm_probe(unsigned timeout_s, struct tpm_info *out)
{
	int r = P11E_ERR_INTERNAL;
	struct attempt *a = NULL;
	struct tpm_info info;
	const char *conf = NULL, *src = NULL, *c;
	char why[512], tried[768];
	size_t i;

	memset(&info, 0, sizeof(info));
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		r = P11E_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < sizeof(tcti_env) / sizeof(tcti_env[0]) && conf == NULL; i++) {
		conf = getenv(tcti_env[i]);
		if (conf != NULL && conf[0] == '\0')
			conf = NULL;
		src = tcti_env[i];
	}
	snprintf(info.tcti_source, sizeof(info.tcti_source), "%s", conf != NULL ? src : "default");
	tried[0] = '\0';
	for (i = 0; i < sizeof(tcti_defaults) / sizeof(tcti_defaults[0]); i++) {
		c = conf != NULL ? conf : tcti_defaults[i].conf;
		if (strncmp(c, "device:", 7) == 0 && c[7] != '\0' &&
		    device_unusable(c + 7, why, sizeof(why))) {
			a->present = a->no_tss = 0;
			snprintf(a->why, sizeof(a->why), "%s", why);
		} else if ((r = run_attempt(c, timeout_s, a)) != 0) {
			goto out;
		}
		if (a->present) {
			info = a->info;
			snprintf(info.tcti, sizeof(info.tcti), "%s", c);
			snprintf(info.tcti_source, sizeof(info.tcti_source), "%s",
			         conf != NULL ? src : "default");
			info.present = 1;
			info.problem[0] = '\0';
			break;
		}
		if (conf != NULL) {
			snprintf(info.tcti, sizeof(info.tcti), "%s", c);
			snprintf(info.problem, sizeof(info.problem),
			         "no TPM reachable through TCTI '%s' (from %s): %s", c, src,
			         a->why);
			break;
		}
		if (a->no_tss) {
			snprintf(info.problem, sizeof(info.problem), "%s", a->why);
			describe_devices(&info);
			break;
		}
		if (tcti_defaults[i].unreachable != NULL &&
		    strncmp(a->why, "cannot connect", 14) == 0)
			append(tried, sizeof(tried), "%s%s", tried[0] ? "; " : "",
			       tcti_defaults[i].unreachable);
		else if (strncmp(c, "device:", 7) == 0 && strstr(a->why, c + 7) != NULL)
			append(tried, sizeof(tried), "%s%s", tried[0] ? "; " : "", a->why);
		else
			append(tried, sizeof(tried), "%s%s: %s", tried[0] ? "; " : "", c, a->why);
	}
	if (!info.present && info.problem[0] == '\0')
		snprintf(info.problem, sizeof(info.problem),
		         "no TPM found: no TCTI configured (TPM2_PKCS11_TCTI, TPM2TOOLS_TCTI and "
		         "TSS2_TCTI are unset) and none of tpm2-tss's defaults answers: %s",
		         tried);
	*out = info;
	r = 0;
out:
	free(a);
	return r;
}
