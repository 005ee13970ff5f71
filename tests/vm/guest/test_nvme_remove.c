/*
 * test_nvme_remove - surprise removal of an NVMe controller from under a running program
 * (issue 18): QEMU's device_del while two threads do I/O, one polling, one asleep in
 * ubdma_nvme_wait() on MSI-X.
 *
 * run-guest.sh -R puts a second controller (QEMU id hpnvme) behind a pcie-root-port, at
 * $UBDMA_VM_HP_NVME; its qmp-helper.py sends QMP device_del when this program prints
 * "UBDMA-VM-QMP: device_del hpnvme".  The guest kernel then removes the device: vfio-pci's remove
 * waits until the program closes it and asks through the VFIO request interrupt, which the driver
 * reads in its periodic check (every 1024 polls) and in its wait.  Passes when:
 *   - the polling thread's commands outstanding at the removal complete with ENXIO, and its
 *     submissions and polls fail with ENXIO, within 60 s of the request (measured: printed);
 *   - a third pair with 4 reads outstanding (batch mode, not rung yet) completes them with ENXIO
 *     at its first poll after the removal (the busy pairs may happen to have none in flight);
 *   - the sleeping thread wakes up and sees ENXIO the same way;
 *   - every command submitted completed exactly once, with success before the removal and ENXIO
 *     after it, and no data buffer stays loaded (ubdma_nvme_recovery()'s maps_loaded);
 *   - a new queue pair is refused with ENXIO, ubdma_nvme_close() returns within 5 s;
 *   - the kernel's remove finishes: the device leaves /sys/bus/pci/devices within 30 s.
 * A driver that does not listen to the request interrupt fails: QEMU's device keeps answering
 * while the kernel waits for the program, so no ENXIO ever comes (and the device stays in sysfs).
 * Exit: 0 pass, 1 fail, 77 skip (no hot-pluggable controller: run-guest.sh without -R).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ubdma/ubdma.h>
#include <ubdma/nvme.h>

#include "backend.h"
#include "check.h"
#include "hotplug.h"

#define QD 32
#define QD_WAITER 8
#define BLK 4096u
#define LIMIT_MS 60000

static uint32_t nsid, lbs;
static uint64_t nsze;

/* What one thread saw: completions by errno. */
struct tally {
	unsigned long submitted, ok, enxio, other;
	int other_err;
	unsigned long ok_after; /* successes after the first ENXIO: must be none */
};

static void cb(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct tally *t = arg;

	if (!cpl->error) {
		t->ok++;
		t->ok_after += t->enxio != 0;
	} else if (cpl->error == ENXIO) {
		t->enxio++;
	} else {
		t->other++;
		t->other_err = cpl->error;
	}
}

static void *buffers(size_t n)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, n * BLK))
		return NULL;
	memset(p, 0xa5, n * BLK);
	return p;
}

/* Submit command number i (reads and writes alternate, over the first 8 MiB). */
static int submit(ubdma_nvme_qpair_t *qp, uint8_t *buf, unsigned long i, struct tally *t)
{
	uint64_t lba = (i * 7919 % 2048) * (BLK / lbs) % nsze;
	int rc = i & 1 ? ubdma_nvme_write(qp, nsid, buf, lba, BLK / lbs, cb, t)
		       : ubdma_nvme_read(qp, nsid, buf, lba, BLK / lbs, cb, t);
	t->submitted += rc == 0;
	return rc;
}

struct waiter {
	ubdma_nvme_qpair_t *qp;
	struct tally t;
	int err;	      /* the errno that ended the loop */
	uint64_t enxio_at;    /* when it was seen */
	volatile int started; /* it has commands in flight */
	volatile int stop;    /* the polling thread gave up (no ENXIO): stop too */
};

