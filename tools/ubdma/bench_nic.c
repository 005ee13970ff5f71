/*
 * bench_nic.c - `ubdma bench nic BDF`: a NIC ubdma drives, through its driver library's public
 * API: an Intel 82574L (libubdma_e1000e, 8086:10d3) or a modern virtio-net (libubdma_virtio_net,
 * 1af4:1041, queue pair 0).  A NIC with an address or a default route is refused unless --force
 * (bench_dev.c).  Workloads, the same on both:
 *   tx-64B-burst32  frames of 60 bytes in bursts of 32 for --time: packets a second, CPU per
 *                   packet, the latency of one tx_burst() call;
 *   tx-64B-qd1      one frame at a time: the tx_burst call (descriptor, doorbell) against the
 *                   device's part (doorbell to the frame's completion, seen by tx_flush());
 *   arp-rtt         with --ping IPV4: an ARP request for that address and the time to its reply
 *                   (transmit, the peer, receive), the only traffic that comes back without a
 *                   peer program.
 * Frames go to 02:00:00:00:00:01 (locally administered) with EtherType 0x88b5 (IEEE 802 local
 * experimental): nothing on a network acts on them.
 *
 * The peer, when dpdk-testpmd is installed: DPDK's PMD of the device (net_e1000_em, or
 * net_virtio), loaded with --dpdk-arg -d --dpdk-arg PMD.so when DPDK does not find it itself,
 * on the same port bound to vfio-pci, in txonly mode (bursts of 32 frames of 64 bytes, as
 * tx-64B-burst32), run before ubdma opens the device.  Its rate is the median of the Tx-pps its
 * statistics print each second, once forwarding has started (EAL's start-up is not counted); it
 * reports no latency.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ubdma/e1000e.h>
#include <ubdma/virtio_net.h>

#include "bench.h"
#include "cli.h"

/*
 * The two drivers' calls behind one face: the workloads are written once.  A packet is either
 * driver's struct; the arrays are unions so each library gets its own pointer type.
 */
struct nic {
	ubdma_e1000e_t *e;
	ubdma_virtio_net_t *v;
};
union pkts {
	struct ubdma_e1000e_pkt *e[32];
	struct ubdma_virtio_net_pkt *v[32];
};

static uint8_t *pkt_data(const struct nic *n, const union pkts *p, unsigned i)
{
	return n->v ? p->v[i]->data : p->e[i]->data;
}
static unsigned pkt_len(const struct nic *n, const union pkts *p, unsigned i)
{
	return n->v ? p->v[i]->len : p->e[i]->len;
}
static void pkt_set_len(const struct nic *n, union pkts *p, unsigned i, unsigned len)
{
	if (n->v)
		p->v[i]->len = (uint16_t)len;
	else
		p->e[i]->len = (uint16_t)len;
}
static int nic_alloc(struct nic *n, union pkts *p, unsigned cnt)
{
	return n->v ? ubdma_virtio_net_pkt_alloc(n->v, 0, p->v, cnt) : ubdma_e1000e_pkt_alloc(n->e, p->e, cnt);
}
/* packets @from .. @from + @cnt - 1 of @p */
static int nic_free(struct nic *n, union pkts *p, unsigned from, unsigned cnt)
{
	return n->v ? ubdma_virtio_net_pkt_free(n->v, p->v + from, cnt) : ubdma_e1000e_pkt_free(n->e, p->e + from, cnt);
}
static int nic_tx(struct nic *n, union pkts *p, unsigned cnt, unsigned *sent)
{
	return n->v ? ubdma_virtio_net_tx_burst(n->v, 0, p->v, cnt, sent) : ubdma_e1000e_tx_burst(n->e, p->e, cnt, sent);
}
static int nic_rx(struct nic *n, union pkts *p, unsigned max, unsigned *got)
{
	return n->v ? ubdma_virtio_net_rx_burst(n->v, 0, p->v, max, got) : ubdma_e1000e_rx_burst(n->e, p->e, max, got);
}
static int nic_flush(struct nic *n, unsigned timeout_ms, unsigned *pending)
{
	return n->v ? ubdma_virtio_net_tx_flush(n->v, 0, timeout_ms, pending) : ubdma_e1000e_tx_flush(n->e, timeout_ms, pending);
}
static const char *nic_last_error(const struct nic *n)
{
	return n->v ? ubdma_virtio_net_last_error() : ubdma_e1000e_last_error();
}
/* the name of the transmit call, for the breakdown */
static const char *nic_tx_name(const struct nic *n)
{
	return n->v ? "ubdma_virtio_net_tx_burst()" : "ubdma_e1000e_tx_burst()";
}

