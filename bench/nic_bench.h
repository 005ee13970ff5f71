/*
 * nic_bench.h - what a NIC driver hands the shared packet-rate engine (bench/nic_bench.c) so that
 * bench_e1000e and bench_virtio_net measure ubdma and testpmd the same way: the windows, the
 * report lines, the frames, testpmd's command line and the order of the rows live in the engine;
 * a driver file only opens its device and moves one burst.
 */
#ifndef UBDMA_BENCH_NIC_BENCH_H
#define UBDMA_BENCH_NIC_BENCH_H

#include <stdint.h>

#define NIC_BENCH_BURST 32

struct nic_bench_ops {
	const char *prog; /* the program's name, for usage and errors */
	/* more testpmd arguments after "--" (e.g. ring sizes), NULL-terminated; may be NULL */
	const char *const *testpmd_args;
	/* open @bdf as its users would; NULL (the reason on stderr) when it fails */
	void *(*open)(const char *bdf);
	void (*close)(void *nic);
	void (*mac)(void *nic, uint8_t mac[6]);
	/* send one 64-byte control frame and wait until it has left */
	void (*send_ctrl)(void *nic, const uint8_t *frame);
	/* one transmit burst of up to NIC_BENCH_BURST frames of @len bytes starting with the 42
	 * bytes of @tmpl; the number queued */
	unsigned (*tx)(void *nic, const uint8_t *tmpl, unsigned len);
	/* one receive burst of up to NIC_BENCH_BURST frames, handed straight back; the number */
	unsigned (*rx)(void *nic);
};

/* Parse the command line and run the rows (see nic_bench.c); the exit status. */
int nic_bench_main(int argc, char **argv, const struct nic_bench_ops *ops);

#endif
