/*
 * fault_pkcs11.c: a PKCS#11 module of the tests' own. It loads a real module
 * (SoftHSM) and passes every call through, except where the environment asks
 * for a fault. The environment is read once, at the first C_GetFunctionList:
 *
 *   FAULT_REAL_MODULE=PATH   the wrapped module (default /usr/lib/softhsm/libsofthsm2.so)
 *   FAULT_PIN_FLAGS=LIST     comma-separated count_low, final_try, locked: OR'ed into
 *                            CK_TOKEN_INFO.flags (CKF_USER_PIN_COUNT_LOW, _FINAL_TRY,
 *                            _LOCKED) by C_GetTokenInfo. SoftHSM keeps no PIN counters.
 *   FAULT_TOKEN_INFO=RULE;...  C_GetTokenInfo reports other strings, as a card that
 *                            lies would. RULE is WHEN:FIELD=VALUE[,FIELD=VALUE...] with
 *                            WHEN one of  *  (every token),  blank  (tokens not
 *                            initialised) or  label=L  (the token whose real label is
 *                            L), FIELD one of label, manufacturer (32 bytes at most),
 *                            model, serial (16). L and VALUE are percent-decoded (%2E
 *                            is '.', %3B ';'; any byte but NUL); a value is blank-padded
 *                            as PKCS#11 wants. Every rule whose WHEN matches the real
 *                            token applies, in order. "label=card-02:serial=%2E%2E"
 *                            makes card-02 report the serial "..".
 *   FAULT_PIDS=FILE          appends one line per call: "PID NAME", the process that
 *                            made it (which process of p11enroll maps the module).
 *   FAULT_LOG=FILE           appends one line per call: "NAME RV", e.g. "C_Login CKR_OK",
 *                            with " injected" when this module answered or altered the
 *                            call (count calls with awk '$1 == "C_Login"'). No arguments,
 *                            so never a PIN.
 *   FAULT_REMOVE_AT=NAME[:N][@AFTER]
 *                            the token is pulled out at the Nth call (default 1st) of
 *                            NAME, counting only calls made after the first call of
 *                            AFTER when given ("C_GetAttributeValue@C_CreateObject": the
 *                            first read after a store). That call returns
 *                            CKR_DEVICE_REMOVED without reaching the real module, and
 *                            from then on:
 *                              C_GetSlotList(tokenPresent) lists no slot, C_GetSlotInfo
 *                              clears CKF_TOKEN_PRESENT, C_GetTokenInfo and every other
 *                              slot call returns CKR_TOKEN_NOT_PRESENT, every session
 *                              call returns FAULT_REMOVED_RV; C_Initialize, C_Finalize,
 *                              C_GetInfo and C_WaitForSlotEvent pass through.
 *   FAULT_REMOVED_RV=RV      what session calls return once the token is gone
 *                            (default CKR_SESSION_HANDLE_INVALID: removal closed them).
 *   FAULT_RV_AT=NAME:RV[:N][@AFTER],...
 *                            the Nth call (default 1st) of NAME (after AFTER, as above)
 *                            returns RV once, without reaching the real module.
 *   FAULT_KILL_AT=NAME[:N][@AFTER][+after]
 *                            the process raises SIGKILL at the Nth call (default 1st)
 *                            of NAME (after AFTER, as above): before the call reaches
 *                            the real module, or with "+after" right after it returned
 *                            (its effect on the token done, the caller never told). The
 *                            log gets "NAME KILLED" (before) or "NAME RV KILLED" first.
 *                            When the process is p11enroll's token process (its parent's
 *                            name starts with "p11enroll"), the parent is killed first:
 *                            the run dies whole, as in a crash or a power cut.
 *   FAULT_CRASH_AT=NAME[:N][@AFTER]
 *                            the module crashes instead (SIGSEGV, before the call reaches
 *                            the real module): only the process that loaded it dies, as
 *                            with a module's own bug (p11enroll's token process). Not
 *                            with FAULT_KILL_AT.
 *   FAULT_CRASH_LATE=MS      with FAULT_CRASH_AT: first every descriptor above 3 is
 *                            closed (in p11enroll's token process: the sockets of its
 *                            sessions; 3 is its control socket) and the process waits
 *                            MS ms. The kernel releases a dying process's sockets in no
 *                            order its peers can rely on: this makes a session's end
 *                            come first, for MS ms, every time.
 *   FAULT_LIB_MANUFACTURER=NAME
 *                            C_GetInfo names NAME (32 bytes at most, blank-padded) as
 *                            the library's manufacturer instead of the real module's:
 *                            p11enroll then takes the way of a module that is not
 *                            SoftHSM (one C_CreateObject on the token for a certificate;
 *                            tokens/p11cert.c). Empty or unset: the real module's.
 *   FAULT_TRY_AT=NAME, FAULT_TRY=WHAT
 *                            at the first call of NAME, before it reaches the real
 *                            module, the module tries what a module taken over would:
 *                            "exec:PATH" runs PATH (execve), "connect:IPV4:PORT" opens a
 *                            TCP connection. The log gets "TRY WHAT refused: REASON" or
 *                            "TRY WHAT SUCCEEDED" (a successful exec logs nothing: the
 *                            process is PATH then); the call then goes on.
 *
 * NAME is any PKCS#11 2.40 function name ("C_Sign"); RV a CKR_ name or a hex
 * value ("CKR_DEVICE_ERROR", "0x30", "30"). All slots count as one token: a
 * removal removes every token. A bad setting makes C_GetFunctionList fail
 * (CKR_ARGUMENTS_BAD) with a message on stderr, so a mistyped test fails loudly.
 * Counters are not locked: meant for single-threaded callers (p11enroll,
 * pkcs11-tool). Nothing is allocated: the log file is opened per line.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

extern char **environ;

#define DEFAULT_REAL "/usr/lib/softhsm/libsofthsm2.so"
#define MAX_RV_AT 16
#define MAX_INFO_RULES 16

enum kind {
	K_LIB,  /* not about a token: passes through after removal */
	K_SLOT, /* about a slot's token: CKR_TOKEN_NOT_PRESENT after removal */
	K_SESS, /* about a session: FAULT_REMOVED_RV after removal */
};

