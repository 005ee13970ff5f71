/*
 * test_nvme_recovery - commands the controller holds: per-command timeouts, Abort, controller
 * reset, and the two reset policies (issue 18).
 *
 * drivers/nvme/test/vm-nvme.sh gives the controller a namespace (--slow NSID, 4) on QEMU's
 * null-co driver with latency-ns=2 s and read-zeroes: every command to it is held 2 s.  QEMU 7.2
 * answers Abort with "not aborted" (CDW0 bit 0 set), so a timed-out command leads to a reset; its
 * CC.EN 0 waits for the held commands inside QEMU, then forgets them.  Buffers are malloc'd at
 * +64, never registered: every load bounces, so "nothing stays loaded or bounced" is seen in the
 * counters (maps_loaded 0), in the read buffers left as they were (a failed read copies nothing
 * back) and in the queue pairs' destruction (EBUSY while anything is outstanding).
 *   fail      policy UBDMA_NVME_RESET_FAIL, io_timeout 400 ms: pair A (400 ms) reads the slow
 *             namespace, pair B (timeout 20 s) too.  A's read completes with ETIMEDOUT, B's with
 *             ECANCELED, both within 10 s; one Abort, one reset, two failed; then a held write on
 *             A: ETIMEDOUT, a second reset; then both pairs move data on namespace 1 again.
 *   requeue   policy UBDMA_NVME_RESET_REQUEUE: the same two reads; A's ETIMEDOUT, B's submitted
 *             again after the reset and completing with success: its buffer (0xee before) holds
 *             the zeroes of null-co's read (the requeued command really ran and was copied back).
 * The steps are also told on stderr (UBDMA_LOG=warn: the program sets it and runs itself again).
 * Exit: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>
#include <ubdma/nvme.h>

#include "check.h"

#define BUF 4096u

static const char *bdf;
static uint32_t slow = 4;

struct done {
	int n, err;
};

static void cb(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct done *d = arg;

	d->n++;
	d->err = cpl->error;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Poll both pairs until every done has a completion or @ms pass; the milliseconds it took. */
static uint64_t run(ubdma_nvme_qpair_t *a, ubdma_nvme_qpair_t *b, struct done **d, int nd, unsigned ms)
{
	uint64_t t0 = now_ms();

	for (;;) {
		int all = 1;
		for (int i = 0; i < nd; i++)
			all &= d[i]->n > 0;
		if (all || now_ms() - t0 > ms)
			break;
		ubdma_nvme_poll(a, 0, NULL);
		if (b)
			ubdma_nvme_poll(b, 0, NULL);
	}
	return now_ms() - t0;
}

static uint8_t *bounced(uint8_t fillc)
{
	uint8_t *m = malloc(BUF + 128);

	if (!m)
		return NULL;
	memset(m + 64, fillc, BUF);
	return m + 64;
}

static int all_is(const uint8_t *p, uint8_t v)
{
	for (unsigned i = 0; i < BUF; i++)
		if (p[i] != v)
			return 0;
	return 1;
}

static void report(ubdma_nvme_t *c, const char *when, struct ubdma_nvme_recovery *st)
{
	ubdma_nvme_recovery(c, st);
	printf("# %s: timeouts %" PRIu64 ", aborts %" PRIu64 " (aborted %" PRIu64 "), resets %" PRIu64
	       ", requeued %" PRIu64 ", failed %" PRIu64 ", maps loaded %u\n",
	       when, st->timeouts, st->aborts, st->aborted, st->resets, st->requeued, st->failed, st->maps_loaded);
}

static int open_ctrl(ubdma_ctx_t *ctx, int policy, ubdma_nvme_t **c, ubdma_nvme_qpair_t **a, ubdma_nvme_qpair_t **b,
		     uint32_t *lbs)
{
	struct ubdma_nvme_opts o = { .size = sizeof(o), .ctx = ctx, .io_queues = 2, .io_timeout_ms = 400,
				     .reset_policy = policy };
	struct ubdma_nvme_ns_info ns;
	int rc;

	if ((rc = ubdma_nvme_open(bdf, &o, c)) || (rc = ubdma_nvme_ns(*c, slow, &ns)) ||
	    (rc = ubdma_nvme_qpair_create(*c, 16, a)) || (rc = ubdma_nvme_qpair_create(*c, 16, b)) ||
	    (rc = ubdma_nvme_qpair_set_timeout(*b, 20000))) {
		check(0, "open with namespace %u and two queue pairs: %s", slow, ubdma_nvme_last_error());
		return rc;
	}
	*lbs = ns.lba_size;
	return 0;
}

