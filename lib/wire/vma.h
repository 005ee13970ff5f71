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
	size_t pgsz;  /* 4096, or the hugetlb page size */
	int hugetlb;
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

#endif