/* The sleeping thread: QD 8 on its own pair, completions through ubdma_nvme_wait() on MSI-X. */
static void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	uint8_t *buf = buffers(QD_WAITER);
	unsigned long i = 0;
	uint64_t end = hp_now_ms() + 2 * LIMIT_MS;

	if (!buf) {
		w->err = ENOMEM;
		return NULL;
	}
	for (;;) {
		int rc = 0;
		while (!rc && ubdma_nvme_outstanding(w->qp) < QD_WAITER) {
			rc = submit(w->qp, buf + (i % QD_WAITER) * BLK, i, &w->t);
			i += rc == 0;
		}
		w->started = 1;
		if (rc && rc != EAGAIN) {
			w->err = rc;
			break;
		}
		unsigned n;
		if ((rc = ubdma_nvme_wait(w->qp, 5000, &n))) {
			w->err = rc;
			break;
		}
		if (hp_now_ms() > end || w->stop) {
			w->err = ETIMEDOUT;
			break;
		}
	}
	w->enxio_at = hp_now_ms();
	/* a poll after the error completes whatever is left (ENXIO) */
	for (int k = 0; k < 100 && ubdma_nvme_outstanding(w->qp); k++)
		ubdma_nvme_poll(w->qp, 0, NULL);
	free(buf);
	return NULL;
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_HP_NVME");
	ubdma_ctx_t *ctx;
	ubdma_nvme_t *ctrl;
	ubdma_nvme_qpair_t *qa, *qb, *qh, *qc = NULL;
	struct ubdma_nvme_ns_info ns;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !hp_in_sysfs(bdf)) {
		printf("# SKIP: no hot-pluggable NVMe (UBDMA_VM_HP_NVME=%s; run-guest.sh -R makes one)\n",
		       bdf ? bdf : "unset");
		return 77;
	}
	int rc = ubdma_ctx_open(guest_backend(), &ctx);
	if (rc) {
		printf("# context: %s\n", ubdma_last_error());
		return 1;
	}
	struct ubdma_nvme_opts o = { .size = sizeof(o), .ctx = ctx, .io_queues = 3, .interrupts = 1,
				     .queue_entries = 64 };
	rc = ubdma_nvme_open(bdf, &o, &ctrl);
	check(rc == 0, "open %s with MSI-X, 3 queue pairs: %s", bdf, rc ? ubdma_nvme_last_error() : "ok");
	if (rc)
		return 1;
	rc = ubdma_nvme_ns_next(ctrl, 0, &nsid);
	rc = rc ? rc : ubdma_nvme_ns(ctrl, nsid, &ns);
	check(rc == 0, "namespace %u: %s", nsid, rc ? ubdma_nvme_last_error() : "ok");
	if (rc)
		return 1;
	lbs = ns.lba_size;
	nsze = ns.nsze;
	rc = ubdma_nvme_qpair_create(ctrl, 0, &qa);
	rc = rc ? rc : ubdma_nvme_qpair_create(ctrl, 0, &qb);
	rc = rc ? rc : ubdma_nvme_qpair_create(ctrl, 0, &qh);
	check(rc == 0, "three queue pairs: %s", rc ? ubdma_nvme_last_error() : "ok");
	if (rc)
		return 1;
	/* a third pair whose 4 reads are outstanding for certain at the removal: batch mode, never
	 * polled before it (the doorbell is rung by the first poll), so the device never has them.
	 * The busy pairs' commands may all have completed at the moment of the removal (QEMU is
	 * fast): their ENXIO count is reported, not required */
	uint8_t *hbuf = buffers(4);
	struct tally tq = { 0 };
	rc = ubdma_nvme_qpair_batch(qh, 1);
	for (unsigned long k = 0; !rc && k < 4; k++)
		rc = submit(qh, hbuf + k * BLK, 2 * k, &tq);
	check(rc == 0 && ubdma_nvme_outstanding(qh) == 4, "held pair: 4 reads outstanding (%s)",
	      rc ? ubdma_nvme_last_error() : "ok");

	struct waiter w = { .qp = qb };
	pthread_t th;
	pthread_create(&th, NULL, waiter_main, &w);

	/* the polling thread: QD 32; after 2000 completions, the removal is asked for */
	uint8_t *buf = buffers(QD);
	struct tally t = { 0 };
	unsigned long i = 0;
	uint64_t asked = 0, seen = 0;
	int end_err = 0;
	while (!end_err) {
		int e = 0;
		while (!e && ubdma_nvme_outstanding(qa) < QD) {
			e = submit(qa, buf + (i % QD) * BLK, i, &t);
			i += e == 0;
		}
		if (e && e != EAGAIN && e != ENOMEM) {
			end_err = e;
			break;
		}
		if ((e = ubdma_nvme_poll(qa, 0, NULL))) {
			end_err = e;
			break;
		}
		if (!asked && t.ok >= 2000 && w.started) {
			printf("# %lu commands done on the polled pair, %lu on the waiting one: unplug\n", t.ok, w.t.ok);
			asked = hp_ask("device_del", "hpnvme");
		}
		if (asked && hp_now_ms() - asked > LIMIT_MS) {
			end_err = ETIMEDOUT;
			break;
		}
	}
	seen = hp_now_ms();
	if (end_err != ENXIO)
		w.stop = 1;
	check(end_err == ENXIO, "polled pair: the loop ended with ENXIO (%s: %s) %llu ms after device_del was asked",
	      strerror(end_err), ubdma_nvme_last_error(), (unsigned long long)(seen - asked));
	for (int k = 0; k < 100 && ubdma_nvme_outstanding(qa); k++)
		ubdma_nvme_poll(qa, 0, NULL);
	check(ubdma_nvme_outstanding(qa) == 0, "polled pair: nothing outstanding after a poll (%u)",
	      ubdma_nvme_outstanding(qa));
	check(t.submitted == t.ok + t.enxio + t.other,
	      "polled pair: every command completed once: %lu submitted, %lu ok, %lu ENXIO, %lu other", t.submitted,
	      t.ok, t.enxio, t.other);
	check(t.other == 0 && t.ok_after == 0,
	      "polled pair: the commands in flight at the removal completed with ENXIO (%lu), none otherwise "
	      "(%lu, last %s), no success after the first ENXIO (%lu)", t.enxio, t.other,
	      t.other ? strerror(t.other_err) : "-", t.ok_after);
	rc = ubdma_nvme_poll(qh, 0, NULL);
	check(rc == ENXIO && tq.enxio == 4 && tq.ok == 0 && ubdma_nvme_outstanding(qh) == 0,
	      "held pair: its first poll returns ENXIO (%s) and completes its 4 reads with ENXIO (%lu ok, %lu "
	      "ENXIO, %lu other)", strerror(rc), tq.ok, tq.enxio, tq.other);
	rc = submit(qa, buf, 0, &t);
	check(rc == ENXIO, "polled pair: a new read is refused with ENXIO (%s)", strerror(rc));
	rc = ubdma_nvme_qpair_create(ctrl, 0, &qc);
	check(rc == ENXIO && !qc, "a new queue pair is refused with ENXIO (%s)", strerror(rc));

	pthread_join(th, NULL);
	check(w.err == ENXIO, "waiting pair: woke up and ended with ENXIO (%s) %lld ms after device_del was asked",
	      strerror(w.err), (long long)(w.enxio_at - asked));
	check(ubdma_nvme_outstanding(qb) == 0 && w.t.submitted == w.t.ok + w.t.enxio + w.t.other &&
		      w.t.other == 0 && w.t.ok_after == 0,
	      "waiting pair: %lu submitted, %lu ok, %lu ENXIO, %lu other, %u outstanding", w.t.submitted, w.t.ok,
	      w.t.enxio, w.t.other, ubdma_nvme_outstanding(qb));
	struct ubdma_nvme_recovery rs;
	rc = ubdma_nvme_recovery(ctrl, &rs);
	check(rc == 0 && rs.maps_loaded == 0, "no data buffer stays loaded (%u)", rs.maps_loaded);

	check(ubdma_nvme_qpair_destroy(qa) == 0 && ubdma_nvme_qpair_destroy(qb) == 0 &&
	      ubdma_nvme_qpair_destroy(qh) == 0, "the three pairs destroyed");
	uint64_t t0 = hp_now_ms();
	rc = ubdma_nvme_close(ctrl);
	uint64_t closed = hp_now_ms() - t0;
	check(closed < 5000, "close returned in %llu ms (%s)", (unsigned long long)closed, rc ? strerror(rc) : "0");
	ubdma_ctx_close(ctx);
	free(buf);
	free(hbuf);

	/* the kernel's remove proceeds once the device file is closed: the device leaves sysfs */
	hp_check_gone(bdf, asked);
	return failures ? 1 : 0;
}
