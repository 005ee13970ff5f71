/*
 * fault.c - the --wrap functions behind fault.h: counting, failing the N-th call, the books
 * (heap blocks, mapped bytes) and the fake VFIO container of the host.
 *
 * Only objects linked statically into the test executable are redirected here (the library and
 * the test's own files); libc, cmocka and the sanitizer runtimes call the real functions.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <linux/vfio.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fault.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__real_mmap64(void *a, size_t n, int prot, int fl, int fd, off_t off);
int __real_munmap(void *a, size_t n);
int __real_madvise(void *a, size_t n, int advice);
long __real_syscall(long nr, ...);
int __real_ioctl(int fd, unsigned long req, ...);
ssize_t __real_pread64(int fd, void *buf, size_t n, off_t off);
int __real_open64(const char *path, int flags, ...);
int __real_close(int fd);
int __real_access(const char *path, int mode);

/* ------------------------------------------------------------ counting */

static unsigned armed_mask;
static long fail_at, ncalls;
static unsigned hit;
static long live_blocks, mapped_bytes;

void fault_arm(unsigned mask, long n)
{
	__atomic_store_n(&ncalls, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&hit, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&fail_at, n, __ATOMIC_SEQ_CST);
	__atomic_store_n(&armed_mask, mask, __ATOMIC_SEQ_CST);
}

int fault_disarm(void)
{
	__atomic_store_n(&armed_mask, 0, __ATOMIC_SEQ_CST);
	return __atomic_load_n(&hit, __ATOMIC_SEQ_CST) != 0;
}

unsigned fault_hit_class(void)
{
	return __atomic_load_n(&hit, __ATOMIC_SEQ_CST);
}

long fault_calls(void)
{
	return __atomic_load_n(&ncalls, __ATOMIC_SEQ_CST);
}

static void (*hook)(enum fault_point, uintptr_t, size_t);

void fault_set_hook(void (*fn)(enum fault_point at, uintptr_t s, size_t len))
{
	__atomic_store_n(&hook, fn, __ATOMIC_SEQ_CST);
}

static void call_hook(enum fault_point at, uintptr_t s, size_t len)
{
	void (*fn)(enum fault_point, uintptr_t, size_t) = __atomic_load_n(&hook, __ATOMIC_SEQ_CST);

	if (fn)
		fn(at, s, len);
}

/* Whether this call of class c must fail. */
static int must_fail(unsigned c)
{
	if (!(__atomic_load_n(&armed_mask, __ATOMIC_RELAXED) & c))
		return 0;
	if (__atomic_add_fetch(&ncalls, 1, __ATOMIC_SEQ_CST) != __atomic_load_n(&fail_at, __ATOMIC_RELAXED))
		return 0;
	__atomic_store_n(&hit, c, __ATOMIC_SEQ_CST);
	return 1;
}

long fault_live_blocks(void)
{
	return __atomic_load_n(&live_blocks, __ATOMIC_SEQ_CST);
}

long fault_mapped_bytes(void)
{
	return __atomic_load_n(&mapped_bytes, __ATOMIC_SEQ_CST);
}

