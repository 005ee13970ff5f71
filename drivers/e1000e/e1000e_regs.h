/*
 * e1000e_regs.h - the 82574L registers, fields and descriptor layouts this driver uses, named as
 * Intel's "82574 GbE Controller Family Datasheet" (317694) spells them.  Section numbers refer to
 * that datasheet (chapter 10 "Programming Interface" for registers, chapter 7 "Inline Functions"
 * for descriptors, chapter 4 "Initialization" for the sequences, chapter 6 for the NVM map).
 * Offsets are into BAR0, the memory-mapped register space (128 KiB).
 */
#ifndef UBDMA_DRIVERS_E1000E_REGS_H
#define UBDMA_DRIVERS_E1000E_REGS_H

#include <stdint.h>

/* ---- 10.2.2 General registers */
#define CTRL 0x00000            /* 10.2.2.1 Device Control */
#define CTRL_FD (1u << 0)       /*   full duplex */
#define CTRL_GIO_MASTER_DISABLE (1u << 2)
#define CTRL_ASDE (1u << 5)     /*   auto-speed detection enable */
#define CTRL_SLU (1u << 6)      /*   set link up */
#define CTRL_FRCSPD (1u << 11)  /*   force speed */
#define CTRL_FRCDPLX (1u << 12) /*   force duplex */
#define CTRL_RST (1u << 26)     /*   device reset (self-clearing) */
#define CTRL_VME (1u << 30)     /*   VLAN mode enable */
#define CTRL_PHY_RST (1u << 31)

#define STATUS 0x00008          /* 10.2.2.2 Device Status */
#define STATUS_FD (1u << 0)
#define STATUS_LU (1u << 1)     /*   link up */
#define STATUS_SPEED_SHIFT 6    /*   00 10 Mb/s, 01 100 Mb/s, 1x 1000 Mb/s */
#define STATUS_SPEED_MASK (3u << 6)
#define STATUS_GIO_MASTER_ENABLE (1u << 19)

#define EEC 0x00010             /* 10.2.2.3 EEPROM/Flash Control */
#define EEC_AUTO_RD (1u << 9)   /*   NVM auto-read done */

#define EERD 0x00014            /* 10.2.2.4 EEPROM Read */
#define EERD_START (1u << 0)
#define EERD_DONE (1u << 1)
#define EERD_ADDR_SHIFT 2       /*   word address, bits 15:2 */
#define EERD_DATA_SHIFT 16      /*   read data, bits 31:16 */

#define CTRL_EXT 0x00018        /* 10.2.2.5 Extended Device Control */

/* ---- 10.2.4 Interrupt registers (all masked: this driver polls) */
#define ICR 0x000C0             /* 10.2.4.1 Interrupt Cause Read (clear on read) */
#define IMS 0x000D0             /* 10.2.4.4 Interrupt Mask Set/Read */
#define IMC 0x000D8             /* 10.2.4.5 Interrupt Mask Clear */
#define IMC_ALL 0xFFFFFFFFu

/* ---- 10.2.5 Receive registers */
#define RCTL 0x00100            /* 10.2.5.1 Receive Control */
#define RCTL_EN (1u << 1)
#define RCTL_SBP (1u << 2)      /*   store bad packets */
#define RCTL_UPE (1u << 3)      /*   unicast promiscuous */
#define RCTL_MPE (1u << 4)      /*   multicast promiscuous */
#define RCTL_LPE (1u << 5)      /*   long packet enable (off: 1522 bytes at most) */
#define RCTL_LBM_MASK (3u << 6) /*   loopback mode: 00 normal */
#define RCTL_RDMTS_MASK (3u << 8)
#define RCTL_DTYP_MASK (3u << 10) /* descriptor type: 00 legacy */
#define RCTL_BAM (1u << 15)     /*   broadcast accept */
#define RCTL_BSIZE_MASK (3u << 16) /* with BSEX 0: 00 = 2048 bytes */
#define RCTL_BSIZE_2048 (0u << 16)
#define RCTL_BSEX (1u << 25)
#define RCTL_SECRC (1u << 26)   /*   strip Ethernet CRC */

#define RFCTL 0x05008           /* 10.2.5.x Receive Filter Control */
#define RFCTL_EXSTEN (1u << 15) /* extended status enable: cleared -> legacy descriptors */

#define RDBAL 0x02800           /* 10.2.5.x Receive Descriptor Base Address Low (queue 0) */
#define RDBAH 0x02804           /*   ... High */
#define RDLEN 0x02808           /*   ring length in bytes: a multiple of 128 */
#define RDH 0x02810             /*   head (hardware) */
#define RDT 0x02818             /*   tail (software: last descriptor given to hardware + 1) */
#define RDTR 0x02820            /*   receive delay timer: 0 = write back at once */
#define RXDCTL 0x02828          /*   receive descriptor control */
#define RADV 0x0282C            /*   receive absolute delay */

