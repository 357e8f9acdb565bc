/*
 * fuzz_caps.c: GetCACaps bodies (scep_caps_parse), and their names printed
 * back (scep_caps_str) into buffers of every small size. Checks that
 * SCEPStandard implies AES, POST and SHA-256, and that the printed names
 * parse back to the same bits.
 */
#include "fuzz_common.h"
#include "scep.h"

FUZZ_INITIALIZE_QUIET

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned std = SCEP_CAP_AES | SCEP_CAP_POST | SCEP_CAP_SHA256;
	unsigned caps = scep_caps_parse(data, size);
	char buf[256], *p;
	size_t n;

	if ((caps & SCEP_CAP_STANDARD) && (caps & std) != std)
		abort();
	for (n = 0; n <= 16; n++) {
		char small[16 + 1];
		memset(small, 'x', sizeof(small));
		scep_caps_str(caps, small, n);
		if (n > 0 && memchr(small, '\0', n) == NULL)
			abort();
	}
	scep_caps_str(caps, buf, sizeof(buf));
	if (caps != 0) {
		for (p = buf; *p != '\0'; p++)
			if (*p == ' ')
				*p = '\n';
		if (scep_caps_parse((const unsigned char *)buf, strlen(buf)) != caps)
			abort();
	}
	return 0;
}
