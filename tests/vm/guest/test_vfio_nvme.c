/*
 * test_vfio_nvme - DMA through the vfio backend, proved by QEMU's NVMe controller, public API only.
 *
 * Runs in the test-bed guest (tests/vm/run-guest.sh); $UBDMA_VM_NVME names the controller, bound
 * to vfio-pci.  The admin queues live in ubdma-locked memory, and every address handed to the
 * controller comes from ubdma_umem_iova() or ubdma_vtoiova().  Cases:
 *   early  memory locked before ubdma_pci_open() (recorded, then replayed at attach): Identify
 *          lands in it;
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
 * NVMe register and command layouts: NVM Express Base Specification 1.4, sections cited below.
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#define EXIT_SKIP 77
#define PG 4096u
#define SZ_2M (2u << 20)

/* NVMe 1.4, 3.1: controller registers in BAR0 */
#define REG_CAP 0x00  /* 3.1.1 Controller Capabilities */
#define REG_CC 0x14   /* 3.1.5 Controller Configuration */
#define REG_CSTS 0x1c /* 3.1.6 Controller Status */
#define REG_AQA 0x24  /* 3.1.8 Admin Queue Attributes */
#define REG_ASQ 0x28  /* 3.1.9 Admin Submission Queue Base Address */
#define REG_ACQ 0x30  /* 3.1.10 Admin Completion Queue Base Address */
#define REG_DB 0x1000 /* 3.1.24/25: SQ0TDBL at 1000h, CQ0HDBL at 1000h + (4 << CAP.DSTRD) */
#define CAP_TO(c) (((c) >> 24) & 0xff)	   /* 500 ms units */
#define CAP_DSTRD(c) (((c) >> 32) & 0xf)
#define CC_EN 1u
#define CC_IOSQES(n) ((n) << 16)
#define CC_IOCQES(n) ((n) << 20)
#define CSTS_RDY 1u
#define CSTS_CFS 2u
#define QD 16
#define OPC_IDENTIFY 0x06 /* 5.15 Identify; CNS 01h: Identify Controller */
#define IDCTRL_SN 4	  /* 5.15.2.1: SN bytes 23:04, MN bytes 63:24 */
#define IDCTRL_MN 24
#define POISON 0xa5
#define HOLE_IOVA UINT64_C(0x80000000) /* inside the window, below 4 GiB: ubdma allocates high */

struct sqe { /* 4.2 Submission Queue Entry, 64 bytes */
	uint32_t cdw0, nsid, cdw2, cdw3;
	uint64_t mptr, prp1, prp2;
	uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
struct cqe { /* 4.6 Completion Queue Entry, 16 bytes */
	uint32_t dw0, dw1;
	uint16_t sqhd, sqid, cid, status; /* status bit 0: phase tag */
};

struct nvme {
	ubdma_pci_t *dev;
	volatile uint8_t *bar;
	uint64_t cap;
	struct sqe *sq;
	volatile struct cqe *cq;
	void *qmem;
	ubdma_umem_t *qcookie;
	unsigned sq_tail, cq_head, phase;
	uint16_t cid;
};

static int failures;

static void check(int ok, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("%s - ", ok ? "ok" : "not ok");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	failures += !ok;
}

#define CHECK_RC(rc, what) check((rc) == 0, "%s: %s%s%s", what, (rc) ? strerror(rc) : "0", \
				 (rc) ? " - " : "", (rc) ? ubdma_last_error() : "")

static uint32_t rd32(struct nvme *c, uint32_t off) { return *(volatile uint32_t *)(c->bar + off); }
static void wr32(struct nvme *c, uint32_t off, uint32_t v) { *(volatile uint32_t *)(c->bar + off) = v; }
static uint64_t rd64(struct nvme *c, uint32_t off) { return rd32(c, off) | (uint64_t)rd32(c, off + 4) << 32; }
static void wr64(struct nvme *c, uint32_t off, uint64_t v)
{
	wr32(c, off, (uint32_t)v);
	wr32(c, off + 4, (uint32_t)(v >> 32));
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int wait_rdy(struct nvme *c, uint32_t want)
{
	double end = now() + (CAP_TO(c->cap) + 1) * 0.5 + 5;

	while (now() < end) {
		uint32_t csts = rd32(c, REG_CSTS);
		if (csts & CSTS_CFS)
			return -1;
		if ((csts & CSTS_RDY) == want)
			return 0;
		usleep(1000);
	}
	return -1;
}

/* 7.6.1 controller initialisation: disable, admin queues, enable. */
static int nvme_init(struct nvme *c, ubdma_ctx_t *ctx)
{
	size_t len = 0;
	int rc;

	if (!(c->bar = ubdma_pci_bar(c->dev, 0, &len)) || len < 0x2000) {
		check(0, "BAR0 mapped: %s", ubdma_last_error());
		return -1;
	}
	c->cap = rd64(c, REG_CAP);
	c->qmem = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->qmem == MAP_FAILED)
		return -1;
	memset(c->qmem, 0, 2 * PG);
	rc = ubdma_umem_lock(ctx, c->qmem, 2 * PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &c->qcookie);
	CHECK_RC(rc, "admin queues locked");
	if (rc)
		return -1;
	c->sq = c->qmem;
	c->cq = (volatile struct cqe *)((char *)c->qmem + PG);
	c->phase = 1;
	if (rd32(c, REG_CC) & CC_EN) {
		wr32(c, REG_CC, 0);
		if (wait_rdy(c, 0))
			return -1;
	}
	wr32(c, REG_AQA, (QD - 1) << 16 | (QD - 1));
	wr64(c, REG_ASQ, ubdma_umem_iova(c->qcookie, c->sq));
	wr64(c, REG_ACQ, ubdma_umem_iova(c->qcookie, (void *)c->cq));
	CHECK_RC(ubdma_pci_bus_master(c->dev, 1), "bus mastering on");
	wr32(c, REG_CC, CC_EN | CC_IOSQES(6) | CC_IOCQES(4));
	rc = wait_rdy(c, CSTS_RDY);
	check(rc == 0, "controller ready (CSTS %#x), admin queues at IOVA %#" PRIx64,
	      rd32(c, REG_CSTS), ubdma_umem_iova(c->qcookie, c->sq));
	return rc;
}