long fault_vmlck_kb(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* ------------------------------------------------------------ heap */

void *__wrap_malloc(size_t n)
{
	if (must_fail(F_ALLOC)) {
		errno = ENOMEM;
		return NULL;
	}
	void *p = __real_malloc(n);
	if (p)
		__atomic_add_fetch(&live_blocks, 1, __ATOMIC_SEQ_CST);
	return p;
}

void *__wrap_calloc(size_t n, size_t m)
{
	if (must_fail(F_ALLOC)) {
		errno = ENOMEM;
		return NULL;
	}
	void *p = __real_calloc(n, m);
	if (p)
		__atomic_add_fetch(&live_blocks, 1, __ATOMIC_SEQ_CST);
	return p;
}

void *__wrap_realloc(void *old, size_t n)
{
	if (n && must_fail(F_ALLOC)) {
		errno = ENOMEM;
		return NULL; /* old stays valid, as realloc(3) says */
	}
	void *p = __real_realloc(old, n);
	if (!old && p)
		__atomic_add_fetch(&live_blocks, 1, __ATOMIC_SEQ_CST);
	else if (old && !n && !p)
		__atomic_sub_fetch(&live_blocks, 1, __ATOMIC_SEQ_CST);
	return p;
}

void __wrap_free(void *p)
{
	if (p)
		__atomic_sub_fetch(&live_blocks, 1, __ATOMIC_SEQ_CST);
	__real_free(p);
}

/* ------------------------------------------------------------ memory mappings */

static long rounded(size_t n)
{
	return (long)((n + 4095) & ~(size_t)4095);
}

void *__wrap_mmap64(void *a, size_t n, int prot, int fl, int fd, off_t off)
{
	if (must_fail(F_MMAP)) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	void *p = __real_mmap64(a, n, prot, fl, fd, off);
	if (p != MAP_FAILED)
		__atomic_add_fetch(&mapped_bytes, rounded(n), __ATOMIC_SEQ_CST);
	return p;
}

int __wrap_munmap(void *a, size_t n)
{
	int rc = __real_munmap(a, n);
	if (!rc)
		__atomic_sub_fetch(&mapped_bytes, rounded(n), __ATOMIC_SEQ_CST);
	return rc;
}

int __wrap_madvise(void *a, size_t n, int advice)
{
	if (must_fail(F_MADVISE)) {
		errno = ENOMEM;
		return -1;
	}
	return __real_madvise(a, n, advice);
}

long __wrap_syscall(long nr, ...)
{
	va_list ap;
	long a[6];

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == SYS_mlock && must_fail(F_MLOCK)) {
		errno = EAGAIN;
		return -1;
	}
	long rc = __real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	if (nr == SYS_mlock) {
		int err = errno;
		call_hook(FP_MLOCK, (uintptr_t)a[0], (size_t)a[1]);
		errno = err;
	}
	return rc;
}

ssize_t __wrap_pread64(int fd, void *buf, size_t n, off_t off)
{
	if (must_fail(F_PREAD)) {
		errno = EIO;
		return -1;
	}
	return __real_pread64(fd, buf, n, off);
}

int __wrap_access(const char *path, int mode);
int __wrap_close(int fd);

/* ------------------------------------------------------------ fake VFIO */

#define FAKE_MAX_MAPS 8192
#define FAKE_LIMIT 65535u

struct fmap {
	uint64_t iova, size, vaddr;
	uint64_t *pfns; /* page frames pinned at MAP_DMA (root), to tell a stale mapping */
};

static int pagemap_fd = -1;

