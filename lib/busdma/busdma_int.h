/*
 * busdma_int.h - the bus_dma(9) layer as the rest of the library sees it: tags, maps, bounce
 * pools and DMA memory, and the one segment builder every ubdma_map_load*() variant goes through.
 *
 * Ownership.  The context's root tag anchors everything the layer makes in that context: it keeps
 * the list of every tag (root first), each tag keeps its maps and its DMA memory, and each tag owns
 * at most one bounce pool.  busdma_root_destroy() walks those lists, so closing a context frees
 * every tag, map, bounce page and DMA allocation that the user forgot.
 *
 * Locking.  root->lock (struct busdma_root) serialises the shape of the tree: creating and
 * destroying tags, maps and DMA memory, and the tags' lock functions.  A bounce pool has its own
 * lock, taken only when a load needs bounce pages, when an unload gives them back, and by the
 * deferred-load queue.  The fast path (a registered buffer that needs no bounce page) takes no
 * lock: a map is used by one thread at a time, as in bus_dma(9), and the translation map is read
 * lock-free (xlate.h).  Callbacks run with no lock of the layer held (a deferred one under its
 * tag's lock function only).
 *
 * fork(2).  Neither lock has atfork handlers, by design: both belong to one context's objects,
 * and another thread may hold them (root->lock and a pool's lock across a pool's growth, which
 * wires and maps memory) when the process forks.  The child never takes them: it must not use
 * its parent's contexts, tags or maps, and the ones it makes have locks of their own
 * (docs/reliability.md, "fork and library locks").  The layer has no process-wide lock.
 *
 * Units.  A bounce "slot" is where one page-sized piece of a client buffer is copied; slots are
 * max(4 KiB, alignment) bytes apart and start on that alignment, so that the copy at offset 0
 * satisfies the tag's alignment (FreeBSD's bounce zone alignment does the same).
 */
#ifndef UBDMA_BUSDMA_INT_H
#define UBDMA_BUSDMA_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <ubdma/ubdma.h>

#include "base/page.h"
#include "base/queue.h"
#include "core/ctx.h"

#define BUSDMA_HUGE PAGE_2M

/* A map never holds more segments than this, whatever the tag's nsegments (see map_create). */
#define BUSDMA_SEGS_CAP 8192

/* Default bounce pool limit: this many maxsize loads' worth of slots (ubdma_tag_set_bounce_limit). */
#define BUSDMA_BOUNCE_MULT 4

/* Flags a tag accepts. */
#define BUSDMA_TAG_FLAGS (UBDMA_NOWAIT | UBDMA_ALLOCNOW | UBDMA_COHERENT | UBDMA_STRICT | UBDMA_KEEP_PG_OFFSET)

struct bounce_page {
	struct bounce_page *next; /* free list, or the owning map's list while loaded */
	void *vaddr;		  /* the slot */
	uint64_t iova;		  /* its IOVA */
	uintptr_t client;	  /* while loaded: the client bytes it stands for */
	size_t len;		  /* and how many */
	size_t off;		  /* where in the slot they go (UBDMA_KEEP_PG_OFFSET), else 0 */
};

/* A piece of wired, mapped memory from dmamem_backing_alloc(). */
struct backing {
	void *va;
	size_t len;		  /* mapped length (multiple of the page size used) */
	int hugetlb;
	struct ubdma_umem *cookie;
	struct backing *next;
};

struct bounce_pool {
	pthread_mutex_t lock;	  /* the pool; held across growth; no fork handler (see above) */
	struct ubdma_tag *tag;	  /* the tag it belongs to */
	struct bounce_page *free;
	size_t nfree, total;	  /* slots free / made */
	size_t limit;		  /* most slots the pool may make */
	size_t slot;		  /* slot size and alignment, a power of two >= 4 KiB */
	struct backing *mem;	  /* memory the slots live in */
	struct bounce_page **pagev; /* arrays of page records, one per backing */
	size_t npagev;
	struct ubdma_map *wait_head, *wait_tail; /* deferred loads, FIFO */
	int draining;		  /* a thread runs the queue (bounce.c, "Deferred loads") */
	int pending;		  /* on a thread's list of queues to run after its callback */
	int orphan;		  /* its tag is gone: the thread whose list holds it frees it */
	LIST_ENTRY(bounce_pool) pend_link; /* that list (bounce.c) */
};

struct busdma_root {
	pthread_mutex_t lock;	  /* tree shape: tags, maps, DMA memory; no fork handler (see above) */
	LIST_HEAD(, ubdma_tag) tags; /* every tag of the context but the root */
};

