/*
 * test_vfio_limits - the vfio backend's limits: mapping entries, IOVA placement, limit windows;
 * and under iommufd (UBDMA_BACKEND=iommufd, backend.h) the same cases, where there is no entry limit.
 *
 * Runs in the test-bed guest.  vfio_iommu_type1's dma_entry_limit is a writable module parameter
 * read when a container gets its IOMMU, so the test lowers it to LIMIT for its own contexts and
 * puts it back at the end.  Cases:
 *   entries   with a device open, LIMIT separate registrations succeed and the next one gets
 *             ENOSPC naming dma_entry_limit, with nothing left wired; freeing one makes room;
 *   replay    LIMIT + 5 registrations made before any device (the limit is not known yet) make
 *             ubdma_pci_open() fail with ENOSPC, leaving nothing attached; after 5 unlocks the
 *             open succeeds;
 *   place     IOVAs are never 0 and lie inside the windows; a 4 MiB range at VA = 0x123000 mod
 *             2 MiB gets an IOVA with the same residue;
 *   lim       (the layers' umem_lock() with a limit window, as the busdma layer uses it) a
 *             32-bit limit gives IOVAs below 4 GiB; a limit inside the MSI window or holding only
 *             page 0 gives ERANGE.
 * Under iommufd, with dma_entry_limit still lowered to LIMIT (type1's parameter, which must not
 * apply): entries: all NBUF registrations succeed; replay: the open with LIMIT + 5 mappings made
 * before it succeeds at once; place and lim as above.
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ubdma/ubdma.h>
#include "backend.h"
#include "check.h"

#include "core/ctx.h" /* umem_lock() with a limit window: the layers' entry point */

#define EXIT_SKIP 77
#define PG 4096u
#define SZ_2M (2u << 20)
#define LIMIT 40
#define PARAM "/sys/module/vfio_iommu_type1/parameters/dma_entry_limit"

