/*
 * hot.h - where the cache's miss path is placed in the library's text: the functions a miss in
 * a trusted window runs, on as few 4 KiB pages as they fit in.
 *
 * Why: under TCG (the test bed's guest) each guest page a call touches costs a look-up in QEMU's
 * software TLB, and right after an ibv_reg_mr() those look-ups and the host caches behind them are
 * partly cold (docs/rcache.md, "Pages a miss touches").  Scattered over the text by file order,
 * the miss ran on 9 pages of libubdma's code besides its PLT.  GNU ld's default linker script
 * gathers the input sections .text.hot and .text.hot.* of all files into one run ahead of the
 * rest of .text (lld does with -z keep-text-section-prefix, and otherwise just keeps them in
 * .text): naming the section, rather than the `hot` attribute, places the functions without
 * changing how they are optimised.
 */
#ifndef UBDMA_BASE_HOT_H
#define UBDMA_BASE_HOT_H

#define HOT_TEXT __attribute__((section(".text.hot.ubdma")))

#endif
