/* cpu/softmax.c: softmax, fused softmax + sparse categorical cross-entropy and its backward,
 * argmax and accuracy, over the last axis, in double. */
#include <math.h>

#include "cpu.h"
#include "op_args.h"

/* (rows, k) view of a tensor whose last axis holds the classes */
static void rows_of(const kiln_tensor *t, int64_t *rows, int64_t *k) {
    *k = t->shape[t->ndim - 1];
    *rows = kiln_tensor_numel(t) / *k;
}

/* p = softmax(x) for one row; returns logsumexp(x) */
static double softmax_row(const float *x, float *p, int64_t k) {
    double m = -INFINITY;
    for (int64_t j = 0; j < k; j++)
        if (x[j] > m || isnan(x[j])) m = x[j];
    if (isinf(m) && m < 0) m = 0.0; /* every logit -inf: NaN follows, as it should */
    double s = 0.0;
    for (int64_t j = 0; j < k; j++) s += exp((double)x[j] - m);
    for (int64_t j = 0; j < k; j++) p[j] = (float)(exp((double)x[j] - m) / s);
    return m + log(s);
}

void kiln_cpu_softmax(const kiln_op *op) {
    const kiln_softmax_args *a = &op->softmax;
    const kiln_tensor *in = op->type == KILN_OP_SOFTMAX_XENT_BACK ? a->probs : a->x;
    int64_t rows, k;
    rows_of(in, &rows, &k);
    const float *x = in->data;
    switch (op->type) {
    case KILN_OP_SOFTMAX: {
        float *y = a->y->data;
        for (int64_t r = 0; r < rows; r++) softmax_row(x + r * k, y + r * k, k);
        break;
    }
    case KILN_OP_SOFTMAX_XENT: {
        const int32_t *lab = a->labels->data;
        float *p = a->y->data, *loss = a->loss->data;
        for (int64_t r = 0; r < rows; r++) {
            double lse = softmax_row(x + r * k, p + r * k, k);
            int32_t l = lab[r];
            loss[r] = (l < 0 || l >= k) ? NAN : (float)(lse - (double)x[r * k + l]);
        }
        break;
    }
    case KILN_OP_SOFTMAX_XENT_BACK: { /* x: the probabilities */
        const int32_t *lab = a->labels->data;
        float *dx = a->dx->data, scale = a->scale;
        for (int64_t r = 0; r < rows; r++) {
            int32_t l = lab[r];
            bool bad = l < 0 || l >= k;
            for (int64_t j = 0; j < k; j++)
                dx[r * k + j] = bad ? NAN : scale * (x[r * k + j] - (j == l ? 1.0f : 0.0f));
        }
        break;
    }
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
