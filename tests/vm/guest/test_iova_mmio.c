/*
 * test_iova_mmio - no IOVA the library hands out aliases device MMIO (issue 18).
 *
 * A firmware may put a 64-bit BAR at 4 GiB (QEMU's qboot places the NVMe's 16 KiB BAR 0 there),
 * which is where the IOVA allocator starts.  A DMA address equal to a BAR may be claimed by that
 * device or a bridge instead of reaching the IOMMU; QEMU's NVMe (7.2 and 10) fails such a command
 * with Data Transfer Error (its check compares the untranslated address with its BAR 0).  The
 * meson test guest-qboot boots this program under qboot, where the collision is certain without the
 * allocator's holes: a 2 MiB buffer registered first (IOVA congruent to its VA mod 2 MiB, so at
 * 4 GiB exactly) and small ones at every page phase of a 2 MiB block, each checked against every
 * memory resource sysfs lists (read here, independently of the library); then the NVMe writes
 * and reads the first pages of the 2 MiB buffer (data compared), the pages whose IOVAs were
 * the BAR's before the fix.
 * Exit: 0 pass, 1 fail, 77 skip (no NVMe).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ubdma/ubdma.h>
#include <ubdma/nvme.h>

#include "check.h"

#define MIB (1u << 20)
#define MAXRES 256
#define NSMALL 64

static struct {
	uint64_t lo, hi;
	char bdf[16];
} res[MAXRES];
static int nres;

/* Every assigned memory resource (IORESOURCE_MEM) of every PCI function. */
static void read_resources(void)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *de;

	while (d && (de = readdir(d))) {
		char path[300];
		unsigned long long lo, hi, fl;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", de->d_name);
		FILE *f = fopen(path, "r");
		while (f && nres < MAXRES && fscanf(f, "%llx %llx %llx", &lo, &hi, &fl) == 3)
			if ((fl & 0x200) && !(fl & 0x20000000) && hi > lo) {
				res[nres].lo = lo;
				res[nres].hi = hi;
				snprintf(res[nres++].bdf, sizeof(res[0].bdf), "%.15s", de->d_name);
			}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
}

/* The resource [iova, +len) overlaps, or -1. */
static int overlap(uint64_t iova, uint64_t len)
{
	for (int i = 0; i < nres; i++)
		if (iova <= res[i].hi && iova + len - 1 >= res[i].lo)
			return i;
	return -1;
}

static void check_range(const char *what, uint64_t iova, uint64_t len)
{
	int i = overlap(iova, len);

	if (i < 0)
		check(iova != UBDMA_BAD_IOVA, "%s: IOVA [%#" PRIx64 ", +%#" PRIx64 ") is clear of all %d PCI "
		      "memory resources", what, iova, len, nres);
	else
		check(0, "%s: IOVA [%#" PRIx64 ", +%#" PRIx64 ") overlaps %s's memory resource [%#" PRIx64 ", %#" PRIx64 "]",
		      what, iova, len, res[i].bdf, res[i].lo, res[i].hi);
}

struct done {
	int n, err;
	uint16_t status;
};

