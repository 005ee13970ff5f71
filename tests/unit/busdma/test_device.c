/*
 * test_device.c - a device's DMA tag (what ubdma_pci_dma_tag() returns), made here without a
 * device through busdma_device_tag_create(), the call lib/pci makes at open: its IOVA ranges
 * confine DMA memory and bounce pages and exclude what lies above them, its NUMA node places that
 * memory, its lock function covers the deferred callbacks of the driver's tags, and the driver's
 * tags inherit all of it.  The host has no VFIO; the vm suite opens real devices.
 *
 * Placement is checked on the pages themselves: get_mempolicy(MPOL_F_ADDR) for the policy of the
 * mapping, get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR) and move_pages(2) without target nodes for the
 * node each page is on.  On a machine with one NUMA node (this host) that node is 0, and the
 * checks say so.
 */
#include <linux/mempolicy.h>
#include <sys/syscall.h>

#include "helpers.h"

#define MAX UBDMA_MAXADDR
#define GiB (UINT64_C(1) << 30)

/* The first node with memory that has free 2 MiB hugepages (else the first with memory). */
static int test_node(int need_huge)
{
	int nodes[64], nn = 0;
	struct ubdma_huge_info info[256];
	int rows = 0;

	assert_int_equal(ubdma_numa_nodes(nodes, 64, &nn), 0);
	assert_true(nn >= 1);
	ubdma_huge_info(info, 256, &rows);
	for (int i = 0; i < nn && i < 64; i++)
		for (int r = 0; r < rows && r < 256; r++)
			if (info[r].node == nodes[i] && info[r].pgsz == HUGE && (int)info[r].free >= need_huge)
				return nodes[i];
	return nodes[0];
}

/* Every page of [p, p + len) is on node, and the mapping prefers it (MPOL_PREFERRED). */
static void check_node(const void *p, size_t len, int node)
{
	int mode = -1;
	unsigned long mask[16] = { 0 };

	assert_int_equal(syscall(SYS_get_mempolicy, &mode, mask, 16 * 64 + 1, p, MPOL_F_ADDR), 0);
	assert_int_equal(mode, MPOL_PREFERRED);
	assert_int_equal(mask[node / 64], 1UL << (node % 64));
	for (size_t off = 0; off < len; off += PG) {
		int n = -1, status = -1;
		void *page = (char *)p + off;
		assert_int_equal(syscall(SYS_get_mempolicy, &n, NULL, 0, page, MPOL_F_NODE | MPOL_F_ADDR), 0);
		assert_int_equal(n, node);
		assert_int_equal(syscall(SYS_move_pages, 0, 1UL, &page, NULL, &status, 0), 0);
		assert_int_equal(status, node);
	}
}

static ubdma_tag_t *mkdev(struct fx *f, const struct iommu_window *w, int nw, int node, ubdma_lockfunc_t *lf,
			  void *lfarg)
{
	const struct busdma_device bd = { .windows = w, .nwindows = nw, .node = node, .lockfunc = lf,
					  .lockfuncarg = lfarg };
	ubdma_tag_t *dev;

	assert_int_equal(busdma_device_tag_create(ubdma_ctx_tag(f->ctx), &bd, &dev), 0);
	return dev;
}

