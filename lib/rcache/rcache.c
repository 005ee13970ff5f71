/*
 * rcache.c - the registration (pin-down) cache of a context: look-up by range, references,
 * merging, CLOCK eviction under limits, invalidation, statistics and fork.
 *
 * Index: a sorted array of entries that never overlap, each a range [lo, hi) wired and
 * registered in the cache's domain (domain.c: a locked-memory cookie of the context's IOMMU, or
 * a registrar's key).  A hit is a binary search under the shared lock and an
 * atomic increment of the entry's reference; nothing is written but the entry's own cache line.
 * An entry carries one reference for being in the index; a put that drops the last reference
 * of an entry already out of the index destroys it.
 *
 * Replacement is CLOCK (second chance), an approximation of LRU that needs no list update on a
 * hit: a hit sets the entry's used bit; the eviction scan walks from the oldest entry, gives a
 * used entry a second chance (clears the bit, moves it to the young end), skips referenced
 * entries and evicts the first unreferenced, unused one.
 *
 * A miss registers the union of the request and the entries that overlap it (any intent: the
 * union of intents) or touch it (same intent).  It registers the range with the monitor before
 * it wires it, so that any unmap from then on produces an event; the events applied meanwhile
 * are in a ring of recent invalidated ranges, and a miss that overlapped one starts over.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/log.h"
#include "base/page.h"
#include "core/ctx.h"
#include "rcache/rcache_int.h"

#define TRUNC(x, a) ((x) & ~((uintptr_t)(a) - 1))
#define ROUND(x, a) (((x) + (a) - 1) & ~((uintptr_t)(a) - 1))
#define MISS_ATTEMPTS 8

#ifdef NDEBUG
#define RC_ASSERT(x) ((void)0)
#else
#include <assert.h>
#define RC_ASSERT(x) assert(x)
#endif

static pthread_mutex_t rc_global = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, rcache) rc_list = LIST_HEAD_INITIALIZER(rc_list); /* every cache, for fork */

