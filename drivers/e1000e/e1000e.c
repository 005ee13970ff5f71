/*
 * e1000e.c - a polled user-space driver for the Intel 82574L on the public ubdma API.
 *
 * This file owns one device: its bring-up (82574 datasheet chapter 4: 4.6.1 interrupts off,
 * 4.6.2 global reset, 4.6.3 link, 4.6.4 statistics, 4.6.5 receive, 4.6.6 transmit), its two
 * descriptor rings (queue 0, legacy 16-byte descriptors, 7.1.4 and 7.2.10.1) and a pool of packet
 * buffers.  All DMA memory comes from ubdma_mem_alloc() under two tags made below the device's tag:
 *
 *   ring tag: alignment 128 (RDBAL/TDBAL, 4.6.5/4.6.6), one segment, size = descriptors * 16;
 *   pool tag: alignment RCTL.BSIZE (2048), one segment, size = buffers * 2048.
 *
 * Each is loaded once at open; a packet's IOVA is the pool's IOVA plus its offset, so the data
 * path never loads, maps, locks or calls the kernel.
 *
 * Ownership of a packet buffer (pkt_state[]): FREE on the pool's stack, USER with the caller, DEV
 * in a ring slot.  Receive ring invariant: every slot holds a DEV buffer; the hardware owns
 * [RDH, RDT), software looks at rx_next, and RDT == rx_next - 1 - rx_hold (one slot is always kept
 * back so that a full ring and an empty one differ; rx_hold refilled slots wait for the next RDT
 * write, which comes once rx_free_thresh of them are ready).  Transmit ring: [tx_clean, tx_tail) is in flight;
 * each burst sets RS on its last descriptor only, and tx_rs[first slot of the burst] names that
 * descriptor, so completion is one done-bit test a burst.
 *
 * Errors follow the drivers' convention (e1000e.h): every failure returns its errno through
 * drv_err(), which leaves the sentence for ubdma_e1000e_last_error() and traces it.
 *
 * Surprise removal: the kernel's remove of a device held through VFIO waits until the device
 * file is closed and asks for it through the VFIO request interrupt (ubdma_pci_notify_fds()).
 * Two readers of that eventfd answer it.  The removal watcher (drivers/common/drv_watch.h, a
 * thread started at open unless opts.removal_watch says no) sleeps on it, so that the removal
 * completes while the program makes no call at all.  The data path reads it every
 * GONE_CHECK_CALLS bursts (one non-blocking read(2); no system call on the other calls), the
 * waits (tx_flush, wait_link) on every turn.  A request, or STATUS reading all ones, makes the
 * device gone in two steps.  Release, by whichever thread saw it (once: the released flag, set
 * first): the device is given back (ubdma_pci_release(): bus mastering off, the device file
 * closed so that the remove proceeds, BAR0 replaced in one step by memory that reads all ones,
 * so a burst running on the caller's thread at that moment touches the device or that memory,
 * never a hole), then the gone flag is set.  Settle, on the caller's thread only, at its next
 * call, which reads released (every burst does: one load, the data path is otherwise unchanged
 * and shares nothing else with the watcher) and, should the release still be under way, waits
 * for gone: the frames in flight are dropped and every ring buffer returns to the pool, and every
 * call that needs the device fails with ENXIO from then on.  So a call made after the kernel's
 * remove completed (it waits for the close, which comes after released) always fails.  Close
 * stops the watcher first, then frees as usual.
 */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>
#include <ubdma/e1000e.h>

#include "e1000e_regs.h"

#define DRV_LIB "ubdma_e1000e"
#include "../common/drv_common.h"
#include "../common/drv_watch.h"

enum { PKT_FREE = 0, PKT_USER = 1, PKT_DEV = 2 };

#define DEFAULT_DESC 512
#define MAX_DESC 4096
#define DEFAULT_EXTRA_BUFS 1024
#define DEFAULT_LINK_WAIT_MS 3000
#define GONE_CHECK_CALLS 1024 /* bursts between two reads of the request eventfd */

struct ubdma_e1000e {
	ubdma_ctx_t *ctx;
	int own_ctx;                          /* opened by the driver: closed with the device */
	ubdma_pci_t *pci;
	volatile uint8_t *bar0;
	ubdma_tag_t *ring_tag, *pool_tag;

	struct rdesc *rx_ring;
	ubdma_map_t *rx_map;
	uint64_t rx_iova;
	struct tdesc *tx_ring;
	ubdma_map_t *tx_map;
	uint64_t tx_iova;
	void *pool_mem;
	ubdma_map_t *pool_map;
	uint64_t pool_iova;

	struct ubdma_e1000e_pkt *pkts;        /* npool packets */
	uint8_t *pkt_state;                   /* PKT_* per packet */
	struct ubdma_e1000e_pkt **free_stack; /* nfree free packets */
	unsigned npool, nfree;

	struct ubdma_e1000e_pkt **rx_slot;    /* the buffer of each receive descriptor */
	unsigned rx_n, rx_mask, rx_next;
	unsigned rx_hold, rx_free_thresh;     /* refilled slots not yet given back through RDT */
	int rx_discard;                       /* dropping the rest of a frame that lacked EOP */
	struct ubdma_e1000e_pkt **tx_slot;
	uint16_t *tx_rs;                      /* first slot of a burst -> its RS descriptor */
	unsigned tx_n, tx_mask, tx_tail, tx_clean, tx_inflight;

	int running;
	/* surprise removal: released and gone are set once, with atomics, by the caller's thread or
	 * the watcher (released first: the release has begun, every call fails from then on; gone
	 * once it is done, with gone_why and release_err); settled, by the caller's thread only,
	 * once the rings are dropped */
	int released, gone, settled;
	int release_err;                      /* ubdma_pci_release()'s answer */
	const char *gone_why;
	unsigned err_seen;                    /* error interrupts the watcher read, not yet reported */
	int req_fd, err_fd;                   /* VFIO request / error eventfds, -1 without */
	unsigned calls;                       /* bursts since the last removal check */
	struct drv_watch watch;               /* the removal watcher thread, when it runs */
	uint32_t rctl;
	uint8_t mac[6];
	struct ubdma_e1000e_stats st;
};

/* ------------------------------------------------------------------ errors */

const char *ubdma_e1000e_last_error(void)
{
	return drv_last_error_msg();
}

/* ------------------------------------------------------------------ register access */

static inline uint32_t rd32(const struct ubdma_e1000e *nic, uint32_t reg)
{
	return *(volatile const uint32_t *)(nic->bar0 + reg);
}

