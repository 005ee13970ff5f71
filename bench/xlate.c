/*
 * bench/xlate.c - VA -> IOVA translation cost of ubdma against DPDK 22.11, and the cost of
 * registering memory (ubdma_umem_lock) against a bare mlock(2) + /proc/self/pagemap read.
 *
 * One invocation measures everything.  DPDK's EAL can be initialised once per process and its IOVA
 * mode is fixed at that point, so each DPDK IOVA mode (PA, VA) runs in a forked child that sends its
 * rows back through a pipe; ubdma runs in the parent.  Both sides translate random byte addresses of
 * a region of the same size (--size, default 1 GiB) made of 2 MiB hugepages: registered with
 * ubdma_umem_lock() on the ubdma side, taken from rte_malloc() on the DPDK side.  The addresses are
 * drawn before timing so that the generator is not measured, and every result is summed into a sink
 * so that the compiler cannot drop a lookup.  A sample is one batch of BATCH lookups timed with the
 * TSC; medians and 99th percentiles are over batches, reported per lookup (or per page).
 *
 * The bench checks what it measures: ubdma_vtoiova() must equal the physical address this file reads
 * itself from /proc/self/pagemap, and so must DPDK's translations in PA mode; a mismatch aborts.
 * A part that cannot run here (no root for PA mode, no hugepages, DPDK not built) becomes a row
 * marked skipped with the reason, never a made-up figure.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#endif

#include <ubdma/ubdma.h>
#include "bench_time.h"

#ifdef UBDMA_BENCH_DPDK
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#endif

#define BATCH 1024			/* lookups per timed sample */
#define NADDR (256 * 1024)		/* precomputed random addresses, a multiple of BATCH */
#define NCHECK 4096			/* addresses checked against pagemap */
#define HUGE_2M (UINT64_C(2) << 20)
#define ROW_BUDGET_NS (UINT64_C(2000000000)) /* stop a slow row after ~2 s of samples */
#define MIN_SAMPLES 64
#define HP_DIR "/sys/kernel/mm/hugepages/hugepages-2048kB/"

struct row {
	char name[24];
	char impl[24];
	char unit[16];
	char backend[16];
	char note[256];
	int skipped;
	double median, p99, mean;
	uint64_t samples; /* batches (or lock calls) measured */
	uint64_t per;	  /* lookups (or pages) per sample */
};

static struct row rows[16];
static int nrows;
static volatile uint64_t sink; /* every translation is summed here */
static double tsc_per_ns = 1.0;

/* ------------------------------------------------------------------ utilities */

static void die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "bench_xlate: FATAL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(3);
}

