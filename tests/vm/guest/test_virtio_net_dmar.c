/*
 * test_virtio_net_dmar - a virtio-net DMA through a wrong IOVA is a DMAR fault and corrupts
 * nothing (issue 20).
 *
 *   test_virtio_net_dmar [BDF]     (default $UBDMA_VM_VNET; run by vm-vnet-mq.sh after
 *                                   test_virtio_net_mq, on the tap whose peer answers RDY3)
 *
 * The driver never hands the device an address ubdma did not load, so this test drives the
 * device itself, through the public ubdma API and the layouts of drivers/virtio-net/virtio_regs.h:
 * a canary page is locked (ubdma_umem_lock), its IOVA noted, and unlocked again, so that the IOVA
 * is no longer mapped in the IOMMU while the page still holds our bytes.
 *   read:  a transmit descriptor points at that IOVA: the device's read faults (announced: the
 *          runner wants the DMAR record at that page); QEMU then completes the descriptor with
 *          bytes of its own bounce buffer, and the host (vm-vnet-mq.sh) checks with tshark that
 *          no frame carried the canary's bytes;
 *   write: every receive descriptor points at that IOVA and a valid transmit buffer asks the
 *          host peer (RDY3) for datagrams: the device's writes fault (announced) and the canary
 *          page keeps every byte.
 * QEMU does not set DEVICE_NEEDS_RESET on a translation failure (it bounces through unassigned
 * memory instead), so the test judges by the IOMMU's records and the data, not by the device.
 * Then the driver opens the device again and it works: a control command and a transmit complete.
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <ubdma/ubdma.h>
#include <ubdma/virtio_net.h>

#include "../../../drivers/virtio-net/virtio_regs.h"
#include "check.h"

#define EXIT_SKIP 77
#define PG 4096u
#define QS 8

static volatile struct virtio_pci_common_cfg *cc;
static volatile uint8_t *notify_base;
static uint32_t notify_mult;

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* The common and notify structures (4.1.4), as the driver finds them. */
static int find_caps(ubdma_pci_t *pci)
{
	uint8_t ptr = 0;
	int found = 0;

	ubdma_pci_cfg_read(pci, 0x34, &ptr, 1);
	for (int guard = 0; (ptr &= 0xfc) && guard < 48; guard++) {
		struct virtio_pci_notify_cap c;

		if (ubdma_pci_cfg_read(pci, ptr, &c, sizeof(c)))
			return -1;
		if (c.cap.cap_vndr == PCI_CAP_ID_VNDR &&
		    (c.cap.cfg_type == VIRTIO_PCI_CAP_COMMON_CFG || c.cap.cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG)) {
			uint8_t *bar = ubdma_pci_bar(pci, c.cap.bar, NULL);

			if (!bar)
				return -1;
			if (c.cap.cfg_type == VIRTIO_PCI_CAP_COMMON_CFG && !cc) {
				cc = (void *)(bar + c.cap.offset);
				found |= 1;
			} else if (c.cap.cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG && !notify_base) {
				notify_base = bar + c.cap.offset;
				notify_mult = c.notify_off_multiplier;
				found |= 2;
			}
		}
		ptr = c.cap.cap_next;
	}
	return found == 3 ? 0 : -1;
}

static int reset(void)
{
	cc->device_status = 0;
	for (int i = 0; i < 1000 && cc->device_status; i++)
		sleep_ms(1);
	return cc->device_status ? -1 : 0;
}

/* 3.1.1 with VERSION_1 and ACCESS_PLATFORM only; queues 0 (receive) and 1 (transmit). */
struct ring {
	struct virtq_desc *desc;
	struct virtq_avail *avail;
	struct virtq_used *used;
	uint64_t desc_iova, avail_iova, used_iova;
};

