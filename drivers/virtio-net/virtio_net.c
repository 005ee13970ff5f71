/*
 * virtio_net.c - a polled user-space virtio-net driver (virtio 1.2, PCI transport, modern only) on
 * the public ubdma API.
 *
 * This file owns one device: finding its virtio capabilities in configuration space (4.1.4),
 * the initialisation sequence (3.1.1), feature negotiation, its split virtqueues (2.7), the
 * control queue (5.1.6.5) and a pool of packet buffers per queue pair.  All DMA memory comes from
 * ubdma_mem_alloc() under tags made below the device's tag, and every device address comes from a
 * ubdma load, never from adding to another one:
 *
 *   each virtqueue: three tags and allocations, one per part, with the alignments of the table in
 *     2.7 (descriptor table 16, available ring 2, used ring 4), each loaded as one segment;
 *   control buffer: 128 bytes loaded in two 64-byte segments (the command, the ack: 5.1.6.5);
 *   packet pools: one allocation per queue pair, loaded with maxsegsz = boundary =
 *     UBDMA_VIRTIO_NET_BUF_SIZE, so that ubdma_map_load_sg() returns one segment per buffer:
 *     buffer i's IOVA is segs[i] (at most 8192 buffers a pool, busdma's segment cap).
 *
 * A pool buffer holds the 12-byte struct virtio_net_hdr (5.1.6) and then the frame, so that a
 * packet is one descriptor in either direction (VERSION_1 implies any message framing, 2.6.4).
 * Descriptor i of a queue always carries slot[i]'s buffer: receive refills the slot the device
 * returned (same id); transmit takes ids from a free stack and gets them back from the used ring,
 * in whatever order the device uses them.
 *
 * Ownership of a packet (pkt_state[]): FREE on its queue pair's stack, USER with the caller, DEV
 * in a queue.  Notifications (2.7.13) are written only when the device has not set
 * VIRTQ_USED_F_NO_NOTIFY; interrupts are suppressed with VIRTQ_AVAIL_F_NO_INTERRUPT, except
 * while ubdma_virtio_net_rx_wait() sleeps on a receive queue's MSI-X vector (opts.rx_interrupts).
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>
#include <ubdma/virtio_net.h>

#include "virtio_regs.h"

#define DRV_LIB "ubdma_virtio_net"
#include "../common/drv_common.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "virtio structures are little endian");
_Static_assert(UBDMA_VIRTIO_NET_HDR_LEN == sizeof(struct virtio_net_hdr), "header length");

enum { PKT_FREE = 0, PKT_USER = 1, PKT_DEV = 2 };

#define DEFAULT_QSIZE 256
#define DEFAULT_EXTRA_BUFS 512
#define DEFAULT_LINK_WAIT_MS 3000
#define MAX_POOL 8192 /* buffers of a queue pair: one load of one segment each (busdma's cap) */
#define CTRL_QSIZE 8
#define CTRL_SEG 64
#define CTRL_TIMEOUT_MS 2000

struct vq {
	unsigned index;                /* virtqueue number (5.1.2) */
	unsigned size, mask;
	ubdma_tag_t *desc_tag, *avail_tag, *used_tag;
	struct virtq_desc *desc;
	struct virtq_avail *avail;
	struct virtq_used *used;
	ubdma_map_t *desc_map, *avail_map, *used_map;
	uint64_t desc_iova, avail_iova, used_iova;
	volatile uint16_t *notify;     /* this queue's doorbell (4.1.4.4) */
	uint16_t vector;               /* MSI-X vector, VIRTIO_MSI_NO_VECTOR when polled only */
	uint16_t avail_idx;            /* our copy of avail->idx */
	uint16_t last_used;            /* used ring entries consumed so far */
	struct ubdma_virtio_net_pkt **slot; /* the buffer of each descriptor */
	uint16_t *free_ids;            /* transmit: descriptors not in flight */
	unsigned nfree_ids;
	unsigned rx_skip;              /* receive: buffers left of a frame being dropped */
};

struct qpair {
	struct vq rx, tx;
	ubdma_tag_t *pool_tag;               /* this pair's packet buffers */
	void *pool_mem;
	ubdma_map_t *pool_map;
	struct ubdma_virtio_net_pkt *pkts;   /* this pair's part of the pool */
	struct ubdma_virtio_net_pkt **free_stack;
	unsigned npool, nfree;
	struct ubdma_virtio_net_stats st;
};

struct ubdma_virtio_net {
	ubdma_ctx_t *ctx;
	int own_ctx;
	ubdma_pci_t *pci;
	volatile struct virtio_pci_common_cfg *common;
	volatile uint8_t *notify_base;
	uint32_t notify_mult;
	volatile uint8_t *devcfg;
	size_t devcfg_len;

	uint64_t features;
	unsigned nqp, max_qp, qsize;
	struct qpair qp[UBDMA_VIRTIO_NET_MAX_QP];
	struct vq ctrl;
	int has_ctrl;
	ubdma_tag_t *ctrl_tag;
	uint8_t *ctrl_buf;
	ubdma_map_t *ctrl_map;
	uint64_t ctrl_iova[2];         /* command segment, ack segment */

	int rx_irq;                    /* receive queue i signals MSI-X vector i */
	int irq_fd[UBDMA_VIRTIO_NET_MAX_QP];

	struct ubdma_virtio_net_pkt *pkts; /* every pair's packets */
	uint64_t *buf_iova;            /* buffer i's IOVA, from the pool's segments */
	uint8_t *pkt_state;
	unsigned npool_all;
	uint8_t mac[6];
};

/* ------------------------------------------------------------------ errors */

const char *ubdma_virtio_net_last_error(void)
{
	return drv_last_error_msg();
}

/* ------------------------------------------------------------------ capabilities (4.1.4) */

/* Map the BAR a capability points into and check that the structure lies inside it. */
static int cap_map(struct ubdma_virtio_net *nic, const struct virtio_pci_cap *c, size_t minlen,
		   volatile uint8_t **p, size_t *lenp)
{
	size_t blen = 0;
	uint8_t *bar;

	if (c->bar > 5 || c->length < minlen)
		return drv_err(EIO, "virtio capability type %u: BAR %u, length %u (want at least %zu, "
				"4.1.4)", c->cfg_type, c->bar, c->length, minlen);
	bar = ubdma_pci_bar(nic->pci, c->bar, &blen);
	if (!bar || (uint64_t)c->offset + c->length > blen)
		return drv_err(EIO, "virtio capability type %u: BAR %u %s (offset %#x length %#x, BAR "
				"%zu bytes): %s", c->cfg_type, c->bar, bar ? "too small" : "cannot be mapped",
				c->offset, c->length, blen, ubdma_last_error());
	*p = bar + c->offset;
	if (lenp)
		*lenp = c->length;
	return 0;
}

/* Walk the capability list for the first common, notify and device structures (4.1.4: the
 * driver uses the first of each type it can use). */
