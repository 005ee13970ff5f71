/*
 * fuzz_busdma.c - libFuzzer target: random tags (with a parent), registrations, buffer layouts and
 * load / load_iov / load_sg / sync / device-write / unload sequences on the va backend (IOVA = VA,
 * so the fuzzer can read and write what the "device" sees), checked against a small reference
 * model of the rules written independently of lib/busdma: it judges every 4 KiB page piece on its
 * own (the library works run by run) and predicts the exact segment list, which pieces bounce,
 * EFBIG, ENOMEM and EINPROGRESS from the pool limit, and the bytes after each sync.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "busdma/busdma_int.h"

#define PGSZ 4096u
#define NPAGES 64
#define ARENA (NPAGES * PGSZ)
#define MAXSEG 64

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_busdma: check failed at line %d: %s (%s)\n", __LINE__, #c, \
				ubdma_last_error());                                               \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* ---------------------------------------------------------------- input */

struct in {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct in *in, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++) {
		v = v << 8 | (in->n ? *in->p : 0);
		if (in->n) {
			in->p++;
			in->n--;
		}
	}
	return v;
}

/* ---------------------------------------------------------------- the model */

struct mtag {
	uint64_t align, boundary, low, high, maxsegsz, maxsize;
	int nseg, strict;
};

struct mseg {
	uint64_t addr, len;
	int bounced;
};

struct mload {
	struct mseg s[MAXSEG + 1];
	int nseg;
	int efbig;
	int npages; /* pieces that bounce */
};

static char *arena;
static uint8_t registered[NPAGES];

static uint64_t umin(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Inheritance as the issue states it; the root tag is neutral. */
static struct mtag model_child(const struct mtag *parent, struct mtag own)
{
	struct mtag t = own;
	if (parent) {
		t.low = umin(own.low, parent->low);
		t.high = own.high > parent->high ? own.high : parent->high;
		if (!own.boundary)
			t.boundary = parent->boundary;
		else if (parent->boundary)
			t.boundary = umin(own.boundary, parent->boundary);
	}
	if (t.boundary && t.boundary < t.maxsegsz)
		t.maxsegsz = t.boundary;
	return t;
}

static int model_reg(uintptr_t va)
{
	uintptr_t a = (uintptr_t)arena;
	return va >= a && va < a + ARENA && registered[(va - a) / PGSZ];
}

static void model_emit(const struct mtag *t, struct mload *l, uint64_t a, uint64_t n, int bounced)
{
	int first = 1;
	while (n) {
		struct mseg *last = l->nseg ? &l->s[l->nseg - 1] : NULL;
		uint64_t room = t->boundary ? t->boundary - a % t->boundary : n;
		uint64_t k = umin(n, room);
		int ext = last && !last->bounced && !(bounced && first) && last->addr + last->len == a &&
			  last->len < t->maxsegsz && (!t->boundary || last->addr / t->boundary == a / t->boundary);
		if (bounced && !first && last && last->bounced && last->addr + last->len == a &&
		    last->len < t->maxsegsz && (!t->boundary || last->addr / t->boundary == a / t->boundary))
			ext = 1;
		if (ext) {
			k = umin(k, t->maxsegsz - last->len);
			last->len += k;
		} else {
			k = umin(k, t->maxsegsz);
			if (l->nseg == t->nseg) {
				l->efbig = 1;
				return;
			}
			l->s[l->nseg++] = (struct mseg){ a, k, bounced };
		}
		first = 0;
		a += k;
		n -= k;
	}
}

static void model_load(const struct mtag *t, const struct iovec *iov, int cnt, struct mload *l)
{
	memset(l, 0, sizeof(*l));
	for (int i = 0; i < cnt && !l->efbig; i++) {
		uintptr_t va = (uintptr_t)iov[i].iov_base, end = va + iov[i].iov_len;
		while (va < end && !l->efbig) {
			uint64_t n = umin(PGSZ - va % PGSZ, end - va);
			int bounce = !model_reg(va);
			uint64_t a = va; /* va backend */
			if (!bounce) {
				struct mseg *last = l->nseg ? &l->s[l->nseg - 1] : NULL;
				int inwin = a + n - 1 > t->low && a <= t->high;
				int extends = last && !last->bounced && last->addr + last->len == a &&
					      last->len < t->maxsegsz &&
					      (!t->boundary || last->addr / t->boundary == a / t->boundary);
				bounce = inwin || (t->strict && n != PGSZ) || (a % t->align && !extends);
			}
			if (bounce) {
				l->npages++;
				/* slots start on max(4 KiB, alignment): offset 0 of a block of that size */
				model_emit(t, l, 0, n, 1);
			} else {
				model_emit(t, l, a, n, 0);
			}
			va += n;
		}
	}
}

/* ---------------------------------------------------------------- driving the library */

static ubdma_ctx_t *ctx;

static size_t pool_inuse_test(const ubdma_tag_t *t)
{
	return t->pool ? t->pool->total - t->pool->nfree : 0;
}

struct cbres {
	int calls, nseg, error;
	ubdma_seg_t segs[MAXSEG + 1];
};

static void cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	struct cbres *r = arg;
	r->calls++;
	r->nseg = nseg;
	r->error = error;
	if (nseg > 0 && nseg <= MAXSEG)
		memcpy(r->segs, segs, (size_t)nseg * sizeof(*segs));
}

