/* test_cpu_backend.c: the CPU backend's plumbing. kiln_copy from strided views (src/backends/
 * cpu/elementwise.c copies the contiguous trailing run with memcpy and walks the rest):
 * transposed, cropped, every-other-element and size-1-axis views of every element width, byte
 * for byte against a plain element-by-element walk of the view; kiln_threads_set's range. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

typedef struct view_case {
    const char *name;
    int64_t shape[4], stride[4], offset; /* the view into a base of 3 x 5 x 6 x 7 elements */
} view_case;

static const view_case cases[] = {
    {"contiguous", {3, 5, 6, 7}, {210, 42, 7, 1}, 0},
    {"NHWC seen as NCHW (a transpose)", {3, 7, 5, 6}, {210, 1, 42, 7}, 0},
    {"cropped rows and columns", {2, 3, 4, 7}, {210, 42, 7, 1}, 42 + 7},
    {"every other channel", {3, 5, 6, 3}, {210, 42, 7, 2}, 1},
    {"last two axes swapped", {3, 5, 7, 6}, {210, 42, 1, 7}, 0},
    {"size-1 axes with odd strides", {1, 5, 1, 7}, {999, 42, 13, 1}, 7},
    {"one column of each row", {3, 5, 6, 1}, {210, 42, 7, 5}, 3},
    {"reversed order of axes", {7, 6, 5, 3}, {1, 7, 42, 210}, 0},
};

static const kiln_dtype dtypes[] = {KILN_F32, KILN_F16, KILN_U8, KILN_I32};

Test(cpu_copy, strided_views_byte_for_byte) {
    int64_t bs[4] = {3, 5, 6, 7};
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
        size_t es = kiln_dtype_size(dtypes[d]);
        kiln_tensor *base = kt_new(kt_cpu(), dtypes[d], 4, bs);
        unsigned char *raw = malloc(kiln_tensor_nbytes(base));
        for (size_t i = 0; i < kiln_tensor_nbytes(base); i++) raw[i] = (unsigned char)(i * 131 + 7 + d);
        OK(kiln_tensor_set(base, raw, kiln_tensor_nbytes(base)));
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const view_case *v = &cases[c];
            kiln_tensor view = *base;
            view.owns_data = false;
            view.capacity = 0;
            memcpy(view.shape, v->shape, sizeof view.shape);
            memcpy(view.stride, v->stride, sizeof view.stride);
            view.data = (char *)base->data + (size_t)v->offset * es;
            kiln_tensor *dst = kt_new(kt_cpu(), dtypes[d], 4, v->shape);
            memset(dst->data, 0xee, kiln_tensor_nbytes(dst));
            OK(kiln_copy(&view, dst));
            size_t n = kiln_tensor_nbytes(dst), k = 0;
            unsigned char *want = malloc(n);
            for (int64_t a = 0; a < v->shape[0]; a++)
                for (int64_t b = 0; b < v->shape[1]; b++)
                    for (int64_t e = 0; e < v->shape[2]; e++)
                        for (int64_t f = 0; f < v->shape[3]; f++, k += es) {
                            int64_t off = v->offset + a * v->stride[0] + b * v->stride[1] + e * v->stride[2] + f * v->stride[3];
                            memcpy(want + k, raw + (size_t)off * es, es);
                        }
            char what[160];
            snprintf(what, sizeof what, "copy of %s, %s", v->name, kiln_dtype_name(dtypes[d]));
            kt_expect_bitwise(what, dst->data, want, n);
            free(want);
            kiln_tensor_free(dst);
        }
        free(raw);
        kiln_tensor_free(base);
    }
}

Test(cpu_threads, set_and_get) {
    int before = kiln_threads_get();
    cr_expect_eq(kiln_threads_set(0), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "kiln_threads_set: 0 threads is not in [1, 4096]"), "%s", kiln_last_error());
    cr_expect_eq(kiln_threads_set(5000), KILN_ERR_INVALID_ARG);
    OK(kiln_threads_set(1));
    cr_expect_eq(kiln_threads_get(), 1);
    OK(kiln_threads_set(before));
}
