/* fuzz_safetensors.c: libFuzzer target for the safetensors reader. Any input must be either
 * refused with a status and a message, or accepted with entries that lie inside the buffer,
 * tile the data exactly and can be looked up by name; the sanitizers catch the rest. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kiln/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kiln_safetensors *st = NULL;
    kiln_clear_error();
    if (kiln_safetensors_parse(data, size, "fuzz", &st) != KILN_OK) {
        if (st || !kiln_last_error()[0]) __builtin_trap(); /* a refusal says why and sets nothing */
        return 0;
    }
    uint64_t hl = 0;
    for (int b = 7; b >= 0; b--) hl = hl << 8 | data[b];
    const uint8_t *start = data + 8 + hl, *end = data + size;
    size_t covered = 0;
    for (size_t i = 0; i < st->n_entries; i++) {
        const kiln_st_entry *e = &st->entries[i];
        const uint8_t *p = e->data;
        if (p < start || p > end || e->nbytes > (size_t)(end - p) || p != start + e->begin ||
            e->end - e->begin != e->nbytes || kiln_safetensors_find(st, e->name) != e)
            __builtin_trap();
        size_t elems = kiln_st_dtype_size(e->dtype);
        for (int d = 0; d < e->ndim; d++) elems *= (size_t)e->shape[d];
        if (elems != e->nbytes) __builtin_trap();
        volatile uint8_t sink = 0;
        for (size_t k = 0; k < e->nbytes; k++) sink ^= p[k]; /* every byte readable */
        (void)sink;
        covered += e->nbytes;
    }
    if (covered != (size_t)(end - start)) __builtin_trap();
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(kiln_safetensors_metadata(st, st->meta[i].key), st->meta[i].value)) __builtin_trap();
    kiln_safetensors_free(st);
    return 0;
}
