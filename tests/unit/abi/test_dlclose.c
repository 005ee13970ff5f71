/*
 * test_dlclose.c - libubdma.so loaded and unloaded with dlopen(3)/dlclose(3), as fio loads an
 * external engine: the library keeps a thread for the process's life (the userfaultfd monitor)
 * and leaves watched ranges registered with it after their count ends (docs/wire.md section 13),
 * so it must stay loaded (-z nodelete, lib/meson.build).  Unloaded, the monitor would run
 * unmapped code at the next munmap of such a range (a SIGSEGV on the monitor's thread: fio's
 * nvme-prod boot saw it).  The test registers a buffer through the cache with a registrar that
 * says it pins (the cache then only watches the range), closes everything, dlcloses, checks the
 * library is still there, and unmaps the buffer: that munmap makes the monitor read an event.
 * usage: test_dlclose PATH-TO-libubdma.so (TAP)
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

static int nt, failed;

static void ok(int cond, const char *what)
{
	printf("%sok %d - %s\n", cond ? "" : "not ", ++nt, what);
	failed |= !cond;
}

static int f_reg(void *arg, void *addr, size_t len, int flags, void **keyp)
{
	(void)arg, (void)addr, (void)len, (void)flags;
	*keyp = (void *)1;
	return 0;
}

static int f_dereg(void *arg, void *key)
{
	(void)arg, (void)key;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct ubdma_registrar pins = { .name = "pins", .reg = f_reg, .dereg = f_dereg,
						     .flags = UBDMA_REGISTRAR_PINS };
	int (*ctx_open)(enum ubdma_backend, ubdma_ctx_t **);
	void (*ctx_close)(ubdma_ctx_t *);
	int (*set_registrar)(ubdma_ctx_t *, const struct ubdma_registrar *, void *);
	int (*reg_get)(ubdma_ctx_t *, void *, size_t, int, ubdma_reg_t **);
	void (*reg_put)(ubdma_reg_t *);
	ubdma_ctx_t *ctx = NULL;
	ubdma_reg_t *reg = NULL;
	void *h;

	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH-TO-libubdma.so\n", argv[0]);
		return 2;
	}
	printf("1..5\n");
	h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	ok(h != NULL, "dlopen of libubdma.so");
	if (!h) {
		fprintf(stderr, "# %s\n", dlerror());
		return 1;
	}
	*(void **)&ctx_open = dlsym(h, "ubdma_ctx_open");
	*(void **)&ctx_close = dlsym(h, "ubdma_ctx_close");
	*(void **)&set_registrar = dlsym(h, "ubdma_rcache_set_registrar");
	*(void **)&reg_get = dlsym(h, "ubdma_reg_get");
	*(void **)&reg_put = dlsym(h, "ubdma_reg_put");
	ok(ctx_open && ctx_close && set_registrar && reg_get && reg_put, "the five functions found");

	/* 2 MiB aligned, so that the watch's window is this mapping alone */
	size_t len = 4u << 20;
	char *raw = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *p = (char *)(((uintptr_t)raw + len - 1) & ~(uintptr_t)(len - 1));
	memset(p, 0x5a, len);
	int err = ctx_open(UBDMA_BACKEND_VA, &ctx);
	if (!err)
		err = set_registrar(ctx, &pins, NULL);
	if (!err)
		err = reg_get(ctx, p, 4096, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &reg);
	ok(err == 0, "a registration through a registrar that pins (watched, not wired)");
	if (reg)
		reg_put(reg);
	if (ctx)
		ctx_close(ctx);
	dlclose(h);
	void *again = dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD);
	ok(again != NULL, "libubdma.so still loaded after its dlclose (-z nodelete)");
	if (again)
		dlclose(again);
	/* the watched range's unmap: the monitor's thread reads the event (a crash if its code was
	 * unmapped, a hang of this munmap if the thread were gone) */
	ok(munmap(raw, 2 * len) == 0, "munmap of the watched range after the dlclose");
	return failed;
}