static void say(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bench_xlate: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Fenced so that the timed work can neither start before the first read nor end after the second. */
static inline uint64_t tick_begin(void)
{
#ifdef HAVE_TSC
	_mm_lfence();
	uint64_t t = __rdtsc();
	_mm_lfence();
	return t;
#else
	return bench_now_ns();
#endif
}

static inline uint64_t tick_end(void)
{
#ifdef HAVE_TSC
	unsigned aux;
	uint64_t t = __rdtscp(&aux);
	_mm_lfence();
	return t;
#else
	return bench_now_ns();
#endif
}

/* Ticks per nanosecond, measured against CLOCK_MONOTONIC over 100 ms. */
static void calibrate(void)
{
#ifdef HAVE_TSC
	uint64_t n0 = bench_now_ns(), t0 = tick_begin(), n1;
	while ((n1 = bench_now_ns()) - n0 < 100000000u)
		;
	tsc_per_ns = (double)(tick_end() - t0) / (double)(n1 - n0);
#endif
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
	/* xorshift64*: fixed seed, so every run draws the same addresses */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1du;
}

static uintptr_t *random_addrs(uintptr_t base, size_t size, size_t n)
{
	uintptr_t *a = malloc(n * sizeof(*a));

	if (!a)
		die("out of memory for %zu addresses", n);
	for (size_t i = 0; i < n; i++)
		a[i] = base + (uintptr_t)(rng() % size);
	return a;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static struct row *row_new(const char *name, const char *impl, const char *unit, const char *backend)
{
	struct row *r = &rows[nrows++];

	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->impl, sizeof(r->impl), "%s", impl);
	snprintf(r->unit, sizeof(r->unit), "%s", unit);
	snprintf(r->backend, sizeof(r->backend), "%s", backend);
	return r;
}

static void row_note(struct row *r, const char *fmt, ...)
{
	va_list ap;
	size_t len = strlen(r->note);

	if (len && len + 2 < sizeof(r->note)) {
		strcpy(r->note + len, "; ");
		len += 2;
	}
	va_start(ap, fmt);
	vsnprintf(r->note + len, sizeof(r->note) - len, fmt, ap);
	va_end(ap);
}

static void row_skip(struct row *r, const char *fmt, ...)
{
	va_list ap;

	r->skipped = 1;
	va_start(ap, fmt);
	vsnprintf(r->note, sizeof(r->note), fmt, ap);
	va_end(ap);
	say("%s/%s skipped: %s", r->name, r->impl, r->note);
}

/* Fill median / p99 / mean of a row from per-sample tick counts, each covering `per` operations. */
static void row_stats(struct row *r, uint64_t *ticks, size_t n, uint64_t per)
{
	double sum = 0;

	qsort(ticks, n, sizeof(*ticks), cmp_u64);
	for (size_t i = 0; i < n; i++)
		sum += (double)ticks[i];
	double scale = 1.0 / (tsc_per_ns * (double)per);
	r->median = (double)ticks[n / 2] * scale;
	r->p99 = (double)ticks[n * 99 / 100 < n ? n * 99 / 100 : n - 1] * scale;
	r->mean = sum / (double)n * scale;
	r->samples = n;
	r->per = per;
}

/*
 * Time up to nbatch batches of BATCH lookups of EXPR (which sees `va`, a const void *), stopping
 * early once ROW_BUDGET_NS is spent (slow, system-call based translations), then fill row R.
 * A macro rather than a function pointer, so that each translation is called as a user would call
 * it, with no indirect call added.
 */
#define TIME_LOOKUPS(R, ADDRS, NBATCH, EXPR)                                                        \
	do {                                                                                       \
		uint64_t *ticks_ = malloc((NBATCH) * sizeof(uint64_t));                            \
		uint64_t acc_ = 0, deadline_ = bench_now_ns() + ROW_BUDGET_NS;                           \
		size_t n_ = 0, k_ = 0;                                                             \
		if (!ticks_)                                                                       \
			die("out of memory");                                                      \
		for (size_t i_ = 0; i_ < BATCH * 4; i_++) { /* warm caches and branch predictors */ \
			const void *va = (const void *)(ADDRS)[i_];                                \
			acc_ += (EXPR);                                                            \
		}                                                                                  \
		for (; n_ < (NBATCH); n_++) {                                                      \
			const uintptr_t *a_ = (ADDRS) + k_;                                        \
			uint64_t t0_ = tick_begin();                                               \
			for (size_t i_ = 0; i_ < BATCH; i_++) {                                    \
				const void *va = (const void *)a_[i_];                             \
				acc_ += (EXPR);                                                    \
			}                                                                          \
			ticks_[n_] = tick_end() - t0_;                                             \
			k_ = (k_ + BATCH) % NADDR;                                                 \
			if (n_ >= MIN_SAMPLES && (n_ & 15) == 0 && bench_now_ns() > deadline_) {         \
				n_++;                                                              \
				break;                                                             \
			}                                                                          \
		}                                                                                  \
		sink += acc_;                                                                      \
		row_stats((R), ticks_, n_, BATCH);                                                 \
		free(ticks_);                                                                      \
	} while (0)

/* The physical address of va, read by the bench itself (not through ubdma), or 0. */
static uint64_t pagemap_pa(int fd, uintptr_t va)
{
	uint64_t e;

	if (pread(fd, &e, sizeof(e), (off_t)(va / 4096 * sizeof(e))) != (ssize_t)sizeof(e))
		return 0;
	if (!(e & (UINT64_C(1) << 63)))
		return 0;
	e &= (UINT64_C(1) << 55) - 1;
	return e ? e * 4096 + (va & 4095) : 0;
}

/* ----------------------------------------------------- hugepage reservation */

static long hp_added;	/* pages this run added to nr_hugepages, given back at exit */
static pid_t main_pid;

static long hp_read(const char *file)
{
	char path[128], buf[32];
	long v = -1;

	snprintf(path, sizeof(path), HP_DIR "%s", file);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0) {
		buf[n] = 0;
		v = strtol(buf, NULL, 10);
	}
	return v;
}

