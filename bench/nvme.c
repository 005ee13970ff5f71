/*
 * bench_nvme - 4 KiB random reads and writes through libubdma_nvme, one core, one queue pair,
 * as SPDK's nvme perf and fio measure them: IOPS, MiB/s, guest CPU seconds and the latency
 * distribution (submission to completion callback) of each workload.
 *
 * Runs in the test-bed guest (bench/nvme.sh boots it) with the NVMe on vfio-pci.  Prints one line
 * a workload, "NVBENCH {json}", that bench/nvme_report.py reads from the console log:
 *   name, impl, iops, mib_s, cpu_s (this process: user + system), busy_s (every guest CPU: CPUs x
 *   wall time - idle time from /proc/stat, what the I/O cost the machine), iops_per_cpu (iops * seconds / busy_s), lat_us
 *   {p50, p99, p99.9, p99.99, mean, max}, work_ns_per_io (polled: time of the loop's passes that
 *   submitted or completed something, per I/O: the driver's work without the waiting; -1 with
 *   --irq), hist [[upper bound us, count], ...] (log bins).
 * The hot loop makes no system call: submissions, polling and TSC reads only.  Above
 * QD 1 the queue pair is in batch mode: the submissions of one pass ring the doorbell once.
 *
 * usage: bench_nvme [--bdf BDF] [--time SECS] [--range MiB] [--workloads LIST] [--irq | --hybrid POLLS]
 *                   [--round N]
 *   LIST: comma separated NAME_qdN or NAME_qdN_jobsJ with NAME randread or randwrite (_jobsJ: J
 *   threads, up to 4, thread j on CPU j with its own queue pair at QD N, their windows together:
 *   one row of their sum, as fio's numjobs with group_reporting) (default: randread_qd1,
 *   randread_qd8,randread_qd32,randwrite_qd1,randwrite_qd32); --irq waits on the MSI-X eventfd
 *   instead of polling (impl "ubdma-irq"); --hybrid POLLS polls, and after POLLS polls that found
 *   nothing sleeps on the eventfd (impl "ubdma-hybrid"); --round tags the output lines
 *   (bench/nvme-guest.sh runs each workload once a round, interleaved with fio).  The pseudo-workload poll_idle prints
 *   "NVPOLL {json}": what one ubdma_nvme_poll() of an idle pair costs (each of 2^20 polls timed
 *   with the TSC: mean, median, and the periodic check's share, the 1 poll in NVME_CHECK_POLLS that
 *   runs it), beside one CLOCK_MONOTONIC / CLOCK_MONOTONIC_COARSE read and one empty eventfd read,
 *   the parts the check may use (issue 18: the removal check's cost on the hot path).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif
#include <unistd.h>

#include <ubdma/ubdma.h>
#include <ubdma/nvme.h>

#define BS 4096u
#define MAXQD 128
#define MAXLAT (4u << 20)
#define MAXJOBS 4

struct slot {
	void *buf;
	uint64_t t0;
	int next;
};

/* One job thread's state (each thread its own: the hot loop touches nothing shared). */
static _Thread_local struct {
	ubdma_nvme_qpair_t *qp;
	uint32_t nsid, blk;
	uint64_t nblocks; /* 4 KiB blocks in the range */
	int write;
	struct slot slots[MAXQD];
	int free;
	uint32_t *lat; /* ns */
	uint64_t nlat, ios, errors;
	uint64_t rng;
} b;

/* _jobsJ: what the job threads share, and each one's results for the row (job 0 adds them up) */
static struct {
	int n;			/* threads of the current workload */
	pthread_barrier_t bar;	/* after the warm-ups, after the windows */
	ubdma_nvme_t *c;
	uint32_t nsid, blk;	/* the namespace and range of every job (job 0's) */
	uint64_t nblocks;
	char *mem;		/* MAXJOBS x MAXQD buffers, registered */
	struct { uint32_t *lat; uint64_t nlat, ios, errors, busy_ticks; int rc; } res[MAXJOBS];
} jobs = { .n = 1 };

