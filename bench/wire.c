/*
 * bench/wire.c - where the time of a registration goes: ubdma_umem_lock() and _unlock() beside
 * the raw kernel calls a driver needs at least (mlock(2) + a read of /proc/self/pagemap), and
 * beside each kernel call the wire layer makes, timed one by one in the order it makes them.
 *
 * One sample is one round on the same range: ubdma_umem_lock + unlock (each timed), then the
 * library's kernel calls replayed by hand (each timed; docs/wire.md section 14 lists them, and
 * which of them the library no longer makes), then
 * mlock + pagemap (timed together), in that order each round, so that the three see the same
 * process and the same load.  The replay uses a userfaultfd of its own with the monitor's
 * features; the ranges are never registered by two handles at once: the library unregisters
 * 4 KiB pages at unlock, and keeps hugetlb ones registered (docs/wire.md section 14), so on
 * hugetlb the replay runs on a second mapping of the same shape and, as the library, keeps its
 * registration (k:uffd_unregister is then not made).  Rows per configuration (name), unit
 * ns/page, median and 99th percentile over rounds:
 *
 *  ubdma, ubdma-unlock   the two public calls;
 *  raw                   mlock + pagemap read (one pread of all entries; one 8-byte pread a
 *                        huge page), the reference of issue 21's goal;
 *  k:<call>              one kernel call of the replay (maps_open_close: opening and closing
 *                        /proc/self/maps, which the library did around every look-up before
 *                        issue 21; maps_query: the PROCMAP_QUERY ioctl; the rest are named
 *                        after the call);
 *  kernel                the replay's lock-side calls that the library still makes, summed per
 *                        round (the library's kernel time);
 *  bookkeeping           ubdma minus kernel, medians (what the library spends outside the kernel);
 *  iommu_map             skipped on the host (no VFIO): bench/iommu_map.c measures MAP_DMA in the
 *                        guest.
 *
 * Configurations: 4k_1024 (4 MiB of 4 KiB pages, va), 4k_1 (one 4 KiB page in a 64 MiB mapping,
 * so that every lock splits the mapping; va), 4k_1_alone (a 4 KiB mapping of its own: no split),
 * 4k_1_crowd (as 4k_1 with 4096 other cookies alive in the context, a registration cache's
 * miss), 2m_32 on phys and on va (32 hugetlb pages).  --json, --csv, or a table.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>
#include "bench_time.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif

#define PG4K 4096UL
#define PG2M (2UL << 20)
#define CROWD 4096
#define RW (UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)

/* PROCMAP_QUERY (Linux 6.11, include/uapi/linux/fs.h): Debian 12's headers predate it. */
struct pmq {
	uint64_t size, query_flags, query_addr;
	uint64_t vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
	uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
	uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY _IOWR('f', 17, struct pmq)

/* The replay's calls; K_LOCK_END separates what a lock makes from what an unlock makes. */
enum { K_OPEN, K_QUERY, K_POPULATE, K_REGISTER, K_MLOCK, K_DONTFORK, K_RECHECK, K_REREGISTER, K_PAGEMAP,
       K_LOCK_END, K_MUNLOCK = K_LOCK_END, K_DOFORK, K_UNREGISTER, K_N };
static const char *kname[K_N] = { "k:maps_open_close", "k:maps_query", "k:populate_write", "k:uffd_register",
				  "k:mlock", "k:madv_dontfork", "k:maps_recheck", "k:uffd_reregister", "k:pagemap",
				  "k:munlock", "k:madv_dofork", "k:uffd_unregister" };

struct row {
	char name[24], impl[24], backend[8], note[160];
	double median, p99;
	int skipped, derived;
};

static struct row rows[160];
static int nrows;
static volatile uint64_t sink;

static struct row *row_add(const char *name, const char *impl, const char *backend)
{
	struct row *r = &rows[nrows++];

	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->impl, sizeof(r->impl), "%s", impl);
	snprintf(r->backend, sizeof(r->backend), "%s", backend);
	return r;
}

