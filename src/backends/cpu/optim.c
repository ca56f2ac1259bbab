/* cpu/optim.c: the fused optimizer steps (Adam / AdamW / AMSGrad, SGD with momentum and
 * Nesterov), the sum of squares and the clip factor of global-norm clipping, on the CPU.
 *
 * The update arithmetic is f32, one IEEE operation per statement in Keras' order and the CUDA
 * kernels' (src/backends/cuda/optim.cu), with no fused multiply-add (C11 mode compiles with
 * -ffp-contract=off; a statement per operation keeps even a contracting compiler from fusing):
 * both backends give the same bits. Arguments: kiln_adam_args, kiln_sgd_args (op_args.h); a
 * parameter group (optim_group.h) is a loop over its tensors. */
#include <math.h>

#include "cpu.h"
#include "op_args.h"
#include "simd.h"

/* one tensor's update: its arrays, the op's scalars (gs the grad_scale value, 1 without one:
 * g * 1 is g, bit for bit) and flags */
typedef struct optim_job {
    float *w, *m, *v, *vh; /* SGD: m the velocity (NULL without momentum) */
    const float *g;
    int64_t n;
    float gs, alpha, omb1, omb2, eps, wd, lr, mom;
    bool amsgrad, decay, momentum, nesterov;
} optim_job;

/* Adam / AdamW / AMSGrad over one tensor; the flags constants where it is inlined (no branch
 * is left in the loop: without AVX-512's masks, f32 arithmetic under a branch does not vectorise) */
