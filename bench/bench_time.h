/*
 * bench_time.h - the clock and the sample order every benchmark in bench/ shares: nanoseconds
 * of CLOCK_MONOTONIC (the vDSO: no system call inside a timed loop) and a qsort(3) comparison
 * of doubles for the medians and percentiles of the rows.
 */
#ifndef UBDMA_BENCH_TIME_H
#define UBDMA_BENCH_TIME_H

#include <stdint.h>
#include <time.h>

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

#endif
