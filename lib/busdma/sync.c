/*
 * sync.c - ubdma_map_sync(): the bounce copies and the memory fences around a device's access.
 *
 * x86 DMA is cache-coherent, so a sync does no cache maintenance: it copies between the client
 * buffer and its bounce slots, and orders the CPU's accesses against the device's.  As in FreeBSD's
 * busdma_bounce.c: PREWRITE copies client -> bounce (the device is about to read), POSTREAD copies
 * bounce -> client (the device has written); PREREAD and POSTWRITE copy nothing.  A call that mixes
 * PRE and POST operations is rejected and copies nothing: bus_dma(9) allows PREREAD|PREWRITE and
 * POSTREAD|POSTWRITE, but a PRE and a POST in one call cannot be ordered against the device's
 * access, which happens between them (NetBSD documents the same restriction).
 *
 * Every sync ends with a fence: release after PRE (the buffer's stores become visible before the
 * stores that start the device, such as a doorbell), acquire after POST (loads of the buffer are
 * not hoisted above the check that the device has finished).
 */
#include <errno.h>
#include <string.h>

#include "base/log.h"
#include "busdma/busdma_int.h"

#define SYNC_PRE (UBDMA_SYNC_PREREAD | UBDMA_SYNC_PREWRITE)
#define SYNC_POST (UBDMA_SYNC_POSTREAD | UBDMA_SYNC_POSTWRITE)

static void copy_bounce(const struct ubdma_map *map, int to_bounce)
{
	for (const struct bounce_page *p = map->bpages; p; p = p->next) {
		if (to_bounce)
			memcpy((char *)p->vaddr + p->off, (const void *)p->client, p->len);
		else
			memcpy((void *)p->client, (const char *)p->vaddr + p->off, p->len);
	}
}

/* Out of line: the sync's fast path keeps no frame for a varargs call it never makes. */
static __attribute__((cold, noinline)) int sync_refused(const ubdma_tag_t *tag, const ubdma_map_t *map, int ops,
							 const char *fn, int set_errno)
{
	int err = uerr_at(fn, EINVAL, "sync of map %p on tag %p with ops %#x refused: unknown map, unknown ops, "
			  "or PRE and POST mixed in one call (nothing copied)", (const void *)map, (const void *)tag,
			  ops);
	if (set_errno) /* the void ubdma_map_sync(): its caller learns of the refusal through errno */
		errno = err;
	return err;
}

/*
 * Both public entries run this, inlined: ubdma_map_sync() is on the hot path and must not pay a
 * call through the PLT to its checked twin.
 */
static inline __attribute__((always_inline)) int sync_run(ubdma_tag_t *tag, ubdma_map_t *map, int ops,
							  const char *fn, int set_errno)
{
	if (__builtin_expect(!map || map->tag != tag || (ops & ~(SYNC_PRE | SYNC_POST)) ||
			     ((ops & SYNC_PRE) && (ops & SYNC_POST)), 0))
		return sync_refused(tag, map, ops, fn, set_errno);
	if (ops & SYNC_PRE) {
		if (map->bpages && (ops & UBDMA_SYNC_PREWRITE))
			copy_bounce(map, 1);
		__atomic_thread_fence(__ATOMIC_RELEASE);
	} else {
		if (map->bpages && (ops & UBDMA_SYNC_POSTREAD))
			copy_bounce(map, 0);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
	}
	return 0;
}

int ubdma_map_sync_checked(ubdma_tag_t *tag, ubdma_map_t *map, int ops)
{
	return sync_run(tag, map, ops, __func__, 0);
}

/* DESIGN.md fixes it void: the refusal reaches the caller as errno and the sentence. */
void ubdma_map_sync(ubdma_tag_t *tag, ubdma_map_t *map, int ops)
{
	(void)sync_run(tag, map, ops, __func__, 1);
}
