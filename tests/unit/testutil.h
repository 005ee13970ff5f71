/*
 * testutil.h - what the unit tests (core, wire, rcache, hugepage) read back from the kernel on
 * their own, without ubdma: smaps Locked:, VmLck, pagemap entries, and hugepage memory.
 */
#ifndef UBDMA_TESTUTIL_H
#define UBDMA_TESTUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/memfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Sum of smaps "Locked:" (kB) over the mappings that overlap [a, a + len). */
static inline long smaps_locked_kb(const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr, b = a + len;
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	long total = 0;
	int in = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		long kb;
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = s < b && e > a;
		else if (in && sscanf(line, "Locked: %ld kB", &kb) == 1)
			total += kb;
	}
	fclose(f);
	return total;
}

static inline long status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long kb = -1;
	size_t kl = strlen(key);

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':')
			kb = strtol(line + kl + 1, NULL, 10);
	fclose(f);
	return kb;
}

static inline uint64_t pagemap_entry(const void *addr)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t e = 0;

	if (fd < 0)
		return 0;
	if (pread(fd, &e, 8, (off_t)((uintptr_t)addr / 4096 * 8)) != 8)
		e = 0;
	close(fd);
	return e;
}

/* Physical address from pagemap, or 0 when not present / not root. */
static inline uint64_t pagemap_pa(const void *addr)
{
	uint64_t e = pagemap_entry(addr);

	if (!(e >> 63) || !(e & ((1ULL << 55) - 1)))
		return 0;
	return (e & ((1ULL << 55) - 1)) * 4096 + ((uintptr_t)addr & 4095);
}

/* Make sure n free hugepages of size kb exist (as root); 1 if they do. */
static inline int hugepages_ensure(unsigned long kb, unsigned long n)
{
	char path[128];
	unsigned long total = 0, freep = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%lukB/free_hugepages", kb);
	if ((f = fopen(path, "re"))) {
		if (fscanf(f, "%lu", &freep) != 1)
			freep = 0;
		fclose(f);
	}
	if (freep >= n)
		return 1;
	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%lukB/nr_hugepages", kb);
	if (!(f = fopen(path, "re")))
		return 0;
	if (fscanf(f, "%lu", &total) != 1)
		total = 0;
	fclose(f);
	if (!(f = fopen(path, "we")))
		return 0;
	fprintf(f, "%lu", total + n - freep);
	fclose(f);
	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%lukB/free_hugepages", kb);
	if ((f = fopen(path, "re"))) {
		if (fscanf(f, "%lu", &freep) != 1)
			freep = 0;
		fclose(f);
	}
	return freep >= n;
}

/* len bytes of hugetlb memory in pages of kb KiB via memfd, or NULL (errno set). */
static inline void *huge_alloc(size_t len, unsigned long kb)
{
	unsigned flag = kb == 1048576 ? MFD_HUGE_1GB : MFD_HUGE_2MB;
	int fd;
	void *p;

	if (!hugepages_ensure(kb, len / (kb * 1024)))
		return NULL;
	fd = memfd_create("ubdma-test", MFD_HUGETLB | flag | MFD_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (ftruncate(fd, (off_t)len)) {
		close(fd);
		return NULL;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0x5a, len); /* fault in */
	return p;
}

/* Drop CAP_IPC_LOCK from the calling process (a forked child), so RLIMIT_MEMLOCK applies. */
static inline int drop_ipc_lock(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return -1;
	for (int i = 0; i < 2; i++) {
		unsigned bit = CAP_IPC_LOCK;
		if (bit / 32 == (unsigned)i) {
			d[i].effective &= ~(1u << (bit % 32));
			d[i].permitted &= ~(1u << (bit % 32));
			d[i].inheritable &= ~(1u << (bit % 32));
		}
	}
	return (int)syscall(SYS_capset, &h, d);
}

static inline void *anon_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

#define SKIP_WHY(...)                                                                              \
	do {                                                                                       \
		fprintf(stderr, "SKIP: " __VA_ARGS__);                                             \
		fprintf(stderr, "\n");                                                             \
		skip();                                                                            \
	} while (0)

/* 1 in a build with ASan or TSan (gcc says so by a macro, clang by __has_feature): their
 * runtimes make system calls and allocations of their own, which some checks must not count */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#endif