/* Median and p99 of n per-round totals, per page; s is sorted in place. */
static struct row *row_stats(const char *name, const char *impl, const char *be, double *s, int n, size_t npages)
{
	struct row *r = row_add(name, impl, be);

	qsort(s, (size_t)n, sizeof(*s), bench_cmp_double);
	r->median = s[n / 2] / (double)npages;
	r->p99 = s[n * 99 / 100] / (double)npages;
	return r;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_wire: %s: %s (%s)\n", what, strerror(err), ubdma_last_error());
	exit(1);
}

/* A userfaultfd of the bench's own, asking what the library's monitor asks. */
static int uffd_open(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE |
					      UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_WP_HUGETLBFS_SHMEM };

	if (fd >= 0 && ioctl(fd, UFFDIO_API, &api)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static int maps_fd = -1;

/* What the library did for every look-up before issue 21: open and close the file around it. */
static int maps_open_close(void)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	return fd < 0 || close(fd);
}

/* One PROCMAP_QUERY through a kept handle, as the library asks now. */
static int maps_query(uintptr_t a)
{
	struct pmq q = { .size = sizeof(q), .query_flags = 0x10, .query_addr = a };
	int err = ioctl(maps_fd, PROCMAP_QUERY, &q);

	sink += q.vma_page_size;
	return err;
}

/*
 * One round of the replay: the calls a first lock of [a, a + len) makes (the populate only with
 * WRITE intent or file pages, the recheck on hugetlb, the pagemap reads on phys), then the
 * unlock's.  t[k] receives each call's time.
 */
