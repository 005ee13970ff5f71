/*
 * nvme_admin.h - a bare NVMe admin queue for guest tests that must choose every DMA address
 * themselves: the controller enabled with its admin queues in ubdma-locked memory, and Identify
 * Controller sent to an IOVA the test picks, so that where the 4 KiB land proves what the IOMMU
 * maps there.  (The driver, drivers/nvme, translates buffers itself; it cannot aim at an IOVA.)
 * Public API only.  NVM Express Base Specification 1.4; sections cited at the layouts.
 * QEMU completes a command whose DMA faulted with success: the proof is always the data.
 */
#ifndef UBDMA_GUEST_NVME_ADMIN_H
#define UBDMA_GUEST_NVME_ADMIN_H

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#define NA_PG 4096u
#define NA_QD 16
#define NA_REG_CAP 0x00	 /* 3.1.1 Controller Capabilities */
#define NA_REG_CC 0x14	 /* 3.1.5 Controller Configuration */
#define NA_REG_CSTS 0x1c /* 3.1.6 Controller Status */
#define NA_REG_AQA 0x24	 /* 3.1.8 Admin Queue Attributes */
#define NA_REG_ASQ 0x28	 /* 3.1.9 Admin Submission Queue Base Address */
#define NA_REG_ACQ 0x30	 /* 3.1.10 Admin Completion Queue Base Address */
#define NA_REG_DB 0x1000 /* 3.1.24/25: SQ0TDBL; CQ0HDBL at 1000h + (4 << CAP.DSTRD) */
#define NA_CAP_TO(c) (((c) >> 24) & 0xff) /* 500 ms units */
#define NA_CAP_DSTRD(c) (((c) >> 32) & 0xf)
#define NA_OPC_IDENTIFY 0x06 /* 5.15; CNS 01h: Identify Controller */
#define NA_IDCTRL_SN 4	     /* 5.15.2.1: SN bytes 23:04, MN bytes 63:24 */
#define NA_IDCTRL_MN 24

struct na_sqe { /* 4.2 Submission Queue Entry, 64 bytes */
	uint32_t cdw0, nsid, cdw2, cdw3;
	uint64_t mptr, prp1, prp2;
	uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
struct na_cqe { /* 4.6 Completion Queue Entry, 16 bytes; status bit 0 is the phase tag */
	uint32_t dw0, dw1;
	uint16_t sqhd, sqid, cid, status;
};

struct nvme_admin {
	ubdma_pci_t *dev;
	volatile uint8_t *bar;
	uint64_t cap;
	struct na_sqe *sq;
	volatile struct na_cqe *cq;
	void *qmem;
	size_t qmem_len;
	ubdma_umem_t *qcookie;
	unsigned sq_tail, cq_head, phase;
	uint16_t cid;
	uint16_t status; /* the last completion's Status Field (4.6.1), phase tag dropped */
};

static inline uint32_t na_rd32(struct nvme_admin *c, uint32_t off)
{
	return *(volatile uint32_t *)(c->bar + off);
}

static inline void na_wr32(struct nvme_admin *c, uint32_t off, uint32_t v)
{
	*(volatile uint32_t *)(c->bar + off) = v;
}

static inline void na_wr64(struct nvme_admin *c, uint32_t off, uint64_t v)
{
	na_wr32(c, off, (uint32_t)v);
	na_wr32(c, off + 4, (uint32_t)(v >> 32));
}

static inline double na_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CSTS.RDY == want within CAP.TO (plus slack for TCG); -1 on timeout or fatal status. */
static inline int na_wait_rdy(struct nvme_admin *c, uint32_t want)
{
	double end = na_now() + (NA_CAP_TO(c->cap) + 1) * 0.5 + 5;

	while (na_now() < end) {
		uint32_t csts = na_rd32(c, NA_REG_CSTS);
		if (csts & 2) /* CFS */
			return -1;
		if ((csts & 1) == want)
			return 0;
		usleep(1000);
	}
	return -1;
}

/*
 * 7.6.1 initialisation of the open device: disable, admin queues (locked in ctx), bus mastering,
 * enable.  0, or -1 with *why set.
 */
static inline int nvme_admin_init(struct nvme_admin *c, ubdma_ctx_t *ctx, ubdma_pci_t *dev, const char **why)
{
	size_t len = 0;

	/* all zero: a controller brought up again after nvme_admin_fini() starts its queues afresh */
	*c = (struct nvme_admin){ .dev = dev };
	if (!(c->bar = ubdma_pci_bar(dev, 0, &len)) || len < 0x2000)
		return *why = "BAR0 not mapped", -1;
	c->cap = *(volatile uint32_t *)(c->bar + NA_REG_CAP) |
		 (uint64_t)*(volatile uint32_t *)(c->bar + NA_REG_CAP + 4) << 32;
	c->qmem_len = 2 * NA_PG;
	c->qmem = mmap(NULL, c->qmem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->qmem == MAP_FAILED) {
		c->qmem = NULL;
		return *why = "no memory for the admin queues", -1;
	}
	int lrc = ubdma_umem_lock(ctx, c->qmem, c->qmem_len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &c->qcookie);
	if (lrc == ENOTSUP) {
		/* a backend without an IOMMU (noiommu) takes only hugetlb memory, whose frames stay put */
		munmap(c->qmem, c->qmem_len);
		c->qmem_len = 2u << 20;
		c->qmem = mmap(NULL, c->qmem_len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT), -1, 0);
		if (c->qmem == MAP_FAILED) {
			c->qmem = NULL;
			return *why = "no 2 MiB hugepage for the admin queues", -1;
		}
		lrc = ubdma_umem_lock(ctx, c->qmem, c->qmem_len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &c->qcookie);
	}
	if (lrc)
		return *why = "admin queues not locked", -1;
	memset(c->qmem, 0, 2 * NA_PG);
	c->sq = c->qmem;
	c->cq = (volatile struct na_cqe *)((char *)c->qmem + NA_PG);
	c->phase = 1;
	if (na_rd32(c, NA_REG_CC) & 1) {
		na_wr32(c, NA_REG_CC, 0);
		if (na_wait_rdy(c, 0))
			return *why = "controller did not disable", -1;
	}
	na_wr32(c, NA_REG_AQA, (NA_QD - 1) << 16 | (NA_QD - 1));
	na_wr64(c, NA_REG_ASQ, ubdma_umem_iova(c->qcookie, c->sq));
	na_wr64(c, NA_REG_ACQ, ubdma_umem_iova(c->qcookie, (void *)c->cq));
	if (ubdma_pci_bus_master(dev, 1))
		return *why = "bus mastering not enabled", -1;
	na_wr32(c, NA_REG_CC, 1 | 6u << 16 | 4u << 20); /* EN, IOSQES 2^6, IOCQES 2^4 */
	if (na_wait_rdy(c, 1))
		return *why = "controller not ready", -1;
	return 0;
}

