/*
 * load.c - the segment builder and the load variants (ubdma_map_load, _iov, _sg) that all go
 * through it, as FreeBSD funnels every load through _bus_dmamap_load_buffer().
 *
 * The builder walks the buffer run by run: xlate_lookup_run() gives the IOVA of a virtual address
 * and how far the translation stays linear (to the end of a 4 KiB page or a 2 MiB leaf).  A run
 * that satisfies the tag becomes segments directly; otherwise it is cut into page pieces (pieces
 * of the buffer that do not cross a 4 KiB virtual page) and each piece is judged on its own, as
 * FreeBSD's must_bounce() judges each page: it bounces when it is not registered in the context,
 * when its IOVAs touch the exclusion window (lowaddr, highaddr], when it would start a segment off
 * the tag's alignment, or (UBDMA_STRICT) when it does not own its whole page.  FreeBSD bounces
 * every page whose address is off the alignment, even one that continues a segment; we read
 * alignment as bus_dma(9) describes it, a rule on where transfers start, so a registered buffer
 * that starts aligned is used in place whatever the alignment (and DMA memory never bounces).
 *
 * Segments: a segment never crosses a multiple of the boundary and never exceeds maxsegsz; a piece
 * extends the previous segment only when it starts where that segment ends and the result still
 * respects both.  A bounced piece always starts a segment of its own and nothing extends it: the
 * number of segments then depends only on the buffer and the tag, never on which bounce slots the
 * pool handed out, so EFBIG is decided before any slot is taken (FreeBSD merges contiguous bounce
 * pages; we chose determinism).
 *
 * The fast path (nothing bounces) takes no lock, makes no system call and allocates nothing: it
 * writes into the map's segment array, made with the map.  When a piece must bounce, the load
 * counts the slots and segments it needs (BUILD_COUNT), reserves the slots (bounce.c, the only
 * place with a lock), then builds again with them (BUILD_BOUNCE).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/page.h"
#include "busdma/busdma_int.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Append the IOVA range [a, a + n) to the segment list, honouring boundary and maxsegsz. */
static inline int seg_add(struct build *b, uint64_t a, uint64_t n)
{
	const struct ubdma_tag *t = b->tag;
	const uint64_t bmask = t->boundary ? ~(t->boundary - 1) : 0;

	while (n) {
		uint64_t take = n;
		if (t->boundary) {
			uint64_t room = t->boundary - (a & (t->boundary - 1));
			take = take < room ? take : room;
		}
		if (!b->nomerge && b->nseg && b->last_end == a && b->last_len < t->maxsegsz &&
		    !((b->last_addr ^ a) & bmask)) {
			uint64_t room = t->maxsegsz - b->last_len;
			take = take < room ? take : room;
			b->last_len += take;
			if (b->segs)
				b->segs[b->nseg - 1].ds_len = b->last_len;
		} else {
			take = take < t->maxsegsz ? take : t->maxsegsz;
			if (unlikely(b->nseg == b->cap))
				return EFBIG;
			b->last_addr = a;
			b->last_len = take;
			if (b->segs)
				b->segs[b->nseg] = (ubdma_seg_t){ a, take };
			b->nseg++;
		}
		b->nomerge = 0;
		a += take;
		n -= take;
		b->last_end = a;
	}
	return 0;
}

/* A page piece [va, va + n) that must go through a bounce slot. */
static int bounce_piece(struct build *b, uintptr_t va, size_t n)
{
	/* COUNT: slots start on the slot alignment, as 0 does; KEEP_PG_OFFSET keeps the piece's
	 * offset in its 4 KiB page (a piece never crosses one, so it fits the slot) */
	const size_t off = (b->tag->flags & UBDMA_KEEP_PG_OFFSET) ? (va & PAGE_4K_MASK) : 0;
	uint64_t iova = off;
	int err;

	if (b->mode == BUILD_FAST)
		return BUILD_NEED_BOUNCE;
	if (b->mode == BUILD_BOUNCE) {
		struct bounce_page *p = b->reserved;
		if (!p)
			return BUILD_NEED_BOUNCE; /* the translation changed since the count */
		b->reserved = p->next;
		p->client = va;
		p->len = n;
		p->off = off;
		p->next = b->used;
		b->used = p;
		iova = p->iova + off;
	}
	b->npages++;
	b->nomerge = 1;
	err = seg_add(b, iova, n);
	b->nomerge = 1;
	return err;
}

