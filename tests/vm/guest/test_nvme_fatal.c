/*
 * test_nvme_fatal - a controller that reports a fatal status (CSTS.CFS) is reset and works again
 * (issue 18; NVMe 1.4, 9.5: "host software should attempt to reset and then re-initialize").
 *
 * The fault is injected through BAR0 behind the driver's back (ubdma_nvme_pci()): CC.EN is
 * cleared (QEMU's controller resets), ASQ is set to an address that is not page aligned and CC.EN
 * set again: QEMU refuses to start and sets CSTS.CFS.  16 reads are then submitted, which the
 * failed controller never fetches (the driver reads no register on submission).  Its periodic
 * check must see CFS and reset the controller (CC.EN 0, the admin queue programmed again, CC.EN
 * 1), make its queue pair again and settle what was outstanding by the reset policy.  Checked,
 * once with each policy:
 *   FAIL     the 16 reads complete with ECANCELED within 10 s; 1 reset counted;
 *   REQUEUE  the 16 reads are submitted again and complete with success and the right data;
 * then a write and a read through the same pair move the right bytes, nothing stays loaded, and
 * close returns 0.  A driver that marks a CFS controller failed (ENXIO) fails this test.
 * Then a device that vanishes without a request (all_ones(): released behind the driver's back,
 * BAR0 reads all ones): 16 reads complete with ENXIO at the periodic check, new ones and a new
 * queue pair are refused with ENXIO, close returns within 1 s.
 * Exit: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>
#include <ubdma/nvme.h>

#include "backend.h"
#include "check.h"

#define N 16
#define BLK 4096u
#define REG_CC 0x14   /* 3.1.5 */
#define REG_CSTS 0x1c /* 3.1.6: bit 0 RDY, bit 1 CFS */
#define REG_ASQ 0x28  /* 3.1.9 */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct tally {
	int ok, canceled, other, other_err;
};

static void cb(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct tally *t = arg;

	if (!cpl->error)
		t->ok++;
	else if (cpl->error == ECANCELED)
		t->canceled++;
	else {
		t->other++;
		t->other_err = cpl->error;
	}
}

static int wait_done(ubdma_nvme_qpair_t *qp, const struct tally *t, int n, unsigned ms)
{
	uint64_t end = now_ms() + ms;

	while (t->ok + t->canceled + t->other < n && now_ms() < end)
		ubdma_nvme_poll(qp, 0, NULL);
	return t->ok + t->canceled + t->other == n;
}

/* CC.EN 0, ASQ misaligned, CC.EN 1: QEMU's controller refuses to start and reports CFS. */
static uint32_t inject_cfs(volatile uint8_t *bar)
{
	volatile uint32_t *cc = (volatile uint32_t *)(bar + REG_CC);
	volatile uint32_t *csts = (volatile uint32_t *)(bar + REG_CSTS);
	volatile uint32_t *asq = (volatile uint32_t *)(bar + REG_ASQ);
	uint32_t v = *cc;

	*cc = v & ~1u;
	for (uint64_t end = now_ms() + 2000; (*csts & 1) && now_ms() < end;)
		usleep(1000);
	*asq = *asq | 0x100; /* 3.1.9: ASQB is 4 KiB aligned */
	*cc = v | 1u;
	uint32_t s = *csts;
	for (uint64_t end = now_ms() + 2000; !(s & 2) && now_ms() < end; s = *csts)
		usleep(1000);
	return s;
}