static int bring_up(struct ring r[2])
{
	uint64_t f = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_ACCESS_PLATFORM;

	if (reset())
		return -1;
	cc->device_status = VIRTIO_STATUS_ACKNOWLEDGE;
	cc->device_status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
	cc->driver_feature_select = 0;
	cc->driver_feature = (uint32_t)f;
	cc->driver_feature_select = 1;
	cc->driver_feature = (uint32_t)(f >> 32);
	cc->device_status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
	if (!(cc->device_status & VIRTIO_STATUS_FEATURES_OK))
		return -1;
	for (unsigned q = 0; q < 2; q++) {
		volatile uint32_t *a;

		cc->queue_select = (uint16_t)q;
		cc->queue_size = QS;
		a = (volatile uint32_t *)&cc->queue_desc;
		a[0] = (uint32_t)r[q].desc_iova, a[1] = (uint32_t)(r[q].desc_iova >> 32);
		a = (volatile uint32_t *)&cc->queue_driver;
		a[0] = (uint32_t)r[q].avail_iova, a[1] = (uint32_t)(r[q].avail_iova >> 32);
		a = (volatile uint32_t *)&cc->queue_device;
		a[0] = (uint32_t)r[q].used_iova, a[1] = (uint32_t)(r[q].used_iova >> 32);
		memset(r[q].desc, 0, PG);
		memset(r[q].avail, 0, PG);
		memset(r[q].used, 0, PG);
		cc->queue_enable = 1;
	}
	cc->device_status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			    VIRTIO_STATUS_DRIVER_OK;
	return 0;
}

static void kick(struct ring *r, unsigned q, uint16_t idx)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	*(volatile uint16_t *)&r->avail->idx = idx;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	cc->queue_select = (uint16_t)q;
	*(volatile uint16_t *)(notify_base + (size_t)cc->queue_notify_off * notify_mult) = (uint16_t)q;
}

/* A UDP datagram "RDY3" from 10.20.0.2:9999 to the host peer 10.20.0.1:9999, no UDP checksum. */
static unsigned rdy3(uint8_t *b)
{
	static const uint8_t f[] = {
		0x02, 0, 0, 0, 0, 0x10, 0x52, 0x54, 0x00, 0x12, 0x34, 0x60, 0x08, 0x00,
		0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 20, 0, 2, 10, 20, 0, 1,
		0x27, 0x0f, 0x27, 0x0f, 0, 12, 0, 0, 'R', 'D', 'Y', '3' };
	uint32_t s = 0;

	memset(b, 0, 12); /* struct virtio_net_hdr: nothing asked */
	memcpy(b + 12, f, sizeof(f));
	for (unsigned i = 0; i < 20; i += 2)
		s += (uint32_t)b[26 + i] << 8 | b[27 + i];
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	b[36] = (uint8_t)(~s >> 8), b[37] = (uint8_t)~s;
	return 12 + (unsigned)sizeof(f) < 12 + 60 ? 12 + 60 : 12 + (unsigned)sizeof(f);
}

