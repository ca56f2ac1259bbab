/* backend.c: the backend registry, the one place that knows whether CUDA was built.
 * Everything else reaches a device through kiln_backend's function table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "error.h"

bool kiln_cuda_built(void) {
#ifdef KILN_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

static kiln_status open_cuda(int device, kiln_backend **out) {
#ifdef KILN_HAVE_CUDA
    return kiln_backend_cuda_init(device, out);
#else
    (void)device;
    (void)out;
    return kiln_error(KILN_ERR_NO_DEVICE,
                      "no CUDA device: this kiln was built without the CUDA backend "
                      "(KILN_CUDA=OFF or no nvcc found)");
#endif
}

kiln_status kiln_backend_init(const char *name, kiln_backend **out) {
    if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_backend_init: out is NULL");
    *out = NULL;
    if (!name || !strcmp(name, "auto")) {
        if (open_cuda(0, out) == KILN_OK) return KILN_OK;
        kiln_clear_error(); /* no GPU is no error for "auto" */
        return kiln_backend_cpu_init(out);
    }
    if (!strcmp(name, "cpu")) return kiln_backend_cpu_init(out);
    if (!strcmp(name, "cuda")) return open_cuda(0, out);
    if (!strncmp(name, "cuda:", 5)) {
        char *end = NULL;
        long dev = strtol(name + 5, &end, 10);
        if (end == name + 5 || *end || dev < 0 || dev > 1024)
            return kiln_error(KILN_ERR_INVALID_ARG,
                              "kiln_backend_init: bad device '%s' (want cuda:N, N >= 0)", name);
        return open_cuda((int)dev, out);
    }
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "kiln_backend_init: unknown backend '%s' (known: auto, cpu, cuda, cuda:N)",
                      name);
}

void kiln_backend_free(kiln_backend *be) {
    if (be) be->iface->free(be);
}

const char *kiln_backend_name(const kiln_backend *be) { return be ? be->name : "(null)"; }

kiln_backend_kind kiln_backend_kind_of(const kiln_backend *be) { return be->kind; }

kiln_status kiln_backend_synchronize(kiln_backend *be) {
    if (!be) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_backend_synchronize: NULL backend");
    return be->iface->synchronize(be);
}

bool kiln_backend_supports(const kiln_backend *be, kiln_op_type op, kiln_dtype dtype) {
    return be && be->iface->supports_op(be, op, dtype);
}

kiln_status kiln_host_alloc(kiln_backend *be, size_t nbytes, void **out) {
    if (!be || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_host_alloc: NULL argument");
    return be->iface->host_alloc(be, nbytes, out);
}

void kiln_host_free(kiln_backend *be, void *ptr) {
    if (be && ptr) be->iface->host_free(be, ptr);
}

kiln_status kiln_backend_memory_stats(const kiln_backend *be, kiln_memory_stats *out) {
    if (!be || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_backend_memory_stats: NULL argument");
    return be->iface->memory_stats(be, out);
}

static kiln_status check_slot(const kiln_backend *be, int slot, const char *fn) {
    if (!be) return kiln_error(KILN_ERR_INVALID_ARG, "%s: NULL backend", fn);
    if (slot < 0 || slot >= KILN_MAX_MARKS)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: marker %d outside 0..%d", fn, slot, KILN_MAX_MARKS - 1);
    return KILN_OK;
}

kiln_status kiln_backend_mark(kiln_backend *be, int slot) {
    KILN_TRY(check_slot(be, slot, "kiln_backend_mark"));
    return be->iface->mark(be, slot);
}

kiln_status kiln_backend_wait_mark(kiln_backend *be, int slot) {
    KILN_TRY(check_slot(be, slot, "kiln_backend_wait_mark"));
    return be->iface->wait_mark(be, slot);
}
