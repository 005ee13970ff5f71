/*
 * leftover.h - what a killed ubdma process may have left behind, as the guest tests that kill one
 * look for it: memory still counted in /proc/meminfo, and an IOMMU group still held.
 */
#ifndef UBDMA_GUEST_LEFTOVER_H
#define UBDMA_GUEST_LEFTOVER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ubdma/ubdma.h>

#include "backend.h"

/* A /proc/meminfo field (kB, or pages for HugePages_*), -1 when missing. */
static inline long meminfo(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	long v = -1;
	size_t kl = strlen(key);

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':')
			v = strtol(line + kl + 1, NULL, 10);
	fclose(f);
	return v;
}

/*
 * A new context opens bdf's group and maps len bytes into it, then lets everything go: 0, or the
 * first error with *why its ubdma_last_error(), copied before the teardown calls into ubdma again.
 * The open fails while a dead process's container still holds the group.
 */
static inline int group_maps_again(const char *bdf, size_t len, int flags, const char **why)
{
	static char err[512];
	ubdma_ctx_t *ctx = NULL;
	ubdma_pci_t *dev = NULL;
	ubdma_umem_t *u = NULL;
	char *b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int rc = ubdma_ctx_open(guest_backend(), &ctx);

	if (!rc)
		rc = ubdma_pci_open(ctx, bdf, &dev);
	if (!rc)
		rc = ubdma_umem_lock(ctx, b, len, flags, &u);
	snprintf(err, sizeof(err), "%s", rc ? ubdma_last_error() : "");
	*why = err;
	ubdma_umem_unlock(u);
	ubdma_pci_close(dev);
	ubdma_ctx_close(ctx);
	munmap(b, len);
	return rc;
}

#endif
