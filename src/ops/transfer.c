/* transfer.c: kiln_tensor_transfer (declared in kiln/tensor.h), a tensor's values into a tensor
 * of the same dtype and size on any backend. It lives in the op layer because on one backend it
 * is an op (kiln_copy); across backends it goes through host memory with the core's get / set. */
#include <stdlib.h>

#include "checked.h"
#include "error.h"
#include "kiln/ops.h"

kiln_status kiln_tensor_transfer(const kiln_tensor *src, kiln_tensor *dst) {
    KILN_TRY(kiln_tensor_check("kiln_tensor_transfer", "src", src));
    KILN_TRY(kiln_tensor_check("kiln_tensor_transfer", "dst", dst));
    if (src->dtype != dst->dtype || kiln_tensor_numel(src) != kiln_tensor_numel(dst)) {
        char a[96], b[96];
        return kiln_error(KILN_ERR_SHAPE, "kiln_tensor_transfer: %s %s into %s %s",
                          kiln_shape_str(src, a, sizeof a), kiln_dtype_name(src->dtype),
                          kiln_shape_str(dst, b, sizeof b), kiln_dtype_name(dst->dtype));
    }
    if (src->backend == dst->backend && kiln_tensor_same_shape(src, dst)) return kiln_copy(src, dst);
    size_t n = kiln_tensor_nbytes(src);
    void *tmp = malloc(n ? n : 1);
    if (!tmp) return kiln_error(KILN_ERR_OOM, "kiln_tensor_transfer: out of host memory (%zu bytes)", n);
    kiln_status s = kiln_tensor_get(src, tmp, n);
    if (s == KILN_OK) s = kiln_tensor_set(dst, tmp, n);
    free(tmp);
    return s;
}
