/*
 * nic_gen - the receive rows' traffic source on the guest's clock (bench/nic.sh, docs/e1000e.md
 * "Receive on the guest's clock"): an emulated 82574L on a QEMU hub with the NIC under test,
 * whose transmit ring is written once and then only its tail moves.  Every PERIOD_US of guest
 * time it wakes (SCHED_FIFO, so it preempts the polling peer at once) and advances TDT by STEP:
 * QEMU's e1000e sends those STEP frames inside that one register write, in the vCPU's thread, and
 * the hub hands them to the NIC under test or queues them (10,000 frames at most) for its next
 * ring refill, which QEMU also serves in the vCPU's thread.  So the offered load is STEP frames a
 * period of guest time, whatever the host's pace, and costs the guest one wake-up a period.
 *
 *   bench_nic_gen BDF LEN PERIOD_US STEP
 *
 * Prints "nic_gen: ready" once the first frames are out; runs until SIGTERM or SIGINT, then stops
 * the transmitter and closes the device.  Exit status 0, or 1 with the reason on stderr.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sched.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "../drivers/e1000e/e1000e_regs.h"

#define NDESC 4096u /* TDLEN 64 KiB, a multiple of 128 (4.6.6) */
#define BUFSZ 2048u

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

struct one_seg {
	ubdma_iova_t iova;
	int nseg;
};

static void one_seg_cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	struct one_seg *s = arg;

	s->nseg = error ? 0 : nseg;
	if (nseg == 1 && !error)
		s->iova = segs[0].ds_addr;
}

/* @size bytes of DMA memory in one segment under the device's tag: its address and IOVA. */
static int dma_alloc(ubdma_pci_t *dev, size_t size, ubdma_tag_t **tag, void **va, ubdma_map_t **map,
		     ubdma_iova_t *iova)
{
	struct one_seg s = { 0, 0 };
	int err;

	if ((err = ubdma_tag_create(ubdma_pci_dma_tag(dev), 4096, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, size, 1,
				    size, 0, tag)))
		return err;
	if ((err = ubdma_mem_alloc(*tag, va, UBDMA_ZERO, map)))
		return err;
	if ((err = ubdma_map_load(*tag, *map, *va, size, one_seg_cb, &s, UBDMA_NOWAIT)))
		return err;
	if (s.nseg != 1)
		return EFBIG;
	*iova = s.iova;
	return 0;
}

static inline void wr32(volatile uint8_t *bar, uint32_t off, uint32_t v)
{
	*(volatile uint32_t *)(bar + off) = v;
}

static inline uint32_t rd32(volatile uint8_t *bar, uint32_t off)
{
	return *(volatile uint32_t *)(bar + off);
}

/* A broadcast IPv4/UDP frame of @len bytes (checksums left 0: nobody checks them here). */
static void frame(uint8_t *b, unsigned len)
{
	static const uint8_t src[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x5a };
	unsigned ipl = len - 14;

	memset(b, 0xff, 6);
	memcpy(b + 6, src, 6);
	b[12] = 0x08, b[13] = 0x00;
	b[14] = 0x45, b[16] = (uint8_t)(ipl >> 8), b[17] = (uint8_t)ipl;
	b[22] = 64, b[23] = 17;
	b[26] = 198, b[27] = 18, b[29] = 1, b[30] = 198, b[31] = 18, b[33] = 2;
	b[35] = 9, b[37] = 9;
	b[38] = (uint8_t)((ipl - 20) >> 8), b[39] = (uint8_t)(ipl - 20);
}