static int hp_write_nr(long v)
{
	char buf[32];
	int fd = open(HP_DIR "nr_hugepages", O_WRONLY);

	if (fd < 0)
		return errno;
	int len = snprintf(buf, sizeof(buf), "%ld\n", v);
	int err = write(fd, buf, (size_t)len) == len ? 0 : errno;
	close(fd);
	return err;
}

/*
 * Give back what we added, relative to the current count: another process may have changed the
 * count meanwhile, and its pages must not be taken from it.
 */
static void hp_restore(void)
{
	if (hp_added <= 0 || getpid() != main_pid)
		return;
	long nr = hp_read("nr_hugepages");
	if (nr >= 0 && hp_write_nr(nr - hp_added > 0 ? nr - hp_added : 0) == 0)
		say("gave back %ld hugepages (nr_hugepages %ld -> %ld)", hp_added, nr,
		    nr - hp_added > 0 ? nr - hp_added : 0);
	hp_added = 0;
}

static void on_signal(int sig)
{
	hp_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Make at least `want` 2 MiB pages free, adding to the pool as root. Return how many are free. */
static long hp_reserve(long want)
{
	long free_ = hp_read("free_hugepages"), nr = hp_read("nr_hugepages");

	if (free_ < 0 || nr < 0)
		return 0;
	if (free_ >= want || geteuid() != 0)
		return free_;
	if (hp_write_nr(nr + (want - free_)) == 0) {
		long nr2 = hp_read("nr_hugepages");
		hp_added = nr2 > nr ? nr2 - nr : 0;
		say("reserved %ld more 2 MiB hugepages (nr_hugepages %ld -> %ld)", hp_added, nr, nr2);
	}
	return hp_read("free_hugepages");
}

/* --------------------------------------------------------------- DPDK side */

#ifdef UBDMA_BENCH_DPDK
static int child_send(int fd, const struct row *r)
{
	/* one row is smaller than PIPE_BUF: the write is atomic */
	return write(fd, r, sizeof(*r)) == (ssize_t)sizeof(*r) ? 0 : -1;
}

/* Check DPDK's translations against pagemap (PA mode) or the VA itself (VA mode); abort on a miss. */
static void dpdk_check(const uintptr_t *addrs, int pa_mode)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int n = pa_mode ? NCHECK / 4 : NCHECK; /* virt2iova in PA mode is a system call each */

	if (fd < 0)
		die("cannot open /proc/self/pagemap: %s", strerror(errno));
	for (int i = 0; i < n; i++) {
		const void *va = (const void *)addrs[i];
		uint64_t want = pa_mode ? pagemap_pa(fd, addrs[i]) : addrs[i];
		const struct rte_memseg *ms = rte_mem_virt2memseg(va, NULL);
		uint64_t got1 = rte_mem_virt2iova(va);
		uint64_t got2 = ms ? ms->iova + (addrs[i] - (uintptr_t)ms->addr) : UINT64_MAX;

		if (!want)
			die("DPDK %s: pagemap has no PA for %p (not present?)", pa_mode ? "PA" : "VA", va);
		if (got1 != want || got2 != want)
			die("DPDK %s mode MISMATCH at %p: pagemap/VA %#" PRIx64 ", rte_mem_virt2iova %#" PRIx64
			    ", rte_mem_virt2memseg+offset %#" PRIx64,
			    pa_mode ? "PA" : "VA", va, want, got1, got2);
	}
	close(fd);
	say("DPDK %s mode: %d addresses agree with %s", pa_mode ? "PA" : "VA", n,
	    pa_mode ? "/proc/self/pagemap" : "the VA");
}

