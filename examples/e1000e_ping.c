/*
 * e1000e_ping.c - the first NIC program to copy: open an Intel 82574L with libubdma_e1000e, ask
 * QEMU's user-mode network gateway (10.0.2.2) for its MAC address with ARP, ping it, print the
 * counters.  Everything goes through <ubdma/...> headers only.
 *
 *   e1000e_ping [BDF] [COUNT]     (default $UBDMA_VM_NIC, 3 pings; as root, the NIC on vfio-pci)
 *
 * The network it talks to is QEMU's own (-netdev user): 10.0.2.15 is us, 10.0.2.2 the gateway.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ubdma/ubdma.h>
#include <ubdma/e1000e.h>

static const uint8_t my_ip[4] = { 10, 0, 2, 15 }, gw_ip[4] = { 10, 0, 2, 2 };

/* The Internet checksum (RFC 1071) of len bytes. */
static uint16_t csum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* ARP request (RFC 826): who has 10.0.2.2? tell 10.0.2.15.  Returns the frame length. */
static unsigned build_arp(uint8_t *f, const uint8_t mac[6])
{
	static const uint8_t hdr[8] = { 0, 1, 8, 0, 6, 4, 0, 1 }; /* Ethernet, IPv4, request */

	memset(f, 0xff, 6);                 /* to everyone */
	memcpy(f + 6, mac, 6);
	f[12] = 0x08, f[13] = 0x06;         /* EtherType ARP */
	memcpy(f + 14, hdr, 8);
	memcpy(f + 22, mac, 6);
	memcpy(f + 28, my_ip, 4);
	memset(f + 32, 0, 6);
	memcpy(f + 38, gw_ip, 4);
	return 42;
}

