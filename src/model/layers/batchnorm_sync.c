/* batchnorm_sync.c: synchronized BatchNormalization over the ranks of a data-parallel fit
 * (Keras' synchronized=True, PyTorch's SyncBatchNorm), built from the BN ops both backends
 * have:
 *   forward: the local per-channel (count, mean, M2) from a training forward whose moving
 *   average keeps only the batch (Keras' rule, momentum 0), every rank's triple gathered (an
 *   all-reduce of a zero-padded table: adding zeros is exact) and merged in rank order by
 *   Chan's rule in double; then the inference forward with the global mean and biased variance
 *   normalizes, and the moving statistics take the global ones (the layer's convention, count
 *   the global count);
 *   backward: the two per-channel sums (sum dy, sum dy xhat) from the BN backward with the
 *   global statistics, all-reduced (each weighted by its share of the global count, so that
 *   unequal shares stay exact); dx is the BN backward's (with this rank's sums) plus an
 *   inference forward for the difference the global sums make (batchnorm_math.h's
 *   dx = A dy + P (x - mean) + Q, P and Q from the sums and the global count).
 * The per-channel values travel through the host (C floats each way per layer and step). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batchnorm_sync.h"
#include "comm_impl.h"

typedef struct bn_sync {
    kiln_tensor *mean, *var;        /* (C): local, then global statistics */
    kiln_tensor *sdy, *sdyx;        /* (C): sum dy, sum dy xhat */
    kiln_tensor *coef_g, *coef_b;   /* (C): P / invstd and Q of the backward */
    kiln_tensor *tmp;               /* the size of the largest x seen */
    double *h;                      /* host scratch: size * 3 * C doubles */
    float *f;                       /* host scratch: 4 * C floats */
    double *invstd;                 /* (C) the forward's global invstd */
    double *mean_d, *var_d;         /* (C) the global mean and biased variance in double */
    double n_local, n_global;       /* values per channel */
    int64_t c;
} bn_sync;

static void sync_free(void *p) {
    bn_sync *s = p;
    if (!s) return;
    kiln_tensor *t[] = {s->mean, s->var, s->sdy, s->sdyx, s->coef_g, s->coef_b, s->tmp};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) kiln_tensor_free(t[i]);
    free(s->h);
    free(s->f);
    free(s->invstd);
    free(s->mean_d);
    free(s->var_d);
    free(s);
}

bool kiln_bn_sync_active(const kiln_node *n, bool training) {
    return training && n->cfg.bn.synchronized && n->cfg.trainable && kiln_comm_size(n->comm) > 1;
}

static kiln_status sync_state(kiln_node *n, const kiln_tensor *x, bn_sync **out) {
    bn_sync *s = n->ext;
    int64_t c = n->aux_len, numel = kiln_tensor_numel(x);
    kiln_backend *be = n->aux[0]->backend;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return kiln_error(KILN_ERR_OOM, "layer '%s': out of host memory", n->cfg.name);
        n->ext = s;
        n->ext_free = sync_free;
        s->c = c;
        kiln_tensor **t[] = {&s->mean, &s->var, &s->sdy, &s->sdyx, &s->coef_g, &s->coef_b};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            KILN_TRY(kiln_tensor_new(be, KILN_F32, 1, &c, "bn_sync", t[i]));
            KILN_TRY(kiln_fill(*t[i], 0.0));
        }
        s->h = calloc((size_t)(3 * c * kiln_comm_size(n->comm)), sizeof(double));
        s->f = calloc((size_t)(4 * c), sizeof(float));
        s->invstd = calloc((size_t)c, sizeof(double));
        s->mean_d = calloc((size_t)c, sizeof(double));
        s->var_d = calloc((size_t)c, sizeof(double));
        if (!s->h || !s->f || !s->invstd || !s->mean_d || !s->var_d) return kiln_error(KILN_ERR_OOM, "layer '%s': out of host memory", n->cfg.name);
    }
    if (!s->tmp || kiln_tensor_numel(s->tmp) < numel) {
        kiln_tensor_free(s->tmp);
        s->tmp = NULL;
        KILN_TRY(kiln_tensor_new(be, KILN_F32, 1, &numel, "bn_sync_tmp", &s->tmp));
    }
    s->n_local = (double)(numel / c);
    *out = s;
    return KILN_OK;
}

/* every rank's (count, mean, M2) per channel, merged in rank order (Chan et al.) into the
 * global mean and biased variance, left in s->f[0..C) and s->f[C..2C) */
