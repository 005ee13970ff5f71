/*
 * test_vfio_nvme - DMA through the vfio backend (or iommufd: UBDMA_BACKEND, backend.h), proved by
 * QEMU's NVMe controller, public API only.
 *
 * Runs in the test-bed guest (tests/vm/run-guest.sh); $UBDMA_VM_NVME names the controller, bound
 * to vfio-pci.  In every VFIO mode: without an IOMMU (noiommu) the early and 4k buffers are 2 MiB
 * hugepages (guest_dma_mmap(), backend.h), the IOVAs physical addresses, and hole and stale, which
 * need an IOMMU to fault, are skipped.  The admin queues live in ubdma-locked memory, and every address handed to the
 * controller comes from ubdma_umem_iova() or ubdma_vtoiova().  Cases:
 *   early  memory locked before ubdma_pci_open() (type1: recorded, then replayed at attach;
 *          iommufd: mapped in the IOAS at once): Identify lands in it;
 *   4k     anonymous 4 KiB pages locked after the open: Identify lands in it;
 *   2m     a 2 MiB hugetlb page: IOVA and VA agree modulo 2 MiB, ubdma_vtoiova() agrees with the
 *          cookie, Identify lands in the middle of it;
 *   hole   Identify with PRP1 at an IOVA nothing is mapped at: a DMAR fault (announced with
 *          UBDMA-EXPECT-DMAR-FAULT, so the runner requires it) and no byte of our memory changes;
 *   stale  the 4k buffer's IOVA after ubdma_umem_unlock(): a DMAR fault, the buffer unchanged;
 *   msix   the admin completion queue's interrupt (vector 0) arrives on the MSI-X eventfd;
 *   reopen the device is closed (the IOMMU goes with the last group), memory is locked while no
 *          device is open, the device is opened again: both the old and the new memory are
 *          mapped again (replay) and Identify lands in each.
 * The controller reports success even for a faulting command (QEMU), so the proof is the data.
 * The admin queue is nvme_admin.h's (NVMe register and command layouts cited there).
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "backend.h"
#include "check.h"
#include "nvme_admin.h"

#define EXIT_SKIP 77
#define PG NA_PG
#define SZ_2M (2u << 20)
#define POISON 0xa5
#define HOLE_IOVA UINT64_C(0x80000000) /* inside the window, below 4 GiB: ubdma allocates high */

#define CHECK_RC(rc, what) check((rc) == 0, "%s: %s%s%s", what, (rc) ? strerror(rc) : "0", \
				 (rc) ? " - " : "", (rc) ? ubdma_last_error() : "")

/* The admin queues of the open device, up (7.6.1); -1 after a "not ok" line saying why not. */
static int nvme_up(struct nvme_admin *c, ubdma_ctx_t *ctx, ubdma_pci_t *dev)
{
	const char *why = "";

	if (nvme_admin_init(c, ctx, dev, &why)) {
		check(0, "NVMe admin queues: %s: %s", why, ubdma_last_error());
		return -1;
	}
	uint32_t csts = na_rd32(c, NA_REG_CSTS);
	check(csts & 1, "controller ready (CSTS %#x), admin queues at IOVA %#" PRIx64, csts,
	      ubdma_umem_iova(c->qcookie, c->sq));
	return 0;
}

/* 0 once the command completed; a failed status is only noted, since the proof is the data. */
static int identify(struct nvme_admin *c, uint64_t iova, int fault)
{
	int rc = fault ? nvme_admin_identify_fault(c, iova) : nvme_admin_identify(c, iova);

	if (rc == 0 && c->status)
		printf("# completion status %#x\n", c->status);
	return rc;
}

static int all_poison(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != POISON)
			return 0;
	return 1;
}