static inline void nvme_admin_fini(struct nvme_admin *c)
{
	if (c->bar) {
		na_wr32(c, NA_REG_CC, 0);
		na_wait_rdy(c, 0);
	}
	ubdma_umem_unlock(c->qcookie);
	if (c->qmem)
		munmap(c->qmem, c->qmem_len);
	c->qcookie = NULL;
	c->qmem = NULL;
}

/* Identify Controller into PRP1 = iova (page aligned: 4 KiB land there); 0 once it completed. */
static inline int nvme_admin_identify(struct nvme_admin *c, uint64_t iova)
{
	struct na_sqe *e = &c->sq[c->sq_tail];
	uint32_t stride = 4u << NA_CAP_DSTRD(c->cap);

	memset(e, 0, sizeof(*e));
	e->cdw0 = NA_OPC_IDENTIFY | (uint32_t)(++c->cid) << 16;
	e->prp1 = iova;
	e->cdw10 = 1; /* CNS 01h */
	c->sq_tail = (c->sq_tail + 1) % NA_QD;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	na_wr32(c, NA_REG_DB, c->sq_tail);
	for (double end = na_now() + 10; na_now() < end;) {
		volatile struct na_cqe *q = &c->cq[c->cq_head];
		if ((q->status & 1) == c->phase) {
			c->status = q->status >> 1;
			if (++c->cq_head == NA_QD) {
				c->cq_head = 0;
				c->phase ^= 1;
			}
			na_wr32(c, NA_REG_DB + stride, c->cq_head);
			return 0;
		}
		usleep(100);
	}
	return -1;
}

/*
 * Wait (up to 3 s) until the kernel has logged the DMAR fault at iova's page.  The emulated VT-d
 * has one fault recording register and drops a fault while the last one is still pending, so a
 * test that provokes faults back to back must let the kernel's handler take each before the
 * next; on a loaded host that handler can run well after the command completed.  1 when seen.
 */
static inline int na_await_fault(uint64_t iova)
{
	char key[64], *buf = malloc(1 << 20);
	int seen = 0;

	snprintf(key, sizeof(key), "fault addr %#" PRIx64, iova & ~(uint64_t)(NA_PG - 1));
	for (int i = 0; buf && !seen && i < 300; i++) {
		int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, (1 << 20) - 1);
		if (n > 0) {
			buf[n] = '\0';
			seen = strstr(buf, key) != NULL;
		}
		if (!seen)
			usleep(10000);
	}
	free(buf);
	return seen;
}

/*
 * Identify at an IOVA the IOMMU must refuse, announced first: the runner fails a program for a DMAR
 * fault it did not announce (and for an announced one that never shows in its dmesg).  Flushed at
 * once so that a program killed afterwards (the runner's per-program timeout) still has it said.
 */
static inline int nvme_admin_identify_fault(struct nvme_admin *c, uint64_t iova)
{
	printf("UBDMA-EXPECT-DMAR-FAULT %#" PRIx64 "\n", iova);
	fflush(stdout);
	int rc = nvme_admin_identify(c, iova);
	na_await_fault(iova);
	return rc;
}

/* Whether p holds QEMU's Identify Controller data (serial "deadbeef", model "QEMU NVMe Ctrl"). */
static inline int nvme_admin_is_identify(const uint8_t *p)
{
	return !memcmp(p + NA_IDCTRL_SN, "deadbeef", 8) && !memcmp(p + NA_IDCTRL_MN, "QEMU NVMe Ctrl", 14);
}

#endif
