/*
 * nvme_recover.c - commands that do not complete: per-command timeouts, the Abort command (NVMe
 * 1.4, 5.1), the controller reset (7.3.2) that brings the queues back, and what happens to the
 * commands that were outstanding (complete with an error, or submit again), each step counted
 * (ubdma_nvme_recovery()) and, with UBDMA_LOG=warn, told on stderr.
 *
 * Time without a clock on the I/O path: each queue pair has a coarse clock, its tick, that only
 * this file advances, from a poll every NVME_CHECK_POLLS polls (one clock read then) or from a
 * wait that woke up; a submission stamps the command with the current tick (a load and a store).
 * A tick is a quarter of the pair's timeout, so a command is judged past its timeout between 4
 * and 5 quarters after it was submitted.  The clock stops while the pair is idle and restarts at
 * the next check (tick_stale), so an idle hour does not age the next command.
 *
 * A command past its timeout gets an Abort.  When the controller says it aborted it (Abort's
 * CDW0 bit 0 clear), the command's own completion follows (status Command Abort Requested) and
 * reports ETIMEDOUT; when it says it did not, or the completion does not come within another
 * timeout, the controller is reset: under admin_lock, once for any number of threads that find
 * timeouts at the same time (the reset generation tells them apart), CC.EN 0, the admin queue
 * again, CC.EN 1, Number of Queues again.  Every I/O queue pair is then made again by the thread
 * that owns it, at its next poll or submission (the controller forgot its queues; the memory and
 * the loaded buffers stay): completions the controller posted before the reset are taken as they
 * are, the timed-out commands complete with ETIMEDOUT, and the rest with ECANCELED
 * (UBDMA_NVME_RESET_FAIL) or are submitted again from their saved entries, same buffer and
 * callback (UBDMA_NVME_RESET_REQUEUE).  Every command completed here is unloaded first: no buffer
 * stays loaded or holds bounce pages.
 *
 * The same check reads CSTS: all ones (a device that is gone) marks the controller failed, and
 * every pair's outstanding commands then complete with ENXIO, at the owner's next poll; CFS (a
 * fatal status, 9.5) or the kernel's error interrupt leads to the same reset as a timeout.
 *
 * Surprise removal: the kernel's remove of a device held through VFIO waits until the device
 * file is closed, and asks for it through the VFIO request interrupt (until then the device
 * still answers: no all-ones read comes).  The check reads that eventfd (a non-blocking read, at
 * a check of any pair, busy or idle, at most every NVME_NOTIFY_MS by the coarse clock, with CSTS:
 * a system call and a device read every 1024 polls showed in the poll's cost; ubdma_nvme_wait()
 * sleeps on it as well as on the MSI-X one; the admin loop reads it too), and on a request the
 * controller is gone:
 * state FAILED, the device released at once (ubdma_pci_release(): interrupts and bus mastering
 * off, the device file closed so the remove proceeds, BAR0 replaced by memory that reads all ones
 * so that a doorbell another thread is writing lands nowhere), and each pair's outstanding
 * commands complete with ENXIO at its owner's next poll, new ones fail with ENXIO.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nvme_int.h"

#define NVME_ADM_ABORT 0x08 /* 5.1 Abort: CDW10 SQID 15:0, CID 31:16 */

