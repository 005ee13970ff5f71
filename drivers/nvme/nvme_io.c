/*
 * nvme_io.c - the I/O path: commands in, completions out, for one queue pair at a time.
 *
 * Submission (4.2, 4.3, 4.4): a free command slot is popped (its index is the CID), the data
 * buffer is loaded with ubdma_map_load_sg() on the slot's pre-created map, and the segments become
 * PRP entries or SGL descriptors.  The data tags encode the PRP rules (NVMe 1.4, 4.3): alignment 4
 * (a PRP's offset is dword aligned), boundary and maxsegsz of one 4 KiB memory page (every
 * segment lies in one page) and UBDMA_KEEP_PG_OFFSET (a bounced piece keeps its page offset), so
 * every segment but the first starts a page and every segment but the last ends one: exactly a
 * PRP1 + PRP2 / PRP list.  The list goes to the slot's own list page.  The SQ entry is written in
 * place and the tail doorbell (3.1.24) rung.
 *
 * Completion (4.6): an entry is new while its Phase Tag equals the queue's phase, which flips each
 * time the head wraps.  Its CID names the slot; the map is synced and unloaded, the slot freed
 * and the callback run.  The head doorbell (3.1.25) is written lazily: it only tells the
 * controller which CQ slots it may fill again, so the driver lets consumed entries pile up to a
 * quarter of the queue, and writes it before it sleeps on the interrupt.  A submission that
 * would make unacknowledged + outstanding exceed entries - 1 writes it first, so every command
 * in flight finds a free CQ slot and the controller never has to hold a completion back (4.1:
 * with a full CQ it may stop fetching commands).  At QD 1 that halves the MMIO writes per
 * command, each an uncached write (under QEMU, an exit into the device model).
 *
 * Neither path makes a system call, takes a lock or allocates, unless the buffer bounces (the
 * tag's bounce pool has a lock).  A queue pair belongs to one thread at a time.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "nvme_int.h"

/* Build PRP1/PRP2 (and the list) from a segment list that obeys the PRP rules (4.3). */
static int build_prp(struct nvme_req *r, const ubdma_seg_t *s, int n, struct nvme_sqe *e)
{
	e->prp1 = s[0].ds_addr;
	e->prp2 = 0;
	if (unlikely(s[0].ds_addr & 3))
		return nvme_err(EINVAL, "PRP entry 1 %#llx is not dword aligned",
				(unsigned long long)s[0].ds_addr);
	for (int i = 0; i < n; i++) {
		/* every segment but the first starts a page, every one but the last ends one */
		if (unlikely((i > 0 && (s[i].ds_addr & (NVME_PAGE - 1))) ||
			     (i < n - 1 && ((s[i].ds_addr + s[i].ds_len) & (NVME_PAGE - 1)))))
			return nvme_err(EINVAL, "segment %d [%#llx, +%llu) of %d breaks the PRP rules", i,
					(unsigned long long)s[i].ds_addr, (unsigned long long)s[i].ds_len, n);
	}
	if (n == 2) {
		e->prp2 = s[1].ds_addr;
	} else if (n > 2) {
		/* 4.3: entries fill a page; when more than one entry is left at its last slot, that
		 * slot points at the next list page (the driver's pages are chained, not contiguous) */
		uint64_t *list = r->list;
		unsigned k = 0, i = 0;
		for (int j = 1; j < n; j++) {
			if (i == NVME_PRP_PER_PAGE - 1 && n - j > 1) {
				list[i] = r->list_iovas[++k];
				list = (uint64_t *)((char *)r->list + (size_t)k * NVME_PAGE);
				i = 0;
			}
			list[i++] = s[j].ds_addr;
		}
		e->prp2 = r->list_iova;
	}
	return 0;
}

/* Build SGL1 (4.4): one Data Block descriptor; or a Last Segment pointing at the slot's list
 * when the descriptors fit one page or the slot's pages are IOVA-contiguous; else a chain of
 * segments, a page each: a page that is not the last holds 255 Data Blocks and a Segment (before
 * the last page: Last Segment) descriptor for the next page. */
