/*
 * test_vfio_sigkill - a process killed with live mappings leaves nothing pinned.
 *
 * Runs in the test-bed guest.  A child opens a vfio context and the NVMe, locks 32 MiB of 4 KiB
 * pages and 8 MiB of 2 MiB hugepages (pinned by VFIO_IOMMU_MAP_DMA; the hugepages also wired by
 * mlock, the 4 KiB pages only watched since issue 21: docs/wire.md section 13), tells the parent,
 * and waits to be killed.  The parent reads /proc/meminfo and /proc/vmstat while the child lives
 * (the pins, nr_foll_pin_acquired - released, and HugePages_Free show the child's memory held;
 * Mlocked does not move for the 4 KiB pages), sends SIGKILL, reaps it, and checks that the pins,
 * Mlocked and HugePages_Free are back where they started (a page still pinned by a leaked
 * container would keep its hugepage out of the free pool) and that the IOMMU group can be opened
 * again, mapped into and released.  The same runs a second time with a child killed before any
 * device was attached (mappings only recorded, nothing pinned: the 4 KiB pages are wired by mlock).
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "backend.h"
#include "check.h"
#include "leftover.h"

#define EXIT_SKIP 77
#define MIB (1ul << 20)
#define ANON (32 * MIB)
#define HUGE (8 * MIB)

/* The child: lock memory (with or without the device), say "r" (or "e" on error), wait. */
static void child(const char *bdf, int with_device, int wfd)
{
	ubdma_ctx_t *ctx;
	ubdma_pci_t *dev;
	ubdma_umem_t *u1, *u2;
	char c = 'e';

	char *a = mmap(NULL, ANON, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *h = mmap(NULL, HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB,
		       -1, 0);
	if (a == MAP_FAILED || h == MAP_FAILED)
		goto out;
	if (ubdma_ctx_open(guest_backend(), &ctx))
		goto out;
	if (with_device && ubdma_pci_open(ctx, bdf, &dev))
		goto out;
	if (ubdma_umem_lock(ctx, a, ANON, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u1) ||
	    ubdma_umem_lock(ctx, h, HUGE, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u2))
		goto out;
	c = 'r';
out:
	if (c == 'e')
		fprintf(stderr, "child: %s\n", ubdma_last_error());
	if (write(wfd, &c, 1) != 1)
		_exit(2);
	for (;;)
		pause();
}

/* Pages pinned for DMA in the whole guest (FOLL_PIN: VFIO's and iommufd's pins among them). */
static long pins_held(void)
{
	FILE *f = fopen("/proc/vmstat", "re");
	char key[64];
	long v, acq = -1, rel = -1;

	while (f && fscanf(f, "%63s %ld", key, &v) == 2) {
		if (!strcmp(key, "nr_foll_pin_acquired"))
			acq = v;
		else if (!strcmp(key, "nr_foll_pin_released"))
			rel = v;
	}
	if (f)
		fclose(f);
	return acq < 0 || rel < 0 ? -1 : acq - rel;
}

static void wait_back(const char *key, long want, long *got)
{
	/* the exit path releases the container before the parent is told; allow a little slack */
	for (int i = 0; i < 50 && (*got = meminfo(key)) != want; i++)
		usleep(20000);
}

static void round_trip(const char *bdf, int with_device)
{
	const char *what = with_device ? "device attached" : "no device";
	long mlocked0 = meminfo("Mlocked"), hfree0 = meminfo("HugePages_Free"), pins0 = pins_held(), v;
	int p[2], status;
	char c = 0;

	if (pipe(p))
		return;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		child(bdf, with_device, p[1]);
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1 || c != 'r') {
		check(0, "%s: the child locked its memory", what);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		close(p[0]);
		return;
	}
	long mlocked1 = meminfo("Mlocked"), hfree1 = meminfo("HugePages_Free"), pins1 = pins_held();
	/* Mlocked moves by a few pages of other processes too: allow 1 MiB of slack.  With the
	 * device the backend pins the 4 KiB pages and the library only watches them (no mlock);
	 * without it nothing is pinned and they are wired */
	int mlock_ok = with_device ? mlocked1 - mlocked0 < (long)(ANON / 1024) / 2
				   : mlocked1 - mlocked0 >= (long)(ANON / 1024) - 1024;
	/* pins of other processes come and go too (a previous program's release): 1 MiB of slack */
	int pins_ok = with_device ? pins1 - pins0 >= (long)((ANON + HUGE) / 4096) - 256 : pins0 >= 0;
	check(mlock_ok && pins_ok && hfree0 - hfree1 >= (long)(HUGE / (2 * MIB)),
	      "%s: while the child lives: Mlocked %ld -> %ld kB (%s), pinned pages %ld -> %ld, "
	      "HugePages_Free %ld -> %ld", what, mlocked0, mlocked1,
	      with_device ? "watched, not mlocked" : "wired", pins0, pins1, hfree0, hfree1);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	close(p[0]);
	check(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "%s: child killed by SIGKILL", what);
	wait_back("Mlocked", mlocked0, &v);
	check(v <= mlocked0 + 64, "%s: Mlocked back to %ld kB (was %ld)", what, v, mlocked0);
	for (int i = 0; i < 50 && (v = pins_held()) > pins0; i++)
		usleep(20000);
	check(v <= pins0, "%s: pinned pages back to %ld (were %ld)", what, v, pins0);
	wait_back("HugePages_Free", hfree0, &v);
	check(v == hfree0, "%s: HugePages_Free back to %ld (was %ld): no hugepage left pinned", what,
	      v, hfree0);

	const char *why;
	int rc = group_maps_again(bdf, 4 * MIB, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &why);
	check(rc == 0, "%s: the parent reopens the group and maps -> %s", what, rc ? why : "0");
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME");

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf || !getenv("UBDMA_VM_NVME_DRIVER") ||
	    strcmp(getenv("UBDMA_VM_NVME_DRIVER"), "vfio-pci")) {
		printf("# SKIP: no NVMe controller on vfio-pci ($UBDMA_VM_NVME)\n");
		return EXIT_SKIP;
	}
	if (meminfo("HugePages_Free") < (long)(HUGE / (2 * MIB))) {
		printf("# SKIP: fewer than %lu free 2 MiB hugepages\n", HUGE / (2 * MIB));
		return EXIT_SKIP;
	}
	round_trip(bdf, 1);
	round_trip(bdf, 0);
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
