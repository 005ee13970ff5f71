/*
 * tag.c - DMA tags: the constraints of a device, their inheritance, the context's root tag and
 * the teardown of everything the layer made in a context.
 *
 * As in bus_dma_tag_create(9), a child tag narrows its parent: the exclusion window grows to
 * (min lowaddr, max highaddr] and the boundary becomes the smallest non-zero of the two; alignment,
 * maxsize, nsegments and maxsegsz are the child's own (FreeBSD's common_bus_dma_tag_create()
 * inherits the same three).  A boundary smaller than maxsegsz clips maxsegsz, as FreeBSD does, so
 * that a segment can always be as long as the rules allow.  The root tag has no constraint of its
 * own: every IOVA the context hands out already lies in one of its windows.
 *
 * A device's tag (busdma_device_tag_create(), for lib/pci) adds what FreeBSD gives a device's
 * parent tag: the IOVA ranges the device may use, its NUMA node (bus_dma_tag_set_domain()) and a
 * lock function for deferred callbacks.  Children inherit the ranges and the node at creation; the
 * lock function is looked up at each deferred callback, so that one set on a device's tag after
 * the driver made its tags still covers them (FreeBSD gives each tag its own and inherits none).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/page.h"
#include "busdma/busdma_int.h"

static int is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static uint64_t min_nonzero(uint64_t a, uint64_t b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return a < b ? a : b;
}

/* How many segments a map of the tag needs room for: no load makes more than nsegments (or one
 * per byte of maxsize), and the library caps the array (see busdma_int.h). */
static int seg_cap(size_t maxsize, int nsegments)
{
	uint64_t cap = (uint64_t)nsegments;

	if (cap > maxsize)
		cap = maxsize;
	if (cap > BUSDMA_SEGS_CAP)
		cap = BUSDMA_SEGS_CAP;
	return (int)cap;
}

/* The first piece of [lo, hi] in the tag's aperture (if it has one) that holds len bytes. */
static int aperture_fit(const struct ubdma_tag *t, uint64_t lo, uint64_t hi, uint64_t len, struct iommu_window *w)
{
	for (int i = 0; i < (t->naperture ? t->naperture : 1); i++) {
		uint64_t l = lo, h = hi;
		if (t->naperture) {
			l = t->aperture[i].lo > lo ? t->aperture[i].lo : lo;
			h = t->aperture[i].hi < hi ? t->aperture[i].hi : hi;
		}
		if (l < h && h - l >= len - 1) {
			*w = (struct iommu_window){ l, h };
			return 1;
		}
	}
	return 0;
}

/* The first piece of the usable IOVAs that holds len bytes (len >= 1). */
static int allowed_fit(const struct ubdma_tag *t, uint64_t len, struct iommu_window *w)
{
	struct iommu_window parts[2], win[IOMMU_MAX_WINDOWS];
	int nparts = 0, nwin = ctx_windows(t->ctx, win); /* a copy: a device may narrow them now */

	/* the usable IOVAs are the complement of (lowaddr, highaddr]; prefer the low part, which
	 * is what a device with an address limit (a 32-bit window) needs */
	if (t->lowaddr >= t->highaddr) {
		parts[nparts++] = (struct iommu_window){ 0, UINT64_MAX };
	} else {
		parts[nparts++] = (struct iommu_window){ 0, t->lowaddr };
		if (t->highaddr != UINT64_MAX)
			parts[nparts++] = (struct iommu_window){ t->highaddr + 1, UINT64_MAX };
	}
	for (int p = 0; p < nparts; p++) {
		for (int i = 0; i < nwin; i++) {
			uint64_t lo = win[i].lo > parts[p].lo ? win[i].lo : parts[p].lo;
			uint64_t hi = win[i].hi < parts[p].hi ? win[i].hi : parts[p].hi;
			if (aperture_fit(t, lo, hi, len, w))
				return 1;
		}
	}
	return 0;
}

int busdma_tag_allowed(const struct ubdma_tag *t, size_t len, struct iommu_window *w)
{
	/* a piece that holds the whole request; else the first of a page, and the allocator says
	 * what does not fit */
	if ((len > PAGE_4K && allowed_fit(t, len, w)) || allowed_fit(t, PAGE_4K, w))
		return 0;
	return ENOMEM;
}