static kiln_status gather_stats(kiln_node *n, bn_sync *s) {
    int64_t c = s->c;
    int size = kiln_comm_size(n->comm), rank = kiln_comm_rank(n->comm);
    float *mean = s->f, *var = s->f + c;
    KILN_TRY(kiln_tensor_get(s->mean, mean, sizeof(float) * (size_t)c));
    KILN_TRY(kiln_tensor_get(s->var, var, sizeof(float) * (size_t)c));
    memset(s->h, 0, sizeof(double) * (size_t)(3 * c * size));
    double *mine = s->h + 3 * c * rank;
    for (int64_t k = 0; k < c; k++) {
        mine[3 * k] = s->n_local;
        mine[3 * k + 1] = mean[k];
        mine[3 * k + 2] = (double)var[k] * s->n_local;
    }
    KILN_TRY(kiln_comm_allreduce_sum(n->comm, s->h, 3 * c * size));
    for (int64_t k = 0; k < c; k++) {
        double na = 0, ma = 0, m2 = 0;
        for (int r = 0; r < size; r++) {
            const double *t = s->h + 3 * c * r + 3 * k;
            double nb = t[0], nab = na + nb, d = t[1] - ma;
            if (nab <= 0) continue;
            ma += d * nb / nab;
            m2 += t[2] + d * d * na * nb / nab;
            na = nab;
        }
        mean[k] = (float)ma;
        s->mean_d[k] = ma;
        var[k] = (float)(m2 / na);
        s->var_d[k] = m2 / na;
        s->invstd[k] = 1.0 / sqrt((double)var[k] + (double)n->cfg.bn.epsilon); /* what the inference forward takes */
        s->n_global = na;
    }
    return KILN_OK;
}

/* the moving statistics from the global ones, as kiln_batchnorm_forward_train updates them */
static kiln_status update_moving(kiln_node *n, bn_sync *s, kiln_tensor *mm, kiln_tensor *mv) {
    kiln_bn_params *p = &n->cfg.bn;
    int64_t c = s->c, tracked = p->num_batches_tracked + 1;
    double w = p->cumulative ? 1.0 / (double)tracked : p->convention == KILN_BN_KERAS ? 1.0 - (double)p->momentum : (double)p->momentum;
    double keep = p->cumulative ? 1.0 - w : p->convention == KILN_BN_KERAS ? (double)p->momentum : 1.0 - (double)p->momentum;
    bool unbiased = p->convention == KILN_BN_TORCH;
    float *om = s->f + 2 * c, *ov = s->f + 3 * c;
    const double *mean = s->mean_d, *var = s->var_d;
    KILN_TRY(kiln_tensor_get(mm, om, sizeof(float) * (size_t)c));
    KILN_TRY(kiln_tensor_get(mv, ov, sizeof(float) * (size_t)c));
    for (int64_t k = 0; k < c; k++) {
        double v = unbiased && s->n_global > 1 ? var[k] * s->n_global / (s->n_global - 1) : var[k];
        om[k] = (float)(keep * (double)om[k] + w * mean[k]);
        ov[k] = (float)(keep * (double)ov[k] + w * v);
    }
    KILN_TRY(kiln_tensor_set(mm, om, sizeof(float) * (size_t)c));
    KILN_TRY(kiln_tensor_set(mv, ov, sizeof(float) * (size_t)c));
    p->num_batches_tracked = tracked;
    return KILN_OK;
}

static kiln_status view_like(bn_sync *s, const kiln_tensor *x, kiln_tensor **v) {
    return kiln_tensor_view(s->tmp, 0, x->ndim, x->shape, v);
}

/* coef_g, coef_b: gamma and beta + gamma invstd (mean_f32 - mean), so that the inference
 * forward, which takes the f32 mean, normalizes with the double mean as a one-process forward
 * does (the difference matters where a channel's mean is large against its spread) */
static kiln_status fold_mean(kiln_node *n, bn_sync *s, const kiln_tensor *gamma, const kiln_tensor *beta) {
    int64_t c = s->c;
    bool scale = gamma && n->cfg.bn.scale, center = beta && n->cfg.bn.center;
    float *g = s->f + 2 * c, *shift = s->f + 3 * c;
    if (scale) KILN_TRY(kiln_tensor_get(gamma, g, sizeof(float) * (size_t)c));
    if (center) KILN_TRY(kiln_tensor_get(beta, shift, sizeof(float) * (size_t)c));
    for (int64_t k = 0; k < c; k++) {
        double gk = scale ? (double)g[k] : 1.0, bk = center ? (double)shift[k] : 0.0;
        g[k] = (float)gk;
        shift[k] = (float)(bk + gk * s->invstd[k] * ((double)s->f[k] - s->mean_d[k]));
    }
    KILN_TRY(kiln_tensor_set(s->coef_g, g, sizeof(float) * (size_t)c));
    return kiln_tensor_set(s->coef_b, shift, sizeof(float) * (size_t)c);
}

