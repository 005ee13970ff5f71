/*
 * bench_nic.c - `ubdma bench nic BDF`: libubdma_e1000e on an 82574L of this machine (the only
 * NIC ubdma drives today; virtio-net is not on main yet).  A NIC with an address or a default
 * route is refused unless --force (bench_dev.c).  Workloads:
 *   tx-64B-burst32  frames of 60 bytes in bursts of 32 for --time: packets a second, CPU per
 *                   packet, the latency of one ubdma_e1000e_tx_burst() call;
 *   tx-64B-qd1      one frame at a time: the tx_burst call (descriptor, doorbell) against the
 *                   device's part (doorbell to the descriptor's done bit, seen by
 *                   ubdma_e1000e_tx_flush());
 *   arp-rtt         with --ping IPV4: an ARP request for that address and the time to its reply
 *                   (transmit, the peer, receive), the only traffic that comes back without a
 *                   peer program.
 * Frames go to 02:00:00:00:00:01 (locally administered) with EtherType 0x88b5 (IEEE 802 local
 * experimental): nothing on a network acts on them.
 *
 * The peer, when dpdk-testpmd is installed: DPDK's e1000 PMD on the same port, bound to
 * vfio-pci, in txonly mode (bursts of 32 frames of 64 bytes, as tx-64B-burst32), run before
 * ubdma opens the device.  Its rate is the median of the Tx-pps its statistics print each
 * second, once forwarding has started (EAL's start-up is not counted); it reports no latency.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ubdma/e1000e.h>

#include "bench.h"
#include "cli.h"

static const uint8_t dst_mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };

static void frame(struct ubdma_e1000e_pkt *p, const uint8_t src[6])
{
	uint8_t *f = p->data;

	memcpy(f, dst_mac, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x88;
	f[13] = 0xb5;
	memset(f + 14, 0xa5, 46);
	p->len = 60;
}

static void tx_burst_run(ubdma_e1000e_t *nic, const uint8_t mac[6], double secs, struct bench_row *row)
{
	struct ubdma_e1000e_pkt *pk[32];
	struct lhist *h = calloc(1, sizeof(*h));
	uint64_t pkts = 0, t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), c0 = thread_cpu_ns();
	int err = 0;

	if (!h) {
		sfmt(row->error, sizeof(row->error), "out of memory");
		return;
	}
	while (!bench_stop && now_ns() < end) {
		unsigned sent = 0;
		progress_tick();
		if ((err = ubdma_e1000e_pkt_alloc(nic, pk, 32))) {
			if (err != ENOBUFS)
				break;
			ubdma_e1000e_tx_flush(nic, 0, NULL); /* reclaim completed frames */
			err = 0;
			continue;
		}
		for (int i = 0; i < 32; i++)
			frame(pk[i], mac);
		uint64_t a = now_ns();
		err = ubdma_e1000e_tx_burst(nic, pk, 32, &sent);
		uint64_t b = now_ns();
		if (sent < 32)
			ubdma_e1000e_pkt_free(nic, pk + sent, 32 - sent);
		if (err && err != ENOBUFS)
			break;
		err = 0;
		lh_add(h, b - a);
		pkts += sent;
	}
	unsigned pending = 0;
	int ferr = ubdma_e1000e_tx_flush(nic, 2000, &pending);
	double s = (double)(now_ns() - t0) / 1e9;
	row_rates(row, s, (double)pkts, (double)pkts * 60, (double)(thread_cpu_ns() - c0) / 1e9);
	row->pps = row->iops;
	row_from_hist(row, h);
	row_part(row, "ubdma", "ubdma_e1000e_tx_burst() of 32 frames", h);
	if (err)
		sfmt(row->error, sizeof(row->error), "transmit failed: %s (%s)", strerror(err), ubdma_e1000e_last_error());
	else if (ferr)
		sfmt(row->error, sizeof(row->error), "%u frames never completed (link down?): %s", pending, strerror(ferr));
	free(h);
}

