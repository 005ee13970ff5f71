/*
 * ctx.h - the context (one IOMMU domain) and locked-memory cookies, as the layers see them.
 *
 * The context owns the backend, its usable IOVA windows, the translation map and the list of
 * registrations (cookies) that feed the map.  reg_lock serialises writers of the map and the list;
 * readers of the map take no lock (see xlate.h).
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
	struct umem_chunk *chunks; /* cover [rounded start, rounded end) */
	LIST_ENTRY(ubdma_umem) link; /* ctx->umems */
	int internal;	      /* made by a layer (bounce pool, mem_alloc, rcache), not the user */
	int hidden;	      /* out of the translation map, still mapped (umem_hide()) */
	struct wire_ticket *ticket; /* the wiring it holds (ended by munmap & co., docs/wire.md) */
};

struct ubdma_ctx {
	enum ubdma_backend backend;
	const struct iommu_ops *ops;
	void *priv;
	char reason[512];
	int is_auto;		  /* opened with UBDMA_BACKEND_AUTO: may step down on failure */
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
	struct ubdma_tag *root;	  /* root DMA tag (busdma layer) */
	/* Layers above attach here and are torn down first by ubdma_ctx_close(), in this order. */
	LIST_HEAD(, ubdma_pci) pci; /* open devices (pci layer) */
	void (*pci_fini)(struct ubdma_ctx *ctx);
	void *rcache;		  /* registration cache (rcache layer), lazily made */
	void (*rcache_fini)(struct ubdma_ctx *ctx);
	/*
	 * The wire layer's monitor learns asynchronously that memory under some translations is
	 * gone; it bumps its epoch (wmon_epoch()) before it reads the news.  ctx_settle_slow()
	 * waits until the news is applied, lets the registration cache retire its entries
	 * (rcache_settle), takes out of the map every cookie whose wiring ended, and publishes the
	 * epoch it covered in stale_settled.  Readers of the map call ctx_settle() first.
	 */
	uint64_t stale_settled;
	uint64_t end_seen;	  /* wire_end_seq() when the cookies were last checked (reg_lock) */
	void (*rcache_settle)(struct ubdma_ctx *ctx);
};

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

/* Hooks the busdma layer provides for the context's root tag. */
int busdma_root_create(struct ubdma_ctx *ctx, struct ubdma_tag **rootp);
void busdma_root_destroy(struct ubdma_tag *root);

#endif
