/*
 * dmamem.c - memory for devices: the backings that bounce pools and ubdma_mem_alloc() are made
 * of, and ubdma_mem_alloc() / ubdma_mem_free() themselves (bus_dmamem_alloc(9)).
 *
 * A backing is anonymous memory, wired and mapped into the context with umem_lock(), whose IOVAs
 * lie in a window the caller gives (the complement of a tag's exclusion window, inside a context
 * window).  How the IOVAs are made to fall in the window depends on the backend:
 *   va:   IOVA = VA, so the virtual address is chosen in the window: the kernel's choice when it
 *         fits, else MAP_FIXED_NOREPLACE hints from the bottom of the window up (a 32-bit window
 *         needs addresses below 4 GiB, which the kernel never picks on its own);
 *   phys: IOVA = physical address of hugetlb memory (phys refuses 4 KiB pages): 2 MiB pages from
 *         memfd_create(MFD_HUGETLB | MFD_HUGE_2MB); a page whose physical address misses the
 *         window is kept aside while another is tried, then all are given back; ENOMEM after
 *         DMAMEM_PHYS_TRIES;
 *   vfio: umem_lock()'s window argument makes the IOVA allocator choose inside it.
 * Large requests (2 MiB and more) use 2 MiB hugepages on every backend when the system has them,
 * falling back to 4 KiB pages on va and vfio.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "base/page.h"
#include "busdma/busdma_int.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)
#endif

#define DMAMEM_PHYS_TRIES 8
#define DMAMEM_HINT_TRIES 1024
#define DMAMEM_MIN_VA 0x10000UL /* below vm.mmap_min_addr's usual value nothing can be mapped */