struct ubdma_tag {
	struct ubdma_ctx *ctx;
	struct ubdma_tag *parent;
	struct busdma_root *root; /* the context's anchor */
	/* constraints, after inheritance */
	uint64_t amask;		  /* alignment - 1 */
	uint64_t boundary;	  /* 0: none */
	uint64_t lowaddr, highaddr; /* IOVAs in (lowaddr, highaddr] are unusable */
	size_t alignment, maxsize, maxsegsz;
	int nsegments;
	int flags;
	int fastseg;		  /* no boundary, no STRICT, alignment <= 4 KiB: the one-segment load
				   * (load.c, load_one_fast()) checks only the window, the alignment and
				   * maxsegsz; what it reads is in the struct's first cache line */
	int kind;		  /* BUSDMA_TAG_* */
	int seg_cap;		  /* segment array size of each map */
	/* bookkeeping, under root->lock */
	int nchildren, nmaps;
	LIST_HEAD(, ubdma_map) maps;
	LIST_ENTRY(ubdma_tag) link; /* root->tags */
	struct bounce_pool *pool; /* made on first need or with ALLOCNOW */
	size_t bounce_limit;	  /* bytes asked with ubdma_tag_set_bounce_limit() */
	int bounce_limit_set;	  /* 0: the default applies */
	/* the device the tag serves, from its device tag (busdma_device_tag_create()) down */
	int node;		  /* NUMA node of its DMA and bounce memory, or UBDMA_NODE_ANY */
	int naperture;		  /* 0: no aperture but the context's windows */
	struct iommu_window aperture[IOMMU_MAX_WINDOWS]; /* IOVA ranges the device may use */
	ubdma_lockfunc_t *lockfunc; /* its own (under root->lock); NULL: the nearest ancestor's */
	void *lockfuncarg;
};

enum { BUSDMA_TAG_USER, BUSDMA_TAG_ROOT, BUSDMA_TAG_DEVICE };

enum map_state { MAP_IDLE, MAP_LOADED, MAP_PENDING };

struct dmamem;

struct ubdma_map {
	struct ubdma_tag *tag;
	enum map_state state;
	int nseg;
	ubdma_seg_t *segs;	  /* seg_cap entries, made with the map */
	struct bounce_page *bpages; /* bounce slots of the current load */
	LIST_ENTRY(ubdma_map) link; /* tag->maps */
	struct dmamem *mem;	  /* set when the map came from ubdma_mem_alloc() */
	/* a deferred (WAITOK) load */
	struct ubdma_map *wait_next;
	size_t wait_pages;
	struct iovec *wait_iov;	  /* &wait_iov1, or a copy of a longer scatter list */
	struct iovec wait_iov1;
	int wait_iovcnt;
	int wait_flags;
	ubdma_callback_t *wait_cb;
	void *wait_arg;
};

struct dmamem {
	struct backing b;
	struct ubdma_map *map;
};

/* ------------------------------------------------------------ tag.c */

/* What a device brings to its tag. */
struct busdma_device {
	const struct iommu_window *windows; /* its IOMMU aperture: the IOVA ranges it may use */
	int nwindows;			    /* 0: none beyond the context's windows */
	int node;			    /* its NUMA node, or UBDMA_NODE_ANY */
	ubdma_lockfunc_t *lockfunc;	    /* for deferred callbacks, or NULL */
	void *lockfuncarg;
};

/*
 * A device's tag, as bus_get_dma_tag(9) returns it: a child of parent (the context's root tag)
 * that carries the device.  Its exclusion window is what lies above the aperture (lowaddr = the
 * end of the highest range, highaddr = UBDMA_MAXADDR), so that loads bounce what the device
 * cannot reach at no cost to the fast path; the ranges themselves confine its bounce and DMA
 * memory, which goes on the device's node.  Tags the driver creates under it inherit all of it.
 * The user cannot destroy it (EINVAL): lib/pci does, with busdma_tag_destroy_internal().
 * Return: 0; EINVAL for NULL arguments, more than IOMMU_MAX_WINDOWS ranges or a range whose end
 * is below its start; ENOMEM.
 */
int busdma_device_tag_create(struct ubdma_tag *parent, const struct busdma_device *dev,
			     struct ubdma_tag **tagp);
/* Destroy a tag of any kind but the root.  EBUSY while maps or children exist. */
int busdma_tag_destroy_internal(struct ubdma_tag *tag);

/*
 * The IOVA range where len bytes of the tag's bounce memory or DMA memory may live: outside its
 * exclusion window, inside a context window and inside its device's aperture; the first that
 * holds len, else the first that holds a page.  0 or ENOMEM (no page anywhere).
 */
int busdma_tag_allowed(const struct ubdma_tag *tag, size_t len, struct iommu_window *w);