static void case_fail(ubdma_ctx_t *ctx)
{
	ubdma_nvme_t *c;
	ubdma_nvme_qpair_t *a, *b;
	struct ubdma_nvme_recovery st;
	uint32_t lbs;

	if (open_ctrl(ctx, UBDMA_NVME_RESET_FAIL, &c, &a, &b, &lbs))
		return;
	uint8_t *ba = bounced(0xee), *bb = bounced(0xee);
	struct done da = { 0 }, db = { 0 }, *d[2] = { &da, &db };
	int rc1 = ubdma_nvme_read(a, slow, ba, 0, BUF / lbs, cb, &da);
	int rc2 = ubdma_nvme_read(b, slow, bb, 8, BUF / lbs, cb, &db);
	check(!rc1 && !rc2, "fail: two reads of the held namespace submitted (%d %d)", rc1, rc2);
	uint64_t ms = run(a, b, d, 2, 15000);
	/* QEMU drains the held read when the reset disables the controller; now and then its
	 * completion still reaches the old completion queue before the queue goes, and the driver
	 * rightly delivers what the device completed: success, with the data */
	int late_a = da.n == 1 && da.err == 0 && all_is(ba, 0);
	check(da.n == 1 && (da.err == ETIMEDOUT || late_a), "fail: the read on the 400 ms pair completed with %s "
	      "(%d calls), want ETIMEDOUT (or success with the data, completed by the device in the reset)",
	      strerror(da.err), da.n);
	check(db.n == 1 && db.err == ECANCELED, "fail: the read on the 20 s pair completed with %s (%d calls), "
	      "want ECANCELED (policy FAIL)", strerror(db.err), db.n);
	check(ms >= 400 && ms < 10000, "fail: both settled %" PRIu64 " ms after submission (400 ms timeout, "
	      "2 s held by QEMU through the reset)", ms);
	check((late_a || all_is(ba, 0xee)) && all_is(bb, 0xee), "fail: the failed reads' bounced buffers were not "
	      "written");
	report(c, "fail, after the reads", &st);
	check(st.timeouts == 1 && st.aborts == 1 && st.resets == 1 && st.failed == 2u - late_a && st.requeued == 0 &&
		      st.maps_loaded == 0,
	      "fail: 1 timeout, 1 Abort (QEMU: not aborted, %" PRIu64 "), 1 reset, 2 failed, 0 requeued, no buffer loaded",
	      st.aborted);
	check(ubdma_nvme_outstanding(a) == 0 && ubdma_nvme_outstanding(b) == 0, "fail: nothing outstanding");

	/* a held write, bounced: ETIMEDOUT, a second reset, its bounce pages given back */
	struct done dw = { 0 }, *dd[1] = { &dw };
	int rc = ubdma_nvme_write(a, slow, ba, 16, BUF / lbs, cb, &dw);
	ms = run(a, NULL, dd, 1, 15000);
	report(c, "fail, after the write", &st);
	check(!rc && dw.n == 1 && dw.err == ETIMEDOUT && st.resets == 2 && st.maps_loaded == 0,
	      "fail: a held write completed with %s after %" PRIu64 " ms; resets %" PRIu64 ", maps loaded %u",
	      strerror(dw.err), ms, st.resets, st.maps_loaded);

	/* both pairs work after the resets: 64 KiB written on A, read back on B (namespace 1) */
	uint8_t *w = malloc(65536), *r = malloc(65536);
	struct ubdma_nvme_ns_info n1;
	ubdma_nvme_ns(c, 1, &n1);
	for (unsigned i = 0; i < 65536; i++)
		w[i] = (uint8_t)(i * 7 + 3);
	memset(r, 0, 65536);
	struct done dx = { 0 }, dy = { 0 }, *dx1[1] = { &dx }, *dy1[1] = { &dy };
	rc1 = ubdma_nvme_write(a, 1, w, (62ull << 20) / n1.lba_size, 65536 / n1.lba_size, cb, &dx);
	run(a, NULL, dx1, 1, 10000);
	rc2 = ubdma_nvme_read(b, 1, r, (62ull << 20) / n1.lba_size, 65536 / n1.lba_size, cb, &dy);
	run(b, NULL, dy1, 1, 10000);
	check(!rc1 && !rc2 && dx.n == 1 && !dx.err && dy.n == 1 && !dy.err && !memcmp(w, r, 65536),
	      "fail: after the resets, 64 KiB written on pair %u and read back on pair %u (%s / %s)",
	      ubdma_nvme_qpair_id(a), ubdma_nvme_qpair_id(b), strerror(dx.err), strerror(dy.err));
	check(ubdma_nvme_qpair_destroy(a) == 0 && ubdma_nvme_qpair_destroy(b) == 0, "fail: both pairs destroyed");
	check(ubdma_nvme_close(c) == 0, "fail: ubdma_nvme_close");
	free(w);
	free(r);
	free(ba - 64);
	free(bb - 64);
}

