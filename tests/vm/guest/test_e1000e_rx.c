/*
 * test_e1000e_rx - receive through libubdma_e1000e frames injected from the host.
 *
 *   test_e1000e_rx BDF [N] [K]     (the second e1000e, on the host peer's socket; 1000, 20)
 *
 * The NIC at BDF is connected by `-netdev socket` to drivers/e1000e/test/nic_peer.py on the
 * host's 127.0.0.1.  The test tells the peer it is ready (control frame RDY1), then must receive
 * the N broadcast frames of the test pattern (see test_e1000e_tx.c) in order and byte for byte,
 * while (a) the receive ring is left to fill before the first frame is taken, (b) received
 * packets are held until the pool runs dry (ENOBUFS), then freed, (c) the copy API (recv) and the
 * zero-copy API (rx_burst) take turns.  The oversized frame and the K frames to a foreign unicast
 * address must not arrive (END1 comes right after frame N-1); in promiscuous mode (PRM1) the K
 * foreign frames must arrive, then END2.  The host checks the pcap with tshark as well.
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ubdma/ubdma.h>
#include <ubdma/e1000e.h>

#include "backend.h"
#include "check.h"

#define EXIT_SKIP 77
#define WAIT_S 60

static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t peer[6] = { 0x02, 0, 0, 0, 0, 0x02 };
static const uint8_t foreign[6] = { 0x02, 0, 0, 0, 0, 0x99 };

static unsigned frame_len(uint32_t seq)
{
	return 60 + (seq * 97u) % 1455u;
}

/* 0 when frame b (len bytes) is pattern frame seq to dst; else the first wrong offset + 1. */
static unsigned frame_check(const uint8_t *b, unsigned len, uint32_t seq, const uint8_t dst[6])
{
	unsigned n = frame_len(seq);
	uint8_t hdr[24] = { 0 };

	memcpy(hdr, dst, 6);
	memcpy(hdr + 6, peer, 6);
	hdr[12] = 0x88, hdr[13] = 0xb5;
	memcpy(hdr + 14, "UBDM", 4);
	hdr[18] = (uint8_t)(seq >> 24), hdr[19] = (uint8_t)(seq >> 16);
	hdr[20] = (uint8_t)(seq >> 8), hdr[21] = (uint8_t)seq;
	hdr[22] = (uint8_t)(n >> 8), hdr[23] = (uint8_t)n;
	if (len != n)
		return 1u << 20 | len;
	for (unsigned k = 0; k < n; k++)
		if (b[k] != (k < 24 ? hdr[k] : (uint8_t)(seq * 31u + k * 7u)))
			return k + 1;
	return 0;
}

static uint32_t seq_of(const uint8_t *b, unsigned len)
{
	if (len < 24 || b[12] != 0x88 || b[13] != 0xb5 || memcmp(b + 14, "UBDM", 4))
		return UINT32_MAX;
	return (uint32_t)b[18] << 24 | (uint32_t)b[19] << 16 | (uint32_t)b[20] << 8 | b[21];
}

static int is_ctrl(const uint8_t *b, unsigned len, const char *cmd)
{
	return len >= 18 && b[12] == 0x88 && b[13] == 0xb6 && !memcmp(b + 14, cmd, 4);
}

