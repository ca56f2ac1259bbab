/* cpu/act.c: kiln_act (Keras' other activations, Rescaling), Normalization and Concatenate's
 * column copies on the CPU. Each element is computed in double by the shared formulas
 * (src/backends/shared/act_math.h) and rounded once: the reference the CUDA kernels, which
 * include the same formulas, answer to. */
#include <string.h>

#include "act_math.h"
#include "cpu.h"
#include "op_args.h"

/* y = f(x), or Normalization's (x - mean[c]) / max(sqrt(var[c]), epsilon), or x * gate[n, c] */
static void act_forward(const kiln_act_args *a) {
    const float *x = a->x->data;
    float *y = a->y->data;
    int64_t n = kiln_tensor_numel(a->x);
    if (a->gate) { /* one f32 product: correctly rounded as it is */
        const float *g = a->gate->data;
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * g[i / a->per_example * a->channels + i % a->channels];
        return;
    }
    if (a->mean) {
        const float *m = a->mean->data, *v = a->var->data;
        for (int64_t i = 0; i < n; i++) {
            int64_t c = i % a->channels;
            y[i] = (float)(((double)x[i] - m[c]) / kiln_norm_divisor(v[c], a->epsilon));
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) y[i] = (float)kiln_act_f(&a->p, (double)x[i]);
}

/* dx = dy f'(x), or dy / max(sqrt(var[c]), epsilon) */
static void act_backward(const kiln_act_args *a) {
    const float *dy = a->dy->data;
    float *dx = a->dx->data;
    int64_t n = kiln_tensor_numel(a->dy);
    if (a->var) {
        const float *v = a->var->data;
        for (int64_t i = 0; i < n; i++) dx[i] = (float)((double)dy[i] / kiln_norm_divisor(v[i % a->channels], a->epsilon));
        return;
    }
    const float *x = a->x->data;
    for (int64_t i = 0; i < n; i++) dx[i] = (float)((double)dy[i] * kiln_act_df(&a->p, (double)x[i]));
}

/* rows of wx elements into (or, back, out of) columns [offset, offset + wx) of rows of wy */
static void copy_columns(const kiln_columns_args *a) {
    const float *s = a->src->data;
    float *d = a->dst->data;
    size_t bytes = sizeof(float) * (size_t)a->wx;
    for (int64_t r = 0; r < a->rows; r++) {
        if (a->back) memcpy(d + r * a->wx, s + r * a->wy + a->offset, bytes);
        else memcpy(d + r * a->wy + a->offset, s + r * a->wx, bytes);
    }
}

void kiln_cpu_act(const kiln_op *op) {
    switch (op->type) {
    case KILN_OP_ACT: act_forward(&op->act); break;
    case KILN_OP_ACT_BACK: act_backward(&op->act); break;
    default: copy_columns(&op->columns); break;
    }
}