static void build_sgl(struct nvme_req *r, const ubdma_seg_t *s, int n, struct nvme_sgl_desc *sgl1)
{
	if (n == 1) {
		*sgl1 = (struct nvme_sgl_desc){ .addr = s[0].ds_addr, .len = (uint32_t)s[0].ds_len,
						.id = NVME_SGL_DATA_BLOCK };
		return;
	}
	if (n <= (int)NVME_SGL_PER_PAGE || r->list_contig) {
		/* one Last Segment of n descriptors (the slot's pages are contiguous) */
		struct nvme_sgl_desc *list = r->list;
		for (int i = 0; i < n; i++)
			list[i] = (struct nvme_sgl_desc){ .addr = s[i].ds_addr, .len = (uint32_t)s[i].ds_len,
							  .id = NVME_SGL_DATA_BLOCK };
		*sgl1 = (struct nvme_sgl_desc){ .addr = r->list_iova, .len = (uint32_t)n * 16u,
						.id = NVME_SGL_LAST_SEGMENT };
		return;
	}
	unsigned left = (unsigned)n, k = 0;
	unsigned cnt = NVME_SGL_PER_PAGE;
	*sgl1 = (struct nvme_sgl_desc){ .addr = r->list_iova, .len = cnt * 16u, .id = NVME_SGL_SEGMENT };
	for (;;) {
		struct nvme_sgl_desc *list = (struct nvme_sgl_desc *)((char *)r->list + (size_t)k * NVME_PAGE);
		unsigned data = left <= NVME_SGL_PER_PAGE ? left : NVME_SGL_PER_PAGE - 1;
		for (unsigned i = 0; i < data; i++, s++)
			list[i] = (struct nvme_sgl_desc){ .addr = s->ds_addr, .len = (uint32_t)s->ds_len,
							  .id = NVME_SGL_DATA_BLOCK };
		left -= data;
		if (!left)
			return;
		cnt = left <= NVME_SGL_PER_PAGE ? left : NVME_SGL_PER_PAGE;
		list[data] = (struct nvme_sgl_desc){ .addr = r->list_iovas[++k], .len = cnt * 16u,
						     .id = left <= NVME_SGL_PER_PAGE ? NVME_SGL_LAST_SEGMENT
										     : NVME_SGL_SEGMENT };
	}
}

static int qp_unusable(struct ubdma_nvme_qpair *qp)
{
	int st = qp->ctrl->state;

	if (st == NVME_LIVE) /* reset under this pair: make its queues again first */
		return nvme_qpair_recover(qp);
	if (st == NVME_RESETTING)
		return nvme_err(EAGAIN, "the controller is being reset: poll, then submit again");
	return st == NVME_SHUTDOWN ? nvme_err(ESHUTDOWN, "the controller was shut down")
				   : nvme_err(ENXIO, "the controller failed or is gone");
}

static inline int qp_usable(struct ubdma_nvme_qpair *qp)
{
	if (likely(qp->ctrl->state == NVME_LIVE && qp->gen == qp->ctrl->gen))
		return 0;
	return qp_unusable(qp);
}

/* Tell the controller about every CQ entry consumed so far (the head doorbell). */
static inline void cq_ack(struct ubdma_nvme_qpair *qp)
{
	if (qp->cq_unacked) {
		qp->cq_unacked = 0;
		*qp->cq_db = qp->cq_head;
	}
}

/* Put the entry in the SQ at the tail and ring the tail doorbell.  The caller counted it in
 * outstanding: acknowledge consumed CQ entries first if the controller could otherwise run out
 * of CQ slots for the commands in flight. */
