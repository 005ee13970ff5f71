/*
 * test_threads.c - loads racing unloads, unlocks and destroys (issue 10; run under TSan too).
 *
 * One context, one tag with a small bounce pool.  Threads:
 *   loader (2)  load / check / unload their own maps over buffers that are registered at times
 *               and not at others (so loads go in place or bounce), NOWAIT and WAITOK; a WAITOK
 *               load that is deferred completes in whichever thread frees slots;
 *   churner     locks and unlocks cookies over the loaders' buffers (the translation changes
 *               under the loads), creates and destroys maps and child tags, allocates and frees
 *               DMA memory;
 *   reader      translates all the time (ubdma_vtoiova is lock-free).
 * Each completed load is checked: its segments cover the buffer, and after a PREWRITE sync each
 * segment (IOVA = VA on va) holds the buffer's bytes.  No crash, no lost callback, no error but
 * ENOMEM (pool short, NOWAIT), and at the end nothing wired, VmLck back where it started.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include <ubdma/ubdma.h>

#define PG 4096UL
#define BUFPG 8
#define ROUNDS 400

static ubdma_ctx_t *ctx;
static ubdma_tag_t *tag;
static char *bufs[2];
static int stop;
static long loads_ok, loads_nomem, bad;

struct done {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int fired, err, nseg;
	ubdma_seg_t segs[16];
};

static void cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	struct done *d = arg;

	pthread_mutex_lock(&d->lock);
	d->err = error;
	d->nseg = nseg;
	if (nseg > 0 && nseg <= 16)
		memcpy(d->segs, segs, (size_t)nseg * sizeof(*segs));
	d->fired = 1;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->lock);
}

static void *loader(void *arg)
{
	char *buf = bufs[(intptr_t)arg];
	ubdma_map_t *map;
	struct done d = { .lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

	if (ubdma_map_create(tag, 0, &map))
		return (void *)1;
	for (int r = 0; r < ROUNDS; r++) {
		size_t off = (size_t)(r * 97) % PG, len = PG + (size_t)(r * 131) % (3 * PG);
		int flags = r & 1 ? UBDMA_NOWAIT : 0;
		d.fired = 0;
		memset(buf + off, (char)r, len);
		int rc = ubdma_map_load(tag, map, buf + off, len, cb, &d, flags);
		if (rc == EINPROGRESS) {
			pthread_mutex_lock(&d.lock);
			while (!d.fired)
				pthread_cond_wait(&d.cv, &d.lock);
			pthread_mutex_unlock(&d.lock);
			rc = d.err;
		} else if (rc == 0) {
			rc = d.err;
		}
		if (rc == ENOMEM) {
			__atomic_add_fetch(&loads_nomem, 1, __ATOMIC_RELAXED);
			continue;
		}
		if (rc) {
			__atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
			fprintf(stderr, "load: %d %s\n", rc, ubdma_last_error());
			continue;
		}
		ubdma_map_sync(tag, map, UBDMA_SYNC_PREWRITE);
		size_t total = 0;
		for (int i = 0; i < d.nseg; i++) {
			/* IOVA = VA on va: what the device would read */
			const unsigned char *dev = (const unsigned char *)(uintptr_t)d.segs[i].ds_addr;
			for (size_t k = 0; k < d.segs[i].ds_len; k += 511)
				if (dev[k] != (unsigned char)r) {
					__atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
					fprintf(stderr, "round %d segment %d byte %zu: %#x\n", r, i, k, dev[k]);
					break;
				}
			total += d.segs[i].ds_len;
		}
		if (total != len)
			__atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
		ubdma_map_sync(tag, map, UBDMA_SYNC_POSTWRITE);
		ubdma_map_unload(tag, map);
		__atomic_add_fetch(&loads_ok, 1, __ATOMIC_RELAXED);
	}
	ubdma_map_destroy(tag, map);
	return NULL;
}

/*
 * Cookies come and go under the loaders' buffers.  A loader's load over a page whose cookie is
 * unlocked meanwhile may have used it in place: that is the caller's contract (do not unlock
 * memory while it is loaded), so the churner only ever unlocks a cookie it locked over a buffer
 * page range that stays mapped; the bytes check above stays valid because unlock never unmaps.
 */
static void *churner(void *arg)
{
	(void)arg;
	for (int r = 0; !__atomic_load_n(&stop, __ATOMIC_RELAXED); r++) {
		ubdma_umem_t *u = NULL;
		ubdma_tag_t *child = NULL;
		ubdma_map_t *m = NULL, *mm = NULL;
		void *mem = NULL;
		char *b = bufs[r & 1] + (size_t)(r % 4) * PG;

		if (ubdma_umem_lock(ctx, b, 4 * PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u) == 0)
			ubdma_umem_unlock(u);
		if (ubdma_tag_create(tag, 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 2 * PG, 2, 2 * PG, 0, &child) == 0) {
			if (ubdma_map_create(child, 0, &m) == 0)
				ubdma_map_destroy(child, m);
			if (ubdma_mem_alloc(child, &mem, 0, &mm) == 0)
				ubdma_mem_free(child, mem, mm);
			if (ubdma_tag_destroy(child))
				__atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
		}
	}
	return NULL;
}

static void *reader(void *arg)
{
	(void)arg;
	uint64_t sink = 0;
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
		for (int i = 0; i < 2 * BUFPG; i++)
			sink += ubdma_vtoiova(ctx, bufs[i / BUFPG] + (size_t)(i % BUFPG) * PG);
	return (void *)(uintptr_t)(sink & 0);
}

static long vmlck(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long kb = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static void test_load_unload_destroy(void **state)
{
	(void)state;
	pthread_t l[2], c, rd;
	long lck0 = vmlck();

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(ctx), 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 4 * PG, 8, 4 * PG,
					  0, &tag), 0);
	/* a pool smaller than two loads: loads wait for each other */
	assert_int_equal(ubdma_tag_set_bounce_limit(tag, 6 * PG), 0);
	for (int i = 0; i < 2; i++) {
		bufs[i] = mmap(NULL, BUFPG * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		assert_true(bufs[i] != MAP_FAILED);
	}
	assert_int_equal(pthread_create(&c, NULL, churner, NULL), 0);
	assert_int_equal(pthread_create(&rd, NULL, reader, NULL), 0);
	for (intptr_t i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&l[i], NULL, loader, (void *)i), 0);
	for (int i = 0; i < 2; i++) {
		void *ret;
		pthread_join(l[i], &ret);
		assert_null(ret);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	pthread_join(c, NULL);
	pthread_join(rd, NULL);
	print_message("# %ld loads checked, %ld refused with ENOMEM (pool short), %ld bad\n", loads_ok, loads_nomem,
		      bad);
	assert_int_equal(bad, 0);
	assert_true(loads_ok > ROUNDS / 2);
	assert_int_equal(ubdma_tag_destroy(tag), 0);
	ubdma_ctx_close(ctx);
	for (int i = 0; i < 2; i++) {
		for (int p = 0; p < BUFPG; p++)
			assert_int_equal(ubdma_wire_count(bufs[i] + (size_t)p * PG), 0);
		munmap(bufs[i], BUFPG * PG);
	}
	assert_int_equal(vmlck(), lck0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_unload_destroy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