static int find_caps(struct ubdma_virtio_net *nic)
{
	struct virtio_pci_notify_cap common = { 0 }, notify = { 0 }, device = { 0 };
	uint16_t status;
	uint8_t ptr;
	int err, guard = 48;

	if ((err = ubdma_pci_cfg_read(nic->pci, 0x06, &status, 2)))
		return drv_err(err, "reading the PCI status register: %s", strerror(err));
	if (!(status & 0x10))
		return drv_err(EIO, "no PCI capability list: not a modern virtio device (4.1.4)");
	if ((err = ubdma_pci_cfg_read(nic->pci, 0x34, &ptr, 1)))
		return drv_err(err, "reading the capabilities pointer: %s", strerror(err));
	while ((ptr &= 0xfc) && guard-- > 0) {
		struct virtio_pci_notify_cap c;

		if (ptr > 256 - sizeof(struct virtio_pci_cap))
			break;
		if ((err = ubdma_pci_cfg_read(nic->pci, ptr, &c.cap, sizeof(c.cap))))
			return drv_err(err, "reading the capability at %#x: %s", ptr, strerror(err));
		if (c.cap.cap_vndr == PCI_CAP_ID_VNDR && c.cap.cap_len >= sizeof(c.cap)) {
			switch (c.cap.cfg_type) {
			case VIRTIO_PCI_CAP_COMMON_CFG:
				if (!common.cap.cfg_type)
					common = c;
				break;
			case VIRTIO_PCI_CAP_NOTIFY_CFG:
				if (!notify.cap.cfg_type && c.cap.cap_len >= sizeof(c) &&
				    !(err = ubdma_pci_cfg_read(nic->pci, ptr + sizeof(c.cap),
							       &c.notify_off_multiplier, 4)))
					notify = c;
				break;
			case VIRTIO_PCI_CAP_DEVICE_CFG:
				if (!device.cap.cfg_type)
					device = c;
				break;
			}
		}
		ptr = c.cap.cap_next;
	}
	if (!common.cap.cfg_type || !notify.cap.cfg_type || !device.cap.cfg_type)
		return drv_err(EIO, "virtio capabilities missing:%s%s%s (4.1.4: a modern device has them)",
				common.cap.cfg_type ? "" : " common", notify.cap.cfg_type ? "" : " notify",
				device.cap.cfg_type ? "" : " device");
	volatile uint8_t *p;

	if ((err = cap_map(nic, &common.cap, offsetof(struct virtio_pci_common_cfg, queue_notify_data), &p, NULL)))
		return err;
	nic->common = (volatile struct virtio_pci_common_cfg *)p;
	if ((err = cap_map(nic, &notify.cap, 2, &nic->notify_base, NULL)))
		return err;
	nic->notify_mult = notify.notify_off_multiplier;
	return cap_map(nic, &device.cap, 6, &nic->devcfg, &nic->devcfg_len);
}

/* ------------------------------------------------------------------ status and features */

static void set_status(struct ubdma_virtio_net *nic, uint8_t bits)
{
	nic->common->device_status = (uint8_t)(nic->common->device_status | bits);
}

/* 4.1.4.3.2: write 0, then wait until device_status reads 0. */
static int device_reset(struct ubdma_virtio_net *nic)
{
	uint64_t end = now_us() + 1000000;

	nic->common->device_status = 0;
	while (nic->common->device_status != 0) {
		if (now_us() > end)
			return drv_err(EIO, "the device did not reset within 1 s (device_status %#x)",
					nic->common->device_status);
		sleep_us(100);
	}
	return 0;
}

static uint64_t device_features(struct ubdma_virtio_net *nic)
{
	uint64_t f;

	nic->common->device_feature_select = 0;
	f = nic->common->device_feature;
	nic->common->device_feature_select = 1;
	return f | (uint64_t)nic->common->device_feature << 32;
}

static void driver_features(struct ubdma_virtio_net *nic, uint64_t f)
{
	nic->common->driver_feature_select = 0;
	nic->common->driver_feature = (uint32_t)f;
	nic->common->driver_feature_select = 1;
	nic->common->driver_feature = (uint32_t)(f >> 32);
}

static inline int has(const struct ubdma_virtio_net *nic, unsigned bit)
{
	return !!(nic->features & (1ull << bit));
}

/* 2.5.1 / 4.1.4.3: read the device configuration consistently, retrying while
 * config_generation changes under the read. */
static void devcfg_read(struct ubdma_virtio_net *nic, size_t off, void *buf, size_t len)
{
	uint8_t gen;

	do {
		gen = nic->common->config_generation;
		for (size_t i = 0; i < len; i++)
			((uint8_t *)buf)[i] = nic->devcfg[off + i];
	} while (gen != nic->common->config_generation);
}

