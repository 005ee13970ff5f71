/*
 * rcache_int.h - the registration cache as its files see it: the cache of one context (its
 * index, CLOCK list, limits, counters), the domain it registers into (domain.c), the userfaultfd
 * monitor that invalidates entries (monitor.c) and the public memory events (memevent.c).
 *
 * Locking (docs/rcache.md has the reasoning):
 *  - lock (rwlock): the index, the CLOCK list, the dead flags, the invalidation ring, the
 *    graveyard and the remap fix-ups.  Hits take it shared; misses, evictions, invalidations and
 *    the monitor take it exclusive.  Nothing that can free or unmap memory runs under it: a free()
 *    may trim the heap, and an unmap of a monitored range blocks until the monitor has read the
 *    event, while the monitor may be waiting for this lock.
 *  - miss_lock (mutex): serialises misses, flushes, explicit invalidations and limit changes, so
 *    that only the monitor runs concurrently with a miss.
 *  - all_lock (mutex): the list of every registration the cache made (for stats and teardown);
 *    a miss pushes its new entry on a lock-free stack that the list's users drain first.
 * The monitor thread never allocates or frees: registrations it invalidates and nobody holds go
 * to the graveyard, which the next put or miss empties.
 */
#ifndef UBDMA_RCACHE_INT_H
#define UBDMA_RCACHE_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <ubdma/ubdma.h>

#include "base/lock.h"
#include "base/queue.h"
#include "core/ctx.h"
#include "wire/monitor.h"
#include "wire/wire.h" /* rc_regr_reg(): wire_watch() */

#define RC_RING 64    /* invalidated ranges remembered for misses in flight */

struct ubdma_reg {
	/* read by the hit path */
	uintptr_t lo, hi;      /* wired range: page aligned (hugetlb page aligned on hugetlb) */
	int flags;	       /* UBDMA_UMEM_READ / WRITE */
	uint8_t used;	       /* CLOCK bit: set by hits, cleared by the eviction scan (atomic) */
	uint8_t dead;	       /* out of the index: never handed out again (under lock) */
	uint8_t monitored;     /* the monitor watches it (its wiring is registered) */
	uint8_t unshow;	       /* out of the index while held: to leave the translation map (atomic) */
	uint64_t ref;	       /* holders, + 1 while in the index (atomic) */
	struct ubdma_umem *umem; /* the IOMMU domain's cookie; NULL in a registrar's domain */
	void *key;	       /* what the domain's register call returned (the cookie for IOMMU) */
	struct wire_ticket *ticket; /* the wiring under it (the cookie's, for IOMMU) */
	const struct rc_domain *dom; /* the domain that registered it (releases it) */
	const struct ubdma_registrar *ops; /* a registrar domain's callbacks and argument, */
	void *ops_arg;		/* kept per entry: the cache may change registrar once empty */
	struct rcache *rc;
	int nchunks;	       /* domain entries (IOMMU mappings, or 1 registration) it holds */
	TAILQ_ENTRY(ubdma_reg) lru; /* rc->lru: index entries */
	LIST_ENTRY(ubdma_reg) all;  /* rc->all: every registration made, until destroyed */
	struct ubdma_reg *track_next; /* rc->tracked: made, not yet on rc->all */
	struct ubdma_reg *grave_next;
};

/*
 * The index array.  Hits read it without the lock (validated by rcache.seq), so an array that
 * grew out is not freed before the cache: older points to the one it replaced.
 */
struct rc_index {
	size_t cap;
	struct rc_index *older;
	struct ubdma_reg *e[];
};

/* Hits counted per thread (no shared write on the hit path), summed by ubdma_rcache_stats(). */
struct rc_ctr {
	uint64_t hits;	       /* written by its thread only (atomic store), read by stats */
	struct rc_ctr *next;
};

/* Entries are made RC_SLAB at a time and live as long as the cache (hits may read old ones). */
#define RC_SLAB 32
struct rc_slab {
	struct rc_slab *next;
	struct ubdma_reg e[RC_SLAB];
};

struct rc_range {
	uintptr_t s, e;
};

enum rc_mon_state { MON_OFF, MON_START, MON_ON };

/* What a domain's register call made: the entry's range (rounded to the pages wired), key,
 * wiring and domain entries. */
struct rc_key {
	uintptr_t lo, hi;
	void *key;
	struct ubdma_umem *umem;
	struct wire_ticket *ticket;
	int nchunks;
};

/*
 * A registration domain (domain.c): the context's IOMMU, or a registrar the user gave
 * (ubdma_rcache_set_registrar()).  reg wires [lo, hi) (so that the monitor watches it) and
 * registers it, all or nothing; rel releases what reg made, deregistration first, then the wiring
 * (ops and arg: the registrar the key was made with).
 */
struct rc_domain {
	const char *name;
	int (*reg)(struct rcache *rc, uintptr_t lo, uintptr_t hi, int flags, struct rc_key *k);
	void (*rel)(struct rcache *rc, const struct ubdma_registrar *ops, void *arg, const struct rc_key *k);
};

extern const struct rc_domain rc_dom_iommu, rc_dom_registrar;

/* Release what reg made before it became an entry (a miss that could not use it). */
void rc_key_release(struct rcache *rc, const struct rc_key *k);