static inline void sq_push(struct ubdma_nvme_qpair *qp, const struct nvme_sqe *e)
{
	if (unlikely(qp->cq_unacked + qp->outstanding > qp->entries - 1u))
		cq_ack(qp);
	memcpy(&qp->sq[qp->sq_tail], e, sizeof(*e));
	if (++qp->sq_tail == qp->entries)
		qp->sq_tail = 0;
	if (qp->batch) {
		qp->db_pending = 1;
		return;
	}
	/* the entry's stores before the doorbell's (x86 keeps store order; this stops the compiler) */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	*qp->sq_db = qp->sq_tail;
}

/* Ring the tail doorbell for entries written in batch mode. */
static inline void sq_ring(struct ubdma_nvme_qpair *qp)
{
	if (qp->db_pending) {
		qp->db_pending = 0;
		__atomic_thread_fence(__ATOMIC_RELEASE);
		*qp->sq_db = qp->sq_tail;
	}
}

int ubdma_nvme_qpair_batch(ubdma_nvme_qpair_t *qp, int on)
{
	if (!qp)
		return nvme_err(EINVAL, "queue pair is NULL");
	if (!on)
		sq_ring(qp);
	qp->batch = on != 0;
	return 0;
}

int ubdma_nvme_ring(ubdma_nvme_qpair_t *qp)
{
	if (!qp)
		return nvme_err(EINVAL, "queue pair is NULL");
	sq_ring(qp);
	return 0;
}

static inline struct nvme_req *req_get(struct ubdma_nvme_qpair *qp, uint16_t *cid)
{
	*cid = qp->free[--qp->nfree];
	struct nvme_req *r = &qp->reqs[*cid];
	r->busy = 1;
	r->timed_out = 0;
	r->abort_sent = 0;
	/* the tick clock runs only while commands are outstanding (nvme_recover.c) */
	qp->tick_stale |= !qp->outstanding;
	r->stamp = qp->tick;
	return r;
}

static inline void req_put(struct ubdma_nvme_qpair *qp, struct nvme_req *r, uint16_t cid)
{
	r->busy = 0;
	r->map = NULL;
	qp->free[qp->nfree++] = cid;
}

int nvme_submit_raw(struct ubdma_nvme_qpair *qp, const struct nvme_sqe *cmd, ubdma_nvme_cb_t *cb, void *arg)
{
	struct nvme_sqe e = *cmd;
	uint16_t cid;

	if (unlikely(!qp->nfree))
		return nvme_err(EAGAIN, "queue %u is full (%u commands outstanding)", qp->qid, qp->outstanding);
	struct nvme_req *r = req_get(qp, &cid);
	r->cb = cb;
	r->arg = arg;
	r->map = NULL;
	e.cdw0 = (e.cdw0 & 0xffff) | (uint32_t)cid << 16;
	r->sqe = e;
	qp->outstanding++;
	sq_push(qp, &e);
	return 0;
}

/* Look up namespace nsid for an I/O; NULL with the error set. */
static inline const struct nvme_ns *io_ns(const struct ubdma_nvme_qpair *qp, uint32_t nsid, int *err)
{
	const struct ubdma_nvme *c = qp->ctrl;

	if (unlikely(nsid == 0 || nsid > c->nns || !c->ns[nsid - 1].active)) {
		*err = nvme_err(EINVAL, "namespace %u is not an active namespace", nsid);
		return NULL;
	}
	return &c->ns[nsid - 1];
}

static inline int check_range(const struct nvme_ns *ns, uint32_t nsid, uint64_t slba, uint32_t nlb)
{
	if (unlikely(nlb == 0))
		return nvme_err(EINVAL, "zero blocks asked for");
	if (unlikely(slba >= ns->nsze || nlb > ns->nsze - slba))
		return nvme_err(ERANGE, "LBAs [%llu, +%u) are past the end of namespace %u (%llu blocks)",
				(unsigned long long)slba, nlb, nsid, (unsigned long long)ns->nsze);
	return 0;
}