/* The device tag's rules: bad ranges refused, what it sets, what children inherit, who destroys it. */
static void t_device_tag_rules(void **state)
{
	struct fx *f = FX_GET(state, 0);
	const struct iommu_window w[2] = { { GiB, 2 * GiB - 1 }, { 3 * GiB, 4 * GiB - 1 } };
	const struct iommu_window bad = { 2 * GiB, GiB };
	struct iommu_window many[IOMMU_MAX_WINDOWS + 1] = { { 0, GiB } };
	struct busdma_device bd = { .windows = &bad, .nwindows = 1, .node = UBDMA_NODE_ANY };
	ubdma_tag_t *root = ubdma_ctx_tag(f->ctx), *dev, *t, *t2;

	assert_int_equal(busdma_device_tag_create(root, &bd, &dev), EINVAL);
	bd.windows = many;
	bd.nwindows = IOMMU_MAX_WINDOWS + 1;
	assert_int_equal(busdma_device_tag_create(root, &bd, &dev), EINVAL);
	bd.windows = NULL;
	bd.nwindows = 1;
	assert_int_equal(busdma_device_tag_create(root, &bd, &dev), EINVAL);
	assert_int_equal(busdma_device_tag_create(root, NULL, &dev), EINVAL);
	assert_int_equal(busdma_device_tag_create(NULL, &bd, &dev), EINVAL);

	/* no aperture: no exclusion window, no ranges; the context's windows alone apply */
	dev = mkdev(f, NULL, 0, UBDMA_NODE_ANY, NULL, NULL);
	assert_true(dev->lowaddr >= dev->highaddr || dev->lowaddr == MAX);
	assert_int_equal(dev->naperture, 0);
	assert_int_equal(busdma_tag_destroy_internal(dev), 0);

	dev = mkdev(f, w, 2, 0, NULL, NULL);
	assert_int_equal(dev->lowaddr, 4 * GiB - 1); /* above the highest range: excluded */
	assert_int_equal(dev->highaddr, MAX);
	assert_int_equal(dev->node, 0);
	assert_int_equal(dev->naperture, 2);
	assert_int_equal(ubdma_tag_create(dev, 1, 0, MAX, MAX, PG, 1, PG, 0, &t), 0);
	assert_int_equal(ubdma_tag_create(t, 1, 0, 2 * GiB - 1, MAX, PG, 1, PG, 0, &t2), 0);
	assert_int_equal(t->lowaddr, 4 * GiB - 1);
	assert_int_equal(t->node, 0);
	assert_int_equal(t->naperture, 2);
	assert_int_equal(t2->aperture[1].lo, 3 * GiB);
	assert_int_equal(t2->lowaddr, 2 * GiB - 1); /* its own, lower */
	assert_int_equal(t2->node, 0);
	/* where its memory may go: the first range, which its own window leaves whole */
	struct iommu_window lim;
	if (f->backend == UBDMA_BACKEND_VA) {
		assert_int_equal(busdma_tag_allowed(t2, PG, &lim), 0);
		assert_int_equal(lim.lo, GiB);
		assert_int_equal(lim.hi, 2 * GiB - 1);
	}
	assert_int_equal(ubdma_tag_destroy(dev), EINVAL); /* its device's */
	assert_int_equal(busdma_tag_destroy_internal(dev), EBUSY);
	assert_int_equal(ubdma_tag_destroy(t2), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	assert_int_equal(busdma_tag_destroy_internal(dev), 0);
}

/* Whether [a, a + len) lies in one of the ranges. */
static int in_ranges(const struct iommu_window *w, int n, uint64_t a, uint64_t len)
{
	for (int i = 0; i < n; i++)
		if (a >= w[i].lo && a + len - 1 <= w[i].hi)
			return 1;
	return 0;
}

/*
 * va (IOVA = VA, so the test chooses where memory may lie): DMA memory and bounce pages of a
 * driver's tag land in the device's ranges; a registered buffer above them bounces; one inside is
 * used in place.  The ranges are low (below 2 GiB), where the kernel never puts mappings unasked
 * and AddressSanitizer's shadow memory does not lie either.
 */
static void t_device_aperture(void **state)
{
	struct fx *f = FX_GET(state, 0);
	if (f->backend != UBDMA_BACKEND_VA) {
		print_message("SKIP: on %s the IOVA is not chosen by the test (physical or IOMMU address)\n",
			      ubdma_backend_name(f->backend));
		skip();
	}
	const struct iommu_window w[2] = { { GiB / 4, GiB / 4 + (64UL << 20) - 1 }, { GiB, 3 * GiB / 2 - 1 } };
	ubdma_tag_t *dev = mkdev(f, w, 2, UBDMA_NODE_ANY, NULL, NULL), *t, *big;
	ubdma_map_t *m, *mb, *lm;
	void *p, *pb;
	struct cbrec r = { 0 };

	assert_int_equal(ubdma_tag_create(dev, PG, 0, MAX, MAX, 4 * PG, 4, 4 * PG, 0, &t), 0);
	assert_int_equal(ubdma_mem_alloc(t, &p, UBDMA_ZERO, &m), 0);
	assert_true(in_ranges(w, 2, (uintptr_t)p, 4 * PG));
	/* too large for the first range (64 MiB): the allocator finds room in the second */
	assert_int_equal(ubdma_tag_create(dev, PG, 0, MAX, MAX, 96UL << 20, 1, 96UL << 20, 0, &big), 0);
	assert_int_equal(ubdma_mem_alloc(big, &pb, 0, &mb), 0);
	assert_true(in_ranges(w, 2, (uintptr_t)pb, 96UL << 20));
	ubdma_mem_free(big, pb, mb);
	assert_int_equal(ubdma_tag_destroy(big), 0);

	/* memory from the kernel (high addresses), registered: above the ranges, so it bounces, into
	 * slots inside them */
	char *u = mem_get(4 * PG, 0);
	ubdma_umem_t *c;
	assert_true((uintptr_t)u > w[1].hi);
	assert_int_equal(ubdma_umem_lock(f->ctx, u, 4 * PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &c), 0);
	assert_int_equal(ubdma_map_create(t, 0, &lm), 0);
	assert_int_equal(ubdma_map_load(t, lm, u, 4 * PG, rec_cb, &r, UBDMA_NOWAIT), 0);
	assert_int_equal(r.nseg, 4);
	for (int i = 0; i < r.nseg; i++) {
		assert_true(is_bounce(t, r.segs[i].ds_addr));
		assert_true(in_ranges(w, 2, r.segs[i].ds_addr, r.segs[i].ds_len));
	}
	ubdma_map_unload(t, lm);
	/* the DMA memory, inside: in place */
	assert_int_equal(ubdma_map_load(t, lm, p, 4 * PG, rec_cb, &r, UBDMA_NOWAIT), 0);
	assert_int_equal(r.nseg, 1);
	assert_int_equal(r.segs[0].ds_addr, (uintptr_t)p);
	ubdma_map_unload(t, lm);
	assert_int_equal(ubdma_map_destroy(t, lm), 0);
	ubdma_umem_unlock(c);
	munmap(u, 4 * PG);
	ubdma_mem_free(t, p, m);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	assert_int_equal(busdma_tag_destroy_internal(dev), 0);
}

/* DMA memory (4 KiB and 2 MiB pages) and bounce pages of a driver's tag are on the device's node. */
static void t_device_node(void **state)
{
	struct fx *f = FX_GET(state, 2);
	int node = test_node(2), nn = 0;
	ubdma_tag_t *dev, *small, *large;
	ubdma_map_t *ms, *ml, *lm;
	void *ps, *pl;
	struct cbrec r = { 0 };

	ubdma_numa_nodes(NULL, 0, &nn);
	if (nn == 1)
		print_message("note: this machine has one NUMA node: checking that memory is on node %d\n", node);
	dev = mkdev(f, NULL, 0, node, NULL, NULL);
	assert_int_equal(ubdma_tag_create(dev, 1, 0, MAX, MAX, 8 * PG, 8, 8 * PG, 0, &small), 0);
	assert_int_equal(ubdma_tag_create(dev, 1, 0, MAX, MAX, HUGE, 1, HUGE, 0, &large), 0);
	assert_int_equal(ubdma_mem_alloc(small, &ps, 0, &ms), 0);
	check_node(ps, 8 * PG, node);
	assert_int_equal(ubdma_mem_alloc(large, &pl, 0, &ml), 0);
	assert_int_equal(ml->mem->b.hugetlb, 1);
	check_node(pl, HUGE, node);

	/* bounce pages: an unregistered buffer (or, on phys, one of 4 KiB pages) bounces */
	char *u = mem_get(4 * PG, 0);
	assert_int_equal(ubdma_map_create(small, 0, &lm), 0);
	assert_int_equal(ubdma_map_load(small, lm, u, 4 * PG, rec_cb, &r, UBDMA_NOWAIT), 0);
	assert_non_null(small->pool);
	for (const struct backing *b = small->pool->mem; b; b = b->next)
		check_node(b->va, b->len, node);
	ubdma_map_unload(small, lm);
	assert_int_equal(ubdma_map_destroy(small, lm), 0);
	munmap(u, 4 * PG);

	ubdma_mem_free(small, ps, ms);
	ubdma_mem_free(large, pl, ml);
	assert_int_equal(ubdma_tag_destroy(small), 0);
	assert_int_equal(ubdma_tag_destroy(large), 0);
	assert_int_equal(busdma_tag_destroy_internal(dev), 0);
}

struct lockrec {
	int held, locks, unlocks;
};

static void rec_lock(void *arg, ubdma_lock_op_t op)
{
	struct lockrec *l = arg;

	l->held = op == UBDMA_LOCK;
	l->locks += op == UBDMA_LOCK;
	l->unlocks += op == UBDMA_UNLOCK;
}

struct heldrec {
	struct cbrec r;
	struct lockrec *l;
	int held;
};

static void held_cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	struct heldrec *h = arg;

	rec_cb(&h->r, segs, nseg, error);
	h->held = h->l->held;
}