static void jobs_sync(void)
{
	if (jobs.n > 1)
		pthread_barrier_wait(&jobs.bar);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Time stamps of the hot loop.  Under TCG the guest's clocksource is the HPET (the TSC is not
 * marked invariant), which the vDSO cannot read: each clock_gettime() is a system call plus an
 * MMIO exit into QEMU under the lock the emulated NVMe needs too, dearer than the I/O path being
 * measured.  So the loop reads the TSC, as SPDK's spdk_get_ticks() does, at a rate measured
 * against CLOCK_MONOTONIC (the program is pinned to one CPU, so one TSC is read); fio is given
 * --clocksource=cpu for the same reason.
 */
static double ns_per_tick;

static inline uint64_t ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __rdtsc();
#else
	return mono_ns();
#endif
}

static inline uint64_t now_ns(void)
{
	return (uint64_t)((double)ticks() * ns_per_tick);
}

static void clock_calibrate(void)
{
#if defined(__x86_64__) || defined(__i386__)
	uint64_t t0 = mono_ns(), c0 = __rdtsc();
	struct timespec d = { 0, 100000000 };

	nanosleep(&d, NULL);
	uint64_t t1 = mono_ns(), c1 = __rdtsc();
	ns_per_tick = c1 > c0 ? (double)(t1 - t0) / (double)(c1 - c0) : 1.0;
#else
	ns_per_tick = 1.0;
#endif
}

static inline uint64_t rnd(void)
{
	b.rng ^= b.rng << 13;
	b.rng ^= b.rng >> 7;
	b.rng ^= b.rng << 17;
	return b.rng;
}

static void done(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct slot *s = arg;
	uint64_t d = now_ns() - s->t0;

	if (cpl->error)
		b.errors++;
	if (b.nlat < MAXLAT)
		b.lat[b.nlat++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
	b.ios++;
	s->next = b.free;
	b.free = (int)(s - b.slots);
}

static int submit(void)
{
	int i = b.free;
	struct slot *s = &b.slots[i];
	uint64_t lba = (rnd() % b.nblocks) * b.blk;
	int rc;

	s->t0 = now_ns();
	rc = b.write ? ubdma_nvme_write(b.qp, b.nsid, s->buf, lba, b.blk, done, s)
		     : ubdma_nvme_read(b.qp, b.nsid, s->buf, lba, b.blk, done, s);
	if (!rc)
		b.free = s->next;
	return rc;
}

/*
 * Idle time of every guest CPU, seconds.  Busy time is then CPUs x wall - idle: the idle and
 * iowait columns of /proc/stat come from the NO_HZ idle clock (measured at each idle entry and
 * exit, interrupts excluded), while the user/system columns are sampled at the tick, and under
 * TCG that sampling missed half of fio's own CPU time (its rusage).  Both sides of the benchmark
 * (this program and bench/nvme-guest.sh for fio) count busy time this way.
 */
static double idle_s(void)
{
	FILE *f = fopen("/proc/stat", "r");
	unsigned long long v[5] = { 0 };
	long hz = sysconf(_SC_CLK_TCK);

	if (!f)
		return 0;
	/* user nice system idle iowait */
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4]) != 5)
		v[3] = v[4] = 0;
	fclose(f);
	return (double)(v[3] + v[4]) / (double)(hz > 0 ? hz : 100);
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static int cmp32(const void *a, const void *c)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)c;
	return x < y ? -1 : x > y;
}

static double pct(double p)
{
	if (!b.nlat)
		return 0;
	uint64_t i = (uint64_t)(p / 100.0 * (double)b.nlat);
	if (i >= b.nlat)
		i = b.nlat - 1;
	return b.lat[i] / 1000.0;
}

/*
 * --hybrid N: poll until something completes, at most N polls that find nothing, then sleep on the
 * MSI-X eventfd (ubdma_nvme_wait()): a completion that comes soon costs no system call, a late
 * one no spinning (the controller is opened with interrupts, so each completion also raises one).
 */
static unsigned hybrid;

/* This thread's pair: the workload's slots and batch mode, and 0.2 s of I/O not counted. */
static void warm_up(const char *name, int qd)
{
	b.write = !strncmp(name, "randwrite", 9);
	b.free = 0;
	for (int i = 0; i < qd; i++)
		b.slots[i].next = i + 1 < qd ? i + 1 : -1;
	b.nlat = b.ios = b.errors = 0;
	/* above QD 1, submissions made in one go share one tail doorbell (rung by the poll) */
	ubdma_nvme_qpair_batch(b.qp, qd > 1);

	/* warm up a little (not counted) */
	uint64_t end = now_ns() + 200000000ull;
	while (now_ns() < end) {
		while (b.free >= 0 && !submit())
			;
		ubdma_nvme_poll(b.qp, 0, NULL);
	}
	ubdma_nvme_drain(b.qp, 10000);
	b.nlat = b.ios = 0;
}

