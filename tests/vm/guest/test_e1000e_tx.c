/*
 * test_e1000e_tx - transmit through libubdma_e1000e, checked from outside the guest.
 *
 *   test_e1000e_tx [BDF] [N]      (default $UBDMA_VM_NIC, 1000 frames)
 *
 * Sends frames 0 .. N-1 of the test pattern (below) in bursts of changing size through both the
 * zero-copy API (pkt_alloc + tx_burst) and the copy API (send); one burst is larger than the
 * ring, so the ring fills and the rest must be sent again.  The host reads QEMU's filter-dump
 * pcap with tshark (drivers/e1000e/test/check_pcap.py) and fails unless every frame is there, in
 * order, byte for byte.  Here in the guest: bad input (oversized and runt frames, packets not of
 * the pool, a double free, a stopped device) gets its error, queues nothing and loses no buffer;
 * GPTC counts exactly the frames sent.
 *
 * Frame i: dst 02:00:00:00:00:01, src = the NIC's MAC, EtherType 0x88B5 (local experimental),
 * "UBDM", i (32 bits, big endian), its length (16 bits, big endian), then byte k = (31 i + 7 k)
 * mod 256 up to the length 60 + (97 i) mod 1455 (60 to 1514 bytes).
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ubdma/ubdma.h>
#include <ubdma/e1000e.h>

#include "backend.h"
#include "check.h"

#define EXIT_SKIP 77

static unsigned frame_len(uint32_t seq)
{
	return 60 + (seq * 97u) % 1455u;
}

static void frame_fill(uint8_t *b, uint32_t seq, const uint8_t dst[6], const uint8_t src[6])
{
	unsigned n = frame_len(seq);

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

static const uint8_t dst_mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };

/* Oversized and runt frames, foreign packets, double free: each refused, nothing queued. */
static void bad_input(ubdma_e1000e_t *nic, const uint8_t *mac)
{
	struct ubdma_e1000e_pkt *p[2], fake;
	unsigned sent = 99, before = ubdma_e1000e_pool_free(nic);
	struct ubdma_e1000e_stats st0, st1;
	int err;

	ubdma_e1000e_stats(nic, &st0);
	check(ubdma_e1000e_pkt_alloc(nic, p, 1) == 0, "pkt_alloc 1");
	frame_fill(p[0]->data, 0xdead0000u, dst_mac, mac);
	p[0]->len = UBDMA_E1000E_MAX_FRAME + 1;
	err = ubdma_e1000e_tx_burst(nic, p, 1, &sent);
	check(err == EMSGSIZE && sent == 0, "oversized frame (1515 bytes): EMSGSIZE, nothing sent "
	      "(err %d sent %u: %s)", err, sent, ubdma_e1000e_last_error());
	p[0]->len = UBDMA_E1000E_MIN_FRAME - 1;
	err = ubdma_e1000e_tx_burst(nic, p, 1, &sent);
	check(err == EMSGSIZE && sent == 0, "runt frame (13 bytes): EMSGSIZE, nothing sent");
	memset(&fake, 0, sizeof(fake));
	p[1] = &fake;
	p[0]->len = 60;
	err = ubdma_e1000e_tx_burst(nic, p + 1, 1, &sent);
	check(err == EINVAL && sent == 0, "a packet not of the pool: EINVAL, nothing sent");
	check(ubdma_e1000e_pkt_free(nic, p, 2) == EINVAL, "pkt_free with a foreign packet: EINVAL");
	check(ubdma_e1000e_pool_free(nic) == before - 1, "... and nothing was freed");
	check(ubdma_e1000e_pkt_free(nic, p, 1) == 0, "pkt_free of the real one");
	check(ubdma_e1000e_pkt_free(nic, p, 1) == EINVAL, "pkt_free of it again: EINVAL");
	check(ubdma_e1000e_pool_free(nic) == before, "pool back to %u free", before);
	check(ubdma_e1000e_pkt_alloc(nic, p, 100000) == ENOBUFS &&
	      ubdma_e1000e_pool_free(nic) == before, "pkt_alloc of more than the pool: ENOBUFS, none taken");
	check(ubdma_e1000e_tx_burst(NULL, p, 1, &sent) == EINVAL, "tx_burst(NULL): EINVAL");
	ubdma_e1000e_stats(nic, &st1);
	check(st1.gptc == st0.gptc, "GPTC unchanged: no refused frame reached the wire");
}

