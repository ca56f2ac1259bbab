/* labels.c: the small conversions the loaders share: uint8 pixels to [0, 1] and labels of any
 * integer width to int32, checked against the number of classes. */
#include <stdint.h>
#include <string.h>

#include "data_internal.h"
#include "error.h"

void kiln_u8_to_unit(const uint8_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = (float)src[i] / 255.0f;
}

/* Little-endian signed integer of `width` bytes (unsigned when width is 1). */
static int64_t read_label(const unsigned char *p, size_t width) {
    if (width == 1) return p[0];
    uint64_t v = 0;
    for (size_t b = 0; b < width; b++) v |= (uint64_t)p[b] << (8 * b);
    if (width < 8 && (v >> (8 * width - 1)) & 1) v |= ~(uint64_t)0 << (8 * width);
    int64_t r;
    memcpy(&r, &v, sizeof r);
    return r;
}

kiln_status kiln_labels_convert(const void *labels, size_t width, int64_t n, int num_classes,
                                const char *what, size_t base_offset, int32_t *out,
                                int *num_classes_out) {
    const unsigned char *p = labels;
    int64_t limit = num_classes > 0 ? num_classes : KILN_MAX_CLASSES, max = -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = read_label(p + (size_t)i * width, width);
        if (v < 0 || v >= limit)
            return kiln_error(KILN_ERR_FORMAT,
                              "%s: offset %zu: label %lld at index %lld is outside [0, %lld)%s", what,
                              base_offset + (size_t)i * width, (long long)v, (long long)i,
                              (long long)limit, num_classes > 0 ? "" : " (the most classes kiln takes)");
        out[i] = (int32_t)v;
        if (v > max) max = v;
    }
    if (num_classes_out) *num_classes_out = num_classes > 0 ? num_classes : (int)(max + 1);
    return KILN_OK;
}