/* secs of I/O on this thread's pair, then its drain: 0, or a submission's error; the ticks of the
 * passes that did work in *busy */
static int io_window(double secs, int irq, uint64_t *busy)
{
	uint64_t end = now_ns() + (uint64_t)(secs * 1e9);
	uint64_t t, busy_ticks = 0;
	int err = 0;
	while (!err && (t = now_ns()) < end) {
		uint64_t k0 = ticks();
		unsigned subs = 0, n = 0;
		while (b.free >= 0) {
			int rc = submit();
			if (rc) {
				if (rc != EAGAIN && rc != ENOMEM) {
					fprintf(stderr, "submit: %s: %s\n", strerror(rc), ubdma_nvme_last_error());
					err = rc;
				}
				break;
			}
			subs++;
		}
		if (hybrid) {
			for (unsigned k = 0; !n && k < hybrid; k++)
				ubdma_nvme_poll(b.qp, 0, &n);
			if (!n)
				ubdma_nvme_wait(b.qp, 100, &n);
		} else if (irq)
			ubdma_nvme_wait(b.qp, 100, NULL);
		else
			ubdma_nvme_poll(b.qp, 0, &n);
		/* the passes that did work, as testpmd's --record-core-cycles counts bursts (bench/nic.sh):
		 * a pass that only found the queue empty is waiting for the device, not driver work */
		if (!hybrid && (subs || n))
			busy_ticks += ticks() - k0;
	}
	ubdma_nvme_drain(b.qp, 10000);
	*busy = busy_ticks;
	return err;
}

struct job_arg {
	const char *name;
	int qd, irq, j;
	double secs;
};

/* A job thread past the first: its own pair on its CPU, the window in step with job 0's. */
static void *job_main(void *arg)
{
	const struct job_arg *a = arg;
	int j = a->j;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(j, &set);
	sched_setaffinity(0, sizeof(set), &set);
	b.nsid = jobs.nsid;
	b.blk = jobs.blk;
	b.nblocks = jobs.nblocks;
	b.rng = 0x9e3779b97f4a7c15ull * (uint64_t)(j + 1);
	b.lat = malloc(MAXLAT * sizeof(*b.lat));
	int rc = b.lat ? ubdma_nvme_qpair_create(jobs.c, 0, &b.qp) : ENOMEM;
	if (rc)
		fprintf(stderr, "job %d: queue pair: %s\n", j, ubdma_nvme_last_error());
	for (int i = 0; i < MAXQD; i++)
		b.slots[i].buf = jobs.mem + ((size_t)j * MAXQD + (size_t)i) * BS;
	if (!rc)
		warm_up(a->name, a->qd);
	jobs_sync();
	uint64_t busy = 0;
	if (!rc)
		rc = io_window(a->secs, a->irq, &busy);
	jobs.res[j].lat = b.lat;
	jobs.res[j].nlat = b.nlat;
	jobs.res[j].ios = b.ios;
	jobs.res[j].errors = b.errors;
	jobs.res[j].busy_ticks = busy;
	jobs.res[j].rc = rc;
	jobs_sync();
	jobs_sync(); /* job 0 has added up the rows: the pair may go */
	if (b.qp)
		ubdma_nvme_qpair_destroy(b.qp);
	return NULL;
}

