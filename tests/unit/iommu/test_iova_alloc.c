/*
 * test_iova_alloc.c - the IOVA allocator of the vfio backend: windows and the MSI hole honoured,
 * never IOVA 0, congruence with the VA, limits (ERANGE) and exhaustion (ENOSPC), 4 GiB and up
 * first, no early reuse of a freed range, window changes refused while ranges would fall out;
 * and a random run checked against a plain list of what is allocated.  Holes (device MMIO,
 * issue 18): never handed out, on every path of the first fit, merged and capped; and the PCI
 * memory resources read from a sysfs-like folder.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "iommu/iova_alloc.h"
#include "iommu/vfio_common.h"

#define PG 4096ull
#define MB (1ull << 20)

/* As VFIO reports for the emulated VT-d: everything below 2^39 but the MSI window. */
static const struct iommu_window vtd[2] = { { 0, 0xfedfffff }, { 0xfef00000, 0x7fffffffffull } };

static void test_basics(void **state)
{
	(void)state;
	struct iova_space s;
	uint64_t a, b, c;

	iova_space_init(&s, vtd, 2);
	assert_int_equal(iova_alloc(&s, 2 * MB, 2 * MB, 0x1000, NULL, 0x7f0000201000, 0, &a), 0);
	assert_true(a >= (1ull << 32));		/* high first */
	assert_int_equal(a % (2 * MB), 0x1000); /* congruent with the VA mod 2 MiB */
	assert_non_null(iova_find(&s, a));
	assert_int_equal(iova_find(&s, a)->va, 0x7f0000201000);
	/* inside a 32-bit limit: below 4 GiB, never page 0, never the MSI window */
	struct iommu_window lim = { 0, 0xffffffff };
	int got = 0, err;
	while ((err = iova_alloc(&s, 64 * MB, PG, 0, &lim, 0, 0, &b)) == 0) {
		assert_true(b != 0 && b + 64 * MB - 1 <= 0xffffffff);
		assert_true(b + 64 * MB <= 0xfee00000 || b >= 0xfef00000);
		got++;
	}
	/* 4 GiB less page 0 and the MSI window hold 63 such ranges (all below the MSI window); then ERANGE */
	assert_int_equal(err, ERANGE);
	assert_int_equal(got, 63);
	assert_int_equal(iova_alloc(&s, 64 * MB, PG, 0, NULL, 0, 0, &b), 0);
	/* a freed range is not handed out again while there is room above */
	iova_free_rec(&s, iova_find(&s, b));
	assert_int_equal(iova_alloc(&s, 64 * MB, PG, 0, NULL, 0, 0, &c), 0);
	assert_int_not_equal(c, b);
	/* too big for any window */
	assert_int_equal(iova_alloc(&s, 1ull << 40, PG, 0, NULL, 0, 0, &c), ENOSPC);
	/* shrinking the windows under live ranges is refused and changes nothing */
	struct iommu_window small = { 0x1000, 0xfffff };
	assert_int_equal(iova_space_set_windows(&s, &small, 1), ERANGE);
	assert_int_equal(iova_alloc(&s, PG, PG, 0, NULL, 0, 0, &c), 0);
	assert_true(c > 0xfffff);
	iova_space_fini(&s);
}

static int in_hole(const struct iommu_window *h, int n, uint64_t lo, uint64_t size)
{
	for (int i = 0; i < n; i++)
		if (lo <= h[i].hi && lo + size - 1 >= h[i].lo)
			return 1;
	return 0;
}

/*
 * Random allocate/free against a list in the two windows below (w2): no overlap, never IOVA 0,
 * all inside the windows, never in one of the nh holes h, congruence kept, every free finds its
 * record.  *seed goes on from where the caller left it.
 */
static const struct iommu_window w2[2] = { { 0, 0x3fffffff }, { 0x40100000, 0x7fffffff } }; /* 2 GiB, a gap */

