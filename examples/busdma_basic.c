/*
 * busdma_basic.c - the bus_dma model in one page: a tag for a device that sees only 32-bit
 * addresses and cannot cross a 4 KiB line, a map, a load of a buffer that needs bouncing, and
 * the syncs around the device's access.  Copy it and replace the "device" part with yours.
 *
 *   cc busdma_basic.c $(pkg-config --cflags --libs ubdma) -o busdma_basic && ./busdma_basic [va|phys]
 *
 * Without an argument the backend is chosen as UBDMA_BACKEND_AUTO does.  On phys (no IOMMU) the
 * bounce pages must be hugepages whose physical address is below 4 GiB; when the machine has none
 * there, the load fails with ENOMEM and ubdma_last_error() says so.
 *
 * The buffer is ordinary malloc'd memory that was never registered with ubdma_umem_lock(), and
 * on most machines it lies above 4 GiB: both make ubdma copy it through bounce pages that do
 * satisfy the tag.  Register your buffers (ubdma_umem_lock) and they are used in place instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ubdma/ubdma.h>

struct load_result {
	ubdma_seg_t segs[8];
	int nseg;
	int error;
};

/* bus_dma style: the segment list arrives in a callback. */
static void on_load(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	struct load_result *r = arg;

	r->error = error;
	r->nseg = nseg;
	for (int i = 0; i < nseg && i < 8; i++)
		r->segs[i] = segs[i];
}

int main(int argc, char **argv)
{
	ubdma_ctx_t *ctx;
	ubdma_tag_t *tag;
	ubdma_map_t *map;
	struct load_result r = { 0 };
	const size_t len = 10000;
	char *buf = malloc(len);
	int err;

	if (!buf)
		return 1;
	memset(buf, 'A', len);
	enum ubdma_backend be = UBDMA_BACKEND_AUTO;
	if (argc > 1)
		be = !strcmp(argv[1], "va") ? UBDMA_BACKEND_VA : !strcmp(argv[1], "phys") ? UBDMA_BACKEND_PHYS
										: UBDMA_BACKEND_VFIO;
	if ((err = ubdma_ctx_open(be, &ctx))) {
		fprintf(stderr, "ubdma_ctx_open: %s\n", ubdma_last_error());
		return 1;
	}
	printf("backend: %s\n", ubdma_backend_name(ubdma_ctx_backend(ctx)));

	/* The device: addresses below 4 GiB only (exclude (4 GiB - 1, max]), segments may not cross
	 * a 4 KiB line, at most 8 of them, loads up to 16 KiB. */
	err = ubdma_tag_create(ubdma_ctx_tag(ctx), 1, 4096, UBDMA_MAXADDR_32BIT, UBDMA_MAXADDR,
			       16384, 8, 4096, 0, &tag);
	if (!err)
		err = ubdma_map_create(tag, 0, &map);
	if (err) {
		fprintf(stderr, "tag/map: %s\n", ubdma_last_error());
		return 1;
	}

	/* Load: NOWAIT fails with ENOMEM rather than waiting when bounce pages are short. */
	err = ubdma_map_load(tag, map, buf, len, on_load, &r, UBDMA_NOWAIT);
	if (err || r.error) {
		fprintf(stderr, "load failed (%s): %s\n", err ? "returned error" : "callback error",
			ubdma_last_error());
		return 1;
	}
	for (int i = 0; i < r.nseg; i++)
		printf("segment %d: iova %#llx, %llu bytes\n", i, (unsigned long long)r.segs[i].ds_addr,
		       (unsigned long long)r.segs[i].ds_len);

	/* Before the device reads the buffer: PREWRITE copies it into the bounce pages. */
	ubdma_map_sync(tag, map, UBDMA_SYNC_PREWRITE);
	/* ... give r.segs to the device, ring its doorbell, wait for completion ... */
	/* After the device has written the buffer: POSTREAD copies the bounce pages back. */
	ubdma_map_sync(tag, map, UBDMA_SYNC_POSTREAD);

	ubdma_map_unload(tag, map); /* no implicit sync: do the POST syncs first */
	ubdma_map_destroy(tag, map);
	ubdma_tag_destroy(tag);
	ubdma_ctx_close(ctx);
	free(buf);
	printf("ok\n");
	return 0;
}