static int submit_rw(struct ubdma_nvme_qpair *qp, uint8_t opc, uint32_t nsid, void *buf, uint64_t slba,
		     uint32_t nlb, ubdma_nvme_cb_t *cb, void *arg)
{
	struct ubdma_nvme *c = qp->ctrl;
	const struct nvme_ns *ns;
	int err = 0, nseg;

	if (unlikely(!buf || !cb))
		return nvme_err(EINVAL, "%s is NULL", buf ? "callback" : "buffer");
	if (unlikely((err = qp_usable(qp))))
		return err;
	if (unlikely(!(ns = io_ns(qp, nsid, &err))))
		return err;
	if (unlikely((err = check_range(ns, nsid, slba, nlb))))
		return err;
	if (unlikely(ns->ms))
		return nvme_err(ENOTSUP, "namespace %u has %u metadata bytes per block", nsid, ns->ms);
	if (unlikely(nlb > NVME_NLB_MAX || ((uint64_t)nlb << ns->lba_shift) > c->info.max_transfer))
		return nvme_err(E2BIG, "%u blocks (%llu bytes) exceed the maximum transfer of %zu bytes", nlb,
				(unsigned long long)nlb << ns->lba_shift, c->info.max_transfer);
	if (unlikely(!qp->nfree))
		return nvme_err(EAGAIN, "queue %u is full (%u commands outstanding)", qp->qid, qp->outstanding);

	size_t len = (size_t)nlb << ns->lba_shift;
	int sgl = c->sgl_policy == UBDMA_NVME_SGL_ON ||
		  (((uintptr_t)buf & 3) && c->sgl_policy == UBDMA_NVME_SGL_AUTO);
	if (unlikely(((uintptr_t)buf & 3) && !sgl))
		return nvme_err(ENOTSUP, "buffer %p is not dword aligned and the controller has no SGLs: PRPs "
				"cannot describe it", buf);
	uint16_t cid;
	struct nvme_req *r = req_get(qp, &cid);
	ubdma_tag_t *tag = sgl ? c->sgl_tag : c->prp_tag;
	ubdma_map_t *map = sgl ? r->map_sgl : r->map_prp;
	err = ubdma_map_load_sg(tag, map, buf, len, qp->segs, &nseg, UBDMA_NOWAIT);
	if (unlikely(err)) {
		req_put(qp, r, cid);
		return nvme_err(err, "loading %zu bytes at %p: %s", len, buf, ubdma_last_error());
	}
	struct nvme_sqe e = {
		.cdw0 = NVME_CDW0(opc, sgl ? NVME_PSDT_SGL : NVME_PSDT_PRP, cid),
		.nsid = nsid,
		.cdw10 = (uint32_t)slba,
		.cdw11 = (uint32_t)(slba >> 32),
		.cdw12 = nlb - 1,
	};
	if (sgl) {
		struct nvme_sgl_desc d;
		build_sgl(r, qp->segs, nseg, &d);
		memcpy(e.sgl1, &d, sizeof(d));
	} else if (unlikely((err = build_prp(r, qp->segs, nseg, &e)))) {
		ubdma_map_unload(tag, map);
		req_put(qp, r, cid);
		return err;
	}
	int write = opc == NVME_CMD_WRITE;
	ubdma_map_sync(tag, map, write ? UBDMA_SYNC_PREWRITE : UBDMA_SYNC_PREREAD);
	r->cb = cb;
	r->arg = arg;
	r->map = map;
	r->tag = tag;
	r->sync_post = write ? UBDMA_SYNC_POSTWRITE : UBDMA_SYNC_POSTREAD;
	r->sqe = e;
	qp->outstanding++;
	sq_push(qp, &e);
	return 0;
}

int ubdma_nvme_read(ubdma_nvme_qpair_t *qp, uint32_t nsid, void *buf, uint64_t slba, uint32_t nlb,
		    ubdma_nvme_cb_t *cb, void *arg)
{
	if (unlikely(!qp))
		return nvme_err(EINVAL, "queue pair is NULL");
	return submit_rw(qp, NVME_CMD_READ, nsid, buf, slba, nlb, cb, arg);
}