/* Whether a piece at IOVA a would extend the last segment (contiguous, within both limits). */
static inline int can_extend(const struct build *b, uint64_t a)
{
	const struct ubdma_tag *t = b->tag;

	return !b->nomerge && b->nseg && b->last_end == a && b->last_len < t->maxsegsz &&
	       !(t->boundary && ((b->last_addr ^ a) & ~(t->boundary - 1)));
}

static inline int in_window(const struct ubdma_tag *t, uint64_t iova, size_t n)
{
	return iova + n - 1 > t->lowaddr && iova <= t->highaddr;
}

/*
 * Whether a page piece at IOVA iova, n bytes, may be used in place: outside the window, whole
 * (STRICT), and either on the alignment or extending the last segment (then it starts no segment,
 * and alignment is a rule about where segments start).
 */
static inline int piece_ok(const struct build *b, uint64_t iova, size_t n, int strict)
{
	const struct ubdma_tag *t = b->tag;

	return !in_window(t, iova, n) && !(strict && n != PAGE_4K) &&
	       (!(iova & t->amask) || can_extend(b, iova));
}

/* A run [va, va + n) linear in IOVA from iova that cannot be taken whole: judge it page by page. */
static int build_pages(struct build *b, uintptr_t va, uint64_t iova, size_t n, int strict)
{
	const uintptr_t end = va + n;

	while (va < end) {
		size_t m = PAGE_4K - (va & PAGE_4K_MASK);
		m = m < end - va ? m : end - va;
		int err = piece_ok(b, iova, m, strict) ? seg_add(b, iova, m) : bounce_piece(b, va, m);
		if (err)
			return err;
		va += m;
		iova += m;
	}
	return 0;
}

static int build_piece(struct build *b, uintptr_t va, size_t len)
{
	const struct ubdma_tag *t = b->tag;
	const struct xlate_map *xm = &t->ctx->xlate;
	const int strict = t->flags & UBDMA_STRICT;
	const uintptr_t end = va + len;

	while (va < end) {
		size_t run, n;
		uint64_t iova = xlate_lookup_run(xm, va, &run);
		int err;

		if (unlikely(iova == UBDMA_BAD_IOVA)) {
			/* not registered: bounce rather than pin behind the user's back */
			n = PAGE_4K - (va & PAGE_4K_MASK);
			n = n < end - va ? n : end - va;
			err = bounce_piece(b, va, n);
		} else {
			n = run < end - va ? run : end - va;
			/* the whole run is usable when it misses the window, its first piece is on the
			 * alignment or extends the last segment, every later page start is aligned too
			 * (alignment <= 4 KiB, or a single page) and, with STRICT, it holds whole pages */
			if (likely(!in_window(t, iova, n) && (!(iova & t->amask) || can_extend(b, iova)) &&
				   (t->amask < PAGE_4K || (va & PAGE_4K_MASK) + n <= PAGE_4K) &&
				   !(strict && ((va | (va + n)) & PAGE_4K_MASK))))
				err = seg_add(b, iova, n);
			else
				err = build_pages(b, va, iova, n, strict);
		}
		if (err)
			return err;
		va += n;
	}
	return 0;
}

int busdma_build(struct build *b, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++) {
		if (!iov[i].iov_len)
			continue;
		int err = build_piece(b, (uintptr_t)iov[i].iov_base, iov[i].iov_len);
		if (err)
			return err;
	}
	return 0;
}

/* ------------------------------------------------------------ the load front door */

/* Give a build's slots back: those it took and those it did not need. */
static void build_release(struct ubdma_tag *t, struct build *b)
{
	struct bounce_page *all = b->reserved;

	while (b->used) {
		struct bounce_page *p = b->used;
		b->used = p->next;
		p->next = all;
		all = p;
	}
	b->reserved = NULL;
	if (all)
		bounce_release(t, all);
}