/* Parameter lists shared by several functions: (declaration), (call). */
#define S_H (CK_SESSION_HANDLE h), (h)
#define S_INIT (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (h, m, k)
#define S_IO                                                                                       \
	(CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG al, CK_BYTE_PTR b, CK_ULONG_PTR bl),         \
	    (h, a, al, b, bl)
#define S_UPD (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG al), (h, a, al)
#define S_FIN (CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG_PTR bl), (h, b, bl)
#define S_ATTR                                                                                     \
	(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n), (h, o, t, n)

/*
 * Every function of CK_FUNCTION_LIST but C_GetFunctionList:
 * X(name, kind, (parameters), (arguments)). Kind SPECIAL: written by hand below.
 */
#define FUNCS(X)                                                                                   \
	X(C_Initialize, LIB, (CK_VOID_PTR a), (a))                                                 \
	X(C_Finalize, LIB, (CK_VOID_PTR a), (a))                                                   \
	X(C_GetInfo, SPECIAL, (CK_INFO_PTR a), (a))                                                \
	X(C_GetSlotList, SPECIAL, (CK_BBOOL p, CK_SLOT_ID_PTR l, CK_ULONG_PTR n), (p, l, n))       \
	X(C_GetSlotInfo, SPECIAL, (CK_SLOT_ID s, CK_SLOT_INFO_PTR i), (s, i))                      \
	X(C_GetTokenInfo, SPECIAL, (CK_SLOT_ID s, CK_TOKEN_INFO_PTR i), (s, i))                    \
	X(C_GetMechanismList, SLOT, (CK_SLOT_ID s, CK_MECHANISM_TYPE_PTR m, CK_ULONG_PTR n),       \
	  (s, m, n))                                                                               \
	X(C_GetMechanismInfo, SLOT, (CK_SLOT_ID s, CK_MECHANISM_TYPE m, CK_MECHANISM_INFO_PTR i),  \
	  (s, m, i))                                                                               \
	X(C_InitToken, SLOT, (CK_SLOT_ID s, CK_UTF8CHAR_PTR p, CK_ULONG n, CK_UTF8CHAR_PTR l),     \
	  (s, p, n, l))                                                                            \
	X(C_InitPIN, SESS, (CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR p, CK_ULONG n), (h, p, n))        \
	X(C_SetPIN, SESS,                                                                          \
	  (CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR o, CK_ULONG on, CK_UTF8CHAR_PTR p, CK_ULONG n),    \
	  (h, o, on, p, n))                                                                        \
	X(C_OpenSession, SLOT,                                                                     \
	  (CK_SLOT_ID s, CK_FLAGS f, CK_VOID_PTR a, CK_NOTIFY cb, CK_SESSION_HANDLE_PTR h),        \
	  (s, f, a, cb, h))                                                                        \
	X(C_CloseSession, SESS, S_H)                                                               \
	X(C_CloseAllSessions, SLOT, (CK_SLOT_ID s), (s))                                           \
	X(C_GetSessionInfo, SESS, (CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR i), (h, i))            \
	X(C_GetOperationState, SESS, S_FIN)                                                        \
	X(C_SetOperationState, SESS,                                                               \
	  (CK_SESSION_HANDLE h, CK_BYTE_PTR s, CK_ULONG n, CK_OBJECT_HANDLE e,                     \
	   CK_OBJECT_HANDLE a),                                                                    \
	  (h, s, n, e, a))                                                                         \
	X(C_Login, SESS, (CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR_PTR p, CK_ULONG n),     \
	  (h, u, p, n))                                                                            \
	X(C_Logout, SESS, S_H)                                                                     \
	X(C_CreateObject, SESS,                                                                    \
	  (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o),           \
	  (h, t, n, o))                                                                            \
	X(C_CopyObject, SESS,                                                                      \
	  (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n,                \
	   CK_OBJECT_HANDLE_PTR no),                                                               \
	  (h, o, t, n, no))                                                                        \
	X(C_DestroyObject, SESS, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o), (h, o))                \
	X(C_GetObjectSize, SESS, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ULONG_PTR n),        \
	  (h, o, n))                                                                               \
	X(C_GetAttributeValue, SESS, S_ATTR)                                                       \
	X(C_SetAttributeValue, SESS, S_ATTR)                                                       \
	X(C_FindObjectsInit, SESS, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n),          \
	  (h, t, n))                                                                               \
	X(C_FindObjects, SESS,                                                                     \
	  (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG m, CK_ULONG_PTR n), (h, o, m, n)) \
	X(C_FindObjectsFinal, SESS, S_H)                                                           \
	X(C_EncryptInit, SESS, S_INIT)                                                             \
	X(C_Encrypt, SESS, S_IO)                                                                   \
	X(C_EncryptUpdate, SESS, S_IO)                                                             \
	X(C_EncryptFinal, SESS, S_FIN)                                                             \
	X(C_DecryptInit, SESS, S_INIT)                                                             \
	X(C_Decrypt, SESS, S_IO)                                                                   \
	X(C_DecryptUpdate, SESS, S_IO)                                                             \
	X(C_DecryptFinal, SESS, S_FIN)                                                             \
	X(C_DigestInit, SESS, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m), (h, m))                   \
	X(C_Digest, SESS, S_IO)                                                                    \
	X(C_DigestUpdate, SESS, S_UPD)                                                             \
	X(C_DigestKey, SESS, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k), (h, k))                    \
	X(C_DigestFinal, SESS, S_FIN)                                                              \
	X(C_SignInit, SESS, S_INIT)                                                                \
	X(C_Sign, SESS, S_IO)                                                                      \
	X(C_SignUpdate, SESS, S_UPD)                                                               \
	X(C_SignFinal, SESS, S_FIN)                                                                \
	X(C_SignRecoverInit, SESS, S_INIT)                                                         \
	X(C_SignRecover, SESS, S_IO)                                                               \
	X(C_VerifyInit, SESS, S_INIT)                                                              \
	X(C_Verify, SESS,                                                                          \
	  (CK_SESSION_HANDLE h, CK_BYTE_PTR a, CK_ULONG al, CK_BYTE_PTR b, CK_ULONG bl),           \
	  (h, a, al, b, bl))                                                                       \
	X(C_VerifyUpdate, SESS, S_UPD)                                                             \
	X(C_VerifyFinal, SESS, S_UPD)                                                              \
	X(C_VerifyRecoverInit, SESS, S_INIT)                                                       \
	X(C_VerifyRecover, SESS, S_IO)                                                             \
	X(C_DigestEncryptUpdate, SESS, S_IO)                                                       \
	X(C_DecryptDigestUpdate, SESS, S_IO)                                                       \
	X(C_SignEncryptUpdate, SESS, S_IO)                                                         \
	X(C_DecryptVerifyUpdate, SESS, S_IO)                                                       \
	X(C_GenerateKey, SESS,                                                                     \
	  (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n,                \
	   CK_OBJECT_HANDLE_PTR k),                                                                \
	  (h, m, t, n, k))                                                                         \
	X(C_GenerateKeyPair, SESS,                                                                 \
	  (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn,              \
	   CK_ATTRIBUTE_PTR st, CK_ULONG sn, CK_OBJECT_HANDLE_PTR pk, CK_OBJECT_HANDLE_PTR sk),    \
	  (h, m, pt, pn, st, sn, pk, sk))                                                          \
	X(C_WrapKey, SESS,                                                                         \
	  (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wk, CK_OBJECT_HANDLE k,       \
	   CK_BYTE_PTR w, CK_ULONG_PTR wl),                                                        \
	  (h, m, wk, k, w, wl))                                                                    \
	X(C_UnwrapKey, SESS,                                                                       \
	  (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE uk, CK_BYTE_PTR w,            \
	   CK_ULONG wl, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k),                   \
	  (h, m, uk, w, wl, t, n, k))                                                              \
	X(C_DeriveKey, SESS,                                                                       \
	  (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE bk, CK_ATTRIBUTE_PTR t,       \
	   CK_ULONG n, CK_OBJECT_HANDLE_PTR k),                                                    \
	  (h, m, bk, t, n, k))                                                                     \
	X(C_SeedRandom, SESS, S_UPD)                                                               \
	X(C_GenerateRandom, SESS, (CK_SESSION_HANDLE h, CK_BYTE_PTR r, CK_ULONG n), (h, r, n))     \
	X(C_GetFunctionStatus, SESS, S_H)                                                          \
	X(C_CancelFunction, SESS, S_H)                                                             \
	X(C_WaitForSlotEvent, LIB, (CK_FLAGS f, CK_SLOT_ID_PTR s, CK_VOID_PTR r), (f, s, r))

