/*
 * test_virtio_net_txrx - transmit and receive through libubdma_virtio_net, checked from outside.
 *
 *   test_virtio_net_txrx [BDF] [N] [K]    (default $UBDMA_VM_VNET, 1000 frames, 20 foreign)
 *
 * The virtio-net at BDF (disable-legacy=on, iommu_platform=on, behind the emulated VT-d) is
 * connected by `-netdev socket` to drivers/e1000e/test/nic_peer.py (rx-test mode) on the host's
 * 127.0.0.1, and QEMU's filter-dump writes its traffic to a pcap that tshark reads afterwards
 * (drivers/virtio-net/test/vm-vnet.sh).
 *
 *  1. bad input: NULL arguments, opts too small or with unknown bytes, VERSION_1 in
 *     features_off, more queue pairs than the device has, a queue size beyond the device's (found
 *     once all the memory is allocated: every hugepage must come back), a function that is not a
 *     virtio-net (the NVMe): each its errno, nothing left open (a later open succeeds);
 *  2. open: VERSION_1 and ACCESS_PLATFORM negotiated, the MAC of the QEMU command line, link up;
 *  3. transmit: frames 0 .. N-1 of the pattern of test_e1000e_tx.c (dst 02:00:00:00:00:01), in
 *     bursts of changing size, one larger than the queue (ENOBUFS, the rest sent again);
 *     oversized, runt and foreign packets refused; the host checks the pcap byte for byte;
 *  4. receive: RDY1 to the peer, then the N broadcast frames in order and byte for byte (and the
 *     peer's 1600-byte frame, which fits a virtio buffer whole), with the pool run dry once;
 *     promiscuous mode off (control queue, VIRTIO_NET_CTRL_RX_PROMISC): the K frames to a foreign
 *     unicast address must not arrive; promiscuous on (PRM1): they must, then END2;
 *  5. no buffer lost: every pool buffer is free or in the receive queue at the end.
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ubdma/ubdma.h>
#include <ubdma/virtio_net.h>

#include "check.h"

#define EXIT_SKIP 77
#define WAIT_S 90
#define QSIZE 64
#define POOL 256

static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t dst_mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };
static const uint8_t peer[6] = { 0x02, 0, 0, 0, 0, 0x02 };
static const uint8_t foreign[6] = { 0x02, 0, 0, 0, 0, 0x99 };
static const uint8_t want_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x60 }; /* run-guest.sh -V */

static unsigned frame_len(uint32_t seq)
{
	return 60 + (seq * 97u) % 1455u;
}

