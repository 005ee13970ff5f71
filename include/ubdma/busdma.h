/*
 * ubdma/busdma.h - the bus_dma(9) model: tags, maps, loads, sync, DMA memory.
 * Included by <ubdma/ubdma.h>.  Errors follow the convention of ubdma/core.h.
 *
 * Threads, as FreeBSD's busdma:
 *  - Tags are shared.  Any threads may create child tags, create and destroy maps, allocate and
 *    free DMA memory, set the bounce limit or the lock function, and load maps of one tag at the
 *    same time (a lock per context orders the tree; a bounce pool has a lock of its own, taken
 *    only when a load bounces).  ubdma_tag_destroy() must not race other calls on the same tag.
 *  - A map is used by one thread at a time: load, unload, sync, destroy and ubdma_mem_free() of
 *    one map are serialised by the caller (no lock guards a map: the hot path takes none).
 *    Different maps, of one tag or not, are independent.
 *  - A deferred load's callback (the load returned EINPROGRESS) runs later in the thread whose
 *    ubdma_map_unload() or ubdma_tag_set_bounce_limit() freed bounce pages, under the tag's lock
 *    function when one is set (ubdma_tag_set_lockfunc()), with no library lock held.  It may load,
 *    unload and sync maps (its own map included) and create or destroy maps and tags other than
 *    its own tag; loads its unloads make possible run after it returns, never nested.  It must not
 *    call ubdma_ctx_close() of its context.  A callback that runs inside its ubdma_map_load*() is
 *    in the loading thread, not under the lock function.
 *  - fork(2): the child must not touch its parent's tags, maps or DMA memory, nor return into the
 *    library from a callback it was forked in (docs/reliability.md, "fork and library locks").
 */
#ifndef UBDMA_BUSDMA_H
#define UBDMA_BUSDMA_H

#include <ubdma/core.h>

