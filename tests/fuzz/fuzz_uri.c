/*
 * fuzz_uri.c: RFC 7512 PKCS#11 URIs (tok_uri_parse). A URI that parses is
 * printed (tok_uri_format), and the printed URI must parse again and print
 * the same; it is matched against a fixed token (tok_uri_match_token).
 */
#include "err.h"
#include "fuzz_common.h"
#include "uri.h"

FUZZ_INITIALIZE_QUIET

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char label[32] = "laptop                          ",
	                           man[32] = "SoftHSM project                 ",
	                           model[16] = "SoftHSM v2      ", serial[16] = "0123456789abcdef";
	char *s = fuzz_str(data, size), *f1 = NULL, *f2 = NULL;
	struct tok_uri *u = NULL, *u2 = NULL;

	if (tok_uri_parse(s, &u) != 0) {
		if (u != NULL)
			abort();
		goto out;
	}
	(void)tok_uri_match_token(u, label, man, model, serial);
	if (tok_uri_format(u, &f1) != 0)
		goto out;
	if (tok_uri_parse(f1, &u2) != 0 || tok_uri_format(u2, &f2) != 0 || strcmp(f1, f2) != 0)
		abort(); /* what we print must read back */
	if (u2->id_len != u->id_len || (u->id_len > 0 && memcmp(u->id, u2->id, u->id_len) != 0))
		abort();
out:
	tok_uri_free(u);
	tok_uri_free(u2);
	free(f1);
	free(f2);
	free(s);
	return 0;
}