static void frame_fill(uint8_t *b, uint32_t seq, unsigned n, const uint8_t dst[6], const uint8_t src[6])
{
	memcpy(b, dst, 6);
	memcpy(b + 6, src, 6);
	b[12] = 0x88, b[13] = 0xb5;
	memcpy(b + 14, "UBDM", 4);
	b[18] = (uint8_t)(seq >> 24), b[19] = (uint8_t)(seq >> 16);
	b[20] = (uint8_t)(seq >> 8), b[21] = (uint8_t)seq;
	b[22] = (uint8_t)(n >> 8), b[23] = (uint8_t)n;
	for (unsigned k = 24; k < n; k++)
		b[k] = (uint8_t)(seq * 31u + k * 7u);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Free 2 MiB hugepages of the system (the pool of 4096 x 2 KiB buffers is hugepage memory). */
static long free_huge(void)
{
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "r");
	long n = -1;

	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

/* 1. Errors of open; nothing may stay open after them. */
static void open_errors(const char *bdf)
{
	struct ubdma_virtio_net_opts o;
	ubdma_virtio_net_t *nic = (void *)1;
	const char *nvme = getenv("UBDMA_VM_NVME");
	int err;

	check(ubdma_virtio_net_open(NULL, NULL, &nic) == EINVAL && nic == NULL, "open(NULL bdf): EINVAL, "
	      "*nicp NULL");
	check(ubdma_virtio_net_open(bdf, NULL, NULL) == EINVAL, "open(NULL nicp): EINVAL");
	memset(&o, 0, sizeof(o));
	o.size = sizeof(size_t);
	check(ubdma_virtio_net_open(bdf, &o, &nic) == EINVAL, "opts.size too small: EINVAL (%s)",
	      ubdma_virtio_net_last_error());
	{
		struct { struct ubdma_virtio_net_opts o; uint64_t extra; } big;

		memset(&big, 0, sizeof(big));
		big.o.size = sizeof(big);
		big.extra = 1;
		check(ubdma_virtio_net_open(bdf, &big.o, &nic) == ENOTSUP, "opts with an unknown byte "
		      "set: ENOTSUP (%s)", ubdma_virtio_net_last_error());
		big.extra = 0;
		err = ubdma_virtio_net_open(bdf, &big.o, &nic);
		check(err == 0, "opts from a newer header with zero tail: accepted (%s)",
		      err ? ubdma_virtio_net_last_error() : "ok");
		ubdma_virtio_net_close(nic);
	}
	o.size = sizeof(o);
	o.features_off = 1ull << UBDMA_VIRTIO_F_VERSION_1;
	check(ubdma_virtio_net_open(bdf, &o, &nic) == EINVAL, "VERSION_1 in features_off: EINVAL");
	o.features_off = 0;
	o.queue_size = 100;
	check(ubdma_virtio_net_open(bdf, &o, &nic) == EINVAL, "queue_size 100: EINVAL");
	o.queue_size = 0;
	o.queue_pairs = UBDMA_VIRTIO_NET_MAX_QP + 1;
	check(ubdma_virtio_net_open(bdf, &o, &nic) == EINVAL, "queue_pairs 17: EINVAL");
	o.queue_pairs = 2;
	err = ubdma_virtio_net_open(bdf, &o, &nic);
	check(err == ENOTSUP || err == EINVAL, "2 queue pairs on a single-queue netdev: %s (%s)",
	      strerror(err), ubdma_virtio_net_last_error());
	if (!err)
		ubdma_virtio_net_close(nic);
	/* a failure after every ring and the pool were allocated: all of it given back */
	{
		long before = free_huge(), after;

		o = (struct ubdma_virtio_net_opts){ .size = sizeof(o), .queue_size = 1024 };
		err = ubdma_virtio_net_open(bdf, &o, &nic);
		after = free_huge();
		check(err == EIO && nic == NULL, "queue_size 1024 beyond the device's maximum: EIO after the "
		      "memory was allocated (%s)", ubdma_virtio_net_last_error());
		check(before >= 0 && after == before, "... and every hugepage came back (%ld free before, "
		      "%ld after)", before, after);
	}
	if (nvme && *nvme) {
		err = ubdma_virtio_net_open(nvme, NULL, &nic);
		check(err == ENODEV && nic == NULL, "open the NVMe %s: ENODEV (%s)", nvme,
		      ubdma_virtio_net_last_error());
	}
	check(ubdma_virtio_net_close(NULL) == 0, "close(NULL): 0");
}

/* 3. Transmit frames 0 .. n-1. */
static void transmit(ubdma_virtio_net_t *nic, const uint8_t mac[6], uint32_t n)
{
	static const unsigned bursts[] = { 1, 7, 32, 3, QSIZE + 40, 16, 64 };
	struct ubdma_virtio_net_pkt *p[QSIZE + 64], fake;
	struct ubdma_virtio_net_stats st;
	unsigned before = ubdma_virtio_net_pool_free(nic, 0), sent = 99, full = 0, b = 0;
	uint32_t seq = 0;
	int err;

	/* refused input first: nothing queued, nothing lost */
	check(ubdma_virtio_net_pkt_alloc(nic, 0, p, 1) == 0, "pkt_alloc 1");
	frame_fill(p[0]->data, 0xdead0000u, 60, dst_mac, mac);
	p[0]->len = UBDMA_VIRTIO_NET_MAX_FRAME + 1;
	err = ubdma_virtio_net_tx_burst(nic, 0, p, 1, &sent);
	check(err == EMSGSIZE && sent == 0, "oversized frame: EMSGSIZE, nothing sent (%s)",
	      ubdma_virtio_net_last_error());
	p[0]->len = UBDMA_VIRTIO_NET_MIN_FRAME - 1;
	check(ubdma_virtio_net_tx_burst(nic, 0, p, 1, &sent) == EMSGSIZE && sent == 0, "runt: EMSGSIZE");
	p[0]->len = 60;
	err = ubdma_virtio_net_tx_burst(nic, 1, p, 1, &sent);
	check(err == EINVAL && sent == 0, "queue pair 1 of a 1-pair device: EINVAL");
	memset(&fake, 0, sizeof(fake));
	p[1] = &fake;
	check(ubdma_virtio_net_tx_burst(nic, 0, p + 1, 1, &sent) == EINVAL && sent == 0,
	      "a packet not of the pool: EINVAL");
	check(ubdma_virtio_net_pkt_free(nic, p, 2) == EINVAL && ubdma_virtio_net_pool_free(nic, 0) ==
	      before - 1, "pkt_free with a foreign packet: EINVAL, nothing freed");
	check(ubdma_virtio_net_pkt_free(nic, p, 1) == 0, "pkt_free of the real one");
	check(ubdma_virtio_net_pkt_free(nic, p, 1) == EINVAL, "double free: EINVAL");
	check(ubdma_virtio_net_pool_free(nic, 0) == before, "pool back to %u", before);

	while (seq < n) {
		unsigned want = bursts[b++ % (sizeof(bursts) / sizeof(bursts[0]))], k;

		if (want > n - seq)
			want = n - seq;
		if ((err = ubdma_virtio_net_pkt_alloc(nic, 0, p, want))) {
			ubdma_virtio_net_tx_flush(nic, 0, 1000, NULL);
			if ((err = ubdma_virtio_net_pkt_alloc(nic, 0, p, want))) {
				check(0, "pkt_alloc %u: %s", want, ubdma_virtio_net_last_error());
				return;
			}
		}
		for (k = 0; k < want; k++) {
			frame_fill(p[k]->data, seq + k, frame_len(seq + k), dst_mac, mac);
			p[k]->len = (uint16_t)frame_len(seq + k);
		}
		k = 0;
		while (k < want) {
			err = ubdma_virtio_net_tx_burst(nic, 0, p + k, want - k, &sent);
			k += sent;
			if (err == ENOBUFS) {
				full++;
				ubdma_virtio_net_tx_flush(nic, 0, 5, NULL);
			} else if (err) {
				check(0, "tx_burst at frame %u: %s (%s)", seq + k, strerror(err),
				      ubdma_virtio_net_last_error());
				ubdma_virtio_net_pkt_free(nic, p + k, want - k);
				return;
			}
		}
		seq += want;
	}
	err = ubdma_virtio_net_tx_flush(nic, 0, 10000, &sent);
	check(err == 0 && sent == 0, "%u frames sent and completed (%u pending)", n, sent);
	check(full > 0, "a burst larger than the queue met ENOBUFS (%u times) and went on", full);
	check(ubdma_virtio_net_pool_free(nic, 0) == before, "transmit lost no buffer (%u free)",
	      ubdma_virtio_net_pool_free(nic, 0));
	ubdma_virtio_net_stats(nic, &st);
	check(st.tx_pkts == n && st.tx_rejected == 3, "stats: tx_pkts %llu, tx_rejected %llu (oversized, "
	      "runt, foreign; the bad queue pair is refused before any queue is looked at), "
	      "notifications %llu", (unsigned long long)st.tx_pkts, (unsigned long long)st.tx_rejected,
	      (unsigned long long)st.notifications);
}

static void send_ctrl(ubdma_virtio_net_t *nic, const uint8_t mac[6], const char *cmd, const char *text)
{
	struct ubdma_virtio_net_pkt *p;
	unsigned sent = 0;
	uint8_t *f;

	if (ubdma_virtio_net_pkt_alloc(nic, 0, &p, 1)) {
		check(0, "pkt_alloc for %s", cmd);
		return;
	}
	f = p->data;
	memset(f, 0, 80);
	memcpy(f, bcast, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x88, f[13] = 0xb6;
	memcpy(f + 14, cmd, 4);
	if (text)
		snprintf((char *)f + 18, 80 - 18, "%s", text);
	p->len = 80;
	check(ubdma_virtio_net_tx_burst(nic, 0, &p, 1, &sent) == 0 && sent == 1 &&
	      ubdma_virtio_net_tx_flush(nic, 0, 2000, NULL) == 0, "control frame %s sent", cmd);
}

struct expect {
	uint32_t next, end;
	const uint8_t *dst;
	const char *endcmd;
	int ended, bad, big;
	unsigned got;
};

static void judge(struct expect *e, const uint8_t *b, unsigned len)
{
	uint32_t seq;
	uint8_t want[2048];

	if (len >= 18 && b[12] == 0x88 && b[13] == 0xb6 && !memcmp(b + 14, e->endcmd, 4)) {
		e->ended = 1;
		if (e->next != e->end && e->bad++ < 10)
			check(0, "%s came before frame %u", e->endcmd, e->next);
		return;
	}
	if (len < 24 || b[12] != 0x88 || b[13] != 0xb5 || memcmp(b + 14, "UBDM", 4))
		return; /* not ours */
	seq = (uint32_t)b[18] << 24 | (uint32_t)b[19] << 16 | (uint32_t)b[20] << 8 | b[21];
	if (seq == 3000000u) { /* the peer's 1600-byte frame: fits a 2048-byte virtio buffer */
		frame_fill(want, seq, 1600, e->dst, peer);
		if (len != 1600 || memcmp(b, want, 1600)) {
			check(0, "the 1600-byte frame came as %u bytes or wrong", len);
			e->bad++;
		}
		e->big++;
		return;
	}
	if (e->ended || seq != e->next) {
		if (e->bad++ < 10)
			check(0, "frame %u (%u bytes) where %s was expected", seq, len,
			      e->ended ? "nothing" : "the next in order");
		return;
	}
	frame_fill(want, seq, frame_len(seq), e->dst, peer);
	if (len != frame_len(seq) || memcmp(b, want, len)) {
		if (e->bad++ < 10)
			check(0, "frame %u: %u bytes (want %u) or wrong bytes", seq, len, frame_len(seq));
	}
	e->next++;
	e->got++;
}

/* Receive until e->endcmd; hold packets until the pool runs dry once (when n allows it). */
static unsigned receive(ubdma_virtio_net_t *nic, struct expect *e, int hold)
{
	struct ubdma_virtio_net_pkt *held[POOL];
	unsigned nheld = 0, enobufs = 0;
	double deadline = now() + WAIT_S;

	sleep_ms(300); /* let the queue fill: the rest must wait in QEMU, not vanish */
	while (!e->ended && now() < deadline) {
		unsigned got = 0, room = POOL - nheld;
		int err = ubdma_virtio_net_rx_burst(nic, 0, held + nheld, room < 32 ? room : 32, &got);

		for (unsigned i = 0; i < got; i++)
			judge(e, held[nheld + i]->data, held[nheld + i]->len);
		nheld += got;
		if (err == ENOBUFS || !hold || nheld == POOL) {
			enobufs += err == ENOBUFS;
			ubdma_virtio_net_pkt_free(nic, held, nheld);
			nheld = 0;
		} else if (err) {
			check(0, "rx_burst: %s (%s)", strerror(err), ubdma_virtio_net_last_error());
			break;
		}
	}
	ubdma_virtio_net_pkt_free(nic, held, nheld);
	return enobufs;
}

int main(int argc, char **argv)
{
	const char *bdf = argc > 1 ? argv[1] : getenv("UBDMA_VM_VNET");
	uint32_t n = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 0) : 1000;
	uint32_t k = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 0) : 20;
	struct ubdma_virtio_net_opts o = { .size = sizeof(o), .queue_size = QSIZE, .pool_bufs = POOL };
	struct ubdma_virtio_net_link link;
	struct ubdma_virtio_net_stats st;
	ubdma_virtio_net_t *nic;
	uint64_t f;
	uint8_t mac[6];
	char report[64];
	unsigned enobufs;
	int err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf) {
		printf("# no virtio-net: run-guest.sh -V gives one ($UBDMA_VM_VNET)\n");
		return EXIT_SKIP;
	}
	open_errors(bdf);
	err = ubdma_virtio_net_open(bdf, &o, &nic);
	check(err == 0, "open %s: %s", bdf, err ? ubdma_virtio_net_last_error() : "ok");
	if (err)
		return 1;
	f = ubdma_virtio_net_features(nic);
	printf("# negotiated features %#llx\n", (unsigned long long)f);
	check((f >> UBDMA_VIRTIO_F_VERSION_1 & 1) && (f >> UBDMA_VIRTIO_F_ACCESS_PLATFORM & 1),
	      "VERSION_1 and ACCESS_PLATFORM negotiated");
	check(f >> UBDMA_VIRTIO_NET_F_CTRL_VQ & 1 && f >> UBDMA_VIRTIO_NET_F_CTRL_RX & 1,
	      "control queue with CTRL_RX negotiated");
	check(f >> UBDMA_VIRTIO_NET_F_MRG_RXBUF & 1, "MRG_RXBUF negotiated");
	ubdma_virtio_net_mac(nic, mac);
	check(!memcmp(mac, want_mac, 6), "MAC %02x:%02x:%02x:%02x:%02x:%02x from the device "
	      "configuration", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	check(ubdma_virtio_net_link(nic, &link) == 0 && link.has_status && link.up, "STATUS: link up");
	check(ubdma_virtio_net_queue_pairs(nic) == 1, "one queue pair");
	check(ubdma_virtio_net_rx_wait(nic, 0, 10) == ENOTSUP, "rx_wait without rx_interrupts: ENOTSUP");
	printf("UBDMA-VNET-TX frames=%u mac=%02x:%02x:%02x:%02x:%02x:%02x\n", n, mac[0], mac[1], mac[2],
	       mac[3], mac[4], mac[5]);
	transmit(nic, mac, n);

	{
		struct expect e = { 0, n, bcast, "END1", 0, 0, 0, 0 };

		send_ctrl(nic, mac, "RDY1", NULL);
		enobufs = receive(nic, &e, 1);
		check(e.ended && e.got == n && !e.bad && e.big == 1, "%u of %u broadcast frames in order, "
		      "byte for byte, the 1600-byte one whole, then END1: no foreign unicast with "
		      "promiscuous mode off", e.got, n);
		if (n > POOL)
			check(enobufs > 0, "the pool ran dry %u time(s) (ENOBUFS) and no frame was lost",
			      enobufs);
	}
	err = ubdma_virtio_net_set_promisc(nic, 1);
	check(err == 0, "promiscuous on (control queue): %s", err ? ubdma_virtio_net_last_error() : "ok");
	{
		struct expect e = { 2000000, 2000000 + k, foreign, "END2", 0, 0, 0, 0 };

		send_ctrl(nic, mac, "PRM1", NULL);
		receive(nic, &e, 0);
		check(e.ended && e.got == k && !e.bad, "promiscuous: %u of %u frames to a foreign "
		      "address, then END2", e.got, k);
	}
	ubdma_virtio_net_stats(nic, &st);
	printf("# stats: rx %llu tx %llu dropped %llu notifications %llu csum valid %llu partial %llu\n",
	       (unsigned long long)st.rx_pkts, (unsigned long long)st.tx_pkts,
	       (unsigned long long)st.rx_dropped, (unsigned long long)st.notifications,
	       (unsigned long long)st.rx_csum_valid, (unsigned long long)st.rx_csum_partial);
	check(st.rx_dropped == 0, "no frame dropped by the driver");
	check(ubdma_virtio_net_pool_free(nic, 0) == POOL - QSIZE, "no buffer lost: %u free (pool %u, "
	      "receive queue %u)", ubdma_virtio_net_pool_free(nic, 0), POOL, QSIZE);
	snprintf(report, sizeof(report), "failures=%d", failures);
	send_ctrl(nic, mac, "DONE", report);
	check(ubdma_virtio_net_close(nic) == 0, "close");
	printf("# %s\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
