/*
 * dpdk_malloc.c - DPDK memory into ubdma: a buffer from rte_malloc() (DPDK's hugepages) is locked
 * in a ubdma context and loaded through a bus_dma tag, and the IOVAs ubdma hands out are compared
 * with DPDK's own, rte_mem_virt2iova().
 *
 * Why this is interesting: an application that already runs DPDK keeps its mempools and heaps,
 * and gives the same memory to a device that ubdma drives (an NVMe queue, say) without copying.
 * ubdma wires DPDK's pages (they are hugetlb pages, so the phys backend can translate them) and
 * enters them in its translation map; the tag then loads them in place, with no bounce.
 *
 * When both sides translate the same way (DPDK --iova-mode=pa and ubdma on phys, or both in VA
 * mode), the IOVAs must be equal, page by page: the program checks it and fails otherwise.  Under
 * VFIO, DPDK and ubdma use separate IOMMU containers, each with its own IOVAs: both are printed.
 *
 * usage: dpdk_malloc [MiB] [-- EAL-ARGS]   (default 8 MiB; EAL: --in-memory --iova-mode=pa --no-pci)
 * exit: 0 pass, 1 fail, 77 skipped (no hugepages for DPDK, or no usable backend); needs root for
 * physical addresses.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_memory.h>

#include <ubdma/ubdma.h>

#define SKIP 77
#define MB (1UL << 20)

struct load_result {
	ubdma_seg_t segs[64];
	int nseg;
};

static int eal_start(int argc, char **argv)
{
	char prefix[64];
	char *def[] = { argv[0], "--no-pci", "-l", "0", "--in-memory", prefix, "--iova-mode=pa",
			"--log-level=lib.eal:warning", "--no-telemetry", NULL };
	char **eal = def;
	int n = (int)(sizeof(def) / sizeof(def[0])) - 1;

	snprintf(prefix, sizeof(prefix), "--file-prefix=ubdma_malloc_%d", (int)getpid());
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--")) {
			/* the caller's EAL arguments replace ours */
			argv[i] = argv[0];
			eal = argv + i;
			n = argc - i;
			break;
		}
	if (rte_eal_init(n, eal) < 0) {
		fprintf(stderr, "SKIP: rte_eal_init failed: %s (free hugepages? root?)\n", rte_strerror(rte_errno));
		return SKIP;
	}
	return 0;
}

/* Compare ubdma's IOVA of every 4 KiB page with DPDK's; returns the number of mismatches. */
static size_t compare(ubdma_umem_t *cookie, char *buf, size_t len, int must_match)
{
	size_t bad = 0;

	for (size_t off = 0; off < len; off += 4096) {
		uint64_t u = ubdma_umem_iova(cookie, buf + off);
		rte_iova_t d = rte_mem_virt2iova(buf + off);
		if (off % (2 * MB) == 0)
			printf("  va %p  ubdma %#" PRIx64 "  dpdk %#" PRIx64 "%s\n", (void *)(buf + off), u, (uint64_t)d,
			       !must_match ? "" : u == d ? "  equal" : "  DIFFERENT");
		bad += must_match && u != d;
	}
	return bad;
}

