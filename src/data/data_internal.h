/* data_internal.h: what the dataset and loader files share (internal): the uint8 -> [0, 1]
 * pixel conversion and label conversion; whole-file reading comes from the io layer
 * (file_read.h), random streams from the core layer (rng.h). */
#ifndef KILN_DATA_INTERNAL_H
#define KILN_DATA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "file_read.h"
#include "kiln/data.h"

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