/* Build with reserved slots into out; on success the map holds them. */
static int build_bounced(struct ubdma_tag *t, struct ubdma_map *m, const struct iovec *iov, int iovcnt,
			 ubdma_seg_t *out, struct bounce_page *pages)
{
	struct build b = { .tag = t, .mode = BUILD_BOUNCE, .segs = out, .cap = t->seg_cap, .reserved = pages };
	int err = busdma_build(&b, iov, iovcnt);

	if (err) {
		build_release(t, &b);
		return err;
	}
	if (b.reserved) { /* the translation changed: fewer slots were needed */
		struct bounce_page *spare = b.reserved;
		b.reserved = NULL;
		bounce_release(t, spare);
	}
	m->bpages = b.used;
	m->nseg = b.nseg;
	m->state = MAP_LOADED;
	return 0;
}

/* Save a load's request in the map so that it can run later (WAITOK).  iov is copied. */
static int save_request(struct ubdma_map *m, const struct iovec *iov, int iovcnt, int flags,
			ubdma_callback_t *cb, void *arg)
{
	/* one piece (ubdma_map_load) is kept in the map; a longer list is copied (the only
	 * allocation of a load, on the bounce path of a WAITOK load_iov) */
	m->wait_iov = &m->wait_iov1;
	if (iovcnt > 1 && !(m->wait_iov = malloc((size_t)iovcnt * sizeof(*iov))))
		return ENOMEM;
	memcpy(m->wait_iov, iov, (size_t)iovcnt * sizeof(*iov));
	m->wait_iovcnt = iovcnt;
	m->wait_flags = flags;
	m->wait_cb = cb;
	m->wait_arg = arg;
	return 0;
}

static void drop_request(struct ubdma_map *m)
{
	if (m->wait_iov != &m->wait_iov1)
		free(m->wait_iov);
	m->wait_iov = NULL;
	m->wait_iovcnt = 0;
}

/*
 * The slow path: the buffer needs bounce slots.  Returns 0 (loaded), EFBIG, ENOMEM, or
 * EINPROGRESS (queued; the callback runs later).
 */
static int load_bounce(struct ubdma_tag *t, struct ubdma_map *m, const struct iovec *iov, int iovcnt,
		       ubdma_seg_t *out, int flags, ubdma_callback_t *cb, void *arg)
{
	for (int attempt = 0; attempt < 4; attempt++) {
		struct build c = { .tag = t, .mode = BUILD_COUNT, .cap = t->seg_cap };
		struct bounce_page *pages = NULL;
		int err = busdma_build(&c, iov, iovcnt);

		if (err)
			return err; /* EFBIG: decided before any slot is taken */
		if (!c.npages) { /* the translation changed: nothing bounces any more */
			struct build f = { .tag = t, .mode = BUILD_FAST, .segs = out, .cap = t->seg_cap };
			if ((err = busdma_build(&f, iov, iovcnt)) == BUILD_NEED_BOUNCE)
				continue;
			if (!err) {
				m->nseg = f.nseg;
				m->state = MAP_LOADED;
			}
			return err;
		}
		/* a deferred load needs its request saved before it is queued: another thread
		 * may run it as soon as the pool lock drops */
		if (!(flags & UBDMA_NOWAIT) && cb && save_request(m, iov, iovcnt, flags, cb, arg))
			return ENOMEM;
		err = bounce_reserve(t, m, c.npages, cb ? flags : UBDMA_NOWAIT, &pages);
		if (err == EINPROGRESS)
			return err;
		drop_request(m);
		if (err)
			return err;
		err = build_bounced(t, m, iov, iovcnt, out, pages);
		if (err != BUILD_NEED_BOUNCE)
			return err;
	}
	return uerr(ENOMEM, "the buffer's registration kept changing during the load");
}

