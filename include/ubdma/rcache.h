/*
 * ubdma/rcache.h - the registration (pin-down) cache.
 * Included by <ubdma/ubdma.h>.
 *
 * HPC runtimes register the same buffers again and again.  The cache keeps registrations
 * (wired, IOMMU-mapped ranges, as ubdma_umem_lock() makes them) after their last user puts
 * them, and hands them out again when a later request falls inside one.  It is never stale:
 * when memory under a cached registration is unmapped, moved (mremap) or released
 * (madvise DONTNEED and friends), the registration is invalidated before a later look-up can
 * return it.  The monitor is userfaultfd (non-cooperative events only: no page fault is ever
 * delivered to it); where it cannot watch a range, ubdma_reg_invalidate() is the way to tell the
 * cache.  docs/rcache.md says what each monitor sees and what it cannot.
 *
 * A registration invalidated while referenced stays valid (mapped, wired) for its holders until
 * their last ubdma_reg_put(), and is never handed out again.  The cache of a context is made on
 * first use; a child of fork(2) starts with an empty cache.  Errors follow the convention of
 * ubdma/core.h.
 *
 * Threads: every call here is thread-safe.  ubdma_reg_get() and ubdma_reg_put() run concurrently
 * on one context (a hit takes the cache's lock shared and a reference; misses take a lock of the
 * cache's own, one miss at a time);
 * ubdma_reg_iova() takes no lock.  One registration may be held by several threads, each with its
 * own reference; a reference is put once, by any thread.  Setting limits or the monitor, flushing
 * and reading the statistics may race gets and puts.  The userfaultfd monitor runs in a thread of
 * the library.  fork(2): the child's cache starts empty and it must not put its parent's
 * registrations (docs/reliability.md).
 */
#ifndef UBDMA_RCACHE_H
#define UBDMA_RCACHE_H

#include <stdint.h>
#include <stdio.h>