static inline uint64_t ld(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void add(uint64_t *p, uint64_t v)
{
	__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static struct rcache *rc_of(struct ubdma_ctx *ctx)
{
	return ctx_layer_state(ctx, CTX_LAYER_RCACHE);
}

/*
 * Hit counters, one per thread and cache: a hit adds to its own counter with a plain store, so
 * hits of different threads never write the same cache line.  A thread keeps the counters of
 * its last four caches; one that cycles through more contexts gets new counters (kept until the
 * cache goes).
 */
#define TL_SLOTS 4
static __thread struct {
	uint64_t id;
	struct rc_ctr *c;
} tl_ctr[TL_SLOTS] __attribute__((tls_model("initial-exec")));
static __thread unsigned tl_next __attribute__((tls_model("initial-exec")));
static uint64_t rc_ids;

static __attribute__((noinline)) void count_hit_slow(struct rcache *rc)
{
	struct rc_ctr *c = calloc(1, sizeof(*c));

	if (!c)
		return; /* the hit is not counted: better than failing it */
	c->hits = 1;
	pthread_mutex_lock(&rc->all_lock);
	c->next = rc->ctrs;
	rc->ctrs = c;
	pthread_mutex_unlock(&rc->all_lock);
	unsigned i = tl_next++ % TL_SLOTS;
	tl_ctr[i].id = rc->id;
	tl_ctr[i].c = c;
}

static inline void count_hit(struct rcache *rc)
{
	for (int i = 0; i < TL_SLOTS; i++)
		if (tl_ctr[i].id == rc->id) {
			struct rc_ctr *c = tl_ctr[i].c;
			__atomic_store_n(&c->hits, c->hits + 1, __ATOMIC_RELAXED);
			return;
		}
	count_hit_slow(rc);
}

/* ------------------------------------------------------------------ index */

/* Position of the first entry with lo > a (so the candidate holding a is the one before). */
static size_t idx_upper(const struct rcache *rc, uintptr_t a)
{
	size_t lo = 0, hi = rc->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (rc->ix->e[mid]->lo <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The entry covering [a, b) with at least flags, or NULL.  Lock held (either mode). */
static struct ubdma_reg *idx_lookup(const struct rcache *rc, uintptr_t a, uintptr_t b, int flags)
{
	size_t i = idx_upper(rc, a);
	struct ubdma_reg *r;

	if (i == 0)
		return NULL;
	r = rc->ix->e[i - 1];
	if (r->hi < b || (r->flags & flags) != flags)
		return NULL;
	RC_ASSERT(!r->dead);
	return r;
}

static size_t idx_pos(const struct rcache *rc, const struct ubdma_reg *r)
{
	size_t i = idx_upper(rc, r->lo);

	RC_ASSERT(i > 0 && rc->ix->e[i - 1] == r);
	return i - 1;
}

static void seq_begin(struct rcache *rc)
{
	__atomic_store_n(&rc->seq, rc->seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void seq_end(struct rcache *rc)
{
	__atomic_store_n(&rc->seq, rc->seq + 1, __ATOMIC_RELEASE);
}

/* Room for one more entry: a larger array, published; the old one stays until the cache goes. */
static int idx_reserve(struct rcache *rc)
{
	size_t cap = rc->ix ? rc->ix->cap : 0;

	if (rc->n < cap)
		return 0;
	cap = cap ? cap * 2 : 64;
	/* zeroed: a hit may read a slot past the count it saw; it finds NULL or an entry */
	struct rc_index *n = calloc(1, sizeof(*n) + cap * sizeof(n->e[0]));
	if (!n)
		return ENOMEM;
	n->cap = cap;
	n->older = rc->ix;
	for (size_t i = 0; i < rc->n; i++)
		n->e[i] = rc->ix->e[i];
	seq_begin(rc);
	__atomic_store_n(&rc->ix, n, __ATOMIC_RELEASE);
	seq_end(rc);
	return 0;
}

/* Insert r at i, the position idx_upper(rc, r->lo) gives. */
static void idx_insert(struct rcache *rc, size_t i, struct ubdma_reg *r)
{
	RC_ASSERT(rc->n < rc->ix->cap && i <= rc->n && (i == 0 || rc->ix->e[i - 1]->lo <= r->lo) &&
		  (i == rc->n || rc->ix->e[i]->lo > r->lo));
	seq_begin(rc);
	for (size_t j = rc->n; j > i; j--)
		__atomic_store_n(&rc->ix->e[j], rc->ix->e[j - 1], __ATOMIC_RELAXED);
	__atomic_store_n(&rc->ix->e[i], r, __ATOMIC_RELAXED);
	__atomic_store_n(&rc->n, rc->n + 1, __ATOMIC_RELAXED);
	seq_end(rc);
}

static void idx_remove(struct rcache *rc, size_t i)
{
	seq_begin(rc);
	for (size_t j = i; j + 1 < rc->n; j++)
		__atomic_store_n(&rc->ix->e[j], rc->ix->e[j + 1], __ATOMIC_RELAXED);
	__atomic_store_n(&rc->n, rc->n - 1, __ATOMIC_RELAXED);
	seq_end(rc);
}

/*
 * r's last reference is gone: it leaves the limits' books now, though its destruction (outside
 * the lock, perhaps on another thread, a list of them one after the other) is still to come.  A
 * miss meanwhile must not take those bytes for referenced ones and answer ENOMEM.
 */
static void uncount(struct rcache *rc, const struct ubdma_reg *r)
{
	__atomic_fetch_sub(&rc->bytes, r->hi - r->lo, __ATOMIC_RELAXED);
	__atomic_fetch_sub(&rc->iommu, (uint64_t)r->nchunks, __ATOMIC_RELAXED);
}

/*
 * Take r out of the index and the CLOCK list for good, and drop the index's reference.  When
 * that was the last one r goes on *victims (or the graveyard when victims is NULL: the monitor
 * must not free).  Lock exclusive.
 */
static void remove_locked(struct rcache *rc, struct ubdma_reg *r, struct ubdma_reg **victims)
{
	size_t i = idx_pos(rc, r);

	idx_remove(rc, i);
	TAILQ_REMOVE(&rc->lru, r, lru);
	r->dead = 1;
	/* a holder keeps the entry: its pages must still leave the translation map (rc_unshow()),
	 * or a load of other memory mapped at the address later would get the old frames; set
	 * before the reference drops, after which a put may recycle the entry */
	if (r->umem && __atomic_load_n(&r->ref, __ATOMIC_RELAXED) > 1) {
		__atomic_store_n(&r->unshow, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&rc->unshow_pending, 1, __ATOMIC_RELEASE);
	}
	if (!r->monitored)
		__atomic_fetch_sub(&rc->unmonitored, 1, __ATOMIC_RELAXED);
	if (__atomic_fetch_sub(&r->ref, 1, __ATOMIC_ACQ_REL) == 1) {
		uncount(rc, r);
		if (victims) {
			r->grave_next = *victims;
			*victims = r;
		} else {
			r->grave_next = __atomic_load_n(&rc->grave, __ATOMIC_RELAXED);
			__atomic_store_n(&rc->grave, r, __ATOMIC_RELEASE);
		}
	}
}

static void ring_push(struct rcache *rc, uintptr_t s, uintptr_t e)
{
	struct rc_range *slot = &rc->ring[rc->inval_seq % RC_RING];

	slot->s = s;
	slot->e = e;
	__atomic_store_n(&rc->inval_seq, rc->inval_seq + 1, __ATOMIC_RELEASE);
}

/* Whether a range invalidated since seq0 overlaps [s, e) (or too many went by to tell). */
static int ring_conflict(const struct rcache *rc, uint64_t seq0, uintptr_t s, uintptr_t e)
{
	if (rc->inval_seq - seq0 > RC_RING)
		return 1;
	for (uint64_t q = seq0; q < rc->inval_seq; q++) {
		const struct rc_range *x = &rc->ring[q % RC_RING];
		if (x->s < e && s < x->e)
			return 1;
	}
	return 0;
}

void rc_invalidate_locked(struct rcache *rc, uintptr_t s, uintptr_t e)
{
	size_t i = idx_upper(rc, s);
	uintptr_t rs = s, re = e;

	if (i > 0 && rc->ix->e[i - 1]->hi > s)
		i--;
	while (i < rc->n && rc->ix->e[i]->lo < e) {
		struct ubdma_reg *r = rc->ix->e[i];
		rs = r->lo < rs ? r->lo : rs;
		re = r->hi > re ? r->hi : re;
		remove_locked(rc, r, NULL);
		add(&rc->invalidations, 1);
		ULOG_DEBUG("invalidated [%#lx, %#lx)", (unsigned long)r->lo, (unsigned long)r->hi);
	}
	ring_push(rc, rs, re);
}

/* ------------------------------------------------------------ destruction */

/* Deregister and unwire, through the domain that registered it. */
static void reg_release(struct rcache *rc, const struct ubdma_reg *r)
{
	struct rc_key k = { .lo = r->lo, .hi = r->hi, .key = r->key, .umem = r->umem, .ticket = r->ticket,
			    .nchunks = r->nchunks };

	r->dom->rel(rc, r->ops, r->ops_arg, &k);
}

/* Hits may still be reading a destroyed entry: it is kept for reuse (ref 0 fails their increment). */
static void free_push(struct rcache *rc, struct ubdma_reg *r)
{
	struct ubdma_reg *h = __atomic_load_n(&rc->free, __ATOMIC_RELAXED);

	do
		r->grave_next = h;
	while (!__atomic_compare_exchange_n(&rc->free, &h, r, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}

/*
 * Move the registrations misses made since onto rc->all (reg_track() pushes them on a stack
 * instead of taking all_lock: a miss's one lock round trip less).  Whoever reads or changes the
 * list or nall calls this first.  all_lock held.
 */
static void all_drain(struct rcache *rc)
{
	struct ubdma_reg *r = __atomic_exchange_n(&rc->tracked, NULL, __ATOMIC_ACQUIRE);

	for (; r; r = r->track_next) {
		LIST_INSERT_HEAD(&rc->all, r, all);
		rc->nall++;
	}
}

static void reg_destroy(struct ubdma_reg *r)
{
	struct rcache *rc = r->rc;

	reg_release(rc, r);
	pthread_mutex_lock(&rc->all_lock);
	all_drain(rc); /* r may still be on the stack */
	LIST_REMOVE(r, all);
	rc->nall--;
	pthread_mutex_unlock(&rc->all_lock);
	free_push(rc, r);
}

static void destroy_list(struct ubdma_reg *r)
{
	while (r) {
		struct ubdma_reg *n = r->grave_next;
		reg_destroy(r);
		r = n;
	}
}

/* Destroy what the monitor invalidated and nobody held.  No lock held on entry. */
static __attribute__((noinline)) void reap_grave_slow(struct rcache *rc)
{
	struct ubdma_reg *g;

	urw_wrlock(&rc->lock);
	g = __atomic_exchange_n(&rc->grave, NULL, __ATOMIC_ACQ_REL);
	urw_unlock(&rc->lock);
	destroy_list(g);
}

/* The test inline, the work out of line: under TCG (the test bed's guest) a call and its return
 * cost some 25-30 ns, as much as 20 instructions, and a miss made 33 calls (docs/rcache.md, "The
 * miss's calls"); the same split for rc_unshow(), rc_obtain() and make_room(). */
static inline void reap_grave(struct rcache *rc)
{
	if (__atomic_load_n(&rc->grave, __ATOMIC_ACQUIRE))
		reap_grave_slow(rc);
}

/*
 * Take the entries that left the index while held out of the translation map (their holders
 * keep IOVA, mapping and wiring through ubdma_reg_iova() until the last put).  A reference
 * taken under all_lock keeps each alive while it is hidden.  No lock held on entry; does not
 * run on the monitor thread (umem_hide() allocates).
 */
static __attribute__((noinline)) void rc_unshow_slow(struct rcache *rc)
{
	struct ubdma_reg *batch[16];
	size_t n;

	__atomic_store_n(&rc->unshow_pending, 0, __ATOMIC_SEQ_CST);
	do {
		n = 0;
		pthread_mutex_lock(&rc->all_lock);
		all_drain(rc);
		for (struct ubdma_reg *r = LIST_FIRST(&rc->all); r && n < 16; r = LIST_NEXT(r, all)) {
			if (!__atomic_load_n(&r->unshow, __ATOMIC_RELAXED))
				continue;
			__atomic_store_n(&r->unshow, 0, __ATOMIC_RELAXED);
			uint64_t ref = __atomic_load_n(&r->ref, __ATOMIC_RELAXED);
			do {
				if (!ref)
					break; /* being destroyed: its unlock takes it out of the map */
			} while (!__atomic_compare_exchange_n(&r->ref, &ref, ref + 1, 1, __ATOMIC_ACQUIRE,
							      __ATOMIC_RELAXED));
			if (ref)
				batch[n++] = r;
		}
		pthread_mutex_unlock(&rc->all_lock);
		for (size_t i = 0; i < n; i++) {
			umem_hide(batch[i]->umem);
			ubdma_reg_put(batch[i]);
		}
	} while (n == 16);
}

static inline void rc_unshow(struct rcache *rc)
{
	if (__atomic_load_n(&rc->unshow_pending, __ATOMIC_ACQUIRE))
		rc_unshow_slow(rc);
}

/*
 * rcache_layer.settle: a reader of the translation map saw the monitor begin a batch of events
 * (ctx_settle_slow() waited until it was applied): destroy what the batch invalidated and nobody
 * holds, and take what is held out of the map.
 */
static void rc_settle(struct ubdma_ctx *ctx, void *state)
{
	struct rcache *rc = state;

	(void)ctx;
	reap_grave(rc);
	rc_unshow(rc);
}

static void reap(struct rcache *rc)
{
	reap_grave(rc);
}

/* --------------------------------------------------------------- limits */

struct need {
	uint64_t bytes, entries, iommu;	 /* to add */
	uint64_t bytes_back, entries_back; /* freed by entries the new one replaces */
	uintptr_t xlo, xhi;		 /* entries overlapping this are not evicted */
};

/*
 * 0 when the cache fits with what is added; else ENOMEM (bytes, entries) or ENOSPC (IOMMU).  An
 * evicted entry has left rc->n, rc->bytes and rc->iommu already (idx_remove(), uncount()).
 */
static int over(const struct rcache *rc, const struct need *nd)
{
	if (rc->max_bytes && ld(&rc->bytes) + nd->bytes > rc->max_bytes + nd->bytes_back)
		return ENOMEM;
	if (rc->max_entries && rc->n + nd->entries > rc->max_entries + nd->entries_back)
		return ENOMEM;
	if (rc->max_iommu && ld(&rc->iommu) + nd->iommu > rc->max_iommu)
		return ENOSPC;
	return 0;
}

/*
 * Evict the graveyard and unreferenced entries, CLOCK order, until the cache fits nd (or, with
 * force, at least one goes).  Victims go on *victims, destroyed by the caller after unlocking.
 * Lock exclusive.
 * Return: 0, or the errno of the limit that still does not fit.
 */
static int fit_locked(struct rcache *rc, const struct need *nd, int force, struct ubdma_reg **victims)
{
	/* a used entry gets its second chance in the first sweep only: hits go on without the
	 * lock and mark entries again while we scan, and a scan that kept sparing them would run
	 * out of steps and answer ENOMEM with nothing referenced */
	size_t steps = 2 * rc->n + 2, second = rc->n + 1;
	struct ubdma_reg *r = TAILQ_FIRST(&rc->lru);
	int err;

	/* What the monitor invalidated and nobody holds is out of the books already, but still
	 * wired and mapped until destroyed: with force (the kernel or the IOMMU said "no more")
	 * destroying it is the room asked for. */
	struct ubdma_reg *g0 = __atomic_load_n(&rc->grave, __ATOMIC_ACQUIRE);
	if (g0)
		g0 = __atomic_exchange_n(&rc->grave, NULL, __ATOMIC_ACQ_REL);
	for (struct ubdma_reg *g = g0, *gn; g; g = gn) {
		gn = g->grave_next;
		g->grave_next = *victims;
		*victims = g;
		force = 0;
	}
	while ((err = over(rc, nd)) || force) {
		if (!r)
			r = TAILQ_FIRST(&rc->lru);
		if (!r || steps-- == 0)
			return err ? err : ENOMEM;
		struct ubdma_reg *next = TAILQ_NEXT(r, lru);
		uint64_t one = 1;
		if (r->lo < nd->xhi && nd->xlo < r->hi) {
			r = next;
			continue;
		}
		if (steps >= second && __atomic_load_n(&r->used, __ATOMIC_RELAXED)) {
			__atomic_store_n(&r->used, 0, __ATOMIC_RELAXED);
			TAILQ_REMOVE(&rc->lru, r, lru);
			TAILQ_INSERT_TAIL(&rc->lru, r, lru);
			r = next;
			continue;
		}
		/* referenced entries are skipped: only the index's reference may remain */
		if (!__atomic_compare_exchange_n(&r->ref, &one, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
			r = next;
			continue;
		}
		remove_locked(rc, r, victims);
		add(&rc->evictions, 1);
		force = 0;
		r = next;
	}
	return 0;
}

/* ------------------------------------------------------------- creation */

static void rc_atfork_prepare(void);
static void rc_atfork_parent(void);
static void rc_atfork_child(void);

/* At load time, not on first use: a fork racing the first cache must find the handlers in place. */
__attribute__((constructor)) static void rc_atfork_init(void)
{
	pthread_atfork(rc_atfork_prepare, rc_atfork_parent, rc_atfork_child);
}

static size_t default_max_bytes(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

	return pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz / 4 : (size_t)1 << 32;
}

static int env_monitor(void)
{
	const char *v = getenv("UBDMA_RCACHE_MONITOR");

	return v && !strcmp(v, "explicit") ? UBDMA_RCACHE_MONITOR_EXPLICIT : UBDMA_RCACHE_MONITOR_UFFD;
}

/* The context's cache, made on first use. */
static __attribute__((noinline)) int rc_obtain_slow(struct ubdma_ctx *ctx, struct rcache **rcp)
{
	struct rcache *rc;

	/* set on every path: gcc -O3 cannot see that uerr() never returns 0, and callers test only
	 * the error (-Werror=maybe-uninitialized in the release build) */
	*rcp = NULL;
	pthread_mutex_lock(&rc_global);
	if ((rc = rc_of(ctx))) {
		pthread_mutex_unlock(&rc_global);
		*rcp = rc;
		return 0;
	}
	if (!(rc = calloc(1, sizeof(*rc)))) {
		pthread_mutex_unlock(&rc_global);
		return uerr(ENOMEM, "out of memory for the registration cache");
	}
	rc->ctx = ctx;
	rc->id = __atomic_add_fetch(&rc_ids, 1, __ATOMIC_RELAXED);
	urw_init(&rc->lock); /* calloc's zeroes are that already: said for the reader */
	ulock_init(&rc->miss_lock);
	pthread_mutex_init(&rc->all_lock, NULL);
	rc->max_bytes = default_max_bytes();
	rc->max_entries = 65536;
	rc->want_monitor = env_monitor();
	rc->dom = &rc_dom_iommu;
	snprintf(rc->dom_name, sizeof(rc->dom_name), "iommu");
	rc->mon = rc->want_monitor == UBDMA_RCACHE_MONITOR_UFFD ? MON_START : MON_OFF;
	snprintf(rc->mon_desc, sizeof(rc->mon_desc), "%s",
		 rc->mon == MON_START ? "userfaultfd (not started yet)" : "explicit only: asked for");
	TAILQ_INIT(&rc->lru);
	LIST_INIT(&rc->all);
	LIST_INSERT_HEAD(&rc_list, rc, glink);
	ctx_layer_set(ctx, CTX_LAYER_RCACHE, rc); /* from now on ubdma_ctx_close() runs rc_fini() */
	pthread_mutex_unlock(&rc_global);
	*rcp = rc;
	return 0;
}

static inline int rc_obtain(struct ubdma_ctx *ctx, struct rcache **rcp)
{
	struct rcache *rc = rc_of(ctx);

	if (__builtin_expect(rc != NULL, 1)) {
		*rcp = rc;
		return 0;
	}
	return rc_obtain_slow(ctx, rcp);
}

static void rc_fini(struct ubdma_ctx *ctx, void *state)
{
	struct rcache *rc = state;

	pthread_mutex_lock(&rc_global);
	/* looked for, not assumed: a fork child emptied the list (rc_atfork_child) */
	struct rcache *x;
	LIST_FOREACH(x, &rc_list, glink)
		if (x == rc) {
			LIST_REMOVE(rc, glink);
			break;
		}
	pthread_mutex_unlock(&rc_global);
	ulock_lock(&rc->miss_lock);
	mon_stop(rc);
	ulock_unlock(&rc->miss_lock);
	ctx_layer_set(ctx, CTX_LAYER_RCACHE, NULL); /* no settle from here on: the entries go below */
	/* every registration goes, held or not: they are invalid once the context closes */
	pthread_mutex_lock(&rc->all_lock);
	all_drain(rc);
	pthread_mutex_unlock(&rc->all_lock);
	for (struct ubdma_reg *r; (r = LIST_FIRST(&rc->all));) {
		uint64_t ref = __atomic_load_n(&r->ref, __ATOMIC_RELAXED);
		if (ref > (r->dead ? 0u : 1u))
			ULOG_WARN("registration %p [%#lx, %#lx) still held at close: released", (void *)r,
				  (unsigned long)r->lo, (unsigned long)r->hi);
		reg_destroy(r);
	}
	for (struct rc_slab *x = rc->slabs, *n; x; x = n) {
		n = x->next;
		free(x);
	}
	for (struct rc_index *x = rc->ix, *o; x; x = o) {
		o = x->older;
		free(x);
	}
	for (struct rc_ctr *c = rc->ctrs, *n; c; c = n) {
		n = c->next;
		free(c);
	}
	pthread_mutex_destroy(&rc->all_lock);
	free(rc);
}

const struct ctx_layer rcache_layer = {
	.name = "rcache",
	.settle = rc_settle,
	.fini = rc_fini,
};

/*
 * fork: the child has none of the wired ranges (they are MADV_DONTFORK) and no monitor thread;
 * it starts with an empty cache.  The parent's entries are forgotten, not released: their
 * IOMMU mappings belong to the parent (a VFIO container is shared across fork).
 */
/*
 * Every miss lock before any cache lock: a miss holds its miss lock while it waits for the
 * monitor (wire layer), and the monitor takes each cache's lock in turn to deliver events; had
 * we taken one cache's lock and then waited for another's miss lock, the three would wait for
 * each other.
 */
static void rc_atfork_prepare(void)
{
	struct rcache *rc;

	pthread_mutex_lock(&rc_global);
	LIST_FOREACH(rc, &rc_list, glink)
		ulock_lock(&rc->miss_lock);
	LIST_FOREACH(rc, &rc_list, glink)
		urw_wrlock(&rc->lock);
	LIST_FOREACH(rc, &rc_list, glink) {
		pthread_mutex_lock(&rc->all_lock);
		all_drain(rc);
	}
}

static void rc_atfork_parent(void)
{
	struct rcache *rc;

	LIST_FOREACH(rc, &rc_list, glink) {
		pthread_mutex_unlock(&rc->all_lock);
		urw_unlock(&rc->lock);
		ulock_unlock(&rc->miss_lock);
	}
	pthread_mutex_unlock(&rc_global);
}

static void rc_atfork_child(void)
{
	struct rcache *rc;

	LIST_FOREACH(rc, &rc_list, glink) {
		rc->n = 0;
		TAILQ_INIT(&rc->lru);
		LIST_INIT(&rc->all);
		rc->tracked = NULL;
		rc->grave = NULL;
		rc->nall = rc->bytes = rc->iommu = rc->unmonitored = 0;
		rc->unshow_pending = 0;
		mon_forget(rc);
		/* all_lock is released by the thread that took it (this one's copy); lock and
		 * miss_lock start afresh: a parent's thread that waited for them counted itself in
		 * them, and has no copy here.  Since the child must not use its parent's contexts,
		 * nothing of the child takes them again (below). */
		pthread_mutex_unlock(&rc->all_lock);
		urw_init(&rc->lock);
		ulock_init(&rc->miss_lock);
	}
	/* the parent's caches are not the child's: its own forks must not lock them */
	LIST_INIT(&rc_list);
	pthread_mutex_unlock(&rc_global);
}

/* ------------------------------------------------------------------ miss */

struct plan {
	uintptr_t lo, hi;
	int flags;
	int merged;	/* entries folded in */
	int pos_ok;	/* read without the lock (plan_unlocked()): pos and seq say where */
	size_t pos;	/* entries with lo <= the request's start, at index sequence seq */
	uint64_t seq;
};

/*
 * What the hit path's look-up learnt when it found nothing: the index at sequence seq has pos
 * entries starting at or below the request.  While the sequence is unchanged, the miss's plan
 * and its insert need no search of their own.
 */
struct rc_hint {
	int sure;	/* the index was read whole and holds no entry covering the request */
	uint64_t seq;
	size_t pos;
};

/*
 * The entry covering [a, b) with at least flags; else NULL and the range and intent to register:
 * the request plus what overlaps or touches it.  One search for both.  Lock held.
 */
static struct ubdma_reg *lookup_plan_locked(const struct rcache *rc, uintptr_t a, uintptr_t b, int flags,
					    struct plan *p)
{
	size_t i = idx_upper(rc, a);

	if (i > 0) {
		struct ubdma_reg *r = rc->ix->e[i - 1];
		if (r->hi >= b && (r->flags & flags) == flags) {
			RC_ASSERT(!r->dead);
			return r;
		}
	}
	*p = (struct plan){ .lo = a, .hi = b, .flags = flags };
	i = i >= 2 ? i - 2 : 0; /* an entry ending at a sits before one starting at a */
	for (; i < rc->n && rc->ix->e[i]->lo <= b; i++) {
		const struct ubdma_reg *r = rc->ix->e[i];
		int overlap = r->lo < b && a < r->hi;
		int touch = (r->hi == a || r->lo == b) && r->flags == flags;
		if (!overlap && !touch)
			continue;
		p->lo = r->lo < p->lo ? r->lo : p->lo;
		p->hi = r->hi > p->hi ? r->hi : p->hi;
		p->flags |= r->flags;
		p->merged++;
	}
	return NULL;
}

/*
 * lookup_plan_locked() without the lock, for a miss (miss_lock held, so only the monitor changes
 * the index, and it makes rc->seq odd meanwhile): 1 with the plan when a whole read of the index
 * found no entry covering the request; 0 sends the miss to the locked look-up (an entry found, a
 * change seen).  Atomic loads: the monitor's stores race with them, and the sequence says so.
 */
static int plan_unlocked(struct rcache *rc, uintptr_t a, uintptr_t b, int flags, struct plan *p,
			 const struct rc_hint *hint)
{
	uint64_t seq = __atomic_load_n(&rc->seq, __ATOMIC_ACQUIRE);
	const struct rc_index *ix = __atomic_load_n(&rc->ix, __ATOMIC_ACQUIRE);
	size_t lo = 0, hi, n;
	struct ubdma_reg *r;

	if ((seq & 1) || !ix || (n = __atomic_load_n(&rc->n, __ATOMIC_RELAXED)) > ix->cap)
		return 0;
	if (hint && hint->seq == seq)
		lo = hi = hint->pos; /* the look-up searched this very index */
	else
		hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (!(r = __atomic_load_n(&ix->e[mid], __ATOMIC_RELAXED)))
			return 0;
		if (__atomic_load_n(&r->lo, __ATOMIC_RELAXED) <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	*p = (struct plan){ .lo = a, .hi = b, .flags = flags };
	/* the neighbours: from the entry before the request's start, and the one before that only
	 * when that entry starts at a, the one case in which the earlier one can end at a (entries
	 * never overlap); each step of this loop was some 37 instructions (docs/rcache.md, step 8) */
	size_t i = lo ? lo - 1 : 0;
	if (lo >= 2) {
		if (!(r = __atomic_load_n(&ix->e[lo - 1], __ATOMIC_RELAXED)))
			return 0;
		if (__atomic_load_n(&r->lo, __ATOMIC_RELAXED) == a)
			i = lo - 2;
	}
	for (; i < n; i++) {
		if (!(r = __atomic_load_n(&ix->e[i], __ATOMIC_RELAXED)))
			return 0;
		uintptr_t rlo = __atomic_load_n(&r->lo, __ATOMIC_RELAXED), rhi = __atomic_load_n(&r->hi, __ATOMIC_RELAXED);
		int rf = __atomic_load_n(&r->flags, __ATOMIC_RELAXED);
		if (rlo > b)
			break;
		if (i + 1 == lo && rhi >= b && (rf & flags) == flags)
			return 0; /* it covers the request: the locked path takes the reference */
		int overlap = rlo < b && a < rhi;
		int touch = (rhi == a || rlo == b) && rf == flags;
		if (!overlap && !touch)
			continue;
		p->lo = rlo < p->lo ? rlo : p->lo;
		p->hi = rhi > p->hi ? rhi : p->hi;
		p->flags |= rf;
		p->merged++;
	}
	p->pos_ok = 1;
	p->pos = lo;
	p->seq = seq;
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(&rc->seq, __ATOMIC_RELAXED) == seq;
}

/* Entries overlapping [lo, hi): how many and how many bytes come back when they go. */
static void replaced_locked(const struct rcache *rc, uintptr_t lo, uintptr_t hi, struct need *nd)
{
	size_t i = idx_upper(rc, lo);

	if (i > 0)
		i--;
	for (; i < rc->n && rc->ix->e[i]->lo < hi; i++) {
		const struct ubdma_reg *r = rc->ix->e[i];
		if (r->hi <= lo)
			continue;
		nd->entries_back++;
		if (__atomic_load_n(&r->ref, __ATOMIC_RELAXED) == 1)
			nd->bytes_back += r->hi - r->lo;
	}
}

static int count_limit_failure(struct rcache *rc, int err, uint64_t len)
{
	add(&rc->limit_failures, 1);
	if (err == ENOSPC)
		return uerr(ENOSPC, "registration cache: no IOMMU mapping entries left for %llu bytes and "
			    "every cached entry is referenced (limit %zu)", (unsigned long long)len,
			    rc->max_iommu);
	return uerr(ENOMEM, "registration cache: %llu more bytes would exceed its limits (%zu bytes, "
		    "%zu entries; %llu bytes pinned) and every cached entry is referenced; put some "
		    "or raise them with ubdma_rcache_set_limits()", (unsigned long long)len, rc->max_bytes,
		    rc->max_entries, (unsigned long long)ld(&rc->bytes));
}

/*
 * Whether nd fits as it is, replacing nothing, with nothing in the graveyard: read without the
 * lock, under miss_lock, where only the monitor changes the books, and it only takes away.
 */
static inline __attribute__((always_inline)) int fits_now(const struct rcache *rc, const struct need *nd)
{
	if (__atomic_load_n(&rc->grave, __ATOMIC_ACQUIRE))
		return 0;
	if (rc->max_bytes && ld(&rc->bytes) + nd->bytes > rc->max_bytes)
		return 0;
	if (rc->max_entries && __atomic_load_n(&rc->n, __ATOMIC_RELAXED) + nd->entries > rc->max_entries)
		return 0;
	return !rc->max_iommu || ld(&rc->iommu) + nd->iommu <= rc->max_iommu;
}

/* Make room for len bytes, evicting; victims destroyed here, outside the lock.  miss_lock held. */
static __attribute__((noinline)) int make_room_slow(struct rcache *rc, const struct plan *p, int force)
{
	struct need nd = { .bytes = p->hi - p->lo, .entries = 1, .iommu = 1, .xlo = p->lo, .xhi = p->hi };
	struct ubdma_reg *victims = NULL;
	int err;

	urw_wrlock(&rc->lock);
	replaced_locked(rc, p->lo, p->hi, &nd);
	err = fit_locked(rc, &nd, force, &victims);
	urw_unlock(&rc->lock);
	destroy_list(victims);
	return err;
}

static inline int make_room(struct rcache *rc, const struct plan *p, int force)
{
	struct need nd = { .bytes = p->hi - p->lo, .entries = 1, .iommu = 1, .xlo = p->lo, .xhi = p->hi };

	if (!force && fits_now(rc, &nd))
		return 0; /* a miss that evicts nothing takes no exclusive lock (issue 21) */
	return make_room_slow(rc, p, force);
}

/* An entry to fill: a spare one, one destroyed since, or a new slab's.  miss_lock held. */
static struct ubdma_reg *reg_new(struct rcache *rc, const struct rc_key *k, int flags)
{
	struct ubdma_reg *r = rc->spare;

	if (!r && !(r = __atomic_exchange_n(&rc->free, NULL, __ATOMIC_ACQUIRE))) {
		/* not zeroed: no index slot reaches an entry before it is filled below, and zeroing
		 * whole slabs is what a slow machine (TCG: a string store is a loop) notices */
		struct rc_slab *x = malloc(sizeof(*x));
		if (!x)
			return NULL;
		x->next = rc->slabs;
		rc->slabs = x;
		for (int i = 0; i < RC_SLAB; i++)
			x->e[i].grave_next = i + 1 < RC_SLAB ? &x->e[i + 1] : NULL;
		r = &x->e[0];
	}
	rc->spare = r->grave_next;
	/* hits may read a recycled entry through a stale index slot: atomic stores */
	__atomic_store_n(&r->lo, k->lo, __ATOMIC_RELAXED);
	__atomic_store_n(&r->hi, k->hi, __ATOMIC_RELAXED);
	__atomic_store_n(&r->flags, flags, __ATOMIC_RELAXED);
	__atomic_store_n(&r->used, 0, __ATOMIC_RELAXED);
	r->dead = 0;
	r->monitored = 0;
	__atomic_store_n(&r->unshow, 0, __ATOMIC_RELAXED);
	r->rc = rc;
	r->umem = k->umem;
	r->key = k->key;
	r->ticket = k->ticket;
	r->dom = rc->dom;
	r->ops = rc->ops;
	r->ops_arg = rc->ops_arg;
	r->nchunks = k->nchunks;
	r->grave_next = NULL;
	return r;
}

/* An entry that never entered the index goes back to the spares.  miss_lock held. */
static void reg_recycle(struct rcache *rc, struct ubdma_reg *r)
{
	r->grave_next = rc->spare;
	rc->spare = r;
}

/* On the books, and on the way to rc->all (all_drain()): a push, no lock. */
static void reg_track(struct rcache *rc, struct ubdma_reg *r)
{
	struct ubdma_reg *h = __atomic_load_n(&rc->tracked, __ATOMIC_RELAXED);

	add(&rc->bytes, r->hi - r->lo);
	add(&rc->iommu, (uint64_t)r->nchunks);
	do
		r->track_next = h;
	while (!__atomic_compare_exchange_n(&rc->tracked, &h, r, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}

/* Whether every page of [s, e) is mapped (mincore fails with ENOMEM on a hole). */
static int range_mapped(uintptr_t s, uintptr_t e)
{
	unsigned char v[256];

	for (; s < e; s += sizeof(v) * PAGE_4K) {
		size_t n = (e - s) / PAGE_4K < sizeof(v) ? (e - s) / PAGE_4K : sizeof(v);
		if (mincore((void *)s, n * PAGE_4K, v) && errno == ENOMEM)
			return 0;
	}
	return 1;
}

/* Wire and register the plan, falling back to the bare request and evicting on ENOMEM / ENOSPC. */
static int register_plan(struct rcache *rc, struct plan *p, uintptr_t a, uintptr_t b, int flags,
			 struct rc_key *k, int *monitoredp)
{
	int err;

	for (;;) {
		err = rc->dom == &rc_dom_registrar ? rc_regr_reg(rc, p->lo, p->hi, p->flags, k)
						   : rc->dom->reg(rc, p->lo, p->hi, p->flags, k);
		if (!err) {
			/* the wiring registered it: events from its first page lock on */
			*monitoredp = rc->mon == MON_ON && wire_ticket_watched(k->ticket);
			return 0;
		}
		if (err == ENOMEM && !range_mapped(p->lo, p->hi)) {
			/* mlock says ENOMEM for pages unmapped under it (another thread's munmap) */
			err = uerr(EFAULT, "[%#lx, %#lx) was unmapped while it was being registered",
				   (unsigned long)p->lo, (unsigned long)p->hi);
		} else if (err == ENOMEM || err == ENOSPC) {
			/* RLIMIT_MEMLOCK, the IOMMU's entries or IOVA space: make room and retry */
			if (make_room(rc, p, 1) == 0)
				continue;
			if (p->merged)
				goto unmerged;
			add(&rc->limit_failures, 1);
			return err;
		}
		if (!p->merged && p->flags == flags)
			return err;
unmerged:
		/* the union cannot be registered (part read-only, or gone): just the request */
		*p = (struct plan){ .lo = a, .hi = b, .flags = flags };
	}
}

static int rc_miss(struct rcache *rc, uintptr_t a, uintptr_t b, int flags, const struct rc_hint *hint,
		   struct ubdma_reg **regp)
{
	int err = 0;

	ulock_lock(&rc->miss_lock);
	reap(rc);
	if (rc->mon == MON_START && mon_start(rc))
		rc->mon = MON_OFF;
	for (int attempt = 0;; attempt++) {
		struct ubdma_reg *r, *victims = NULL;
		struct rc_key k;
		struct plan p;
		int monitored = 0;

		mon_sync(rc);
		if (!plan_unlocked(rc, a, b, flags, &p, hint)) {
			urw_rdlock(&rc->lock);
			if ((r = lookup_plan_locked(rc, a, b, flags, &p))) {
				/* another thread registered it meanwhile: a hit after all */
				__atomic_fetch_add(&r->ref, 1, __ATOMIC_ACQUIRE);
				urw_unlock(&rc->lock);
				ulock_unlock(&rc->miss_lock);
				count_hit(rc);
				*regp = r;
				return 0;
			}
			urw_unlock(&rc->lock);
		}
		if (rc->max_bytes && b - a > rc->max_bytes) {
			add(&rc->limit_failures, 1);
			err = uerr(ENOMEM, "registration cache: %lu bytes is more than its limit of %zu bytes",
				   (unsigned long)(b - a), rc->max_bytes);
			break;
		}
		/* a merge must not hog the cache: at most a quarter of it, so that a few threads
		 * holding merged entries still leave room for a plain request */
		if (rc->max_bytes && p.merged && p.hi - p.lo > rc->max_bytes / 4)
			p = (struct plan){ .lo = a, .hi = b, .flags = flags };
		if ((err = make_room(rc, &p, 0)) && p.merged) {
			/* the union does not fit beside what is referenced: the request alone might */
			p = (struct plan){ .lo = a, .hi = b, .flags = flags };
			err = make_room(rc, &p, 0);
		}
		if (err) {
			err = count_limit_failure(rc, err, b - a);
			break;
		}
		uint64_t seq0 = __atomic_load_n(&rc->inval_seq, __ATOMIC_ACQUIRE);
		if ((err = register_plan(rc, &p, a, b, flags, &k, &monitored)))
			break;
		if (!(r = reg_new(rc, &k, p.flags))) {
			rc_key_release(rc, &k);
			err = uerr(ENOMEM, "out of memory");
			break;
		}
		r->monitored = (uint8_t)monitored;
		__atomic_store_n(&r->ref, 2, __ATOMIC_RELEASE); /* the index and the caller */

		urw_wrlock(&rc->lock);
		/* no wiring ended anywhere since ours was made, or ours is still whole */
		if (ring_conflict(rc, seq0, r->lo, r->hi) ||
		    !(wire_ticket_unchanged(k.ticket) || wire_ticket_alive(k.ticket))) {
			/* the memory changed while we registered it: what we wired may be stale */
			urw_unlock(&rc->lock);
			rc_key_release(rc, &k);
			reg_recycle(rc, r);
			reap(rc);
			if (attempt + 1 < MISS_ATTEMPTS)
				continue;
			err = uerr(EAGAIN, "[%#lx, %#lx) kept changing while it was being registered",
				   (unsigned long)a, (unsigned long)b);
			break;
		}
		struct need nd = { .bytes = r->hi - r->lo, .entries = 1, .iommu = (uint64_t)r->nchunks,
				   .xlo = r->lo, .xhi = r->hi };
		/* where it goes, and whether it replaces anything (a merge, or the monitor's work
		 * changed the plan's picture): a plain miss on an index nobody changed since its
		 * look-up does not search again */
		size_t at, n0 = rc->n;
		int alone;
		if (p.pos_ok && !p.merged && r->lo == p.lo && r->hi == p.hi &&
		    __atomic_load_n(&rc->seq, __ATOMIC_RELAXED) == p.seq) {
			at = p.pos; /* what overlapped or touched [p.lo, p.hi) was merged: nothing */
			alone = 1;
		} else {
			at = idx_upper(rc, r->lo);
			size_t first = at > 0 && rc->ix->e[at - 1]->hi > r->lo ? at - 1 : at;
			alone = first >= rc->n || rc->ix->e[first]->lo >= r->hi;
		}
		if (!alone)
			replaced_locked(rc, r->lo, r->hi, &nd);
		int limit = 0;
		/* fits_now() is fit_locked()'s answer when nothing needs to go, without its scan */
		if ((err = idx_reserve(rc)) == 0 &&
		    (limit = err = fits_now(rc, &nd) ? 0 : fit_locked(rc, &nd, 0, &victims)) == 0) {
			if (!alone || rc->n != n0) {
				/* entries go (merged, or evicted): the position moves */
				size_t i = idx_upper(rc, r->lo);
				if (i > 0 && rc->ix->e[i - 1]->hi > r->lo)
					i--;
				while (i < rc->n && rc->ix->e[i]->lo < r->hi) {
					remove_locked(rc, rc->ix->e[i], &victims);
					__atomic_store_n(&rc->merges, ld(&rc->merges) + 1, __ATOMIC_RELAXED);
				}
				at = i;
			}
			idx_insert(rc, at, r);
			TAILQ_INSERT_TAIL(&rc->lru, r, lru);
			if (!r->monitored)
				add(&rc->unmonitored, 1);
			/* written under miss_lock only */
			__atomic_store_n(&rc->misses, ld(&rc->misses) + 1, __ATOMIC_RELAXED);
		}
		urw_unlock(&rc->lock);
		destroy_list(victims);
		if (err) {
			rc_key_release(rc, &k);
			reg_recycle(rc, r);
			err = limit ? count_limit_failure(rc, err, nd.bytes) : uerr(err, "out of memory");
			break;
		}
		reg_track(rc, r);
		rc_unshow(rc); /* entries merged away while held: the new entry shows their pages */
		ulock_unlock(&rc->miss_lock);
		*regp = r;
		return 0;
	}
	ulock_unlock(&rc->miss_lock);
	return err;
}

/* Above a limit (lowered while entries were held). */
static inline int over_limits(const struct rcache *rc)
{
	size_t mb = __atomic_load_n(&rc->max_bytes, __ATOMIC_RELAXED);
	size_t me = __atomic_load_n(&rc->max_entries, __ATOMIC_RELAXED);
	size_t mi = __atomic_load_n(&rc->max_iommu, __ATOMIC_RELAXED);

	return (mb && ld(&rc->bytes) > mb) || (me && __atomic_load_n(&rc->n, __ATOMIC_RELAXED) > me) ||
	       (mi && ld(&rc->iommu) > mi);
}

/*
 * Evict unreferenced entries until the cache is within its limits.  A put may come from a
 * thread that holds miss_lock already (a miss putting what it merged away): then the holder's
 * next fit does it.
 */
static void rc_trim(struct rcache *rc)
{
	struct ubdma_reg *victims = NULL;
	struct need nd = { 0 };

	if (ulock_trylock(&rc->miss_lock))
		return;
	urw_wrlock(&rc->lock);
	fit_locked(rc, &nd, 0, &victims);
	__atomic_store_n(&rc->trim_wanted, over_limits(rc), __ATOMIC_RELAXED);
	urw_unlock(&rc->lock);
	destroy_list(victims);
	ulock_unlock(&rc->miss_lock);
}

/* ------------------------------------------------------------ public API */

/*
 * The hit path without the lock: a seqlock read of the index (writers make rc->seq odd while
 * they change it), then "increment unless zero" on the entry's reference.  Entries are never
 * freed while the cache lives (a destroyed one has reference 0, a recycled one is caught by the
 * sequence check), and index arrays that grew out stay allocated, so a stale read is harmless.
 * NULL sends the caller to the locked path, or with hint->sure set (the index was read whole and holds
 * no such entry) straight to the miss, which looks again under its lock.
 */
static inline struct ubdma_reg *fast_lookup(struct rcache *rc, uintptr_t a, uintptr_t b, int flags,
					    struct rc_hint *hint)
{
	uint64_t seq = __atomic_load_n(&rc->seq, __ATOMIC_ACQUIRE);
	const struct rc_index *ix = __atomic_load_n(&rc->ix, __ATOMIC_ACQUIRE);
	struct ubdma_reg *r;
	size_t lo = 0, hi;

	if (seq & 1)
		return NULL;
	if (!ix) {
		hint->sure = 1; /* nothing cached yet */
		return NULL;
	}
	hi = __atomic_load_n(&rc->n, __ATOMIC_RELAXED);
	hi = hi < ix->cap ? hi : ix->cap;
	/* a range at or above the last entry's start needs no search: a program's fresh buffers
	 * tend to lie above its last ones, so a miss usually lands there (the search was some 80
	 * of a miss's 800 host instructions, each dearer under TCG, docs/rcache.md step 9); a
	 * hit elsewhere pays one load and a comparison */
	if (hi && (r = __atomic_load_n(&ix->e[hi - 1], __ATOMIC_RELAXED)) &&
	    __atomic_load_n(&r->lo, __ATOMIC_RELAXED) <= a)
		lo = hi;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		r = __atomic_load_n(&ix->e[mid], __ATOMIC_RELAXED);
		if (__builtin_expect(!r, 0))
			return NULL;
		if (__atomic_load_n(&r->lo, __ATOMIC_RELAXED) <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	r = lo ? __atomic_load_n(&ix->e[lo - 1], __ATOMIC_RELAXED) : NULL;
	if (lo == 0 || (r && (__atomic_load_n(&r->hi, __ATOMIC_RELAXED) < b ||
			      (__atomic_load_n(&r->flags, __ATOMIC_RELAXED) & flags) != flags))) {
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		hint->sure = __atomic_load_n(&rc->seq, __ATOMIC_RELAXED) == seq;
		hint->seq = seq;
		hint->pos = lo;
		return NULL;
	}
	if (!r)
		return NULL;
	uint64_t ref = __atomic_load_n(&r->ref, __ATOMIC_RELAXED);
	do {
		if (!ref)
			return NULL;
	} while (!__atomic_compare_exchange_n(&r->ref, &ref, ref + 1, 1, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED));
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (__builtin_expect(__atomic_load_n(&rc->seq, __ATOMIC_RELAXED) != seq, 0)) {
		ubdma_reg_put(r); /* the index changed meanwhile: take the locked path */
		return NULL;
	}
	return r;
}

int ubdma_reg_get(ubdma_ctx_t *ctx, void *addr, size_t len, int flags, ubdma_reg_t **regp)
{
	uintptr_t a = (uintptr_t)addr, b = a + len;
	struct rcache *rc;
	struct ubdma_reg *r;
	struct rc_hint hint = { 0, 1, 0 }; /* an odd sequence: no index seen */
	int err;

	if (__builtin_expect(!ctx || !regp, 0))
		return uerr(EINVAL, "%s is NULL", ctx ? "regp" : "ctx");
	if (__builtin_expect(!len || b < a || ROUND(b, PAGE_4K) < b, 0))
		return uerr(EINVAL, "range %p + %zu is empty or wraps around the address space", addr, len);
	if (__builtin_expect(!(flags & (UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)) ||
			     (flags & ~(UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)), 0))
		return uerr(EINVAL, "flags 0x%x: need UBDMA_UMEM_READ and/or UBDMA_UMEM_WRITE, nothing else", flags);
	if (__builtin_expect((err = rc_obtain(ctx, &rc)) != 0, 0))
		return err;
	a = TRUNC(a, PAGE_4K);
	b = ROUND(b, PAGE_4K);
	mon_sync(rc);
	if (__builtin_expect((r = fast_lookup(rc, a, b, flags, &hint)) == NULL, 0)) {
		if (hint.sure)
			return rc_miss(rc, a, b, flags, &hint, regp);
		urw_rdlock(&rc->lock);
		if ((r = idx_lookup(rc, a, b, flags)))
			__atomic_fetch_add(&r->ref, 1, __ATOMIC_ACQUIRE);
		urw_unlock(&rc->lock);
		if (!r)
			return rc_miss(rc, a, b, flags, NULL, regp);
	}
	if (!__atomic_load_n(&r->used, __ATOMIC_RELAXED))
		__atomic_store_n(&r->used, 1, __ATOMIC_RELAXED);
	count_hit(rc);
	*regp = r;
	return 0;
}

/* Out of line, so that the look-up's fast path keeps no frame for a varargs call it never makes. */
static __attribute__((cold, noinline)) ubdma_iova_t reg_iova_null(void)
{
	errno = uerr_at("ubdma_reg_iova", EINVAL, "NULL registration");
	return UBDMA_BAD_IOVA;
}

ubdma_iova_t ubdma_reg_iova(const ubdma_reg_t *reg, const void *addr)
{
	uintptr_t a = (uintptr_t)addr;

	if (__builtin_expect(!reg, 0))
		return reg_iova_null();
	if (a < reg->lo || a >= reg->hi)
		return UBDMA_BAD_IOVA;
	const struct ubdma_umem *u = reg->umem;
	if (__builtin_expect(!u, 0))
		return a; /* a registrar's domain addresses memory by its address (ibv_reg_mr) */
	const struct umem_chunk *c = u->chunks;
	if (__builtin_expect(reg->nchunks == 1, 1))
		return umem_chunk_iova(c, a);
	for (int i = 0; i < reg->nchunks; i++)
		if (a >= c[i].va && a - c[i].va < c[i].npages * c[i].pgsz)
			return umem_chunk_iova(&c[i], a);
	return UBDMA_BAD_IOVA;
}

void ubdma_reg_put(ubdma_reg_t *reg)
{
	struct rcache *rc;

	if (!reg)
		return;
	rc = reg->rc;
	uint64_t old = __atomic_fetch_sub(&reg->ref, 1, __ATOMIC_ACQ_REL);
	RC_ASSERT(old >= 1);
	if (__builtin_expect(old == 1, 0)) {
		/* out of the index: invalidated while we held it */
		uncount(rc, reg);
		reg_destroy(reg);
	} else if (__builtin_expect(old == 2 && __atomic_load_n(&rc->trim_wanted, __ATOMIC_RELAXED), 0)) {
		/* a limit lowered while entries were held is met as they come back */
		rc_trim(rc);
	}
	if (__builtin_expect(__atomic_load_n(&rc->grave, __ATOMIC_RELAXED) != NULL, 0))
		reap_grave(rc);
}

int ubdma_reg_invalidate(ubdma_ctx_t *ctx, void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr, b = a + len;
	struct rcache *rc;

	if (!ctx)
		return uerr(EINVAL, "ctx is NULL");
	if (!len || b < a || ROUND(b, PAGE_4K) < b)
		return uerr(EINVAL, "range %p + %zu is empty or wraps around the address space", addr, len);
	if (!(rc = rc_of(ctx)))
		return 0;
	ulock_lock(&rc->miss_lock);
	mon_sync(rc);
	urw_wrlock(&rc->lock);
	rc_invalidate_locked(rc, TRUNC(a, PAGE_4K), ROUND(b, PAGE_4K));
	urw_unlock(&rc->lock);
	reap(rc);
	rc_unshow(rc);
	ulock_unlock(&rc->miss_lock);
	return 0;
}

int ubdma_rcache_flush(ubdma_ctx_t *ctx)
{
	struct rcache *rc;
	struct ubdma_reg *victims = NULL;

	if (!ctx)
		return uerr(EINVAL, "ctx is NULL");
	if (!(rc = rc_of(ctx)))
		return 0;
	ulock_lock(&rc->miss_lock);
	mon_sync(rc);
	reap(rc);
	urw_wrlock(&rc->lock);
	struct ubdma_reg *r, *next;
	TAILQ_FOREACH_SAFE(r, &rc->lru, lru, next) {
		uint64_t one = 1;
		if (__atomic_compare_exchange_n(&r->ref, &one, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
			remove_locked(rc, r, &victims);
			add(&rc->evictions, 1);
		}
	}
	urw_unlock(&rc->lock);
	destroy_list(victims);
	ulock_unlock(&rc->miss_lock);
	return 0;
}

int ubdma_rcache_set_limits(ubdma_ctx_t *ctx, size_t max_bytes, size_t max_entries, size_t max_iommu)
{
	struct rcache *rc;
	struct ubdma_reg *victims = NULL;
	struct need nd = { 0 };
	int err;

	if (!ctx)
		return uerr(EINVAL, "ctx is NULL");
	if ((err = rc_obtain(ctx, &rc)))
		return err;
	ulock_lock(&rc->miss_lock);
	reap(rc);
	urw_wrlock(&rc->lock);
	/* the put path reads them without the lock */
	__atomic_store_n(&rc->max_bytes, max_bytes, __ATOMIC_RELAXED);
	__atomic_store_n(&rc->max_entries, max_entries, __ATOMIC_RELAXED);
	__atomic_store_n(&rc->max_iommu, max_iommu, __ATOMIC_RELAXED);
	fit_locked(rc, &nd, 0, &victims); /* what is referenced stays above the limit until put */
	/* the puts meet it then; one flag, so that the put path of a cache within its limits
	 * reads nothing more */
	__atomic_store_n(&rc->trim_wanted, over_limits(rc), __ATOMIC_RELAXED);
	urw_unlock(&rc->lock);
	destroy_list(victims);
	ulock_unlock(&rc->miss_lock);
	return 0;
}

int ubdma_rcache_set_monitor(ubdma_ctx_t *ctx, enum ubdma_rcache_monitor mode)
{
	struct rcache *rc;
	int err;

	if (!ctx)
		return uerr(EINVAL, "ctx is NULL");
	if (mode != UBDMA_RCACHE_MONITOR_UFFD && mode != UBDMA_RCACHE_MONITOR_EXPLICIT)
		return uerr(EINVAL, "unknown monitor %d", (int)mode);
	if ((err = rc_obtain(ctx, &rc)))
		return err;
	ulock_lock(&rc->miss_lock);
	reap(rc);
	if (rc->n) {
		ulock_unlock(&rc->miss_lock);
		return uerr(EBUSY, "the registration cache holds %zu entries: flush it first", rc->n);
	}
	rc->want_monitor = mode;
	if (mode == UBDMA_RCACHE_MONITOR_EXPLICIT) {
		mon_stop(rc);
		rc->mon = MON_OFF;
		snprintf(rc->mon_desc, sizeof(rc->mon_desc), "explicit only: asked for");
	} else if (rc->mon == MON_OFF) {
		rc->mon = MON_START;
		snprintf(rc->mon_desc, sizeof(rc->mon_desc), "userfaultfd (not started yet)");
	}
	ulock_unlock(&rc->miss_lock);
	return 0;
}

int ubdma_rcache_stats(ubdma_ctx_t *ctx, struct ubdma_rcache_stats *st, size_t size)
{
	struct ubdma_rcache_stats s;
	struct rcache *rc;

	if (!ctx || !st)
		return uerr(EINVAL, "%s is NULL", ctx ? "st" : "ctx");
	memset(&s, 0, sizeof(s));
	if (!(rc = rc_of(ctx))) {
		snprintf(s.monitor, sizeof(s.monitor), "not in use");
		memcpy(st, &s, size < sizeof(s) ? size : sizeof(s));
		return 0;
	}
	mon_sync(rc); /* counters as of after every unmap that returned before this call */
	reap_grave(rc);
	pthread_mutex_lock(&rc->all_lock);
	all_drain(rc);
	for (struct rc_ctr *c = rc->ctrs; c; c = c->next)
		s.hits += ld(&c->hits);
	uint64_t nall = rc->nall;
	pthread_mutex_unlock(&rc->all_lock);
	urw_rdlock(&rc->lock);
	s.entries = rc->n;
	s.held_invalid = nall > rc->n ? nall - rc->n : 0;
	s.max_bytes = rc->max_bytes;
	s.max_entries = rc->max_entries;
	s.max_iommu = rc->max_iommu;
	urw_unlock(&rc->lock);
	ulock_lock(&rc->miss_lock);
	s.monitor_active = rc->mon == MON_ON;
	snprintf(s.monitor, sizeof(s.monitor), "%s", rc->mon_desc);
	ulock_unlock(&rc->miss_lock);
	s.misses = ld(&rc->misses);
	s.merges = ld(&rc->merges);
	s.evictions = ld(&rc->evictions);
	s.invalidations = ld(&rc->invalidations);
	s.bytes_pinned = ld(&rc->bytes);
	s.unmonitored = ld(&rc->unmonitored);
	s.limit_failures = ld(&rc->limit_failures);
	s.events_unmap = ld(&rc->ev_unmap);
	s.events_remove = ld(&rc->ev_remove);
	s.events_remap = ld(&rc->ev_remap);
	s.dereg_failures = ld(&rc->dereg_failures);
	ulock_lock(&rc->miss_lock);
	snprintf(s.domain, sizeof(s.domain), "%s", rc->dom_name);
	ulock_unlock(&rc->miss_lock);
	memcpy(st, &s, size < sizeof(s) ? size : sizeof(s));
	return 0;
}

int ubdma_rcache_stats_print(ubdma_ctx_t *ctx, FILE *f)
{
	struct ubdma_rcache_stats s;
	int err;

	if (!ctx || !f)
		return uerr(EINVAL, "%s is NULL", ctx ? "f" : "ctx");
	if ((err = ubdma_rcache_stats(ctx, &s, sizeof(s))))
		return err;
	fprintf(f, "rcache domain: %s\nrcache monitor: %s\n", s.domain, s.monitor);
	fprintf(f, "rcache hits: %llu\nrcache misses: %llu\nrcache merges: %llu\n", (unsigned long long)s.hits,
		(unsigned long long)s.misses, (unsigned long long)s.merges);
	fprintf(f, "rcache evictions: %llu\nrcache invalidations: %llu\n", (unsigned long long)s.evictions,
		(unsigned long long)s.invalidations);
	fprintf(f, "rcache bytes pinned: %llu\nrcache entries: %llu\nrcache held invalid: %llu\n",
		(unsigned long long)s.bytes_pinned, (unsigned long long)s.entries,
		(unsigned long long)s.held_invalid);
	fprintf(f, "rcache unmonitored entries: %llu\nrcache limit failures: %llu\n",
		(unsigned long long)s.unmonitored, (unsigned long long)s.limit_failures);
	fprintf(f, "rcache events: unmap %llu, remove %llu, remap %llu\n", (unsigned long long)s.events_unmap,
		(unsigned long long)s.events_remove, (unsigned long long)s.events_remap);
	fprintf(f, "rcache limits: %llu bytes, %llu entries, %llu IOMMU entries (0: none)\n",
		(unsigned long long)s.max_bytes, (unsigned long long)s.max_entries,
		(unsigned long long)s.max_iommu);
	fprintf(f, "rcache deregistration failures: %llu\n", (unsigned long long)s.dereg_failures);
	return ferror(f) ? uerr(EIO, "cannot write the statistics") : 0;
}

int ubdma_rcache_set_registrar(ubdma_ctx_t *ctx, const struct ubdma_registrar *ops, void *arg)
{
	struct rcache *rc;
	int err;

	if (!ctx)
		return uerr(EINVAL, "ctx is NULL");
	if (ops && (!ops->reg || !ops->dereg))
		return uerr(EINVAL, "registrar %s has no %s callback", ops->name ? ops->name : "(unnamed)",
			    ops->reg ? "dereg" : "reg");
	if (ops && (ops->flags & ~(UBDMA_REGISTRAR_PINS | UBDMA_REGISTRAR_DOMAIN_FLAGS)))
		return uerr(EINVAL, "registrar %s: unknown flags 0x%x", ops->name ? ops->name : "(unnamed)",
			    ops->flags & ~(UBDMA_REGISTRAR_PINS | UBDMA_REGISTRAR_DOMAIN_FLAGS));
	if ((err = rc_obtain(ctx, &rc)))
		return err;
	ulock_lock(&rc->miss_lock);
	mon_sync(rc);
	reap(rc);
	pthread_mutex_lock(&rc->all_lock);
	all_drain(rc);
	uint64_t nall = rc->nall;
	pthread_mutex_unlock(&rc->all_lock);
	if (nall) {
		ulock_unlock(&rc->miss_lock);
		return uerr(EBUSY, "the registration cache holds %llu registrations of domain %s: flush and "
			    "put them first", (unsigned long long)nall, rc->dom_name);
	}
	rc->dom = ops ? &rc_dom_registrar : &rc_dom_iommu;
	rc->ops = ops;
	rc->ops_arg = ops ? arg : NULL;
	snprintf(rc->dom_name, sizeof(rc->dom_name), "%s", ops ? (ops->name ? ops->name : "registrar") : "iommu");
	ulock_unlock(&rc->miss_lock);
	return 0;
}

const struct ubdma_registrar *ubdma_reg_registrar(const ubdma_reg_t *reg)
{
	return reg ? reg->ops : NULL; /* NULL in the IOMMU domain (reg_new() copies the cache's) */
}

void *ubdma_reg_key(const ubdma_reg_t *reg)
{
	return reg ? reg->key : NULL;
}

int ubdma_reg_range(const ubdma_reg_t *reg, void **addrp, size_t *lenp)
{
	if (!reg)
		return uerr(EINVAL, "reg is NULL");
	if (addrp)
		*addrp = (void *)reg->lo;
	if (lenp)
		*lenp = reg->hi - reg->lo;
	return 0;
}
