/*
 * dpdk_extmem.c - ubdma memory into DPDK: a hugepage region that ubdma allocates and locks is
 * registered with DPDK as external memory (rte_extmem_register) with the IOVAs ubdma gave each
 * page, mapped for a device with rte_dev_dma_map, and made the data buffers of an mbuf pool
 * (rte_pktmbuf_pool_create_extbuf), so that a DPDK PMD DMAs into and out of buffers ubdma owns.
 *
 * The device's IOMMU domain belongs to DPDK here (its PMD opened the device), so the ubdma
 * context is opened on the backend that gives the addresses DPDK's domain uses: phys when DPDK
 * runs with --iova-mode=pa (IOVA = physical address), va when it runs in VA mode (IOVA = VA).
 * The program checks that DPDK uses exactly ubdma's IOVAs: rte_mem_virt2memseg() finds an
 * external memseg for every page with ubdma's IOVA and rte_mem_virt2iova() agrees; every mbuf of
 * the pool has its buffer in the region at ubdma's IOVA (and, in PA mode, at the physical
 * address DPDK reads from pagemap itself, rte_mem_virt2phy()).
 *
 * With --dev, EAL probes that NIC (bound to vfio-pci; the PMD given with -d) and the port talks
 * to QEMU's user-mode network gateway (10.0.2.2; we are 10.0.2.15): an ARP request and ICMP
 * echo requests built in mbufs of the ubdma region go out by TX DMA, and the replies come back
 * by RX DMA into mbufs of the region.  Each echo reply must carry the request's payload, and the
 * port's counters must show the frames.  --no-dma-map leaves out rte_dev_dma_map and sends one
 * ARP request: the NIC's read of the frame must then be a DMAR fault at the frame's IOVA, which
 * the program announces (UBDMA-EXPECT-DMAR-FAULT, tests/vm/README.md) so the test bed checks it.
 *
 * usage: dpdk_extmem [--dev BDF] [--iova-mode pa|va] [-d PMD.so]... [--pings N] [--no-dma-map] [MiB]
 *   default 8 MiB of 2 MiB pages.  Without --dev, EAL runs with --no-pci in PA mode and only the
 *   registration is checked (no device to map for).
 * exit: 0 pass, 1 fail, 77 skipped (without --dev only: no hugepages, no usable backend, EAL
 * cannot start).  Root.
 */
/* rte_dev_dma_map() and rte_dev_dma_unmap() are still experimental in DPDK 22.11 */
#define ALLOW_EXPERIMENTAL_API

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_memory.h>
#include <rte_mempool.h>

#include <ubdma/ubdma.h>

#define SKIP 77
#define MB (1UL << 20)
#define MAX_PMDS 8
#define NB_DESC 128
#define NB_MBUF 2047 /* about 2.1 pool pages of 2 MiB: buffers come from several pages */
#define PAYLOAD 1400 /* an echo payload that fills most of a buffer */

struct opts {
	const char *bdf, *iova_mode;
	const char *pmds[MAX_PMDS];
	int npmds, pings, no_map;
	size_t len;
};

/* The region as ubdma sees it: every page's IOVA, for comparing with what DPDK uses. */
struct region {
	char *va;
	size_t len, pgsz;
	uint64_t *iovas;
	int dpdk_pa;
};

static uint64_t region_iova(const struct region *r, const void *p)
{
	size_t off = (size_t)((const char *)p - r->va);

	return r->iovas[off / r->pgsz] + off % r->pgsz;
}

static int in_region(const struct region *r, const void *p, size_t len)
{
	return (const char *)p >= r->va && (const char *)p + len <= r->va + r->len;
}