struct mapst {
	ubdma_map_t *m;
	int loaded, waiting;
	struct iovec iov[4];
	int cnt;
	struct mload model;
	struct cbres res;
};

/* Compare a loaded map's segments to the model. */
static void check_segs(const struct mtag *t, const struct mapst *ms, const ubdma_seg_t *segs, int nseg)
{
	CHECK(nseg == ms->model.nseg);
	for (int i = 0; i < nseg; i++) {
		const struct mseg *e = &ms->model.s[i];
		CHECK(segs[i].ds_len == e->len);
		CHECK(segs[i].ds_len <= t->maxsegsz);
		if (t->boundary)
			CHECK(segs[i].ds_addr / t->boundary == (segs[i].ds_addr + segs[i].ds_len - 1) / t->boundary);
		if (!e->bounced) {
			CHECK(segs[i].ds_addr == e->addr);
		} else {
			uint64_t a = segs[i].ds_addr;
			CHECK(!((uintptr_t)a >= (uintptr_t)arena && (uintptr_t)a < (uintptr_t)arena + ARENA));
			CHECK(!(a + e->len - 1 > t->low && a <= t->high));
		}
	}
	/* segments starting a bounced piece start on the alignment */
	for (int i = 0; i < nseg; i++)
		if (ms->model.s[i].bounced && (i == 0 || !ms->model.s[i - 1].bounced ||
					       ms->model.s[i - 1].addr + ms->model.s[i - 1].len != ms->model.s[i].addr))
			CHECK(segs[i].ds_addr % (t->align > PGSZ ? t->align : 1) == 0);
}

/* Where each byte of the map's pieces is seen by the device: walk pieces and segments together. */
static void device_view(const struct mapst *ms, const ubdma_seg_t *segs, int nseg, int write, uint8_t seed)
{
	int s = 0;
	uint64_t off = 0;
	for (int i = 0; i < ms->cnt; i++) {
		uint8_t *c = ms->iov[i].iov_base;
		for (size_t j = 0; j < ms->iov[i].iov_len; j++) {
			while (s < nseg && off == segs[s].ds_len) {
				s++;
				off = 0;
			}
			CHECK(s < nseg);
			uint8_t *d = (uint8_t *)(uintptr_t)(segs[s].ds_addr + off);
			if (write)
				*d = (uint8_t)(seed + j * 131 + i);
			else
				CHECK(*d == c[j]);
			off++;
		}
	}
}

