/*
 * test_rcache_verbs.c - the registration cache over verbs memory regions, on soft-RoCE (rxe) in
 * the guest.  Each check fails when its rule is broken:
 *  - never stale: register through the cache, munmap, map new memory at the same address,
 *    register again; an RDMA WRITE from a second queue pair to the returned rkey lands in the NEW
 *    pages and never in the old frames, which a second view of the same memfd keeps visible;
 *  - the same after mremap and after madvise(MADV_DONTNEED_LOCKED);
 *  - a registration held across munmap keeps its MR (a write through it reaches the old frames)
 *    until put, after which its rkey is refused (ibv_dereg_mr ran);
 *  - fork with live MRs: the parent's writes after fork do not move its pages away from the MR,
 *    and the child's writes to its copy do not reach them;
 *  - watch only (the verbs registrar pins): a held registration adds nothing to VmLck, its pin
 *    shows in VmPin;
 *  - limits: entries and registrations stay under the cache's limits, ibv_dereg_mr called for
 *    every evicted one;
 *  - fault injection on ibv_reg_mr / ibv_dereg_mr: a failed get leaves no MR, no wiring and no
 *    entry; a failed dereg is counted and unwires all the same.
 * Needs run-guest.sh -r -N (rdma_rxe, the e1000e on its kernel driver) and the rxe provider packed
 * (-i): exits 77 saying why otherwise.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ubdma/ubdma.h>
#include <ubdma/verbs.h>

#include "check.h"
#include "rxe.h"

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

#define PG 4096UL
#define LEN (8 * PG)
#define RW (UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)

static struct rxe R;
static ubdma_ctx_t *ctx;
static char *src;	  /* the writer's buffer */
static struct ibv_mr *src_mr;

/* ---------------------------------------------- the verbs registrar, counted and faulted */

static struct {
	int reg, dereg, live;
	int tries;	  /* calls into the library's registrar */
	int fail_reg;	  /* 1: fail before ibv_reg_mr; 2: ibv_reg_mr, then ibv_dereg_mr and fail */
	int fail_dereg;	  /* the next dereg reports EBUSY (after the real ibv_dereg_mr) */
} W;

static int w_reg(void *arg, void *addr, size_t len, int flags, void **keyp)
{
	const struct ubdma_registrar *v = ubdma_verbs_ops();
	int err;

	if (W.fail_reg == 1) {
		W.fail_reg = 0;
		return EIO;
	}
	W.tries++;
	if ((err = v->reg(arg, addr, len, flags, keyp)))
		return err;
	if (W.fail_reg == 2) {
		W.fail_reg = 0;
		v->dereg(arg, *keyp);
		return EIO;
	}
	W.reg++;
	W.live++;
	return 0;
}

static int w_dereg(void *arg, void *key)
{
	int err = ubdma_verbs_ops()->dereg(arg, key);

	W.dereg++;
	W.live--;
	if (W.fail_dereg) {
		W.fail_dereg = 0;
		return EBUSY;
	}
	return err;
}

/* pins, as the library's verbs registrar: the cache watches and does not wire (watch only) */
static const struct ubdma_registrar wrapped = { .name = "verbs-test", .reg = w_reg, .dereg = w_dereg,
						.flags = UBDMA_REGISTRAR_PINS | UBDMA_VERBS_MR_KEYS };

static struct ubdma_rcache_stats stats(void)
{
	struct ubdma_rcache_stats s;

	ubdma_rcache_stats(ctx, &s, sizeof(s));
	return s;
}

/* RDMA WRITE of len bytes of byte c from the writer to [dst, rkey]: the completion status. */
static int write_to(void *dst, uint32_t rkey, int c, size_t len)
{
	memset(src, c, len);
	return rxe_rdma(&R, IBV_WR_RDMA_WRITE, src, src_mr->lkey, len, (uintptr_t)dst, rkey);
}

/*
 * The same from a second process: a child opens the device on its own, connects a queue pair of
 * its own to a fresh one of ours (queue pair numbers over pipes) and writes to [dst, rkey].
 * Returns the child's completion status (0 success), or -1.
 */
