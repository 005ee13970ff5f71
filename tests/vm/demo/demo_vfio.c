/*
 * demo_vfio.c - the main job's guest part: ubdma on VFIO, end to end, as a short report.
 * Opens a context (AUTO: vfio in the guest), opens every device the test bed bound to vfio-pci,
 * locks a hugepage buffer and a 4 KiB-page buffer, checks that each translates inside the IOMMU's
 * usable windows, and measures the translation cost.  Lines starting "REPORT " are collected by
 * tests/vm/main-job.sh.
 */
#include <errno.h>
#include <linux/memfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int in_windows(ubdma_ctx_t *ctx, uint64_t iova)
{
	uint64_t lo[8], hi[8];
	int n = 0;

	ubdma_ctx_iova_windows(ctx, lo, hi, 8, &n);

	for (int i = 0; i < n && i < 8; i++)
		if (iova >= lo[i] && iova <= hi[i])
			return 1;
	return 0;
}

int main(void)
{
	ubdma_ctx_t *ctx;
	ubdma_pci_t *dev[2] = { NULL, NULL };
	const char *bdf[2] = { getenv("UBDMA_VM_NVME"), getenv("UBDMA_VM_NIC") };
	const char *what[2] = { "nvme", "e1000e" };
	int err, fails = 0;

	if ((err = ubdma_ctx_open(UBDMA_BACKEND_AUTO, &ctx))) {
		printf("REPORT context: FAILED %s: %s\n", strerror(err), ubdma_last_error());
		return 1;
	}
	printf("REPORT backend: %s (%s)\n", ubdma_backend_name(ubdma_ctx_backend(ctx)),
	       ubdma_ctx_backend_reason(ctx));
	for (int i = 0; i < 2; i++) {
		if (!bdf[i])
			continue;
		err = ubdma_pci_open(ctx, bdf[i], &dev[i]);
		if (err) {
			printf("REPORT device %s %s: FAILED %s\n", what[i], bdf[i], ubdma_last_error());
			fails++;
			continue;
		}
		size_t len = 0;
		ubdma_pci_bar(dev[i], 0, &len);
		printf("REPORT device %s: %s opened through VFIO, BAR0 %zu KiB\n", what[i], bdf[i], len >> 10);
	}
	uint64_t lo[8], hi[8];
	int nw = 0;
	ubdma_ctx_iova_windows(ctx, lo, hi, 8, &nw);
	printf("REPORT iova windows:");
	for (int i = 0; i < nw && i < 8; i++)
		printf(" [%#llx-%#llx]", (unsigned long long)lo[i], (unsigned long long)hi[i]);
	printf("\n");

	/* a hugepage buffer and a 4 KiB-page buffer, both for device reads and writes */
	size_t hlen = 16u << 20, slen = 1u << 20;
	int fd = memfd_create("demo", MFD_HUGETLB | MFD_HUGE_2MB);
	char *h = MAP_FAILED, *s = mmap(NULL, slen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fd >= 0 && ftruncate(fd, (off_t)hlen) == 0)
		h = mmap(NULL, hlen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ubdma_umem_t *uh = NULL, *us = NULL;
	if (h == MAP_FAILED || (err = ubdma_umem_lock(ctx, h, hlen, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &uh))) {
		printf("REPORT umem 16 MiB hugepages: FAILED %s\n", ubdma_last_error());
		fails++;
	}
	if ((err = ubdma_umem_lock(ctx, s, slen, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &us))) {
		printf("REPORT umem 1 MiB 4 KiB pages: FAILED %s\n", ubdma_last_error());
		fails++;
	}
	if (uh && us) {
		int ok = 1;
		for (size_t off = 0; off < hlen; off += 4096)
			ok &= in_windows(ctx, ubdma_vtoiova(ctx, h + off)) &&
			      ubdma_vtoiova(ctx, h + off) == ubdma_umem_iova(uh, h + off);
		for (size_t off = 0; off < slen; off += 4096)
			ok &= in_windows(ctx, ubdma_vtoiova(ctx, s + off));
		printf("REPORT umem: 16 MiB of 2 MiB pages at IOVA %#llx, 1 MiB of 4 KiB pages at IOVA %#llx: %s\n",
		       (unsigned long long)ubdma_umem_iova(uh, h), (unsigned long long)ubdma_umem_iova(us, s),
		       ok ? "every page inside the IOMMU windows" : "FAILED: a page outside the windows");
		fails += !ok;
		/* translation cost in the guest (TCG: compare, do not quote absolutely) */
		enum { N = 1 << 20 };
		uint64_t acc = 0;
		unsigned x = 12345;
		double t0 = now_ns();
		for (int i = 0; i < N; i++) {
			x = x * 1103515245u + 12345u;
			acc += ubdma_vtoiova(ctx, h + (x % hlen));
		}
		double t1 = now_ns();
		for (int i = 0; i < N; i++) {
			x = x * 1103515245u + 12345u;
			acc += (uintptr_t)(h + (x % hlen));
		}
		double t2 = now_ns();
		printf("REPORT translation: %.1f ns/lookup beside %.1f ns for the loop alone (guest CPU is emulated) [%llx]\n",
		       (t1 - t0) / N, (t2 - t1) / N, (unsigned long long)(acc & 0xf));
	}
	ubdma_umem_unlock(uh);
	ubdma_umem_unlock(us);
	for (int i = 0; i < 2; i++)
		ubdma_pci_close(dev[i]);
	ubdma_ctx_close(ctx);
	printf("REPORT demo: %s\n", fails ? "FAILED" : "ok");
	return fails ? 1 : 0;
}
