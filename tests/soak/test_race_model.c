/*
 * test_race_model.c - a model-based race test: wiring, cookies, the registration cache and
 * bus_dma loads racing munmap, MAP_FIXED replacement, mremap and fork in other threads (issue 15).
 *
 * The address space under test is a fixed set of slots, each 4 MiB of one PROT_NONE reservation
 * made up front, so that addresses repeat: a slot holds, at its base, one mapping of one kind
 * (anonymous 4 KiB pages, memfd MAP_SHARED 4 KiB pages, or one 2 MiB hugetlb page) or nothing.
 * Churner threads replace a slot's mapping (MAP_FIXED over it, or munmap then mmap), unmap it,
 * move it with mremap into a spare region (and unmap it there later), and fork children that
 * open a context of their own and register a buffer.  Worker threads wire and unwire, lock and
 * unlock cookies, get and put registrations, and load and unload maps, on random sub-ranges of
 * random slots, in a va context and (as root, with hugepages) a phys one, without any lock of
 * the test held: the calls race the churn.
 *
 * The model: a slot has a lock and a generation that every churn of it bumps under the lock;
 * a worker takes the lock only to note the generation before a call and to record the outcome
 * after it, so it knows whether its call overlapped a churn and which generation what it holds
 * belongs to.  Checks (each violation printed, with the VMAs smaps shows when it is about them):
 *  (a) a call that races churn answers 0, EFAULT or EAGAIN (ENOTSUP for phys on 4 KiB memory),
 *      never ENOMEM (no limit is set) nor EINVAL for a balanced unwire; a call no churn touched
 *      answers exactly what its range deserves;
 *  (c) while nothing is in flight on a slot, every sampled page's wire count lies between what
 *      the holders of the current generation account for and what they could account for, the
 *      phys context translates held pages to their pagemap frame (ubdma_vtoiova, _umem_iova,
 *      _reg_iova agree) and no context translates a page nobody of this generation holds;
 *  (d) right after a churner replaced a mapping (still under the slot lock, and only when no
 *      call was in flight on the slot), nothing of the new memory is wired, locked, DONTFORK
 *      or translated: munmap ended every wiring (rule 1);
 *  (e) as (c), counted apart when a holder of the other page size (hugetlb vs 4 KiB) from an
 *      older generation is still outstanding: its release must not touch the new pages (rule 3);
 *  (b) at quiescent points every thread stops, workers release everything, the caches are
 *      flushed (the contexts closed and reopened at times): then no page of the slots and
 *      spares has a wire count or a translation, no VMA there is Locked: > 0, and no VMA of the
 *      process is lo or dc;
 *  fork children must exit 0 within 10 s (a hang is SIGALRM).
 * Bare ubdma_wire/ubdma_unwire carry no handle: after munmap ended a wiring, its owner's
 * unwire cannot be told from a new holder's, so the model does not count bare wirings on pages
 * where such a stale unwire is outstanding or was made while bare wirings of the new memory
 * were held (the "taint"); cookies and registrations have handles and are always counted.
 *
 * UBDMA_RACE_SECONDS (default 20; 3 with --short), UBDMA_RACE_WORKERS (4; --short 2),
 * UBDMA_RACE_CHURNERS (2; --short 1, 0 for none), UBDMA_RACE_SEED repeat or stretch a run;
 * UBDMA_RACE_CHURN (map_fixed,munmap+mmap,munmap,mremap,spare_munmap,fork) and UBDMA_RACE_OPS
 * (wire,umem_lock,reg_get,load) narrow a run to some kinds, to tell which one breaks a rule.  Under TSan the
 * children are not forked (TSan cannot start threads in a child of a threaded process).
 * Exit 0 when nothing was violated, 1 otherwise, 77 when the set-up is impossible.
 */
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "vmcheck.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 1U
#endif

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

#define PG 4096UL
#define HP (2UL << 20)
#define SPAN (4UL << 20)	 /* a slot's or spare's address space: a mapping at its base, PROT_NONE after */
#define SPAN_PAGES (SPAN / PG)
#define NSLOT 8
#define NSPARE 8
#define MAXW 16
#define MAXCH 4
#define HOLD 10		 /* items a worker holds at most */
#define LOAD_MAX (256UL << 10) /* largest load */
#define LOAD_SEGS 64
#define PRINT_MAX 8	 /* violations printed per rule */
#define TRUNC(x, a) ((x) & ~((uintptr_t)(a) - 1))
#define ROUND(x, a) (((x) + (a) - 1) & ~((uintptr_t)(a) - 1))

#define LD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define ST(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#define INC(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)

/* ------------------------------------------------------------ configuration */

static int nworkers = 4, nchurners = 2, forks_on = 1, have_huge, is_root;
static unsigned churn_mask = ~0u; /* UBDMA_RACE_CHURN: which kinds of churn run */
static unsigned op_mask = ~0u;	  /* UBDMA_RACE_OPS: which calls the workers make */
static double seconds = 20;
static uint64_t seed;
static int pagemap_fd = -1;

/* ------------------------------------------------------------ counters */

enum op { OP_WIRE, OP_UNWIRE, OP_LOCK, OP_UNLOCK, OP_REG_GET, OP_REG_PUT, OP_LOAD, NOP };
static const char *op_name[NOP] = { "wire", "unwire", "umem_lock", "umem_unlock", "reg_get", "reg_put", "load" };
static long ops[NOP];
static long res_efault, res_eagain, res_enotsup, res_eagain_strict, preempted;

enum churn { CH_REPLACE, CH_UNMAP_MAP, CH_UNMAP, CH_MREMAP, CH_SPARE_UNMAP, CH_FORK, NCH };
static const char *churn_name[NCH] = { "map_fixed", "munmap+mmap", "munmap", "mremap", "spare_munmap", "fork" };
static long churns[NCH];
static long huge_fallbacks, mremap_failed, lost_regions;
static long c_pages, c_checks, d_checks, d_skipped, b_checks, reopens;

enum rule { R_A, R_B, R_C, R_D, R_E, R_FORK, R_HANG, NRULE };
static const char *rule_name[NRULE] = { "a", "b", "c", "d", "e", "fork", "hang" };
static long viol[NRULE];
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

/* What each thread is doing, for the report when a pause never completes and with each violation. */
static const char *doing[MAXW + MAXCH];
static int doing_slot[MAXW + MAXCH];

static __thread int my_thread = -1;