static void tx_qd1_run(ubdma_e1000e_t *nic, const uint8_t mac[6], double secs, struct bench_row *row)
{
	struct lhist *h = calloc(3, sizeof(*h));
	uint64_t pkts = 0, t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), c0 = thread_cpu_ns();
	int err = 0;

	if (!h) {
		sfmt(row->error, sizeof(row->error), "out of memory");
		return;
	}
	while (!bench_stop && now_ns() < end) {
		struct ubdma_e1000e_pkt *p;
		unsigned sent = 0, pending = 0;
		progress_tick();
		if ((err = ubdma_e1000e_pkt_alloc(nic, &p, 1)))
			break;
		frame(p, mac);
		uint64_t a = now_ns();
		err = ubdma_e1000e_tx_burst(nic, &p, 1, &sent);
		uint64_t b = now_ns();
		if (err || !sent) {
			ubdma_e1000e_pkt_free(nic, &p, 1);
			err = err ? err : ENOBUFS;
			break;
		}
		err = ubdma_e1000e_tx_flush(nic, 1000, &pending);
		uint64_t c = now_ns();
		if (err) {
			sfmt(row->error, sizeof(row->error), "a frame did not complete in 1 s (link down?)");
			break;
		}
		lh_add(&h[0], c - a);
		lh_add(&h[1], b - a);
		lh_add(&h[2], c - b);
		pkts++;
	}
	row_rates(row, (double)(now_ns() - t0) / 1e9, (double)pkts, (double)pkts * 60, (double)(thread_cpu_ns() - c0) / 1e9);
	row->pps = row->iops;
	row_from_hist(row, &h[0]);
	row_part(row, "ubdma", "submission: ubdma_e1000e_tx_burst() of 1 frame", &h[1]);
	row_part(row, "device", "doorbell to descriptor done (tx_flush polling)", &h[2]);
	if (err && !row->error[0])
		sfmt(row->error, sizeof(row->error), "transmit failed: %s (%s)", strerror(err), ubdma_e1000e_last_error());
	free(h);
}

/* ARP request for @ip from a locally administered address; the time until its reply arrives. */
static void arp_run(ubdma_e1000e_t *nic, const uint8_t mac[6], struct in_addr ip, double secs, struct bench_row *row)
{
	struct lhist *h = calloc(1, sizeof(*h));
	uint64_t n = 0, lost = 0, t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), c0 = thread_cpu_ns();
	/* a sender address no one has, from the documentation range (RFC 5737) */
	static const uint8_t sip[4] = { 192, 0, 2, 1 };

	if (!h) {
		sfmt(row->error, sizeof(row->error), "out of memory");
		return;
	}
	ubdma_e1000e_set_promisc(nic, 0);
	while (!bench_stop && now_ns() < end && lost < 5) {
		struct ubdma_e1000e_pkt *p, *rx[16];
		unsigned sent = 0, got = 0;
		int answered = 0;
		progress_tick();
		if (ubdma_e1000e_pkt_alloc(nic, &p, 1))
			break;
		uint8_t *f = p->data;
		memset(f, 0xff, 6);
		memcpy(f + 6, mac, 6);
		f[12] = 0x08, f[13] = 0x06;			      /* ARP */
		f[14] = 0, f[15] = 1, f[16] = 0x08, f[17] = 0, f[18] = 6, f[19] = 4; /* Ethernet, IPv4 */
		f[20] = 0, f[21] = 1;					      /* request */
		memcpy(f + 22, mac, 6);
		memcpy(f + 28, sip, 4);
		memset(f + 32, 0, 6);
		memcpy(f + 38, &ip, 4);
		memset(f + 42, 0, 18);
		p->len = 60;
		uint64_t a = now_ns();
		if (ubdma_e1000e_tx_burst(nic, &p, 1, &sent) || !sent) {
			ubdma_e1000e_pkt_free(nic, &p, 1);
			break;
		}
		while (!answered && now_ns() - a < 200000000u && !bench_stop) {
			if (ubdma_e1000e_rx_burst(nic, rx, 16, &got))
				break;
			for (unsigned i = 0; i < got; i++) {
				const uint8_t *r = rx[i]->data;
				if (rx[i]->len >= 42 && r[12] == 0x08 && r[13] == 0x06 && r[21] == 2 && !memcmp(r + 28, &ip, 4))
					answered = 1;
			}
			if (got)
				ubdma_e1000e_pkt_free(nic, rx, got);
		}
		uint64_t b = now_ns();
		ubdma_e1000e_tx_flush(nic, 100, NULL);
		if (answered) {
			lh_add(h, b - a);
			n++;
		} else {
			lost++;
		}
	}
	row_rates(row, (double)(now_ns() - t0) / 1e9, (double)n, (double)n * 60, (double)(thread_cpu_ns() - c0) / 1e9);
	row->pps = row->iops;
	row_from_hist(row, h);
	if (!n && !bench_stop)
		sfmt(row->error, sizeof(row->error), "no ARP reply from %s in %llu tries", inet_ntoa(ip), (unsigned long long)lost);
	free(h);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* testpmd txonly on the port for @secs; @dpdk: extra EAL arguments (-d PMD ...). */
