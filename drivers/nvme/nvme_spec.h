/*
 * nvme_spec.h - the NVMe layouts the driver uses, named as the NVM Express Base Specification
 * revision 1.4 spells them; each block cites its section.  Only facts from the specification:
 * register offsets, bit fields, opcodes, data structure offsets and status codes.
 * Everything is little endian, as the bus has it (x86 only, as the rest of ubdma).
 */
#ifndef UBDMA_DRIVERS_NVME_SPEC_H
#define UBDMA_DRIVERS_NVME_SPEC_H

#include <stdint.h>

/* ---- 3.1 Controller registers (BAR0) --------------------------------------------------- */
#define NVME_REG_CAP 0x00   /* 3.1.1 Controller Capabilities, 64 bit */
#define NVME_REG_VS 0x08    /* 3.1.2 Version */
#define NVME_REG_INTMS 0x0c /* 3.1.3 Interrupt Mask Set */
#define NVME_REG_INTMC 0x10 /* 3.1.4 Interrupt Mask Clear */
#define NVME_REG_CC 0x14    /* 3.1.5 Controller Configuration */
#define NVME_REG_CSTS 0x1c  /* 3.1.6 Controller Status */
#define NVME_REG_AQA 0x24   /* 3.1.8 Admin Queue Attributes */
#define NVME_REG_ASQ 0x28   /* 3.1.9 Admin Submission Queue Base Address, 64 bit */
#define NVME_REG_ACQ 0x30   /* 3.1.10 Admin Completion Queue Base Address, 64 bit */
#define NVME_REG_DBS 0x1000 /* 3.1.24 SQyTDBL / 3.1.25 CQyHDBL start here */

/* 3.1.1 CAP fields */
#define NVME_CAP_MQES(c) ((unsigned)((c) & 0xffff))	    /* Maximum Queue Entries Supported, 0's based */
#define NVME_CAP_CQR(c) ((unsigned)(((c) >> 16) & 0x1))	    /* Contiguous Queues Required */
#define NVME_CAP_TO(c) ((unsigned)(((c) >> 24) & 0xff))	    /* Timeout, 500 ms units */
#define NVME_CAP_DSTRD(c) ((unsigned)(((c) >> 32) & 0xf))   /* Doorbell Stride: 2 ^ (2 + DSTRD) bytes */
#define NVME_CAP_CSS(c) ((unsigned)(((c) >> 37) & 0xff))    /* Command Sets Supported */
#define NVME_CAP_CSS_NVM 0x01				    /* bit 37: NVM command set */
#define NVME_CAP_MPSMIN(c) ((unsigned)(((c) >> 48) & 0xf))  /* Memory Page Size Minimum: 2 ^ (12 + MPSMIN) */
#define NVME_CAP_MPSMAX(c) ((unsigned)(((c) >> 52) & 0xf))

/* 3.1.2 VS fields */
#define NVME_VS_MJR(v) ((v) >> 16)
#define NVME_VS_MNR(v) (((v) >> 8) & 0xff)
#define NVME_VS_TER(v) ((v) & 0xff)

/* 3.1.5 CC fields */
#define NVME_CC_EN (1u << 0)		 /* Enable */
#define NVME_CC_CSS(x) ((uint32_t)(x) << 4) /* I/O Command Set Selected: 000b NVM */
#define NVME_CC_MPS(x) ((uint32_t)(x) << 7) /* Memory Page Size: 2 ^ (12 + MPS) */
#define NVME_CC_AMS(x) ((uint32_t)(x) << 11) /* Arbitration Mechanism Selected: 000b round robin */
#define NVME_CC_SHN_MASK (3u << 14)	 /* Shutdown Notification */
#define NVME_CC_SHN_NORMAL (1u << 14)
#define NVME_CC_SHN_ABRUPT (2u << 14)
#define NVME_CC_IOSQES(x) ((uint32_t)(x) << 16) /* I/O SQ Entry Size: 2 ^ n bytes */
#define NVME_CC_IOCQES(x) ((uint32_t)(x) << 20) /* I/O CQ Entry Size: 2 ^ n bytes */

