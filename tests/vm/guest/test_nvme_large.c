/*
 * test_nvme_large - transfers up to MDTS: 8 MiB in one command, and lists longer than a page
 * (chained PRP list pages, chained SGL segments), checked byte for byte here and on the host
 * (issue 18).
 *
 * drivers/nvme/test/vm-nvme.sh boots the guest with the controller's MDTS at 11 (8 MiB: QEMU's
 * nvme.mdts) and namespace 2 of 40 MiB, whose [24 MiB, 32 MiB) the host filled with pat(o, 0xc3).
 * QEMU 7.2's controller takes at most 1024 memory ranges a command (hw/nvme: IOV_MAX, "number of
 * mappings exceed 1024", Internal Error): with PRPs, whose entries are 4 KiB pages, that is
 * 4 MiB; 8 MiB goes through SGLs, whose Data Block descriptors cover IOVA-contiguous memory.
 *   limits  opened with max_transfer 8 MiB: ubdma_nvme_info() reports mdts_bytes 8 MiB,
 *           max_transfer 8 MiB, 2049 segments and the list pages a slot has (5 for PRPs, 9 when
 *           SGLs may be used); one block more is E2BIG.
 *   prp     (SGLs off) 4 MiB written from registered memory at [8 MiB, 12 MiB) of namespace 2 with
 *           pat(o, 0x61): PRP1 and a list of 1023 entries over 3 chained pages; read back in one
 *           command and compared; the host's [24 MiB, 28 MiB) in one command, compared.
 *   sgl     (SGLs on) one 8 MiB write from hugepage-backed registered memory at [16 MiB, 24 MiB)
 *           with pat(o, 0x62), read back in one command, compared; the host's 8 MiB at
 *           [24 MiB, 32 MiB) in one read; then 2 MiB from malloc'd memory at +1 (not dword
 *           aligned: bus_dma bounces it page by page, so the load has up to 513 segments: a
 *           chain of 3 SGL segment pages) at [12 MiB, 14 MiB) with pat(o, 0x63), read back into
 *           memory at +3 and compared.
 * Exit: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ubdma/ubdma.h>
#include <ubdma/nvme.h>

#include "check.h"
#include "nvme_pat.h"

#define BIG (8u * MiB)
#define NSID 2

static ubdma_ctx_t *ctx;

/* One command of @len bytes at byte @off of namespace 2, waited for; 0 or the errno. */
static int io1(ubdma_nvme_qpair_t *qp, uint32_t lbs, int write, void *buf, uint64_t off, size_t len)
{
	return io1_ns(qp, NSID, lbs, write, buf, off, len, 30000);
}

