/*
 * ubdma/e1000e.h - a user-space driver for the Intel 82574L Gigabit Ethernet controller (8086:10d3,
 * the "e1000e" that QEMU emulates), built on the public ubdma API only.  Library: libubdma_e1000e.
 *
 * The device is opened through VFIO (ubdma_pci_open()); its descriptor rings and a pool of packet
 * buffers are DMA memory from ubdma_mem_alloc(), loaded once at open through tags that encode the
 * datasheet's rules (rings 128-byte aligned, buffers aligned to RCTL.BSIZE = 2048 bytes).  After
 * that the data path makes no load, no system call, takes no lock and allocates nothing: a frame
 * lives in a pool buffer (struct ubdma_e1000e_pkt) from the moment it is received or allocated
 * until it is freed or its transmission completes.  One doorbell (RDT / TDT) a batch.
 *
 * Threads: one device is driven by one thread at a time (the caller serialises); different
 * devices are independent.  The driver's removal watcher (ubdma_e1000e_open()) is a thread of
 * its own that only gives the device back; it takes no part in the data path.  Interrupts stay
 * masked: the driver polls descriptor done bits.
 *
 * Open, close and errors follow the convention of every ubdma driver library (ubdma_nvme(3) too):
 *  - ubdma_e1000e_open(bdf, opts, &nic): @opts may be NULL (defaults), its @size is set by the
 *    caller (below), @ctx NULL makes the driver open a vfio context of its own; on failure *nicp
 *    is NULL and nothing stays open.  ubdma_e1000e_close() returns int and frees everything even
 *    when it reports an error; closing NULL does nothing and returns 0.
 *  - Every function that returns int returns 0 or a positive errno value, never -1, and a NULL
 *    handle or result pointer gives EINVAL (close excepted).  Accessors (pool_free, pci) return 0 or NULL for a
 *    NULL handle.
 *  - Every failure leaves a sentence for ubdma_e1000e_last_error(), per thread like
 *    ubdma_last_error() (which says more when a ubdma call failed underneath); with
 *    UBDMA_LOG=error (or warn, info, debug) it is also written to stderr.
 * Link with -lubdma_e1000e -lubdma (pkg-config ubdma-e1000e).
 */
#ifndef UBDMA_E1000E_H
#define UBDMA_E1000E_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <ubdma/core.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UBDMA_E1000E_VENDOR 0x8086
#define UBDMA_E1000E_DEVICE 0x10d3       /* 82574L */
#define UBDMA_E1000E_BUF_SIZE 2048       /* RCTL.BSIZE: one receive buffer, one pool buffer */
#define UBDMA_E1000E_MIN_FRAME 14        /* an Ethernet header; the device pads to 60 (TCTL.PSP) */
#define UBDMA_E1000E_MAX_FRAME 1514      /* without the FCS, which the device adds and strips */

typedef struct ubdma_e1000e ubdma_e1000e_t;

/* ubdma_e1000e_opts.removal_watch: who answers the kernel's request for the device (a
 * hot-unplug, an unbind from vfio-pci) when the program makes no driver call */
#define UBDMA_E1000E_WATCH_ON 0  /* a thread of the driver's, asleep in poll(2) until the request or close */
#define UBDMA_E1000E_WATCH_OFF 1 /* none: the driver's next check does (every 1024 bursts, a flush,
				  * a link call), or the program, polling ubdma_pci_notify_fds() of
				  * ubdma_e1000e_pci() */

/*
 * Options of ubdma_e1000e_open(); NULL gives the defaults, and so does each member left 0.
 * The struct may grow in later versions, so it carries its size: set @size to
 * sizeof(struct ubdma_e1000e_opts) and zero the rest, as in
 *	struct ubdma_e1000e_opts o = { .size = sizeof(o), .rx_desc = 1024 };
 * ubdma_e1000e_open() refuses (EINVAL) a @size below that of the first version of the struct (all
 * the members below); members past @size take their defaults (a program built with an older
 * header); bytes past the members this library knows must be zero, else ENOTSUP (a program
 * built with a newer header, asking for an option this library does not have).
 */
