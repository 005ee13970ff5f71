/*
 * test_vfio_memlock - RLIMIT_MEMLOCK on the vfio backend: clean ENOMEM, nothing left behind.
 *
 * Runs in the test-bed guest as root, so it first drops CAP_IPC_LOCK (which bypasses the limit
 * for mlock(2) and for VFIO's pinning) and then sets RLIMIT_MEMLOCK itself.  VFIO counts the
 * pages it pins in the same locked_vm as mlock.  With a device attached the backend pins, so
 * umem_lock only watches 4 KiB memory (no mlock: docs/wire.md section 13) and B counts once;
 * without one it wires, and the replay's pin counts on top.  Cases, with a 1 MiB buffer B:
 *   limit 256 KiB          umem_lock(B) -> ENOMEM from VFIO_IOMMU_MAP_DMA's pin, message names
 *                          RLIMIT_MEMLOCK; nothing stays wired or registered;
 *   limit 1.5 MiB, device  umem_lock(B) succeeds (before issue 21 the pin came on top of mlock and
 *                          this failed): no wire count, VmLck up by exactly B (the pin), fork(2)
 *                          gives the child its own copy of B while the parent keeps its frames;
 *   limit 2.5 MiB, device  umem_lock(B) succeeds;
 *   wire and watch (limit 8 MiB): a watched cookie and ubdma_wire() on the same pages; hugetlb
 *                          inside a huge page wired in full; a 2 MiB hugetlb cookie on its page's
 *                          bounds watched, out of a fork child while any cookie or wiring holds it
 *                          (huge_watched(); the same under iommufd);
 *   limit 1.5 MiB, no device: umem_lock(B) succeeds (only recorded), then ubdma_pci_open() fails
 *                          with ENOMEM at the replay and leaves nothing attached; after
 *                          ubdma_umem_unlock() the open succeeds.
 * Under iommufd (UBDMA_BACKEND=iommufd) the pins count per user (user->locked_vm, the kernel's
 * default rlimit mode), apart from mlock's per-process count, so the cases become:
 *   limit 256 KiB          as above (the pin, per user);
 *   limit 1.5 MiB, device  umem_lock(B) succeeds, watched only: VmLck does not move (no mlock,
 *                          and the pin is the user's), no wire count, fork as above;
 *   second context         B again in a second context holding the e1000e: mlock does not grow
 *                          (B is wired once), but the pins reach 2 MiB: ENOMEM from
 *                          IOMMU_IOAS_MAP naming the per-user count; B stays registered in the
 *                          first context;
 *   no device              with the first context's pins held, B in a fresh context without a
 *                          device maps into its IOAS (no pin yet), and ubdma_pci_open() of the
 *                          e1000e fails with ENOMEM when the attach pins it, leaving nothing
 *                          attached; after the unlock the open succeeds.
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "backend.h"
#include "check.h"

#define EXIT_SKIP 77
#define MIB (1u << 20)

static int drop_ipc_lock(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return -1;
	d[0].effective &= ~(1u << CAP_IPC_LOCK);
	d[0].permitted &= ~(1u << CAP_IPC_LOCK);
	d[0].inheritable &= ~(1u << CAP_IPC_LOCK);
	if (syscall(SYS_capset, &h, d) || syscall(SYS_capget, &h, d))
		return -1;
	return d[0].effective & (1u << CAP_IPC_LOCK) ? -1 : 0;
}

static void set_limit(size_t bytes)
{
	struct rlimit rl = { bytes, bytes };

	if (setrlimit(RLIMIT_MEMLOCK, &rl))
		printf("# setrlimit(%zu): %s\n", bytes, strerror(errno));
}

static long status_kb(const char *key)
{
	char line[256];
	long v = -1;
	size_t n = strlen(key);
	FILE *f = fopen("/proc/self/status", "re");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

/* The frame behind va (root reads PFNs from /proc/self/pagemap), or 0. */
static uint64_t pfn_of(const void *va)
{
	uint64_t e = 0;
	FILE *f = fopen("/proc/self/pagemap", "re");

	if (f && fseek(f, (long)((uintptr_t)va / 4096 * 8), SEEK_SET) == 0 && fread(&e, 8, 1, f) != 1)
		e = 0;
	if (f)
		fclose(f);
	return e >> 63 ? e & ((UINT64_C(1) << 55) - 1) : 0;
}