/* The device closed for traffic: ENETDOWN everywhere, every ring buffer back in the pool. */
static void stopped_device(ubdma_e1000e_t *nic, unsigned pool_bufs)
{
	struct ubdma_e1000e_pkt *p[1];
	struct iovec iov = { .iov_base = (char[64]){ 0 }, .iov_len = 64 };
	unsigned n = 7;

	check(ubdma_e1000e_stop(nic) == 0, "stop");
	check(ubdma_e1000e_pool_free(nic) == pool_bufs, "stopped: all %u buffers in the pool (%u)",
	      pool_bufs, ubdma_e1000e_pool_free(nic));
	check(ubdma_e1000e_stop(nic) == EALREADY, "stop again: EALREADY");
	check(ubdma_e1000e_pkt_alloc(nic, p, 1) == 0, "pkt_alloc works while stopped");
	p[0]->len = 60;
	check(ubdma_e1000e_tx_burst(nic, p, 1, &n) == ENETDOWN && n == 0, "tx_burst: ENETDOWN");
	check(ubdma_e1000e_rx_burst(nic, p, 1, &n) == ENETDOWN && n == 0, "rx_burst: ENETDOWN");
	check(ubdma_e1000e_send(nic, &iov, 1, &n) == ENETDOWN && n == 0, "send: ENETDOWN");
	check(ubdma_e1000e_pkt_free(nic, p, 1) == 0, "pkt_free while stopped");
	check(ubdma_e1000e_start(nic) == 0, "start again");
	check(ubdma_e1000e_start(nic) == EALREADY, "start again: EALREADY");
}

