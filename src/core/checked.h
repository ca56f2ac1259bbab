/* checked.h: kiln's one overflow-checked size arithmetic (internal): element counts, byte
 * counts, strides and offsets. Every shape and allocation path computes its sizes here, so no
 * tensor, weight or activation can hold a shape whose size wraps.
 *
 * The limit: a shape's element count times its element size must fit in int64_t (and so in
 * size_t), which makes every stride, offset and byte count of a checked tensor fit too. */
#ifndef KILN_CHECKED_H
#define KILN_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

/* a * b into *out for a, b >= 0; false (and *out untouched) when it passes INT64_MAX */
static inline bool kiln_mul_i64(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0 || (a && b > INT64_MAX / a)) return false;
    *out = a * b;
    return true;
}

/* a * b into *out unless it overflows size_t (false then): byte counts of files and buffers */
static inline bool kiln_mul_size(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

/* a + b into *out for a, b >= 0; false when it passes INT64_MAX */
static inline bool kiln_add_i64(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0 || b > INT64_MAX - a) return false;
    *out = a + b;
    return true;
}

/* Whether shape[0..ndim) has no negative size and its extent (the product of its sizes, empty
 * axes counted as 1, which bounds every stride) times elem_size fits in int64_t: the test of
 * kiln_shape_size, without a message. */
static inline bool kiln_shape_fits(int ndim, const int64_t *shape, size_t elem_size) {
    int64_t extent = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || !kiln_mul_i64(extent, shape[i] ? shape[i] : 1, &extent)) return false;
    return elem_size <= (size_t)INT64_MAX && kiln_mul_i64(extent, (int64_t)elem_size, &extent);
}

/* The element count and byte count (elem_size bytes each) of shape[0..ndim); numel and nbytes
 * may be NULL. KILN_ERR_SHAPE when a size is negative or either count passes INT64_MAX, with
 * the message "<what> of 1048576 x 1099511627776 elements [of 4 bytes] overflows 64 bits". */
kiln_status kiln_shape_size(const char *what, int ndim, const int64_t *shape, size_t elem_size,
                            int64_t *numel, int64_t *nbytes);

/* t is a tensor as kiln_tensor_new and _view make them: non-NULL, a known dtype, 0 ..
 * KILN_MAX_DIMS axes whose sizes pass kiln_shape_size, a backend, and data unless it is empty.
 * KILN_ERR_INVALID_ARG "<fn>: <arg> ..." otherwise: a tensor built by hand or overwritten. */
struct kiln_tensor;
kiln_status kiln_tensor_check(const char *fn, const char *arg, const struct kiln_tensor *t);

#endif