static inline void wr32(struct ubdma_e1000e *nic, uint32_t reg, uint32_t val)
{
	*(volatile uint32_t *)(nic->bar0 + reg) = val;
}

/* Poll until (reg & mask) == want or timeout_us passes; returns 0 or ETIMEDOUT. */
static int poll_reg(struct ubdma_e1000e *nic, uint32_t reg, uint32_t mask, uint32_t want,
		    unsigned timeout_us)
{
	uint64_t end = now_us() + timeout_us;

	for (;;) {
		if ((rd32(nic, reg) & mask) == want)
			return 0;
		if (now_us() > end)
			return ETIMEDOUT;
		sleep_us(50);
	}
}

/* ------------------------------------------------------------------ bring-up, chapter 4 */

/* 4.6.1 / 4.6.2: mask interrupts, stop DMA, master disable, global reset, mask again. */
static int reset_device(struct ubdma_e1000e *nic)
{
	wr32(nic, IMC, IMC_ALL);
	wr32(nic, RCTL, 0);
	wr32(nic, TCTL, 0);
	(void)rd32(nic, STATUS); /* flush the posted writes */
	sleep_us(10000);         /* let in-flight descriptors settle (4.6.2) */

	/* 5.2.3 / 10.2.2.1: GIO master disable, then wait for STATUS.GIO_MASTER_ENABLE to clear */
	wr32(nic, CTRL, rd32(nic, CTRL) | CTRL_GIO_MASTER_DISABLE);
	(void)poll_reg(nic, STATUS, STATUS_GIO_MASTER_ENABLE, 0, 10000);

	wr32(nic, CTRL, rd32(nic, CTRL) | CTRL_RST);
	sleep_us(1000); /* 4.6.2: wait at least 1 ms after setting CTRL.RST */
	if (poll_reg(nic, CTRL, CTRL_RST, 0, 100000))
		return drv_err(EIO, "CTRL.RST did not clear within 100 ms");
	wr32(nic, IMC, IMC_ALL); /* 4.6.1: reset unmasks nothing, but mask again as asked */
	(void)rd32(nic, ICR);
	/* 4.6.2 / 10.2.2.3: the NVM auto-read must finish before the MAC address is read */
	(void)poll_reg(nic, EEC, EEC_AUTO_RD, EEC_AUTO_RD, 50000);
	return 0;
}

/* 10.2.2.4: one 16-bit NVM word through EERD. */
static int nvm_read(struct ubdma_e1000e *nic, unsigned word, uint16_t *val)
{
	uint32_t v;

	wr32(nic, EERD, (word << EERD_ADDR_SHIFT) | EERD_START);
	if (poll_reg(nic, EERD, EERD_DONE, EERD_DONE, 10000))
		return ETIMEDOUT;
	v = rd32(nic, EERD);
	*val = (uint16_t)(v >> EERD_DATA_SHIFT);
	return 0;
}

/* 10.2.5 RAL0/RAH0 when valid, else NVM words 0-2 (6.1); writes RAL0/RAH0 back with AV set. */
static int read_mac(struct ubdma_e1000e *nic)
{
	uint32_t ral = rd32(nic, RAL0), rah = rd32(nic, RAH0);
	uint16_t w[3];
	int i;

	if (!(rah & RAH_AV) || (ral == 0 && (rah & 0xffff) == 0)) {
		for (i = 0; i < 3; i++) {
			if (nvm_read(nic, NVM_MAC_WORD0 + (unsigned)i, &w[i]))
				return drv_err(EIO, "RAH0.AV is clear and EERD did not answer: no MAC address");
		}
		ral = (uint32_t)w[0] | (uint32_t)w[1] << 16;
		rah = w[2];
	}
	for (i = 0; i < 4; i++)
		nic->mac[i] = (uint8_t)(ral >> (8 * i));
	nic->mac[4] = (uint8_t)rah;
	nic->mac[5] = (uint8_t)(rah >> 8);
	if (!(nic->mac[0] | nic->mac[1] | nic->mac[2] | nic->mac[3] | nic->mac[4] | nic->mac[5]) ||
	    (nic->mac[0] & 1))
		return drv_err(EIO, "no valid MAC address in RAL0/RAH0 or the NVM");
	wr32(nic, RAL0, ral);
	wr32(nic, RAH0, (rah & 0xffff) | RAH_AV);
	return 0;
}

/* 4.6.3: MAC/PHY link set-up by auto-negotiation: SLU, ASDE, nothing forced. */
static void link_setup(struct ubdma_e1000e *nic)
{
	uint32_t ctrl = rd32(nic, CTRL);

	ctrl &= ~(CTRL_FRCSPD | CTRL_FRCDPLX | CTRL_PHY_RST | CTRL_RST | CTRL_VME |
		  CTRL_GIO_MASTER_DISABLE);
	ctrl |= CTRL_SLU | CTRL_ASDE;
	wr32(nic, CTRL, ctrl);
}

/* 10.2.2.2: poll STATUS.LU up to timeout_ms; 0 or ETIMEDOUT, no sentence (open's wait is not
 * a failure). */
static int link_wait(struct ubdma_e1000e *nic, unsigned timeout_ms)
{
	return poll_reg(nic, STATUS, STATUS_LU, STATUS_LU, timeout_ms * 1000u);
}

/* 4.6.4: the statistics registers are clear on read. */
static void stats_clear(struct ubdma_e1000e *nic)
{
	for (uint32_t r = STATS_FIRST; r <= STATS_LAST; r += 4)
		(void)rd32(nic, r);
}

/* ------------------------------------------------------------------ DMA memory */

struct one_seg {
	uint64_t addr;
	int nseg, error;
};

static void one_seg_cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	struct one_seg *s = arg;

	s->nseg = nseg;
	s->error = error;
	if (nseg == 1)
		s->addr = segs[0].ds_addr;
}

/* ubdma_mem_alloc() on @tag and load it: one segment, its IOVA in *iova. */
static int dma_alloc(ubdma_tag_t *tag, size_t size, const char *what, void **va, ubdma_map_t **map,
		     uint64_t *iova)
{
	struct one_seg s = { 0, 0, 0 };
	int err;

	if ((err = ubdma_mem_alloc(tag, va, UBDMA_ZERO | UBDMA_NOWAIT, map)))
		return drv_err(err, "ubdma_mem_alloc for the %s: %s (%s)", what, strerror(err),
			       ubdma_last_error());
	err = ubdma_map_load(tag, *map, *va, size, one_seg_cb, &s, UBDMA_NOWAIT);
	if (err == 0 && (s.error || s.nseg != 1))
		err = s.error ? s.error : EFBIG;
	if (err) {
		drv_err(err, "loading the %s: %s (%s)", what, strerror(err), ubdma_last_error());
		ubdma_mem_free(tag, *va, *map);
		*va = NULL;
		*map = NULL;
		return err;
	}
	*iova = s.addr;
	return 0;
}

