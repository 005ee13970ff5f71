/*
 * vmcheck.h - what a test reads back from the kernel about the process's own mappings, without
 * asking ubdma: each VMA of /proc/self/smaps with its Locked: size and VmFlags (lo is VM_LOCKED,
 * dc is VM_DONTFORK), and physical addresses from /proc/self/pagemap.  The wiring tests judge
 * the library by what the kernel says, never by what the library says about itself, so this is
 * shared by tests/unit/wire/test_wire_follow.c and tests/soak/test_race_model.c.
 */
#ifndef UBDMA_TEST_VMCHECK_H
#define UBDMA_TEST_VMCHECK_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct vm_area {
	uintptr_t start, end;
	long locked_kb;	 /* smaps Locked: */
	int lo, dc;	 /* VmFlags holds lo (VM_LOCKED) / dc (VM_DONTFORK) */
	char head[200];	 /* the VMA's first line, as smaps prints it */
	char flags[200]; /* the VmFlags: value */
};

/* Whether the VmFlags value holds the two-letter flag as a word of its own. */
static inline int vm_flag(const char *flags, const char *two)
{
	for (const char *p = flags; (p = strstr(p, two)); p += 2)
		if ((p == flags || p[-1] == ' ') && (p[2] == ' ' || p[2] == '\n' || p[2] == 0))
			return 1;
	return 0;
}

/* Copy what fits of src (truncation is wanted: the lines are for people to read). */
static inline void vm_copy(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	n = n < size - 1 ? n : size - 1;
	memcpy(dst, src, n);
	dst[n] = 0;
}

typedef int vm_fn(const struct vm_area *v, void *arg);

/* Call fn on every VMA of /proc/self/smaps until it returns non-zero.  Return: 0, -1 if unreadable. */
static inline int vm_each(vm_fn *fn, void *arg)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[1024];
	struct vm_area v;
	int have = 0, stop = 0;

	if (!f)
		return -1;
	memset(&v, 0, sizeof(v));
	while (!stop && fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char perms[8];
		/* a key line ("Locked:", "AnonHugePages:") never parses as "hex-hex perms" */
		if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) == 3) {
			if (have)
				stop = fn(&v, arg);
			memset(&v, 0, sizeof(v));
			v.start = s;
			v.end = e;
			have = 1;
			line[strcspn(line, "\n")] = 0;
			vm_copy(v.head, sizeof(v.head), line);
		} else if (have && !strncmp(line, "Locked:", 7)) {
			v.locked_kb = strtol(line + 7, NULL, 10);
		} else if (have && !strncmp(line, "VmFlags:", 8)) {
			line[strcspn(line, "\n")] = 0;
			vm_copy(v.flags, sizeof(v.flags), line + 8);
			v.lo = vm_flag(v.flags, "lo");
			v.dc = vm_flag(v.flags, "dc");
		}
	}
	if (have && !stop)
		fn(&v, arg);
	fclose(f);
	return 0;
}

struct vm_scan {
	uintptr_t lo, hi; /* VMAs overlapping it must be neither Locked: > 0, lo nor dc */
	int whole;	  /* and no VMA of the process may be lo or dc */
	FILE *out;	  /* offending VMAs are printed here (NULL: counted only) */
	const char *label;
	int printed, max;
	long bad;
};

static inline int vm_scan_one(const struct vm_area *v, void *arg)
{
	struct vm_scan *s = arg;
	int in = v->start < s->hi && v->end > s->lo;

	if ((in && (v->locked_kb > 0 || v->lo || v->dc)) || (s->whole && (v->lo || v->dc))) {
		s->bad++;
		if (s->out && s->printed++ < s->max)
			fprintf(s->out, "%s: %s  Locked: %ld kB  VmFlags:%s\n", s->label, v->head, v->locked_kb,
				v->flags);
	}
	return 0;
}

/*
 * The number of VMAs that overlap [lo, hi) and are locked (Locked: > 0 or lo) or DONTFORK, plus,
 * with whole, those anywhere in the process that are lo or dc; the first max are printed to out,
 * each on a line that starts with label.  -1 when smaps cannot be read.
 */
static inline long vm_offenders(uintptr_t lo, uintptr_t hi, int whole, FILE *out, const char *label, int max)
{
	struct vm_scan s = { lo, hi, whole, out, label, 0, max, 0 };

	if (vm_each(vm_scan_one, &s))
		return -1;
	return s.bad;
}

/* The sum of Locked: over the VMAs that overlap [lo, hi), in kB. */
static inline int vm_locked_one(const struct vm_area *v, void *arg)
{
	uintptr_t *a = arg;

	if (v->start < a[1] && v->end > a[0])
		a[2] += (uintptr_t)v->locked_kb;
	return 0;
}

static inline long vm_locked_kb(uintptr_t lo, uintptr_t hi)
{
	uintptr_t a[3] = { lo, hi, 0 };

	if (vm_each(vm_locked_one, a))
		return -1;
	return (long)a[2];
}

/* Whether the VMA holding addr has the VmFlags flag (lo, dc); -1 when no VMA holds it. */
struct vm_flagq {
	uintptr_t addr;
	const char *two;
	int ans;
};

static inline int vm_flag_one(const struct vm_area *v, void *arg)
{
	struct vm_flagq *q = arg;

	if (v->start <= q->addr && q->addr < v->end) {
		q->ans = vm_flag(v->flags, q->two);
		return 1;
	}
	return 0;
}

static inline int vm_flag_at(const void *addr, const char *two)
{
	struct vm_flagq q = { (uintptr_t)addr, two, -1 };

	vm_each(vm_flag_one, &q);
	return q.ans;
}

/*
 * The physical address of addr from pagemap (bits 0-54: frame number, bit 63: present), or 0
 * when the page is not present or the frame is hidden (frame numbers read as 0 without
 * CAP_SYS_ADMIN).  fd: /proc/self/pagemap, or -1 to open it for this one call.
 */
static inline uint64_t vm_pagemap_pa(int fd, const void *addr)
{
	uint64_t e = 0;
	int own = fd < 0;

	if (own && (fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	if (pread(fd, &e, sizeof(e), (off_t)((uintptr_t)addr / 4096 * sizeof(e))) != (ssize_t)sizeof(e))
		e = 0;
	if (own)
		close(fd);
	if (!(e >> 63) || !(e & ((1ULL << 55) - 1)))
		return 0;
	return (e & ((1ULL << 55) - 1)) * 4096 + ((uintptr_t)addr & 4095);
}

#endif