struct rcache {
	struct ubdma_ctx *ctx;
	/* lock and miss_lock are lock.h's (taken on every miss, inline); all_lock, off the miss
	   path, is glibc's */
	struct urwlock lock;
	struct ulock miss_lock;
	pthread_mutex_t all_lock;

	uint64_t id;		   /* unique per cache of the process (per-thread counters) */
	uint64_t seq;		   /* odd while the index changes (atomic; hits validate with it) */
	struct rc_index *ix;	   /* index entries sorted by lo, never overlapping */
	size_t n;		   /* entries in ix (written atomically) */
	struct ubdma_reg *free;	   /* destroyed entries, kept for reuse: hits may still read them
				      (a stack: pushed by any thread, taken whole by a miss) */
	struct ubdma_reg *spare;   /* entries a miss takes from (under miss_lock) */
	struct rc_slab *slabs;	   /* where entries come from (under miss_lock; freed with the cache) */
	struct rc_ctr *ctrs;	   /* per-thread hit counters (under all_lock) */
	TAILQ_HEAD(, ubdma_reg) lru; /* the CLOCK list, oldest first */
	LIST_HEAD(, ubdma_reg) all;
	struct ubdma_reg *tracked; /* made by misses, not yet on all (a stack: pushed without a lock,
				      moved to all under all_lock: all_drain()) */
	struct ubdma_reg *grave;   /* invalidated, unreferenced, to destroy (atomic load) */
	int unshow_pending;	   /* some entry has unshow set (atomic) */

	/* the domain (under miss_lock; entries keep their own) */
	const struct rc_domain *dom;
	const struct ubdma_registrar *ops;
	void *ops_arg;
	char dom_name[32];
	uint64_t dereg_failures;   /* atomic */

	size_t max_bytes, max_entries, max_iommu; /* 0: no limit */
	int trim_wanted;	   /* over a limit lowered while entries were held: puts evict (atomic) */

	/* accounting and counters, atomic */
	uint64_t bytes, iommu, nall;
	uint64_t misses, merges, evictions, invalidations, limit_failures;
	uint64_t ev_unmap, ev_remove, ev_remap, ev_other, unmonitored;

	/* ranges invalidated under lock, numbered by inval_seq (a miss checks what it overlapped) */
	uint64_t inval_seq;
	struct rc_range ring[RC_RING];

	/* the monitor */
	int want_monitor;	   /* UBDMA_RCACHE_MONITOR_* asked for */
	enum rc_mon_state mon;	   /* under miss_lock */
	struct wmon_sub sub;	   /* our place on the process monitor's list */
	char mon_desc[160];

	LIST_ENTRY(rcache) glink;  /* every cache of the process (fork handling) */
};

/* domain.c: rc_regr_reg()'s other paths, out of line (a registrar that does not pin or memory
 * that cannot be watched: err is the watch's refusal; a refusal of the registrar) */
int rc_regr_reg_wired(struct rcache *rc, uintptr_t lo, uintptr_t hi, int flags, struct rc_key *k, int err);
int rc_regr_reg_failed(struct rcache *rc, struct wire_ticket *t, uintptr_t s, uintptr_t e, int err);

/*
 * rc_dom_registrar.reg, inline in the miss, which calls it directly: under TCG a call and its
 * return cost some 25-30 ns and an indirect call is a run-time look-up (docs/rcache.md, steps 5,
 * 6 and 8).  The usual case only: a registrar that pins, fresh memory watched, the registrar's
 * call; rc_regr_reg_wired() and rc_regr_reg_failed() do the rest.
 */
static inline __attribute__((always_inline)) int rc_regr_reg(struct rcache *rc, uintptr_t lo, uintptr_t hi,
							     int flags, struct rc_key *k)
{
	struct wire_ticket *t = NULL;
	uintptr_t s = 0, e = 0;
	void *key = NULL;
	int err;

	/* a registrar that pins needs only the monitor's watch */
	if (__builtin_expect(!(rc->ops->flags & UBDMA_REGISTRAR_PINS), 0))
		return rc_regr_reg_wired(rc, lo, hi, flags, k, ENOTSUP);
	if (__builtin_expect((err = wire_watch((void *)lo, hi - lo, 0, &t, &s, &e)) != 0, 0))
		return rc_regr_reg_wired(rc, lo, hi, flags, k, err);
	if (__builtin_expect((err = rc->ops->reg(rc->ops_arg, (void *)s, e - s, flags, &key)) != 0, 0))
		return rc_regr_reg_failed(rc, t, s, e, err);
	*k = (struct rc_key){ .lo = s, .hi = e, .key = key, .umem = NULL, .ticket = t, .nchunks = 1 };
	return 0;
}

/* rcache.c: invalidate every entry overlapping [s, e); caller holds lock exclusive. */
void rc_invalidate_locked(struct rcache *rc, uintptr_t s, uintptr_t e);

/* monitor.c: subscribe to the process's monitor (0), or say why not (ENOTSUP). */
int mon_start(struct rcache *rc);
void mon_stop(struct rcache *rc);
void mon_forget(struct rcache *rc); /* in a fork child: the parent's subscription is gone */

/* Look-ups wait while the monitor has read events it has not yet applied. */
static inline void mon_sync(struct rcache *rc)
{
	(void)rc;
	wmon_sync();
}

#endif