/* ------------------------------------------------------------------ pool */

static inline int pkt_ok(const struct ubdma_e1000e *nic, const struct ubdma_e1000e_pkt *p)
{
	return p >= nic->pkts && p < nic->pkts + nic->npool && p == &nic->pkts[p->index];
}

static inline void pool_put(struct ubdma_e1000e *nic, struct ubdma_e1000e_pkt *p)
{
	nic->pkt_state[p->index] = PKT_FREE;
	nic->free_stack[nic->nfree++] = p;
}

static inline struct ubdma_e1000e_pkt *pool_get(struct ubdma_e1000e *nic, int state)
{
	struct ubdma_e1000e_pkt *p = nic->free_stack[--nic->nfree];

	nic->pkt_state[p->index] = (uint8_t)state;
	return p;
}

/* ------------------------------------------------------------------ rings */

static inline void rx_give(struct ubdma_e1000e *nic, unsigned i, const struct ubdma_e1000e_pkt *p)
{
	volatile uint64_t *d = (volatile uint64_t *)&nic->rx_ring[i];

	d[0] = p->iova; /* buffer address */
	d[1] = 0;       /* length, checksum, status (DD), errors, special */
}

/* Take the transmit completions: each burst's RS descriptor done bit frees the whole burst. */
static unsigned tx_reclaim(struct ubdma_e1000e *nic)
{
	unsigned freed = 0;

	if (!nic->tx_inflight)
		return 0;
	ubdma_map_sync(nic->ring_tag, nic->tx_map, UBDMA_SYNC_POSTREAD);
	while (nic->tx_inflight) {
		unsigned last = nic->tx_rs[nic->tx_clean];
		unsigned count = ((last - nic->tx_clean) & nic->tx_mask) + 1;

		if (!(((volatile struct tdesc *)nic->tx_ring)[last].sta & TDESC_STA_DD))
			break;
		for (unsigned k = 0; k < count; k++) {
			pool_put(nic, nic->tx_slot[nic->tx_clean]);
			nic->tx_slot[nic->tx_clean] = NULL;
			nic->tx_clean = (nic->tx_clean + 1) & nic->tx_mask;
		}
		nic->tx_inflight -= count;
		freed += count;
	}
	return freed;
}

/* Every buffer in a ring back to the pool, frames in flight dropped: the device no longer runs. */
static void rings_drop(struct ubdma_e1000e *nic)
{
	while (nic->tx_inflight) { /* never sent: dropped, buffers back */
		pool_put(nic, nic->tx_slot[nic->tx_clean]);
		nic->tx_slot[nic->tx_clean] = NULL;
		nic->tx_clean = (nic->tx_clean + 1) & nic->tx_mask;
		nic->tx_inflight--;
	}
	for (unsigned i = 0; i < nic->rx_n; i++) {
		if (nic->rx_slot[i]) {
			pool_put(nic, nic->rx_slot[i]);
			nic->rx_slot[i] = NULL;
		}
	}
	nic->running = 0;
}

/*
 * The device is gone or wanted back: give it back now, from any thread (the watcher or the
 * caller's); the first to come releases, a second has nothing left to do.  released is set
 * before the device file is closed, so before the kernel's remove can complete: a call made
 * after that sees it (gone_seen()).
 */
static void nic_release(struct ubdma_e1000e *nic, const char *why)
{
	if (__atomic_exchange_n(&nic->released, 1, __ATOMIC_ACQ_REL))
		return;
	nic->release_err = ubdma_pci_release(nic->pci);
	nic->gone_why = why;
	__atomic_store_n(&nic->gone, 1, __ATOMIC_RELEASE);
}

/* The caller's side of a removal, once, on its own thread: the rings' buffers back to the pool
 * and the sentence.  A release still under way on the watcher's thread is waited for (a few
 * system calls), so that the rings are never dropped while the device may still be bus master.
 * 1: the device is gone. */
static int gone_settle(struct ubdma_e1000e *nic)
{
	unsigned inflight = nic->tx_inflight;

	if (nic->settled)
		return 1;
	while (!__atomic_load_n(&nic->gone, __ATOMIC_ACQUIRE))
		sched_yield();
	nic->settled = 1;
	rings_drop(nic);
	drv_err(ENXIO, "%s: %s: the device is gone (%u frames in flight dropped); it is given back (%s)",
		ubdma_pci_bdf(nic->pci), nic->gone_why, inflight,
		nic->release_err ? strerror(nic->release_err) : "released");
	return 1;
}

/* Has the device gone, or is it being given back (the flag only, no system call)?  Settles it
 * on the caller's thread. */
static inline int gone_seen(struct ubdma_e1000e *nic)
{
	if (__builtin_expect(__atomic_load_n(&nic->released, __ATOMIC_ACQUIRE), 0))
		return gone_settle(nic);
	return 0;
}

/* The removal check, on the caller's thread: the request eventfd, STATUS all ones, the error
 * eventfd (and errors the watcher read).  1 when gone. */