static int eal_start(const struct opts *o)
{
	char prefix[64], allow[64], mode[32];
	char *args[32];
	int n = 0;

	snprintf(prefix, sizeof(prefix), "--file-prefix=ubdma_extmem_%d", (int)getpid());
	args[n++] = "dpdk_extmem";
	if (o->bdf) {
		snprintf(allow, sizeof(allow), "--allow=%s", o->bdf);
		args[n++] = allow;
	} else {
		args[n++] = "--no-pci";
	}
	args[n++] = "-l";
	args[n++] = "0";
	args[n++] = "--in-memory";
	args[n++] = prefix;
	/* without a device any mode will do; PA is the one that compares with the phys backend */
	snprintf(mode, sizeof(mode), "--iova-mode=%s", o->iova_mode ? o->iova_mode : "pa");
	if (o->iova_mode || !o->bdf)
		args[n++] = mode;
	for (int i = 0; i < o->npmds; i++) {
		args[n++] = "-d";
		args[n++] = (char *)o->pmds[i];
	}
	/* with a device, EAL's probe lines are the evidence of which PMD took it: keep them */
	if (!o->bdf)
		args[n++] = "--log-level=lib.eal:warning";
	args[n++] = "--no-telemetry";
	args[n] = NULL;
	/* with a device the caller set the machine up for DPDK: a failure to start is a failure */
	if (rte_eal_init(n, args) < 0) {
		fprintf(stderr, "%s: rte_eal_init failed: %s\n", o->bdf ? "FAIL" : "SKIP", rte_strerror(rte_errno));
		return o->bdf ? 1 : SKIP;
	}
	return 0;
}

/*
 * The input address width of the IOMMU in front of bdf, or 0 when unknown.  Intel VT-d only:
 * MGAW, bits 21:16 of the Capability Register (VT-d spec 11.4.2), is the width minus one; DPDK
 * reads the same register to decide whether VA mode can work.
 */
static int iommu_width(const char *bdf)
{
	char path[128];
	unsigned long long cap;
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu/intel-iommu/cap", bdf);
	if (!(f = fopen(path, "r")))
		return 0;
	n = fscanf(f, "%llx", &cap);
	fclose(f);
	return n == 1 ? (int)((cap >> 16) & 0x3f) + 1 : 0;
}

/* DPDK's view of every page: the external memseg holding it and its IOVA.  Mismatches. */
static int check_dpdk_view(const struct region *r)
{
	int bad = 0;

	for (size_t i = 0; i < r->len / r->pgsz; i++) {
		char *p = r->va + i * r->pgsz + 4096 + 12; /* an address inside the page, not its start */
		const struct rte_memseg_list *msl = rte_mem_virt2memseg_list(p);
		const struct rte_memseg *ms = rte_mem_virt2memseg(p, msl);
		uint64_t want = region_iova(r, p);
		if (!msl || !ms || !msl->external) {
			printf("  page %zu: DPDK has no external memseg for %p\n", i, (void *)p);
			bad++;
			continue;
		}
		uint64_t seg_iova = ms->iova + (uint64_t)(p - (char *)ms->addr);
		uint64_t v2i = rte_mem_virt2iova(p);
		if (i < 4 || seg_iova != want || v2i != want)
			printf("  page %zu va %p: ubdma %#" PRIx64 "  memseg %#" PRIx64 "  virt2iova %#" PRIx64 "%s\n", i,
			       (void *)p, want, seg_iova, v2i, seg_iova == want && v2i == want ? "" : "  DIFFERENT");
		bad += seg_iova != want || v2i != want || ms->hugepage_sz != r->pgsz;
	}
	return bad;
}

/* The rte_device of the ethdev probed on bdf, or NULL. */
static struct rte_device *find_device(const char *bdf, uint16_t *portp)
{
	struct rte_eth_dev_info info;

	if (rte_eth_dev_get_port_by_name(bdf, portp) || rte_eth_dev_info_get(*portp, &info))
		return NULL;
	return info.device;
}

