/* registry.c: the backend registry, the one place that knows whether CUDA was built.
 * Everything else reaches a device through kiln_backend's function table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "cpu.h"
#include "error.h"

#ifdef KILN_HAVE_CUDA
/* src/backends/cuda/backend.cu; device -1: the launch's local rank modulo the device count
 * (0 without a launcher), one GPU per rank of a data-parallel job */
kiln_status kiln_backend_cuda_init(int device, kiln_backend **out);
#endif
#ifdef KILN_HAVE_CUDA_EMU
/* src/backends/cuda/backend.cu on the CUDA emulator (src/backends/cuda/emu) */
kiln_status kiln_backend_cuda_emu_init(int device, kiln_backend **out);
#endif

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
        if (open_cuda(-1, out) == KILN_OK) return KILN_OK;
        kiln_clear_error(); /* no GPU is no error for "auto" */
        return kiln_backend_cpu_init(out);
    }
    if (!strcmp(name, "cpu")) return kiln_backend_cpu_init(out);
    if (!strcmp(name, "cuda-emu")) {
#ifdef KILN_HAVE_CUDA_EMU
        return kiln_backend_cuda_emu_init(0, out); /* never chosen by "auto" */
#else
        return kiln_error(KILN_ERR_NO_DEVICE,
                          "cuda-emu: this kiln was built without the CUDA emulator (KILN_CUDA_EMU=OFF)");
#endif
    }
    if (!strcmp(name, "cuda")) return open_cuda(-1, out); /* device 0, or local rank mod count under mpirun */
    if (!strncmp(name, "cuda:", 5)) {
        char *end = NULL;
        long dev = strtol(name + 5, &end, 10);
        if (end == name + 5 || *end || dev < 0 || dev > 1024)
            return kiln_error(KILN_ERR_INVALID_ARG,
                              "kiln_backend_init: bad device '%s' (want cuda:N, N >= 0)", name);
        return open_cuda((int)dev, out);
    }
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "kiln_backend_init: unknown backend '%s' (known: auto, cpu, cuda, cuda:N, cuda-emu)",
                      name);
}
