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
    if (!kiln_shape_fits(ndim, shape, elem_size)) { /* say which: a negative size, elements, bytes */
        char dims[160];
        for (int i = 0; i < ndim; i++)
            if (shape[i] < 0)
                return kiln_error(KILN_ERR_SHAPE, "%s: dimension %d is negative (%lld)", what, i, (long long)shape[i]);
        dims_str(ndim, shape, dims, sizeof dims);
        if (!kiln_shape_fits(ndim, shape, 1))
            return kiln_error(KILN_ERR_SHAPE, "%s of %s elements overflows 64 bits", what, dims);
        return kiln_error(KILN_ERR_SHAPE, "%s of %s elements of %zu bytes overflows 64 bits", what, dims, elem_size);
    }
    int64_t count = 1; /* fits, as the extent does */
    for (int i = 0; i < ndim; i++) count *= shape[i];
    if (numel) *numel = count;
    if (nbytes) *nbytes = count * (int64_t)elem_size;
    return KILN_OK;
}
