/*
 * helpers.h - shared set-up of the busdma unit tests: contexts on each backend, registered and
 * unregistered buffers, hand-made translations (the translation map written directly, to give
 * pages IOVAs that are not contiguous), and a callback that records what it was given.
 *
 * Each test runs on the va backend always, and on the phys backend when the process can read
 * physical addresses and 2 MiB hugepages are free; otherwise it is skipped with the reason.
 */
#ifndef BUSDMA_TEST_HELPERS_H
#define BUSDMA_TEST_HELPERS_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "busdma/busdma_int.h"

#define PG 4096UL
#define HUGE (2UL << 20)

struct cbrec {
	int calls;
	int nseg;
	int error;
	ubdma_seg_t segs[1024];
	int order;	/* global sequence number of the call */
};

static int cb_seq;

static inline __attribute__((unused)) void rec_cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	struct cbrec *r = arg;

	r->calls++;
	r->nseg = nseg;
	r->error = error;
	r->order = ++cb_seq;
	for (int i = 0; i < nseg && i < 1024; i++)
		r->segs[i] = segs[i];
}

/* A fixture: a context on a backend. */
struct fx {
	enum ubdma_backend backend;
	ubdma_ctx_t *ctx;
};

static inline __attribute__((unused)) int hugepages_free(void)
{
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "re");
	int n = 0;

	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = 0;
		fclose(f);
	}
	return n;
}

static inline __attribute__((unused)) int fx_setup(void **state, enum ubdma_backend be)
{
	static struct fx fxs[4];
	struct fx *f = &fxs[be];
	int err = ubdma_ctx_open(be, &f->ctx);

	f->backend = be;
	if (err)
		f->ctx = NULL;
	*state = f;
	return 0;
}

static inline __attribute__((unused)) int fx_setup_va(void **state)
{
	return fx_setup(state, UBDMA_BACKEND_VA);
}

/*
 * The second backend of every test: phys on the host; UBDMA_TEST_BACKEND=vfio (the vm suite's
 * "unit-vfio" run in the guest) makes it vfio, with the test bed's NVMe attached to the context
 * so that every mapping really goes into the IOMMU.
 */
static inline __attribute__((unused)) int fx_setup_phys(void **state)
{
	const char *be = getenv("UBDMA_TEST_BACKEND"), *bdf = getenv("UBDMA_VM_NVME");

	if (!be || strcmp(be, "vfio"))
		return fx_setup(state, UBDMA_BACKEND_PHYS);
	fx_setup(state, UBDMA_BACKEND_VFIO);
	struct fx *f = *state;
	ubdma_pci_t *dev;
	if (f->ctx && bdf && ubdma_pci_open(f->ctx, bdf, &dev)) {
		print_message("cannot attach %s to the vfio context: %s\n", bdf, ubdma_last_error());
		return -1;
	}
	return 0;
}

static inline __attribute__((unused)) int fx_teardown(void **state)
{
	struct fx *f = *state;

	if (f->ctx) {
		ubdma_ctx_close(f->ctx);
		f->ctx = NULL;
	}
	return 0;
}

/* Skip, saying why, when the fixture's backend cannot run here. */
#define FX_GET(state, need_huge)                                                                            \
	({                                                                                                  \
		struct fx *f_ = *(state);                                                                   \
		if (!f_->ctx) {                                                                             \
			print_message("SKIP: the %s backend is not available here (%s)\n",                  \
				      ubdma_backend_name(f_->backend), ubdma_last_error());                 \
			skip();                                                                             \
		}                                                                                           \
		if (hugepages_free() < (int)(need_huge)) {                                          \
			print_message("SKIP: needs %d free 2 MiB hugepages (as root: echo 64 > "            \
				      "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)\n",          \
				      (int)(need_huge));                                                    \
			skip();                                                                             \
		}                                                                                           \
		f_;                                                                                         \
	})

/* Memory of len bytes: 2 MiB hugepages when huge, else 4 KiB pages; page aligned. */
static void *mem_get(size_t len, int huge)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0), -1, 0);

	assert_true(p != MAP_FAILED);
	memset(p, 0, len);
	return p;
}

/* A registered buffer: hugepages on phys (which refuses 4 KiB pages), as asked on va. */
struct rbuf {
	char *p;
	size_t len;
	ubdma_umem_t *u;
};

static inline __attribute__((unused)) void rbuf_get(struct fx *f, struct rbuf *b, size_t len, int huge)
{
	if (f->backend == UBDMA_BACKEND_PHYS)
		huge = 1;
	b->len = huge ? (len + HUGE - 1) & ~(HUGE - 1) : len;
	b->p = mem_get(b->len, huge);
	assert_int_equal(ubdma_umem_lock(f->ctx, b->p, b->len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &b->u), 0);
}

static inline __attribute__((unused)) void rbuf_put(struct rbuf *b)
{
	ubdma_umem_unlock(b->u);
	munmap(b->p, b->len);
}

/* Enter hand-made IOVAs for [va, va + n pages) in the context's map (no wiring: builder tests). */
static inline __attribute__((unused)) void fake_xlate(ubdma_ctx_t *ctx, void *va, size_t npages, const uint64_t *iovas)
{
	pthread_mutex_lock(&ctx->reg_lock);
	assert_int_equal(xlate_set(&ctx->xlate, (uintptr_t)va, npages, PG, iovas, 0), 0);
	pthread_mutex_unlock(&ctx->reg_lock);
}

static inline __attribute__((unused)) void fake_clear(ubdma_ctx_t *ctx, void *va, size_t npages)
{
	pthread_mutex_lock(&ctx->reg_lock);
	xlate_clear(&ctx->xlate, (uintptr_t)va, npages * PG);
	pthread_mutex_unlock(&ctx->reg_lock);
}

/* Every segment respects the tag. */
static inline __attribute__((unused)) void check_segs(const ubdma_tag_t *t, const ubdma_seg_t *s, int n)
{
	for (int i = 0; i < n; i++) {
		assert_true(s[i].ds_len > 0);
		assert_true(s[i].ds_len <= t->maxsegsz);
		if (t->boundary)
			assert_true((s[i].ds_addr & ~(t->boundary - 1)) ==
				    ((s[i].ds_addr + s[i].ds_len - 1) & ~(t->boundary - 1)));
	}
}

static inline __attribute__((unused)) size_t pool_inuse_of(const ubdma_tag_t *t)
{
	return t->pool ? t->pool->total - t->pool->nfree : 0;
}

/* Whether an IOVA lies in a bounce slot of the tag. */
static inline __attribute__((unused)) int is_bounce(const ubdma_tag_t *t, uint64_t iova)
{
	if (!t->pool)
		return 0;
	for (const struct backing *b = t->pool->mem; b; b = b->next)
		for (size_t off = 0; off < b->len; off += PG) {
			uint64_t lo = ubdma_umem_iova(b->cookie, (char *)b->va + off);
			if (iova >= lo && iova < lo + PG)
				return 1;
		}
	return 0;
}

#define BACKEND_TESTS(fn)                                                                     \
	cmocka_unit_test_setup_teardown(fn, fx_setup_va, fx_teardown),                        \
	cmocka_unit_test_setup_teardown(fn, fx_setup_phys, fx_teardown)

#endif
