/*
 * iommu_map.c - benchmark of making and removing one IOMMU mapping: 4 KiB, 2 MiB and 1 GiB, on
 * VFIO's type1 container beside iommufd beside DPDK's rte_vfio_container_dma_map (type1), with
 * the same device and the same memory, in the same guest (bench/iommu_map.sh runs it in the test
 * bed on its own kernel, which has both interfaces).
 *
 * Rows, each over one buffer: 4 KiB of anonymous memory, one 2 MiB and one 1 GiB hugetlb page
 * (rows whose page cannot be had are skipped with the reason):
 *   map_unmap_SIZE / ubdma-type1, ubdma-iommufd  the backend's map + unmap of the wired buffer
 *       (lib/iommu: IOVA allocation, VFIO_IOMMU_MAP_DMA / IOMMU_IOAS_MAP with a fixed IOVA, and
 *       the unmaps), the part DPDK's call also does;
 *   map_unmap_SIZE / dpdk-type1  rte_vfio_container_dma_map + rte_vfio_container_dma_unmap on a
 *       container of DPDK's own holding the same device's group, at the IOVA ubdma's allocator
 *       would give (the buffer's VA rounded into the 39-bit window);
 *   lock_unlock_SIZE / ubdma-type1, ubdma-iommufd  the public path, ubdma_umem_lock +
 *       ubdma_umem_unlock: wiring (on 4 KiB memory, only the watch: the backend pins, docs/wire.md
 *       section 13), the map, the translation map, and their undoing;
 *   lock_SIZE / ubdma-type1, ubdma-iommufd  ubdma_umem_lock's share of lock_unlock_SIZE;
 *   watch_4k / ubdma-type1, ubdma-iommufd  the watch alone (wire_watch + wire_release), the part of
 *       lock_unlock_4k that keeps the cookie from outliving its mapping.
 * Every iteration is timed alone with clock_gettime(CLOCK_MONOTONIC); median and p99 over the
 * iterations.  map_unmap_SIZE and lock_unlock_SIZE of one backend run interleaved, in blocks
 * (run_ubdma()), so that their ratio compares the same host.  The kernel pins the pages in every map, so the sizes differ by the pin's cost.
 *
 * usage: bench_iommu_map [--bdf BDF] [--iters N] [--json | --csv]; BDF defaults to $UBDMA_VM_NVME.
 * A device bound to vfio-pci is needed (type1 and iommufd attach it in turn; DPDK binds its
 * group).  DPDK is optional at build time: without it its rows are skipped.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "core/ctx.h" /* the context's backend: struct iommu and iommu_map() */
#include "bench_time.h"

#ifdef UBDMA_BENCH_DPDK
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_vfio.h>
#endif

#define MAXIT 4000
#define SZ_2M (UINT64_C(2) << 20)
#define SZ_1G (UINT64_C(1) << 30)

struct row {
	char name[32], impl[16], note[200];
	double median, p99;
	int skipped;
};

static struct row rows[32];
static int nrows;
static double samples[MAXIT], lock_samples[MAXIT];

static struct row *row_add(const char *name, const char *impl)
{
	struct row *r = &rows[nrows++];

	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->impl, sizeof(r->impl), "%s", impl);
	return r;
}

static void row_skip(const char *name, const char *impl, const char *fmt, const char *why)
{
	struct row *r = row_add(name, impl);

	r->skipped = 1;
	snprintf(r->note, sizeof(r->note), fmt, why);
}

static void finish(struct row *r, int n)
{
	qsort(samples, (size_t)n, sizeof(double), bench_cmp_double);
	r->median = samples[n / 2];
	r->p99 = samples[n * 99 / 100];
}

struct buf {
	const char *tag; /* "4k", "2m", "1g" */
	void *p;
	size_t len, pgsz;
	int iters;
	const char *why; /* why there is no buffer */
};

/* One buffer of each size, faulted in and mlocked (iommu_map() maps wired memory only). */
static void bufs_make(struct buf *b, int iters)
{
	static const struct {
		const char *tag;
		size_t len;
		int flags, div;
	} spec[3] = {
		{ "4k", 4096, 0, 1 },
		{ "2m", SZ_2M, MAP_HUGETLB | (21 << MAP_HUGE_SHIFT), 4 },
		{ "1g", SZ_1G, MAP_HUGETLB | (30 << MAP_HUGE_SHIFT), 100 },
	};

	for (int i = 0; i < 3; i++) {
		b[i] = (struct buf){ .tag = spec[i].tag, .len = spec[i].len, .pgsz = spec[i].len };
		b[i].iters = iters / spec[i].div > 5 ? iters / spec[i].div : 5;
		b[i].p = mmap(NULL, spec[i].len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | spec[i].flags, -1, 0);
		if (b[i].p == MAP_FAILED) {
			b[i].p = NULL;
			b[i].why = i == 2 ? "no 1 GiB hugepage (boot with hugepagesz=1G hugepages=1)"
					  : "no 2 MiB hugepage";
			continue;
		}
		memset(b[i].p, 1, spec[i].len);
		if (mlock(b[i].p, spec[i].len)) {
			munmap(b[i].p, spec[i].len);
			b[i].p = NULL;
			b[i].why = "mlock failed (RLIMIT_MEMLOCK)";
		}
	}
}