int main(int argc, char **argv)
{
	const char *bdf = argc > 1 ? argv[1] : getenv("UBDMA_VM_NIC");
	unsigned total = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 1000;
	struct ubdma_e1000e_opts cfg = { .size = sizeof(cfg), .rx_desc = 64, .tx_desc = 64, .pool_bufs = 512 };
	struct ubdma_e1000e_pkt *pkts[256];
	struct ubdma_e1000e_stats st0, st;
	struct ubdma_e1000e_link link;
	ubdma_e1000e_t *nic;
	ubdma_ctx_t *ctx;
	uint8_t mac[6];
	unsigned seq = 0, pending = 0, round = 0, ringfull = 0;
	int err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf) {
		printf("# no NIC: pass a BDF or set UBDMA_VM_NIC\n");
		return EXIT_SKIP;
	}
	if ((err = ubdma_ctx_open(guest_backend(), &ctx))) {
		printf("# ubdma_ctx_open(vfio): %s: %s\n", strerror(err), ubdma_last_error());
		return err == ENODEV ? EXIT_SKIP : 1;
	}
	cfg.ctx = ctx;
	err = ubdma_e1000e_open(bdf, &cfg, &nic);
	check(err == 0, "open %s: %s", bdf, err ? ubdma_e1000e_last_error() : "ok");
	if (err) {
		ubdma_ctx_close(ctx);
		return 1;
	}
	ubdma_e1000e_mac(nic, mac);
	ubdma_e1000e_link(nic, &link);
	printf("# mac %02x:%02x:%02x:%02x:%02x:%02x link %s %u Mb/s %s duplex\n", mac[0], mac[1],
	       mac[2], mac[3], mac[4], mac[5], link.up ? "up" : "down", link.speed_mbps,
	       link.full_duplex ? "full" : "half");
	check(link.up, "link up");
	check(ubdma_e1000e_pool_free(nic) == cfg.pool_bufs - cfg.rx_desc,
	      "pool: %u free after the receive ring took its %u", ubdma_e1000e_pool_free(nic), cfg.rx_desc);

	bad_input(nic, mac);
	stopped_device(nic, cfg.pool_bufs);
	ubdma_e1000e_stats(nic, &st0);

	/* the sequence: bursts of 1, 2, 4 ... 128 frames, zero copy and copy in turn, and once a
	 * burst larger than the ring */
	while (seq < total) {
		unsigned want = 1u << (round % 8), sent = 0, n;

		if (round == 4)
			want = cfg.tx_desc + 20; /* more than the ring holds */
		if (want > total - seq)
			want = total - seq;
		if (round % 2 == 0) {
			if ((err = ubdma_e1000e_pkt_alloc(nic, pkts, want))) {
				check(0, "pkt_alloc %u: %s", want, ubdma_e1000e_last_error());
				break;
			}
			for (n = 0; n < want; n++) {
				frame_fill(pkts[n]->data, seq + n, dst_mac, mac);
				pkts[n]->len = (uint16_t)frame_len(seq + n);
			}
			err = ubdma_e1000e_tx_burst(nic, pkts, want, &sent);
			if (err == ENOBUFS) {
				ringfull++;
				check(sent == cfg.tx_desc - 1, "burst of %u into a %u ring: ENOBUFS after %u "
				      "(the ring keeps one slot)", want, cfg.tx_desc, sent);
				/* the rest are still ours: send them once the ring has drained */
				while (sent < want && (err == 0 || err == ENOBUFS)) {
					unsigned more = 0;

					ubdma_e1000e_tx_flush(nic, 1000, NULL);
					err = ubdma_e1000e_tx_burst(nic, pkts + sent, want - sent, &more);
					sent += more;
				}
			}
			if (err) {
				check(0, "tx_burst: %s (%s)", strerror(err), ubdma_e1000e_last_error());
				break;
			}
		} else {
			static uint8_t bufs[256][UBDMA_E1000E_MAX_FRAME];
			struct iovec iov[256];

			for (n = 0; n < want; n++) {
				frame_fill(bufs[n], seq + n, dst_mac, mac);
				iov[n].iov_base = bufs[n];
				iov[n].iov_len = frame_len(seq + n);
			}
			err = 0;
			while (sent < want && (err == 0 || err == ENOBUFS)) {
				unsigned more = 0;

				if (err == ENOBUFS) /* ring full: wait for completions, send the rest */
					ubdma_e1000e_tx_flush(nic, 1000, NULL);
				err = ubdma_e1000e_send(nic, iov + sent, want - sent, &more);
				sent += more;
			}
			if (err) {
				check(0, "send %u: %s, %u sent (%s)", want, strerror(err), sent,
				      ubdma_e1000e_last_error());
				break;
			}
		}
		seq += want;
		round++;
	}
	check(seq == total, "%u frames queued in %u bursts (%u hit a full ring)", seq, round, ringfull);
	err = ubdma_e1000e_tx_flush(nic, 5000, &pending);
	check(err == 0 && pending == 0, "all transmissions completed (pending %u)", pending);
	ubdma_e1000e_stats(nic, &st);
	check(st.gptc - st0.gptc == total, "GPTC counted %llu frames, %u sent",
	      (unsigned long long)(st.gptc - st0.gptc), total);
	printf("# stats: gptc %llu gotc %llu tpt %llu sw_tx_pkts %llu rejected %llu ring_full %llu\n",
	       (unsigned long long)st.gptc, (unsigned long long)st.gotc, (unsigned long long)st.tpt,
	       (unsigned long long)st.sw_tx_pkts, (unsigned long long)st.sw_tx_rejected,
	       (unsigned long long)st.sw_tx_ring_full);
	check(ubdma_e1000e_pool_free(nic) == cfg.pool_bufs - cfg.rx_desc,
	      "no buffer lost: %u free", ubdma_e1000e_pool_free(nic));
	printf("UBDMA-E1000E-TX frames=%u mac=%02x:%02x:%02x:%02x:%02x:%02x\n", seq, mac[0], mac[1],
	       mac[2], mac[3], mac[4], mac[5]);
	ubdma_e1000e_close(nic);
	ubdma_ctx_close(ctx);
	printf("# %s\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