static int run(const char *name, int qd, double secs, int irq, int round)
{
	warm_up(name, qd);
	jobs_sync();
	double c0 = cpu_s(), i0 = idle_s();
	uint64_t m0 = mono_ns(), busy_ticks = 0;
	int err = io_window(secs, irq, &busy_ticks);
	jobs_sync();
	double wall = (double)(mono_ns() - m0) / 1e9;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	double cpu = cpu_s() - c0, busy = (double)(ncpu > 0 ? ncpu : 1) * wall - (idle_s() - i0);
	if (busy < cpu)
		busy = cpu; /* the idle clock counts in 1/USER_HZ steps; rusage is finer */
	/* the other jobs' I/Os, latencies and work join job 0's: one row, as fio's group_reporting */
	for (int j = 1; j < jobs.n; j++) {
		b.ios += jobs.res[j].ios;
		b.errors += jobs.res[j].errors;
		busy_ticks += jobs.res[j].busy_ticks;
		err = err ? err : jobs.res[j].rc;
		uint64_t k = jobs.res[j].nlat < MAXLAT - b.nlat ? jobs.res[j].nlat : MAXLAT - b.nlat;
		memcpy(b.lat + b.nlat, jobs.res[j].lat, k * sizeof(*b.lat));
		b.nlat += k;
	}
	jobs_sync();
	if (err)
		return err;

	qsort(b.lat, b.nlat, sizeof(*b.lat), cmp32);
	double iops = (double)b.ios / wall, mean = 0;
	for (uint64_t i = 0; i < b.nlat; i++)
		mean += b.lat[i];
	mean = b.nlat ? mean / (double)b.nlat / 1000.0 : 0;
	printf("NVBENCH {\"name\":\"%s\",\"impl\":\"%s\",\"round\":%d,\"unit\":\"IOPS\",\"qd\":%d,\"ios\":%" PRIu64
	       ",\"errors\":%" PRIu64 ",\"seconds\":%.3f,\"iops\":%.1f,\"mib_s\":%.2f,\"cpu_s\":%.3f,\"busy_s\":%.3f,"
	       "\"iops_per_cpu\":%.1f,\"lat_us\":{\"p50\":%.2f,\"p99\":%.2f,\"p99.9\":%.2f,\"p99.99\":%.2f,"
	       "\"mean\":%.2f,\"max\":%.2f},\"work_ns_per_io\":%.1f,\"hist\":[",
	       name, hybrid ? "ubdma-hybrid" : irq ? "ubdma-irq" : "ubdma", round, qd, b.ios, b.errors, wall, iops, iops * BS / 1048576.0, cpu, busy,
	       busy > 0 ? (double)b.ios / busy : 0, pct(50), pct(99), pct(99.9), pct(99.99), mean,
	       b.nlat ? b.lat[b.nlat - 1] / 1000.0 : 0,
	       !irq && !hybrid && b.ios ? (double)busy_ticks * ns_per_tick / (double)b.ios : -1.0);
	/* log bins, 20 a decade, from 1 us */
	uint64_t i = 0;
	int first = 1;
	for (double ub = 1.0; i < b.nlat; ub *= 1.12201845) {
		uint64_t n = 0;
		while (i < b.nlat && b.lat[i] / 1000.0 <= ub) {
			n++;
			i++;
		}
		if (n) {
			printf("%s[%.2f,%" PRIu64 "]", first ? "" : ",", ub, n);
			first = 0;
		}
	}
	printf("]}\n");
	fflush(stdout);
	return b.errors ? EIO : 0;
}

static int cmp64(const void *a, const void *c)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)c;
	return x < y ? -1 : x > y;
}

/* TSC ticks of one call of each of @n calls of EXPR, as ns: the mean */
#define TIMED_NS(n, expr)                                                                                      \
	({                                                                                                     \
		uint64_t c0_ = ticks();                                                                      \
		for (unsigned k_ = 0; k_ < (n); k_++)                                                          \
			expr;                                                                                  \
		(double)(ticks() - c0_) * ns_per_tick / (double)(n);                                        \
	})

/*
 * The cost of polling an idle pair, call by call.  The driver runs its periodic check (timeouts,
 * and at most every 10 ms CSTS and the VFIO request and error eventfds) once every
 * NVME_CHECK_POLLS (1024) polls: the calls at the one phase modulo 1024 whose times add up to
 * the most are those calls (a host's stray delays fall on every phase alike), and their excess
 * over the median, spread over every poll, is what the check adds to each poll.
 */
