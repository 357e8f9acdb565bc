/*
 * memscan.h: looks for bytes in this process's memory as a core dump or gcore
 * would hold it: every readable mapping except those marked "dd" (excluded
 * from dumps, MADV_DONTDUMP) in /proc/self/smaps. The needles must live in
 * such excluded memory themselves (the secret arena), or they find
 * themselves. Mappings with nothing resident (reading would only fault pages in)
 * and mappings over 256 MiB (a sanitizer's shadow memory) are skipped.
 */
#ifndef P11E_TEST_MEMSCAN_H
#define P11E_TEST_MEMSCAN_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * Under AddressSanitizer a scan also finds copies of what it reads that the
 * sanitizer's own code leaves on the stack meanwhile: tests do not draw
 * conclusions from memscan() there (memscan_peek stays exact).
 */
#ifdef __SANITIZE_ADDRESS__
#define MEMSCAN_EXACT 0
#else
#define MEMSCAN_EXACT 1
#endif

#define MEMSCAN_BLOCK (1024 * 1024)
#define MEMSCAN_NEEDLE_MAX 4096
#define MEMSCAN_MAX_MAPPING (256UL * 1024 * 1024)

struct memscan_hit {
	int dumped;   /* mappings a dump holds where the needle is */
	int excluded; /* mappings marked "dd" where it is */
};

static inline int
memscan_has(const unsigned char *h, size_t n, const unsigned char *needle, size_t k)
{
	size_t i;

	for (i = 0; i + k <= n; i++)
		if (h[i] == needle[0] && memcmp(h + i, needle, k) == 0)
			return 1;
	return 0;
}

/* Whether [lo, hi) holds the needle, read through /proc/self/mem into buf. */
static inline int
memscan_range(int mem, unsigned long lo, unsigned long hi, unsigned char *buf,
              const unsigned char *needle, size_t k)
{
	unsigned long at = lo;
	size_t have = 0;
	ssize_t got;

	while (at < hi) {
		size_t want = hi - at < MEMSCAN_BLOCK ? hi - at : MEMSCAN_BLOCK;

		if ((got = pread(mem, buf + have, want, (off_t)at)) <= 0)
			return 0;
		at += (unsigned long)got;
		have += (size_t)got;
		if (memscan_has(buf, have, needle, k))
			return 1;
		/* keep the tail: the needle may straddle two blocks */
		if (have >= k - 1) {
			memmove(buf, buf + have - (k - 1), k - 1);
			have = k - 1;
		}
	}
	return 0;
}

/* Counts the mappings that hold the k bytes at needle (1..MEMSCAN_NEEDLE_MAX). */
static inline void
memscan(const void *needle, size_t k, struct memscan_hit *hit)
{
	size_t size = MEMSCAN_BLOCK + MEMSCAN_NEEDLE_MAX;
	unsigned long lo = 0, hi = 0, l, h, rss = 1;
	char line[1024], perm[8], name[512];
	unsigned char *buf;
	FILE *f;
	int mem, mapped = 0, n;

	memset(hit, 0, sizeof(*hit));
	if (k == 0 || k > MEMSCAN_NEEDLE_MAX)
		return;
	buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED || madvise(buf, size, MADV_DONTDUMP) != 0)
		return;
	f = fopen("/proc/self/smaps", "r");
	mem = open("/proc/self/mem", O_RDONLY);
	while (f != NULL && mem != -1 && fgets(line, sizeof(line), f) != NULL) {
		name[0] = '\0';
		n = sscanf(line, "%lx-%lx %7s %*s %*s %*s %511s", &l, &h, perm, name);
		if (n >= 3) {
			lo = l;
			hi = h;
			rss = 1;
			mapped = perm[0] == 'r' && hi - lo <= MEMSCAN_MAX_MAPPING &&
			         strcmp(name, "[vvar]") != 0 && strcmp(name, "[vsyscall]") != 0 &&
			         strcmp(name, "[vvar_vclock]") != 0;
			continue;
		}
		if (strncmp(line, "Rss:", 4) == 0)
			rss = strtoul(line + 4, NULL, 10);
		if (strncmp(line, "VmFlags:", 8) != 0 || !mapped || rss == 0)
			continue;
		mapped = 0;
		if (memscan_range(mem, lo, hi, buf, needle, k)) {
			if (strstr(line, " dd") != NULL)
				hit->excluded++;
			else
				hit->dumped++;
		}
	}
	if (f != NULL)
		fclose(f);
	if (mem != -1)
		close(mem);
	munmap(buf, size);
}

/*
 * Copies n bytes at addr into out through /proc/self/mem: memory that was
 * freed can be looked at without touching it (nor upsetting a sanitizer).
 * 0 on success.
 */
static inline int
memscan_peek(const void *addr, void *out, size_t n)
{
	int mem = open("/proc/self/mem", O_RDONLY);
	ssize_t got = -1;

	if (mem != -1) {
		got = pread(mem, out, n, (off_t)(uintptr_t)addr);
		close(mem);
	}
	return got == (ssize_t)n ? 0 : -1;
}

#endif
