/*
 * va.c - the identity backend: IOVA = VA.  For software peers that share the address space
 * (vhost-user back ends, tests), and as the last resort of UBDMA_BACKEND_AUTO.
 */
#include <errno.h>
#include <stdio.h>

#include "base/page.h"
#include "iommu/iommu.h"

/* The x86-64 user address space (47 bits), page 0 left out. */
static const struct iommu_window va_window = { PAGE_4K, (UINT64_C(1) << 47) - 1 };

static int va_usable(char *why, size_t whylen)
{
	snprintf(why, whylen, "%s", "");
	return 1;
}

static int va_open(const struct iommu_sink *sink, void **privp)
{
	sink->windows(sink->arg, &va_window, 1);
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
	.caps = IOMMU_CAP_IOVA_IS_VA,
	.usable = va_usable,
	.open = va_open,
	.close = va_close,
	.map = va_map,
};
