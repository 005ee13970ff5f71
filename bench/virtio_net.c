/*
 * bench_virtio_net - packet rate of libubdma_virtio_net beside DPDK 22.11 testpmd (net_virtio
 * PMD), in the test-bed guest, on the same modern virtio-net devices behind the emulated VT-d.
 * Run by bench/virtio_net.sh, which boots the guest with a TX virtio-net (QEMU user network, no
 * capture) and an RX virtio-net fed by a flooding host peer on 127.0.0.1
 * (drivers/e1000e/test/nic_peer.py, bench mode).
 *
 *   bench_virtio_net --tx BDF --rx BDF [--seconds S] [--reps R] [--rows tx64,rx64,...]
 *                    [--testpmd PATH] [--pmd SO]...
 *
 * For each of tx64, tx1514, rx64, rx1514 (frame length without FCS) and each repetition: ubdma
 * (one thread on CPU 1, bursts of 32, polling, the device's queue size) then testpmd (-l 0-1:
 * forwarding lcore 1, --forward-mode=txonly|rxonly, its defaults otherwise: burst 32, the
 * virtio PMD's queue size, which is the device's, and its default free thresholds; only the mbuf
 * pool is sized to the guest, 4096).  Rates are taken over windows
 * of about 0.5 s after a warm-up window: packets / wall time; guest CPU per packet = CPU time of
 * the process (getrusage for ubdma, /proc/PID/stat for testpmd) / packets.  One line a row:
 *   UBDMA-BENCH name=tx64 impl=ubdma pps=M pps_p99=P cpu_ns_per_pkt=C cpu_p99=Q windows=W
 * (medians and 99th percentiles over the windows).  Emulation bounds both: only ratios mean much.
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

#include <ubdma/ubdma.h>
#include <ubdma/virtio_net.h>

#define BURST 32
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

static double self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
	int i;

	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	i = (int)(p * (n - 1) + 0.5);
	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* Rows from samples: windows 1.. (window 0 is the warm-up). */
static void report(const char *name, const char *impl, const struct sample *s, int n)
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
	       "windows=%d\n", name, impl, pct(pps, w, 0.5), pct(pps, w, 0.99), pct(cpu, w, 0.5),
	       pct(cpu, w, 0.99), w);
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

/* The configuration a user of the driver would take: the device's queue size (256 in QEMU),
 * the default pool, one queue pair, bursts of 32. */
static int open_nic(const char *bdf, ubdma_virtio_net_t **nic)
{
	struct ubdma_virtio_net_opts o = { .size = sizeof(o), .promisc = 1 };
	int err;

	if ((err = ubdma_virtio_net_open(bdf, &o, nic)))
		fprintf(stderr, "bench: open %s: %s\n", bdf, ubdma_virtio_net_last_error());
	return err;
}

/* Ask the host peer to flood frames of @len bytes (0 stops) through the RX NIC. */
static void peer_size(ubdma_virtio_net_t *nic, unsigned len)
{
	struct ubdma_virtio_net_pkt *p;
	uint8_t mac[6], *f;
	unsigned sent;

	if (ubdma_virtio_net_pkt_alloc(nic, 0, &p, 1))
		return;
	f = p->data;
	ubdma_virtio_net_mac(nic, mac);
	memset(f, 0, 64);
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x88, f[13] = 0xb6;
	memcpy(f + 14, "SZxx", 4);
	f[18] = (uint8_t)(len >> 8), f[19] = (uint8_t)len;
	p->len = 64;
	if (ubdma_virtio_net_tx_burst(nic, 0, &p, 1, &sent) || sent != 1)
		ubdma_virtio_net_pkt_free(nic, &p, 1);
	ubdma_virtio_net_tx_flush(nic, 0, 1000, NULL);
}

