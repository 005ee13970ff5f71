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
 * With --nvme BDF (an NVMe controller on vfio-pci: the test-bed guest), the context is the one
 * libubdma_nvme drives that controller in, and the controller really DMAs DPDK's memory: the first
 * half of the buffer is written to the namespace and read back into the second half, the driver
 * loading both through its tag (the cookie makes them loads in place, no bounce), and the halves
 * must be equal.  The emulated IOMMU turns any IOVA ubdma got wrong into a DMAR fault.
 *
 * usage: dpdk_malloc [--nvme BDF] [MiB] [-- EAL-ARGS]
 *   (default 8 MiB; EAL: --in-memory --iova-mode=pa --no-pci, so DPDK leaves the NVMe alone)
 * exit: 0 pass, 1 fail, 77 skipped (no hugepages for DPDK, or no usable backend; with --nvme,
 * set-up failures are failures); needs root for physical addresses.
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

#include <ubdma/nvme.h>
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
		fprintf(stderr, "rte_eal_init failed: %s (free hugepages? root?)\n", rte_strerror(rte_errno));
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

/* ------------------------------------------------------ a device that ubdma drives: NVMe */

struct io_done {
	int done, error;
	uint16_t status;
};

static void on_complete(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct io_done *d = arg;

	d->done = 1;
	d->error = cpl->error;
	d->status = cpl->status;
}

/* One read or write of [off, off + n) of the namespace from / into p, submitted and polled for. */
static int nvme_io(ubdma_nvme_qpair_t *qp, const struct ubdma_nvme_ns_info *ns, int write, char *p,
		   size_t off, size_t n)
{
	struct io_done d = { 0 };
	uint64_t slba = off / ns->lba_size;
	uint32_t nlb = (uint32_t)(n / ns->lba_size);
	int err = write ? ubdma_nvme_write(qp, ns->nsid, p, slba, nlb, on_complete, &d)
			: ubdma_nvme_read(qp, ns->nsid, p, slba, nlb, on_complete, &d);

	while (!err && !d.done)
		err = ubdma_nvme_poll(qp, 0, NULL);
	if (!err)
		err = d.error;
	if (err)
		fprintf(stderr, "NVMe %s of LBA %" PRIu64 " +%u: %s (status %#x) %s\n", write ? "write" : "read",
			slba, nlb, strerror(err), d.status, ubdma_nvme_last_error());
	return err;
}

/* The first half of buf to the namespace and back into the second half, by the controller's DMA. */
static int nvme_roundtrip(ubdma_ctx_t *ctx, const char *bdf, char *buf, size_t len)
{
	struct ubdma_nvme_opts opts = { .size = sizeof(opts), .ctx = ctx };
	struct ubdma_nvme_ns_info ns;
	ubdma_nvme_qpair_t *qp = NULL;
	ubdma_nvme_t *ctrl;
	uint32_t nsid;
	int err, bad = 1;

	if ((err = ubdma_nvme_open(bdf, &opts, &ctrl))) {
		fprintf(stderr, "ubdma_nvme_open(%s): %s (%s)\n", bdf, strerror(err), ubdma_nvme_last_error());
		return 1;
	}
	if ((err = ubdma_nvme_ns_next(ctrl, 0, &nsid)) || (err = ubdma_nvme_ns(ctrl, nsid, &ns)) ||
	    (err = ubdma_nvme_qpair_create(ctrl, 0, &qp))) {
		fprintf(stderr, "no namespace or queue pair on %s: %s\n", bdf, ubdma_nvme_last_error());
		goto out;
	}
	size_t half = len / 2 < ns.size ? len / 2 : (size_t)ns.size;
	size_t chunk = ubdma_nvme_info(ctrl)->max_transfer;
	half -= half % ns.lba_size;
	for (size_t i = 0; i < half; i++)
		buf[i] = (char)(i * 31 + (i >> 12));
	memset(buf + half, 0, half);
	for (size_t off = 0; off < half; off += chunk)
		if (nvme_io(qp, &ns, 1, buf + off, off, half - off < chunk ? half - off : chunk))
			goto out;
	for (size_t off = 0; off < half; off += chunk)
		if (nvme_io(qp, &ns, 0, buf + half + off, off, half - off < chunk ? half - off : chunk))
			goto out;
	bad = memcmp(buf, buf + half, half) != 0;
	printf("NVMe %s namespace %u: %zu KiB of rte_malloc memory written and read back by the "
	       "controller's DMA in %zu-KiB commands: %s\n", bdf, nsid, half >> 10, chunk >> 10,
	       bad ? "MISMATCH" : "identical");
out:
	if (qp)
		ubdma_nvme_qpair_destroy(qp);
	ubdma_nvme_close(ctrl);
	return bad;
}

int main(int argc, char **argv)
{
	const char *nvme = NULL;
	size_t len = 8 * MB;
	ubdma_ctx_t *ctx = NULL;
	ubdma_umem_t *cookie = NULL;
	struct load_result lr;
	int rc = 1, err;

	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--nvme") && i + 1 < argc)
			nvme = argv[++i];
		else
			len = strtoul(argv[i], NULL, 0) * MB;
	}
	/* with a device the caller set the machine up for this: what would skip is a failure */
	int skip = nvme ? 1 : SKIP;
	if ((rc = eal_start(argc, argv)))
		return rc == SKIP ? skip : rc;
	rc = 1;
	int dpdk_pa = rte_eal_iova_mode() == RTE_IOVA_PA;
	char *buf = rte_malloc("ubdma", len, 2 * MB);
	if (!buf) {
		fprintf(stderr, "rte_malloc(%zu) failed: not enough free hugepages for DPDK\n", len);
		rc = skip;
		goto out_eal;
	}
	memset(buf, 0x5a, len);
	/* the NVMe driver needs a vfio context: the controller's IOMMU domain */
	if ((err = ubdma_ctx_open(nvme ? UBDMA_BACKEND_VFIO : UBDMA_BACKEND_AUTO, &ctx))) {
		fprintf(stderr, "ubdma_ctx_open: %s (%s)\n", strerror(err), ubdma_last_error());
		rc = skip;
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
	if (!rc && nvme)
		rc = nvme_roundtrip(ctx, nvme, buf, len);
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
