/*
 * phys.c - the backend without VFIO: IOVA = physical address, read from /proc/self/pagemap
 * (pagemap.c: hugetlb memory only, and why).  No devices attach: see noiommu.c for VFIO's
 * no-IOMMU mode, which gives device files on top of the same addresses.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/log.h"
#include "base/page.h"
#include "iommu/iommu.h"
#include "iommu/pagemap.h"

struct phys {
	int fd;
};

/*
 * AUTO picks phys when pagemap gives frame numbers and hugepages are configured (configured,
 * not free: phys translates only hugetlb memory, and a machine without any would refuse every
 * lock).  An explicit UBDMA_BACKEND_PHYS opens without hugepages.
 */
static int phys_usable(char *why, size_t whylen)
{
	char p[128];
	unsigned long huge;

	if (!pagemap_usable(p, sizeof(p))) {
		snprintf(why, whylen, "%s", p);
		return 0;
	}
	if (!(huge = pagemap_hugepages_total())) {
		snprintf(why, whylen, "no hugepages configured");
		return 0;
	}
	snprintf(why, whylen, "%s; %lu hugepages configured", p, huge);
	return 1;
}

static int phys_open(const struct iommu_sink *sink, void **privp)
{
	/* without an IOMMU the device sees all of physical memory: one window, page 0 excluded */
	static const struct iommu_window all = { PAGE_4K, UINT64_MAX };
	char why[128];
	struct phys *ph;

	if (!pagemap_usable(why, sizeof(why)))
		return uerr(ENODEV, "phys backend unusable: %s", why);
	if (!(ph = malloc(sizeof(*ph))))
		return uerr(ENOMEM, "out of memory");
	ph->fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (ph->fd < 0) {
		int err = errno;
		free(ph);
		return uerr(err, "cannot open /proc/self/pagemap");
	}
	sink->windows(sink->arg, &all, 1);
	*privp = ph;
	return 0;
}

static void phys_close(void *priv)
{
	struct phys *ph = priv;

	close(ph->fd);
	free(ph);
}

static int phys_map(void *priv, uintptr_t va, size_t npages, size_t pgsz, int prot,
		    const struct iommu_window *lim, uint64_t *iovas)
{
	struct phys *ph = priv;

	(void)prot;
	return pagemap_translate(ph->fd, "phys", va, npages, pgsz, lim, iovas);
}

const struct iommu_ops iommu_phys_ops = {
	.name = "phys",
	.backend = UBDMA_BACKEND_PHYS,
	.caps = IOMMU_CAP_HUGETLB_ONLY,
	.usable = phys_usable,
	.open = phys_open,
	.close = phys_close,
	.map = phys_map,
};