static void send_ctrl(ubdma_e1000e_t *nic, const uint8_t mac[6], const char *cmd, const char *text)
{
	uint8_t f[80] = { 0 };
	struct iovec iov = { .iov_base = f, .iov_len = sizeof(f) };
	unsigned sent = 0;

	memcpy(f, bcast, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x88, f[13] = 0xb6;
	memcpy(f + 14, cmd, 4);
	if (text)
		snprintf((char *)f + 18, sizeof(f) - 18, "%s", text);
	check(ubdma_e1000e_send(nic, &iov, 1, &sent) == 0 && sent == 1 &&
	      ubdma_e1000e_tx_flush(nic, 2000, NULL) == 0, "control frame %s sent", cmd);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct expect {
	uint32_t next, end;      /* pattern frames next .. end-1 still to come */
	const uint8_t *dst;
	const char *endcmd;      /* the control frame that closes the phase */
	int ended, bad;
	unsigned got;
};

/* Judge one received frame against the phase. */
static void judge(struct expect *e, const uint8_t *b, unsigned len)
{
	uint32_t seq = seq_of(b, len);
	unsigned off;

	if (is_ctrl(b, len, e->endcmd)) {
		e->ended = 1;
		if (e->next != e->end) {
			check(0, "%s came after frame %u of %u..%u", e->endcmd, e->next, e->next, e->end - 1);
			e->bad++;
		}
		return;
	}
	if (seq == UINT32_MAX)
		return; /* not ours */
	if (e->ended || seq != e->next) {
		if (e->bad++ < 10)
			check(0, "frame with sequence %u (%u bytes) where %s was expected", seq, len,
			      e->ended ? "nothing" : "the next in order");
		return;
	}
	if ((off = frame_check(b, len, seq, e->dst))) {
		if (e->bad++ < 10)
			check(0, "frame %u: %u bytes, wrong at %u", seq, len, off - 1);
	}
	e->next++;
	e->got++;
}

/* Phase 1: broadcast frames, with a ring left to fill, a pool run dry, both APIs. */
static void phase_broadcast(ubdma_e1000e_t *nic, uint32_t n)
{
	unsigned pool_free = ubdma_e1000e_pool_free(nic);
	static uint8_t bufs[32][UBDMA_E1000E_MAX_FRAME];
	struct ubdma_e1000e_pkt *held[2048];
	struct expect e = { 0, n, bcast, "END1", 0, 0, 0 };
	unsigned nheld = 0, enobufs = 0, turns = 0;
	struct timespec ts = { 0, 300 * 1000 * 1000 };
	double deadline = now() + WAIT_S;

	nanosleep(&ts, NULL); /* let the ring fill up: the rest must wait, not vanish */
	while (!e.ended && now() < deadline) {
		unsigned got = 0;
		int err;

		if (turns++ % 2) {
			struct iovec iov[32];

			for (unsigned i = 0; i < 32; i++)
				iov[i] = (struct iovec){ bufs[i], sizeof(bufs[i]) };
			err = ubdma_e1000e_recv(nic, iov, 32, &got);
			for (unsigned i = 0; i < got; i++)
				judge(&e, iov[i].iov_base, (unsigned)iov[i].iov_len);
		} else {
			unsigned room = (unsigned)(sizeof(held) / sizeof(held[0])) - nheld;

			err = ubdma_e1000e_rx_burst(nic, held + nheld, room < 64 ? room : 64, &got);
			for (unsigned i = 0; i < got; i++)
				judge(&e, held[nheld + i]->data, held[nheld + i]->len);
			nheld += got;
		}
		if (err == ENOBUFS || nheld >= 1024) {
			/* the pool ran dry while frames wait: give the buffers back and go on */
			enobufs += err == ENOBUFS;
			check(ubdma_e1000e_pkt_free(nic, held, nheld) == 0, "freed %u held packets "
			      "(rx_burst said %s)", nheld, err ? strerror(err) : "nothing");
			nheld = 0;
		} else if (err) {
			check(0, "receive: %s (%s)", strerror(err), ubdma_e1000e_last_error());
			break;
		}
	}
	if (nheld)
		ubdma_e1000e_pkt_free(nic, held, nheld);
	check(e.ended && e.got == n && !e.bad, "%u of %u broadcast frames in order, byte for byte, "
	      "then END1 (no foreign unicast, no oversized frame)", e.got, n);
	if (n > pool_free)
		check(enobufs > 0, "the pool ran dry %u time(s) (ENOBUFS) and no frame was lost", enobufs);
	else
		printf("# %u frames fit in the %u free buffers: the pool never ran dry\n", n, pool_free);
}

/* Phase 2: promiscuous mode takes the frames to a foreign address. */
static void phase_promisc(ubdma_e1000e_t *nic, uint32_t k)
{
	struct ubdma_e1000e_pkt *p[64];
	struct expect e = { 2000000, 2000000 + k, foreign, "END2", 0, 0, 0 };
	double deadline = now() + WAIT_S;

	while (!e.ended && now() < deadline) {
		unsigned got = 0;
		int err = ubdma_e1000e_rx_burst(nic, p, 64, &got);

		for (unsigned i = 0; i < got; i++)
			judge(&e, p[i]->data, p[i]->len);
		ubdma_e1000e_pkt_free(nic, p, got);
		if (err) {
			check(0, "rx_burst: %s", strerror(err));
			break;
		}
	}
	check(e.ended && e.got == k && !e.bad, "promiscuous: %u of %u frames to a foreign address, "
	      "then END2", e.got, k);
}

int main(int argc, char **argv)
{
	const char *bdf = argc > 1 ? argv[1] : NULL;
	uint32_t n = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 0) : 1000;
	uint32_t k = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 0) : 20;
	struct ubdma_e1000e_opts cfg = { .size = sizeof(cfg), .rx_desc = 64, .tx_desc = 64, .pool_bufs = 512 };
	struct ubdma_e1000e_stats st;
	ubdma_e1000e_t *nic;
	ubdma_ctx_t *ctx;
	uint8_t mac[6];
	char report[64];
	int err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf) {
		printf("# usage: test_e1000e_rx BDF [N] [K]: the e1000e on the host peer's socket\n");
		return EXIT_SKIP;
	}
	if ((err = ubdma_ctx_open(guest_backend(), &ctx))) {
		printf("# ubdma_ctx_open(vfio): %s: %s\n", strerror(err), ubdma_last_error());
		return err == ENODEV ? EXIT_SKIP : 1;
	}
	cfg.ctx = ctx;
	err = ubdma_e1000e_open(bdf, &cfg, &nic);
	if (err == ENODEV) {
		printf("# %s: %s\n", bdf, ubdma_e1000e_last_error());
		ubdma_ctx_close(ctx);
		return EXIT_SKIP;
	}
	check(err == 0, "open %s: %s", bdf, err ? ubdma_e1000e_last_error() : "ok");
	if (err) {
		ubdma_ctx_close(ctx);
		return 1;
	}
	ubdma_e1000e_mac(nic, mac);
	check(ubdma_e1000e_wait_link(nic, 5000) == 0, "link up");

	send_ctrl(nic, mac, "RDY1", NULL);
	phase_broadcast(nic, n);
	check(ubdma_e1000e_set_promisc(nic, 1) == 0, "promiscuous mode on");
	send_ctrl(nic, mac, "PRM1", NULL);
	phase_promisc(nic, k);

	ubdma_e1000e_stats(nic, &st);
	printf("# stats: gprc %llu bprc %llu gorc %llu tpr %llu roc %llu rlec %llu mpc %llu rnbc %llu "
	       "sw_rx %llu dropped %llu\n", (unsigned long long)st.gprc, (unsigned long long)st.bprc,
	       (unsigned long long)st.gorc, (unsigned long long)st.tpr, (unsigned long long)st.roc,
	       (unsigned long long)st.rlec, (unsigned long long)st.mpc, (unsigned long long)st.rnbc,
	       (unsigned long long)st.sw_rx_pkts, (unsigned long long)st.sw_rx_dropped);
	check(st.gprc >= n + k + 2, "GPRC %llu counts at least the %u frames taken",
	      (unsigned long long)st.gprc, n + k + 2);
	check(st.sw_rx_pkts == st.gprc, "every frame the device counted reached the caller "
	      "(sw_rx_pkts %llu)", (unsigned long long)st.sw_rx_pkts);
	check(ubdma_e1000e_pool_free(nic) == cfg.pool_bufs - cfg.rx_desc, "no buffer lost (%u free)",
	      ubdma_e1000e_pool_free(nic));
	snprintf(report, sizeof(report), "failures=%d", failures);
	send_ctrl(nic, mac, "DONE", report);
	ubdma_e1000e_close(nic);
	ubdma_ctx_close(ctx);
	printf("# %s\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
