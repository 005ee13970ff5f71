/*
 * test_iso_dma - IOMMU isolation: the device reaches exactly what is registered for it (issue 10).
 *
 * Runs in the test-bed guest with the NVMe on vfio-pci; the device's DMA is an NVMe Identify
 * Controller (NVM Express 1.4, 5.15), which writes 4 KiB at PRP1.  Cases, each a real DMA through
 * the emulated VT-d:
 *   inside      Identify into the last page of a 4-page registration lands there;
 *   page_past   Identify at the IOVA one page past that registration faults (DMAR, announced) and
 *               the unregistered page after the buffer in VA keeps its bytes;
 *   unregister  after ubdma_umem_unlock() the same IOVA faults and the buffer keeps its bytes;
 *   other_ctx   a second context (its own VFIO container) holds the e1000e and a registered
 *               buffer; the NVMe, in the first context, is aimed at that buffer's IOVA (chosen
 *               above everything the first context maps): a DMAR fault, and the buffer keeps its
 *               bytes.  (One direction: NVMe -> the e1000e's container; the e1000e is not made to
 *               DMA.)  Without the e1000e on vfio-pci the second context holds only recorded
 *               mappings, and the case still checks the NVMe cannot reach them;
 *   strict      a 256-byte buffer in the middle of a registered page, loaded through a
 *               UBDMA_STRICT tag, is handed to the device as a bounce slot, never its own page;
 *               the slot holds none of the neighbour bytes; Identify into the segment fills the
 *               slot; POSTREAD copies exactly 256 bytes back; the neighbours never change.
 * The controller reports success even for a faulting command (QEMU): the proof is the data.
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "busdma/busdma_int.h" /* the bounce slot's bytes, for the strict case */
#include "backend.h"
#include "check.h"
#include "nvme_admin.h"

#define EXIT_SKIP 77
#define PG NA_PG
#define POISON 0xa5
#define SECRET 0x5e

static struct nvme_admin c;

static int all(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return 0;
	return 1;
}

/*
 * Wait until the kernel has logged the DMAR fault at iova's page.  The emulated VT-d records one
 * primary fault at a time and drops a new one while the last is still pending, so a test that
 * provokes faults back to back must let the kernel's fault handler take each before the next.
 */
static int await_fault(uint64_t iova)
{
	char key[64], *buf = malloc(1 << 20);

	snprintf(key, sizeof(key), "fault addr %#" PRIx64, iova & ~(uint64_t)(PG - 1));
	for (int i = 0; buf && i < 300; i++) {
		int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, (1 << 20) - 1);
		if (n > 0) {
			buf[n] = '\0';
			if (strstr(buf, key)) {
				free(buf);
				return 1;
			}
		}
		usleep(10000);
	}
	free(buf);
	return 0;
}

