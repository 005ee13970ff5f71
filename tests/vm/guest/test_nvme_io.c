/*
 * test_nvme_io - libubdma_nvme moves the right bytes to the right LBAs, from any buffer.
 *
 * Runs in the test-bed guest with the NVMe on vfio-pci ($UBDMA_VM_NVME), in every VFIO mode
 * (backend.h); without an IOMMU its locked buffer is a hugepage, the rest is as elsewhere.  Byte o of the namespace
 * (its byte offset) carries pat(o, seed); the host side (tests/vm/nvme-host-check.sh) computes
 * the same bytes and compares them with cmp(1) against the backing file after the guest is off.
 *   write  regions written through the driver with seed 0x5a, each through another kind of buffer:
 *          DMA memory (one PRP, two PRPs), a malloc'd buffer at +100 bytes (bounced by bus_dma,
 *          a PRP list), locked memory at +512 (PRP list with an offset), a buffer at +2 (not
 *          dword aligned: SGL), the maximum transfer from unlocked memory, 4 KiB writes at QD 32
 *          over two queue pairs (one in batch mode: a doorbell a poll); then Write Zeroes over a written region, Deallocate, Flush, close.
 *          Each region is also read back through the driver and compared here.
 *   --host-pattern  also reads [16 MiB, +1 MiB), which the host wrote with seed 0xc3 before boot,
 *          through the same kinds of buffers, and compares.
 * Layout (byte offsets) must match nvme-host-check.sh.  Exit: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ubdma/ubdma.h>
#include <ubdma/nvme.h>

#include "backend.h"
#include "check.h"
#include "nvme_pat.h"

#define SEED_GUEST 0x5a
#define SEED_HOST 0xc3

static ubdma_nvme_t *ctrl;
static uint32_t nsid, lbs;
static uint64_t nsze;

/* One command, waited for. */
static int io1(ubdma_nvme_qpair_t *qp, int write, void *buf, uint64_t off, size_t len)
{
	return io1_ns(qp, nsid, lbs, write, buf, off, len, 10000);
}

/* Write buf (len bytes at namespace offset off) with the pattern, read it back into rb, compare. */
static void region(ubdma_nvme_qpair_t *qp, const char *what, uint8_t *buf, uint8_t *rb, uint64_t off, size_t len)
{
	fill(buf, off, len, SEED_GUEST);
	int rc = io1(qp, 1, buf, off, len);
	check(rc == 0, "%s: write %zu bytes at %#" PRIx64 " from %p: %s", what, len, off, (void *)buf,
	      rc ? strerror(rc) : "ok");
	memset(rb, 0, len);
	rc = io1(qp, 0, rb, off, len);
	long bad = rc ? 0 : first_bad(rb, off, len, SEED_GUEST);
	if (bad >= 0)
		printf("# first bad byte at +%ld: %02x, want %02x\n", bad, rb[bad], pat(off + (uint64_t)bad, SEED_GUEST));
	check(rc == 0 && bad < 0, "%s: read back into %p matches", what, (void *)rb);
}

static void readback(ubdma_nvme_qpair_t *qp, const char *what, uint8_t *rb, uint64_t off, size_t len)
{
	memset(rb, 0, len);
	int rc = io1(qp, 0, rb, off, len);
	long bad = rc ? 0 : first_bad(rb, off, len, SEED_HOST);
	if (bad >= 0)
		printf("# first bad byte at +%ld: %02x, want %02x\n", bad, rb[bad], pat(off + (uint64_t)bad, SEED_HOST));
	check(rc == 0 && bad < 0, "host pattern, %s: %zu bytes at %#" PRIx64 " into %p match", what, len, off,
	      (void *)rb);
}

/* QD 32 over two queue pairs: 4 KiB writes of [base, base + 1 MiB) in a scattered order. */
static void qd32(ubdma_nvme_qpair_t *q1, ubdma_nvme_qpair_t *q2, uint8_t *mem, uint64_t base)
{
	const unsigned n = MiB / 4096;
	struct done d = { 0 };
	unsigned next = 0, again = 0;

	fill(mem, base, MiB, SEED_GUEST);
	ubdma_nvme_qpair_batch(q2, 1); /* q2 rings its doorbell once a poll, q1 once a command */
	while (next < n) {
		unsigned i = (next * 97) % n; /* 97 is prime to 256: a permutation */
		ubdma_nvme_qpair_t *q = (i & 1) ? q2 : q1;
		if (ubdma_nvme_outstanding(q) >= 32) {
			ubdma_nvme_poll(q, 0, NULL);
			continue;
		}
		int rc = ubdma_nvme_write(q, nsid, mem + (size_t)i * 4096, (base + i * 4096ull) / lbs, 4096 / lbs, cb, &d);
		if (rc == EAGAIN) {
			again++;
			ubdma_nvme_poll(q, 0, NULL);
			continue;
		}
		if (rc) {
			check(0, "qd32: submit %u: %s", i, ubdma_nvme_last_error());
			return;
		}
		next++;
	}
	int rc = ubdma_nvme_drain(q1, 10000);
	rc = rc ? rc : ubdma_nvme_drain(q2, 10000);
	ubdma_nvme_qpair_batch(q2, 0);
	check(rc == 0 && d.n == (int)n && !d.err, "qd32: %d of %u writes completed on queues %u and %u, error %d "
	      "(%u EAGAIN retries)", d.n, n, ubdma_nvme_qpair_id(q1), ubdma_nvme_qpair_id(q2), d.err, again);
}

