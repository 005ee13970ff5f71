/*
 * umem.c - locked-memory cookies, ddi_umem_lock(9F) semantics, and the registry that feeds the
 * context's translation map.
 *
 * A cookie wires its range (counts nest with ubdma_wire()), maps each run of one page size
 * through the backend, and enters the IOVAs in the translation map.  Cookies may overlap: every
 * one keeps its own IOMMU mapping (the IOMMU can map one page at several IOVAs), and the map holds,
 * for each page, the IOVA of one live cookie covering it: the newest one at lock time; at unlock
 * the pages are re-pointed to another live cookie, or cleared, with one atomic store per entry so
 * that a concurrent reader never sees a covered page as unregistered.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/log.h"
#include "wire/wire.h"

#define PG 4096UL

static void chunks_free(struct ubdma_umem *u)
{
	for (int i = 0; i < u->nchunks; i++)
		free(u->chunks[i].iovas);
	free(u->chunks);
}

static void chunks_unmap(struct ubdma_ctx *ctx, struct ubdma_umem *u, int n)
{
	for (int i = 0; i < n; i++) {
		struct umem_chunk *c = &u->chunks[i];
		uint64_t *iovas = c->iovas;
		uint64_t *tmp = NULL;

		if (c->linear && (tmp = malloc(c->npages * sizeof(*tmp)))) {
			for (size_t p = 0; p < c->npages; p++)
				tmp[p] = c->iova0 + p * c->pgsz;
			iovas = tmp;
		}
		int err = iovas ? ctx->ops->unmap(ctx->priv, c->va, c->npages, c->pgsz, iovas) : ENOMEM;
		if (err)
			ULOG(UBDMA_LOG_ERROR, "unmap of [%#lx, +%zu) failed: %s", (unsigned long)c->va,
			     c->npages * c->pgsz, strerror(err));
		free(tmp);
	}
}

/* Map every run of the wired range through the backend; all or nothing. */
static int chunks_map(struct ubdma_ctx *ctx, struct ubdma_umem *u, const struct wire_seg *segs, int nseg,
		      const struct iommu_window *lim)
{
	int prot = (u->flags & UBDMA_UMEM_READ ? IOMMU_PROT_READ : 0) |
		   (u->flags & UBDMA_UMEM_WRITE ? IOMMU_PROT_WRITE : 0);

	if (!(u->chunks = calloc((size_t)nseg, sizeof(*u->chunks))))
		return uerr(ENOMEM, "out of memory");
	for (int i = 0; i < nseg; i++) {
		struct umem_chunk *c = &u->chunks[i];
		c->va = segs[i].start;
		c->pgsz = segs[i].pgsz;
		c->npages = (segs[i].end - segs[i].start) / c->pgsz;
		c->hugetlb = segs[i].hugetlb;
		if (!(c->iovas = malloc(c->npages * sizeof(*c->iovas)))) {
			chunks_unmap(ctx, u, i);
			return uerr(ENOMEM, "out of memory");
		}
		int err = ctx->ops->map(ctx->priv, c->va, c->npages, c->pgsz, prot, lim, c->iovas);
		if (err) {
			/* the backend said why in ubdma_last_error() */
			free(c->iovas);
			c->iovas = NULL;
			chunks_unmap(ctx, u, i);
			return err;
		}
		u->nchunks = i + 1;
		c->iova0 = c->iovas[0];
		c->linear = 1;
		for (size_t p = 1; p < c->npages && c->linear; p++)
			c->linear = c->iovas[p] == c->iova0 + p * c->pgsz;
		if (c->linear) {
			free(c->iovas);
			c->iovas = NULL;
		}
	}
	return 0;
}

/* Enter [s, e) ∩ chunk in the map, page by page when the bounds cut the chunk's pages. */
static int chunk_enter(struct xlate_map *m, const struct umem_chunk *c, uintptr_t s, uintptr_t e)
{
	uintptr_t ce = c->va + c->npages * c->pgsz;
	uint64_t buf[512];

	s = s > c->va ? s : c->va;
	e = e < ce ? e : ce;
	if (s >= e)
		return 0;
	if (s == c->va && e == ce)
		return xlate_set(m, c->va, c->npages, c->pgsz, c->iovas, c->iova0);
	while (s < e) {
		size_t n = (e - s) / PG < 512 ? (e - s) / PG : 512;
		for (size_t i = 0; i < n; i++)
			buf[i] = umem_chunk_iova(c, s + i * PG);
		int err = xlate_set(m, s, n, PG, buf, 0);
		if (err)
			return err;
		s += n * PG;
	}
	return 0;
}

static uintptr_t umem_lo(const struct ubdma_umem *u)
{
	return u->chunks[0].va;
}

static uintptr_t umem_hi(const struct ubdma_umem *u)
{
	const struct umem_chunk *c = &u->chunks[u->nchunks - 1];
	return c->va + c->npages * c->pgsz;
}