KILN_SIMD_INLINE void adam_loop(const optim_job *j, bool amsgrad, bool decay) {
    /* distinct tensors (restrict: no alias checks, so every level vectorises) */
    float *restrict w = j->w, *restrict m = j->m, *restrict v = j->v, *restrict vh = j->vh;
    const float *restrict g = j->g;
    const float gs = j->gs, alpha = j->alpha, omb1 = j->omb1, omb2 = j->omb2, eps = j->eps, wd = j->wd,
                lr = j->lr;
    for (int64_t i = 0; i < j->n; i++) {
        float gv = g[i] * gs, wv = w[i], mv = m[i], vv = v[i];
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
            h = ((vv > h) | (vv != vv)) ? vv : h;
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

/* run `call` with `flag` a constant */
#define WITH_CONST(flag, call_true, call_false) \
    do {                                        \
        if (flag) call_true;                    \
        else call_false;                        \
    } while (0)

KILN_SIMD_INLINE void adam_update_body(const optim_job *j) {
    if (j->amsgrad) WITH_CONST(j->decay, adam_loop(j, true, true), adam_loop(j, true, false));
    else WITH_CONST(j->decay, adam_loop(j, false, true), adam_loop(j, false, false));
}
KILN_SIMD_CLONES(adam_update, (const optim_job *j), (j))

/* SGD over one tensor; the flags constants where it is inlined */
KILN_SIMD_INLINE void sgd_loop(const optim_job *j, bool momentum, bool nesterov, bool decay) {
    float *restrict w = j->w, *restrict u = j->m;
    const float *restrict g = j->g;
    const float gs = j->gs, lr = j->lr, mom = j->mom, wd = j->wd;
    for (int64_t i = 0; i < j->n; i++) {
        float gv = g[i] * gs, wv = w[i];
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

KILN_SIMD_INLINE void sgd_update_body(const optim_job *j) {
    if (!j->momentum) WITH_CONST(j->decay, sgd_loop(j, false, false, true), sgd_loop(j, false, false, false));
    else if (j->nesterov) WITH_CONST(j->decay, sgd_loop(j, true, true, true), sgd_loop(j, true, true, false));
    else WITH_CONST(j->decay, sgd_loop(j, true, false, true), sgd_loop(j, true, false, false));
}
KILN_SIMD_CLONES(sgd_update, (const optim_job *j), (j))

/* one thread's range [lo, hi) of a tensor's update (kiln_cpu_parallel_ranges: every element's
 * arithmetic is its own, so the split changes no bit) */
typedef struct optim_range_job {
    optim_job j;
    bool adam;
} optim_range_job;

static float *at(float *p, int64_t lo) { return p ? p + lo : NULL; }

static void optim_range(void *ctx, int64_t lo, int64_t hi) {
    const optim_range_job *r = ctx;
    optim_job j = r->j;
    j.w = at(j.w, lo), j.m = at(j.m, lo), j.v = at(j.v, lo), j.vh = at(j.vh, lo);
    j.g += lo;
    j.n = hi - lo;
    if (r->adam) adam_update(&j);
    else sgd_update(&j);
}

static void optim_run(const optim_job *j, bool adam) {
    optim_range_job r = {*j, adam};
    kiln_cpu_parallel_ranges(j->n, 1, optim_range, &r);
}

/* tensor k of an ADAM op's group; gs the grad_scale value or NULL */
static void adam_tensor(const kiln_adam_args *args, int k, const float *gs) {
    const kiln_param_group *grp = args->group;
    optim_job j = {grp->w[k]->data, grp->m[k]->data, grp->v[k]->data, grp->v_hat[k] ? grp->v_hat[k]->data : NULL,
                   grp->g[k]->data, kiln_tensor_numel(grp->w[k]), gs ? gs[0] : 1.0f, args->alpha,
                   args->one_minus_beta_1, args->one_minus_beta_2, args->epsilon, args->weight_decay, args->lr,
                   0.0f, args->amsgrad, args->decay_on, false, false};
    optim_run(&j, true);
}

/* tensor k of an SGD op's group (its velocity NULL without momentum); gs the grad_scale value
 * or NULL */
static void sgd_tensor(const kiln_sgd_args *args, int k, const float *gs) {
    const kiln_param_group *grp = args->group;
    optim_job j = {grp->w[k]->data, grp->velocity[k] ? grp->velocity[k]->data : NULL, NULL, NULL,
                   grp->g[k]->data, kiln_tensor_numel(grp->w[k]), gs ? gs[0] : 1.0f, 0.0f, 0.0f, 0.0f, 0.0f,
                   args->weight_decay, args->lr, args->momentum, false, args->decay_on, args->momentum_on,
                   args->nesterov};
    optim_run(&j, false);
}

/* ADAM, SGD: every tensor of the op's group (a single update is a group of one) */
static void update(const kiln_op *op) {
    const bool adam = op->type == KILN_OP_ADAM;
    const kiln_param_group *grp = adam ? op->adam.group : op->sgd.group;
    const kiln_tensor *gst = adam ? op->adam.grad_scale : op->sgd.grad_scale;
    const float *gs = gst ? gst->data : NULL;
    for (int k = 0; k < grp->n; k++) {
        if (adam) adam_tensor(&op->adam, k, gs);
        else sgd_tensor(&op->sgd, k, gs);
    }
}

/* SUMSQ_ACC: acc (1 value) += sum of g^2, summed in double */
static void sum_squares(const kiln_sumsq_args *a) {
    const float *g = a->g->data;
    float *acc = a->acc->data;
    int64_t n = kiln_tensor_numel(a->g);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    acc[0] = (float)((double)acc[0] + s);
}

/* CLIP_SCALE: scale = c * min(1 / norm, 1 / c) + (norm - norm), norm = sqrt(sumsq), c the
 * clip norm */
static void clip_scale(const kiln_clip_args *a) {
    float c = a->clip_norm;
    float norm = sqrtf(((const float *)a->sumsq->data)[0]);
    float inv = 1.0f / norm;
    float invc = 1.0f / c;
    float lo = inv < invc ? inv : invc;
    float s = c * lo;
    float nan_if_inf = norm - norm;
    ((float *)a->scale->data)[0] = s + nan_if_inf;
}

void kiln_cpu_optim(const kiln_op *op) {
    switch (op->type) {
    case KILN_OP_ADAM:
    case KILN_OP_SGD: update(op); break;
    case KILN_OP_SUMSQ_ACC: sum_squares(&op->sumsq); break;
    default: clip_scale(&op->clip); break;
    }
}
