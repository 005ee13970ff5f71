/*
 * ubdma/virtio_net.h - a polled user-space driver for virtio-net devices over PCI (virtio 1.x,
 * "modern" only: 1af4:1041), built on the public ubdma API only.  Library: libubdma_virtio_net.
 *
 * The device is opened through VFIO (ubdma_pci_open()) and driven through the virtio PCI
 * capabilities (virtio 1.2 section 4.1.4): common configuration, notifications, device
 * configuration.  VIRTIO_F_VERSION_1 and VIRTIO_F_ACCESS_PLATFORM are required: the device's DMA
 * goes through the IOMMU, to IOVAs that ubdma gave.  Virtqueues are split ones (section 2.7; why
 * not packed: docs/virtio-net.md).  Rings, the control buffer and a pool of packet buffers per
 * queue pair are DMA memory from ubdma_mem_alloc(), loaded once at open; after that the data path
 * makes no load, no system call, takes no lock and allocates nothing.  Interrupts stay off
 * (VIRTQ_AVAIL_F_NO_INTERRUPT is set): the caller polls the used rings; with opts.rx_interrupts
 * each receive queue also gets an MSI-X vector, which ubdma_virtio_net_rx_wait() arms and sleeps
 * on when there is nothing to poll.
 *
 * Threads: each queue pair (its receive and transmit queue and its own packet pool) may be driven
 * by its own thread; the calls that take no @qp (open, close, set_promisc, link, stats) must not
 * race the others.
 *
 * Open, close and errors follow the convention of every ubdma driver library (ubdma_e1000e(3)):
 *  - ubdma_virtio_net_open(bdf, opts, &nic): @opts may be NULL (defaults), its @size is set by
 *    the caller, @ctx NULL makes the driver open a vfio context of its own; on failure *nicp is
 *    NULL and nothing stays open.  ubdma_virtio_net_close() returns int and frees everything;
 *    closing NULL does nothing and returns 0.
 *  - Every function that returns int returns 0 or a positive errno value, never -1, and a NULL
 *    handle or result pointer gives EINVAL (close excepted).  Accessors return 0 or NULL for NULL.
 *  - Every failure leaves a sentence for ubdma_virtio_net_last_error(), per thread; with
 *    UBDMA_LOG=error (or warn, info, debug) it is also written to stderr.
 * Link with -lubdma_virtio_net -lubdma (pkg-config ubdma-virtio-net).
 */
#ifndef UBDMA_VIRTIO_NET_H
#define UBDMA_VIRTIO_NET_H

#include <stddef.h>
#include <stdint.h>

#include <ubdma/core.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UBDMA_VIRTIO_NET_VENDOR 0x1af4
#define UBDMA_VIRTIO_NET_DEVICE 0x1041   /* 0x1040 + device ID 1 (virtio 1.2 4.1.2.1) */
#define UBDMA_VIRTIO_NET_BUF_SIZE 2048   /* one pool buffer: the 12-byte header, then the frame */
#define UBDMA_VIRTIO_NET_HDR_LEN 12      /* struct virtio_net_hdr with VERSION_1 (5.1.6) */
#define UBDMA_VIRTIO_NET_MIN_FRAME 14    /* an Ethernet header */
#define UBDMA_VIRTIO_NET_MAX_FRAME (UBDMA_VIRTIO_NET_BUF_SIZE - UBDMA_VIRTIO_NET_HDR_LEN)
#define UBDMA_VIRTIO_NET_MAX_QP 16       /* queue pairs this library drives at most */

/* Feature bits (virtio 1.2 6 and 5.1.3), as ubdma_virtio_net_features() reports them and
 * opts.features_off takes them (1ull << bit). */
#define UBDMA_VIRTIO_NET_F_CSUM 0
#define UBDMA_VIRTIO_NET_F_GUEST_CSUM 1
#define UBDMA_VIRTIO_NET_F_MAC 5
#define UBDMA_VIRTIO_NET_F_MRG_RXBUF 15
#define UBDMA_VIRTIO_NET_F_STATUS 16
#define UBDMA_VIRTIO_NET_F_CTRL_VQ 17
#define UBDMA_VIRTIO_NET_F_CTRL_RX 18
#define UBDMA_VIRTIO_NET_F_MQ 22
#define UBDMA_VIRTIO_F_VERSION_1 32
#define UBDMA_VIRTIO_F_ACCESS_PLATFORM 33