/* rte_dev_dma_map of the region, one call a page (the IOVAs need not be contiguous). */
static int dma_map(struct rte_device *dev, const struct region *r, size_t npages, int map)
{
	for (size_t i = 0; i < npages; i++) {
		char *va = r->va + i * r->pgsz;
		int err = map ? rte_dev_dma_map(dev, va, r->iovas[i], r->pgsz)
			      : rte_dev_dma_unmap(dev, va, r->iovas[i], r->pgsz);
		if (err) {
			fprintf(stderr, "rte_dev_dma_%smap(page %zu, iova %#" PRIx64 "): %s\n", map ? "" : "un", i,
				r->iovas[i], rte_strerror(rte_errno));
			if (map)
				dma_map(dev, r, i, 0);
			return 1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------ the mbuf pool on the region */

struct pool_check {
	const struct region *r;
	unsigned bad, n;
	uint64_t pages; /* bit i: some buffer is on page i */
};

/* Every mbuf's buffer: inside one page of the region, at ubdma's IOVA (PA mode: at its PA). */
static void check_mbuf(struct rte_mempool *mp, void *arg, void *obj, unsigned idx)
{
	struct pool_check *c = arg;
	struct rte_mbuf *m = obj;
	const struct region *r = c->r;
	size_t page;
	int ok;

	(void)mp;
	c->n++;
	ok = in_region(r, m->buf_addr, m->buf_len);
	page = ok ? (size_t)((char *)m->buf_addr - r->va) / r->pgsz : 0;
	ok = ok && (size_t)((char *)m->buf_addr + m->buf_len - 1 - r->va) / r->pgsz == page;
	ok = ok && m->buf_iova == region_iova(r, m->buf_addr) && RTE_MBUF_HAS_PINNED_EXTBUF(m);
	if (ok && r->dpdk_pa)
		ok = rte_mem_virt2phy(m->buf_addr) == m->buf_iova;
	if (ok && page < 64)
		c->pages |= UINT64_C(1) << page;
	if (!ok && c->bad++ < 4)
		printf("  mbuf %u: buffer %p +%u iova %#" PRIx64 ", ubdma says %#" PRIx64 "%s\n", idx,
		       m->buf_addr, m->buf_len, m->buf_iova,
		       in_region(r, m->buf_addr, 1) ? region_iova(r, m->buf_addr) : 0,
		       in_region(r, m->buf_addr, m->buf_len) ? "" : " (outside the region)");
}

/* An mbuf pool whose data buffers are the region's pages, one rte_pktmbuf_extmem a page. */
static struct rte_mempool *pool_create(const struct region *r, int socket)
{
	size_t npages = r->len / r->pgsz;
	struct rte_pktmbuf_extmem *ext = calloc(npages, sizeof(*ext));
	struct rte_mempool *mp;

	if (!ext)
		return NULL;
	for (size_t i = 0; i < npages; i++)
		ext[i] = (struct rte_pktmbuf_extmem){ .buf_ptr = r->va + i * r->pgsz,
						      .buf_iova = r->iovas[i],
						      .buf_len = r->pgsz,
						      .elt_size = RTE_MBUF_DEFAULT_BUF_SIZE };
	mp = rte_pktmbuf_pool_create_extbuf("ubdma_extbuf", NB_MBUF, 32, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					    socket, ext, (unsigned)npages);
	if (!mp)
		fprintf(stderr, "rte_pktmbuf_pool_create_extbuf: %s\n", rte_strerror(rte_errno));
	free(ext);
	return mp;
}

/* ----------------------------------------------------------- frames to QEMU's gateway */

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

/* ARP request (RFC 826): who has 10.0.2.2? tell 10.0.2.15. */
static unsigned build_arp(uint8_t *f, const uint8_t mac[6])
{
	static const uint8_t hdr[8] = { 0, 1, 8, 0, 6, 4, 0, 1 }; /* Ethernet, IPv4, request */

	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x08, f[13] = 0x06;
	memcpy(f + 14, hdr, 8);
	memcpy(f + 22, mac, 6);
	memcpy(f + 28, my_ip, 4);
	memset(f + 32, 0, 6);
	memcpy(f + 38, gw_ip, 4);
	return 42;
}

/* A payload byte that differs between sequence numbers, so a stale buffer cannot pass. */
static uint8_t pattern(uint16_t seq, unsigned i)
{
	return (uint8_t)(i * 7 + seq * 13 + (i >> 8));
}

/* ICMP echo request (RFC 792) in IPv4 (RFC 791) to the gateway, PAYLOAD bytes of pattern(). */
static unsigned build_ping(uint8_t *f, const uint8_t mac[6], const uint8_t gw_mac[6], uint16_t seq)
{
	uint8_t *ip = f + 14, *icmp = f + 34;
	unsigned iplen = 20 + 8 + PAYLOAD;

	memcpy(f, gw_mac, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x08, f[13] = 0x00;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	ip[2] = (uint8_t)(iplen >> 8), ip[3] = (uint8_t)iplen;
	ip[8] = 64, ip[9] = 1;
	memcpy(ip + 12, my_ip, 4);
	memcpy(ip + 16, gw_ip, 4);
	uint16_t c = csum(ip, 20);
	ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
	memset(icmp, 0, 8);
	icmp[0] = 8;
	icmp[4] = 0x75, icmp[5] = 0xbd;
	icmp[6] = (uint8_t)(seq >> 8), icmp[7] = (uint8_t)seq;
	for (unsigned i = 0; i < PAYLOAD; i++)
		icmp[8 + i] = pattern(seq, i);
	c = csum(icmp, 8 + PAYLOAD);
	icmp[2] = (uint8_t)(c >> 8), icmp[3] = (uint8_t)c;
	return 14 + iplen;
}

static int is_arp_reply(const uint8_t *f, unsigned len, uint16_t seq, uint8_t *gw_mac)
{
	(void)seq;
	if (len < 42 || f[12] != 0x08 || f[13] != 0x06 || f[21] != 2 || memcmp(f + 28, gw_ip, 4))
		return 0;
	memcpy(gw_mac, f + 22, 6);
	return 1;
}

/* 1: the reply to seq with the whole payload intact; -1: the reply with a damaged payload. */
static int is_echo_reply(const uint8_t *f, unsigned len, uint16_t seq, uint8_t *unused)
{
	(void)unused;
	if (len < 42 || f[12] != 0x08 || f[13] != 0x00 || f[23] != 1 || f[34] != 0 ||
	    (f[40] << 8 | f[41]) != seq)
		return 0;
	if (len < 42 + PAYLOAD)
		return -1;
	for (unsigned i = 0; i < PAYLOAD; i++)
		if (f[42 + i] != pattern(seq, i))
			return -1;
	return 1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct port {
	uint16_t id;
	struct rte_mempool *mp;
	const struct region *r;
	uint8_t mac[6];
	unsigned sent, rx_in_region, rx_outside;
};

/* Build a frame in an mbuf of the pool, check the IOVA the PMD will give the NIC, send it. */
static int send_frame(struct port *p, uint16_t seq, const uint8_t *gw_mac, int announce_fault)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(p->mp);
	uint8_t *f;
	unsigned len;

	if (!m) {
		fprintf(stderr, "rte_pktmbuf_alloc: pool empty\n");
		return 1;
	}
	f = rte_pktmbuf_mtod(m, uint8_t *);
	len = gw_mac ? build_ping(f, p->mac, gw_mac, seq) : build_arp(f, p->mac);
	m->data_len = (uint16_t)len;
	m->pkt_len = len;
	if (!in_region(p->r, f, len) || rte_pktmbuf_iova(m) != region_iova(p->r, f)) {
		printf("  TX frame at %p iova %#" PRIx64 ": not ubdma's (%#" PRIx64 ")\n", (void *)f,
		       rte_pktmbuf_iova(m), in_region(p->r, f, 1) ? region_iova(p->r, f) : 0);
		rte_pktmbuf_free(m);
		return 1;
	}
	if (announce_fault) {
		printf("the NIC will read the frame at IOVA %#" PRIx64 ", not mapped for it\n",
		       rte_pktmbuf_iova(m));
		printf("UBDMA-EXPECT-DMAR-FAULT %#" PRIx64 "\n", rte_pktmbuf_iova(m));
		fflush(stdout);
	}
	if (rte_eth_tx_burst(p->id, 0, &m, 1) != 1) {
		fprintf(stderr, "rte_eth_tx_burst: the frame was not queued\n");
		rte_pktmbuf_free(m);
		return 1;
	}
	p->sent++;
	return 0;
}

/* Send one frame, then poll up to 1 s for a frame match() accepts: 1, -1 when damaged, else 0. */
static int exchange(struct port *p, uint16_t seq, uint8_t *gw_mac, int is_ping,
		    int (*match)(const uint8_t *f, unsigned len, uint16_t seq, uint8_t *gw_mac))
{
	struct rte_mbuf *in[32];
	int found = 0;

	if (send_frame(p, seq, is_ping ? gw_mac : NULL, 0))
		return 0;
	for (double end = now() + 1.0; !found && now() < end;) {
		uint16_t n = rte_eth_rx_burst(p->id, 0, in, 32);
		for (uint16_t i = 0; i < n; i++) {
			const uint8_t *f = rte_pktmbuf_mtod(in[i], const uint8_t *);
			/* RX DMA wrote this frame: it must be in the region, at ubdma's IOVA */
			if (in_region(p->r, f, in[i]->data_len) && rte_pktmbuf_iova(in[i]) == region_iova(p->r, f))
				p->rx_in_region++;
			else
				p->rx_outside++;
			if (!found)
				found = match(f, in[i]->data_len, seq, gw_mac);
			rte_pktmbuf_free(in[i]);
		}
	}
	return found;
}

static int port_start(struct port *p)
{
	struct rte_eth_conf conf;
	struct rte_ether_addr addr;
	struct rte_eth_link link;
	int err, socket = rte_eth_dev_socket_id(p->id);

	memset(&conf, 0, sizeof(conf));
	memset(&link, 0, sizeof(link));
	if ((err = rte_eth_dev_configure(p->id, 1, 1, &conf)) ||
	    (err = rte_eth_rx_queue_setup(p->id, 0, NB_DESC, (unsigned)socket, NULL, p->mp)) ||
	    (err = rte_eth_tx_queue_setup(p->id, 0, NB_DESC, (unsigned)socket, NULL)) ||
	    (err = rte_eth_dev_start(p->id))) {
		fprintf(stderr, "port %u set-up: %s\n", p->id, rte_strerror(-err));
		return 1;
	}
	rte_eth_macaddr_get(p->id, &addr);
	memcpy(p->mac, addr.addr_bytes, 6);
	for (double end = now() + 5.0; now() < end; usleep(100000))
		if (!rte_eth_link_get_nowait(p->id, &link) && link.link_status)
			break;
	printf("port %u: mac %02x:%02x:%02x:%02x:%02x:%02x, link %s %u Mb/s\n", p->id, p->mac[0],
	       p->mac[1], p->mac[2], p->mac[3], p->mac[4], p->mac[5], link.link_status ? "up" : "down",
	       link.link_speed);
	return 0;
}

/* ARP for the gateway, then the pings; every reply must have come back intact. */
static int traffic(struct port *p, int pings)
{
	uint8_t gw_mac[6];
	int good = 0, r, bad = 0;

	if ((r = exchange(p, 0, gw_mac, 0, is_arp_reply)) != 1) {
		printf("no ARP reply from 10.0.2.2\n");
		return 1;
	}
	printf("ARP: 10.0.2.2 is at %02x:%02x:%02x:%02x:%02x:%02x\n", gw_mac[0], gw_mac[1], gw_mac[2],
	       gw_mac[3], gw_mac[4], gw_mac[5]);
	for (uint16_t seq = 1; seq <= pings; seq++) {
		r = exchange(p, seq, gw_mac, 1, is_echo_reply);
		good += r == 1;
		bad += r == -1;
		if (r != 1)
			printf("  ping seq %u: %s\n", seq, r ? "reply with a damaged payload" : "no reply");
	}
	printf("ping 10.0.2.2: %d/%d replies with the %u-byte payload intact, %d damaged\n", good, pings,
	       PAYLOAD, bad);
	return good != pings;
}

/* The port's counters: everything we sent went out, what came back was counted, no errors. */
static int check_stats(const struct port *p)
{
	struct rte_eth_stats st;

	if (rte_eth_stats_get(p->id, &st)) {
		fprintf(stderr, "rte_eth_stats_get: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	printf("UBDMA-DPDK-EXTMEM stats opackets=%" PRIu64 " ipackets=%" PRIu64 " obytes=%" PRIu64
	       " ibytes=%" PRIu64 " oerrors=%" PRIu64 " ierrors=%" PRIu64 " imissed=%" PRIu64
	       " sent=%u rx_in_region=%u rx_outside=%u\n",
	       st.opackets, st.ipackets, st.obytes, st.ibytes, st.oerrors, st.ierrors, st.imissed, p->sent,
	       p->rx_in_region, p->rx_outside);
	return st.opackets != p->sent || st.ipackets < p->rx_in_region || st.oerrors || st.ierrors ||
	       p->rx_outside;
}

/* The pool's buffers, each checked against ubdma's view of the region.  Mismatches. */
static int check_pool(struct rte_mempool *mp, const struct region *r)
{
	struct pool_check c = { .r = r };

	rte_mempool_obj_iter(mp, check_mbuf, &c);
	printf("mbuf pool: %u buffers on %d pages of the region, %u not at ubdma's IOVA%s\n", c.n,
	       __builtin_popcountll(c.pages), c.bad, r->dpdk_pa ? " or not at rte_mem_virt2phy()" : "");
	return c.bad || c.n != NB_MBUF || __builtin_popcountll(c.pages) < 2;
}

/* Port and traffic on the mapped (or, with no_map, deliberately unmapped) region. */
static int run_port(const struct opts *o, uint16_t port, struct rte_mempool *mp, const struct region *r)
{
	struct port p = { .id = port, .mp = mp, .r = r };
	int bad = 0;

	if (port_start(&p))
		return 1;
	if (o->no_map) {
		struct rte_mbuf *in[32];
		bad += send_frame(&p, 0, NULL, 1);
		for (double end = now() + 1.0; now() < end;)
			rte_pktmbuf_free_bulk(in, rte_eth_rx_burst(port, 0, in, 32));
	} else {
		bad += traffic(&p, o->pings);
		bad += check_stats(&p);
	}
	if (rte_eth_dev_stop(port))
		bad++;
	/* stopping the port gave back the buffers its rings held: none may be missing */
	unsigned avail = rte_mempool_avail_count(mp);
	if (avail != NB_MBUF) {
		printf("mbuf pool: %u of %u buffers back after the port stopped\n", avail, NB_MBUF);
		bad++;
	}
	return bad;
}

static int parse(int argc, char **argv, struct opts *o)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dev") && i + 1 < argc)
			o->bdf = argv[++i];
		else if (!strcmp(argv[i], "--iova-mode") && i + 1 < argc)
			o->iova_mode = argv[++i];
		else if (!strcmp(argv[i], "-d") && i + 1 < argc && o->npmds < MAX_PMDS)
			o->pmds[o->npmds++] = argv[++i];
		else if (!strcmp(argv[i], "--pings") && i + 1 < argc)
			o->pings = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--no-dma-map"))
			o->no_map = 1;
		else if (argv[i][0] >= '1' && argv[i][0] <= '9')
			o->len = strtoul(argv[i], NULL, 0) * MB;
		else
			return 1;
	}
	return o->iova_mode && strcmp(o->iova_mode, "pa") && strcmp(o->iova_mode, "va");
}

int main(int argc, char **argv)
{
	struct opts o = { .len = 8 * MB, .pings = 8 };
	struct region r = { .pgsz = 2 * MB };
	ubdma_huge_t *region = NULL;
	ubdma_ctx_t *ctx = NULL;
	ubdma_umem_t *cookie = NULL;
	int rc, err;

	if (parse(argc, argv, &o)) {
		fprintf(stderr, "usage: dpdk_extmem [--dev BDF] [--iova-mode pa|va] [-d PMD.so]... "
				"[--pings N] [--no-dma-map] [MiB]\n");
		return 2;
	}
	if ((rc = eal_start(&o)))
		return rc;
	rc = o.bdf ? 1 : SKIP;
	r.dpdk_pa = rte_eal_iova_mode() == RTE_IOVA_PA;
	enum ubdma_backend be = r.dpdk_pa ? UBDMA_BACKEND_PHYS : UBDMA_BACKEND_VA;
	if ((err = ubdma_ctx_open(be, &ctx))) {
		fprintf(stderr, "%s: ubdma_ctx_open(%s): %s (%s)\n", o.bdf ? "FAIL" : "SKIP", ubdma_backend_name(be), strerror(err),
			ubdma_last_error());
		goto out;
	}
	/* ubdma's own hugepages, on the device's node when there is one */
	int node = UBDMA_NODE_ANY;
	if (o.bdf && ubdma_numa_node_of_pci(o.bdf, &node))
		node = UBDMA_NODE_ANY;
	if ((err = ubdma_huge_alloc(o.len, r.pgsz, node, UBDMA_HUGE_STRICT, &region))) {
		fprintf(stderr, "%s: ubdma_huge_alloc: %s\n", o.bdf ? "FAIL" : "SKIP", ubdma_last_error());
		goto out;
	}
	r.va = ubdma_huge_addr(region);
	r.len = ubdma_huge_len(region);
	rc = 1;
	if ((err = ubdma_umem_lock(ctx, r.va, r.len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &cookie))) {
		fprintf(stderr, "ubdma_umem_lock: %s (%s)\n", strerror(err), ubdma_last_error());
		goto out;
	}
	if (!(r.iovas = calloc(r.len / r.pgsz, sizeof(*r.iovas))))
		goto out;
	for (size_t i = 0; i < r.len / r.pgsz; i++)
		r.iovas[i] = ubdma_umem_iova(cookie, r.va + i * r.pgsz);
	printf("DPDK IOVA mode %s; ubdma backend %s; region %zu MiB of %zu MiB pages at %p, node %d\n",
	       r.dpdk_pa ? "PA" : "VA", ubdma_backend_name(be), r.len >> 20, r.pgsz >> 20, (void *)r.va, node);
	/*
	 * In VA mode the IOVAs are the region's VAs, near the top of the 47-bit user space, and DPDK
	 * holds every memseg, external ones too, to the device's DMA mask: registering them would
	 * also make DPDK's own allocations fail.  Say so instead of failing obscurely later.
	 */
	int width = o.bdf && !r.dpdk_pa ? iommu_width(o.bdf) : 0;
	if (width && width < 64 && (r.iovas[r.len / r.pgsz - 1] + r.pgsz - 1) >> width) {
		fprintf(stderr, "SKIP: DPDK is in VA mode, where ubdma's IOVAs are the VAs (up to %p), but the "
				"IOMMU of %s translates %d-bit addresses: run with --iova-mode pa\n",
			(void *)(r.va + r.len - 1), o.bdf, width);
		rc = SKIP;
		goto out;
	}

	if (rte_extmem_register(r.va, r.len, r.iovas, (unsigned)(r.len / r.pgsz), r.pgsz)) {
		fprintf(stderr, "rte_extmem_register: %s\n", rte_strerror(rte_errno));
		goto out;
	}
	int bad = check_dpdk_view(&r);
	printf("DPDK sees %zu pages of external memory: %d differ from ubdma\n", r.len / r.pgsz, bad);
	uint16_t port = 0;
	struct rte_device *dev = NULL;
	if (o.bdf && !(dev = find_device(o.bdf, &port))) {
		fprintf(stderr, "no DPDK port on %s (bound to vfio-pci? its PMD loaded with -d?)\n", o.bdf);
		bad++;
	}
	struct rte_mempool *mp = pool_create(&r, dev ? rte_eth_dev_socket_id(port) : SOCKET_ID_ANY);
	bad += !mp || check_pool(mp, &r);
	if (mp && dev && o.no_map) {
		printf("--no-dma-map: the region is NOT mapped for %s\n", rte_dev_name(dev));
		bad += run_port(&o, port, mp, &r);
	} else if (mp && dev && !dma_map(dev, &r, r.len / r.pgsz, 1)) {
		printf("rte_dev_dma_map: %zu pages mapped for %s (port %u, driver %s)\n", r.len / r.pgsz,
		       rte_dev_name(dev), port, rte_driver_name(rte_dev_driver(dev)));
		bad += run_port(&o, port, mp, &r); /* the port is stopped: no DMA in flight */
		bad += dma_map(dev, &r, r.len / r.pgsz, 0);
	} else if (mp && dev) {
		bad++;
	} else if (!o.bdf) {
		printf("no --dev: rte_dev_dma_map and the PMD's DMA not exercised (the guest test runs them)\n");
	}
	if (dev && rte_eth_dev_close(port))
		bad++;
	rte_mempool_free(mp);
	if (rte_extmem_unregister(r.va, r.len)) {
		fprintf(stderr, "rte_extmem_unregister: %s\n", rte_strerror(rte_errno));
		bad++;
	}
	rc = bad ? 1 : 0;
	printf("%s\n", rc ? "FAIL" : "PASS");
out:
	free(r.iovas);
	ubdma_umem_unlock(cookie);
	ubdma_huge_free(region);
	ubdma_ctx_close(ctx);
	rte_eal_cleanup();
	return rc;
}
