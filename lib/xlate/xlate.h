/*
 * xlate.h - the VA -> IOVA translation map of a context.
 *
 * A two-level radix table in the manner of SPDK's spdk_mem_map: the first level is indexed by VA
 * bits [46:30] (one slot per GiB), the second by bits [29:21] (one entry per 2 MiB granule).  A
 * granule entry is either a leaf (the whole 2 MiB is linear in IOVA space) or a pointer to a table
 * of 512 4 KiB entries.  Entries are 64-bit words written with release stores under the context's
 * registration lock and read with acquire loads without any lock: a reader sees the old or the
 * new word, never a torn one.  Tables are never freed while the map lives (a granule that got a
 * 4 KiB table keeps it), so a reader that raced with an update never touches freed memory.
 *
 * Encoding: 0 means "not registered"; bit 0 set means a leaf whose bits [63:12] hold the IOVA of
 * the first byte of the granule (or page); bit 0 clear and non-zero is a pointer to a 4 KiB table.
 */
#ifndef UBDMA_XLATE_H
#define UBDMA_XLATE_H

#include <stddef.h>
#include <stdint.h>

#include <ubdma/core.h>

#include "base/page.h"

#define XLATE_VA_BITS 47
#define XLATE_L1_SHIFT 30
#define XLATE_L2_SHIFT PAGE_2M_SHIFT /* a granule: one 2 MiB page, or a table of 4 KiB ones */
#define XLATE_L3_SHIFT PAGE_4K_SHIFT
#define XLATE_L1_ENTRIES (1u << (XLATE_VA_BITS - XLATE_L1_SHIFT))
#define XLATE_GRANULE (UINT64_C(1) << XLATE_L2_SHIFT)
#define XLATE_VALID UINT64_C(1)
#define XLATE_ADDR_MASK (~(uint64_t)PAGE_4K_MASK)

struct xlate_map {
	uint64_t **l1;		/* XLATE_L1_ENTRIES slots, each NULL or 512 granule entries */
	size_t tables;		/* second and third level tables allocated (for stats) */
};

int xlate_init(struct xlate_map *m);
void xlate_fini(struct xlate_map *m);

/*
 * Enter pages [va, va + npages * pgsz) with IOVA iovas[i] for page i, or iova0 + i * pgsz when
 * iovas is NULL (pgsz a power of two, >= 4 KiB, va aligned to it).  Caller holds the registration
 * lock.  Return: 0; ERANGE when the range reaches past 2^47 (the map covers 47-bit user address
 * spaces); ENOMEM, in which case entries already written stay (the caller restores the range).
 */
int xlate_set(struct xlate_map *m, uintptr_t va, size_t npages, size_t pgsz, const uint64_t *iovas,
	      uint64_t iova0);

/*
 * Forget [va, va + len) (4 KiB aligned).  Caller holds the registration lock.  Never leaves a
 * stale entry: if splitting a 2 MiB leaf finds no memory, the whole granule is forgotten.
 */
void xlate_clear(struct xlate_map *m, uintptr_t va, size_t len);

static inline uint64_t xlate_load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/*
 * The granule entry of va (0 when va is out of the map or nothing is there), and the slot of va's
 * 4 KiB page in a granule's table: the index arithmetic every reader and the one-page writers
 * below share.  Acquire loads: readers run without the lock; for writers (under it) they cost the
 * same plain load on x86.
 */
static inline uint64_t xlate_granule(const struct xlate_map *m, uintptr_t va)
{
	if (__builtin_expect(va >> XLATE_VA_BITS, 0))
		return 0;
	const uint64_t *l2 = __atomic_load_n(&m->l1[va >> XLATE_L1_SHIFT], __ATOMIC_ACQUIRE);
	if (__builtin_expect(!l2, 0))
		return 0;
	return xlate_load(&l2[(va >> XLATE_L2_SHIFT) & 511]);
}

static inline uint64_t *xlate_page_slot(uint64_t table, uintptr_t va)
{
	return &((uint64_t *)(uintptr_t)table)[(va >> XLATE_L3_SHIFT) & 511];
}

/*
 * One 4 KiB page, as xlate_set() and xlate_clear() of it, inline when its granule already has a
 * table (the usual case once a page of that granule was registered): the one-page cookie's lock
 * and unlock then make no call into the map (issue 21: under TCG each call and return is dear).
 * The same release store of the same entry; anything else goes to the general functions.
 */
static inline __attribute__((always_inline)) int xlate_set_page(struct xlate_map *m, uintptr_t va, uint64_t iova)
{
	uint64_t e = xlate_granule(m, va);

	if (!e || (e & XLATE_VALID))
		return xlate_set(m, va, 1, PAGE_4K, NULL, iova);
	__atomic_store_n(xlate_page_slot(e, va), (iova & XLATE_ADDR_MASK) | XLATE_VALID, __ATOMIC_RELEASE);
	return 0;
}

static inline __attribute__((always_inline)) void xlate_clear_page(struct xlate_map *m, uintptr_t va)
{
	uint64_t e = xlate_granule(m, va);

	if (e & XLATE_VALID)
		xlate_clear(m, va, PAGE_4K); /* a 2 MiB leaf to split */
	else if (e)
		__atomic_store_n(xlate_page_slot(e, va), 0, __ATOMIC_RELEASE);
}

/* The hot path: O(1), no lock, no system call, no allocation. */
static inline uint64_t xlate_lookup(const struct xlate_map *m, uintptr_t va)
{
	uint64_t e = xlate_granule(m, va);

	if (e & XLATE_VALID)
		return (e & XLATE_ADDR_MASK) + (va & (XLATE_GRANULE - 1));
	if (!e)
		return UBDMA_BAD_IOVA;
	uint64_t p = xlate_load(xlate_page_slot(e, va));
	if (!(p & XLATE_VALID))
		return UBDMA_BAD_IOVA;
	return (p & XLATE_ADDR_MASK) + (va & PAGE_4K_MASK);
}

/*
 * As xlate_lookup(), and *runp receives how many bytes from va on are known to be IOVA-contiguous
 * without another lookup (to the end of the 2 MiB leaf or of the 4 KiB page).  For segment building.
 */
static inline uint64_t xlate_lookup_run(const struct xlate_map *m, uintptr_t va, size_t *runp)
{
	uint64_t e = xlate_granule(m, va);

	*runp = 0;
	if (e & XLATE_VALID) {
		*runp = XLATE_GRANULE - (va & (XLATE_GRANULE - 1));
		return (e & XLATE_ADDR_MASK) + (va & (XLATE_GRANULE - 1));
	}
	if (!e)
		return UBDMA_BAD_IOVA;
	uint64_t p = xlate_load(xlate_page_slot(e, va));
	if (!(p & XLATE_VALID))
		return UBDMA_BAD_IOVA;
	*runp = PAGE_4K - (va & PAGE_4K_MASK);
	return (p & XLATE_ADDR_MASK) + (va & PAGE_4K_MASK);
}

#endif
