/*
 * test_e1000e_remove - surprise removal of the e1000e from under a running program (issue 18):
 * QEMU's device_del while the program transmits and receives.
 *
 * run-guest.sh -R puts a second e1000e (QEMU id hpnic) behind a pcie-root-port, at
 * $UBDMA_VM_HP_NIC, and has QEMU unplug it when this program prints
 * "UBDMA-VM-QMP: device_del hpnic".  The guest kernel's remove then waits for the program and
 * asks through the VFIO request interrupt, which the driver's removal watcher answers while this
 * program's thread is inside its burst loop (its check, every 1024 bursts, would too without the
 * watcher; test_e1000e_remove_idle covers a program that makes no call).  Passes when:
 *   - a burst fails with ENXIO within 60 s of the request (measured: printed), and every later
 *     call that needs the device (tx_burst, rx_burst, send, tx_flush, link, stats, start) too;
 *   - the frames in flight were dropped and every ring buffer is back in the pool: the pool holds
 *     all its buffers but one the program took before the removal, which it can still free;
 *   - ubdma_e1000e_close() returns within 5 s;
 *   - the kernel's remove finishes: the device leaves /sys/bus/pci/devices within 30 s.
 * A driver that does not listen to the request fails: the device keeps working while the kernel
 * waits, so no ENXIO comes.  First, on the main e1000e ($UBDMA_VM_NIC), a device that vanishes
 * without a request (all_ones()).  Exit: 0 pass, 1 fail, 77 skip (run-guest.sh without -R).
 */
#include <errno.h>
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

#define BURST 32
#define RXD 256
#define TXD 256
#define POOL (RXD + TXD + 512)
#define LIMIT_MS 60000

/*
 * A device that vanishes without the kernel's request (it fell off the bus): the test gives the
 * main e1000e back behind the driver's back (ubdma_pci_release() through ubdma_e1000e_pci()), so
 * BAR0 reads all ones.  Within 1024 bursts the driver's check must read STATUS all ones and fail
 * with ENXIO, every ring buffer back in the pool; close must not wait for the device.
 */