static void run(const char *bdf, ubdma_ctx_t *ctx, int policy)
{
	const char *pn = policy == UBDMA_NVME_RESET_REQUEUE ? "REQUEUE" : "FAIL";
	struct ubdma_nvme_opts o = { .size = sizeof(o), .ctx = ctx, .queue_entries = 64, .reset_policy = policy };
	ubdma_nvme_t *ctrl;
	ubdma_nvme_qpair_t *qp;
	struct ubdma_nvme_ns_info ns;
	uint32_t nsid;
	uint8_t *buf = NULL;
	size_t blen = (size_t)N * BLK;
	int rc = ubdma_nvme_open(bdf, &o, &ctrl);

	check(rc == 0, "%s: open %s: %s", pn, bdf, rc ? ubdma_nvme_last_error() : "ok");
	if (rc)
		return;
	rc = ubdma_nvme_ns_next(ctrl, 0, &nsid);
	rc = rc ? rc : ubdma_nvme_ns(ctrl, nsid, &ns);
	rc = rc ? rc : ubdma_nvme_qpair_create(ctrl, 0, &qp);
	rc = rc ? rc : posix_memalign((void **)&buf, 4096, blen);
	check(rc == 0, "%s: namespace, queue pair, buffer: %s", pn, rc ? ubdma_nvme_last_error() : "ok");
	if (rc)
		goto out;
	uint32_t nlb = BLK / ns.lba_size;
	uint64_t base = policy == UBDMA_NVME_RESET_REQUEUE ? 4096 : 2048; /* LBAs, apart for each run */
	struct tally t = { 0 };
	/* a pattern of the policy's own into [base, +N blocks) */
	for (size_t i = 0; i < blen; i++)
		buf[i] = (uint8_t)(i * 131 + (size_t)policy * 7 + 1);
	rc = ubdma_nvme_write(qp, nsid, buf, base, N * nlb, cb, &t);
	check(rc == 0 && wait_done(qp, &t, 1, 10000) && t.ok == 1, "%s: pattern written", pn);

	/* the fault, then N reads that the failed controller holds (QEMU completes a read faster
	 * than the fault could be injected behind it); the driver sees CFS at its next check */
	size_t bl;
	volatile uint8_t *bar = ubdma_pci_bar(ubdma_nvme_pci(ctrl), 0, &bl);
	uint32_t csts = bar ? inject_cfs(bar) : 0;
	check(csts & 2, "%s: CSTS.CFS injected (CSTS %#x)", pn, csts);
	memset(buf, 0, blen);
	t = (struct tally){ 0 };
	for (int i = 0; i < N; i++)
		if ((rc = ubdma_nvme_read(qp, nsid, buf + (size_t)i * BLK, base + (uint64_t)i * nlb, nlb, cb, &t)))
			break;
	check(rc == 0, "%s: %d reads submitted to the failed controller", pn, N);
	uint64_t t0 = now_ms();
	int done = wait_done(qp, &t, N, 10000);
	uint64_t took = now_ms() - t0;
	struct ubdma_nvme_recovery st = { 0 };
	ubdma_nvme_recovery(ctrl, &st);
	if (policy == UBDMA_NVME_RESET_FAIL) {
		check(done && t.canceled == N, "%s: the %d reads in flight completed with ECANCELED in %llu ms "
		      "(%d ok, %d ECANCELED, %d other: %s)", pn, N, (unsigned long long)took, t.ok, t.canceled,
		      t.other, t.other ? strerror(t.other_err) : "-");
	} else {
		int bad = -1;
		for (size_t i = 0; done && i < blen && bad < 0; i++)
			if (buf[i] != (uint8_t)(i * 131 + (size_t)policy * 7 + 1))
				bad = (int)i;
		check(done && t.ok == N && bad < 0, "%s: the %d reads in flight were submitted again and "
		      "completed with the right data in %llu ms (%d ok, %d ECANCELED, %d other; first bad byte %d)",
		      pn, N, (unsigned long long)took, t.ok, t.canceled, t.other, bad);
	}
	check(st.resets == 1, "%s: one controller reset (%llu), %llu requeued, %llu failed", pn,
	      (unsigned long long)st.resets, (unsigned long long)st.requeued, (unsigned long long)st.failed);
	check(st.maps_loaded == 0, "%s: no buffer stays loaded (%u)", pn, st.maps_loaded);

	/* the same pair moves data again */
	for (size_t i = 0; i < blen; i++)
		buf[i] = (uint8_t)(i * 17 + 3);
	t = (struct tally){ 0 };
	rc = ubdma_nvme_write(qp, nsid, buf, base, N * nlb, cb, &t);
	int wok = rc == 0 && wait_done(qp, &t, 1, 10000) && t.ok == 1;
	memset(buf, 0, blen);
	t = (struct tally){ 0 };
	rc = ubdma_nvme_read(qp, nsid, buf, base, N * nlb, cb, &t);
	int rok = rc == 0 && wait_done(qp, &t, 1, 10000) && t.ok == 1;
	int same = 1;
	for (size_t i = 0; i < blen; i++)
		same &= buf[i] == (uint8_t)(i * 17 + 3);
	check(wok && rok && same, "%s: after the reset the pair writes and reads back %zu bytes (%s)", pn, blen,
	      rc ? ubdma_nvme_last_error() : "ok");
	ubdma_nvme_qpair_destroy(qp);
out:
	rc = ubdma_nvme_close(ctrl);
	check(rc == 0, "%s: close: %s", pn, rc ? strerror(rc) : "0");
	free(buf);
}

