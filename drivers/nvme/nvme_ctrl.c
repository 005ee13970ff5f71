/*
 * nvme_ctrl.c - the controller: bring-up (NVMe 1.4, 7.6.1), admin commands, namespaces, queue
 * pair creation and deletion, shutdown (7.6.2) and reset (7.3), on the public ubdma API only.
 *
 * Bring-up: read CAP (3.1.1) and VS (3.1.2); if CC.EN is set, clear it and wait for CSTS.RDY to
 * clear (a controller reset, 7.3.2); program AQA/ASQ/ACQ (3.1.8-3.1.10) with admin queues in
 * ubdma_mem_alloc() memory; turn bus mastering on; set CC (3.1.5: NVM command set, 4 KiB pages,
 * round robin, 64-byte SQ and 16-byte CQ entries) with EN, wait for CSTS.RDY (CAP.TO bounds the
 * wait); Identify Controller (5.15, CNS 01h), the Active Namespace list (CNS 02h) and each
 * namespace (CNS 00h); Set Features Number of Queues (5.21.1.7).  The data tags are made from
 * what Identify said (MDTS, SGLS).  I/O queue pairs are made on demand: Create I/O CQ (5.3) then
 * Create I/O SQ (5.4); deleted SQ first (5.6) then CQ (5.5).
 *
 * Admin commands run one at a time under admin_lock; every other call of this file is not on the
 * I/O path and may block.  Every function undoes what it did when it fails.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvme_int.h"

/* Wait until (CSTS & mask) == want; ETIMEDOUT after the controller's timeout, ENXIO on CFS. */
static int wait_csts(struct ubdma_nvme *c, uint32_t mask, uint32_t want, const char *what)
{
	uint64_t end = nvme_now_ms() + c->timeout_ms;
	uint32_t csts;

	for (;;) {
		csts = nvme_rd32(c, NVME_REG_CSTS);
		if (csts == UINT32_MAX)
			return nvme_err(ENXIO, "%s: CSTS reads all ones (the device is gone)", what);
		if ((csts & mask) == want)
			return 0;
		if ((csts & NVME_CSTS_CFS) && want != 0)
			return nvme_err(EIO, "%s: the controller reports a fatal status (CSTS %#x)", what, csts);
		if (nvme_now_ms() > end)
			return nvme_err(ETIMEDOUT, "%s: CSTS %#x after %u ms", what, csts, c->timeout_ms);
		usleep(1000);
	}
}

/* 7.3.2 Controller Level Reset through CC.EN 1 -> 0. */
static int ctrl_disable(struct ubdma_nvme *c)
{
	uint32_t cc = nvme_rd32(c, NVME_REG_CC);

	if (cc & NVME_CC_EN)
		nvme_wr32(c, NVME_REG_CC, cc & ~NVME_CC_EN);
	return wait_csts(c, NVME_CSTS_RDY, 0, "reset (CC.EN 0, waiting for CSTS.RDY 0)");
}

/* ---------------------------------------------------------------- DMA memory */

/* @len bytes of zeroed DMA memory in @nseg segments or fewer (1: contiguous), page aligned. */
static int dma_alloc(struct ubdma_nvme *c, size_t len, int nseg, ubdma_tag_t **tagp, void **vap, ubdma_map_t **mapp)
{
	ubdma_tag_t *tag;
	int err = ubdma_tag_create(ubdma_pci_dma_tag(c->dev), NVME_PAGE, 0, UBDMA_MAXADDR, UBDMA_MAXADDR,
				   len, nseg, nseg == 1 ? len : NVME_PAGE, 0, &tag);

	if (err)
		return nvme_err(err, "DMA tag for %zu bytes: %s", len, ubdma_last_error());
	if ((err = ubdma_mem_alloc(tag, vap, UBDMA_ZERO | UBDMA_COHERENT, mapp))) {
		nvme_err(err, "%zu bytes of DMA memory: %s", len, ubdma_last_error());
		ubdma_tag_destroy(tag);
		return err;
	}
	*tagp = tag;
	return 0;
}

static void dma_free(ubdma_tag_t *tag, void *va, ubdma_map_t *map)
{
	if (!tag)
		return;
	ubdma_mem_free(tag, va, map);
	ubdma_tag_destroy(tag);
}

/* The IOVA of DMA memory (it is mapped in the context: the translation map knows it). */
static int dma_iova(struct ubdma_nvme *c, const void *va, uint64_t *iova)
{
	*iova = ubdma_vtoiova(c->ctx, va);
	if (*iova == UBDMA_BAD_IOVA)
		return nvme_err(EFAULT, "DMA memory at %p has no IOVA", va);
	return 0;
}

/* ---------------------------------------------------------------- queue pairs */

static void nvme_qpair_free(struct ubdma_nvme_qpair *qp)
{
	if (!qp)
		return;
	for (unsigned i = 0; qp->reqs && i + 1u < qp->entries; i++) {
		struct nvme_req *r = &qp->reqs[i];
		if (r->map_prp)
			ubdma_map_destroy(qp->ctrl->prp_tag, r->map_prp);
		if (r->map_sgl)
			ubdma_map_destroy(qp->ctrl->sgl_tag, r->map_sgl);
	}
	dma_free(qp->ltag, qp->lmem, qp->lmap);
	dma_free(qp->qtag, qp->qmem, qp->qmap);
	free(qp->list_iovas);
	free(qp->reqs);
	free(qp->free);
	free(qp->segs);
	free(qp);
}