static uintptr_t round_up(uintptr_t v, uintptr_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static int fits(uintptr_t a, size_t len, const struct iommu_window *lim)
{
	return a >= lim->lo && a + len - 1 >= a && a + len - 1 <= lim->hi;
}

/*
 * Map len bytes (of fd, or anonymous when fd < 0) at a virtual address aligned to align and, when
 * place is set (va backend), inside lim.  NULL when no such address could be had.
 */
static void *map_placed(size_t len, size_t align, const struct iommu_window *lim, int place, int fd)
{
	const int prot = PROT_READ | PROT_WRITE;
	const int fl = fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED;
	size_t span = fd < 0 && align > PAGE_4K ? len + align : len;
	void *p = mmap(NULL, span, prot, fl, fd, 0);

	/* the kernel's choice, over-allocated and trimmed to the alignment when anonymous */
	if (p != MAP_FAILED) {
		uintptr_t a = round_up((uintptr_t)p, align);
		if (a + len <= (uintptr_t)p + span && (!place || fits(a, len, lim))) {
			if (a > (uintptr_t)p)
				munmap(p, a - (uintptr_t)p);
			if ((uintptr_t)p + span > a + len)
				munmap((void *)(a + len), (uintptr_t)p + span - (a + len));
			return (void *)a;
		}
		munmap(p, span);
	}
	if (!place)
		return NULL;
	/* hints inside the window, lowest first; step at least 1 MiB to skip occupied areas */
	size_t step = round_up(len > (1UL << 20) ? len : (1UL << 20), align);
	uintptr_t a = round_up(lim->lo > DMAMEM_MIN_VA ? lim->lo : DMAMEM_MIN_VA, align);
	for (int i = 0; i < DMAMEM_HINT_TRIES && fits(a, len, lim); i++, a += step) {
		void *q = mmap((void *)a, len, prot, fl | MAP_FIXED_NOREPLACE, fd, 0);
		if (q == (void *)a)
			return q;
		if (q != MAP_FAILED)
			munmap(q, len); /* a kernel without MAP_FIXED_NOREPLACE took it as a hint */
		else if (errno != EEXIST && errno != EPERM)
			break;
		if (a + step < a)
			break;
	}
	return NULL;
}

/* Lock [va, va + len) into the context, IOVAs in lim, first IOVA aligned.  ERANGE when missed. */
static int backing_lock(struct ubdma_ctx *ctx, void *va, size_t len, size_t align,
			const struct iommu_window *lim, struct ubdma_umem **cookiep)
{
	int err = umem_lock(ctx, va, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, lim, cookiep);

	if (err)
		return err;
	if (ubdma_umem_iova(*cookiep, va) & (align - 1)) {
		ubdma_umem_unlock(*cookiep);
		return ERANGE;
	}
	(*cookiep)->internal = 1;
	return 0;
}

static int alloc_small(struct ubdma_ctx *ctx, size_t len, size_t align, const struct iommu_window *lim,
		       struct backing *b)
{
	len = round_up(len, PAGE_4K);
	align = align > PAGE_4K ? align : PAGE_4K;
	void *va = map_placed(len, align, lim, ctx->backend == UBDMA_BACKEND_VA, -1);
	if (!va)
		return uerr(ENOMEM, "no virtual memory for %zu bytes in [%#llx, %#llx]", len,
			    (unsigned long long)lim->lo, (unsigned long long)lim->hi);
	int err = backing_lock(ctx, va, len, align, lim, &b->cookie);
	if (err) {
		munmap(va, len);
		return err == ERANGE ? uerr(ENOMEM, "the backend put %zu bytes outside IOVA window [%#llx, %#llx] "
					    "or off %zu-byte alignment", len, (unsigned long long)lim->lo,
					    (unsigned long long)lim->hi, align)
				     : err;
	}
	b->va = va;
	b->len = len;
	b->hugetlb = 0;
	return 0;
}

static int alloc_huge(struct ubdma_ctx *ctx, size_t len, size_t align, const struct iommu_window *lim,
		      struct backing *b)
{
	void *missed[DMAMEM_PHYS_TRIES];
	int nmissed = 0, err = ENOMEM;

	len = round_up(len, BUSDMA_HUGE);
	align = align > BUSDMA_HUGE ? align : BUSDMA_HUGE;
	for (int i = 0; i < DMAMEM_PHYS_TRIES; i++) {
		int fd = memfd_create("ubdma-dma", MFD_HUGETLB | MFD_HUGE_2MB | MFD_CLOEXEC);
		if (fd < 0)
			return uerr(ENOMEM, "memfd_create(MFD_HUGETLB) failed: no 2 MiB hugepages (%s)", strerror(errno));
		void *va = ftruncate(fd, (off_t)len) ? NULL
			 : map_placed(len, align, lim, ctx->backend == UBDMA_BACKEND_VA, fd);
		close(fd);
		if (!va) {
			err = uerr(ENOMEM, "cannot map %zu bytes of 2 MiB hugepages (free hugepages: see "
				   "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages)", len);
			break;
		}
		struct ubdma_umem *c = NULL;
		err = backing_lock(ctx, va, len, align, lim, &c);
		if (!err) {
			b->va = va;
			b->len = len;
			b->hugetlb = 1;
			b->cookie = c;
			break;
		}
		if (err != ERANGE) {
			munmap(va, len);
			break;
		}
		/* the physical pages missed the window: keep them mapped so that the next try gets
		 * other pages, and give them all back at the end */
		missed[nmissed++] = va;
		err = uerr(ENOMEM, "no 2 MiB hugepage with physical addresses in [%#llx, %#llx] on %zu-byte "
			   "alignment after %d tries", (unsigned long long)lim->lo, (unsigned long long)lim->hi,
			   align, i + 1);
	}
	while (nmissed--)
		munmap(missed[nmissed], len);
	return err;
}

int dmamem_backing_alloc(struct ubdma_ctx *ctx, size_t len, size_t align, const struct iommu_window *lim,
			 int hugetlb, struct backing *b)
{
	const int phys = ctx->backend == UBDMA_BACKEND_PHYS;

	memset(b, 0, sizeof(*b));
	if (phys || hugetlb > 0 || (hugetlb < 0 && len >= BUSDMA_HUGE)) {
		int err = alloc_huge(ctx, len, align, lim, b);
		if (!err || phys)
			return err;
		ULOG_DEBUG("no hugepages for %zu bytes: using 4 KiB pages", len);
	}
	return alloc_small(ctx, len, align, lim, b);
}

void dmamem_backing_free(struct backing *b)
{
	if (!b->va)
		return;
	ubdma_umem_unlock(b->cookie);
	munmap(b->va, b->len);
	b->va = NULL;
}

/* ------------------------------------------------------------ bus_dmamem_alloc(9) */

static size_t pow2_at_least(size_t v)
{
	size_t p = 1;

	while (p < v && p << 1)
		p <<= 1;
	return p;
}

int ubdma_mem_alloc(ubdma_tag_t *tag, void **vaddrp, int flags, ubdma_map_t **mapp)
{
	const int ok = UBDMA_NOWAIT | UBDMA_COHERENT | UBDMA_ZERO;
	struct iommu_window lim;
	struct dmamem *d;
	struct ubdma_map *m;
	int err;

	if (!tag || !vaddrp || !mapp)
		return uerr(EINVAL, "%s is NULL", !tag ? "tag" : !vaddrp ? "vaddrp" : "mapp");
	if (flags & ~ok)
		return uerr(EINVAL, "unknown flags %#x", flags & ~ok);
	if (tag->maxsize > ((size_t)1 << 40))
		return uerr(EINVAL, "the tag's maxsize %zu is too large to allocate", tag->maxsize);
	if ((err = busdma_tag_allowed(tag, &lim)))
		return uerr(ENOMEM, "the tag's window leaves no IOVA for its memory");
	/* start on the alignment; when the whole allocation fits under the boundary, start on a
	 * power of two at least as large as it, so that it cannot cross a boundary line; when it
	 * is larger, start on a boundary line, so that it takes as few segments as possible */
	size_t align = tag->alignment;
	if (tag->boundary) {
		size_t b = tag->maxsize <= tag->boundary ? pow2_at_least(tag->maxsize) : (size_t)tag->boundary;
		align = align > b ? align : b;
	}
	if (!(d = calloc(1, sizeof(*d))))
		return uerr(ENOMEM, "out of memory");
	if ((err = dmamem_backing_alloc(tag->ctx, tag->maxsize, align, &lim, -1, &d->b))) {
		free(d);
		return err;
	}
	/* the memory must load in place, in at most nsegments segments: check with the builder */
	const struct iovec v = { d->b.va, tag->maxsize };
	struct build c = { .tag = tag, .mode = BUILD_COUNT, .cap = tag->seg_cap };
	if (busdma_build(&c, &v, 1) || c.npages) {
		dmamem_backing_free(&d->b);
		free(d);
		return uerr(ENOMEM, "memory of %zu bytes for the tag would need %s", tag->maxsize,
			    c.npages ? "bouncing" : "more segments than nsegments allows");
	}
	pthread_mutex_lock(&tag->root->lock);
	err = busdma_map_create_locked(tag, &m);
	if (!err)
		m->mem = d;
	pthread_mutex_unlock(&tag->root->lock);
	if (err) {
		dmamem_backing_free(&d->b);
		free(d);
		return err;
	}
	d->map = m;
	/* fresh anonymous and hugetlb memory reads as zero already; ZERO makes it a promise.
	 * COHERENT: x86 DMA snoops the caches, so all memory is coherent and the flag changes
	 * nothing; ubdma_map_sync() is still needed for its fences. */
	if (flags & UBDMA_ZERO)
		memset(d->b.va, 0, tag->maxsize);
	ULOG_DEBUG("tag %p: %zu bytes of DMA memory at %p (%s pages), flags %#x", (void *)tag, tag->maxsize,
		   d->b.va, d->b.hugetlb ? "2 MiB" : "4 KiB", flags);
	*vaddrp = d->b.va;
	*mapp = m;
	return 0;
}

void ubdma_mem_free(ubdma_tag_t *tag, void *vaddr, ubdma_map_t *map)
{
	if (!tag || !map || map->tag != tag || !map->mem || map->mem->b.va != vaddr) {
		uerr(EINVAL, "map %p and address %p are not memory of tag %p from ubdma_mem_alloc()", (void *)map,
		     vaddr, (void *)tag);
		return;
	}
	if (map->state != MAP_IDLE)
		ubdma_map_unload(tag, map);
	struct dmamem *d = map->mem;
	busdma_map_unlink(tag, map);
	busdma_map_free(map);
	dmamem_backing_free(&d->b);
	free(d);
}