struct ubdma_e1000e_opts {
	size_t size;           /* sizeof(struct ubdma_e1000e_opts) */
	ubdma_ctx_t *ctx;      /* a context on the vfio backend; NULL: the driver opens its own */
	unsigned rx_desc;      /* receive descriptors: power of two, 8 to 4096 (default 512) */
	unsigned tx_desc;      /* transmit descriptors: power of two, 8 to 4096 (default 512) */
	unsigned pool_bufs;    /* packet buffers, at least rx_desc + 32 (default rx + tx + 1024) */
	unsigned link_wait_ms; /* how long open waits for link up (default 3000; the link may come
	                          later: open does not fail on it) */
	int promisc;           /* start in promiscuous mode (RCTL.UPE | RCTL.MPE) */
	/* second version (issue 18): surprise removal without driver calls.  The first version
	 * ended with 4 bytes of padding that a program built with it may leave unset: they are
	 * @reserved, never read, so that the second version's members lie past the first's size */
	int reserved;
	int removal_watch;     /* UBDMA_E1000E_WATCH_ON (0) or UBDMA_E1000E_WATCH_OFF */
};

/*
 * A packet buffer of the device's pool.  @data points to UBDMA_E1000E_BUF_SIZE bytes of DMA
 * memory; @len is the frame's length (without FCS).  The caller owns a packet between
 * ubdma_e1000e_pkt_alloc() / ubdma_e1000e_rx_burst() and ubdma_e1000e_pkt_free() /
 * ubdma_e1000e_tx_burst(); the device owns it in between.  Only @len may be changed.
 */
struct ubdma_e1000e_pkt {
	void *data;
	ubdma_iova_t iova; /* the device's address of @data */
	uint16_t len;
	uint16_t cap;   /* UBDMA_E1000E_BUF_SIZE */
	uint32_t index; /* position in the pool (identifies the packet; do not change) */
};

/* Counters.  Hardware statistics registers (82574 datasheet 10.2.7, clear on read) are added up
 * in 64 bits by the driver; the sw_ counters are the driver's own. */
struct ubdma_e1000e_stats {
	uint64_t gprc, gptc;       /* good packets received / transmitted */
	uint64_t gorc, gotc;       /* good octets received / transmitted */
	uint64_t bprc, mprc;       /* broadcast / multicast packets received */
	uint64_t tpr, tpt;         /* total packets received / transmitted */
	uint64_t mpc, rnbc;        /* missed packets (no FIFO space), receive no buffers */
	uint64_t crcerrs, rlec;    /* CRC errors, length errors */
	uint64_t roc, ruc;         /* oversize, undersize frames received */
	uint64_t sw_rx_pkts, sw_tx_pkts;  /* frames handed to / taken from the caller */
	uint64_t sw_rx_dropped;    /* frames the device wrote with an error or split: recycled */
	uint64_t sw_tx_rejected;   /* frames refused by ubdma_e1000e_tx_burst() (size, ownership) */
	uint64_t sw_tx_ring_full;  /* bursts cut short because the transmit ring was full */
};

struct ubdma_e1000e_link {
	int up;              /* STATUS.LU */
	unsigned speed_mbps; /* 10, 100 or 1000 (STATUS.SPEED); 0 when down */
	int full_duplex;     /* STATUS.FD */
};

/**
 * ubdma_e1000e_open() - open, reset and bring up the 82574L at @bdf ("0000:00:03.0", bound to
 * vfio-pci): read its MAC address, set the link up, build the rings and the packet pool, enable
 * receive and transmit.  @opts: NULL for the defaults.
 * Return: 0; EINVAL for NULL @bdf or @nicp, @opts->size too small, or a bad option; ENOTSUP when
 * @opts sets bytes this library does not know; ENODEV when the function is not an 82574L
 * (vendor/device ID); EIO when the device does not come out of reset, has no MAC address or its
 * BAR 0 cannot be mapped; ENOMEM; any error of ubdma_ctx_open() (when @opts->ctx is NULL),
 * ubdma_pci_open() (ENOTSUP, ENODEV, ENXIO, EBUSY, ...) or of the DMA memory calls; EAGAIN (or
 * EMFILE) when the removal watcher thread (or its eventfd) cannot be made.  Unless
 * @opts->removal_watch is UBDMA_E1000E_WATCH_OFF, a thread of the driver's sleeps until the
 * kernel asks for the device back (then gives it back: the next call fails with ENXIO) or until
 * close.  On failure *@nicp is NULL and nothing stays open, allocated or mapped.
 */