int ubdma_nvme_write(ubdma_nvme_qpair_t *qp, uint32_t nsid, const void *buf, uint64_t slba, uint32_t nlb,
		     ubdma_nvme_cb_t *cb, void *arg)
{
	if (unlikely(!qp))
		return nvme_err(EINVAL, "queue pair is NULL");
	/* the device only reads the buffer; bus_dma wants a plain pointer */
	return submit_rw(qp, NVME_CMD_WRITE, nsid, (void *)(uintptr_t)buf, slba, nlb, cb, arg);
}

/* Commands without a data buffer: checks shared by Flush, Dataset Management, Write Zeroes. */
static int nodata_check(struct ubdma_nvme_qpair *qp, uint32_t nsid, ubdma_nvme_cb_t *cb, const struct nvme_ns **nsp)
{
	int err = 0;

	if (unlikely(!qp || !cb))
		return nvme_err(EINVAL, "%s is NULL", qp ? "callback" : "queue pair");
	if ((err = qp_usable(qp)))
		return err;
	if (!(*nsp = io_ns(qp, nsid, &err)))
		return err;
	return 0;
}

int ubdma_nvme_flush(ubdma_nvme_qpair_t *qp, uint32_t nsid, ubdma_nvme_cb_t *cb, void *arg)
{
	const struct nvme_ns *ns;
	int err = nodata_check(qp, nsid, cb, &ns);

	if (err)
		return err;
	/* 6.8 Flush: only NSID */
	struct nvme_sqe e = { .cdw0 = NVME_CMD_FLUSH, .nsid = nsid };
	return nvme_submit_raw(qp, &e, cb, arg);
}

int ubdma_nvme_write_zeroes(ubdma_nvme_qpair_t *qp, uint32_t nsid, uint64_t slba, uint32_t nlb,
			    ubdma_nvme_cb_t *cb, void *arg)
{
	const struct nvme_ns *ns;
	int err = nodata_check(qp, nsid, cb, &ns);

	if (err)
		return err;
	if (!(qp->ctrl->info.oncs & NVME_ONCS_WZ))
		return nvme_err(ENOTSUP, "the controller has no Write Zeroes (ONCS %#x)", qp->ctrl->info.oncs);
	if ((err = check_range(ns, nsid, slba, nlb)))
		return err;
	if (nlb > NVME_NLB_MAX)
		return nvme_err(E2BIG, "Write Zeroes covers at most %u blocks, not %u", NVME_NLB_MAX, nlb);
	/* 6.17 Write Zeroes: SLBA in CDW10-11, NLB (0's based) in CDW12 15:0 */
	struct nvme_sqe e = { .cdw0 = NVME_CMD_WRITE_ZEROES, .nsid = nsid, .cdw10 = (uint32_t)slba,
			      .cdw11 = (uint32_t)(slba >> 32), .cdw12 = nlb - 1 };
	return nvme_submit_raw(qp, &e, cb, arg);
}

int ubdma_nvme_deallocate(ubdma_nvme_qpair_t *qp, uint32_t nsid, uint64_t slba, uint32_t nlb,
			  ubdma_nvme_cb_t *cb, void *arg)
{
	const struct nvme_ns *ns;
	int err = nodata_check(qp, nsid, cb, &ns);

	if (err)
		return err;
	if (!(qp->ctrl->info.oncs & NVME_ONCS_DSM))
		return nvme_err(ENOTSUP, "the controller has no Dataset Management (ONCS %#x)", qp->ctrl->info.oncs);
	if ((err = check_range(ns, nsid, slba, nlb)))
		return err;
	if (!qp->nfree)
		return nvme_err(EAGAIN, "queue %u is full (%u commands outstanding)", qp->qid, qp->outstanding);
	/* 6.7 Dataset Management: one range in the slot's list page, PRP1 pointing at it */
	uint16_t cid = qp->free[qp->nfree - 1];
	struct nvme_req *r = &qp->reqs[cid];
	struct nvme_dsm_range range = { .cattr = 0, .nlb = nlb, .slba = slba };
	memcpy(r->list, &range, sizeof(range));
	struct nvme_sqe e = { .cdw0 = NVME_CMD_DSM, .nsid = nsid, .prp1 = r->list_iova,
			      .cdw10 = 0 /* NR: one range */, .cdw11 = NVME_DSM_AD };
	return nvme_submit_raw(qp, &e, cb, arg); /* takes the same slot: the top of the stack */
}