static void count(uint64_t *c)
{
	__atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

/* Reset the controller unless another thread did since generation @seen. */
static int ctrl_reset(struct ubdma_nvme *c, unsigned seen, const char *why)
{
	int err = 0;

	pthread_mutex_lock(&c->admin_lock);
	if (c->gen == seen && c->state == NVME_LIVE) {
		c->state = NVME_RESETTING;
		nvme_note("controller reset: %s", why);
		err = nvme_ctrl_reenable_locked(c);
		count(&c->rec.resets);
		c->gen = seen + 1;
		c->fatal = 0;
		/* a removal noticed during the reset (the admin loop reads the request) stays failed */
		c->state = err || __atomic_load_n(&c->gone, __ATOMIC_ACQUIRE) ? NVME_FAILED : NVME_LIVE;
		if (err)
			nvme_note("controller reset failed: %s (%s): the controller is failed", ubdma_nvme_last_error(),
				  strerror(err));
		else
			nvme_note("controller reset done: queue pairs are made again by their threads");
	}
	pthread_mutex_unlock(&c->admin_lock);
	return err;
}

/* The owner's part after a reset: its queues again, its outstanding commands settled. */
int nvme_qpair_recover(struct ubdma_nvme_qpair *qp)
{
	struct ubdma_nvme *c = qp->ctrl;
	int st = c->state;

	if (st == NVME_RESETTING)
		return nvme_err(EAGAIN, "the controller is being reset: poll, then submit again");
	if (st == NVME_FAILED) {
		/* gone or failed for good: nothing will complete, so the driver completes it all */
		for (unsigned cid = 0; qp->outstanding && cid + 1u < qp->entries; cid++)
			if (qp->reqs[cid].busy) {
				count(&c->rec.failed);
				nvme_req_finish(qp, (uint16_t)cid, ENXIO);
			}
		return nvme_err(ENXIO, "the controller failed or is gone");
	}
	if (st != NVME_LIVE)
		return nvme_err(ESHUTDOWN, "the controller was shut down");
	unsigned gen = c->gen;
	if (qp->gen == gen)
		return 0;
	/* completions posted before the controller stopped are real */
	nvme_qpair_reap(qp, 0);
	memset((void *)qp->cq, 0, (size_t)qp->entries * sizeof(struct nvme_cqe));
	qp->sq_tail = qp->cq_head = 0;
	qp->phase = 1;
	qp->cq_unacked = 0;
	qp->db_pending = 0;
	int err = nvme_qpair_create_queues(qp); /* records the generation it made them in */
	if (err) {
		nvme_note("queue pair %u: not made again after reset %u: %s", qp->qid, gen, ubdma_nvme_last_error());
		c->state = NVME_FAILED;
		nvme_qpair_recover(qp);
		return err;
	}
	unsigned requeued = 0, failed = 0;
	for (unsigned cid = 0; qp->outstanding && cid + 1u < qp->entries; cid++) {
		struct nvme_req *r = &qp->reqs[cid];
		if (!r->busy)
			continue;
		if (r->timed_out) {
			failed++;
			count(&c->rec.failed);
			nvme_req_finish(qp, (uint16_t)cid, ETIMEDOUT);
		} else if (c->reset_policy == UBDMA_NVME_RESET_REQUEUE) {
			requeued++;
			count(&c->rec.requeued);
			nvme_req_resubmit(qp, (uint16_t)cid);
		} else {
			failed++;
			count(&c->rec.failed);
			nvme_req_finish(qp, (uint16_t)cid, ECANCELED);
		}
	}
	if (requeued)
		nvme_qpair_ring(qp);
	nvme_note("queue pair %u made again after reset %u: %u command(s) submitted again, %u completed with an error",
		  qp->qid, gen, requeued, failed);
	return 0;
}

/* Advance the tick clock from the real one; after an idle spell, restart it.  1 when it moved. */
static int clock_advance(struct ubdma_nvme_qpair *qp)
{
	uint64_t now = nvme_coarse_ms();
	unsigned len = qp->timeout_ms / NVME_TICKS_PER_TIMEOUT;

	if (!len)
		len = 1;
	if (qp->tick_stale || !qp->tick_ms) {
		/* every outstanding stamp is at most the current tick: they start afresh */
		qp->tick_stale = 0;
		qp->tick_ms = now;
		qp->tick++;
		return 1;
	}
	if (now - qp->tick_ms < len)
		return 0;
	uint64_t k = (now - qp->tick_ms) / len;
	qp->tick += (uint32_t)k;
	qp->tick_ms += k * len;
	return 1;
}

/* Ask for the request and error interrupts; a kernel without them leaves only the all-ones check. */
void nvme_notify_setup(struct ubdma_nvme *c)
{
	int err = ubdma_pci_notify_fds(c->dev, &c->req_fd, &c->err_fd);

	if (err) {
		c->req_fd = c->err_fd = -1;
		nvme_note("%s: no removal notice from the kernel (%s): a removal is seen only when CSTS reads all "
			  "ones", ubdma_pci_bdf(c->dev), ubdma_last_error());
	}
}

/* The kernel wants the device back: fail everything, give it back now. */
static void ctrl_gone(struct ubdma_nvme *c, const char *why, int locked)
{
	if (__atomic_exchange_n(&c->gone, 1, __ATOMIC_ACQ_REL))
		return;
	if (!locked)
		pthread_mutex_lock(&c->admin_lock); /* no reset's configuration access races the release */
	c->state = NVME_FAILED;
	int err = ubdma_pci_release(c->dev);
	if (!locked)
		pthread_mutex_unlock(&c->admin_lock);
	nvme_note("%s: %s: the controller is gone; the device is given back (%s), outstanding commands "
		  "complete with ENXIO at their queue pair's next poll", ubdma_pci_bdf(c->dev), why,
		  err ? strerror(err) : "released");
}

/* Read the request and error eventfds (non-blocking); 1 when the controller is gone or failed. */
int nvme_check_notify(struct ubdma_nvme *c, int locked)
{
	uint64_t n;

	if (__atomic_load_n(&c->gone, __ATOMIC_ACQUIRE))
		return 1;
	if (c->req_fd >= 0 && read(c->req_fd, &n, sizeof(n)) == (ssize_t)sizeof(n)) {
		ctrl_gone(c, "the kernel asks for the device back (VFIO device request: hot-unplug or unbind)",
			  locked);
		return 1;
	}
	if (c->err_fd >= 0 && read(c->err_fd, &n, sizeof(n)) == (ssize_t)sizeof(n)) {
		uint32_t csts = nvme_rd32(c, NVME_REG_CSTS);
		if (csts == UINT32_MAX) {
			ctrl_gone(c, "error interrupt, and CSTS reads all ones", locked);
			return 1;
		}
		nvme_note("%s: the kernel reports a device error (AER, VFIO error interrupt), CSTS %#x: the "
			  "controller is reset", ubdma_pci_bdf(c->dev), csts);
		c->fatal = 1;
	}
	return c->state == NVME_FAILED;
}

/*
 * The periodic check looks at the device (the request and error eventfds, CSTS) at most every
 * NVME_NOTIFY_MS of any pair's checks, not at every check: each eventfd read is a system call, and
 * a CSTS read a non-posted read across the link that the CPU waits for (bench_nvme's poll_idle,
 * under -icount: the check's polls cost 7.6 us with both, 2.1 us with the eventfds gated, 1.1 us
 * with CSTS too).  The kernel asks again every 10 s; an all-ones or CFS controller is then seen
 * within 10 ms.  1 when it is time (and claims the turn).
 */
static int notify_due(struct ubdma_nvme *c)
{
	uint64_t now = nvme_coarse_ms(), last = __atomic_load_n(&c->notify_ms, __ATOMIC_RELAXED);

	if (now - last < NVME_NOTIFY_MS)
		return 0;
	__atomic_store_n(&c->notify_ms, now, __ATOMIC_RELAXED);
	return 1;
}

void nvme_qpair_check(struct ubdma_nvme_qpair *qp)
{
	struct ubdma_nvme *c = qp->ctrl;
	int due = notify_due(c);
	int gone = due ? nvme_check_notify(c, 0) : __atomic_load_n(&c->gone, __ATOMIC_ACQUIRE) || c->state == NVME_FAILED;

	if (gone) {
		nvme_qpair_recover(qp); /* FAILED: ENXIO for every outstanding command */
		return;
	}
	if (!qp->qid || c->state != NVME_LIVE || qp->gen != c->gen)
		return;
	/* CSTS all ones: the device is gone (removed, or fell off the bus): nothing outstanding will
	 * complete, so fail it all with ENXIO now, not a timeout later.  CFS: reset (9.5).  Read when
	 * the eventfds are (above); another pair's read sets the state and the flag for all */
	uint32_t csts = due ? nvme_check_fatal(c) : 0;
	if (c->state == NVME_FAILED) {
		nvme_note("queue pair %u: CSTS reads %#x: the controller is gone or failed; outstanding commands "
			  "complete with ENXIO", qp->qid, csts);
		nvme_qpair_recover(qp);
		return;
	}
	if (c->fatal) {
		char why[96];
		if (!due)
			csts = nvme_rd32(c, NVME_REG_CSTS); /* another pair's check saw it: say what it is */
		snprintf(why, sizeof(why), "%s (CSTS %#x)",
			 csts & NVME_CSTS_CFS ? "controller fatal status, CSTS.CFS" : "device error reported", csts);
		ctrl_reset(c, c->gen, why);
		nvme_qpair_recover(qp);
		return;
	}
	/* a command becomes late only when the tick moves: the slots are looked at then */
	if (!qp->outstanding || !clock_advance(qp))
		return;
	for (unsigned cid = 0; cid + 1u < qp->entries; cid++) {
		struct nvme_req *r = &qp->reqs[cid];
		if (!r->busy || (uint32_t)(qp->tick - r->stamp) <= NVME_TICKS_PER_TIMEOUT)
			continue;
		unsigned gen = c->gen;
		if (!r->timed_out) {
			r->timed_out = 1;
			count(&c->rec.timeouts);
		}
		if (!r->abort_sent) {
			/* 5.1: ask the controller to abort it; give it another timeout to answer */
			struct nvme_sqe e = { .cdw0 = NVME_ADM_ABORT, .cdw10 = qp->qid | (uint32_t)cid << 16 };
			uint32_t dw0 = 1;
			r->abort_sent = 1;
			r->stamp = qp->tick;
			count(&c->rec.aborts);
			int err = nvme_admin_exec(c, &e, &dw0, NULL);
			nvme_note("queue pair %u command %u (opcode %#x) past its %u ms timeout: Abort %s", qp->qid, cid,
				  r->sqe.cdw0 & 0xff, qp->timeout_ms,
				  err ? "failed" : dw0 & 1 ? "answered: not aborted" : "answered: aborted");
			if (!err && !(dw0 & 1)) {
				count(&c->rec.aborted);
				continue; /* its completion (Command Abort Requested) settles it */
			}
		}
		char why[96];
		snprintf(why, sizeof(why), "queue pair %u command %u past its timeout and not aborted", qp->qid, cid);
		ctrl_reset(c, gen, why);
		nvme_qpair_recover(qp);
		return; /* the recovery settled every outstanding command of this pair */
	}
}

int ubdma_nvme_recovery(const ubdma_nvme_t *c, struct ubdma_nvme_recovery *st)
{
	if (!c || !st)
		return nvme_err(EINVAL, "%s is NULL", c ? "st" : "controller");
	struct ubdma_nvme *cc = (struct ubdma_nvme *)(uintptr_t)c;
	pthread_mutex_lock(&cc->admin_lock);
	*st = (struct ubdma_nvme_recovery){
		.timeouts = __atomic_load_n(&c->rec.timeouts, __ATOMIC_RELAXED),
		.aborts = __atomic_load_n(&c->rec.aborts, __ATOMIC_RELAXED),
		.aborted = __atomic_load_n(&c->rec.aborted, __ATOMIC_RELAXED),
		.resets = __atomic_load_n(&c->rec.resets, __ATOMIC_RELAXED),
		.requeued = __atomic_load_n(&c->rec.requeued, __ATOMIC_RELAXED),
		.failed = __atomic_load_n(&c->rec.failed, __ATOMIC_RELAXED),
	};
	for (unsigned q = 1; c->qps && q <= c->info.io_queues; q++) {
		const struct ubdma_nvme_qpair *qp = c->qps[q];
		if (!qp || qp == (void *)1)
			continue;
		for (unsigned cid = 0; cid + 1u < qp->entries; cid++)
			st->maps_loaded += qp->reqs[cid].busy && qp->reqs[cid].map;
	}
	pthread_mutex_unlock(&cc->admin_lock);
	return 0;
}
