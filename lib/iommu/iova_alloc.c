/*
 * iova_alloc.c - the IOVA allocator: usable windows, allocated ranges, placement policy.
 *
 * The allocated ranges live in one array sorted by start address.  Allocation is first fit over
 * the windows, in two passes: first the part of the windows at or above 4 GiB, then the part
 * below, so that the 32-bit IOVA space stays free for tags limited to UBDMA_MAXADDR_32BIT (the
 * opposite of Linux's iommu-dma, which prefers 32-bit IOVAs for PCI devices: user-space drivers
 * rarely gain from short addresses, and a 32-bit-only device that finds its space eaten is a hard
 * failure).  Before scanning the gaps of a region, the gap above its highest range is tried: the
 * common life of a domain is allocate-mostly, which makes that the O(log n) case; a full scan is
 * O(n) with n bounded by VFIO's dma_entry_limit (65535 by default).  A side effect worth keeping:
 * a freed IOVA is not handed out again until the space above is used up, so a device that still
 * holds a stale IOVA after an unmap faults instead of writing into the next buffer.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/page.h"
#include "iommu/iova_alloc.h"

#define TOP ((UINT64_MAX & ~PAGE_4K_MASK) - 1) /* highest usable byte: keeps end + 1 from wrapping */

static int cmp_win(const void *a, const void *b)
{
	const struct iommu_window *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Copy, clip (no page 0, nothing past TOP, whole pages) and sort the windows. */
static int windows_clean(struct iommu_window *out, const struct iommu_window *w, int nwin)
{
	int n = 0;

	for (int i = 0; i < nwin && n < IOMMU_MAX_WINDOWS; i++) {
		uint64_t lo = w[i].lo < PAGE_4K ? PAGE_4K : (w[i].lo + PAGE_4K_MASK) & ~PAGE_4K_MASK;
		uint64_t hi = w[i].hi > TOP ? TOP : w[i].hi;

		if (hi < PAGE_4K_MASK)
			continue;
		hi = ((hi + 1) & ~PAGE_4K_MASK) - 1;
		if (lo > hi || lo < w[i].lo)
			continue;
		out[n++] = (struct iommu_window){ lo, hi };
	}
	qsort(out, (size_t)n, sizeof(*out), cmp_win);
	return n;
}

void iova_space_init(struct iova_space *s, const struct iommu_window *w, int nwin)
{
	memset(s, 0, sizeof(*s));
	s->nwin = windows_clean(s->win, w, nwin);
}

void iova_space_fini(struct iova_space *s)
{
	free(s->rec);
	memset(s, 0, sizeof(*s));
}

static int inside_windows(const struct iommu_window *w, int nwin, uint64_t lo, uint64_t hi)
{
	for (int i = 0; i < nwin; i++)
		if (lo >= w[i].lo && hi <= w[i].hi)
			return 1;
	return 0;
}

int iova_space_set_windows(struct iova_space *s, const struct iommu_window *w, int nwin)
{
	struct iommu_window clean[IOMMU_MAX_WINDOWS];
	int n = windows_clean(clean, w, nwin);

	for (size_t i = 0; i < s->n; i++)
		if (!inside_windows(clean, n, s->rec[i].lo, s->rec[i].lo + s->rec[i].size - 1))
			return ERANGE;
	memcpy(s->win, clean, sizeof(clean));
	s->nwin = n;
	return 0;
}

int iova_space_set_holes(struct iova_space *s, const struct iommu_window *h, int n)
{
	struct iommu_window out[IOVA_MAX_HOLES], *in = n > 0 ? malloc((size_t)n * sizeof(*in)) : NULL;
	int m = 0, k = 0;

	if (n > 0 && !in)
		return ENOMEM;
	for (int i = 0; i < n; i++)
		if (h[i].lo <= h[i].hi)
			in[m++] = h[i];
	qsort(in, (size_t)m, sizeof(*in), cmp_win);
	for (int j = 0; j < m; j++) {
		if (k && (in[j].lo <= out[k - 1].hi || in[j].lo - 1 == out[k - 1].hi || k == IOVA_MAX_HOLES)) {
			/* overlapping, adjacent, or no slot left: the last hole grows (over the gap) */
			if (in[j].hi > out[k - 1].hi)
				out[k - 1].hi = in[j].hi;
		} else {
			out[k++] = in[j];
		}
	}
	free(in);
	for (size_t i = 0; i < s->n; i++)
		for (int j = 0; j < k; j++)
			if (s->rec[i].lo <= out[j].hi && s->rec[i].lo + s->rec[i].size - 1 >= out[j].lo)
				return EBUSY;
	memcpy(s->hole, out, (size_t)k * sizeof(*out));
	s->nhole = k;
	return 0;
}

/* Index of the first record whose start is > x. */
static size_t upper_bound(const struct iova_space *s, uint64_t x)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->rec[mid].lo > x)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Lowest address >= x congruent to phase mod modulus, inside [x, hi] with room for size. */
static int fit(uint64_t x, uint64_t hi, uint64_t size, uint64_t modulus, uint64_t phase, uint64_t *out)
{
	uint64_t c;

	if (x > hi)
		return 0;
	c = (x & ~(modulus - 1)) | phase;
	if (c < x) {
		if (c > UINT64_MAX - modulus)
			return 0;
		c += modulus;
	}
	if (c > hi || hi - c < size - 1)
		return 0;
	*out = c;
	return 1;
}

