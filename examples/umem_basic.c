/*
 * umem_basic.c - the first thing to copy: open a DMA context, lock a hugepage buffer for a
 * device, and ask for the I/O addresses to program into the device.
 *
 *   ./umem_basic [MiB]      (default 8; as root with 2 MiB hugepages reserved for the phys backend)
 */
#include <linux/memfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

int main(int argc, char **argv)
{
	size_t len = (argc > 1 ? strtoul(argv[1], NULL, 0) : 8) << 20;
	ubdma_ctx_t *ctx;
	ubdma_umem_t *cookie;
	int err;

	/* AUTO: vfio when the kernel has it, else physical addresses (root + hugepages), else IOVA=VA */
	if ((err = ubdma_ctx_open(UBDMA_BACKEND_AUTO, &ctx))) {
		fprintf(stderr, "ubdma_ctx_open: %s: %s\n", strerror(err), ubdma_last_error());
		return 1;
	}
	printf("backend: %s (%s)\n", ubdma_backend_name(ubdma_ctx_backend(ctx)), ubdma_ctx_backend_reason(ctx));

	/* hugetlb memory: its physical address is stable, so every backend accepts it */
	int fd = memfd_create("umem_basic", MFD_HUGETLB | MFD_HUGE_2MB);
	char *buf = MAP_FAILED;
	if (fd >= 0 && ftruncate(fd, (off_t)len) == 0)
		buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (buf == MAP_FAILED) {
		fprintf(stderr, "no 2 MiB hugepages: echo 64 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages\n");
		ubdma_ctx_close(ctx);
		return 1;
	}

	/* the device will read and write the buffer */
	err = ubdma_umem_lock(ctx, buf, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &cookie);
	if (err) {
		fprintf(stderr, "ubdma_umem_lock: %s: %s\n", strerror(err), ubdma_last_error());
		ubdma_ctx_close(ctx);
		return 1;
	}
	for (size_t off = 0; off < len; off += 2 << 20)
		printf("  va %p -> iova %#llx\n", (void *)(buf + off),
		       (unsigned long long)ubdma_umem_iova(cookie, buf + off));
	/* any registered address translates without the cookie, lock-free and without a syscall */
	printf("  vtoiova(buf + 12345) = %#llx\n", (unsigned long long)ubdma_vtoiova(ctx, buf + 12345));

	ubdma_umem_unlock(cookie);
	ubdma_ctx_close(ctx);
	munmap(buf, len);
	close(fd);
	return 0;
}
