/*
 * test_e1000e_remove_idle - the kernel's removal of an e1000e held by a program that makes no
 * driver call at all while it happens (issue 18: the driver's removal watcher,
 * drivers/common/drv_watch.h as e1000e.c uses it).
 *
 * The program opens the main e1000e at $UBDMA_VM_NIC, sends frames (the device works), holds one
 * packet of the pool and queues one more burst, and then another thread unbinds the device from
 * vfio-pci (sysfs unbind: the kernel's vfio-pci remove, the path a hot-unplug takes too, blocks
 * until the device file is closed and asks through the VFIO request interrupt).  The main thread
 * sleeps meanwhile, touching nothing of the driver.  Passes when:
 *   - the watcher thread runs while the device is open, and not after close;
 *   - the unbind returns within LIMIT_MS (the removal completed while the program slept);
 *   - then, the driver calls see the device gone: rx_burst, tx_burst, send and link fail with
 *     ENXIO, every ring buffer is back in the pool (all but the held packet, which can still be
 *     freed), and close returns 0 within 5 s;
 *   - the device is bound to vfio-pci again afterwards (drivers_probe), for whatever runs next.
 * With the watcher off (UBDMA_TEST_REMOVAL_WATCH=off: ubdma_e1000e_opts.removal_watch =
 * UBDMA_E1000E_WATCH_OFF) it fails: no watcher thread, and the unbind waits until close, which
 * comes after LIMIT_MS.  The remove boots run it after test_e1000e_remove, which gives the same
 * device back behind its driver (its all-ones case) and leaves it on vfio-pci.
 * Exit: 0 pass, 1 fail, 77 skip (no e1000e on vfio-pci).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <ubdma/ubdma.h>
#include <ubdma/e1000e.h>

#include "backend.h"
#include "check.h"
#include "hotplug.h"

#define LIMIT_MS 10000 /* the kernel asks again every 10 s: a removal seen only then is too late */
#define RXD 64
#define TXD 64
#define POOL (RXD + TXD + 64)
#define BURST 16

/* Threads of this process named like the driver's watcher (pthread_setname_np: /proc comm). */
static int watchers(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d))) {
		char path[288], comm[32] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		if ((f = fopen(path, "r"))) {
			n += fgets(comm, sizeof(comm), f) && !strcmp(comm, "ubdma-e1000e-rm\n");
			fclose(f);
		}
	}
	if (d)
		closedir(d);
	return n;
}