static int poll_idle(int round)
{
	enum { N = 1u << 20, TOP = N / 1024 };
	uint64_t *cyc = malloc(N * sizeof(*cyc));

	if (!cyc)
		return ENOMEM;
	for (unsigned i = 0; i < 4096; i++)
		ubdma_nvme_poll(b.qp, 0, NULL);
	for (unsigned i = 0; i < N; i++) {
		uint64_t c0 = ticks();
		ubdma_nvme_poll(b.qp, 0, NULL);
		cyc[i] = ticks() - c0;
	}
	double sum = 0, top = 0;
	static double phase[1024];
	memset(phase, 0, sizeof(phase));
	for (unsigned i = 0; i < N; i++) {
		sum += (double)cyc[i];
		phase[i % 1024] += (double)cyc[i];
	}
	for (unsigned p = 0; p < 1024; p++)
		top = phase[p] > top ? phase[p] : top;
	qsort(cyc, N, sizeof(*cyc), cmp64);
	double med = (double)cyc[N / 2], mean = sum / N;
	double check = (top - TOP * med) / N; /* ticks a poll */

	struct timespec ts;
	uint64_t v;
	int efd = eventfd(0, EFD_NONBLOCK);
	double mono = TIMED_NS(1000, clock_gettime(CLOCK_MONOTONIC, &ts));
	double coarse = TIMED_NS(1000, clock_gettime(CLOCK_MONOTONIC_COARSE, &ts));
	double rd = efd < 0 ? -1 : TIMED_NS(1000, (void)!read(efd, &v, sizeof(v)));
	if (efd >= 0)
		close(efd);
	printf("NVPOLL {\"name\":\"poll_idle\",\"impl\":\"ubdma\",\"round\":%d,\"unit\":\"ns\",\"polls\":%u,"
	       "\"median\":%.1f,\"mean\":%.1f,\"p99\":%.1f,\"check_calls_mean\":%.1f,\"check_per_poll\":%.2f,"
	       "\"check_share\":%.4f,\"clock_monotonic\":%.1f,\"clock_monotonic_coarse\":%.1f,\"eventfd_read\":%.1f}\n",
	       round, (unsigned)N, med * ns_per_tick, mean * ns_per_tick, (double)cyc[N / 100 * 99] * ns_per_tick,
	       top / TOP * ns_per_tick, check * ns_per_tick, check / mean, mono, coarse, rd);
	fflush(stdout);
	free(cyc);
	return 0;
}