/* 3.1.6 CSTS fields */
#define NVME_CSTS_RDY (1u << 0) /* Ready */
#define NVME_CSTS_CFS (1u << 1) /* Controller Fatal Status */
#define NVME_CSTS_SHST(s) (((s) >> 2) & 3u) /* Shutdown Status */
#define NVME_CSTS_SHST_NORMAL 0u
#define NVME_CSTS_SHST_OCCURRING 1u
#define NVME_CSTS_SHST_COMPLETE 2u

/* 3.1.8 AQA fields: sizes are 0's based */
#define NVME_AQA_ASQS(n) ((uint32_t)(n) & 0xfff)
#define NVME_AQA_ACQS(n) (((uint32_t)(n) & 0xfff) << 16)

/* 3.1.24, 3.1.25: offsets of the doorbells of queue y */
#define NVME_SQ_TDBL(y, dstrd) (NVME_REG_DBS + (2u * (y)) * (4u << (dstrd)))
#define NVME_CQ_HDBL(y, dstrd) (NVME_REG_DBS + (2u * (y) + 1u) * (4u << (dstrd)))

/* 4.3 Physical Region Page: the driver uses 4 KiB memory pages (CC.MPS = 0) */
#define NVME_PAGE 4096u
#define NVME_PAGE_SHIFT 12

