/*
 * fuzz_state.c: the files p11enroll reads back from state_dir. Each input is
 * written (0600, in a state_dir of the target's own, 0700) as every one of
 * them and read by its loader:
 *   pending-<label>.txn (pending_load), last-<label>.txt (attempt_load),
 *   hook-<label>.txt (hookrec_load), keys-<label>.txt (keyrec_load), a
 *   station card's token-identity.txt (cardid_check), ca-next.pem and the
 *   trust dir's ca.crt (ca_next_rolled, ca_next_check_at).
 * The input's lines are also unescaped (statefile_unescape), and
 * statefile_escape of the input must unescape to the input.
 */
#include <sys/stat.h>

#include <openssl/evp.h>

#include "attempt.h"
#include "ca_next.h"
#include "cardid.h"
#include "conf.h"
#include "fuzz_common.h"
#include "hookrec.h"
#include "keyrec.h"
#include "pending.h"
#include "scep.h"
#include "statefile.h"

#define LABEL "fuzz"

static struct conf c;
static char card_dir[700], files[7][800], anchor[8 + 3 * 32];
static X509 *ca;
static struct tok_info card = {"laptop", "SoftHSM project", "SoftHSM v2", "0123456789abcdef", 0, 0};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir;
	static char state[600], trust[650];
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;

	(void)argc;
	(void)argv;
	fuzz_quiet();
	if (scep_init() != 0)
		fuzz_die("scep_init failed", NULL);
	dir = fuzz_dir("state");
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(trust, sizeof(trust), "%s/trust", state);
	snprintf(card_dir, sizeof(card_dir), "%s/card", state);
	if (mkdir(state, 0700) != 0 || mkdir(trust, 0700) != 0 || mkdir(card_dir, 0700) != 0)
		fuzz_die("cannot create directories in", dir);
	c.state_dir = state;
	c.trust_dir = trust;
	c.key_label = LABEL;
	snprintf(files[0], sizeof(files[0]), "%s/pending-" LABEL ".txn", state);
	snprintf(files[1], sizeof(files[1]), "%s/last-" LABEL ".txt", state);
	snprintf(files[2], sizeof(files[2]), "%s/hook-" LABEL ".txt", state);
	snprintf(files[3], sizeof(files[3]), "%s/keys-" LABEL ".txt", state);
	snprintf(files[4], sizeof(files[4]), "%s/" CARDID_FILE, card_dir);
	snprintf(files[5], sizeof(files[5]), "%s/ca-next.pem", state);
	snprintf(files[6], sizeof(files[6]), "%s/ca.crt", trust);
	/* the server's CA as ca_next_rolled is asked about it, and its pin */
	ca = fuzz_cert("ca.der");
	if (scep_cert_digest(ca, EVP_sha256(), d, &dlen) != 0 || dlen != 32)
		fuzz_die("cannot hash", "ca.der");
	memcpy(anchor, "sha256:", 7);
	scep_hex_colon(d, dlen, anchor + 7);
	return 0;
}

static void
escapes(const uint8_t *data, size_t size)
{
	char *s = fuzz_str(data, size), *esc = malloc(4 * size + 1), *back = malloc(size + 1);
	char *line, *save = NULL, out[512];

	if (esc == NULL || back == NULL)
		abort();
	statefile_escape(s, esc);
	if (strchr(esc, '\n') != NULL || statefile_unescape(esc, back, size + 1) != 0 ||
	    strcmp(back, s) != 0)
		abort(); /* one line, and it reads back */
	for (line = strtok_r(s, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		(void)statefile_unescape(line, out, sizeof(out));
	free(s);
	free(esc);
	free(back);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pending p;
	struct attempt a;
	struct hook_record h;
	struct keyrec *k = NULL;
	X509 *prev = NULL;
	time_t when = 0;
	int i, first = 0, rolled = 0;

	for (i = 0; i < 7; i++)
		fuzz_write(files[i], data, size);
	(void)pending_load(&c, &p);
	(void)attempt_load(&c, &a);
	(void)hookrec_load(&c, &h);
	if (keyrec_load(&c, &k) == 0)
		keyrec_free(k);
	(void)cardid_check(card_dir, &card, &first);
	(void)ca_next_rolled(&c, ca, anchor, &rolled, &prev);
	X509_free(prev);
	(void)ca_next_check_at(&c, &when);
	escapes(data, size);
	return 0;
}
