/*
 * vma.c - finds the mappings under a range and the page size of the hugetlb ones.
 *
 * Linux 6.11 and later answer one mapping per PROCMAP_QUERY ioctl on /proc/self/maps, looked up
 * in the kernel's VMA tree, with its access bits and page size: a wire of one buffer costs one
 * ioctl however many mappings the process has (a process with thousands of registrations has
 * thousands of mappings, each mlock splitting its own off).  Older kernels get the text of the
 * file, read only up to the end of the range.  There, hugetlb mappings show as
 * "/anon_hugepage", "/memfd:..." or a file on a hugetlbfs mount; their page size is the f_bsize
 * of the backing file (fstatfs on /proc/self/map_files, which needs CAP_SYS_ADMIN), else the
 * KernelPageSize line of /proc/self/smaps.
 *
 * The handle the ioctl goes through is opened once and kept (O_CLOEXEC): opening
 * /proc/self/maps walks a path and costs more than the ioctl (bench_wire, docs/wire.md section
 * 14).  A handle of /proc/self/maps is bound to the address space of the process that opened it,
 * so a fork child drops its copy (vma_forget(), from lib/wire's child handler).  Should the
 * application close it behind our back and the number be given to another file, the ioctl fails:
 * we then check that the handle is still ours (fstat), and if not forget it and open another.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "base/page.h"
#include "wire/vma.h"

static char *slurp(const char *path, size_t *lenp)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 65536, len = 0;
	char *buf;

	if (fd < 0)
		return NULL;
	buf = malloc(cap + 1);
	while (buf) {
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == cap) {
			char *nb = realloc(buf, cap * 2 + 1);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	close(fd);
	if (buf) {
		buf[len] = '\0';
		*lenp = len;
	}
	return buf;
}

static size_t smaps_pagesize(uintptr_t start)
{
	size_t len;
	char *buf = slurp("/proc/self/smaps", &len), *p;
	char key[40];
	size_t kb = 4;

	if (!buf)
		return PAGE_4K;
	snprintf(key, sizeof(key), "%lx-", (unsigned long)start);
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, strlen(key)))
			continue;
		char *kp = strstr(p, "\nKernelPageSize:");
		if (kp)
			kb = strtoul(kp + 16, NULL, 10);
		break;
	}
	free(buf);
	return kb * 1024;
}

static void set_huge(struct vma *v, const struct statfs *sfs)
{
	if ((unsigned long)sfs->f_type == HUGETLBFS_MAGIC) {
		v->hugetlb = 1;
		v->pgsz = (size_t)sfs->f_bsize;
	}
}

static void hugetlb_probe(struct vma *v, const char *path)
{
	/* memfd, MAP_HUGETLB, SysV shm and unlinked files (DPDK's --huge-unlink) have no name
	 * to statfs: ask the mapping itself */
	size_t plen = strlen(path);
	int shmem = !strncmp(path, "/memfd:", 7) || strstr(path, "/anon_hugepage") ||
		    !strncmp(path, "/SYSV", 5) ||
		    (plen > 10 && !strcmp(path + plen - 10, " (deleted)"));
	struct statfs sfs;
	char mf[64];
	int fd;

	if (path[0] != '/')
		return; /* [heap], [stack], [vdso]...: never hugetlb */
	if (!shmem) {
		if (statfs(path, &sfs) == 0)
			set_huge(v, &sfs);
		return;
	}
	snprintf(mf, sizeof(mf), "/proc/self/map_files/%lx-%lx", (unsigned long)v->start,
		 (unsigned long)v->end);
	fd = open(mf, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (fstatfs(fd, &sfs) == 0)
			set_huge(v, &sfs);
		close(fd);
		return;
	}
	size_t ps = smaps_pagesize(v->start);
	if (ps > PAGE_4K) {
		v->hugetlb = 1;
		v->pgsz = ps;
	}
}

/* Append one mapping; ENOMEM leaves *vp as it was (the caller frees it). */
static int vma_push(struct vma **vp, int *np, int *capp, const struct vma *m)
{
	if (*np == *capp) {
		int cap = *capp ? *capp * 2 : 8;
		struct vma *nv = realloc(*vp, sizeof(*nv) * (size_t)cap);
		if (!nv)
			return ENOMEM;
		*vp = nv;
		*capp = cap;
	}
	(*vp)[(*np)++] = *m;
	return 0;
}

/*
 * struct procmap_query and its ioctl number, from Linux's include/uapi/linux/fs.h (6.11): Debian
 * 12's headers predate them.  The kernel takes the struct's size in .size, so a newer kernel
 * with more fields still accepts this one.
 */