void busdma_load_deferred(struct ubdma_map *m, struct bounce_page *pages)
{
	struct ubdma_tag *t = m->tag;
	ubdma_callback_t *cb = m->wait_cb;
	void *arg = m->wait_arg;
	int err;

	ctx_settle(t->ctx); /* the buffer may have been unmapped and mapped again while it waited */
	err = build_bounced(t, m, m->wait_iov, m->wait_iovcnt, m->segs, pages);

	drop_request(m);
	if (err) {
		/* BUILD_NEED_BOUNCE: the buffer's registration changed while the load waited */
		err = err == EFBIG ? EFBIG : ENOMEM;
		m->state = MAP_IDLE;
		ULOG_DEBUG("deferred load of map %p on tag %p failed: error %d", (void *)m, (void *)t, err);
		cb(arg, m->segs, 0, err);
		return;
	}
	cb(arg, m->segs, m->nseg, 0);
}

/*
 * Whether [buf, buf + len) is a range the builder can walk.  Its end must be an address: the
 * builder stops at buf + len, so a range that wraps past 2^64 (or ends exactly there) would load
 * none of its bytes and still succeed.  NULL holds no bytes: a piece there would bounce and the
 * first sync would copy from address 0.  Empty ranges are fine wherever they point, as in
 * bus_dmamap_load(9), which loads them as zero segments.
 */
static inline int range_bad(const void *buf, size_t len)
{
	return len && (!buf || len > UINTPTR_MAX - (uintptr_t)buf);
}

/* Say why range_bad() refused piece i of a load (i < 0: the load's only buffer).  Returns EINVAL. */
static int range_err(const void *buf, size_t len, int i)
{
	char what[40] = "buffer";

	if (i >= 0)
		snprintf(what, sizeof(what), "scatter list piece %d", i);
	if (!buf)
		return uerr(EINVAL, "%s is NULL with length %zu", what, len);
	return uerr(EINVAL, "%s [%p, +%#zx) wraps past the end of the address space", what, buf, len);
}

/* Checks shared by the variants.  Return 0 or EINVAL. */
static int load_check(const struct ubdma_tag *t, const struct ubdma_map *m, size_t len, int flags)
{
	if (!t || !m)
		return uerr(EINVAL, "%s is NULL", t ? "map" : "tag");
	if (m->tag != t)
		return uerr(EINVAL, "map %p belongs to tag %p, not %p", (const void *)m, (const void *)m->tag,
			    (const void *)t);
	if (m->state != MAP_IDLE)
		return uerr(EINVAL, "map %p is %s: unload it first", (const void *)m,
			    m->state == MAP_LOADED ? "loaded" : "waiting for bounce pages");
	if (len > t->maxsize)
		return uerr(EINVAL, "load of %zu bytes exceeds the tag's maxsize %zu", len, t->maxsize);
	if (flags & ~UBDMA_NOWAIT)
		return uerr(EINVAL, "unknown load flags %#x", flags & ~UBDMA_NOWAIT);
	return 0;
}

/* Run a load; 0 with the map loaded, or EFBIG / ENOMEM / EINPROGRESS with the map unchanged. */
static inline int load_run(struct ubdma_tag *t, struct ubdma_map *m, const struct iovec *iov, int iovcnt,
			   ubdma_seg_t *out, int flags, ubdma_callback_t *cb, void *arg)
{
	struct build b = { .tag = t, .mode = BUILD_FAST, .segs = out, .cap = t->seg_cap };
	int err;

	ctx_settle(t->ctx); /* memory unmapped before the load must not translate to old frames */
	err = busdma_build(&b, iov, iovcnt);
	if (likely(!err)) {
		m->nseg = b.nseg;
		m->state = MAP_LOADED;
		return 0;
	}
	if (err == BUILD_NEED_BOUNCE)
		err = load_bounce(t, m, iov, iovcnt, out, flags, cb, arg);
	if (err && err != EINPROGRESS)
		ULOG_DEBUG("load on map %p tag %p flags %#x failed: error %d", (void *)m, (void *)t, flags, err);
	return err;
}