static uint16_t devcfg_read16(struct ubdma_virtio_net *nic, size_t off)
{
	uint8_t gen;
	uint16_t v;

	do {
		gen = nic->common->config_generation;
		v = *(volatile uint16_t *)(nic->devcfg + off);
	} while (gen != nic->common->config_generation);
	return v;
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

/* A tag of @size bytes aligned to @align, DMA memory for it, loaded as one segment. */
static int dma_part(struct ubdma_virtio_net *nic, size_t align, size_t size, const char *what,
		    ubdma_tag_t **tag, void **va, ubdma_map_t **map, uint64_t *iova)
{
	struct one_seg s = { 0, 0, 0 };
	int err;

	if ((err = ubdma_tag_create(ubdma_pci_dma_tag(nic->pci), align, 0, UBDMA_MAXADDR, UBDMA_MAXADDR,
				    size, 1, size, 0, tag))) {
		*tag = NULL;
		return drv_err(err, "ubdma_tag_create for the %s: %s (%s)", what, strerror(err),
				ubdma_last_error());
	}
	if ((err = ubdma_mem_alloc(*tag, va, UBDMA_ZERO | UBDMA_NOWAIT, map))) {
		*va = NULL;
		return drv_err(err, "ubdma_mem_alloc for the %s: %s (%s)", what, strerror(err),
				ubdma_last_error());
	}
	err = ubdma_map_load(*tag, *map, *va, size, one_seg_cb, &s, UBDMA_NOWAIT);
	if (err == 0 && (s.error || s.nseg != 1))
		err = s.error ? s.error : EFBIG;
	if (err)
		return drv_err(err, "loading the %s: %s (%s)", what, strerror(err), ubdma_last_error());
	*iova = s.addr;
	return 0;
}

static void dma_part_free(ubdma_tag_t *tag, void *va, ubdma_map_t *map)
{
	if (va)
		ubdma_mem_free(tag, va, map);
	if (tag)
		ubdma_tag_destroy(tag);
}

/* ------------------------------------------------------------------ virtqueues (2.7) */

static int vq_alloc(struct ubdma_virtio_net *nic, struct vq *q, unsigned index, unsigned size, int tx)
{
	void *va;
	int err;

	q->index = index;
	q->size = size;
	q->mask = size - 1;
	q->vector = VIRTIO_MSI_NO_VECTOR;
	if ((err = dma_part(nic, VIRTQ_DESC_ALIGN, size * sizeof(struct virtq_desc), "descriptor table",
			    &q->desc_tag, &va, &q->desc_map, &q->desc_iova)))
		return err;
	q->desc = va;
	/* flags, idx, ring[size], used_event (2.7.6) */
	if ((err = dma_part(nic, VIRTQ_AVAIL_ALIGN, 6 + 2 * (size_t)size, "available ring",
			    &q->avail_tag, &va, &q->avail_map, &q->avail_iova)))
		return err;
	q->avail = va;
	/* flags, idx, ring[size] of 8 bytes, avail_event (2.7.8) */
	if ((err = dma_part(nic, VIRTQ_USED_ALIGN, 6 + 8 * (size_t)size, "used ring", &q->used_tag, &va,
			    &q->used_map, &q->used_iova)))
		return err;
	q->used = va;
	q->slot = calloc(size, sizeof(*q->slot));
	if (tx)
		q->free_ids = calloc(size, sizeof(*q->free_ids));
	if (!q->slot || (tx && !q->free_ids))
		return drv_err(ENOMEM, "out of memory for a queue of %u descriptors", size);
	for (unsigned i = 0; tx && i < size; i++)
		q->free_ids[q->nfree_ids++] = (uint16_t)(size - 1 - i);
	q->avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT; /* polled: 2.7.7 */
	return 0;
}

static void vq_free(struct vq *q)
{
	dma_part_free(q->used_tag, q->used, q->used_map);
	dma_part_free(q->avail_tag, q->avail, q->avail_map);
	dma_part_free(q->desc_tag, q->desc, q->desc_map);
	free(q->slot);
	free(q->free_ids);
	memset(q, 0, sizeof(*q));
}

/* 4.1.5.1.3 Virtqueue Configuration: size, the three addresses, no vector, enable. */
static int vq_program(struct ubdma_virtio_net *nic, struct vq *q)
{
	volatile struct virtio_pci_common_cfg *c = nic->common;
	volatile uint32_t *a;
	uint16_t max;

	c->queue_select = (uint16_t)q->index;
	max = c->queue_size;
	if (max == 0 || q->size > max)
		return drv_err(EIO, "virtqueue %u: the device offers %u descriptors, %u wanted", q->index,
				max, q->size);
	c->queue_size = (uint16_t)q->size;
	c->queue_msix_vector = q->vector;
	/* 4.1.5.1.2: the device answers VIRTIO_MSI_NO_VECTOR when it cannot map the vector */
	if (c->queue_msix_vector != q->vector)
		return drv_err(EIO, "virtqueue %u: the device refused MSI-X vector %u", q->index, q->vector);
	/* 4.1.3.1: a 64-bit field may be written as two 32-bit halves, low first */
	a = (volatile uint32_t *)&c->queue_desc;
	a[0] = (uint32_t)q->desc_iova;
	a[1] = (uint32_t)(q->desc_iova >> 32);
	a = (volatile uint32_t *)&c->queue_driver;
	a[0] = (uint32_t)q->avail_iova;
	a[1] = (uint32_t)(q->avail_iova >> 32);
	a = (volatile uint32_t *)&c->queue_device;
	a[0] = (uint32_t)q->used_iova;
	a[1] = (uint32_t)(q->used_iova >> 32);
	q->notify = (volatile uint16_t *)(nic->notify_base + (size_t)c->queue_notify_off * nic->notify_mult);
	c->queue_enable = 1;
	return 0;
}

/* Publish avail_idx (2.7.13: the ring entries before the index), then notify unless the device
 * said it does not need it (2.7.10, VIRTQ_USED_F_NO_NOTIFY).  The full fence orders our index
 * store before the flags load, else a device going to sleep could miss the new buffers. */
static inline void vq_kick(struct qpair *qp, struct vq *q, int always)
{
	atomic_thread_fence(memory_order_release);
	*(volatile uint16_t *)&q->avail->idx = q->avail_idx;
	atomic_thread_fence(memory_order_seq_cst);
	if (always || !(*(volatile uint16_t *)&q->used->flags & VIRTQ_USED_F_NO_NOTIFY)) {
		*q->notify = (uint16_t)q->index; /* 4.1.4.4: the queue's index, 16 bits */
		if (qp)
			qp->st.notifications++;
	}
}

static inline uint16_t vq_used_idx(const struct vq *q)
{
	uint16_t idx = *(volatile uint16_t *)&q->used->idx;

	atomic_thread_fence(memory_order_acquire); /* the entries after the index (2.7.14) */
	return idx;
}

/* ------------------------------------------------------------------ pool */

static inline int pkt_ok(const struct ubdma_virtio_net *nic, const struct ubdma_virtio_net_pkt *p)
{
	return p >= nic->pkts && p < nic->pkts + nic->npool_all && p == &nic->pkts[p->index];
}

static inline void pool_put(struct ubdma_virtio_net *nic, struct qpair *qp, struct ubdma_virtio_net_pkt *p)
{
	nic->pkt_state[p->index] = PKT_FREE;
	qp->free_stack[qp->nfree++] = p;
}

static inline struct ubdma_virtio_net_pkt *pool_get(struct ubdma_virtio_net *nic, struct qpair *qp,
						    int state)
{
	struct ubdma_virtio_net_pkt *p = qp->free_stack[--qp->nfree];

	nic->pkt_state[p->index] = (uint8_t)state;
	return p;
}

/* Pool buffer @p's descriptor: the header's IOVA is the buffer's (segs[index]). */
static inline void desc_set(struct virtq_desc *d, uint64_t iova, uint32_t len, uint16_t flags)
{
	d->addr = iova;
	d->len = len;
	d->flags = flags;
	d->next = 0;
}

/* Queue pair @qp's pool: one allocation, loaded so that each buffer is one segment (see the top);
 * buffer i's IOVA goes to buf_iova[first + i]. */
static int pool_alloc_qp(struct ubdma_virtio_net *nic, struct qpair *qp, size_t first, unsigned n)
{
	size_t size = (size_t)n * UBDMA_VIRTIO_NET_BUF_SIZE;
	ubdma_seg_t *segs;
	int err, nseg = 0;

	if ((err = ubdma_tag_create(ubdma_pci_dma_tag(nic->pci), UBDMA_VIRTIO_NET_BUF_SIZE,
				    UBDMA_VIRTIO_NET_BUF_SIZE, UBDMA_MAXADDR, UBDMA_MAXADDR, size, (int)n,
				    UBDMA_VIRTIO_NET_BUF_SIZE, 0, &qp->pool_tag))) {
		qp->pool_tag = NULL;
		return drv_err(err, "ubdma_tag_create for a packet pool: %s (%s)", strerror(err),
				ubdma_last_error());
	}
	if ((err = ubdma_mem_alloc(qp->pool_tag, &qp->pool_mem, UBDMA_ZERO | UBDMA_NOWAIT, &qp->pool_map))) {
		qp->pool_mem = NULL;
		return drv_err(err, "ubdma_mem_alloc for %u packet buffers: %s (%s)", n, strerror(err),
				ubdma_last_error());
	}
	if (!(segs = calloc(n, sizeof(*segs))))
		return drv_err(ENOMEM, "out of memory for %u segments", n);
	err = ubdma_map_load_sg(qp->pool_tag, qp->pool_map, qp->pool_mem, size, segs, &nseg, UBDMA_NOWAIT);
	if (!err && (unsigned)nseg != n)
		err = EFBIG;
	for (int i = 0; !err && i < nseg; i++)
		if (segs[i].ds_len != UBDMA_VIRTIO_NET_BUF_SIZE)
			err = EFBIG;
	if (err) {
		free(segs);
		return drv_err(err, "loading a packet pool: %s (%d segments for %u buffers; %s)",
				strerror(err), nseg, n, ubdma_last_error());
	}
	for (unsigned i = 0; i < n; i++)
		nic->buf_iova[first + i] = segs[i].ds_addr;
	free(segs);
	return 0;
}

/* A pool per queue pair (its own memory, so that one pair's thread never shares a cache line
 * of buffers with another's), the packet descriptors of all of them in one array. */
static int pool_alloc(struct ubdma_virtio_net *nic, unsigned per_qp)
{
	size_t n = (size_t)per_qp * nic->nqp;
	int err;

	nic->npool_all = (unsigned)n;
	nic->pkts = calloc(n, sizeof(*nic->pkts));
	nic->buf_iova = calloc(n, sizeof(*nic->buf_iova));
	nic->pkt_state = calloc(n, 1);
	if (!nic->pkts || !nic->buf_iova || !nic->pkt_state)
		return drv_err(ENOMEM, "out of memory for %zu packet descriptors", n);
	for (unsigned q = 0; q < nic->nqp; q++) {
		struct qpair *qp = &nic->qp[q];

		if ((err = pool_alloc_qp(nic, qp, (size_t)q * per_qp, per_qp)))
			return err;
		qp->pkts = nic->pkts + (size_t)q * per_qp;
		qp->npool = per_qp;
		if (!(qp->free_stack = calloc(per_qp, sizeof(*qp->free_stack))))
			return drv_err(ENOMEM, "out of memory for the pool's free list");
		for (unsigned i = per_qp; i-- > 0;) {
			struct ubdma_virtio_net_pkt *p = &qp->pkts[i];

			p->data = (uint8_t *)qp->pool_mem + (size_t)i * UBDMA_VIRTIO_NET_BUF_SIZE +
				  UBDMA_VIRTIO_NET_HDR_LEN;
			p->cap = UBDMA_VIRTIO_NET_MAX_FRAME;
			p->qp = (uint16_t)q;
			p->index = (uint32_t)((size_t)q * per_qp + i);
			pool_put(nic, qp, p);
		}
	}
	return 0;
}

static inline struct virtio_net_hdr *pkt_hdr(const struct ubdma_virtio_net_pkt *p)
{
	return (struct virtio_net_hdr *)((uint8_t *)p->data - UBDMA_VIRTIO_NET_HDR_LEN);
}

/* Every receive descriptor gets a buffer and goes on the available ring (5.1.5 step 5). */
static void rx_fill(struct ubdma_virtio_net *nic, struct qpair *qp)
{
	struct vq *q = &qp->rx;

	for (unsigned i = 0; i < q->size; i++) {
		struct ubdma_virtio_net_pkt *p = pool_get(nic, qp, PKT_DEV);

		q->slot[i] = p;
		desc_set(&q->desc[i], nic->buf_iova[p->index], UBDMA_VIRTIO_NET_BUF_SIZE, VIRTQ_DESC_F_WRITE);
		q->avail->ring[i] = (uint16_t)i;
	}
	q->avail_idx = (uint16_t)q->size;
	q->avail->idx = q->avail_idx;
}

/* ------------------------------------------------------------------ control queue (5.1.6.5) */

static int ctrl_cmd(struct ubdma_virtio_net *nic, uint8_t class, uint8_t cmd, const void *data,
		    size_t len)
{
	struct vq *q = &nic->ctrl;
	volatile uint8_t *ack = nic->ctrl_buf + CTRL_SEG;
	uint16_t want = (uint16_t)(q->last_used + 1);
	uint64_t end;

	if (!nic->has_ctrl)
		return drv_err(ENOTSUP, "no control queue (VIRTIO_NET_F_CTRL_VQ not negotiated)");
	nic->ctrl_buf[0] = class;
	nic->ctrl_buf[1] = cmd;
	memcpy(nic->ctrl_buf + 2, data, len);
	*ack = 0xff;
	desc_set(&q->desc[0], nic->ctrl_iova[0], (uint32_t)(2 + len), VIRTQ_DESC_F_NEXT);
	q->desc[0].next = 1;
	desc_set(&q->desc[1], nic->ctrl_iova[1], 1, VIRTQ_DESC_F_WRITE);
	q->avail->ring[q->avail_idx & q->mask] = 0;
	q->avail_idx++;
	ubdma_map_sync(nic->ctrl_tag, nic->ctrl_map, UBDMA_SYNC_PREREAD | UBDMA_SYNC_PREWRITE);
	vq_kick(NULL, q, 1);
	end = now_us() + CTRL_TIMEOUT_MS * 1000u;
	while (vq_used_idx(q) != want) {
		if (now_us() > end)
			return drv_err(ETIMEDOUT, "control command %u.%u: no answer within %u ms", class,
					cmd, CTRL_TIMEOUT_MS);
		sleep_us(50);
	}
	q->last_used = want;
	ubdma_map_sync(nic->ctrl_tag, nic->ctrl_map, UBDMA_SYNC_POSTREAD | UBDMA_SYNC_POSTWRITE);
	if (*ack != VIRTIO_NET_OK)
		return drv_err(EIO, "control command %u.%u: the device answered %u (VIRTIO_NET_ERR)",
				class, cmd, *ack);
	return 0;
}

static int ctrl_alloc(struct ubdma_virtio_net *nic)
{
	ubdma_seg_t segs[2];
	int err, nseg = 0;

	if ((err = ubdma_tag_create(ubdma_pci_dma_tag(nic->pci), CTRL_SEG, CTRL_SEG, UBDMA_MAXADDR,
				    UBDMA_MAXADDR, 2 * CTRL_SEG, 2, CTRL_SEG, 0, &nic->ctrl_tag))) {
		nic->ctrl_tag = NULL;
		return drv_err(err, "ubdma_tag_create for the control buffer: %s", strerror(err));
	}
	if ((err = ubdma_mem_alloc(nic->ctrl_tag, (void **)&nic->ctrl_buf, UBDMA_ZERO | UBDMA_NOWAIT,
				   &nic->ctrl_map))) {
		nic->ctrl_buf = NULL;
		return drv_err(err, "ubdma_mem_alloc for the control buffer: %s", strerror(err));
	}
	err = ubdma_map_load_sg(nic->ctrl_tag, nic->ctrl_map, nic->ctrl_buf, 2 * CTRL_SEG, segs, &nseg,
				UBDMA_NOWAIT);
	if (!err && nseg != 2)
		err = EFBIG;
	if (err)
		return drv_err(err, "loading the control buffer: %s (%s)", strerror(err), ubdma_last_error());
	nic->ctrl_iova[0] = segs[0].ds_addr;
	nic->ctrl_iova[1] = segs[1].ds_addr;
	return 0;
}

/* ------------------------------------------------------------------ open / close */

static void teardown(struct ubdma_virtio_net *nic)
{
	if (nic->common)
		(void)device_reset(nic); /* 4.1.4.3.2: the device stops using the queues */
	if (nic->pci)
		ubdma_pci_bus_master(nic->pci, 0);
	for (unsigned q = 0; q < UBDMA_VIRTIO_NET_MAX_QP; q++) {
		vq_free(&nic->qp[q].rx);
		vq_free(&nic->qp[q].tx);
		dma_part_free(nic->qp[q].pool_tag, nic->qp[q].pool_mem, nic->qp[q].pool_map);
		free(nic->qp[q].free_stack);
	}
	vq_free(&nic->ctrl);
	dma_part_free(nic->ctrl_tag, nic->ctrl_buf, nic->ctrl_map);
	drv_pci_close(nic->ctx, nic->own_ctx, nic->pci);
	free(nic->pkts);
	free(nic->buf_iova);
	free(nic->pkt_state);
	free(nic);
}

#define VNET_OPTS_SIZE_V1 (offsetof(struct ubdma_virtio_net_opts, promisc) + sizeof(int))

static int open_opts(const struct ubdma_virtio_net_opts *opts, struct ubdma_virtio_net_opts *c)
{
	const uint64_t required = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_ACCESS_PLATFORM;
	int err;

	if ((err = drv_opts_copy(opts, VNET_OPTS_SIZE_V1, c, sizeof(*c), "ubdma_virtio_net_opts")))
		return err;
	if (c->queue_pairs == 0)
		c->queue_pairs = 1;
	if (c->queue_pairs > UBDMA_VIRTIO_NET_MAX_QP)
		return drv_err(EINVAL, "queue_pairs = %u: this library drives 1 to %u", c->queue_pairs,
				UBDMA_VIRTIO_NET_MAX_QP);
	if (c->queue_size && (c->queue_size < 8 || c->queue_size > 32768 ||
			      (c->queue_size & (c->queue_size - 1))))
		return drv_err(EINVAL, "queue_size = %u: want a power of two from 8 to 32768 (2.7)",
				c->queue_size);
	if (c->pool_bufs && (c->pool_bufs > MAX_POOL || (c->queue_size && c->pool_bufs < c->queue_size + 32)))
		return drv_err(EINVAL, "pool_bufs = %u: want queue_size + 32 to %u (a pool is loaded as one "
				"segment a buffer, and a tag holds at most %u)", c->pool_bufs, MAX_POOL, MAX_POOL);
	if (c->features_off & required)
		return drv_err(EINVAL, "features_off %#llx names VERSION_1 or ACCESS_PLATFORM, which "
				"this driver requires", (unsigned long long)c->features_off);
	if (c->link_wait_ms == 0)
		c->link_wait_ms = DEFAULT_LINK_WAIT_MS;
	return 0;
}

static int open_pci(struct ubdma_virtio_net *nic, ubdma_ctx_t *ctx, const char *bdf)
{
	uint16_t id[2];
	int err;

	if ((err = drv_pci_open(ctx, bdf, &nic->ctx, &nic->own_ctx, &nic->pci, id)))
		return err;
	if (id[0] != UBDMA_VIRTIO_NET_VENDOR || id[1] != UBDMA_VIRTIO_NET_DEVICE)
		return drv_err(ENODEV, "%s is %04x:%04x, not a modern virtio-net (%04x:%04x; transitional "
				"1af4:1000 devices need disable-legacy=on)", bdf, id[0], id[1],
				UBDMA_VIRTIO_NET_VENDOR, UBDMA_VIRTIO_NET_DEVICE);
	return find_caps(nic);
}

/* 3.1.1 steps 1-6: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK checked. */
static int negotiate(struct ubdma_virtio_net *nic, const struct ubdma_virtio_net_opts *c)
{
	uint64_t dev, want;
	int err;

	if ((err = device_reset(nic)))
		return err;
	set_status(nic, VIRTIO_STATUS_ACKNOWLEDGE);
	set_status(nic, VIRTIO_STATUS_DRIVER);
	dev = device_features(nic);
	if (!(dev & 1ull << VIRTIO_F_VERSION_1) || !(dev & 1ull << VIRTIO_F_ACCESS_PLATFORM))
		return drv_err(ENOTSUP, "the device offers features %#llx without %s: this driver needs "
				"a modern device whose DMA goes through the IOMMU (QEMU: "
				"disable-legacy=on,iommu_platform=on)", (unsigned long long)dev,
				!(dev & 1ull << VIRTIO_F_VERSION_1) ? "VIRTIO_F_VERSION_1"
								    : "VIRTIO_F_ACCESS_PLATFORM");
	want = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_ACCESS_PLATFORM | 1ull << VIRTIO_NET_F_MAC |
	       1ull << VIRTIO_NET_F_STATUS | 1ull << VIRTIO_NET_F_MRG_RXBUF | 1ull << VIRTIO_NET_F_CSUM |
	       1ull << VIRTIO_NET_F_GUEST_CSUM | 1ull << VIRTIO_NET_F_CTRL_VQ | 1ull << VIRTIO_NET_F_CTRL_RX;
	if (c->queue_pairs > 1)
		want |= 1ull << VIRTIO_NET_F_MQ;
	want &= dev & ~c->features_off;
	if (!(want & 1ull << VIRTIO_NET_F_CTRL_VQ)) /* 5.1.3.1: these depend on the control queue */
		want &= ~(1ull << VIRTIO_NET_F_CTRL_RX | 1ull << VIRTIO_NET_F_MQ);
	if (c->queue_pairs > 1 && !(want & 1ull << VIRTIO_NET_F_MQ))
		return drv_err(ENOTSUP, "%u queue pairs asked, but VIRTIO_NET_F_MQ with a control queue "
				"is not offered (device features %#llx; QEMU: mq=on and a netdev with "
				"queues=N)", c->queue_pairs, (unsigned long long)dev);
	driver_features(nic, want);
	set_status(nic, VIRTIO_STATUS_FEATURES_OK);
	if (!(nic->common->device_status & VIRTIO_STATUS_FEATURES_OK))
		return drv_err(EIO, "the device did not accept features %#llx (FEATURES_OK cleared, 3.1.1)",
				(unsigned long long)want);
	nic->features = want;
	return 0;
}

/* Device configuration: MAC, queue pairs (5.1.4). */
static int read_config(struct ubdma_virtio_net *nic, const struct ubdma_virtio_net_opts *c)
{
	nic->max_qp = 1;
	if (has(nic, VIRTIO_NET_F_MQ)) {
		nic->max_qp = devcfg_read16(nic, offsetof(struct virtio_net_config, max_virtqueue_pairs));
		if (nic->max_qp < 1)
			return drv_err(EIO, "max_virtqueue_pairs is 0 (5.1.4: 1 to 0x8000)");
	}
	if (c->queue_pairs > nic->max_qp)
		return drv_err(EINVAL, "queue_pairs = %u: the device has %u", c->queue_pairs, nic->max_qp);
	nic->nqp = c->queue_pairs;
	if (has(nic, VIRTIO_NET_F_MAC)) {
		devcfg_read(nic, offsetof(struct virtio_net_config, mac), nic->mac, 6);
	} else { /* 5.1.5: the driver generates a random address */
		uint64_t r = now_us() * 0x9e3779b97f4a7c15ull;

		memcpy(nic->mac, &r, 6);
		nic->mac[0] = (uint8_t)((nic->mac[0] & 0xfe) | 0x02);
	}
	return 0;
}

static int open_queues(struct ubdma_virtio_net *nic, const struct ubdma_virtio_net_opts *c)
{
	unsigned qs = c->queue_size ? c->queue_size : DEFAULT_QSIZE, per;
	volatile struct virtio_pci_common_cfg *cc = nic->common;
	unsigned nq = 2 * nic->max_qp + (has(nic, VIRTIO_NET_F_CTRL_VQ) ? 1 : 0);
	int err;

	if (cc->num_queues < nq)
		return drv_err(EIO, "the device has %u virtqueues, %u expected (5.1.2)", cc->num_queues, nq);
	/* the default size shrinks to what the device has; an explicit one must fit */
	cc->queue_select = 0;
	if (!c->queue_size && cc->queue_size && cc->queue_size < qs)
		qs = cc->queue_size;
	nic->qsize = qs;
	per = c->pool_bufs ? c->pool_bufs : 2 * qs + DEFAULT_EXTRA_BUFS;
	if (per < qs + 32 || per > MAX_POOL)
		return drv_err(EINVAL, "pool_bufs = %u: want queue_size + 32 (%u) to %u (a pool is loaded "
				"as one segment a buffer, and a tag holds at most %u)", per, qs + 32, MAX_POOL,
				MAX_POOL);
	for (unsigned q = 0; q < nic->nqp; q++) {
		/* 5.1.2: receiveq N is 2(N-1), transmitq N is 2(N-1)+1 */
		if ((err = vq_alloc(nic, &nic->qp[q].rx, 2 * q, qs, 0)) ||
		    (err = vq_alloc(nic, &nic->qp[q].tx, 2 * q + 1, qs, 1)))
			return err;
		if (nic->rx_irq)
			nic->qp[q].rx.vector = (uint16_t)q;
	}
	if (has(nic, VIRTIO_NET_F_CTRL_VQ)) {
		if ((err = vq_alloc(nic, &nic->ctrl, 2 * nic->max_qp, CTRL_QSIZE, 0)) ||
		    (err = ctrl_alloc(nic)))
			return err;
		nic->has_ctrl = 1;
	}
	if ((err = pool_alloc(nic, per)))
		return err;
	for (unsigned q = 0; q < nic->nqp; q++) {
		rx_fill(nic, &nic->qp[q]);
		if ((err = vq_program(nic, &nic->qp[q].rx)) || (err = vq_program(nic, &nic->qp[q].tx)))
			return err;
	}
	if (nic->has_ctrl && (err = vq_program(nic, &nic->ctrl)))
		return err;
	for (unsigned q = 0; q < nic->nqp; q++)
		ubdma_map_sync(nic->qp[q].pool_tag, nic->qp[q].pool_map, UBDMA_SYNC_PREREAD);
	return 0;
}

/* One MSI-X vector per receive queue (4.1.5.1.2), their eventfds from ubdma_pci_msix_enable(). */
static int open_irqs(struct ubdma_virtio_net *nic)
{
	unsigned have = ubdma_pci_msix_count(nic->pci);
	int err;

	if (have < nic->nqp)
		return drv_err(ENOTSUP, "rx_interrupts: the device has %u MSI-X vectors, %u queue pairs "
				"need one each (QEMU: vectors=N)", have, nic->nqp);
	if ((err = ubdma_pci_msix_enable(nic->pci, nic->nqp, nic->irq_fd)))
		return drv_err(err, "ubdma_pci_msix_enable(%u): %s (%s)", nic->nqp, strerror(err),
				ubdma_last_error());
	nic->rx_irq = 1;
	return 0;
}

static int link_up(struct ubdma_virtio_net *nic)
{
	if (!has(nic, VIRTIO_NET_F_STATUS))
		return 1; /* 5.1.4: without STATUS the link is assumed active */
	return !!(devcfg_read16(nic, offsetof(struct virtio_net_config, status)) & VIRTIO_NET_S_LINK_UP);
}

int ubdma_virtio_net_open(const char *bdf, const struct ubdma_virtio_net_opts *opts,
			  ubdma_virtio_net_t **nicp)
{
	struct ubdma_virtio_net_opts c;
	struct ubdma_virtio_net *nic;
	uint64_t end;
	int err;

	if (nicp)
		*nicp = NULL;
	if (!bdf || !nicp)
		return drv_err(EINVAL, "%s is NULL", bdf ? "nicp" : "bdf");
	if ((err = open_opts(opts, &c)))
		return err;
	if (!(nic = calloc(1, sizeof(*nic))))
		return drv_err(ENOMEM, "out of memory");
	if ((err = open_pci(nic, c.ctx, bdf)) || (err = negotiate(nic, &c)) || (err = read_config(nic, &c)) ||
	    (c.rx_interrupts && (err = open_irqs(nic))) || (err = open_queues(nic, &c)))
		goto fail;
	if ((err = ubdma_pci_bus_master(nic->pci, 1))) {
		drv_err(err, "bus mastering: %s (%s)", strerror(err), ubdma_last_error());
		goto fail;
	}
	set_status(nic, VIRTIO_STATUS_DRIVER_OK); /* 3.1.1 step 8: the device is live */
	if (nic->common->device_status & VIRTIO_STATUS_DEVICE_NEEDS_RESET) {
		err = drv_err(EIO, "the device set DEVICE_NEEDS_RESET at DRIVER_OK (device_status %#x)",
			       nic->common->device_status);
		goto fail;
	}
	for (unsigned q = 0; q < nic->nqp; q++)
		vq_kick(&nic->qp[q], &nic->qp[q].rx, 1);
	if (nic->nqp > 1) { /* 5.1.6.5.5: only the first pair is used until VQ_PAIRS_SET */
		uint16_t n = (uint16_t)nic->nqp;

		if ((err = ctrl_cmd(nic, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &n, 2)))
			goto fail;
	}
	if (has(nic, VIRTIO_NET_F_CTRL_RX)) {
		uint8_t on = c.promisc ? 1 : 0;

		if ((err = ctrl_cmd(nic, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &on, 1)))
			goto fail;
	}
	end = now_us() + (uint64_t)c.link_wait_ms * 1000u;
	while (!link_up(nic) && now_us() < end) /* the link may come later: not a failure */
		sleep_us(1000);
	*nicp = nic;
	return 0;
fail:
	teardown(nic);
	return err;
}

int ubdma_virtio_net_close(ubdma_virtio_net_t *nic)
{
	if (!nic)
		return 0;
	teardown(nic);
	return 0;
}

/* ------------------------------------------------------------------ data path */

static inline struct qpair *qp_of(struct ubdma_virtio_net *nic, unsigned qp)
{
	return qp < nic->nqp ? &nic->qp[qp] : NULL;
}

int ubdma_virtio_net_pkt_alloc(ubdma_virtio_net_t *nic, unsigned qpn, struct ubdma_virtio_net_pkt **pkts,
			       unsigned n)
{
	struct qpair *qp;

	if (!nic || (!pkts && n))
		return drv_err(EINVAL, "%s is NULL", nic ? "pkts" : "nic");
	if (!(qp = qp_of(nic, qpn)))
		return drv_err(EINVAL, "queue pair %u: the device uses %u", qpn, nic->nqp);
	if (n > qp->nfree)
		return drv_err(ENOBUFS, "pkt_alloc: %u packets asked, %u free in queue pair %u's pool", n,
				qp->nfree, qpn);
	for (unsigned i = 0; i < n; i++) {
		pkts[i] = pool_get(nic, qp, PKT_USER);
		pkts[i]->len = 0;
		pkts[i]->flags = 0;
	}
	return 0;
}

int ubdma_virtio_net_pkt_free(ubdma_virtio_net_t *nic, struct ubdma_virtio_net_pkt **pkts, unsigned n)
{
	if (!nic || (!pkts && n))
		return drv_err(EINVAL, "%s is NULL", nic ? "pkts" : "nic");
	for (unsigned i = 0; i < n; i++) {
		if (!pkts[i] || !pkt_ok(nic, pkts[i]) || nic->pkt_state[pkts[i]->index] != PKT_USER) {
			drv_err(EINVAL, "pkt_free: packet %u (%p) is not one the caller holds from this "
				 "device (foreign, free already, or in a queue): nothing freed", i,
				 (void *)pkts[i]);
			while (i-- > 0)
				nic->pkt_state[pkts[i]->index] = PKT_USER;
			return EINVAL;
		}
		nic->pkt_state[pkts[i]->index] = PKT_FREE;
	}
	for (unsigned i = 0; i < n; i++) {
		struct qpair *qp = &nic->qp[pkts[i]->qp];

		qp->free_stack[qp->nfree++] = pkts[i];
	}
	return 0;
}

/* Take the transmit completions from the used ring (2.7.8). */
static void tx_reclaim(struct ubdma_virtio_net *nic, struct qpair *qp)
{
	struct vq *q = &qp->tx;
	uint16_t idx;

	if (q->nfree_ids == q->size)
		return;
	ubdma_map_sync(q->used_tag, q->used_map, UBDMA_SYNC_POSTREAD);
	idx = vq_used_idx(q);
	while (q->last_used != idx) {
		uint32_t id = q->used->ring[q->last_used & q->mask].id;

		if (id < q->size && q->slot[id]) {
			pool_put(nic, qp, q->slot[id]);
			q->slot[id] = NULL;
			q->free_ids[q->nfree_ids++] = (uint16_t)id;
		}
		q->last_used++;
	}
}

int ubdma_virtio_net_tx_burst(ubdma_virtio_net_t *nic, unsigned qpn, struct ubdma_virtio_net_pkt **pkts,
			      unsigned n, unsigned *sent)
{
	struct qpair *qp;
	struct vq *q;
	unsigned i;
	int err = 0;

	if (sent)
		*sent = 0;
	if (!nic || !sent || (!pkts && n))
		return drv_err(EINVAL, "%s is NULL", !nic ? "nic" : !sent ? "sent" : "pkts");
	if (!(qp = qp_of(nic, qpn)))
		return drv_err(EINVAL, "queue pair %u: the device uses %u", qpn, nic->nqp);
	q = &qp->tx;
	tx_reclaim(nic, qp);
	for (i = 0; i < n; i++) {
		struct ubdma_virtio_net_pkt *p = pkts[i];
		struct virtio_net_hdr *h;
		uint16_t id;

		if (!p || !pkt_ok(nic, p) || p->qp != qpn || nic->pkt_state[p->index] != PKT_USER) {
			err = drv_err(EINVAL, "tx_burst: packet %u is not one the caller holds from queue "
				       "pair %u's pool", i, qpn);
			qp->st.tx_rejected++;
			break;
		}
		if (p->len < UBDMA_VIRTIO_NET_MIN_FRAME || p->len > UBDMA_VIRTIO_NET_MAX_FRAME) {
			err = drv_err(EMSGSIZE, "tx_burst: frame %u is %u bytes; a frame is %u to %u bytes",
				       i, p->len, UBDMA_VIRTIO_NET_MIN_FRAME, UBDMA_VIRTIO_NET_MAX_FRAME);
			qp->st.tx_rejected++;
			break;
		}
		if ((p->flags & UBDMA_VIRTIO_NET_PKT_NEEDS_CSUM) &&
		    (!has(nic, VIRTIO_NET_F_CSUM) || (unsigned)p->csum_start + p->csum_offset + 2 > p->len)) {
			err = drv_err(EINVAL, "tx_burst: frame %u asks for a checksum %s", i,
				       has(nic, VIRTIO_NET_F_CSUM) ? "beyond its end"
								   : "but VIRTIO_NET_F_CSUM is not negotiated");
			qp->st.tx_rejected++;
			break;
		}
		if (!q->nfree_ids) {
			err = drv_err_fixed(ENOBUFS, "tx_burst: the transmit queue is full (the frames "
					     "before it went)");
			qp->st.tx_ring_full++;
			break;
		}
		/* 5.1.6.2: the header before the frame, in the same buffer */
		h = pkt_hdr(p);
		memset(h, 0, sizeof(*h));
		h->gso_type = VIRTIO_NET_HDR_GSO_NONE;
		if (p->flags & UBDMA_VIRTIO_NET_PKT_NEEDS_CSUM) {
			h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
			h->csum_start = p->csum_start;
			h->csum_offset = p->csum_offset;
			qp->st.tx_csum_offload++;
		}
		id = q->free_ids[--q->nfree_ids];
		desc_set(&q->desc[id], nic->buf_iova[p->index], UBDMA_VIRTIO_NET_HDR_LEN + (uint32_t)p->len, 0);
		q->slot[id] = p;
		nic->pkt_state[p->index] = PKT_DEV;
		q->avail->ring[q->avail_idx & q->mask] = id;
		q->avail_idx++;
		qp->st.tx_bytes += p->len;
	}
	if (i) {
		ubdma_map_sync(qp->pool_tag, qp->pool_map, UBDMA_SYNC_PREWRITE);
		ubdma_map_sync(q->desc_tag, q->desc_map, UBDMA_SYNC_PREWRITE);
		ubdma_map_sync(q->avail_tag, q->avail_map, UBDMA_SYNC_PREWRITE);
		vq_kick(qp, q, 0);
		qp->st.tx_pkts += i;
	}
	*sent = i;
	return err;
}

int ubdma_virtio_net_rx_burst(ubdma_virtio_net_t *nic, unsigned qpn, struct ubdma_virtio_net_pkt **pkts,
			      unsigned max, unsigned *got)
{
	struct qpair *qp;
	struct vq *q;
	unsigned n = 0, done = 0;
	uint16_t idx;
	int err = 0;

	if (got)
		*got = 0;
	if (!nic || !got || (!pkts && max))
		return drv_err(EINVAL, "%s is NULL", !nic ? "nic" : !got ? "got" : "pkts");
	if (!(qp = qp_of(nic, qpn)))
		return drv_err(EINVAL, "queue pair %u: the device uses %u", qpn, nic->nqp);
	q = &qp->rx;
	ubdma_map_sync(q->used_tag, q->used_map, UBDMA_SYNC_POSTREAD);
	idx = vq_used_idx(q);
	if (idx != q->last_used)
		ubdma_map_sync(qp->pool_tag, qp->pool_map, UBDMA_SYNC_POSTREAD);
	while (q->last_used != idx && n < max) {
		struct virtq_used_elem e = q->used->ring[q->last_used & q->mask];
		struct ubdma_virtio_net_pkt *p = e.id < q->size ? q->slot[e.id] : NULL;
		const struct virtio_net_hdr *h;

		if (!p) { /* a device bug: an id we did not make available; skip it */
			q->last_used++;
			continue;
		}
		h = pkt_hdr(p);
		if (q->rx_skip || e.len < UBDMA_VIRTIO_NET_HDR_LEN + UBDMA_VIRTIO_NET_MIN_FRAME ||
		    (has(nic, VIRTIO_NET_F_MRG_RXBUF) && h->num_buffers > 1)) {
			/* a runt, or a frame merged over several buffers (5.1.6.4): the first
			 * buffer says how many follow; all of them go back to the device */
			if (q->rx_skip) {
				q->rx_skip--; /* counted with the frame's first buffer */
			} else {
				if (has(nic, VIRTIO_NET_F_MRG_RXBUF) && h->num_buffers > 1 &&
				    e.len >= UBDMA_VIRTIO_NET_HDR_LEN)
					q->rx_skip = h->num_buffers - 1u;
				qp->st.rx_dropped++;
			}
		} else {
			struct ubdma_virtio_net_pkt *np;

			if (!qp->nfree) {
				err = drv_err_fixed(ENOBUFS, "rx_burst: frames waiting but the pool is "
						     "empty: free received packets");
				break;
			}
			p->len = (uint16_t)(e.len - UBDMA_VIRTIO_NET_HDR_LEN);
			p->flags = 0;
			if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
				p->flags |= UBDMA_VIRTIO_NET_PKT_NEEDS_CSUM;
				p->csum_start = h->csum_start;
				p->csum_offset = h->csum_offset;
				qp->st.rx_csum_partial++;
			}
			if (h->flags & VIRTIO_NET_HDR_F_DATA_VALID) {
				p->flags |= UBDMA_VIRTIO_NET_PKT_DATA_VALID;
				qp->st.rx_csum_valid++;
			}
			nic->pkt_state[p->index] = PKT_USER;
			pkts[n++] = p;
			qp->st.rx_bytes += p->len;
			np = pool_get(nic, qp, PKT_DEV);
			q->slot[e.id] = np;
			q->desc[e.id].addr = nic->buf_iova[np->index];
		}
		q->avail->ring[q->avail_idx & q->mask] = (uint16_t)e.id;
		q->avail_idx++;
		q->last_used++;
		done++;
	}
	if (done) {
		ubdma_map_sync(qp->pool_tag, qp->pool_map, UBDMA_SYNC_PREREAD);
		ubdma_map_sync(q->desc_tag, q->desc_map, UBDMA_SYNC_PREWRITE);
		ubdma_map_sync(q->avail_tag, q->avail_map, UBDMA_SYNC_PREWRITE);
		vq_kick(qp, q, 0);
		qp->st.rx_pkts += n;
	}
	*got = n;
	return err;
}

