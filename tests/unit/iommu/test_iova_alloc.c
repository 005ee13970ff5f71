/*
 * test_iova_alloc.c - the IOVA allocator of the vfio backend: windows and the MSI hole honoured,
 * never IOVA 0, congruence with the VA, limits (ERANGE) and exhaustion (ENOSPC), 4 GiB and up
 * first, no early reuse of a freed range, window changes refused while ranges would fall out;
 * and a random run checked against a plain list of what is allocated.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "iommu/iova_alloc.h"

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

/* Random allocate/free against a list: no overlap, all inside the windows, congruence kept. */
static void test_random(void **state)
{
	(void)state;
	struct iova_space s;
	struct { uint64_t lo, size; } live[512];
	int n = 0;
	unsigned seed = 11;

	struct iommu_window w[2] = { { 0, 0x3fffffff }, { 0x40100000, 0x7fffffff } }; /* 2 GiB, a hole */
	iova_space_init(&s, w, 2);
	for (int step = 0; step < 20000; step++) {
		if (n < 512 && (n == 0 || rand_r(&seed) % 3)) {
			uint64_t size = (1 + rand_r(&seed) % 512) * PG, mod = rand_r(&seed) % 2 ? 2 * MB : PG;
			uint64_t phase = mod == PG ? 0 : (rand_r(&seed) % 512) * PG, iova;
			int err = iova_alloc(&s, size, mod, phase, NULL, 0, 0, &iova);
			if (err) {
				assert_int_equal(err, ENOSPC);
				continue;
			}
			assert_int_equal(iova % mod, phase);
			assert_true(iova != 0);
			assert_true((iova + size - 1 <= 0x3fffffff) || (iova >= 0x40100000 && iova + size - 1 <= 0x7fffffff));
			for (int i = 0; i < n; i++)
				assert_true(iova + size <= live[i].lo || live[i].lo + live[i].size <= iova);
			live[n].lo = iova;
			live[n++].size = size;
		} else {
			int k = rand_r(&seed) % n;
			struct iova_rec *r = iova_find(&s, live[k].lo);
			assert_non_null(r);
			assert_int_equal(r->size, live[k].size);
			iova_free_rec(&s, r);
			assert_null(iova_find(&s, live[k].lo));
			live[k] = live[--n];
		}
	}
	iova_space_fini(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basics),
		cmocka_unit_test(test_random),
	};
	return cmocka_run_group_tests_name("iova_alloc", tests, NULL, NULL);
}