/* Load the buffer through a tag of the context; the segments must tile the same IOVAs. */
static int load(ubdma_ctx_t *ctx, ubdma_umem_t *cookie, char *buf, size_t len, struct load_result *r)
{
	ubdma_tag_t *tag;
	ubdma_map_t *map;
	int err;

	/* a device that takes 64 segments of up to 2 MiB, any address */
	err = ubdma_tag_create(ubdma_ctx_tag(ctx), 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, len, 64, 2 * MB, 0, &tag);
	if (err)
		return fprintf(stderr, "ubdma_tag_create: %s (%s)\n", strerror(err), ubdma_last_error()), 1;
	if ((err = ubdma_map_create(tag, 0, &map))) {
		ubdma_tag_destroy(tag);
		return fprintf(stderr, "ubdma_map_create: %s\n", strerror(err)), 1;
	}
	err = ubdma_map_load_sg(tag, map, buf, len, r->segs, &r->nseg, UBDMA_NOWAIT);
	int bad = 0;
	if (err) {
		fprintf(stderr, "ubdma_map_load_sg: %s (%s)\n", strerror(err), ubdma_last_error());
		bad = 1;
	} else {
		/* each segment must be the IOVAs of the bytes it covers: no bounce for locked memory */
		size_t off = 0;
		for (int i = 0; i < r->nseg; i++) {
			bad |= r->segs[i].ds_addr != ubdma_umem_iova(cookie, buf + off);
			bad |= r->segs[i].ds_addr + r->segs[i].ds_len - 1 != ubdma_umem_iova(cookie, buf + off + r->segs[i].ds_len - 1);
			off += r->segs[i].ds_len;
		}
		bad |= off != len;
		printf("tag load: %d segments, %s\n", r->nseg, bad ? "NOT the cookie's IOVAs (bounced?)" : "in place");
		ubdma_map_unload(tag, map);
	}
	ubdma_map_destroy(tag, map);
	ubdma_tag_destroy(tag);
	return bad;
}

int main(int argc, char **argv)
{
	size_t len = (argc > 1 && strcmp(argv[1], "--") ? strtoul(argv[1], NULL, 0) : 8) * MB;
	ubdma_ctx_t *ctx = NULL;
	ubdma_umem_t *cookie = NULL;
	struct load_result lr;
	int rc = 1, err;

	if ((rc = eal_start(argc, argv)))
		return rc;
	rc = 1;
	int dpdk_pa = rte_eal_iova_mode() == RTE_IOVA_PA;
	char *buf = rte_malloc("ubdma", len, 2 * MB);
	if (!buf) {
		fprintf(stderr, "SKIP: rte_malloc(%zu) failed: not enough free hugepages for DPDK\n", len);
		rc = SKIP;
		goto out_eal;
	}
	memset(buf, 0x5a, len);
	if ((err = ubdma_ctx_open(UBDMA_BACKEND_AUTO, &ctx))) {
		fprintf(stderr, "SKIP: ubdma_ctx_open: %s (%s)\n", strerror(err), ubdma_last_error());
		rc = SKIP;
		goto out_free;
	}
	enum ubdma_backend be = ubdma_ctx_backend(ctx);
	printf("DPDK IOVA mode %s; ubdma backend %s (%s)\n", dpdk_pa ? "PA" : "VA", ubdma_backend_name(be),
	       ubdma_ctx_backend_reason(ctx));
	/* DPDK's pages are hugetlb pages: phys can translate them, the locks nest with DPDK's own */
	if ((err = ubdma_umem_lock(ctx, buf, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &cookie))) {
		fprintf(stderr, "ubdma_umem_lock of rte_malloc memory: %s (%s)\n", strerror(err), ubdma_last_error());
		goto out_ctx;
	}
	int must_match = (dpdk_pa && be == UBDMA_BACKEND_PHYS) || (!dpdk_pa && be == UBDMA_BACKEND_VA);
	size_t bad = compare(cookie, buf, len, must_match);
	if (must_match)
		printf("%zu pages of 4 KiB compared: %zu differ\n", len / 4096, bad);
	else
		printf("separate IOMMU domains (DPDK %s, ubdma %s): IOVAs differ by design, not compared\n",
		       dpdk_pa ? "PA" : "VA", ubdma_backend_name(be));
	if (ubdma_vtoiova(ctx, buf + len / 2) != ubdma_umem_iova(cookie, buf + len / 2))
		bad++;
	rc = bad || load(ctx, cookie, buf, len, &lr) ? 1 : 0;
	printf("%s\n", rc ? "FAIL" : "PASS");
	ubdma_umem_unlock(cookie);
out_ctx:
	ubdma_ctx_close(ctx);
out_free:
	rte_free(buf);
out_eal:
	rte_eal_cleanup();
	return rc;
}
