/*
 * fuzz_tokserve.c: the requests the token process serves (tokens/tokserve.c,
 * tokproc_server_request), which come from a process it does not trust: p11enroll,
 * which parses what servers send. The input is a run of requests, each a
 * 2-byte length (little-endian) and that many bytes of a request message
 * (wire.h), served one after another by one server, as in one attempt, on a
 * real SoftHSM token made at start (its own directory) with one EC and one RSA
 * key pair labelled "fz" and a certificate for the RSA key.
 *
 * Every answer must be one: TOKPROC_ANSWER, no lines (the sink is off), a
 * result of 0 or a P11E_ERR_* code. After each input the token is put back:
 * what a request added goes, what it removed comes back, so that inputs do not
 * depend on each other. Not served: RSA key generation (seconds an input) and
 * the destruction of the fixture's keys (they would come back under other
 * handles); the unit tests destroy keys through the token process.
 */
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "err.h"
#include "fuzz_common.h"
#include "p11int.h"
#include "tokproc.h"
#include "wire.h"

#define SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"
#define LABEL "fz"

static struct p11 *p;
static X509 *cert; /* for the RSA key */

/* The key pairs labelled fz that are the fixture's: EC first, then RSA. */
static struct tok_key *ours[2];

static void
make_keys(void)
{
	static const struct tok_keyspec spec[2] = {{TOK_KEY_EC, 256, 0}, {TOK_KEY_RSA, 2048, 0}};
	int i;

	for (i = 0; i < 2; i++)
		if (ours[i] == NULL && p11_generate_key(p, NULL, &spec[i], LABEL, &ours[i]) != 0)
			fuzz_die("cannot generate a key on", "SoftHSM");
}

/* A certificate for the RSA key (self-issued, signed by a throw-away key: never verified). */
static void
make_cert(void)
{
	EVP_PKEY *signer = EVP_EC_gen("P-256");
	X509_NAME *n = X509_NAME_new();

	if (signer == NULL || n == NULL || (cert = X509_new()) == NULL ||
	    !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)LABEL, -1, -1,
	                                0) ||
	    !X509_set_subject_name(cert, n) || !X509_set_issuer_name(cert, n) ||
	    !ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) ||
	    X509_gmtime_adj(X509_getm_notBefore(cert), 0) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(cert), 86400) == NULL ||
	    !X509_set_pubkey(cert, ours[1]->pub) || X509_sign(cert, signer, EVP_sha256()) <= 0)
		fuzz_die("cannot make", "the certificate");
	EVP_PKEY_free(signer);
	X509_NAME_free(n);
}