static int dpdk_child(int wfd, int pa_mode, size_t size, size_t nbatch)
{
	char prefix[64];
	const char *mode = pa_mode ? "pa" : "va";
	const char *impl_iova = pa_mode ? "dpdk-virt2iova-pa" : "dpdk-virt2iova-va";
	const char *impl_ms = pa_mode ? "dpdk-memseg-pa" : "dpdk-memseg";
	struct row *ri = row_new("vtoiova", impl_iova, "ns/lookup", mode);
	struct row *rm = row_new("vtoiova", impl_ms, "ns/lookup", mode);

	snprintf(prefix, sizeof(prefix), "--file-prefix=ubdma_xlate_%d_%s", (int)getpid(), mode);
	char *argv[] = { "bench_xlate", "--no-pci", "-l", "0", "--in-memory", prefix,
			 pa_mode ? "--iova-mode=pa" : "--iova-mode=va", "--log-level=lib.eal:warning",
			 "--no-telemetry", NULL };
	int argc = (int)(sizeof(argv) / sizeof(argv[0])) - 1;

	if (rte_eal_init(argc, argv) < 0) {
		const char *why = rte_strerror(rte_errno);
		row_skip(ri, "rte_eal_init(--iova-mode=%s) failed: %s%s", mode, why,
			 pa_mode && geteuid() ? " (PA mode needs root for pagemap PFNs)" : "");
		row_skip(rm, "%s", ri->note);
		goto out;
	}
	if (rte_eal_iova_mode() != (pa_mode ? RTE_IOVA_PA : RTE_IOVA_VA)) {
		row_skip(ri, "EAL came up in IOVA mode %d, not %s", (int)rte_eal_iova_mode(), mode);
		row_skip(rm, "%s", ri->note);
		goto cleanup;
	}
	void *mem = rte_malloc("bench_xlate", size, HUGE_2M);
	if (!mem) {
		row_skip(ri, "rte_malloc(%zu) failed: not enough free hugepages?", size);
		row_skip(rm, "%s", ri->note);
		goto cleanup;
	}
	memset(mem, 0x5a, size); /* every page present before pagemap is read */
	uintptr_t *addrs = random_addrs((uintptr_t)mem, size, NADDR);
	dpdk_check(addrs, pa_mode);

	TIME_LOOKUPS(rm, addrs, nbatch, ({
		const struct rte_memseg *ms_ = rte_mem_virt2memseg(va, NULL);
		ms_ ? ms_->iova + ((uintptr_t)va - (uintptr_t)ms_->addr) : UINT64_MAX;
	}));
	TIME_LOOKUPS(ri, addrs, nbatch, rte_mem_virt2iova(va));
	row_note(ri, "rte_malloc memory");
	if (pa_mode)
		row_note(ri, "in PA mode rte_mem_virt2iova reads /proc/self/pagemap each call");
	row_note(rm, "rte_mem_virt2memseg(va, NULL) then ms->iova + (va - ms->addr), IOVA as %s", mode);
	free(addrs);
	rte_free(mem);
cleanup:
	rte_eal_cleanup();
out:
	if (child_send(wfd, rm) || child_send(wfd, ri))
		return 1;
	return 0;
}
#endif

