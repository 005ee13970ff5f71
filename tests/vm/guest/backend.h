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

#endif