int main(int argc, char **argv)
{
	ubdma_tag_t *rtag = NULL, *btag = NULL;
	ubdma_map_t *rmap = NULL, *bmap = NULL;
	ubdma_iova_t riova, biova;
	struct tdesc *ring;
	ubdma_ctx_t *ctx = NULL;
	ubdma_pci_t *dev = NULL;
	struct sched_param sp = { .sched_priority = 1 };
	struct timespec next;
	volatile uint8_t *bar;
	unsigned len, step, tail = 0;
	long period_us;
	uint8_t *buf;
	int err, rc = 1;

	if (argc != 5 || (len = (unsigned)atoi(argv[2])) < 60 || len > 1514 ||
	    (period_us = atol(argv[3])) < 10 || (step = (unsigned)atoi(argv[4])) < 1 || step >= NDESC) {
		fprintf(stderr, "usage: bench_nic_gen BDF LEN(60-1514) PERIOD_US(>=10) STEP(1-%u)\n", NDESC - 1);
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if ((err = ubdma_ctx_open(UBDMA_BACKEND_VFIO, &ctx)) || (err = ubdma_pci_open(ctx, argv[1], &dev)) ||
	    !(bar = ubdma_pci_bar(dev, 0, NULL)) || (err = ubdma_pci_bus_master(dev, 1))) {
		fprintf(stderr, "nic_gen: %s: %s\n", argv[1], ubdma_last_error());
		goto out;
	}
	/* 4.6.1: interrupts masked, reset, masked again; 4.6.6: the transmit ring */
	wr32(bar, IMC, IMC_ALL);
	wr32(bar, CTRL, rd32(bar, CTRL) | CTRL_RST);
	for (int i = 0; i < 1000 && (rd32(bar, CTRL) & CTRL_RST); i++)
		usleep(1000);
	wr32(bar, IMC, IMC_ALL);
	wr32(bar, CTRL, rd32(bar, CTRL) | CTRL_SLU);
	if ((err = dma_alloc(dev, NDESC * sizeof(*ring), &rtag, (void **)&ring, &rmap, &riova)) ||
	    (err = dma_alloc(dev, BUFSZ, &btag, (void **)&buf, &bmap, &biova))) {
		fprintf(stderr, "nic_gen: DMA memory: %s\n", strerror(err));
		goto out;
	}
	frame(buf, len);
	/* every descriptor sends the same buffer; no RS: nothing is written back, nothing to reclaim */
	for (unsigned i = 0; i < NDESC; i++)
		ring[i] = (struct tdesc){ .buffer_addr = biova, .length = (uint16_t)len,
					  .cmd = TDESC_CMD_EOP | TDESC_CMD_IFCS };
	ubdma_map_sync(btag, bmap, UBDMA_SYNC_PREWRITE);
	ubdma_map_sync(rtag, rmap, UBDMA_SYNC_PREWRITE);
	wr32(bar, TDBAL, (uint32_t)riova);
	wr32(bar, TDBAH, (uint32_t)(riova >> 32));
	wr32(bar, TDLEN, NDESC * (uint32_t)sizeof(*ring));
	wr32(bar, TDH, 0);
	wr32(bar, TDT, 0);
	wr32(bar, TIPG, TIPG_DEFAULT);
	wr32(bar, TCTL, TCTL_EN | TCTL_PSP | (0x0Fu << TCTL_CT_SHIFT) | (0x3Fu << TCTL_COLD_SHIFT));
	if (sched_setscheduler(0, SCHED_FIFO, &sp))
		fprintf(stderr, "nic_gen: SCHED_FIFO: %s (wake-ups may come late)\n", strerror(errno));
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (int first = 1; !stop; first = 0) {
		tail = (tail + step) % NDESC;
		wr32(bar, TDT, tail);
		if (first) {
			printf("nic_gen: ready (%u-byte frames, %u every %ld us)\n", len, step, period_us);
			fflush(stdout);
		}
		next.tv_nsec += period_us * 1000;
		while (next.tv_nsec >= 1000000000) {
			next.tv_nsec -= 1000000000;
			next.tv_sec++;
		}
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR && !stop)
			;
	}
	wr32(bar, TCTL, 0);
	rc = 0;
out:
	if (bmap)
		ubdma_mem_free(btag, buf, bmap);
	if (rmap)
		ubdma_mem_free(rtag, ring, rmap);
	if (btag)
		ubdma_tag_destroy(btag);
	if (rtag)
		ubdma_tag_destroy(rtag);
	if (dev) {
		ubdma_pci_bus_master(dev, 0);
		ubdma_pci_close(dev);
	}
	ubdma_ctx_close(ctx);
	return rc;
}
