/*
 * test_virtio_net_mq - several queue pairs and checksum offload through libubdma_virtio_net.
 *
 *   test_virtio_net_mq [BDF] [QP] [M] [FLOWS] [PER_FLOW]   (default $UBDMA_VM_VNET, 4, 50, 64, 16)
 *
 * The virtio-net is on a multi-queue tap with vnet headers, in a network namespace of its own on
 * the host (drivers/virtio-net/test/vm-vnet-mq.sh): the guest is 10.20.0.2, the host 10.20.0.1
 * (MAC 02:00:00:00:00:10), and 10.20.1.2 lies behind a second tap without checksum offload, where
 * tshark captures.
 *
 *  1. open with QP queue pairs: VIRTIO_NET_F_MQ and the control queue (VQ_PAIRS_SET), CSUM and
 *     GUEST_CSUM negotiated;
 *  2. transmit: M UDP datagrams on each queue pair q, to 10.20.1.2:9000+q, with the UDP checksum
 *     left to the device (NEEDS_CSUM, csum_start 34, csum_offset 6, the pseudo-header sum in the
 *     field: 5.1.6.2); the host forwards them, completing the checksum, and tshark must find M
 *     datagrams a port with good checksums (the filter-dump pcap, taken before the completion,
 *     must show them unfinished);
 *  3. receive: RDY2 to 10.20.0.1:9999, then FLOWS x PER_FLOW datagrams from the host's sockets
 *     arrive spread over the receive queues by the tap's flow hash: every one exactly once, each
 *     flow on one queue only and in order, more than one queue used, every checksum right after
 *     completing the partial ones (NEEDS_CSUM from the host's stack: GUEST_CSUM);
 *  4. MSI-X per receive queue (opts.rx_interrupts): rx_wait sleeps on the queue's vector while
 *     nothing comes; RDY5 asks for flow 1's next datagram and rx_wait on flow 1's queue wakes
 *     for it; with nothing to come, rx_wait times out;
 *  5. STATUS: LNK0 makes the host take the link down for 2 s (QEMU's set_link): the device
 *     configuration's status must show it down, then up again;
 *  6. MRG_RXBUF: RDY4 makes the host send a 3000-byte datagram (the tap's MTU is 4000), which the
 *     device spreads over two buffers (num_buffers 2, 5.1.6.4): the driver drops it whole and
 *     counts it (rx_dropped 1), and flow 0's next datagram arrives intact after it.
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
#define MAXFLOWS 256
#define MAXPER 64

static const uint8_t gw_mac[6] = { 0x02, 0, 0, 0, 0, 0x10 };
static const uint8_t ip_me[4] = { 10, 20, 0, 2 }, ip_host[4] = { 10, 20, 0, 1 };
static const uint8_t ip_sink[4] = { 10, 20, 1, 2 };

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* RFC 1071 ones' complement sum, not folded, not inverted. */
static uint32_t sum16(const uint8_t *b, size_t n, uint32_t s)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)b[i] << 8 | b[i + 1];
	if (n & 1)
		s += (uint32_t)b[n - 1] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static uint32_t pseudo(const uint8_t *ip, unsigned udplen)
{
	return sum16(ip + 12, 8, 17u + udplen);
}

/* An Ethernet + IPv4 + UDP frame in b with len bytes of payload; IP checksum in software, UDP
 * checksum field seeded with the pseudo-header sum for the device (returns the frame length). */