int ubdma_virtio_net_rx_wait(ubdma_virtio_net_t *nic, unsigned qpn, unsigned timeout_ms)
{
	uint64_t end, now, cnt;
	struct qpair *qp;
	struct vq *q;
	int err = 0;

	if (!nic)
		return drv_err(EINVAL, "nic is NULL");
	if (!(qp = qp_of(nic, qpn)))
		return drv_err(EINVAL, "queue pair %u: the device uses %u", qpn, nic->nqp);
	if (!nic->rx_irq)
		return drv_err(ENOTSUP, "rx_wait: the device was opened without opts.rx_interrupts");
	q = &qp->rx;
	if (vq_used_idx(q) != q->last_used)
		return 0;
	end = now_us() + (uint64_t)timeout_ms * 1000u;
	/* 2.7.7: interrupts on, then look again: a frame used before the flag was seen raises none */
	*(volatile uint16_t *)&q->avail->flags = 0;
	atomic_thread_fence(memory_order_seq_cst);
	while (vq_used_idx(q) == q->last_used && (now = now_us()) < end) {
		struct pollfd pfd = { .fd = nic->irq_fd[qpn], .events = POLLIN };
		int n = poll(&pfd, 1, (int)((end - now + 999) / 1000));

		if (n < 0 && errno != EINTR) {
			err = drv_err(errno, "rx_wait: poll: %s", strerror(errno));
			break;
		}
		if (n > 0) {
			if (read(nic->irq_fd[qpn], &cnt, sizeof(cnt)) == (ssize_t)sizeof(cnt))
				qp->st.rx_irq_wakeups++;
			else if (errno != EAGAIN) {
				err = drv_err(errno, "rx_wait: read of the eventfd: %s", strerror(errno));
				break;
			}
		}
	}
	*(volatile uint16_t *)&q->avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	if (err)
		return err;
	if (vq_used_idx(q) == q->last_used)
		return drv_err(ETIMEDOUT, "rx_wait: nothing on receive queue %u within %u ms", qpn,
				timeout_ms);
	return 0;
}

