/* fuzz_idx.c: libFuzzer target for the IDX parser, tried with every rank it takes. An
 * accepted input's data must be exactly the bytes after the header, product(dims) long. */
#include <stddef.h>
#include <stdint.h>

#include "kiln/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int ndim = 1; ndim <= KILN_IDX_MAX_DIMS; ndim++) {
        kiln_idx idx;
        kiln_clear_error();
        if (kiln_idx_parse(data, size, "fuzz", ndim, &idx) != KILN_OK) {
            if (!kiln_last_error()[0]) __builtin_trap();
            continue;
        }
        size_t n = 1;
        for (int d = 0; d < ndim; d++) n *= (size_t)idx.dims[d];
        if (idx.ndim != ndim || idx.nbytes != n || idx.data != data + 4 + 4 * ndim || idx.data + n != data + size)
            __builtin_trap();
        volatile uint8_t sink = 0;
        for (size_t k = 0; k < n; k++) sink ^= idx.data[k];
        (void)sink;
    }
    return 0;
}
