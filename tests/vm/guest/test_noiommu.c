/*
 * test_noiommu - the noiommu backend: VFIO's no-IOMMU mode, device files and physical addresses.
 *
 * Runs in every mode of the test bed.  Where no-IOMMU mode is off (type1 on Debian's kernel, which
 * lacks CONFIG_VFIO_NOIOMMU; iommufd on the test bed's kernel, where the parameter is off) asking
 * for the backend fails with ENOTSUP naming enable_unsafe_noiommu_mode, and AUTO does not pick it.
 * In the noiommu mode (run-guest.sh -x noiommu: no virtual IOMMU, the parameter on):
 *   auto     AUTO picks noiommu, passing over iommufd and vfio for want of an IOMMU;
 *   window   one window, all of physical memory but page 0;
 *   4k       4 KiB memory is refused with ENOTSUP naming hugetlb, nothing left wired;
 *   open     ubdma_pci_open() takes the NVMe through /dev/vfio/noiommu-N;
 *   2m       a locked 2 MiB hugepage's IOVAs are its physical addresses (pagemap read here);
 *   dma      the NVMe's admin queues live in hugetlb memory, and Identify Controller sent to the
 *            IOVA of a hugepage lands there by DMA;
 *   twice    a second context cannot take the device while the first holds its group (EBUSY).
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "backend.h"
#include "check.h"
#include "nvme_admin.h"

#define EXIT_SKIP 77
#define PG 4096u
#define SZ_2M (2u << 20)
#define POISON 0x5a

/* The physical address of va, from pagemap (bits 0-54 the frame, bit 63 present); 0 if unknown. */
static uint64_t pagemap_pa(const void *va)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	if (fd < 0)
		return 0;
	if (pread(fd, &e, sizeof(e), (off_t)((uintptr_t)va / PG * sizeof(e))) != (ssize_t)sizeof(e))
		e = 0;
	close(fd);
	if (!(e >> 63))
		return 0;
	return (e & ((UINT64_C(1) << 55) - 1)) * PG + (uintptr_t)va % PG;
}

