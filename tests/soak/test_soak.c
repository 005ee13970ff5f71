/*
 * test_soak.c - a bounded soak: every operation, random buffers, munmap/mremap churn (issue 10).
 *
 * Runs on the vfio backend over the fake container of tests/faults/fault.c, whose table says
 * which virtual address every IOVA reaches: that is what a device would see, so every check is
 * made from the device's side.  Random operations on a set of buffers (4 KiB and 2 MiB pages):
 * map, munmap, mremap (move or grow), umem lock/unlock, reg get/put (the registration cache with
 * its userfaultfd monitor watching the churn), loads on five tags (plain, STRICT, 32-bit window,
 * aligned with a boundary, KEEP_PG_OFFSET) with PREWRITE and POSTREAD checked byte for byte
 * through the IOMMU table, mem alloc/free, and a few operations run with one injected fault.
 * After every operation a sweep checks every translation of every live buffer page: unregistered,
 * or mapped by the IOMMU to exactly that page.  At the end VmLck, VmPin, heap blocks, mapped
 * bytes and IOMMU mappings are back at their start.
 * UBDMA_SOAK_SECONDS (default 90) bounds it; UBDMA_SOAK_SEED repeats a run; UBDMA_SOAK_TRUST_MONITOR=1
 * leaves half the churn to the cache's userfaultfd monitor.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "fault.h"
#include "core/ctx.h" /* iommu_attach(): the fake container gets a group */

#define PG 4096UL
#define HP (2UL << 20)
#define NBUF 12
#define NCOOKIE 24
#define NREG 24
#define NTAG 5

struct buf {
	char *p;
	size_t len;
	int huge;
};

static ubdma_ctx_t *ctx;
static struct buf bufs[NBUF];
static struct {
	ubdma_umem_t *u;
	int b;
	size_t off, len;
} cookies[NCOOKIE];
static struct {
	ubdma_reg_t *r;
	int b;
	size_t off, len;
} regs[NREG];
static ubdma_tag_t *tags[NTAG];
static uint64_t rng, seed0;
static long nops;
static long ops[16], faults_survived, checks, failures;
static const char *op_names[16] = { "map", "unmap", "mremap", "lock", "unlock", "reg_get", "reg_put", "load",
				    "load_sg", "mem_alloc", "sweep", "faulted" };

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static size_t rndn(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

static void bad(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "FAIL: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (seed %" PRIu64 ", op %ld)\n", seed0, nops);
	va_end(ap);
	if (++failures > 20)
		exit(1);
}