typedef struct ubdma_virtio_net ubdma_virtio_net_t;

/*
 * Options of ubdma_virtio_net_open(); NULL gives the defaults, and so does each member left 0.
 * Set @size to sizeof(struct ubdma_virtio_net_opts) and zero the rest:
 *	struct ubdma_virtio_net_opts o = { .size = sizeof(o), .queue_pairs = 2 };
 * A @size below the first version's is EINVAL; bytes past the members this library knows must
 * be zero, else ENOTSUP (the rule of ubdma_e1000e_open()).
 */
struct ubdma_virtio_net_opts {
	size_t size;           /* sizeof(struct ubdma_virtio_net_opts) */
	ubdma_ctx_t *ctx;      /* a context on the vfio backend; NULL: the driver opens its own */
	unsigned queue_pairs;  /* queue pairs to use: 1 (default) to the device's
	                          max_virtqueue_pairs (more than 1 needs VIRTIO_NET_F_MQ) */
	unsigned queue_size;   /* descriptors a queue: power of two, 8 to the device's maximum
	                          (default: 256, or the device's maximum when smaller) */
	unsigned pool_bufs;    /* packet buffers of each queue pair, queue_size + 32 to 8192
	                          (default 2 * queue_size + 512) */
	unsigned link_wait_ms; /* how long open waits for link up when VIRTIO_NET_F_STATUS is
	                          offered (default 3000; open does not fail on it) */
	uint64_t features_off; /* optional features not to negotiate (1ull << UBDMA_VIRTIO_NET_F_*) */
	int rx_interrupts;     /* MSI-X vector i for receive queue i, for ubdma_virtio_net_rx_wait()
	                          (the device needs queue_pairs vectors); 0: polled only */
	int promisc;           /* start promiscuous (needs VIRTIO_NET_F_CTRL_RX; QEMU's default) */
};

/* Packet flags: on transmit, ask the device to complete a checksum; on receive, what the header
 * said (virtio 1.2 5.1.6.2 / 5.1.6.4). */
#define UBDMA_VIRTIO_NET_PKT_NEEDS_CSUM 0x1  /* checksum from csum_start to the end, stored at
                                                 csum_start + csum_offset, is (to be) completed */
#define UBDMA_VIRTIO_NET_PKT_DATA_VALID 0x2  /* receive: the device validated the checksum */

/*
 * A packet buffer of a queue pair's pool.  @data points to the frame (@cap bytes of room, DMA
 * memory just after the 12-byte virtio-net header); @len is the frame's length.  The caller owns
 * a packet between pkt_alloc / rx_burst and pkt_free / tx_burst.  The caller may change @len,
 * @flags, @csum_start and @csum_offset.
 */
struct ubdma_virtio_net_pkt {
	void *data;
	uint16_t len;
	uint16_t cap;          /* UBDMA_VIRTIO_NET_MAX_FRAME */
	uint16_t flags;        /* UBDMA_VIRTIO_NET_PKT_* */
	uint16_t csum_start;   /* NEEDS_CSUM: offset in the frame where the checksummed part starts */
	uint16_t csum_offset;  /* NEEDS_CSUM: where, after csum_start, the checksum goes */
	uint16_t qp;           /* the queue pair whose pool holds it (do not change) */
	uint32_t index;        /* position in the pool (identifies the packet; do not change) */
};

/* The driver's counters (virtio-net keeps no statistics registers). */
struct ubdma_virtio_net_stats {
	uint64_t rx_pkts, tx_pkts;     /* frames handed to / taken from the caller */
	uint64_t rx_bytes, tx_bytes;
	uint64_t rx_dropped;           /* frames spread over several buffers (num_buffers > 1) or
	                                  shorter than a header: recycled */
	uint64_t rx_csum_valid;        /* received with DATA_VALID */
	uint64_t rx_csum_partial;      /* received with NEEDS_CSUM */
	uint64_t tx_csum_offload;      /* sent with NEEDS_CSUM */
	uint64_t tx_rejected;          /* refused by tx_burst (size, ownership, offload not negotiated) */
	uint64_t tx_ring_full;         /* bursts cut short by a full transmit queue */
	uint64_t notifications;        /* doorbell writes (queue notify) */
	uint64_t rx_irq_wakeups;       /* rx_wait woken by the queue's MSI-X interrupt */
};