static void mode_off(void)
{
	ubdma_ctx_t *ctx = NULL;
	int rc = ubdma_ctx_open(UBDMA_BACKEND_NOIOMMU, &ctx);

	check(rc == ENOTSUP && !ctx && strstr(ubdma_last_error(), "enable_unsafe_noiommu_mode"),
	      "no-IOMMU mode off: ubdma_ctx_open(noiommu) -> %s: %s", strerror(rc), ubdma_last_error());
	if (!rc)
		ubdma_ctx_close(ctx);
	rc = ubdma_ctx_open(UBDMA_BACKEND_AUTO, &ctx);
	check(rc == 0 && ubdma_ctx_backend(ctx) != UBDMA_BACKEND_NOIOMMU,
	      "no-IOMMU mode off: AUTO picks %s: %s", rc ? "nothing" : ubdma_backend_name(ubdma_ctx_backend(ctx)),
	      rc ? ubdma_last_error() : ubdma_ctx_backend_reason(ctx));
	ubdma_ctx_close(ctx);
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	ubdma_ctx_t *ctx = NULL, *ctx2 = NULL;
	ubdma_pci_t *dev = NULL, *dev2 = NULL;
	ubdma_umem_t *u = NULL;
	struct nvme_admin c;
	const char *why = "";
	uint64_t lo[8], hi[8];
	int rc, n = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf || !getenv("UBDMA_VM_NVME_DRIVER") ||
	    strcmp(getenv("UBDMA_VM_NVME_DRIVER"), "vfio-pci")) {
		printf("# SKIP: no NVMe controller on vfio-pci ($UBDMA_VM_NVME)\n");
		return EXIT_SKIP;
	}
	if (guest_backend() != UBDMA_BACKEND_NOIOMMU) {
		mode_off();
		printf("# %d failure(s)\n", failures);
		return failures ? 1 : 0;
	}

	/* auto */
	rc = ubdma_ctx_open(UBDMA_BACKEND_AUTO, &ctx);
	check(rc == 0 && ubdma_ctx_backend(ctx) == UBDMA_BACKEND_NOIOMMU &&
	      strstr(ubdma_ctx_backend_reason(ctx), "no IOMMU"),
	      "auto: AUTO picks %s: %s", rc ? "nothing" : ubdma_backend_name(ubdma_ctx_backend(ctx)),
	      rc ? ubdma_last_error() : ubdma_ctx_backend_reason(ctx));
	ubdma_ctx_close(ctx);
	ctx = NULL;

	rc = ubdma_ctx_open(UBDMA_BACKEND_NOIOMMU, &ctx);
	check(rc == 0, "ubdma_ctx_open(noiommu) -> %s", rc ? ubdma_last_error() : "0");
	if (rc)
		return 1;

	/* window */
	ubdma_ctx_iova_windows(ctx, lo, hi, 8, &n);
	check(n == 1 && lo[0] == PG && hi[0] >= UINT64_C(0xfffffffff000),
	      "window: %d window(s), [%#" PRIx64 ", %#" PRIx64 "]", n, lo[0], hi[0]);

	/* 4k */
	char *small = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(small, 1, 4 * PG);
	rc = ubdma_umem_lock(ctx, small, 4 * PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
	check(rc == ENOTSUP && !u && strstr(ubdma_last_error(), "hugetlb") && ubdma_wire_count(small) == 0,
	      "4k: 4 KiB pages refused -> %s: %s", strerror(rc), ubdma_last_error());

	/* open */
	rc = ubdma_pci_open(ctx, bdf, &dev);
	check(rc == 0, "open: ubdma_pci_open(%s) through its no-IOMMU group -> %s", bdf,
	      rc ? ubdma_last_error() : "0");
	if (rc)
		return 1;

	/* twice */
	if (!ubdma_ctx_open(UBDMA_BACKEND_NOIOMMU, &ctx2)) {
		rc = ubdma_pci_open(ctx2, bdf, &dev2);
		check(rc == EBUSY && !dev2, "twice: a second context -> %s: %s", strerror(rc), ubdma_last_error());
		ubdma_pci_close(dev2);
		ubdma_ctx_close(ctx2);
	}

	/* 2m */
	uint8_t *h = mmap(NULL, SZ_2M, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT), -1, 0);
	if (h == MAP_FAILED) {
		check(0, "2m: no 2 MiB hugepage: %s", strerror(errno));
		return 1;
	}
	rc = ubdma_umem_lock(ctx, h, SZ_2M, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
	check(rc == 0, "2m: a 2 MiB hugepage locks -> %s", rc ? ubdma_last_error() : "0");
	if (rc)
		return 1;
	int same = 1;
	for (size_t off = 0; off < SZ_2M; off += 509 * PG + 77)
		same &= ubdma_umem_iova(u, h + off) == pagemap_pa(h + off) && pagemap_pa(h + off) != 0;
	check(same && ubdma_vtoiova(ctx, h + 12345) == pagemap_pa(h + 12345),
	      "2m: IOVA = physical address (%#" PRIx64 " for %p)", ubdma_umem_iova(u, h), (void *)h);

	/* dma */
	if (nvme_admin_init(&c, ctx, dev, &why)) {
		check(0, "dma: NVMe admin queues: %s: %s", why, ubdma_last_error());
	} else {
		uint8_t *p = h + 7 * PG;
		memset(p, POISON, PG);
		rc = nvme_admin_identify(&c, ubdma_umem_iova(u, p));
		check(rc == 0 && nvme_admin_is_identify(p),
		      "dma: Identify at physical address %#" PRIx64 " landed: model '%.14s'",
		      ubdma_umem_iova(u, p), p + NA_IDCTRL_MN);
		nvme_admin_fini(&c);
	}
	ubdma_umem_unlock(u);
	ubdma_pci_close(dev);
	ubdma_ctx_close(ctx);
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