/* Identify into buf (4 KiB inside locked memory) at iova; the data must land there. */
static void identify_into(struct nvme_admin *c, const char *what, uint8_t *buf, uint64_t iova)
{
	memset(buf, POISON, PG);
	int rc = identify(c, iova, 0);
	check(rc == 0 && nvme_admin_is_identify(buf), "%s: Identify at IOVA %#" PRIx64 " (VA %p) landed: "
	      "model '%.14s'", what, iova, (void *)buf, buf + NA_IDCTRL_MN);
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	ubdma_ctx_t *ctx = NULL;
	ubdma_pci_t *dev = NULL;
	struct nvme_admin c = { 0 };
	uint64_t lo[8], hi[8];
	int rc, n;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf || !getenv("UBDMA_VM_NVME_DRIVER") ||
	    strcmp(getenv("UBDMA_VM_NVME_DRIVER"), "vfio-pci")) {
		printf("# SKIP: no NVMe controller on vfio-pci ($UBDMA_VM_NVME)\n");
		return EXIT_SKIP;
	}
	rc = ubdma_ctx_open(guest_backend(), &ctx);
	CHECK_RC(rc, "ubdma_ctx_open");
	if (rc)
		return 1;
	check(ubdma_ctx_backend(ctx) == guest_backend(), "backend is %s",
	      ubdma_backend_name(ubdma_ctx_backend(ctx)));
	ubdma_ctx_iova_windows(ctx, lo, hi, 8, &n);
	for (int i = 0; i < n && i < 8; i++)
		printf("# before attach: window %d [%#" PRIx64 ", %#" PRIx64 "]\n", i, lo[i], hi[i]);

	/* early: locked before any device exists; the backend records it and replays at attach */
	uint8_t *early = guest_dma_mmap(16 * PG);
	ubdma_umem_t *ce = NULL;
	rc = early == MAP_FAILED ? ENOMEM : ubdma_umem_lock(ctx, early, 16 * PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &ce);
	CHECK_RC(rc, "umem_lock before the device is open");
	if (rc)
		return 1;
	uint64_t early_iova = ubdma_vtoiova(ctx, early + 2 * PG);

	rc = ubdma_pci_open(ctx, bdf, &dev);
	CHECK_RC(rc, "ubdma_pci_open(NVMe)");
	if (rc)
		return 1;
	ubdma_ctx_iova_windows(ctx, lo, hi, 8, &n);
	for (int i = 0; i < n && i < 8; i++)
		printf("# after attach: window %d [%#" PRIx64 ", %#" PRIx64 "]\n", i, lo[i], hi[i]);
	check(n >= 1 && lo[0] > 0, "usable windows read from the IOMMU (%d), page 0 excluded", n);
	int msix_fd = -1;
	if (ubdma_pci_msix_count(dev) > 0) {
		rc = ubdma_pci_msix_enable(dev, 1, &msix_fd);
		CHECK_RC(rc, "MSI-X vector 0 enabled");
	}
	if (nvme_up(&c, ctx, dev))
		goto out;

	/* early */
	check(early_iova != UBDMA_BAD_IOVA && early_iova == ubdma_umem_iova(ce, early + 2 * PG),
	      "early: vtoiova %#" PRIx64 " matches the cookie", early_iova);
	identify_into(&c, "early (replayed at attach)", early + 2 * PG, early_iova);

	/* 4k */
	uint8_t *b4 = guest_dma_mmap(8 * PG);
	ubdma_umem_t *c4 = NULL;
	rc = b4 == MAP_FAILED ? ENOMEM : ubdma_umem_lock(ctx, b4, 8 * PG, UBDMA_UMEM_WRITE | UBDMA_UMEM_READ, &c4);
	CHECK_RC(rc, guest_isolates() ? "umem_lock of 4 KiB pages" : "umem_lock of 8 pages (a hugepage: no IOMMU)");
	if (rc)
		goto out;
	uint64_t iova4 = ubdma_umem_iova(c4, b4 + 3 * PG);
	check(iova4 == ubdma_vtoiova(ctx, b4 + 3 * PG) && iova4 != UBDMA_BAD_IOVA && iova4 != 0,
	      "4k: cookie and translation map agree (%#" PRIx64 ")", iova4);
	identify_into(&c, "4k", b4 + 3 * PG, iova4);
	if (msix_fd >= 0) {
		struct pollfd pfd = { .fd = msix_fd, .events = POLLIN };
		uint64_t cnt = 0;
		int got = poll(&pfd, 1, 2000) == 1 && read(msix_fd, &cnt, sizeof(cnt)) == sizeof(cnt);
		check(got && cnt > 0, "msix: admin completions signalled the eventfd (%" PRIu64 " interrupts)", cnt);
	}

	/* 2m */
	uint8_t *b2 = mmap(NULL, SZ_2M, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT), -1, 0);
	ubdma_umem_t *c2 = NULL;
	if (b2 == MAP_FAILED) {
		printf("# SKIP 2m: no 2 MiB hugepage (%s)\n", strerror(errno));
		b2 = NULL;
	} else {
		rc = ubdma_umem_lock(ctx, b2, SZ_2M, UBDMA_UMEM_WRITE | UBDMA_UMEM_READ, &c2);
		CHECK_RC(rc, "umem_lock of a 2 MiB hugepage");
		uint8_t *p = b2 + (1u << 20) + 3 * PG;
		uint64_t iova2 = ubdma_vtoiova(ctx, p);
		check(iova2 == ubdma_umem_iova(c2, p) && iova2 != UBDMA_BAD_IOVA,
		      "2m: cookie and translation map agree (%#" PRIx64 ")", iova2);
		check(iova2 % SZ_2M == (uintptr_t)p % SZ_2M, "2m: IOVA and VA agree modulo 2 MiB");
		identify_into(&c, "2m", p, iova2);
	}

	/* hole: nothing is mapped at HOLE_IOVA; the device must not reach any of our memory */
	if (guest_isolates()) {
		memset(early, POISON, 16 * PG);
		memset(b4, POISON, 8 * PG);
		if (b2)
			memset(b2, POISON, SZ_2M);
		rc = identify(&c, HOLE_IOVA, 1);
		check(rc == 0, "hole: the command completed");
		check(all_poison(early, 16 * PG) && all_poison(b4, 8 * PG) && (!b2 || all_poison(b2, SZ_2M)),
		      "hole: Identify at unmapped IOVA %#" PRIx64 " changed none of our memory", HOLE_IOVA);
	} else {
		printf("# SKIP hole, stale: no IOMMU, so no IOVA is unmapped (the device reaches all memory)\n");
	}

	/* stale: after unlock the 4k buffer's IOVA leads nowhere */
	ubdma_umem_unlock(c4);
	check(ubdma_vtoiova(ctx, b4 + 3 * PG) == UBDMA_BAD_IOVA, "stale: unregistered after unlock");
	if (guest_isolates()) {
		memset(b4, POISON, 8 * PG);
		rc = identify(&c, iova4, 1);
		check(rc == 0 && all_poison(b4, 8 * PG),
		      "stale: Identify at the unlocked IOVA %#" PRIx64 " did not reach the buffer", iova4);
	}

	/* the context still works after the faults */
	rc = ubdma_umem_lock(ctx, b4, 8 * PG, UBDMA_UMEM_WRITE | UBDMA_UMEM_READ, &c4);
	CHECK_RC(rc, "relock of the 4k buffer");
	uint64_t iova4b = ubdma_umem_iova(c4, b4);
	if (guest_isolates())
		check(iova4b != iova4 - 3 * PG, "relock: a fresh IOVA (%#" PRIx64 "), the stale one is not "
		      "reused at once", iova4b);
	else /* the IOVA is the physical address, the same frame's again */
		check(iova4b == iova4 - 3 * PG, "relock: the same physical address %#" PRIx64, iova4b);
	identify_into(&c, "relock", b4, iova4b);
	ubdma_umem_unlock(c4);

	/* reopen: the last device goes, memory is locked with none open, the device comes back */
	nvme_admin_fini(&c);
	ubdma_pci_close(dev);
	dev = NULL;
	rc = ubdma_umem_lock(ctx, b4, 8 * PG, UBDMA_UMEM_WRITE | UBDMA_UMEM_READ, &c4);
	CHECK_RC(rc, "reopen: umem_lock while no device is open");
	rc = ubdma_pci_open(ctx, bdf, &dev);
	CHECK_RC(rc, "reopen: ubdma_pci_open again (replays the mappings)");
	if (rc || nvme_up(&c, ctx, dev))
		goto out;
	identify_into(&c, "reopen: memory locked before the first open", early + 5 * PG,
		      ubdma_vtoiova(ctx, early + 5 * PG));
	identify_into(&c, "reopen: memory locked while no device was open", b4 + PG,
		      ubdma_vtoiova(ctx, b4 + PG));
	ubdma_umem_unlock(c4);

	nvme_admin_fini(&c);
	ubdma_umem_unlock(c2);
	ubdma_umem_unlock(ce);
out:
	ubdma_pci_close(dev);
	ubdma_ctx_close(ctx);
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