/* Run one DPDK IOVA mode in a child; append the rows it sends (or skipped rows saying why). */
static void dpdk_run(int pa_mode, size_t size, size_t nbatch)
{
	const char *mode = pa_mode ? "pa" : "va";
	const char *impls[2] = { pa_mode ? "dpdk-memseg-pa" : "dpdk-memseg",
				 pa_mode ? "dpdk-virt2iova-pa" : "dpdk-virt2iova-va" };
#ifdef UBDMA_BENCH_DPDK
	int fds[2];
	int got = 0;

	if (pipe(fds))
		die("pipe: %s", strerror(errno));
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(fds[0]);
		/* EAL logs to stdout: keep the parent's table or JSON clean */
		dup2(STDERR_FILENO, STDOUT_FILENO);
		nrows = 0;
		_exit(dpdk_child(fds[1], pa_mode, size, nbatch));
	}
	close(fds[1]);
	for (;;) {
		struct row r;
		ssize_t n = read(fds[0], &r, sizeof(r));
		if (n == 0)
			break;
		if (n != (ssize_t)sizeof(r)) {
			if (n < 0 && errno == EINTR)
				continue;
			break;
		}
		rows[nrows++] = r;
		got++;
	}
	close(fds[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
		die("the DPDK IOVA-as-%s child found a translation mismatch (see above)", mode);
	if (got == 2)
		return;
	nrows -= got;
	for (int i = 0; i < 2; i++) {
		struct row *r = row_new("vtoiova", impls[i], "ns/lookup", mode);
		if (WIFSIGNALED(status))
			row_skip(r, "the DPDK IOVA-as-%s child died of signal %d", mode, WTERMSIG(status));
		else
			row_skip(r, "the DPDK IOVA-as-%s child exited with status %d without results", mode,
				 WEXITSTATUS(status));
	}
#else
	(void)size;
	(void)nbatch;
	for (int i = 0; i < 2; i++)
		row_skip(row_new("vtoiova", impls[i], "ns/lookup", mode),
			 "built without DPDK (meson option dpdk, dependency libdpdk)");
#endif
}

/* -------------------------------------------------------------- ubdma side */

/* ubdma_vtoiova() must give the PA this file reads from pagemap (phys) or the VA (va backend). */
static void ubdma_check(ubdma_ctx_t *ctx, const uintptr_t *addrs, int phys, uintptr_t base, size_t size)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die("cannot open /proc/self/pagemap: %s", strerror(errno));
	for (int i = 0; i < NCHECK; i++) {
		uint64_t want = phys ? pagemap_pa(fd, addrs[i]) : addrs[i];
		uint64_t got = ubdma_vtoiova(ctx, (const void *)addrs[i]);
		if (!want)
			die("pagemap has no PA for %p", (void *)addrs[i]);
		if (got != want)
			die("ubdma MISMATCH at %p: %s %#" PRIx64 ", ubdma_vtoiova %#" PRIx64, (void *)addrs[i],
			    phys ? "pagemap PA" : "VA", want, got);
	}
	/* and just outside the registered range there is nothing */
	if (ubdma_vtoiova(ctx, (const void *)(base - 1)) != UBDMA_BAD_IOVA ||
	    ubdma_vtoiova(ctx, (const void *)(base + size)) != UBDMA_BAD_IOVA)
		die("ubdma_vtoiova translates an address outside the registered range");
	close(fd);
	say("ubdma %s: %d addresses agree with %s", phys ? "phys" : "va", NCHECK,
	    phys ? "/proc/self/pagemap" : "the VA");
}

static void *map_region(size_t size, int huge)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0), -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (!huge) /* 4 KiB pages must stay 4 KiB pages: no transparent hugepages */
		madvise(p, size, MADV_NOHUGEPAGE);
	memset(p, 0x5a, size);
	return p;
}

static void ubdma_lookup(size_t size, size_t nbatch, int have_huge)
{
	enum ubdma_backend be = have_huge ? UBDMA_BACKEND_PHYS : UBDMA_BACKEND_VA;
	ubdma_ctx_t *ctx = NULL;
	ubdma_umem_t *cookie = NULL;
	int err;

	if (be == UBDMA_BACKEND_PHYS && (err = ubdma_ctx_open(be, &ctx))) {
		say("phys backend unavailable (%s: %s); falling back to va", strerror(err), ubdma_last_error());
		be = UBDMA_BACKEND_VA;
	}
	if (!ctx && (err = ubdma_ctx_open(be, &ctx))) {
		row_skip(row_new("vtoiova", "ubdma", "ns/lookup", "none"), "ubdma_ctx_open: %s", strerror(err));
		return;
	}
	int phys = be == UBDMA_BACKEND_PHYS;
	struct row *r = row_new("vtoiova", "ubdma", "ns/lookup", ubdma_backend_name(ubdma_ctx_backend(ctx)));
	void *mem = map_region(size, phys);
	if (!mem) {
		row_skip(r, "cannot map %zu bytes%s: %s", size, phys ? " of 2 MiB hugepages" : "", strerror(errno));
		goto out;
	}
	if ((err = ubdma_umem_lock(ctx, mem, size, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &cookie))) {
		row_skip(r, "ubdma_umem_lock: %s: %s", strerror(err), ubdma_last_error());
		goto out_unmap;
	}
	uintptr_t *addrs = random_addrs((uintptr_t)mem, size, NADDR);
	ubdma_check(ctx, addrs, phys, (uintptr_t)mem, size);
	TIME_LOOKUPS(r, addrs, nbatch, ubdma_vtoiova(ctx, va));
	if (phys)
		row_note(r, "2 MiB hugetlb pages, IOVA = PA");
	else
		row_note(r, "no root or no hugepages: va backend on 4 KiB pages (IOVA = VA), not the phys path");
	free(addrs);
	ubdma_umem_unlock(cookie);
out_unmap:
	munmap(mem, size);
out:
	ubdma_ctx_close(ctx);
}

