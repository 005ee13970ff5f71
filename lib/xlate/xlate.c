/*
 * xlate.c - writers of the VA -> IOVA map (see xlate.h for the layout and the reader's rules).
 *
 * A granule is stored as a 2 MiB leaf when all its 512 pages are registered and linear in IOVA
 * space, else as a table of 4 KiB entries.  Turning a leaf into a table fills the table from the
 * leaf before publishing the pointer, so a reader sees the same translation either way.  Tables
 * are taken from mmap and never returned before xlate_fini(): a table that is replaced by a leaf
 * is kept, unchanged, until xlate_fini() (see retire_reserve()).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "xlate/xlate.h"

static void store(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static uint64_t *table_alloc(struct xlate_map *m)
{
	uint64_t *t = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (t == MAP_FAILED)
		return NULL;
	m->tables++;
	return t;
}

/*
 * Make room to retire one table.  A reader may have loaded a table's pointer and not yet its
 * entry, so a replaced table is never written or reused again: it stays allocated, unchanged,
 * until xlate_fini().  At most one table per granule split and then merged back is kept.
 */
static int retire_reserve(struct xlate_map *m)
{
	if (m->nretired < m->capretired)
		return 0;
	size_t cap = m->capretired ? m->capretired * 2 : 16;
	void **n = realloc(m->retired, cap * sizeof(*n));
	if (!n)
		return ENOMEM;
	m->retired = n;
	m->capretired = cap;
	return 0;
}

/* Replace a granule entry; an old table goes to the retired list (room reserved by the caller). */
static void granule_replace(struct xlate_map *m, uint64_t *ge, uint64_t v)
{
	uint64_t old = *ge;

	store(ge, v);
	if (old && !(old & XLATE_VALID))
		m->retired[m->nretired++] = (void *)(uintptr_t)old;
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

/* The granule entry as a 4 KiB table, splitting a leaf (or creating an empty table). */
static uint64_t *granule_table(struct xlate_map *m, uint64_t *ge)
{
	uint64_t e = *ge;
	uint64_t *t;

	if (e && !(e & XLATE_VALID))
		return (uint64_t *)(uintptr_t)e;
	if (!(t = table_alloc(m)))
		return NULL;
	if (e & XLATE_VALID)
		for (int i = 0; i < 512; i++)
			t[i] = ((e & XLATE_ADDR_MASK) + (uint64_t)i * XLATE_PAGE) | XLATE_VALID;
	store(ge, (uint64_t)(uintptr_t)t);
	return t;
}

/* Write the 4 KiB entries of [va, va + n pages) inside one granule. */
static int set_pages(struct xlate_map *m, uintptr_t va, size_t n, const uint64_t *iova4k, int clear)
{
	uint64_t *ge = granule(m, va, !clear);
	uint64_t *t;

	if (!ge)
		return clear ? 0 : ENOMEM;
	if (clear && !*ge)
		return 0;
	/* a whole granule: one leaf (or empty) word; without room to retire, per page below */
	if (n == 512 && retire_reserve(m) == 0) {
		int linear = !clear;
		for (size_t i = 1; i < 512 && linear; i++)
			linear = iova4k[i] == iova4k[0] + i * XLATE_PAGE;
		if (clear || linear) {
			granule_replace(m, ge, clear ? 0 : (iova4k[0] & XLATE_ADDR_MASK) | XLATE_VALID);
			return 0;
		}
	}
	if (!(t = granule_table(m, ge)))
		return ENOMEM;
	size_t first = (va >> XLATE_L3_SHIFT) & 511;
	for (size_t i = 0; i < n; i++)
		store(&t[first + i], clear ? 0 : ((iova4k[i] & XLATE_ADDR_MASK) | XLATE_VALID));
	return 0;
}

int xlate_set(struct xlate_map *m, uintptr_t va, size_t npages, size_t pgsz, const uint64_t *iovas,
	      uint64_t iova0)
{
	uint64_t buf[512];
	const uintptr_t base = va, end = va + npages * pgsz;

	while (va < end) {
		uintptr_t gend = (va | (XLATE_GRANULE - 1)) + 1;
		size_t n = ((gend < end ? gend : end) - va) / XLATE_PAGE;
		if (pgsz >= XLATE_GRANULE && n == 512) {
			/* a whole granule inside one big page is linear: one leaf, no per-page work */
			uintptr_t off = va - base;
			uint64_t iova = iovas ? iovas[off / pgsz] + off % pgsz : iova0 + off;
			uint64_t *ge = granule(m, va, 1);
			if (!ge || retire_reserve(m))
				return ENOMEM;
			granule_replace(m, ge, (iova & XLATE_ADDR_MASK) | XLATE_VALID);
			va = gend;
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			uintptr_t off = va + i * XLATE_PAGE - base;
			buf[i] = iovas ? iovas[off / pgsz] + off % pgsz : iova0 + off;
		}
		int err = set_pages(m, va, n, buf, 0);
		if (err)
			return err;
		va += n * XLATE_PAGE;
	}
	return 0;
}

void xlate_clear(struct xlate_map *m, uintptr_t va, size_t len)
{
	uintptr_t end = va + len;

	while (va < end) {
		uintptr_t gend = (va | (XLATE_GRANULE - 1)) + 1;
		size_t n = ((gend < end ? gend : end) - va) / XLATE_PAGE;
		set_pages(m, va, n, NULL, 1);
		va += n * XLATE_PAGE;
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
			if (l2[j] && !(l2[j] & XLATE_VALID))
				munmap((void *)(uintptr_t)l2[j], 4096);
		munmap(l2, 4096);
	}
	for (size_t i = 0; i < m->nretired; i++)
		munmap(m->retired[i], 4096);
	free(m->retired);
	munmap(m->l1, XLATE_L1_ENTRIES * sizeof(*m->l1));
	m->l1 = NULL;
}