static void check_client(const struct mapst *ms, uint8_t seed, const uint8_t *before)
{
	uint8_t *a = (uint8_t *)arena;
	static uint8_t mark[ARENA];
	memset(mark, 0, sizeof(mark));
	for (int i = 0; i < ms->cnt; i++) {
		uint8_t *c = ms->iov[i].iov_base;
		for (size_t j = 0; j < ms->iov[i].iov_len; j++) {
			CHECK(c[j] == (uint8_t)(seed + j * 131 + i));
			mark[c + j - a] = 1;
		}
	}
	for (size_t k = 0; k < ARENA; k++)
		if (!mark[k])
			CHECK(a[k] == before[k]);
}

/*
 * The list just drawn for map ms, with one non-empty piece made bad: NULL, or moved to the top of
 * the address space so that it wraps past 2^64 (or ends exactly there).  Every variant must refuse
 * it with EINVAL, without a callback, leaving the map idle and the pool as it was, whatever the
 * other map is doing.  The choice is derived from the list, not taken from the input, so that the
 * seeds keep their meaning.
 */
static void check_bad_piece(ubdma_tag_t *tag, const struct mapst *ms, size_t inuse)
{
	struct iovec bad[4];
	struct cbres r;
	int k = (int)(ms->iov[0].iov_len % (size_t)ms->cnt), n = -1;

	memcpy(bad, ms->iov, sizeof(bad));
	const size_t len = bad[k].iov_len ? bad[k].iov_len : 1;
	bad[k] = (ms->iov[0].iov_len / 4) % 2 ? (struct iovec){ NULL, len }
						: (struct iovec){ (void *)(UINTPTR_MAX - len / 2), len };
	memset(&r, 0, sizeof(r));
	CHECK(ubdma_map_load_iov(tag, ms->m, bad, ms->cnt, cb, &r, 0) == EINVAL);
	CHECK(ubdma_map_load(tag, ms->m, bad[k].iov_base, bad[k].iov_len, cb, &r, UBDMA_NOWAIT) == EINVAL);
	CHECK(ubdma_map_load_sg(tag, ms->m, bad[k].iov_base, bad[k].iov_len, r.segs, &n, 0) == EINVAL && n == 0);
	CHECK(r.calls == 0 && ms->m->state == MAP_IDLE && pool_inuse_test(tag) == inuse);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	CHECK(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx) == 0);
	arena = mmap(NULL, ARENA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(arena != MAP_FAILED);
	return 0;
}

static uint64_t pick_window_addr(struct in *in)
{
	return (uint64_t)(uintptr_t)arena + take(in, 1) % (NPAGES + 1) * PGSZ + take(in, 2) % PGSZ - PGSZ / 2;
}

static struct mtag random_tag(struct in *in)
{
	struct mtag t;
	t.align = (uint64_t)1 << (take(in, 1) % 14);
	uint64_t b = take(in, 1) % 10;
	t.boundary = b < 3 ? 0 : (uint64_t)1 << (b + 8); /* 2 KiB .. 128 KiB */
	switch (take(in, 1) % 4) {
	case 0:
	case 1:
		t.low = t.high = UBDMA_MAXADDR;
		break;
	case 2:
		t.low = UBDMA_MAXADDR_32BIT;
		t.high = UBDMA_MAXADDR;
		break;
	default:
		t.low = pick_window_addr(in);
		t.high = t.low + take(in, 2) % (8 * PGSZ);
		break;
	}
	t.maxsize = ARENA;
	t.nseg = 1 + (int)(take(in, 1) % MAXSEG);
	t.maxsegsz = 1 + take(in, 3) % (3 * PGSZ * 4);
	t.strict = take(in, 1) % 8 == 0;
	return t;
}