static long read_param(void)
{
	FILE *f = fopen(PARAM, "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static int write_param(long v)
{
	FILE *f = fopen(PARAM, "w");
	int ok;

	if (!f)
		return -1;
	ok = fprintf(f, "%ld\n", v) > 0;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static int in_windows(ubdma_ctx_t *ctx, uint64_t lo, uint64_t len)
{
	uint64_t wl[8], wh[8];
	int n = 0;

	ubdma_ctx_iova_windows(ctx, wl, wh, 8, &n);

	for (int i = 0; i < n && i < 8; i++)
		if (lo >= wl[i] && lo + len - 1 <= wh[i])
			return 1;
	return 0;
}

#define NBUF (LIMIT + 8)

static void entries(const char *bdf, char *pages)
{
	ubdma_ctx_t *ctx = NULL;
	ubdma_pci_t *dev = NULL;
	ubdma_umem_t *u[NBUF] = { 0 };
	int ok = 0, rc = 0, i;

	if (ubdma_ctx_open(guest_backend(), &ctx) || ubdma_pci_open(ctx, bdf, &dev)) {
		check(0, "entries: context and device: %s", ubdma_last_error());
		return;
	}
	/* every other page, so that no two registrations touch */
	for (i = 0; i < NBUF; i++) {
		rc = ubdma_umem_lock(ctx, pages + 2 * i * PG, PG, UBDMA_UMEM_READ, &u[i]);
		if (rc)
			break;
		ok++;
	}
	if (guest_backend() == UBDMA_BACKEND_IOMMUFD) {
		check(ok == NBUF && rc == 0, "entries: iommufd has no entry limit: %d of %d registrations "
		      "with dma_entry_limit at %d -> %s", ok, NBUF, LIMIT, rc ? ubdma_last_error() : "0");
		for (i = 0; i < NBUF; i++)
			ubdma_umem_unlock(u[i]);
		ubdma_pci_close(dev);
		ubdma_ctx_close(ctx);
		return;
	}
	check(ok == LIMIT && rc == ENOSPC && strstr(ubdma_last_error(), "dma_entry_limit"),
	      "entries: %d registrations fit a limit of %d, then %s: %s", ok, LIMIT, strerror(rc),
	      ubdma_last_error());
	check(ubdma_wire_count(pages + 2 * ok * PG) == 0, "entries: the refused page is not wired");
	ubdma_umem_unlock(u[3]);
	u[3] = NULL;
	rc = ubdma_umem_lock(ctx, pages + 2 * ok * PG, PG, UBDMA_UMEM_READ, &u[ok]);
	check(rc == 0, "entries: after one unlock there is room again -> %s",
	      rc ? ubdma_last_error() : "0");
	for (i = 0; i < NBUF; i++)
		ubdma_umem_unlock(u[i]);
	ubdma_pci_close(dev);
	ubdma_ctx_close(ctx);
}

static void replay(const char *bdf, char *pages)
{
	ubdma_ctx_t *ctx = NULL;
	ubdma_pci_t *dev = NULL;
	ubdma_umem_t *u[LIMIT + 5] = { 0 };
	int rc = 0, i;

	if (ubdma_ctx_open(guest_backend(), &ctx))
		return;
	for (i = 0; i < LIMIT + 5 && !rc; i++)
		rc = ubdma_umem_lock(ctx, pages + 2 * i * PG, PG, UBDMA_UMEM_READ, &u[i]);
	check(rc == 0, "replay: %d registrations before any device -> %s", LIMIT + 5,
	      rc ? ubdma_last_error() : "0");
	rc = ubdma_pci_open(ctx, bdf, &dev);
	if (guest_backend() == UBDMA_BACKEND_IOMMUFD) {
		check(rc == 0 && dev, "replay: iommufd: the open with %d mappings made before it "
		      "succeeds -> %s", LIMIT + 5, rc ? ubdma_last_error() : "0");
		ubdma_pci_close(dev);
		dev = NULL;
	} else {
		check(rc == ENOSPC && !dev, "replay: open with more mappings than entries -> %s: %s",
		      strerror(rc), ubdma_last_error());
	}
	for (i = 0; i < 5; i++) {
		ubdma_umem_unlock(u[i]);
		u[i] = NULL;
	}
	rc = ubdma_pci_open(ctx, bdf, &dev);
	check(rc == 0, "replay: after 5 unlocks the open succeeds -> %s", rc ? ubdma_last_error() : "0");
	ubdma_pci_close(dev);
	for (i = 0; i < LIMIT + 5; i++)
		ubdma_umem_unlock(u[i]);
	ubdma_ctx_close(ctx);
}

static void place(const char *bdf)
{
	ubdma_ctx_t *ctx = NULL;
	ubdma_pci_t *dev = NULL;
	ubdma_umem_t *u = NULL, *l = NULL;
	struct iommu_window lim32 = { 0, UINT64_C(0xffffffff) };
	struct iommu_window msi = { UINT64_C(0xfee00000), UINT64_C(0xfeefffff) };
	struct iommu_window zero = { 0, PG - 1 };
	int rc;

	if (ubdma_ctx_open(guest_backend(), &ctx) || ubdma_pci_open(ctx, bdf, &dev)) {
		check(0, "place: context and device: %s", ubdma_last_error());
		return;
	}
	/* 4 MiB at a VA whose offset in its 2 MiB granule is 0x123000 */
	char *area = mmap(NULL, 8 * SZ_2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *b = (char *)(((uintptr_t)area + SZ_2M - 1) / SZ_2M * SZ_2M) + 0x123000;
	rc = ubdma_umem_lock(ctx, b, 2 * SZ_2M, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
	uint64_t iova = ubdma_umem_iova(u, b);
	check(rc == 0 && iova % SZ_2M == 0x123000 && in_windows(ctx, iova, 2 * SZ_2M) && iova,
	      "place: 4 MiB at VA %p -> IOVA %#" PRIx64 ", same offset mod 2 MiB, inside a window", b,
	      iova);
	check(ubdma_vtoiova(ctx, b + SZ_2M + 5) == iova + SZ_2M + 5, "place: linear over the range");

	rc = umem_lock(ctx, b + 3 * SZ_2M, 4 * PG, UBDMA_UMEM_READ, &lim32, &l);
	iova = rc ? 0 : ubdma_umem_iova(l, b + 3 * SZ_2M);
	check(rc == 0 && iova && iova + 4 * PG - 1 <= 0xffffffff,
	      "lim: a 32-bit limit gives IOVA %#" PRIx64 " -> %s", iova, rc ? ubdma_last_error() : "0");
	ubdma_umem_unlock(l);
	l = NULL;
	rc = umem_lock(ctx, b + 3 * SZ_2M, 4 * PG, UBDMA_UMEM_READ, &msi, &l);
	check(rc == ERANGE && !l && ubdma_wire_count(b + 3 * SZ_2M) == 0,
	      "lim: a limit inside the MSI window -> %s: %s", strerror(rc), ubdma_last_error());
	rc = umem_lock(ctx, b + 3 * SZ_2M, PG, UBDMA_UMEM_READ, &zero, &l);
	check(rc == ERANGE && !l, "lim: a limit holding only IOVA page 0 -> %s", strerror(rc));
	ubdma_umem_unlock(u);
	ubdma_pci_close(dev);
	ubdma_ctx_close(ctx);
	munmap(area, 8 * SZ_2M);
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	long old;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!guest_isolates()) {
		printf("# SKIP: IOVA placement and entry limits need an IOMMU (UBDMA_BACKEND=%s)\n",
		       getenv("UBDMA_BACKEND"));
		return EXIT_SKIP;
	}
	if (!bdf || !*bdf || !getenv("UBDMA_VM_NVME_DRIVER") ||
	    strcmp(getenv("UBDMA_VM_NVME_DRIVER"), "vfio-pci")) {
		printf("# SKIP: no NVMe controller on vfio-pci ($UBDMA_VM_NVME)\n");
		return EXIT_SKIP;
	}
	char *pages = mmap(NULL, 2 * NBUF * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			   -1, 0);
	memset(pages, 1, 2 * NBUF * PG);
	place(bdf);
	if ((old = read_param()) < 0 || write_param(LIMIT)) {
		printf("# SKIP entries/replay: cannot set %s\n", PARAM);
	} else {
		printf("# dma_entry_limit %ld -> %d\n", old, LIMIT);
		entries(bdf, pages);
		replay(bdf, pages);
		check(write_param(old) == 0 && read_param() == old, "dma_entry_limit back to %ld", old);
	}
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
