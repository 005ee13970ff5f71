/*
 * dpdk_extmem.c - ubdma memory into DPDK: a hugepage region that ubdma allocates and locks is
 * registered with DPDK as external memory (rte_extmem_register) with the IOVAs ubdma gave each
 * page, and mapped for a device with rte_dev_dma_map, so that a DPDK PMD can DMA into buffers
 * ubdma owns.
 *
 * The device's IOMMU domain belongs to DPDK here (its PMD opened the device), so the ubdma
 * context is opened on the backend that gives the addresses DPDK's domain uses: phys when DPDK
 * runs with --iova-mode=pa (IOVA = physical address), va when it runs in VA mode (DPDK maps
 * IOVA = VA in its VFIO container).  The program checks that DPDK then sees the region where
 * ubdma put it: rte_mem_virt2memseg() finds an external memseg for every page, with ubdma's IOVA,
 * and rte_mem_virt2iova() agrees.
 *
 * usage: dpdk_extmem [--dev BDF] [MiB]   (default 8 MiB of 2 MiB pages)
 *   Without --dev, EAL runs with --no-pci and the device part is skipped (no device to map for);
 *   with --dev, EAL probes that device (bound to vfio-pci) and the region is DMA-mapped for it.
 * exit: 0 pass, 1 fail, 77 skipped (no hugepages, no usable backend).  Needs root.
 */
/* rte_dev_dma_map() and rte_dev_dma_unmap() are still experimental in DPDK 22.11 */
#define ALLOW_EXPERIMENTAL_API

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_memory.h>

#include <ubdma/ubdma.h>

#define SKIP 77
#define MB (1UL << 20)

static int eal_start(const char *argv0, const char *dev)
{
	char prefix[64], allow[64];
	char *args[16];
	int n = 0;

	snprintf(prefix, sizeof(prefix), "--file-prefix=ubdma_extmem_%d", (int)getpid());
	args[n++] = (char *)argv0;
	if (dev) {
		snprintf(allow, sizeof(allow), "--allow=%s", dev);
		args[n++] = allow;
	} else {
		args[n++] = "--no-pci";
	}
	args[n++] = "-l";
	args[n++] = "0";
	args[n++] = "--in-memory";
	args[n++] = prefix;
	if (!dev)
		args[n++] = "--iova-mode=pa"; /* with a device, EAL picks what the IOMMU allows */
	args[n++] = "--log-level=lib.eal:warning";
	args[n++] = "--no-telemetry";
	args[n] = NULL;
	if (rte_eal_init(n, args) < 0) {
		fprintf(stderr, "SKIP: rte_eal_init failed: %s\n", rte_strerror(rte_errno));
		return SKIP;
	}
	return 0;
}

/* DPDK's view of every page: the external memseg holding it and its IOVA.  Mismatches. */
static int check_dpdk_view(char *va, size_t len, size_t pgsz, const uint64_t *iovas)
{
	int bad = 0;

	for (size_t i = 0; i < len / pgsz; i++) {
		char *p = va + i * pgsz + 4096 + 12; /* an address inside the page, not its start */
		const struct rte_memseg_list *msl = rte_mem_virt2memseg_list(p);
		const struct rte_memseg *ms = rte_mem_virt2memseg(p, msl);
		uint64_t want = iovas[i] + 4096 + 12;
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
		bad += seg_iova != want || v2i != want || ms->hugepage_sz != pgsz;
	}
	return bad;
}

/* The rte_device of the ethdev probed on bdf, or NULL. */
static struct rte_device *find_device(const char *bdf)
{
	uint16_t port;
	struct rte_eth_dev_info info;

	if (rte_eth_dev_get_port_by_name(bdf, &port) || rte_eth_dev_info_get(port, &info))
		return NULL;
	return info.device;
}

