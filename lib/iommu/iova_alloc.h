/*
 * iova_alloc.h - the IOVA allocator of an IOMMU domain: which I/O virtual addresses are taken.
 *
 * An iova_space holds the usable windows of the domain (inclusive ranges, sorted, disjoint) and
 * the allocated ranges, each with a small payload (the owner's VA and flags) so that a backend
 * needs no second table to find what it mapped at an IOVA.  It never hands out IOVA 0 (a device
 * that writes to a null IOVA must fault, not hit a buffer), never leaves the windows, and places
 * a range at a chosen residue (iova = k * modulus + phase) so that callers can keep IOVA and VA
 * congruent modulo 2 MiB, and keeps out of its holes (device MMIO).  Not thread safe: the owner
 * serialises calls.
 */
#ifndef UBDMA_IOVA_ALLOC_H
#define UBDMA_IOVA_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "iommu/iommu.h"

/* One allocated range [lo, lo + size). */
struct iova_rec {
	uint64_t lo;
	uint64_t size;
	uintptr_t va;	/* owner's payload: the VA mapped there */
	uint32_t flags; /* owner's payload */
};

/* Holes an iova_space keeps at most (merged; beyond that the last ones merge into one). */
#define IOVA_MAX_HOLES 32

struct iova_space {
	struct iommu_window win[IOMMU_MAX_WINDOWS];
	int nwin;
	struct iommu_window hole[IOVA_MAX_HOLES]; /* never handed out: sorted, disjoint */
	int nhole;
	struct iova_rec *rec; /* sorted by lo, disjoint */
	size_t n, cap;
	uint64_t hwm;	      /* highest end ever allocated: nothing is allocated above it */
};

/* Addresses at or above this are tried first, to keep the 32-bit space for devices that need it. */
#define IOVA_HIGH_FIRST (UINT64_C(1) << 32)

/* Start an empty space over the given windows (sorted and clipped here; page 0 is dropped). */
void iova_space_init(struct iova_space *s, const struct iommu_window *w, int nwin);
void iova_space_fini(struct iova_space *s);

/*
 * Replace the windows.  Return: 0; ERANGE when an allocated range would lie outside the new
 * windows (then nothing changed).
 */
int iova_space_set_windows(struct iova_space *s, const struct iommu_window *w, int nwin);

/*
 * Ranges inside the windows that are never handed out: the bus addresses of device MMIO (PCI BARs
 * and bridge windows), where a DMA address may be claimed by a device or a bridge on the way up
 * instead of reaching the IOMMU (the Linux DMA API reserves the host bridge windows in every
 * IOMMU domain for the same reason).  n ranges of any order and overlap (inclusive bounds); they
 * are merged, and more than IOVA_MAX_HOLES become fewer by covering the gaps between the last
 * ones (less space, never an overlap).  Replaces the holes set before.  Return: 0; EBUSY when an
 * allocated range overlaps one of them, ENOMEM (then nothing changed).
 */
int iova_space_set_holes(struct iova_space *s, const struct iommu_window *h, int n);

/*
 * Allocate size bytes (size > 0, a multiple of 4 KiB) at an IOVA congruent to phase modulo
 * modulus (a power of two >= 4 KiB, phase < modulus, phase a multiple of 4 KiB), inside lim when
 * lim is not NULL.  Addresses >= IOVA_HIGH_FIRST are preferred.
 * Return: 0 and *iovap; ERANGE when lim is given and no room fits inside it; ENOSPC when no room
 * fits anywhere; ENOMEM when the table cannot grow.
 */
int iova_alloc(struct iova_space *s, uint64_t size, uint64_t modulus, uint64_t phase,
	       const struct iommu_window *lim, uintptr_t va, uint32_t flags, uint64_t *iovap);

/* The record that starts exactly at iova, or NULL. */
struct iova_rec *iova_find(struct iova_space *s, uint64_t iova);

/* Free a record returned by iova_find() (the pointer is invalid afterwards). */
void iova_free_rec(struct iova_space *s, struct iova_rec *r);

#endif
