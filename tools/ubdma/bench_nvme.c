/*
 * bench_nvme.c - `ubdma bench nvme BDF`: the latency and throughput of libubdma_nvme on a
 * controller of this machine, beside the kernel's nvme driver driven by fio (io_uring) on the
 * same namespace, run first while the device is still on that driver; and, when ubdma's fio
 * engine (libubdma_fio.so, ioengine ubdma_nvme: docs/nvme.md) is found, the same fio jobs through
 * that engine on the controller bound to vfio-pci (impl "ubdma-fio"), after ubdma's own rows and
 * with ubdma's context closed (the engine opens the VFIO group itself).
 *
 * Reads only unless --write-range names the LBAs that may be written; the device guard
 * (bench_dev.c) refuses a namespace in use and gives the controller back to its driver however
 * the run ends.  Every argument is checked before anything is bound.
 *
 * Each operation is timed from the public API: t0 before ubdma_nvme_read/write(), t1 after it
 * (the submission: load, translation, bounce copy for writes, PRP list, doorbell), the start of
 * the ubdma_nvme_poll() call that reaps it (device: doorbell to a completion the poll can see,
 * within one empty poll), the callback (the I/O's latency) and the end of that poll (completion:
 * CQE, unload, bounce copy back for reads).  The breakdown is exact at queue depth 1, where one
 * I/O is in flight; deeper queues report the submission call only.  The translation, load and
 * bounce costs are measured apart on the same context (bench_iommu.c).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ubdma/nvme.h>

#include "base/sysfs.h"

#include "bench.h"
#include "cli.h"

struct workload {
	const char *name;
	int write;
	unsigned bs, qd;
	int random, bounce;
	const char *fio_rw;
};

static const struct workload workloads[] = {
	{ "randread-4k-qd1", 0, 4096, 1, 1, 0, "randread" },
	{ "randread-4k-qd32", 0, 4096, 32, 1, 0, "randread" },
	{ "seqread-128k-qd8", 0, 131072, 8, 0, 0, "read" },
	{ "randread-4k-qd1-bounce", 0, 4096, 1, 1, 1, NULL },
	{ "randwrite-4k-qd1", 1, 4096, 1, 1, 0, "randwrite" },
	{ "randwrite-4k-qd32", 1, 4096, 32, 1, 0, "randwrite" },
};
#define NWORKLOADS (sizeof(workloads) / sizeof(workloads[0]))
#define MAX_QD 32
#define DMA_BYTES (1u << 20)

struct range {
	uint64_t lo, hi; /* inclusive LBAs */
	int set;
};

static void parse_range(const char *opt, const char *arg, struct range *r)
{
	const char *s = arg;
	char *end;
	unsigned long long lo, hi;

	errno = 0;
	lo = strtoull(s, &end, 0);
	if (errno || end == s || strncmp(end, "..", 2))
		usage_error("bench nvme: %s wants LBA..LBA (first and last block, inclusive), not '%s'", opt, arg);
	s = end + 2;
	hi = strtoull(s, &end, 0);
	if (errno || end == s || *end || hi < lo)
		usage_error("bench nvme: %s wants LBA..LBA with the first <= the last, not '%s'", opt, arg);
	r->lo = lo;
	r->hi = hi;
	r->set = 1;
}

/* The range against the namespace: exit 2 when it does not fit. */
static void check_range(const char *opt, const struct range *r, uint64_t lbas, unsigned lbs, const char *where)
{
	if (r->hi >= lbas)
		usage_error("bench nvme: %s %llu..%llu is past the end of the namespace (%s has %llu blocks of %u bytes: "
			    "0..%llu); nothing was bound or written",
			    opt, (unsigned long long)r->lo, (unsigned long long)r->hi, where, (unsigned long long)lbas, lbs,
			    (unsigned long long)lbas - 1);
}

/* ------------------------------------------------------------- ubdma runs */

struct io {
	struct run *run;
	char *buf;
	uint64_t t0, t1, tcb;
	int busy;
};

struct run {
	const struct workload *w;
	ubdma_nvme_qpair_t *qp;
	uint32_t nsid;
	uint64_t lo, nblocks, seq; /* the region, in LBAs, and the next sequential one */
	unsigned nlb;
	uint64_t rng;
	struct io io[MAX_QD];
	struct lhist lat, submit, device, reap;
	uint64_t ops, errors;
	int err;
	char errmsg[200];
};

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void io_done(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct io *io = arg;
	struct run *r = io->run;

	io->tcb = now_ns();
	io->busy = 0;
	if (cpl->error) {
		if (!r->err) {
			r->err = cpl->error;
			sfmt(r->errmsg, sizeof(r->errmsg), "the device failed a %s: %s (status 0x%x, %s)",
			     r->w->write ? "write" : "read", ubdma_nvme_strstatus(cpl->status), cpl->status, strerror(cpl->error));
		}
		r->errors++;
		return;
	}
	lh_add(&r->lat, io->tcb - io->t0);
	r->ops++;
}

