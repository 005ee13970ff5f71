/*
 * test_xlate.c - the translation map: 4 KiB and 2 MiB granularity, leaf splitting and merging,
 * bounds, and readers racing a writer (never a torn or mixed translation; run under TSan too).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "xlate/xlate.h"

#define PG 4096ull
#define GR (2ull << 20)

static struct xlate_map m;

static int setup(void **state)
{
	(void)state;
	return xlate_init(&m);
}

static int teardown(void **state)
{
	(void)state;
	xlate_fini(&m);
	return 0;
}

static void test_empty_and_bounds(void **state)
{
	(void)state;
	assert_int_equal(xlate_lookup(&m, 0), UBDMA_BAD_IOVA);
	assert_int_equal(xlate_lookup(&m, 0x7fffffffffffull), UBDMA_BAD_IOVA);
	assert_int_equal(xlate_lookup(&m, 1ull << 47), UBDMA_BAD_IOVA);
	assert_int_equal(xlate_lookup(&m, UINT64_MAX), UBDMA_BAD_IOVA);
}

static void test_4k_pages(void **state)
{
	(void)state;
	const uintptr_t va = 0x100000000ull + 3 * PG; /* not granule aligned */
	uint64_t iovas[5] = { 0x9000, 0x3000, 0x0, 0x77777000, 0x1000 }; /* IOVA 0 is legal */
	size_t run;

	assert_int_equal(xlate_set(&m, va, 5, PG, iovas, 0), 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(xlate_lookup(&m, va + i * PG), iovas[i]);
		assert_int_equal(xlate_lookup(&m, va + i * PG + 4095), iovas[i] + 4095);
		assert_int_equal(xlate_lookup_run(&m, va + i * PG + 100, &run), iovas[i] + 100);
		assert_int_equal(run, PG - 100);
	}
	assert_int_equal(xlate_lookup(&m, va - 1), UBDMA_BAD_IOVA);
	assert_int_equal(xlate_lookup(&m, va + 5 * PG), UBDMA_BAD_IOVA);
	xlate_clear(&m, va + PG, PG);
	assert_int_equal(xlate_lookup(&m, va + PG), UBDMA_BAD_IOVA);
	assert_int_equal(xlate_lookup(&m, va + 2 * PG + 1), 1);
	xlate_clear(&m, va, 5 * PG);
	for (int i = 0; i < 5; i++)
		assert_int_equal(xlate_lookup(&m, va + i * PG), UBDMA_BAD_IOVA);
}

static void test_2m_leaf_split_merge(void **state)
{
	(void)state;
	const uintptr_t va = 0x200000000ull;
	uint64_t hp[2] = { 0x40000000, 0x12200000 };
	size_t run, tables;

	assert_int_equal(xlate_set(&m, va, 2, GR, hp, 0), 0);
	tables = m.tables;
	assert_int_equal(xlate_lookup_run(&m, va + 12345, &run), hp[0] + 12345);
	assert_int_equal(run, GR - 12345); /* a leaf: the whole rest of the granule in one run */
	assert_int_equal(xlate_lookup(&m, va + GR + GR - 1), hp[1] + GR - 1);
	/* clearing one 4 KiB page splits the leaf into a table with the same translations */
	xlate_clear(&m, va + 7 * PG, PG);
	assert_int_equal(m.tables, tables + 1);
	assert_int_equal(xlate_lookup(&m, va + 7 * PG), UBDMA_BAD_IOVA);
	assert_int_equal(xlate_lookup(&m, va + 6 * PG + 5), hp[0] + 6 * PG + 5);
	assert_int_equal(xlate_lookup(&m, va + 8 * PG), hp[0] + 8 * PG);
	assert_int_equal(xlate_lookup_run(&m, va + 8 * PG, &run), hp[0] + 8 * PG);
	assert_int_equal(run, PG);
	/* filling it back keeps the table (readers may hold it): translations right, 4 KiB runs */
	uint64_t iova = hp[0] + 7 * PG;
	assert_int_equal(xlate_set(&m, va + 7 * PG, 1, PG, &iova, 0), 0);
	assert_int_equal(xlate_lookup(&m, va + 7 * PG), iova);
	assert_int_equal(xlate_set(&m, va, 1, GR, NULL, hp[0] + 0x200000), 0);
	assert_int_equal(xlate_lookup_run(&m, va + 5, &run), hp[0] + 0x200005);
	assert_int_equal(run, PG - 5);
	/* churn does not grow memory: one table per split granule, ever */
	for (int i = 0; i < 100; i++) {
		assert_int_equal(xlate_set(&m, va, 256, PG, NULL, 0x70000000), 0);
		xlate_clear(&m, va, GR);
		assert_int_equal(xlate_set(&m, va, 1, GR, NULL, 0x70000000), 0);
	}
	assert_int_equal(m.tables, tables + 1);
	/* out of the 47-bit space: refused, nothing written */
	assert_int_equal(xlate_set(&m, (1ull << 47) - PG, 2, PG, NULL, 0x1000), ERANGE);
	assert_int_equal(xlate_set(&m, UINT64_MAX - PG + 1, 1, PG, NULL, 0x1000), ERANGE);
	xlate_clear(&m, va, 2 * GR);
	assert_int_equal(xlate_lookup(&m, va + GR), UBDMA_BAD_IOVA);
	/* a linear 4 KiB run that covers a whole granule becomes a leaf too */
	assert_int_equal(xlate_set(&m, va + GR, 512, PG, NULL, 0x80000000), 0);
	assert_int_equal(xlate_lookup_run(&m, va + GR + 3, &run), 0x80000003);
	assert_int_equal(run, GR - 3);
	/* a run across an L1 boundary (1 GiB) */
	const uintptr_t edge = 0x3ffe00000ull + 0x40000000ull;
	assert_int_equal(xlate_set(&m, edge - PG, 2, PG, NULL, 0x5000), 0);
	assert_int_equal(xlate_lookup(&m, edge - 1), 0x5fff);
	assert_int_equal(xlate_lookup(&m, edge), 0x6000);
	xlate_clear(&m, edge - PG, 2 * PG);
	xlate_clear(&m, va + GR, GR);
}