int ubdma_virtio_net_tx_flush(ubdma_virtio_net_t *nic, unsigned qpn, unsigned timeout_ms,
			      unsigned *pending)
{
	struct qpair *qp;
	uint64_t end;

	if (pending)
		*pending = 0;
	if (!nic)
		return drv_err(EINVAL, "nic is NULL");
	if (!(qp = qp_of(nic, qpn)))
		return drv_err(EINVAL, "queue pair %u: the device uses %u", qpn, nic->nqp);
	end = now_us() + (uint64_t)timeout_ms * 1000u;
	for (;;) {
		tx_reclaim(nic, qp);
		if (qp->tx.nfree_ids == qp->tx.size || now_us() >= end)
			break;
		sleep_us(20);
	}
	if (pending)
		*pending = qp->tx.size - qp->tx.nfree_ids;
	if (qp->tx.nfree_ids != qp->tx.size)
		return drv_err(ETIMEDOUT, "tx_flush: %u frames of queue pair %u still queued after %u ms "
				"(used idx %u, avail idx %u)", qp->tx.size - qp->tx.nfree_ids, qpn, timeout_ms,
				vq_used_idx(&qp->tx), qp->tx.avail_idx);
	return 0;
}

/* ------------------------------------------------------------------ control */

int ubdma_virtio_net_mac(const ubdma_virtio_net_t *nic, uint8_t mac[6])
{
	if (!nic || !mac)
		return drv_err(EINVAL, "%s is NULL", nic ? "mac" : "nic");
	memcpy(mac, nic->mac, 6);
	return 0;
}