/* The watch of a 4 KiB buffer alone, as umem_lock makes it where the backend pins. */
static void run_watch(const struct buf *x, const char *impl)
{
	struct row *r = row_add("watch_4k", impl);
	int n = 0, err = 0;

	for (; n < x->iters; n++) {
		struct wire_ticket *t = NULL;
		uintptr_t s, e;
		double t0 = bench_now_ns();
		if ((err = wire_watch(x->p, x->len, WIRE_WATCH_NO_HUGETLB, &t, &s, &e)))
			break;
		wire_release(t);
		samples[n] = bench_now_ns() - t0;
	}
	if (err) {
		r->skipped = 1;
		snprintf(r->note, sizeof(r->note), "wire_watch: %s", strerror(err));
	} else {
		finish(r, n);
		snprintf(r->note, sizeof(r->note), "%d iterations", n);
	}
}

/*
 * The two rows of one buffer interleaved: blocks of BLOCK timed iterations of the backend's map +
 * unmap, then of the public lock + unlock, in turn, each block's first iteration run untimed.  On
 * a shared host the guest's speed moves between levels during a run (docs/wire.md section 14,
 * "The guest"); rows run one after the other then compare two different hosts, interleaved they
 * see the same one.  The untimed first iteration of a block pays for the other row's code run just
 * before it (what the ioctls pay for distinct code run between them, same section), which neither
 * row pays in a loop of its own.  Buffers with fewer than two blocks' iterations (1 GiB) run each
 * row whole, the lock + unlock second, as before.
 */
#define BLOCK 20
static double mu_samples[MAXIT], lu_samples[MAXIT];

static int time_map_unmap(ubdma_ctx_t *ctx, const struct buf *x, double *out)
{
	uint64_t iova;
	double t0 = bench_now_ns();
	int err = iommu_map(&ctx->iommu, (uintptr_t)x->p, 1, x->pgsz, IOMMU_PROT_READ | IOMMU_PROT_WRITE, NULL,
			    &iova);

	if (!err)
		err = iommu_unmap(&ctx->iommu, (uintptr_t)x->p, 1, x->pgsz, &iova);
	if (out)
		*out = bench_now_ns() - t0;
	return err;
}

static int time_lock_unlock(ubdma_ctx_t *ctx, const struct buf *x, double *out, double *lock_out)
{
	ubdma_umem_t *u = NULL;
	double t0 = bench_now_ns();
	int err = ubdma_umem_lock(ctx, x->p, x->len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);

	if (err)
		return err;
	double t1 = bench_now_ns();
	ubdma_umem_unlock(u);
	if (out) {
		*out = bench_now_ns() - t0;
		*lock_out = t1 - t0;
	}
	return 0;
}

/* A row from its samples, or skipped with why when err. */
static void row_done(struct row *r, const double *v, int n, int err, const char *note, const char *why)
{
	if (err) {
		r->skipped = 1;
		snprintf(r->note, sizeof(r->note), "%s", why);
		return;
	}
	memcpy(samples, v, (size_t)n * sizeof(samples[0]));
	finish(r, n);
	snprintf(r->note, sizeof(r->note), "%s", note);
}