static const uint8_t dst_mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };

static void frame(struct nic *n, union pkts *p, unsigned i, const uint8_t src[6])
{
	uint8_t *f = pkt_data(n, p, i);

	memcpy(f, dst_mac, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x88;
	f[13] = 0xb5;
	memset(f + 14, 0xa5, 46);
	pkt_set_len(n, p, i, 60);
}

static void tx_burst_run(struct nic *nic, const uint8_t mac[6], double secs, struct bench_row *row)
{
	union pkts pk;
	struct lhist *h = calloc(1, sizeof(*h));
	uint64_t pkts = 0, t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), c0 = thread_cpu_ns();
	int err = 0;
	char part[96];

	if (!h) {
		sfmt(row->error, sizeof(row->error), "out of memory");
		return;
	}
	while (!bench_stop && now_ns() < end) {
		unsigned sent = 0;
		progress_tick();
		if ((err = nic_alloc(nic, &pk, 32))) {
			if (err != ENOBUFS)
				break;
			nic_flush(nic, 0, NULL); /* reclaim completed frames */
			err = 0;
			continue;
		}
		for (unsigned i = 0; i < 32; i++)
			frame(nic, &pk, i, mac);
		uint64_t a = now_ns();
		err = nic_tx(nic, &pk, 32, &sent);
		uint64_t b = now_ns();
		if (sent < 32)
			nic_free(nic, &pk, sent, 32 - sent);
		if (err && err != ENOBUFS)
			break;
		err = 0;
		lh_add(h, b - a);
		pkts += sent;
	}
	unsigned pending = 0;
	int ferr = nic_flush(nic, 2000, &pending);
	double s = (double)(now_ns() - t0) / 1e9;
	row_rates(row, s, (double)pkts, (double)pkts * 60, (double)(thread_cpu_ns() - c0) / 1e9);
	row->pps = row->iops;
	row_from_hist(row, h);
	sfmt(part, sizeof(part), "%s of 32 frames", nic_tx_name(nic));
	row_part(row, "ubdma", part, h);
	if (err)
		sfmt(row->error, sizeof(row->error), "transmit failed: %s (%s)", strerror(err), nic_last_error(nic));
	else if (ferr)
		sfmt(row->error, sizeof(row->error), "%u frames never completed (link down?): %s", pending, strerror(ferr));
	free(h);
}

static void tx_qd1_run(struct nic *nic, const uint8_t mac[6], double secs, struct bench_row *row)
{
	struct lhist *h = calloc(3, sizeof(*h));
	uint64_t pkts = 0, t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), c0 = thread_cpu_ns();
	int err = 0;
	char part[96];

	if (!h) {
		sfmt(row->error, sizeof(row->error), "out of memory");
		return;
	}
	while (!bench_stop && now_ns() < end) {
		union pkts p;
		unsigned sent = 0, pending = 0;
		progress_tick();
		if ((err = nic_alloc(nic, &p, 1)))
			break;
		frame(nic, &p, 0, mac);
		uint64_t a = now_ns();
		err = nic_tx(nic, &p, 1, &sent);
		uint64_t b = now_ns();
		if (err || !sent) {
			nic_free(nic, &p, 0, 1);
			err = err ? err : ENOBUFS;
			break;
		}
		err = nic_flush(nic, 1000, &pending);
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
	sfmt(part, sizeof(part), "submission: %s of 1 frame", nic_tx_name(nic));
	row_part(row, "ubdma", part, &h[1]);
	row_part(row, "device", nic->v ? "doorbell to used-ring entry (tx_flush polling)"
				       : "doorbell to descriptor done (tx_flush polling)",
		 &h[2]);
	if (err && !row->error[0])
		sfmt(row->error, sizeof(row->error), "transmit failed: %s (%s)", strerror(err), nic_last_error(nic));
	free(h);
}

