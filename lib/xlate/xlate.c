/*
 * xlate.c - writers of the VA -> IOVA map (see xlate.h for the layout and the reader's rules).
 *
 * An empty granule that is registered whole and linearly becomes a 2 MiB leaf; anything finer
 * gets a table of 512 4 KiB entries.  Turning a leaf into a table fills the table from the leaf
 * before publishing the pointer, so a reader sees the same translation either way.
 *
 * Once a granule has a table it keeps it until xlate_fini(): a reader may have loaded the
 * table's pointer and not yet its entry, and readers announce themselves nowhere, so a table can
 * never be known to be unused.  Keeping it (instead of merging back into a leaf and retiring the
 * table) bounds the memory to one 4 KiB table per granule ever split — 0.2% of the registered
 * span at worst — where retiring would grow without bound under lock/unlock churn.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/log.h"
#include "base/page.h"
#include "xlate/xlate.h"

static void store(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static uint64_t *table_alloc(struct xlate_map *m)
{
	uint64_t *t = mmap(NULL, PAGE_4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (t == MAP_FAILED)
		return NULL;
	m->tables++;
	return t;
}

int xlate_init(struct xlate_map *m)
{
	memset(m, 0, sizeof(*m));
	m->l1 = mmap(NULL, XLATE_L1_ENTRIES * sizeof(*m->l1), PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->l1 == MAP_FAILED) {
		m->l1 = NULL;
		return ENOMEM;
	}
	return 0;
}

/* Pointer to the granule entry for va, allocating the second level if asked. */
static uint64_t *granule(struct xlate_map *m, uintptr_t va, int alloc)
{
	uint64_t **slot = &m->l1[va >> XLATE_L1_SHIFT];
	uint64_t *l2 = *slot;

	if (!l2) {
		if (!alloc || !(l2 = table_alloc(m)))
			return NULL;
		__atomic_store_n(slot, l2, __ATOMIC_RELEASE);
	}
	return &l2[(va >> XLATE_L2_SHIFT) & 511];
}

static int is_table(uint64_t e)
{
	return e && !(e & XLATE_VALID);
}

/* The granule entry as a 4 KiB table, splitting a leaf (or creating an empty table). */
static uint64_t *granule_table(struct xlate_map *m, uint64_t *ge)
{
	uint64_t e = *ge;
	uint64_t *t;

	if (is_table(e))
		return (uint64_t *)(uintptr_t)e;
	if (!(t = table_alloc(m)))
		return NULL;
	if (e & XLATE_VALID)
		for (int i = 0; i < 512; i++)
			t[i] = ((e & XLATE_ADDR_MASK) + (uint64_t)i * PAGE_4K) | XLATE_VALID;
	store(ge, (uint64_t)(uintptr_t)t);
	return t;
}

/* Whether 512 4 KiB IOVAs (or iova0 onwards when iova4k is NULL) are one linear run. */
static int linear(const uint64_t *iova4k)
{
	for (size_t i = 1; iova4k && i < 512; i++)
		if (iova4k[i] != iova4k[0] + i * PAGE_4K)
			return 0;
	return 1;
}

/*
 * Write the 4 KiB entries of [va, va + n pages) inside one granule: iova4k[i] for page i, or
 * iova0 + i * 4 KiB when iova4k is NULL.
 */
static int set_pages(struct xlate_map *m, uintptr_t va, size_t n, const uint64_t *iova4k, uint64_t iova0)
{
	uint64_t *ge = granule(m, va, 1);
	uint64_t *t;

	if (!ge)
		return ENOMEM;
	if (n == 512 && !is_table(*ge) && linear(iova4k)) {
		store(ge, ((iova4k ? iova4k[0] : iova0) & XLATE_ADDR_MASK) | XLATE_VALID);
		return 0;
	}
	if (!(t = granule_table(m, ge)))
		return ENOMEM;
	size_t first = (va >> XLATE_L3_SHIFT) & 511;
	for (size_t i = 0; i < n; i++)
		store(&t[first + i], ((iova4k ? iova4k[i] : iova0 + i * PAGE_4K) & XLATE_ADDR_MASK) |
					     XLATE_VALID);
	return 0;
}

static void clear_pages(struct xlate_map *m, uintptr_t va, size_t n)
{
	uint64_t *ge = granule(m, va, 0);
	uint64_t *t;

	if (!ge || !*ge)
		return;
	if (n == 512 && !is_table(*ge)) {
		store(ge, 0);
		return;
	}
	if (!(t = granule_table(m, ge))) {
		/*
		 * Splitting a leaf needs a table and memory ran out: forget the whole granule
		 * rather than leave a stale page.  Lookups of its other pages then say
		 * "unregistered" (bus_dma bounces them) instead of giving a wrong IOVA.
		 */
		ULOG(UBDMA_LOG_ERROR, "out of memory splitting the granule at %#lx: cleared whole",
		     (unsigned long)va);
		store(ge, 0);
		return;
	}
	size_t first = (va >> XLATE_L3_SHIFT) & 511;
	for (size_t i = 0; i < n; i++)
		store(&t[first + i], 0);
}

static int in_range(uintptr_t va, size_t len)
{
	return va + len >= va && va + len <= (UINT64_C(1) << XLATE_VA_BITS);
}

int xlate_set(struct xlate_map *m, uintptr_t va, size_t npages, size_t pgsz, const uint64_t *iovas,
	      uint64_t iova0)
{
	uint64_t buf[512];
	const uintptr_t base = va, end = va + npages * pgsz;

	if (!in_range(va, npages * pgsz))
		return ERANGE;
	while (va < end) {
		uintptr_t gend = (va | (XLATE_GRANULE - 1)) + 1;
		size_t n = ((gend < end ? gend : end) - va) / PAGE_4K;
		uintptr_t off = va - base;
		int err;

		if (!iovas || pgsz >= XLATE_GRANULE) {
			/* linear over this granule's part: no per-page array to build */
			uint64_t iova = iovas ? iovas[off / pgsz] + off % pgsz : iova0 + off;
			err = set_pages(m, va, n, NULL, iova);
		} else {
			for (size_t i = 0; i < n; i++, off += PAGE_4K)
				buf[i] = iovas[off / pgsz] + off % pgsz;
			err = set_pages(m, va, n, buf, 0);
		}
		if (err)
			return err;
		va += n * PAGE_4K;
	}
	return 0;
}

void xlate_clear(struct xlate_map *m, uintptr_t va, size_t len)
{
	uintptr_t end = va + len;

	if (!in_range(va, len))
		return;
	while (va < end) {
		uintptr_t gend = (va | (XLATE_GRANULE - 1)) + 1;
		size_t n = ((gend < end ? gend : end) - va) / PAGE_4K;
		clear_pages(m, va, n);
		va += n * PAGE_4K;
	}
}

void xlate_fini(struct xlate_map *m)
{
	if (!m->l1)
		return;
	for (size_t i = 0; i < XLATE_L1_ENTRIES; i++) {
		uint64_t *l2 = m->l1[i];
		if (!l2)
			continue;
		for (int j = 0; j < 512; j++)
			if (is_table(l2[j]))
				munmap((void *)(uintptr_t)l2[j], PAGE_4K);
		munmap(l2, PAGE_4K);
	}
	munmap(m->l1, XLATE_L1_ENTRIES * sizeof(*m->l1));
	m->l1 = NULL;
}