static void random_iov(struct in *in, struct mapst *ms)
{
	ms->cnt = 1 + (int)(take(in, 1) % 4);
	size_t pos = take(in, 2) % (ARENA / 2);
	for (int i = 0; i < ms->cnt; i++) {
		size_t len = take(in, 2) % (ARENA / 8);
		if (pos + len > ARENA)
			len = ARENA - pos;
		ms->iov[i] = (struct iovec){ arena + pos, len };
		pos += len + take(in, 1) % 3 * (take(in, 2) % PGSZ);
		if (pos > ARENA)
			pos = ARENA;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	ubdma_umem_t *cookies[NPAGES];
	int ncookies = 0;
	static uint8_t before[ARENA];

	/* registrations: runs of pages */
	uint64_t mask = take(&in, 8);
	memset(registered, 0, sizeof(registered));
	for (int i = 0; i < NPAGES;) {
		if (!(mask >> i & 1)) {
			i++;
			continue;
		}
		int j = i;
		while (j < NPAGES && mask >> j & 1)
			j++;
		CHECK(ubdma_umem_lock(ctx, arena + (size_t)i * PGSZ, (size_t)(j - i) * PGSZ,
				      UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &cookies[ncookies]) == 0);
		ncookies++;
		memset(registered + i, 1, (size_t)(j - i));
		i = j;
	}
	for (size_t k = 0; k < ARENA; k++)
		arena[k] = (char)(k * 7 + size);

	struct mtag pown = random_tag(&in), cown = random_tag(&in);
	struct mtag pm = model_child(NULL, pown), tm = model_child(&pm, cown);
	ubdma_tag_t *parent, *tag;
	CHECK(ubdma_tag_create(ubdma_ctx_tag(ctx), pown.align, pown.boundary, pown.low, pown.high, pown.maxsize,
			       pown.nseg, pown.maxsegsz, 0, &parent) == 0);
	CHECK(ubdma_tag_create(parent, cown.align, cown.boundary, cown.low, cown.high, cown.maxsize, cown.nseg,
			       cown.maxsegsz, cown.strict ? UBDMA_STRICT : 0, &tag) == 0);
	CHECK(tag->lowaddr == tm.low && tag->highaddr == tm.high && tag->boundary == tm.boundary &&
	      tag->maxsegsz == tm.maxsegsz);
	size_t slot = tm.align > PGSZ ? tm.align : PGSZ;
	size_t limit = bounce_default_limit(tag);
	if (take(&in, 1) % 2) {
		limit = take(&in, 1) % 40;
		CHECK(ubdma_tag_set_bounce_limit(tag, limit * slot) == 0);
	}
	struct mapst ms[2];
	memset(ms, 0, sizeof(ms));
	for (int i = 0; i < 2; i++)
		CHECK(ubdma_map_create(tag, 0, &ms[i].m) == 0);
	size_t inuse = 0;

	for (int op = 0; op < 12 && in.n; op++) {
		struct mapst *m = &ms[take(&in, 1) % 2], *o = m == &ms[0] ? &ms[1] : &ms[0];
		switch (take(&in, 1) % 5) {
		case 0: /* load or load_iov, NOWAIT or WAITOK */
		case 1: {
			if (m->loaded || m->waiting)
				break;
			random_iov(&in, m);
			check_bad_piece(tag, m, inuse);
			int waitok = take(&in, 1) % 3 == 0 && o->loaded && !o->waiting;
			model_load(&tm, m->iov, m->cnt, &m->model);
			memset(&m->res, 0, sizeof(m->res));
			int err = m->cnt == 1 && take(&in, 1) % 2
					  ? ubdma_map_load(tag, m->m, m->iov[0].iov_base, m->iov[0].iov_len, cb, &m->res,
							   waitok ? 0 : UBDMA_NOWAIT)
					  : ubdma_map_load_iov(tag, m->m, m->iov, m->cnt, cb, &m->res, waitok ? 0 : UBDMA_NOWAIT);
			size_t np = (size_t)m->model.npages;
			if (m->model.efbig) {
				CHECK(err == 0 && m->res.calls == 1 && m->res.error == EFBIG && m->res.nseg == 0);
			} else if (np && (np > limit || o->waiting || inuse + np > limit)) {
				if (waitok && np <= limit && !o->waiting) {
					CHECK(err == EINPROGRESS && m->res.calls == 0);
					m->waiting = 1;
				} else {
					CHECK(err == ENOMEM && m->res.calls == 1 && m->res.error == ENOMEM);
				}
			} else {
				CHECK(err == 0 && m->res.calls == 1 && m->res.error == 0);
				check_segs(&tm, m, m->res.segs, m->res.nseg);
				m->loaded = 1;
				inuse += np;
			}
			CHECK(pool_inuse_test(tag) == inuse);
			break;
		}
		case 2: { /* load_sg */
			if (m->loaded || m->waiting)
				break;
			random_iov(&in, m);
			m->cnt = 1;
			model_load(&tm, m->iov, 1, &m->model);
			int n = -1;
			int err = ubdma_map_load_sg(tag, m->m, m->iov[0].iov_base, m->iov[0].iov_len, m->res.segs, &n, 0);
			size_t np = (size_t)m->model.npages;
			if (m->model.efbig) {
				CHECK(err == EFBIG && n == 0);
			} else if (np && (np > limit || o->waiting || inuse + np > limit)) {
				CHECK(err == ENOMEM && n == 0);
			} else {
				CHECK(err == 0);
				m->res.nseg = n;
				check_segs(&tm, m, m->res.segs, n);
				m->loaded = 1;
				inuse += np;
			}
			break;
		}
		case 3: /* PREWRITE, device checks; device writes, POSTREAD, client checks */
			if (!m->loaded)
				break;
			ubdma_map_sync(tag, m->m, UBDMA_SYNC_PREREAD | UBDMA_SYNC_PREWRITE);
			device_view(m, m->res.segs, m->res.nseg, 0, 0);
			memcpy(before, arena, ARENA);
			uint8_t seed = (uint8_t)take(&in, 1);
			device_view(m, m->res.segs, m->res.nseg, 1, seed);
			ubdma_map_sync(tag, m->m, UBDMA_SYNC_POSTREAD | UBDMA_SYNC_POSTWRITE);
			if (!o->loaded || !o->model.npages) /* another map's bounce slots do not touch the arena */
				check_client(m, seed, before);
			break;
		case 4: /* unload; a waiting load of the other map may run now */
			if (m->waiting) {
				ubdma_map_unload(tag, m->m); /* cancel */
				CHECK(m->res.calls == 0);
				m->waiting = 0;
				break;
			}
			if (!m->loaded)
				break;
			ubdma_map_unload(tag, m->m);
			m->loaded = 0;
			inuse -= (size_t)m->model.npages;
			if (o->waiting && inuse + (size_t)o->model.npages <= limit) {
				CHECK(o->res.calls == 1 && o->res.error == 0);
				check_segs(&tm, o, o->res.segs, o->res.nseg);
				o->waiting = 0;
				o->loaded = 1;
				inuse += (size_t)o->model.npages;
			} else if (o->waiting) {
				CHECK(o->res.calls == 0);
			}
			CHECK(pool_inuse_test(tag) == inuse);
			break;
		}
	}
	for (int i = 0; i < 2; i++) {
		ubdma_map_unload(tag, ms[i].m);
		CHECK(ubdma_map_destroy(tag, ms[i].m) == 0);
	}
	CHECK(pool_inuse_test(tag) == 0);
	CHECK(ubdma_tag_destroy(parent) == EBUSY);
	CHECK(ubdma_tag_destroy(tag) == 0);
	CHECK(ubdma_tag_destroy(parent) == 0);
	while (ncookies--)
		ubdma_umem_unlock(cookies[ncookies]);
	return 0;
}