/* ARP request for @ip from a locally administered address; the time until its reply arrives. */
static void arp_run(struct nic *nic, const uint8_t mac[6], struct in_addr ip, double secs, struct bench_row *row)
{
	struct lhist *h = calloc(1, sizeof(*h));
	uint64_t n = 0, lost = 0, t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), c0 = thread_cpu_ns();
	/* a sender address no one has, from the documentation range (RFC 5737) */
	static const uint8_t sip[4] = { 192, 0, 2, 1 };

	if (!h) {
		sfmt(row->error, sizeof(row->error), "out of memory");
		return;
	}
	/* unicast replies to our MAC and broadcasts are enough (virtio-net without CTRL_RX stays as it is) */
	if (nic->v)
		ubdma_virtio_net_set_promisc(nic->v, 0);
	else
		ubdma_e1000e_set_promisc(nic->e, 0);
	while (!bench_stop && now_ns() < end && lost < 5) {
		union pkts p, rx;
		unsigned sent = 0, got = 0;
		int answered = 0;
		progress_tick();
		if (nic_alloc(nic, &p, 1))
			break;
		uint8_t *f = pkt_data(nic, &p, 0);
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
		pkt_set_len(nic, &p, 0, 60);
		uint64_t a = now_ns();
		if (nic_tx(nic, &p, 1, &sent) || !sent) {
			nic_free(nic, &p, 0, 1);
			break;
		}
		while (!answered && now_ns() - a < 200000000u && !bench_stop) {
			if (nic_rx(nic, &rx, 16, &got))
				break;
			for (unsigned i = 0; i < got; i++) {
				const uint8_t *r = pkt_data(nic, &rx, i);
				if (pkt_len(nic, &rx, i) >= 42 && r[12] == 0x08 && r[13] == 0x06 && r[21] == 2 &&
				    !memcmp(r + 28, &ip, 4))
					answered = 1;
			}
			if (got)
				nic_free(nic, &rx, 0, got);
		}
		uint64_t b = now_ns();
		nic_flush(nic, 100, NULL);
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
static void testpmd_run(const char *bdf, int virtio, char **dpdk, int ndpdk, double secs, const char *outdir,
			struct bench_row *row)
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
	/* the virtio PMD as bench/virtio_net.c runs it: IOVAs are virtual addresses (behind an
	 * IOMMU, as ubdma's), and no link-state interrupt (its MSI-X vector would be the only one) */
	if (virtio)
		argv[n++] = "--iova-mode=va";
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
	if (virtio) {
		argv[n++] = "--rxq=1";
		argv[n++] = "--txq=1";
		argv[n++] = "--no-lsc-interrupt";
	}
	argv[n] = NULL;
	sfmt(out, sizeof(out), "%s/testpmd.out", outdir);
	sfmt(err, sizeof(err), "%s/testpmd.log", outdir);
	/* the clock starts at testpmd's first report, which is skipped below, and the next comes a
	 * stats period (1 s of the guest's clock) later: with only secs, a slow guest could be
	 * stopped before it, with no report to count.  The rate is the reports' median, so the
	 * longer run changes no figure. */
	int st = bench_spawn_until(argv, out, err, "Tx-pps:", secs + 1.5);
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
	int virtio = d.vendor == UBDMA_VIRTIO_NET_VENDOR && d.device == UBDMA_VIRTIO_NET_DEVICE;
	if (!virtio && (d.vendor != UBDMA_E1000E_VENDOR || d.device != UBDMA_E1000E_DEVICE))
		usage_error("bench nic: %s is %04x:%04x; ubdma drives the Intel 82574L (e1000e, %04x:%04x) and the modern "
			    "virtio-net (%04x:%04x) only; nothing was touched",
			    d.bdf, d.vendor, d.device, UBDMA_E1000E_VENDOR, UBDMA_E1000E_DEVICE, UBDMA_VIRTIO_NET_VENDOR,
			    UBDMA_VIRTIO_NET_DEVICE);
	/* the kernel's driver of the device (virtio-net's netdev hangs below virtio_pci's virtioN) */
	const char *kdrv = virtio ? "virtio-pci" : "e1000e";
	if (!strcmp(d.orig_drv, "vfio-pci")) {
		if (dev_check_vfio_free(&d))
			return EX_FAIL;
	} else if (d.orig_drv[0] && strcmp(d.orig_drv, kdrv)) {
		return fail("bench nic: %s is bound to %s, a driver ubdma bench does not know how to check: unbind it "
			    "first (nothing was touched)",
			    d.bdf, d.orig_drv);
	} else if (dev_check_nic(&d, o.force)) {
		return EX_FAIL;
	}
	struct bench_report rep = { .kind = "nic", .outdir = o.out, .csv = o.csv };
	char devline[200];
	sfmt(devline, sizeof(devline), "%s (%04x:%04x, %s), found on %s%s%s", d.bdf, d.vendor, d.device,
	     virtio ? "virtio-net" : "82574L", d.orig_drv[0] ? d.orig_drv : "no driver", d.netdev[0] ? " as " : "",
	     d.netdev);
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
			testpmd_run(d.bdf, virtio, dpdk, ndpdk, o.secs, o.out, peer);
			progress_done();
			if (peer->error[0] && !bench_stop) {
				fprintf(stderr, "ubdma: bench nic: testpmd failed: %s\n", peer->error);
				rc = EX_FAIL;
			}
		}
	}
	struct nic nic = { 0 };
	struct ubdma_e1000e_opts eo = { .size = sizeof(eo), .link_wait_ms = 3000 };
	struct ubdma_virtio_net_opts vo = { .size = sizeof(vo), .link_wait_ms = 3000 };
	int err = EINTR;
	if (!bench_stop)
		err = virtio ? ubdma_virtio_net_open(d.bdf, &vo, &nic.v) : ubdma_e1000e_open(d.bdf, &eo, &nic.e);
	uint8_t mac[6] = { 0 };
	if (bench_stop) {
		/* interrupted during the peer: nothing more to run */
	} else if (err) {
		rc = fail("bench nic: cannot open %s: %s (%s)", d.bdf, strerror(err), nic_last_error(&nic));
	} else {
		int up = 1;
		if (virtio) {
			struct ubdma_virtio_net_link l;
			ubdma_virtio_net_mac(nic.v, mac);
			up = ubdma_virtio_net_link(nic.v, &l) || l.up;
		} else {
			struct ubdma_e1000e_link l;
			ubdma_e1000e_mac(nic.e, mac);
			up = ubdma_e1000e_link(nic.e, &l) || l.up;
		}
		if (!up)
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
				tx_burst_run(&nic, mac, o.secs, row);
			else if (k == 1)
				tx_qd1_run(&nic, mac, o.secs, row);
			else
				arp_run(&nic, mac, ping, o.secs, row);
			progress_done();
			if (row->error[0]) {
				fprintf(stderr, "ubdma: bench nic: %s failed: %s\n", names[k], row->error);
				rc = EX_FAIL;
			}
		}
		if (!have_ping)
			report_note(&rep, "arp-rtt not run: give --ping IPV4 of a host on the link to time a round trip");
	}
	ubdma_e1000e_close(nic.e);
	ubdma_virtio_net_close(nic.v);
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