int ubdma_e1000e_open(const char *bdf, const struct ubdma_e1000e_opts *opts, ubdma_e1000e_t **nicp);

/**
 * ubdma_e1000e_close() - stop the device (receive and transmit off, interrupts masked, bus
 * mastering off), free rings and pool, close the PCI function, and the context when the driver
 * opened it.  Packets the caller still holds become invalid.
 * Return: 0 (also for NULL, which does nothing, as free(3)).
 */
int ubdma_e1000e_close(ubdma_e1000e_t *nic);

/**
 * ubdma_e1000e_stop() - close the device for traffic: receive and transmit are disabled
 * (RCTL.EN, TCTL.EN cleared), frames queued for transmission and never sent are dropped, every
 * ring buffer returns to the pool.  Until ubdma_e1000e_start(), the burst calls fail with
 * ENETDOWN.  Packets the caller holds stay valid.
 * Return: 0; EINVAL for NULL; EALREADY when already stopped.
 */
int ubdma_e1000e_stop(ubdma_e1000e_t *nic);

/**
 * ubdma_e1000e_start() - open the device for traffic again after ubdma_e1000e_stop(): rings
 * reset to empty, the receive ring refilled from the pool, RCTL.EN and TCTL.EN set.
 * Return: 0; EINVAL for NULL; EALREADY when running; ENOBUFS when the pool has fewer free
 * buffers than the receive ring needs (free some packets first; the device stays stopped).
 */
int ubdma_e1000e_start(ubdma_e1000e_t *nic);

/**
 * ubdma_e1000e_pkt_alloc() - take @n packets from the pool for transmission, all or none.
 * Their @len is set to 0.  No system call, no lock, no allocation.
 * Return: 0; EINVAL for NULL arguments; ENOBUFS when fewer than @n are free (none taken).
 */
int ubdma_e1000e_pkt_alloc(ubdma_e1000e_t *nic, struct ubdma_e1000e_pkt **pkts, unsigned n);

/**
 * ubdma_e1000e_pkt_free() - give @n packets back to the pool (received ones once read, allocated
 * ones not sent).
 * Return: 0; EINVAL for NULL arguments, or a packet that is not of this device's pool or is
 * already free (nothing freed at all).
 */
int ubdma_e1000e_pkt_free(ubdma_e1000e_t *nic, struct ubdma_e1000e_pkt **pkts, unsigned n);

/**
 * ubdma_e1000e_tx_burst() - queue @n frames for transmission; one TDT write for the batch.
 * Frames whose transmission completed earlier (descriptor done bit) are reclaimed into the pool
 * first.  Queued packets belong to the device from then on; the pool gets them back when they
 * are sent.  Stops at the first frame it cannot queue: *@sent frames (pkts[0 .. *sent - 1]) are
 * queued, the rest are still the caller's.
 * Return: 0 when all @n were queued; ENOBUFS when the ring is full (a partial or empty burst:
 * retry later); EMSGSIZE when pkts[*sent]->len is outside [UBDMA_E1000E_MIN_FRAME,
 * UBDMA_E1000E_MAX_FRAME]; EINVAL for NULL arguments or a packet not of this pool;
 * ENETDOWN when the device is stopped (nothing queued); ENXIO when the device is gone (the
 * kernel asked for it back, answered at once by the removal watcher, else read every 1024
 * bursts; or STATUS reads all ones: frames in flight dropped, ring buffers back in the pool, the
 * device given back; every later call that needs the device fails so).
 */
int ubdma_e1000e_tx_burst(ubdma_e1000e_t *nic, struct ubdma_e1000e_pkt **pkts, unsigned n,
			  unsigned *sent);

