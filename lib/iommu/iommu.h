/*
 * iommu.h - the backends that turn wired VA ranges into IOVAs, behind one ops table.
 *
 * va:   IOVA = VA (software peers such as vhost-user; tests).
 * phys: IOVA = physical address read from /proc/self/pagemap; only hugetlb memory, whose physical
 *       address is stable while it is mapped (4 KiB anonymous pages can migrate or be compacted
 *       even while mlocked, so they are refused).
 * vfio: a VFIO type1v2 container; IOVAs from an allocator that honours the usable ranges.
 *
 * A backend maps memory that the caller has already wired.  map() either maps the whole range
 * or nothing (all or nothing is the backend's job); unmap() of what map() returned never fails
 * silently: a partial unmap is reported.
 */
#ifndef UBDMA_IOMMU_H
#define UBDMA_IOMMU_H

#include <stddef.h>
#include <stdint.h>

#include <ubdma/core.h>

struct ubdma_ctx;

/* An inclusive IOVA range. */
struct iommu_window {
	uint64_t lo, hi;
};

#define IOMMU_MAX_WINDOWS 8

#define IOMMU_PROT_READ 0x1  /* the device reads */
#define IOMMU_PROT_WRITE 0x2 /* the device writes */

struct iommu_ops {
	const char *name;
	enum ubdma_backend backend;
	/* Set up the backend for ctx (fills ctx->windows / ctx->nwindows).  0 or errno. */
	int (*open)(struct ubdma_ctx *ctx, void **privp);
	void (*close)(void *priv);
	/*
	 * Map wired [va, va + npages * pgsz) (va aligned to pgsz, pgsz the mapping's page size) for
	 * the device with prot; write the IOVA of page i to iovas[i].  When lim is not NULL every
	 * IOVA must lie inside it (ERANGE if the backend cannot choose).  0 or errno; on error nothing
	 * is mapped.
	 */
	int (*map)(void *priv, uintptr_t va, size_t npages, size_t pgsz, int prot,
		   const struct iommu_window *lim, uint64_t *iovas);
	/* Undo one successful map() with the same arguments.  0 or errno (logged by the caller).
	 * NULL for backends that map nothing (va, phys). */
	int (*unmap)(void *priv, uintptr_t va, size_t npages, size_t pgsz, const uint64_t *iovas);
};

extern const struct iommu_ops iommu_va_ops;
extern const struct iommu_ops iommu_phys_ops;
extern const struct iommu_ops iommu_vfio_ops;

/* Whether the phys backend can work in this process (pagemap gives PFNs), with a reason. */
int iommu_phys_usable(char *why, size_t whylen);
/* Whether VFIO is present (/dev/vfio/vfio), with a reason. */
int iommu_vfio_present(char *why, size_t whylen);

/* Read the physical address of the page holding va from /proc/self/pagemap. 0 or errno. */
int iommu_pagemap_pa(int fd, uintptr_t va, uint64_t *pap);

#endif
