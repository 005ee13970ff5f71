/*
 * pagemap.c - physical addresses from /proc/self/pagemap (pagemap.h), shared by the backends
 * without an IOMMU: phys (no VFIO at all) and noiommu (VFIO's no-IOMMU mode).
 *
 * pagemap (Documentation/admin-guide/mm/pagemap.rst): one 64-bit entry per 4 KiB page; bit 63
 * present, bits 0-54 the PFN.  PFNs read as 0 without CAP_SYS_ADMIN.  A page must be faulted in
 * (wired) before its entry is read, or it reads as not present.
 *
 * Only hugetlb memory qualifies: hugetlb pages are never swapped, compacted or moved by NUMA
 * balancing, so their physical address is stable unless the application itself asks for a move
 * (move_pages(2), mbind(2) with MPOL_MF_MOVE) or memory is offlined.  Ordinary 4 KiB pages can be
 * moved by compaction or NUMA balancing even while mlocked, so translating them would hand the
 * device an address that may go stale: such memory is refused with ENOTSUP instead.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "base/page.h"
#include "base/sysfs.h"
#include "iommu/pagemap.h"

#define PM_PRESENT (UINT64_C(1) << 63)
#define PM_PFN_MASK ((UINT64_C(1) << 55) - 1)

struct phys {
	int fd;
};

/* Read the physical address of the page holding va from /proc/self/pagemap.  0 or errno. */
static int pagemap_pa(int fd, uintptr_t va, uint64_t *pap)
{
	uint64_t e;
	ssize_t n = pread(fd, &e, sizeof(e), (off_t)((va >> PAGE_4K_SHIFT) * sizeof(e)));

	if (n != (ssize_t)sizeof(e))
		return n < 0 ? errno : EIO;
	if (!(e & PM_PRESENT))
		return EFAULT;
	if (!(e & PM_PFN_MASK))
		return EPERM;
	*pap = ((e & PM_PFN_MASK) << PAGE_4K_SHIFT) + (va & PAGE_4K_MASK);
	return 0;
}

/* Whether pagemap gives this process page frame numbers (probed on a page of our own). */
int pagemap_usable(char *why, size_t whylen)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t pa = 0;
	int err;

	if (fd < 0) {
		snprintf(why, whylen, "cannot open /proc/self/pagemap");
		return 0;
	}
	/* probe with a page of our own, faulted in */
	volatile char *p = mmap(NULL, PAGE_4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		close(fd);
		snprintf(why, whylen, "cannot map a probe page");
		return 0;
	}
	p[0] = 1;
	err = pagemap_pa(fd, (uintptr_t)p, &pa);
	munmap((void *)p, PAGE_4K);
	close(fd);
	if (err) {
		snprintf(why, whylen, "pagemap gives no page frame numbers (needs CAP_SYS_ADMIN)");
		return 0;
	}
	snprintf(why, whylen, "pagemap gives page frame numbers");
	return 1;
}

/* Total hugepages configured, of any size. */
unsigned long pagemap_hugepages_total(void)
{
	DIR *d = opendir("/sys/kernel/mm/hugepages");
	struct dirent *de;
	unsigned long total = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char path[300];
		unsigned long n = 0;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/%s/nr_hugepages", de->d_name);
		if (!sysfs_read_ul(path, &n))
			total += n;
	}
	closedir(d);
	return total;
}

int pagemap_translate(int fd, const char *who, uintptr_t va, size_t npages, size_t pgsz,
		      const struct iommu_window *lim, uint64_t *iovas)
{
	if (pgsz <= PAGE_4K)
		return uerr(ENOTSUP,
			    "the %s backend translates only hugetlb memory: [%p, %p) is in %zu-byte "
			    "pages whose physical address is not stable; use hugepages or an IOMMU",
			    who, (void *)va, (void *)(va + npages * pgsz), pgsz);
	for (size_t i = 0; i < npages; i++) {
		uint64_t pa = 0; /* gcc -O3 cannot see that pagemap_pa() sets it when it returns 0 */
		int err = pagemap_pa(fd, va + i * pgsz, &pa);
		if (err)
			return uerr(err, "cannot read the physical address of %p from pagemap",
				    (void *)(va + i * pgsz));
		if (lim && (pa < lim->lo || pa + pgsz - 1 > lim->hi))
			return uerr(ERANGE, "physical address %#llx of %p is outside [%#llx, %#llx]",
				    (unsigned long long)pa, (void *)(va + i * pgsz),
				    (unsigned long long)lim->lo, (unsigned long long)lim->hi);
		iovas[i] = pa;
	}
	return 0;
}
