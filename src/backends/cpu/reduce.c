/* cpu/reduce.c: sum and mean over a set of axes, accumulated in double. */
#include <stdlib.h>

#include "cpu.h"
#include "error.h"
#include "op_args.h"
#include "simd.h"

/* acc[c] += x[r * nout + c] over rows r: the sums of a reduction over leading axes, each
 * output's values in the generic loop's order (vectorised across outputs) */
KILN_SIMD_INLINE void leading_sums_body(const float *x, int64_t rows, int64_t nout, double *restrict acc) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < nout; c++) acc[c] += x[r * nout + c];
}
KILN_SIMD_CLONES(leading_sums, (const float *x, int64_t rows, int64_t nout, double *acc), (x, rows, nout, acc))

/* whether every reduced axis (of size > 1) comes before every kept one (of size > 1) */
static bool reduces_leading(const kiln_tensor *x, unsigned axes) {
    bool kept_seen = false;
    for (int d = 0; d < x->ndim; d++) {
        if (x->shape[d] == 1) continue;
        bool reduced = axes >> d & 1u;
        if (reduced && kept_seen) return false;
        kept_seen = kept_seen || !reduced;
    }
    return true;
}

/* acc[o] += x[k] in x's row-major order, o from the output's strides over x's index space */
static void any_sums(const kiln_tensor *x, const int64_t *ostride, double *acc) {
    const float *xp = x->data;
    int64_t k = 0;
    for (int64_t i0 = 0; i0 < x->shape[0]; i0++)
        for (int64_t i1 = 0; i1 < x->shape[1]; i1++)
            for (int64_t i2 = 0; i2 < x->shape[2]; i2++)
                for (int64_t i3 = 0; i3 < x->shape[3]; i3++, k++) {
                    int64_t o = i0 * ostride[0] + i1 * ostride[1] + i2 * ostride[2] + i3 * ostride[3];
                    acc[o] += xp[k];
                }
}

kiln_status kiln_cpu_reduce(const kiln_op *op) {
    const kiln_tensor *x = op->reduce.x;
    kiln_tensor *out = op->reduce.y;
    unsigned axes = op->reduce.axes;
    const float *xp = x->data;
    float *yp = out->data;
    int64_t nout = kiln_tensor_numel(out), nin = kiln_tensor_numel(x);
    /* the output's strides over x's 4-D index space: 0 on reduced axes */
    int64_t ostride[KILN_MAX_DIMS], s = 1;
    for (int d = KILN_MAX_DIMS - 1; d >= 0; d--) {
        bool reduced = d < x->ndim && (axes >> d & 1u);
        ostride[d] = reduced ? 0 : s;
        if (!reduced) s *= x->shape[d];
    }
    double *acc = calloc((size_t)(nout ? nout : 1), sizeof *acc);
    if (!acc)
        return kiln_error(KILN_ERR_OOM, "kiln_%s: out of host memory for %lld accumulators",
                          kiln_op_name(op->type), (long long)nout);
    if (nout > 0 && reduces_leading(x, axes)) leading_sums(xp, nin / nout, nout, acc);
    else any_sums(x, ostride, acc);
    double count = nout ? (double)nin / (double)nout : 0.0;
    for (int64_t o = 0; o < nout; o++)
        yp[o] = (float)(op->type == KILN_OP_MEAN ? acc[o] / count : acc[o]);
    free(acc);
    return KILN_OK;
}
