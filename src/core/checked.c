/* checked.c: the checked element and byte counts of a shape (checked.h), with the message that
 * names what overflows. */
#include <stdio.h>

#include "checked.h"
#include "error.h"

/* "1048576 x 1099511627776" */
static void dims_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? " x %lld" : "%lld", (long long)shape[i]);
}

kiln_status kiln_shape_size(const char *what, int ndim, const int64_t *shape, size_t elem_size,
                            int64_t *numel, int64_t *nbytes) {
    /* extent: the product with empty axes taken as 1, so every stride (a product of trailing
     * sizes) fits too, in an empty tensor as well */
    int64_t extent = 1, bytes;
    bool empty = false;
    char dims[160];
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return kiln_error(KILN_ERR_SHAPE, "%s: dimension %d is negative (%lld)", what, i, (long long)shape[i]);
    for (int i = 0; i < ndim; i++) {
        empty |= shape[i] == 0;
        if (!kiln_mul_i64(extent, shape[i] ? shape[i] : 1, &extent)) {
            dims_str(ndim, shape, dims, sizeof dims);
            return kiln_error(KILN_ERR_SHAPE, "%s of %s elements overflows 64 bits", what, dims);
        }
    }
    if (elem_size > (size_t)INT64_MAX || !kiln_mul_i64(extent, (int64_t)elem_size, &bytes)) {
        dims_str(ndim, shape, dims, sizeof dims);
        return kiln_error(KILN_ERR_SHAPE, "%s of %s elements of %zu bytes overflows 64 bits", what, dims, elem_size);
    }
    if (numel) *numel = empty ? 0 : extent;
    if (nbytes) *nbytes = empty ? 0 : bytes;
    return KILN_OK;
}
