/*
 * test_tag.c - tag creation rules: parameter checks, inheritance, references, destroy, and the
 * teardown of everything by ubdma_ctx_close().
 */
#include "helpers.h"

#define MAX UBDMA_MAXADDR

static void t_null_parent(void **state)
{
	ubdma_tag_t *t;
	(void)state;
	assert_int_equal(ubdma_tag_create(NULL, 1, 0, MAX, MAX, 4096, 1, 4096, 0, &t), EINVAL);
}

static void t_bad_params(void **state)
{
	struct fx *f = FX_GET(state, 0);
	ubdma_tag_t *root = ubdma_ctx_tag(f->ctx), *t;

	assert_int_equal(ubdma_tag_create(root, 3, 0, MAX, MAX, 4096, 1, 4096, 0, &t), EINVAL);
	assert_int_equal(ubdma_tag_create(root, 0, 0, MAX, MAX, 4096, 1, 4096, 0, &t), EINVAL);
	assert_int_equal(ubdma_tag_create(root, 1, 3000, MAX, MAX, 4096, 1, 4096, 0, &t), EINVAL);
	assert_int_equal(ubdma_tag_create(root, 1, 0, MAX, MAX, 4096, 1, 0, 0, &t), EINVAL);
	assert_int_equal(ubdma_tag_create(root, 1, 0, MAX, MAX, 0, 1, 4096, 0, &t), EINVAL);
	assert_int_equal(ubdma_tag_create(root, 1, 0, MAX, MAX, 4096, 0, 4096, 0, &t), EINVAL);
	assert_int_equal(ubdma_tag_create(root, 1, 0, 100, 50, 4096, 1, 4096, 0, &t), EINVAL);
	assert_int_equal(ubdma_tag_create(root, 1, 0, MAX, MAX, 4096, 1, 4096, 0x4000, &t), EINVAL);
	assert_int_equal(ubdma_tag_create(root, 1, 0, MAX, MAX, 4096, 1, 4096, 0, NULL), EINVAL);
	/* boundary 0 is "none", powers of two are fine */
	assert_int_equal(ubdma_tag_create(root, 1, 0, MAX, MAX, 4096, 1, 4096, 0, &t), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	assert_int_equal(ubdma_tag_create(root, 4096, 65536, MAX, MAX, 4096, 1, 4096, 0, &t), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
}

static void t_boundary_clips_maxsegsz(void **state)
{
	struct fx *f = FX_GET(state, 0);
	ubdma_tag_t *t;

	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), 1, 8192, MAX, MAX, 1 << 20, 64, 65536, 0, &t), 0);
	assert_int_equal(t->maxsegsz, 8192);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	/* a boundary above maxsegsz leaves it alone */
	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), 1, 65536, MAX, MAX, 1 << 20, 64, 4096, 0, &t), 0);
	assert_int_equal(t->maxsegsz, 4096);
	assert_int_equal(ubdma_tag_destroy(t), 0);
}

static void t_inherit(void **state)
{
	struct fx *f = FX_GET(state, 0);
	ubdma_tag_t *p, *c, *c2, *c3;

	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), 1, 65536, 0x80000000, 0x90000000, 1 << 20, 16,
					  1 << 20, 0, &p), 0);
	assert_int_equal(p->maxsegsz, 65536);
	/* child: wider high end, higher low end -> lowaddr = min, highaddr = max */
	assert_int_equal(ubdma_tag_create(p, 1, 0, 0xa0000000, 0xb0000000, 4096, 1, 4096, 0, &c), 0);
	assert_int_equal(c->lowaddr, 0x80000000);
	assert_int_equal(c->highaddr, 0xb0000000);
	assert_int_equal(c->boundary, 65536); /* own 0: the parent's */
	assert_int_equal(ubdma_tag_create(p, 1, 8192, 0x10000000, 0x20000000, 4096, 1, 1 << 20, 0, &c2), 0);
	assert_int_equal(c2->lowaddr, 0x10000000);
	assert_int_equal(c2->highaddr, 0x90000000);
	assert_int_equal(c2->boundary, 8192); /* smaller non-zero */
	assert_int_equal(c2->maxsegsz, 8192); /* clipped by the inherited boundary */
	assert_int_equal(ubdma_tag_create(c2, 1, 1 << 20, MAX, MAX, 4096, 1, 4096, 0, &c3), 0);
	assert_int_equal(c3->boundary, 8192);
	assert_int_equal(c3->lowaddr, 0x10000000);
	assert_int_equal(c3->highaddr, MAX);
	/* references: a parent cannot go before its children */
	assert_int_equal(ubdma_tag_destroy(c2), EBUSY);
	assert_int_equal(ubdma_tag_destroy(c3), 0);
	assert_int_equal(ubdma_tag_destroy(c2), 0);
	assert_int_equal(ubdma_tag_destroy(p), EBUSY);
	assert_int_equal(ubdma_tag_destroy(c), 0);
	assert_int_equal(ubdma_tag_destroy(p), 0);
}

