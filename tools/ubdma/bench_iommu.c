/*
 * bench_iommu.c - `ubdma bench iommu`: what mapping and translating cost on each backend this
 * machine has - vfio (through the IOMMU, with a device attached so that mappings reach it),
 * phys and va - and the rows `bench nvme` adds for its own context.  Per backend:
 *   iommu-map-4k / iommu-unmap-4k   ubdma_umem_lock() / ubdma_umem_unlock() of 4 KiB
 *   iommu-map-2m / iommu-unmap-2m   the same for 2 MiB (a hugepage when there is one)
 *   translate                       ubdma_vtoiova() of a random registered address (per call,
 *                                   timed in batches of 64: one call is near the clock's cost)
 *   busdma-load-4k                  ubdma_map_load_sg() + ubdma_map_unload() of registered memory
 *   bounce-4k                       the same for memory the context does not know (bounced),
 *                                   with the PREWRITE copy
 * A backend that cannot run here is a row that says why, never a figure.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"
#include "cli.h"

#define HUGE_2M (2u << 20)

/* 2 MiB, on a hugepage when the machine has one free (phys translates only those), else anonymous. */
static void *region_2m(int *huge)
{
	void *p = mmap(NULL, HUGE_2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);

	*huge = p != MAP_FAILED;
	if (p == MAP_FAILED && posix_memalign(&p, HUGE_2M, HUGE_2M))
		return NULL;
	memset(p, 0, HUGE_2M);
	return p;
}

static void free_2m(void *p, int huge)
{
	if (huge)
		munmap(p, HUGE_2M);
	else
		free(p);
}

struct measure {
	struct lhist a, b; /* map and unmap, or load and copy */
	uint64_t ops, cpu;
	double secs;
	int err;
	char msg[200];
};

static void map_unmap(ubdma_ctx_t *ctx, char *mem, size_t len, double secs, struct measure *m)
{
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), c0 = thread_cpu_ns();

	while (!bench_stop && now_ns() < end) {
		ubdma_umem_t *u;
		progress_tick();
		uint64_t a = now_ns();
		int err = ubdma_umem_lock(ctx, mem, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
		uint64_t b = now_ns();
		if (err) {
			m->err = err;
			sfmt(m->msg, sizeof(m->msg), "ubdma_umem_lock: %s (%s)", strerror(err), ubdma_last_error());
			break;
		}
		ubdma_umem_unlock(u);
		uint64_t c = now_ns();
		lh_add(&m->a, b - a);
		lh_add(&m->b, c - b);
		m->ops++;
	}
	m->cpu = thread_cpu_ns() - c0;
	m->secs = (double)(now_ns() - t0) / 1e9;
}

static void translate(ubdma_ctx_t *ctx, char *mem, double secs, struct measure *m, struct lhist *out)
{
	ubdma_umem_t *u;
	uint64_t rng = 88172645463325252ull, sink = 0;
	int err = ubdma_umem_lock(ctx, mem, HUGE_2M, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);

	if (err) {
		m->err = err;
		sfmt(m->msg, sizeof(m->msg), "ubdma_umem_lock: %s (%s)", strerror(err), ubdma_last_error());
		return;
	}
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), c0 = thread_cpu_ns();
	while (!bench_stop && now_ns() < end) {
		const char *addr[64];
		progress_tick();
		for (int i = 0; i < 64; i++) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			addr[i] = mem + rng % HUGE_2M;
		}
		uint64_t a = now_ns();
		for (int i = 0; i < 64; i++)
			sink += ubdma_vtoiova(ctx, addr[i]);
		uint64_t per = (now_ns() - a + 32) / 64;
		lh_add(&m->a, per);
		if (out)
			lh_add(out, per);
		m->ops += 64;
	}
	m->cpu = thread_cpu_ns() - c0;
	m->secs = (double)(now_ns() - t0) / 1e9;
	if (sink == UBDMA_BAD_IOVA) { /* a registered address always translates */
		m->err = EFAULT;
		sfmt(m->msg, sizeof(m->msg), "ubdma_vtoiova gave no IOVA for registered memory");
	}
	ubdma_umem_unlock(u);
}

/* Loads of 4 KiB: registered (@registered, in place) or not (bounced, with the PREWRITE copy). */
static void loads(ubdma_ctx_t *ctx, char *mem, int registered, double secs, struct measure *m, struct lhist *load_out,
		  struct lhist *copy_out)
{
	ubdma_tag_t *tag = NULL;
	ubdma_map_t *map = NULL;
	ubdma_umem_t *u = NULL;
	ubdma_seg_t segs[2];
	int err, nseg;