static unsigned udp_frame(uint8_t *b, const uint8_t *mac, const uint8_t dip[4], unsigned sport,
			  unsigned dport, const uint8_t *pl, unsigned len)
{
	unsigned ulen = 8 + len, tot = 20 + ulen;
	uint8_t *ip = b + 14, *u = ip + 20;
	uint16_t c;

	memcpy(b, gw_mac, 6);
	memcpy(b + 6, mac, 6);
	b[12] = 0x08, b[13] = 0x00;
	memset(ip, 0, 20);
	ip[0] = 0x45, ip[2] = (uint8_t)(tot >> 8), ip[3] = (uint8_t)tot;
	ip[6] = 0x40, ip[8] = 64, ip[9] = 17;
	memcpy(ip + 12, ip_me, 4);
	memcpy(ip + 16, dip, 4);
	c = (uint16_t)~fold(sum16(ip, 20, 0));
	ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
	u[0] = (uint8_t)(sport >> 8), u[1] = (uint8_t)sport, u[2] = (uint8_t)(dport >> 8), u[3] = (uint8_t)dport;
	u[4] = (uint8_t)(ulen >> 8), u[5] = (uint8_t)ulen;
	memcpy(u + 8, pl, len);
	c = fold(pseudo(ip, ulen)); /* 5.1.6.2: the device sums from csum_start over this seed */
	u[6] = (uint8_t)(c >> 8), u[7] = (uint8_t)c;
	return 14 + tot;
}

static int send_udp(ubdma_virtio_net_t *nic, unsigned qp, const uint8_t *mac, const uint8_t dip[4],
		    unsigned sport, unsigned dport, const uint8_t *pl, unsigned len)
{
	struct ubdma_virtio_net_pkt *p;
	unsigned sent = 0;
	int err;

	if ((err = ubdma_virtio_net_pkt_alloc(nic, qp, &p, 1))) {
		ubdma_virtio_net_tx_flush(nic, qp, 1000, NULL);
		if ((err = ubdma_virtio_net_pkt_alloc(nic, qp, &p, 1)))
			return err;
	}
	p->len = (uint16_t)udp_frame(p->data, mac, dip, sport, dport, pl, len);
	p->flags = UBDMA_VIRTIO_NET_PKT_NEEDS_CSUM;
	p->csum_start = 34;
	p->csum_offset = 6;
	while ((err = ubdma_virtio_net_tx_burst(nic, qp, &p, 1, &sent)) == ENOBUFS)
		ubdma_virtio_net_tx_flush(nic, qp, 10, NULL);
	if (err)
		ubdma_virtio_net_pkt_free(nic, &p, 1);
	return err;
}

struct rxstate {
	unsigned flows, per;
	uint32_t next[MAXFLOWS];
	int queue_of[MAXFLOWS];
	unsigned per_queue[UBDMA_VIRTIO_NET_MAX_QP];
	unsigned got, bad, partial, valid, mixed;
};

/* Judge a received frame: ours is UDP from 10.20.0.1:20000+f to 10.20.0.2:10000+f. */
static void rx_judge(struct rxstate *s, unsigned q, struct ubdma_virtio_net_pkt *p)
{
	uint8_t *b = p->data, *ip = b + 14, *u = ip + 20;
	unsigned ulen, f, i, n;

	if (p->len < 42 || b[12] != 0x08 || b[13] != 0 || ip[9] != 17 || memcmp(ip + 12, ip_host, 4))
		return;
	ulen = (unsigned)u[4] << 8 | u[5];
	f = ((unsigned)u[2] << 8 | u[3]) - 10000u;
	if (f >= s->flows || ulen < 18 || 34 + ulen > p->len || memcmp(u + 8, "UBDR", 4)) {
		s->bad++;
		return;
	}
	if (p->flags & UBDMA_VIRTIO_NET_PKT_NEEDS_CSUM) {
		/* 5.1.6.4: the checksum from csum_start to the end is still to be completed */
		uint16_t c;

		s->partial++;
		if (p->csum_start != 34 || p->csum_offset != 6) {
			s->bad++;
			return;
		}
		c = (uint16_t)~fold(sum16(b + p->csum_start, p->len - p->csum_start, 0));
		b[p->csum_start + p->csum_offset] = (uint8_t)(c >> 8);
		b[p->csum_start + p->csum_offset + 1] = (uint8_t)c;
	}
	if (p->flags & UBDMA_VIRTIO_NET_PKT_DATA_VALID)
		s->valid++;
	if (fold(sum16(u, ulen, pseudo(ip, ulen))) != 0xffff) {
		if (s->bad++ < 10)
			check(0, "flow %u: UDP checksum wrong (flags %#x)", f, p->flags);
		return;
	}
	i = (unsigned)u[14] << 24 | (unsigned)u[15] << 16 | (unsigned)u[16] << 8 | u[17];
	n = 64 + (97 * (f * s->per + i)) % 1300;
	if (ulen != 8 + n || i != s->next[f]) {
		if (s->bad++ < 10)
			check(0, "flow %u: datagram %u of %u bytes, expected %u of %u", f, i, ulen - 8,
			      s->next[f], n);
		return;
	}
	for (unsigned k = 10; k < n; k++)
		if (u[8 + k] != (uint8_t)(7 * f + 13 * i + k)) {
			if (s->bad++ < 10)
				check(0, "flow %u datagram %u: byte %u wrong", f, i, k);
			return;
		}
	if (s->queue_of[f] < 0)
		s->queue_of[f] = (int)q;
	else if (s->queue_of[f] != (int)q)
		s->mixed++;
	s->next[f]++;
	s->per_queue[q]++;
	s->got++;
}

