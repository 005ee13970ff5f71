/*
 * ubdma/rcache.h - the registration (pin-down) cache.
 * Included by <ubdma/ubdma.h>.
 */
#ifndef UBDMA_RCACHE_H
#define UBDMA_RCACHE_H

#include <ubdma/core.h>

#ifdef __cplusplus
extern "C" {
#endif


int ubdma_reg_get(ubdma_ctx_t *ctx, void *addr, size_t len, int flags, ubdma_reg_t **regp);
uint64_t ubdma_reg_iova(const ubdma_reg_t *reg, const void *addr);
void ubdma_reg_put(ubdma_reg_t *reg);


#ifdef __cplusplus
}
#endif
#endif /* UBDMA_RCACHE_H */