struct ubdma_virtio_net_link {
	int up;              /* VIRTIO_NET_S_LINK_UP, or 1 when the device offers no STATUS (5.1.4) */
	int has_status;      /* VIRTIO_NET_F_STATUS was negotiated */
};

/**
 * ubdma_virtio_net_open() - open, reset and bring up the virtio-net function at @bdf (bound to
 * vfio-pci): virtio initialisation (3.1.1), feature negotiation, @opts->queue_pairs receive and
 * transmit queues (and the control queue when negotiated), their packet pools, MAC address.
 * Return: 0; EINVAL for NULL @bdf or @nicp, a bad option; ENOTSUP when @opts sets unknown bytes,
 * or the device lacks VIRTIO_F_VERSION_1 or VIRTIO_F_ACCESS_PLATFORM, or the queue pairs asked
 * need MQ and a control queue it does not offer, or opts.rx_interrupts needs more MSI-X vectors
 * than it has; ENODEV when the function is not a modern
 * virtio-net (1af4:1041); EIO when a virtio capability is missing or malformed, the device
 * refuses FEATURES_OK, does not reset, refuses the queue pair count or its BAR cannot be mapped;
 * ENOMEM; any error of ubdma_ctx_open(), ubdma_pci_open() or the DMA memory calls.  On failure
 * *@nicp is NULL and nothing stays open, allocated or mapped (the device is reset).
 */
int ubdma_virtio_net_open(const char *bdf, const struct ubdma_virtio_net_opts *opts,
			  ubdma_virtio_net_t **nicp);

/**
 * ubdma_virtio_net_close() - reset the device (its DMA stops), turn bus mastering off, free
 * queues and pools, close the PCI function and the context when the driver opened it.
 * Return: 0 (also for NULL, which does nothing).
 */
int ubdma_virtio_net_close(ubdma_virtio_net_t *nic);

/**
 * ubdma_virtio_net_pkt_alloc() - take @n packets from queue pair @qp's pool, all or none; their
 * @len and @flags are set to 0.  No system call, no lock, no allocation.
 * Return: 0; EINVAL for NULL arguments or @qp out of range; ENOBUFS when fewer than @n are free.
 */
int ubdma_virtio_net_pkt_alloc(ubdma_virtio_net_t *nic, unsigned qp, struct ubdma_virtio_net_pkt **pkts,
			       unsigned n);

/**
 * ubdma_virtio_net_pkt_free() - give @n packets back to their pool.
 * Return: 0; EINVAL for NULL arguments, or a packet that is not one the caller holds from this
 * device (nothing freed at all).
 */
int ubdma_virtio_net_pkt_free(ubdma_virtio_net_t *nic, struct ubdma_virtio_net_pkt **pkts, unsigned n);

/**
 * ubdma_virtio_net_tx_burst() - queue @n frames on transmit queue @qp; one notification (when the
 * device has not suppressed it, 2.7.10) for the batch.  Completed transmissions are reclaimed
 * first.  Packets must come from @qp's pool.  A packet with UBDMA_VIRTIO_NET_PKT_NEEDS_CSUM has
 * its checksum completed by the device (VIRTIO_NET_F_CSUM must be negotiated).  *@sent frames
 * (pkts[0 .. *sent - 1]) are queued; the rest are still the caller's.
 * Return: 0 when all went; ENOBUFS when the queue is full (retry later); EMSGSIZE for a length
 * outside [MIN_FRAME, MAX_FRAME]; EINVAL for NULL arguments, @qp out of range, a packet not held
 * from @qp's pool, or NEEDS_CSUM without VIRTIO_NET_F_CSUM or with csum_start + csum_offset + 2
 * beyond the frame.
 */
int ubdma_virtio_net_tx_burst(ubdma_virtio_net_t *nic, unsigned qp, struct ubdma_virtio_net_pkt **pkts,
			      unsigned n, unsigned *sent);

