/*
 * pagemap.h - physical addresses from /proc/self/pagemap, for the backends without an IOMMU
 * (phys.c, noiommu.c): probing that the process gets frame numbers, counting configured
 * hugepages (AUTO's condition), and translating a wired hugetlb run page by page.
 */
#ifndef UBDMA_PAGEMAP_H
#define UBDMA_PAGEMAP_H

#include <stddef.h>
#include <stdint.h>

#include "iommu/iommu.h"

/* Whether pagemap gives this process frame numbers (probed on a page of our own); why says so. */
int pagemap_usable(char *why, size_t whylen);

/* Hugepages configured, all sizes together (configured, not free). */
unsigned long pagemap_hugepages_total(void);

/*
 * The physical address of each page of the wired run [va, va + npages * pgsz) into iovas, read
 * from the open pagemap fd.  Only hugetlb runs (pgsz > 4 KiB): a 4 KiB run is ENOTSUP, because
 * such pages may move (compaction, NUMA balancing) while the device holds their address.  With
 * lim, every page must lie inside it (ERANGE).  EFAULT: a page reads as not present; EPERM: frame
 * numbers read as 0 (CAP_SYS_ADMIN dropped).  The reason in ubdma_last_error(); who names the
 * backend in it.
 */
int pagemap_translate(int fd, const char *who, uintptr_t va, size_t npages, size_t pgsz,
		      const struct iommu_window *lim, uint64_t *iovas);

#endif