#define RAL0 0x05400            /* 10.2.5.x Receive Address Low / High, entry 0 */
#define RAH0 0x05404
#define RAH_AV (1u << 31)       /*   address valid */
#define MTA 0x05200             /* 10.2.5.x Multicast Table Array, 128 dwords */
#define MTA_ENTRIES 128

/* ---- 10.2.6 Transmit registers */
#define TCTL 0x00400            /* 10.2.6.1 Transmit Control */
#define TCTL_EN (1u << 1)
#define TCTL_PSP (1u << 3)      /*   pad short packets (to 64 bytes with FCS) */
#define TCTL_CT_SHIFT 4         /*   collision threshold: 0x0F recommended */
#define TCTL_COLD_SHIFT 12      /*   collision distance: 0x3F for full duplex */
#define TCTL_RTLC (1u << 24)    /*   retransmit on late collision */

#define TIPG 0x00410            /* 10.2.6.x Transmit IPG: IPGT 8, IPGR1 8, IPGR2 6 (IEEE 802.3) */
#define TIPG_DEFAULT (8u | (8u << 10) | (6u << 20))

#define TDBAL 0x03800           /* 10.2.6.x Transmit Descriptor Base Address Low (queue 0) */
#define TDBAH 0x03804
#define TDLEN 0x03808           /*   a multiple of 128 */
#define TDH 0x03810
#define TDT 0x03818
#define TIDV 0x03820            /*   transmit interrupt delay */
#define TXDCTL 0x03828

/* ---- 10.2.7 Statistics registers: 32 bits, clear on read; the 64-bit octet counters are read
 * low then high. */
#define CRCERRS 0x04000
#define MPC 0x04010
#define RLEC 0x04040
#define GPRC 0x04074
#define BPRC 0x04078
#define MPRC 0x0407C
#define GPTC 0x04080
#define GORCL 0x04088
#define GORCH 0x0408C
#define GOTCL 0x04090
#define GOTCH 0x04094
#define RNBC 0x040A0
#define RUC 0x040A4
#define ROC 0x040AC
#define TORL 0x040C0
#define TORH 0x040C4
#define TOTL 0x040C8
#define TOTH 0x040CC
#define TPR 0x040D0
#define TPT 0x040D4
#define STATS_FIRST 0x04000     /* the whole statistics block, read once to clear it */
#define STATS_LAST 0x04124

/* ---- 6.1 NVM map: words 0-2 hold the Ethernet (MAC) address, low byte first */
#define NVM_MAC_WORD0 0x00

/* ---- 7.1.4 Legacy receive descriptor (16 bytes; RFCTL.EXTEN = 0, RCTL.DTYP = 00) */
struct rdesc {
	uint64_t buffer_addr;   /* written by software */
	uint16_t length;        /* written back: bytes in the buffer (CRC stripped with SECRC) */
	uint16_t csum;          /*   packet checksum */
	uint8_t status;         /*   RDESC.STATUS */
	uint8_t errors;         /*   RDESC.ERRORS */
	uint16_t special;       /*   VLAN tag */
};
#define RDESC_STATUS_DD (1u << 0)  /* descriptor done */
#define RDESC_STATUS_EOP (1u << 1) /* end of packet */
/* RDESC.ERRORS: CE (CRC/alignment) bit 0, SE (symbol) 1, SEQ 2, CXE 4, TCPE 5, IPE 6, RXE 7.
 * TCPE and IPE are checksum results (off here: RXCSUM not enabled); the others mean a bad frame. */
#define RDESC_ERRORS_FRAME 0x97u

/* ---- 7.2.10.1 Legacy transmit descriptor (16 bytes; TDESC.CMD.DEXT = 0) */
struct tdesc {
	uint64_t buffer_addr;
	uint16_t length;        /* bytes to send from the buffer */
	uint8_t cso;            /* checksum offset (unused) */
	uint8_t cmd;            /* TDESC.CMD */
	uint8_t sta;            /* TDESC.STA (low nibble), written back */
	uint8_t css;            /* checksum start (unused) */
	uint16_t special;
};
#define TDESC_CMD_EOP (1u << 0)  /* end of packet */
#define TDESC_CMD_IFCS (1u << 1) /* insert FCS */
#define TDESC_CMD_RS (1u << 3)   /* report status: write DD back */
#define TDESC_CMD_DEXT (1u << 5) /* extension: 0 = legacy */
#define TDESC_STA_DD (1u << 0)   /* descriptor done */

_Static_assert(sizeof(struct rdesc) == 16, "7.1.4: a legacy receive descriptor is 16 bytes");
_Static_assert(sizeof(struct tdesc) == 16, "7.2.10.1: a legacy transmit descriptor is 16 bytes");

/* 4.6.5 / 4.6.6: descriptor rings are 128-byte aligned and a multiple of 128 bytes long. */
#define RING_ALIGN 128

#endif /* UBDMA_DRIVERS_E1000E_REGS_H */