static int replay(int uffd, char *a, size_t len, size_t pgsz, int phys, int pmfd, uint64_t *pm, double *t)
{
	int keep = pgsz > PG4K; /* hugetlb stays registered, as the library keeps it */
	struct uffdio_register reg = { .range = { (uintptr_t)a, len }, .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_range unreg = { (uintptr_t)a, len };
	uint64_t t0 = bench_now_ns(), t1;
	int bad = 0;

#define STEP(K, CALL)                                                                              \
	do {                                                                                       \
		bad |= (CALL) != 0;                                                                \
		t1 = bench_now_ns();                                                                     \
		t[K] = (double)(t1 - t0);                                                          \
		t0 = t1;                                                                           \
	} while (0)
	STEP(K_OPEN, maps_open_close());
	STEP(K_QUERY, maps_query((uintptr_t)a));
	STEP(K_POPULATE, madvise(a, len, MADV_POPULATE_WRITE));
	STEP(K_REGISTER, ioctl(uffd, UFFDIO_REGISTER, &reg));
	STEP(K_MLOCK, syscall(SYS_mlock, a, len));
	STEP(K_DONTFORK, madvise(a, len, MADV_DONTFORK));
	if (pgsz > PG4K)
		STEP(K_RECHECK, maps_query((uintptr_t)a));
	else
		t[K_RECHECK] = 0;
	/* the second registration once locked (docs/wire.md, "Replaced while being wired") */
	STEP(K_REREGISTER, ioctl(uffd, UFFDIO_REGISTER, &reg));
	t0 = bench_now_ns();
	if (phys)
		for (size_t p = 0; p < len / pgsz; p++)
			bad |= pread(pmfd, &pm[p], 8, (off_t)(((uintptr_t)a + p * pgsz) / PG4K * 8)) != 8;
	t1 = bench_now_ns();
	t[K_PAGEMAP] = phys ? (double)(t1 - t0) : 0;
	t0 = t1;
	STEP(K_MUNLOCK, syscall(SYS_munlock, a, len));
	STEP(K_DOFORK, madvise(a, len, MADV_DOFORK));
	if (keep)
		t[K_UNREGISTER] = 0;
	else
		STEP(K_UNREGISTER, ioctl(uffd, UFFDIO_UNREGISTER, &unreg));
#undef STEP
	return bad;
}

/* mlock + pagemap: the least a driver does to learn the addresses of pinned memory. */
static double raw(char *a, size_t len, size_t pgsz, int pmfd, uint64_t *pm)
{
	size_t n = len / pgsz;
	uint64_t t0 = bench_now_ns();
	int bad = mlock(a, len) != 0;

	if (pgsz > PG4K)
		for (size_t p = 0; p < n && !bad; p++)
			bad = pread(pmfd, &pm[p], 8, (off_t)(((uintptr_t)a + p * pgsz) / PG4K * 8)) != 8;
	else
		bad = bad || pread(pmfd, pm, n * 8, (off_t)((uintptr_t)a / PG4K * 8)) != (ssize_t)(n * 8);
	double t = (double)(bench_now_ns() - t0);
	if (bad)
		die("mlock or pagemap read", errno);
	sink += pm[0];
	munlock(a, len);
	return t;
}

/*
 * Which replayed lock-side calls the library makes today, per configuration (docs/wire.md,
 * section 14): the sum of these is the "kernel" row.
 */
static int library_makes(int k, size_t pgsz, int phys)
{
	switch (k) {
	case K_OPEN:
		return 0;
	case K_POPULATE:
		/* private writable memory, anonymous or hugetlb (every configuration here): the
		 * wiring's own mlock makes the write faults */
		return 0;
	case K_RECHECK:
		return pgsz > PG4K;
	case K_PAGEMAP:
		return phys;
	default:
		return 1;
	}
}

struct config {
	const char *name;
	size_t pgsz, npages, maplen; /* maplen: the mapping the range sits in */
	int phys, crowd;
};

static void run(const struct config *c, int rounds)
{
	const char *be = c->phys ? "phys" : "va";
	size_t len = c->npages * c->pgsz;
	ubdma_ctx_t *ctx;
	int err, huge = c->pgsz > PG4K;

	if ((err = ubdma_ctx_open(c->phys ? UBDMA_BACKEND_PHYS : UBDMA_BACKEND_VA, &ctx))) {
		struct row *r = row_add(c->name, "ubdma", be);
		r->skipped = 1;
		snprintf(r->note, sizeof(r->note), "no %s context: %.120s", be, ubdma_last_error());
		return;
	}
	char *map = mmap(NULL, c->maplen, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0), -1, 0);
	if (map == MAP_FAILED) {
		struct row *r = row_add(c->name, "ubdma", be);
		r->skipped = 1;
		snprintf(r->note, sizeof(r->note), "cannot map %zu bytes%s: %s", c->maplen,
			 huge ? " of 2 MiB hugepages" : "", strerror(errno));
		ubdma_ctx_close(ctx);
		return;
	}
	if (!huge)
		madvise(map, c->maplen, MADV_NOHUGEPAGE); /* 4 KiB pages stay 4 KiB pages */
	memset(map, 1, c->maplen);
	/* the range: in the middle of its mapping, so that a lock splits it (unless it is all of it) */
	char *a = map + (c->maplen - len) / 2 / c->pgsz * c->pgsz;
	/* the replay's range: on hugetlb the library keeps [a, +len) registered with its handle */
	char *map2 = map, *ra = a;
	if (huge) {
		map2 = mmap(NULL, c->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		if (map2 == MAP_FAILED)
			die("a second hugetlb mapping for the replay", errno);
		memset(map2, 1, c->maplen);
		ra = map2 + (a - map);
	}

	/* the crowd: other cookies alive in the context, each on a page of its own mapping area */
	char *cmap = NULL;
	ubdma_umem_t **crowd = NULL;
	if (c->crowd) {
		cmap = mmap(NULL, 2 * PG4K * CROWD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		crowd = calloc(CROWD, sizeof(*crowd));
		if (cmap == MAP_FAILED || !crowd)
			die("crowd", ENOMEM);
		memset(cmap, 1, 2 * PG4K * CROWD);
		for (int i = 0; i < CROWD; i++)
			if ((err = ubdma_umem_lock(ctx, cmap + (size_t)i * 2 * PG4K, PG4K, RW, &crowd[i])))
				die("crowd lock", err);
	}

	int uffd = uffd_open(), pmfd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (maps_fd < 0)
		maps_fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	double *s = malloc(sizeof(double) * (size_t)rounds * (K_N + 4));
	uint64_t *pm = malloc(c->npages * (c->pgsz / PG4K) * 8);
	if (uffd < 0 || pmfd < 0 || !s || !pm)
		die("userfaultfd, pagemap or memory for the bench", errno ? errno : ENOMEM);
	double *su = s, *sun = s + rounds, *sraw = s + 2 * rounds, *skern = s + 3 * rounds,
	       *sk = s + 4 * rounds; /* sk[k * rounds + i] */
	for (int i = -2; i < rounds; i++) { /* two rounds of warm-up */
		ubdma_umem_t *u;
		double t[K_N], kern = 0;
		uint64_t t0 = bench_now_ns();
		if ((err = ubdma_umem_lock(ctx, a, len, RW, &u)))
			die("ubdma_umem_lock", err);
		uint64_t t1 = bench_now_ns();
		ubdma_umem_unlock(u);
		uint64_t t2 = bench_now_ns();
		if (replay(uffd, ra, len, c->pgsz, c->phys, pmfd, pm, t))
			die("replay", errno);
		double tr = raw(a, len, c->pgsz, pmfd, pm);
		if (i < 0)
			continue;
		su[i] = (double)(t1 - t0);
		sun[i] = (double)(t2 - t1);
		sraw[i] = tr;
		for (int k = 0; k < K_N; k++) {
			sk[k * rounds + i] = t[k];
			if (k < K_LOCK_END && library_makes(k, c->pgsz, c->phys))
				kern += t[k];
		}
		skern[i] = kern;
	}
	char note[100];
	snprintf(note, sizeof(note), "%zu pages of %zu KiB in a %zu KiB mapping%s", c->npages, c->pgsz >> 10,
		 c->maplen >> 10, c->crowd ? ", 4096 other cookies alive" : "");
	struct row *ru = row_stats(c->name, "ubdma", be, su, rounds, c->npages);
	snprintf(ru->note, sizeof(ru->note), "ubdma_umem_lock READ|WRITE; %s", note);
	snprintf(row_stats(c->name, "ubdma-unlock", be, sun, rounds, c->npages)->note, sizeof(ru->note),
		 "ubdma_umem_unlock");
	struct row *rr = row_stats(c->name, "raw", "-", sraw, rounds, c->npages);
	snprintf(rr->note, sizeof(rr->note), "mlock + %s", huge ? "one 8-byte pagemap pread a page" :
			  "one pagemap pread of every entry");
	for (int k = 0; k < K_N; k++) {
		if ((k == K_RECHECK && !huge) || (k == K_PAGEMAP && !c->phys) || (k == K_UNREGISTER && huge))
			continue;
		struct row *r = row_stats(c->name, kname[k], be, sk + k * rounds, rounds, c->npages);
		snprintf(r->note, sizeof(r->note), "%s", k >= K_LOCK_END ? "unlock side" :
			 library_makes(k, c->pgsz, c->phys) ? "the library makes it" : "the library no longer makes it");
	}
	struct row *rk = row_stats(c->name, "kernel", be, skern, rounds, c->npages);
	snprintf(rk->note, sizeof(rk->note), "the lock-side calls the library makes, summed a round");
	struct row *rb = row_add(c->name, "bookkeeping", be);
	rb->median = ru->median - rk->median;
	rb->p99 = rb->median < 0 ? 0 : rb->median;
	rb->median = rb->p99;
	rb->derived = 1;
	snprintf(rb->note, sizeof(rb->note), "ubdma median minus kernel median (derived; p99 repeats it)");
	struct row *ri = row_add(c->name, "iommu_map", be);
	ri->skipped = 1;
	snprintf(ri->note, sizeof(ri->note), "no VFIO on the host: bench/iommu_map.sh measures MAP_DMA in the guest");
	for (int i = 0; crowd && i < CROWD; i++)
		ubdma_umem_unlock(crowd[i]);
	if (cmap)
		munmap(cmap, 2 * PG4K * CROWD);
	free(crowd);
	free(s);
	free(pm);
	close(uffd);
	close(pmfd);
	munmap(map, c->maplen);
	if (map2 != map)
		munmap(map2, c->maplen);
	ubdma_ctx_close(ctx);
}

static void print(int fmt)
{
	if (fmt == 'j') {
		printf("[\n");
		for (int i = 0; i < nrows; i++) {
			const struct row *r = &rows[i];
			printf("  {\"name\": \"%s\", \"impl\": \"%s\", \"unit\": \"ns/page\", ", r->name, r->impl);
			if (r->skipped)
				printf("\"median\": null, \"p99\": null, \"skipped\": true, ");
			else
				printf("\"median\": %.1f, \"p99\": %.1f, \"skipped\": false, ", r->median, r->p99);
			printf("\"derived\": %s, \"backend\": \"%s\", \"note\": \"%s\"}%s\n", r->derived ? "true" : "false",
			       r->backend, r->note, i + 1 < nrows ? "," : "");
		}
		printf("]\n");
	} else if (fmt == 'c') {
		printf("name,impl,unit,median,p99,backend,skipped,note\n");
		for (int i = 0; i < nrows; i++)
			printf("%s,%s,ns/page,%.1f,%.1f,%s,%d,\"%s\"\n", rows[i].name, rows[i].impl, rows[i].median,
			       rows[i].p99, rows[i].backend, rows[i].skipped, rows[i].note);
	} else {
		printf("%-11s %-18s %-7s %12s %12s  %s\n", "name", "impl", "backend", "median ns/pg", "p99 ns/pg", "note");
		for (int i = 0; i < nrows; i++) {
			const struct row *r = &rows[i];
			if (r->skipped)
				printf("%-11s %-18s %-7s %12s %12s  %s\n", r->name, r->impl, r->backend, "skipped", "-", r->note);
			else
				printf("%-11s %-18s %-7s %12.1f %12.1f  %s\n", r->name, r->impl, r->backend, r->median, r->p99,
				       r->note);
		}
	}
}

/* The goal of issue 21, on stderr: umem_lock per page <= 1.2x mlock + pagemap, same run. */
static void goals(void)
{
	for (int i = 0; i < nrows; i++) {
		if (strcmp(rows[i].impl, "ubdma") || rows[i].skipped)
			continue;
		for (int j = 0; j < nrows; j++)
			if (!strcmp(rows[j].name, rows[i].name) && !strcmp(rows[j].impl, "raw"))
				fprintf(stderr, "bench_wire: %-11s ubdma / raw = %.1f / %.1f = %.2fx (goal <= 1.2x)\n",
					rows[i].name, rows[i].median, rows[j].median, rows[i].median / rows[j].median);
	}
}

int main(int argc, char **argv)
{
	int fmt = 't', rounds = 200;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			fmt = 'j';
		else if (!strcmp(argv[i], "--csv"))
			fmt = 'c';
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: bench_wire [--json | --csv] [--rounds N]\n");
			return 2;
		}
	}
	if (rounds < 10)
		rounds = 10;
	static const struct config cfg[] = {
		{ "4k_1024", PG4K, 1024, 1024 * PG4K, 0, 0 },
		{ "4k_1", PG4K, 1, 64UL << 20, 0, 0 },
		{ "4k_1_alone", PG4K, 1, PG4K, 0, 0 },
		{ "4k_1_crowd", PG4K, 1, 64UL << 20, 0, 1 },
		{ "2m_32", PG2M, 32, 32 * PG2M, 1, 0 },
		{ "2m_32_va", PG2M, 32, 32 * PG2M, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(cfg) / sizeof(cfg[0]); i++)
		run(&cfg[i], rounds);
	print(fmt);
	goals();
	return 0;
}