/**
 * ubdma_e1000e_rx_burst() - take up to @max received frames; each slot is refilled from the pool
 * and the ring handed back with one RDT write.  Frames the device marked bad (RDESC.ERRORS) are
 * recycled and counted (sw_rx_dropped).  *@got receives the count (0: nothing arrived).
 * Return: 0; EINVAL for NULL arguments; ENETDOWN when stopped; ENOBUFS when frames are waiting
 * but the pool has no buffer to refill their slots (free received packets: *@got may be 0);
 * ENXIO when the device is gone (as ubdma_e1000e_tx_burst()).
 */
int ubdma_e1000e_rx_burst(ubdma_e1000e_t *nic, struct ubdma_e1000e_pkt **pkts, unsigned max,
			  unsigned *got);

/**
 * ubdma_e1000e_send() - copy @n frames from user buffers (@frames[i].iov_base, iov_len bytes)
 * into pool buffers and queue them, as ubdma_e1000e_tx_burst().
 * Return: as ubdma_e1000e_tx_burst(), with ENOBUFS also when the pool is empty; *@sent frames
 * were queued.
 */
int ubdma_e1000e_send(ubdma_e1000e_t *nic, const struct iovec *frames, unsigned n, unsigned *sent);

/**
 * ubdma_e1000e_recv() - receive up to @n frames into user buffers: frame i is copied to
 * @bufs[i].iov_base and bufs[i].iov_len is set to its length.
 * Return: as ubdma_e1000e_rx_burst(); EINVAL also when a buffer holds fewer than
 * UBDMA_E1000E_MAX_FRAME bytes (nothing received).
 */
int ubdma_e1000e_recv(ubdma_e1000e_t *nic, struct iovec *bufs, unsigned n, unsigned *got);

/**
 * ubdma_e1000e_tx_flush() - reclaim completed transmissions, waiting (polling) up to @timeout_ms
 * for all queued frames to complete.  *@pending (may be NULL) receives what is still queued.
 * Return: 0; EINVAL for NULL @nic; ETIMEDOUT when frames are still queued at the deadline.
 */
int ubdma_e1000e_tx_flush(ubdma_e1000e_t *nic, unsigned timeout_ms, unsigned *pending);

/** ubdma_e1000e_mac() - the station address (RAL0/RAH0). Return: 0; EINVAL for NULL. */
int ubdma_e1000e_mac(const ubdma_e1000e_t *nic, uint8_t mac[6]);

/** ubdma_e1000e_link() - link state from STATUS. Return: 0; EINVAL for NULL. */
int ubdma_e1000e_link(ubdma_e1000e_t *nic, struct ubdma_e1000e_link *link);

/**
 * ubdma_e1000e_wait_link() - poll STATUS.LU up to @timeout_ms.
 * Return: 0 when up; EINVAL for NULL; ETIMEDOUT.
 */
int ubdma_e1000e_wait_link(ubdma_e1000e_t *nic, unsigned timeout_ms);

/**
 * ubdma_e1000e_set_promisc() - promiscuous mode on (@on != 0: unicast and multicast, RCTL.UPE
 * and RCTL.MPE) or off.  Return: 0; EINVAL for NULL.
 */
int ubdma_e1000e_set_promisc(ubdma_e1000e_t *nic, int on);

/**
 * ubdma_e1000e_stats() - read the statistics registers and return the running totals.
 * Return: 0; EINVAL for NULL.
 */
int ubdma_e1000e_stats(ubdma_e1000e_t *nic, struct ubdma_e1000e_stats *st);

/** ubdma_e1000e_pool_free() - packets now free in the pool (for tests and diagnostics); 0 for NULL. */
unsigned ubdma_e1000e_pool_free(const ubdma_e1000e_t *nic);

/**
 * ubdma_e1000e_last_error() - a sentence about the last failure of a ubdma_e1000e_* call in the
 * calling thread, or "" before the first.  A successful call leaves it as it was.
 */
const char *ubdma_e1000e_last_error(void);

/** ubdma_e1000e_pci() - the underlying PCI function (BDF, NUMA node ...); NULL for NULL. */
ubdma_pci_t *ubdma_e1000e_pci(const ubdma_e1000e_t *nic);

#ifdef __cplusplus
}
#endif
#endif /* UBDMA_E1000E_H */