static void testpmd_run(const char *bdf, char **dpdk, int ndpdk, double secs, const char *outdir, struct bench_row *row)
{
	char *argv[64], prefix[64], out[4096], err[4096], allow[32];
	int n = 0;

	sfmt(prefix, sizeof(prefix), "--file-prefix=ubdma-bench-%d", (int)getpid());
	sfmt(allow, sizeof(allow), "%s", bdf);
	argv[n++] = "dpdk-testpmd";
	argv[n++] = "-l";
	argv[n++] = "0,1";
	argv[n++] = "-n";
	argv[n++] = "1";
	argv[n++] = "-m";
	argv[n++] = "64";
	argv[n++] = "--in-memory";
	argv[n++] = prefix;
	argv[n++] = "-a";
	argv[n++] = allow;
	for (int i = 0; i < ndpdk && n < 50; i++)
		argv[n++] = dpdk[i];
	argv[n++] = "--";
	argv[n++] = "--forward-mode=txonly";
	argv[n++] = "--txpkts=64";
	argv[n++] = "--burst=32";
	argv[n++] = "--nb-cores=1";
	argv[n++] = "--total-num-mbufs=4096";
	argv[n++] = "--stats-period=1";
	argv[n] = NULL;
	sfmt(out, sizeof(out), "%s/testpmd.out", outdir);
	sfmt(err, sizeof(err), "%s/testpmd.log", outdir);
	int st = bench_spawn_until(argv, out, err, "Tx-pps:", secs);
	double pps[4096];
	int np = 0;
	FILE *f = fopen(out, "re");
	char line[512];
	int seen = 0;
	while (f && fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "Tx-pps:");
		double v;
		/* the first report covers start-up: skip it */
		if (p && sscanf(p, "Tx-pps: %lf", &v) == 1 && seen++ && v > 0 && np < 4096)
			pps[np++] = v;
	}
	if (f)
		fclose(f);
	if (bench_stop) {
		sfmt(row->error, sizeof(row->error), "interrupted");
	} else if (st == -2 || !np) {
		sfmt(row->error, sizeof(row->error), "testpmd never forwarded (exit status %d): see %s and %s", st, out, err);
	} else {
		qsort(pps, (size_t)np, sizeof(pps[0]), cmp_double);
		double rate = pps[np / 2];
		/* its forwarding core polls all the time: one core for the whole time */
		row_rates(row, secs, rate * secs, rate * secs * 64, secs);
		row->pps = rate;
	}
}

static const char usage[] = "bench nic: usage: ubdma bench nic BDF [--time SECS] [--out DIR] [--csv] [--ping IPV4] "
			    "[--force] [--no-peer] [--dpdk-arg ARG]...";