static void random_run(struct iova_space *s, unsigned *seed, int maxlive, const struct iommu_window *h, int nh)
{
	struct { uint64_t lo, size; } live[512];
	int n = 0;

	assert_true(maxlive <= 512);
	for (int step = 0; step < 20000; step++) {
		if (n < maxlive && (n == 0 || rand_r(seed) % 3)) {
			uint64_t size = (1 + rand_r(seed) % 512) * PG, mod = rand_r(seed) % 2 ? 2 * MB : PG;
			uint64_t phase = mod == PG ? 0 : (rand_r(seed) % 512) * PG, iova;
			int err = iova_alloc(s, size, mod, phase, NULL, 0, 0, &iova);
			if (err) {
				assert_int_equal(err, ENOSPC);
				continue;
			}
			assert_int_equal(iova % mod, phase);
			assert_true(iova != 0);
			assert_true((iova + size - 1 <= w2[0].hi) || (iova >= w2[1].lo && iova + size - 1 <= w2[1].hi));
			assert_false(in_hole(h, nh, iova, size));
			for (int i = 0; i < n; i++)
				assert_true(iova + size <= live[i].lo || live[i].lo + live[i].size <= iova);
			live[n].lo = iova;
			live[n++].size = size;
		} else {
			int k = rand_r(seed) % n;
			struct iova_rec *r = iova_find(s, live[k].lo);
			assert_non_null(r);
			assert_int_equal(r->size, live[k].size);
			iova_free_rec(s, r);
			assert_null(iova_find(s, live[k].lo));
			live[k] = live[--n];
		}
	}
}

/* Random allocate/free: no overlap, all inside the windows, congruence kept. */
static void test_random(void **state)
{
	(void)state;
	struct iova_space s;
	unsigned seed = 11;

	iova_space_init(&s, w2, 2);
	random_run(&s, &seed, 512, NULL, 0);
	iova_space_fini(&s);
}

/* QEMU 10 + qboot put the NVMe's BAR 0 (16 KiB) at 4 GiB, where the first high IOVA was. */
static void test_holes(void **state)
{
	(void)state;
	struct iova_space s;
	uint64_t a, b;
	const struct iommu_window bars[] = {
		{ 0x100000000ull, 0x100003fffull },		   /* the NVMe's BAR 0 */
		{ 0x100004000ull, 0x100004fffull },		   /* adjacent: merged */
		{ 0x100002000ull, 0x100002fffull },		   /* inside: merged */
		{ 0x100400000ull, 0x1005fffffull },		   /* a 2 MiB BAR further up */
		{ 0xfebf0000ull, 0xfebf3fffull },		   /* below 4 GiB */
		{ 5, 4 },					   /* empty: ignored */
	};

	iova_space_init(&s, vtd, 2);
	assert_int_equal(iova_space_set_holes(&s, bars, 6), 0);
	assert_int_equal(s.nhole, 3);
	assert_true(s.hole[1].lo == 0x100000000ull && s.hole[1].hi == 0x100004fffull);
	/* the first fit: past the hole, congruence kept */
	assert_int_equal(iova_alloc(&s, PG, PG, 0, NULL, 0, 0, &a), 0);
	assert_int_equal(a, 0x100005000ull);
	/* above the high-water mark: a 2 MiB range at phase 0 skips the 2 MiB BAR */
	assert_int_equal(iova_alloc(&s, 2 * MB, 2 * MB, 0, NULL, 0, 0, &b), 0);
	assert_int_equal(b, 0x100200000ull);
	assert_int_equal(iova_alloc(&s, 2 * MB, 2 * MB, 0, NULL, 0, 0, &b), 0);
	assert_int_equal(b, 0x100600000ull);
	/* the full scan (a freed gap below the high-water mark) keeps out too */
	assert_int_equal(iova_alloc(&s, 4 * PG, PG, 0, NULL, 0, 0, &b), 0);
	iova_free_rec(&s, iova_find(&s, a));
	struct iommu_window lim = { 0x100000000ull, 0x100007fffull };
	assert_int_equal(iova_alloc(&s, PG, PG, 0, &lim, 0, 0, &b), 0);
	assert_int_equal(b, 0x100005000ull);
	assert_int_equal(iova_alloc(&s, 2 * PG, PG, 0, &lim, 0, 0, &b), 0);
	assert_int_equal(b, 0x100006000ull);
	assert_int_equal(iova_alloc(&s, PG, PG, 0, &lim, 0, 0, &b), ERANGE); /* the rest is the hole */
	/* 32-bit: never the BAR below 4 GiB */
	struct iommu_window lim32 = { 0xfeb00000ull, 0xfebfffffull };
	int got = 0;
	while (!iova_alloc(&s, 64 * 1024, PG, 0, &lim32, 0, 0, &b)) {
		assert_false(in_hole(bars, 5, b, 64 * 1024));
		got++;
	}
	assert_int_equal(got, 15); /* 1 MiB less 64 KiB, in 64 KiB pieces */
	/* a hole over a live range is refused and changes nothing */
	const struct iommu_window over = { 0x100006000ull, 0x100006fffull };
	assert_int_equal(iova_space_set_holes(&s, &over, 1), EBUSY);
	assert_int_equal(s.nhole, 3);
	iova_space_fini(&s);

	/* more holes than kept: fewer, covering every one */
	struct iommu_window many[100];
	for (int i = 0; i < 100; i++)
		many[i] = (struct iommu_window){ 0x200000000ull + (uint64_t)(99 - i) * 16 * MB,
						 0x200000000ull + (uint64_t)(99 - i) * 16 * MB + 64 * 1024 - 1 };
	iova_space_init(&s, vtd, 2);
	assert_int_equal(iova_space_set_holes(&s, many, 100), 0);
	assert_int_equal(s.nhole, IOVA_MAX_HOLES);
	for (int i = 0; i < 100; i++)
		assert_true(in_hole(s.hole, s.nhole, many[i].lo, 64 * 1024) &&
			    in_hole(s.hole, s.nhole, many[i].hi, 1));
	iova_space_fini(&s);
}