static void nvme_fini(struct nvme *c)
{
	if (c->bar) {
		wr32(c, REG_CC, 0);
		wait_rdy(c, 0);
	}
	ubdma_umem_unlock(c->qcookie);
	if (c->qmem && c->qmem != MAP_FAILED)
		munmap(c->qmem, 2 * PG);
}

/* Identify Controller into PRP1 = iova; 0 when the command completed. */
static int identify(struct nvme *c, uint64_t iova)
{
	struct sqe *e = &c->sq[c->sq_tail];
	uint32_t stride = 4u << CAP_DSTRD(c->cap);
	double end;

	memset(e, 0, sizeof(*e));
	e->cdw0 = OPC_IDENTIFY | (uint32_t)(++c->cid) << 16;
	e->prp1 = iova;
	e->cdw10 = 1; /* CNS 01h */
	c->sq_tail = (c->sq_tail + 1) % QD;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	wr32(c, REG_DB, c->sq_tail);
	for (end = now() + 10; now() < end;) {
		volatile struct cqe *q = &c->cq[c->cq_head];
		if ((q->status & 1) == c->phase) {
			uint16_t st = q->status >> 1;
			if (++c->cq_head == QD) {
				c->cq_head = 0;
				c->phase ^= 1;
			}
			wr32(c, REG_DB + stride, c->cq_head);
			if (st)
				printf("# completion status %#x\n", st);
			return 0;
		}
		usleep(100);
	}
	return -1;
}

/* The Identify Controller data of QEMU's NVMe is at p. */
static int is_identify(const uint8_t *p)
{
	return !memcmp(p + IDCTRL_SN, "deadbeef", 8) && !memcmp(p + IDCTRL_MN, "QEMU NVMe Ctrl", 14);
}

static int all_poison(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != POISON)
			return 0;
	return 1;
}

