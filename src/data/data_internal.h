/* data_internal.h: what the dataset and loader files share (internal): the splitmix64 random
 * stream, the uint8 -> [0, 1] pixel conversion and label conversion; whole-file reading comes
 * from the io layer (file_read.h). */
#ifndef KILN_DATA_INTERNAL_H
#define KILN_DATA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "file_read.h"
#include "kiln/data.h"

/* splitmix64: the finaliser alone (a hash of one word) and as a stream. */
static inline uint64_t kiln_data_mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
/* The stream seeded by (seed, k): distinct k give independent streams. */
typedef struct kiln_drng { uint64_t s; } kiln_drng;
static inline kiln_drng kiln_drng_make(uint64_t seed, uint64_t k) {
    kiln_drng r = {kiln_data_mix64(seed) ^ kiln_data_mix64(k * 0xd1b54a32d192ed03ull + 1)};
    return r;
}
static inline uint64_t kiln_drng_next(kiln_drng *r) {
    r->s += 0x9e3779b97f4a7c15ull;
    uint64_t z = r->s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Uniform in [0, 1) with 53 random bits. */
static inline double kiln_drng_unit(kiln_drng *r) { return (double)(kiln_drng_next(r) >> 11) * 0x1.0p-53; }
/* Uniform integer in [0, n), n > 0 (a modulo; the bias is below n / 2^64). */
static inline uint64_t kiln_drng_below(kiln_drng *r, uint64_t n) { return kiln_drng_next(r) % n; }

/* dst[i] = src[i] / 255 */
void kiln_u8_to_unit(const uint8_t *src, float *dst, size_t n);

/* Converts n labels to int32: label i is read from `labels` (little-endian signed ints of
 * `width` bytes, or unsigned bytes when width is 1) and checked against [0, num_classes);
 * num_classes 0 means the largest + 1 (below KILN_MAX_CLASSES). Messages name `what` and the
 * byte offset (base_offset + i * width). */
kiln_status kiln_labels_convert(const void *labels, size_t width, int64_t n, int num_classes,
                                const char *what, size_t base_offset, int32_t *out,
                                int *num_classes_out);

#endif
