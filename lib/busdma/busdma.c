/*
 * busdma.c - placeholder root tag until lib/busdma lands (issue 4).
 */
#include <errno.h>
#include <stdlib.h>

#include "core/ctx.h"

struct ubdma_tag {
	struct ubdma_ctx *ctx;
};

int busdma_root_create(struct ubdma_ctx *ctx, struct ubdma_tag **rootp)
{
	struct ubdma_tag *t = calloc(1, sizeof(*t));

	if (!t)
		return ENOMEM;
	t->ctx = ctx;
	*rootp = t;
	return 0;
}

void busdma_root_destroy(struct ubdma_tag *root)
{
	free(root);
}