#include <ubdma/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * ubdma_reg_get() - a referenced registration covering [addr, addr + len).
 * @flags: UBDMA_UMEM_READ and/or UBDMA_UMEM_WRITE: what the device will do; a cached entry
 *         with more rights than asked for answers too.
 *
 * The range is rounded out to whole pages (hugetlb pages on hugetlb memory).  A hit takes a
 * reference on a cached entry: no exclusive lock, no system call.  A miss wires and maps the
 * range (ubdma_umem_lock()), merged with cached entries that overlap it (whatever their intent:
 * the new entry gets the union) or touch it (same intent), evicting unreferenced entries
 * from the least recently used end when a limit would be exceeded.
 *
 * Return: 0 and *@regp, which the caller releases with ubdma_reg_put(); EINVAL for a NULL @ctx or
 * @regp, len 0, a range that wraps, or flags other than READ/WRITE (or neither); EFAULT when part
 * of the range is not mapped (also when another thread unmaps it during the miss) or is read-only
 * and WRITE was asked; ENOMEM when the range is
 * larger than the cache's byte limit, when the byte or entry limit is reached and every entry is
 * referenced, over RLIMIT_MEMLOCK with nothing left to evict, or out of memory; ENOSPC when the
 * IOMMU has no mapping entries (vfio dma_entry_limit, or the cache's own IOMMU-entry limit) or
 * IOVA space left and nothing is evictable; ENOTSUP when the backend cannot translate that
 * memory (phys: memory that is not hugetlb); EAGAIN when the memory kept changing under the
 * request (unmapped or moved by another thread while it was being registered, eight times over).
 * On failure nothing is wired, mapped or cached for the request.
 */
int ubdma_reg_get(ubdma_ctx_t *ctx, void *addr, size_t len, int flags, ubdma_reg_t **regp);

/**
 * ubdma_reg_iova() - the IOVA of @addr inside the registration, or UBDMA_BAD_IOVA when @addr is
 * outside its (rounded) range (and, with errno EINVAL, for a NULL @reg).  O(1), no lock, no system call.  Valid until ubdma_reg_put(),
 * even after the registration was invalidated, or until ubdma_ctx_close(), which frees every
 * registration of the context, held or not.  In a registrar's domain (ubdma_rcache_set_registrar())
 * an address is its own IOVA, as for ibv_reg_mr(): @addr itself.
 */
ubdma_iova_t ubdma_reg_iova(const ubdma_reg_t *reg, const void *addr);

/**
 * ubdma_reg_put() - drop a reference taken by ubdma_reg_get().  A valid entry stays cached; an
 * invalidated one is unmapped and unwired when its last reference goes.  NULL is ignored.  Not
 * after ubdma_ctx_close() of its context: the registration is freed there.
 */
void ubdma_reg_put(ubdma_reg_t *reg);

/**
 * ubdma_reg_invalidate() - the application's own monitor: [addr, addr + len) is about to be (or
 * was) unmapped, moved or released.  Every cached entry overlapping the range leaves the cache;
 * referenced ones stay valid for their holders.  Needed for memory userfaultfd does not watch
 * (see struct ubdma_rcache_stats.unmonitored and docs/rcache.md) and cheap otherwise.
 *
 * Return: 0 (also when nothing was cached there); EINVAL for a NULL @ctx, len 0 or a range that
 * wraps.
 */
int ubdma_reg_invalidate(ubdma_ctx_t *ctx, void *addr, size_t len);

/**
 * ubdma_rcache_set_limits() - bound the cache.  0 means "no limit" for each.
 * @max_bytes:   bytes of wired memory the cache may hold (cached, plus invalidated but still
 *               referenced); default a quarter of physical memory.
 * @max_entries: cached entries; default 65536.
 * @max_iommu:   IOMMU mappings the cache's entries may hold (in a registrar's domain: its
 *               registrations); default none beyond the domain's own (vfio's dma_entry_limit;
 *               the cache evicts when the backend or registrar says ENOSPC).
 *
 * Unreferenced entries are evicted at once until the cache fits; referenced ones are not, and
 * requests that need room then fail with ENOMEM / ENOSPC until they are put.
 * Return: 0; EINVAL for a NULL @ctx; ENOMEM when the cache cannot be made.
 */
int ubdma_rcache_set_limits(ubdma_ctx_t *ctx, size_t max_bytes, size_t max_entries, size_t max_iommu);

/*
 * A registration domain other than the context's IOMMU: a verbs protection domain
 * (libubdma_verbs, <ubdma/verbs.h>), a libfabric domain, a GPU driver's host registration.
 * The cache wires each range it registers (so that the monitor watches it and munmap ends it),
 * or only watches it when the registrar pins the pages itself (UBDMA_REGISTRAR_PINS), then calls
 * @reg; it calls @dereg when the entry leaves the cache and nobody holds it, before it unwires.  Limits, eviction, merging, statistics and invalidation are the same as for the IOMMU
 * domain; max_iommu of ubdma_rcache_set_limits() counts registrations here.
 *
 * Rules for the callbacks (docs/rcache.md, "Domains"): they may run on any thread that calls
 * ubdma_reg_get(), ubdma_reg_put(), ubdma_reg_invalidate(), ubdma_rcache_*() or ubdma_ctx_close()
 * on the context, with the cache's own mutex held, never its index lock and never on the
 * monitor's thread; they must not call the registration cache of the same context.
 */
struct ubdma_registrar {
	const char *name;	/* shown in the statistics ("verbs", "ofi"...) */
	/*
	 * Register [addr, addr + len) (page aligned, hugetlb-page aligned on hugetlb; wired; 4 KiB
	 * aligned and watched only, with UBDMA_REGISTRAR_PINS) for
	 * @flags (UBDMA_UMEM_READ and/or UBDMA_UMEM_WRITE: what the device will do) and store the
	 * registration's key in *keyp.  Return 0, or a positive errno with nothing registered:
	 * ENOMEM or ENOSPC make the cache evict and try again (out of registrations, pinned memory).
	 */
	int (*reg)(void *arg, void *addr, size_t len, int flags, void **keyp);
	/* Release @key.  A positive errno is counted (dereg_failures) and the key forgotten. */
	int (*dereg)(void *arg, void *key);
	/*
	 * UBDMA_REGISTRAR_PINS: @reg pins the pages itself for as long as the key lives (a
	 * long-term pin: ibv_reg_mr, VFIO MAP_DMA, iommufd), and fails (EFAULT) on memory it
	 * cannot pin.  The cache then only watches the range (the monitor's events still end the
	 * registration) instead of wiring it: no mlock, no MADV_DONTFORK, so VmLck does not grow
	 * (the registrar's pin shows in VmPin) and a fork(2) child gets a copy of the pages
	 * instead of a hole.  0: the cache wires the range (mlock, MADV_DONTFORK) first.
	 */
	unsigned flags;
};

#define UBDMA_REGISTRAR_PINS 0x1u /* struct ubdma_registrar.flags: reg pins the pages itself */
/*
 * struct ubdma_registrar.flags: bits the registrar's own library gives a meaning to (the cache
 * ignores them), so that its accessors know a registration as theirs from ubdma_reg_registrar()
 * even through a wrapper that copies them (libubdma_verbs: UBDMA_VERBS_MR_KEYS).
 */
#define UBDMA_REGISTRAR_DOMAIN_FLAGS 0xffff0000u

/**
 * ubdma_rcache_set_registrar() - make the context's cache register into @ops's domain (@arg is
 * passed to its callbacks), or, with @ops NULL, into the context's IOMMU again (the default).
 * @ops is not copied: it must outlive the context's use of it.  The domain's resources (a
 * protection domain) must outlive every registration made through it: close the context, or
 * flush the cache with nothing held, before releasing them.
 *
 * Return: 0; EINVAL for a NULL @ctx, @ops without reg or dereg, or @ops->flags other than
 * UBDMA_REGISTRAR_PINS and UBDMA_REGISTRAR_DOMAIN_FLAGS; EBUSY while the cache holds
 * registrations (cached, or invalidated and still held: flush and put them first); ENOMEM when
 * the cache cannot be made.
 */
int ubdma_rcache_set_registrar(ubdma_ctx_t *ctx, const struct ubdma_registrar *ops, void *arg);

/**
 * ubdma_reg_key() - the domain's key of a registration: what the registrar's reg call stored (a
 * struct ibv_mr * in a verbs domain), or the ubdma_umem_t cookie in the IOMMU domain.  Valid
 * until ubdma_reg_put(), as the registration.  NULL for a NULL @reg.
 */
void *ubdma_reg_key(const ubdma_reg_t *reg);

/**
 * ubdma_reg_registrar() - the registrar a registration was made through: the @ops that
 * ubdma_rcache_set_registrar() gave the cache when it made the registration, or NULL in the IOMMU
 * domain and for a NULL @reg.  A registrar's accessors use it to tell their own registrations
 * (and so what their keys are) from others', with no mark in the key: libubdma_verbs keeps the
 * struct ibv_mr * itself as the key.  Valid until ubdma_reg_put(), as the registration.
 */
const struct ubdma_registrar *ubdma_reg_registrar(const ubdma_reg_t *reg);

/**
 * ubdma_reg_range() - the range the registration covers: the request rounded to pages and
 * merged with its neighbours.  Either pointer may be NULL.
 * Return: 0; EINVAL for a NULL @reg.
 */
int ubdma_reg_range(const ubdma_reg_t *reg, void **addrp, size_t *lenp);

/* How the cache learns that memory changed (ubdma_rcache_set_monitor()). */
enum ubdma_rcache_monitor {
	UBDMA_RCACHE_MONITOR_UFFD,	/* userfaultfd events (default); explicit where unavailable */
	UBDMA_RCACHE_MONITOR_EXPLICIT,	/* only ubdma_reg_invalidate() */
};

/**
 * ubdma_rcache_set_monitor() - choose the monitor (the default is UBDMA_RCACHE_MONITOR_UFFD, or
 * what the environment variable UBDMA_RCACHE_MONITOR says: "uffd" or "explicit").
 *
 * Return: 0; EINVAL for a NULL @ctx or an unknown @mode; EBUSY when the cache holds entries
 * (flush it first); ENOMEM when the cache cannot be made.  When userfaultfd is unavailable the
 * cache still works, explicit only, and ubdma_rcache_stats() says why.
 */
int ubdma_rcache_set_monitor(ubdma_ctx_t *ctx, enum ubdma_rcache_monitor mode);

/**
 * ubdma_rcache_flush() - release every cached entry nobody references (and what the monitor
 * invalidated meanwhile).  Return: 0; EINVAL for a NULL @ctx.
 */
int ubdma_rcache_flush(ubdma_ctx_t *ctx);

/* Counters of one cache.  New fields are only ever added at the end. */
struct ubdma_rcache_stats {
	uint64_t hits;		 /* look-ups answered from the cache */
	uint64_t misses;	 /* look-ups that registered memory */
	uint64_t merges;	 /* cached entries folded into a new, larger one */
	uint64_t evictions;	 /* unreferenced entries dropped to honour a limit (or flushed) */
	uint64_t invalidations;	 /* entries dropped because their memory changed */
	uint64_t bytes_pinned;	 /* wired bytes the cache holds, invalidated-but-held included */
	uint64_t entries;	 /* cached entries */
	uint64_t held_invalid;	 /* invalidated entries still referenced */
	uint64_t unmonitored;	 /* cached entries only ubdma_reg_invalidate() can drop */
	uint64_t limit_failures; /* requests refused with ENOMEM / ENOSPC for want of room */
	uint64_t events_unmap, events_remove, events_remap; /* userfaultfd events received */
	uint64_t max_bytes, max_entries, max_iommu;	     /* limits in force (0: none) */
	int monitor_active;	 /* 1 when userfaultfd watches the cache's entries */
	char monitor[160];	 /* "userfaultfd (...)" or "explicit only: <why>" */
	char domain[32];	 /* "iommu", or the registrar's name */
	uint64_t dereg_failures; /* registrar dereg calls that failed (the key was forgotten) */
};

/**
 * ubdma_rcache_stats() - copy the counters into *@st (the first @size bytes of it: pass
 * sizeof(*st)).  A context whose cache was never used reads as zeros.
 * Return: 0; EINVAL for a NULL @ctx or @st.
 */
int ubdma_rcache_stats(ubdma_ctx_t *ctx, struct ubdma_rcache_stats *st, size_t size);

/**
 * ubdma_rcache_stats_print() - the counters as the CLI prints them: one "name: value" line each.
 * Return: 0; EINVAL for a NULL argument; EIO when writing to @f fails.
 */
int ubdma_rcache_stats_print(ubdma_ctx_t *ctx, FILE *f);

#ifdef __cplusplus
}
#endif
#endif /* UBDMA_RCACHE_H */