/* Random allocations with holes in and across the windows: never in a hole. */
static void test_random_holes(void **state)
{
	(void)state;
	struct iova_space s;
	unsigned seed = 7;
	struct iommu_window h[40];

	for (int i = 0; i < 40; i++) {
		uint64_t lo = (uint64_t)(rand_r(&seed) % 0x7ffff) * PG;
		h[i] = (struct iommu_window){ lo, lo + (1 + rand_r(&seed) % 600) * PG - 1 };
	}
	iova_space_init(&s, w2, 2);
	assert_int_equal(iova_space_set_holes(&s, h, 40), 0);
	random_run(&s, &seed, 256, h, 40);
	iova_space_fini(&s);
}

static void put(const char *dir, const char *dev, const char *text)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, dev);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/%s/resource", dir, dev);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* A sysfs-like folder: memory BARs and a bridge window kept; I/O ports, unset and empty lines not. */
static void test_mmio_ranges(void **state)
{
	(void)state;
	char dir[] = "/tmp/ubdma-mmio-XXXXXX";
	struct iommu_window *w;
	int n;

	assert_non_null(mkdtemp(dir));
	put(dir, "0000:00:02.0", "0x0000000100000000 0x0000000100003fff 0x0000000000140204\n"
				 "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
				 "0x000000000000c000 0x000000000000c03f 0x0000000000040101\n");
	put(dir, "0000:00:1c.0", "0x00000000fe000000 0x00000000fe1fffff 0x0000000000000200\n"
				 "0x00000000fd000000 0x00000000fd0fffff 0x0000000020000200\n");
	assert_int_equal(vfio_mmio_ranges(dir, &w, &n), 0);
	assert_int_equal(n, 2);
	assert_true(in_hole(w, n, 0x100000000ull, 0x4000) && in_hole(w, n, 0xfe000000ull, 2 * MB));
	assert_false(in_hole(w, n, 0xc000, 0x40) || in_hole(w, n, 0xfd000000ull, MB));
	free(w);
	struct iova_space s;
	uint64_t a;
	iova_space_init(&s, vtd, 2);
	assert_int_equal(vfio_space_holes(&s, dir), 0);
	assert_int_equal(iova_alloc(&s, PG, PG, 0, NULL, 0, 0, &a), 0);
	assert_int_equal(a, 0x100004000ull);
	iova_space_fini(&s);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -r '%s'", dir);
	assert_int_equal(system(cmd), 0);
	/* no such folder: an error from the scan, none from the space (it only logs) */
	assert_int_not_equal(vfio_mmio_ranges("/nonexistent/ubdma", &w, &n), 0);
	iova_space_init(&s, vtd, 2);
	assert_int_equal(vfio_space_holes(&s, "/nonexistent/ubdma"), 0);
	assert_int_equal(s.nhole, 0);
	iova_space_fini(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basics),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_holes),
		cmocka_unit_test(test_random_holes),
		cmocka_unit_test(test_mmio_ranges),
	};
	return cmocka_run_group_tests_name("iova_alloc", tests, NULL, NULL);
}