static int submit(struct run *r, struct io *io)
{
	uint64_t lba;
	int rc;

	if (r->w->random)
		lba = r->lo + (xorshift(&r->rng) % (r->nblocks / r->nlb)) * r->nlb;
	else {
		if (r->seq + r->nlb > r->nblocks)
			r->seq = 0;
		lba = r->lo + r->seq;
		r->seq += r->nlb;
	}
	io->t0 = now_ns();
	rc = r->w->write ? ubdma_nvme_write(r->qp, r->nsid, io->buf, lba, r->nlb, io_done, io)
			 : ubdma_nvme_read(r->qp, r->nsid, io->buf, lba, r->nlb, io_done, io);
	io->t1 = now_ns();
	if (!rc) {
		io->busy = 1;
		lh_add(&r->submit, io->t1 - io->t0);
	}
	return rc;
}

/* One workload on ubdma for @secs; fills @row. */
static void run_ubdma(const struct workload *w, ubdma_nvme_qpair_t *qp, uint32_t nsid, unsigned lbs, const struct range *rg,
		      char *dma, char *plain, double secs, struct bench_row *row)
{
	struct run *r = calloc(1, sizeof(*r));
	uint64_t start, end, cpu0;
	int rc = 0;

	if (!r) {
		sfmt(row->error, sizeof(row->error), "out of memory");
		return;
	}
	r->w = w;
	r->qp = qp;
	r->nsid = nsid;
	r->nlb = w->bs / lbs;
	r->lo = rg->lo;
	r->nblocks = rg->hi - rg->lo + 1;
	r->rng = 0x9e3779b97f4a7c15ull ^ now_ns();
	if (r->nblocks < r->nlb) {
		sfmt(row->error, sizeof(row->error), "the range holds fewer than %u blocks", r->nlb);
		free(r);
		return;
	}
	for (unsigned i = 0; i < w->qd; i++) {
		r->io[i].run = r;
		/* bounce: plain heap memory the context does not know, so every I/O is bounced */
		r->io[i].buf = w->bounce ? plain + (size_t)i * w->bs : dma + (size_t)i * w->bs;
		if (w->write)
			memset(r->io[i].buf, 0x5a, w->bs);
	}
	start = now_ns();
	end = start + (uint64_t)(secs * 1e9);
	cpu0 = thread_cpu_ns();
	while (!r->err && !bench_stop) {
		uint64_t t = now_ns();
		if (t >= end)
			break;
		progress_tick();
		for (unsigned i = 0; i < w->qd && !rc; i++)
			if (!r->io[i].busy) {
				rc = submit(r, &r->io[i]);
				if (rc == EAGAIN || rc == ENOMEM)
					rc = 0; /* the queue or the bounce pool is full: poll first */
			}
		if (rc) {
			sfmt(r->errmsg, sizeof(r->errmsg), "submission failed: %s (%s)", strerror(rc), ubdma_nvme_last_error());
			r->err = rc;
			break;
		}
		unsigned done = 0;
		uint64_t ps = now_ns();
		rc = ubdma_nvme_poll(qp, 0, &done);
		uint64_t pe = now_ns();
		if (rc) {
			sfmt(r->errmsg, sizeof(r->errmsg), "poll failed: %s (%s)", strerror(rc), ubdma_nvme_last_error());
			r->err = rc;
			break;
		}
		if (done && w->qd == 1 && !r->io[0].busy && r->io[0].tcb >= ps) {
			lh_add(&r->device, ps > r->io[0].t1 ? ps - r->io[0].t1 : 0);
			lh_add(&r->reap, pe - ps);
		}
	}
	uint64_t stop = now_ns();
	double cpu = (double)(thread_cpu_ns() - cpu0) / 1e9;
	int drc = ubdma_nvme_drain(qp, 10000);
	if (drc && !r->err) {
		r->err = drc;
		sfmt(r->errmsg, sizeof(r->errmsg), "draining the queue failed: %s", strerror(drc));
	}
	row_rates(row, (double)(stop - start) / 1e9, (double)r->ops, (double)r->ops * w->bs, cpu);
	row_from_hist(row, &r->lat);
	row_part(row, "ubdma", w->write ? "submission: ubdma_nvme_write() call" : "submission: ubdma_nvme_read() call",
		 &r->submit);
	if (w->qd == 1) {
		row_part(row, "device", "doorbell to completion (seen by polling)", &r->device);
		row_part(row, "ubdma", "completion: the ubdma_nvme_poll() that reaps it", &r->reap);
	}
	if (r->err)
		sfmt(row->error, sizeof(row->error), "%s", r->errmsg);
	else if (bench_stop)
		sfmt(row->error, sizeof(row->error), "interrupted by signal %d", (int)bench_stop);
	free(r);
}