/* bus_dmamap_load(9): an error reaches the callback with nseg 0; only ENOMEM is also returned. */
static int load_done(struct ubdma_map *m, int err, ubdma_callback_t *cb, void *arg)
{
	if (likely(!err)) {
		cb(arg, m->segs, m->nseg, 0);
		return 0;
	}
	if (err == EINPROGRESS)
		return err;
	if (err == EFBIG)
		uerr(EFBIG, "the load needs more than the tag's %d segments", m->tag->nsegments);
	/* ENOMEM: the bounce layer said why */
	cb(arg, m->segs, 0, err);
	return err == ENOMEM ? ENOMEM : 0;
}

/*
 * The one-segment load: a non-empty buffer inside one run of the translation map (one 4 KiB page
 * or one 2 MiB leaf) that the tag takes whole: outside the window, on the alignment (and within a
 * 4 KiB page when the alignment is larger), not crossing a boundary, within maxsegsz, whole pages
 * under STRICT.  Exactly what busdma_build() makes of such a buffer (one seg_add() that neither
 * splits nor bounces), without the builder's state: one translation and one segment write.
 * 0 when the buffer is not such a one (the caller builds it the long way).  Settled by the caller.
 */
static inline int load_one_fast(const struct ubdma_tag *t, const struct ubdma_ctx *ctx, ubdma_seg_t *out,
				uintptr_t va, size_t len)
{
	uint64_t iova;
	size_t run;

	/* (an empty buffer or one longer than a segment was sent the long way by the caller, before
	 * anything else was read) xlate_lookup_run() with its failures folded into ours (NULL and
	 * addresses above the map, 2^47, in one compare) */
	if (unlikely(va - PAGE_4K >= (UINT64_C(1) << XLATE_VA_BITS) - PAGE_4K))
		return 0;
	const uint64_t *l2 = __atomic_load_n(&ctx->xlate.l1[va >> XLATE_L1_SHIFT], __ATOMIC_ACQUIRE);
	if (unlikely(!l2))
		return 0;
	uint64_t e = xlate_load(&l2[(va >> XLATE_L2_SHIFT) & 511]);
	if (e & XLATE_VALID) {
		iova = (e & XLATE_ADDR_MASK) + (va & (XLATE_GRANULE - 1));
		run = XLATE_GRANULE - (va & (XLATE_GRANULE - 1));
	} else {
		run = PAGE_4K - (va & PAGE_4K_MASK);
		/* a buffer past its 4 KiB page is not one run here: the long way, without the load */
		if (unlikely(!e || len > run))
			return 0;
		uint64_t p = xlate_load(xlate_page_slot(e, va));
		if (unlikely(!(p & XLATE_VALID)))
			return 0;
		iova = (p & XLATE_ADDR_MASK) + (va & PAGE_4K_MASK);
	}
	if (unlikely(len > run || in_window(t, iova, len) || (iova & t->amask)))
		return 0;
	if (unlikely(!t->fastseg && ((t->amask >= PAGE_4K && (va & PAGE_4K_MASK) + len > PAGE_4K) ||
				     (t->boundary && ((iova ^ (iova + len - 1)) & ~(t->boundary - 1))) ||
				     ((t->flags & UBDMA_STRICT) && ((va | (va + len)) & PAGE_4K_MASK)))))
		return 0;
	out[0] = (ubdma_seg_t){ iova, len };
	return 1;
}

/* The builder's way for one buffer, once the arguments other than the buffer are checked. */
static __attribute__((noinline)) int map_load_build(ubdma_tag_t *tag, ubdma_map_t *map, void *buf, size_t len,
						    ubdma_callback_t *cb, void *arg, int flags)
{
	if (unlikely(range_bad(buf, len)))
		return range_err(buf, len, -1);
	const struct iovec v = { buf, len };
	return load_done(map, load_run(tag, map, &v, 1, map->segs, flags, cb, arg), cb, arg);
}

