/*
 * test_registry.c - overlapping cookies on a stub backend that gives every mapping its own
 * IOVAs (as VFIO does), so that the translation map's choice between cookies is visible:
 * a cookie the device may write through wins, then the newest; unlock re-points to the best
 * remaining cookie; a backend failure leaves nothing wired, mapped or entered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "core/ctx.h"
#include "../testutil.h"

#define PG 4096ul

/* The stub backend: distinct IOVAs per map() call, a count of live mappings, failure on demand. */
static uint64_t next_iova = 0x10000000;
static int live_maps, fail_next_map;

static int stub_map(void *priv, uintptr_t va, size_t npages, size_t pgsz, int prot,
		    const struct iommu_window *lim, uint64_t *iovas)
{
	(void)priv, (void)va, (void)prot, (void)lim;
	if (fail_next_map) {
		fail_next_map = 0;
		return ENOSPC;
	}
	for (size_t i = 0; i < npages; i++)
		iovas[i] = next_iova + i * pgsz;
	next_iova += npages * pgsz + 0x100000;
	live_maps++;
	return 0;
}

static int stub_unmap(void *priv, uintptr_t va, size_t npages, size_t pgsz, const uint64_t *iovas)
{
	(void)priv, (void)va, (void)npages, (void)pgsz, (void)iovas;
	live_maps--;
	return 0;
}

static struct iommu_ops stub_ops;

static ubdma_ctx_t *stub_ctx(void)
{
	ubdma_ctx_t *ctx;

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	stub_ops = *ctx->iommu.ops;
	stub_ops.map = stub_map;
	stub_ops.unmap = stub_unmap;
	ctx->iommu.ops = &stub_ops;
	return ctx;
}

static void test_cookie_choice(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx = stub_ctx();
	ubdma_umem_t *a, *b, *c;
	char *m = anon_map(12 * PG);

	assert_int_equal(ubdma_umem_lock(ctx, m, 8 * PG, UBDMA_UMEM_READ, &a), 0);
	assert_int_equal(ubdma_umem_lock(ctx, m + 2 * PG, 4 * PG, UBDMA_UMEM_WRITE, &b), 0);
	assert_int_equal(ubdma_umem_lock(ctx, m + 4 * PG, 6 * PG, UBDMA_UMEM_READ, &c), 0);
	assert_int_equal(live_maps, 3);
	for (int p = 0; p < 12; p++) {
		ubdma_umem_t *want = p < 2 ? a : p < 6 ? b : p < 10 ? c : NULL;
		uint64_t v = ubdma_vtoiova(ctx, m + p * PG + 3);
		assert_int_equal(v, want ? ubdma_umem_iova(want, m + p * PG + 3) : UBDMA_BAD_IOVA);
	}
	/* the writable cookie goes: its pages show the best of the others */
	ubdma_umem_unlock(b);
	for (int p = 0; p < 12; p++) {
		ubdma_umem_t *want = p < 4 ? a : p < 10 ? c : NULL;
		assert_int_equal(ubdma_vtoiova(ctx, m + p * PG), want ? ubdma_umem_iova(want, m + p * PG) : UBDMA_BAD_IOVA);
	}
	ubdma_umem_unlock(c);
	for (int p = 0; p < 12; p++)
		assert_int_equal(ubdma_vtoiova(ctx, m + p * PG), p < 8 ? ubdma_umem_iova(a, m + p * PG) : UBDMA_BAD_IOVA);
	ubdma_umem_unlock(a);
	assert_int_equal(ubdma_vtoiova(ctx, m), UBDMA_BAD_IOVA);
	assert_int_equal(live_maps, 0);
	ubdma_ctx_close(ctx);
	munmap(m, 12 * PG);
}

/* A backend failure: the error comes back, and nothing is left wired, mapped or translated. */
static void test_backend_failure(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx = stub_ctx();
	ubdma_umem_t *a, *b = NULL;
	char *m = anon_map(8 * PG);

	assert_int_equal(ubdma_umem_lock(ctx, m, 4 * PG, UBDMA_UMEM_READ, &a), 0);
	uint64_t before = ubdma_vtoiova(ctx, m + 2 * PG);
	fail_next_map = 1;
	assert_int_equal(ubdma_umem_lock(ctx, m + 2 * PG, 4 * PG, UBDMA_UMEM_WRITE, &b), ENOSPC);
	assert_null(b);
	assert_int_equal(live_maps, 1);
	assert_int_equal(ubdma_wire_count(m + 2 * PG), 1);
	assert_int_equal(ubdma_wire_count(m + 4 * PG), 0);
	assert_int_equal(ubdma_vtoiova(ctx, m + 2 * PG), before);
	assert_int_equal(ubdma_vtoiova(ctx, m + 4 * PG), UBDMA_BAD_IOVA);
	ubdma_ctx_close(ctx); /* unlocks a */
	assert_int_equal(live_maps, 0);
	assert_int_equal(ubdma_wire_count(m), 0);
	munmap(m, 8 * PG);
}

/* Re-wiring after munmap + mmap at the same address locks the new pages. */
static void test_rewire_after_remap(void **state)
{
	(void)state;
	char *m = anon_map(4 * PG);

	assert_int_equal(ubdma_wire(m, 4 * PG, 0), 0);
	assert_int_equal(munmap(m, 4 * PG), 0);
	assert_ptr_equal(mmap(m, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), m);
	assert_int_equal(smaps_locked_kb(m, 4 * PG), 0);
	assert_int_equal(ubdma_wire(m, 4 * PG, 0), 0);
	assert_int_equal(smaps_locked_kb(m, 4 * PG), 16);
	assert_int_equal(ubdma_unwire(m, 4 * PG, 0), 0);
	assert_int_equal(ubdma_unwire(m, 4 * PG, 0), 0);
	assert_int_equal(smaps_locked_kb(m, 4 * PG), 0);
	munmap(m, 4 * PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cookie_choice),
		cmocka_unit_test(test_backend_failure),
		cmocka_unit_test(test_rewire_after_remap),
	};
	return cmocka_run_group_tests_name("registry", tests, NULL, NULL);
}