/* --------------------------------------------- the namespace, read through ubdma */

struct sync_io {
	int done, err;
};

static void sync_done(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct sync_io *s = arg;

	s->err = cpl->error;
	s->done = 1;
}

static int read_sync(ubdma_nvme_qpair_t *qp, uint32_t nsid, void *buf, uint64_t lba, uint32_t nlb)
{
	struct sync_io s = { 0, 0 };
	uint64_t end = now_ns() + 10000000000ull;
	int rc = ubdma_nvme_read(qp, nsid, buf, lba, nlb, sync_done, &s);

	while (!rc && !s.done && now_ns() < end)
		rc = ubdma_nvme_poll(qp, 0, NULL);
	return rc ? rc : !s.done ? ETIMEDOUT : s.err;
}

/*
 * A controller found on vfio-pci has no kernel view of its namespace: before anything is written,
 * its first and last MiB (where filesystems, partition tables, LVM and MD keep their
 * signatures) are read through ubdma into a sparse file of the namespace's size and probed
 * with libblkid.  0, EX_FAIL (refused or unreadable).
 */
static int check_namespace_image(ubdma_nvme_t *ctrl, ubdma_nvme_qpair_t *qp, uint32_t nsid,
				 const struct ubdma_nvme_ns_info *ni, char *dma, const char *bdf)
{
	uint64_t size = ni->nsze * ni->lba_size, head = size < DMA_BYTES ? size : DMA_BYTES;
	size_t chunk = ubdma_nvme_info(ctrl)->max_transfer;
	int fd = memfd_create("ubdma-bench-ns", MFD_CLOEXEC), rc = 0;
	char what[64];

	if (chunk > 131072)
		chunk = 131072;
	if (fd < 0 || ftruncate(fd, (off_t)size))
		rc = fail("bench nvme: no memory file to probe the namespace in: %s", strerror(errno));
	for (int part = 0; part < 2 && !rc; part++) {
		uint64_t start = part ? size - head : 0;
		for (uint64_t off = start; off < start + head && !rc; off += chunk) {
			uint32_t nlb = (uint32_t)(chunk / ni->lba_size);
			int err = read_sync(qp, nsid, dma, off / ni->lba_size, nlb);
			if (err)
				rc = fail("bench nvme: reading namespace %u at byte %llu to look for signatures failed: %s; "
					  "nothing was written",
					  nsid, (unsigned long long)off, strerror(err));
			else if (pwrite(fd, dma, chunk, (off_t)off) != (ssize_t)chunk)
				rc = fail("bench nvme: cannot keep the namespace's image: %s", strerror(errno));
		}
	}
	sfmt(what, sizeof(what), "namespace %u", nsid);
	if (!rc)
		rc = dev_check_image(fd, what, bdf);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ---------------------------------------------------------------- fio peer */

static double jd(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_double(v) : 0;
}

/* fio's JSON (json+) of one job into @row. */
static int fio_row(const char *path, int write, struct bench_row *row)
{
	json_object *root = json_object_from_file(path), *jobs, *job, *io, *lat, *pct, *bins;
	int ok = 0;

	if (root && json_object_object_get_ex(root, "jobs", &jobs) && json_object_array_length(jobs) > 0 &&
	    (job = json_object_array_get_idx(jobs, 0)) && json_object_object_get_ex(job, write ? "write" : "read", &io)) {
		double secs = jd(io, "runtime") / 1e3, ops = jd(io, "total_ios");
		double cpu = (jd(job, "usr_cpu") + jd(job, "sys_cpu")) / 100.0 * secs;
		row_rates(row, secs, ops, jd(io, "io_bytes"), cpu);
		if (json_object_object_get_ex(io, "lat_ns", &lat)) {
			static const char *keys[NPCT] = { "50.000000", "90.000000", "99.000000", "99.900000", "99.990000" };
			row->max = jd(lat, "max");
			row->mean = jd(lat, "mean");
			if (json_object_object_get_ex(lat, "percentile", &pct)) {
				row->have_lat = 1;
				/* fio's percentiles are its bins' upper edges: they can pass its exact maximum */
				for (int k = 0; k < NPCT; k++)
					row->pct[k] = jd(pct, keys[k]) < row->max ? jd(pct, keys[k]) : row->max;
			}
			/* json+ bins: {"value_ns": count}; merged into the plot's resolution */
			if ((json_object_object_get_ex(lat, "bins", &bins) ||
			     (json_object_object_get_ex(io, "clat_ns", &lat) && json_object_object_get_ex(lat, "bins", &bins)))) {
				struct lhist *h = calloc(1, sizeof(*h));
				if (h) {
					json_object_object_foreach(bins, key, val)
					{
						uint64_t v = strtoull(key, NULL, 10);
						int64_t c = json_object_get_int64(val);
						for (int64_t k = 0; k < c; k++)
							lh_add(h, v);
					}
					double save[NPCT], mx = row->max, mean = row->mean;
					memcpy(save, row->pct, sizeof(save));
					row_from_hist(row, h);
					/* fio's own percentiles and extremes stand; the bins only draw the plot */
					memcpy(row->pct, save, sizeof(save));
					row->max = mx;
					row->mean = mean;
					free(h);
				}
			}
		}
		ok = ops > 0;
	}
	json_object_put(root);
	return ok;
}

/*
 * fio with the kernel's io_uring on /dev/@blk, or (@engine set) with ubdma's engine on the
 * controller @bdf, namespace @nsid, bound to vfio-pci: the same job either way.
 */
static void run_fio(const struct workload *w, const char *blk, const char *engine, const char *bdf, uint32_t nsid,
		    unsigned lbs, const struct range *rg, double secs, const char *outdir, struct bench_row *row)
{
	char name[80], file[80], bs[24], qd[16], rt[32], off[40], size[40], out[PATH_MAX], err[PATH_MAX], outopt[PATH_MAX + 16];
	char ioeng[PATH_MAX + 32], nsopt[32];
	const char *tag = engine ? "ubdma-fio-" : "fio-";

	sfmt(name, sizeof(name), "--name=%s", w->name);
	if (engine) {
		/* fio splits file names at ':', the engine takes '.' for it (docs/nvme.md) */
		char f[32];
		sfmt(f, sizeof(f), "%s", bdf);
		for (char *c = f; *c; c++)
			if (*c == ':')
				*c = '.';
		sfmt(file, sizeof(file), "--filename=%s", f);
		sfmt(ioeng, sizeof(ioeng), "--ioengine=external:%s", engine);
		sfmt(nsopt, sizeof(nsopt), "--nsid=%u", nsid);
	} else {
		sfmt(file, sizeof(file), "--filename=/dev/%s", blk);
		sfmt(ioeng, sizeof(ioeng), "--ioengine=io_uring");
		sfmt(nsopt, sizeof(nsopt), "--direct=1");
	}
	sfmt(bs, sizeof(bs), "--bs=%u", w->bs);
	sfmt(qd, sizeof(qd), "--iodepth=%u", w->qd);
	sfmt(rt, sizeof(rt), "--runtime=%lums", (unsigned long)(secs * 1000));
	sfmt(off, sizeof(off), "--offset=%llu", (unsigned long long)(rg->lo * lbs));
	sfmt(size, sizeof(size), "--size=%llu", (unsigned long long)((rg->hi - rg->lo + 1) * lbs));
	sfmt(out, sizeof(out), "%s/%s%s.json", outdir, tag, w->name);
	sfmt(err, sizeof(err), "%s/%s%s.log", outdir, tag, w->name);
	sfmt(outopt, sizeof(outopt), "--output=%s", out);
	char rw[32];
	sfmt(rw, sizeof(rw), "--rw=%s", w->fio_rw);
	/* the engine's two options end the list (the kernel's ends at the NULL before them): one
	 * thread (a second process could not open the VFIO group), polled completions as ubdma's
	 * own rows */
	char *argv[] = { "fio", name, file, ioeng, nsopt, rw, bs, qd, "--time_based", rt, off,
			 size, "--output-format=json+", outopt, "--lat_percentiles=1",
			 "--percentile_list=50:90:99:99.9:99.99", w->write ? "--allow_file_create=0" : "--readonly",
			 engine ? "--thread=1" : NULL, "--completions=poll", NULL };
	int st = bench_spawn(argv, NULL, err);
	if (bench_stop)
		sfmt(row->error, sizeof(row->error), "interrupted");
	else if (st != 0 || !fio_row(out, w->write, row)) {
		char line[160] = "";
		FILE *f = fopen(err, "re");
		if (f) {
			if (!fgets(line, sizeof(line), f))
				line[0] = '\0';
			fclose(f);
			line[strcspn(line, "\n")] = '\0';
		}
		sfmt(row->error, sizeof(row->error), "fio exited with status %d: %s (see %s)", st, line[0] ? line : "no message", err);
	}
}

/* ------------------------------------------------------------------- main */

/* The block device of namespace @nsid (0: the lowest) among the device's, and its size. */
static const char *ns_blk(const struct bench_dev *d, uint32_t nsid, uint64_t *lbas, unsigned *lbs, uint32_t *found)
{
	const char *best = NULL;
	unsigned bn = 0;

	for (int i = 0; i < d->nblk; i++) {
		unsigned a, n;
		char c;
		if (sscanf(d->blk[i], "nvme%un%u%c", &a, &n, &c) != 2)
			continue;
		if ((nsid && n == nsid) || (!nsid && (!best || n < bn))) {
			best = d->blk[i];
			bn = n;
		}
	}
	if (best) {
		char path[PATH_MAX];
		unsigned long sectors = 0, lb = 0;
		sfmt(path, sizeof(path), "/sys/class/block/%s/size", best);
		sysfs_read_ul(path, &sectors);
		sfmt(path, sizeof(path), "/sys/class/block/%s/queue/logical_block_size", best);
		sysfs_read_ul(path, &lb);
		*lbs = (unsigned)lb;
		*lbas = lb ? (uint64_t)sectors * 512 / lb : 0;
		*found = bn;
	}
	return best;
}

/*
 * ubdma's fio engine: --fio-engine PATH, else $UBDMA_FIO_ENGINE, else where meson installs it,
 * else beside this program in a build tree (BUILD/tools/ubdma -> BUILD/drivers/nvme/fio).
 * NULL with @why set when there is none.
 */
static const char *fio_engine(const char *arg, char *buf, size_t n, char *why, size_t wn)
{
	const char *env = getenv("UBDMA_FIO_ENGINE");
	char exe[PATH_MAX];
	ssize_t l;

	if (arg)
		return arg; /* checked readable with the arguments */
	if (env && env[0]) {
		if (access(env, R_OK) == 0)
			return env;
		sfmt(why, wn, "UBDMA_FIO_ENGINE=%s cannot be read", env);
		return NULL;
	}
#ifdef UBDMA_FIO_ENGINE_PATH
	if (access(UBDMA_FIO_ENGINE_PATH, R_OK) == 0)
		return UBDMA_FIO_ENGINE_PATH;
#endif
	if ((l = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0) {
		exe[l] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			sfmt(buf, n, "%s/../drivers/nvme/fio/libubdma_fio.so", exe);
			if (access(buf, R_OK) == 0)
				return buf;
		}
	}
	sfmt(why, wn, "ubdma's fio engine libubdma_fio.so was not found (%s; give --fio-engine PATH or "
		      "UBDMA_FIO_ENGINE)",
#ifdef UBDMA_FIO_ENGINE_PATH
	     "not installed as " UBDMA_FIO_ENGINE_PATH
#else
	     "not installed"
#endif
	);
	return NULL;
}

static const char usage[] =
	"bench nvme: usage: ubdma bench nvme BDF [--time SECS] [--out DIR] [--csv] [--ns NSID]\n"
	"       [--read-range LBA..LBA] [--write-range LBA..LBA] [--workloads NAME,...] [--no-peer]\n"
	"       [--fio-engine PATH]";

int bench_nvme(int argc, char **argv)
{
	struct bench_opts o;
	char *rest[64];
	int n = bench_common_opts(argc, argv, &o, rest, "nvme");
	const char *bdf_arg = NULL, *only = NULL, *engine_arg = NULL;
	struct range rr = { 0 }, wr = { 0 };
	uint32_t want_ns = 0;
	int no_peer = 0;

	for (int i = 1; i < n; i++) {
		const char *a = rest[i];
		if (!strcmp(a, "--read-range") && i + 1 < n)
			parse_range(a, rest[++i], &rr);
		else if (!strcmp(a, "--write-range") && i + 1 < n)
			parse_range(a, rest[++i], &wr);
		else if (!strcmp(a, "--ns") && i + 1 < n)
			want_ns = (uint32_t)strtoul(rest[++i], NULL, 0);
		else if (!strcmp(a, "--workloads") && i + 1 < n)
			only = rest[++i];
		else if (!strcmp(a, "--no-peer"))
			no_peer = 1;
		else if (!strcmp(a, "--fio-engine") && i + 1 < n)
			engine_arg = rest[++i];
		else if (a[0] == '-' || bdf_arg)
			usage_error("%s", usage);
		else
			bdf_arg = a;
	}
	if (!bdf_arg)
		usage_error("%s", usage);
	if (engine_arg && access(engine_arg, R_OK))
		usage_error("bench nvme: --fio-engine %s: %s; nothing was bound", engine_arg, strerror(errno));

	/* the workloads: reads always, writes only inside --write-range */
	int sel[NWORKLOADS] = { 0 }, nsel = 0;
	for (size_t k = 0; k < NWORKLOADS; k++) {
		const struct workload *w = &workloads[k];
		if (only) {
			char list[256];
			int hit = 0;
			sfmt(list, sizeof(list), "%s", only);
			for (char *t = strtok(list, ","); t; t = strtok(NULL, ","))
				hit |= !strcmp(t, w->name);
			if (!hit)
				continue;
			if (w->write && !wr.set)
				usage_error("bench nvme: %s writes to the namespace: name the blocks it may overwrite with "
					    "--write-range LBA..LBA; nothing was bound or written",
					    w->name);
		} else if (w->write && !wr.set) {
			continue;
		}
		sel[k] = 1;
		nsel++;
	}
	if (only) {
		char list[256];
		sfmt(list, sizeof(list), "%s", only);
		for (char *t = strtok(list, ","); t; t = strtok(NULL, ",")) {
			size_t k = 0;
			while (k < NWORKLOADS && strcmp(t, workloads[k].name))
				k++;
			if (k == NWORKLOADS)
				usage_error("bench nvme: no workload '%s' (randread-4k-qd1, randread-4k-qd32, seqread-128k-qd8, "
					    "randread-4k-qd1-bounce, randwrite-4k-qd1, randwrite-4k-qd32)",
					    t);
		}
	}
	if (!nsel)
		usage_error("bench nvme: no workload selected");

	struct bench_dev d;
	dev_find(bdf_arg, CLASS_NVME, 0xffffff, "an NVMe controller (class 0x010802)", &d);
	uint64_t lbas = 0;
	unsigned lbs = 0;
	uint32_t kns = 0;
	const char *blk = ns_blk(&d, want_ns, &lbas, &lbs, &kns);
	if (!strcmp(d.orig_drv, "nvme")) {
		if (!blk)
			return fail("bench nvme: %s is on the nvme driver but shows no namespace%s", d.bdf,
				    want_ns ? " of that NSID" : "");
		if (rr.set)
			check_range("--read-range", &rr, lbas, lbs, blk);
		if (wr.set)
			check_range("--write-range", &wr, lbas, lbs, blk);
		if (dev_check_nvme(&d))
			return EX_FAIL;
	} else if (!strcmp(d.orig_drv, "vfio-pci")) {
		if (dev_check_vfio_free(&d))
			return EX_FAIL;
	} else if (d.orig_drv[0]) {
		return fail("bench nvme: %s is bound to %s, a driver ubdma bench does not know how to check: unbind it "
			    "first (nothing was touched)",
			    d.bdf, d.orig_drv);
	}

	struct bench_report rep = { .kind = "nvme", .outdir = o.out, .csv = o.csv };
	char devline[256];
	sfmt(devline, sizeof(devline), "%s (%04x:%04x), found on %s", d.bdf, d.vendor, d.device,
	     d.orig_drv[0] ? d.orig_drv : "no driver");
	rep.device = devline;
	if (mkdir_p(o.out))
		return fail("cannot create %s: %s", o.out, strerror(errno));
	int total = nsel * 3 + IOMMU_NROWS, step = 0, rc = 0;
	/* ubdma's fio engine, run last (below) when ubdma's own rows got to their end */
	char engine_buf[PATH_MAX], engine_why[300] = "";
	const char *engine = fio_engine(engine_arg, engine_buf, sizeof(engine_buf), engine_why, sizeof(engine_why));
	int engine_go = 0;
	struct range erange = { 0 };
	unsigned elbs = 0;
	uint32_t ensid = 0;

	/* the kernel driver first, while it still has the device */
	const char *peer_skip = NULL;
	char why[200];
	if (no_peer)
		peer_skip = "--no-peer";
	else if (strcmp(d.orig_drv, "nvme")) {
		sfmt(why, sizeof(why), "the controller was on %s, not on the kernel nvme driver: nothing to compare on "
				       "this device (`ubdma unbind %s` first to compare)",
		     d.orig_drv[0] ? d.orig_drv : "no driver", d.bdf);
		peer_skip = why;
	} else if (!have_prog("fio"))
		peer_skip = "fio is not installed (apt install fio)";
	struct range krr = rr.set ? rr : (struct range){ 0, lbas ? lbas - 1 : 0, 1 };
	for (size_t k = 0; k < NWORKLOADS && !bench_stop; k++) {
		if (!sel[k])
			continue;
		const struct workload *w = &workloads[k];
		struct bench_row *row = report_row(&rep, w->name, "kernel (fio io_uring)");
		if (!row)
			return fail("out of memory");
		sfmt(row->target, sizeof(row->target), "/dev/%s", blk ? blk : "-");
		step++;
		if (peer_skip) {
			sfmt(row->skipped, sizeof(row->skipped), "%s", peer_skip);
			continue;
		}
		if (!w->fio_rw) {
			sfmt(row->skipped, sizeof(row->skipped), "no kernel counterpart: the kernel reads O_DIRECT into the "
								 "user's pages, it has no bounce buffer to compare");
			continue;
		}
		progress(step, total, w->name, "kernel (fio io_uring)", o.secs);
		run_fio(w, blk, NULL, d.bdf, 0, lbs, w->write ? &wr : &krr, o.secs, o.out, row);
		progress_done();
		if (row->error[0] && !bench_stop)
			rc = EX_FAIL;
	}
	if (bench_stop)
		goto out;

	/* then ubdma */
	if (dev_take(&d))
		return EX_FAIL;
	ubdma_ctx_t *ctx = NULL;
	ubdma_nvme_t *ctrl = NULL;
	ubdma_nvme_qpair_t *qp = NULL;
	ubdma_tag_t *tag = NULL;
	ubdma_map_t *map = NULL;
	char *dma = NULL, *plain = NULL;
	int err;
	if ((err = ubdma_ctx_open(UBDMA_BACKEND_VFIO, &ctx))) {
		rc = fail("bench nvme: no VFIO context: %s (%s)", strerror(err), ubdma_last_error());
		goto give_back;
	}
	struct ubdma_nvme_opts no = { .size = sizeof(no), .ctx = ctx, .io_queues = 1, .queue_entries = 256 };
	if ((err = ubdma_nvme_open(d.bdf, &no, &ctrl))) {
		rc = fail("bench nvme: cannot open %s: %s (%s)", d.bdf, strerror(err), ubdma_nvme_last_error());
		goto give_back;
	}
	uint32_t nsid = want_ns;
	if (!nsid && (err = ubdma_nvme_ns_next(ctrl, 0, &nsid))) {
		rc = fail("bench nvme: %s has no active namespace", d.bdf);
		goto give_back;
	}
	struct ubdma_nvme_ns_info ni;
	if ((err = ubdma_nvme_ns(ctrl, nsid, &ni))) {
		rc = fail("bench nvme: namespace %u of %s: %s", nsid, d.bdf, strerror(err));
		goto give_back;
	}
	/* a device found on vfio-pci: its namespace size is known only now, still before any I/O */
	if (wr.set && wr.hi >= ni.nsze) {
		fprintf(stderr, "ubdma: bench nvme: --write-range %llu..%llu is past the end of namespace %u (%llu blocks); "
				"nothing was written\n",
			(unsigned long long)wr.lo, (unsigned long long)wr.hi, nsid, (unsigned long long)ni.nsze);
		rc = EX_USAGE;
		goto give_back;
	}
	if (rr.set && rr.hi >= ni.nsze) {
		fprintf(stderr, "ubdma: bench nvme: --read-range is past the end of namespace %u (%llu blocks)\n", nsid,
			(unsigned long long)ni.nsze);
		rc = EX_USAGE;
		goto give_back;
	}
	const struct ubdma_nvme_info *info = ubdma_nvme_info(ctrl);
	sfmt(devline, sizeof(devline), "%s %s (%s, fw %s), namespace %u: %llu blocks of %u bytes, found on %s", d.bdf,
	     info->mn, info->sn, info->fr, nsid, (unsigned long long)ni.nsze, ni.lba_size,
	     d.orig_drv[0] ? d.orig_drv : "no driver");
	if ((err = ubdma_nvme_qpair_create(ctrl, 256, &qp))) {
		rc = fail("bench nvme: no queue pair: %s (%s)", strerror(err), ubdma_nvme_last_error());
		goto give_back;
	}
	if ((err = ubdma_tag_create(ubdma_ctx_tag(ctx), 4096, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, DMA_BYTES, 1, DMA_BYTES, 0,
				    &tag)) ||
	    (err = ubdma_mem_alloc(tag, (void **)&dma, UBDMA_ZERO, &map))) {
		rc = fail("bench nvme: no DMA memory: %s (%s)", strerror(err), ubdma_last_error());
		goto give_back;
	}
	if (wr.set && strcmp(d.orig_drv, "nvme") && (rc = check_namespace_image(ctrl, qp, nsid, &ni, dma, d.bdf)))
		goto give_back;
	if (!(plain = aligned_alloc(4096, DMA_BYTES))) {
		rc = fail("out of memory");
		goto give_back;
	}
	memset(plain, 0, DMA_BYTES);
	struct range urr = rr.set ? rr : (struct range){ 0, ni.nsze - 1, 1 };
	for (size_t k = 0; k < NWORKLOADS && !bench_stop; k++) {
		if (!sel[k])
			continue;
		const struct workload *w = &workloads[k];
		struct bench_row *row = report_row(&rep, w->name, "ubdma");
		if (!row) {
			rc = fail("out of memory");
			break;
		}
		sfmt(row->target, sizeof(row->target), "%s ns %u", d.bdf, nsid);
		progress(++step, total, w->name, "ubdma", o.secs);
		run_ubdma(w, qp, nsid, ni.lba_size, w->write ? &wr : &urr, dma, plain, o.secs, row);
		progress_done();
		if (row->error[0]) {
			if (!bench_stop)
				fprintf(stderr, "ubdma: bench nvme: %s failed: %s\n", w->name, row->error);
			rc = EX_FAIL;
		}
	}
	/* what the IOMMU costs on this context, with the controller attached */
	if (!bench_stop) {
		struct iommu_parts ip;
		char tgt[48];
		sfmt(tgt, sizeof(tgt), "vfio (%s)", d.bdf);
		iommu_rows(&rep, ctx, tgt, o.secs / 2 > 0.2 ? o.secs / 2 : 0.2, step + 1, total, &ip);
		/* the breakdown of the qd1 rows gets the costs measured apart */
		for (int i = 0; i < rep.nrows; i++) {
			struct bench_row *row = &rep.rows[i];
			if (strcmp(row->impl, "ubdma") || !strstr(row->name, "qd1"))
				continue;
			row_part(row, "ubdma", "translation: ubdma_vtoiova() (measured apart)", &ip.xlate);
			row_part(row, "ubdma", "load: ubdma_map_load_sg() 4 KiB (apart)", &ip.load);
			if (strstr(row->name, "bounce"))
				row_part(row, "ubdma", "bounce copy: 4 KiB sync (apart)", &ip.copy);
		}
		engine_go = 1;
		erange = urr;
		elbs = ni.lba_size;
		ensid = nsid;
	}
give_back:
	ubdma_mem_free(tag, dma, map);
	ubdma_tag_destroy(tag);
	free(plain);
	if (qp && ubdma_nvme_drain(qp, 5000) == 0)
		ubdma_nvme_qpair_destroy(qp);
	ubdma_nvme_close(ctrl);
	ubdma_ctx_close(ctx);
	/* ubdma's fio engine on the same controller, still on vfio-pci: the context is closed, the
	 * engine's fio opens the VFIO group itself */
	for (size_t k = 0; k < NWORKLOADS && engine_go && !bench_stop; k++) {
		if (!sel[k])
			continue;
		const struct workload *w = &workloads[k];
		struct bench_row *row = report_row(&rep, w->name, "ubdma-fio");
		if (!row) {
			rc = fail("out of memory");
			break;
		}
		sfmt(row->target, sizeof(row->target), "%s ns %u", d.bdf, ensid);
		step++;
		if (no_peer)
			sfmt(row->skipped, sizeof(row->skipped), "--no-peer");
		else if (!have_prog("fio"))
			sfmt(row->skipped, sizeof(row->skipped), "fio is not installed (apt install fio)");
		else if (!engine)
			sfmt(row->skipped, sizeof(row->skipped), "%s", engine_why);
		else if (!w->fio_rw)
			sfmt(row->skipped, sizeof(row->skipped), "the fio engine has no bounce-buffer mode: it registers "
								 "fio's buffers and uses them in place");
		if (row->skipped[0])
			continue;
		progress(step, total, w->name, "ubdma-fio", o.secs);
		run_fio(w, NULL, engine, d.bdf, ensid, elbs, w->write ? &wr : &erange, o.secs, o.out, row);
		progress_done();
		if (row->error[0] && !bench_stop) {
			fprintf(stderr, "ubdma: bench nvme: %s through the fio engine failed: %s\n", w->name, row->error);
			rc = EX_FAIL;
		}
	}
	if (engine_go && engine && !no_peer)
		report_note(&rep, "ubdma-fio: fio with ubdma's engine (%s), polled completions", engine);
	if (dev_give_back(&d))
		rc = EX_FAIL;
	if (rc == EX_USAGE)
		return rc;
	report_note(&rep, "%s was given back to %s at the end", d.bdf, d.orig_drv[0] ? d.orig_drv : "no driver");
out:
	if (bench_stop)
		report_note(&rep, "interrupted by signal %d: the rows stop there", (int)bench_stop);
	if (report_write(&rep))
		rc = EX_FAIL;
	report_free(&rep);
	if (bench_stop) {
		fprintf(stderr, "ubdma: bench nvme: interrupted; %s is back on %s\n", d.bdf,
			d.orig_drv[0] ? d.orig_drv : "no driver");
		return 128 + bench_stop;
	}
	return rc;
}
