/*
 * nic_bench - the engine shared by bench_e1000e and bench_virtio_net: libubdma's NIC driver
 * beside DPDK 22.11 testpmd on the same devices of the test-bed guest, measured the same way.
 * Run by bench/nic.sh (through bench/e1000e.sh and bench/virtio_net.sh), which boots the guest
 * with a TX NIC (QEMU user network, no capture) and an RX NIC fed either by a generator on the
 * guest's clock (--gen: bench/nic_gen.c drives an 82574L on a QEMU hub with the RX NIC; started
 * once the peer under test is ready, stopped after it) or by a flooding host peer on 127.0.0.1
 * (drivers/e1000e/test/nic_peer.py, bench mode, asked for the frame size through the RX NIC).
 *
 *   PROG --tx BDF --rx BDF [--seconds S] [--reps R] [--rows tx64,rx64,...] [--testpmd PATH]
 *        [--pmd SO]... [--gen BDF --gen-prog PATH [--gen-step N]]
 *
 * For each of tx64, tx1514, rx64, rx1514 (frame length without FCS) and each repetition: ubdma
 * (one thread, bursts of 32, polling) then testpmd (--forward-mode=txonly|rxonly, --burst=32,
 * the driver's extra arguments), both on the same CPU: CPU 1 with two CPUs (testpmd -l 0-1), CPU
 * 0 on a one-CPU guest (testpmd --lcores=0@0,1@0: its main lcore sleeps beside the forwarding
 * one; bench/nic.sh boots one CPU under -icount, docs/virtio-net.md).  Rates are taken over
 * windows of about 0.5 s after a warm-up window: packets / guest time; guest CPU per packet = CPU
 * time of the process (getrusage for ubdma, /proc/PID/stat for testpmd) / packets.  One line a
 * row:
 *   UBDMA-BENCH name=tx64 impl=ubdma pps=M pps_p99=P cpu_ns_per_pkt=C cpu_p99=Q windows=W
 * (medians and 99th percentiles over the windows).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nic_bench.h"
#include "bench_time.h"

#define BURST NIC_BENCH_BURST
#define MAXW 256
#define WINDOW_S 0.5

struct sample {
	double t, cpu;
	uint64_t pkts;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The guest's time stamp counter: under -icount it counts guest instructions, not host time. */
static inline uint64_t tsc(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __builtin_ia32_rdtsc();
#else
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

static double self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e-6;
}