static void simple(ubdma_nvme_qpair_t *qp, const char *what, int which, uint64_t lba, uint32_t nlb)
{
	struct done d = { 0 };
	int rc = which == 0 ? ubdma_nvme_flush(qp, nsid, cb, &d)
		 : which == 1 ? ubdma_nvme_write_zeroes(qp, nsid, lba, nlb, cb, &d)
			      : ubdma_nvme_deallocate(qp, nsid, lba, nlb, cb, &d);
	if (rc == ENOTSUP) {
		printf("# %s: not supported by this controller (%s)\n", what, ubdma_nvme_last_error());
		return;
	}
	if (!rc)
		rc = ubdma_nvme_drain(qp, 10000);
	check(rc == 0 && d.n == 1 && !d.err, "%s: %s (status %#x)", what, strerror(rc ? rc : d.err), d.status);
}

int main(int argc, char **argv)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	int host_pattern = argc > 1 && !strcmp(argv[1], "--host-pattern");
	ubdma_ctx_t *ctx = NULL;
	ubdma_nvme_qpair_t *q1 = NULL, *q2 = NULL;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf || !getenv("UBDMA_VM_NVME_DRIVER") || strcmp(getenv("UBDMA_VM_NVME_DRIVER"), "vfio-pci")) {
		printf("# SKIP: no NVMe controller on vfio-pci ($UBDMA_VM_NVME)\n");
		return 77;
	}
	/* our own context, so that the test can lock memory in it */
	if ((rc = ubdma_ctx_open(guest_backend(), &ctx))) {
		check(0, "ubdma_ctx_open: %s", ubdma_last_error());
		return 1;
	}
	struct ubdma_nvme_opts o = { .size = sizeof(o), .ctx = ctx, .io_queues = 2, .queue_entries = 64 };
	rc = ubdma_nvme_open(bdf, &o, &ctrl);
	check(rc == 0, "ubdma_nvme_open(%s): %s %s", bdf, strerror(rc), rc ? ubdma_nvme_last_error() : "");
	if (rc)
		return 1;
	const struct ubdma_nvme_info *in = ubdma_nvme_info(ctrl);
	printf("# %s: '%s' sn '%s' fr '%s' VS %u.%u.%u, MQES+1 %u, DSTRD %u, MDTS %u (max transfer %zu), NN %u, "
	       "ONCS %#x, VWC %#x, SGLS %#x, %u I/O queue pairs\n", bdf, in->mn, in->sn, in->fr, in->vs >> 16,
	       (in->vs >> 8) & 0xff, in->vs & 0xff, in->max_entries, in->dstrd, in->mdts, in->max_transfer, in->nn,
	       in->oncs, in->vwc, in->sgls, in->io_queues);
	check(!strcmp(in->sn, "deadbeef") && in->nn >= 1, "Identify Controller: serial '%s'", in->sn);
	struct ubdma_nvme_ns_info ns;
	rc = ubdma_nvme_ns_next(ctrl, 0, &nsid);
	rc = rc ? rc : ubdma_nvme_ns(ctrl, nsid, &ns);
	check(rc == 0 && ns.size >= 32 * MiB, "namespace %u: %" PRIu64 " blocks of %u bytes (%" PRIu64 " MiB)",
	      nsid, ns.nsze, ns.lba_size, ns.size >> 20);
	if (rc)
		goto out;
	lbs = ns.lba_size;
	nsze = ns.nsze;
	rc = ubdma_nvme_qpair_create(ctrl, 0, &q1);
	check(rc == 0, "I/O queue pair 1: %s %s", strerror(rc), rc ? ubdma_nvme_last_error() : "");
	rc = rc ? rc : ubdma_nvme_qpair_create(ctrl, 0, &q2);
	check(rc == 0 && q2, "I/O queue pair 2: %s", rc ? ubdma_nvme_last_error() : "ok");
	if (rc)
		goto out;

	/* buffers: DMA memory is not needed: locked memory (4 KiB pages, or a hugepage where there is
	 * no IOMMU: guest_dma_mmap()) and plain malloc'd memory, which bus_dma bounces */
	const size_t big = 2 * MiB;
	uint8_t *locked = guest_dma_mmap(big);
	uint8_t *plain = malloc(big + 4096), *rb = malloc(big + 4096), *rbl;
	ubdma_umem_t *cookie = NULL;
	rc = locked == MAP_FAILED ? ENOMEM : ubdma_umem_lock(ctx, locked, big, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &cookie);
	check(rc == 0 && plain && rb, "buffers: 2 MiB locked at %p (%s), malloc'd %p: %s", (void *)locked,
	      guest_isolates() ? "4 KiB pages" : "a 2 MiB hugepage", (void *)plain, rc ? ubdma_last_error() : "ok");
	if (rc || !plain || !rb)
		goto out;
	rbl = locked + MiB; /* a locked read buffer */

	region(q1, "4 KiB, locked, page aligned (PRP1)", locked, rbl, 1 * MiB, 4 * KiB);
	region(q1, "8 KiB, locked, page aligned (PRP1+PRP2)", locked, rbl, 2 * MiB, 8 * KiB);
	region(q1, "64 KiB, malloc'd at +100 (bounced, PRP list)", plain + 100, rb + 100, 3 * MiB, 64 * KiB);
	region(q2, "256 KiB, locked at +512 (PRP list with offset)", locked + 512, rbl + 512, 4 * MiB, 256 * KiB);
	region(q2, "12 KiB, malloc'd at +2 (not dword aligned: SGL)", plain + 2, rb + 3, 5 * MiB, 12 * KiB);
	size_t mx = in->max_transfer < MiB ? in->max_transfer : MiB;
	region(q2, "max transfer, malloc'd page aligned (bounced)", plain + (4096 - ((uintptr_t)plain & 4095)),
	       rb, 6 * MiB, mx);
	/* Write Zeroes over a region written first: the host checks that it holds zeros */
	region(q1, "16 KiB to be zeroed", locked, rbl, 7 * MiB, 16 * KiB);
	simple(q1, "Write Zeroes [7 MiB, +16 KiB)", 1, 7 * MiB / lbs, 16 * KiB / lbs);
	memset(rbl, 0xff, 16 * KiB);
	rc = io1(q1, 0, rbl, 7 * MiB, 16 * KiB);
	int zero = 1;
	for (unsigned i = 0; i < 16 * KiB; i++)
		zero &= rbl[i] == 0;
	check(rc == 0 && zero, "Write Zeroes: the region reads back as zeros");
	qd32(q1, q2, locked, 8 * MiB);
	memset(rbl, 0, MiB / 2);
	rc = io1(q2, 0, rbl, 8 * MiB, in->max_transfer < MiB / 2 ? in->max_transfer : MiB / 2);
	check(rc == 0 && first_bad(rbl, 8 * MiB, in->max_transfer < MiB / 2 ? in->max_transfer : MiB / 2,
				   SEED_GUEST) < 0, "qd32: data read back matches");
	simple(q2, "Deallocate [10 MiB, +64 KiB)", 2, 10 * MiB / lbs, 64 * KiB / lbs);

	if (host_pattern) {
		readback(q1, "locked, 512 KiB", rbl, 16 * MiB, mx < 512 * KiB ? mx : 512 * KiB);
		readback(q1, "malloc'd at +100, 64 KiB (bounced)", rb + 100, 16 * MiB + 512 * KiB, 64 * KiB);
		readback(q2, "malloc'd at +3, 12 KiB (SGL)", rb + 3, 16 * MiB + 640 * KiB, 12 * KiB);
		readback(q2, "locked at +2048, 4 KiB", rbl + 2048, 16 * MiB + 1020 * KiB, 4 * KiB);
	}

	simple(q1, "Flush", 0, 0, 0);
	rc = ubdma_nvme_qpair_destroy(q1);
	check(rc == 0, "queue pair 1 destroyed: %s", strerror(rc));
	q1 = NULL;
	ubdma_umem_unlock(cookie);
out:
	rc = ubdma_nvme_close(ctrl); /* deletes queue pair 2 too, shuts down, resets */
	check(rc == 0, "ubdma_nvme_close (shutdown, reset): %s", strerror(rc));
	ubdma_ctx_close(ctx);
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