/* Broadcast frames of the local experimental EtherType, from @mac. */
static void frames(struct ubdma_e1000e_pkt **p, unsigned n, const uint8_t mac[6])
{
	for (unsigned i = 0; i < n; i++) {
		memset(p[i]->data, 0xff, 6);
		memcpy((uint8_t *)p[i]->data + 6, mac, 6);
		((uint8_t *)p[i]->data)[12] = 0x88;
		((uint8_t *)p[i]->data)[13] = 0xb5;
		memset((uint8_t *)p[i]->data + 14, (int)i, 46);
		p[i]->len = 60;
	}
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NIC"), *w = getenv("UBDMA_TEST_REMOVAL_WATCH");
	int watch_off = w && !strcmp(w, "off");
	struct ubdma_e1000e_pkt *p[BURST], *held = NULL;
	struct ubdma_e1000e_link link;
	ubdma_e1000e_t *nic;
	ubdma_ctx_t *ctx;
	unsigned n = 0, pend = 0;
	uint8_t mac[6];
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !hp_bound_to_vfio(bdf)) {
		printf("# SKIP: no e1000e on vfio-pci (UBDMA_VM_NIC=%s)\n", bdf ? bdf : "unset");
		return 77;
	}
	if ((rc = ubdma_ctx_open(guest_backend(), &ctx))) {
		printf("# context: %s\n", ubdma_last_error());
		return 1;
	}
	struct ubdma_e1000e_opts o = { .size = sizeof(o), .ctx = ctx, .rx_desc = RXD, .tx_desc = TXD,
				       .pool_bufs = POOL, .link_wait_ms = 1,
				       .removal_watch = watch_off ? UBDMA_E1000E_WATCH_OFF : UBDMA_E1000E_WATCH_ON };
	rc = ubdma_e1000e_open(bdf, &o, &nic);
	check(rc == 0, "open %s, removal watcher %s: %s", bdf, watch_off ? "off" : "on",
	      rc ? ubdma_e1000e_last_error() : "ok");
	if (rc)
		return 1;
	check(watchers() == 1, "one removal watcher thread runs (%d)", watchers());
	ubdma_e1000e_mac(nic, mac);

	/* the device works: a burst sent and completed */
	rc = ubdma_e1000e_pkt_alloc(nic, p, BURST);
	if (!rc) {
		frames(p, BURST, mac);
		rc = ubdma_e1000e_tx_burst(nic, p, BURST, &n);
	}
	rc = rc ? rc : ubdma_e1000e_tx_flush(nic, 2000, &pend);
	check(rc == 0 && n == BURST && pend == 0, "a burst of %u frames sent before the removal (%s)", n,
	      rc ? ubdma_e1000e_last_error() : "ok");
	/* one packet held across the removal, and one more burst queued (in flight, or sent) */
	rc = ubdma_e1000e_pkt_alloc(nic, &held, 1);
	rc = rc ? rc : ubdma_e1000e_pkt_alloc(nic, p, BURST);
	if (!rc) {
		frames(p, BURST, mac);
		rc = ubdma_e1000e_tx_burst(nic, p, BURST, &n);
	}
	check(rc == 0 && n == BURST, "a packet held, a burst queued (%s)", rc ? ubdma_e1000e_last_error() : "ok");

	/* the removal, while this thread makes no driver call */
	struct hp_unbind u;
	uint64_t done = hp_unbind_wait(&u, bdf, LIMIT_MS);
	check(done && u.err == 0 && !hp_bound_to_vfio(bdf), "the kernel's remove (unbind from vfio-pci) completed "
	      "while the program made no driver call: %s after %llu ms",
	      done ? (u.err ? strerror(u.err) : "returned") : "still waiting",
	      (unsigned long long)((done ? done : hp_now_ms()) - u.start));

	/* what the driver says now */
	rc = ubdma_e1000e_rx_burst(nic, p, BURST, &n);
	check(rc == ENXIO && n == 0, "the first call (rx_burst) fails with ENXIO (%s: %s)", strerror(rc),
	      ubdma_e1000e_last_error());
	rc = ubdma_e1000e_pkt_alloc(nic, p, 1);
	check(rc == 0, "pkt_alloc still works (pool memory is the program's)");
	if (!rc) {
		frames(p, 1, mac);
		check(ubdma_e1000e_tx_burst(nic, p, 1, &n) == ENXIO && n == 0, "tx_burst: ENXIO, nothing queued");
		ubdma_e1000e_pkt_free(nic, p, 1);
	}
	struct iovec f = { .iov_base = (char[60]){ 0 }, .iov_len = 60 };
	check(ubdma_e1000e_send(nic, &f, 1, &n) == ENXIO && n == 0, "send: ENXIO");
	check(ubdma_e1000e_link(nic, &link) == ENXIO, "link: ENXIO");
	check(ubdma_e1000e_pool_free(nic) == POOL - 1, "every buffer but the one held is back in the pool: %u "
	      "of %u", ubdma_e1000e_pool_free(nic), POOL);
	rc = held ? ubdma_e1000e_pkt_free(nic, &held, 1) : EINVAL;
	check(rc == 0 && ubdma_e1000e_pool_free(nic) == POOL, "the packet held across the removal is freed");
	uint64_t t0 = hp_now_ms();
	rc = ubdma_e1000e_close(nic);
	uint64_t closed = hp_now_ms() - t0;
	check(rc == 0 && closed < 5000, "close returned %d in %llu ms", rc, (unsigned long long)closed);
	check(watchers() == 0, "no watcher thread after close (%d)", watchers());
	ubdma_ctx_close(ctx);
	/* with the watcher off, the unbind returns only now (after close): the time says so */
	pthread_join(u.thread, NULL);
	printf("# unbind returned %llu ms after it was asked (%s)\n", (unsigned long long)(u.done - u.start),
	       u.err ? strerror(u.err) : "ok");

	hp_rebind_vfio(bdf);
	return failures ? 1 : 0;
}
