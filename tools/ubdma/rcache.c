/*
 * rcache.c - `ubdma rcache`: the registration cache's counters.  They belong to the process that
 * uses the cache, so the tool shows them on a workload of its own: N buffers, each looked up and
 * put K times in turn (a miss, then K - 1 hits), a guard gap between buffers unless --adjacent
 * (then each miss merges with its neighbour), optionally under a byte limit (evictions) and
 * unmapped at the end while cached (the monitor's invalidations).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <ubdma/ubdma.h>

#include "cli.h"

struct workload {
	long nbuf, iters;
	uint64_t size, limit;
	int adjacent, unmap, explicit_only, huge; /* huge -1: what the backend needs */
	enum ubdma_backend be;
};

/* The counters as a JSON member, every field of struct ubdma_rcache_stats. */
static void stats_json(json_object *root, const struct ubdma_rcache_stats *s)
{
	json_object *o = jadd_obj(root, "stats");

	jadd_u64(o, "hits", s->hits);
	jadd_u64(o, "misses", s->misses);
	jadd_u64(o, "merges", s->merges);
	jadd_u64(o, "evictions", s->evictions);
	jadd_u64(o, "invalidations", s->invalidations);
	jadd_u64(o, "bytes_pinned", s->bytes_pinned);
	jadd_u64(o, "entries", s->entries);
	jadd_u64(o, "held_invalid", s->held_invalid);
	jadd_u64(o, "unmonitored", s->unmonitored);
	jadd_u64(o, "limit_failures", s->limit_failures);
	jadd_u64(o, "events_unmap", s->events_unmap);
	jadd_u64(o, "events_remove", s->events_remove);
	jadd_u64(o, "events_remap", s->events_remap);
	jadd_u64(o, "max_bytes", s->max_bytes);
	jadd_u64(o, "max_entries", s->max_entries);
	jadd_u64(o, "max_iommu", s->max_iommu);
	jadd_bool(o, "monitor_active", s->monitor_active);
	jadd_str(o, "monitor", s->monitor);
}

static long parse_count(const char *opt, const char *v, long max)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (!isdigit((unsigned char)*v) || *end || n < 1 || n > max)
		usage_error("rcache: %s wants a number from 1 to %ld (got '%s')", opt, max, v);
	return n;
}

static enum ubdma_backend parse_backend(const char *val)
{
	static const char *names[] = { "auto", "vfio", "phys", "va", "iommufd", "noiommu" };
	static const enum ubdma_backend bes[] = { UBDMA_BACKEND_AUTO, UBDMA_BACKEND_VFIO, UBDMA_BACKEND_PHYS,
						  UBDMA_BACKEND_VA, UBDMA_BACKEND_IOMMUFD, UBDMA_BACKEND_NOIOMMU };

	for (int k = 0; k < 6; k++)
		if (!strcmp(val, names[k]))
			return bes[k];
	usage_error("rcache: --backend is auto, iommufd, vfio, noiommu, phys or va (got '%s')", val);
}

static void parse_args(int argc, char **argv, struct workload *w)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--adjacent")) {
			w->adjacent = 1;
			continue;
		}
		if (!strcmp(a, "--unmap")) {
			w->unmap = 1;
			continue;
		}
		if (!strcmp(a, "--explicit")) {
			w->explicit_only = 1;
			continue;
		}
		if (strcmp(a, "--buffers") && strcmp(a, "--size") && strcmp(a, "--iterations") && strcmp(a, "--limit") &&
		    strcmp(a, "--backend") && strcmp(a, "--memory"))
			usage_error("rcache: unknown option '%s' (see ubdma help)", a);
		if (!val)
			usage_error("rcache: %s needs a value", a);
		i++;
		if (!strcmp(a, "--buffers"))
			w->nbuf = parse_count(a, val, 4096);
		else if (!strcmp(a, "--iterations"))
			w->iters = parse_count(a, val, 100000000);
		else if (!strcmp(a, "--size") && (!(w->size = parse_size(val)) || w->size > ((uint64_t)1 << 30)))
			usage_error("rcache: '%s' is not a size from 1 byte to 1G", val);
		else if (!strcmp(a, "--limit") && !(w->limit = parse_size(val)))
			usage_error("rcache: '%s' is not a size (e.g. 1M)", val);
		else if (!strcmp(a, "--memory")) {
			if (strcmp(val, "anon") && strcmp(val, "hugetlb"))
				usage_error("rcache: --memory is anon or hugetlb (got '%s')", val);
			w->huge = !strcmp(val, "hugetlb");
		} else if (!strcmp(a, "--backend")) {
			w->be = parse_backend(val);
		}
	}
}

