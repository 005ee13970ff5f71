/*
 * ctx.h - the context (one IOMMU domain) and locked-memory cookies, as the layers see them.
 *
 * The context owns the backend (lib/iommu, through struct iommu only), the usable IOVA windows
 * the backend reports, the translation map, the list of registrations (cookies) that feed the
 * map, and one pointer of state for each layer above it (struct ctx_layer).  reg_lock serialises
 * writers of the map and the list; readers of the map take no lock (see xlate.h).  win_lock
 * guards the windows.
 */
#ifndef UBDMA_CTX_H
#define UBDMA_CTX_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <ubdma/ubdma.h>

#include "base/queue.h"
#include "iommu/iommu.h"
#include "wire/monitor.h"
#include "wire/wire.h"
#include "xlate/xlate.h"

/* A run of a cookie that lies in one mapping (one page size). */
struct umem_chunk {
	uintptr_t va;	  /* aligned to pgsz */
	size_t npages;
	size_t pgsz;
	int hugetlb;
	uint64_t iova0;	  /* IOVA of the first page; with linear, iova = iova0 + (va' - va) */
	int linear;
	uint64_t *iovas;  /* per page, when not linear */
};

struct ubdma_umem {
	struct ubdma_ctx *ctx;
	uintptr_t start, end; /* the range asked for (page aligned) */
	int flags;	      /* UBDMA_UMEM_* */
	int wire_flags;
	int nchunks;
	struct umem_chunk *chunks; /* cover [rounded start, rounded end); &one when there is one */
	struct umem_chunk one;	   /* the usual cookie's only chunk, so that it costs no allocation */
	LIST_ENTRY(ubdma_umem) link; /* ctx->umems */
	uint64_t seq;	      /* order of locking in the context: newer is larger (rank_of()) */
	int internal;	      /* made by a layer (bounce pool, mem_alloc, rcache), not the user */
	int hidden;	      /* out of the translation map, still mapped (umem_hide()) */
	struct wire_ticket *ticket; /* the wiring it holds (ended by munmap & co., docs/wire.md) */
};

/*
 * The layers above the context.  lib/core knows them only through this list and the hooks of
 * their struct ctx_layer; each keeps one pointer of state in the context (ctx_layer_state()),
 * NULL while it has nothing there.  The order is the teardown order of ubdma_ctx_close():
 *   pci     devices first: bus mastering off and groups detached while every mapping a device
 *           could still reach exists;
 *   rcache  then the registration cache releases its cookies, held or not;
 *   busdma  then tags, maps, bounce pools and DMA memory (their cookies); its state is the root
 *           tag (ubdma_ctx_tag()), made at open, so that a context always has one;
 * and after the layers, the cookies the user still holds, then the backend.  ubdma_ctx_open()
 * runs the open hooks the other way round.
 */
enum ctx_layer_id { CTX_LAYER_PCI, CTX_LAYER_RCACHE, CTX_LAYER_BUSDMA, CTX_NLAYERS };

struct ctx_layer {
	const char *name;
	/* At ubdma_ctx_open(): make the state (0 or errno).  NULL for layers that set their state
	 * on first use (ctx_layer_set()). */
	int (*open)(struct ubdma_ctx *ctx, void **statep);
	/* From ctx_settle_slow(), on any thread, no lock held, when the state is not NULL: wirings
	 * ended; drop what depended on them.  NULL when there is nothing to do. */
	void (*settle)(struct ubdma_ctx *ctx, void *state);
	/* From ubdma_ctx_close(), when the state is not NULL: free all of the layer in ctx. */
	void (*fini)(struct ubdma_ctx *ctx, void *state);
};

/* Each defined by its layer (lib/pci, lib/rcache, lib/busdma). */
extern const struct ctx_layer pci_layer, rcache_layer, busdma_layer;