/* ---- 4.2 Submission Queue Entry, 64 bytes ------------------------------------------------ */
struct nvme_sqe {
	uint32_t cdw0;	    /* OPC 7:0, FUSE 9:8, PSDT 15:14, CID 31:16 */
	uint32_t nsid;	    /* Namespace Identifier */
	uint32_t cdw2, cdw3;
	uint64_t mptr;	    /* Metadata Pointer */
	union {		    /* Data Pointer */
		struct {
			uint64_t prp1, prp2; /* 4.3 PRP Entry 1 and 2 */
		};
		uint8_t sgl1[16];    /* 4.4 SGL Entry 1 */
	};
	uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
#define NVME_CDW0(opc, psdt, cid) ((uint32_t)(opc) | (uint32_t)(psdt) << 14 | (uint32_t)(cid) << 16)
#define NVME_PSDT_PRP 0u /* 00b: PRPs */
#define NVME_PSDT_SGL 1u /* 01b: SGLs, MPTR the address of a contiguous buffer */

/* ---- 4.4 Scatter Gather List descriptor, 16 bytes ---------------------------------------- */
struct nvme_sgl_desc {
	uint64_t addr;
	uint32_t len;
	uint8_t rsvd[3];
	uint8_t id;	    /* SGL Identifier: Type 7:4, Sub Type 3:0 (0h: address) */
};
#define NVME_SGL_DATA_BLOCK 0x00   /* type 0h */
#define NVME_SGL_SEGMENT 0x20      /* type 2h: points at the next segment, more follow */
#define NVME_SGL_LAST_SEGMENT 0x30 /* type 3h */
/* 4.3: a PRP list page holds 512 entries; the last one of a page that is not the list's last
 * points at the next page instead of at data */
#define NVME_PRP_PER_PAGE (NVME_PAGE / 8u)
/* 4.4: a page of the driver's SGL segments holds 256 descriptors; one that is not the last ends
 * with a Segment / Last Segment descriptor for the next */
#define NVME_SGL_PER_PAGE (NVME_PAGE / 16u)

/* ---- 4.6 Completion Queue Entry, 16 bytes ------------------------------------------------ */
struct nvme_cqe {
	uint32_t dw0;	    /* command specific */
	uint32_t dw1;
	uint16_t sqhd;	    /* SQ Head Pointer */
	uint16_t sqid;	    /* SQ Identifier */
	uint16_t cid;	    /* Command Identifier */
	uint16_t status;    /* bit 0: Phase Tag (P); 15:1: Status Field (4.6.1) */
};
/* 4.6.1 Status Field: SC 7:0, SCT 10:8, CRD 12:11, M 13, DNR 14 */
#define NVME_SF_SC(sf) ((sf) & 0xffu)
#define NVME_SF_SCT(sf) (((sf) >> 8) & 0x7u)
#define NVME_SF_DNR (1u << 14)
#define NVME_SCT_GENERIC 0
#define NVME_SCT_CMD_SPECIFIC 1
#define NVME_SCT_MEDIA 2
#define NVME_SCT_PATH 3
/* 4.6.1.2.1 Generic Command Status values (SCT 0) */
#define NVME_SC_SUCCESS 0x00
#define NVME_SC_INVALID_OPCODE 0x01
#define NVME_SC_INVALID_FIELD 0x02
#define NVME_SC_CID_CONFLICT 0x03
#define NVME_SC_DATA_XFER_ERROR 0x04
#define NVME_SC_ABORTED_POWER_LOSS 0x05
#define NVME_SC_INTERNAL 0x06
#define NVME_SC_ABORT_REQ 0x07
#define NVME_SC_ABORT_SQ_DELETION 0x08
#define NVME_SC_INVALID_NS 0x0b
#define NVME_SC_INVALID_SGL_COUNT 0x0e
#define NVME_SC_SGL_LENGTH_INVALID 0x0f
#define NVME_SC_SGL_TYPE_INVALID 0x11
#define NVME_SC_PRP_OFFSET_INVALID 0x13
#define NVME_SC_LBA_RANGE 0x80	    /* NVM command set: LBA Out of Range */
#define NVME_SC_CAP_EXCEEDED 0x81   /* Capacity Exceeded */
#define NVME_SC_NS_NOT_READY 0x82   /* Namespace Not Ready */
#define NVME_SC_RESERVATION 0x83    /* Reservation Conflict */
/* 4.6.1.2.2 Command Specific Status values (SCT 1) */
#define NVME_SC_INVALID_QID 0x01
#define NVME_SC_INVALID_QSIZE 0x02
#define NVME_SC_WRITE_TO_RO 0x82    /* NVM: Attempted Write to Read Only Range */

/* ---- 5 Admin command set: opcodes -------------------------------------------- */
#define NVME_ADM_DELETE_SQ 0x00	  /* 5.6 Delete I/O Submission Queue: CDW10 QID 15:0 */
#define NVME_ADM_CREATE_SQ 0x01	  /* 5.4 Create I/O Submission Queue */
#define NVME_ADM_DELETE_CQ 0x04	  /* 5.5 Delete I/O Completion Queue: CDW10 QID 15:0 */
#define NVME_ADM_CREATE_CQ 0x05	  /* 5.3 Create I/O Completion Queue */
#define NVME_ADM_IDENTIFY 0x06	  /* 5.15 Identify */
#define NVME_ADM_SET_FEATURES 0x09 /* 5.21 Set Features */

/* 5.3 / 5.4: CDW10 QSIZE 31:16 (0's based), QID 15:0 */
#define NVME_QCDW10(qsize, qid) (((uint32_t)(qsize) - 1u) << 16 | (uint32_t)(qid))
/* 5.3: CDW11 IV 31:16, IEN bit 1, PC bit 0 */
#define NVME_CQ_CDW11(iv, ien) ((uint32_t)(iv) << 16 | (ien) << 1 | 1u)
/* 5.4: CDW11 CQID 31:16, QPRIO 2:1 (ignored under round robin), PC bit 0 */
#define NVME_SQ_CDW11(cqid) ((uint32_t)(cqid) << 16 | 1u)

/* 5.15: CDW10 CNS 7:0 */
#define NVME_CNS_NS 0x00	    /* Identify Namespace (NVM command set) */
#define NVME_CNS_CTRL 0x01	    /* Identify Controller */
#define NVME_CNS_ACTIVE_NS 0x02	    /* Active Namespace ID list above NSID, 1024 entries */

/* 5.15.2 Identify Controller data structure: byte offsets */
#define NVME_IDC_VID 0	    /* 1:0 PCI Vendor ID */
#define NVME_IDC_SSVID 2    /* 3:2 PCI Subsystem Vendor ID */
#define NVME_IDC_SN 4	    /* 23:4 Serial Number, ASCII */
#define NVME_IDC_MN 24	    /* 63:24 Model Number, ASCII */
#define NVME_IDC_FR 64	    /* 71:64 Firmware Revision, ASCII */
#define NVME_IDC_MDTS 77    /* Maximum Data Transfer Size: 2 ^ MDTS units of CAP.MPSMIN; 0 none */
#define NVME_IDC_SQES 512   /* Submission Queue Entry Size: min 3:0, max 7:4 (2 ^ n) */
#define NVME_IDC_CQES 513   /* Completion Queue Entry Size */
#define NVME_IDC_NN 516	    /* 519:516 Number of Namespaces */
#define NVME_IDC_ONCS 520   /* 521:520 Optional NVM Command Support */
#define NVME_IDC_VWC 525    /* Volatile Write Cache */
#define NVME_IDC_SGLS 536   /* 539:536 SGL Support */
#define NVME_ONCS_DSM (1u << 2)	  /* Dataset Management */
#define NVME_ONCS_WZ (1u << 3)	  /* Write Zeroes */
#define NVME_SGLS_SUPPORT(s) ((s) & 3u) /* 00b none, 01b byte aligned, 10b dword aligned */

/* 5.15.2 Identify Namespace data structure, NVM command set: byte offsets */
#define NVME_IDN_NSZE 0	    /* 7:0 Namespace Size, logical blocks */
#define NVME_IDN_NCAP 8	    /* 15:8 Namespace Capacity */
#define NVME_IDN_NUSE 16    /* 23:16 Namespace Utilization */
#define NVME_IDN_NLBAF 25   /* Number of LBA Formats, 0's based */
#define NVME_IDN_FLBAS 26   /* Formatted LBA Size: 3:0 the LBA format in use */
#define NVME_IDN_LBAF 128   /* 191:128 LBA Format 0..15, 4 bytes each: MS 15:0, LBADS 23:16 */

/* 5.21.1.7 Number of Queues (Feature Identifier 07h): CDW11 and DW0, both 0's based */
#define NVME_FEAT_NUM_QUEUES 0x07
#define NVME_NQ_CDW11(nsq, ncq) (((uint32_t)(ncq) - 1u) << 16 | ((uint32_t)(nsq) - 1u))

/* ---- 6 NVM command set: opcodes ---------------------------------------------- */
#define NVME_CMD_FLUSH 0x00	   /* 6.8 Flush */
#define NVME_CMD_WRITE 0x01	   /* 6.15 Write */
#define NVME_CMD_READ 0x02	   /* 6.9 Read */
#define NVME_CMD_WRITE_ZEROES 0x08 /* 6.17 Write Zeroes */
#define NVME_CMD_DSM 0x09	   /* 6.7 Dataset Management */
/* 6.9 / 6.15 / 6.17: CDW10-11 SLBA, CDW12 NLB 15:0 (0's based) */
#define NVME_NLB_MAX 65536u
/* 6.7: CDW10 NR 7:0 (0's based ranges), CDW11 AD bit 2 (Attribute - Deallocate) */
#define NVME_DSM_AD (1u << 2)
struct nvme_dsm_range { /* 6.7: Dataset Management range, 16 bytes */
	uint32_t cattr;	  /* Context Attributes */
	uint32_t nlb;	  /* Length in logical blocks (not 0's based) */
	uint64_t slba;	  /* Starting LBA */
};

_Static_assert(sizeof(struct nvme_sqe) == 64, "4.2: a submission queue entry is 64 bytes");
_Static_assert(sizeof(struct nvme_cqe) == 16, "4.6: a completion queue entry is 16 bytes");
_Static_assert(sizeof(struct nvme_sgl_desc) == 16, "4.4: an SGL descriptor is 16 bytes");
_Static_assert(sizeof(struct nvme_dsm_range) == 16, "6.7: a range is 16 bytes");

#endif /* UBDMA_DRIVERS_NVME_SPEC_H */