/* Readers racing a writer that flips a granule between a leaf, a table of other IOVAs, and empty. */
#define RVA 0x300000000ull
#define LEAF 0x40000000ull
#define TBL 0x90000000ull

static volatile int stop;
static uint64_t tbl_iovas[512];

static void *reader(void *arg)
{
	unsigned long bad = 0, n = 0;
	unsigned seed = (unsigned)(uintptr_t)arg;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		uintptr_t off = (uintptr_t)(rand_r(&seed) % GR);
		uint64_t v = xlate_lookup(&m, RVA + off);
		/* only pages 100..149 are ever cleared: anywhere else BAD is a lost translation */
		int holey = off / PG >= 100 && off / PG < 150;
		int ok = (v == UBDMA_BAD_IOVA && holey) || v == LEAF + off ||
			 v == tbl_iovas[off / PG] + off % PG;
		bad += !ok;
		n++;
	}
	return (void *)(bad ? (uintptr_t)-1 : n);
}

static void test_concurrent_readers(void **state)
{
	(void)state;
	pthread_t th[2];
	struct timespec t0, t;

	for (int i = 0; i < 512; i++)
		tbl_iovas[i] = TBL + (uint64_t)(511 - i) * PG; /* reversed: never linear */
	assert_int_equal(xlate_set(&m, RVA, 1, GR, NULL, LEAF), 0);
	for (long i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, reader, (void *)(i + 1)), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int round = 0;; round++) {
		/* leaf -> partial table (split) -> full table -> partial clear -> leaf (merge) */
		switch (round % 4) {
		case 0:
			assert_int_equal(xlate_set(&m, RVA + 100 * PG, 10, PG, tbl_iovas + 100, 0), 0);
			break;
		case 1:
			assert_int_equal(xlate_set(&m, RVA, 512, PG, tbl_iovas, 0), 0);
			break;
		case 2:
			xlate_clear(&m, RVA + 100 * PG, 50 * PG);
			break;
		default:
			assert_int_equal(xlate_set(&m, RVA, 1, GR, NULL, LEAF), 0);
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000000000L + t.tv_nsec - t0.tv_nsec > 300000000L)
			break;
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 2; i++) {
		void *r;
		pthread_join(th[i], &r);
		assert_int_not_equal((uintptr_t)r, (uintptr_t)-1);
		assert_true((uintptr_t)r > 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_and_bounds),
		cmocka_unit_test(test_4k_pages),
		cmocka_unit_test(test_2m_leaf_split_merge),
		cmocka_unit_test(test_concurrent_readers),
	};
	return cmocka_run_group_tests_name("xlate", tests, setup, teardown);
}
