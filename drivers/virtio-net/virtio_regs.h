/*
 * virtio_regs.h - the layouts of the virtio 1.2 specification that libubdma_virtio_net uses,
 * spelled as the specification spells them, with the section beside each.  All fields are little
 * endian; the driver runs on little-endian hosts only (x86, arm64), which virtio_net.c asserts.
 */
#ifndef UBDMA_VIRTIO_REGS_H
#define UBDMA_VIRTIO_REGS_H

#include <stddef.h>
#include <stdint.h>

/* 2.1 Device Status Field */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

/* 6 Reserved Feature Bits */
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_RING_PACKED 34

/* 5.1.3 Feature bits (network device) */
#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_F_CTRL_VQ 17
#define VIRTIO_NET_F_CTRL_RX 18
#define VIRTIO_NET_F_MQ 22

/* 4.1.4 Virtio Structure PCI Capabilities: a vendor-specific capability (ID 0x09) */
#define PCI_CAP_ID_VNDR 0x09
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5

struct virtio_pci_cap {
	uint8_t cap_vndr;   /* PCI_CAP_ID_VNDR */
	uint8_t cap_next;
	uint8_t cap_len;
	uint8_t cfg_type;   /* VIRTIO_PCI_CAP_* */
	uint8_t bar;
	uint8_t id;
	uint8_t padding[2];
	uint32_t offset;    /* within the BAR */
	uint32_t length;
};

/* 4.1.4.4 Notification structure layout: the capability continues with the multiplier */
struct virtio_pci_notify_cap {
	struct virtio_pci_cap cap;
	uint32_t notify_off_multiplier;
};

/* 4.1.4.3 Common configuration structure layout */
struct virtio_pci_common_cfg {
	/* about the whole device */
	uint32_t device_feature_select;
	uint32_t device_feature;
	uint32_t driver_feature_select;
	uint32_t driver_feature;
	uint16_t config_msix_vector;
	uint16_t num_queues;
	uint8_t device_status;
	uint8_t config_generation;
	/* about a specific virtqueue */
	uint16_t queue_select;
	uint16_t queue_size;
	uint16_t queue_msix_vector;
	uint16_t queue_enable;
	uint16_t queue_notify_off;
	uint64_t queue_desc;
	uint64_t queue_driver;
	uint64_t queue_device;
	uint16_t queue_notify_data;
	uint16_t queue_reset;
};
_Static_assert(offsetof(struct virtio_pci_common_cfg, queue_desc) == 32 &&
	       offsetof(struct virtio_pci_common_cfg, queue_reset) == 58, "4.1.4.3 layout");

#define VIRTIO_MSI_NO_VECTOR 0xffff /* 4.1.4.3: no MSI-X vector for this queue / config */

/* 2.7.5 The Virtqueue Descriptor Table */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
struct virtq_desc {
	uint64_t addr;  /* an IOVA (VIRTIO_F_ACCESS_PLATFORM) */
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
_Static_assert(sizeof(struct virtq_desc) == 16, "2.7.5 layout");

/* 2.7.6 The Virtqueue Available Ring: flags, idx, ring[queue size], used_event */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
struct virtq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];
};

/* 2.7.8 The Virtqueue Used Ring: flags, idx, ring[queue size] of elements, avail_event */
#define VIRTQ_USED_F_NO_NOTIFY 1
struct virtq_used_elem {
	uint32_t id;    /* head of the descriptor chain used */
	uint32_t len;   /* bytes written into the chain's device-writable buffers */
};
struct virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct virtq_used_elem ring[];
};

/* 2.7 Table "Virtqueue Part Alignment": descriptor table 16, available ring 2, used ring 4 */
#define VIRTQ_DESC_ALIGN 16
#define VIRTQ_AVAIL_ALIGN 2
#define VIRTQ_USED_ALIGN 4

/* 5.1.4 Device configuration layout */
#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_S_ANNOUNCE 2
struct virtio_net_config {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
	uint16_t mtu;
};

/* 5.1.6 Device Operation: the header before every packet (12 bytes with VERSION_1) */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE 0
struct virtio_net_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
};
_Static_assert(sizeof(struct virtio_net_hdr) == 12, "5.1.6 layout");

/* 5.1.6.5 Control Virtqueue: class, command, data, then the device-writable ack */
#define VIRTIO_NET_OK 0
#define VIRTIO_NET_ERR 1
#define VIRTIO_NET_CTRL_RX 0
#define VIRTIO_NET_CTRL_RX_PROMISC 0
#define VIRTIO_NET_CTRL_MQ 4
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 0
struct virtio_net_ctrl_hdr {
	uint8_t class;
	uint8_t command;
};

#endif /* UBDMA_VIRTIO_REGS_H */