/* rte_dev_dma_map of the region, one call a page (the IOVAs need not be contiguous). */
static int dma_map(struct rte_device *dev, char *va, size_t len, size_t pgsz, const uint64_t *iovas, int map)
{
	for (size_t i = 0; i < len / pgsz; i++) {
		int r = map ? rte_dev_dma_map(dev, va + i * pgsz, iovas[i], pgsz)
			    : rte_dev_dma_unmap(dev, va + i * pgsz, iovas[i], pgsz);
		if (r) {
			fprintf(stderr, "rte_dev_dma_%smap(page %zu, iova %#" PRIx64 "): %s\n", map ? "" : "un", i,
				iovas[i], rte_strerror(rte_errno));
			if (map)
				dma_map(dev, va, i * pgsz, pgsz, iovas, 0);
			return 1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *bdf = NULL;
	size_t len = 8 * MB, pgsz = 2 * MB;
	ubdma_huge_t *region = NULL;
	ubdma_ctx_t *ctx = NULL;
	ubdma_umem_t *cookie = NULL;
	uint64_t *iovas = NULL;
	int rc, err;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dev") && i + 1 < argc)
			bdf = argv[++i];
		else
			len = strtoul(argv[i], NULL, 0) * MB;
	}
	if ((rc = eal_start(argv[0], bdf)))
		return rc;
	rc = SKIP;
	int dpdk_pa = rte_eal_iova_mode() == RTE_IOVA_PA;
	enum ubdma_backend be = dpdk_pa ? UBDMA_BACKEND_PHYS : UBDMA_BACKEND_VA;
	if ((err = ubdma_ctx_open(be, &ctx))) {
		fprintf(stderr, "SKIP: ubdma_ctx_open(%s): %s (%s)\n", ubdma_backend_name(be), strerror(err),
			ubdma_last_error());
		goto out;
	}
	/* ubdma's own hugepages, on the device's node when there is one */
	int node = UBDMA_NODE_ANY;
	if (bdf && ubdma_numa_node_of_pci(bdf, &node))
		node = UBDMA_NODE_ANY;
	if ((err = ubdma_huge_alloc(len, pgsz, node, UBDMA_HUGE_STRICT, &region))) {
		fprintf(stderr, "SKIP: ubdma_huge_alloc: %s\n", ubdma_last_error());
		goto out;
	}
	char *va = ubdma_huge_addr(region);
	len = ubdma_huge_len(region);
	rc = 1;
	if ((err = ubdma_umem_lock(ctx, va, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &cookie))) {
		fprintf(stderr, "ubdma_umem_lock: %s (%s)\n", strerror(err), ubdma_last_error());
		goto out;
	}
	if (!(iovas = calloc(len / pgsz, sizeof(*iovas))))
		goto out;
	for (size_t i = 0; i < len / pgsz; i++)
		iovas[i] = ubdma_umem_iova(cookie, va + i * pgsz);
	printf("DPDK IOVA mode %s; ubdma backend %s; region %zu MiB of %zu MiB pages at %p, node %d\n",
	       dpdk_pa ? "PA" : "VA", ubdma_backend_name(be), len >> 20, pgsz >> 20, (void *)va, node);

	if (rte_extmem_register(va, len, iovas, (unsigned)(len / pgsz), pgsz)) {
		fprintf(stderr, "rte_extmem_register: %s\n", rte_strerror(rte_errno));
		goto out;
	}
	int bad = check_dpdk_view(va, len, pgsz, iovas);
	printf("DPDK sees %zu pages of external memory: %d differ from ubdma\n", len / pgsz, bad);
	if (bdf) {
		struct rte_device *dev = find_device(bdf);
		if (!dev) {
			fprintf(stderr, "no DPDK device on %s (bound to vfio-pci? a PMD for it?)\n", bdf);
			bad++;
		} else if (!dma_map(dev, va, len, pgsz, iovas, 1)) {
			printf("rte_dev_dma_map: %zu pages mapped for %s\n", len / pgsz, rte_dev_name(dev));
			bad += dma_map(dev, va, len, pgsz, iovas, 0);
		} else {
			bad++;
		}
	} else {
		printf("no --dev: rte_dev_dma_map not exercised (it needs a probed device: the guest runs it)\n");
	}
	if (rte_extmem_unregister(va, len)) {
		fprintf(stderr, "rte_extmem_unregister: %s\n", rte_strerror(rte_errno));
		bad++;
	}
	rc = bad ? 1 : 0;
	printf("%s\n", rc ? "FAIL" : "PASS");
out:
	free(iovas);
	ubdma_umem_unlock(cookie);
	ubdma_huge_free(region);
	ubdma_ctx_close(ctx);
	rte_eal_cleanup();
	return rc;
}