static void t_destroy_busy_maps(void **state)
{
	struct fx *f = FX_GET(state, 0);
	ubdma_tag_t *t;
	ubdma_map_t *m;

	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), 1, 0, MAX, MAX, 4096, 1, 4096, 0, &t), 0);
	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	assert_int_equal(ubdma_tag_destroy(t), EBUSY);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
}

static void t_root_not_destroyable(void **state)
{
	struct fx *f = FX_GET(state, 0);

	assert_int_equal(ubdma_tag_destroy(ubdma_ctx_tag(f->ctx)), EINVAL);
	assert_int_equal(ubdma_tag_destroy(NULL), EINVAL);
	/* the root tag has no constraint but the context's windows */
	ubdma_tag_t *r = ubdma_ctx_tag(f->ctx);
	assert_int_equal(r->alignment, 1);
	assert_int_equal(r->boundary, 0);
	assert_true(r->lowaddr >= r->highaddr);
}

static void t_device_tag(void **state)
{
	struct fx *f = FX_GET(state, 0);
	ubdma_tag_t *dev, *t;

	/* what lib/pci does: a device tag whose window excludes IOVAs above a 39-bit aperture */
	const struct iommu_window ap = { 0, (UINT64_C(1) << 39) - 1 };
	const struct busdma_device bd = { .windows = &ap, .nwindows = 1, .node = UBDMA_NODE_ANY };
	assert_int_equal(busdma_device_tag_create(ubdma_ctx_tag(f->ctx), &bd, &dev), 0);
	assert_int_equal(ubdma_tag_create(dev, 1, 0, MAX, MAX, 4096, 1, 4096, 0, &t), 0);
	assert_int_equal(t->lowaddr, (UINT64_C(1) << 39) - 1);
	assert_int_equal(ubdma_tag_destroy(dev), EINVAL);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	assert_int_equal(busdma_tag_destroy_internal(dev), 0);
}

static void t_bounce_limit(void **state)
{
	struct fx *f = FX_GET(state, 0);
	ubdma_tag_t *t;

	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), 1, 0, MAX, MAX, 65536, 16, 65536, 0, &t), 0);
	/* default: BUSDMA_BOUNCE_MULT loads of maxsize (each up to maxsize/4 KiB + 2 pages) */
	assert_int_equal(ubdma_tag_bounce_limit(t), BUSDMA_BOUNCE_MULT * (65536 / 4096 + 2) * 4096);
	assert_int_equal(ubdma_tag_set_bounce_limit(t, 10000), 0);
	assert_int_equal(ubdma_tag_bounce_limit(t), 10000);
	assert_int_equal(ubdma_tag_set_bounce_limit(NULL, 1), EINVAL);
	assert_int_equal(ubdma_tag_destroy(t), 0);
}

static void cb_nop(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	(void)arg;
	(void)segs;
	(void)nseg;
	(void)error;
}

/* ubdma_ctx_close() frees every tag, map, bounce pool and DMA memory (LeakSanitizer checks). */
static void t_close_frees_all(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 2);
	ubdma_tag_t *t, *c;
	ubdma_map_t *m, *mm;
	void *mem;
	char *buf = mem_get(PG, 0);

	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), 1, 0, MAX, MAX, 8192, 4, 4096, UBDMA_ALLOCNOW, &t), 0);
	assert_int_equal(ubdma_tag_create(t, 1, 0, MAX, MAX, 4096, 1, 4096, 0, &c), 0);
	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	assert_int_equal(ubdma_map_load(t, m, buf, PG, cb_nop, NULL, UBDMA_NOWAIT), 0); /* bounced */
	assert_true(m->bpages != NULL);
	assert_int_equal(ubdma_mem_alloc(c, &mem, UBDMA_ZERO, &mm), 0);
	assert_true(((ubdma_ctx_t *)f->ctx)->numems >= 2);
	ubdma_ctx_close(f->ctx);
	f->ctx = NULL;
	munmap(buf, PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_null_parent),
		BACKEND_TESTS(t_bad_params),
		BACKEND_TESTS(t_boundary_clips_maxsegsz),
		BACKEND_TESTS(t_inherit),
		BACKEND_TESTS(t_destroy_busy_maps),
		BACKEND_TESTS(t_root_not_destroyable),
		BACKEND_TESTS(t_device_tag),
		BACKEND_TESTS(t_bounce_limit),
		BACKEND_TESTS(t_close_frees_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
