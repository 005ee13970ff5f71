/*
 * va.c - the identity backend: IOVA = VA.  For software peers that share the address space
 * (vhost-user back ends, tests), and as the last resort of UBDMA_BACKEND_AUTO.
 */
#include <errno.h>

#include "base/page.h"
#include "core/ctx.h"
#include "iommu/iommu.h"

static int va_open(struct ubdma_ctx *ctx, void **privp)
{
	ctx->windows[0] = (struct iommu_window){ PAGE_4K, (UINT64_C(1) << 47) - 1 };
	ctx->nwindows = 1;
	*privp = NULL;
	return 0;
}

static void va_close(void *priv)
{
	(void)priv;
}

static int va_map(void *priv, uintptr_t va, size_t npages, size_t pgsz, int prot,
		  const struct iommu_window *lim, uint64_t *iovas)
{
	(void)priv;
	(void)prot;
	if (lim && (va < lim->lo || va + npages * pgsz - 1 > lim->hi))
		return ERANGE;
	for (size_t i = 0; i < npages; i++)
		iovas[i] = va + i * pgsz;
	return 0;
}

const struct iommu_ops iommu_va_ops = {
	.name = "va",
	.backend = UBDMA_BACKEND_VA,
	.open = va_open,
	.close = va_close,
	.map = va_map,
};