/* The page frame of va now (0 when unknown: not root, not present). */
static uint64_t pfn_now(uint64_t va)
{
	uint64_t e = 0;

	if (pagemap_fd < 0)
		pagemap_fd = __real_open64("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pagemap_fd < 0 || __real_pread64(pagemap_fd, &e, 8, (off_t)(va / 4096 * 8)) != 8)
		return 0;
	return (e >> 63) ? (e & ((UINT64_C(1) << 55) - 1)) : 0;
}

/*
 * VFIO pins what it maps (long-term GUP): the kernel then never migrates those pages.  This fake
 * container only records the frames, and mlock alone does not stop compaction from moving a
 * page (vm.compact_unevictable_allowed), which a busy machine reserving hugepages triggers: the
 * check above would then report a stale mapping that real VFIO cannot have.  So while a test runs,
 * compaction leaves mlocked pages alone (root only; restored at exit).
 */
static char compact_old[8];

static void compact_restore(void)
{
	int fd = __real_open64("/proc/sys/vm/compact_unevictable_allowed", O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (write(fd, compact_old, strlen(compact_old)) < 0)
			perror("compact_unevictable_allowed");
		close(fd);
	}
}

__attribute__((constructor)) static void compact_hold(void)
{
	int fd = __real_open64("/proc/sys/vm/compact_unevictable_allowed", O_RDWR | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return;
	n = read(fd, compact_old, sizeof(compact_old) - 1);
	if (n > 0 && pwrite(fd, "0", 1, 0) == 1) {
		compact_old[n] = '\0';
		atexit(compact_restore);
	}
	close(fd);
}

struct fcont {
	int fd, iommu, ngroups;
	struct fmap *m;
	int n;
};

struct fgroup {
	int fd, num;
	struct fcont *c;
};

static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static int fake_on;
static struct fcont conts[16];
static struct fgroup groups[16];

void fault_fake_vfio(int on)
{
	fake_on = on;
}

static struct fcont *cont_of(int fd)
{
	for (int i = 0; i < 16; i++)
		if (conts[i].fd == fd && conts[i].m)
			return &conts[i];
	return NULL;
}

static struct fgroup *group_of(int fd)
{
	for (int i = 0; i < 16; i++)
		if (groups[i].fd == fd && groups[i].num)
			return &groups[i];
	return NULL;
}

static int fake_open(const char *path)
{
	int num = 0;

	if (strcmp(path, "/dev/vfio/vfio") && sscanf(path, "/dev/vfio/%d", &num) != 1)
		return -2;
	int fd = __real_open64("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fd;
	pthread_mutex_lock(&fake_lock);
	for (int i = 0; i < 16; i++) {
		if (!num && !conts[i].m) {
			conts[i] = (struct fcont){ .fd = fd, .m = __real_calloc(FAKE_MAX_MAPS, sizeof(struct fmap)) };
			break;
		}
		if (num && !groups[i].num) {
			groups[i] = (struct fgroup){ .fd = fd, .num = num };
			break;
		}
	}
	pthread_mutex_unlock(&fake_lock);
	return fd;
}

static void drop_all(struct fcont *c)
{
	for (int i = 0; i < c->n; i++)
		__real_free(c->m[i].pfns);
	c->n = 0;
	c->iommu = 0;
}

static int fake_map(struct fcont *c, const struct vfio_iommu_type1_dma_map *m)
{
	if (!c->iommu)
		return EINVAL;
	if (!m->size || ((m->iova | m->size | m->vaddr) & 4095) || !(m->flags & 3))
		return EINVAL;
	for (int i = 0; i < c->n; i++)
		if (m->iova < c->m[i].iova + c->m[i].size && c->m[i].iova < m->iova + m->size)
			return EEXIST;
	if (c->n == FAKE_MAX_MAPS)
		return ENOSPC;
	uint64_t *pfns = __real_malloc(m->size / 4096 * sizeof(*pfns));
	for (uint64_t i = 0; pfns && i < m->size / 4096; i++)
		pfns[i] = pfn_now(m->vaddr + i * 4096);
	c->m[c->n++] = (struct fmap){ m->iova, m->size, m->vaddr, pfns };
	return 0;
}

static int fake_unmap(struct fcont *c, struct vfio_iommu_type1_dma_unmap *u)
{
	uint64_t done = 0;

	if (!c->iommu)
		return EINVAL;
	/* type1v2: an unmap may not split a mapping */
	for (int i = 0; i < c->n; i++) {
		struct fmap *f = &c->m[i];
		int overlap = f->iova < u->iova + u->size && u->iova < f->iova + f->size;
		if (overlap && (f->iova < u->iova || f->iova + f->size > u->iova + u->size))
			return EINVAL;
	}
	for (int i = 0; i < c->n;) {
		struct fmap *f = &c->m[i];
		if (f->iova >= u->iova && f->iova + f->size <= u->iova + u->size) {
			done += f->size;
			__real_free(f->pfns);
			*f = c->m[--c->n];
		} else {
			i++;
		}
	}
	u->size = done;
	return 0;
}

static int fake_info(struct fcont *c, struct vfio_iommu_type1_info *info)
{
	const size_t rsz = sizeof(struct vfio_iommu_type1_info_cap_iova_range) + 2 * sizeof(struct vfio_iova_range);
	const size_t need = sizeof(*info) + rsz + sizeof(struct vfio_iommu_type1_info_dma_avail);
	uint32_t asked = info->argsz;

	if (!c->iommu || asked < sizeof(*info))
		return EINVAL;
	info->flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
	info->iova_pgsizes = UINT64_C(0x40201000);
	info->argsz = (uint32_t)need;
	info->cap_offset = 0;
	if (asked < need)
		return 0;
	char *base = (char *)info;
	struct vfio_iommu_type1_info_cap_iova_range *r = (void *)(base + sizeof(*info));
	r->header = (struct vfio_info_cap_header){ VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1,
						   (uint32_t)(sizeof(*info) + rsz) };
	r->nr_iovas = 2;
	r->iova_ranges[0] = (struct vfio_iova_range){ 0, UINT64_C(0xfedfffff) };
	r->iova_ranges[1] = (struct vfio_iova_range){ UINT64_C(0xfef00000), (UINT64_C(1) << 39) - 1 };
	struct vfio_iommu_type1_info_dma_avail *d = (void *)(base + sizeof(*info) + rsz);
	d->header = (struct vfio_info_cap_header){ VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, 0 };
	d->avail = FAKE_LIMIT - (uint32_t)c->n;
	info->cap_offset = sizeof(*info);
	return 0;
}

/* Answer an ioctl on a fake descriptor; -2 when fd is not one. */
static int fake_ioctl(int fd, unsigned long req, unsigned long arg)
{
	struct fcont *c;
	struct fgroup *g;
	int err = 0;

	pthread_mutex_lock(&fake_lock);
	if ((c = cont_of(fd))) {
		switch (req) {
		case VFIO_GET_API_VERSION:
			pthread_mutex_unlock(&fake_lock);
			return VFIO_API_VERSION;
		case VFIO_CHECK_EXTENSION:
			pthread_mutex_unlock(&fake_lock);
			return (int)arg == VFIO_TYPE1v2_IOMMU;
		case VFIO_SET_IOMMU:
			err = c->ngroups && (int)arg == VFIO_TYPE1v2_IOMMU && !c->iommu ? 0 : EINVAL;
			if (!err)
				c->iommu = 1;
			break;
		case VFIO_IOMMU_GET_INFO:
			err = fake_info(c, (void *)arg);
			break;
		case VFIO_IOMMU_MAP_DMA:
			err = fake_map(c, (void *)arg);
			break;
		case VFIO_IOMMU_UNMAP_DMA:
			err = fake_unmap(c, (void *)arg);
			break;
		default:
			err = ENOTTY;
		}
	} else if ((g = group_of(fd))) {
		switch (req) {
		case VFIO_GROUP_GET_STATUS:
			((struct vfio_group_status *)arg)->flags = VFIO_GROUP_FLAGS_VIABLE |
								   (g->c ? VFIO_GROUP_FLAGS_CONTAINER_SET : 0);
			break;
		case VFIO_GROUP_SET_CONTAINER:
			if (g->c || !(g->c = cont_of(*(int *)arg)))
				err = EINVAL;
			else
				g->c->ngroups++;
			break;
		case VFIO_GROUP_UNSET_CONTAINER:
			if (!g->c) {
				err = EINVAL;
				break;
			}
			if (!--g->c->ngroups) /* the IOMMU and its mappings go with the last group */
				drop_all(g->c);
			g->c = NULL;
			break;
		default:
			err = ENOTTY;
		}
	} else {
		pthread_mutex_unlock(&fake_lock);
		return -2;
	}
	pthread_mutex_unlock(&fake_lock);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

static void fake_close(int fd)
{
	struct fcont *c;
	struct fgroup *g;

	pthread_mutex_lock(&fake_lock);
	if ((g = group_of(fd))) {
		if (g->c && !--g->c->ngroups)
			drop_all(g->c);
		*g = (struct fgroup){ 0 };
	} else if ((c = cont_of(fd))) {
		for (int i = 0; i < 16; i++)
			if (groups[i].num && groups[i].c == c)
				groups[i].c = NULL;
		drop_all(c);
		__real_free(c->m);
		*c = (struct fcont){ 0 };
	}
	pthread_mutex_unlock(&fake_lock);
}

/* The real kernel's count (guest): dma_entry_limit - DMA_AVAIL over every open container. */
static long real_nmaps(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	long limit = FAKE_LIMIT, total = 0;
	FILE *f = fopen("/sys/module/vfio_iommu_type1/parameters/dma_entry_limit", "re");

	if (f) {
		if (fscanf(f, "%ld", &limit) != 1)
			limit = FAKE_LIMIT;
		fclose(f);
	}
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		char p[300], target[64];
		ssize_t n;
		snprintf(p, sizeof(p), "/proc/self/fd/%s", de->d_name);
		if ((n = readlink(p, target, sizeof(target) - 1)) < 0)
			continue;
		target[n] = '\0';
		if (strcmp(target, "/dev/vfio/vfio"))
			continue;
		union {
			struct vfio_iommu_type1_info info;
			char raw[4096];
		} u;
		memset(&u, 0, sizeof(u));
		u.info.argsz = sizeof(u);
		if (__real_ioctl(atoi(de->d_name), VFIO_IOMMU_GET_INFO, &u.info))
			continue; /* no IOMMU set: nothing mapped */
		for (uint32_t off = u.info.cap_offset; off && off < sizeof(u) - 16;) {
			const struct vfio_info_cap_header *h = (const void *)(u.raw + off);
			if (h->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL)
				total += limit - ((const struct vfio_iommu_type1_info_dma_avail *)h)->avail;
			off = h->next;
		}
	}
	closedir(d);
	return total;
}

long fault_vfio_nmaps(void)
{
	long n = 0;

	if (!fake_on)
		return __real_access("/dev/vfio/vfio", F_OK) ? 0 : real_nmaps();
	pthread_mutex_lock(&fake_lock);
	for (int i = 0; i < 16; i++)
		if (conts[i].m)
			n += conts[i].n;
	pthread_mutex_unlock(&fake_lock);
	return n;
}

uintptr_t fault_vfio_lookup(uint64_t iova)
{
	uintptr_t va = 0;

	pthread_mutex_lock(&fake_lock);
	for (int i = 0; i < 16 && !va; i++)
		for (int k = 0; conts[i].m && conts[i].iommu && k < conts[i].n; k++)
			if (iova - conts[i].m[k].iova < conts[i].m[k].size) {
				const struct fmap *f = &conts[i].m[k];
				uint64_t pg = (iova - f->iova) / 4096;
				va = (uintptr_t)(f->vaddr + (iova - f->iova));
				/* the device reaches the frame pinned at MAP_DMA: if the page at va is
				 * another frame now, the mapping is stale and the device misses va */
				if (f->pfns && f->pfns[pg] && pfn_now(f->vaddr + pg * 4096) != f->pfns[pg])
					va = 1;
				break;
			}
	pthread_mutex_unlock(&fake_lock);
	return va;
}

/* kpageflags of a page frame, or ~0 when unreadable (not root). */
static uint64_t kpageflags(uint64_t pfn)
{
	static int fd = -2;
	uint64_t f = ~UINT64_C(0);

	if (fd == -2)
		fd = __real_open64("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && pfn && __real_pread64(fd, &f, 8, (off_t)(pfn * 8)) != 8)
		f = ~UINT64_C(0);
	return f;
}

int fault_vfio_explain(uint64_t iova, char *buf, size_t len)
{
	int n = -1;

	pthread_mutex_lock(&fake_lock);
	for (int i = 0; i < 16 && n < 0; i++)
		for (int k = 0; conts[i].m && conts[i].iommu && k < conts[i].n; k++)
			if (iova - conts[i].m[k].iova < conts[i].m[k].size) {
				const struct fmap *f = &conts[i].m[k];
				uint64_t pg = (iova - f->iova) / 4096, va = f->vaddr + pg * 4096, e = 0;
				uint64_t was = f->pfns ? f->pfns[pg] : 0, now = pfn_now(va);
				if (pagemap_fd >= 0 && __real_pread64(pagemap_fd, &e, 8, (off_t)(va / 4096 * 8)) != 8)
					e = 0;
				n = snprintf(buf, len,
					     "mapping [%#" PRIx64 ", +%#" PRIx64 ") of va %#" PRIx64 ", page %" PRIu64
					     ": frame %#" PRIx64 " at MAP_DMA (kpageflags %#" PRIx64 "), now %#" PRIx64
					     " (kpageflags %#" PRIx64 ", pagemap %#" PRIx64 ")",
					     f->iova, f->size, f->vaddr, pg, was, kpageflags(was), now, kpageflags(now), e);
				break;
			}
	pthread_mutex_unlock(&fake_lock);
	return n < 0 ? ENOENT : 0;
}

int __wrap_open64(const char *path, int flags, ...)
{
	va_list ap;
	int mode = 0;

	va_start(ap, flags);
	if (flags & (O_CREAT | O_TMPFILE))
		mode = va_arg(ap, int);
	va_end(ap);
	if (must_fail(F_OPEN)) {
		errno = EMFILE;
		return -1;
	}
	if (fake_on) {
		int fd = fake_open(path);
		if (fd != -2)
			return fd;
	}
	return __real_open64(path, flags, mode);
}

int __wrap_access(const char *path, int mode)
{
	if (fake_on && !strcmp(path, "/dev/vfio/vfio"))
		return 0;
	return __real_access(path, mode);
}

int __wrap_close(int fd)
{
	if (fake_on)
		fake_close(fd);
	return __real_close(fd);
}

int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	unsigned long arg;

	va_start(ap, req);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	if (must_fail(F_IOCTL)) {
		errno = req == VFIO_IOMMU_MAP_DMA ? ENOMEM : req == VFIO_IOMMU_UNMAP_DMA ? EINVAL : EIO;
		return -1;
	}
	if (fake_on) {
		int rc = fake_ioctl(fd, req, arg);
		if (rc != -2)
			return rc;
	}
	int rc = __real_ioctl(fd, req, arg);
	if (rc == 0 && req == UFFDIO_REGISTER) {
		const struct uffdio_register *r = (const void *)arg;
		call_hook(FP_UFFD_REGISTER, (uintptr_t)r->range.start, (size_t)r->range.len);
	}
	return rc;
}