enum fid {
#define ENUM(name, kind, ...) F_##name,
	FUNCS(ENUM)
#undef ENUM
	    NFUNCS
};

static const char *const fnames[NFUNCS] = {
#define NAME(name, kind, ...) #name,
    FUNCS(NAME)
#undef NAME
};

#define RV(x)                                                                                      \
	{                                                                                          \
		x, #x                                                                              \
	}
static const struct {
	CK_RV rv;
	const char *name;
} rvs[] = {
    RV(CKR_OK),
    RV(CKR_CANCEL),
    RV(CKR_HOST_MEMORY),
    RV(CKR_SLOT_ID_INVALID),
    RV(CKR_GENERAL_ERROR),
    RV(CKR_FUNCTION_FAILED),
    RV(CKR_ARGUMENTS_BAD),
    RV(CKR_CANT_LOCK),
    RV(CKR_ATTRIBUTE_READ_ONLY),
    RV(CKR_ATTRIBUTE_SENSITIVE),
    RV(CKR_ATTRIBUTE_TYPE_INVALID),
    RV(CKR_ATTRIBUTE_VALUE_INVALID),
    RV(CKR_DATA_INVALID),
    RV(CKR_DATA_LEN_RANGE),
    RV(CKR_DEVICE_ERROR),
    RV(CKR_DEVICE_MEMORY),
    RV(CKR_DEVICE_REMOVED),
    RV(CKR_ENCRYPTED_DATA_INVALID),
    RV(CKR_FUNCTION_CANCELED),
    RV(CKR_FUNCTION_NOT_SUPPORTED),
    RV(CKR_KEY_HANDLE_INVALID),
    RV(CKR_KEY_SIZE_RANGE),
    RV(CKR_MECHANISM_INVALID),
    RV(CKR_OBJECT_HANDLE_INVALID),
    RV(CKR_OPERATION_ACTIVE),
    RV(CKR_OPERATION_NOT_INITIALIZED),
    RV(CKR_PIN_INCORRECT),
    RV(CKR_PIN_INVALID),
    RV(CKR_PIN_LEN_RANGE),
    RV(CKR_PIN_EXPIRED),
    RV(CKR_PIN_LOCKED),
    RV(CKR_SESSION_CLOSED),
    RV(CKR_SESSION_COUNT),
    RV(CKR_SESSION_HANDLE_INVALID),
    RV(CKR_SESSION_READ_ONLY),
    RV(CKR_SIGNATURE_INVALID),
    RV(CKR_TEMPLATE_INCOMPLETE),
    RV(CKR_TEMPLATE_INCONSISTENT),
    RV(CKR_TOKEN_NOT_PRESENT),
    RV(CKR_TOKEN_NOT_RECOGNIZED),
    RV(CKR_TOKEN_WRITE_PROTECTED),
    RV(CKR_USER_ALREADY_LOGGED_IN),
    RV(CKR_USER_NOT_LOGGED_IN),
    RV(CKR_USER_PIN_NOT_INITIALIZED),
    RV(CKR_USER_TYPE_INVALID),
    RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    RV(CKR_BUFFER_TOO_SMALL),
    RV(CKR_CRYPTOKI_NOT_INITIALIZED),
    RV(CKR_CRYPTOKI_ALREADY_INITIALIZED),
};
#undef RV