/* Memory, slots and maps of a queue pair @qid with @entries entries (not yet known to the device). */
static int nvme_qpair_alloc(struct ubdma_nvme *c, uint16_t qid, unsigned entries, struct ubdma_nvme_qpair **qpp)
{
	struct ubdma_nvme_qpair *qp = calloc(1, sizeof(*qp));
	size_t sq_len = ((size_t)entries * sizeof(struct nvme_sqe) + NVME_PAGE - 1) & ~(size_t)(NVME_PAGE - 1);
	size_t cq_len = ((size_t)entries * sizeof(struct nvme_cqe) + NVME_PAGE - 1) & ~(size_t)(NVME_PAGE - 1);
	unsigned nreq = entries - 1, lp = c->list_pages ? c->list_pages : 1;
	int err;

	if (!qp)
		return nvme_err(ENOMEM, "queue pair %u: out of memory", qid);
	qp->ctrl = c;
	qp->qid = qid;
	qp->entries = (uint16_t)entries;
	qp->phase = 1;
	qp->fd = -1;
	qp->reqs = calloc(nreq, sizeof(*qp->reqs));
	qp->free = calloc(nreq, sizeof(*qp->free));
	qp->segs = calloc(c->max_segs ? c->max_segs : 1, sizeof(*qp->segs));
	qp->list_iovas = calloc((size_t)nreq * lp, sizeof(*qp->list_iovas));
	if (!qp->reqs || !qp->free || !qp->segs || !qp->list_iovas) {
		err = nvme_err(ENOMEM, "queue pair %u: out of memory", qid);
		goto fail;
	}
	/* 5.3 / 5.4 with PC = 1: each queue physically contiguous, one segment */
	if ((err = dma_alloc(c, sq_len + cq_len, 1, &qp->qtag, &qp->qmem, &qp->qmap)))
		goto fail;
	qp->sq = qp->qmem;
	qp->cq = (volatile struct nvme_cqe *)((char *)qp->qmem + sq_len);
	if ((err = dma_iova(c, qp->sq, &qp->sq_iova)) || (err = dma_iova(c, (const void *)qp->cq, &qp->cq_iova)))
		goto fail;
	/* lp list pages a slot.  One page a slot: each its own segment.  More: one IOVA-contiguous
	 * block, so that a slot's SGL descriptors form one segment (4.4 puts no page limit on a
	 * segment; QEMU 7.2 misreads chains of three segments or more) while PRP lists, which may
	 * not cross a page, are still chained page by page (4.3) */
	if ((err = dma_alloc(c, (size_t)nreq * lp * NVME_PAGE, lp > 1 ? 1 : (int)nreq, &qp->ltag, &qp->lmem,
			     &qp->lmap)))
		goto fail;
	for (unsigned i = 0; i < nreq; i++) {
		struct nvme_req *r = &qp->reqs[i];
		r->list = (char *)qp->lmem + (size_t)i * lp * NVME_PAGE;
		for (unsigned k = 0; k < lp; k++)
			if ((err = dma_iova(c, (char *)r->list + (size_t)k * NVME_PAGE, &qp->list_iovas[i * lp + k])))
				goto fail;
		r->list_iovas = &qp->list_iovas[i * lp];
		r->list_iova = r->list_iovas[0];
		r->list_contig = 1;
		for (unsigned k = 1; k < lp; k++)
			r->list_contig &= r->list_iovas[k] == r->list_iova + (uint64_t)k * NVME_PAGE;
		if (c->prp_tag && (err = ubdma_map_create(c->prp_tag, 0, &r->map_prp))) {
			nvme_err(err, "map for queue %u: %s", qid, ubdma_last_error());
			goto fail;
		}
		if (c->sgl_tag && (err = ubdma_map_create(c->sgl_tag, 0, &r->map_sgl))) {
			nvme_err(err, "map for queue %u: %s", qid, ubdma_last_error());
			goto fail;
		}
		qp->free[i] = (uint16_t)(nreq - 1 - i); /* CID 0 on top */
	}
	qp->nfree = nreq;
	qp->sq_db = (volatile uint32_t *)(c->bar + NVME_SQ_TDBL(qid, c->dstrd));
	qp->cq_db = (volatile uint32_t *)(c->bar + NVME_CQ_HDBL(qid, c->dstrd));
	*qpp = qp;
	return 0;
fail:
	nvme_qpair_free(qp);
	return err;
}

/* ---------------------------------------------------------------- admin commands */

struct admin_wait {
	int done;
	struct ubdma_nvme_cpl cpl;
};

static void admin_cb(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct admin_wait *w = arg;

	w->cpl = *cpl;
	w->done = 1;
}

/* Run one admin command to completion with admin_lock held; 0, the command's errno (status in
 * *sfp), or ETIMEDOUT. */