/**
 * ubdma_virtio_net_rx_burst() - take up to @max frames received on queue @qp; each buffer is
 * replaced from the pool and made available again, one notification for the batch.
 * *@got receives the count.
 * Return: 0; EINVAL for NULL arguments or @qp out of range; ENOBUFS when frames wait but the pool
 * is empty (free received packets).
 */
int ubdma_virtio_net_rx_burst(ubdma_virtio_net_t *nic, unsigned qp, struct ubdma_virtio_net_pkt **pkts,
			      unsigned max, unsigned *got);

/**
 * ubdma_virtio_net_rx_wait() - sleep until receive queue @qp has a frame or @timeout_ms passes:
 * the queue's interrupt is enabled (VIRTQ_AVAIL_F_NO_INTERRUPT cleared, 2.7.7), the used ring
 * checked once more (a frame that came before the arming raises no interrupt), the MSI-X
 * eventfd polled, and the interrupt disabled again.  Not for the data path: it makes system calls.
 * Return: 0 when frames wait; ETIMEDOUT; EINVAL for NULL @nic or @qp out of range; ENOTSUP when
 * the device was opened without opts.rx_interrupts; any errno of poll(2) or read(2).
 */
int ubdma_virtio_net_rx_wait(ubdma_virtio_net_t *nic, unsigned qp, unsigned timeout_ms);

/**
 * ubdma_virtio_net_tx_flush() - reclaim completed transmissions of queue pair @qp, polling up
 * to @timeout_ms until none is in flight.  *@pending (may be NULL) receives what is left.
 * Return: 0; EINVAL for NULL @nic or @qp out of range; ETIMEDOUT.
 */
int ubdma_virtio_net_tx_flush(ubdma_virtio_net_t *nic, unsigned qp, unsigned timeout_ms,
			      unsigned *pending);

/** ubdma_virtio_net_mac() - the MAC address (device configuration, or a random locally
 *  administered one when VIRTIO_NET_F_MAC is not offered). Return: 0; EINVAL for NULL. */
int ubdma_virtio_net_mac(const ubdma_virtio_net_t *nic, uint8_t mac[6]);

/** ubdma_virtio_net_link() - link state from the device configuration's status (5.1.4).
 *  Return: 0; EINVAL for NULL. */
int ubdma_virtio_net_link(ubdma_virtio_net_t *nic, struct ubdma_virtio_net_link *link);

/**
 * ubdma_virtio_net_set_promisc() - promiscuous mode on or off through the control queue
 * (VIRTIO_NET_CTRL_RX_PROMISC, 5.1.6.5.1).
 * Return: 0; EINVAL for NULL; ENOTSUP without VIRTIO_NET_F_CTRL_RX; EIO when the device answers
 * VIRTIO_NET_ERR; ETIMEDOUT when it does not answer within a second.
 */
int ubdma_virtio_net_set_promisc(ubdma_virtio_net_t *nic, int on);

/** ubdma_virtio_net_stats() - the counters, summed over the queue pairs. Return: 0; EINVAL. */
int ubdma_virtio_net_stats(const ubdma_virtio_net_t *nic, struct ubdma_virtio_net_stats *st);

/** ubdma_virtio_net_features() - the negotiated feature bits (0 for NULL). */
uint64_t ubdma_virtio_net_features(const ubdma_virtio_net_t *nic);

/** ubdma_virtio_net_queue_pairs() - the queue pairs in use (0 for NULL). */
unsigned ubdma_virtio_net_queue_pairs(const ubdma_virtio_net_t *nic);

/** ubdma_virtio_net_pool_free() - free packets in queue pair @qp's pool (0 for NULL or a bad @qp). */
unsigned ubdma_virtio_net_pool_free(const ubdma_virtio_net_t *nic, unsigned qp);

/** ubdma_virtio_net_last_error() - a sentence about the calling thread's last failure, or "". */
const char *ubdma_virtio_net_last_error(void);

/** ubdma_virtio_net_pci() - the underlying PCI function; NULL for NULL. */
ubdma_pci_t *ubdma_virtio_net_pci(const ubdma_virtio_net_t *nic);

#ifdef __cplusplus
}
#endif
#endif /* UBDMA_VIRTIO_NET_H */