static int cmp_span(const void *a, const void *b)
{
	const uintptr_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

/*
 * Make the map's entries over [s, e) agree with the live cookies other than skip: re-point pages
 * covered by another cookie, then clear the rest.  Caller holds reg_lock.
 */
static void registry_restore(struct ubdma_ctx *ctx, uintptr_t s, uintptr_t e, const struct ubdma_umem *skip)
{
	size_t n = 0, cap = 0;
	uintptr_t(*spans)[2] = NULL;

	for (struct ubdma_umem *o = ctx->umems; o; o = o->next) {
		if (o == skip || umem_hi(o) <= s || umem_lo(o) >= e)
			continue;
		for (int i = 0; i < o->nchunks; i++) {
			const struct umem_chunk *c = &o->chunks[i];
			uintptr_t cs = c->va > s ? c->va : s, ce = c->va + c->npages * c->pgsz;
			ce = ce < e ? ce : e;
			if (cs >= ce)
				continue;
			/* ENOMEM re-pointing: the entry keeps the old cookie's IOVA, which stays
			 * mapped until the caller's unmap; log it, the page is then cleared below */
			if (chunk_enter(&ctx->xlate, c, cs, ce))
				ULOG_WARN("out of memory re-pointing [%#lx, %#lx)", (unsigned long)cs,
					  (unsigned long)ce);
			if (n == cap) {
				void *ns = realloc(spans, (cap = cap ? cap * 2 : 8) * sizeof(*spans));
				if (!ns)
					continue;
				spans = ns;
			}
			spans[n][0] = cs;
			spans[n++][1] = ce;
		}
	}
	qsort(spans, n, sizeof(*spans), cmp_span);
	uintptr_t cur = s;
	for (size_t i = 0; i < n; i++) {
		if (spans[i][0] > cur)
			xlate_clear(&ctx->xlate, cur, spans[i][0] - cur);
		cur = spans[i][1] > cur ? spans[i][1] : cur;
	}
	if (cur < e)
		xlate_clear(&ctx->xlate, cur, e - cur);
	free(spans);
}

int umem_lock(struct ubdma_ctx *ctx, void *addr, size_t len, int flags, const struct iommu_window *lim,
	      struct ubdma_umem **cookiep)
{
	uintptr_t a = (uintptr_t)addr;
	struct wire_seg *segs = NULL;
	struct ubdma_umem *u;
	int nseg = 0, err;

	if (!ctx || !cookiep)
		return uerr(EINVAL, "%s is NULL", ctx ? "cookiep" : "ctx");
	if (!(flags & (UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)) || (flags & ~(UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)))
		return uerr(EINVAL, "flags 0x%x: need UBDMA_UMEM_READ and/or UBDMA_UMEM_WRITE, nothing else", flags);
	if ((a | len) & (PG - 1) || len == 0)
		return uerr(EINVAL, "addr %p and len %zu must be non-zero multiples of 4096", addr, len);
	if (a + len < a)
		return uerr(EINVAL, "range %p + %zu wraps around the address space", addr, len);
	if (!(u = calloc(1, sizeof(*u))))
		return uerr(ENOMEM, "out of memory");
	u->ctx = ctx;
	u->start = a;
	u->end = a + len;
	u->flags = flags;
	u->wire_flags = flags & UBDMA_UMEM_WRITE ? UBDMA_WIRE_WRITE : 0;
	if ((err = wire_range(addr, len, u->wire_flags, &segs, &nseg)))
		goto fail_free;
	if ((err = chunks_map(ctx, u, segs, nseg, lim)))
		goto fail_unwire;
	pthread_mutex_lock(&ctx->reg_lock);
	for (int i = 0; i < u->nchunks && !err; i++)
		err = chunk_enter(&ctx->xlate, &u->chunks[i], 0, UINTPTR_MAX);
	if (err) {
		registry_restore(ctx, umem_lo(u), umem_hi(u), u);
		pthread_mutex_unlock(&ctx->reg_lock);
		err = uerr(ENOMEM, "out of memory for the translation map");
		chunks_unmap(ctx, u, u->nchunks);
		goto fail_unwire;
	}
	u->next = ctx->umems;
	if (ctx->umems)
		ctx->umems->prev = u;
	ctx->umems = u;
	ctx->numems++;
	pthread_mutex_unlock(&ctx->reg_lock);
	free(segs);
	*cookiep = u;
	return 0;

fail_unwire:
	unwire_range(addr, len, u->wire_flags);
fail_free:
	chunks_free(u);
	free(segs);
	free(u);
	return err;
}

int ubdma_umem_lock(ubdma_ctx_t *ctx, void *addr, size_t len, int flags, ubdma_umem_t **cookiep)
{
	return umem_lock(ctx, addr, len, flags, NULL, cookiep);
}

uint64_t ubdma_umem_iova(const ubdma_umem_t *u, const void *addr)
{
	uintptr_t a = (uintptr_t)addr;

	if (!u || a < u->start || a >= u->end)
		return UBDMA_BAD_IOVA;
	for (int i = 0; i < u->nchunks; i++) {
		const struct umem_chunk *c = &u->chunks[i];
		if (a >= c->va && a - c->va < c->npages * c->pgsz)
			return umem_chunk_iova(c, a);
	}
	return UBDMA_BAD_IOVA;
}

void ubdma_umem_unlock(ubdma_umem_t *u)
{
	struct ubdma_ctx *ctx;

	if (!u)
		return;
	ctx = u->ctx;
	pthread_mutex_lock(&ctx->reg_lock);
	if (u->prev)
		u->prev->next = u->next;
	else
		ctx->umems = u->next;
	if (u->next)
		u->next->prev = u->prev;
	ctx->numems--;
	registry_restore(ctx, umem_lo(u), umem_hi(u), u);
	pthread_mutex_unlock(&ctx->reg_lock);
	chunks_unmap(ctx, u, u->nchunks);
	int err = unwire_range((void *)u->start, u->end - u->start, u->wire_flags);
	if (err)
		ULOG(UBDMA_LOG_ERROR, "unwire of [%#lx, %#lx) failed: %s", (unsigned long)u->start,
		     (unsigned long)u->end, strerror(err));
	chunks_free(u);
	free(u);
}