int nvme_admin_exec_locked(struct ubdma_nvme *c, struct nvme_sqe *cmd, uint32_t *dw0, uint16_t *sfp)
{
	struct admin_wait w = { 0 };
	int err;

	if ((err = nvme_submit_raw(c->admin, cmd, admin_cb, &w)))
		return err;
	uint64_t end = nvme_now_ms() + c->timeout_ms;
	for (unsigned spins = 0; !w.done; spins++) {
		ubdma_nvme_poll(c->admin, 0, NULL);
		if (w.done)
			break;
		if ((spins & 63) == 63) {
			/* the kernel's request for the device, all ones (gone: ENXIO), CFS (the command is
			 * lost: EIO, and the next check resets), or no completion in time */
			uint32_t csts = nvme_check_fatal(c);
			if (nvme_check_notify(c, 1))
				return nvme_err(ENXIO, "admin opcode %#x: the controller is gone or failed",
						cmd->cdw0 & 0xff);
			if (csts & NVME_CSTS_CFS)
				return nvme_err(EIO, "admin opcode %#x: the controller reports a fatal status "
						"(CSTS %#x)", cmd->cdw0 & 0xff, csts);
			if (nvme_now_ms() > end) {
				c->state = NVME_FAILED;
				return nvme_err(ETIMEDOUT, "admin opcode %#x: no completion in %u ms: the controller "
						"is failed", cmd->cdw0 & 0xff, c->timeout_ms);
			}
			usleep(50);
		}
	}
	if (sfp)
		*sfp = w.cpl.status;
	if (dw0)
		*dw0 = w.cpl.dw0;
	if (w.cpl.status)
		err = nvme_err(w.cpl.error ? w.cpl.error : EIO, "admin opcode %#x failed: %s (status %#x)",
			       cmd->cdw0 & 0xff, ubdma_nvme_strstatus(w.cpl.status), w.cpl.status);
	return err;
}

int nvme_admin_exec(struct ubdma_nvme *c, struct nvme_sqe *cmd, uint32_t *dw0, uint16_t *sfp)
{
	pthread_mutex_lock(&c->admin_lock);
	int err = nvme_admin_exec_locked(c, cmd, dw0, sfp);
	pthread_mutex_unlock(&c->admin_lock);
	return err;
}

#define admin_exec nvme_admin_exec

/* 5.15 Identify into the admin data page. */
static int identify(struct ubdma_nvme *c, uint8_t cns, uint32_t nsid)
{
	struct nvme_sqe e = { .cdw0 = NVME_ADM_IDENTIFY, .nsid = nsid, .prp1 = c->dbuf_iova, .cdw10 = cns };

	memset(c->dbuf, 0, NVME_PAGE);
	return admin_exec(c, &e, NULL, NULL);
}