static int check_params(size_t alignment, uint64_t boundary, uint64_t lowaddr, uint64_t highaddr,
			size_t maxsize, int nsegments, size_t maxsegsz, int flags)
{
	if (!is_pow2(alignment))
		return uerr(EINVAL, "alignment %zu is not a power of two (use 1 for none)", alignment);
	if (boundary && !is_pow2(boundary))
		return uerr(EINVAL, "boundary %#llx is not a power of two or 0", (unsigned long long)boundary);
	if (maxsegsz == 0)
		return uerr(EINVAL, "maxsegsz is 0");
	if (maxsize == 0)
		return uerr(EINVAL, "maxsize is 0");
	if (nsegments < 1)
		return uerr(EINVAL, "nsegments %d is below 1", nsegments);
	if (lowaddr > highaddr)
		return uerr(EINVAL, "lowaddr %#llx is above highaddr %#llx: the excluded window is "
			    "(lowaddr, highaddr]", (unsigned long long)lowaddr, (unsigned long long)highaddr);
	if (flags & ~BUSDMA_TAG_FLAGS)
		return uerr(EINVAL, "unknown flags %#x", flags & ~BUSDMA_TAG_FLAGS);
	return 0;
}

/* A new tag under parent, with the device dev brings when it is a device's tag (else NULL). */
static int tag_new(struct ubdma_tag *parent, int kind, const struct busdma_device *dev, size_t alignment,
		   uint64_t boundary, uint64_t lowaddr, uint64_t highaddr, size_t maxsize, int nsegments,
		   size_t maxsegsz, int flags, struct ubdma_tag **tagp)
{
	struct ubdma_tag *t;
	int err;

	if (!parent || !tagp)
		return uerr(EINVAL, "%s is NULL", parent ? "tagp" : "parent");
	if ((err = check_params(alignment, boundary, lowaddr, highaddr, maxsize, nsegments, maxsegsz, flags)))
		return err;
	if (!(t = calloc(1, sizeof(*t))))
		return uerr(ENOMEM, "out of memory");
	t->ctx = parent->ctx;
	t->root = parent->root;
	t->parent = parent;
	t->kind = kind;
	LIST_INIT(&t->maps);
	t->alignment = alignment;
	t->amask = alignment - 1;
	t->lowaddr = lowaddr < parent->lowaddr ? lowaddr : parent->lowaddr;
	t->highaddr = highaddr > parent->highaddr ? highaddr : parent->highaddr;
	t->boundary = min_nonzero(boundary, parent->boundary);
	t->maxsegsz = t->boundary && t->boundary < maxsegsz ? t->boundary : maxsegsz;
	t->maxsize = maxsize;
	t->nsegments = nsegments;
	t->flags = flags;
	t->fastseg = !(flags & UBDMA_STRICT) && !t->boundary && t->amask < PAGE_4K;
	t->seg_cap = seg_cap(maxsize, nsegments);
	t->node = parent->node;
	t->naperture = parent->naperture;
	memcpy(t->aperture, parent->aperture, sizeof(t->aperture));
	if (dev) {
		t->node = dev->node;
		if (dev->nwindows) {
			t->naperture = dev->nwindows;
			memcpy(t->aperture, dev->windows, (size_t)dev->nwindows * sizeof(*dev->windows));
		}
		t->lockfunc = dev->lockfunc;
		t->lockfuncarg = dev->lockfuncarg;
	}

	if (flags & UBDMA_ALLOCNOW) {
		/* bus_dma(9): ALLOCNOW makes the bounce pages of one maxsize load now, so that the
		 * first loads do not have to wait; a tag whose pool cannot be made is refused */
		struct bounce_pool *pool;
		if ((err = bounce_pool_get(t, &pool))) {
			free(t);
			return err;
		}
	}
	pthread_mutex_lock(&t->root->lock);
	parent->nchildren++; /* the reference a tag holds on its parent */
	LIST_INSERT_HEAD(&t->root->tags, t, link);
	pthread_mutex_unlock(&t->root->lock);
	ULOG_DEBUG("tag %p parent %p align %zu boundary %#llx window (%#llx, %#llx] maxsize %zu nseg %d "
		   "maxsegsz %zu flags %#x node %d", (void *)t, (void *)parent, t->alignment,
		   (unsigned long long)t->boundary, (unsigned long long)t->lowaddr,
		   (unsigned long long)t->highaddr, t->maxsize, t->nsegments, t->maxsegsz, t->flags, t->node);
	*tagp = t;
	return 0;
}

