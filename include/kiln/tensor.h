/* kiln/tensor.h: dtypes, and tensors, which are metadata over memory owned by a backend.
 *
 * A tensor has a dtype, up to KILN_MAX_DIMS dimensions with strides (in elements), a name, and
 * a data pointer that lives on its backend (host memory for `cpu`, device memory for `cuda`).
 * Images default to NHWC (Keras' channels_last). Ops take contiguous tensors unless they say
 * otherwise; kiln_copy also takes a strided source.
 *
 * Sizes: a shape whose sizes are negative, or whose element count (empty axes counted as 1) times
 * its dtype's size passes INT64_MAX, is refused wherever it enters (KILN_ERR_SHAPE: "kiln_tensor_new:
 * 'name' (f32) of 4611686018427387905 x 4 elements overflows 64 bits"), so every element count,
 * byte count, stride and offset of a tensor made here fits in int64_t. */
#ifndef KILN_TENSOR_H
#define KILN_TENSOR_H

#include "kiln/api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_MAX_DIMS 4
#define KILN_NAME_MAX 64

typedef enum kiln_dtype {
    KILN_F32 = 0,
    KILN_F16,   /* IEEE binary16, a storage type */
    KILN_BF16,  /* bfloat16, a storage type */
    KILN_I32,   /* labels, indices */
    KILN_U8,    /* pixels */
    KILN_DTYPE_COUNT
} kiln_dtype;

typedef struct kiln_backend kiln_backend;

typedef struct kiln_tensor {
    kiln_dtype dtype;
    int ndim;                          /* 0 (a scalar) .. KILN_MAX_DIMS */
    int64_t shape[KILN_MAX_DIMS];      /* unused trailing entries are 1 */
    int64_t stride[KILN_MAX_DIMS];     /* in elements; row-major when contiguous */
    char name[KILN_NAME_MAX];
    kiln_backend *backend;             /* owns the memory behind data */
    void *data;                        /* backend memory (host or device) */
    size_t capacity;                   /* bytes allocated behind data, 0 for a view */
    bool owns_data;                    /* false for views */
} kiln_tensor;

/* The size of one element in bytes (0 for no dtype) and its name ("f32"; "?" for no dtype). */
KILN_API size_t kiln_dtype_size(kiln_dtype t);
KILN_API const char *kiln_dtype_name(kiln_dtype t);

/* A new contiguous tensor on backend `be`. Contents are undefined. `name` may be NULL. */
KILN_API kiln_status kiln_tensor_new(kiln_backend *be, kiln_dtype dtype, int ndim, const int64_t *shape,
                            const char *name, kiln_tensor **out);
/* Frees the tensor and, unless it is a view, its memory. NULL is allowed. */
KILN_API void kiln_tensor_free(kiln_tensor *t);

/* A contiguous view of `numel(shape)` elements starting `offset` elements into a contiguous
 * tensor `base`; it shares base's memory and must not outlive it. KILN_ERR_SHAPE unless
 * 0 <= offset and offset + numel(shape) <= numel(base). */
KILN_API kiln_status kiln_tensor_view(kiln_tensor *base, int64_t offset, int ndim, const int64_t *shape,
                             kiln_tensor **out);

/* Reshape in place (same number of elements, contiguous tensors only). */
KILN_API kiln_status kiln_tensor_reshape(kiln_tensor *t, int ndim, const int64_t *shape);

/* Element and byte counts (0 for a NULL tensor), contiguity and shape equality (false for a
 * NULL tensor). */
KILN_API int64_t kiln_tensor_numel(const kiln_tensor *t);
KILN_API size_t kiln_tensor_nbytes(const kiln_tensor *t);
KILN_API bool kiln_tensor_is_contiguous(const kiln_tensor *t);
KILN_API bool kiln_tensor_same_shape(const kiln_tensor *a, const kiln_tensor *b);

/* Writes "(2, 3, 4)" into buf ("(null)" for a NULL tensor); returns buf (NULL when buf is NULL
 * or n is 0, with nothing written). */
KILN_API char *kiln_shape_str(const kiln_tensor *t, char *buf, size_t n);

/* Host <-> tensor copies of the whole (contiguous) tensor; `nbytes` must equal its size.
 * They wait for the copy to finish. */
KILN_API kiln_status kiln_tensor_set(kiln_tensor *t, const void *host, size_t nbytes);
KILN_API kiln_status kiln_tensor_get(const kiln_tensor *t, void *host, size_t nbytes);

/* The same without waiting, on the backend's stream (the cpu backend copies at once).
 * Host memory should come from kiln_host_alloc for the copy to be truly asynchronous; the
 * host buffer must stay alive and untouched until kiln_backend_synchronize. */
KILN_API kiln_status kiln_tensor_set_async(kiln_tensor *t, const void *host, size_t nbytes);
KILN_API kiln_status kiln_tensor_get_async(const kiln_tensor *t, void *host, size_t nbytes);

/* Copies a whole tensor to another of the same dtype and shape, across backends too. */
KILN_API kiln_status kiln_tensor_transfer(const kiln_tensor *src, kiln_tensor *dst);

#ifdef __cplusplus
}
#endif
#endif