static void violation(enum rule r, const char *fmt, ...)
{
	long n = __atomic_add_fetch(&viol[r], 1, __ATOMIC_RELAXED);
	va_list ap;

	if (n > PRINT_MAX + 1)
		return;
	pthread_mutex_lock(&out_lock);
	if (n == PRINT_MAX + 1) {
		printf("(further violations of rule %s are counted, not printed)\n", rule_name[r]);
	} else {
		printf("VIOLATION (%s) ", rule_name[r]);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf(" [by thread %d (tid %d); threads:", my_thread, (int)gettid());
		for (int t = 0; t < MAXW + MAXCH; t++)
			if (doing[t])
				printf(" %d %s@%d;", t, doing[t], doing_slot[t]);
		printf("]\n");
	}
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

/* Whether rule r still prints: offending VMAs are listed only with a printed violation. */
static int printing(enum rule r)
{
	return __atomic_load_n(&viol[r], __ATOMIC_RELAXED) < PRINT_MAX;
}

/* ------------------------------------------------------------ random numbers */

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

static size_t rndn(uint64_t *s, size_t n)
{
	return n ? (size_t)(rnd(s) % n) : 0;
}

/* ------------------------------------------------------------ the model */

enum kind { K_NONE, K_ANON, K_SHMEM, K_HUGE, K_LOST };
static const char *kind_name[] = { "none", "anon", "shmem", "hugetlb", "lost" };

enum itype { I_WIRE, I_UMEM, I_REG };
static const char *itype_name[] = { "wire", "cookie", "registration" };

struct item {
	struct item *prev, *next; /* the slot's list of held items */
	enum itype type;
	int used, slot, cx, flags;
	uintptr_t addr;
	size_t len;		 /* as asked */
	uintptr_t lo, hi;	 /* the pages it wires, as the model rounds and clips them */
	size_t pgsz;		 /* the page size it was rounded with */
	unsigned long gen;	 /* the slot generation it belongs to */
	int uncertain;		 /* its call overlapped a churn: it may hold the old memory, or the new */
	int exposed;		 /* bare: a stale or raced bare unwire named its pages while it was held,
				  * so its count may be the one that unwire took */
	ubdma_umem_t *u;
	ubdma_reg_t *r;
};

struct slot {
	pthread_mutex_t lock;
	uintptr_t base;
	enum kind kind;
	size_t len;		/* bytes mapped at base */
	unsigned long gen;	/* bumped by every churn */
	int inflight;		/* library calls on the slot under way */
	int reg_touched;	/* a reg_get ran on this generation: cached entries may wire more */
	int stale_unwires;	/* stale or raced bare unwires under way (they may outlive a churn) */
	struct item *items;
	uint8_t taint[SPAN_PAGES / 8]; /* pages a stale bare unwire may have hit (see the top) */
};

struct spare {
	pthread_mutex_t lock;
	uintptr_t base;
	int used, lost;
};

static struct slot slots[NSLOT];
static struct spare spares[NSPARE];
static uintptr_t area_lo, area_hi;

/* Contexts, and each worker's tag and map in each; replaced only while every thread is parked. */
struct cx {
	ubdma_ctx_t *c;
	enum ubdma_backend be;
};
static struct cx cxs[2];
static int ncx;
static ubdma_tag_t *tags[MAXW][2];
static ubdma_map_t *maps[MAXW][2];

/* ------------------------------------------------------------ pause, park, stop */

static pthread_mutex_t pz = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pz_cv = PTHREAD_COND_INITIALIZER, pz_main = PTHREAD_COND_INITIALIZER;
static int pause_req, parked, stopping;
static unsigned long epoch;

/* Wait until the coordinator resumes (0) or stops (1) the run. */
static int park(void)
{
	pthread_mutex_lock(&pz);
	unsigned long e = epoch;
	parked++;
	pthread_cond_signal(&pz_main);
	while (!stopping && epoch == e)
		pthread_cond_wait(&pz_cv, &pz);
	parked--;
	int st = stopping;
	pthread_mutex_unlock(&pz);
	return st;
}

static void set_doing(int t, const char *what, int slot)
{
	my_thread = t;
	__atomic_store_n(&doing_slot[t], slot, __ATOMIC_RELAXED);
	__atomic_store_n(&doing[t], what, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ mappings */

static size_t kind_pgsz(enum kind k)
{
	return k == K_HUGE ? HP : PG;
}

/* Map len bytes of kind k at addr; fixed is MAP_FIXED or MAP_FIXED_NOREPLACE.  0 or errno. */
static int map_kind(uintptr_t addr, enum kind k, size_t len, int fixed)
{
	void *p;

	if (k == K_SHMEM) {
		int fd = memfd_create("ubdma-race", MFD_CLOEXEC);
		if (fd < 0)
			return errno;
		if (ftruncate(fd, (off_t)len)) {
			int e = errno;
			close(fd);
			return e;
		}
		p = mmap((void *)addr, len, PROT_READ | PROT_WRITE, MAP_SHARED | fixed, fd, 0);
		int e = errno;
		close(fd);
		errno = e;
	} else {
		p = mmap((void *)addr, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | fixed | (k == K_HUGE ? MAP_HUGETLB : 0), -1, 0);
	}
	if (p == MAP_FAILED)
		return errno;
	if ((uintptr_t)p != addr) { /* an old kernel took NOREPLACE for a hint */
		munmap(p, len);
		return EEXIST;
	}
	return 0;
}

/* The PROT_NONE reservation over [addr, addr + len). */
static int reserve(uintptr_t addr, size_t len, int fixed)
{
	void *p = mmap((void *)addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | fixed, -1, 0);

	if (p == MAP_FAILED)
		return errno;
	if ((uintptr_t)p != addr) {
		munmap(p, len);
		return EEXIST;
	}
	return 0;
}

static enum kind pick_kind(uint64_t *rng)
{
	size_t r = rndn(rng, 100);

	if (have_huge && r < 35)
		return K_HUGE;
	return r < 70 ? K_ANON : K_SHMEM;
}

static size_t pick_len(uint64_t *rng, enum kind k)
{
	static const size_t lens[] = { 4 * PG, 64 * PG, HP, HP };

	return k == K_HUGE ? HP : lens[rndn(rng, 4)];
}

/* ------------------------------------------------------------ kernel-side checks */

static uint64_t pagemap_pa(uintptr_t p)
{
	return vm_pagemap_pa(pagemap_fd, (void *)p);
}

/* The IOVA a context must give a held page: the VA itself (va), its frame (phys); 0: unknown. */
static uint64_t want_iova(int c, uintptr_t p)
{
	return cxs[c].be == UBDMA_BACKEND_PHYS ? pagemap_pa(p) : (uint64_t)p;
}

/*
 * Nothing of [base, base + SPAN) may be wired, translated, locked or DONTFORK.  Returns the
 * number of findings, reported as one violation of rule r labelled what.
 */
static long region_clean(uintptr_t base, enum rule r, const char *what)
{
	long bad_pages = 0, bad_xl = 0;
	uintptr_t first = 0, first_xl = 0;
	unsigned maxc = 0;
	uint64_t xl = 0;

	for (uintptr_t p = base; p < base + SPAN; p += PG) {
		unsigned c = ubdma_wire_count((void *)p);
		if (c) {
			if (!bad_pages++)
				first = p;
			maxc = c > maxc ? c : maxc;
		}
		for (int i = 0; i < ncx; i++) {
			uint64_t v = ubdma_vtoiova(cxs[i].c, (void *)p);
			if (v != UBDMA_BAD_IOVA && !bad_xl++) {
				first_xl = p;
				xl = v;
			}
		}
	}
	if (bad_pages)
		violation(r, "%s: %ld pages of [%#lx, +4 MiB) have a wire count (first %#lx, highest count %u)", what,
			  bad_pages, (unsigned long)base, (unsigned long)first, maxc);
	if (bad_xl)
		violation(r, "%s: %ld pages of [%#lx, +4 MiB) still translate (first %#lx -> %#llx)", what, bad_xl,
			  (unsigned long)base, (unsigned long)first_xl, (unsigned long long)xl);
	int pr = printing(r);
	if (pr)
		pthread_mutex_lock(&out_lock);
	long bad_vma = vm_offenders(base, base + SPAN, 0, pr ? stdout : NULL, "  locked/DONTFORK VMA", 6);
	if (pr)
		pthread_mutex_unlock(&out_lock);
	if (bad_vma > 0)
		violation(r, "%s: %ld VMAs of [%#lx, +4 MiB) are locked or DONTFORK (listed above)", what, bad_vma,
			  (unsigned long)base);
	return (bad_pages > 0) + (bad_xl > 0) + (bad_vma > 0);
}

/* ------------------------------------------------------------ (c) and (e): held pages */

static int taint_get(struct slot *s, uintptr_t p)
{
	size_t i = (p - s->base) / PG;
	return (s->taint[i / 8] >> (i % 8)) & 1;
}

static void taint_clear(struct slot *s, uintptr_t p)
{
	size_t i = (p - s->base) / PG;
	s->taint[i / 8] &= (uint8_t) ~(1u << (i % 8));
}

/* A stale bare unwire of it may land on the new memory: its 2 MiB-rounded range is tainted. */
static void taint_item(struct slot *s, const struct item *it)
{
	uintptr_t lo = TRUNC(it->addr, HP), hi = ROUND(it->addr + it->len, HP);

	lo = lo > s->base ? lo : s->base;
	hi = hi < s->base + SPAN ? hi : s->base + SPAN;
	for (uintptr_t p = lo; p < hi; p += PG) {
		size_t i = (p - s->base) / PG;
		s->taint[i / 8] |= (uint8_t)(1u << (i % 8));
	}
	/* the taint goes with the next churn, but the bare wirings held now may be released after
	 * it: they remember that their count may have been taken */
	for (struct item *o = s->items; o; o = o->next)
		if (o->type == I_WIRE && o->addr < hi && o->addr + o->len > lo)
			o->exposed = 1;
}

/* Check page p of slot si against the model.  Caller holds the slot lock; nothing is in flight. */
static void check_page(int si, uintptr_t p)
{
	struct slot *s = &slots[si];
	unsigned U = 0, W = 0, Uu = 0, Wu = 0, R = 0;
	int taint = 0, anybare = 0, mixed = 0;
	int cov_cx[2] = { 0, 0 }, unc_cx[2] = { 0, 0 };
	size_t cur_pg = kind_pgsz(s->kind);

	for (struct item *it = s->items; it; it = it->next) {
		int cur = it->gen == s->gen, cov = p >= it->lo && p < it->hi;
		if (!cur && it->pgsz != cur_pg && p >= TRUNC(it->addr, HP) && p < ROUND(it->addr + it->len, HP))
			mixed = 1; /* rule 3: a holder of the other page size, from before the churn */
		if (it->type == I_WIRE) {
			int near = p >= TRUNC(it->addr, HP) && p < ROUND(it->addr + it->len, HP);
			anybare |= near;
			if (near && (!cur || it->uncertain))
				taint = 1;
			if (cur && cov && it->uncertain)
				Wu++;
			else if (cur && cov)
				W++;
			continue;
		}
		if (!cur || !cov)
			continue;
		if (it->uncertain) {
			Uu++;
			unc_cx[it->cx] = 1;
		} else {
			if (it->type == I_UMEM)
				U++;
			else
				R = 1;
			cov_cx[it->cx] = 1;
		}
	}
	if (taint_get(s, p)) {
		if (anybare)
			taint = 1;
		else
			taint_clear(s, p);
	}
	unsigned lower = U + R + (taint ? 0 : W);
	unsigned upper = (s->reg_touched || taint) ? ~0u : U + Uu + W + Wu;
	unsigned cnt = ubdma_wire_count((void *)p);
	enum rule r = mixed ? R_E : R_C;

	INC(c_pages);
	if (cnt < lower || cnt > upper) {
		char held[400];
		size_t o = 0;
		held[0] = 0;
		for (struct item *it = s->items; it && o < sizeof(held) - 80; it = it->next)
			if (p >= TRUNC(it->addr, HP) && p < ROUND(it->addr + it->len, HP))
				o += (size_t)snprintf(held + o, sizeof(held) - o, " %s[%#lx,+%#zx) gen %lu%s%s;",
						      itype_name[it->type], (unsigned long)it->addr, it->len, it->gen,
						      it->gen == s->gen ? "" : " (stale)", it->uncertain ? " (raced)" : "");
		char ub[16] = "any";
		if (upper != ~0u)
			snprintf(ub, sizeof(ub), "%u", upper);
		violation(r, "slot %d (%s, gen %lu) page %#lx: wire count %u, the holders account for %u..%s "
			     "(cookies %u, registration %u, bare wires %u%s); held near it:%s",
			  si, kind_name[s->kind], s->gen, (unsigned long)p, cnt, lower, ub, U, R, W,
			  taint ? " not counted: a stale bare unwire may have hit them" : "", held[0] ? held : " nothing");
	}
	if (s->kind == K_HUGE && lower > 0 && !pagemap_pa(p) && is_root)
		violation(r, "slot %d page %#lx is wired (count %u) but pagemap shows no frame", si, (unsigned long)p, cnt);

	/* translations: what a current holder holds translates to its frame; nothing else at all */
	for (int c = 0; c < ncx; c++) {
		uint64_t got = ubdma_vtoiova(cxs[c].c, (void *)p);
		if (cov_cx[c]) {
			uint64_t want = want_iova(c, p);
			if (want && got != want)
				violation(r, "slot %d (%s, gen %lu) page %#lx held in the %s context translates to %#llx, "
					     "want %#llx%s",
					  si, kind_name[s->kind], s->gen, (unsigned long)p, ubdma_backend_name(cxs[c].be),
					  (unsigned long long)got, (unsigned long long)want,
					  cxs[c].be == UBDMA_BACKEND_PHYS ? " (pagemap)" : " (the VA)");
		} else if (!unc_cx[c] && !s->reg_touched && got != UBDMA_BAD_IOVA) {
			violation(r, "slot %d (%s, gen %lu) page %#lx translates to %#llx in the %s context, but nobody "
				     "holds it in this generation",
				  si, kind_name[s->kind], s->gen, (unsigned long)p, (unsigned long long)got,
				  ubdma_backend_name(cxs[c].be));
		}
	}
	/* each handle's own answer agrees */
	for (struct item *it = s->items; it; it = it->next) {
		if (it->gen != s->gen || it->uncertain || it->type == I_WIRE || p < it->lo || p >= it->hi)
			continue;
		uint64_t want = want_iova(it->cx, p), got;
		if (it->type == I_UMEM) {
			if (p < it->addr || p >= it->addr + it->len)
				continue; /* umem_iova answers only inside the range asked for */
			got = ubdma_umem_iova(it->u, (void *)p);
		} else {
			got = ubdma_reg_iova(it->r, (void *)p);
		}
		if (want && got != want)
			violation(r, "slot %d page %#lx: the %s's own IOVA is %#llx, want %#llx (%s)", si, (unsigned long)p,
				  itype_name[it->type], (unsigned long long)got, (unsigned long long)want,
				  ubdma_backend_name(cxs[it->cx].be));
	}
}

/*
 * Check up to 8 pages of [a, a + len) and 2 random pages of the slot, after one call in three:
 * the check holds the slot lock, and churn must still get it often.
 */
static void check_slot(int si, uintptr_t a, size_t len, uint64_t *rng)
{
	struct slot *s = &slots[si];
	uintptr_t lo = TRUNC(a, PG), hi = ROUND(a + len, PG);
	size_t n = (hi - lo) / PG, step = n > 8 ? n / 8 : 1;

	if (s->kind == K_LOST || rndn(rng, 3))
		return;
	INC(c_checks);
	for (uintptr_t p = lo; p < hi && p < s->base + SPAN; p += step * PG)
		check_page(si, p);
	for (int i = 0; i < 2; i++)
		check_page(si, s->base + rndn(rng, s->len ? s->len / PG : SPAN_PAGES) * PG);
}

/* ------------------------------------------------------------ workers */

struct worker {
	int id;
	uint64_t rng;
	struct item pool[HOLD];
	int nheld;
};

/* The pages an item wires by the model: its range rounded to the page size, clipped to the mapping. */
static void cover(struct item *it, const struct slot *s)
{
	size_t pg = kind_pgsz(s->kind);
	uintptr_t lo = TRUNC(it->addr, pg), hi = ROUND(it->addr + it->len, pg);
	uintptr_t ml = s->base, mh = s->base + s->len;

	it->pgsz = pg;
	it->lo = lo > ml ? lo : ml;
	it->hi = hi < mh ? hi : mh;
	if (s->kind == K_NONE || it->lo >= it->hi)
		it->lo = it->hi = 0;
}

static void link_item(struct slot *s, struct item *it)
{
	it->prev = NULL;
	it->next = s->items;
	if (s->items)
		s->items->prev = it;
	s->items = it;
}

static void unlink_item(struct slot *s, struct item *it)
{
	if (it->prev)
		it->prev->next = it->next;
	else
		s->items = it->next;
	if (it->next)
		it->next->prev = it->prev;
}

/* A range in slot s: mostly inside its mapping, sometimes running past it, sometimes unaligned. */
static void pick_range(uint64_t *rng, const struct slot *s, size_t maplen, int aligned, size_t max,
		       uintptr_t *ap, size_t *lenp)
{
	size_t mp = maplen ? maplen / PG : 16, sp, np;
	size_t r = rndn(rng, 16);

	if (r == 0) {
		sp = 0;
		np = mp;
	} else if (r == 1) {
		sp = rndn(rng, mp);
		np = mp - sp + 1 + rndn(rng, 4);
	} else {
		sp = rndn(rng, mp);
		np = 1 + rndn(rng, r < 10 ? 8 : mp);
		if (sp + np > mp)
			np = mp - sp;
	}
	if (sp + np > SPAN_PAGES)
		np = SPAN_PAGES - sp;
	if (np * PG > max)
		np = max / PG;
	uintptr_t a = s->base + sp * PG;
	size_t len = np * PG;
	if (!aligned && rndn(rng, 2)) {
		size_t head = rndn(rng, PG / 2), tail = rndn(rng, PG / 2);
		a += head;
		len = len > head + tail ? len - head - tail : 1;
	}
	*ap = a;
	*lenp = len;
}

static const char *errname(int rc)
{
	switch (rc) {
	case 0: return "0";
	case EFAULT: return "EFAULT";
	case EAGAIN: return "EAGAIN";
	case ENOTSUP: return "ENOTSUP";
	case ENOMEM: return "ENOMEM";
	case EINVAL: return "EINVAL";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	default: return strerror(rc);
	}
}

static void count_result(int rc)
{
	if (rc == EFAULT)
		INC(res_efault);
	else if (rc == EAGAIN)
		INC(res_eagain);
	else if (rc == ENOTSUP)
		INC(res_enotsup);
}

/*
 * Rule (a): what an acquiring call may answer.  raced: a churn of the slot overlapped it; then
 * 0, EFAULT, EAGAIN (and ENOTSUP under phys).  Untouched by churn, the range decides exactly.
 */
static void judge_acquire(enum op op, int c, int flags, int rc, int raced, const struct slot *s, enum kind kind,
			  size_t maplen, uintptr_t a, size_t len, unsigned long gen)
{
	int phys = c >= 0 && cxs[c].be == UBDMA_BACKEND_PHYS;
	int inside = kind != K_NONE && kind != K_LOST && a >= s->base && a + len <= s->base + maplen;
	int ok;

	if (rc == EAGAIN && !raced)
		INC(res_eagain_strict);
	if (raced || rc == EAGAIN) {
		ok = rc == 0 || rc == EFAULT || rc == EAGAIN || (phys && rc == ENOTSUP);
	} else if (op == OP_WIRE) {
		ok = (flags & UBDMA_WIRE_HOLESOK) || inside ? rc == 0 : rc == EFAULT;
	} else if (!phys) {
		ok = inside ? rc == 0 : rc == EFAULT;
	} else {
		ok = inside ? rc == (kind == K_HUGE ? 0 : ENOTSUP) : rc == EFAULT || rc == ENOTSUP;
	}
	if (!ok)
		violation(R_A, "%s [%#lx, +%#zx) flags %#x%s%s on slot %d (%s, %#zx bytes mapped, gen %lu%s) returned %s "
			       "(%s)%s%s",
			  op_name[op], (unsigned long)a, len, flags, c >= 0 ? " in the " : "",
			  c >= 0 ? ubdma_backend_name(cxs[c].be) : "", (int)(s - slots), kind_name[kind], maplen, gen,
			  raced ? ", raced a churn" : ", no churn during the call", errname(rc),
			  inside ? "range inside the mapping" : "range not all mapped", rc ? "; last error: " : "",
			  rc ? ubdma_last_error() : "");
}

static void release_stale(struct worker *w, int si);

static void acquire(struct worker *w)
{
	uint64_t *rng = &w->rng;
	int si = (int)rndn(rng, NSLOT), c = (int)rndn(rng, (size_t)ncx), flags = 0;
	struct slot *s = &slots[si];
	size_t r = rndn(rng, 100);
	enum op op = r < 30 ? OP_WIRE : r < 55 ? OP_LOCK : r < 80 ? OP_REG_GET : OP_LOAD;
	struct item *it = NULL;

	if (!(op_mask & (1u << op)))
		return;
	uintptr_t a;
	size_t len;
	int rc = 0;

	/* a holder that knows its memory changed lets go first: fewer stale unwires in the model */
	if (rndn(rng, 2))
		release_stale(w, si);
	if (op != OP_LOAD) {
		for (int i = 0; i < HOLD && !it; i++)
			if (!w->pool[i].used)
				it = &w->pool[i];
		if (!it)
			return;
	}
	pthread_mutex_lock(&s->lock);
	enum kind kind = s->kind;
	size_t maplen = s->len;
	unsigned long gen0 = s->gen;
	if (kind == K_LOST) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	s->inflight++;
	if (op == OP_REG_GET)
		s->reg_touched = 1;
	pthread_mutex_unlock(&s->lock);

	set_doing(w->id, op_name[op], si);
	switch (op) {
	case OP_WIRE:
		flags = (rndn(rng, 4) == 0 ? UBDMA_WIRE_HOLESOK : 0) | (rndn(rng, 2) ? UBDMA_WIRE_WRITE : 0);
		pick_range(rng, s, maplen, 0, SPAN, &a, &len);
		rc = ubdma_wire((void *)a, len, flags);
		break;
	case OP_LOCK:
		flags = (int)(1 + rndn(rng, 3)); /* READ, WRITE or both */
		pick_range(rng, s, maplen, 1, SPAN, &a, &len);
		rc = ubdma_umem_lock(cxs[c].c, (void *)a, len, flags, &it->u);
		break;
	case OP_REG_GET:
		flags = (int)(1 + rndn(rng, 3));
		pick_range(rng, s, maplen, 0, SPAN, &a, &len);
		rc = ubdma_reg_get(cxs[c].c, (void *)a, len, flags, &it->r);
		break;
	default: {
		ubdma_seg_t segs[LOAD_SEGS];
		int nseg = 0;
		pick_range(rng, s, maplen, 0, LOAD_MAX, &a, &len);
		rc = ubdma_map_load_sg(tags[w->id][c], maps[w->id][c], (void *)a, len, segs, &nseg, UBDMA_NOWAIT);
		if (rc == 0)
			ubdma_map_unload(tags[w->id][c], maps[w->id][c]);
		break;
	}
	}
	set_doing(w->id, "between calls", -1);
	INC(ops[op]);
	count_result(rc);

	pthread_mutex_lock(&s->lock);
	s->inflight--;
	int raced = s->gen != gen0;
	if (op == OP_REG_GET)
		s->reg_touched = 1;
	if (op == OP_LOAD) {
		if (rc != 0 && rc != EFBIG && rc != ENOMEM)
			violation(R_A, "load_sg [%#lx, +%#zx) in the %s context on slot %d (%s) returned %s; last error: %s",
				  (unsigned long)a, len, ubdma_backend_name(cxs[c].be), si, kind_name[kind], errname(rc),
				  ubdma_last_error());
	} else {
		judge_acquire(op, op == OP_WIRE ? -1 : c, flags, rc, raced, s, kind, maplen, a, len, gen0);
		if (rc == 0) {
			it->type = op == OP_WIRE ? I_WIRE : op == OP_LOCK ? I_UMEM : I_REG;
			it->used = 1;
			it->slot = si;
			it->cx = c;
			it->flags = flags;
			it->addr = a;
			it->len = len;
			it->gen = s->gen;
			it->uncertain = raced;
			it->exposed = 0;
			cover(it, s);
			if (it->type == I_WIRE) {
				/* a stale bare unwire under way, or one made on these pages in this
				 * generation, may take this wiring's count */
				it->exposed = s->stale_unwires > 0;
				for (uintptr_t p = TRUNC(a, HP); !it->exposed && p < ROUND(a + len, HP); p += PG)
					it->exposed = p >= s->base && p < s->base + SPAN && taint_get(s, p);
			}
			link_item(s, it);
			w->nheld++;
		}
	}
	if (!s->inflight)
		check_slot(si, a, len, rng);
	pthread_mutex_unlock(&s->lock);
}

static void release(struct worker *w, struct item *it)
{
	struct slot *s = &slots[it->slot];
	int rc = 0, tries = 0;

	pthread_mutex_lock(&s->lock);
	unlink_item(s, it);
	unsigned long gen0 = s->gen;
	int stale = it->gen != gen0 || it->uncertain;
	/* another stale bare unwire may already have taken this wiring's count (below): look before
	 * this unwire taints the pages itself */
	int hit = 0;
	for (uintptr_t p = TRUNC(it->addr, PG); it->type == I_WIRE && p < it->addr + it->len && !hit; p += PG)
		hit = p >= s->base && p < s->base + SPAN && taint_get(s, p);
	hit |= it->exposed;
	if (it->type == I_WIRE && stale) {
		taint_item(s, it);
		s->stale_unwires++;
	}
	s->inflight++;
	pthread_mutex_unlock(&s->lock);

	switch (it->type) {
	case I_WIRE:
		set_doing(w->id, "unwire", it->slot);
		do /* EAGAIN: the wiring is still held, so try again */
			rc = ubdma_unwire((void *)it->addr, it->len, it->flags & UBDMA_WIRE_HOLESOK);
		while (rc == EAGAIN && ++tries < 8);
		INC(ops[OP_UNWIRE]);
		count_result(rc);
		break;
	case I_UMEM:
		set_doing(w->id, "umem_unlock", it->slot);
		ubdma_umem_unlock(it->u);
		INC(ops[OP_UNLOCK]);
		break;
	case I_REG:
		set_doing(w->id, "reg_put", it->slot);
		ubdma_reg_put(it->r);
		INC(ops[OP_REG_PUT]);
		break;
	}
	set_doing(w->id, "between calls", -1);

	pthread_mutex_lock(&s->lock);
	s->inflight--;
	if (it->type == I_WIRE && stale)
		s->stale_unwires--;
	int raced = s->gen != gen0;
	if (it->type == I_WIRE) {
		/* a stale or raced bare unwire on these pages (a holder of memory munmap replaced, or
		 * a HOLESOK wiring that found a hole where memory is now) may have taken this wiring's
		 * count: ubdma_unwire() names pages, not wirings, as vsunlock(9) does (docs/wire.md
		 * section 12); then this unwire finds nothing left.  Counted, not failed. */
		for (uintptr_t p = TRUNC(it->addr, PG); !stale && p < it->addr + it->len && !hit; p += PG)
			hit = p >= s->base && p < s->base + SPAN && taint_get(s, p);
		if (raced)
			taint_item(s, it);
		int ok = rc == 0 || (hit && rc == EINVAL) || ((stale || raced) && (rc == EFAULT || rc == EAGAIN));
		if (ok && rc == EINVAL)
			INC(preempted);
		if (!ok)
			violation(R_A, "balanced unwire [%#lx, +%#zx) flags %#x on slot %d (%s, gen %lu; wired in gen %lu%s) "
				       "returned %s; last error: %s",
				  (unsigned long)it->addr, it->len, it->flags & UBDMA_WIRE_HOLESOK, it->slot,
				  kind_name[s->kind], s->gen, it->gen, it->uncertain ? ", raced" : "", errname(rc),
				  ubdma_last_error());
	}
	if (!s->inflight)
		check_slot(it->slot, it->addr, it->len, &w->rng);
	pthread_mutex_unlock(&s->lock);
	it->used = 0;
	w->nheld--;
}

static void release_all(struct worker *w)
{
	for (int i = 0; i < HOLD; i++)
		if (w->pool[i].used)
			release(w, &w->pool[i]);
}

/* Release what this worker holds on slot si from older generations (before acquiring there). */
static void release_stale(struct worker *w, int si)
{
	for (int i = 0; i < HOLD; i++) {
		struct item *it = &w->pool[i];
		if (!it->used || it->slot != si)
			continue;
		pthread_mutex_lock(&slots[si].lock);
		int stale = it->gen != slots[si].gen;
		pthread_mutex_unlock(&slots[si].lock);
		if (stale)
			release(w, it);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (;;) {
		if (LD(pause_req)) {
			release_all(w);
			set_doing(w->id, "parked", -1);
			if (park())
				break;
			continue;
		}
		if (w->nheld && (w->nheld >= HOLD || rndn(&w->rng, 100) < 45)) {
			int i;
			do
				i = (int)rndn(&w->rng, HOLD);
			while (!w->pool[i].used);
			release(w, &w->pool[i]);
		} else {
			acquire(w);
		}
	}
	return NULL;
}

/* ------------------------------------------------------------ churners */

struct churner {
	int id; /* thread index: after the workers */
	uint64_t rng;
};

/* A new generation: what was held is stale, the new memory starts unwired. */
static void new_gen(struct slot *s, enum kind k, size_t len)
{
	s->kind = k;
	s->len = len;
	s->gen++;
	s->reg_touched = 0;
	memset(s->taint, 0, sizeof(s->taint));
}

/* Rule (d): under the slot lock, right after the churn, and only with no call in flight. */
static void check_fresh(int si, int busy, const char *how)
{
	char what[160];

	if (busy) {
		INC(d_skipped);
		return;
	}
	INC(d_checks);
	snprintf(what, sizeof(what), "slot %d right after %s (now %s, gen %lu)", si, how, kind_name[slots[si].kind],
		 slots[si].gen);
	region_clean(slots[si].base, R_D, what);
}

/* Replace the slot's mapping: MAP_FIXED over it (atomic), or munmap then mmap (a hole between). */
static void churn_replace(struct churner *ch, int si, int via_munmap)
{
	struct slot *s = &slots[si];
	enum kind k = pick_kind(&ch->rng);
	size_t len = pick_len(&ch->rng, k);

	pthread_mutex_lock(&s->lock);
	if (s->kind == K_LOST) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	int busy = s->inflight;
	size_t old = s->len;
	if (!via_munmap) {
		/* over all of the old mapping at once (a hugetlb one cannot be split at 4 KiB), then
		 * the tail back to PROT_NONE */
		size_t over = len > old ? len : old;
		int e = map_kind(s->base, k, over, MAP_FIXED);
		if (e && k == K_HUGE) {
			/* the hugepages are shared with other tests: someone has them now.  MAP_HUGETLB
			 * reserves its pages before the old mapping is touched, so that is still there */
			INC(huge_fallbacks);
			k = K_ANON;
			e = map_kind(s->base, k, over, MAP_FIXED);
		}
		if (e) {
			fprintf(stderr, "race_model: mmap of %s over slot %d (%s) failed: %s\n", kind_name[k], si,
				kind_name[s->kind], strerror(e));
			abort();
		}
		if (len < over)
			reserve(s->base + len, over - len, MAP_FIXED);
		INC(churns[CH_REPLACE]);
	} else {
		munmap((void *)s->base, SPAN);
		int e = map_kind(s->base, k, len, MAP_FIXED_NOREPLACE);
		if (e == ENOMEM && k == K_HUGE) {
			INC(huge_fallbacks);
			k = K_ANON;
			e = map_kind(s->base, k, len, MAP_FIXED_NOREPLACE);
		}
		if (!e)
			e = reserve(s->base + len, SPAN - len, MAP_FIXED_NOREPLACE);
		INC(churns[CH_UNMAP_MAP]);
		if (e) { /* something else of the process took the hole: leave the slot to it */
			INC(lost_regions);
			new_gen(s, K_LOST, 0);
			pthread_mutex_unlock(&s->lock);
			return;
		}
	}
	new_gen(s, k, len);
	check_fresh(si, busy, via_munmap ? "munmap + mmap" : "mmap MAP_FIXED over it");
	pthread_mutex_unlock(&s->lock);
}

static void churn_unmap(int si)
{
	struct slot *s = &slots[si];

	pthread_mutex_lock(&s->lock);
	if (s->kind == K_LOST || s->kind == K_NONE) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	int busy = s->inflight;
	munmap((void *)s->base, SPAN);
	INC(churns[CH_UNMAP]);
	if (reserve(s->base, SPAN, MAP_FIXED_NOREPLACE)) {
		INC(lost_regions);
		new_gen(s, K_LOST, 0);
	} else {
		new_gen(s, K_NONE, 0);
		check_fresh(si, busy, "munmap");
	}
	pthread_mutex_unlock(&s->lock);
}

/* The VMAs inside [lo, hi): wiring splits one mapping into several, and mremap moves one at a time. */
static int pieces(uintptr_t lo, uintptr_t hi, uintptr_t *ps, uintptr_t *pe, int max)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	if (!f)
		return 0;
	while (n < max && fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx", &s, &e) != 2 || e <= lo || s >= hi)
			continue;
		ps[n] = s > lo ? s : lo;
		pe[n++] = e < hi ? e : hi;
	}
	fclose(f);
	return n;
}

static void churn_mremap(struct churner *ch, int si)
{
	struct slot *s = &slots[si];
	struct spare *sp = NULL;

	pthread_mutex_lock(&s->lock);
	if (s->kind == K_LOST || s->kind == K_NONE) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	for (int i = 0, j = (int)rndn(&ch->rng, NSPARE); i < NSPARE && !sp; i++, j = (j + 1) % NSPARE) {
		if (pthread_mutex_trylock(&spares[j].lock))
			continue;
		if (!spares[j].used && !spares[j].lost)
			sp = &spares[j];
		else
			pthread_mutex_unlock(&spares[j].lock);
	}
	if (!sp) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	int busy = s->inflight, lost = 0;
	uintptr_t ps[64], pe[64];
	int n = pieces(s->base, s->base + s->len, ps, pe, 64);
	for (int i = 0; i < n; i++) {
		uintptr_t to = sp->base + (ps[i] - s->base);
		void *p = mremap((void *)ps[i], pe[i] - ps[i], pe[i] - ps[i], MREMAP_MAYMOVE | MREMAP_FIXED, (void *)to);
		if (p == MAP_FAILED) {
			/* e.g. a piece split by a wiring in flight: it stays ours, drop it in place */
			INC(mremap_failed);
			reserve(ps[i], pe[i] - ps[i], MAP_FIXED);
		} else if (reserve(ps[i], pe[i] - ps[i], MAP_FIXED_NOREPLACE)) {
			lost = 1;
		}
	}
	sp->used = 1;
	INC(churns[CH_MREMAP]);
	pthread_mutex_unlock(&sp->lock);
	if (lost) {
		INC(lost_regions);
		new_gen(s, K_LOST, 0);
	} else {
		new_gen(s, K_NONE, 0);
		check_fresh(si, busy, "mremap away");
	}
	pthread_mutex_unlock(&s->lock);
}

/* Unmap what a spare holds (memory moved there, perhaps with wirings), and check it is all gone. */
static void churn_spare_unmap(struct churner *ch)
{
	for (int i = 0, j = (int)rndn(&ch->rng, NSPARE); i < NSPARE; i++, j = (j + 1) % NSPARE) {
		struct spare *sp = &spares[j];
		if (pthread_mutex_trylock(&sp->lock))
			continue;
		if (!sp->used || sp->lost) {
			pthread_mutex_unlock(&sp->lock);
			continue;
		}
		munmap((void *)sp->base, SPAN);
		INC(churns[CH_SPARE_UNMAP]);
		if (reserve(sp->base, SPAN, MAP_FIXED_NOREPLACE)) {
			INC(lost_regions);
			sp->lost = 1;
		} else {
			char what[96];
			snprintf(what, sizeof(what), "spare %d right after munmap of the memory moved there", j);
			INC(d_checks);
			region_clean(sp->base, R_D, what);
		}
		sp->used = 0;
		pthread_mutex_unlock(&sp->lock);
		return;
	}
}

/*
 * A child still running after 10 s is stuck, most likely on a lock some parent thread held at
 * the fork: print where (addresses of static functions resolve with addr2line -f -e) and exit 30.
 */
static void child_hung(int sig)
{
	char b[128];
	void *pcs[32];
	int n = snprintf(b, sizeof(b), "fork child %d hung for 10 s; its stack:\n", (int)getpid());

	(void)sig;
	if (n > 0 && write(2, b, (size_t)n) < 0)
		_exit(31);
	backtrace_symbols_fd(pcs, backtrace(pcs, 32), 2);
	_exit(30);
}

/* The child of fork(2): its own context, one cookie and one registration on its own memory. */
static void child_main(uint64_t r)
{
	char msg[256];
	int code = 0, rc;
	ubdma_ctx_t *c = NULL;
	ubdma_umem_t *u;
	ubdma_reg_t *reg;
	char *buf = MAP_FAILED;
	size_t len = 4 * PG;

	signal(SIGALRM, child_hung);
	alarm(10);
	/* half the time at a slot's address: a hole here if the parent had it wired (DONTFORK) */
	for (int i = 0; (r & 1) && i < NSLOT && buf == MAP_FAILED; i++) {
		buf = mmap((void *)slots[i].base, len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (buf != MAP_FAILED && (uintptr_t)buf != slots[i].base) {
			munmap(buf, len);
			buf = MAP_FAILED;
		}
	}
	if (buf == MAP_FAILED)
		buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		_exit(20);
	memset(buf, 7, len);
	if ((rc = ubdma_ctx_open(UBDMA_BACKEND_VA, &c))) {
		code = 10;
		snprintf(msg, sizeof(msg), "fork child %d: ubdma_ctx_open: %s\n", (int)getpid(), errname(rc));
	} else if ((rc = ubdma_umem_lock(c, buf, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u))) {
		code = 11;
		snprintf(msg, sizeof(msg), "fork child %d: ubdma_umem_lock(%p): %s: %s\n", (int)getpid(), (void *)buf,
			 errname(rc), ubdma_last_error());
	} else {
		ubdma_umem_unlock(u);
		if ((rc = ubdma_reg_get(c, buf, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &reg))) {
			code = 12;
			snprintf(msg, sizeof(msg), "fork child %d: ubdma_reg_get(%p): %s: %s\n", (int)getpid(),
				 (void *)buf, errname(rc), ubdma_last_error());
		} else {
			ubdma_reg_put(reg);
			ubdma_rcache_flush(c);
			unsigned cnt = 0;
			for (size_t o = 0; o < len; o += PG)
				cnt += ubdma_wire_count(buf + o);
			if (cnt) {
				code = 13;
				snprintf(msg, sizeof(msg),
					 "fork child %d: its buffer %p counts %u wirings after unlock, put and flush "
					 "(the parent's counts by address carried over)\n",
					 (int)getpid(), (void *)buf, cnt);
			}
		}
	}
	ubdma_ctx_close(c);
	if (code && write(2, msg, strlen(msg)) < 0)
		code = 21;
	_exit(code);
}

static void churn_fork(struct churner *ch)
{
	uint64_t r = rnd(&ch->rng);
	pid_t pid = fork();
	int st = 0;

	if (pid == 0)
		child_main(r);
	if (pid < 0)
		return;
	INC(churns[CH_FORK]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(st))
		violation(R_FORK, "fork child %d %s", (int)pid,
			  WTERMSIG(st) == SIGALRM ? "hung: still running after 10 s (SIGALRM)" :
			  strsignal(WTERMSIG(st)));
	else if (WEXITSTATUS(st))
		violation(R_FORK, "fork child %d exited %d (%s)", (int)pid, WEXITSTATUS(st),
			  WEXITSTATUS(st) == 10 ? "context open failed" : WEXITSTATUS(st) == 11 ? "umem_lock failed" :
			  WEXITSTATUS(st) == 12 ? "reg_get failed" : WEXITSTATUS(st) == 13 ? "wire count left" :
			  WEXITSTATUS(st) == 30 ? "hung for 10 s: stack above" : "?");
}

static void *churner_main(void *arg)
{
	struct churner *ch = arg;
	struct timespec ts;

	for (;;) {
		if (LD(pause_req)) {
			set_doing(ch->id, "parked", -1);
			if (park())
				break;
			continue;
		}
		size_t r = rndn(&ch->rng, 100);
		int si = (int)rndn(&ch->rng, NSLOT);
		enum churn kind = r < 3 ? CH_FORK : r < 13 ? CH_SPARE_UNMAP : r < 28 ? CH_MREMAP : r < 45 ? CH_UNMAP :
				  r < 70 ? CH_UNMAP_MAP : CH_REPLACE;
		if (!(churn_mask & (1u << kind)) || (kind == CH_FORK && !forks_on)) {
			continue;
		} else if (kind == CH_FORK) {
			set_doing(ch->id, "fork", -1);
			churn_fork(ch);
		} else if (kind == CH_SPARE_UNMAP) {
			set_doing(ch->id, "spare munmap", -1);
			churn_spare_unmap(ch);
		} else if (kind == CH_MREMAP) {
			set_doing(ch->id, "mremap", si);
			churn_mremap(ch, si);
		} else if (kind == CH_UNMAP) {
			set_doing(ch->id, "munmap", si);
			churn_unmap(si);
		} else {
			set_doing(ch->id, "replace", si);
			churn_replace(ch, si, kind == CH_UNMAP_MAP);
		}
		set_doing(ch->id, "sleeping", -1);
		ts.tv_sec = 0;
		ts.tv_nsec = (long)(200 + rndn(&ch->rng, 1500)) * 1000;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* ------------------------------------------------------------ coordinator */

static int open_contexts(void)
{
	int rc;

	ncx = 0;
	if ((rc = ubdma_ctx_open(UBDMA_BACKEND_VA, &cxs[0].c))) {
		fprintf(stderr, "race_model: cannot open a va context: %s\n", strerror(rc));
		return rc;
	}
	cxs[ncx++].be = UBDMA_BACKEND_VA;
	if (have_huge && is_root && ubdma_ctx_open(UBDMA_BACKEND_PHYS, &cxs[1].c) == 0)
		cxs[ncx++].be = UBDMA_BACKEND_PHYS;
	return 0;
}

static void close_contexts(void)
{
	for (int i = 0; i < ncx; i++)
		ubdma_ctx_close(cxs[i].c);
	ncx = 0;
}

static void make_tags(void)
{
	for (int w = 0; w < nworkers; w++)
		for (int c = 0; c < ncx; c++) {
			int rc = ubdma_tag_create(ubdma_ctx_tag(cxs[c].c), 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, LOAD_MAX,
						  LOAD_SEGS, LOAD_MAX, 0, &tags[w][c]);
			if (!rc)
				rc = ubdma_map_create(tags[w][c], 0, &maps[w][c]);
			if (rc) {
				fprintf(stderr, "race_model: tag/map: %s\n", strerror(rc));
				abort();
			}
		}
}

static void drop_tags(void)
{
	for (int w = 0; w < nworkers; w++)
		for (int c = 0; c < ncx; c++) {
			ubdma_map_destroy(tags[w][c], maps[w][c]);
			ubdma_tag_destroy(tags[w][c]);
		}
}

/* Rule (b): nothing held, caches flushed, maps and tags gone: nothing may stay wired anywhere. */
static long quiescent_check(const char *when)
{
	char what[128];
	long bad = 0;

	INC(b_checks);
	for (int i = 0; i < NSLOT; i++)
		if (slots[i].kind != K_LOST) {
			snprintf(what, sizeof(what), "%s: slot %d (%s, gen %lu)", when, i, kind_name[slots[i].kind],
				 slots[i].gen);
			bad += region_clean(slots[i].base, R_B, what);
		}
	for (int i = 0; i < NSPARE; i++)
		if (!spares[i].lost) {
			snprintf(what, sizeof(what), "%s: spare %d (%s)", when, i, spares[i].used ? "holds moved memory" : "empty");
			bad += region_clean(spares[i].base, R_B, what);
		}
	int pr = printing(R_B);
	if (pr)
		pthread_mutex_lock(&out_lock);
	long lodc = vm_offenders(0, 0, 1, pr ? stdout : NULL, "  lo/dc VMA", 8);
	if (pr)
		pthread_mutex_unlock(&out_lock);
	if (lodc > 0) {
		violation(R_B, "%s: %ld VMAs of the process are VM_LOCKED or VM_DONTFORK with nothing held (listed above)",
			  when, lodc);
		bad++;
	}
	return bad;
}

static long leaks;

/* Stop every thread at a quiescent point, check, maybe reopen the contexts, resume (or not). */
static void quiesce(int n, int reopen, int last)
{
	char when[64];
	struct timespec dl;

	pthread_mutex_lock(&pz);
	ST(pause_req, 1);
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 60;
	while (parked < nworkers + nchurners)
		if (pthread_cond_timedwait(&pz_main, &pz, &dl) == ETIMEDOUT) {
			violation(R_HANG, "quiescent point %d: only %d of %d threads stopped within 60 s", n, parked,
				  nworkers + nchurners);
			for (int t = 0; t < nworkers + nchurners; t++)
				printf("  thread %d (%s): %s, slot %d\n", t, t < nworkers ? "worker" : "churner",
				       __atomic_load_n(&doing[t], __ATOMIC_RELAXED),
				       __atomic_load_n(&doing_slot[t], __ATOMIC_RELAXED));
			fflush(stdout);
			_exit(3); /* a thread is stuck inside the library: nothing more can be checked */
		}
	for (int c = 0; c < ncx; c++)
		ubdma_rcache_flush(cxs[c].c);
	drop_tags();
	if (reopen) {
		close_contexts();
		INC(reopens);
		if (!last && open_contexts())
			abort();
	}
	snprintf(when, sizeof(when), last ? "at the end (contexts closed)" : "quiescent point %d", n);
	leaks += quiescent_check(when);
	for (int i = 0; i < NSLOT; i++) {
		pthread_mutex_lock(&slots[i].lock);
		slots[i].reg_touched = 0; /* the caches are empty now */
		memset(slots[i].taint, 0, sizeof(slots[i].taint));
		pthread_mutex_unlock(&slots[i].lock);
	}
	if (last) {
		ST(stopping, 1);
	} else {
		make_tags();
		ST(pause_req, 0);
		epoch++;
	}
	pthread_cond_broadcast(&pz_cv);
	pthread_mutex_unlock(&pz);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long free_hugepages(void)
{
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "re");
	long n = 0;

	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = 0;
		fclose(f);
	}
	return n;
}

/* Whether the process has CAP_IPC_LOCK (bit 14 of CapEff): then mlock has no limit. */
static int has_ipc_lock(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	unsigned long long cap = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &cap) == 1)
			break;
	fclose(f);
	return (cap >> 14) & 1;
}

/*
 * A fault inside a library call racing churn kills the run: say where, which call, which
 * rules were broken so far, in what a signal handler may use (snprintf into a buffer, write).
 */
static void on_fault(int sig, siginfo_t *si, void *uc)
{
	char b[512];
	int t = my_thread, n;

	(void)uc;
	n = snprintf(b, sizeof(b),
		     "race_model: %s at address %p in %s %d while in %s (slot %d); a fault inside a library call "
		     "means it touched memory that churn had unmapped\nrace_model violations so far: a %ld b %ld c %ld d %ld e %ld fork %ld -> FAIL "
		     "(crashed)\n",
		     sig == SIGSEGV ? "SIGSEGV" : "SIGBUS", si->si_addr, t < 0 ? "thread" : t < nworkers ? "worker" : "churner",
		     t, t < 0 ? "?" : doing[t], t < 0 ? -1 : doing_slot[t], viol[R_A], viol[R_B], viol[R_C], viol[R_D],
		     viol[R_E], viol[R_FORK]);
	if (n > 0 && write(1, b, (size_t)n) < 0)
		n = 0;
	_exit(4);
}

static long env_long(const char *name, long def)
{
	const char *v = getenv(name);
	return v && *v ? strtol(v, NULL, 0) : def;
}

int main(int argc, char **argv)
{
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	int is_short = argc > 1 && !strcmp(argv[1], "--short");
	pthread_t th[MAXW + MAXCH];
	struct worker *ws;
	struct churner chs[MAXCH];
	double t0, interval;

	setvbuf(stdout, NULL, _IOLBF, 0);
	seconds = (double)env_long("UBDMA_RACE_SECONDS", is_short ? 3 : 20);
	nworkers = (int)env_long("UBDMA_RACE_WORKERS", is_short ? 2 : 4);
	nchurners = (int)env_long("UBDMA_RACE_CHURNERS", is_short ? 1 : 2);
	seed = (uint64_t)env_long("UBDMA_RACE_SEED", (long)(time(NULL) ^ getpid()));
	if (nworkers < 1 || nworkers > MAXW || nchurners < 0 || nchurners > MAXCH) {
		fprintf(stderr, "race_model: 1..%d workers and 0..%d churners\n", MAXW, MAXCH);
		return 2;
	}
	const char *ol = getenv("UBDMA_RACE_OPS");
	if (ol && *ol && strcmp(ol, "all")) {
		op_mask = 0;
		for (int i = 0; i < NOP; i += (i == OP_LOAD ? 1 : 2)) {
			size_t n = strlen(op_name[i]);
			for (const char *q = ol; (q = strstr(q, op_name[i])); q += n)
				if ((q == ol || q[-1] == ',') && (q[n] == ',' || !q[n]))
					op_mask |= 1u << i;
		}
		if (!op_mask) {
			fprintf(stderr, "race_model: UBDMA_RACE_OPS: a comma list of wire, umem_lock, reg_get, load\n");
			return 2;
		}
	}
	const char *cl = getenv("UBDMA_RACE_CHURN");
	if (cl && *cl && strcmp(cl, "all")) {
		churn_mask = 0;
		for (int i = 0; i < NCH; i++) {
			size_t n = strlen(churn_name[i]);
			for (const char *q = cl; (q = strstr(q, churn_name[i])); q += n)
				if ((q == cl || q[-1] == ',') && (q[n] == ',' || !q[n]))
					churn_mask |= 1u << i;
		}
		if (!churn_mask) {
			fprintf(stderr, "race_model: UBDMA_RACE_CHURN: a comma list of map_fixed, munmap+mmap, munmap, "
					"mremap, spare_munmap, fork\n");
			return 2;
		}
	}
	/* TSan cannot start threads in a child of a threaded process; gcc 12's libasan allocator takes
	 * no lock around fork, so a child forked while another thread allocates hangs in malloc
	 * (tests/faults/test_fork_calls.c says the same).  The gcc build forks. */
	forks_on = !UNDER_TSAN && !UNDER_ASAN;
	if (forks_on) { /* load the unwinder now: a hung child must not need the loader's lock for it */
		void *pc;
		backtrace(&pc, 1);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	is_root = geteuid() == 0;
	/* no limit: an ENOMEM can then only be the library's own mistake */
	if (setrlimit(RLIMIT_MEMLOCK, &rl)) {
		/* without CAP_SYS_RESOURCE the hard limit stays; CAP_IPC_LOCK makes it moot */
		getrlimit(RLIMIT_MEMLOCK, &rl);
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_MEMLOCK, &rl);
		if (!has_ipc_lock())
			printf("race_model: RLIMIT_MEMLOCK stays %llu bytes (no CAP_SYS_RESOURCE, no CAP_IPC_LOCK): an "
			       "ENOMEM may be that limit\n", (unsigned long long)rl.rlim_cur);
	}
	if (is_root)
		pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	/* a hugepage for every slot and spare, and some for phys bounce pages */
	have_huge = free_hugepages() >= NSLOT + NSPARE + 8;

	/*
	 * Far below mmap_base, where the kernel's top-down search for room never gets: a churner's
	 * munmap leaves a hole for a moment, and a 4 KiB table the library maps meanwhile would
	 * otherwise land in it (the slot is then given up: "regions lost").  The address is high
	 * application memory for ASan and TSan too.
	 */
	size_t res_len = (NSLOT + NSPARE) * SPAN + HP;
	void *res = mmap((void *)0x7b0000000000UL, res_len, PROT_NONE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	if (res == MAP_FAILED || res != (void *)0x7b0000000000UL) {
		if (res != MAP_FAILED)
			munmap(res, res_len);
		res = mmap(NULL, res_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	}
	if (res == MAP_FAILED) {
		perror("race_model: reserve");
		return 77;
	}
	area_lo = ROUND((uintptr_t)res, HP);
	area_hi = area_lo + (NSLOT + NSPARE) * SPAN;
	uint64_t rng0 = seed * 0x9e3779b97f4a7c15ULL + 1;
	for (int i = 0; i < NSLOT; i++) {
		struct slot *s = &slots[i];
		pthread_mutex_init(&s->lock, NULL);
		s->base = area_lo + (uintptr_t)i * SPAN;
		enum kind k = pick_kind(&rng0);
		size_t len = pick_len(&rng0, k);
		if (map_kind(s->base, k, len, MAP_FIXED)) {
			k = K_ANON;
			len = HP;
			if (map_kind(s->base, k, len, MAP_FIXED))
				return 77;
		}
		s->kind = k;
		s->len = len;
	}
	for (int i = 0; i < NSPARE; i++) {
		pthread_mutex_init(&spares[i].lock, NULL);
		spares[i].base = area_lo + (uintptr_t)(NSLOT + i) * SPAN;
	}
	if (open_contexts())
		return 77;
	make_tags();
	printf("race_model: %.0f s, seed %#llx, %d workers, %d churners, %d slots of 4 MiB, contexts va%s, hugetlb %s, "
	       "forks %s, churn %s, calls %s\n",
	       seconds, (unsigned long long)seed, nworkers, nchurners, NSLOT, ncx > 1 ? "+phys" : "",
	       have_huge ? "yes" : "no (too few free 2 MiB pages)",
	       forks_on ? "yes" : UNDER_TSAN ? "no (TSan cannot fork a threaded process)" :
					      "no (ASan: its allocator hangs fork children)",
	       churn_mask == ~0u ? "all kinds" : cl, op_mask == ~0u ? "all kinds" : ol);

	ws = calloc((size_t)nworkers, sizeof(*ws));
	if (!ws)
		return 77;
	for (int i = 0; i < nworkers; i++) {
		ws[i].id = i;
		ws[i].rng = seed * 0x9e3779b97f4a7c15ULL + 101 + (uint64_t)i;
		set_doing(i, "starting", -1);
		pthread_create(&th[i], NULL, worker_main, &ws[i]);
	}
	for (int i = 0; i < nchurners; i++) {
		chs[i].id = nworkers + i;
		chs[i].rng = seed * 0x9e3779b97f4a7c15ULL + 1001 + (uint64_t)i;
		set_doing(nworkers + i, "starting", -1);
		pthread_create(&th[nworkers + i], NULL, churner_main, &chs[i]);
	}

	t0 = now();
	interval = seconds < 6 ? 0.5 : 1.0;
	int q = 0;
	while (now() - t0 + interval < seconds) {
		struct timespec ts = { (time_t)interval, (long)((interval - (double)(time_t)interval) * 1e9) };
		nanosleep(&ts, NULL);
		q++;
		quiesce(q, q % 3 == 0, 0);
	}
	quiesce(q + 1, 1, 1);
	for (int i = 0; i < nworkers + nchurners; i++)
		pthread_join(th[i], NULL);
	double took = now() - t0;

	long races = res_efault + res_eagain, nviol = 0;
	for (int r = 0; r < NRULE; r++)
		nviol += viol[r];
	printf("race_model summary: %.1f s; ops", took);
	for (int i = 0; i < NOP; i++)
		printf(" %s %ld", op_name[i], ops[i]);
	printf("; forks %ld; churns", churns[CH_FORK]);
	for (int i = 0; i < NCH - 1; i++)
		printf(" %s %ld", churn_name[i], churns[i]);
	printf(" (hugetlb fallbacks %ld, mremap pieces failed %ld, regions lost %ld); quiescent checks %ld (reopens %ld); "
	       "fresh checks %ld (skipped busy %ld); held checks %ld (%ld pages); races detected %ld (EFAULT %ld, "
	       "EAGAIN %ld; EAGAIN without churn %ld; ENOTSUP %ld); bare unwires pre-empted by a stale one %ld; "
	       "leaks found %ld\n",
	       huge_fallbacks, mremap_failed, lost_regions, b_checks, reopens, d_checks, d_skipped, c_checks, c_pages,
	       races, res_efault, res_eagain, res_eagain_strict, res_enotsup, preempted, leaks);
	printf("race_model violations:");
	for (int r = 0; r < NRULE; r++)
		printf(" %s %ld", rule_name[r], viol[r]);
	printf(" -> %s\n", nviol ? "FAIL" : "ok");

	for (int i = 0; i < NSLOT; i++)
		pthread_mutex_destroy(&slots[i].lock);
	for (int i = 0; i < NSPARE; i++)
		pthread_mutex_destroy(&spares[i].lock);
	munmap(res, res_len);
	free(ws);
	if (pagemap_fd >= 0)
		close(pagemap_fd);
	return nviol ? 1 : 0;
}