/*
 * Watch only (docs/wire.md section 13): with a device attached the backend pins the pages itself,
 * so the lock adds no mlock and no wire count (type1 charges its pin to locked_vm, VmLck; iommufd
 * to the user), and fork(2) gives the child the range, a copy of the pinned pages (Linux >= 5.9),
 * while the parent keeps the frames the IOMMU maps.
 */
static void watch_only(ubdma_ctx_t *ctx, char *buf, size_t len, int type1, const char *what)
{
	long lck0 = status_kb("VmLck");
	ubdma_umem_t *u = NULL;
	int rc = ubdma_umem_lock(ctx, buf, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);

	check(rc == 0, "%s: umem_lock -> %s", what, rc ? ubdma_last_error() : "0");
	if (rc)
		return;
	long lck1 = status_kb("VmLck");
	check(ubdma_wire_count(buf) == 0 && ubdma_wire_count(buf + len - 1) == 0,
	      "%s: watched, not wired: wire count %u", what, ubdma_wire_count(buf));
	check(type1 ? lck1 - lck0 == (long)(len / 1024) : lck1 == lck0,
	      "%s: VmLck %ld -> %ld kB (%s)", what, lck0, lck1,
	      type1 ? "the pin alone, counted once" : "no mlock; the pin counts per user");
	uint64_t iova = ubdma_umem_iova(u, buf), pfn = pfn_of(buf);
	pid_t pid = fork();
	if (pid == 0)
		_exit(buf[len - 1] == 1 && (buf[0] = 2) == 2 ? 0 : 3); /* the child has the range */
	int st = 0;
	waitpid(pid, &st, 0);
	buf[0] = 1; /* a copy-on-write page would move the parent now */
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0 && pfn && pfn_of(buf) == pfn && buf[0] == 1 &&
	      ubdma_vtoiova(ctx, buf) == iova,
	      "%s: fork: the child has the range (status %#x); the parent keeps its frame (%#llx -> %#llx) "
	      "and IOVA", what, st, (unsigned long long)pfn, (unsigned long long)pfn_of(buf));
	ubdma_umem_unlock(u);
	check(status_kb("VmLck") == lck0 && ubdma_vtoiova(ctx, buf) == UBDMA_BAD_IOVA,
	      "%s: unlocked: VmLck %ld kB, not registered", what, status_kb("VmLck"));
}

/* Whether a fork(2) child has [p, p + 4 KiB) mapped and reads byte v there (1), or not mapped (0). */
static int child_has(const char *p, char v)
{
	pid_t pid = fork();

	if (pid == 0) {
		unsigned char vec;
		if (mincore((void *)p, 4096, &vec))
			_exit(errno == ENOMEM ? 10 : 12); /* not mapped in the child */
		_exit(p[0] == v ? 11 : 12);
	}
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st) == 11 ? 1 : WEXITSTATUS(st) == 10 ? 0 : -1;
}

/*
 * A hugetlb cookie on its huge pages' bounds (docs/wire.md section 13, "Hugetlb cookies
 * watched"): watched, not wired (no wire count; VmLck moves by type1's pin alone, not at all on
 * iommufd), translated as one IOVA range per huge page, and out of a fork(2) child while any
 * cookie or wiring of it holds it (MADV_DONTFORK, the promise of section 5), back in the child
 * after the last lets go; munmap ends it.  h: one 2 MiB hugetlb page, written with 1s.
 */
