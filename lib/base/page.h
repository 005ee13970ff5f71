/*
 * page.h - the page sizes the library is built around, one name each.
 *
 * PAGE_4K is the base page: the unit of wiring, of the translation map's leaves, of IOMMU
 * mappings, bounce slots and pagemap entries.  It is a constant rather than sysconf(_SC_PAGESIZE)
 * because the layers above depend on it structurally (xlate's radix tree, pagemap offsets) and
 * x86-64, the one architecture targeted, has no other base page.  Where a size must be the
 * running kernel's page (mmap of a BAR), ask sysconf().  PAGE_2M is the smallest x86-64
 * hugepage and the translation map's granule; other hugepage sizes are runtime values
 * (lib/hugepage).
 */
#ifndef UBDMA_BASE_PAGE_H
#define UBDMA_BASE_PAGE_H

#define PAGE_4K_SHIFT 12
#define PAGE_4K (1UL << PAGE_4K_SHIFT)
#define PAGE_4K_MASK (PAGE_4K - 1)

#define PAGE_2M_SHIFT 21
#define PAGE_2M (1UL << PAGE_2M_SHIFT)

#endif
