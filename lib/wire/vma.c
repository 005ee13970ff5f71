/*
 * vma.c - reads /proc/self/maps for the mappings under a range, and finds the page size of the
 * hugetlb ones.  Hugetlb mappings show as "/anon_hugepage", "/memfd:..." or a file on a hugetlbfs
 * mount; their page size is the f_bsize of the backing file (fstatfs on /proc/self/map_files,
 * which needs CAP_SYS_ADMIN), else the KernelPageSize line of /proc/self/smaps.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/vfs.h>
#include <unistd.h>

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
		return 4096;
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
	if (ps > 4096) {
		v->hugetlb = 1;
		v->pgsz = ps;
	}
}

int vma_collect(uintptr_t start, uintptr_t end, struct vma **vp, int *nvp)
{
	size_t len;
	char *buf = slurp("/proc/self/maps", &len), *line, *save = NULL;
	struct vma *v = NULL;
	int n = 0, cap = 0;

	if (!buf)
		return errno ? errno : ENOMEM;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *p;
		unsigned long s = strtoul(line, &p, 16), e = strtoul(p + 1, &p, 16);

		if (e <= start)
			continue;
		if (s >= end)
			break;
		if (n == cap) {
			struct vma *nv = realloc(v, sizeof(*v) * (size_t)(cap = cap ? cap * 2 : 8));
			if (!nv) {
				free(v);
				free(buf);
				return ENOMEM;
			}
			v = nv;
		}
		struct vma *cur = &v[n++];
		memset(cur, 0, sizeof(*cur));
		cur->start = s;
		cur->end = e;
		cur->readable = p[1] == 'r';
		cur->writable = p[2] == 'w';
		cur->pgsz = 4096;
		/* fields: perms offset dev inode path */
		char *path = p + 1;
		for (int f = 0; f < 4 && path; f++) {
			path = strchr(path, ' ');
			if (path)
				while (*path == ' ')
					path++;
		}
		if (path && *path)
			hugetlb_probe(cur, path);
	}
	free(buf);
	*vp = v;
	*nvp = n;
	return 0;
}