static long status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long kb = 0;
	size_t kl = strlen(key);

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':')
			kb = strtol(line + kl + 1, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

/* The device's view of iova: the byte the IOMMU maps it to, or NULL. */
static unsigned char *dev(uint64_t iova)
{
	return (unsigned char *)fault_vfio_lookup(iova);
}

/* What a failure report needs to tell a stale registration from a page the kernel moved. */
static void explain(uint64_t iova, const char *va)
{
	char line[400];

	if (fault_vfio_explain(iova, line, sizeof(line)) == 0)
		fprintf(stderr, "  IOMMU: %s\n", line);
	for (int i = 0; i < NCOOKIE; i++)
		if (cookies[i].u && ubdma_umem_iova(cookies[i].u, va) != UBDMA_BAD_IOVA)
			fprintf(stderr, "  held by cookie %d of buffer %d (%p) [+%zu, +%zu)\n", i, cookies[i].b,
				(void *)bufs[cookies[i].b].p, cookies[i].off, cookies[i].off + cookies[i].len);
	for (int i = 0; i < NREG; i++)
		if (regs[i].r && ubdma_reg_iova(regs[i].r, va) != UBDMA_BAD_IOVA)
			fprintf(stderr, "  held by registration %d of buffer %d (%p) [+%zu, +%zu)\n", i, regs[i].b,
				(void *)bufs[regs[i].b].p, regs[i].off, regs[i].off + regs[i].len);
}

/* Every page of every buffer: unregistered, or mapped by the IOMMU to that very page. */
static void sweep(void)
{
	for (int b = 0; b < NBUF; b++)
		for (size_t off = 0; bufs[b].p && off < bufs[b].len; off += PG) {
			uint64_t iova = ubdma_vtoiova(ctx, bufs[b].p + off + 123);
			checks++;
			if (iova != UBDMA_BAD_IOVA && dev(iova) != (unsigned char *)bufs[b].p + off + 123) {
				bad("buffer %d page %zu: IOVA %#" PRIx64 " reaches %p, not %p", b, off / PG, iova,
				    (void *)dev(iova), (void *)(bufs[b].p + off + 123));
				explain(iova, bufs[b].p + off + 123);
			}
		}
	for (int i = 0; i < NCOOKIE; i++)
		if (cookies[i].u && ubdma_vtoiova(ctx, bufs[cookies[i].b].p + cookies[i].off) == UBDMA_BAD_IOVA)
			bad("cookie %d: its page is not translated", i);
}

static void fill(struct buf *b)
{
	for (size_t i = 0; i < b->len; i += 64)
		b->p[i] = (char)rnd();
}

/* Drop everything that refers to buffer b. */
static void release_buf(int b)
{
	for (int i = 0; i < NCOOKIE; i++)
		if (cookies[i].u && cookies[i].b == b) {
			ubdma_umem_unlock(cookies[i].u);
			cookies[i].u = NULL;
		}
	for (int i = 0; i < NREG; i++)
		if (regs[i].r && regs[i].b == b) {
			ubdma_reg_put(regs[i].r);
			regs[i].r = NULL;
		}
}

static void op_map(int b)
{
	struct buf *x = &bufs[b];

	x->huge = rndn(8) == 0;
	x->len = x->huge ? HP * (1 + rndn(2)) : PG * (1 + rndn(48));
	x->p = mmap(NULL, x->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (x->huge ? MAP_HUGETLB : 0),
		    -1, 0);
	if (x->p == MAP_FAILED) {
		x->p = NULL;
		return;
	}
	fill(x);
	ops[0]++;
}

static long remap_delta;

/*
 * The application tells the cache before it unmaps or moves memory (ubdma_reg_invalidate()).
 * With UBDMA_SOAK_TRUST_MONITOR=1, half the time it does not, and the userfaultfd monitor must
 * notice on its own (docs/reliability.md) - unless the cache holds entries the monitor could not
 * watch (an injected fault in UFFDIO_REGISTER): those only ubdma_reg_invalidate() can drop.
 */
static void maybe_invalidate(int b)
{
	struct ubdma_rcache_stats st;

	if (!getenv("UBDMA_SOAK_TRUST_MONITOR") || rndn(2) || ubdma_rcache_stats(ctx, &st, sizeof(st)) ||
	    !st.monitor_active || st.unmonitored)
		ubdma_reg_invalidate(ctx, bufs[b].p, bufs[b].len);
}

static void op_unmap(int b)
{
	release_buf(b);
	maybe_invalidate(b);
	munmap(bufs[b].p, bufs[b].len);
	bufs[b].p = NULL;
	ops[1]++;
}

static void op_mremap(int b)
{
	struct buf *x = &bufs[b];

	if (x->huge)
		return;
	release_buf(b);
	maybe_invalidate(b);
	size_t nlen = PG * (1 + rndn(48));
	void *q = mremap(x->p, x->len, nlen, MREMAP_MAYMOVE);
	if (q == MAP_FAILED)
		return;
	remap_delta += (long)nlen - (long)x->len;
	x->p = q;
	x->len = nlen;
	fill(x);
	ops[2]++;
}

static void pick_range(int b, size_t *off, size_t *len, int aligned)
{
	size_t n = bufs[b].len;

	*off = rndn(n);
	*len = 1 + rndn(n - *off);
	if (aligned) {
		*off &= ~(PG - 1);
		*len = (*len + PG - 1) & ~(PG - 1);
		if (*off + *len > n)
			*len = n - *off;
	}
}

static int op_lock(int b)
{
	int i = (int)rndn(NCOOKIE);
	size_t off, len;

	if (cookies[i].u)
		return 0;
	pick_range(b, &off, &len, 1);
	int flags = (int)(1 + rndn(3));
	int rc = ubdma_umem_lock(ctx, bufs[b].p + off, len, flags, &cookies[i].u);
	if (!rc) {
		cookies[i].b = b;
		cookies[i].off = off;
		cookies[i].len = len;
		for (size_t o = 0; o < len; o += PG)
			if (dev(ubdma_umem_iova(cookies[i].u, bufs[b].p + off + o)) != (unsigned char *)bufs[b].p + off + o)
				bad("cookie page %zu does not reach its page", o / PG);
		ops[3]++;
	}
	return rc;
}

static void op_unlock(void)
{
	int i = (int)rndn(NCOOKIE);

	if (cookies[i].u) {
		ubdma_umem_unlock(cookies[i].u);
		cookies[i].u = NULL;
		ops[4]++;
	}
}

static int op_reg_get(int b)
{
	int i = (int)rndn(NREG);
	size_t off, len;

	if (regs[i].r)
		return 0;
	pick_range(b, &off, &len, 0);
	int rc = ubdma_reg_get(ctx, bufs[b].p + off, len, (int)(1 + rndn(3)), &regs[i].r);
	if (!rc) {
		regs[i].b = b;
		regs[i].off = off;
		regs[i].len = len;
		for (size_t o = 0; o < len; o += 997) {
			char *va = bufs[b].p + off + o;
			if (dev(ubdma_reg_iova(regs[i].r, va)) != (unsigned char *)va)
				bad("registration byte %zu does not reach its byte", o);
		}
		ops[5]++;
	}
	return rc;
}

static void op_reg_put(void)
{
	int i = (int)rndn(NREG);

	if (regs[i].r) {
		ubdma_reg_put(regs[i].r);
		regs[i].r = NULL;
		ops[6]++;
	}
}

/* Check a load's segments against the tag's rules and the bytes, both ways. */
static void check_load(ubdma_tag_t *t, ubdma_map_t *m, int ti, char *va, size_t len, ubdma_seg_t *segs, int nseg)
{
	size_t total = 0;

	ubdma_map_sync(t, m, UBDMA_SYNC_PREWRITE);
	for (int s = 0; s < nseg; s++) {
		uint64_t a = segs[s].ds_addr, l = segs[s].ds_len;
		if (ti == 2 && a + l - 1 > 0xffffffffu)
			bad("32-bit tag: segment above 4 GiB");
		if (ti == 3 && ((a & 511) && s == 0))
			bad("aligned tag: first segment at %#" PRIx64, a);
		if (ti == 3 && (a >> 16) != ((a + l - 1) >> 16))
			bad("boundary tag: segment crosses 64 KiB");
		for (uint64_t k = 0; k < l; k += 37) {
			unsigned char *d = dev(a + k);
			if (!d || *d != (unsigned char)va[total + k]) {
				bad("tag %d segment %d byte %" PRIu64 ": device sees %s", ti, s, k, d ? "other bytes" : "a fault");
				break;
			}
		}
		/* ... and with STRICT the device never reaches a neighbour of the buffer */
		if (ti == 1 && dev(a) == (unsigned char *)va + total && (((uintptr_t)va + total) & (PG - 1)))
			bad("STRICT: a partial page used in place");
		total += l;
	}
	if (total != len)
		bad("segments cover %zu of %zu bytes", total, len);
	/* the device writes, POSTREAD brings it back */
	total = 0;
	for (int s = 0; s < nseg; s++) {
		unsigned char *d = dev(segs[s].ds_addr);
		if (d)
			*d = (unsigned char)(s + 1);
		total += segs[s].ds_len;
	}
	ubdma_map_sync(t, m, UBDMA_SYNC_POSTREAD);
	total = 0;
	for (int s = 0; s < nseg; s++) {
		if ((unsigned char)va[total] != (unsigned char)(s + 1))
			bad("POSTREAD: segment %d's first byte not back in the buffer", s);
		total += segs[s].ds_len;
	}
}

static int op_load(int b, int sg)
{
	int ti = (int)rndn(NTAG);
	ubdma_tag_t *t = tags[ti];
	ubdma_map_t *m;
	ubdma_seg_t segs[64];
	int nseg = 0;
	size_t off, len;

	if (ubdma_map_create(t, 0, &m))
		return ENOMEM;
	pick_range(b, &off, &len, 0);
	if (len > 16 * PG)
		len = 16 * PG;
	int rc = ubdma_map_load_sg(t, m, bufs[b].p + off, len, segs, &nseg, UBDMA_NOWAIT);
	if (!rc) {
		check_load(t, m, ti, bufs[b].p + off, len, segs, nseg);
		ubdma_map_unload(t, m);
		ops[sg ? 8 : 7]++;
	} else if (rc != EFBIG && rc != ENOMEM) {
		bad("load: %d %s", rc, ubdma_last_error());
	}
	ubdma_map_destroy(t, m);
	return rc == EFBIG ? 0 : rc;
}

static int op_mem(void)
{
	ubdma_tag_t *t = tags[rndn(NTAG)];
	void *va;
	ubdma_map_t *m;
	int rc = ubdma_mem_alloc(t, &va, UBDMA_ZERO, &m);

	if (!rc) {
		uint64_t iova = ubdma_vtoiova(ctx, va);
		if (dev(iova) != va)
			bad("DMA memory does not reach itself");
		ubdma_mem_free(t, va, m);
		ops[9]++;
	}
	return rc;
}

static int one_op(int b)
{
	switch (rndn(12)) {
	case 0:
		return op_lock(b);
	case 1:
	case 2:
		op_unlock();
		return 0;
	case 3:
	case 4:
		return op_reg_get(b);
	case 5:
		op_reg_put();
		return 0;
	case 6:
	case 7:
	case 8:
		return op_load(b, 1);
	case 9:
		return op_mem();
	case 10:
		op_mremap(b);
		return 0;
	default:
		op_unmap(b);
		return 0;
	}
}

int main(void)
{
	const char *s = getenv("UBDMA_SOAK_SECONDS"), *sd = getenv("UBDMA_SOAK_SEED");
	double secs = s ? atof(s) : 90;
	void *grp;
	struct timespec t0, t;

	seed0 = rng = sd ? strtoull(sd, NULL, 0) : (uint64_t)time(NULL) * 2654435761u + 1;
	printf("# soak: %.0f s, seed %" PRIu64 " (UBDMA_SOAK_SEED to repeat)\n", secs, rng);
	fault_fake_vfio(1);
	/* warm-up of the process-wide tables (wire counts, and the watch's, which cookies on the
	 * fake container use since it pins: docs/wire.md section 13), then the books */
	char *w = mmap(NULL, 256 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	static struct wire_ticket *wt[256]; /* the ticket pool grown past what the soak holds at once */
	uintptr_t ws, we;
	if (ubdma_wire(w, PG, 0) || ubdma_unwire(w, PG, 0))
		return 1;
	for (int i = 0; i < 256; i++)
		if (wire_watch(w + i * PG, PG, 0, &wt[i], &ws, &we))
			return 1;
	for (int i = 0; i < 256; i++)
		wire_release(wt[i]);
	munmap(w, 256 * PG);
	long lck0 = status_kb("VmLck"), pin0 = status_kb("VmPin"), blocks0 = fault_live_blocks(),
	     mapped0 = fault_mapped_bytes();

	if (ubdma_ctx_open(UBDMA_BACKEND_VFIO, &ctx) || iommu_attach(&ctx->iommu, &(struct iommu_dev){ "0000:00:05.0", 5 }, &grp)) {
		fprintf(stderr, "context: %s\n", ubdma_last_error());
		return 1;
	}
	ubdma_tag_t *root = ubdma_ctx_tag(ctx);
	int rc = ubdma_tag_create(root, 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 16 * PG, 32, 16 * PG, 0, &tags[0]);
	rc |= ubdma_tag_create(root, 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 16 * PG, 32, 16 * PG, UBDMA_STRICT, &tags[1]);
	rc |= ubdma_tag_create(root, 1, 0, UBDMA_MAXADDR_32BIT, UBDMA_MAXADDR, 16 * PG, 32, 16 * PG, 0, &tags[2]);
	rc |= ubdma_tag_create(root, 512, 1 << 16, UBDMA_MAXADDR, UBDMA_MAXADDR, 16 * PG, 48, 8 * PG, 0, &tags[3]);
	rc |= ubdma_tag_create(root, 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 16 * PG, 32, 16 * PG, UBDMA_KEEP_PG_OFFSET,
			       &tags[4]);
	if (rc) {
		fprintf(stderr, "tags: %s\n", ubdma_last_error());
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long n = 0;
	for (;; n++) {
		if ((n & 63) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if ((double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 > secs)
				break;
		}
		int b = (int)rndn(NBUF);
		nops = n;
		if (!bufs[b].p) {
			op_map(b);
			continue;
		}
		if (rndn(20) == 0) {
			/* one operation with its N-th call failing: a positive errno or success */
			long lck = status_kb("VmLck");
			fault_arm(F_ALL, 1 + (long)rndn(40));
			int r = one_op(b);
			int fired = fault_disarm();
			if (fired) {
				ops[11]++;
				faults_survived++;
				if (r < 0)
					bad("faulted op returned %d", r);
				(void)lck;
			}
		} else {
			rc = one_op(b);
			if (rc && rc != ENOMEM && rc != ENOSPC && rc != EFAULT)
				bad("operation: %d %s", rc, ubdma_last_error());
		}
		sweep();
		ops[10]++;
	}
	for (int b = 0; b < NBUF; b++)
		if (bufs[b].p)
			op_unmap(b);
	sweep();
	for (int i = 0; i < NTAG; i++)
		if (ubdma_tag_destroy(tags[i]))
			bad("tag %d: %s", i, ubdma_last_error());
	struct ubdma_rcache_stats st;
	ubdma_rcache_stats(ctx, &st, sizeof(st));
	iommu_detach(&ctx->iommu, grp);
	ubdma_ctx_close(ctx);

	long total = 0;
	for (int i = 0; i < 10; i++)
		total += ops[i];
	printf("# operations:");
	for (int i = 0; i < 12; i++)
		printf(" %s %ld", op_names[i], ops[i]);
	printf("\n# cache: hits %" PRIu64 " misses %" PRIu64 " merges %" PRIu64 " invalidations %" PRIu64
	       " (monitor: %s)\n", st.hits, st.misses, st.merges, st.invalidations, st.monitor);
	long lck1 = status_kb("VmLck"), pin1 = status_kb("VmPin");
	printf("# VmLck %ld -> %ld kB, VmPin %ld -> %ld kB, heap blocks %ld -> %ld, mapped %ld -> %ld, IOMMU "
	       "mappings %ld\n", lck0, lck1, pin0, pin1, blocks0, fault_live_blocks(), mapped0 - remap_delta,
	       fault_mapped_bytes(), fault_vfio_nmaps());
	/* the test's own mremaps are not seen by the books: munmap took their new length off */
	mapped0 -= remap_delta;
	if (lck1 != lck0 || pin1 != pin0 || fault_live_blocks() != blocks0 || fault_mapped_bytes() != mapped0 ||
	    fault_vfio_nmaps() != 0)
		bad("the books are not back at their start");
	printf("UBDMA_SOAK_SUMMARY operations=%ld translations_checked=%ld faults_survived=%ld failures=%ld\n",
	       total, checks, faults_survived, failures);
	return failures ? 1 : 0;
}
