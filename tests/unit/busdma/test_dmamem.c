/*
 * test_dmamem.c - ubdma_mem_alloc() / ubdma_mem_free(): memory that satisfies the tag (alignment,
 * boundary, window, one segment), wired and mapped, zeroed, hugepage-backed from 2 MiB.
 */
#include "helpers.h"

#define MAX UBDMA_MAXADDR

static void check_mem(struct fx *f, ubdma_tag_t *t, int expect_huge)
{
	void *p;
	ubdma_map_t *m;
	struct cbrec r = { 0 };

	int err = ubdma_mem_alloc(t, &p, UBDMA_ZERO | UBDMA_COHERENT, &m);
	if (err == ENOMEM && f->backend == UBDMA_BACKEND_PHYS && t->lowaddr < MAX) {
		print_message("note: phys has no hugepage in the window here (%s)\n", ubdma_last_error());
		return;
	}
	if (err)
		print_message("mem_alloc: %s\n", ubdma_last_error());
	assert_int_equal(err, 0);
	/* wired, or only watched where the backend pins the pages itself (vfio with the NVMe
	 * attached, unit-vfio): the pin holds them, the watch ends the cookie at munmap, and a
	 * watch adds no wire count (docs/wire.md section 13); hugetlb too, on its huge pages'
	 * bounds as DMA memory is ("Hugetlb cookies watched") */
	if (iommu_pins(&f->ctx->iommu)) {
		print_message("# %s: watched, not wired (the backend pins)\n", ubdma_backend_name(f->backend));
		assert_int_equal(ubdma_wire_count(p), 0);
		assert_true(wire_ticket_watched(m->mem->b.cookie->ticket));
		assert_true(wire_ticket_alive(m->mem->b.cookie->ticket));
	} else {
		assert_true(ubdma_wire_count(p) >= 1);
	}
	assert_int_equal(((uintptr_t)p) & (PG - 1), 0);
	for (size_t i = 0; i < t->maxsize; i++)
		assert_int_equal(((char *)p)[i], 0);
	assert_int_equal(m->mem->b.hugetlb, expect_huge || f->backend == UBDMA_BACKEND_PHYS);
	assert_int_equal(m->state, MAP_IDLE);
	assert_int_equal(ubdma_map_load(t, m, p, t->maxsize, rec_cb, &r, UBDMA_NOWAIT), 0);
	assert_int_equal(r.error, 0);
	assert_null(m->bpages); /* never bounced */
	assert_true(r.nseg <= t->nsegments);
	check_segs(t, r.segs, r.nseg);
	for (int i = 0; i < r.nseg; i++) {
		assert_int_equal(r.segs[i].ds_addr & t->amask, 0);
		assert_true(busdma_iova_ok(t, r.segs[i].ds_addr, r.segs[i].ds_len));
	}
	assert_int_equal(ubdma_map_destroy(t, m), EINVAL); /* belongs to mem_free */
	assert_int_equal(ubdma_tag_destroy(t), EBUSY);
	ubdma_mem_free(t, p, m); /* unloads too */
	assert_int_equal(ubdma_wire_count(p), 0);
}

static void t_mem_alloc(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 4);
	struct {
		size_t align;
		uint64_t boundary, lo;
		size_t maxsize;
		int nseg;
		int huge;
	} cases[] = {
		{ 1, 0, MAX, 100, 1, 0 },
		{ 65536, 0, MAX, 3 * PG, 1, 0 },
		{ 64, 8192, MAX, 6000, 1, 0 },		 /* fits under the boundary: one segment */
		{ 1, 8192, MAX, 5 * 8192, 5, 0 },	 /* more than the boundary: one segment per block */
		{ 1, 0, UBDMA_MAXADDR_32BIT, 2 * PG, 1, 0 },
		{ 4096, 0, MAX, HUGE, 1, 1 },		 /* 2 MiB: hugepage-backed */
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		ubdma_tag_t *t;
		assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), cases[c].align, cases[c].boundary, cases[c].lo,
						  MAX, cases[c].maxsize, cases[c].nseg, cases[c].maxsize, 0, &t), 0);
		check_mem(f, t, cases[c].huge && hugepages_free() > 0);
		assert_int_equal(ubdma_tag_destroy(t), 0);
	}
}

static void t_mem_einval(void **state)
{
	struct fx *f = FX_GET(state, 0);
	ubdma_tag_t *t;
	void *p;
	ubdma_map_t *m;

	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), 1, 0, MAX, MAX, PG, 1, PG, 0, &t), 0);
	assert_int_equal(ubdma_mem_alloc(NULL, &p, 0, &m), EINVAL);
	assert_int_equal(ubdma_mem_alloc(t, NULL, 0, &m), EINVAL);
	assert_int_equal(ubdma_mem_alloc(t, &p, 0x1000, &m), EINVAL);
	ubdma_mem_free(t, NULL, NULL); /* refused, logged */
	assert_int_equal(ubdma_tag_destroy(t), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		BACKEND_TESTS(t_mem_alloc),
		BACKEND_TESTS(t_mem_einval),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
