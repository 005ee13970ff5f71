/*
 * backend.h - the backend a guest test runs its VFIO cases on.  The vm suite runs the tests that
 * exercise VFIO once per mode (tests/vm/README.md, "Modes"): type1 on Debian's kernel, iommufd and
 * no-IOMMU on the test bed's own kernel; run-guest.sh -x MODE exports UBDMA_BACKEND=iommufd or
 * noiommu, and nothing (vfio) for type1.
 */
#ifndef UBDMA_GUEST_BACKEND_H
#define UBDMA_GUEST_BACKEND_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ubdma/ubdma.h>

/* UBDMA_BACKEND: vfio (or unset, or type1), iommufd, noiommu; anything else is a set-up error. */
static __attribute__((unused)) enum ubdma_backend guest_backend(void)
{
	const char *b = getenv("UBDMA_BACKEND");

	if (!b || !*b || !strcmp(b, "vfio") || !strcmp(b, "type1"))
		return UBDMA_BACKEND_VFIO;
	if (!strcmp(b, "iommufd"))
		return UBDMA_BACKEND_IOMMUFD;
	if (!strcmp(b, "noiommu"))
		return UBDMA_BACKEND_NOIOMMU;
	fprintf(stderr, "UBDMA_BACKEND=%s: want vfio, iommufd or noiommu\n", b);
	exit(2);
}

/* Whether the mode isolates the device: an unmapped IOVA faults (not so without an IOMMU). */
static __attribute__((unused)) int guest_isolates(void)
{
	return guest_backend() != UBDMA_BACKEND_NOIOMMU;
}

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif

/*
 * Memory for a test's registered DMA buffers, as a DPDK or SPDK user would take it in each mode:
 * anonymous 4 KiB pages where an IOMMU translates, 2 MiB hugetlb pages without one (len rounded
 * up), where only memory whose physical frame stays put can be registered and the noiommu backend
 * refuses anything else (docs/vfio.md, "No-IOMMU mode").  MAP_FAILED when there is none.
 */
static __attribute__((unused)) void *guest_dma_mmap(size_t len)
{
	if (guest_isolates())
		return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return mmap(NULL, (len + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1), PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
}

#endif