int ubdma_tag_create(ubdma_tag_t *parent, size_t alignment, uint64_t boundary, ubdma_iova_t lowaddr,
		     ubdma_iova_t highaddr, size_t maxsize, int nsegments, size_t maxsegsz, int flags,
		     ubdma_tag_t **tagp)
{
	return tag_new(parent, BUSDMA_TAG_USER, NULL, alignment, boundary, lowaddr, highaddr, maxsize,
		       nsegments, maxsegsz, flags, tagp);
}

int busdma_device_tag_create(struct ubdma_tag *parent, const struct busdma_device *dev, struct ubdma_tag **tagp)
{
	uint64_t top = 0;

	if (!dev)
		return uerr(EINVAL, "dev is NULL");
	if (dev->nwindows < 0 || dev->nwindows > IOMMU_MAX_WINDOWS || (dev->nwindows && !dev->windows))
		return uerr(EINVAL, "%d aperture ranges (at most %d)", dev->nwindows, IOMMU_MAX_WINDOWS);
	for (int i = 0; i < dev->nwindows; i++) {
		if (dev->windows[i].hi < dev->windows[i].lo)
			return uerr(EINVAL, "aperture range %d ends below its start", i);
		top = dev->windows[i].hi > top ? dev->windows[i].hi : top;
	}
	/* what lies above the aperture is the device's exclusion window; none without an aperture */
	if (!dev->nwindows)
		top = UBDMA_MAXADDR;
	return tag_new(parent, BUSDMA_TAG_DEVICE, dev, 1, 0, top, UBDMA_MAXADDR, SIZE_MAX, INT_MAX, SIZE_MAX, 0,
		       tagp);
}

int busdma_tag_destroy_internal(struct ubdma_tag *t)
{
	if (!t)
		return uerr(EINVAL, "tag is NULL");
	if (t->kind == BUSDMA_TAG_ROOT)
		return uerr(EINVAL, "the root tag of a context is destroyed by ubdma_ctx_close()");
	pthread_mutex_lock(&t->root->lock);
	if (t->nmaps || t->nchildren) {
		int nmaps = t->nmaps, nchildren = t->nchildren;
		pthread_mutex_unlock(&t->root->lock);
		return uerr(EBUSY, "tag %p still has %d maps and %d child tags", (void *)t, nmaps, nchildren);
	}
	/* the last map of a tag can go from inside a deferred callback, while the loop that called
	 * it still holds the tag */
	if (t->pool && bounce_draining(t->pool)) {
		pthread_mutex_unlock(&t->root->lock);
		return uerr(EBUSY, "tag %p: its deferred loads are being run (in a callback of its own, or "
			    "in another thread)", (void *)t);
	}
	LIST_REMOVE(t, link);
	t->parent->nchildren--;
	pthread_mutex_unlock(&t->root->lock);
	if (t->pool)
		bounce_pool_free(t->pool);
	free(t);
	return 0;
}

int ubdma_tag_destroy(ubdma_tag_t *tag)
{
	if (tag && tag->kind == BUSDMA_TAG_DEVICE)
		return uerr(EINVAL, "a device's root tag belongs to its device (ubdma_pci_close())");
	return busdma_tag_destroy_internal(tag);
}

int ubdma_tag_set_bounce_limit(ubdma_tag_t *tag, size_t bytes)
{
	if (!tag)
		return uerr(EINVAL, "tag is NULL");
	pthread_mutex_lock(&tag->root->lock);
	tag->bounce_limit = bytes;
	tag->bounce_limit_set = 1;
	struct bounce_pool *pool = tag->pool;
	if (pool) {
		pthread_mutex_lock(&pool->lock);
		pool->limit = (bytes + pool->slot - 1) / pool->slot;
		pthread_mutex_unlock(&pool->lock);
	}
	pthread_mutex_unlock(&tag->root->lock);
	if (pool)
		bounce_drain(tag); /* a larger limit may let queued loads run */
	return 0;
}

