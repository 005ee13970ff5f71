/*
 * map.c - DMA maps: creation, destruction and unload.  A map holds one load at a time: its
 * segment array (made with the map, so that loads allocate nothing), the bounce slots the load
 * took, and, while a WAITOK load waits for slots, the saved request.
 *
 * As in bus_dma(9), a map is used by one thread at a time; unload does no implicit sync
 * (FreeBSD's bus_dmamap_unload() does not copy either: POSTREAD is the caller's job).
 */
#include <errno.h>
#include <stdlib.h>

#include "base/log.h"
#include "busdma/busdma_int.h"

int busdma_map_create_locked(struct ubdma_tag *t, struct ubdma_map **mapp)
{
	struct ubdma_map *m = calloc(1, sizeof(*m));

	if (!m || !(m->segs = calloc((size_t)t->seg_cap, sizeof(*m->segs)))) {
		free(m);
		return uerr(ENOMEM, "out of memory for a map of %d segments", t->seg_cap);
	}
	m->tag = t;
	m->state = MAP_IDLE;
	LIST_INSERT_HEAD(&t->maps, m, link);
	t->nmaps++;
	*mapp = m;
	return 0;
}

int ubdma_map_create(ubdma_tag_t *tag, int flags, ubdma_map_t **mapp)
{
	const int ok = UBDMA_NOWAIT | UBDMA_COHERENT;
	int err;

	if (!tag || !mapp)
		return uerr(EINVAL, "%s is NULL", tag ? "mapp" : "tag");
	if (flags & ~ok)
		return uerr(EINVAL, "unknown flags %#x", flags & ~ok);
	pthread_mutex_lock(&tag->root->lock);
	err = busdma_map_create_locked(tag, mapp);
	pthread_mutex_unlock(&tag->root->lock);
	return err;
}

void busdma_map_free(struct ubdma_map *m)
{
	if (m->wait_iov && m->wait_iov != &m->wait_iov1)
		free(m->wait_iov);
	free(m->segs);
	free(m);
}

/* Take a map off its tag's list (under the root's lock). */
void busdma_map_unlink(ubdma_tag_t *tag, ubdma_map_t *map)
{
	pthread_mutex_lock(&tag->root->lock);
	LIST_REMOVE(map, link);
	tag->nmaps--;
	pthread_mutex_unlock(&tag->root->lock);
}

int ubdma_map_destroy(ubdma_tag_t *tag, ubdma_map_t *map)
{
	if (!tag || !map || map->tag != tag)
		return uerr(EINVAL, "map %p does not belong to tag %p", (void *)map, (void *)tag);
	if (map->mem)
		return uerr(EINVAL, "map %p came from ubdma_mem_alloc(): free it with ubdma_mem_free()", (void *)map);
	if (map->state != MAP_IDLE)
		return uerr(EBUSY, "map %p is %s", (void *)map, map->state == MAP_LOADED ? "loaded" : "waiting for a load");
	busdma_map_unlink(tag, map);
	busdma_map_free(map);
	return 0;
}

static __attribute__((noinline)) void unload_slow(struct ubdma_tag *tag, struct ubdma_map *map)
{
	if (map->state == MAP_PENDING) {
		/* cancel a load still waiting for bounce slots: its callback never runs */
		if (bounce_cancel(tag, map)) {
			if (map->wait_iov != &map->wait_iov1)
				free(map->wait_iov);
			map->wait_iov = NULL;
			map->state = MAP_IDLE;
		} else {
			ULOG_WARN("map %p: unload raced with its deferred load running in another thread", (void *)map);
		}
		return;
	}
	struct bounce_page *pages = map->bpages;
	map->bpages = NULL;
	map->nseg = 0;
	map->state = MAP_IDLE;
	bounce_release(tag, pages); /* may run loads waiting for these slots */
}

/* Out of line: the unload's fast path keeps no frame for a varargs call it never makes. */
static __attribute__((cold, noinline)) void unload_refused(const ubdma_tag_t *tag, const ubdma_map_t *map)
{
	errno = uerr_at("ubdma_map_unload", EINVAL, "map %p does not belong to tag %p", (const void *)map,
			(const void *)tag);
}

void ubdma_map_unload(ubdma_tag_t *tag, ubdma_map_t *map)
{
	if (__builtin_expect(!map || map->tag != tag, 0)) {
		unload_refused(tag, map);
		return;
	}
	if (__builtin_expect(map->bpages != NULL || map->state == MAP_PENDING, 0)) {
		unload_slow(tag, map);
		return;
	}
	map->nseg = 0;
	map->state = MAP_IDLE;
}