	if ((err = ubdma_tag_create(ubdma_ctx_tag(ctx), 4, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 4096, 2, 4096,
				    UBDMA_KEEP_PG_OFFSET, &tag)) ||
	    (err = ubdma_map_create(tag, 0, &map)) ||
	    (registered && (err = ubdma_umem_lock(ctx, mem, 4096, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u)))) {
		m->err = err;
		sfmt(m->msg, sizeof(m->msg), "set-up: %s (%s)", strerror(err), ubdma_last_error());
		goto out;
	}
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), c0 = thread_cpu_ns();
	while (!bench_stop && now_ns() < end) {
		progress_tick();
		uint64_t a = now_ns();
		err = ubdma_map_load_sg(tag, map, mem, 4096, segs, &nseg, UBDMA_NOWAIT);
		uint64_t b = now_ns();
		if (err) {
			m->err = err;
			sfmt(m->msg, sizeof(m->msg), "ubdma_map_load_sg: %s (%s)", strerror(err), ubdma_last_error());
			break;
		}
		ubdma_map_sync(tag, map, UBDMA_SYNC_PREWRITE);
		uint64_t c = now_ns();
		ubdma_map_sync(tag, map, UBDMA_SYNC_POSTWRITE);
		ubdma_map_unload(tag, map);
		uint64_t e = now_ns();
		lh_add(&m->a, e - a); /* the whole round: load, copy, unload */
		if (load_out)
			lh_add(load_out, b - a);
		if (copy_out)
			lh_add(copy_out, c - b);
		lh_add(&m->b, c - b);
		m->ops++;
	}
	m->cpu = thread_cpu_ns() - c0;
	m->secs = (double)(now_ns() - t0) / 1e9;
out:
	ubdma_umem_unlock(u);
	if (map)
		ubdma_map_destroy(tag, map);
	if (tag)
		ubdma_tag_destroy(tag);
}

static char row_impl[32];

static void row_of(struct bench_report *r, const char *name, const char *target, const struct measure *m,
		   const struct lhist *h, const char *partname, const struct lhist *part)
{
	struct bench_row *row = report_row(r, name, row_impl);

	if (!row)
		return;
	sfmt(row->target, sizeof(row->target), "%s", target);
	if (m->err && !m->ops) {
		sfmt(row->error, sizeof(row->error), "%s", m->msg);
		return;
	}
	row_rates(row, m->secs, (double)m->ops, 0, (double)m->cpu / 1e9);
	row_from_hist(row, h);
	if (partname)
		row_part(row, "ubdma", partname, part);
	if (m->err)
		sfmt(row->error, sizeof(row->error), "%s", m->msg);
}

int iommu_rows(struct bench_report *r, ubdma_ctx_t *ctx, const char *target, double secs, int first, int total,
	       struct iommu_parts *parts)
{
	struct measure *m = calloc(1, sizeof(*m));
	int huge, step = first;
	char *mem = region_2m(&huge), *plain = aligned_alloc(4096, 8192);

	/* the implementation is the backend, so that one plot holds vfio, phys and va */
	sfmt(row_impl, sizeof(row_impl), "ubdma %s", ubdma_backend_name(ubdma_ctx_backend(ctx)));
	if (parts)
		memset(parts, 0, sizeof(*parts));
	if (!m || !mem || !plain) {
		free(m);
		free(plain);
		if (mem)
			free_2m(mem, huge);
		return ENOMEM;
	}
	progress(step++, total, "iommu-map-4k", target, secs);
	map_unmap(ctx, mem, 4096, secs, m);
	row_of(r, "iommu-map-4k", target, m, &m->a, NULL, NULL);
	row_of(r, "iommu-unmap-4k", target, m, &m->b, NULL, NULL);
	step++;
	memset(m, 0, sizeof(*m));
	progress(step++, total, huge ? "iommu-map-2m (hugepage)" : "iommu-map-2m", target, secs);
	map_unmap(ctx, mem, HUGE_2M, secs, m);
	row_of(r, "iommu-map-2m", target, m, &m->a, NULL, NULL);
	row_of(r, "iommu-unmap-2m", target, m, &m->b, NULL, NULL);
	step++;
	memset(m, 0, sizeof(*m));
	progress(step++, total, "translate", target, secs);
	translate(ctx, mem, secs, m, parts ? &parts->xlate : NULL);
	row_of(r, "translate", target, m, &m->a, NULL, NULL);
	memset(m, 0, sizeof(*m));
	progress(step++, total, "busdma-load-4k", target, secs);
	loads(ctx, mem, 1, secs, m, parts ? &parts->load : NULL, NULL);
	row_of(r, "busdma-load-4k", target, m, &m->a, NULL, NULL);
	memset(m, 0, sizeof(*m));
	progress(step++, total, "bounce-4k", target, secs);
	loads(ctx, plain + 64, 0, secs, m, NULL, parts ? &parts->copy : NULL);
	row_of(r, "bounce-4k", target, m, &m->a, "bounce copy: PREWRITE sync of 4 KiB", &m->b);
	progress_done();
	free_2m(mem, huge);
	free(plain);
	free(m);
	return 0;
}