int main(int argc, char **argv)
{
	const char *bdf = argc > 1 && *argv[1] ? argv[1] : getenv("UBDMA_VM_VNET");
	ubdma_tag_t *tag;
	ubdma_map_t *map;
	ubdma_ctx_t *ctx;
	ubdma_pci_t *pci;
	ubdma_umem_t *u;
	ubdma_seg_t seg;
	struct ring r[2];
	uint8_t *mem, *canary;
	uint64_t bad, base;
	int nseg = 0, err, ok;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf) {
		printf("# no virtio-net ($UBDMA_VM_VNET)\n");
		return EXIT_SKIP;
	}
	if ((err = ubdma_ctx_open(UBDMA_BACKEND_VFIO, &ctx)) || (err = ubdma_pci_open(ctx, bdf, &pci))) {
		printf("# %s: %s (%s)\n", bdf, strerror(err), ubdma_last_error());
		return 1;
	}
	check(find_caps(pci) == 0, "virtio capabilities found");
	/* rings: 8 pages of DMA memory, one load (a test may add offsets; the driver does not) */
	err = ubdma_tag_create(ubdma_pci_dma_tag(pci), PG, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 8 * PG, 1,
			       8 * PG, 0, &tag);
	if (!err)
		err = ubdma_mem_alloc(tag, (void **)&mem, UBDMA_ZERO, &map);
	if (!err)
		err = ubdma_map_load_sg(tag, map, mem, 8 * PG, &seg, &nseg, 0);
	check(err == 0 && nseg == 1, "ring memory: %s", err ? ubdma_last_error() : "ok");
	if (err || nseg != 1 || !cc)
		return 1;
	base = seg.ds_addr;
	for (unsigned q = 0; q < 2; q++) {
		r[q].desc = (void *)(mem + (3 * q + 0) * PG), r[q].desc_iova = base + (3 * q + 0) * PG;
		r[q].avail = (void *)(mem + (3 * q + 1) * PG), r[q].avail_iova = base + (3 * q + 1) * PG;
		r[q].used = (void *)(mem + (3 * q + 2) * PG), r[q].used_iova = base + (3 * q + 2) * PG;
	}
	/* the canary: registered, IOVA noted, unregistered; our bytes stay in it */
	canary = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(canary, 0xa5, PG);
	err = ubdma_umem_lock(ctx, canary, PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
	check(err == 0, "canary page locked");
	if (err)
		return 1;
	bad = ubdma_umem_iova(u, canary);
	ubdma_umem_unlock(u);
	check(ubdma_vtoiova(ctx, canary) == UBDMA_BAD_IOVA, "canary unlocked: IOVA %#" PRIx64
	      " no longer mapped", bad);
	if ((err = ubdma_pci_bus_master(pci, 1)))
		return 1;

	/* read: a transmit descriptor at the unmapped IOVA */
	check(bring_up(r) == 0, "raw bring-up (VERSION_1, ACCESS_PLATFORM, queues 0 and 1)");
	printf("UBDMA-EXPECT-DMAR-FAULT %#" PRIx64 "\n", bad);
	r[1].desc[0] = (struct virtq_desc){ bad, 12 + 60, 0, 0 };
	r[1].avail->ring[0] = 0;
	kick(&r[1], 1, 1);
	sleep_ms(500);
	printf("# read: transmit used idx %u, device_status %#x\n", *(volatile uint16_t *)&r[1].used->idx,
	       cc->device_status);

	/* write: every receive descriptor at the unmapped IOVA, a valid RDY3 asks for datagrams */
	check(bring_up(r) == 0, "raw bring-up again after a reset");
	printf("UBDMA-EXPECT-DMAR-FAULT %#" PRIx64 "\n", bad);
	for (unsigned i = 0; i < QS; i++) {
		r[0].desc[i] = (struct virtq_desc){ bad, 2048, VIRTQ_DESC_F_WRITE, 0 };
		r[0].avail->ring[i] = (uint16_t)i;
	}
	kick(&r[0], 0, QS);
	r[1].desc[0] = (struct virtq_desc){ base + 7 * PG, rdy3(mem + 7 * PG), 0, 0 };
	r[1].avail->ring[0] = 0;
	kick(&r[1], 1, 1);
	for (int i = 0; i < 40 && !*(volatile uint16_t *)&r[0].used->idx; i++)
		sleep_ms(50);
	sleep_ms(300);
	check(*(volatile uint16_t *)&r[1].used->idx == 1, "write: RDY3 went out (transmit used idx %u)",
	      *(volatile uint16_t *)&r[1].used->idx);
	printf("# write: receive used idx %u (datagrams the device wrote towards the IOVA), "
	       "device_status %#x\n", *(volatile uint16_t *)&r[0].used->idx, cc->device_status);
	check(*(volatile uint16_t *)&r[0].used->idx > 0, "write: the device did try to write "
	      "(receive used idx %u)", *(volatile uint16_t *)&r[0].used->idx);
	ok = 1;
	for (unsigned i = 0; i < PG; i++)
		ok &= canary[i] == 0xa5;
	check(ok, "the canary page keeps every byte");
	reset();
	ubdma_pci_bus_master(pci, 0);
	ubdma_mem_free(tag, mem, map);
	ubdma_tag_destroy(tag);
	ubdma_pci_close(pci);
	ubdma_ctx_close(ctx);

	/* the driver takes the device back and it works */
	{
		struct ubdma_virtio_net_opts o = { .size = sizeof(o), .queue_size = 64, .promisc = 1 };
		struct ubdma_virtio_net_pkt *p;
		ubdma_virtio_net_t *nic;
		unsigned sent = 0;

		err = ubdma_virtio_net_open(bdf, &o, &nic);
		check(err == 0, "the driver opens the device again: %s", err ? ubdma_virtio_net_last_error() : "ok");
		if (!err) {
			check(ubdma_virtio_net_set_promisc(nic, 1) == 0, "a control command completes");
			ubdma_virtio_net_pkt_alloc(nic, 0, &p, 1);
			p->len = (uint16_t)(rdy3((uint8_t *)p->data - 12) - 12);
			memcpy((uint8_t *)p->data + 42, "NOP3", 4);
			check(ubdma_virtio_net_tx_burst(nic, 0, &p, 1, &sent) == 0 && sent == 1 &&
			      ubdma_virtio_net_tx_flush(nic, 0, 2000, NULL) == 0, "a transmit completes");
			ubdma_virtio_net_close(nic);
		}
	}
	printf("# %s\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