/* Finish a slot: sync and unload its map, free it, run the callback.  A command that failed
 * leaves nothing to copy back: a bounced read is unloaded without its POSTREAD copy. */
static inline void req_complete(struct ubdma_nvme_qpair *qp, uint16_t cid, const struct ubdma_nvme_cpl *cpl)
{
	struct nvme_req *r = &qp->reqs[cid];
	ubdma_nvme_cb_t *cb = r->cb;
	void *arg = r->arg;

	if (r->map) {
		if (likely(!cpl->error) || r->sync_post != UBDMA_SYNC_POSTREAD)
			ubdma_map_sync(r->tag, r->map, r->sync_post);
		ubdma_map_unload(r->tag, r->map);
	}
	req_put(qp, r, cid);
	qp->outstanding--;
	cb(arg, cpl);
}

/* A completion with an error status: which command it ended and what the status says, as the
 * thread's last error (ubdma_nvme_last_error(), which the callback may read) and in UBDMA_LOG's
 * trace.  Off the hot path: only an error status comes here. */
__attribute__((cold, noinline)) static void cpl_status_note(const struct ubdma_nvme_qpair *qp, uint16_t cid,
							    uint16_t sf, int err)
{
	const struct nvme_sqe *e = &qp->reqs[cid].sqe;

	nvme_err(err, "queue %u CID %u: opcode %#x nsid %u cdw10-12 %#x %#x %#x %s %#llx %#llx: %s (status %#x: "
		 "SCT %u SC %#x%s)", qp->qid, cid, e->cdw0 & 0xffu, e->nsid, e->cdw10, e->cdw11, e->cdw12,
		 (e->cdw0 >> 14 & 3u) ? "SGL" : "PRP", (unsigned long long)e->prp1, (unsigned long long)e->prp2,
		 ubdma_nvme_strstatus(sf), sf, NVME_SF_SCT(sf), NVME_SF_SC(sf), sf & NVME_SF_DNR ? ", DNR" : "");
}

/* The CQ loop: up to @max completions (0: all), each slot finished; how many. */
static unsigned reap(struct ubdma_nvme_qpair *qp, unsigned max)
{
	unsigned n = 0;

	for (;;) {
		if (max && n == max)
			break;
		volatile struct nvme_cqe *q = &qp->cq[qp->cq_head];
		uint32_t dw3 = *(volatile uint32_t *)((volatile char *)q + 12);
		if ((dw3 >> 16 & 1) != qp->phase)
			break;
		/* the entry's other fields are read after its phase tag */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		uint16_t cid = (uint16_t)dw3, sf = (uint16_t)(dw3 >> 17);
		struct ubdma_nvme_cpl cpl = { .error = sf ? nvme_status_errno(sf) : 0, .status = sf, .cid = cid,
					      .dw0 = q->dw0 };
		if (++qp->cq_head == qp->entries) {
			qp->cq_head = 0;
			qp->phase ^= 1;
		}
		n++;
		if (unlikely(cid >= qp->entries - 1u || !qp->reqs[cid].busy)) {
			nvme_err(EIO, "queue %u: completion for CID %u that is not outstanding", qp->qid, cid);
			continue;
		}
		if (unlikely(sf))
			cpl_status_note(qp, cid, sf, cpl.error);
		/* a command the driver timed out, ended by the controller (aborted, or cut off by the
		 * reset): its errno says so, and the recovery counts it */
		if (unlikely(qp->reqs[cid].timed_out && cpl.error)) {
			cpl.error = ETIMEDOUT;
			__atomic_add_fetch(&qp->ctrl->rec.failed, 1, __ATOMIC_RELAXED);
		}
		req_complete(qp, cid, &cpl);
	}
	qp->cq_unacked += n;
	if (qp->cq_unacked >= qp->entries / 4u)
		cq_ack(qp);
	return n;
}