static int gone_check(struct ubdma_e1000e *nic)
{
	uint64_t n;

	nic->calls = 0;
	if (gone_seen(nic))
		return 1;
	if (nic->req_fd >= 0 && read(nic->req_fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
		nic_release(nic, "the kernel asks for the device back (VFIO device request: hot-unplug or "
			    "unbind)");
	else if (rd32(nic, STATUS) == UINT32_MAX)
		nic_release(nic, "STATUS reads all ones");
	else if (__atomic_exchange_n(&nic->err_seen, 0, __ATOMIC_ACQ_REL) ||
		 (nic->err_fd >= 0 && read(nic->err_fd, &n, sizeof(n)) == (ssize_t)sizeof(n)))
		drv_err(EIO, "%s: the kernel reports a device error (AER, VFIO error interrupt); STATUS "
			"%#x: the driver goes on", ubdma_pci_bdf(nic->pci), rd32(nic, STATUS));
	return gone_seen(nic);
}

/* On the data path: the check once every GONE_CHECK_CALLS calls; the flag on every call. */
static inline int gone_tick(struct ubdma_e1000e *nic)
{
	if (__builtin_expect(++nic->calls >= GONE_CHECK_CALLS, 0))
		return gone_check(nic);
	return gone_seen(nic);
}

/*
 * The watcher's check (drv_watch.h), on its thread, when the request or error eventfd is
 * readable: a request gives the device back now; an error is left for the caller's next check
 * to report (the sentence is per thread), unless STATUS reads all ones.  It touches nothing the
 * caller's thread owns (rings, pool, counters).  1 ends the watch.
 */
static int watch_check(void *arg)
{
	struct ubdma_e1000e *nic = arg;
	uint64_t n;

	if (read(nic->req_fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
		nic_release(nic, "the kernel asks for the device back (VFIO device request: hot-unplug or "
			    "unbind; answered by the removal watcher)");
	else if (nic->err_fd >= 0 && read(nic->err_fd, &n, sizeof(n)) == (ssize_t)sizeof(n)) {
		if (rd32(nic, STATUS) == UINT32_MAX)
			nic_release(nic, "error interrupt, and STATUS reads all ones (seen by the removal "
				    "watcher)");
		else
			__atomic_add_fetch(&nic->err_seen, 1, __ATOMIC_RELEASE);
	}
	return __atomic_load_n(&nic->released, __ATOMIC_ACQUIRE);
}

static void watch_lost(void *arg, int err)
{
	struct ubdma_e1000e *nic = arg;

	/* traced with UBDMA_LOG; the caller's sentence is not this thread's to set */
	drv_err(err, "%s: removal watcher: poll failed (%s): a removal is seen at the next check only",
		ubdma_pci_bdf(nic->pci), strerror(err));
}

static int gone_err(const char *what)
{
	return drv_err(ENXIO, "%s: the device is gone (removed, or given back to the kernel)", what);
}

/* Program queue 0's registers for empty rings (4.6.5, 4.6.6). */
static void rings_program(struct ubdma_e1000e *nic)
{
	wr32(nic, RDBAL, (uint32_t)nic->rx_iova);
	wr32(nic, RDBAH, (uint32_t)(nic->rx_iova >> 32));
	wr32(nic, RDLEN, nic->rx_n * (uint32_t)sizeof(struct rdesc));
	wr32(nic, RDH, 0);
	wr32(nic, RDT, 0);
	wr32(nic, RDTR, 0); /* write descriptors back at once */
	wr32(nic, RADV, 0);

	wr32(nic, TDBAL, (uint32_t)nic->tx_iova);
	wr32(nic, TDBAH, (uint32_t)(nic->tx_iova >> 32));
	wr32(nic, TDLEN, nic->tx_n * (uint32_t)sizeof(struct tdesc));
	wr32(nic, TDH, 0);
	wr32(nic, TDT, 0);
	wr32(nic, TIDV, 0);
	wr32(nic, TIPG, TIPG_DEFAULT);
}

/* Fill the receive ring from the pool, enable receive and transmit; the pool holds enough. */
static void rings_start(struct ubdma_e1000e *nic)
{
	rings_program(nic);
	memset(nic->tx_ring, 0, nic->tx_n * sizeof(struct tdesc));
	for (unsigned i = 0; i < nic->rx_n; i++) {
		nic->rx_slot[i] = pool_get(nic, PKT_DEV);
		rx_give(nic, i, nic->rx_slot[i]);
	}
	nic->rx_next = 0;
	nic->rx_hold = 0;
	nic->rx_discard = 0;
	nic->tx_tail = nic->tx_clean = nic->tx_inflight = 0;
	ubdma_map_sync(nic->ring_tag, nic->rx_map, UBDMA_SYNC_PREWRITE);
	ubdma_map_sync(nic->ring_tag, nic->tx_map, UBDMA_SYNC_PREWRITE);

	/* 4.6.5: legacy descriptors (RFCTL.EXSTEN = 0, RCTL.DTYP = 00), 2048-byte buffers,
	 * broadcasts accepted, CRC stripped, no long packets, no loopback. */
	wr32(nic, RFCTL, rd32(nic, RFCTL) & ~RFCTL_EXSTEN);
	nic->rctl &= RCTL_UPE | RCTL_MPE;
	nic->rctl |= RCTL_EN | RCTL_BAM | RCTL_SECRC | RCTL_BSIZE_2048;
	wr32(nic, RCTL, nic->rctl);
	wr32(nic, RDT, nic->rx_n - 1); /* all but one descriptor to the hardware */

	/* 4.6.6: enable, pad short packets, collision threshold 0x0F, full-duplex distance 0x3F */
	wr32(nic, TCTL, TCTL_EN | TCTL_PSP | (0x0Fu << TCTL_CT_SHIFT) | (0x3Fu << TCTL_COLD_SHIFT) |
				TCTL_RTLC);
	nic->running = 1;
}

/* Disable receive and transmit and take every ring buffer back into the pool. */
static void rings_stop(struct ubdma_e1000e *nic)
{
	nic->rctl &= ~RCTL_EN;
	wr32(nic, RCTL, nic->rctl);
	wr32(nic, TCTL, rd32(nic, TCTL) & ~TCTL_EN);
	(void)rd32(nic, STATUS);
	sleep_us(1000); /* let the DMA engines finish what they fetched */
	tx_reclaim(nic);
	rings_drop(nic);
	wr32(nic, RDH, 0);
	wr32(nic, RDT, 0);
	wr32(nic, TDH, 0);
	wr32(nic, TDT, 0);
}

/* ------------------------------------------------------------------ open / close */

static void teardown(struct ubdma_e1000e *nic)
{
	drv_watch_stop(&nic->watch); /* first: the thread may be releasing the device */
	if (nic->bar0 && !nic->gone) {
		wr32(nic, IMC, IMC_ALL);
		wr32(nic, RCTL, 0);
		wr32(nic, TCTL, 0);
		(void)rd32(nic, STATUS);
		sleep_us(1000);
	}
	if (nic->pci && !nic->gone)
		ubdma_pci_bus_master(nic->pci, 0);
	if (nic->pool_mem)
		ubdma_mem_free(nic->pool_tag, nic->pool_mem, nic->pool_map);
	if (nic->tx_ring)
		ubdma_mem_free(nic->ring_tag, nic->tx_ring, nic->tx_map);
	if (nic->rx_ring)
		ubdma_mem_free(nic->ring_tag, nic->rx_ring, nic->rx_map);
	if (nic->pool_tag)
		ubdma_tag_destroy(nic->pool_tag);
	if (nic->ring_tag)
		ubdma_tag_destroy(nic->ring_tag);
	drv_pci_close(nic->ctx, nic->own_ctx, nic->pci);
	free(nic->pkts);
	free(nic->pkt_state);
	free(nic->free_stack);
	free(nic->rx_slot);
	free(nic->tx_slot);
	free(nic->tx_rs);
	free(nic);
}

static int check_desc(unsigned *n, const char *what)
{
	if (*n == 0)
		*n = DEFAULT_DESC;
	if (*n < 8 || *n > MAX_DESC || (*n & (*n - 1)))
		return drv_err(EINVAL, "%s = %u: want a power of two from 8 to %u (ring length a "
			       "multiple of 128 bytes, 4.6.5)", what, *n, MAX_DESC);
	return 0;
}

/* The first version of struct ubdma_e1000e_opts ends with promisc (e1000e.h: the size rule). */
#define E1000E_OPTS_SIZE_V1 (offsetof(struct ubdma_e1000e_opts, promisc) + sizeof(int))

/* The caller's options into *c, zero (the default) for every member its struct lacks, then the
 * defaults filled in and each checked. */
static int open_opts(const struct ubdma_e1000e_opts *opts, struct ubdma_e1000e_opts *c)
{
	int err;

	if ((err = drv_opts_copy(opts, E1000E_OPTS_SIZE_V1, c, sizeof(*c), "ubdma_e1000e_opts")))
		return err;
	if ((err = check_desc(&c->rx_desc, "rx_desc")) || (err = check_desc(&c->tx_desc, "tx_desc")))
		return err;
	if (c->pool_bufs == 0)
		c->pool_bufs = c->rx_desc + c->tx_desc + DEFAULT_EXTRA_BUFS;
	if (c->pool_bufs < c->rx_desc + 32 || c->pool_bufs > (1u << 20))
		return drv_err(EINVAL, "pool_bufs = %u: want rx_desc + 32 (%u) to %u", c->pool_bufs,
			       c->rx_desc + 32, 1u << 20);
	if (c->link_wait_ms == 0)
		c->link_wait_ms = DEFAULT_LINK_WAIT_MS;
	if (c->removal_watch != UBDMA_E1000E_WATCH_ON && c->removal_watch != UBDMA_E1000E_WATCH_OFF)
		return drv_err(EINVAL, "removal_watch = %d: want UBDMA_E1000E_WATCH_ON (0) or "
			       "UBDMA_E1000E_WATCH_OFF (1)", c->removal_watch);
	return 0;
}

/* The context (the caller's, or one of the driver's own), PCI function, identity, BAR0. */
static int open_pci(struct ubdma_e1000e *nic, ubdma_ctx_t *ctx, const char *bdf)
{
	uint16_t id[2];
	size_t len = 0;
	int err;

	if ((err = drv_pci_open(ctx, bdf, &nic->ctx, &nic->own_ctx, &nic->pci, id)))
		return err;
	if (id[0] != UBDMA_E1000E_VENDOR || id[1] != UBDMA_E1000E_DEVICE)
		return drv_err(ENODEV, "%s is %04x:%04x, not an 82574L (%04x:%04x)", bdf, id[0], id[1],
			       UBDMA_E1000E_VENDOR, UBDMA_E1000E_DEVICE);
	nic->bar0 = ubdma_pci_bar(nic->pci, 0, &len);
	if (!nic->bar0 || len < 0x10000) {
		err = drv_err(EIO, "%s: BAR0 %s (%zu bytes): %s", bdf,
			      nic->bar0 ? "too small" : "cannot be mapped", len, ubdma_last_error());
		nic->bar0 = NULL;
		return err;
	}
	return 0;
}

/* Tags, rings, pool and the software arrays. */
static int open_memory(struct ubdma_e1000e *nic, const struct ubdma_e1000e_opts *c)
{
	ubdma_tag_t *dtag = ubdma_pci_dma_tag(nic->pci);
	size_t rsz = c->rx_desc * sizeof(struct rdesc), tsz = c->tx_desc * sizeof(struct tdesc);
	size_t ringmax = rsz > tsz ? rsz : tsz;
	size_t poolsz = (size_t)c->pool_bufs * UBDMA_E1000E_BUF_SIZE;
	void *va;
	int err;

	/* the 82574 addresses 64 bits: no exclusion window (lowaddr == highaddr) */
	if ((err = ubdma_tag_create(dtag, RING_ALIGN, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, ringmax, 1,
				    ringmax, 0, &nic->ring_tag)) ||
	    (err = ubdma_tag_create(dtag, UBDMA_E1000E_BUF_SIZE, 0, UBDMA_MAXADDR, UBDMA_MAXADDR,
				    poolsz, 1, poolsz, 0, &nic->pool_tag)))
		return drv_err(err, "ubdma_tag_create: %s (%s)", strerror(err), ubdma_last_error());
	/* both rings are ring-tag sized (maxsize): the smaller one just uses its first part */
	if ((err = dma_alloc(nic->ring_tag, ringmax, "receive ring", &va, &nic->rx_map, &nic->rx_iova)))
		return err;
	nic->rx_ring = va;
	if ((err = dma_alloc(nic->ring_tag, ringmax, "transmit ring", &va, &nic->tx_map, &nic->tx_iova)))
		return err;
	nic->tx_ring = va;
	if ((err = dma_alloc(nic->pool_tag, poolsz, "packet pool", &nic->pool_mem, &nic->pool_map,
			     &nic->pool_iova)))
		return err;

	nic->npool = c->pool_bufs;
	nic->rx_n = c->rx_desc;
	nic->rx_mask = c->rx_desc - 1;
	nic->rx_free_thresh = c->rx_desc / 8 < 32 ? c->rx_desc / 8 : 32;
	nic->tx_n = c->tx_desc;
	nic->tx_mask = c->tx_desc - 1;
	nic->pkts = calloc(nic->npool, sizeof(*nic->pkts));
	nic->pkt_state = calloc(nic->npool, 1);
	nic->free_stack = calloc(nic->npool, sizeof(*nic->free_stack));
	nic->rx_slot = calloc(nic->rx_n, sizeof(*nic->rx_slot));
	nic->tx_slot = calloc(nic->tx_n, sizeof(*nic->tx_slot));
	nic->tx_rs = calloc(nic->tx_n, sizeof(*nic->tx_rs));
	if (!nic->pkts || !nic->pkt_state || !nic->free_stack || !nic->rx_slot || !nic->tx_slot ||
	    !nic->tx_rs)
		return drv_err(ENOMEM, "out of memory for %u packet descriptors", nic->npool);
	/* the stack pops from its end: push in reverse so that low buffers go out first */
	for (unsigned i = nic->npool; i-- > 0;) {
		struct ubdma_e1000e_pkt *p = &nic->pkts[i];

		p->data = (uint8_t *)nic->pool_mem + (size_t)i * UBDMA_E1000E_BUF_SIZE;
		p->iova = nic->pool_iova + (uint64_t)i * UBDMA_E1000E_BUF_SIZE;
		p->cap = UBDMA_E1000E_BUF_SIZE;
		p->index = i;
		pool_put(nic, p);
	}
	return 0;
}

int ubdma_e1000e_open(const char *bdf, const struct ubdma_e1000e_opts *opts, ubdma_e1000e_t **nicp)
{
	struct ubdma_e1000e_opts c;
	struct ubdma_e1000e *nic;
	int err;

	if (nicp)
		*nicp = NULL;
	if (!bdf || !nicp)
		return drv_err(EINVAL, "%s is NULL", bdf ? "nicp" : "bdf");
	if ((err = open_opts(opts, &c)))
		return err;
	if (!(nic = calloc(1, sizeof(*nic))))
		return drv_err(ENOMEM, "out of memory");
	nic->req_fd = nic->err_fd = -1;
	drv_watch_init(&nic->watch);
	if ((err = open_pci(nic, c.ctx, bdf)) || (err = reset_device(nic)) || (err = read_mac(nic)))
		goto fail;
	for (unsigned i = 0; i < MTA_ENTRIES; i++) /* 4.6.5: no multicast hash matches */
		wr32(nic, MTA + 4 * i, 0);
	link_setup(nic);
	stats_clear(nic);
	if ((err = open_memory(nic, &c)))
		goto fail;
	if ((err = ubdma_pci_bus_master(nic->pci, 1))) {
		drv_err(err, "bus mastering: %s (%s)", strerror(err), ubdma_last_error());
		goto fail;
	}
	nic->rctl = c.promisc ? RCTL_UPE | RCTL_MPE : 0;
	/* surprise removal: a kernel without the request interrupt leaves the all-ones check */
	if (ubdma_pci_notify_fds(nic->pci, &nic->req_fd, &nic->err_fd))
		nic->req_fd = nic->err_fd = -1;
	rings_start(nic);
	(void)link_wait(nic, c.link_wait_ms); /* the link may come later: open does not fail on it */
	/* and a thread that answers the request when the program makes no call; last, so that no
	 * register write above lands after a release it made (without a request interrupt: none) */
	if (c.removal_watch == UBDMA_E1000E_WATCH_ON &&
	    (err = drv_watch_start(&nic->watch, nic->req_fd, nic->err_fd, "ubdma-e1000e-rm", watch_check,
				   watch_lost, nic))) {
		drv_err(err, "removal watcher: %s (open with removal_watch = UBDMA_E1000E_WATCH_OFF to do "
			"without)", strerror(err));
		goto fail;
	}
	*nicp = nic;
	return 0;
fail:
	teardown(nic);
	return err;
}

int ubdma_e1000e_close(ubdma_e1000e_t *nic)
{
	if (!nic)
		return 0; /* as free(NULL): the one rule for every close of ubdma (ubdma(3)) */
	teardown(nic);
	return 0;
}

int ubdma_e1000e_stop(ubdma_e1000e_t *nic)
{
	if (!nic)
		return drv_err(EINVAL, "nic is NULL");
	if (gone_seen(nic))
		return gone_err("ubdma_e1000e_stop");
	if (!nic->running)
		return drv_err(EALREADY, "ubdma_e1000e_stop: the device is already stopped");
	rings_stop(nic);
	return 0;
}

int ubdma_e1000e_start(ubdma_e1000e_t *nic)
{
	if (!nic)
		return drv_err(EINVAL, "nic is NULL");
	if (gone_check(nic))
		return gone_err("ubdma_e1000e_start");
	if (nic->running)
		return drv_err(EALREADY, "ubdma_e1000e_start: the device is already running");
	if (nic->nfree < nic->rx_n)
		return drv_err(ENOBUFS, "ubdma_e1000e_start: %u free buffers, the receive ring needs "
			       "%u: free packets first", nic->nfree, nic->rx_n);
	rings_start(nic);
	return 0;
}

/* ------------------------------------------------------------------ data path */

int ubdma_e1000e_pkt_alloc(ubdma_e1000e_t *nic, struct ubdma_e1000e_pkt **pkts, unsigned n)
{
	if (!nic || (!pkts && n))
		return drv_err(EINVAL, "%s is NULL", nic ? "pkts" : "nic");
	if (n > nic->nfree) {
		tx_reclaim(nic);
		if (n > nic->nfree)
			return drv_err(ENOBUFS, "pkt_alloc: %u packets asked, %u free", n, nic->nfree);
	}
	for (unsigned i = 0; i < n; i++) {
		pkts[i] = pool_get(nic, PKT_USER);
		pkts[i]->len = 0;
	}
	return 0;
}

int ubdma_e1000e_pkt_free(ubdma_e1000e_t *nic, struct ubdma_e1000e_pkt **pkts, unsigned n)
{
	if (!nic || (!pkts && n))
		return drv_err(EINVAL, "%s is NULL", nic ? "pkts" : "nic");
	for (unsigned i = 0; i < n; i++) {
		if (!pkts[i] || !pkt_ok(nic, pkts[i]) || nic->pkt_state[pkts[i]->index] != PKT_USER) {
			drv_err(EINVAL, "pkt_free: packet %u (%p) is not a packet the caller holds "
				"from this pool (foreign, free already, or in a ring): nothing freed",
				i, (void *)pkts[i]);
			while (i-- > 0) /* undo the marks: nothing half done */
				nic->pkt_state[pkts[i]->index] = PKT_USER;
			return EINVAL;
		}
		nic->pkt_state[pkts[i]->index] = PKT_FREE; /* catches the same packet twice in pkts */
	}
	for (unsigned i = 0; i < n; i++)
		nic->free_stack[nic->nfree++] = pkts[i];
	return 0;
}

int ubdma_e1000e_tx_burst(ubdma_e1000e_t *nic, struct ubdma_e1000e_pkt **pkts, unsigned n,
			  unsigned *sent)
{
	unsigned i, room, tail, first;
	int err = 0;

	if (sent)
		*sent = 0;
	if (!nic || !sent || (!pkts && n))
		return drv_err(EINVAL, "%s is NULL", !nic ? "nic" : !sent ? "sent" : "pkts");
	if (__builtin_expect(gone_tick(nic), 0))
		return gone_err("tx_burst");
	if (!nic->running)
		return drv_err(ENETDOWN, "tx_burst: the device is stopped");
	tx_reclaim(nic);
	room = nic->tx_n - 1 - nic->tx_inflight; /* TDT may not catch up with TDH */
	tail = first = nic->tx_tail;
	for (i = 0; i < n; i++) {
		struct ubdma_e1000e_pkt *p = pkts[i];
		volatile uint64_t *d;

		if (!p || !pkt_ok(nic, p) || nic->pkt_state[p->index] != PKT_USER) {
			err = drv_err(EINVAL, "tx_burst: packet %u is not one the caller holds from "
				      "this pool", i);
			nic->st.sw_tx_rejected++;
			break;
		}
		if (p->len < UBDMA_E1000E_MIN_FRAME || p->len > UBDMA_E1000E_MAX_FRAME) {
			err = drv_err(EMSGSIZE, "tx_burst: frame %u is %u bytes; a frame is %u to %u "
				      "bytes without FCS", i, p->len, UBDMA_E1000E_MIN_FRAME,
				      UBDMA_E1000E_MAX_FRAME);
			nic->st.sw_tx_rejected++;
			break;
		}
		if (i == room) {
			err = drv_err_fixed(ENOBUFS, "tx_burst: the transmit ring is full (the frames "
					       "before it went)");
			nic->st.sw_tx_ring_full++;
			break;
		}
		/* 7.2.10.1 legacy descriptor: address; length | CSO 0 | CMD (EOP, IFCS) | STA 0 */
		d = (volatile uint64_t *)&nic->tx_ring[tail];
		d[0] = p->iova;
		d[1] = (uint64_t)p->len | (uint64_t)(TDESC_CMD_EOP | TDESC_CMD_IFCS) << 24;
		nic->tx_slot[tail] = p;
		nic->pkt_state[p->index] = PKT_DEV;
		tail = (tail + 1) & nic->tx_mask;
	}
	if (i) {
		unsigned last = (tail - 1) & nic->tx_mask;

		nic->tx_ring[last].cmd |= TDESC_CMD_RS; /* one done bit for the burst */
		nic->tx_rs[first] = (uint16_t)last;
		ubdma_map_sync(nic->pool_tag, nic->pool_map, UBDMA_SYNC_PREWRITE);
		ubdma_map_sync(nic->ring_tag, nic->tx_map, UBDMA_SYNC_PREWRITE);
		wr32(nic, TDT, tail); /* the doorbell, once a burst */
		nic->tx_tail = tail;
		nic->tx_inflight += i;
		nic->st.sw_tx_pkts += i;
	}
	*sent = i;
	return err;
}

int ubdma_e1000e_rx_burst(ubdma_e1000e_t *nic, struct ubdma_e1000e_pkt **pkts, unsigned max,
			  unsigned *got)
{
	volatile struct rdesc *ring;
	unsigned idx, n = 0, done = 0;
	int err = 0;

	if (got)
		*got = 0;
	if (!nic || !got || (!pkts && max))
		return drv_err(EINVAL, "%s is NULL", !nic ? "nic" : !got ? "got" : "pkts");
	if (__builtin_expect(gone_tick(nic), 0))
		return gone_err("rx_burst");
	if (!nic->running)
		return drv_err(ENETDOWN, "rx_burst: the device is stopped");
	ring = nic->rx_ring;
	idx = nic->rx_next;
	ubdma_map_sync(nic->ring_tag, nic->rx_map, UBDMA_SYNC_POSTREAD);
	while (n < max) {
		uint8_t status = ring[idx].status, errors;
		uint16_t len;
		struct ubdma_e1000e_pkt *p = nic->rx_slot[idx];

		if (!(status & RDESC_STATUS_DD))
			break;
		errors = ring[idx].errors;
		len = ring[idx].length;
		if (nic->rx_discard || !(status & RDESC_STATUS_EOP) || (errors & RDESC_ERRORS_FRAME) ||
		    len == 0) {
			/* a bad frame, or a piece of one longer than a buffer: reuse the buffer */
			nic->rx_discard = !(status & RDESC_STATUS_EOP);
			nic->st.sw_rx_dropped++;
			rx_give(nic, idx, p);
		} else {
			if (!nic->nfree) {
				err = drv_err(ENOBUFS, "rx_burst: frames waiting but the pool is empty: "
					      "free received packets");
				break;
			}
			p->len = len;
			nic->pkt_state[p->index] = PKT_USER;
			pkts[n++] = p;
			nic->rx_slot[idx] = pool_get(nic, PKT_DEV);
			rx_give(nic, idx, nic->rx_slot[idx]);
		}
		idx = (idx + 1) & nic->rx_mask;
		done++;
	}
	if (done) {
		ubdma_map_sync(nic->pool_tag, nic->pool_map, UBDMA_SYNC_POSTREAD);
		ubdma_map_sync(nic->ring_tag, nic->rx_map, UBDMA_SYNC_PREWRITE);
		nic->rx_next = idx;
		nic->rx_hold += done;
		/* the doorbell: at most once a burst, and only once rx_free_thresh slots are refilled
		 * (each RDT write costs the device, or its emulator, a register access) */
		if (nic->rx_hold >= nic->rx_free_thresh) {
			wr32(nic, RDT, (idx - 1) & nic->rx_mask);
			nic->rx_hold = 0;
		}
		nic->st.sw_rx_pkts += n;
	}
	*got = n;
	return err;
}

int ubdma_e1000e_send(ubdma_e1000e_t *nic, const struct iovec *frames, unsigned n, unsigned *sent)
{
	struct ubdma_e1000e_pkt *batch[64];
	unsigned total = 0;
	int err = 0;

	if (sent)
		*sent = 0;
	if (!nic || !sent || (!frames && n))
		return drv_err(EINVAL, "%s is NULL", !nic ? "nic" : !sent ? "sent" : "frames");
	if (gone_seen(nic))
		return gone_err("send");
	if (!nic->running)
		return drv_err(ENETDOWN, "send: the device is stopped");
	while (total < n && !err) {
		unsigned k = n - total < 64 ? n - total : 64, ok = 0, done = 0;

		unsigned room;

		tx_reclaim(nic);
		room = nic->tx_n - 1 - nic->tx_inflight;
		if (k > room)
			k = room;
		if (k > nic->nfree)
			k = nic->nfree;
		if (k == 0) {
			err = drv_err_fixed(ENOBUFS, room ? "send: the packet pool is full"
							     : "send: the transmit ring is full");
			if (!room)
				nic->st.sw_tx_ring_full++;
			break;
		}
		for (; ok < k; ok++) {
			const struct iovec *f = &frames[total + ok];

			if (f->iov_len < UBDMA_E1000E_MIN_FRAME || f->iov_len > UBDMA_E1000E_MAX_FRAME) {
				err = drv_err(EMSGSIZE, "send: frame %u is %zu bytes; a frame is %u to "
					      "%u bytes without FCS", total + ok, f->iov_len,
					      UBDMA_E1000E_MIN_FRAME, UBDMA_E1000E_MAX_FRAME);
				nic->st.sw_tx_rejected++;
				break;
			}
			if (!f->iov_base) {
				err = drv_err(EINVAL, "send: frame %u has no buffer", total + ok);
				break;
			}
			batch[ok] = pool_get(nic, PKT_USER);
			memcpy(batch[ok]->data, f->iov_base, f->iov_len);
			batch[ok]->len = (uint16_t)f->iov_len;
		}
		if (ok) {
			int e = ubdma_e1000e_tx_burst(nic, batch, ok, &done);

			for (unsigned j = done; j < ok; j++)
				pool_put(nic, batch[j]);
			if (e)
				err = e;
		}
		total += done;
	}
	*sent = total;
	return err;
}

int ubdma_e1000e_recv(ubdma_e1000e_t *nic, struct iovec *bufs, unsigned n, unsigned *got)
{
	struct ubdma_e1000e_pkt *batch[64];
	unsigned total = 0;
	int err = 0;

	if (got)
		*got = 0;
	if (!nic || !got || (!bufs && n))
		return drv_err(EINVAL, "%s is NULL", !nic ? "nic" : !got ? "got" : "bufs");
	for (unsigned i = 0; i < n; i++)
		if (!bufs[i].iov_base || bufs[i].iov_len < UBDMA_E1000E_MAX_FRAME)
			return drv_err(EINVAL, "recv: buffer %u %s; each must hold %u bytes", i,
				       bufs[i].iov_base ? "is too small" : "is NULL", UBDMA_E1000E_MAX_FRAME);
	while (total < n) {
		unsigned k = n - total < 64 ? n - total : 64, r = 0;

		err = ubdma_e1000e_rx_burst(nic, batch, k, &r);
		for (unsigned j = 0; j < r; j++) {
			memcpy(bufs[total + j].iov_base, batch[j]->data, batch[j]->len);
			bufs[total + j].iov_len = batch[j]->len;
		}
		if (r)
			ubdma_e1000e_pkt_free(nic, batch, r);
		total += r;
		if (err || r < k)
			break;
	}
	*got = total;
	return err;
}

int ubdma_e1000e_tx_flush(ubdma_e1000e_t *nic, unsigned timeout_ms, unsigned *pending)
{
	uint64_t end;

	if (!nic)
		return drv_err(EINVAL, "nic is NULL");
	end = now_us() + (uint64_t)timeout_ms * 1000u;
	for (;;) {
		if (gone_check(nic)) {
			if (pending)
				*pending = 0;
			return gone_err("tx_flush (the frames in flight were dropped)");
		}
		tx_reclaim(nic);
		if (!nic->tx_inflight || now_us() >= end)
			break;
		sleep_us(20);
	}
	if (pending)
		*pending = nic->tx_inflight;
	if (nic->tx_inflight)
		return drv_err(ETIMEDOUT, "tx_flush: %u frames still queued after %u ms (link down? "
			       "TDH %u TDT %u)", nic->tx_inflight, timeout_ms, rd32(nic, TDH),
			       rd32(nic, TDT));
	return 0;
}

/* ------------------------------------------------------------------ control */

int ubdma_e1000e_mac(const ubdma_e1000e_t *nic, uint8_t mac[6])
{
	if (!nic || !mac)
		return drv_err(EINVAL, "%s is NULL", nic ? "mac" : "nic");
	memcpy(mac, nic->mac, 6);
	return 0;
}

int ubdma_e1000e_link(ubdma_e1000e_t *nic, struct ubdma_e1000e_link *link)
{
	static const unsigned speeds[4] = { 10, 100, 1000, 1000 };
	uint32_t status;

	if (!nic || !link)
		return drv_err(EINVAL, "%s is NULL", nic ? "link" : "nic");
	if (gone_check(nic))
		return gone_err("link");
	status = rd32(nic, STATUS); /* 10.2.2.2 */
	link->up = !!(status & STATUS_LU);
	link->full_duplex = !!(status & STATUS_FD);
	link->speed_mbps = link->up ? speeds[(status & STATUS_SPEED_MASK) >> STATUS_SPEED_SHIFT] : 0;
	return 0;
}

int ubdma_e1000e_wait_link(ubdma_e1000e_t *nic, unsigned timeout_ms)
{
	if (!nic)
		return drv_err(EINVAL, "nic is NULL");
	if (gone_check(nic))
		return gone_err("wait_link");
	if (link_wait(nic, timeout_ms))
		return drv_err(ETIMEDOUT, "link still down after %u ms (STATUS %#x)", timeout_ms,
			       rd32(nic, STATUS));
	return 0;
}

int ubdma_e1000e_set_promisc(ubdma_e1000e_t *nic, int on)
{
	if (!nic)
		return drv_err(EINVAL, "nic is NULL");
	if (gone_seen(nic))
		return gone_err("set_promisc");
	if (on)
		nic->rctl |= RCTL_UPE | RCTL_MPE;
	else
		nic->rctl &= ~(RCTL_UPE | RCTL_MPE);
	wr32(nic, RCTL, nic->rctl);
	return 0;
}

int ubdma_e1000e_stats(ubdma_e1000e_t *nic, struct ubdma_e1000e_stats *st)
{
	struct ubdma_e1000e_stats *s;

	if (!nic || !st)
		return drv_err(EINVAL, "%s is NULL", nic ? "st" : "nic");
	s = &nic->st;
	if (gone_seen(nic))
		return gone_err("stats");
	s->crcerrs += rd32(nic, CRCERRS);
	s->mpc += rd32(nic, MPC);
	s->rlec += rd32(nic, RLEC);
	s->gprc += rd32(nic, GPRC);
	s->bprc += rd32(nic, BPRC);
	s->mprc += rd32(nic, MPRC);
	s->gptc += rd32(nic, GPTC);
	s->gorc += rd32(nic, GORCL); /* 10.2.7: low then high; the high read clears both */
	s->gorc += (uint64_t)rd32(nic, GORCH) << 32;
	s->gotc += rd32(nic, GOTCL);
	s->gotc += (uint64_t)rd32(nic, GOTCH) << 32;
	s->rnbc += rd32(nic, RNBC);
	s->ruc += rd32(nic, RUC);
	s->roc += rd32(nic, ROC);
	s->tpr += rd32(nic, TPR);
	s->tpt += rd32(nic, TPT);
	*st = *s;
	return 0;
}

unsigned ubdma_e1000e_pool_free(const ubdma_e1000e_t *nic)
{
	return nic ? nic->nfree : 0;
}

ubdma_pci_t *ubdma_e1000e_pci(const ubdma_e1000e_t *nic)
{
	return nic ? nic->pci : NULL;
}