int ubdma_tag_set_lockfunc(ubdma_tag_t *tag, ubdma_lockfunc_t *lockfunc, void *lockfuncarg)
{
	if (!tag)
		return uerr(EINVAL, "tag is NULL");
	pthread_mutex_lock(&tag->root->lock);
	tag->lockfunc = lockfunc;
	tag->lockfuncarg = lockfunc ? lockfuncarg : NULL;
	pthread_mutex_unlock(&tag->root->lock);
	return 0;
}

void busdma_tag_lockfunc(struct ubdma_tag *tag, ubdma_lockfunc_t **fnp, void **argp)
{
	struct ubdma_tag *t = tag;

	pthread_mutex_lock(&tag->root->lock);
	while (t && !t->lockfunc)
		t = t->parent;
	*fnp = t ? t->lockfunc : NULL;
	*argp = t ? t->lockfuncarg : NULL;
	pthread_mutex_unlock(&tag->root->lock);
}

size_t ubdma_tag_bounce_limit(const ubdma_tag_t *tag)
{
	if (!tag) {
		errno = uerr(EINVAL, "NULL tag");
		return 0;
	}
	if (tag->bounce_limit_set)
		return tag->bounce_limit;
	return bounce_default_limit(tag) * (tag->alignment > PAGE_4K ? tag->alignment : PAGE_4K);
}

/* ------------------------------------------------------------ the root tag and teardown */

/* busdma_layer.open: the layer's state in a context is its root tag. */
static int busdma_root_create(struct ubdma_ctx *ctx, void **rootp)
{
	struct ubdma_tag *t = calloc(1, sizeof(*t));
	struct busdma_root *r = calloc(1, sizeof(*r));

	if (!t || !r) {
		free(t);
		free(r);
		return uerr(ENOMEM, "out of memory");
	}
	pthread_mutex_init(&r->lock, NULL);
	LIST_INIT(&r->tags);
	LIST_INIT(&t->maps);
	t->ctx = ctx;
	t->root = r;
	t->kind = BUSDMA_TAG_ROOT;
	/* no constraint of its own.  The window is empty and neutral for inheritance: a child's
	 * lowaddr = min(own, MAXADDR) and highaddr = max(own, 0) are its own.  (With FreeBSD's
	 * lowaddr = highaddr = MAXADDR every child's highaddr would become MAXADDR.) */
	t->alignment = 1;
	t->amask = 0;
	t->boundary = 0;
	t->lowaddr = UBDMA_MAXADDR;
	t->highaddr = 0;
	t->maxsize = SIZE_MAX;
	t->nsegments = INT_MAX;
	t->maxsegsz = SIZE_MAX;
	t->fastseg = 1;
	t->seg_cap = seg_cap(t->maxsize, t->nsegments);
	t->node = UBDMA_NODE_ANY;
	*rootp = t;
	return 0;
}

/* Free a tag's maps, DMA memory and pool: everything goes, whatever its state. */
static void tag_free_all(struct ubdma_tag *t)
{
	for (struct ubdma_map *m; (m = LIST_FIRST(&t->maps));) {
		LIST_REMOVE(m, link);
		if (m->mem) {
			ULOG_WARN("DMA memory %p of tag %p still allocated at context close: freeing",
				  m->mem->b.va, (void *)t);
			dmamem_backing_free(&m->mem->b);
			free(m->mem);
		} else {
			ULOG_WARN("map %p of tag %p still exists at context close: freeing", (void *)m, (void *)t);
		}
		busdma_map_free(m);
	}
	if (t->pool)
		bounce_pool_free(t->pool);
}

/* busdma_layer.fini: everything the layer made in the context goes. */
static void busdma_root_destroy(struct ubdma_ctx *ctx, void *state)
{
	struct ubdma_tag *root = state;
	struct busdma_root *r = root->root;

	(void)ctx;
	for (struct ubdma_tag *t; (t = LIST_FIRST(&r->tags));) {
		LIST_REMOVE(t, link);
		if (t->kind == BUSDMA_TAG_USER)
			ULOG_WARN("tag %p still exists at context close: freeing", (void *)t);
		tag_free_all(t);
		free(t);
	}
	tag_free_all(root);
	pthread_mutex_destroy(&r->lock);
	free(r);
	free(root);
}

const struct ctx_layer busdma_layer = {
	.name = "busdma",
	.open = busdma_root_create,
	.fini = busdma_root_destroy,
};