static void run_ubdma(const char *bdf, int tx, unsigned len, double seconds, const char *name)
{
	struct ubdma_virtio_net_pkt *p[BURST];
	struct sample s[MAXW];
	uint8_t tmpl[64], mac[6];
	ubdma_virtio_net_t *nic;
	uint64_t pkts = 0, iter = 0;
	double t0, next;
	int ns = 0;

	if (open_nic(bdf, &nic))
		return;
	ubdma_virtio_net_mac(nic, mac);
	frame_template(tmpl, len, mac);
	if (!tx) {
		peer_size(nic, len);
		/* drain what the peer queued before (other sizes) */
		for (double end = now() + 0.3; now() < end;) {
			unsigned got = 0;

			ubdma_virtio_net_rx_burst(nic, 0, p, BURST, &got);
			ubdma_virtio_net_pkt_free(nic, p, got);
		}
	}
	t0 = now();
	next = t0;
	while (ns < MAXW) {
		unsigned n = 0;

		if (tx) {
			if (ubdma_virtio_net_pkt_alloc(nic, 0, p, BURST) == 0) {
				for (int i = 0; i < BURST; i++) {
					memcpy(p[i]->data, tmpl, 42);
					p[i]->len = (uint16_t)len;
				}
				ubdma_virtio_net_tx_burst(nic, 0, p, BURST, &n);
				if (n < BURST)
					ubdma_virtio_net_pkt_free(nic, p + n, BURST - n);
			} else {
				ubdma_virtio_net_tx_flush(nic, 0, 0, NULL); /* reclaim */
			}
		} else {
			ubdma_virtio_net_rx_burst(nic, 0, p, BURST, &n);
			if (n)
				ubdma_virtio_net_pkt_free(nic, p, n);
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
	ubdma_virtio_net_close(nic);
	report(name, "ubdma", s, ns);
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

static void run_testpmd(const char *testpmd, char **pmds, int npmd, const char *bdf, int tx,
			unsigned len, double seconds, const char *name)
{
	char txpkts[32], line[512];
	char *argv[64];
	int argc = 0, pfd[2], status;
	struct sample s[MAXW];
	uint64_t pkts = 0;
	int ns = 0, started = 0;
	double t_start = 0, deadline;
	pid_t pid;
	FILE *out;

	snprintf(txpkts, sizeof(txpkts), "--txpkts=%u", len);
	argv[argc++] = (char *)testpmd;
	argv[argc++] = "-l";
	argv[argc++] = "0-1";
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
	/* testpmd's default pool (155456 mbufs, 338 MB) does not fit the guest's 128 MiB of
	 * hugepages: sized as a user of a small VM sizes it, as bench/e1000e.c does */
	argv[argc++] = "--total-num-mbufs=4096";
	argv[argc++] = "--no-lsc-interrupt";
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
		CPU_SET(1, &all);
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
	kill(pid, SIGINT);
	for (int i = 0; i < 200 && waitpid(pid, &status, WNOHANG) == 0; i++)
		usleep(100000);
	if (waitpid(pid, &status, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	fclose(out);
	report(name, "testpmd", s, ns);
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

int main(int argc, char **argv)
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
		else {
			fprintf(stderr, "usage: bench_virtio_net --tx BDF --rx BDF [--seconds S] [--reps R] "
				"[--rows tx64,tx1514,rx64,rx1514] [--testpmd PATH] [--pmd SO]...\n");
			return 2;
		}
	}
	if (!txbdf || !rxbdf) {
		fprintf(stderr, "bench_virtio_net: --tx and --rx are needed\n");
		return 2;
	}
	CPU_ZERO(&set);
	CPU_SET(1, &set); /* where testpmd's forwarding lcore runs */
	sched_setaffinity(0, sizeof(set), &set);
	for (int dir = 0; dir < 2; dir++) {
		for (int l = 0; l < 2; l++) {
			char name[16];

			snprintf(name, sizeof(name), "%s%u", dir == 0 ? "tx" : "rx", lens[l]);
			if (rows && !row_wanted(rows, name))
				continue;
			for (int r = 0; r < reps; r++) {
				const char *bdf = dir == 0 ? txbdf : rxbdf;

				run_ubdma(bdf, dir == 0, lens[l], seconds, name);
				if (testpmd)
					run_testpmd(testpmd, pmds, npmd, bdf, dir == 0, lens[l], seconds,
						    name);
			}
		}
	}
	return 0;
}
