/*
 * ubdma/busdma.h - the bus_dma(9) model: tags, maps, loads, sync, DMA memory.
 * Included by <ubdma/ubdma.h>.
 */
#ifndef UBDMA_BUSDMA_H
#define UBDMA_BUSDMA_H

#include <ubdma/core.h>

#ifdef __cplusplus
extern "C" {
#endif


typedef struct {
	uint64_t ds_addr; /* IOVA of the segment */
	uint64_t ds_len;  /* its length in bytes */
} ubdma_seg_t;

typedef void ubdma_callback_t(void *arg, ubdma_seg_t *segs, int nseg, int error);

/**
 * ubdma_tag_create() - a DMA tag: the constraints of a device, bus_dma_tag_create(9).
 * @parent:    the context's root tag (ubdma_ctx_tag()), a device tag or another tag; NULL -> EINVAL.
 * @alignment: power of two (1 = none); segments start on this alignment.
 * @boundary:  power of two or 0 (none); no segment crosses a multiple of it.
 * @lowaddr, @highaddr: IOVAs in the window (lowaddr, highaddr] cannot be used by the device.
 * @maxsize:   largest load; @nsegments: most segments; @maxsegsz: largest segment (0 -> EINVAL).
 * @flags:     UBDMA_ALLOCNOW reserves bounce pages for one maxsize load now; UBDMA_STRICT.
 * Return: 0; EINVAL for bad parameters; ENOMEM when memory or bounce pages cannot be had.
 */
int ubdma_tag_create(ubdma_tag_t *parent, size_t alignment, uint64_t boundary, uint64_t lowaddr,
		     uint64_t highaddr, size_t maxsize, int nsegments, size_t maxsegsz, int flags,
		     ubdma_tag_t **tagp);

/** ubdma_tag_destroy() - Return: 0; EBUSY while maps or child tags exist; EINVAL for the root tag. */
int ubdma_tag_destroy(ubdma_tag_t *tag);

/** ubdma_map_create() - a map for loads on @tag.  Return: 0, EINVAL, ENOMEM. */
int ubdma_map_create(ubdma_tag_t *tag, int flags, ubdma_map_t **mapp);

/** ubdma_map_destroy() - Return: 0; EBUSY while the map is loaded; EINVAL for a foreign map. */
int ubdma_map_destroy(ubdma_tag_t *tag, ubdma_map_t *map);

/**
 * ubdma_map_load() - load a buffer: build its segment list and hand it to @cb.
 * Return: 0 (the callback ran, possibly with EFBIG or ENOMEM and nseg 0); EINPROGRESS when bounce
 * pages are short and @flags is UBDMA_WAITOK (the callback runs later, FIFO); EINVAL.
 */
int ubdma_map_load(ubdma_tag_t *tag, ubdma_map_t *map, void *buf, size_t len, ubdma_callback_t *cb,
		   void *arg, int flags);

/** ubdma_map_load_iov() - as ubdma_map_load() for a scatter list of @iovcnt pieces. */
int ubdma_map_load_iov(ubdma_tag_t *tag, ubdma_map_t *map, const struct iovec *iov, int iovcnt,
		       ubdma_callback_t *cb, void *arg, int flags);

/**
 * ubdma_map_load_sg() - as ubdma_map_load() without a callback, like bus_dmamap_load_mbuf_sg().
 * @segs: array of the tag's nsegments entries; @nsegs receives the count.
 * Return: 0; EFBIG, ENOMEM (never deferred), EINVAL.
 */
int ubdma_map_load_sg(ubdma_tag_t *tag, ubdma_map_t *map, void *buf, size_t len, ubdma_seg_t *segs,
		      int *nsegs, int flags);

/** ubdma_map_unload() - release the load's segments and bounce pages; no implicit sync. */
void ubdma_map_unload(ubdma_tag_t *tag, ubdma_map_t *map);

/** ubdma_map_sync() - bounce copies and fences for @ops (PRE and POST may not be mixed). */
void ubdma_map_sync(ubdma_tag_t *tag, ubdma_map_t *map, int ops);

/** ubdma_mem_alloc() - DMA memory that satisfies @tag, wired and mapped, loaded into *@mapp. */
int ubdma_mem_alloc(ubdma_tag_t *tag, void **vaddrp, int flags, ubdma_map_t **mapp);

/** ubdma_mem_free() - free memory from ubdma_mem_alloc(). */
void ubdma_mem_free(ubdma_tag_t *tag, void *vaddr, ubdma_map_t *map);


#ifdef __cplusplus
}
#endif
#endif /* UBDMA_BUSDMA_H */