static int write_from_child(void *dst, uint32_t rkey, int c, size_t len)
{
	int p2c[2], c2p[2];
	uint32_t qpn;

	if (pipe(p2c) || pipe(c2p))
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		struct rxe w;
		uint32_t peer;
		if (rxe_device_open(&w) || !(w.pd = ibv_alloc_pd(w.ctx)) ||
		    !(w.cq = ibv_create_cq(w.ctx, 16, NULL, NULL, 0)) || !(w.qa = rxe_qp(&w)))
			_exit(100);
		char *b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct ibv_mr *mr = ibv_reg_mr(w.pd, b, len, IBV_ACCESS_LOCAL_WRITE);
		if (!mr)
			_exit(101);
		memset(b, c, len);
		if (write(c2p[1], &w.qa->qp_num, 4) != 4 || read(p2c[0], &peer, 4) != 4 || rxe_connect(&w, w.qa, peer))
			_exit(102);
		_exit(rxe_rdma(&w, IBV_WR_RDMA_WRITE, b, mr->lkey, len, (uintptr_t)dst, rkey) == 0 ? 0 : 103);
	}
	struct ibv_qp *q = rxe_qp(&R);
	int status = -1, ok = q && read(c2p[0], &qpn, 4) == 4 && rxe_connect(&R, q, qpn) == 0 &&
			       write(p2c[1], &q->qp_num, 4) == 4;
	if (!ok)
		kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	if (q)
		ibv_destroy_qp(q);
	close(p2c[0]), close(p2c[1]), close(c2p[0]), close(c2p[1]);
	if (!ok || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static int all(const char *p, int c, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (char)c)
			return 0;
	return 1;
}

/* A memfd mapped twice: *view is the one registered, *keep shows its frames whatever happens. */
static int two_views(char **view, char **keep)
{
	int fd = memfd_create("rcache-verbs", 0);

	if (fd < 0 || ftruncate(fd, LEN))
		return -1;
	*view = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	*keep = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (*view == MAP_FAILED || *keep == MAP_FAILED)
		return -1;
	memset(*view, 0, LEN);
	return 0;
}

static char *anon_at(void *addr)
{
	char *p = mmap(addr, LEN, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (addr ? MAP_FIXED_NOREPLACE : 0), -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0, LEN);
	return p;
}

/* ------------------------------------------------------------ the rules */

/* How the old registration goes away: munmap (the address reused), mremap, DONTNEED_LOCKED. */
enum change { MUNMAP, MREMAP, DONTNEED };
static const char *change_name[] = { "munmap + new mmap", "mremap away + new mmap", "MADV_DONTNEED_LOCKED" };