/* ubdma on one backend: the backend's map + unmap beside the public lock + unlock. */
static void run_ubdma(enum ubdma_backend be, const char *impl, const char *bdf, struct buf *b)
{
	ubdma_ctx_t *ctx = NULL;
	ubdma_pci_t *dev = NULL;
	char name[32], why[200], note[200];
	int err;

	if ((err = ubdma_ctx_open(be, &ctx)) || (err = ubdma_pci_open(ctx, bdf, &dev))) {
		snprintf(why, sizeof(why), "%s", ubdma_last_error());
		for (int i = 0; i < 3; i++) {
			snprintf(name, sizeof(name), "map_unmap_%s", b[i].tag);
			row_skip(name, impl, "%s", why);
			snprintf(name, sizeof(name), "lock_unlock_%s", b[i].tag);
			row_skip(name, impl, "%s", why);
		}
		ubdma_ctx_close(ctx);
		return;
	}
	for (int i = 0; i < 3; i++) {
		struct buf *x = &b[i];

		if (!x->p) {
			snprintf(name, sizeof(name), "map_unmap_%s", x->tag);
			row_skip(name, impl, "%s", x->why);
			snprintf(name, sizeof(name), "lock_unlock_%s", x->tag);
			row_skip(name, impl, "%s", x->why);
			continue;
		}
		if (i == 0)
			run_watch(x, impl);
		int blocks = x->iters >= 2 * BLOCK, nm = 0, nl = 0, errm = 0, errl = 0;
		while (!errm && !errl && (nm < x->iters || nl < x->iters)) {
			int k = blocks ? BLOCK : x->iters;
			if (blocks && nm < x->iters)
				errm = time_map_unmap(ctx, x, NULL);
			for (int j = 0; j < k && nm < x->iters && !errm; j++)
				if (!(errm = time_map_unmap(ctx, x, &mu_samples[nm])))
					nm++;
			if (blocks && !errm && nl < x->iters)
				errl = time_lock_unlock(ctx, x, NULL, NULL);
			for (int j = 0; j < k && nl < x->iters && !errl; j++)
				if (!(errl = time_lock_unlock(ctx, x, &lu_samples[nl], &lock_samples[nl])))
					nl++;
		}
		if (blocks)
			snprintf(note, sizeof(note), "%d iterations, in blocks of %d beside the other row's", x->iters,
				 BLOCK);
		else
			snprintf(note, sizeof(note), "%d iterations", x->iters);
		snprintf(why, sizeof(why), "%s", ubdma_last_error());
		snprintf(name, sizeof(name), "map_unmap_%s", x->tag);
		row_done(row_add(name, impl), mu_samples, nm, errm, note, why);
		snprintf(name, sizeof(name), "lock_unlock_%s", x->tag);
		row_done(row_add(name, impl), lu_samples, nl, errm ? errm : errl, note,
			 errm ? "not run to the end: the map + unmap beside it failed" : why);
		if (!errm && !errl) {
			/* the lock's share of the same iterations */
			snprintf(name, sizeof(name), "lock_%s", x->tag);
			snprintf(note, sizeof(note), "ubdma_umem_lock alone, of lock_unlock_%s", x->tag);
			row_done(row_add(name, impl), lock_samples, nl, 0, note, NULL);
		}
	}
	ubdma_pci_close(dev);
	ubdma_ctx_close(ctx);
}

#ifdef UBDMA_BENCH_DPDK
/*
 * DPDK 22.11: a container of its own with the device's group bound to it; rte_vfio_setup_device()
 * then puts the group in that container and sets the type1 IOMMU (group_bind alone only opens the
 * group); then map + unmap at a fixed IOVA.
 */
static void run_dpdk(const char *bdf, struct buf *b)
{
	/* --no-telemetry: its start-up line goes to stdout, where the JSON goes */
	char name[32], path[128], grp[32] = "", *argv[] = { "bench", "--no-pci", "--no-huge", "-m", "64",
							    "--no-telemetry", "--log-level", "lib.eal:error",
							    NULL };
	const char *why = NULL;
	struct vfio_device_info info = { .argsz = sizeof(info) };
	ssize_t n;
	int cfd = -1, dfd = -1;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	char link[128];
	if ((n = readlink(path, link, sizeof(link) - 1)) > 0) {
		link[n] = '\0';
		snprintf(grp, sizeof(grp), "%s", strrchr(link, '/') + 1);
	}
	if (!grp[0])
		why = "the device has no IOMMU group";
	else if (rte_eal_init(8, argv) < 0)
		why = "rte_eal_init failed";
	else if ((cfd = rte_vfio_container_create()) < 0)
		why = "rte_vfio_container_create failed";
	else if (rte_vfio_container_group_bind(cfd, atoi(grp)) < 0)
		why = "rte_vfio_container_group_bind failed";
	else if (rte_vfio_setup_device("/sys/bus/pci/devices", bdf, &dfd, &info))
		why = "rte_vfio_setup_device failed";
	for (int i = 0; i < 3; i++) {
		struct buf *x = &b[i];
		/* the IOVA ubdma's allocator picks: >= 4 GiB, congruent to the VA modulo 2 MiB (1 GiB) */
		uint64_t mod = x->pgsz > SZ_2M ? x->pgsz : SZ_2M;
		uint64_t iova = (UINT64_C(1) << 32) + ((uintptr_t)x->p & (mod - 1)) + mod;

		snprintf(name, sizeof(name), "map_unmap_%s", x->tag);
		if (why || !x->p) {
			row_skip(name, "dpdk-type1", "%s", why ? why : x->why);
			continue;
		}
		struct row *r = row_add(name, "dpdk-type1");
		int k = 0, err = 0;
		for (; k < x->iters; k++) {
			double t0 = bench_now_ns();
			if (rte_vfio_container_dma_map(cfd, (uintptr_t)x->p, iova, x->len) ||
			    rte_vfio_container_dma_unmap(cfd, (uintptr_t)x->p, iova, x->len)) {
				err = rte_errno;
				break;
			}
			samples[k] = bench_now_ns() - t0;
		}
		if (err) {
			r->skipped = 1;
			snprintf(r->note, sizeof(r->note), "rte_vfio_container_dma_map: %s", rte_strerror(err));
		} else {
			finish(r, k);
			snprintf(r->note, sizeof(r->note), "%d iterations", k);
		}
	}
	if (dfd >= 0)
		rte_vfio_release_device("/sys/bus/pci/devices", bdf, dfd);
	if (cfd >= 0) /* unbinds the group if releasing the device did not */
		rte_vfio_container_destroy(cfd);
}
#endif

