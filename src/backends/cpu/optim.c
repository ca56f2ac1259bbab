/* cpu/optim.c: the fused optimizer steps (Adam / AdamW / AMSGrad, SGD with momentum and
 * Nesterov), the sum of squares and the clip factor of global-norm clipping, on the CPU.
 *
 * The update arithmetic is f32, one IEEE operation per statement in Keras' order and the CUDA
 * kernels' (src/cuda/optim.cu), with no fused multiply-add (C11 mode compiles with
 * -ffp-contract=off; a statement per operation keeps even a contracting compiler from fusing):
 * both backends give the same bits. Slots: src/optim_ops.c. A parameter group (optim_group.h)
 * is a loop over its tensors. */
#include <math.h>

#include "cpu.h"
#include "optim_group.h"

/* one tensor of an ADAM op: f alpha, 1 - beta_1, 1 - beta_2, epsilon, weight_decay, lr;
 * i amsgrad, weight decay on; gs the grad_scale value or NULL */
static void adam_tensor(const kiln_op *op, kiln_tensor *wt, const kiln_tensor *gt, kiln_tensor *mt,
                        kiln_tensor *vt, kiln_tensor *vht, const float *gs) {
    float *w = wt->data, *m = mt->data, *v = vt->data, *vh = vht ? vht->data : NULL;
    const float *g = gt->data;
    float alpha = op->f[0], omb1 = op->f[1], omb2 = op->f[2], eps = op->f[3], wd = op->f[4],
          lr = op->f[5];
    bool amsgrad = op->i[0], decay = op->i[1];
    int64_t n = kiln_tensor_numel(wt);
    for (int64_t i = 0; i < n; i++) {
        float gv = g[i], wv = w[i], mv = m[i], vv = v[i];
        if (gs) gv = gv * gs[0];
        if (decay) {
            float t = wv * wd;
            t = t * lr;
            wv = wv - t;
        }
        float d1 = gv - mv;
        d1 = d1 * omb1;
        mv = mv + d1;
        float g2 = gv * gv;
        float d2 = g2 - vv;
        d2 = d2 * omb2;
        vv = vv + d2;
        float vs = vv;
        if (amsgrad) {
            float h = vh[i];
            h = (vv > h || vv != vv) ? vv : h;
            vh[i] = h;
            vs = h;
        }
        float num = mv * alpha;
        float den = sqrtf(vs);
        den = den + eps;
        float step = num / den;
        w[i] = wv - step;
        m[i] = mv;
        v[i] = vv;
    }
}

/* one tensor of an SGD op: f lr, momentum, weight_decay; i nesterov, momentum on, weight
 * decay on; ut the velocity (NULL without momentum) */
static void sgd_tensor(const kiln_op *op, kiln_tensor *wt, const kiln_tensor *gt, kiln_tensor *ut,
                       const float *gs) {
    float *w = wt->data, *u = ut ? ut->data : NULL;
    const float *g = gt->data;
    float lr = op->f[0], mom = op->f[1], wd = op->f[2];
    bool nesterov = op->i[0], momentum = op->i[1], decay = op->i[2];
    int64_t n = kiln_tensor_numel(wt);
    for (int64_t i = 0; i < n; i++) {
        float gv = g[i], wv = w[i];
        if (gs) gv = gv * gs[0];
        if (decay) {
            float t = wv * wd;
            t = t * lr;
            wv = wv - t;
        }
        float glr = gv * lr;
        if (!momentum) {
            w[i] = wv - glr;
            continue;
        }
        float a = u[i] * mom;
        float uv = a - glr;
        u[i] = uv;
        if (nesterov) {
            float b = uv * mom;
            b = b - glr;
            w[i] = wv + b;
        } else {
            w[i] = wv + uv;
        }
    }
}

/* ADAM, SGD: every tensor of the op's group (a single update is a group of one); src[1] is the
 * grad_scale tensor or NULL */
static void update(const kiln_op *op) {
    kiln_param_group one;
    const kiln_param_group *grp = kiln_param_group_of(op, &one);
    const float *gs = op->src[1] ? op->src[1]->data : NULL;
    for (int k = 0; k < grp->n; k++) {
        if (op->type == KILN_OP_ADAM)
            adam_tensor(op, grp->w[k], grp->g[k], grp->s0[k], grp->s1[k], grp->s2[k], gs);
        else
            sgd_tensor(op, grp->w[k], grp->g[k], grp->s0[k], gs);
    }
}

/* SUMSQ_ACC: dst[0] acc (1) += sum of src[0]^2, summed in double */
static void sum_squares(const kiln_op *op) {
    const float *g = op->src[0]->data;
    float *acc = op->dst[0]->data;
    int64_t n = kiln_tensor_numel(op->src[0]);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    acc[0] = (float)((double)acc[0] + s);
}

/* CLIP_SCALE: dst[0] scale = c * min(1 / norm, 1 / c) + (norm - norm), norm = sqrt(src[0]);
 * f[0] c */
static void clip_scale(const kiln_op *op) {
    float c = op->f[0];
    float norm = sqrtf(((const float *)op->src[0]->data)[0]);
    float inv = 1.0f / norm;
    float invc = 1.0f / c;
    float lo = inv < invc ? inv : invc;
    float s = c * lo;
    float nan_if_inf = norm - norm;
    ((float *)op->dst[0]->data)[0] = s + nan_if_inf;
}

void kiln_cpu_optim(const kiln_op *op) {
    switch (op->type) {
    case KILN_OP_ADAM:
    case KILN_OP_SGD: update(op); break;
    case KILN_OP_SUMSQ_ACC: sum_squares(op); break;
    default: clip_scale(op); break;
    }
}
