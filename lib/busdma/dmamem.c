/*
 * dmamem.c - memory for devices: the backings that bounce pools and ubdma_mem_alloc() are made
 * of, and ubdma_mem_alloc() / ubdma_mem_free() themselves (bus_dmamem_alloc(9)).
 *
 * A backing is memory from the hugepage layer's allocator (hugepage/hugemem.h: the one that
 * ubdma_huge_alloc() uses too), on the tag's NUMA node when it has one, wired and mapped into the
 * context with umem_lock(), whose IOVAs lie in a window the caller gives (the complement of a
 * tag's exclusion window, inside the context's windows and the device's aperture).  The node is a
 * preference (MPOL_PREFERRED), as FreeBSD's busdma allocates a tag's bounce pages and maps with
 * DOMAINSET_PREF(domain): memory elsewhere is slower, no memory is a failure.  How the IOVAs are
 * made to fall in the window depends on the backend's capabilities (iommu_caps()), never on which
 * backend it is:
 *   IOVA_IS_VA:   the allocator is asked for a virtual address in the window;
 *   HUGETLB_ONLY: (the IOVA is the physical address) 2 MiB pages; a page whose IOVA misses the
 *                 window is kept aside while another is tried, then all are given back; ENOMEM
 *                 after DMAMEM_PHYS_TRIES;
 *   otherwise:    the backend chooses IOVAs, and umem_lock()'s window argument makes it choose
 *                 inside the window.
 * Large requests (2 MiB and more) use 2 MiB hugepages on every backend when the system has them,
 * falling back to 4 KiB pages unless the backend maps only hugetlb memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/page.h"
#include "busdma/busdma_int.h"
#include "hugepage/hugemem.h"

#define DMAMEM_PHYS_TRIES 8

static uintptr_t round_up(uintptr_t v, uintptr_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/*
 * len bytes of pages of pgsz, the address aligned to align and, when place is set (IOVA = VA),
 * inside lim, on node (preferred).  0, or huge_map()'s error.
 */
static int map_placed(size_t len, size_t pgsz, size_t align, const struct iommu_window *lim, int place,
		      int node, void **vap)
{
	const struct huge_req rq = { .len = len, .pgsz = pgsz, .align = align, .node = node, .preferred = 1,
				     .place = place, .lo = (uintptr_t)lim->lo,
				     .hi = lim->hi > UINTPTR_MAX ? UINTPTR_MAX : (uintptr_t)lim->hi };

	return huge_map(&rq, vap);
}

/* The backend's IOVA is the VA: memory for a window must be placed in it. */
static int iova_is_va(const struct ubdma_ctx *ctx)
{
	return (iommu_caps(&ctx->iommu) & IOMMU_CAP_IOVA_IS_VA) != 0;
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
		       int node, struct backing *b)
{
	void *va;

	len = round_up(len, PAGE_4K);
	align = align > PAGE_4K ? align : PAGE_4K;
	int err = map_placed(len, PAGE_4K, align, lim, iova_is_va(ctx), node, &va);
	if (err)
		return err == EADDRNOTAVAIL ? uerr(ENOMEM, "no virtual memory for %zu bytes in [%#llx, %#llx]", len,
						   (unsigned long long)lim->lo, (unsigned long long)lim->hi)
					    : uerr(err, "cannot map %zu bytes of 4 KiB pages: %s", len, strerror(err));
	err = backing_lock(ctx, va, len, align, lim, &b->cookie);
	if (err) {
		huge_unmap(va, len);
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
		      int node, struct backing *b)
{
	void *missed[DMAMEM_PHYS_TRIES];
	int nmissed = 0, err = ENOMEM;

	len = round_up(len, BUSDMA_HUGE);
	align = align > BUSDMA_HUGE ? align : BUSDMA_HUGE;
	for (int i = 0; i < DMAMEM_PHYS_TRIES; i++) {
		void *va;
		if (map_placed(len, BUSDMA_HUGE, align, lim, iova_is_va(ctx), node, &va)) {
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
			huge_unmap(va, len);
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
		huge_unmap(missed[nmissed], len);
	return err;
}

int dmamem_backing_alloc(struct ubdma_ctx *ctx, size_t len, size_t align, const struct iommu_window *lim,
			 int hugetlb, int node, struct backing *b)
{
	const int huge_only = (iommu_caps(&ctx->iommu) & IOMMU_CAP_HUGETLB_ONLY) != 0;

	memset(b, 0, sizeof(*b));
	if (huge_only || hugetlb > 0 || (hugetlb < 0 && len >= BUSDMA_HUGE)) {
		int err = alloc_huge(ctx, len, align, lim, node, b);
		if (!err || huge_only)
			return err;
		ULOG_DEBUG("no hugepages for %zu bytes: using 4 KiB pages", len);
	}
	return alloc_small(ctx, len, align, lim, node, b);
}

void dmamem_backing_free(struct backing *b)
{
	if (!b->va)
		return;
	ubdma_umem_unlock(b->cookie);
	huge_unmap(b->va, b->len);
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
	if ((err = busdma_tag_allowed(tag, tag->maxsize, &lim)))
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
	if ((err = dmamem_backing_alloc(tag->ctx, tag->maxsize, align, &lim, -1, tag->node, &d->b))) {
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
	ULOG_DEBUG("tag %p: %zu bytes of DMA memory at %p (%s pages, node %d), flags %#x", (void *)tag,
		   tag->maxsize, d->b.va, d->b.hugetlb ? "2 MiB" : "4 KiB", tag->node, flags);
	*vaddrp = d->b.va;
	*mapp = m;
	return 0;
}

void ubdma_mem_free(ubdma_tag_t *tag, void *vaddr, ubdma_map_t *map)
{
	if (!tag || !map || map->tag != tag || !map->mem || map->mem->b.va != vaddr) {
		errno = uerr(EINVAL, "map %p and address %p are not memory of tag %p from ubdma_mem_alloc()",
			     (void *)map, vaddr, (void *)tag);
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