int bench_nic(int argc, char **argv)
{
	struct bench_opts o;
	char *rest[64];
	int n = bench_common_opts(argc, argv, &o, rest, "nic");
	const char *bdf_arg = NULL;
	struct in_addr ping = { 0 };
	int have_ping = 0, rc = 0, no_peer = 0, ndpdk = 0;
	char *dpdk[32];

	for (int i = 1; i < n; i++) {
		if (!strcmp(rest[i], "--no-peer")) {
			no_peer = 1;
		} else if (!strcmp(rest[i], "--dpdk-arg") && i + 1 < n && ndpdk < 32) {
			dpdk[ndpdk++] = rest[++i];
		} else if (!strcmp(rest[i], "--ping") && i + 1 < n) {
			if (!inet_aton(rest[++i], &ping))
				usage_error("bench nic: --ping wants an IPv4 address, not '%s'", rest[i]);
			have_ping = 1;
		} else if (rest[i][0] == '-' || bdf_arg) {
			usage_error("%s", usage);
		} else {
			bdf_arg = rest[i];
		}
	}
	if (!bdf_arg)
		usage_error("%s", usage);
	struct bench_dev d;
	dev_find(bdf_arg, CLASS_ETHERNET << 8, 0xffff00, "an Ethernet controller (class 0x0200)", &d);
	if (d.vendor != UBDMA_E1000E_VENDOR || d.device != UBDMA_E1000E_DEVICE)
		usage_error("bench nic: %s is %04x:%04x; ubdma drives the Intel 82574L (e1000e, %04x:%04x) only "
			    "(virtio-net is not there yet); nothing was touched",
			    d.bdf, d.vendor, d.device, UBDMA_E1000E_VENDOR, UBDMA_E1000E_DEVICE);
	if (!strcmp(d.orig_drv, "vfio-pci")) {
		if (dev_check_vfio_free(&d))
			return EX_FAIL;
	} else if (d.orig_drv[0] && strcmp(d.orig_drv, "e1000e")) {
		return fail("bench nic: %s is bound to %s, a driver ubdma bench does not know how to check: unbind it "
			    "first (nothing was touched)",
			    d.bdf, d.orig_drv);
	} else if (dev_check_nic(&d, o.force)) {
		return EX_FAIL;
	}
	struct bench_report rep = { .kind = "nic", .outdir = o.out, .csv = o.csv };
	char devline[200];
	sfmt(devline, sizeof(devline), "%s (%04x:%04x, 82574L), found on %s%s%s", d.bdf, d.vendor, d.device,
	     d.orig_drv[0] ? d.orig_drv : "no driver", d.netdev[0] ? " as " : "", d.netdev);
	rep.device = devline;
	if (mkdir_p(o.out))
		return fail("cannot create %s: %s", o.out, strerror(errno));
	if (dev_take(&d))
		return EX_FAIL;
	struct bench_row *peer = report_row(&rep, "tx-64B-burst32", "testpmd (DPDK txonly)");
	if (peer) {
		sfmt(peer->target, sizeof(peer->target), "%s", d.bdf);
		if (no_peer)
			sfmt(peer->skipped, sizeof(peer->skipped), "--no-peer");
		else if (!have_prog("dpdk-testpmd"))
			sfmt(peer->skipped, sizeof(peer->skipped), "dpdk-testpmd is not installed (apt install dpdk)");
		else {
			progress(1, 3 + have_ping, "tx-64B-burst32", "testpmd", o.secs);
			testpmd_run(d.bdf, dpdk, ndpdk, o.secs, o.out, peer);
			progress_done();
			if (peer->error[0] && !bench_stop) {
				fprintf(stderr, "ubdma: bench nic: testpmd failed: %s\n", peer->error);
				rc = EX_FAIL;
			}
		}
	}
	ubdma_e1000e_t *nic = NULL;
	struct ubdma_e1000e_opts eo = { .size = sizeof(eo), .link_wait_ms = 3000 };
	int err = bench_stop ? EINTR : ubdma_e1000e_open(d.bdf, &eo, &nic);
	uint8_t mac[6] = { 0 };
	if (bench_stop) {
		/* interrupted during the peer: nothing more to run */
	} else if (err) {
		rc = fail("bench nic: cannot open %s: %s (%s)", d.bdf, strerror(err), ubdma_e1000e_last_error());
	} else {
		struct ubdma_e1000e_link l;
		ubdma_e1000e_mac(nic, mac);
		if (ubdma_e1000e_link(nic, &l) == 0 && !l.up)
			report_note(&rep, "the link was down at the start: transmissions may not complete");
		int total = 3 + have_ping, step = 1;
		static const char *names[3] = { "tx-64B-burst32", "tx-64B-qd1", "arp-rtt" };
		for (int k = 0; k < 3 && !bench_stop; k++) {
			if (k == 2 && !have_ping)
				break;
			struct bench_row *row = report_row(&rep, names[k], "ubdma");
			if (!row)
				break;
			sfmt(row->target, sizeof(row->target), "%s", d.bdf);
			progress(++step, total, names[k], "ubdma", o.secs);
			if (k == 0)
				tx_burst_run(nic, mac, o.secs, row);
			else if (k == 1)
				tx_qd1_run(nic, mac, o.secs, row);
			else
				arp_run(nic, mac, ping, o.secs, row);
			progress_done();
			if (row->error[0]) {
				fprintf(stderr, "ubdma: bench nic: %s failed: %s\n", names[k], row->error);
				rc = EX_FAIL;
			}
		}
		if (!have_ping)
			report_note(&rep, "arp-rtt not run: give --ping IPV4 of a host on the link to time a round trip");
	}
	ubdma_e1000e_close(nic);
	if (dev_give_back(&d))
		rc = EX_FAIL;
	report_note(&rep, "%s was given back to %s at the end", d.bdf, d.orig_drv[0] ? d.orig_drv : "no driver");
	if (bench_stop)
		report_note(&rep, "interrupted by signal %d", (int)bench_stop);
	if (report_write(&rep))
		rc = EX_FAIL;
	report_free(&rep);
	return bench_stop ? 128 + bench_stop : rc;
}