int main(int argc, char **argv)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	const char *wl = "randread_qd1,randread_qd8,randread_qd32,randwrite_qd1,randwrite_qd32";
	double secs = 3;
	unsigned range_mib = 32;
	int irq = 0, round = 1, rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--bdf") && i + 1 < argc)
			bdf = argv[++i];
		else if (!strcmp(argv[i], "--time") && i + 1 < argc)
			secs = atof(argv[++i]);
		else if (!strcmp(argv[i], "--range") && i + 1 < argc)
			range_mib = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--workloads") && i + 1 < argc)
			wl = argv[++i];
		else if (!strcmp(argv[i], "--round") && i + 1 < argc)
			round = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--irq"))
			irq = 1;
		else if (!strcmp(argv[i], "--hybrid") && i + 1 < argc && atoi(argv[i + 1]) > 0)
			irq = 1, hybrid = (unsigned)atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--bdf BDF] [--time SECS] [--range MiB] [--workloads LIST] [--irq | --hybrid POLLS] [--round N]\n",
				argv[0]);
			return 2;
		}
	}
	if (!bdf || !*bdf) {
		fprintf(stderr, "no NVMe: give --bdf or set UBDMA_VM_NVME\n");
		return 77;
	}
	/* one core: CPU 0, as fio --cpus_allowed=0 */
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof(set), &set);
	clock_calibrate();

	ubdma_ctx_t *ctx;
	if ((rc = ubdma_ctx_open(UBDMA_BACKEND_VFIO, &ctx))) {
		fprintf(stderr, "ubdma_ctx_open: %s\n", ubdma_last_error());
		return 1;
	}
	ubdma_nvme_t *c;
	/* a queue pair a job thread: as many as the most jobs a workload asks */
	unsigned npairs = 1;
	for (const char *p = strstr(wl, "_jobs"); p; p = strstr(p + 5, "_jobs"))
		if ((unsigned)atoi(p + 5) > npairs)
			npairs = (unsigned)atoi(p + 5);
	struct ubdma_nvme_opts o = { .size = sizeof(o), .ctx = ctx, .io_queues = npairs, .queue_entries = 256, .interrupts = irq };
	if ((rc = ubdma_nvme_open(bdf, &o, &c))) {
		fprintf(stderr, "ubdma_nvme_open(%s): %s: %s\n", bdf, strerror(rc), ubdma_nvme_last_error());
		return 1;
	}
	struct ubdma_nvme_ns_info ns;
	if ((rc = ubdma_nvme_ns_next(c, 0, &b.nsid)) || (rc = ubdma_nvme_ns(c, b.nsid, &ns)) ||
	    (rc = ubdma_nvme_qpair_create(c, 0, &b.qp))) {
		fprintf(stderr, "namespace / queue pair: %s\n", ubdma_nvme_last_error());
		return 1;
	}
	b.blk = BS / ns.lba_size;
	b.nblocks = ((uint64_t)range_mib << 20) / BS;
	if (b.nblocks > ns.size / BS)
		b.nblocks = ns.size / BS;
	b.rng = 0x9e3779b97f4a7c15ull;
	b.lat = malloc(MAXLAT * sizeof(*b.lat));
	/* the buffers: registered memory (a 2 MiB hugepage when there is one), used in place; MAXQD
	 * a job */
	size_t len = MAXJOBS * MAXQD * BS;
	void *mem = mmap(NULL, 2u << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (mem == MAP_FAILED)
		mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ubdma_umem_t *cookie;
	if (!b.lat || mem == MAP_FAILED ||
	    (rc = ubdma_umem_lock(ctx, mem, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &cookie))) {
		fprintf(stderr, "buffers: %s\n", ubdma_last_error());
		return 1;
	}
	memset(mem, 0xa5, len);
	for (int i = 0; i < MAXQD; i++)
		b.slots[i].buf = (char *)mem + (size_t)i * BS;
	jobs.c = c;
	jobs.nsid = b.nsid;
	jobs.blk = b.blk;
	jobs.nblocks = b.nblocks;
	jobs.mem = mem;
	const struct ubdma_nvme_info *in = ubdma_nvme_info(c);
	printf("# bench_nvme: %s '%s' fr '%s', namespace %u (%u-byte blocks), range %" PRIu64 " MiB, %.1f s a "
	       "workload, %s completions, CPU 0\n", bdf, in->mn, in->fr, b.nsid, ns.lba_size,
	       b.nblocks * BS >> 20, secs, hybrid ? "hybrid (polls, then the MSI-X eventfd)" : irq ? "MSI-X (eventfd)" : "polled");

	char *list = strdup(wl), *save = NULL;
	int fails = 0;
	for (char *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		if (!strcmp(w, "poll_idle")) {
			fails += poll_idle(round) != 0;
			continue;
		}
		const char *q = strstr(w, "_qd"), *jp = strstr(w, "_jobs");
		int qd = q ? atoi(q + 3) : 1, nj = jp ? atoi(jp + 5) : 1;
		if (qd < 1 || qd > MAXQD || nj < 1 || nj > MAXJOBS || nj > sysconf(_SC_NPROCESSORS_ONLN) ||
		    (strncmp(w, "randread", 8) && strncmp(w, "randwrite", 9))) {
			fprintf(stderr, "bad workload '%s' (at most %d jobs, one a CPU)\n", w, MAXJOBS);
			return 2;
		}
		pthread_t th[MAXJOBS];
		struct job_arg ja[MAXJOBS];
		jobs.n = nj;
		if (nj > 1)
			pthread_barrier_init(&jobs.bar, NULL, (unsigned)nj);
		for (int j = 1; j < nj; j++) {
			ja[j] = (struct job_arg){ w, qd, irq, j, secs };
			if ((rc = pthread_create(&th[j], NULL, job_main, &ja[j]))) {
				fprintf(stderr, "job thread %d: %s\n", j, strerror(rc));
				return 1;
			}
		}
		fails += run(w, qd, secs, irq, round) != 0;
		for (int j = 1; j < nj; j++) {
			pthread_join(th[j], NULL);
			free(jobs.res[j].lat);
		}
		if (nj > 1)
			pthread_barrier_destroy(&jobs.bar);
		jobs.n = 1;
	}
	free(list);
	ubdma_nvme_qpair_destroy(b.qp);
	ubdma_umem_unlock(cookie);
	rc = ubdma_nvme_close(c);
	ubdma_ctx_close(ctx);
	return fails || rc ? 1 : 0;
}