unsigned nvme_qpair_reap(struct ubdma_nvme_qpair *qp, unsigned max)
{
	return reap(qp, max);
}

void nvme_req_finish(struct ubdma_nvme_qpair *qp, uint16_t cid, int error)
{
	struct ubdma_nvme_cpl cpl = { .error = error, .cid = cid };

	req_complete(qp, cid, &cpl);
}

/* Submit a slot's saved command again (after a reset); it stays outstanding. */
void nvme_req_resubmit(struct ubdma_nvme_qpair *qp, uint16_t cid)
{
	struct nvme_req *r = &qp->reqs[cid];

	r->stamp = qp->tick;
	r->abort_sent = 0;
	sq_push(qp, &r->sqe);
}

void nvme_qpair_ring(struct ubdma_nvme_qpair *qp)
{
	qp->db_pending = 1;
	sq_ring(qp);
}

int ubdma_nvme_poll(ubdma_nvme_qpair_t *qp, unsigned max, unsigned *done)
{
	unsigned n;

	if (done)
		*done = 0;
	if (unlikely(!qp))
		return nvme_err(EINVAL, "queue pair is NULL");
	struct ubdma_nvme *c = qp->ctrl;
	if (unlikely(qp->gen != c->gen || c->state != NVME_LIVE) && qp->qid) {
		/* as a submission would, but a failed (gone) controller's outstanding commands are
		 * completed here with ENXIO: in a poll, where callbacks are expected */
		int err = nvme_qpair_recover(qp);
		if (err == EAGAIN || err == ESHUTDOWN)
			return 0; /* a reset runs (come back), or queues deleted by shutdown */
		if (err)
			return err;
	}
	sq_ring(qp); /* batch mode: what was submitted goes to the controller before we wait for it */
	n = reap(qp, max);
	if (done)
		*done = n;
	/* busy or idle: a removal must be seen by a program that only polls (nvme_recover.c) */
	if (unlikely(++qp->polls >= NVME_CHECK_POLLS) && qp->qid) {
		qp->polls = 0;
		nvme_qpair_check(qp);
	}
	if (unlikely(c->state == NVME_FAILED))
		return nvme_err(ENXIO, "the controller failed or is gone");
	return 0;
}

void nvme_qpair_cancel_all(struct ubdma_nvme_qpair *qp)
{
	/* a controller that is gone or failed ended them: ENXIO, as the recovery says */
	const struct ubdma_nvme_cpl cancel = { .error = qp->ctrl->state == NVME_FAILED ? ENXIO : ECANCELED };

	for (unsigned cid = 0; cid + 1u < qp->entries; cid++) {
		if (!qp->reqs[cid].busy)
			continue;
		struct ubdma_nvme_cpl cpl = cancel;
		cpl.cid = (uint16_t)cid;
		req_complete(qp, (uint16_t)cid, &cpl);
	}
}

int ubdma_nvme_drain(ubdma_nvme_qpair_t *qp, int timeout_ms)
{
	if (!qp)
		return nvme_err(EINVAL, "queue pair is NULL");
	uint64_t end = timeout_ms < 0 ? UINT64_MAX : nvme_now_ms() + (uint64_t)timeout_ms;
	unsigned spins = 0;

	while (qp->outstanding) {
		unsigned n;
		int err = ubdma_nvme_poll(qp, 0, &n);
		if (err)
			return err;
		if (n)
			continue;
		if ((++spins & 1023) == 0) {
			nvme_check_fatal(qp->ctrl);
			if (nvme_now_ms() > end)
				return nvme_err(ETIMEDOUT, "queue %u: %u commands still outstanding after %d ms",
						qp->qid, qp->outstanding, timeout_ms);
		}
	}
	return 0;
}