/*
 * A device that vanishes without the kernel's request (it fell off the bus): the test gives the
 * device back behind the driver's back (ubdma_pci_release() through ubdma_nvme_pci()), so BAR0
 * reads all ones, as a removed device reads on a real bus.  The driver's periodic check must see
 * CSTS all ones and fail everything with ENXIO; close must not wait for the device.
 */
static void all_ones(const char *bdf, ubdma_ctx_t *ctx)
{
	struct ubdma_nvme_opts o = { .size = sizeof(o), .ctx = ctx, .queue_entries = 64 };
	ubdma_nvme_t *ctrl;
	ubdma_nvme_qpair_t *qp, *q2 = NULL;
	uint32_t nsid;
	uint8_t *buf = NULL;
	struct tally t = { 0 };
	int rc = ubdma_nvme_open(bdf, &o, &ctrl);

	check(rc == 0, "all ones: open %s: %s", bdf, rc ? ubdma_nvme_last_error() : "ok");
	if (rc)
		return;
	rc = ubdma_nvme_ns_next(ctrl, 0, &nsid);
	rc = rc ? rc : ubdma_nvme_qpair_create(ctrl, 0, &qp);
	rc = rc ? rc : posix_memalign((void **)&buf, 4096, (size_t)N * BLK);
	check(rc == 0, "all ones: queue pair and buffer: %s", rc ? ubdma_nvme_last_error() : "ok");
	if (rc) {
		ubdma_nvme_close(ctrl);
		return;
	}
	rc = ubdma_pci_release(ubdma_nvme_pci(ctrl));
	size_t bl;
	volatile uint32_t *bar = ubdma_pci_bar(ubdma_nvme_pci(ctrl), 0, &bl);
	check(rc == 0 && bar && bar[7] == 0xffffffff, "all ones: the device released behind the driver, CSTS "
	      "reads %#x", bar ? bar[7] : 0);
	/* submissions read no register: they are taken, and never completed by the device */
	for (int i = 0; !rc && i < N; i++)
		rc = ubdma_nvme_read(qp, nsid, buf + (size_t)i * BLK, (uint64_t)i * 8, BLK / 512, cb, &t);
	check(rc == 0, "all ones: %d reads submitted (%s)", N, rc ? ubdma_nvme_last_error() : "ok");
	uint64_t t0 = now_ms();
	int prc = 0;
	while (ubdma_nvme_outstanding(qp) && now_ms() - t0 < 10000 && !(prc = ubdma_nvme_poll(qp, 0, NULL)))
		;
	uint64_t took = now_ms() - t0;
	check(prc == ENXIO && t.other == N && t.other_err == ENXIO && !ubdma_nvme_outstanding(qp),
	      "all ones: the periodic check found CSTS all ones: the %d reads completed with ENXIO in %llu ms, "
	      "the poll returned %s", N, (unsigned long long)took, strerror(prc));
	rc = ubdma_nvme_read(qp, nsid, buf, 0, BLK / 512, cb, &t);
	check(rc == ENXIO, "all ones: a new read is refused with ENXIO (%s)", strerror(rc));
	rc = ubdma_nvme_qpair_create(ctrl, 0, &q2);
	check(rc == ENXIO && !q2, "all ones: a new queue pair is refused with ENXIO (%s)", strerror(rc));
	ubdma_nvme_qpair_destroy(qp);
	t0 = now_ms();
	rc = ubdma_nvme_close(ctrl);
	check(now_ms() - t0 < 1000, "all ones: close returned %d in %llu ms, waiting for nothing", rc,
	      (unsigned long long)(now_ms() - t0));
	free(buf);
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	ubdma_ctx_t *ctx;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf) {
		printf("# SKIP: no NVMe on vfio-pci (UBDMA_VM_NVME unset)\n");
		return 77;
	}
	if (ubdma_ctx_open(guest_backend(), &ctx)) {
		printf("# context: %s\n", ubdma_last_error());
		return 1;
	}
	run(bdf, ctx, UBDMA_NVME_RESET_FAIL);
	run(bdf, ctx, UBDMA_NVME_RESET_REQUEUE);
	all_ones(bdf, ctx);
	ubdma_ctx_close(ctx);
	return failures ? 1 : 0;
}