static void never_stale(enum change how)
{
	char *view, *keep, *p;
	ubdma_reg_t *r1 = NULL, *r2 = NULL;
	const char *nm = change_name[how];

	if (two_views(&view, &keep)) {
		check(0, "%s: memfd views: %s", nm, strerror(errno));
		return;
	}
	check(ubdma_reg_get(ctx, view, LEN, RW, &r1) == 0, "%s: first registration", nm);
	uint32_t rk1 = ubdma_verbs_rkey(r1);
	check(write_to(view, rk1, 'A', LEN) == IBV_WC_SUCCESS && all(keep, 'A', LEN),
	      "%s: a write through the first MR lands in the memfd's frames", nm);
	ubdma_reg_put(r1);
	if (how == DONTNEED) {
		/* private anonymous memory: the old frames cannot be seen any more, the new ones can */
		p = anon_at(NULL);
		check(ubdma_reg_get(ctx, p, LEN, RW, &r1) == 0 && write_to(p, ubdma_verbs_rkey(r1), 'A', LEN) == 0,
		      "%s: anonymous memory registered and written", nm);
		rk1 = ubdma_verbs_rkey(r1);
		ubdma_reg_put(r1);
		check(madvise(p, LEN, MADV_DONTNEED_LOCKED) == 0 && all(p, 0, LEN),
		      "%s: the pages are released (read back as zero)", nm);
	} else if (how == MUNMAP) {
		munmap(view, LEN);
		p = anon_at(view);
	} else {
		char *t = mmap(NULL, LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		check(mremap(view, LEN, LEN, MREMAP_MAYMOVE | MREMAP_FIXED, t) == t, "%s: moved", nm);
		p = anon_at(view);
		munmap(t, LEN);
	}
	check(p != NULL && (how == DONTNEED || p == view), "%s: new memory at the old address", nm);
	if (!p)
		return;
	int reg0 = W.reg;
	check(ubdma_reg_get(ctx, p, LEN, RW, &r2) == 0, "%s: second registration", nm);
	uint32_t rk2 = ubdma_verbs_rkey(r2);
	check(W.reg == reg0 + 1 && rk2 != rk1, "%s: a new MR (ibv_reg_mr called, rkey %#x != %#x)", nm, rk2, rk1);
	int st = write_to(p, rk2, 'B', LEN);
	check(st == IBV_WC_SUCCESS && all(p, 'B', LEN), "%s: the write lands in the NEW pages (status %d)", nm, st);
	if (how == MUNMAP) {
		st = write_from_child(p, rk2, 'C', LEN);
		check(st == 0 && all(p, 'C', LEN), "%s: a second process's write lands in the NEW pages (status %d)",
		      nm, st);
	}
	if (how != DONTNEED)
		check(all(keep, 'A', LEN), "%s: the old frames are untouched (never a stale byte)", nm);
	ubdma_reg_put(r2);
	munmap(p, LEN);
	if (how != DONTNEED)
		munmap(keep, LEN);
}

/* Held across munmap: the MR stays (old frames) until put; then its rkey is refused. */
static void held_keeps_mr(void)
{
	char *view, *keep;
	ubdma_reg_t *r = NULL;

	if (two_views(&view, &keep) || ubdma_reg_get(ctx, view, LEN, RW, &r)) {
		check(0, "held: set-up");
		return;
	}
	uint32_t rk = ubdma_verbs_rkey(r);
	int dereg0 = W.dereg;
	munmap(view, LEN);
	char *p = anon_at(view);
	ubdma_reg_t *r2 = NULL;
	check(p && ubdma_reg_get(ctx, p, LEN, RW, &r2) == 0 && r2 != r, "held: the new memory gets a new registration");
	check(W.dereg == dereg0 && stats().held_invalid == 1, "held: the invalidated MR is not deregistered while held");
	check(write_to(view, rk, 'H', PG) == IBV_WC_SUCCESS && all(keep, 'H', PG) && all(p, 0, PG),
	      "held: its holder's write reaches the old frames, not the new memory");
	ubdma_reg_put(r);
	check(W.dereg == dereg0 + 1, "held: ibv_dereg_mr at the last put");
	int st = write_to(view, rk, 'X', PG);
	check(st != IBV_WC_SUCCESS && all(keep, 'H', PG), "held: its rkey is refused after put (status %d)", st);
	rxe_pair(&R); /* the failed request left the queue pairs in the error state */
	ubdma_reg_put(r2);
	munmap(p, LEN);
	munmap(keep, LEN);
}

/* fork with live MRs: the parent's pages stay under its MR when it writes after the fork. */
static void fork_live(void)
{
	char *p = anon_at(NULL);
	ubdma_reg_t *r = NULL;

	if (!p || ubdma_reg_get(ctx, p, LEN, RW, &r)) {
		check(0, "fork: set-up: %s", ubdma_last_error());
		return;
	}
	memset(p, 'q', LEN);
	pid_t pid = fork();
	if (pid == 0) {
		/* watch only, no MADV_DONTFORK: the child has the range, a copy of the pages pinned
		 * for DMA (the kernel copies those at fork), not the parent's frames */
		memset(p, 'c', LEN);
		_exit(all(p, 'c', LEN) ? 0 : 1);
	}
	int status = -1;
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0 && all(p, 'q', LEN),
	      "fork: the child writes its own copy of the registered range, not the parent's pages");
	memset(p, 'p', LEN); /* would break copy-on-write, were the pages shared with the child */
	check(write_to(p, ubdma_verbs_rkey(r), 'F', LEN) == IBV_WC_SUCCESS && all(p, 'F', LEN),
	      "fork: an RDMA WRITE after the parent's own writes lands in its pages");
	ubdma_reg_put(r);
	munmap(p, LEN);
}