static void huge_watched(ubdma_ctx_t *ctx, char *h, int type1, const char *what)
{
	long lck0 = status_kb("VmLck");
	ubdma_umem_t *u = NULL, *u2 = NULL;
	int rc = ubdma_umem_lock(ctx, h, 2 * MIB, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);

	check(rc == 0, "%s: umem_lock of the whole huge page -> %s", what, rc ? ubdma_last_error() : "0");
	if (rc)
		return;
	long lck1 = status_kb("VmLck");
	uint64_t iova = ubdma_umem_iova(u, h);
	check(ubdma_wire_count(h) == 0 && ubdma_wire_count(h + 2 * MIB - 1) == 0,
	      "%s: watched, not wired: wire count %u", what, ubdma_wire_count(h));
	check(type1 ? lck1 - lck0 == 2048 : lck1 == lck0, "%s: VmLck %ld -> %ld kB (%s)", what, lck0, lck1,
	      type1 ? "the pin alone, no mlock" : "no mlock; the pin counts per user");
	check(iova != UBDMA_BAD_IOVA && ubdma_umem_iova(u, h + 2 * MIB - 1) == iova + 2 * MIB - 1 &&
	      ubdma_vtoiova(ctx, h + MIB) == iova + MIB, "%s: translated, one IOVA range for the huge page "
	      "(%#llx)", what, (unsigned long long)iova);
	check(child_has(h, 1) == 0, "%s: fork: the child does not have the range", what);
	/* a second cookie on the same page: the first one's unlock leaves it out of a child */
	rc = ubdma_umem_lock(ctx, h, 2 * MIB, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u2);
	check(rc == 0 && ubdma_wire_count(h) == 0, "%s: a second cookie -> %s, count %u", what,
	      rc ? ubdma_last_error() : "0", ubdma_wire_count(h));
	ubdma_umem_unlock(u);
	check(child_has(h, 1) == 0 && ubdma_vtoiova(ctx, h) != UBDMA_BAD_IOVA,
	      "%s: one of two cookies unlocked: still not in a child, still translated", what);
	/* a wiring beside the cookie: its unwire leaves the page out of a child while the cookie holds it */
	rc = ubdma_wire(h, 2 * MIB, 0);
	check(rc == 0 && ubdma_wire_count(h) == 1, "%s: wired beside the cookie -> %d, count %u", what, rc,
	      ubdma_wire_count(h));
	rc = ubdma_unwire(h, 2 * MIB, 0);
	check(rc == 0 && child_has(h, 1) == 0, "%s: unwired (%d): the cookie still keeps it out of a child",
	      what, rc);
	ubdma_umem_unlock(u2);
	check(child_has(h, 1) == 1 && ubdma_vtoiova(ctx, h) == UBDMA_BAD_IOVA && status_kb("VmLck") == lck0,
	      "%s: the last cookie unlocked: the child has the range; not translated; VmLck %ld kB", what,
	      status_kb("VmLck"));
	/* the last one to let go is the wiring: the page comes back to a child then, not before */
	u = NULL;
	rc = ubdma_wire(h, 2 * MIB, 0);
	rc = rc ? rc : ubdma_umem_lock(ctx, h, 2 * MIB, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
	check(rc == 0, "%s: wired, then a cookie -> %s", what, rc ? ubdma_last_error() : "0");
	ubdma_umem_unlock(u);
	check(child_has(h, 1) == 0 && ubdma_wire_count(h) == 1, "%s: cookie unlocked, still wired: not in a child",
	      what);
	rc = ubdma_unwire(h, 2 * MIB, 0);
	check(rc == 0 && child_has(h, 1) == 1, "%s: unwired last (%d): the child has the range", what, rc);
	/* munmap ends a watched hugetlb cookie */
	u = NULL;
	rc = ubdma_umem_lock(ctx, h, 2 * MIB, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
	check(rc == 0 && ubdma_vtoiova(ctx, h) != UBDMA_BAD_IOVA, "%s: locked again -> %s", what,
	      rc ? ubdma_last_error() : "0");
	munmap(h, 2 * MIB);
	check(ubdma_vtoiova(ctx, h) == UBDMA_BAD_IOVA, "%s: munmap ends the watched hugetlb cookie", what);
	ubdma_umem_unlock(u);
}

/*
 * How a watch-only cookie shares pages with ubdma_wire() (docs/wire.md section 13): the wiring's
 * count is the only one ubdma_wire_count() shows, its unwire leaves the cookie watched (the range
 * stays registered while the watch needs it), and an munmap then still ends the cookie.  Hugetlb
 * memory inside a huge page is wired in full, the whole huge page, whatever the backend; a cookie
 * on its huge pages' bounds is watched (huge_watched()).
 */
static void watch_and_wire(ubdma_ctx_t *ctx, int type1, const char *what)
{
	size_t len = 16 * 4096;
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ubdma_umem_t *u = NULL;

	memset(m, 1, len);
	int rc = ubdma_wire(m, len, 0);
	rc = rc ? rc : ubdma_umem_lock(ctx, m, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
	check(rc == 0 && ubdma_wire_count(m) == 1, "%s: wired and locked: count %u (the wiring's only)", what,
	      ubdma_wire_count(m));
	rc = ubdma_unwire(m, len, 0);
	check(rc == 0 && ubdma_wire_count(m) == 0 && ubdma_vtoiova(ctx, m) != UBDMA_BAD_IOVA,
	      "%s: unwired -> %d: count %u, the cookie still registered", what, rc, ubdma_wire_count(m));
	munmap(m, len);
	check(ubdma_vtoiova(ctx, m) == UBDMA_BAD_IOVA, "%s: munmap ends the watched cookie", what);
	ubdma_umem_unlock(u);

	char *h = mmap(NULL, 2 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (h == MAP_FAILED) {
		printf("# %s: no 2 MiB hugepage: the hugetlb case is not run\n", what);
		return;
	}
	u = NULL;
	rc = ubdma_umem_lock(ctx, h + 4096, 4096, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
	check(rc == 0 && ubdma_wire_count(h) == 1 && ubdma_vtoiova(ctx, h + 2 * MIB - 4096) != UBDMA_BAD_IOVA,
	      "%s: hugetlb is wired in full, the whole huge page (count %u) -> %s", what, ubdma_wire_count(h),
	      rc ? ubdma_last_error() : "0");
	ubdma_umem_unlock(u);
	check(ubdma_wire_count(h) == 0, "%s: hugetlb unlocked: count %u", what, ubdma_wire_count(h));
	memset(h, 1, 2 * MIB);
	huge_watched(ctx, h, type1, "hugetlb on its pages' bounds");
}

/* umem_lock of buf fails with ENOMEM, the message holds word, and nothing stays wired. */
static void lock_fails(ubdma_ctx_t *ctx, void *buf, size_t len, const char *what, const char *word)
{
	ubdma_umem_t *u = NULL;
	int rc = ubdma_umem_lock(ctx, buf, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);

	check(rc == ENOMEM && !u && strstr(ubdma_last_error(), word), "%s: umem_lock -> %s: %s", what,
	      strerror(rc), ubdma_last_error());
	check(ubdma_wire_count(buf) == 0 && ubdma_wire_count((char *)buf + len - 1) == 0 &&
	      ubdma_vtoiova(ctx, buf) == UBDMA_BAD_IOVA, "%s: nothing left wired or registered", what);
	if (!rc)
		ubdma_umem_unlock(u);
}

/* The iommufd cases (see the top); the e1000e gives the second context a device of its own. */
static int iommufd_cases(ubdma_ctx_t *ctx, ubdma_pci_t *dev, char *buf)
{
	const char *nic = getenv("UBDMA_VM_NIC");
	ubdma_ctx_t *ctx2 = NULL;
	ubdma_pci_t *dev2 = NULL;
	ubdma_umem_t *u = NULL, *u2 = NULL;
	int rc;

	set_limit(MIB / 4);
	lock_fails(ctx, buf, MIB, "limit 256 KiB", "RLIMIT_MEMLOCK");

	set_limit(MIB + MIB / 2);
	watch_only(ctx, buf, MIB, 0, "limit 1.5 MiB, device open");
	set_limit(8 * MIB);
	watch_and_wire(ctx, 0, "wire and watch");
	set_limit(MIB + MIB / 2);
	rc = ubdma_umem_lock(ctx, buf, MIB, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
	check(rc == 0, "limit 1.5 MiB, device open: umem_lock -> %s (pins count apart from mlock)",
	      rc ? ubdma_last_error() : "0");
	if (!nic || !*nic || !getenv("UBDMA_VM_NIC_DRIVER") || strcmp(getenv("UBDMA_VM_NIC_DRIVER"), "vfio-pci")) {
		check(0, "the e1000e on vfio-pci for the second context ($UBDMA_VM_NIC)");
		return 1;
	}
	if ((rc = ubdma_ctx_open(UBDMA_BACKEND_IOMMUFD, &ctx2)) || (rc = ubdma_pci_open(ctx2, nic, &dev2))) {
		check(0, "second context with %s: %s", nic, ubdma_last_error());
		return 1;
	}
	rc = ubdma_umem_lock(ctx2, buf, MIB, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u2);
	check(rc == ENOMEM && !u2 && strstr(ubdma_last_error(), "per user"),
	      "second context: the same 1 MiB -> %s: %s", strerror(rc), ubdma_last_error());
	check(ubdma_wire_count(buf) == 0 && ubdma_vtoiova(ctx, buf) != UBDMA_BAD_IOVA &&
	      ubdma_vtoiova(ctx2, buf) == UBDMA_BAD_IOVA, "second context: B stays registered in the "
	      "first context only (watched, wired %d time(s))", ubdma_wire_count(buf));
	ubdma_umem_unlock(u2);
	ubdma_pci_close(dev2);
	ubdma_ctx_close(ctx2);
	ctx2 = NULL;
	dev2 = NULL;
	u2 = NULL;

	/* no device: the IOAS takes the mapping; the attach pins it and runs into the limit */
	if ((rc = ubdma_ctx_open(UBDMA_BACKEND_IOMMUFD, &ctx2))) {
		check(0, "third context: %s", ubdma_last_error());
		return 1;
	}
	rc = ubdma_umem_lock(ctx2, buf, MIB, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u2);
	check(rc == 0, "no device: umem_lock -> %s (nothing pinned yet)", rc ? ubdma_last_error() : "0");
	rc = ubdma_pci_open(ctx2, nic, &dev2);
	check(rc == ENOMEM && !dev2 && strstr(ubdma_last_error(), "RLIMIT_MEMLOCK"),
	      "no device: the open pins into the limit -> %s: %s", strerror(rc), ubdma_last_error());
	ubdma_pci_close(dev2);
	dev2 = NULL;
	ubdma_umem_unlock(u2);
	rc = ubdma_pci_open(ctx2, nic, &dev2);
	check(rc == 0, "after unlock the open works (nothing was left attached) -> %s",
	      rc ? ubdma_last_error() : "0");
	ubdma_pci_close(dev2);
	ubdma_ctx_close(ctx2);
	ubdma_umem_unlock(u);
	ubdma_pci_close(dev);
	ubdma_ctx_close(ctx);
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	ubdma_ctx_t *ctx = NULL;
	ubdma_pci_t *dev = NULL;
	ubdma_umem_t *u = NULL;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf || !getenv("UBDMA_VM_NVME_DRIVER") ||
	    strcmp(getenv("UBDMA_VM_NVME_DRIVER"), "vfio-pci")) {
		printf("# SKIP: no NVMe controller on vfio-pci ($UBDMA_VM_NVME)\n");
		return EXIT_SKIP;
	}
	check(drop_ipc_lock() == 0, "CAP_IPC_LOCK dropped");
	char *buf = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(buf, 1, MIB);

	if ((rc = ubdma_ctx_open(guest_backend(), &ctx)) || (rc = ubdma_pci_open(ctx, bdf, &dev))) {
		check(0, "context and device: %s", ubdma_last_error());
		return 1;
	}
	if (guest_backend() == UBDMA_BACKEND_IOMMUFD)
		return iommufd_cases(ctx, dev, buf);
	set_limit(MIB / 4);
	lock_fails(ctx, buf, MIB, "limit 256 KiB", "RLIMIT_MEMLOCK");

	set_limit(MIB + MIB / 2);
	watch_only(ctx, buf, MIB, 1, "limit 1.5 MiB, device open");
	set_limit(8 * MIB);
	watch_and_wire(ctx, 1, "wire and watch");
	set_limit(MIB + MIB / 2);

	set_limit(2 * MIB + MIB / 2);
	rc = ubdma_umem_lock(ctx, buf, MIB, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
	check(rc == 0 && ubdma_vtoiova(ctx, buf) != UBDMA_BAD_IOVA, "limit 2.5 MiB, device open: "
	      "umem_lock -> %s", rc ? ubdma_last_error() : "0");
	ubdma_umem_unlock(u);
	u = NULL;
	ubdma_pci_close(dev);
	dev = NULL;

	/* no device: the lock is only recorded; the replay at open runs into the limit */
	set_limit(MIB + MIB / 2);
	rc = ubdma_umem_lock(ctx, buf, MIB, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u);
	check(rc == 0, "limit 1.5 MiB, no device: umem_lock -> %s", rc ? ubdma_last_error() : "0");
	rc = ubdma_pci_open(ctx, bdf, &dev);
	check(rc == ENOMEM && !dev, "open replays into the limit -> %s: %s", strerror(rc),
	      ubdma_last_error());
	if (dev)
		ubdma_pci_close(dev);
	dev = NULL;
	ubdma_umem_unlock(u);
	rc = ubdma_pci_open(ctx, bdf, &dev);
	check(rc == 0, "after unlock the open works (nothing was left attached) -> %s",
	      rc ? ubdma_last_error() : "0");
	ubdma_pci_close(dev);
	ubdma_ctx_close(ctx);
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
