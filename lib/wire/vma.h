/*
 * vma.h - what the kernel says about the mappings of a VA range: bounds, access, page size.
 */
#ifndef UBDMA_VMA_H
#define UBDMA_VMA_H

#include <stddef.h>
#include <stdint.h>

struct vma {
	uintptr_t start, end;
	int readable, writable;
	size_t pgsz;  /* PAGE_4K, or the hugetlb page size */
	int hugetlb;
	int file;     /* backed by a file (inode != 0): shmem, memfd, hugetlbfs, a regular file */
	int shared;   /* MAP_SHARED: writes reach the file or the shared pages, no copy-on-write */
};

/*
 * Collect the mappings that overlap [start, end) in address order into a malloc'd array.
 * Return: 0 (with *nvp possibly 0) or ENOMEM / the errno of reading /proc/self/maps.
 */
int vma_collect(uintptr_t start, uintptr_t end, struct vma **vp, int *nvp);

/* The same from the text of /proc/self/maps alone, what kernels before 6.11 get: for tests. */
int vma_collect_text(uintptr_t start, uintptr_t end, struct vma **vp, int *nvp);

/* 1 while vma_collect() asks the kernel per mapping (PROCMAP_QUERY), 0 once it said it cannot. */
int vma_uses_query(void);

/*
 * Call fn on each mapping overlapping [start, end), clipped to it, without allocating (the
 * monitor thread must not): PROCMAP_QUERY, else the text read through a static buffer, so the
 * caller must hold the wire lock.  Stops early when fn returns non-zero.
 */
void vma_each(uintptr_t start, uintptr_t end, int (*fn)(uintptr_t s, uintptr_t e, void *arg), void *arg);

/* fork child: drop the handle kept for PROCMAP_QUERY (it reads the parent's address space). */
void vma_forget(void);

#endif