/* The device's lock function covers the deferred callbacks of every tag under it. */
static void t_device_lockfunc(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	struct lockrec l = { 0 };
	ubdma_tag_t *dev = mkdev(f, NULL, 0, UBDMA_NODE_ANY, rec_lock, &l), *t, *t2;
	ubdma_map_t *a, *b;
	struct heldrec ha = { .l = &l }, hb = { .l = &l };
	char *u = mem_get(4 * PG, 0);

	assert_int_equal(ubdma_tag_create(dev, 1, 0, MAX, MAX, 2 * PG, 2, 2 * PG, 0, &t), 0);
	assert_int_equal(ubdma_tag_create(t, 1, 0, MAX, MAX, 2 * PG, 2, 2 * PG, 0, &t2), 0);
	assert_int_equal(ubdma_tag_set_bounce_limit(t2, 2 * PG), 0);
	assert_int_equal(ubdma_map_create(t2, 0, &a), 0);
	assert_int_equal(ubdma_map_create(t2, 0, &b), 0);
	assert_int_equal(ubdma_map_load(t2, a, u, 2 * PG, held_cb, &ha, 0), 0);
	assert_int_equal(ha.held, 0); /* ran at once: not wrapped */
	assert_int_equal(ubdma_map_load(t2, b, u + 2 * PG, 2 * PG, held_cb, &hb, 0), EINPROGRESS);
	ubdma_map_unload(t2, a);
	assert_int_equal(hb.r.calls, 1);
	assert_int_equal(hb.held, 1);
	assert_int_equal(l.locks, 1);
	assert_int_equal(l.unlocks, 1);
	assert_int_equal(l.held, 0);
	ubdma_map_unload(t2, b);
	assert_int_equal(ubdma_map_destroy(t2, a), 0);
	assert_int_equal(ubdma_map_destroy(t2, b), 0);
	assert_int_equal(ubdma_tag_destroy(t2), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	assert_int_equal(busdma_tag_destroy_internal(dev), 0);
	munmap(u, 4 * PG);
}

/* A device's tag and the driver's tags under it, left behind: the context frees them. */
static void t_device_teardown(void **state)
{
	struct fx *f = FX_GET(state, 0);
	ubdma_tag_t *dev = mkdev(f, NULL, 0, UBDMA_NODE_ANY, NULL, NULL), *t;
	ubdma_map_t *m;

	assert_int_equal(ubdma_tag_create(dev, 1, 0, MAX, MAX, PG, 1, PG, 0, &t), 0);
	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	assert_int_equal(busdma_tag_destroy_internal(dev), EBUSY);
	/* fx_teardown closes the context: LeakSanitizer builds check nothing stays */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		BACKEND_TESTS(t_device_tag_rules),
		BACKEND_TESTS(t_device_aperture),
		BACKEND_TESTS(t_device_node),
		BACKEND_TESTS(t_device_lockfunc),
		BACKEND_TESTS(t_device_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