static void report(ubdma_ctx_t *ctx, const struct workload *w, uint64_t room, double ns)
{
	struct ubdma_rcache_stats st;
	char b1[32], b2[32], b3[32];

	ubdma_rcache_stats(ctx, &st, sizeof(st));
	if (opt_json) {
		json_object *root = json_object_new_object(), *o;
		char nsbuf[32];
		jadd_str(root, "backend", ubdma_backend_name(ubdma_ctx_backend(ctx)));
		o = jadd_obj(root, "workload");
		jadd_int(o, "buffers", w->nbuf);
		jadd_u64(o, "size", w->size);
		jadd_u64(o, "registered_per_buffer", room);
		jadd_int(o, "iterations", w->iters);
		jadd_str(o, "memory", w->huge ? "hugetlb" : "anon");
		jadd_bool(o, "adjacent", w->adjacent);
		jadd_u64(o, "limit", w->limit);
		jadd_bool(o, "unmap", w->unmap);
		jadd_bool(o, "explicit", w->explicit_only);
		stats_json(root, &st);
		sfmt(nsbuf, sizeof(nsbuf), "%.1f", ns);
		json_object_object_add(root, "ns_per_get_put", json_object_new_double_s(ns, nsbuf));
		json_print(root);
		return;
	}
	printf("Registration cache of this process, backend %s\n", ubdma_backend_name(ubdma_ctx_backend(ctx)));
	printf("  workload: %ld %s buffers of %s (%s registered each)%s, %ld get/put each in turn%s%s%s\n", w->nbuf,
	       w->huge ? "hugetlb" : "anonymous", human(w->size, b1, sizeof(b1)), human(room, b2, sizeof(b2)),
	       w->adjacent ? ", adjacent" : "", w->iters, w->limit ? ", byte limit " : "",
	       w->limit ? human(w->limit, b3, sizeof(b3)) : "", w->unmap ? ", unmapped at the end" : "");
	printf("  %.0f ns per get/put on average\n", ns);
	ubdma_rcache_stats_print(ctx, stdout);
}

int cmd_rcache(int argc, char **argv)
{
	struct workload w = { .nbuf = 8, .iters = 100, .size = 64 << 10, .huge = -1, .be = UBDMA_BACKEND_AUTO };
	ubdma_ctx_t *ctx;
	char b1[32];
	int err;

	parse_args(argc, argv, &w);
	if ((err = ubdma_ctx_open(w.be, &ctx)))
		return fail("rcache: cannot open a context: %s", ubdma_last_error());
	if (w.huge < 0)
		w.huge = ubdma_ctx_backend(ctx) == UBDMA_BACKEND_PHYS || ubdma_ctx_backend(ctx) == UBDMA_BACKEND_NOIOMMU; /* hugetlb memory only */
	/* registrations are whole pages: a buffer takes pgsz-rounded room, a gap one more page */
	uint64_t pgsz = w.huge ? (uint64_t)2 << 20 : 4096, room = (w.size + pgsz - 1) & ~(pgsz - 1);
	uint64_t stride = room + (w.adjacent ? 0 : pgsz), total = stride * (uint64_t)w.nbuf;
	uint8_t *mem = mmap(NULL, total, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (w.huge ? MAP_HUGETLB | (21 << MAP_HUGE_SHIFT) : 0),
			    -1, 0);
	if (mem == MAP_FAILED) {
		ubdma_ctx_close(ctx);
		return fail("rcache: cannot map %s of %s memory: %s%s", human(total, b1, sizeof(b1)),
			    w.huge ? "2 MiB hugetlb" : "anonymous", strerror(errno),
			    w.huge ? " (reserve hugepages: ubdma hugepages --reserve SIZE)" : "");
	}
	if ((w.limit && (err = ubdma_rcache_set_limits(ctx, w.limit, 0, 0))) ||
	    (w.explicit_only && (err = ubdma_rcache_set_monitor(ctx, UBDMA_RCACHE_MONITOR_EXPLICIT)))) {
		munmap(mem, total);
		ubdma_ctx_close(ctx);
		return fail("rcache: %s", ubdma_last_error());
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long k = 0; k < w.iters; k++)
		for (long b = 0; b < w.nbuf; b++) {
			ubdma_reg_t *r;
			if ((err = ubdma_reg_get(ctx, mem + (uint64_t)b * stride, w.size,
						 UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &r))) {
				fail("rcache: ubdma_reg_get of buffer %ld (%s) in round %ld: %s", b,
				     human(w.size, b1, sizeof(b1)), k + 1, ubdma_last_error());
				munmap(mem, total);
				ubdma_ctx_close(ctx);
				return EX_FAIL;
			}
			ubdma_reg_put(r);
		}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) /
		    ((double)w.iters * (double)w.nbuf);
	if (w.unmap)
		munmap(mem, total); /* while cached: the monitor sees it (or, explicit-only, nobody) */
	report(ctx, &w, room, ns);
	if (!w.unmap)
		munmap(mem, total);
	ubdma_ctx_close(ctx);
	return 0;
}