/* One fault: the nth call of fn made after the first call of after. */
struct spec {
	int fn;             /* enum fid; -1: none */
	unsigned long n;    /* >= 1 */
	int after;          /* enum fid; -1: from the start */
	unsigned long seen; /* calls of fn counted so far */
	CK_RV rv;           /* FAULT_RV_AT: the value returned */
};

/* One FAULT_TOKEN_INFO rule. */
enum when { W_ANY, W_BLANK, W_LABEL };
enum field { FLD_LABEL, FLD_MANUFACTURER, FLD_MODEL, FLD_SERIAL, NFIELDS };

struct info_rule {
	int when;                /* enum when */
	unsigned char label[32]; /* W_LABEL: the real label, blank-padded */
	int set[NFIELDS];        /* the field is replaced */
	unsigned char value[NFIELDS][32];
};

static struct {
	int configured;
	void *dl;
	CK_FUNCTION_LIST_PTR real;
	CK_FLAGS pin_flags;
	char log[4096];  /* "" for none */
	char pids[4096]; /* FAULT_PIDS; "" for none */
	struct spec remove;
	CK_RV removed_rv;
	int removed;
	struct spec rv_at[MAX_RV_AT];
	size_t nrv_at;
	struct spec kill;
	int kill_post;      /* FAULT_KILL_AT "+after": the kill follows the call */
	int crash;          /* FAULT_CRASH_AT: SIGSEGV in this process alone */
	long crash_late_ms; /* FAULT_CRASH_LATE */
	int kill_now;       /* the current call is the one to kill after */
	struct spec try_at; /* FAULT_TRY_AT */
	char try_what[256];
	unsigned long calls[NFUNCS];
	struct info_rule info[MAX_INFO_RULES];
	size_t ninfo;
	unsigned char lib_manufacturer[32]; /* FAULT_LIB_MANUFACTURER, blank-padded */
	int lib_manufacturer_set;
} S;

/* ------------------------------------------------------------------ log */

static void
rv_text(CK_RV rv, char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(rvs) / sizeof(rvs[0]); i++) {
		if (rvs[i].rv == rv) {
			snprintf(buf, len, "%s", rvs[i].name);
			return;
		}
	}
	snprintf(buf, len, "0x%lx", (unsigned long)rv);
}