int main(int argc, char **argv)
{
	const char *bdf = argc > 1 && *argv[1] ? argv[1] : getenv("UBDMA_VM_VNET");
	unsigned nqp = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 4;
	unsigned m = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 0) : 50;
	struct rxstate s = { .flows = argc > 4 ? (unsigned)strtoul(argv[4], NULL, 0) : 64,
			     .per = argc > 5 ? (unsigned)strtoul(argv[5], NULL, 0) : 16 };
	struct ubdma_virtio_net_opts o = { .size = sizeof(o), .queue_pairs = nqp, .queue_size = 128,
					   .rx_interrupts = 1 };
	unsigned wakes = 0, timeouts = 0;
	struct ubdma_virtio_net_stats st;
	ubdma_virtio_net_t *nic;
	uint8_t mac[6], pl[1400];
	unsigned used_queues = 0;
	double deadline;
	uint64_t f;
	int err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf) {
		printf("# no virtio-net ($UBDMA_VM_VNET): run it through vm-vnet-mq.sh\n");
		return EXIT_SKIP;
	}
	if (s.flows > MAXFLOWS || s.per > MAXPER || nqp < 1 || nqp > UBDMA_VIRTIO_NET_MAX_QP) {
		printf("# bad arguments\n");
		return 1;
	}
	err = ubdma_virtio_net_open(bdf, &o, &nic);
	check(err == 0, "open %s with %u queue pairs: %s", bdf, nqp, err ? ubdma_virtio_net_last_error() : "ok");
	if (err)
		return 1;
	f = ubdma_virtio_net_features(nic);
	printf("# negotiated features %#llx\n", (unsigned long long)f);
	check(f >> UBDMA_VIRTIO_NET_F_MQ & 1 && ubdma_virtio_net_queue_pairs(nic) == nqp,
	      "MQ negotiated, %u queue pairs in use (VQ_PAIRS_SET accepted)", ubdma_virtio_net_queue_pairs(nic));
	check(f >> UBDMA_VIRTIO_NET_F_CSUM & 1 && f >> UBDMA_VIRTIO_NET_F_GUEST_CSUM & 1,
	      "CSUM and GUEST_CSUM negotiated (tap with vnet headers)");
	ubdma_virtio_net_mac(nic, mac);

	/* 2. transmit on every queue pair, checksums left to the device */
	for (unsigned q = 0; q < nqp; q++) {
		unsigned ok = 0;

		for (unsigned i = 0; i < m; i++) {
			unsigned len = 32 + (i * 37u) % 1000u;

			memcpy(pl, "UBDT", 4);
			pl[4] = (uint8_t)q, pl[5] = (uint8_t)(i >> 8), pl[6] = (uint8_t)i;
			for (unsigned k = 7; k < len; k++)
				pl[k] = (uint8_t)(q * 11u + i * 3u + k);
			ok += send_udp(nic, q, mac, ip_sink, 7000 + q, 9000 + q, pl, len) == 0;
		}
		err = ubdma_virtio_net_tx_flush(nic, q, 10000, NULL);
		check(ok == m && err == 0, "queue pair %u: %u of %u datagrams with NEEDS_CSUM sent and "
		      "completed", q, ok, m);
	}
	printf("UBDMA-VNET-MQ qp=%u m=%u\n", nqp, m);

	/* 3. receive the host's flows over the receive queues */
	for (unsigned i = 0; i < MAXFLOWS; i++)
		s.queue_of[i] = -1;
	memcpy(pl, "RDY2", 4);
	check(send_udp(nic, 0, mac, ip_host, 9999, 9999, pl, 4) == 0, "RDY2 sent to the host");
	deadline = now() + WAIT_S;
	while (s.got + s.bad < s.flows * s.per && now() < deadline) {
		unsigned sweep = 0;

		for (unsigned q = 0; q < nqp; q++) {
			struct ubdma_virtio_net_pkt *p[32];
			unsigned got = 0;

			err = ubdma_virtio_net_rx_burst(nic, q, p, 32, &got);
			for (unsigned i = 0; i < got; i++)
				rx_judge(&s, q, p[i]);
			ubdma_virtio_net_pkt_free(nic, p, got);
			sweep += got;
			if (err && s.bad++ < 10)
				check(0, "rx_burst on %u: %s", q, ubdma_virtio_net_last_error());
		}
		if (!sweep) { /* nothing anywhere: sleep on queue 0's MSI-X vector a little */
			err = ubdma_virtio_net_rx_wait(nic, 0, 20);
			wakes += err == 0;
			timeouts += err == ETIMEDOUT;
			if (err && err != ETIMEDOUT && s.bad++ < 10)
				check(0, "rx_wait: %s", ubdma_virtio_net_last_error());
		}
	}
	for (unsigned q = 0; q < nqp; q++) {
		printf("# receive queue %u: %u datagrams\n", q, s.per_queue[q]);
		used_queues += s.per_queue[q] > 0;
	}
	check(s.got == s.flows * s.per && !s.bad, "%u of %u datagrams, each once, in order in its flow, "
	      "checksums right (%u completed from NEEDS_CSUM, %u DATA_VALID)", s.got, s.flows * s.per,
	      s.partial, s.valid);
	check(s.partial > 0, "the host's stack sent partially checksummed datagrams (GUEST_CSUM used)");
	check(!s.mixed, "every flow stayed on one receive queue (%u moved)", s.mixed);
	check(used_queues > 1, "%u of %u receive queues used", used_queues, nqp);
	printf("# rx_wait: %u wake-ups with frames, %u timeouts\n", wakes, timeouts);
	/* an interrupt: arm queue 0, ask the host for a datagram on flow 0, sleep until it comes */
	memcpy(pl, "RDY5", 4);
	{
		uint64_t irqs;
		double t0, dt;

		ubdma_virtio_net_stats(nic, &st);
		irqs = st.rx_irq_wakeups;
		check(send_udp(nic, 0, mac, ip_host, 9999, 9999, pl, 4) == 0, "RDY5 sent to the host");
		ubdma_virtio_net_tx_flush(nic, 0, 1000, NULL);
		t0 = now();
		err = ubdma_virtio_net_rx_wait(nic, s.queue_of[1] >= 0 ? (unsigned)s.queue_of[1] : 0, 10000);
		dt = now() - t0;
		ubdma_virtio_net_stats(nic, &st);
		check(err == 0 && dt > 0.2 && st.rx_irq_wakeups > irqs, "rx_wait on flow 1's queue %d "
		      "slept %.0f ms and its MSI-X interrupt woke it (%llu wake-ups) for the datagram the "
		      "host sent 500 ms after RDY5", s.queue_of[1], dt * 1e3,
		      (unsigned long long)(st.rx_irq_wakeups - irqs));
		for (unsigned q = 0; q < nqp; q++) {
			struct ubdma_virtio_net_pkt *p[32];
			unsigned got = 0;

			ubdma_virtio_net_rx_burst(nic, q, p, 32, &got);
			for (unsigned i = 0; i < got; i++)
				rx_judge(&s, q, p[i]);
			ubdma_virtio_net_pkt_free(nic, p, got);
		}
		err = ubdma_virtio_net_rx_wait(nic, 0, 300);
		check(err == ETIMEDOUT, "rx_wait with nothing to come: ETIMEDOUT after 300 ms");
	}
	/* link status (VIRTIO_NET_F_STATUS, 5.1.4): the host takes the link down for 2 s */
	{
		struct ubdma_virtio_net_link lk;
		int seen_down = 0, seen_up = 0;
		double t;

		check(ubdma_virtio_net_link(nic, &lk) == 0 && lk.has_status && lk.up, "STATUS: link up");
		memcpy(pl, "LNK0", 4);
		check(send_udp(nic, 0, mac, ip_host, 9999, 9999, pl, 4) == 0, "LNK0 sent to the host");
		ubdma_virtio_net_tx_flush(nic, 0, 1000, NULL);
		for (t = now(); now() < t + 15 && !seen_up;) {
			ubdma_virtio_net_link(nic, &lk);
			seen_down |= !lk.up;
			seen_up = seen_down && lk.up;
			sleep_ms(20);
		}
		check(seen_down && seen_up, "STATUS: the link went down (QEMU set_link off) and came back "
		      "up (%s down, %s up again)", seen_down ? "seen" : "not seen", seen_up ? "seen" : "not seen");
	}

	/* 4. a frame merged over two buffers */
	check(f >> UBDMA_VIRTIO_NET_F_MRG_RXBUF & 1, "MRG_RXBUF negotiated");
	ubdma_virtio_net_stats(nic, &st);
	check(st.rx_dropped == 0, "nothing dropped so far");
	memcpy(pl, "RDY4", 4);
	check(send_udp(nic, 0, mac, ip_host, 9999, 9999, pl, 4) == 0, "RDY4 sent to the host");
	deadline = now() + WAIT_S;
	while (s.got + s.bad < s.flows * s.per + 2 && now() < deadline) {
		for (unsigned q = 0; q < nqp; q++) {
			struct ubdma_virtio_net_pkt *p[32];
			unsigned got = 0;

			ubdma_virtio_net_rx_burst(nic, q, p, 32, &got);
			for (unsigned i = 0; i < got; i++)
				rx_judge(&s, q, p[i]);
			ubdma_virtio_net_pkt_free(nic, p, got);
		}
	}
	ubdma_virtio_net_stats(nic, &st);
	check(s.got == s.flows * s.per + 2 && !s.bad && st.rx_dropped == 1, "the 3000-byte datagram "
	      "over two buffers was dropped whole (rx_dropped %llu), flow 0's next came intact after it",
	      (unsigned long long)st.rx_dropped);
	check(st.tx_csum_offload == nqp * m + 4, "stats: %llu checksums offloaded on transmit",
	      (unsigned long long)st.tx_csum_offload);
	snprintf((char *)pl, sizeof(pl), "DONE failures=%d", failures);
	send_udp(nic, 0, mac, ip_host, 9999, 9999, pl, (unsigned)strlen((char *)pl));
	ubdma_virtio_net_tx_flush(nic, 0, 2000, NULL);
	check(ubdma_virtio_net_close(nic) == 0, "close");
	printf("# %s\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