#ifdef __cplusplus
extern "C" {
#endif


typedef struct {
	ubdma_iova_t ds_addr; /* IOVA of the segment */
	uint64_t ds_len;      /* its length in bytes */
} ubdma_seg_t;

/*
 * A load's callback, bus_dmamap_callback_t: @segs/@nseg the segment list (valid during the call),
 * or @nseg 0 and @error EFBIG or ENOMEM.  Runs in the loading thread, or for a deferred load in the
 * thread whose ubdma_map_unload() (or ubdma_tag_set_bounce_limit()) freed the bounce pages.
 */
typedef void ubdma_callback_t(void *arg, ubdma_seg_t *segs, int nseg, int error);

/* What a lock function is asked to do, as FreeBSD's bus_dma_lock_op_t. */
typedef enum { UBDMA_LOCK = 1, UBDMA_UNLOCK = 2 } ubdma_lock_op_t;

/*
 * A tag's lock function, bus_dma_lock_t: called with UBDMA_LOCK before a deferred load's callback
 * runs and with UBDMA_UNLOCK after it returns (ubdma_tag_set_lockfunc()).
 */
typedef void ubdma_lockfunc_t(void *arg, ubdma_lock_op_t op);

/**
 * ubdma_tag_create() - a DMA tag: the constraints of a device, bus_dma_tag_create(9).
 * @parent:    the context's root tag (ubdma_ctx_tag()), a device tag or another tag; NULL -> EINVAL.
 * @alignment: power of two (1 = none); every page piece used in place starts on it, else bounces.
 * @boundary:  power of two or 0 (none); no segment crosses a multiple of it; clips @maxsegsz.
 * @lowaddr, @highaddr: IOVAs in the window (lowaddr, highaddr] cannot be used by the device
 *             (UBDMA_MAXADDR_32BIT, UBDMA_MAXADDR for a 32-bit device; lowaddr == highaddr: none).
 * @maxsize:   largest load; @nsegments: most segments; @maxsegsz: largest segment (0 -> EINVAL).
 * @flags:     UBDMA_ALLOCNOW makes the bounce pages of one maxsize load now; UBDMA_STRICT bounces
 *             every piece that does not fill its whole 4 KiB page; UBDMA_KEEP_PG_OFFSET places a
 *             bounced piece at the same offset in its bounce page as in its own 4 KiB page (as
 *             FreeBSD's BUS_DMA_KEEP_PG_OFFSET: for devices whose lists name pages, such as NVMe
 *             PRPs; the offset then wins over @alignment); UBDMA_NOWAIT, UBDMA_COHERENT are
 *             accepted and change nothing.
 * A child inherits lowaddr = min, highaddr = max and the smallest non-zero boundary of its parent
 * and its own, and holds a reference on its parent.
 * Return: 0; EINVAL for a NULL @parent or @tagp, alignment or boundary not a power of two, maxsize,
 * maxsegsz or nsegments 0, lowaddr > highaddr, unknown flags; ENOMEM when memory or (ALLOCNOW)
 * bounce pages cannot be had; with ALLOCNOW, other errors of registering the bounce memory
 * (ubdma_umem_lock()), such as ENOSPC on vfio.
 */
int ubdma_tag_create(ubdma_tag_t *parent, size_t alignment, uint64_t boundary, ubdma_iova_t lowaddr,
		     ubdma_iova_t highaddr, size_t maxsize, int nsegments, size_t maxsegsz, int flags,
		     ubdma_tag_t **tagp);

/**
 * ubdma_tag_destroy() - destroy a tag and its bounce pool.
 * Return: 0; EBUSY while maps (DMA memory included) or child tags exist, or while the tag's
 * deferred loads are being run (from one of its callbacks, or in another thread); EINVAL for
 * NULL, the root tag (ubdma_ctx_close() frees it) or a device's tag (ubdma_pci_close() frees it).
 */
int ubdma_tag_destroy(ubdma_tag_t *tag);

/**
 * ubdma_tag_set_bounce_limit() - bound the tag's bounce pool to @bytes of pages in use at once
 * (rounded up to whole pages of max(4 KiB, alignment)).  The default is 4 maxsize loads, at most
 * 128 MiB; 0 forbids bouncing (loads that need it fail with ENOMEM).  Raising the limit runs
 * loads waiting for pages, in the calling thread.
 * Return: 0; EINVAL for a NULL @tag.
 */
int ubdma_tag_set_bounce_limit(ubdma_tag_t *tag, size_t bytes);

/**
 * ubdma_tag_bounce_limit() - the tag's bounce pool limit in bytes (the default until set); 0 with
 * errno EINVAL for a NULL @tag.
 */
size_t ubdma_tag_bounce_limit(const ubdma_tag_t *tag);

/**
 * ubdma_tag_set_lockfunc() - the lock a deferred load's callback runs under, as the lockfunc and
 * lockfuncarg of FreeBSD's bus_dma_tag_create(9).
 * @tag:         any tag; its child tags that have no lock function of their own use it.
 * @lockfunc:    called as @lockfunc(@lockfuncarg, UBDMA_LOCK) before the callback of a deferred
 *               (EINPROGRESS) load of a map of the tag runs, and with UBDMA_UNLOCK after it
 *               returns, in the thread that runs it (the one whose ubdma_map_unload() or
 *               ubdma_tag_set_bounce_limit() freed the bounce pages); NULL: none of its own.
 * @lockfuncarg: passed to @lockfunc, typically the driver's mutex.
 * A callback that runs at once, inside its ubdma_map_load*(), is not wrapped: the loading thread
 * holds what it needs.  The thread that unloads must not hold the lock (a deferred callback may run
 * inside its ubdma_map_unload()); a callback never runs inside another callback: loads that an
 * unload inside a callback makes possible run after that callback and its UBDMA_UNLOCK.  Takes
 * effect for the next callback.  Set on a device's tag (ubdma_pci_dma_tag()), it covers every tag
 * the driver creates under it.
 * Return: 0; EINVAL for a NULL @tag.
 */
int ubdma_tag_set_lockfunc(ubdma_tag_t *tag, ubdma_lockfunc_t *lockfunc, void *lockfuncarg);

/**
 * ubdma_map_create() - a map for loads on @tag; its segment array is made now, so loads allocate
 * nothing.  @flags: 0, UBDMA_NOWAIT or UBDMA_COHERENT (no effect).
 * Return: 0; EINVAL for NULL arguments or unknown flags; ENOMEM.
 */
int ubdma_map_create(ubdma_tag_t *tag, int flags, ubdma_map_t **mapp);

/**
 * ubdma_map_destroy() - destroy an unloaded map.
 * Return: 0; EBUSY while the map is loaded or waiting for a deferred load; EINVAL for a NULL @tag
 * or @map, a map of another tag or one from ubdma_mem_alloc() (use ubdma_mem_free()).
 */
int ubdma_map_destroy(ubdma_tag_t *tag, ubdma_map_t *map);

/**
 * ubdma_map_load() - load a buffer: build its segment list and hand it to @cb.
 * Registered memory (ubdma_umem_lock()) is used in place; a page piece that is not registered,
 * whose IOVA is in the exclusion window or off the alignment is bounced (never pinned behind the
 * caller's back).  No lock, system call or allocation when nothing bounces.
 * A @len of 0 loads zero segments (as bus_dmamap_load(9)): the callback runs with nseg 0 and
 * error 0, and the map is loaded until ubdma_map_unload().
 * @flags: UBDMA_WAITOK (0) or UBDMA_NOWAIT.
 * Return: 0 when the callback ran: with the segments, or with nseg 0 and EFBIG (more than
 * nsegments segments); ENOMEM when bounce pages are short and @flags is UBDMA_NOWAIT, or the load
 * needs more than the pool's limit (the callback got ENOMEM too); EINPROGRESS when bounce pages are
 * short and @flags is UBDMA_WAITOK: the callback runs later, in FIFO order, when an unload frees
 * pages; EINVAL (no callback, map left unloaded) for a NULL @tag, @map or @cb, a map of another
 * tag, a map already loaded or waiting, len above maxsize, unknown flags, a NULL @buf with a
 * non-zero @len, or a range whose end @buf + @len wraps past 2^64 (or ends exactly there).
 */
int ubdma_map_load(ubdma_tag_t *tag, ubdma_map_t *map, void *buf, size_t len, ubdma_callback_t *cb,
		   void *arg, int flags);

/**
 * ubdma_map_load_iov() - as ubdma_map_load() for a scatter list of @iovcnt pieces.
 * Pieces of length 0 are skipped whatever their base; a list whose total is 0 (or @iovcnt 0)
 * loads zero segments.
 * Return: as ubdma_map_load(); EINVAL also for a negative @iovcnt, a NULL @iov with @iovcnt > 0, a
 * piece with a NULL base and a non-zero length, a piece that wraps past 2^64, or a total length
 * that overflows size_t.
 */
int ubdma_map_load_iov(ubdma_tag_t *tag, ubdma_map_t *map, const struct iovec *iov, int iovcnt,
		       ubdma_callback_t *cb, void *arg, int flags);

/**
 * ubdma_map_load_sg() - as ubdma_map_load() without a callback, like bus_dmamap_load_mbuf_sg().
 * @segs: array of the tag's nsegments entries; @nsegs receives the count (0 on failure, and for
 * a @len of 0, which succeeds and leaves the map loaded until ubdma_map_unload()).
 * Return: 0; EFBIG; ENOMEM (never deferred, whatever @flags); EINVAL as ubdma_map_load(), and for
 * a NULL @segs or @nsegs.
 */
int ubdma_map_load_sg(ubdma_tag_t *tag, ubdma_map_t *map, void *buf, size_t len, ubdma_seg_t *segs,
		      int *nsegs, int flags);

/**
 * ubdma_map_unload() - release the load's segments and bounce pages (which may run deferred
 * loads of other maps in this thread); cancels a load still waiting.  No implicit sync.  A NULL
 * @map or a map of another tag changes nothing and sets errno to EINVAL and the sentence.
 */
void ubdma_map_unload(ubdma_tag_t *tag, ubdma_map_t *map);

/**
 * ubdma_map_sync() - bounce copies and fences: PREWRITE copies to the bounce pages, POSTREAD
 * copies back, PREREAD and POSTWRITE copy nothing; ends with a release fence (PRE) or an acquire
 * fence (POST).  PRE and POST mixed in one call, unknown @ops bits, a NULL @map or a map of another
 * tag are refused: nothing is copied, errno is set to EINVAL and ubdma_last_error() says why
 * (ubdma_map_sync_checked() returns the errno instead).  No lock, system call or allocation.
 */
void ubdma_map_sync(ubdma_tag_t *tag, ubdma_map_t *map, int ops);

/**
 * ubdma_map_sync_checked() - ubdma_map_sync() that returns its verdict, for callers that want it
 * (the void signature is the bus_dmamap_sync(9) one DESIGN.md fixes).  Same cost.
 * Return: 0; EINVAL for PRE and POST mixed, unknown @ops bits, a NULL @map or a map of another tag
 * (nothing copied).
 */
int ubdma_map_sync_checked(ubdma_tag_t *tag, ubdma_map_t *map, int ops);

/**
 * ubdma_mem_alloc() - maxsize bytes of DMA memory that satisfy @tag (alignment, boundary, window,
 * nsegments: one segment when nsegments is 1), wired and mapped into the context, 2 MiB
 * hugepage-backed from 2 MiB on.  *@mapp is a map for it, not loaded: load it with
 * ubdma_map_load() to get its segments (never bounced), as with bus_dmamem_alloc(9).
 * @flags: UBDMA_ZERO zeroes it; UBDMA_COHERENT accepted (x86 DMA is always coherent); UBDMA_NOWAIT.
 * Return: 0; EINVAL for NULL arguments, unknown flags or a maxsize above 1 TiB; ENOMEM when no
 * memory satisfies the tag; other errors of registering it (ubdma_umem_lock()), such as ENOSPC on
 * vfio.
 */
int ubdma_mem_alloc(ubdma_tag_t *tag, void **vaddrp, int flags, ubdma_map_t **mapp);

/**
 * ubdma_mem_free() - unload if loaded, and free memory from ubdma_mem_alloc() and its map.  Memory
 * that is not @tag's from ubdma_mem_alloc() (NULL included) is left alone; errno is set to EINVAL
 * and the sentence.
 */
void ubdma_mem_free(ubdma_tag_t *tag, void *vaddr, ubdma_map_t *map);


#ifdef __cplusplus
}
#endif
#endif /* UBDMA_BUSDMA_H */
