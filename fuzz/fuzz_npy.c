/* fuzz_npy.c: libFuzzer target for the .npy header parser. An accepted input's array must lie
 * exactly at the end of the buffer and have shape * itemsize bytes; a refused one must say
 * why. */
#include <stddef.h>
#include <stdint.h>

#include "kiln/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const size_t itemsize[KILN_NPY_DTYPE_COUNT] = {1, 4, 8, 4, 8};
    kiln_npy a;
    kiln_clear_error();
    if (kiln_npy_parse(data, size, "fuzz", &a) != KILN_OK) {
        if (!kiln_last_error()[0]) __builtin_trap();
        return 0;
    }
    const uint8_t *p = a.data;
    if ((int)a.dtype < 0 || a.dtype >= KILN_NPY_DTYPE_COUNT || a.ndim < 0 || a.ndim > KILN_NPY_MAX_DIMS ||
        p < data || p + a.nbytes != data + size || a.version < 1 || a.version > 3)
        __builtin_trap();
    size_t n = itemsize[a.dtype];
    for (int d = 0; d < a.ndim; d++) {
        if (a.shape[d] < 0) __builtin_trap();
        n *= (size_t)a.shape[d];
    }
    if (n != a.nbytes) __builtin_trap();
    volatile uint8_t sink = 0;
    for (size_t k = 0; k < a.nbytes; k++) sink ^= p[k];
    (void)sink;
    return 0;
}