/* Time reps calls of ubdma_umem_lock() with flags on [mem, mem + len); the unlock is not timed. */
static void time_umem_lock(struct row *r, ubdma_ctx_t *ctx, void *mem, size_t len, size_t npages, size_t reps,
			   int flags, uint64_t *ticks)
{
	size_t n = 0;

	for (size_t i = 0; i < reps + 2; i++) {
		ubdma_umem_t *c;
		uint64_t t0 = tick_begin();
		int err = ubdma_umem_lock(ctx, mem, len, flags, &c);
		uint64_t t1 = tick_end();
		if (err) {
			row_skip(r, "ubdma_umem_lock: %s: %s", strerror(err), ubdma_last_error());
			return;
		}
		if (i >= 2) /* the first two warm the library's caches */
			ticks[n++] = t1 - t0;
		ubdma_umem_unlock(c);
	}
	row_stats(r, ticks, n, npages);
	row_note(r, "%zu pages a call, %s, pages already faulted in", npages,
		 flags & UBDMA_UMEM_WRITE ? "READ|WRITE (prefaults for write)" : "READ only");
}

/*
 * Registration cost per page: ubdma_umem_lock() on a region against mlock(2) of the region plus
 * reading its pagemap entries, the least a driver must do to learn PAs of pinned memory.  The pages
 * are faulted in beforehand, so both sides measure pinning and lookup, not first-touch faults.
 * Only the lock is timed; the unlock runs between samples.
 */