static const char usage[] = "bench iommu: usage: ubdma bench iommu [--dev BDF] [--time SECS] [--out DIR] [--csv]";

int bench_iommu(int argc, char **argv)
{
	struct bench_opts o;
	char *rest[64];
	int n = bench_common_opts(argc, argv, &o, rest, "iommu");
	const char *dev = NULL;
	int rc = 0;

	for (int i = 1; i < n; i++) {
		if (!strcmp(rest[i], "--dev") && i + 1 < n)
			dev = rest[++i];
		else
			usage_error("%s", usage);
	}
	struct bench_dev d = { .bound = 0 };
	if (dev) {
		/* any device whose group VFIO can attach; the in-use checks of its class first */
		dev_find(dev, 0, 0, "a PCI function", &d);
		if ((d.class_code & 0xffffff) == CLASS_NVME && !strcmp(d.orig_drv, "nvme") && dev_check_nvme(&d))
			return EX_FAIL;
		if ((d.class_code >> 8) == CLASS_ETHERNET && d.netdev[0] && dev_check_nic(&d, o.force))
			return EX_FAIL;
		if (!strcmp(d.orig_drv, "vfio-pci") && dev_check_vfio_free(&d))
			return EX_FAIL;
		if (strcmp(d.orig_drv, "vfio-pci") && strcmp(d.orig_drv, "nvme") && strcmp(d.orig_drv, "e1000e") &&
		    d.orig_drv[0])
			return fail("bench iommu: %s is bound to %s, a driver ubdma bench does not know how to check: "
				    "unbind it first (nothing was touched)",
				    d.bdf, d.orig_drv);
	}
	struct bench_report rep = { .kind = "iommu", .outdir = o.out, .csv = o.csv };
	char devline[160];
	sfmt(devline, sizeof(devline), "backends vfio, phys and va%s%s", dev ? "; VFIO through " : "", dev ? d.bdf : "");
	rep.device = devline;
	static const enum ubdma_backend backends[] = { UBDMA_BACKEND_VFIO, UBDMA_BACKEND_PHYS, UBDMA_BACKEND_VA };
	int total = 3 * IOMMU_NROWS;
	for (int b = 0; b < 3 && !bench_stop; b++) {
		const char *bn = ubdma_backend_name(backends[b]);
		ubdma_ctx_t *ctx = NULL;
		ubdma_pci_t *pci = NULL;
		char why[220] = "";
		int err = 0;

		if (backends[b] == UBDMA_BACKEND_VFIO && !dev)
			sfmt(why, sizeof(why), "no device given: VFIO maps into an IOMMU only once a device's group is "
					       "attached (--dev BDF)");
		else if ((err = ubdma_ctx_open(backends[b], &ctx)))
			sfmt(why, sizeof(why), "the %s backend does not open here: %s (%s)", bn, strerror(err), ubdma_last_error());
		else if (backends[b] == UBDMA_BACKEND_VFIO) {
			if (dev_take(&d))
				sfmt(why, sizeof(why), "%s could not be bound to vfio-pci", d.bdf);
			else if ((err = ubdma_pci_open(ctx, d.bdf, &pci)))
				sfmt(why, sizeof(why), "ubdma_pci_open(%s): %s (%s)", d.bdf, strerror(err), ubdma_last_error());
		}
		if (why[0]) {
			static const char *names[IOMMU_NROWS] = { "iommu-map-4k", "iommu-unmap-4k", "iommu-map-2m", "iommu-unmap-2m",
								  "translate", "busdma-load-4k", "bounce-4k" };
			for (int k = 0; k < IOMMU_NROWS; k++) {
				char impl[32];
				sfmt(impl, sizeof(impl), "ubdma %s", bn);
				struct bench_row *row = report_row(&rep, names[k], impl);
				if (row) {
					sfmt(row->target, sizeof(row->target), "%s", bn);
					sfmt(row->skipped, sizeof(row->skipped), "%s", why);
				}
			}
		} else {
			char tgt[48];
			sfmt(tgt, sizeof(tgt), "%s%s%s", bn, pci ? " " : "", pci ? d.bdf : "");
			iommu_rows(&rep, ctx, tgt, o.secs, b * IOMMU_NROWS + 1, total, NULL);
		}
		ubdma_pci_close(pci);
		ubdma_ctx_close(ctx);
		if (backends[b] == UBDMA_BACKEND_VFIO && dev && dev_give_back(&d))
			rc = EX_FAIL;
	}
	for (int i = 0; i < rep.nrows; i++)
		if (rep.rows[i].error[0])
			rc = EX_FAIL;
	if (report_write(&rep))
		rc = EX_FAIL;
	report_free(&rep);
	return bench_stop ? 128 + bench_stop : rc;
}