static void print_table(void)
{
	printf("%-16s %-14s %12s %12s  %s\n", "name", "impl", "median_ns", "p99_ns", "note");
	for (int i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		if (r->skipped)
			printf("%-16s %-14s %12s %12s  %s\n", r->name, r->impl, "skipped", "-", r->note);
		else
			printf("%-16s %-14s %12.0f %12.0f  %s\n", r->name, r->impl, r->median, r->p99, r->note);
	}
}

/* The note may hold a kernel or library sentence: keep JSON and CSV valid. */
static const char *clean(const char *s)
{
	static char out[256];
	size_t j = 0;

	for (size_t i = 0; s[i] && j + 1 < sizeof(out); i++)
		out[j++] = s[i] == '"' || s[i] == '\\' ? '\'' : s[i] < 0x20 ? ' ' : s[i];
	out[j] = '\0';
	return out;
}

static void print_json(void)
{
	printf("[");
	for (int i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		printf("%s\n  {\"name\": \"%s\", \"impl\": \"%s\", \"unit\": \"ns\", ", i ? "," : "", r->name, r->impl);
		if (r->skipped)
			printf("\"median\": null, \"p99\": null, \"skipped\": true, ");
		else
			printf("\"median\": %.2f, \"p99\": %.2f, \"skipped\": false, ", r->median, r->p99);
		printf("\"note\": \"%s\"}", clean(r->note));
	}
	printf("\n]\n");
}

static void print_csv(void)
{
	printf("name,impl,unit,median,p99,skipped,note\n");
	for (int i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		printf("%s,%s,ns,%.2f,%.2f,%d,\"%s\"\n", r->name, r->impl, r->skipped ? 0 : r->median,
		       r->skipped ? 0 : r->p99, r->skipped, clean(r->note));
	}
}

int main(int argc, char **argv)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	int json = 0, csv = 0, iters = 400;
	struct buf b[3];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (!strcmp(argv[i], "--csv"))
			csv = 1;
		else if (!strcmp(argv[i], "--bdf") && i + 1 < argc)
			bdf = argv[++i];
		else if (!strcmp(argv[i], "--iters") && i + 1 < argc && atoi(argv[i + 1]) > 0 &&
			 atoi(argv[i + 1]) <= MAXIT)
			iters = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: bench_iommu_map [--bdf BDF] [--iters 1..%d] [--json | --csv]\n", MAXIT);
			return 2;
		}
	}
	if (!bdf || !*bdf) {
		fprintf(stderr, "bench_iommu_map: no device: --bdf BDF of a function bound to vfio-pci\n");
		return 2;
	}
	bufs_make(b, iters);
	run_ubdma(UBDMA_BACKEND_VFIO, "ubdma-type1", bdf, b);
	run_ubdma(UBDMA_BACKEND_IOMMUFD, "ubdma-iommufd", bdf, b);
#ifdef UBDMA_BENCH_DPDK
	run_dpdk(bdf, b);
#else
	for (int i = 0; i < 3; i++) {
		char name[32];
		snprintf(name, sizeof(name), "map_unmap_%s", b[i].tag);
		row_skip(name, "dpdk-type1", "%s", "built without DPDK");
	}
#endif
	if (json)
		print_json();
	else if (csv)
		print_csv();
	else
		print_table();
	return 0;
}