/* ubdma_map_load() past its one-segment case: the checks' errors, the builder, bounces. */
static __attribute__((noinline)) int map_load_long(ubdma_tag_t *tag, ubdma_map_t *map, void *buf, size_t len,
						   ubdma_callback_t *cb, void *arg, int flags)
{
	if (unlikely(!cb || !tag || !map || map->tag != tag || map->state != MAP_IDLE || len > tag->maxsize ||
		     (flags & ~UBDMA_NOWAIT) || range_bad(buf, len))) {
		if (!cb)
			return uerr(EINVAL, "callback is NULL");
		int err = load_check(tag, map, len, flags);
		return err ? err : range_err(buf, len, -1);
	}
	return map_load_build(tag, map, buf, len, cb, arg, flags);
}

/*
 * The front door keeps only the one-segment load (load_one_fast()) inline, so that it needs no
 * stack frame of the builder's size; a buffer it does not take goes to map_load_build() with its
 * arguments checked, and bad arguments to map_load_long(), which says what is wrong.  Both settle
 * the context themselves.
 */
int ubdma_map_load(ubdma_tag_t *tag, ubdma_map_t *map, void *buf, size_t len, ubdma_callback_t *cb,
		   void *arg, int flags)
{
	const struct ubdma_ctx *ctx;

	/* a map's tag is never NULL, so map->tag == tag also refuses a NULL tag; a buffer the fast
	 * path takes is registered and lies in one run of the map: neither NULL nor wrapping */
	if (unlikely(!cb || !map || map->tag != tag || map->state != MAP_IDLE || len > tag->maxsize ||
		     (flags & ~UBDMA_NOWAIT)))
		return map_load_long(tag, map, buf, len, cb, arg, flags);
	if (likely(len - 1 < tag->maxsegsz && (ctx = tag->ctx) &&
		   /* settled: memory unmapped before the load must not translate to old frames */
		   wmon_epoch() == __atomic_load_n(&ctx->stale_settled, __ATOMIC_ACQUIRE) &&
		   load_one_fast(tag, ctx, map->segs, (uintptr_t)buf, len))) {
		map->nseg = 1;
		map->state = MAP_LOADED;
		cb(arg, map->segs, 1, 0);
		return 0;
	}
	return map_load_build(tag, map, buf, len, cb, arg, flags);
}

int ubdma_map_load_iov(ubdma_tag_t *tag, ubdma_map_t *map, const struct iovec *iov, int iovcnt,
		       ubdma_callback_t *cb, void *arg, int flags)
{
	size_t total = 0;

	if (!cb)
		return uerr(EINVAL, "callback is NULL");
	if (iovcnt < 0 || (iovcnt && !iov))
		return uerr(EINVAL, "bad scatter list: %d pieces at %p", iovcnt, (const void *)iov);
	for (int i = 0; i < iovcnt; i++) {
		if (range_bad(iov[i].iov_base, iov[i].iov_len))
			return range_err(iov[i].iov_base, iov[i].iov_len, i);
		if (total + iov[i].iov_len < total)
			return uerr(EINVAL, "scatter list length overflows");
		total += iov[i].iov_len;
	}
	int err = load_check(tag, map, total, flags);
	if (err)
		return err;
	return load_done(map, load_run(tag, map, iov, iovcnt, map->segs, flags, cb, arg), cb, arg);
}

int ubdma_map_load_sg(ubdma_tag_t *tag, ubdma_map_t *map, void *buf, size_t len, ubdma_seg_t *segs,
		      int *nsegs, int flags)
{
	if (unlikely(!segs || !nsegs))
		return uerr(EINVAL, "%s is NULL", segs ? "nsegs" : "segs");
	*nsegs = 0;
	int err = load_check(tag, map, len, flags);
	if (err)
		return err;
	if (unlikely(range_bad(buf, len)))
		return range_err(buf, len, -1);
	const struct iovec v = { buf, len };
	/* no callback, so never deferred: a shortage of bounce pages is ENOMEM at once */
	err = load_run(tag, map, &v, 1, segs, flags | UBDMA_NOWAIT, NULL, NULL);
	if (likely(!err)) {
		*nsegs = map->nseg;
		return 0;
	}
	return err == EFBIG ? uerr(EFBIG, "the load needs more than the tag's %d segments", tag->nsegments) : err;
}
