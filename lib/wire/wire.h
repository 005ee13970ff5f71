/*
 * wire.h - process-wide wiring of VA ranges with nested per-page counts.
 */
#ifndef UBDMA_WIRE_H
#define UBDMA_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* One run of a wired range that lies in one mapping: [start, end), pages of pgsz bytes. */
struct wire_seg {
	uintptr_t start, end;
	size_t pgsz;
	int hugetlb; /* 1 if the mapping is hugetlb (stable physical address) */
};

/*
 * Wire [addr, addr + len) as ubdma_wire() does and, when segsp is not NULL, return the wired
 * runs (malloc'd array, *nsegp entries; free() it).  flags: UBDMA_WIRE_*.
 */
int wire_range(void *addr, size_t len, int flags, struct wire_seg **segsp, int *nsegp);

/* Drop one count on each page wired by a wire_range() call with the same addr, len, flags. */
int unwire_range(void *addr, size_t len, int flags);

/* The page size of the mapping holding addr (4096 when not mapped or not hugetlb). */
size_t wire_pagesize(const void *addr);

#endif
