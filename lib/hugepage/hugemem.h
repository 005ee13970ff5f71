/*
 * hugemem.h - the hugepage layer's allocator as the other layers of the library use it: a mapping
 * of pages of one size, at an address the caller may confine to a range, on a NUMA node, faulted
 * in.  ubdma_huge_alloc() is built on it, and so is the busdma layer's DMA and bounce memory
 * (lib/busdma/dmamem.c): one allocator knows page sizes, hugetlb shortage and NUMA placement.
 */
#ifndef UBDMA_HUGEMEM_H
#define UBDMA_HUGEMEM_H

#include <stddef.h>
#include <stdint.h>

/* huge_map()'s answer when the kernel cannot supply the hugepages (at mmap or at fault time). */
#define HUGE_SHORT (-1)

struct huge_req {
	size_t len;	  /* bytes, a multiple of pgsz */
	size_t pgsz;	  /* PAGE_4K: anonymous private pages (THP off); else hugetlb pages of that size */
	size_t align;	  /* alignment of the address: a power of two; 0 means pgsz */
	int node;	  /* UBDMA_NODE_ANY, or the node the pages go to */
	int preferred;	  /* node is a preference (MPOL_PREFERRED), not a binding (MPOL_BIND) */
	int place;	  /* the whole mapping must lie in [lo, hi] (inclusive) */
	uintptr_t lo, hi;
};

/*
 * Map rq->len bytes of fresh, zeroed memory as rq asks: the NUMA policy is set before the pages
 * are faulted in, and every page is faulted in for writing.  Hugetlb pages come from a memfd
 * (mapped shared) unless fd >= 0 names a hugetlbfs file to use (huge_map_fd()).
 * Return: 0 and *addrp; HUGE_SHORT when the hugepages cannot be had; EADDRNOTAVAIL when no address
 * in [lo, hi] on the alignment is free; ENOTSUP when memfd_create refuses the page size; any errno
 * of memfd_create(2), ftruncate(2), mmap(2), mbind(2) or madvise(2).  Nothing is left mapped on
 * failure.  No message is recorded: the caller knows what it asked for and says so.
 */
int huge_map(const struct huge_req *rq, void **addrp);
int huge_map_fd(int fd, const struct huge_req *rq, void **addrp);

/* Unmap what huge_map() gave (len as asked). */
void huge_unmap(void *addr, size_t len);

#endif
