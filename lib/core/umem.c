/*
 * umem.c - locked-memory cookies, ddi_umem_lock(9F) semantics, and the registry that feeds the
 * context's translation map.
 *
 * A cookie wires its range (counts nest with ubdma_wire()), or only watches it where the backend
 * pins the pages itself (umem_wire()), maps each run of one page size through the backend, and
 * enters the IOVAs in the translation map.  Cookies may overlap: every
 * one keeps its own IOMMU mapping (the IOMMU can map one page at several IOVAs, each with its own
 * permissions), and the map holds, for each page, the IOVA of the best live cookie covering it:
 * one the device may write through, then the newest (registry_apply()).  Lock and unlock
 * recompute the cookie's range with one atomic store per entry, so that a concurrent reader
 * never sees a covered page as unregistered.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/page.h"
#include "core/ctx.h"
#include "wire/wire.h"

static void chunks_free(struct ubdma_umem *u)
{
	for (int i = 0; i < u->nchunks; i++)
		if (u->chunks[i].iovas) /* a one-page or linear chunk has none: no call (issue 21) */
			free(u->chunks[i].iovas);
	if (u->chunks != &u->one)
		free(u->chunks);
}

static inline __attribute__((always_inline)) void chunks_unmap(struct ubdma_ctx *ctx, struct ubdma_umem *u, int n)
{
	if (!iommu_has_unmap(&ctx->iommu))
		return; /* the backend maps nothing anywhere (IOVA = VA or PA) */
	for (int i = 0; i < n; i++) {
		struct umem_chunk *c = &u->chunks[i];
		/* unmap() reads only iovas[0] of a linear range (iommu.h): no list to build */
		const uint64_t *iovas = c->linear || !c->iovas ? &c->iova0 : c->iovas;
		int err = iommu_unmap(&ctx->iommu, c->va, c->npages, c->pgsz, iovas);
		if (err)
			ULOG(UBDMA_LOG_ERROR, "unmap of [%#lx, +%zu) failed: %s", (unsigned long)c->va,
			     c->npages * c->pgsz, strerror(err));
	}
}

