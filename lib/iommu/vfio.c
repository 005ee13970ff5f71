/*
 * vfio.c - the VFIO type1v2 backend (being written: see issue 5).  Until it lands, a context asks
 * for VFIO only where /dev/vfio/vfio exists, and opening it reports ENOTSUP.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "core/ctx.h"
#include "core/log.h"
#include "iommu/iommu.h"

int iommu_vfio_present(char *why, size_t whylen)
{
	if (access("/dev/vfio/vfio", R_OK | W_OK) == 0) {
		snprintf(why, whylen, "/dev/vfio/vfio exists");
		return 1;
	}
	snprintf(why, whylen, "no /dev/vfio/vfio (no VFIO in this kernel, or vfio not loaded)");
	return 0;
}

static int vfio_open(struct ubdma_ctx *ctx, void **privp)
{
	(void)ctx;
	(void)privp;
	return uerr(ENOTSUP, "the vfio backend is not built yet");
}

const struct iommu_ops iommu_vfio_ops = {
	.name = "vfio",
	.backend = UBDMA_BACKEND_VFIO,
	.open = vfio_open,
};
