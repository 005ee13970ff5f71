/*
 * test_nvme_remove_idle - the kernel's removal of an NVMe controller held by a program that makes
 * no driver call at all while it happens (issue 18: the driver's removal watcher, nvme_watch.c).
 *
 * The program opens the controller at $UBDMA_VM_NVME, reads through a queue pair, leaves 4 reads
 * submitted in batch mode (never rung: the device does not have them), and then another thread
 * unbinds the device from vfio-pci (sysfs unbind: the kernel's vfio-pci remove, the path a
 * hot-unplug takes too, blocks until the device file is closed and asks through the VFIO request
 * interrupt).  The main thread sleeps meanwhile, touching nothing of the driver.  Passes when:
 *   - the unbind returns within LIMIT_MS (the removal completed while the program slept);
 *   - then, the driver calls see the controller gone: the first poll completes the 4 held reads
 *     with ENXIO and returns ENXIO, a new read and a new pair get ENXIO, nothing stays loaded, and
 *     close returns 0 within 5 s;
 *   - the device is bound to vfio-pci again afterwards (drivers_probe), for whatever runs next.
 * With the watcher off (UBDMA_TEST_REMOVAL_WATCH=off: ubdma_nvme_opts.removal_watch =
 * UBDMA_NVME_WATCH_OFF) it fails: the unbind waits until close, which comes after LIMIT_MS.
 * The remove boots run it last (after test_nvme_fatal, which uses the same controller).
 * Exit: 0 pass, 1 fail, 77 skip (no NVMe on vfio-pci).
 */
#include <errno.h>
#include <fcntl.h>
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

#define LIMIT_MS 10000 /* the kernel asks again every 10 s: a removal seen only then is too late */
#define BLK 4096u

static struct { unsigned long ok, enxio, other; } tally;

static void cb(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	(void)arg;
	if (!cpl->error)
		tally.ok++;
	else if (cpl->error == ENXIO)
		tally.enxio++;
	else
		tally.other++;
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME"), *w = getenv("UBDMA_TEST_REMOVAL_WATCH");
	int watch_off = w && !strcmp(w, "off");
	ubdma_ctx_t *ctx;
	ubdma_nvme_t *ctrl;
	ubdma_nvme_qpair_t *qp, *qc = NULL;
	uint32_t nsid;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !hp_bound_to_vfio(bdf)) {
		printf("# SKIP: no NVMe on vfio-pci (UBDMA_VM_NVME=%s)\n", bdf ? bdf : "unset");
		return 77;
	}
	if ((rc = ubdma_ctx_open(guest_backend(), &ctx))) {
		printf("# context: %s\n", ubdma_last_error());
		return 1;
	}
	struct ubdma_nvme_opts o = { .size = sizeof(o), .ctx = ctx, .queue_entries = 16,
				     .removal_watch = watch_off ? UBDMA_NVME_WATCH_OFF : UBDMA_NVME_WATCH_ON };
	rc = ubdma_nvme_open(bdf, &o, &ctrl);
	check(rc == 0, "open %s, removal watcher %s: %s", bdf, watch_off ? "off" : "on",
	      rc ? ubdma_nvme_last_error() : "ok");
	if (rc)
		return 1;
	rc = ubdma_nvme_ns_next(ctrl, 0, &nsid);
	rc = rc ? rc : ubdma_nvme_qpair_create(ctrl, 0, &qp);
	check(rc == 0, "namespace %u and a queue pair: %s", nsid, rc ? ubdma_nvme_last_error() : "ok");
	if (rc)
		return 1;
	uint8_t *buf = NULL;
	if (posix_memalign((void **)&buf, 4096, 4 * BLK))
		return 1;
	/* the controller works: 8 reads complete with success */
	for (unsigned k = 0; !rc && k < 8; k++) {
		rc = ubdma_nvme_read(qp, nsid, buf, k, 1, cb, NULL);
		while (!rc && ubdma_nvme_outstanding(qp))
			rc = ubdma_nvme_poll(qp, 0, NULL);
	}
	check(rc == 0 && tally.ok == 8, "8 reads before the removal: %lu ok (%s)", tally.ok,
	      rc ? ubdma_nvme_last_error() : "ok");
	/* 4 reads outstanding for certain: batch mode, the doorbell is rung by the next poll only */
	tally.ok = 0;
	rc = ubdma_nvme_qpair_batch(qp, 1);
	for (unsigned k = 0; !rc && k < 4; k++)
		rc = ubdma_nvme_read(qp, nsid, buf + k * BLK, k, 1, cb, NULL);
	check(rc == 0 && ubdma_nvme_outstanding(qp) == 4, "4 reads held (%s)", rc ? ubdma_nvme_last_error() : "ok");

	/* the removal, while this thread makes no driver call */
	struct hp_unbind u;
	uint64_t done = hp_unbind_wait(&u, bdf, LIMIT_MS);
	check(done && u.err == 0, "the kernel's remove (unbind from vfio-pci) completed while the program made no "
	      "driver call: %s after %llu ms", done ? (u.err ? strerror(u.err) : "returned") : "still waiting",
	      (unsigned long long)((done ? done : hp_now_ms()) - u.start));

	/* what the driver says now */
	rc = ubdma_nvme_poll(qp, 0, NULL);
	check(rc == ENXIO && tally.enxio == 4 && tally.ok == 0 && tally.other == 0 && ubdma_nvme_outstanding(qp) == 0,
	      "the first poll returns ENXIO (%s) and completes the 4 held reads with ENXIO (%lu ok, %lu ENXIO, %lu "
	      "other)", strerror(rc), tally.ok, tally.enxio, tally.other);
	rc = ubdma_nvme_read(qp, nsid, buf, 0, 1, cb, NULL);
	check(rc == ENXIO, "a new read is refused with ENXIO (%s)", strerror(rc));
	rc = ubdma_nvme_qpair_create(ctrl, 0, &qc);
	check(rc == ENXIO && !qc, "a new queue pair is refused with ENXIO (%s)", strerror(rc));
	struct ubdma_nvme_recovery rs;
	rc = ubdma_nvme_recovery(ctrl, &rs);
	check(rc == 0 && rs.maps_loaded == 0, "no data buffer stays loaded (%u)", rs.maps_loaded);
	check(ubdma_nvme_qpair_destroy(qp) == 0, "the pair destroyed");
	uint64_t t0 = hp_now_ms();
	rc = ubdma_nvme_close(ctrl);
	uint64_t closed = hp_now_ms() - t0;
	check(rc == 0 && closed < 5000, "close returned %d in %llu ms", rc, (unsigned long long)closed);
	ubdma_ctx_close(ctx);
	free(buf);
	/* with the watcher off, the unbind returns only now (after close): the time says so */
	pthread_join(u.thread, NULL);
	printf("# unbind returned %llu ms after it was asked (%s)\n", (unsigned long long)(u.done - u.start),
	       u.err ? strerror(u.err) : "ok");

	hp_rebind_vfio(bdf);
	return failures ? 1 : 0;
}