kiln_status kiln_bn_sync_forward(kiln_node *n, const kiln_tensor *x, kiln_tensor *z, kiln_tensor *gamma,
                                 kiln_tensor *beta, kiln_tensor *moving_mean, kiln_tensor *moving_var) {
    bn_sync *s = NULL;
    KILN_TRY(sync_state(n, x, &s));
    kiln_bn_params local = n->cfg.bn; /* its "moving" statistics: the batch's alone */
    local.convention = KILN_BN_KERAS;
    local.momentum = 0.0f;
    local.cumulative = false;
    KILN_TRY(kiln_batchnorm_forward_train(x, gamma, beta, s->mean, s->var, &local, z, n->aux[0], n->aux[1]));
    KILN_TRY(gather_stats(n, s));
    int64_t c = s->c;
    KILN_TRY(kiln_tensor_set(s->mean, s->f, sizeof(float) * (size_t)c));
    KILN_TRY(kiln_tensor_set(s->var, s->f + c, sizeof(float) * (size_t)c));
    KILN_TRY(kiln_copy(s->mean, n->aux[0]));
    float *inv = s->f + 2 * c;
    for (int64_t k = 0; k < c; k++) inv[k] = (float)s->invstd[k];
    KILN_TRY(kiln_tensor_set(n->aux[1], inv, sizeof(float) * (size_t)c));
    KILN_TRY(fold_mean(n, s, gamma, beta));
    kiln_bn_params aff = n->cfg.bn;
    aff.scale = aff.center = true;
    KILN_TRY(kiln_batchnorm_forward_infer(x, s->coef_g, s->coef_b, s->mean, s->var, &aff, z));
    return moving_mean ? update_moving(n, s, moving_mean, moving_var) : KILN_OK;
}

/* the two sums, all-reduced: each rank's weighted by its share of the global count (the
 * result is in the scale of the global batch's mean loss); this rank's own sums are kept in
 * h[2C..4C) */
static kiln_status reduce_sums(kiln_node *n, bn_sync *s) {
    int64_t c = s->c;
    float *f = s->f;
    KILN_TRY(kiln_tensor_get(s->sdy, f, sizeof(float) * (size_t)c));
    KILN_TRY(kiln_tensor_get(s->sdyx, f + c, sizeof(float) * (size_t)c));
    double share = s->n_local / s->n_global;
    for (int64_t k = 0; k < 2 * c; k++) {
        s->h[k] = (double)f[k] * share;
        s->h[2 * c + k] = (double)f[k];
    }
    return kiln_comm_allreduce_sum(n->comm, s->h, 2 * c);
}

/* dx: the BN backward with the global statistics and this rank's own sums gives
 *   A dy + P_local (x - mean) + Q_local   (in double, inside the op),
 * and an inference forward adds the rest, (P - P_local) (x - mean) + (Q - Q_local), with P, Q
 * from the global sums (the correction stays small: the float sum of two large terms that
 * nearly cancel, A dy and Q, would lose the digits the BN op keeps). */
kiln_status kiln_bn_sync_backward(kiln_node *n, const kiln_tensor *x, const kiln_tensor *dz, kiln_tensor *dx,
                                  const kiln_tensor *gamma, kiln_tensor *dgamma, kiln_tensor *dbeta) {
    bn_sync *s = n->ext;
    if (!s) return kiln_error(KILN_ERR_INVALID_ARG, "layer '%s': synchronized backward without its forward", n->cfg.name);
    kiln_bn_params p = n->cfg.bn;
    KILN_TRY(kiln_batchnorm_backward(x, dz, gamma, n->aux[0], n->aux[1], &p, dx, s->sdyx, s->sdy));
    if (dgamma) KILN_TRY(kiln_copy(s->sdyx, dgamma));
    if (dbeta) KILN_TRY(kiln_copy(s->sdy, dbeta));
    KILN_TRY(reduce_sums(n, s));
    int64_t c = s->c;
    float *g = s->f, *pg = s->f + c, *q = s->f + 2 * c;
    if (p.scale && gamma) KILN_TRY(kiln_tensor_get(gamma, g, sizeof(float) * (size_t)c));
    for (int64_t k = 0; k < c; k++) {
        double a = (p.scale && gamma ? (double)g[k] : 1.0) * s->invstd[k];
        /* the global sums in this rank's scale over the global count: h / n_local */
        double ddy = (s->h[k] - s->h[2 * c + k]) / s->n_local, ddyx = (s->h[c + k] - s->h[3 * c + k]) / s->n_local;
        pg[k] = (float)(-a * ddyx); /* (P - P_local) / invstd: forward_infer multiplies by invstd */
        q[k] = (float)(-a * ddy);
    }
    KILN_TRY(kiln_tensor_set(s->coef_g, pg, sizeof(float) * (size_t)c));
    KILN_TRY(kiln_tensor_set(s->coef_b, q, sizeof(float) * (size_t)c));
    kiln_bn_params aff = n->cfg.bn;
    aff.scale = aff.center = true;
    kiln_tensor *t = NULL;
    KILN_TRY(view_like(s, x, &t));
    kiln_status st = kiln_batchnorm_forward_infer(x, s->coef_g, s->coef_b, s->mean, s->var, &aff, t);
    if (st == KILN_OK) st = kiln_axpy(1.0f, t, dx);
    kiln_tensor_free(t);
    return st;
}