static void limits(void)
{
	char *p = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ubdma_reg_t *r = NULL;
	int ok = 1;

	ubdma_rcache_flush(ctx);
	int dereg0 = W.dereg, reg0 = W.reg;
	ubdma_rcache_set_limits(ctx, 0, 4, 0);
	for (int i = 0; i < 16; i++) {
		if (ubdma_reg_get(ctx, p + 2 * i * PG, PG, RW, &r))
			ok = 0;
		else
			ubdma_reg_put(r);
		ok &= W.live <= 4 && stats().entries <= 4;
	}
	check(ok && W.reg - reg0 == 16 && W.dereg - dereg0 == 12,
	      "limits: 16 registrations under an entry limit of 4, 12 ibv_dereg_mr (live MRs %d)", W.live);
	ubdma_rcache_set_limits(ctx, 2 * PG, 0, 0);
	check(W.live <= 2 && stats().bytes_pinned <= 2 * PG, "limits: a byte limit of 2 pages deregisters down to it");
	ubdma_rcache_set_limits(ctx, 0, 0, 1);
	check(W.live <= 1, "limits: a registration limit of 1");
	ubdma_reg_t *h = NULL;
	check(ubdma_reg_get(ctx, p, PG, RW, &h) == 0 && ubdma_reg_get(ctx, p + 8 * PG, PG, RW, &r) == ENOSPC &&
	      W.live == 1, "limits: held at the limit, the next request is refused with no MR made");
	ubdma_reg_put(h);
	ubdma_rcache_set_limits(ctx, 0, 0, 0);
	ubdma_rcache_flush(ctx);
	check(W.live == 0, "limits: flushed, no MR left");
	munmap(p, 64 * PG);
}