struct ub_procmap_query {
	uint64_t size, query_flags, query_addr;
	uint64_t vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
	uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
	uint64_t vma_name_addr, build_id_addr;
};
_Static_assert(sizeof(struct ub_procmap_query) == 104, "PROCMAP_QUERY's struct is 104 bytes");
#define UB_PROCMAP_QUERY _IOWR('f', 17, struct ub_procmap_query)
#define UB_PMQ_READABLE 0x01
#define UB_PMQ_WRITABLE 0x02
#define UB_PMQ_SHARED 0x08
#define UB_PMQ_COVERING_OR_NEXT 0x10

/* 0 once a kernel said it has no PROCMAP_QUERY (ENOTTY): the text from then on */
static int query_works = 1;

/* The kept handle for the ioctl (atomic), and what it is, to tell it from a stranger's file. */
static int maps_fd = -1;
static dev_t maps_dev;
static ino_t maps_ino;

static int maps_handle(void)
{
	int fd = __atomic_load_n(&maps_fd, __ATOMIC_ACQUIRE), none = -1;
	struct stat st;

	if (fd >= 0)
		return fd;
	if ((fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	if (fstat(fd, &st)) {
		close(fd);
		return -1;
	}
	/* two threads may open at once (a caller without the wire lock: the tests); one wins */
	if (!__atomic_compare_exchange_n(&maps_fd, &none, fd, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		close(fd);
		return none;
	}
	maps_dev = st.st_dev;
	maps_ino = st.st_ino;
	return fd;
}

/*
 * The ioctl failed on the kept handle: 1 when the handle is no longer ours (closed by the
 * application, its number reused), which is then forgotten, not closed: the number is not ours.
 */
static int maps_handle_lost(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && st.st_dev == maps_dev && st.st_ino == maps_ino)
		return 0;
	__atomic_compare_exchange_n(&maps_fd, &fd, -1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	return 1;
}

void vma_forget(void)
{
	int fd = maps_fd;

	maps_fd = -1;
	if (fd >= 0)
		close(fd); /* the parent's address space: the child opens its own */
}

/* One PROCMAP_QUERY through the kept handle, with one more try on a fresh handle if it was lost. */
static int query_one(struct ub_procmap_query *q)
{
	for (int again = 0; again < 2; again++) {
		int fd = maps_handle();
		if (fd < 0)
			return -1;
		if (ioctl(fd, UB_PROCMAP_QUERY, q) == 0)
			return 0;
		int err = errno;
		if (err == ENOENT || !maps_handle_lost(fd)) {
			errno = err;
			return -1;
		}
	}
	return -1;
}

/* 0, ENOMEM, or -1: use the text this time */
static int query_collect(uintptr_t start, uintptr_t end, struct vma **vp, int *nvp)
{
	struct vma *v = NULL;
	int n = 0, cap = 0;

	for (uintptr_t addr = start; addr < end;) {
		struct ub_procmap_query q = { .size = sizeof(q), .query_flags = UB_PMQ_COVERING_OR_NEXT,
					      .query_addr = addr };
		if (query_one(&q) != 0) {
			if (errno == ENOENT)
				break; /* nothing mapped at or above addr */
			if (errno == ENOTTY)
				__atomic_store_n(&query_works, 0, __ATOMIC_RELAXED);
			free(v);
			return -1;
		}
		if (q.vma_start >= end)
			break;
		/* vma_page_size is vma_kernel_pagesize(): above the base page only for hugetlb
		 * (and device DAX, whose pages do not move either) */
		struct vma m = { .start = (uintptr_t)q.vma_start,
				 .end = (uintptr_t)q.vma_end,
				 .readable = !!(q.vma_flags & UB_PMQ_READABLE),
				 .writable = !!(q.vma_flags & UB_PMQ_WRITABLE),
				 .pgsz = q.vma_page_size > PAGE_4K ? (size_t)q.vma_page_size : PAGE_4K,
				 .hugetlb = q.vma_page_size > PAGE_4K,
				 .file = q.inode != 0,
				 .shared = !!(q.vma_flags & UB_PMQ_SHARED) };
		if (q.vma_end <= addr) { /* no progress: not from a sane kernel, read the text */
			free(v);
			return -1;
		}
		if (vma_push(&v, &n, &cap, &m)) {
			free(v);
			return ENOMEM;
		}
		addr = (uintptr_t)q.vma_end;
	}
	*vp = v;
	*nvp = n;
	return 0;
}

/* One line of the text: 1 when past the range, 0 to go on, or ENOMEM. */
static int text_line(char *line, uintptr_t start, uintptr_t end, struct vma **vp, int *np, int *capp)
{
	char *p;
	unsigned long s = strtoul(line, &p, 16), e = strtoul(p + 1, &p, 16);

	if (e <= start)
		return 0;
	if (s >= end)
		return 1;
	struct vma m = { .start = s, .end = e, .readable = p[1] == 'r', .writable = p[2] == 'w', .shared = p[4] == 's',
			 .pgsz = PAGE_4K };
	/* fields: perms offset dev inode path */
	char *path = p + 1;
	for (int f = 0; f < 4 && path; f++) {
		path = strchr(path, ' ');
		if (path)
			while (*path == ' ')
				path++;
		if (path && f == 2)
			m.file = strtoul(path, NULL, 10) != 0;
	}
	if (path && *path)
		hugetlb_probe(&m, path);
	return vma_push(vp, np, capp, &m) ? ENOMEM : 0;
}

/*
 * The text, line by line, up to the first mapping past the range.  The buffer holds any line:
 * a path is at most PATH_MAX bytes and the kernel escapes newlines in it.
 */
static int text_collect(int fd, uintptr_t start, uintptr_t end, struct vma **vp, int *nvp)
{
	enum { BUFSZ = 16384 };
	char *buf = malloc(BUFSZ + 1);
	struct vma *v = NULL;
	int n = 0, cap = 0, err = 0, past = 0;
	size_t have = 0;

	if (!buf)
		return ENOMEM;
	while (!err && !past) {
		ssize_t r = read(fd, buf + have, BUFSZ - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = errno;
			break;
		}
		if (r == 0)
			break;
		have += (size_t)r;
		buf[have] = '\0';
		char *line = buf, *nl;
		while (!err && !past && (nl = strchr(line, '\n'))) {
			*nl = '\0';
			int rc = text_line(line, start, end, &v, &n, &cap);
			if (rc == 1)
				past = 1;
			else
				err = rc;
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		if (have == BUFSZ)
			err = EIO; /* a line longer than the kernel writes */
	}
	free(buf);
	if (err) {
		free(v);
		return err;
	}
	*vp = v;
	*nvp = n;
	return 0;
}

static int collect(uintptr_t start, uintptr_t end, int ask, struct vma **vp, int *nvp)
{
	int fd, err = -1;

	if (ask && __atomic_load_n(&query_works, __ATOMIC_RELAXED))
		err = query_collect(start, end, vp, nvp);
	if (err != -1)
		return err;
	/* the text is read from the start: a handle of its own */
	if ((fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)) < 0)
		return errno ? errno : EIO;
	err = text_collect(fd, start, end, vp, nvp);
	close(fd);
	return err;
}

int vma_collect(uintptr_t start, uintptr_t end, struct vma **vp, int *nvp)
{
	return collect(start, end, 1, vp, nvp);
}

int vma_collect_text(uintptr_t start, uintptr_t end, struct vma **vp, int *nvp)
{
	return collect(start, end, 0, vp, nvp);
}

int vma_uses_query(void)
{
	return __atomic_load_n(&query_works, __ATOMIC_RELAXED);
}

static int each_query(uintptr_t start, uintptr_t end, int (*fn)(uintptr_t, uintptr_t, void *), void *arg)
{
	for (uintptr_t addr = start; addr < end;) {
		struct ub_procmap_query q = { .size = sizeof(q), .query_flags = UB_PMQ_COVERING_OR_NEXT,
					      .query_addr = addr };
		if (query_one(&q) != 0)
			return errno == ENOENT ? 0 : -1;
		if (q.vma_start >= end)
			return 0;
		if (q.vma_end <= addr)
			return -1;
		uintptr_t s = q.vma_start > addr ? (uintptr_t)q.vma_start : addr;
		uintptr_t e = q.vma_end < end ? (uintptr_t)q.vma_end : end;
		if (fn(s, e, arg))
			return 0;
		addr = (uintptr_t)q.vma_end;
	}
	return 0;
}

void vma_each(uintptr_t start, uintptr_t end, int (*fn)(uintptr_t, uintptr_t, void *), void *arg)
{
	static char buf[16384 + 1]; /* the wire lock's: no allocation on the monitor thread */
	int fd, stop = 0;
	size_t have = 0;

	if (__atomic_load_n(&query_works, __ATOMIC_RELAXED) && each_query(start, end, fn, arg) == 0)
		return;
	if ((fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)) < 0)
		return;
	while (!stop) {
		ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		have += (size_t)r;
		buf[have] = '\0';
		char *line = buf, *nl;
		while (!stop && (nl = strchr(line, '\n'))) {
			char *p;
			unsigned long s = strtoul(line, &p, 16), e = strtoul(p + 1, NULL, 16);
			if (s >= end)
				stop = 1;
			else if (e > start)
				stop = fn(s > start ? s : start, e < end ? e : end, arg);
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		if (have == sizeof(buf) - 1)
			break; /* a line longer than the kernel writes */
	}
	close(fd);
}