static void all_ones(ubdma_ctx_t *ctx, const char *bdf)
{
	struct ubdma_e1000e_opts o = { .size = sizeof(o), .ctx = ctx, .rx_desc = RXD, .tx_desc = TXD,
				       .pool_bufs = POOL, .link_wait_ms = 1 };
	struct ubdma_e1000e_pkt *p[BURST];
	ubdma_e1000e_t *nic;
	unsigned calls = 0, n;
	int rc = ubdma_e1000e_open(bdf, &o, &nic);

	check(rc == 0, "all ones: open %s: %s", bdf, rc ? ubdma_e1000e_last_error() : "ok");
	if (rc)
		return;
	rc = ubdma_pci_release(ubdma_e1000e_pci(nic));
	check(rc == 0, "all ones: the device released behind the driver");
	while (calls < 2048 && !(rc = ubdma_e1000e_rx_burst(nic, p, BURST, &n)))
		calls++;
	check(rc == ENXIO && calls < 1024, "all ones: rx_burst failed with ENXIO after %u bursts (%s)", calls,
	      ubdma_e1000e_last_error());
	check(ubdma_e1000e_pool_free(nic) == POOL, "all ones: every buffer back in the pool (%u of %u)",
	      ubdma_e1000e_pool_free(nic), POOL);
	check(ubdma_e1000e_tx_flush(nic, 1000, &n) == ENXIO, "all ones: tx_flush -> ENXIO");
	uint64_t t0 = hp_now_ms();
	rc = ubdma_e1000e_close(nic);
	check(rc == 0 && hp_now_ms() - t0 < 1000, "all ones: close returned %d in %llu ms", rc,
	      (unsigned long long)(hp_now_ms() - t0));
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_HP_NIC");
	ubdma_ctx_t *ctx;
	ubdma_e1000e_t *nic;
	uint8_t mac[6];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !hp_in_sysfs(bdf)) {
		printf("# SKIP: no hot-pluggable e1000e (UBDMA_VM_HP_NIC=%s; run-guest.sh -R makes one)\n",
		       bdf ? bdf : "unset");
		return 77;
	}
	int rc = ubdma_ctx_open(guest_backend(), &ctx);
	if (rc) {
		printf("# context: %s\n", ubdma_last_error());
		return 1;
	}
	struct ubdma_e1000e_opts o = { .size = sizeof(o), .ctx = ctx, .rx_desc = RXD, .tx_desc = TXD,
				       .pool_bufs = POOL };
	const char *main_nic = getenv("UBDMA_VM_NIC");
	if (main_nic && *main_nic)
		all_ones(ctx, main_nic);
	rc = ubdma_e1000e_open(bdf, &o, &nic);
	check(rc == 0, "open %s: %s", bdf, rc ? ubdma_e1000e_last_error() : "ok");
	if (rc)
		return 1;
	ubdma_e1000e_mac(nic, mac);
	check(ubdma_e1000e_pool_free(nic) == POOL - RXD, "the receive ring holds %u of the %u buffers (%u free)",
	      RXD, POOL, ubdma_e1000e_pool_free(nic));

	/* transmit broadcast frames in bursts and take what comes back; unplug after 2000 frames */
	struct ubdma_e1000e_pkt *p[BURST], *rx[BURST], *held = NULL;
	unsigned long sent = 0, got = 0;
	/* one packet the program holds across the removal */
	check(ubdma_e1000e_pkt_alloc(nic, &held, 1) == 0, "one packet taken from the pool and held");
	uint64_t asked = 0;
	int end_err = 0;
	while (!end_err) {
		unsigned n = 0, r = 0;
		if ((rc = ubdma_e1000e_pkt_alloc(nic, p, BURST)) == 0) {
			for (unsigned i = 0; i < BURST; i++) {
				memset(p[i]->data, 0xff, 6);
				memcpy((uint8_t *)p[i]->data + 6, mac, 6);
				((uint8_t *)p[i]->data)[12] = 0x88; /* local experimental EtherType */
				((uint8_t *)p[i]->data)[13] = 0xb5;
				memset((uint8_t *)p[i]->data + 14, (int)(sent + i), 46);
				p[i]->len = 60;
			}
			rc = ubdma_e1000e_tx_burst(nic, p, BURST, &n);
			sent += n;
			if (n < BURST)
				ubdma_e1000e_pkt_free(nic, p + n, BURST - n);
		}
		if (rc && rc != ENOBUFS) {
			end_err = rc;
			break;
		}
		if ((rc = ubdma_e1000e_rx_burst(nic, rx, BURST, &r))) {
			end_err = rc;
			break;
		}
		got += r;
		if (r)
			ubdma_e1000e_pkt_free(nic, rx, r);
		if (!asked && sent >= 2000) {
			printf("# %lu frames sent, %lu received: unplug\n", sent, got);
			asked = hp_ask("device_del", "hpnic");
		}
		if (asked && hp_now_ms() - asked > LIMIT_MS) {
			end_err = ETIMEDOUT;
			break;
		}
	}
	uint64_t seen = hp_now_ms();
	check(end_err == ENXIO, "a burst failed with ENXIO (%s: %s) %llu ms after device_del was asked",
	      strerror(end_err), ubdma_e1000e_last_error(), (unsigned long long)(seen - asked));
	printf("# %lu frames sent, %lu received\n", sent, got);

	unsigned n = 0, pend = 1;
	struct iovec f = { .iov_base = (char[60]){ 0 }, .iov_len = 60 };
	struct ubdma_e1000e_link link;
	struct ubdma_e1000e_stats st;
	rc = ubdma_e1000e_pkt_alloc(nic, p, 1);
	check(rc == 0, "pkt_alloc still works (pool memory is the program's)");
	if (!rc) {
		check(ubdma_e1000e_tx_burst(nic, p, 1, &n) == ENXIO && n == 0, "tx_burst: ENXIO, nothing queued");
		ubdma_e1000e_pkt_free(nic, p, 1);
	}
	check(ubdma_e1000e_rx_burst(nic, rx, BURST, &n) == ENXIO && n == 0, "rx_burst: ENXIO");
	check(ubdma_e1000e_send(nic, &f, 1, &n) == ENXIO && n == 0, "send: ENXIO");
	check(ubdma_e1000e_tx_flush(nic, 100, &pend) == ENXIO && pend == 0, "tx_flush: ENXIO, nothing pending");
	check(ubdma_e1000e_link(nic, &link) == ENXIO, "link: ENXIO");
	check(ubdma_e1000e_stats(nic, &st) == ENXIO, "stats: ENXIO");
	check(ubdma_e1000e_start(nic) == ENXIO, "start: ENXIO");
	check(ubdma_e1000e_pool_free(nic) == POOL - 1, "every buffer but the one held is back in the pool: %u of "
	      "%u (frames in flight dropped, the receive ring emptied)", ubdma_e1000e_pool_free(nic), POOL);
	rc = held ? ubdma_e1000e_pkt_free(nic, &held, 1) : EINVAL;
	unsigned nfree = ubdma_e1000e_pool_free(nic);
	check(rc == 0 && nfree == POOL, "the packet held across the removal is freed: %u of %u", nfree, POOL);

	uint64_t t0 = hp_now_ms();
	rc = ubdma_e1000e_close(nic);
	uint64_t closed = hp_now_ms() - t0;
	check(rc == 0 && closed < 5000, "close returned %d in %llu ms", rc, (unsigned long long)closed);
	ubdma_ctx_close(ctx);

	hp_check_gone(bdf, asked);
	return failures ? 1 : 0;
}