static double pct(double *v, int n, double p)
{
	int i;

	qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
	i = (int)(p * (n - 1) + 0.5);
	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* Rows from samples: windows 1.. (window 0 is the warm-up). */
static void report(const char *name, const char *impl, const struct sample *s, int n, double busy)
{
	double pps[MAXW], cpu[MAXW];
	int w = 0;

	for (int i = 2; i < n; i++) {
		uint64_t dp = s[i].pkts - s[i - 1].pkts;

		if (dp == 0 || s[i].t <= s[i - 1].t)
			continue;
		pps[w] = (double)dp / (s[i].t - s[i - 1].t);
		cpu[w] = (s[i].cpu - s[i - 1].cpu) * 1e9 / (double)dp;
		w++;
	}
	if (w == 0) {
		printf("UBDMA-BENCH name=%s impl=%s windows=0\n", name, impl);
		return;
	}
	printf("UBDMA-BENCH name=%s impl=%s pps=%.0f pps_p99=%.0f cpu_ns_per_pkt=%.0f cpu_p99=%.0f "
	       "busy_cyc_per_pkt=%.0f windows=%d\n", name, impl, pct(pps, w, 0.5), pct(pps, w, 0.99),
	       pct(cpu, w, 0.5), pct(cpu, w, 0.99), busy, w);
}

/* 64 / 1514-byte IPv4 UDP frames like testpmd's txonly (198.18.0.1:9 -> 198.18.0.2:9). */
static void frame_template(uint8_t *b, unsigned len, const uint8_t src[6])
{
	unsigned ipl = len - 14, sum = 0;

	memset(b, 0, 42);
	b[0] = 0x02; /* 02:00:00:00:00:00 */
	memcpy(b + 6, src, 6);
	b[12] = 0x08, b[13] = 0x00;
	b[14] = 0x45, b[16] = (uint8_t)(ipl >> 8), b[17] = (uint8_t)ipl;
	b[22] = 64, b[23] = 17;
	b[26] = 198, b[27] = 18, b[28] = 0, b[29] = 1;
	b[30] = 198, b[31] = 18, b[32] = 0, b[33] = 2;
	for (int i = 14; i < 34; i += 2)
		sum += (unsigned)b[i] << 8 | b[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	b[24] = (uint8_t)(~sum >> 8), b[25] = (uint8_t)~sum;
	b[35] = 9, b[37] = 9;
	b[38] = (uint8_t)((ipl - 20) >> 8), b[39] = (uint8_t)(ipl - 20);
}

/* The CPU both peers run on: 1 where there are two (testpmd's forwarding lcore of -l 0-1), else 0. */
static int bench_cpu(void)
{
	return sysconf(_SC_NPROCESSORS_ONLN) > 1;
}

/* Ask the host peer to flood frames of @len bytes (0 stops) through the RX NIC. */
static void peer_size(const struct nic_bench_ops *ops, void *nic, unsigned len)
{
	uint8_t f[64] = { 0 }, mac[6];

	ops->mac(nic, mac);
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x88, f[13] = 0xb6;
	memcpy(f + 14, "SZxx", 4);
	f[18] = (uint8_t)(len >> 8), f[19] = (uint8_t)len;
	ops->send_ctrl(nic, f);
}

/* The receive rows' generator (bench/nic_gen.c), when --gen names one. */
static const char *gen_bdf, *gen_prog;
/* Offered load: GEN_STEP frames every GEN_PERIOD_US of guest time, 4 M frames a guest second,
 * above what either peer takes on either NIC (at most 2.7 M: 92 guest instructions a frame), so
 * both are bound by their own code; QEMU queues 10,000 frames at most for a full ring, the rest
 * of a period's frames are dropped before reaching the NIC. */
#define GEN_PERIOD_US 1000
static unsigned gen_step = 4000;

/* Start the generator with frames of @len bytes; its pid once it said it is ready, else -1. */
static pid_t gen_start(unsigned len)
{
	char l[16], per[16], st[16], line[256];
	int pfd[2];
	pid_t pid;
	FILE *f;

	if (!gen_bdf || pipe(pfd))
		return -1;
	snprintf(l, sizeof(l), "%u", len);
	snprintf(per, sizeof(per), "%d", GEN_PERIOD_US);
	snprintf(st, sizeof(st), "%u", gen_step);
	if ((pid = fork()) == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		execl(gen_prog, gen_prog, gen_bdf, l, per, st, (char *)NULL);
		fprintf(stderr, "bench: %s: %s\n", gen_prog, strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	if (pid < 0 || !f || !fgets(line, sizeof(line), f) || !strstr(line, "nic_gen: ready")) {
		fprintf(stderr, "bench: the generator on %s did not start\n", gen_bdf);
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f); /* it writes nothing more */
	return pid;
}

static void gen_stop(pid_t pid)
{
	int status;

	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	if (waitpid(pid, &status, 0) == pid && (!WIFEXITED(status) || WEXITSTATUS(status)))
		fprintf(stderr, "bench: the generator ended with status %d\n", status);
}

static void run_ubdma(const struct nic_bench_ops *ops, const char *bdf, int tx, unsigned len,
		      double seconds, const char *name)
{
	pid_t gen = -1;
	struct sample s[MAXW];
	uint8_t tmpl[64], mac[6];
	uint64_t pkts = 0, iter = 0, busy = 0, busy_pkts = 0, nbusy = 0;
	double t0, next;
	void *nic;
	int ns = 0;

	if (!(nic = ops->open(bdf)))
		return;
	ops->mac(nic, mac);
	frame_template(tmpl, len, mac);
	if (!tx && gen_bdf) {
		gen = gen_start(len);
	} else if (!tx) {
		peer_size(ops, nic, len);
		/* drain what the peer queued before (other sizes) */
		for (double end = now() + 0.3; now() < end;)
			ops->rx(nic);
	}
	t0 = now();
	next = t0;
	while (ns < MAXW) {
		uint64_t c0 = tsc();
		unsigned n = tx ? ops->tx(nic, tmpl, len) : ops->rx(nic);

		/* busy cycles as testpmd's --record-core-cycles counts them: every transmit burst
		 * that had frames to send, every receive burst that brought some */
		if (n || tx) {
			busy += tsc() - c0;
			busy_pkts += n;
			nbusy++;
		}
		pkts += n;
		if ((++iter & 15) == 0) {
			double t = now();

			if (t >= next) {
				s[ns++] = (struct sample){ t, self_cpu(), pkts };
				next = t + WINDOW_S;
				if (t - t0 >= seconds + WINDOW_S)
					break;
			}
		}
	}
	gen_stop(gen);
	if (!tx) /* how often a poll found nothing: the feed's share in the rate */
		printf("UBDMA-BENCH-POLLS name=%s bursts=%llu busy=%llu\n", name,
		       (unsigned long long)iter, (unsigned long long)nbusy);
	ops->close(nic);
	report(name, "ubdma", s, ns, busy_pkts ? (double)busy / (double)busy_pkts : -1);
}
/* /proc/PID/stat utime + stime in seconds. */
static double proc_cpu(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")))
		return 0;
	if (!fgets(buf, sizeof(buf), f) || !(p = strrchr(buf, ')'))) {
		fclose(f);
		return 0;
	}
	fclose(f);
	/* fields after ")": state(3) ... utime(14) stime(15) */
	sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void run_testpmd(const struct nic_bench_ops *ops, const char *testpmd, char **pmds, int npmd,
			const char *bdf, int tx, unsigned len, double seconds, const char *name)
{
	char txpkts[32], line[512];
	char *argv[64];
	int argc = 0, pfd[2], status;
	struct sample s[MAXW];
	uint64_t pkts = 0;
	int ns = 0, started = 0;
	double t_start = 0, deadline, busy = -1;
	pid_t pid, gen = -1;
	FILE *out;

	snprintf(txpkts, sizeof(txpkts), "--txpkts=%u", len);
	argv[argc++] = (char *)testpmd;
	if (bench_cpu()) {
		argv[argc++] = "-l";
		argv[argc++] = "0-1";
	} else {
		argv[argc++] = "--lcores=0@0,1@0";
	}
	argv[argc++] = "-n";
	argv[argc++] = "1";
	argv[argc++] = "--iova-mode=va";
	argv[argc++] = "--no-telemetry";
	argv[argc++] = "-a";
	argv[argc++] = (char *)bdf;
	for (int i = 0; i < npmd; i++) {
		argv[argc++] = "-d";
		argv[argc++] = pmds[i];
	}
	argv[argc++] = "--";
	argv[argc++] = tx ? "--forward-mode=txonly" : "--forward-mode=rxonly";
	argv[argc++] = txpkts;
	argv[argc++] = "--stats-period=1";
	argv[argc++] = "--nb-cores=1";
	argv[argc++] = "--rxq=1";
	argv[argc++] = "--txq=1";
	argv[argc++] = "--burst=32";
	for (const char *const *a = ops->testpmd_args; a && *a && argc < 56; a++)
		argv[argc++] = (char *)*a;
	/* testpmd's default pool (155456 mbufs, 338 MB) does not fit the guest's 128 MiB of
	 * hugepages: sized as a user of a small VM sizes it */
	argv[argc++] = "--total-num-mbufs=4096";
	argv[argc++] = "--no-lsc-interrupt";
	argv[argc++] = "--record-core-cycles"; /* "CPU cycles/packet" in its final statistics */
	argv[argc] = NULL;

	/* EAL refuses plugins (-d) under a world-writable directory: the initramfs root is one */
	chmod("/", 0755);
	mkdir("/var", 0755); /* EAL's runtime directory: /var/run/dpdk (root) */
	mkdir("/var/run", 0755);
	if (pipe(pfd))
		return;
	if ((pid = fork()) == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		cpu_set_t all;

		CPU_ZERO(&all); /* EAL pins its own lcores: give it both CPUs back */
		CPU_SET(0, &all);
		CPU_SET(bench_cpu(), &all);
		sched_setaffinity(0, sizeof(all), &all);

		dup2(devnull, 0);
		dup2(pfd[1], 1);
		close(pfd[0]);
		execv(testpmd, argv);
		_exit(127);
	}
	close(pfd[1]);
	out = fdopen(pfd[0], "r");
	deadline = now() + seconds + 60; /* EAL start-up under TCG takes a while */
	while (fgets(line, sizeof(line), out)) {
		char *p;

		/* the generator starts as testpmd starts forwarding (its ports are up by then; the
		 * line comes through the pipe at the latest with the first statistics, and the
		 * first two samples are not counted) */
		if (!tx && gen_bdf && gen < 0 && strstr(line, "start packet forwarding"))
			gen = gen_start(len);
		if ((p = strstr(line, tx ? "TX-packets:" : "RX-packets:")))
			pkts = strtoull(p + 11, NULL, 10), started = 1;
		else if (started && strstr(line, "############") && !strstr(line, "statistics")) {
			double t = now();

			if (ns == 0)
				t_start = t;
			if (ns < MAXW)
				s[ns++] = (struct sample){ t, proc_cpu(pid), pkts };
			if (t - t_start >= seconds + 1.0 || t > deadline)
				break;
		} else if (strstr(line, "EAL: Error") || strstr(line, "Fail") || strstr(line, "fail")) {
			fprintf(stderr, "testpmd: %s", line);
		}
		if (now() > deadline)
			break;
	}
	gen_stop(gen);
	kill(pid, SIGINT);
	for (int i = 0; i < 200 && waitpid(pid, &status, WNOHANG) == 0; i++)
		usleep(100000);
	if (waitpid(pid, &status, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	/* what it printed on its way out: the forwarding statistics with the busy cycles */
	while (fgets(line, sizeof(line), out)) {
		char *p = strstr(line, "CPU cycles/packet=");

		if (p)
			busy = strtod(p + 18, NULL);
	}
	fclose(out);
	report(name, "testpmd", s, ns, busy);
}

/* Is @name one of the comma-separated @rows? */
static int row_wanted(const char *rows, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = rows; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, name, n) && (p[n] == ',' || p[n] == '\0'))
			return 1;
	return 0;
}

int nic_bench_main(int argc, char **argv, const struct nic_bench_ops *ops)
{
	const char *txbdf = NULL, *rxbdf = NULL, *testpmd = NULL, *rows = NULL;
	char *pmds[8];
	int npmd = 0, reps = 1;
	double seconds = 3;
	static const unsigned lens[2] = { 64, 1514 };
	cpu_set_t set;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--tx") && i + 1 < argc)
			txbdf = argv[++i];
		else if (!strcmp(argv[i], "--rx") && i + 1 < argc)
			rxbdf = argv[++i];
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--rows") && i + 1 < argc)
			rows = argv[++i];
		else if (!strcmp(argv[i], "--testpmd") && i + 1 < argc)
			testpmd = argv[++i];
		else if (!strcmp(argv[i], "--pmd") && i + 1 < argc && npmd < 8)
			pmds[npmd++] = argv[++i];
		else if (!strcmp(argv[i], "--gen") && i + 1 < argc)
			gen_bdf = argv[++i];
		else if (!strcmp(argv[i], "--gen-prog") && i + 1 < argc)
			gen_prog = argv[++i];
		else if (!strcmp(argv[i], "--gen-step") && i + 1 < argc)
			gen_step = (unsigned)atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: %s --tx BDF --rx BDF [--seconds S] [--reps R] "
				"[--rows tx64,tx1514,rx64,rx1514] [--testpmd PATH] [--pmd SO]... "
				"[--gen BDF --gen-prog PATH [--gen-step N]]\n", ops->prog);
			return 2;
		}
	}
	if (!txbdf || !rxbdf) {
		fprintf(stderr, "%s: --tx and --rx are needed\n", ops->prog);
		return 2;
	}
	if (gen_bdf && !gen_prog) {
		fprintf(stderr, "%s: --gen needs --gen-prog (bench_nic_gen)\n", ops->prog);
		return 2;
	}
	CPU_ZERO(&set);
	CPU_SET(bench_cpu(), &set); /* where testpmd's forwarding lcore runs */
	sched_setaffinity(0, sizeof(set), &set);
	for (int dir = 0; dir < 2; dir++) {
		for (int l = 0; l < 2; l++) {
			char name[16];

			snprintf(name, sizeof(name), "%s%u", dir == 0 ? "tx" : "rx", lens[l]);
			if (rows && !row_wanted(rows, name))
				continue;
			for (int r = 0; r < reps; r++) {
				const char *bdf = dir == 0 ? txbdf : rxbdf;

				run_ubdma(ops, bdf, dir == 0, lens[l], seconds, name);
				if (testpmd)
					run_testpmd(ops, testpmd, pmds, npmd, bdf, dir == 0, lens[l],
						    seconds, name);
			}
		}
	}
	return 0;
}
