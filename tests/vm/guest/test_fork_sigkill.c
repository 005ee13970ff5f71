/*
 * test_fork_sigkill - SIGKILL in the middle of loads leaves nothing pinned (issue 10).
 *
 * Runs in the test-bed guest.  Rounds: a child opens a vfio context with the NVMe, and loops
 * without end over locking buffers, loading them (in place and bounced, through a tag whose pool
 * grows and shrinks), unloading and unlocking, allocating DMA memory; the parent kills it with
 * SIGKILL after a random 20-400 ms, so the kill lands anywhere in a load, a lock or an unlock.
 * After each kill, Mlocked and HugePages_Free are back where they started (nothing pinned by a
 * container the kernel failed to release) and the parent can open the IOMMU group, map and
 * unmap: the kernel took everything back.
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
#define PG 4096u
#define ROUNDS 6

static void cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	(void)arg;
	(void)segs;
	(void)nseg;
	(void)error;
}

static void child(const char *bdf, int wfd, unsigned seed)
{
	ubdma_ctx_t *ctx;
	ubdma_pci_t *dev;
	ubdma_tag_t *t;
	ubdma_map_t *m;
	char c = 'e';

	if (!ubdma_ctx_open(guest_backend(), &ctx) && !ubdma_pci_open(ctx, bdf, &dev) &&
	    !ubdma_tag_create(ubdma_ctx_tag(ctx), 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 64 * PG, 64, 64 * PG, 0, &t) &&
	    !ubdma_map_create(t, 0, &m))
		c = 'r';
	if (write(wfd, &c, 1) != 1 || c != 'r')
		_exit(2);
	srand(seed);
	for (unsigned long n = 0;; n++) {
		size_t len = PG * (1 + (size_t)rand() % 64);
		char *b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (n % 7 == 0 ? MAP_HUGETLB : 0),
			       -1, 0);
		if (b == MAP_FAILED)
			continue;
		ubdma_umem_t *u = NULL;
		if (n & 1)
			ubdma_umem_lock(ctx, b, len / 2 & ~(size_t)(PG - 1) ? len / 2 & ~(size_t)(PG - 1) : PG,
					UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
		if (ubdma_map_load(t, m, b + 100, len - 200, cb, NULL, UBDMA_NOWAIT) == 0) {
			ubdma_map_sync(t, m, UBDMA_SYNC_PREWRITE);
			ubdma_map_unload(t, m);
		}
		if (n % 5 == 0)
			ubdma_tag_set_bounce_limit(t, (n % 3) * 32 * PG);
		void *mem;
		ubdma_map_t *mm;
		if (n % 11 == 0 && !ubdma_mem_alloc(t, &mem, 0, &mm))
			ubdma_mem_free(t, mem, mm);
		ubdma_umem_unlock(u);
		munmap(b, len);
	}
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME");

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !getenv("UBDMA_VM_NVME_DRIVER") || strcmp(getenv("UBDMA_VM_NVME_DRIVER"), "vfio-pci")) {
		printf("# SKIP: no NVMe controller on vfio-pci\n");
		return EXIT_SKIP;
	}
	srand((unsigned)time(NULL));
	long mlocked0 = meminfo("Mlocked"), hfree0 = meminfo("HugePages_Free");
	for (int r = 0; r < ROUNDS; r++) {
		int p[2], st;
		char c = 0;
		if (pipe(p))
			return 1;
		pid_t pid = fork();
		if (pid == 0) {
			close(p[0]);
			child(bdf, p[1], (unsigned)rand());
		}
		close(p[1]);
		if (read(p[0], &c, 1) != 1 || c != 'r') {
			check(0, "round %d: child set up", r);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			close(p[0]);
			continue;
		}
		usleep(20000 + (useconds_t)(rand() % 380) * 1000);
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		close(p[0]);
		long ml = 0, hf = 0;
		for (int i = 0; i < 50; i++) {
			ml = meminfo("Mlocked");
			hf = meminfo("HugePages_Free");
			if (ml <= mlocked0 + 64 && hf == hfree0)
				break;
			usleep(20000);
		}
		check(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && ml <= mlocked0 + 64 && hf == hfree0,
		      "round %d: killed mid-work; Mlocked %ld kB (was %ld), HugePages_Free %ld (was %ld)", r, ml,
		      mlocked0, hf, hfree0);
		const char *why;
		int rc = group_maps_again(bdf, 16 * PG, UBDMA_UMEM_READ, &why);
		check(rc == 0, "round %d: the group opens and maps again: %s", r, rc ? why : "ok");
	}
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