/* ICMP echo request (RFC 792) in IPv4 (RFC 791) to the gateway.  Returns the frame length. */
static unsigned build_ping(uint8_t *f, const uint8_t mac[6], const uint8_t gw_mac[6], uint16_t seq)
{
	uint8_t *ip = f + 14, *icmp = f + 34;
	unsigned payload = 32;

	memcpy(f, gw_mac, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x08, f[13] = 0x00;         /* EtherType IPv4 */
	memset(ip, 0, 20);
	ip[0] = 0x45;                       /* version 4, 20-byte header */
	ip[3] = (uint8_t)(20 + 8 + payload);
	ip[8] = 64, ip[9] = 1;              /* TTL, protocol ICMP */
	memcpy(ip + 12, my_ip, 4);
	memcpy(ip + 16, gw_ip, 4);
	uint16_t c = csum(ip, 20);
	ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
	memset(icmp, 0, 8);
	icmp[0] = 8;                        /* echo request */
	icmp[4] = 0x12, icmp[5] = 0x34;     /* identifier */
	icmp[6] = (uint8_t)(seq >> 8), icmp[7] = (uint8_t)seq;
	for (unsigned i = 0; i < payload; i++)
		icmp[8 + i] = (uint8_t)i;
	c = csum(icmp, 8 + payload);
	icmp[2] = (uint8_t)(c >> 8), icmp[3] = (uint8_t)c;
	return 14 + 20 + 8 + payload;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Send one frame, then poll for up to 1 s for a frame that match() accepts. */
static int exchange(ubdma_e1000e_t *nic, const uint8_t *frame, unsigned len,
		    int (*match)(const uint8_t *f, unsigned len, void *arg), void *arg)
{
	struct iovec out = { (void *)frame, len };
	struct ubdma_e1000e_pkt *in[16];
	unsigned sent, got;
	int err, found = 0;

	/* copy API: the frame is copied into a pre-loaded pool buffer and queued */
	if ((err = ubdma_e1000e_send(nic, &out, 1, &sent)))
		return err;
	for (double end = now() + 1.0; !found && now() < end;) {
		/* zero-copy API: received frames are pool buffers we must give back */
		if ((err = ubdma_e1000e_rx_burst(nic, in, 16, &got)))
			return err;
		for (unsigned i = 0; i < got; i++)
			found |= match(in[i]->data, in[i]->len, arg);
		ubdma_e1000e_pkt_free(nic, in, got);
	}
	return found ? 0 : ETIMEDOUT;
}

static int is_arp_reply(const uint8_t *f, unsigned len, void *gw_mac)
{
	if (len < 42 || f[12] != 0x08 || f[13] != 0x06 || f[21] != 2 || memcmp(f + 28, gw_ip, 4))
		return 0;
	memcpy(gw_mac, f + 22, 6);          /* sender hardware address */
	return 1;
}

static int is_echo_reply(const uint8_t *f, unsigned len, void *seq)
{
	return len >= 42 && f[12] == 0x08 && f[13] == 0x00 && f[23] == 1 && f[34] == 0 &&
	       (f[40] << 8 | f[41]) == *(uint16_t *)seq;
}

int main(int argc, char **argv)
{
	const char *bdf = argc > 1 ? argv[1] : getenv("UBDMA_VM_NIC");
	int count = argc > 2 ? atoi(argv[2]) : 3, replies = 0, err;
	uint8_t mac[6], gw_mac[6], frame[128];
	struct ubdma_e1000e_link link;
	struct ubdma_e1000e_stats st;
	ubdma_e1000e_t *nic;

	if (!bdf) {
		fprintf(stderr, "usage: e1000e_ping BDF [COUNT]  (the 82574L, bound to vfio-pci)\n");
		return 2;
	}
	/* 1. the NIC: reset, MAC address, link, rings and packet pool.  Options NULL: default
	 * sizes, and a DMA context on VFIO of the driver's own (one IOMMU domain for the device; to
	 * share yours, pass struct ubdma_e1000e_opts o = { .size = sizeof(o), .ctx = ctx }). */
	if ((err = ubdma_e1000e_open(bdf, NULL, &nic))) {
		fprintf(stderr, "ubdma_e1000e_open(%s): %s: %s\n", bdf, strerror(err),
			ubdma_e1000e_last_error());
		return 1;
	}
	ubdma_e1000e_mac(nic, mac);
	ubdma_e1000e_link(nic, &link);
	printf("REPORT e1000e %s: mac %02x:%02x:%02x:%02x:%02x:%02x, link %s %u Mb/s\n", bdf, mac[0],
	       mac[1], mac[2], mac[3], mac[4], mac[5], link.up ? "up" : "down", link.speed_mbps);

	/* 2. ARP for the gateway's MAC address, then ICMP echo */
	if ((err = exchange(nic, frame, build_arp(frame, mac), is_arp_reply, gw_mac))) {
		printf("REPORT e1000e: no ARP reply from 10.0.2.2: %s\n", strerror(err));
	} else {
		printf("REPORT e1000e: 10.0.2.2 is at %02x:%02x:%02x:%02x:%02x:%02x\n", gw_mac[0],
		       gw_mac[1], gw_mac[2], gw_mac[3], gw_mac[4], gw_mac[5]);
		for (uint16_t seq = 1; seq <= count; seq++) {
			double t0 = now();

			err = exchange(nic, frame, build_ping(frame, mac, gw_mac, seq), is_echo_reply, &seq);
			if (!err)
				replies++;
			printf("  ping 10.0.2.2 seq %u: %s (%.2f ms)\n", seq, err ? strerror(err) : "reply",
			       (now() - t0) * 1e3);
		}
		printf("REPORT e1000e: ping 10.0.2.2: %d/%d replies\n", replies, count);
	}

	/* 3. the hardware's statistics registers */
	ubdma_e1000e_stats(nic, &st);
	printf("REPORT e1000e: frames sent %llu (GPTC), received %llu (GPRC)\n",
	       (unsigned long long)st.gptc, (unsigned long long)st.gprc);
	ubdma_e1000e_close(nic); /* and the driver's context */
	return replies == count && count > 0 ? 0 : 1;
}