int ubdma_nvme_wait(ubdma_nvme_qpair_t *qp, int timeout_ms, unsigned *done)
{
	unsigned n = 0;
	int err;

	if (done)
		*done = 0;
	if (!qp)
		return nvme_err(EINVAL, "queue pair is NULL");
	if ((err = ubdma_nvme_poll(qp, 0, &n)) || n)
		goto out;
	if (qp->fd >= 0) {
		/* the MSI-X eventfd, and the kernel's request for the device (a removal wakes us) */
		struct pollfd p[2] = { { .fd = qp->fd, .events = POLLIN }, { .fd = qp->ctrl->req_fd, .events = POLLIN } };
		nfds_t np = qp->ctrl->req_fd >= 0 && qp->qid ? 2 : 1;
		/* the coarse clock: no system call on the way to the one that sleeps */
		uint64_t end = timeout_ms < 0 ? UINT64_MAX : nvme_coarse_ms() + (uint64_t)timeout_ms;
		for (;;) {
			/* a controller may hold back the interrupt of a CQ it believes has unread entries */
			cq_ack(qp);
			/* with commands outstanding, wake at least every tick to look for timeouts */
			int slice = timeout_ms;
			unsigned tick = qp->timeout_ms / NVME_TICKS_PER_TIMEOUT;
			int capped = qp->outstanding && qp->qid && (slice < 0 || (unsigned)slice > (tick ? tick : 1));
			if (capped)
				slice = (int)(tick ? tick : 1);
			int rc = poll(p, np, slice);
			if (rc < 0)
				return nvme_err(errno, "poll on the MSI-X eventfd: %s", strerror(errno));
			if (rc > 0 && p[0].revents) {
				uint64_t cnt;
				if (read(qp->fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
					return nvme_err(errno, "read of the MSI-X eventfd: %s", strerror(errno));
			}
			if (rc > 0 && np == 2 && p[1].revents)
				nvme_qpair_check(qp); /* reads the request: the controller is gone */
			if ((err = ubdma_nvme_poll(qp, 0, &n)) || n)
				break;
			if (!capped)
				break;
			if (qp->outstanding)
				nvme_qpair_check(qp);
			if ((err = ubdma_nvme_poll(qp, 0, &n)) || n || nvme_coarse_ms() >= end)
				break;
		}
	} else {
		uint64_t end = timeout_ms < 0 ? UINT64_MAX : nvme_now_ms() + (uint64_t)timeout_ms;
		unsigned spins = 0;
		while (!(err = ubdma_nvme_poll(qp, 0, &n)) && !n) {
			if ((++spins & 1023) == 0 && nvme_now_ms() >= end)
				break;
		}
	}
out:
	if (done)
		*done = n;
	return err;
}

unsigned ubdma_nvme_outstanding(const ubdma_nvme_qpair_t *qp)
{
	return qp ? qp->outstanding : 0;
}

int ubdma_nvme_qpair_fd(const ubdma_nvme_qpair_t *qp, int *fdp)
{
	if (!qp || !fdp)
		return nvme_err(EINVAL, "%s is NULL", qp ? "fdp" : "queue pair");
	if (qp->fd < 0)
		return nvme_err(ENOTSUP, "the controller was opened without interrupts");
	*fdp = qp->fd;
	return 0;
}

int ubdma_nvme_qpair_set_timeout(ubdma_nvme_qpair_t *qp, unsigned ms)
{
	if (!qp)
		return nvme_err(EINVAL, "queue pair is NULL");
	qp->timeout_ms = ms ? ms : qp->ctrl->io_timeout_ms;
	return 0;
}

unsigned ubdma_nvme_qpair_id(const ubdma_nvme_qpair_t *qp)
{
	return qp ? qp->qid : 0;
}
