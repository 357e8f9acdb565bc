/*
 * fuzz_pinmap.c: the station's PIN map file ("serial = PIN" lines,
 * pinmap_parse). A map that parses is asked for each serial it may hold.
 */
#include "fuzz_common.h"
#include "pinmap.h"

FUZZ_INITIALIZE_QUIET

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pinmap *m = NULL;
	char serial[17];
	size_t i;

	if (pinmap_parse((const char *)data, size, "fuzz", &m) != 0) {
		if (m != NULL)
			abort();
		return 0;
	}
	(void)pinmap_count(m);
	(void)pinmap_get(m, "");
	(void)pinmap_get(m, "0123456789abcdef");
	/* the first 1..16 bytes of each line as a serial */
	for (i = 0; i < size; i++) {
		if (i == 0 || data[i - 1] == '\n') {
			size_t n = 0;
			while (n < 16 && i + n < size && data[i + n] != '\n' && data[i + n] != '=')
				n++;
			memcpy(serial, data + i, n);
			serial[n] = '\0';
			(void)pinmap_get(m, serial);
		}
	}
	pinmap_free(m);
	return 0;
}