static void copy_ascii(char *dst, const uint8_t *src, size_t n)
{
	memcpy(dst, src, n);
	dst[n] = 0;
	while (n && (dst[n - 1] == ' ' || dst[n - 1] == 0))
		dst[--n] = 0;
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* 5.15 CNS 01h: the controller's identity and limits. */
static int identify_ctrl(struct ubdma_nvme *c)
{
	const uint8_t *d = c->dbuf;
	int err = identify(c, NVME_CNS_CTRL, 0);

	if (err)
		return err;
	struct ubdma_nvme_info *in = &c->info;
	in->vid = le16(d + NVME_IDC_VID);
	in->ssvid = le16(d + NVME_IDC_SSVID);
	copy_ascii(in->sn, d + NVME_IDC_SN, 20);
	copy_ascii(in->mn, d + NVME_IDC_MN, 40);
	copy_ascii(in->fr, d + NVME_IDC_FR, 8);
	in->mdts = d[NVME_IDC_MDTS];
	in->nn = le32(d + NVME_IDC_NN);
	in->oncs = le16(d + NVME_IDC_ONCS);
	in->vwc = d[NVME_IDC_VWC];
	in->sgls = le32(d + NVME_IDC_SGLS);
	/* SQES / CQES: 3:0 the required (minimum) size; the driver uses 64 and 16 bytes */
	if ((d[NVME_IDC_SQES] & 0xf) > 6 || (d[NVME_IDC_SQES] >> 4) < 6 || (d[NVME_IDC_CQES] & 0xf) > 4 ||
	    (d[NVME_IDC_CQES] >> 4) < 4)
		return nvme_err(ENOTSUP, "the controller does not take 64-byte SQ / 16-byte CQ entries "
				"(SQES %#x CQES %#x)", d[NVME_IDC_SQES], d[NVME_IDC_CQES]);
	return 0;
}

/* 5.15 CNS 02h and 00h: the active namespaces and their formats. */
static int identify_namespaces(struct ubdma_nvme *c)
{
	uint32_t nn = c->info.nn < NVME_MAX_NS ? c->info.nn : NVME_MAX_NS;
	uint32_t list[1024];
	int err;

	c->nns = nn;
	if (!nn)
		return 0;
	if (!(c->ns = calloc(nn, sizeof(*c->ns))))
		return nvme_err(ENOMEM, "namespace table: out of memory");
	if ((err = identify(c, NVME_CNS_ACTIVE_NS, 0)))
		return err;
	memcpy(list, c->dbuf, sizeof(list));
	for (unsigned i = 0; i < 1024 && list[i]; i++) {
		uint32_t nsid = list[i];
		if (nsid > nn)
			break;
		if ((err = identify(c, NVME_CNS_NS, nsid)))
			return err;
		const uint8_t *d = c->dbuf;
		struct nvme_ns *ns = &c->ns[nsid - 1];
		unsigned fmt = d[NVME_IDN_FLBAS] & 0xf;
		uint32_t lbaf = le32(d + NVME_IDN_LBAF + 4 * fmt);
		ns->nsze = le64(d + NVME_IDN_NSZE);
		ns->ncap = le64(d + NVME_IDN_NCAP);
		ns->nuse = le64(d + NVME_IDN_NUSE);
		ns->ms = (uint16_t)(lbaf & 0xffff);
		ns->lba_shift = (lbaf >> 16) & 0xff; /* LBADS: 2 ^ n bytes */
		ns->active = ns->nsze && ns->lba_shift >= 9 && ns->lba_shift <= 16;
	}
	return 0;
}

/* 5.21.1.7 Set Features, Number of Queues: ask for n pairs; the grant is in DW0 (0's based). */
static int set_num_queues(struct ubdma_nvme *c, unsigned n, int locked)
{
	struct nvme_sqe e = { .cdw0 = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_NUM_QUEUES,
			      .cdw11 = NVME_NQ_CDW11(n, n) };
	uint32_t dw0 = 0;
	int err = locked ? nvme_admin_exec_locked(c, &e, &dw0, NULL) : admin_exec(c, &e, &dw0, NULL);

	if (err)
		return err;
	unsigned nsq = (dw0 & 0xffff) + 1, ncq = (dw0 >> 16) + 1;
	c->info.io_queues = nsq < ncq ? nsq : ncq;
	if (c->info.io_queues > n) /* the grant may exceed the ask; use what was asked */
		c->info.io_queues = n;
	return 0;
}

/* The data tags: PRP rules (4.3) always, SGL rules (4.4) when they may be used. */
static int make_data_tags(struct ubdma_nvme *c)
{
	size_t mx = c->info.max_transfer;
	size_t pool = mx * 16 < (16u << 20) ? (16u << 20) : mx * 16;
	int err;

	c->max_segs = (unsigned)(mx / NVME_PAGE + 1);
	/* list pages of a slot: PRP entries after PRP1 (511 a page but the last, 4.3), and SGL
	 * descriptors when SGLs may be used (255 a page but the last, 4.4) */
	unsigned e = c->max_segs - 1, lp = 1;
	if (e > NVME_PRP_PER_PAGE)
		lp = 1 + (e - NVME_PRP_PER_PAGE + NVME_PRP_PER_PAGE - 2) / (NVME_PRP_PER_PAGE - 1);
	if (c->sgl_policy != UBDMA_NVME_SGL_OFF && c->max_segs > NVME_SGL_PER_PAGE) {
		unsigned ls = 1 + (c->max_segs - NVME_SGL_PER_PAGE + NVME_SGL_PER_PAGE - 2) / (NVME_SGL_PER_PAGE - 1);
		lp = ls > lp ? ls : lp;
	}
	c->list_pages = lp;
	c->info.max_segments = c->max_segs;
	c->info.list_pages = lp;
	err = ubdma_tag_create(ubdma_pci_dma_tag(c->dev), 4, NVME_PAGE, UBDMA_MAXADDR, UBDMA_MAXADDR, mx,
			       (int)c->max_segs, NVME_PAGE, UBDMA_KEEP_PG_OFFSET, &c->prp_tag);
	if (err)
		return nvme_err(err, "PRP tag: %s", ubdma_last_error());
	ubdma_tag_set_bounce_limit(c->prp_tag, pool);
	if (c->sgl_policy == UBDMA_NVME_SGL_OFF)
		return 0;
	/* SGLS 01b: no alignment; 10b: dword alignment and granularity (then STRICT keeps pieces
	 * whole pages or bounces them, so every descriptor length stays a multiple of 4) */
	size_t align = NVME_SGLS_SUPPORT(c->info.sgls) == 2 ? 4 : 1;
	err = ubdma_tag_create(ubdma_pci_dma_tag(c->dev), align, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, mx,
			       (int)c->max_segs, UINT32_MAX & ~(uint32_t)3, align == 4 ? UBDMA_STRICT : 0, &c->sgl_tag);
	if (err)
		return nvme_err(err, "SGL tag: %s", ubdma_last_error());
	ubdma_tag_set_bounce_limit(c->sgl_tag, pool);
	return 0;
}

/* ---------------------------------------------------------------- open */

static int ctrl_enable(struct ubdma_nvme *c)
{
	int err;

	/* 3.1.8-3.1.10: admin queue sizes (0's based) and bases */
	nvme_wr32(c, NVME_REG_AQA, NVME_AQA_ASQS(NVME_ADMIN_ENTRIES - 1) | NVME_AQA_ACQS(NVME_ADMIN_ENTRIES - 1));
	nvme_wr64(c, NVME_REG_ASQ, c->admin->sq_iova);
	nvme_wr64(c, NVME_REG_ACQ, c->admin->cq_iova);
	if ((err = ubdma_pci_bus_master(c->dev, 1)))
		return nvme_err(err, "bus mastering: %s", ubdma_last_error());
	/* 3.1.5: NVM command set, 4 KiB pages, round robin, 2^6-byte SQEs, 2^4-byte CQEs */
	nvme_wr32(c, NVME_REG_CC, NVME_CC_CSS(0) | NVME_CC_MPS(0) | NVME_CC_AMS(0) | NVME_CC_IOSQES(6) |
				  NVME_CC_IOCQES(4));
	nvme_wr32(c, NVME_REG_CC, NVME_CC_CSS(0) | NVME_CC_MPS(0) | NVME_CC_AMS(0) | NVME_CC_IOSQES(6) |
				  NVME_CC_IOCQES(4) | NVME_CC_EN);
	return wait_csts(c, NVME_CSTS_RDY, NVME_CSTS_RDY, "enable (CC.EN 1, waiting for CSTS.RDY 1)");
}

/*
 * The controller part of a reset (7.3.2, then 7.6.1 again), admin_lock held: CC.EN 0 and wait for
 * CSTS.RDY 0 (the controller forgets every I/O queue and stops all DMA), the admin queue pair
 * emptied, AQA/ASQ/ACQ and CC.EN 1 again, Set Features Number of Queues as at open.  The I/O queue
 * pairs are made again by their owners (nvme_recover.c).
 */
int nvme_ctrl_reenable_locked(struct ubdma_nvme *c)
{
	struct ubdma_nvme_qpair *a = c->admin;
	int err;

	if ((err = ctrl_disable(c)))
		return err;
	nvme_qpair_cancel_all(a); /* no admin command is in flight: the lock is held */
	memset((void *)a->cq, 0, (size_t)a->entries * sizeof(struct nvme_cqe));
	a->sq_tail = a->cq_head = 0;
	a->phase = 1;
	a->cq_unacked = 0;
	a->db_pending = 0;
	if ((err = ctrl_enable(c)))
		return err;
	return set_num_queues(c, c->io_queues_asked, 1);
}

static int open_device(struct ubdma_nvme *c, const char *bdf, const struct ubdma_nvme_opts *o)
{
	int err;

	if (o->ctx) {
		c->ctx = o->ctx;
	} else {
		if ((err = ubdma_ctx_open(UBDMA_BACKEND_VFIO, &c->ctx)))
			return nvme_err(err, "VFIO context: %s", ubdma_last_error());
		c->own_ctx = 1;
	}
	if ((err = ubdma_pci_open(c->ctx, bdf, &c->dev)))
		return nvme_err(err, "open %s: %s", bdf, ubdma_last_error());
	if (!(c->bar = ubdma_pci_bar(c->dev, 0, &c->bar_len)) || c->bar_len < NVME_REG_DBS + 8)
		return nvme_err(ENOTSUP, "%s: BAR0 cannot be mapped or is too small: %s", bdf, ubdma_last_error());
	c->cap = nvme_rd64(c, NVME_REG_CAP);
	if (c->cap == UINT64_MAX)
		return nvme_err(ENXIO, "%s: CAP reads all ones", bdf);
	c->dstrd = NVME_CAP_DSTRD(c->cap);
	c->info.cap = c->cap;
	c->info.vs = nvme_rd32(c, NVME_REG_VS);
	c->info.dstrd = c->dstrd;
	c->info.max_entries = NVME_CAP_MQES(c->cap) + 1;
	if (!(NVME_CAP_CSS(c->cap) & NVME_CAP_CSS_NVM))
		return nvme_err(ENOTSUP, "%s: CAP.CSS %#x has no NVM command set", bdf, NVME_CAP_CSS(c->cap));
	if (NVME_CAP_MPSMIN(c->cap) != 0)
		return nvme_err(ENOTSUP, "%s: CAP.MPSMIN %u: 4 KiB memory pages are not supported", bdf,
				NVME_CAP_MPSMIN(c->cap));
	unsigned to = NVME_CAP_TO(c->cap) * 500u + 1000u;
	c->timeout_ms = o->admin_timeout_ms ? o->admin_timeout_ms : (to < 5000 ? 5000 : to);
	return 0;
}

static int setup_interrupts(struct ubdma_nvme *c)
{
	unsigned have = ubdma_pci_msix_count(c->dev);
	int err;

	if (!have)
		return nvme_err(ENOTSUP, "the device has no MSI-X");
	c->nvec = c->info.io_queues + 1 < have ? c->info.io_queues + 1 : have;
	if (!(c->fds = calloc(c->nvec, sizeof(int))))
		return nvme_err(ENOMEM, "eventfd table: out of memory");
	if ((err = ubdma_pci_msix_enable(c->dev, c->nvec, c->fds))) {
		free(c->fds);
		c->fds = NULL;
		return nvme_err(err, "MSI-X: %s", ubdma_last_error());
	}
	c->info.interrupts = 1;
	return 0;
}

static void ctrl_free(struct ubdma_nvme *c)
{
	nvme_watch_stop(c); /* first: the thread may be releasing the device under admin_lock */
	nvme_qpair_free(c->admin);
	c->admin = NULL;
	dma_free(c->dtag, c->dbuf, c->dmap);
	if (c->prp_tag)
		ubdma_tag_destroy(c->prp_tag);
	if (c->sgl_tag)
		ubdma_tag_destroy(c->sgl_tag);
	ubdma_pci_close(c->dev); /* also disables MSI-X and bus mastering */
	if (c->own_ctx)
		ubdma_ctx_close(c->ctx);
	pthread_mutex_destroy(&c->admin_lock);
	free(c->fds);
	free(c->qps);
	free(c->ns);
	free(c);
}

/* The first version of struct ubdma_nvme_opts ends with max_transfer (nvme.h: the size rule). */
#define NVME_OPTS_SIZE_V1 (offsetof(struct ubdma_nvme_opts, max_transfer) + sizeof(size_t))

/* The caller's options into *o, zero (the default) for every member its struct lacks. */
static int opts_copy(const struct ubdma_nvme_opts *opts, struct ubdma_nvme_opts *o)
{
	const unsigned char *b = (const void *)opts;

	memset(o, 0, sizeof(*o));
	if (!opts)
		return 0;
	if (opts->size < NVME_OPTS_SIZE_V1)
		return nvme_err(EINVAL, "opts->size is %zu: set it to sizeof(struct ubdma_nvme_opts), %zu",
				opts->size, sizeof(*o));
	for (size_t i = sizeof(*o); i < opts->size; i++)
		if (b[i])
			return nvme_err(ENOTSUP, "opts->size is %zu and byte %zu is set: this library knows "
					"%zu bytes of options, so it cannot honour a newer one",
					opts->size, i, sizeof(*o));
	memcpy(o, opts, opts->size < sizeof(*o) ? opts->size : sizeof(*o));
	return 0;
}

int ubdma_nvme_open(const char *bdf, const struct ubdma_nvme_opts *opts, ubdma_nvme_t **ctrlp)
{
	struct ubdma_nvme_opts o;
	struct ubdma_nvme *c;
	int err;

	if (ctrlp)
		*ctrlp = NULL;
	if (!bdf || !ctrlp)
		return nvme_err(EINVAL, "%s is NULL", bdf ? "ctrlp" : "bdf");
	if ((err = opts_copy(opts, &o)))
		return err;
	if (o.sgl < UBDMA_NVME_SGL_AUTO || o.sgl > UBDMA_NVME_SGL_ON || o.queue_entries == 1 ||
	    o.queue_entries > 65536 || o.io_queues > 65535 || (o.max_transfer && o.max_transfer < NVME_PAGE) ||
	    (o.reset_policy != UBDMA_NVME_RESET_FAIL && o.reset_policy != UBDMA_NVME_RESET_REQUEUE) ||
	    (o.removal_watch != UBDMA_NVME_WATCH_ON && o.removal_watch != UBDMA_NVME_WATCH_OFF))
		return nvme_err(EINVAL, "bad options: sgl %d, queue_entries %u, io_queues %u, max_transfer %zu, "
				"reset_policy %d, removal_watch %d", o.sgl, o.queue_entries, o.io_queues,
				o.max_transfer, o.reset_policy, o.removal_watch);
	if (!(c = calloc(1, sizeof(*c))))
		return nvme_err(ENOMEM, "controller: out of memory");
	pthread_mutex_init(&c->admin_lock, NULL);
	c->req_fd = c->err_fd = -1;
	drv_watch_init(&c->watch);
	c->io_timeout_ms = o.io_timeout_ms ? o.io_timeout_ms : NVME_DEFAULT_IO_TIMEOUT_MS;
	c->reset_policy = o.reset_policy;
	if ((err = open_device(c, bdf, &o)))
		goto fail;
	/* 7.6.1 step 1: reset the controller if it is enabled (a previous user may have left it so) */
	if ((err = ctrl_disable(c)))
		goto fail;
	/* admin queues and the Identify page (no data tags yet: admin commands carry PRP1 only) */
	if ((err = nvme_qpair_alloc(c, 0, NVME_ADMIN_ENTRIES, &c->admin)))
		goto fail;
	if ((err = dma_alloc(c, NVME_PAGE, 1, &c->dtag, &c->dbuf, &c->dmap)) ||
	    (err = dma_iova(c, c->dbuf, &c->dbuf_iova)))
		goto fail;
	if ((err = ctrl_enable(c)) || (err = identify_ctrl(c)) || (err = identify_namespaces(c)))
		goto fail;

	/* MDTS is in units of the minimum memory page size (CAP.MPSMIN = 0: 4 KiB) */
	size_t mx = o.max_transfer ? o.max_transfer : NVME_DEFAULT_MAX_XFER;
	if (c->info.mdts && c->info.mdts < 20 && ((size_t)NVME_PAGE << c->info.mdts) < mx)
		mx = (size_t)NVME_PAGE << c->info.mdts;
	c->info.max_transfer = mx & ~(size_t)(NVME_PAGE - 1);
	c->info.mdts_bytes = c->info.mdts && c->info.mdts < 32 ? (size_t)NVME_PAGE << c->info.mdts : 0;
	c->sgl_policy = NVME_SGLS_SUPPORT(c->info.sgls) ? o.sgl : UBDMA_NVME_SGL_OFF;
	if (o.sgl == UBDMA_NVME_SGL_ON && !NVME_SGLS_SUPPORT(c->info.sgls)) {
		err = nvme_err(ENOTSUP, "%s: SGLs were required; the controller has none (SGLS %#x)", bdf, c->info.sgls);
		goto fail;
	}
	c->info.sgl = c->sgl_policy;
	if ((err = make_data_tags(c)))
		goto fail;
	c->io_queues_asked = o.io_queues ? o.io_queues : 1;
	if ((err = set_num_queues(c, c->io_queues_asked, 0)))
		goto fail;
	if (!(c->qps = calloc(c->info.io_queues + 1u, sizeof(*c->qps)))) {
		err = nvme_err(ENOMEM, "queue table: out of memory");
		goto fail;
	}
	if (c->bar_len < NVME_CQ_HDBL(c->info.io_queues, c->dstrd) + 4) {
		err = nvme_err(ENOTSUP, "%s: BAR0 (%zu bytes) has no room for %u queues' doorbells", bdf,
			       c->bar_len, c->info.io_queues);
		goto fail;
	}
	if (o.interrupts && (err = setup_interrupts(c)))
		goto fail;
	nvme_notify_setup(c); /* surprise removal: the kernel's request and error interrupts */
	unsigned ent = o.queue_entries ? o.queue_entries : NVME_DEFAULT_ENTRIES;
	c->default_entries = ent < c->info.max_entries ? ent : c->info.max_entries;
	c->state = NVME_LIVE;
	/* and a thread that answers the request when the program makes no call (nvme_watch.c); last,
	 * so that no store above undoes a removal it saw */
	if (o.removal_watch == UBDMA_NVME_WATCH_ON && (err = nvme_watch_start(c)))
		goto fail;
	*ctrlp = c;
	return 0;
fail:
	if (c->bar && c->admin) {
		/* the sentence is about err: a reset that fails too must not replace it */
		char why[256];
		snprintf(why, sizeof(why), "%s", ubdma_nvme_last_error());
		if (ctrl_disable(c))
			nvme_err(err, "%s", why);
	}
	ctrl_free(c);
	return err;
}

/* ---------------------------------------------------------------- queue pairs */


static int delete_queue(struct ubdma_nvme *c, uint8_t opc, uint16_t qid)
{
	struct nvme_sqe e = { .cdw0 = opc, .cdw10 = qid };
	return admin_exec(c, &e, NULL, NULL);
}

/* 5.3 Create I/O Completion Queue, then 5.4 Create I/O Submission Queue on it, for a pair whose
 * memory exists (made now, or again after a controller reset).  Both under one hold of
 * admin_lock, which a reset also takes: the generation recorded is the one the queues exist in. */
int nvme_qpair_create_queues(struct ubdma_nvme_qpair *qp)
{
	struct ubdma_nvme *c = qp->ctrl;
	int err;

	struct nvme_sqe cq = { .cdw0 = NVME_ADM_CREATE_CQ, .prp1 = qp->cq_iova,
			       .cdw10 = NVME_QCDW10(qp->entries, qp->qid),
			       .cdw11 = NVME_CQ_CDW11(qp->vector, c->nvec ? 1u : 0u) };
	struct nvme_sqe sq = { .cdw0 = NVME_ADM_CREATE_SQ, .prp1 = qp->sq_iova,
			       .cdw10 = NVME_QCDW10(qp->entries, qp->qid), .cdw11 = NVME_SQ_CDW11(qp->qid) };
	struct nvme_sqe del = { .cdw0 = NVME_ADM_DELETE_CQ, .cdw10 = qp->qid };
	pthread_mutex_lock(&c->admin_lock);
	qp->gen = c->gen;
	if (!(err = nvme_admin_exec_locked(c, &cq, NULL, NULL)) && (err = nvme_admin_exec_locked(c, &sq, NULL, NULL)))
		nvme_admin_exec_locked(c, &del, NULL, NULL);
	pthread_mutex_unlock(&c->admin_lock);
	return err;
}

int ubdma_nvme_qpair_create(ubdma_nvme_t *c, unsigned entries, ubdma_nvme_qpair_t **qpp)
{
	struct ubdma_nvme_qpair *qp = NULL; /* set by nvme_qpair_alloc(); gcc -O3 cannot tell */
	unsigned qid;
	int err;

	if (qpp)
		*qpp = NULL;
	if (!c || !qpp || entries == 1)
		return nvme_err(EINVAL, "%s", !c ? "controller is NULL" : !qpp ? "qpp is NULL" : "a queue needs 2 entries or more");
	if (c->state != NVME_LIVE)
		return nvme_err(c->state == NVME_SHUTDOWN ? ESHUTDOWN : ENXIO, "the controller is %s",
				c->state == NVME_SHUTDOWN ? "shut down" : "failed");
	if (!entries)
		entries = c->default_entries;
	if (entries > c->info.max_entries)
		entries = c->info.max_entries;
	pthread_mutex_lock(&c->admin_lock);
	for (qid = 1; qid <= c->info.io_queues && c->qps[qid]; qid++)
		;
	if (qid > c->info.io_queues) {
		pthread_mutex_unlock(&c->admin_lock);
		return nvme_err(ENOSPC, "all %u granted I/O queue pairs are in use", c->info.io_queues);
	}
	c->qps[qid] = (void *)1; /* reserved */
	pthread_mutex_unlock(&c->admin_lock);

	if ((err = nvme_qpair_alloc(c, (uint16_t)qid, entries, &qp)))
		goto fail;
	unsigned iv = c->nvec ? qid % c->nvec : 0;
	if (c->nvec) {
		qp->fd = c->fds[iv];
		qp->vector = iv;
	}
	qp->timeout_ms = c->io_timeout_ms;
	if ((err = nvme_qpair_create_queues(qp)))
		goto fail_mem;
	pthread_mutex_lock(&c->admin_lock);
	c->qps[qid] = qp;
	pthread_mutex_unlock(&c->admin_lock);
	*qpp = qp;
	return 0;
fail_mem:
	nvme_qpair_free(qp);
fail:
	pthread_mutex_lock(&c->admin_lock);
	c->qps[qid] = NULL;
	pthread_mutex_unlock(&c->admin_lock);
	return err;
}

/* Delete the pair on the device: SQ first (its commands are aborted into the CQ), reap, CQ. */
static void qpair_teardown(struct ubdma_nvme_qpair *qp)
{
	struct ubdma_nvme *c = qp->ctrl;

	if (c->state != NVME_FAILED) {
		delete_queue(c, NVME_ADM_DELETE_SQ, qp->qid);
		ubdma_nvme_poll(qp, 0, NULL);
		delete_queue(c, NVME_ADM_DELETE_CQ, qp->qid);
	}
	nvme_qpair_cancel_all(qp);
}

int ubdma_nvme_qpair_destroy(ubdma_nvme_qpair_t *qp)
{
	if (!qp)
		return nvme_err(EINVAL, "queue pair is NULL");
	if (qp->outstanding)
		return nvme_err(EBUSY, "queue %u has %u commands outstanding", qp->qid, qp->outstanding);
	struct ubdma_nvme *c = qp->ctrl;
	if (c->state == NVME_LIVE)
		qpair_teardown(qp);
	pthread_mutex_lock(&c->admin_lock);
	c->qps[qp->qid] = NULL;
	pthread_mutex_unlock(&c->admin_lock);
	nvme_qpair_free(qp);
	return 0;
}

/* ---------------------------------------------------------------- shutdown and close */

int ubdma_nvme_shutdown(ubdma_nvme_t *c)
{
	int err = 0;

	if (!c)
		return nvme_err(EINVAL, "controller is NULL");
	if (c->state == NVME_SHUTDOWN)
		return 0;
	for (unsigned q = 1; c->qps && q <= c->info.io_queues; q++) {
		struct ubdma_nvme_qpair *qp = c->qps[q];
		if (!qp || qp == (void *)1)
			continue;
		if (c->state == NVME_LIVE)
			ubdma_nvme_drain(qp, (int)c->timeout_ms);
		qpair_teardown(qp);
	}
	if (c->state != NVME_FAILED) {
		/* 7.6.2: normal shutdown, CC.SHN = 01b, then CSTS.SHST = 10b */
		uint32_t cc = nvme_rd32(c, NVME_REG_CC);
		nvme_wr32(c, NVME_REG_CC, (cc & ~NVME_CC_SHN_MASK) | NVME_CC_SHN_NORMAL);
		uint64_t end = nvme_now_ms() + c->timeout_ms;
		while (NVME_CSTS_SHST(nvme_rd32(c, NVME_REG_CSTS)) != NVME_CSTS_SHST_COMPLETE) {
			if (nvme_now_ms() > end) {
				err = nvme_err(ETIMEDOUT, "shutdown: CSTS.SHST not complete after %u ms", c->timeout_ms);
				break;
			}
			usleep(1000);
		}
	}
	c->state = NVME_SHUTDOWN;
	return err;
}

int ubdma_nvme_close(ubdma_nvme_t *c)
{
	int err;

	if (!c)
		return 0; /* as free(NULL): the one rule for every close of ubdma (ubdma(3)) */
	err = ubdma_nvme_shutdown(c);
	for (unsigned q = 1; c->qps && q <= c->info.io_queues; q++) {
		if (c->qps[q] && c->qps[q] != (void *)1) {
			nvme_qpair_cancel_all(c->qps[q]);
			nvme_qpair_free(c->qps[q]);
		}
	}
	/* 7.3.2: leave it reset (CC.EN 0); its queues are then forgotten by the controller */
	if (c->bar)
		ctrl_disable(c);
	ctrl_free(c);
	return err;
}

/* ---------------------------------------------------------------- information */

const struct ubdma_nvme_info *ubdma_nvme_info(const ubdma_nvme_t *c)
{
	return c ? &c->info : NULL;
}

ubdma_pci_t *ubdma_nvme_pci(const ubdma_nvme_t *c)
{
	return c ? c->dev : NULL;
}

int ubdma_nvme_ns(const ubdma_nvme_t *c, uint32_t nsid, struct ubdma_nvme_ns_info *info)
{
	if (!c || !info)
		return nvme_err(EINVAL, "%s is NULL", c ? "info" : "controller");
	if (nsid == 0 || nsid > c->info.nn)
		return nvme_err(EINVAL, "namespace %u: the controller's are 1 to %u", nsid, c->info.nn);
	if (nsid > c->nns || !c->ns[nsid - 1].active)
		return nvme_err(ENOENT, "namespace %u is not active", nsid);
	const struct nvme_ns *ns = &c->ns[nsid - 1];
	*info = (struct ubdma_nvme_ns_info){ .nsid = nsid, .nsze = ns->nsze, .ncap = ns->ncap, .nuse = ns->nuse,
					     .lba_size = 1u << ns->lba_shift, .ms = ns->ms,
					     .size = ns->nsze << ns->lba_shift };
	return 0;
}

int ubdma_nvme_ns_next(const ubdma_nvme_t *c, uint32_t nsid, uint32_t *next)
{
	if (!c || !next)
		return nvme_err(EINVAL, "%s is NULL", c ? "next" : "controller");
	for (uint32_t n = nsid + 1; n >= 1 && n <= c->nns; n++) {
		if (c->ns[n - 1].active) {
			*next = n;
			return 0;
		}
	}
	return nvme_err(ENOENT, "no active namespace after %u", nsid);
}