int ubdma_virtio_net_link(ubdma_virtio_net_t *nic, struct ubdma_virtio_net_link *link)
{
	if (!nic || !link)
		return drv_err(EINVAL, "%s is NULL", nic ? "link" : "nic");
	link->has_status = has(nic, VIRTIO_NET_F_STATUS);
	link->up = link_up(nic);
	return 0;
}

int ubdma_virtio_net_set_promisc(ubdma_virtio_net_t *nic, int on)
{
	uint8_t v = on ? 1 : 0;

	if (!nic)
		return drv_err(EINVAL, "nic is NULL");
	if (!has(nic, VIRTIO_NET_F_CTRL_RX))
		return drv_err(ENOTSUP, "set_promisc: VIRTIO_NET_F_CTRL_RX was not negotiated");
	return ctrl_cmd(nic, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &v, 1);
}

int ubdma_virtio_net_stats(const ubdma_virtio_net_t *nic, struct ubdma_virtio_net_stats *st)
{
	if (!nic || !st)
		return drv_err(EINVAL, "%s is NULL", nic ? "st" : "nic");
	memset(st, 0, sizeof(*st));
	for (unsigned q = 0; q < nic->nqp; q++) {
		const struct ubdma_virtio_net_stats *s = &nic->qp[q].st;

		st->rx_pkts += s->rx_pkts;
		st->tx_pkts += s->tx_pkts;
		st->rx_bytes += s->rx_bytes;
		st->tx_bytes += s->tx_bytes;
		st->rx_dropped += s->rx_dropped;
		st->rx_csum_valid += s->rx_csum_valid;
		st->rx_csum_partial += s->rx_csum_partial;
		st->tx_csum_offload += s->tx_csum_offload;
		st->tx_rejected += s->tx_rejected;
		st->tx_ring_full += s->tx_ring_full;
		st->notifications += s->notifications;
		st->rx_irq_wakeups += s->rx_irq_wakeups;
	}
	return 0;
}

uint64_t ubdma_virtio_net_features(const ubdma_virtio_net_t *nic)
{
	return nic ? nic->features : 0;
}

unsigned ubdma_virtio_net_queue_pairs(const ubdma_virtio_net_t *nic)
{
	return nic ? nic->nqp : 0;
}

unsigned ubdma_virtio_net_pool_free(const ubdma_virtio_net_t *nic, unsigned qp)
{
	return nic && qp < nic->nqp ? nic->qp[qp].nfree : 0;
}

ubdma_pci_t *ubdma_virtio_net_pci(const ubdma_virtio_net_t *nic)
{
	return nic ? nic->pci : NULL;
}