static void lock_rows(size_t reps, int have_huge)
{
	for (int huge = 0; huge < 2; huge++) {
		const char *name = huge ? "umem_lock_2m" : "umem_lock_4k";
		size_t pgsz = huge ? HUGE_2M : 4096;
		size_t npages = huge ? 32 : 1024;
		size_t len = npages * pgsz;
		/* phys refuses 4 KiB pages (their PA is not stable), so 4 KiB runs on the va backend */
		enum ubdma_backend be = huge && have_huge ? UBDMA_BACKEND_PHYS : UBDMA_BACKEND_VA;
		struct row *ru = row_new(name, "ubdma", "ns/page", ubdma_backend_name(be));
		struct row *rr = row_new(name, "ubdma-read", "ns/page", ubdma_backend_name(be));
		struct row *rm = row_new(name, "mlock+pagemap", "ns/page", "-");
		ubdma_ctx_t *ctx = NULL;
		void *mem = NULL;
		int err, fd = -1;

		if (huge && !have_huge) {
			row_skip(ru, "no 2 MiB hugepages (needs root to reserve them)");
			row_skip(rr, "no 2 MiB hugepages (needs root to reserve them)");
			row_skip(rm, "no 2 MiB hugepages (needs root to reserve them)");
			continue;
		}
		if ((err = ubdma_ctx_open(be, &ctx))) {
			row_skip(ru, "ubdma_ctx_open(%s): %s", ubdma_backend_name(be), strerror(err));
			row_skip(rr, "%s", ru->note);
			row_skip(rm, "%s", ru->note);
			continue;
		}
		if (!(mem = map_region(len, huge))) {
			row_skip(ru, "cannot map %zu bytes: %s", len, strerror(errno));
			row_skip(rr, "%s", ru->note);
			row_skip(rm, "%s", ru->note);
			ubdma_ctx_close(ctx);
			continue;
		}
		uint64_t *ticks = malloc(reps * sizeof(*ticks));
		uint64_t *pm = malloc(npages * (pgsz / 4096) * sizeof(*pm));
		if (!ticks || !pm)
			die("out of memory");
		time_umem_lock(ru, ctx, mem, len, npages, reps, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, ticks);
		time_umem_lock(rr, ctx, mem, len, npages, reps, UBDMA_UMEM_READ, ticks);
		if (!huge) {
			row_note(ru, "phys refuses 4 KiB pages (their PA is not stable), so va");
			row_note(rr, "phys refuses 4 KiB pages (their PA is not stable), so va");
		}
		if ((fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0)
			die("cannot open /proc/self/pagemap: %s", strerror(errno));
		size_t n = 0;
		for (size_t i = 0; i < reps + 2; i++) {
			uint64_t t0 = tick_begin();
			int bad = mlock(mem, len) != 0;
			if (huge) {
				/* one entry a hugepage is enough: the page is physically contiguous */
				for (size_t p = 0; p < npages && !bad; p++)
					bad = pread(fd, &pm[p], 8, (off_t)(((uintptr_t)mem + p * pgsz) / 4096 * 8)) != 8;
			} else {
				bad = bad || pread(fd, pm, npages * 8, (off_t)((uintptr_t)mem / 4096 * 8)) !=
						     (ssize_t)(npages * 8);
			}
			uint64_t t1 = tick_end();
			if (bad) {
				row_skip(rm, "mlock or pagemap read failed: %s", strerror(errno));
				break;
			}
			sink += pm[0];
			if (i >= 2)
				ticks[n++] = t1 - t0;
			munlock(mem, len);
		}
		if (!rm->skipped) {
			row_stats(rm, ticks, n, npages);
			row_note(rm, "%zu pages a call: mlock + %s pread of pagemap", npages,
				 huge ? "one 8-byte" : "a single");
		}
		close(fd);
		free(pm);
		free(ticks);
		munmap(mem, len);
		ubdma_ctx_close(ctx);
	}
}

/* ------------------------------------------------------------------ output */

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void print_json(size_t size)
{
	printf("[\n");
	for (int i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		printf("  {\"name\": ");
		json_str(r->name);
		printf(", \"impl\": ");
		json_str(r->impl);
		printf(", \"unit\": ");
		json_str(r->unit);
		if (r->skipped)
			printf(", \"median\": null, \"p99\": null, \"mean\": null");
		else
			printf(", \"median\": %.3f, \"p99\": %.3f, \"mean\": %.3f", r->median, r->p99, r->mean);
		printf(", \"samples\": %" PRIu64 ", \"per_sample\": %" PRIu64 ", \"backend\": ", r->samples, r->per);
		json_str(r->backend);
		printf(", \"size\": %zu, \"skipped\": %s, \"note\": ", size, r->skipped ? "true" : "false");
		json_str(r->note);
		printf("}%s\n", i + 1 < nrows ? "," : "");
	}
	printf("]\n");
}

static void print_csv(size_t size)
{
	printf("name,impl,unit,median,p99,mean,samples,per_sample,backend,size,skipped,note\n");
	for (int i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		printf("%s,%s,%s,", r->name, r->impl, r->unit);
		if (r->skipped)
			printf(",,,");
		else
			printf("%.3f,%.3f,%.3f,", r->median, r->p99, r->mean);
		printf("%" PRIu64 ",%" PRIu64 ",%s,%zu,%d,\"", r->samples, r->per, r->backend, size, r->skipped);
		for (const char *s = r->note; *s; s++)
			printf(*s == '"' ? "\"\"" : "%c", *s);
		printf("\"\n");
	}
}

static void print_table(size_t size)
{
	printf("bench_xlate: region %zu MiB, %d lookups a sample, TSC %.3f GHz\n", size >> 20, BATCH, tsc_per_ns);
	printf("%-13s %-18s %-8s %-10s %10s %10s %8s  %s\n", "name", "impl", "backend", "unit", "median",
	       "p99", "samples", "note");
	for (int i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		if (r->skipped)
			printf("%-13s %-18s %-8s %-10s %10s %10s %8s  %s\n", r->name, r->impl, r->backend, r->unit,
			       "skipped", "-", "-", r->note);
		else
			printf("%-13s %-18s %-8s %-10s %10.2f %10.2f %8" PRIu64 "  %s\n", r->name, r->impl,
			       r->backend, r->unit, r->median, r->p99, r->samples, r->note);
	}
}

static const struct row *find_row(const char *name, const char *impl)
{
	for (int i = 0; i < nrows; i++)
		if (!strcmp(rows[i].name, name) && !strcmp(rows[i].impl, impl) && !rows[i].skipped)
			return &rows[i];
	return NULL;
}

/* The goals of issue 3, on stderr so that --json and --csv stay machine-readable. */
static void print_goals(void)
{
	const struct row *u = find_row("vtoiova", "ubdma"), *m = find_row("vtoiova", "dpdk-memseg");

	if (!u) {
		say("goal: no ubdma lookup figure");
		return;
	}
	say("goal ubdma median <= 3 ns/lookup: %.2f ns -> %s", u->median, u->median <= 3.0 ? "MET" : "NOT MET");
	if (m)
		say("goal ubdma median <= 0.5x dpdk-memseg: %.2f / %.2f = %.3fx -> %s", u->median, m->median,
		    u->median / m->median, u->median <= 0.5 * m->median ? "MET" : "NOT MET");
	else
		say("goal ubdma <= 0.5x dpdk-memseg: no DPDK figure (skipped)");
}

/* ------------------------------------------------------------------- main */

static int parse_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);

	switch (*end) {
	case 'G': case 'g': v <<= 30; end++; break;
	case 'M': case 'm': v <<= 20; end++; break;
	case 'K': case 'k': v <<= 10; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end += *end == 'i' ? (end[1] == 'B' ? 2 : 1) : 1;
	if (*end || v == 0 || v % HUGE_2M)
		return -1;
	*out = (size_t)v;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_xlate [--json | --csv] [--size BYTES[K|M|G]] [--iters N|small]\n"
		   "  --size   region translated on each side, a multiple of 2 MiB (default 1G)\n"
		   "  --iters  timed batches of %d lookups a row (default 20000; small = 200);\n"
		   "           lock rows run N/100 calls (at least 20)\n",
		BATCH);
}