/* Map every run of the wired range through the backend; all or nothing. */
static int chunks_map(struct ubdma_ctx *ctx, struct ubdma_umem *u, const struct wire_seg *segs, int nseg,
		      const struct iommu_window *lim)
{
	int prot = (u->flags & UBDMA_UMEM_READ ? IOMMU_PROT_READ : 0) |
		   (u->flags & UBDMA_UMEM_WRITE ? IOMMU_PROT_WRITE : 0);

	if (nseg == 1)
		u->chunks = &u->one;
	else if (!(u->chunks = calloc((size_t)nseg, sizeof(*u->chunks))))
		return uerr(ENOMEM, "out of memory");
	for (int i = 0; i < nseg; i++) {
		struct umem_chunk *c = &u->chunks[i];
		c->va = segs[i].start;
		c->pgsz = segs[i].pgsz;
		c->npages = (segs[i].end - segs[i].start) / c->pgsz;
		c->hugetlb = segs[i].hugetlb;
		/* one page needs no list: its IOVA is iova0 */
		if (c->npages > 1 && !(c->iovas = malloc(c->npages * sizeof(*c->iovas)))) {
			chunks_unmap(ctx, u, i);
			return uerr(ENOMEM, "out of memory");
		}
		int err = iommu_map(&ctx->iommu, c->va, c->npages, c->pgsz, prot, lim,
				    c->iovas ? c->iovas : &c->iova0);
		if (err) {
			/* the backend said why in ubdma_last_error() */
			free(c->iovas);
			c->iovas = NULL;
			chunks_unmap(ctx, u, i);
			return err;
		}
		u->nchunks = i + 1;
		if (c->iovas)
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
		size_t n = (e - s) / PAGE_4K < 512 ? (e - s) / PAGE_4K : 512;
		for (size_t i = 0; i < n; i++)
			buf[i] = umem_chunk_iova(c, s + i * PAGE_4K);
		int err = xlate_set(m, s, n, PAGE_4K, buf, 0);
		if (err)
			return err;
		s += n * PAGE_4K;
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

/* A chunk's part inside the range being recomputed, with the rank of its cookie. */
struct cover {
	uintptr_t s, e;
	const struct umem_chunk *c;
	uint64_t rank;
};

static int cmp_addr(const void *a, const void *b)
{
	const uintptr_t *x = a, *y = b;
	return *x < *y ? -1 : *x > *y;
}

/*
 * Which cookie the map shows for a page covered by several: one the device may write through
 * (a WRITE cookie serves READ too, never the reverse), then the newest (the largest seq).
 */
static uint64_t rank_of(const struct ubdma_umem *u)
{
	return (u->flags & UBDMA_UMEM_WRITE ? UINT64_C(1) << 63 : 0) + u->seq;
}

/* ------------------------------------------------------------ the index by address */

/* The size class of a cookie's span: it spans less than 2^k bytes. */
static int span_class(const struct ubdma_umem *u)
{
	return 64 - __builtin_clzll((unsigned long long)(umem_hi(u) - umem_lo(u)));
}

/* Index of the first cookie whose wired range starts at or above a. */
static inline __attribute__((always_inline)) size_t ix_find(const struct ubdma_ctx *ctx, uintptr_t a)
{
	size_t lo = 0, hi = ctx->numems;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (umem_lo(ctx->ix[mid]) < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Where the cookies that may overlap [s, e) begin: none starting lower spans up to s. */
static inline __attribute__((always_inline)) size_t ix_first(const struct ubdma_ctx *ctx, uintptr_t s)
{
	int k = ctx->ix_span_mask ? 64 - __builtin_clzll(ctx->ix_span_mask) : 0;
	uintptr_t reach = k >= 64 ? UINTPTR_MAX : ((uintptr_t)1 << k) - 1;
	return ix_find(ctx, s > reach ? s - reach : 0);
}

/* Put a cookie on the list and in the index; ENOMEM changes nothing.  reg_lock held. */
static int registry_link(struct ubdma_ctx *ctx, struct ubdma_umem *u)
{
	if (ctx->numems == ctx->ix_cap) {
		size_t cap = ctx->ix_cap ? 2 * ctx->ix_cap : 64;
		struct ubdma_umem **ix = realloc(ctx->ix, cap * sizeof(*ix));
		if (!ix)
			return ENOMEM;
		ctx->ix = ix;
		ctx->ix_cap = cap;
	}
	size_t i = ix_find(ctx, umem_lo(u));
	if (i < ctx->numems)
		memmove(&ctx->ix[i + 1], &ctx->ix[i], (ctx->numems - i) * sizeof(*ctx->ix));
	ctx->ix[i] = u;
	int k = span_class(u);
	ctx->ix_span[k]++;
	ctx->ix_span_mask |= UINT64_C(1) << (k - 1);
	u->seq = ++ctx->umem_seq;
	LIST_INSERT_HEAD(&ctx->umems, u, link);
	ctx->numems++;
	return 0;
}

/* The best cover of [s, e) among n, or NULL. */
static const struct cover *best_cover(const struct cover *cv, size_t n, uintptr_t s, uintptr_t e)
{
	const struct cover *best = NULL;

	for (size_t i = 0; i < n; i++)
		if (cv[i].s <= s && cv[i].e >= e && (!best || cv[i].rank > best->rank))
			best = &cv[i];
	return best;
}

/* Without memory for the interval lists: decide page by page (unlock must not fail). */
static void registry_apply_slow(struct ubdma_ctx *ctx, uintptr_t s, uintptr_t e)
{
	for (uintptr_t p = s; p < e; p += PAGE_4K) {
		const struct umem_chunk *bc = NULL;
		uint64_t br = 0;
		for (struct ubdma_umem *o = LIST_FIRST(&ctx->umems); o; o = LIST_NEXT(o, link))
			for (int i = 0; i < o->nchunks && !o->hidden; i++) {
				const struct umem_chunk *c = &o->chunks[i];
				if (p >= c->va && p - c->va < c->npages * c->pgsz && rank_of(o) > br) {
					bc = c;
					br = rank_of(o);
				}
			}
		if (!bc || chunk_enter(&ctx->xlate, bc, p, p + PAGE_4K))
			xlate_clear(&ctx->xlate, p, PAGE_4K);
	}
}

static int registry_apply_walk(struct ubdma_ctx *ctx, uintptr_t s, uintptr_t e, int can_fail, size_t first,
			       size_t cap);

/*
 * Make the map's entries over [s, e) show, page by page, the best live cookie (rank_of()), or
 * nothing.  Each entry goes from one valid IOVA straight to another (one store), so a reader
 * never sees a covered page as unregistered.  Caller holds reg_lock.  Return: 0 or ENOMEM; with
 * can_fail 0 it always completes (entries it could not write are cleared, never left stale).
 * Inline, with the common cases (issue 21: under TCG each call and return is dear, and a lock +
 * unlock makes two of these); the general walk is registry_apply_walk().
 */
static inline __attribute__((always_inline)) int registry_apply(struct ubdma_ctx *ctx, uintptr_t s, uintptr_t e,
								int can_fail)
{
	size_t cap = 0, first = ix_first(ctx, s), x;
	struct ubdma_umem *o, *only = NULL;

	/* the cookies overlapping [s, e): those of the index from ix_first() up to e */
	for (x = first; x < ctx->numems && umem_lo(o = ctx->ix[x]) < e; x++)
		if (!o->hidden && umem_hi(o) > s) {
			cap += (size_t)o->nchunks;
			only = o;
		}
	/*
	 * The common case without the cover computation (issue 21: under TCG each step of it is
	 * dear): nothing covers [s, e) (an unlock of a cookie that overlapped none), or one chunk
	 * covers it all (the lock of such a cookie).  Either is the one elementary interval the
	 * general walk would find, with that winner.
	 */
	if (cap == 0) {
		if (e - s == PAGE_4K) /* one page: inline when its granule has a table (xlate.h) */
			xlate_clear_page(&ctx->xlate, s);
		else
			xlate_clear(&ctx->xlate, s, e - s);
		return 0;
	}
	const struct umem_chunk *oc = cap == 1 ? &only->chunks[0] : NULL;
	if (oc && oc->va <= s && oc->va + oc->npages * oc->pgsz >= e) {
		/* a one-page chunk (no IOVA list) of exactly the range: inline, no chunk_enter() */
		if (oc->va == s && oc->npages == 1 && oc->pgsz == PAGE_4K && !oc->iovas ?
			    !xlate_set_page(&ctx->xlate, s, oc->iova0) :
			    !chunk_enter(&ctx->xlate, oc, s, e))
			return 0;
		if (can_fail)
			return ENOMEM;
		xlate_clear(&ctx->xlate, s, e - s);
		return 0;
	}
	return registry_apply_walk(ctx, s, e, can_fail, first, cap);
}

/* registry_apply() with covers from several chunks: the elementary intervals and their winners. */
static int registry_apply_walk(struct ubdma_ctx *ctx, uintptr_t s, uintptr_t e, int can_fail, size_t first,
			       size_t cap)
{
	size_t n = 0, nb = 0, x;
	struct ubdma_umem *o;
	struct cover *cv = NULL, cv_few[8];
	uintptr_t *bounds = NULL, bounds_few[2 * 8];
	int err = 0;

	if (cap + 1 <= 8) { /* the usual case, a cookie overlapping none or few: no allocation */
		cv = cv_few;
		bounds = bounds_few;
	} else if (!(cv = malloc((cap + 1) * sizeof(*cv))) || !(bounds = malloc((2 * cap + 2) * sizeof(*bounds)))) {
		free(cv);
		if (can_fail)
			return ENOMEM;
		registry_apply_slow(ctx, s, e);
		return 0;
	}
	for (x = first; x < ctx->numems && umem_lo(o = ctx->ix[x]) < e; x++) {
		if (o->hidden || umem_hi(o) <= s)
			continue;
		for (int i = 0; i < o->nchunks; i++) {
			const struct umem_chunk *c = &o->chunks[i];
			uintptr_t cs = c->va > s ? c->va : s, ce = c->va + c->npages * c->pgsz;
			ce = ce < e ? ce : e;
			if (cs < ce) {
				cv[n++] = (struct cover){ cs, ce, c, rank_of(o) };
				bounds[nb++] = cs;
				bounds[nb++] = ce;
			}
		}
	}
	bounds[nb++] = s;
	bounds[nb++] = e;
	if (nb <= 16) { /* the usual case, a cookie overlapping none or few: no qsort call */
		for (size_t k = 1; k < nb; k++)
			for (size_t j = k; j && bounds[j - 1] > bounds[j]; j--) {
				uintptr_t x = bounds[j];
				bounds[j] = bounds[j - 1];
				bounds[j - 1] = x;
			}
	} else {
		qsort(bounds, nb, sizeof(*bounds), cmp_addr);
	}
	/* walk the elementary intervals, merging neighbours with the same winner */
	for (size_t i = 0; i + 1 < nb;) {
		uintptr_t is = bounds[i], ie;
		const struct cover *w;
		if (is >= e || is == bounds[i + 1]) {
			i++;
			continue;
		}
		ie = bounds[++i];
		w = best_cover(cv, n, is, ie);
		while (i + 1 < nb && bounds[i + 1] <= e &&
		       (bounds[i + 1] == ie || best_cover(cv, n, ie, bounds[i + 1]) == w))
			ie = bounds[++i];
		if (!w) {
			xlate_clear(&ctx->xlate, is, ie - is);
		} else if (chunk_enter(&ctx->xlate, w->c, is, ie)) {
			if (can_fail) {
				err = ENOMEM;
				break;
			}
			xlate_clear(&ctx->xlate, is, ie - is);
		}
	}
	if (cv != cv_few) {
		free(cv);
		free(bounds);
	}
	return err;
}

/* Inline: one call fewer on the unlock path (issue 21). */
static inline __attribute__((always_inline)) void registry_unlink(struct ubdma_ctx *ctx, struct ubdma_umem *u)
{
	size_t i = ix_find(ctx, umem_lo(u));

	while (ctx->ix[i] != u) /* among the cookies starting at the same address */
		i++;
	if (i + 1 < ctx->numems)
		memmove(&ctx->ix[i], &ctx->ix[i + 1], (ctx->numems - i - 1) * sizeof(*ctx->ix));
	int k = span_class(u);
	if (--ctx->ix_span[k] == 0)
		ctx->ix_span_mask &= ~(UINT64_C(1) << (k - 1));
	LIST_REMOVE(u, link);
	ctx->numems--;
}

/*
 * Wire the cookie's range, or only watch it where the backend pins the pages itself: a long-term
 * pin holds the frames and keeps them the process's across fork(2) (the kernel copies pinned
 * anonymous pages for the child), so mlock and MADV_DONTFORK would add system calls and nothing
 * else.  The watch (the monitor's events, a count that munmap ends) is what keeps the cookie
 * from outliving its mapping, as for a wiring.  Hugetlb memory (the kernel says so when the
 * window is registered) is watched too when the range lies on its huge pages, one look-up for
 * their size (the pin holds a huge page as it holds a small one), and kept out of a fork(2)
 * child with MADV_DONTFORK as a wiring is (a child's copy of a pinned huge page would need a
 * free one from the pool); a range inside a huge page, memory the monitor cannot watch and
 * processes without a monitor get the full wiring.  docs/wire.md section 13.
 */
static int umem_wire(struct ubdma_ctx *ctx, struct ubdma_umem *u, struct wire_seg *one, struct wire_seg **segsp,
		     int *nsegp)
{
	void *addr = (void *)u->start;
	size_t len = u->end - u->start;
	uintptr_t s = 0, e = 0;
	size_t pg = PAGE_4K;
	int err = ENOTSUP;

	if (iommu_pins(&ctx->iommu))
		err = wire_watch_sized(addr, len, 0, &u->ticket, &s, &e, &pg);
	if (err == ENOMEM)
		return err; /* a full wiring needs more memory, not less */
	if (err)
		return wire_range(addr, len, u->wire_flags, segsp, nsegp, &u->ticket);
	*one = (struct wire_seg){ .start = s, .end = e, .pgsz = pg, .hugetlb = pg > PAGE_4K };
	*nsegp = 1;
	return 0;
}

int umem_lock(struct ubdma_ctx *ctx, void *addr, size_t len, int flags, const struct iommu_window *lim,
	      struct ubdma_umem **cookiep)
{
	uintptr_t a = (uintptr_t)addr;
	struct wire_seg one, *segs = NULL;
	struct ubdma_umem *u;
	int nseg = 0, err;

	if (!ctx || !cookiep)
		return uerr(EINVAL, "%s is NULL", ctx ? "cookiep" : "ctx");
	if (!(flags & (UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)) || (flags & ~(UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)))
		return uerr(EINVAL, "flags 0x%x: need UBDMA_UMEM_READ and/or UBDMA_UMEM_WRITE, nothing else", flags);
	if ((a | len) & PAGE_4K_MASK || len == 0)
		return uerr(EINVAL, "addr %p and len %zu must be non-zero multiples of 4096", addr, len);
	if (a + len < a)
		return uerr(EINVAL, "range %p + %zu wraps around the address space", addr, len);
	if ((u = __atomic_exchange_n(&ctx->umem_spare, NULL, __ATOMIC_ACQUIRE)))
		memset(u, 0, sizeof(*u));
	else if (!(u = calloc(1, sizeof(*u))))
		return uerr(ENOMEM, "out of memory");
	u->ctx = ctx;
	u->start = a;
	u->end = a + len;
	u->flags = flags;
	u->wire_flags = flags & UBDMA_UMEM_WRITE ? UBDMA_WIRE_WRITE : 0;
	if ((err = umem_wire(ctx, u, &one, &segs, &nseg)))
		goto fail_free;
	if ((err = chunks_map(ctx, u, segs ? segs : &one, nseg, lim)))
		goto fail_unwire;
	pthread_mutex_lock(&ctx->reg_lock);
	if (registry_link(ctx, u)) {
		pthread_mutex_unlock(&ctx->reg_lock);
		chunks_unmap(ctx, u, u->nchunks);
		err = uerr(ENOMEM, "out of memory");
		goto fail_unwire;
	}
	/* not wire_ticket_unchanged(): the monitor holds the wire lock from its read() of an event
	 * until the event is applied, so the check must also see a replacement whose event is in
	 * flight; a watched cookie's check sees it without the lock (wire.h says how), a wired
	 * one's under it (docs/wire.md section 14, "The guest") */
	if ((err = registry_apply(ctx, umem_lo(u), umem_hi(u), 1)) || !wire_ticket_alive_watch(u->ticket)) {
		/* not alive: unmapped (or replaced) since it was wired, and a settle may have come
		 * and gone before the cookie was in the map: it must not stay there */
		err = err ? uerr(ENOMEM, "out of memory for the translation map") :
			    uerr(EFAULT, "[%p, %p) was unmapped while it was being locked", addr,
				 (void *)(a + len));
		registry_unlink(ctx, u);
		registry_apply(ctx, umem_lo(u), umem_hi(u), 0);
		pthread_mutex_unlock(&ctx->reg_lock);
		chunks_unmap(ctx, u, u->nchunks);
		goto fail_unwire;
	}
	pthread_mutex_unlock(&ctx->reg_lock);
	if (segs) /* a watched cookie has none */
		free(segs);
	*cookiep = u;
	return 0;

fail_unwire:
	wire_release(u->ticket);
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

/* Out of line, so that the look-up's fast path keeps no frame for a varargs call it never makes. */
static __attribute__((cold, noinline)) ubdma_iova_t umem_iova_null(void)
{
	errno = uerr_at("ubdma_umem_iova", EINVAL, "NULL cookie");
	return UBDMA_BAD_IOVA;
}

ubdma_iova_t ubdma_umem_iova(const ubdma_umem_t *u, const void *addr)
{
	uintptr_t a = (uintptr_t)addr;

	if (__builtin_expect(!u, 0))
		return umem_iova_null();
	if (a < u->start || a >= u->end)
		return UBDMA_BAD_IOVA;
	for (int i = 0; i < u->nchunks; i++) {
		const struct umem_chunk *c = &u->chunks[i];
		if (a >= c->va && a - c->va < c->npages * c->pgsz)
			return umem_chunk_iova(c, a);
	}
	return UBDMA_BAD_IOVA;
}

/* Hidden cookies stay on the list (ubdma_ctx_close() finds them) but cover nothing. */
static void hide_locked(struct ubdma_ctx *ctx, struct ubdma_umem *u)
{
	if (!u->hidden) {
		u->hidden = 1;
		registry_apply(ctx, umem_lo(u), umem_hi(u), 0);
	}
}

void umem_hide(struct ubdma_umem *u)
{
	struct ubdma_ctx *ctx = u->ctx;

	pthread_mutex_lock(&ctx->reg_lock);
	hide_locked(ctx, u);
	pthread_mutex_unlock(&ctx->reg_lock);
}

/*
 * Cookies whose wiring the address space ended (munmap, mremap, MAP_FIXED over, DONTNEED_LOCKED)
 * leave the map: new memory at the address must not translate to the old frames.  The cookie
 * itself lives on for its holder (its IOMMU mapping too) until ubdma_umem_unlock().
 */
static void hide_dead(struct ubdma_ctx *ctx)
{
	uint64_t seq = wire_end_seq();
	struct ubdma_umem *u;

	pthread_mutex_lock(&ctx->reg_lock);
	if (ctx->end_seen != seq) {
		LIST_FOREACH(u, &ctx->umems, link)
			if (!u->hidden && !wire_ticket_alive(u->ticket))
				hide_locked(ctx, u);
		ctx->end_seen = seq;
	}
	pthread_mutex_unlock(&ctx->reg_lock);
}

void ctx_settle_slow(struct ubdma_ctx *ctx)
{
	uint64_t g = wmon_epoch();

	wmon_wait(g);
	ctx_layers_settle(ctx);
	hide_dead(ctx);
	uint64_t s = __atomic_load_n(&ctx->stale_settled, __ATOMIC_RELAXED);
	while (s < g && !__atomic_compare_exchange_n(&ctx->stale_settled, &s, g, 1, __ATOMIC_RELEASE,
						     __ATOMIC_RELAXED))
		;
}

void ubdma_umem_unlock(ubdma_umem_t *u)
{
	struct ubdma_ctx *ctx;

	if (!u)
		return;
	ctx = u->ctx;
	pthread_mutex_lock(&ctx->reg_lock);
	registry_unlink(ctx, u);
	if (!u->hidden)
		registry_apply(ctx, umem_lo(u), umem_hi(u), 0);
	pthread_mutex_unlock(&ctx->reg_lock);
	chunks_unmap(ctx, u, u->nchunks);
	/* only what this cookie wired, and only where that wiring still exists */
	wire_release(u->ticket);
	chunks_free(u);
	/* kept as the context's spare (umem_lock() takes it) unless one is there already */
	struct ubdma_umem *none = NULL;
	if (!__atomic_compare_exchange_n(&ctx->umem_spare, &none, u, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		free(u);
}
