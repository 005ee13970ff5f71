/*
 * map.c - the allocator under all memory the library makes for DMA: pages of one size (4 KiB
 * anonymous pages, or hugetlb pages from a memfd or a hugetlbfs file), mapped at an address on an
 * alignment and, when asked, inside a range, bound to a NUMA node, then faulted in.
 * ubdma_huge_alloc() (alloc.c) and the busdma layer's DMA and bounce memory both come from here.
 *
 * Order matters.  The memory is mapped first, without faulting it in; the NUMA policy is set on
 * the mapping; only then are the pages faulted in, with MADV_POPULATE_WRITE, which reports a
 * hugetlb shortage as an error instead of the SIGBUS a plain touch would raise.  A shared hugetlb
 * mapping reserves its pages system-wide at mmap() time, but the reservation does not look at
 * nodes, so a node that runs short shows up only at fault time.
 *
 * Placement.  With the va backend the IOVA of memory is its virtual address, so a tag's IOVA
 * window is a range of virtual addresses: the kernel's choice is taken when it fits, else
 * MAP_FIXED_NOREPLACE hints are tried from the bottom of the range up (a 32-bit window needs
 * addresses below 4 GiB, which the kernel never picks on its own).  An anonymous mapping is
 * over-allocated and trimmed to reach an alignment above the page size; a hugetlb mapping is
 * aligned to its page size by the kernel.
 */
#include <errno.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/page.h"
#include "hugepage/huge.h"
#include "hugepage/hugemem.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define HINT_TRIES 1024
#define HINT_STEP_MIN (1UL << 20) /* step at least this far to skip occupied areas quickly */
#define MIN_VA 0x10000UL	  /* below vm.mmap_min_addr's usual value nothing can be mapped */

static uintptr_t round_up(uintptr_t v, uintptr_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static int fits(uintptr_t a, size_t len, const struct huge_req *rq)
{
	return !rq->place || (a >= rq->lo && a + len - 1 >= a && a + len - 1 <= rq->hi);
}

/* Fault every page in for writing; ENOMEM when the pages cannot be had (hugetlb shortage). */
static int populate(void *addr, size_t len, size_t pgsz)
{
	if (madvise(addr, len, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return errno == EFAULT || errno == EINTR || errno == EHWPOISON ? ENOMEM : errno;
	/* kernel before 5.14: touch the pages (ubdma_huge_alloc() checked the free count first) */
	for (size_t off = 0; off < len; off += pgsz)
		((volatile char *)addr)[off] = 0;
	return 0;
}

/* Map len bytes of fd (anonymous when fd < 0) where rq allows.  NULL when no address would do. */
static void *map_placed(const struct huge_req *rq, size_t align, int fd)
{
	const int prot = PROT_READ | PROT_WRITE;
	const int fl = fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED;
	const size_t len = rq->len;
	size_t span = fd < 0 && align > rq->pgsz ? len + align : len;
	void *p = mmap(NULL, span, prot, fl, fd, 0);

	/* the kernel's choice, over-allocated and trimmed to the alignment when anonymous */
	if (p != MAP_FAILED) {
		uintptr_t a = round_up((uintptr_t)p, align);
		if (a + len <= (uintptr_t)p + span && fits(a, len, rq)) {
			if (a > (uintptr_t)p)
				munmap(p, a - (uintptr_t)p);
			if ((uintptr_t)p + span > a + len)
				munmap((void *)(a + len), (uintptr_t)p + span - (a + len));
			return (void *)a;
		}
		munmap(p, span);
	}
	if (!rq->place)
		return NULL;
	/* hints inside the range, lowest first */
	size_t step = round_up(len > HINT_STEP_MIN ? len : HINT_STEP_MIN, align);
	uintptr_t a = round_up(rq->lo > MIN_VA ? rq->lo : MIN_VA, align);
	for (int i = 0; i < HINT_TRIES && fits(a, len, rq); i++, a += step) {
		void *q = mmap((void *)a, len, prot, fl | MAP_FIXED_NOREPLACE, fd, 0);
		if (q == (void *)a)
			return q;
		if (q != MAP_FAILED)
			munmap(q, len); /* a kernel without MAP_FIXED_NOREPLACE took it as a hint */
		else if (errno != EEXIST && errno != EPERM)
			break;
		if (a + step < a)
			break;
	}
	return NULL;
}

/* Place, bind and fault in.  For fd >= 0 the file already has its size. */
static int map_bind(int fd, const struct huge_req *rq, void **addrp)
{
	size_t align = rq->align > rq->pgsz ? rq->align : rq->pgsz;
	void *p;
	int err;

	errno = 0;
	if (!(p = map_placed(rq, align, fd))) {
		/* a shared hugetlb mapping that cannot reserve its pages fails with ENOMEM */
		if (fd >= 0 && errno == ENOMEM)
			return HUGE_SHORT;
		/* mmap's own error, unless the address was what failed (no hint left, or none aligned) */
		return !rq->place && errno ? errno : EADDRNOTAVAIL;
	}
	if (rq->pgsz == PAGE_4K)
		madvise(p, rq->len, MADV_NOHUGEPAGE); /* "4 KiB pages" should be literally true */
	if ((err = huge_mbind(p, rq->len, rq->node, rq->preferred))) {
		munmap(p, rq->len);
		return err;
	}
	if ((err = populate(p, rq->len, rq->pgsz))) {
		munmap(p, rq->len);
		return err == ENOMEM && fd >= 0 ? HUGE_SHORT : err;
	}
	*addrp = p;
	return 0;
}

int huge_map_fd(int fd, const struct huge_req *rq, void **addrp)
{
	if (ftruncate(fd, (off_t)rq->len))
		return errno == ENOMEM || errno == ENOSPC ? HUGE_SHORT : errno;
	return map_bind(fd, rq, addrp);
}

int huge_map(const struct huge_req *rq, void **addrp)
{
	if (rq->pgsz == PAGE_4K)
		return map_bind(-1, rq, addrp);
	unsigned mfd = MFD_CLOEXEC | MFD_HUGETLB | ((unsigned)(63 - __builtin_clzll(rq->pgsz)) << MFD_HUGE_SHIFT);
	int fd = memfd_create("ubdma-huge", mfd), err;
	if (fd < 0)
		return errno == EINVAL ? ENOTSUP : errno;
	err = huge_map_fd(fd, rq, addrp);
	close(fd);
	return err;
}

void huge_unmap(void *addr, size_t len)
{
	munmap(addr, len);
}