int main(int argc, char **argv)
{
	enum { TABLE, JSON, CSV } fmt = TABLE;
	size_t size = (size_t)1 << 30, nbatch = 20000;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			fmt = JSON;
		else if (!strcmp(argv[i], "--csv"))
			fmt = CSV;
		else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
			if (parse_size(argv[++i], &size)) {
				fprintf(stderr, "bench_xlate: bad --size %s (a multiple of 2 MiB)\n", argv[i]);
				return 2;
			}
		} else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
			i++;
			nbatch = !strcmp(argv[i], "small") ? 200 : strtoul(argv[i], NULL, 0);
			if (nbatch < 1) {
				fprintf(stderr, "bench_xlate: bad --iters %s\n", argv[i]);
				return 2;
			}
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	main_pid = getpid();
	atexit(hp_restore);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	/* pin to CPU 0, as the EAL children are (-l 0), so that both sides run on the same core */
	cpu_set_t cpus;
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
	calibrate();

	/* the children run first and give their pages back before the parent takes its own, so the
	 * peak is one region plus slack for EAL's own heap and the 64 MiB of the lock rows */
	long want = (long)(size / HUGE_2M) + 64;
	long avail = hp_reserve(want);
	int have_huge = avail >= want && geteuid() == 0;
	if (!have_huge)
		say("%ld free 2 MiB hugepages of %ld wanted%s: ubdma falls back to the va backend", avail, want,
		    geteuid() ? " and not root" : "");

	dpdk_run(0, size, nbatch);
	dpdk_run(1, size, nbatch);
	ubdma_lookup(size, nbatch, have_huge);
	lock_rows(nbatch / 100 > 20 ? nbatch / 100 : 20, have_huge);

	/* ubdma first, then DPDK, as the issue lists them */
	struct row sorted[16];
	int ns = 0;
	const char *order[] = { "ubdma", "dpdk-memseg", "dpdk-memseg-pa", "dpdk-virt2iova-pa", "dpdk-virt2iova-va" };
	for (size_t o = 0; o < sizeof(order) / sizeof(order[0]); o++)
		for (int i = 0; i < nrows; i++)
			if (!strcmp(rows[i].name, "vtoiova") && !strcmp(rows[i].impl, order[o]))
				sorted[ns++] = rows[i];
	for (int i = 0; i < nrows; i++)
		if (strcmp(rows[i].name, "vtoiova"))
			sorted[ns++] = rows[i];
	memcpy(rows, sorted, (size_t)ns * sizeof(rows[0]));
	nrows = ns;

	if (fmt == JSON)
		print_json(size);
	else if (fmt == CSV)
		print_csv(size);
	else
		print_table(size);
	fflush(stdout);
	print_goals();
	hp_restore();
	return 0;
}
