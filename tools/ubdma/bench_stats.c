/*
 * bench_stats.c - the latency histogram of `ubdma bench` and its clocks.  Every operation of a
 * workload is recorded (no sampling, no allocation while it runs), into log-linear buckets:
 * exact below 2 * LH_SUB ns, then LH_SUB buckets an octave, so a percentile is off by at most
 * half a bucket (1.6 %).  The maximum is kept exactly.
 */
#include <time.h>

#include "bench.h"

static unsigned lh_idx(uint64_t v)
{
	if (v < 2 * LH_SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - 5; /* v >> shift is in [LH_SUB, 2 * LH_SUB) */
	unsigned idx = (shift + 1) * LH_SUB + (unsigned)((v >> shift) - LH_SUB);
	return idx < LH_BUCKETS ? idx : LH_BUCKETS - 1;
}

/* The lowest value of bucket @i and its width. */
static void lh_bounds(unsigned i, double *lo, double *width)
{
	if (i < 2 * LH_SUB) {
		*lo = i;
		*width = 1;
		return;
	}
	unsigned shift = i / LH_SUB - 1;
	*lo = (double)((uint64_t)(i % LH_SUB + LH_SUB) << shift);
	*width = (double)(UINT64_C(1) << shift);
}

void lh_add(struct lhist *h, uint64_t ns)
{
	h->c[lh_idx(ns)]++;
	h->n++;
	h->sum += ns;
	if (ns > h->max)
		h->max = ns;
}

double lh_pct(const struct lhist *h, double q)
{
	uint64_t want, seen = 0;
	double lo, w, v;

	if (!h->n)
		return 0;
	want = (uint64_t)(q * (double)h->n + 0.999999);
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < LH_BUCKETS; i++) {
		seen += h->c[i];
		if (seen >= want) {
			lh_bounds(i, &lo, &w);
			v = lo + (w - 1) / 2;
			return v > (double)h->max ? (double)h->max : v;
		}
	}
	return (double)h->max;
}

double lh_mean(const struct lhist *h)
{
	return h->n ? (double)h->sum / (double)h->n : 0;
}

/* The plot's histogram: the fine buckets merged four by four (8 an octave). */
void row_from_hist(struct bench_row *row, const struct lhist *h)
{
	if (!h || !h->n)
		return;
	row->have_lat = 1;
	for (int k = 0; k < NPCT; k++)
		row->pct[k] = lh_pct(h, bench_pcts[k]);
	row->max = (double)h->max;
	row->mean = lh_mean(h);
	row->nhist = 0;
	for (unsigned i = 0; i < LH_BUCKETS; i += 4) {
		uint64_t c = h->c[i] + h->c[i + 1] + h->c[i + 2] + h->c[i + 3];
		double lo, w;
		if (!c)
			continue;
		lh_bounds(i, &lo, &w);
		row->hist_v[row->nhist] = lo;
		row->hist_c[row->nhist++] = (double)c;
	}
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