struct ubdma_ctx {
	struct iommu iommu;	  /* the backend: lib/iommu's iommu_*() calls, never its ops */
	struct iommu_sink sink;	  /* where the backend reports its windows */
	char reason[512];	  /* why this backend (ubdma_ctx_backend_reason()) */
	/*
	 * The windows as the backend last reported them.  Read them with ctx_windows(), which
	 * copies them under win_lock.  A leaf lock: the backend reports with its own lock held,
	 * and nothing is taken under win_lock.
	 */
	pthread_mutex_t win_lock;
	struct iommu_window windows[IOMMU_MAX_WINDOWS];
	int nwindows;
	struct xlate_map xlate;
	/*
	 * fork(2): no atfork handler, by design.  The lock is the context's own, so another thread
	 * may hold it when the process forks; the child never takes it, because a child must not
	 * use or close a context of its parent (ubdma_ctx_open(3) CAVEATS: its IOMMU mappings are
	 * the parent's) and the contexts it opens have locks of their own.  docs/reliability.md,
	 * "fork and library locks", has every lock of the library.
	 */
	pthread_mutex_t reg_lock;
	LIST_HEAD(, ubdma_umem) umems; /* every live cookie, newest first */
	size_t numems;
	/*
	 * The same cookies sorted by the start of their wired range (umem.c, registry_link()), so
	 * that a lock or unlock finds the cookies overlapping it without walking all of them; with
	 * how many cookies span less than 2^k bytes (ix_span[k]), which bounds how far below a
	 * range an overlapping cookie can start.  Under reg_lock.
	 */
	struct ubdma_umem **ix;
	size_t ix_cap;
	size_t ix_span[65];
	uint64_t umem_seq;
	void *layer[CTX_NLAYERS]; /* each layer's state: ctx_layer_state() / ctx_layer_set() */
	/*
	 * The wire layer's monitor learns asynchronously that memory under some translations is
	 * gone; it bumps its epoch (wmon_epoch()) before it reads the news.  ctx_settle_slow()
	 * waits until the news is applied, lets the layers retire what depended on it (their
	 * settle hooks: the registration cache's entries), takes out of the map every cookie whose
	 * wiring ended, and publishes the epoch it covered in stale_settled.  Readers of the map
	 * call ctx_settle() first.
	 */
	uint64_t stale_settled;
	uint64_t end_seen;	  /* wire_end_seq() when the cookies were last checked (reg_lock) */
	/*
	 * One freed cookie kept for the next lock (atomic exchange, no lock): a lock + unlock in a
	 * loop allocates nothing, which under TCG is dear (issue 21).  Freed with the context.  Last,
	 * so that the fields before it keep their cache lines (the hit path reads some).
	 */
	struct ubdma_umem *umem_spare;
	/* Bit k - 1 set while ix_span[k] is not zero (k is 1..64: spans are never empty), so that
	 * the widest class is one count of leading zeros instead of a walk down 64 counts, which
	 * under TCG cost as much as the rest of a lock's registry work (issue 21).  Under reg_lock;
	 * here at the end for the reason umem_spare is. */
	uint64_t ix_span_mask;
};

/* A layer's state in ctx, or NULL; any thread. */
static inline void *ctx_layer_state(const struct ubdma_ctx *ctx, enum ctx_layer_id id)
{
	return __atomic_load_n(&ctx->layer[id], __ATOMIC_ACQUIRE);
}

/* Publish a layer's state (the layer serialises its own writers). */
static inline void ctx_layer_set(struct ubdma_ctx *ctx, enum ctx_layer_id id, void *state)
{
	__atomic_store_n(&ctx->layer[id], state, __ATOMIC_RELEASE);
}

/* Run the settle hooks of the layers that have state (ctx_settle_slow()). */
void ctx_layers_settle(struct ubdma_ctx *ctx);

/*
 * A consistent copy of the context's IOVA windows (w has room for IOMMU_MAX_WINDOWS).  Return:
 * how many.  Any thread; takes win_lock.
 */
int ctx_windows(const struct ubdma_ctx *ctx, struct iommu_window *w);

void ctx_settle_slow(struct ubdma_ctx *ctx);

/*
 * Before reading the translation map on behalf of a caller (ubdma_vtoiova(), bus_dma loads): an
 * address whose memory was unmapped before this call (in program order) must not translate to
 * the old frames.  Two loads when nothing is pending.
 */
static inline void ctx_settle(struct ubdma_ctx *ctx)
{
	if (__builtin_expect(wmon_epoch() != __atomic_load_n(&ctx->stale_settled, __ATOMIC_ACQUIRE), 0))
		ctx_settle_slow(ctx);
}

/*
 * Take a cookie out of the translation map (its pages show the next best cookie, or nothing) and
 * keep its IOMMU mapping and wiring until ubdma_umem_unlock(): for memory that went away under a
 * registration somebody still holds.  Idempotent.
 */
void umem_hide(struct ubdma_umem *u);

/*
 * Lock a cookie for a layer of the library: as ubdma_umem_lock(), and when lim is not NULL every
 * IOVA lies in lim (ERANGE when the backend cannot choose IOVAs and they fall outside).
 */
int umem_lock(struct ubdma_ctx *ctx, void *addr, size_t len, int flags, const struct iommu_window *lim,
	      struct ubdma_umem **cookiep);

/* The IOVA of addr inside a chunk of a cookie (addr must lie in the chunk). */
static inline uint64_t umem_chunk_iova(const struct umem_chunk *c, uintptr_t addr)
{
	uintptr_t off = addr - c->va;

	return c->linear ? c->iova0 + off : c->iovas[off / c->pgsz] + off % c->pgsz;
}

#endif