/* The lock function deferred callbacks of the tag run under: its own or its nearest ancestor's. */
void busdma_tag_lockfunc(struct ubdma_tag *tag, ubdma_lockfunc_t **fnp, void **argp);

/* Whether [iova, iova + len) is usable by the tag: outside the window, aligned start. */
static inline int busdma_iova_ok(const struct ubdma_tag *t, uint64_t iova, size_t len)
{
	return !(iova & t->amask) && !(iova + len - 1 > t->lowaddr && iova <= t->highaddr);
}

/* ------------------------------------------------------------ load.c */

/* How the builder treats a piece that must bounce. */
enum build_mode {
	BUILD_FAST,   /* no slot at hand: stop with BUILD_NEED_BOUNCE */
	BUILD_COUNT,  /* count slots and segments, write nothing outside the builder */
	BUILD_BOUNCE, /* take slots from a reserved list */
};
#define BUILD_NEED_BOUNCE (-1)

struct build {
	const struct ubdma_tag *tag;
	enum build_mode mode;
	ubdma_seg_t *segs;	  /* segs[cap]; NULL in COUNT mode */
	int cap, nseg;
	int nomerge;		  /* the next piece may not extend the last segment */
	uint64_t last_end;	  /* COUNT mode keeps only the last segment's end and length */
	uint64_t last_len, last_addr;
	size_t npages;		  /* slots used (COUNT) */
	struct bounce_page *reserved; /* BOUNCE: slots to take */
	struct bounce_page *used;     /* BOUNCE: slots taken, newest first */
};

/*
 * The segment builder: the one front door of every load.  Walks the pieces, translates them run
 * by run, decides per page whether to bounce, and emits segments that honour the tag.
 * Return: 0, EFBIG when more than cap segments are needed, or BUILD_NEED_BOUNCE (FAST mode).
 */
int busdma_build(struct build *b, const struct iovec *iov, int iovcnt);

/* Run a load that was deferred for bounce slots, now reserved (list `pages`), and call back. */
void busdma_load_deferred(struct ubdma_map *map, struct bounce_page *pages);

/* ------------------------------------------------------------ bounce.c */

/* Make the tag's pool if it has none (sizes it from the tag).  0 or ENOMEM.  root->lock not held. */
int bounce_pool_get(struct ubdma_tag *tag, struct bounce_pool **poolp);
/* Default slot limit of a tag. */
size_t bounce_default_limit(const struct ubdma_tag *tag);
/*
 * Take n slots for map, growing the pool up to its limit.  Returns 0 with *pagesp a list of n
 * slots; ENOMEM when they cannot be had now (NOWAIT) or ever (more than the limit); EINPROGRESS
 * when the map was queued (WAITOK): busdma_load_deferred() runs later.
 */
int bounce_reserve(struct ubdma_tag *tag, struct ubdma_map *map, size_t n, int flags,
		   struct bounce_page **pagesp);
/* Give slots back and run the deferred loads they make possible, in FIFO order. */
void bounce_release(struct ubdma_tag *tag, struct bounce_page *pages);
/* Take a queued map off the queue (unload of a pending map).  1 if it was queued. */
int bounce_cancel(struct ubdma_tag *tag, struct ubdma_map *map);
/* Free the pool and all its memory (no slot may be in use). */
void bounce_pool_free(struct bounce_pool *pool);
/* Run the queue (after the limit grew). */
void bounce_drain(struct ubdma_tag *tag);
/* Whether a thread runs the pool's queue now (its tag must not go: the drain holds it). */
int bounce_draining(struct bounce_pool *pool);

/* ------------------------------------------------------------ dmamem.c */

/*
 * Get len bytes (rounded up to the page size used) of wired memory whose IOVAs lie in lim, whose
 * first IOVA is aligned to align (a power of two), mapped in the context, preferably on NUMA node
 * node (UBDMA_NODE_ANY: anywhere).  hugetlb: 1 to use 2 MiB pages (always, on a backend that maps
 * only hugetlb memory), 0 to use 4 KiB pages, -1 to choose.
 * Return: 0 or ENOMEM (no memory in the window), or an errno from wiring/mapping.
 */
int dmamem_backing_alloc(struct ubdma_ctx *ctx, size_t len, size_t align, const struct iommu_window *lim,
			 int hugetlb, int node, struct backing *b);
void dmamem_backing_free(struct backing *b);

/* ------------------------------------------------------------ map.c */

/* Take a map off its tag's list (under the root's lock). */
void busdma_map_unlink(ubdma_tag_t *tag, ubdma_map_t *map);
/* Free a map whatever its state (context teardown). */
void busdma_map_free(struct ubdma_map *map);
/* Internal map create, root->lock held by the caller. */
int busdma_map_create_locked(struct ubdma_tag *tag, struct ubdma_map **mapp);

#endif
