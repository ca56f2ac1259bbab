/* cpu/softmax.c: softmax, fused softmax + sparse categorical cross-entropy and its backward,
 * argmax and accuracy, over the last axis, in double; rows in parallel (each row's arithmetic
 * is the same whoever runs it). */
#include <math.h>

#include "cpu.h"
#include "op_args.h"
#include "simd.h"

#define PAR_MIN 32768 /* fewer elements: one thread */

/* (rows, k) view of a tensor whose last axis holds the classes */
static void rows_of(const kiln_tensor *t, int64_t *rows, int64_t *k) {
    *k = t->shape[t->ndim - 1];
    *rows = kiln_tensor_numel(t) / *k;
}

#define ROW_BUF 256 /* classes whose exponentials a row keeps on the stack */

/* p = softmax(x) for one row; returns logsumexp(x). Each exp(x - max) is computed once (kept
 * in double in e, ROW_BUF at a time) where the row fits; longer rows compute it twice. The
 * same values and the same order of the sum either way. */
static double softmax_row(const float *x, float *p, int64_t k) {
    double m = -INFINITY, e[ROW_BUF];
    for (int64_t j = 0; j < k; j++)
        if (x[j] > m || isnan(x[j])) m = x[j];
    if (isinf(m) && m < 0) m = 0.0; /* every logit -inf: NaN follows, as it should */
    const bool keep = k <= ROW_BUF;
    double s = 0.0;
    for (int64_t j = 0; j < k; j++) {
        double v = exp((double)x[j] - m);
        if (keep) e[j] = v;
        s += v;
    }
    for (int64_t j = 0; j < k; j++) p[j] = (float)((keep ? e[j] : exp((double)x[j] - m)) / s);
    return m + log(s);
}

/* dx = scale (p - onehot(label)) for rows [r0, r1); a label out of range gives a NaN row */
KILN_SIMD_INLINE void xent_back_rows_body(const float *x, const int32_t *lab, float *dx, float scale, int64_t k,
                                          int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        int32_t l = lab[r];
        bool bad = l < 0 || l >= k;
        for (int64_t j = 0; j < k; j++)
            dx[r * k + j] = bad ? NAN : scale * (x[r * k + j] - (j == l ? 1.0f : 0.0f));
    }
}
KILN_SIMD_CLONES(xent_back_rows, (const float *x, const int32_t *lab, float *dx, float scale, int64_t k, int64_t r0,
                                  int64_t r1), (x, lab, dx, scale, k, r0, r1))

void kiln_cpu_softmax(const kiln_op *op) {
    const kiln_softmax_args *a = &op->softmax;
    const kiln_tensor *in = op->type == KILN_OP_SOFTMAX_XENT_BACK ? a->probs : a->x;
    int64_t rows, k;
    rows_of(in, &rows, &k);
    const float *x = in->data;
    const bool par = rows > 1 && rows * k >= PAR_MIN;
    (void)par;
    switch (op->type) {
    case KILN_OP_SOFTMAX: {
        float *y = a->y->data;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (par)
#endif
        for (int64_t r = 0; r < rows; r++) softmax_row(x + r * k, y + r * k, k);
        break;
    }
    case KILN_OP_SOFTMAX_XENT: {
        const int32_t *lab = a->labels->data;
        float *p = a->y->data, *loss = a->loss->data;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (par)
#endif
        for (int64_t r = 0; r < rows; r++) {
            double lse = softmax_row(x + r * k, p + r * k, k);
            int32_t l = lab[r];
            loss[r] = (l < 0 || l >= k) ? NAN : (float)(lse - (double)x[r * k + l]);
        }
        break;
    }
    case KILN_OP_SOFTMAX_XENT_BACK: /* x: the probabilities */
        xent_back_rows(x, a->labels->data, a->dx->data, a->scale, k, 0, rows);
        break;
    default: break;
    }
}

void kiln_cpu_argmax(const kiln_op *op) {
    const kiln_argmax_args *a = &op->argmax;
    int64_t rows, k;
    rows_of(a->x, &rows, &k);
    const float *x = a->x->data;
    int64_t correct = 0;
    for (int64_t r = 0; r < rows; r++) {
        int32_t best = 0;
        for (int64_t j = 1; j < k; j++)
            if (x[r * k + j] > x[r * k + best]) best = (int32_t)j;
        if (op->type == KILN_OP_ARGMAX) ((int32_t *)a->idx->data)[r] = best;
        else correct += ((const int32_t *)a->labels->data)[r] == best;
    }
    if (op->type == KILN_OP_ACCURACY) ((float *)a->correct->data)[0] = (float)correct;
}