static void cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	ubdma_seg_t *out = arg;
	if (!error && nseg == 1)
		*out = segs[0];
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME"), *nic = getenv("UBDMA_VM_NIC");
	ubdma_ctx_t *ctx = NULL, *ctx2 = NULL;
	ubdma_pci_t *dev = NULL, *nicdev = NULL;
	const char *why = "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!guest_isolates()) { /* isolation is the point: the noiommu mode does not run it */
		printf("# SKIP: no IOMMU in this mode (UBDMA_BACKEND=%s)\n", getenv("UBDMA_BACKEND"));
		return 77;
	}
	if (!bdf || !getenv("UBDMA_VM_NVME_DRIVER") || strcmp(getenv("UBDMA_VM_NVME_DRIVER"), "vfio-pci")) {
		printf("# SKIP: no NVMe controller on vfio-pci\n");
		return EXIT_SKIP;
	}
	if (ubdma_ctx_open(guest_backend(), &ctx) || ubdma_pci_open(ctx, bdf, &dev) ||
	    nvme_admin_init(&c, ctx, dev, &why)) {
		check(0, "NVMe up: %s%s%s", why, *why ? ": " : "", ubdma_last_error());
		return 1;
	}

	/* inside / page_past: an 8-page VA area, pages 0-3 registered, 4-7 not */
	uint8_t *b = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ubdma_umem_t *u = NULL;
	memset(b, POISON, 8 * PG);
	int rc = ubdma_umem_lock(ctx, b, 4 * PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
	check(rc == 0, "4 pages registered");
	uint64_t last = ubdma_umem_iova(u, b + 3 * PG), past = last + PG;
	check(ubdma_vtoiova(ctx, b + 4 * PG) == UBDMA_BAD_IOVA, "page_past: the page after it is not translated");
	check(nvme_admin_identify(&c, last) == 0 && nvme_admin_is_identify(b + 3 * PG),
	      "inside: Identify at %#" PRIx64 " landed in the last page", last);
	memset(b, POISON, 8 * PG);
	check(nvme_admin_identify_fault(&c, past) == 0 && all(b, 8 * PG, POISON),
	      "page_past: Identify at %#" PRIx64 " (one page past the registration) reached none of our memory", past);
	check(await_fault(past), "page_past: the kernel logged the DMAR fault at %#" PRIx64, past);

	/* unregister */
	ubdma_umem_unlock(u);
	check(nvme_admin_identify_fault(&c, last) == 0 && all(b, 8 * PG, POISON),
	      "unregister: IOVA %#" PRIx64 " faults after unlock", last);
	check(await_fault(last), "unregister: the kernel logged the DMAR fault at %#" PRIx64, last);

	/* other_ctx: the e1000e's container, a buffer in it above everything the NVMe's maps */
	rc = ubdma_ctx_open(guest_backend(), &ctx2);
	if (!rc && nic && *nic && getenv("UBDMA_VM_NIC_DRIVER") && !strcmp(getenv("UBDMA_VM_NIC_DRIVER"), "vfio-pci"))
		rc = ubdma_pci_open(ctx2, nic, &nicdev);
	printf("# second context: %s\n", nicdev ? "the e1000e attached" : "no device (recorded mappings)");
	uint8_t *pad = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *o = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ubdma_umem_t *up = NULL, *uo = NULL;
	if (!rc)
		rc = ubdma_umem_lock(ctx2, pad, 64 * PG, UBDMA_UMEM_READ, &up);
	if (!rc)
		rc = ubdma_umem_lock(ctx2, o, 4 * PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &uo);
	check(rc == 0, "other_ctx: second context with its buffer: %s", rc ? ubdma_last_error() : "ok");
	if (!rc) {
		/*
		 * The NVMe's context has one live mapping now, its queues (b was unlocked): pick a
		 * page of o whose IOVA in the other container is not inside that one.  Both
		 * containers place IOVA = VA mod 2 MiB from 4 GiB up, so such a page always exists
		 * among o's four unless the queues' two pages cover it.
		 */
		uint64_t q0 = ubdma_umem_iova(c.qcookie, c.qmem), oi = 0;
		for (int i = 0; i < 4 && !oi; i++) {
			uint64_t v = ubdma_umem_iova(uo, o + i * PG);
			if (v + PG <= q0 || v >= q0 + 2 * PG)
				oi = v;
		}
		check(oi != 0, "other_ctx: the buffer's IOVA %#" PRIx64 " is not mapped in the NVMe context "
		      "(its queues are at %#" PRIx64 ")", oi, q0);
		memset(o, POISON, 4 * PG);
		check(nvme_admin_identify_fault(&c, oi) == 0 && all(o, 4 * PG, POISON),
		      "other_ctx: the NVMe aimed at the other container's IOVA %#" PRIx64 " reached nothing", oi);
		check(await_fault(oi), "other_ctx: the kernel logged the DMAR fault at %#" PRIx64, oi);
	}
	ubdma_umem_unlock(uo);
	ubdma_umem_unlock(up);
	ubdma_pci_close(nicdev);
	ubdma_ctx_close(ctx2);

	/* strict: 256 bytes amid registered neighbours, through a STRICT tag */
	ubdma_tag_t *t = NULL;
	ubdma_map_t *m = NULL;
	ubdma_seg_t seg = { 0, 0 };
	memset(b, SECRET, 4 * PG);
	rc = ubdma_umem_lock(ctx, b, 4 * PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
	if (!rc)
		rc = ubdma_tag_create(ubdma_ctx_tag(ctx), PG, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, PG, 1, PG, UBDMA_STRICT, &t);
	if (!rc)
		rc = ubdma_map_create(t, 0, &m);
	uint8_t *x = b + PG + 1024;
	memset(x, 0x42, 256);
	if (!rc)
		rc = ubdma_map_load(t, m, x, 256, cb, &seg, UBDMA_NOWAIT);
	check(rc == 0 && seg.ds_len == 256, "strict: loaded in one segment of 256 bytes at %#" PRIx64, seg.ds_addr);
	uint64_t page_iova = ubdma_vtoiova(ctx, b + PG);
	check(seg.ds_addr - page_iova >= PG, "strict: the segment is not in the buffer's own page (IOVA %#" PRIx64 ")",
	      page_iova);
	if (!rc && m->bpages) {
		ubdma_map_sync(t, m, UBDMA_SYNC_PREWRITE);
		const uint8_t *slot = m->bpages->vaddr;
		int leak = 0;
		for (size_t i = 0; i < PG; i++)
			leak += slot[i] == SECRET;
		check(all(slot + m->bpages->off, 256, 0x42) && leak == 0,
		      "strict: the bounce slot holds the 256 bytes and no neighbour byte (%d found)", leak);
		check(nvme_admin_identify(&c, seg.ds_addr) == 0, "strict: Identify into the segment");
		ubdma_map_sync(t, m, UBDMA_SYNC_POSTREAD);
		check(all(b, PG + 1024, SECRET) && all(x + 256, 3 * PG - 1024 - 256, SECRET),
		      "strict: the device's 4 KiB write changed no neighbour byte");
		check(nvme_admin_is_identify(x) || !all(x, 256, 0x42),
		      "strict: the device's data came back into the 256 bytes");
	} else {
		check(0, "strict: the load did not bounce");
	}
	ubdma_map_unload(t, m);
	ubdma_map_destroy(t, m);
	ubdma_tag_destroy(t);
	ubdma_umem_unlock(u);

	nvme_admin_fini(&c);
	ubdma_pci_close(dev);
	ubdma_ctx_close(ctx);
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