/* Registered memory, 2 MiB hugepages when there are (fewer, larger IOVA-contiguous pieces). */
static void *reg_alloc(size_t len, ubdma_umem_t **um)
{
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);

	if (m == MAP_FAILED)
		m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	if (ubdma_umem_lock(ctx, m, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, um)) {
		munmap(m, len);
		return NULL;
	}
	return m;
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || strcmp(getenv("UBDMA_VM_NVME_DRIVER") ? getenv("UBDMA_VM_NVME_DRIVER") : "", "vfio-pci")) {
		printf("# skip: no NVMe on vfio-pci\n");
		return 77;
	}
	if ((rc = ubdma_ctx_open(UBDMA_BACKEND_VFIO, &ctx))) {
		printf("not ok - ubdma_ctx_open: %s\n", ubdma_last_error());
		return 1;
	}
	for (int sgl = 0; sgl < 2; sgl++) {
		ubdma_nvme_t *c;
		struct ubdma_nvme_opts o = { .size = sizeof(o), .ctx = ctx, .queue_entries = 8, .max_transfer = BIG,
					     .sgl = sgl ? UBDMA_NVME_SGL_ON : UBDMA_NVME_SGL_OFF };
		if ((rc = ubdma_nvme_open(bdf, &o, &c))) {
			if (sgl && rc == ENOTSUP) {
				check(1, "# SKIP sgl: the controller has no SGLs (%s)", ubdma_nvme_last_error());
				break;
			}
			check(0, "ubdma_nvme_open(%s, max_transfer 8 MiB, sgl %d): %s", bdf, sgl, ubdma_nvme_last_error());
			return 1;
		}
		const struct ubdma_nvme_info *in = ubdma_nvme_info(c);
		unsigned want_pages = sgl ? 9 : 5;
		check(in->mdts_bytes == BIG && in->max_transfer == BIG && in->max_segments == BIG / 4096 + 1 &&
			      in->list_pages == want_pages,
		      "%s: limits: MDTS %u (%zu bytes), max_transfer %zu, %u segments, %u list pages a slot (want %u)",
		      sgl ? "sgl" : "prp", in->mdts, in->mdts_bytes, in->max_transfer, in->max_segments, in->list_pages,
		      want_pages);
		struct ubdma_nvme_ns_info ns;
		ubdma_nvme_qpair_t *qp;
		if ((rc = ubdma_nvme_ns(c, NSID, &ns)) || ns.size < 40ull * MiB ||
		    (rc = ubdma_nvme_qpair_create(c, 0, &qp))) {
			check(0, "namespace %u of 40 MiB and a queue pair: %s", NSID, ubdma_nvme_last_error());
			return 1;
		}
		uint32_t lbs = ns.lba_size;
		const char *tag = sgl ? "sgl" : "prp";
		ubdma_umem_t *uw, *ur;
		uint8_t *w = reg_alloc(BIG, &uw), *r = reg_alloc(BIG, &ur);
		if (!w || !r) {
			check(0, "%s: 8 MiB registered buffers: %s", tag, ubdma_last_error());
			return 1;
		}
		/* one block more than the maximum: refused before the controller */
		struct done d = { 0 };
		rc = ubdma_nvme_read(qp, NSID, r, 0, BIG / lbs + 1, cb, &d);
		check(rc == E2BIG && d.n == 0, "%s: %u blocks (8 MiB + one) gives E2BIG (%d)", tag, BIG / lbs + 1, rc);
		/* PRPs: 4 MiB (QEMU's 1024 ranges); SGLs: 8 MiB */
		size_t len = sgl ? BIG : BIG / 2;
		uint64_t off = sgl ? 16ull * MiB : 8ull * MiB;
		uint8_t seed = sgl ? 0x62 : 0x61;
		fill(w, off, len, seed);
		rc = io1(qp, lbs, 1, w, off, len);
		check(rc == 0, "%s: one %zu MiB write at %" PRIu64 " MiB of namespace %u: %s", tag, len / MiB, off / MiB,
		      NSID, rc ? strerror(rc) : "ok");
		memset(r, 0, BIG);
		rc = io1(qp, lbs, 0, r, off, len);
		long bad = rc ? -2 : first_bad(r, off, len, seed);
		check(rc == 0 && bad == -1, "%s: one %zu MiB read back, byte for byte (%s, first bad %ld)", tag, len / MiB,
		      rc ? strerror(rc) : "ok", bad);
		memset(r, 0, BIG);
		rc = io1(qp, lbs, 0, r, 24ull * MiB, len);
		bad = rc ? -2 : first_bad(r, 24ull * MiB, len, 0xc3);
		check(rc == 0 && bad == -1, "%s: the host's %zu MiB at 24 MiB in one read (%s, first bad %ld)", tag,
		      len / MiB, rc ? strerror(rc) : "ok", bad);
		if (sgl) {
			/* bounced page by page: more descriptors than one segment page holds */
			size_t l2 = 2u * MiB;
			char *mw = malloc(l2 + 8), *mr = malloc(l2 + 8);
			uint8_t *uwp = mw ? (uint8_t *)mw + 1 : NULL, *urp = mr ? (uint8_t *)mr + 3 : NULL;
			if (!uwp || !urp) {
				check(0, "sgl: malloc");
				return 1;
			}
			fill(uwp, 12ull * MiB, l2, 0x63);
			rc = io1(qp, lbs, 1, uwp, 12ull * MiB, l2);
			check(rc == 0, "sgl: 2 MiB from malloc'd memory at +1 (bounced, chained SGL segments) written: %s",
			      rc ? strerror(rc) : "ok");
			memset(urp, 0, l2);
			rc = io1(qp, lbs, 0, urp, 12ull * MiB, l2);
			bad = rc ? -2 : first_bad(urp, 12ull * MiB, l2, 0x63);
			check(rc == 0 && bad == -1, "sgl: read back into memory at +3, byte for byte (%s, first bad %ld)",
			      rc ? strerror(rc) : "ok", bad);
			free(mw);
			free(mr);
		}
		check(ubdma_nvme_qpair_destroy(qp) == 0, "%s: queue pair destroyed", tag);
		ubdma_umem_unlock(uw);
		ubdma_umem_unlock(ur);
		munmap(w, BIG);
		munmap(r, BIG);
		rc = ubdma_nvme_close(c);
		check(rc == 0, "%s: ubdma_nvme_close", sgl ? "sgl" : "prp");
	}
	ubdma_ctx_close(ctx);
	printf("# test_nvme_large: %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