/* The token as the fixture made it: other key pairs and certificates go, ours come back. */
static void
restore(void)
{
	struct tok_key **keys = NULL;
	size_t n = 0, i, nc = 0;
	int j, mine;

	if (p11_find_keys(p, LABEL, &keys, &n) != 0)
		fuzz_die("cannot list the keys on", "SoftHSM");
	for (j = 0; j < 2; j++) {
		for (i = 0; i < n; i++)
			if (keys[i]->pub_handle == ours[j]->pub_handle &&
			    keys[i]->priv_handle == ours[j]->priv_handle &&
			    keys[i]->priv_handle != 0)
				break;
		if (i == n) /* skipped() keeps them */
			fuzz_die("a key of the fixture is gone from", "the token");
	}
	for (i = 0; i < n; i++) {
		for (mine = 0, j = 0; j < 2; j++)
			if (ours[j] != NULL && keys[i]->pub_handle == ours[j]->pub_handle)
				mine = 1;
		if (!mine) {
			(void)p11_other_certs(p, keys[i], NULL, 1, &nc);
			(void)p11_destroy_key(p, keys[i]);
		}
	}
	tok_keys_free(keys, n);
	(void)p11_other_certs(p, ours[0], NULL, 1, &nc);
	(void)p11_other_certs(p, ours[1], cert, 1, &nc);
	if (p11_has_cert(p, ours[1], cert) != 0 && p11_store_cert(p, ours[1], cert) != 0)
		fuzz_die("cannot store the certificate on", "SoftHSM");
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct tok_uri u;
	char cmd[1024];
	const char *dir;

	(void)argc;
	(void)argv;
	fuzz_quiet();
	/* The token's store in memory where there is some: SoftHSM writes an object file for
	 * each object a request makes or removes, and make check runs this target beside the
	 * integration tests, which wait on the same disk. */
	if (access("/dev/shm", W_OK) == 0)
		setenv("TMPDIR", "/dev/shm", 1);
	dir = fuzz_dir("tokserve");
	snprintf(cmd, sizeof(cmd), "%s/softhsm2.conf", dir);
	{
		FILE *f = fopen(cmd, "w");

		if (f == NULL)
			fuzz_die("cannot write", cmd);
		fprintf(
		    f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
		    dir);
		fclose(f);
	}
	setenv("SOFTHSM2_CONF", cmd, 1);
	snprintf(cmd, sizeof(cmd),
	         "softhsm2-util --init-token --free --label " LABEL
	         " --so-pin 1234 --pin 5678 >/dev/null 2>&1");
	if (system(cmd) != 0)
		fuzz_die("cannot make a SoftHSM token with", "softhsm2-util");
	memset(&u, 0, sizeof(u));
	u.token = LABEL;
	if (p11_open(SOFTHSM, &u, &p) != 0 || p11_login(p, "5678", 0) != 0)
		fuzz_die("cannot open the token in", SOFTHSM);
	make_keys();
	make_cert();
	restore();
	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "fuzz_tokserve: EC key %lu/%lu, RSA key %lu/%lu\n",
		        ours[0]->pub_handle, ours[0]->priv_handle, ours[1]->pub_handle,
		        ours[1]->priv_handle);
	return 0;
}

/* One of the fixture's key objects. */
static int
ours_handle(unsigned long h)
{
	int j;

	for (j = 0; j < 2; j++)
		if (h != 0 && (h == ours[j]->pub_handle || h == ours[j]->priv_handle))
			return 1;
	return 0;
}

/*
 * Requests not served (see above): the generation of an RSA key (seconds), and
 * the destruction of the fixture's own keys, whose objects would come back
 * under other handles and leave the seeds' handles (2/3 and 4/5) naming none.
 */
static int
skipped(const uint8_t *msg, size_t len)
{
	struct wire_rbuf r = {msg, len, 0, 0};
	int64_t op = wire_r_num(&r);
	size_t n;

	if (op == TOKPROC_DESTROY_KEY)
		return ours_handle((unsigned long)wire_r_num(&r)) ||
		       ours_handle((unsigned long)wire_r_num(&r));
	if (op != TOKPROC_GENERATE)
		return 0;
	(void)wire_r_bytes(&r, &n);
	(void)wire_r_num(&r);
	return r.bad || wire_r_num(&r) != TOK_KEY_EC;
}

/* An answer is one: its code, no lines, a result of ours; its token the fixture's. */
static void
check_answer(const struct wire_wbuf *w)
{
	struct wire_rbuf r = {w->p, w->len, 0, 0};
	struct tok_info info;
	int64_t rc;

	if (w->oom || wire_r_num(&r) != TOKPROC_ANSWER || wire_r_num(&r) != 0)
		abort();
	rc = wire_r_num(&r);
	if (r.bad || rc > 0 || rc < P11E_ERR_HOOK || tokproc_r_info(&r, &info) != 0 ||
	    strcmp(info.label, LABEL) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tokproc_server *s = tokproc_server_new(-1, p, LABEL);
	struct wire_wbuf w;
	size_t len;

	if (s == NULL)
		abort();
	while (size >= 2) {
		len = (size_t)data[0] | (size_t)data[1] << 8;
		data += 2;
		size -= 2;
		if (len > size)
			len = size;
		if (!skipped(data, len)) {
			memset(&w, 0, sizeof(w));
			tokproc_server_request(s, data, len, &w);
			check_answer(&w);
			wire_w_free(&w);
		}
		data += len;
		size -= len;
	}
	tokproc_server_free(s);
	restore();
	return 0;
}