static void cb(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct done *d = arg;

	d->n++;
	if (cpl->error && !d->err) {
		d->err = cpl->error;
		d->status = cpl->status;
	}
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	ubdma_ctx_t *ctx;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf) {
		printf("# no NVMe (UBDMA_VM_NVME)\n");
		return 77;
	}
	read_resources();
	for (int i = 0; i < nres; i++)
		printf("# %s memory [%#" PRIx64 ", %#" PRIx64 "]\n", res[i].bdf, res[i].lo, res[i].hi);
	check(nres > 0, "sysfs lists %d PCI memory resources", nres);
	if ((rc = ubdma_ctx_open(UBDMA_BACKEND_VFIO, &ctx))) {
		check(0, "ubdma_ctx_open: %s", ubdma_last_error());
		return 1;
	}

	/* first: a 2 MiB block at a 2 MiB-aligned VA, so the IOVA's phase is 0 (4 GiB without holes) */
	size_t blen = 2 * MIB;
	char *big = mmap(NULL, blen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	int huge = big != MAP_FAILED;
	if (!huge && posix_memalign((void **)&big, 2 * MIB, blen))
		big = NULL;
	check(big != NULL, "a 2 MiB buffer (%s)", huge ? "a hugepage" : "4 KiB pages");
	if (!big)
		return 1;
	memset(big, 0, blen);
	ubdma_umem_t *ub;
	rc = ubdma_umem_lock(ctx, big, blen, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &ub);
	check(!rc, "the 2 MiB buffer registered: %s", rc ? ubdma_last_error() : "ok");
	if (rc)
		return 1;
	check_range("the 2 MiB buffer", ubdma_vtoiova(ctx, big), blen);

	/* then one page at each 4 KiB phase of a 2 MiB block: every residue the allocator may need */
	char *pages = NULL;
	if (posix_memalign((void **)&pages, 2 * MIB, 2 * MIB)) {
		check(0, "posix_memalign");
		return 1;
	}
	memset(pages, 0, 2 * MIB);
	ubdma_umem_t *us[NSMALL];
	int bad = 0;
	for (int i = 0; i < NSMALL; i++) {
		char *p = pages + (size_t)i * (2 * MIB / NSMALL);
		if ((rc = ubdma_umem_lock(ctx, p, 4096, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &us[i]))) {
			check(0, "page %d registered: %s", i, ubdma_last_error());
			return 1;
		}
		uint64_t iova = ubdma_vtoiova(ctx, p);
		if (overlap(iova, 4096) >= 0 || iova == UBDMA_BAD_IOVA) {
			check_range("a small buffer", iova, 4096);
			bad++;
		}
	}
	check(!bad, "%d single pages at %d phases of 2 MiB: every IOVA clear of the memory resources", NSMALL, NSMALL);

	/* the NVMe reads and writes the first pages of the 2 MiB buffer */
	struct ubdma_nvme_opts o = { .size = sizeof(o), .ctx = ctx, .io_queues = 1 };
	ubdma_nvme_t *c;
	ubdma_nvme_qpair_t *qp;
	uint32_t nsid;
	struct ubdma_nvme_ns_info ns;
	if ((rc = ubdma_nvme_open(bdf, &o, &c)) || (rc = ubdma_nvme_ns_next(c, 0, &nsid)) ||
	    (rc = ubdma_nvme_ns(c, nsid, &ns)) || (rc = ubdma_nvme_qpair_create(c, 0, &qp))) {
		check(0, "NVMe %s: %s", bdf, ubdma_nvme_last_error());
		return 1;
	}
	uint32_t nlb = 4096 / ns.lba_size;
	for (size_t i = 0; i < 64 * 1024; i++)
		big[i] = (char)(i * 131 + 7);
	struct done d = { 0 };
	for (uint32_t k = 0; k < 8 && !rc; k++) /* pages 0-7 written to LBAs of the same offsets */
		rc = ubdma_nvme_write(qp, nsid, big + (size_t)k * 4096, (uint64_t)k * nlb, nlb, cb, &d);
	if (!rc)
		rc = ubdma_nvme_drain(qp, 10000);
	check(!rc && d.n == 8 && !d.err, "8 writes from the buffer's first 32 KiB: %s%s",
	      rc ? ubdma_nvme_last_error() : d.err ? ubdma_nvme_strstatus(d.status) : "ok",
	      d.err ? " (the IOVA hit a BAR?)" : "");
	memset(big + 64 * 1024, 0, 64 * 1024);
	d = (struct done){ 0 };
	for (uint32_t k = 0; k < 8 && !rc; k++) /* read back into the first pages themselves */
		rc = ubdma_nvme_read(qp, nsid, big + 64 * 1024 + (size_t)k * 4096, (uint64_t)k * nlb, nlb, cb, &d);
	if (!rc)
		rc = ubdma_nvme_drain(qp, 10000);
	memset(big, 0, 32 * 1024);
	struct done d2 = { 0 };
	for (uint32_t k = 0; k < 8 && !rc; k++)
		rc = ubdma_nvme_read(qp, nsid, big + (size_t)k * 4096, (uint64_t)k * nlb, nlb, cb, &d2);
	if (!rc)
		rc = ubdma_nvme_drain(qp, 10000);
	int same = 1;
	for (size_t i = 0; i < 32 * 1024; i++)
		same &= big[i] == (char)(i * 131 + 7) && big[64 * 1024 + i] == (char)(i * 131 + 7);
	check(!rc && !d.err && !d2.err && d2.n == 8 && same, "read back into the first pages: %s",
	      rc ? ubdma_nvme_last_error() : (d.err || d2.err) ? ubdma_nvme_strstatus(d.err ? d.status : d2.status)
				     : same ? "the same bytes" : "other bytes");

	ubdma_nvme_qpair_destroy(qp);
	ubdma_nvme_close(c);
	for (int i = 0; i < NSMALL; i++)
		ubdma_umem_unlock(us[i]);
	ubdma_umem_unlock(ub);
	ubdma_ctx_close(ctx);
	printf("# %d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