/* Appends line and a newline to FAULT_LOG (when set). */
static void
log_line(const char *line)
{
	char buf[600];
	int fd, n;

	if (S.log[0] == '\0')
		return;
	n = snprintf(buf, sizeof(buf), "%s\n", line);
	if (n <= 0 || (size_t)n >= sizeof(buf))
		return;
	if ((fd = open(S.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return;
	if (write(fd, buf, (size_t)n) != n)
		fprintf(stderr, "fault-pkcs11: cannot write to %s\n", S.log);
	close(fd);
}

static void
log_call(const char *name, CK_RV rv, int injected)
{
	char line[128], r[48];
	int fd, n;

	if (S.pids[0] != '\0' &&
	    (n = snprintf(line, sizeof(line), "%ld %s\n", (long)getpid(), name)) > 0 &&
	    (size_t)n < sizeof(line) &&
	    (fd = open(S.pids, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) >= 0) {
		if (write(fd, line, (size_t)n) != n)
			fprintf(stderr, "fault-pkcs11: cannot write to %s\n", S.pids);
		close(fd);
	}
	rv_text(rv, r, sizeof(r));
	snprintf(line, sizeof(line), "%s %s%s", name, r, injected ? " injected" : "");
	log_line(line);
}

/* p11enroll's token process loads this module: its parent, p11enroll, dies first. */
static void
kill_parent_if_ours(void)
{
	char path[64], comm[32] = "";
	pid_t pp = getppid();
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/comm", (long)pp);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	n = read(fd, comm, sizeof(comm) - 1);
	close(fd);
	if (n > 0 && strncmp(comm, "p11enroll", 9) == 0)
		kill(pp, SIGKILL);
}

/* Logs the call (rv unused when before) and ends the process as a crash would. */
static void
kill_here(const char *name, CK_RV rv, int before)
{
	char line[128], r[48];

	rv_text(rv, r, sizeof(r));
	snprintf(line, sizeof(line), "%s%s%s KILLED", name, before ? "" : " ", before ? "" : r);
	log_line(line);
	kill_parent_if_ours();
	raise(SIGKILL);
}

/* ------------------------------------------------------------------ faults */

/*
 * Counts the call; 1 with *rv set when this module answers it (an injected
 * value, the removal, or the token already gone), 0 to pass it through.
 */
/* Counts a call of f for sp; the number of sp's calls so far, 0 if not one. */
static unsigned long
spec_count(struct spec *sp, enum fid f)
{
	if (sp->fn != (int)f || (sp->after >= 0 && S.calls[sp->after] == 0))
		return 0;
	return ++sp->seen;
}

/* FAULT_TRY: what a module taken over would try, and what became of it (logged). */
static void
try_escape(void)
{
	char line[512], ip[64];
	char *const argv[] = {"fault-try", NULL};
	const char *w = S.try_what, *colon;
	struct sockaddr_in a;
	int fd = -1, e;

	if (strncmp(w, "exec:", 5) == 0) {
		execve(w + 5, argv, environ);
	} else if (strncmp(w, "connect:", 8) == 0 && (colon = strrchr(w + 8, ':')) != NULL &&
	           (size_t)(colon - (w + 8)) < sizeof(ip)) {
		memcpy(ip, w + 8, (size_t)(colon - (w + 8)));
		ip[colon - (w + 8)] = '\0';
		memset(&a, 0, sizeof(a));
		a.sin_family = AF_INET;
		a.sin_port = htons((unsigned short)atoi(colon + 1));
		if (inet_pton(AF_INET, ip, &a.sin_addr) == 1 &&
		    (fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0 &&
		    connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			snprintf(line, sizeof(line), "TRY %s SUCCEEDED", w);
			log_line(line);
			close(fd);
			return;
		}
	} else {
		errno = EINVAL;
	}
	e = errno;
	if (fd >= 0)
		close(fd);
	snprintf(line, sizeof(line), "TRY %s refused: %s", w, strerror(e));
	log_line(line);
}

/* FAULT_CRASH_AT's SIGSEGV, after FAULT_CRASH_LATE's closes and wait. */
static void
crash(void)
{
	struct timespec ts = {S.crash_late_ms / 1000, S.crash_late_ms % 1000 * 1000000L};
	int fd;

	if (S.crash_late_ms > 0) {
		for (fd = 4; fd < 4096; fd++)
			(void)close(fd);
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
	raise(SIGSEGV);
}

static int
fault_pre(enum fid f, enum kind k, CK_RV *rv)
{
	size_t i;
	int hit = -1;

	S.calls[f]++;
	if (S.try_at.fn >= 0 && spec_count(&S.try_at, f) == 1)
		try_escape();
	if (S.kill.fn >= 0 && spec_count(&S.kill, f) == S.kill.n) {
		if (S.crash)
			crash();
		if (!S.kill_post)
			kill_here(fnames[f], CKR_OK, 1);
		S.kill_now = 1;
	}
	for (i = 0; i < S.nrv_at; i++)
		if (spec_count(&S.rv_at[i], f) == S.rv_at[i].n && hit < 0)
			hit = (int)i;
	if (hit >= 0) {
		*rv = S.rv_at[hit].rv;
		return 1;
	}
	if (!S.removed && S.remove.fn >= 0 && spec_count(&S.remove, f) >= S.remove.n) {
		S.removed = 1;
		*rv = CKR_DEVICE_REMOVED;
		return 1;
	}
	if (!S.removed || k == K_LIB)
		return 0;
	*rv = k == K_SLOT ? CKR_TOKEN_NOT_PRESENT : S.removed_rv;
	return 1;
}

static CK_RV
fault_post(enum fid f, CK_RV rv, int injected)
{
	if (S.kill_now)
		kill_here(fnames[f], rv, 0);
	log_call(fnames[f], rv, injected);
	return rv;
}

/* ------------------------------------------------------------------ wrappers */

#define GEN_SPECIAL(name, params, args)
#define GEN_WRAP(name, k, params, args)                                                            \
	static CK_RV fw_##name params                                                              \
	{                                                                                          \
		CK_RV rv = CKR_OK;                                                                 \
		int inj = fault_pre(F_##name, k, &rv);                                             \
                                                                                                   \
		if (!inj)                                                                          \
			rv = S.real->name args;                                                    \
		return fault_post(F_##name, rv, inj);                                              \
	}
#define GEN_LIB(name, params, args) GEN_WRAP(name, K_LIB, params, args)
#define GEN_SLOT(name, params, args) GEN_WRAP(name, K_SLOT, params, args)
#define GEN_SESS(name, params, args) GEN_WRAP(name, K_SESS, params, args)
#define GEN2(name, kind, params, args) GEN_##kind(name, params, args)
#define GEN(name, kind, ...) GEN2(name, kind, __VA_ARGS__)
FUNCS(GEN)
#undef GEN
#undef GEN2

/* Once the token is gone, no slot has a token present. */
static CK_RV
fw_C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
	CK_RV rv = CKR_OK;
	int inj = fault_pre(F_C_GetSlotList, K_LIB, &rv);

	if (inj)
		return fault_post(F_C_GetSlotList, rv, 1);
	if (S.removed && present) {
		if (count == NULL)
			return fault_post(F_C_GetSlotList, CKR_ARGUMENTS_BAD, 1);
		*count = 0;
		return fault_post(F_C_GetSlotList, CKR_OK, 1);
	}
	return fault_post(F_C_GetSlotList, S.real->C_GetSlotList(present, list, count), 0);
}

static CK_RV
fw_C_GetInfo(CK_INFO_PTR info)
{
	CK_RV rv = CKR_OK;
	int inj = fault_pre(F_C_GetInfo, K_LIB, &rv);

	if (!inj) {
		rv = S.real->C_GetInfo(info);
		if (rv == CKR_OK && info != NULL && S.lib_manufacturer_set) {
			memcpy(info->manufacturerID, S.lib_manufacturer,
			       sizeof(S.lib_manufacturer));
			inj = 1;
		}
	}
	return fault_post(F_C_GetInfo, rv, inj);
}

static CK_RV
fw_C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
	CK_RV rv = CKR_OK;
	int inj = fault_pre(F_C_GetSlotInfo, K_LIB, &rv);

	if (!inj) {
		rv = S.real->C_GetSlotInfo(slot, info);
		if (rv == CKR_OK && S.removed && info != NULL) {
			info->flags &= ~(CK_FLAGS)CKF_TOKEN_PRESENT;
			inj = 1;
		}
	}
	return fault_post(F_C_GetSlotInfo, rv, inj);
}

static const size_t field_size[NFIELDS] = {32, 32, 16, 16};

/* FAULT_TOKEN_INFO: the rules that match the real token info rewrite it; 1 if any did. */
static int
rewrite_info(CK_TOKEN_INFO_PTR info)
{
	unsigned char real_label[32];
	unsigned char *dst[NFIELDS] = {info->label, info->manufacturerID, info->model,
	                               info->serialNumber};
	size_t i, f;
	int done = 0;
	const struct info_rule *r;

	memcpy(real_label, info->label, sizeof(real_label));
	for (i = 0; i < S.ninfo; i++) {
		r = &S.info[i];
		if ((r->when == W_BLANK && (info->flags & CKF_TOKEN_INITIALIZED)) ||
		    (r->when == W_LABEL && memcmp(r->label, real_label, 32) != 0))
			continue;
		for (f = 0; f < NFIELDS; f++)
			if (r->set[f])
				memcpy(dst[f], r->value[f], field_size[f]);
		done = 1;
	}
	return done;
}

static CK_RV
fw_C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
	CK_RV rv = CKR_OK;
	int inj = fault_pre(F_C_GetTokenInfo, K_SLOT, &rv);

	if (!inj) {
		rv = S.real->C_GetTokenInfo(slot, info);
		if (rv == CKR_OK && info != NULL && S.pin_flags != 0) {
			info->flags |= S.pin_flags;
			inj = 1;
		}
		if (rv == CKR_OK && info != NULL && rewrite_info(info))
			inj = 1;
	}
	return fault_post(F_C_GetTokenInfo, rv, inj);
}

/* clang-format off */
static CK_FUNCTION_LIST fl = {
    .version = {CRYPTOKI_VERSION_MAJOR, CRYPTOKI_VERSION_MINOR},
    .C_GetFunctionList = C_GetFunctionList,
#define ENTRY(name, kind, ...) .name = fw_##name,
    FUNCS(ENTRY)
#undef ENTRY
};
/* clang-format on */

/* ------------------------------------------------------------------ configuration */

static int
find_fn(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < NFUNCS; i++)
		if (strlen(fnames[i]) == len && strncmp(fnames[i], name, len) == 0)
			return (int)i;
	return -1;
}

static int
parse_rv(const char *s, size_t len, CK_RV *out)
{
	char buf[64], *end;
	size_t i;
	unsigned long v;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	for (i = 0; i < sizeof(rvs) / sizeof(rvs[0]); i++) {
		if (strcmp(rvs[i].name, buf) == 0) {
			*out = rvs[i].rv;
			return 0;
		}
	}
	v = strtoul(buf, &end, 16);
	if (*end != '\0' || buf[0] == '-' || buf[0] == '+')
		return -1;
	*out = (CK_RV)v;
	return 0;
}

static int
parse_count(const char *s, size_t len, unsigned long *out)
{
	char buf[32], *end;
	unsigned long v;

	if (len == 0 || len >= sizeof(buf) || s[0] < '0' || s[0] > '9')
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	v = strtoul(buf, &end, 10);
	if (*end != '\0' || v == 0)
		return -1;
	*out = v;
	return 0;
}

static int
bad(const char *var, const char *val, const char *why)
{
	fprintf(stderr, "fault-pkcs11: %s=%s: %s\n", var, val, why);
	return -1;
}

static int
parse_pin_flags(const char *v)
{
	const char *p = v, *e;
	size_t len;

	while (*p != '\0') {
		e = strchr(p, ',');
		len = e != NULL ? (size_t)(e - p) : strlen(p);
		if (len == 9 && strncmp(p, "count_low", len) == 0)
			S.pin_flags |= CKF_USER_PIN_COUNT_LOW;
		else if (len == 9 && strncmp(p, "final_try", len) == 0)
			S.pin_flags |= CKF_USER_PIN_FINAL_TRY;
		else if (len == 6 && strncmp(p, "locked", len) == 0)
			S.pin_flags |= CKF_USER_PIN_LOCKED;
		else if (len != 0)
			return bad("FAULT_PIN_FLAGS", v, "expected count_low, final_try, locked");
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

/*
 * One "NAME[:RV][:N][@AFTER]" of var (with_rv: RV required) in p..end into
 * *sp. Returns 0, or -1 after a message.
 */
static int
parse_spec(const char *var, const char *val, const char *p, const char *end, int with_rv,
           struct spec *sp)
{
	const char *at, *c1, *c2 = NULL;

	memset(sp, 0, sizeof(*sp));
	sp->n = 1;
	sp->after = -1;
	if ((at = memchr(p, '@', (size_t)(end - p))) != NULL) {
		if ((sp->after = find_fn(at + 1, (size_t)(end - at - 1))) < 0)
			return bad(var, val, "unknown PKCS#11 function after '@'");
		end = at;
	}
	if ((c1 = memchr(p, ':', (size_t)(end - p))) == NULL)
		c1 = end;
	if ((sp->fn = find_fn(p, (size_t)(c1 - p))) < 0)
		return bad(var, val, "unknown PKCS#11 function");
	if (with_rv) {
		if (c1 == end)
			return bad(var, val, "expected NAME:RV[:N][@AFTER]");
		if ((c2 = memchr(c1 + 1, ':', (size_t)(end - c1 - 1))) == NULL)
			c2 = end;
		if (parse_rv(c1 + 1, (size_t)(c2 - c1 - 1), &sp->rv) != 0)
			return bad(var, val, "RV must be a CKR_ name or a hex value");
		c1 = c2;
	}
	if (c1 != end && parse_count(c1 + 1, (size_t)(end - c1 - 1), &sp->n) != 0)
		return bad(var, val, "N must be a number >= 1");
	return 0;
}

static int
parse_rv_at(const char *v)
{
	const char *p = v, *end;

	while (*p != '\0') {
		if ((end = strchr(p, ',')) == NULL)
			end = p + strlen(p);
		if (end != p) {
			if (S.nrv_at == MAX_RV_AT)
				return bad("FAULT_RV_AT", v, "too many entries");
			if (parse_spec("FAULT_RV_AT", v, p, end, 1, &S.rv_at[S.nrv_at]) != 0)
				return -1;
			S.nrv_at++;
		}
		p = *end == ',' ? end + 1 : end;
	}
	return 0;
}

/*
 * p..end percent-decoded into dst (n bytes), blank-padded. -1 when it holds a
 * NUL, a bad %XX or more than n bytes.
 */
static int
decode_padded(const char *p, const char *end, unsigned char *dst, size_t n)
{
	size_t o = 0;
	char hex[3] = {0, 0, 0}, *e;
	unsigned long b;

	memset(dst, ' ', n);
	while (p < end) {
		if (o == n)
			return -1;
		if (*p != '%') {
			dst[o++] = (unsigned char)*p++;
			continue;
		}
		if (end - p < 3)
			return -1;
		hex[0] = p[1];
		hex[1] = p[2];
		b = strtoul(hex, &e, 16);
		if (*e != '\0' || b == 0 || hex[0] == '-' || hex[0] == '+' || hex[0] == ' ')
			return -1;
		dst[o++] = (unsigned char)b;
		p += 3;
	}
	return 0;
}

/* One "WHEN:FIELD=VALUE,..." rule in p..end. */
static int
parse_info_rule(const char *v, const char *p, const char *end, struct info_rule *r)
{
	static const char *const names[NFIELDS] = {"label", "manufacturer", "model", "serial"};
	const char *colon = memchr(p, ':', (size_t)(end - p)), *q, *comma, *eq;
	size_t f;

	memset(r, 0, sizeof(*r));
	if (colon == NULL)
		return bad("FAULT_TOKEN_INFO", v, "expected WHEN:FIELD=VALUE[,...]");
	if (colon - p == 1 && *p == '*')
		r->when = W_ANY;
	else if (colon - p == 5 && strncmp(p, "blank", 5) == 0)
		r->when = W_BLANK;
	else if (colon - p >= 6 && strncmp(p, "label=", 6) == 0)
		r->when = W_LABEL;
	else
		return bad("FAULT_TOKEN_INFO", v, "WHEN must be *, blank or label=L");
	if (r->when == W_LABEL && decode_padded(p + 6, colon, r->label, 32) != 0)
		return bad("FAULT_TOKEN_INFO", v, "bad label after label=");
	for (q = colon + 1; q < end; q = comma + 1) {
		if ((comma = memchr(q, ',', (size_t)(end - q))) == NULL)
			comma = end;
		if ((eq = memchr(q, '=', (size_t)(comma - q))) == NULL)
			return bad("FAULT_TOKEN_INFO", v, "expected FIELD=VALUE");
		for (f = 0; f < NFIELDS; f++)
			if (strlen(names[f]) == (size_t)(eq - q) &&
			    strncmp(q, names[f], (size_t)(eq - q)) == 0)
				break;
		if (f == NFIELDS)
			return bad("FAULT_TOKEN_INFO", v,
			           "FIELD must be label, manufacturer, model or serial");
		if (decode_padded(eq + 1, comma, r->value[f], field_size[f]) != 0)
			return bad("FAULT_TOKEN_INFO", v,
			           "VALUE too long for its field, or a bad %XX (or %00)");
		r->set[f] = 1;
	}
	return 0;
}

static int
parse_token_info(const char *v)
{
	const char *p = v, *end;

	while (*p != '\0') {
		if ((end = strchr(p, ';')) == NULL)
			end = p + strlen(p);
		if (end != p) {
			if (S.ninfo == MAX_INFO_RULES)
				return bad("FAULT_TOKEN_INFO", v, "too many rules");
			if (parse_info_rule(v, p, end, &S.info[S.ninfo]) != 0)
				return -1;
			S.ninfo++;
		}
		p = *end == ';' ? end + 1 : end;
	}
	return 0;
}

static int
parse_kill(const char *v)
{
	const char *end = v + strlen(v), *plus = strchr(v, '+');

	if (plus != NULL) {
		if (strcmp(plus, "+after") != 0)
			return bad("FAULT_KILL_AT", v, "expected NAME[:N][@AFTER][+after]");
		S.kill_post = 1;
		end = plus;
	}
	return parse_spec("FAULT_KILL_AT", v, v, end, 0, &S.kill);
}

static CK_RV
configure(void)
{
	const char *v, *real;
	CK_C_GetFunctionList get = NULL;
	CK_RV rv;

	memset(&S, 0, sizeof(S));
	S.remove.fn = S.remove.after = -1;
	S.remove.n = 1;
	S.kill.fn = -1;
	S.try_at.fn = S.try_at.after = -1;
	S.removed_rv = CKR_SESSION_HANDLE_INVALID;
	if ((v = getenv("FAULT_PIN_FLAGS")) != NULL && parse_pin_flags(v) != 0)
		return CKR_ARGUMENTS_BAD;
	if ((v = getenv("FAULT_REMOVE_AT")) != NULL && *v != '\0' &&
	    parse_spec("FAULT_REMOVE_AT", v, v, v + strlen(v), 0, &S.remove) != 0)
		return CKR_ARGUMENTS_BAD;
	if ((v = getenv("FAULT_REMOVED_RV")) != NULL && *v != '\0' &&
	    parse_rv(v, strlen(v), &S.removed_rv) != 0) {
		bad("FAULT_REMOVED_RV", v, "expected a CKR_ name or a hex value");
		return CKR_ARGUMENTS_BAD;
	}
	if ((v = getenv("FAULT_RV_AT")) != NULL && parse_rv_at(v) != 0)
		return CKR_ARGUMENTS_BAD;
	if ((v = getenv("FAULT_CRASH_AT")) != NULL && *v != '\0') {
		if (getenv("FAULT_KILL_AT") != NULL) {
			bad("FAULT_CRASH_AT", v, "not with FAULT_KILL_AT");
			return CKR_ARGUMENTS_BAD;
		}
		if (parse_spec("FAULT_CRASH_AT", v, v, v + strlen(v), 0, &S.kill) != 0)
			return CKR_ARGUMENTS_BAD;
		S.crash = 1;
		if ((v = getenv("FAULT_CRASH_LATE")) != NULL && *v != '\0') {
			char *end;

			S.crash_late_ms = strtol(v, &end, 10);
			if (*end != '\0' || S.crash_late_ms <= 0 || S.crash_late_ms > 60000) {
				bad("FAULT_CRASH_LATE", v, "expected milliseconds, 1 to 60000");
				return CKR_ARGUMENTS_BAD;
			}
		}
	}
	if ((v = getenv("FAULT_KILL_AT")) != NULL && *v != '\0' && parse_kill(v) != 0)
		return CKR_ARGUMENTS_BAD;
	if ((v = getenv("FAULT_TRY_AT")) != NULL && *v != '\0') {
		const char *w = getenv("FAULT_TRY");

		if (w == NULL || strlen(w) >= sizeof(S.try_what)) {
			bad("FAULT_TRY_AT", v, "needs FAULT_TRY (exec:PATH or connect:IPV4:PORT)");
			return CKR_ARGUMENTS_BAD;
		}
		if (parse_spec("FAULT_TRY_AT", v, v, v + strlen(v), 0, &S.try_at) != 0)
			return CKR_ARGUMENTS_BAD;
		strcpy(S.try_what, w);
	}
	if ((v = getenv("FAULT_TOKEN_INFO")) != NULL && parse_token_info(v) != 0)
		return CKR_ARGUMENTS_BAD;
	if ((v = getenv("FAULT_LIB_MANUFACTURER")) != NULL && *v != '\0') {
		if (strlen(v) > sizeof(S.lib_manufacturer)) {
			bad("FAULT_LIB_MANUFACTURER", v, "32 bytes at most");
			return CKR_ARGUMENTS_BAD;
		}
		memset(S.lib_manufacturer, ' ', sizeof(S.lib_manufacturer));
		memcpy(S.lib_manufacturer, v, strlen(v));
		S.lib_manufacturer_set = 1;
	}
	if ((v = getenv("FAULT_PIDS")) != NULL && *v != '\0') {
		if (strlen(v) >= sizeof(S.pids)) {
			bad("FAULT_PIDS", v, "path too long");
			return CKR_ARGUMENTS_BAD;
		}
		strcpy(S.pids, v);
	}
	if ((v = getenv("FAULT_LOG")) != NULL && *v != '\0') {
		if (strlen(v) >= sizeof(S.log)) {
			bad("FAULT_LOG", v, "path too long");
			return CKR_ARGUMENTS_BAD;
		}
		strcpy(S.log, v);
	}
	real = getenv("FAULT_REAL_MODULE");
	if (real == NULL || *real == '\0')
		real = DEFAULT_REAL;
	if ((S.dl = dlopen(real, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		fprintf(stderr, "fault-pkcs11: cannot load %s: %s\n", real, dlerror());
		return CKR_GENERAL_ERROR;
	}
	*(void **)(&get) = dlsym(S.dl, "C_GetFunctionList");
	if (get == NULL || (rv = get(&S.real)) != CKR_OK || S.real == NULL) {
		fprintf(stderr, "fault-pkcs11: %s gives no PKCS#11 function list\n", real);
		dlclose(S.dl);
		S.dl = NULL;
		S.real = NULL;
		return CKR_GENERAL_ERROR;
	}
	S.configured = 1;
	return CKR_OK;
}

CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	CK_RV rv;

	if (!S.configured && (rv = configure()) != CKR_OK)
		return rv;
	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	log_call("C_GetFunctionList", CKR_OK, 0);
	*list = &fl;
	return CKR_OK;
}

/* The real module goes when the last dlclose of this one does. */
__attribute__((destructor)) static void
unload_real(void)
{
	if (S.dl != NULL)
		dlclose(S.dl);
	S.dl = NULL;
	S.real = NULL;
	S.configured = 0;
}