static long status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	size_t n = strlen(key);
	long kb = -1;

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			kb = strtol(line + n + 1, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

static long vmlck(void)
{
	return status_kb("VmLck");
}

/* Watch only: the registrar's pin is the wiring; nothing is mlocked. */
static void watch_only(void)
{
	char *p = anon_at(NULL);
	ubdma_reg_t *r = NULL;

	ubdma_rcache_flush(ctx);
	long lck = vmlck(), pin = status_kb("VmPin");
	int err = p ? ubdma_reg_get(ctx, p, LEN, RW, &r) : ENOMEM;
	long lck1 = vmlck(), pin1 = status_kb("VmPin");
	check(!err && lck1 == lck && pin1 >= pin + (long)(LEN >> 10),
	      "watch only: registered, VmLck unchanged (%ld kB), VmPin up by the range (%ld -> %ld kB)", lck1, pin, pin1);
	ubdma_reg_put(r);
	ubdma_rcache_flush(ctx);
	check(status_kb("VmPin") == pin, "watch only: flushed, the pin is gone (VmPin %ld kB)", status_kb("VmPin"));
	munmap(p, LEN);
}

static void faults(void)
{
	char *p = anon_at(NULL);
	ubdma_reg_t *r = NULL;
	long lck = vmlck(), pin = status_kb("VmPin");

	ubdma_rcache_flush(ctx);
	for (int mode = 1; mode <= 2; mode++) {
		W.fail_reg = mode;
		int err = ubdma_reg_get(ctx, p, LEN, RW, &r);
		check(err == EIO && W.live == 0 && vmlck() == lck && status_kb("VmPin") == pin && stats().entries == 0 &&
		      stats().bytes_pinned == 0,
		      "faults: ibv_reg_mr %s: EIO (%d), no MR, nothing wired or cached",
		      mode == 1 ? "failing" : "undone after it pinned", err);
	}
	check(ubdma_reg_get(ctx, p, LEN, RW, &r) == 0 && write_to(p, ubdma_verbs_rkey(r), 'Z', LEN) == 0 &&
	      all(p, 'Z', LEN), "faults: the next get registers and works");
	ubdma_reg_put(r);
	W.fail_dereg = 1;
	uint64_t f0 = stats().dereg_failures;
	ubdma_rcache_flush(ctx);
	check(stats().dereg_failures == f0 + 1 && W.live == 0 && vmlck() == lck && stats().entries == 0,
	      "faults: ibv_dereg_mr failing is counted and the range unwired");
	munmap(p, LEN);
	/*
	 * ibv_reg_mr itself refusing, in the library's registrar: WRITE intent on read-only memory (the
	 * kernel's pin says EFAULT, docs/wire.md's watch-only wirings).  The error returned is the
	 * call's own, not the value errno held before the get; no MR, nothing wired or cached.
	 */
	char *q = anon_at(NULL);
	int t0 = W.tries, err;
	errno = ENOSPC;
	err = q && mprotect(q, LEN, PROT_READ) == 0 ? ubdma_reg_get(ctx, q, LEN, RW, &r) : ENOMEM;
	check(err == EFAULT && W.tries == t0 + 1 && W.live == 0 && stats().entries == 0 && vmlck() == lck &&
	      status_kb("VmPin") == pin,
	      "faults: ibv_reg_mr refusing (read-only memory, WRITE intent): its EFAULT (%d), not errno's ENOSPC, nothing left",
	      err);
	if (q)
		munmap(q, LEN);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (rxe_open(&R)) {
		printf("SKIP: soft-RoCE: %s\n", R.why);
		return 77;
	}
	printf("# rxe0 up, GID index %d\n", R.gidx);
	src = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	src_mr = ibv_reg_mr(R.pd, src, LEN, IBV_ACCESS_LOCAL_WRITE);
	int err = ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx);
	check(src_mr && !err, "set-up: writer MR and context");
	if (!src_mr || err)
		return 1;
	check(ubdma_verbs_registrar(NULL, R.pd) == EINVAL && ubdma_verbs_registrar(ctx, NULL) == EINVAL,
	      "ubdma_verbs_registrar: EINVAL for NULL");
	/* the library's own registrar, then the counted one wrapped around it */
	char *p = anon_at(NULL);
	ubdma_reg_t *r = NULL;
	check(ubdma_verbs_registrar(ctx, R.pd) == 0 && ubdma_reg_get(ctx, p, LEN, UBDMA_UMEM_READ, &r) == 0,
	      "ubdma_verbs_registrar: a read-only registration");
	struct ibv_mr *mr = ubdma_verbs_mr(r);
	check(mr && mr->addr == p && mr->length == LEN && ubdma_reg_iova(r, p + 5) == (uintptr_t)p + 5,
	      "the MR covers the range; the IOVA is the address");
	check(rxe_rdma(&R, IBV_WR_RDMA_WRITE, src, src_mr->lkey, PG, (uintptr_t)p, mr->rkey) != IBV_WC_SUCCESS,
	      "READ intent: the MR refuses a peer's RDMA WRITE");
	rxe_pair(&R);
	memset(p, 'r', PG);
	check(rxe_rdma(&R, IBV_WR_RDMA_READ, src, src_mr->lkey, PG, (uintptr_t)p, mr->rkey) == IBV_WC_SUCCESS &&
	      all(src, 'r', PG), "READ intent: a peer's RDMA READ is served");
	check(ubdma_reg_key(r) == mr && ubdma_reg_registrar(r) == ubdma_verbs_ops(),
	      "the key is the MR itself, made through the verbs registrar");
	ubdma_reg_put(r);
	ubdma_rcache_flush(ctx);
	/* another domain's registration is no MR: the IOMMU's (the va backend's cookie) */
	ubdma_ctx_t *other;
	ubdma_reg_t *ro = NULL;
	check(ubdma_ctx_open(UBDMA_BACKEND_VA, &other) == 0 && ubdma_reg_get(other, p, LEN, RW, &ro) == 0,
	      "a registration in the IOMMU domain");
	errno = 0;
	check(ro && ubdma_verbs_mr(ro) == NULL && errno == EINVAL && ubdma_verbs_lkey(ro) == 0 &&
	      ubdma_reg_registrar(ro) == NULL, "ubdma_verbs_mr: EINVAL for the IOMMU domain's registration");
	ubdma_reg_put(ro);
	ubdma_ctx_close(other);
	munmap(p, LEN);
	check(ubdma_rcache_set_registrar(ctx, &wrapped, R.pd) == 0, "the counted registrar");

	never_stale(MUNMAP);
	never_stale(MREMAP);
	never_stale(DONTNEED);
	held_keeps_mr();
	fork_live();
	watch_only();
	limits();
	faults();

	struct ubdma_rcache_stats s = stats();
	printf("# stats: hits %llu misses %llu invalidations %llu evictions %llu\n", (unsigned long long)s.hits,
	       (unsigned long long)s.misses, (unsigned long long)s.invalidations, (unsigned long long)s.evictions);
	check(s.invalidations >= 4, "the monitor invalidated what changed (%llu)", (unsigned long long)s.invalidations);
	ubdma_ctx_close(ctx);
	check(W.live == 0, "closing the context deregistered every MR");
	ibv_dereg_mr(src_mr);
	rxe_close(&R);
	return failures ? 1 : 0;
}