static void case_requeue(ubdma_ctx_t *ctx)
{
	ubdma_nvme_t *c;
	ubdma_nvme_qpair_t *a, *b;
	struct ubdma_nvme_recovery st;
	uint32_t lbs;

	if (open_ctrl(ctx, UBDMA_NVME_RESET_REQUEUE, &c, &a, &b, &lbs))
		return;
	uint8_t *ba = bounced(0xee), *bb = bounced(0xee);
	struct done da = { 0 }, db = { 0 }, *d[2] = { &da, &db };
	int rc1 = ubdma_nvme_read(a, slow, ba, 0, BUF / lbs, cb, &da);
	int rc2 = ubdma_nvme_read(b, slow, bb, 8, BUF / lbs, cb, &db);
	uint64_t ms = run(a, b, d, 2, 15000);
	int late_a = da.n == 1 && da.err == 0 && all_is(ba, 0); /* as in the FAIL case above */
	check(!rc1 && da.n == 1 && (da.err == ETIMEDOUT || late_a), "requeue: the read on the 400 ms pair: %s, want "
	      "ETIMEDOUT (or success with the data, completed by the device in the reset)", strerror(da.err));
	check(!rc2 && db.n == 1 && db.err == 0 && all_is(bb, 0),
	      "requeue: the read on the 20 s pair was submitted again and completed: %s, its buffer %s (%" PRIu64 " ms)",
	      strerror(db.err), all_is(bb, 0) ? "holds the zeroes read" : "does not hold the zeroes", ms);
	report(c, "requeue", &st);
	check(st.resets == 1 && st.requeued == 1 && st.failed == 1u - late_a && st.maps_loaded == 0,
	      "requeue: 1 reset, 1 requeued, 1 failed, no buffer loaded");
	check(ubdma_nvme_qpair_destroy(a) == 0 && ubdma_nvme_qpair_destroy(b) == 0, "requeue: both pairs destroyed");
	check(ubdma_nvme_close(c) == 0, "requeue: ubdma_nvme_close");
	free(ba - 64);
	free(bb - 64);
}

int main(int argc, char **argv)
{
	ubdma_ctx_t *ctx;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--slow") && i + 1 < argc) {
			slow = (uint32_t)atoi(argv[++i]);
		} else {
			fprintf(stderr, "usage: test_nvme_recovery [--slow NSID]\n");
			return 2;
		}
	}
	/* the recovery's steps on stderr: the driver reads UBDMA_LOG when it is loaded */
	if (!getenv("UBDMA_LOG")) {
		setenv("UBDMA_LOG", "warn", 1);
		execv("/proc/self/exe", argv);
	}
	bdf = getenv("UBDMA_VM_NVME");
	if (!bdf || strcmp(getenv("UBDMA_VM_NVME_DRIVER") ? getenv("UBDMA_VM_NVME_DRIVER") : "", "vfio-pci")) {
		printf("# skip: no NVMe on vfio-pci\n");
		return 77;
	}
	if ((rc = ubdma_ctx_open(UBDMA_BACKEND_VFIO, &ctx))) {
		printf("not ok - ubdma_ctx_open: %s\n", ubdma_last_error());
		return 1;
	}
	struct ubdma_nvme_opts bad = { .size = sizeof(bad), .ctx = ctx, .reset_policy = 7 };
	ubdma_nvme_t *c = NULL;
	check(ubdma_nvme_open(bdf, &bad, &c) == EINVAL && !c, "reset_policy 7 is refused (EINVAL)");
	case_fail(ctx);
	case_requeue(ctx);
	ubdma_ctx_close(ctx);
	printf("# test_nvme_recovery: %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
