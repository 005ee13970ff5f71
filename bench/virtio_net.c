/*
 * bench_virtio_net - packet rate of libubdma_virtio_net beside DPDK 22.11 testpmd (net_virtio
 * PMD), in the test-bed guest, on the same modern virtio-net devices behind the emulated VT-d.
 * Run by bench/virtio_net.sh; the measurement is bench/nic_bench.c's, this file opens the device
 * and moves one burst.  Each side as its users run it: ubdma with the device's queue size (256
 * in QEMU), its default pool, one queue pair, promiscuous; testpmd with its defaults (the virtio
 * PMD's queue size = the device's, default free thresholds), only the mbuf pool sized to the
 * guest.
 */
#include <stdio.h>
#include <string.h>

#include <ubdma/virtio_net.h>

#include "nic_bench.h"

static void *vn_open(const char *bdf)
{
	struct ubdma_virtio_net_opts o = { .size = sizeof(o), .promisc = 1 };
	ubdma_virtio_net_t *nic;

	if (ubdma_virtio_net_open(bdf, &o, &nic)) {
		fprintf(stderr, "bench: open %s: %s\n", bdf, ubdma_virtio_net_last_error());
		return NULL;
	}
	return nic;
}

static void vn_close(void *nic)
{
	struct ubdma_virtio_net_stats st;

	/* the doorbells written over the run (warm-up included): docs/virtio-net.md weighs
	 * EVENT_IDX against them */
	if (!ubdma_virtio_net_stats(nic, &st))
		printf("UBDMA-BENCH-VNET notifications=%llu rx_pkts=%llu tx_pkts=%llu\n",
		       (unsigned long long)st.notifications, (unsigned long long)st.rx_pkts,
		       (unsigned long long)st.tx_pkts);
	ubdma_virtio_net_close(nic);
}

static void vn_mac(void *nic, uint8_t mac[6])
{
	ubdma_virtio_net_mac(nic, mac);
}

static void vn_send_ctrl(void *nic, const uint8_t *frame)
{
	struct ubdma_virtio_net_pkt *p;
	unsigned sent;

	if (ubdma_virtio_net_pkt_alloc(nic, 0, &p, 1))
		return;
	memcpy(p->data, frame, 64);
	p->len = 64;
	if (ubdma_virtio_net_tx_burst(nic, 0, &p, 1, &sent) || sent != 1)
		ubdma_virtio_net_pkt_free(nic, &p, 1);
	ubdma_virtio_net_tx_flush(nic, 0, 1000, NULL);
}

static unsigned vn_tx(void *nic, const uint8_t *tmpl, unsigned len)
{
	struct ubdma_virtio_net_pkt *p[NIC_BENCH_BURST];
	unsigned n = 0;

	if (ubdma_virtio_net_pkt_alloc(nic, 0, p, NIC_BENCH_BURST)) {
		ubdma_virtio_net_tx_flush(nic, 0, 0, NULL); /* reclaim */
		return 0;
	}
	for (int i = 0; i < NIC_BENCH_BURST; i++) {
		memcpy(p[i]->data, tmpl, 42);
		p[i]->len = (uint16_t)len;
	}
	ubdma_virtio_net_tx_burst(nic, 0, p, NIC_BENCH_BURST, &n);
	if (n < NIC_BENCH_BURST)
		ubdma_virtio_net_pkt_free(nic, p + n, NIC_BENCH_BURST - n);
	return n;
}

static unsigned vn_rx(void *nic)
{
	struct ubdma_virtio_net_pkt *p[NIC_BENCH_BURST];
	unsigned n = 0;

	ubdma_virtio_net_rx_burst(nic, 0, p, NIC_BENCH_BURST, &n);
	if (n)
		ubdma_virtio_net_pkt_free(nic, p, n);
	return n;
}

int main(int argc, char **argv)
{
	static const struct nic_bench_ops ops = {
		.prog = "bench_virtio_net", .open = vn_open, .close = vn_close, .mac = vn_mac,
		.send_ctrl = vn_send_ctrl, .tx = vn_tx, .rx = vn_rx,
	};

	return nic_bench_main(argc, argv, &ops);
}