/* fit(), then out of the holes: a candidate that overlaps one moves past it and fits again. */
static int fit_free(const struct iova_space *s, uint64_t x, uint64_t hi, uint64_t size, uint64_t modulus,
		    uint64_t phase, uint64_t *out)
{
	int h = 0;

	while (fit(x, hi, size, modulus, phase, out)) {
		uint64_t end = *out + size - 1;
		while (h < s->nhole && s->hole[h].hi < *out)
			h++;
		if (h == s->nhole || s->hole[h].lo > end)
			return 1;
		if (s->hole[h].hi >= hi)
			return 0;
		x = s->hole[h].hi + 1;
	}
	return 0;
}

/* First fit in the region [lo, hi]; the gap above the region's highest range is tried first. */
static int fit_region(const struct iova_space *s, uint64_t lo, uint64_t hi, uint64_t size,
		      uint64_t modulus, uint64_t phase, uint64_t *out)
{
	size_t j = upper_bound(s, hi); /* records [0, j) start at or below hi */
	uint64_t cur = lo;

	/* above everything ever handed out first: a freed range is not reused while there is room */
	if (s->hwm > lo && s->hwm <= hi && fit_free(s, s->hwm, hi, size, modulus, phase, out))
		return 1;
	if (j > 0) {
		const struct iova_rec *r = &s->rec[j - 1];
		uint64_t end = r->lo + r->size; /* <= TOP + 1 */
		if (end > lo && fit_free(s, end, hi, size, modulus, phase, out))
			return 1;
	} else {
		return fit_free(s, lo, hi, size, modulus, phase, out);
	}
	/* full scan: the first record that ends above lo, then every gap up to hi */
	size_t i = upper_bound(s, lo);
	if (i > 0 && s->rec[i - 1].lo + s->rec[i - 1].size > lo)
		i--;
	for (; i < j; i++) {
		const struct iova_rec *r = &s->rec[i];
		if (r->lo > cur && fit_free(s, cur, r->lo - 1, size, modulus, phase, out))
			return 1;
		if (r->lo + r->size > cur)
			cur = r->lo + r->size;
	}
	return fit_free(s, cur, hi, size, modulus, phase, out);
}

static int insert(struct iova_space *s, uint64_t iova, uint64_t size, uintptr_t va, uint32_t flags)
{
	size_t pos;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct iova_rec *r = realloc(s->rec, cap * sizeof(*r));
		if (!r)
			return ENOMEM;
		s->rec = r;
		s->cap = cap;
	}
	if (iova + size > s->hwm)
		s->hwm = iova + size;
	pos = upper_bound(s, iova);
	assert(pos == 0 || s->rec[pos - 1].lo + s->rec[pos - 1].size <= iova);
	assert(pos == s->n || s->rec[pos].lo > iova + size - 1);
	memmove(&s->rec[pos + 1], &s->rec[pos], (s->n - pos) * sizeof(*s->rec));
	s->rec[pos] = (struct iova_rec){ iova, size, va, flags };
	s->n++;
	return 0;
}

int iova_alloc(struct iova_space *s, uint64_t size, uint64_t modulus, uint64_t phase,
	       const struct iommu_window *lim, uintptr_t va, uint32_t flags, uint64_t *iovap)
{
	assert(size && !(size % PAGE_4K) && modulus >= PAGE_4K && !(modulus & (modulus - 1)));
	assert(phase < modulus && !(phase % PAGE_4K));
	for (int pass = 0; pass < 2; pass++) {
		for (int w = 0; w < s->nwin; w++) {
			uint64_t lo = s->win[w].lo, hi = s->win[w].hi, iova;

			/* pass 0: the part at or above 4 GiB; pass 1: the part below */
			if (pass == 0 && lo < IOVA_HIGH_FIRST)
				lo = IOVA_HIGH_FIRST;
			if (pass == 1 && hi >= IOVA_HIGH_FIRST)
				hi = IOVA_HIGH_FIRST - 1;
			if (lim) {
				lo = lo > lim->lo ? lo : lim->lo;
				hi = hi < lim->hi ? hi : lim->hi;
			}
			if (lo > hi || !fit_region(s, lo, hi, size, modulus, phase, &iova))
				continue;
			if (insert(s, iova, size, va, flags))
				return ENOMEM;
			*iovap = iova;
			return 0;
		}
	}
	return lim ? ERANGE : ENOSPC;
}

struct iova_rec *iova_find(struct iova_space *s, uint64_t iova)
{
	size_t i = upper_bound(s, iova);

	return i > 0 && s->rec[i - 1].lo == iova ? &s->rec[i - 1] : NULL;
}

void iova_free_rec(struct iova_space *s, struct iova_rec *r)
{
	size_t i = (size_t)(r - s->rec);

	assert(i < s->n);
	memmove(&s->rec[i], &s->rec[i + 1], (s->n - i - 1) * sizeof(*s->rec));
	s->n--;
}
