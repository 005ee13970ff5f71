/*
 * bench_e1000e - packet rate of libubdma_e1000e beside DPDK 22.11 testpmd (e1000 PMD), in the
 * test-bed guest, on the same emulated 82574L devices.  Run by bench/e1000e.sh; the measurement
 * is bench/nic_bench.c's, this file opens the device and moves one burst.  Both sides with 512
 * descriptors a ring (testpmd --rxd/--txd), ubdma with a pool of 2048 buffers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <ubdma/ubdma.h>
#include <ubdma/e1000e.h>

#include "nic_bench.h"

struct e1k {
	ubdma_ctx_t *ctx;
	ubdma_e1000e_t *nic;
};

static void *e1k_open(const char *bdf)
{
	struct ubdma_e1000e_opts o = { .size = sizeof(o), .rx_desc = 512, .tx_desc = 512, .pool_bufs = 2048 };
	struct e1k *e = calloc(1, sizeof(*e));
	int err;

	if (!e)
		return NULL;
	if ((err = ubdma_ctx_open(UBDMA_BACKEND_VFIO, &e->ctx))) {
		fprintf(stderr, "bench: ctx_open: %s\n", strerror(err));
		free(e);
		return NULL;
	}
	o.ctx = e->ctx;
	if (ubdma_e1000e_open(bdf, &o, &e->nic)) {
		fprintf(stderr, "bench: open %s: %s\n", bdf, ubdma_e1000e_last_error());
		ubdma_ctx_close(e->ctx);
		free(e);
		return NULL;
	}
	return e;
}

static void e1k_close(void *p)
{
	struct e1k *e = p;

	ubdma_e1000e_close(e->nic);
	ubdma_ctx_close(e->ctx);
	free(e);
}

static void e1k_mac(void *p, uint8_t mac[6])
{
	ubdma_e1000e_mac(((struct e1k *)p)->nic, mac);
}

static void e1k_send_ctrl(void *p, const uint8_t *frame)
{
	struct e1k *e = p;
	struct iovec iov = { (void *)frame, 64 };
	unsigned sent;

	ubdma_e1000e_send(e->nic, &iov, 1, &sent);
	ubdma_e1000e_tx_flush(e->nic, 1000, NULL);
}

static unsigned e1k_tx(void *p, const uint8_t *tmpl, unsigned len)
{
	struct ubdma_e1000e_pkt *pk[NIC_BENCH_BURST];
	ubdma_e1000e_t *nic = ((struct e1k *)p)->nic;
	unsigned n = 0;

	if (ubdma_e1000e_pkt_alloc(nic, pk, NIC_BENCH_BURST))
		return 0;
	for (int i = 0; i < NIC_BENCH_BURST; i++) {
		memcpy(pk[i]->data, tmpl, 42);
		pk[i]->len = (uint16_t)len;
	}
	ubdma_e1000e_tx_burst(nic, pk, NIC_BENCH_BURST, &n);
	if (n < NIC_BENCH_BURST)
		ubdma_e1000e_pkt_free(nic, pk + n, NIC_BENCH_BURST - n);
	return n;
}

static unsigned e1k_rx(void *p)
{
	struct ubdma_e1000e_pkt *pk[NIC_BENCH_BURST];
	ubdma_e1000e_t *nic = ((struct e1k *)p)->nic;
	unsigned n = 0;

	ubdma_e1000e_rx_burst(nic, pk, NIC_BENCH_BURST, &n);
	if (n)
		ubdma_e1000e_pkt_free(nic, pk, n);
	return n;
}

int main(int argc, char **argv)
{
	static const char *const tp_args[] = { "--rxd=512", "--txd=512", NULL };
	static const struct nic_bench_ops ops = {
		.prog = "bench_e1000e", .testpmd_args = tp_args, .open = e1k_open, .close = e1k_close,
		.mac = e1k_mac, .send_ctrl = e1k_send_ctrl, .tx = e1k_tx, .rx = e1k_rx,
	};

	return nic_bench_main(argc, argv, &ops);
}