/* Identify into buf (4 KiB inside locked memory) at iova; the data must land there. */
static void identify_into(struct nvme *c, const char *what, uint8_t *buf, uint64_t iova)
{
	memset(buf, POISON, PG);
	int rc = identify(c, iova);
	check(rc == 0 && is_identify(buf), "%s: Identify at IOVA %#" PRIx64 " (VA %p) landed: "
	      "model '%.14s'", what, iova, (void *)buf, buf + IDCTRL_MN);
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	ubdma_ctx_t *ctx = NULL;
	struct nvme c = { 0 };
	uint64_t lo[8], hi[8];
	int rc, n;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf || !getenv("UBDMA_VM_NVME_DRIVER") ||
	    strcmp(getenv("UBDMA_VM_NVME_DRIVER"), "vfio-pci")) {
		printf("# SKIP: no NVMe controller on vfio-pci ($UBDMA_VM_NVME)\n");
		return EXIT_SKIP;
	}
	rc = ubdma_ctx_open(UBDMA_BACKEND_VFIO, &ctx);
	CHECK_RC(rc, "ubdma_ctx_open(VFIO)");
	if (rc)
		return 1;
	check(ubdma_ctx_backend(ctx) == UBDMA_BACKEND_VFIO, "backend is %s",
	      ubdma_backend_name(ubdma_ctx_backend(ctx)));
	n = ubdma_ctx_iova_windows(ctx, lo, hi, 8);
	for (int i = 0; i < n && i < 8; i++)
		printf("# before attach: window %d [%#" PRIx64 ", %#" PRIx64 "]\n", i, lo[i], hi[i]);

	/* early: locked before any device exists; the backend records it and replays at attach */
	uint8_t *early = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ubdma_umem_t *ce = NULL;
	rc = ubdma_umem_lock(ctx, early, 16 * PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &ce);
	CHECK_RC(rc, "umem_lock before the device is open");
	uint64_t early_iova = ubdma_vtoiova(ctx, early + 2 * PG);

	rc = ubdma_pci_open(ctx, bdf, &c.dev);
	CHECK_RC(rc, "ubdma_pci_open(NVMe)");
	if (rc)
		return 1;
	n = ubdma_ctx_iova_windows(ctx, lo, hi, 8);
	for (int i = 0; i < n && i < 8; i++)
		printf("# after attach: window %d [%#" PRIx64 ", %#" PRIx64 "]\n", i, lo[i], hi[i]);
	check(n >= 1 && lo[0] > 0, "usable windows read from the IOMMU (%d), page 0 excluded", n);
	int msix_fd = -1;
	if (ubdma_pci_msix_count(c.dev) > 0) {
		rc = ubdma_pci_msix_enable(c.dev, 1, &msix_fd);
		CHECK_RC(rc, "MSI-X vector 0 enabled");
	}
	if (nvme_init(&c, ctx))
		goto out;

	/* early */
	check(early_iova != UBDMA_BAD_IOVA && early_iova == ubdma_umem_iova(ce, early + 2 * PG),
	      "early: vtoiova %#" PRIx64 " matches the cookie", early_iova);
	identify_into(&c, "early (replayed at attach)", early + 2 * PG, early_iova);

	/* 4k */
	uint8_t *b4 = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ubdma_umem_t *c4 = NULL;
	rc = ubdma_umem_lock(ctx, b4, 8 * PG, UBDMA_UMEM_WRITE | UBDMA_UMEM_READ, &c4);
	CHECK_RC(rc, "umem_lock of 4 KiB pages");
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
	memset(early, POISON, 16 * PG);
	memset(b4, POISON, 8 * PG);
	if (b2)
		memset(b2, POISON, SZ_2M);
	printf("UBDMA-EXPECT-DMAR-FAULT %#" PRIx64 "\n", HOLE_IOVA);
	rc = identify(&c, HOLE_IOVA);
	check(rc == 0, "hole: the command completed");
	check(all_poison(early, 16 * PG) && all_poison(b4, 8 * PG) && (!b2 || all_poison(b2, SZ_2M)),
	      "hole: Identify at unmapped IOVA %#" PRIx64 " changed none of our memory", HOLE_IOVA);

	/* stale: after unlock the 4k buffer's IOVA leads nowhere */
	ubdma_umem_unlock(c4);
	check(ubdma_vtoiova(ctx, b4 + 3 * PG) == UBDMA_BAD_IOVA, "stale: unregistered after unlock");
	memset(b4, POISON, 8 * PG);
	printf("UBDMA-EXPECT-DMAR-FAULT %#" PRIx64 "\n", iova4);
	rc = identify(&c, iova4);
	check(rc == 0 && all_poison(b4, 8 * PG),
	      "stale: Identify at the unlocked IOVA %#" PRIx64 " did not reach the buffer", iova4);

	/* the context still works after the faults */
	rc = ubdma_umem_lock(ctx, b4, 8 * PG, UBDMA_UMEM_WRITE | UBDMA_UMEM_READ, &c4);
	CHECK_RC(rc, "relock of the 4k buffer");
	uint64_t iova4b = ubdma_umem_iova(c4, b4);
	check(iova4b != iova4 - 3 * PG, "relock: a fresh IOVA (%#" PRIx64 "), the stale one is not "
	      "reused at once", iova4b);
	identify_into(&c, "relock", b4, iova4b);
	ubdma_umem_unlock(c4);

	/* reopen: the last device goes, memory is locked with none open, the device comes back */
	nvme_fini(&c);
	ubdma_pci_close(c.dev);
	c = (struct nvme){ 0 };
	rc = ubdma_umem_lock(ctx, b4, 8 * PG, UBDMA_UMEM_WRITE | UBDMA_UMEM_READ, &c4);
	CHECK_RC(rc, "reopen: umem_lock while no device is open");
	rc = ubdma_pci_open(ctx, bdf, &c.dev);
	CHECK_RC(rc, "reopen: ubdma_pci_open again (replays the mappings)");
	if (rc || nvme_init(&c, ctx))
		goto out;
	identify_into(&c, "reopen: memory locked before the first open", early + 5 * PG,
		      ubdma_vtoiova(ctx, early + 5 * PG));
	identify_into(&c, "reopen: memory locked while no device was open", b4 + PG,
		      ubdma_vtoiova(ctx, b4 + PG));
	ubdma_umem_unlock(c4);

	nvme_fini(&c);
	ubdma_umem_unlock(c2);
	ubdma_umem_unlock(ce);
out:
	ubdma_pci_close(c.dev);
	ubdma_ctx_close(ctx);
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
