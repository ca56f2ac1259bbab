// cuda/batchnorm_cudnn.cu: the BN ops through cuDNN's BatchNormalization API (the legacy one,
// still in cuDNN 9): the benchmark baseline and a fallback, chosen per call with
// kiln_bn_params.impl = KILN_BN_IMPL_CUDNN (batchnorm.cu decides which ops come here).
//   training forward   cudnnBatchNormalizationForwardTraining(Ex), no running statistics; kiln
//                      then updates the moving statistics itself from cuDNN's saved mean and
//                      1/std (var = 1/invstd^2 - eps), so both conventions and the n = 1 rule
//                      of docs/batchnorm.md hold as on the other paths;
//   inference forward  cudnnBatchNormalizationForwardInference;
//   training backward  cudnnBatchNormalizationBackward(Ex).
// Modes: PER_ACTIVATION for (N, C), SPATIAL_PERSISTENT for channels-last images, SPATIAL for
// channels-first ones (and for inference). The Ex calls are used when cuDNN asks for no reserve
// space (kiln has nowhere to keep one between the passes), the plain calls otherwise.
#include "bn_reduce.cuh"

namespace {

// The descriptors of one call, destroyed on every path out.
struct dnn_descs {
    cudnnTensorDescriptor_t x = NULL, bn = NULL;
    ~dnn_descs() {
        if (x) (void)cudnnDestroyTensorDescriptor(x);
        if (bn) (void)cudnnDestroyTensorDescriptor(bn);
    }
};

kiln_status dnn_type(kiln_dtype t, cudnnDataType_t *out) {
    switch (t) {
    case KILN_F32: *out = CUDNN_DATA_FLOAT; return KILN_OK;
    case KILN_F16: *out = CUDNN_DATA_HALF; return KILN_OK;
    case KILN_BF16: *out = CUDNN_DATA_BFLOAT16; return KILN_OK;
    default:
        return kiln_error(KILN_ERR_DTYPE, "batchnorm (cuDNN): %s is not supported", kiln_dtype_name(t));
    }
}

// x as a 4-D cuDNN tensor: (N, C) -> N C 1 1; channels last (N, H, W, C) or (N, L, C) in NHWC
// format; channels first (N, C, H, W) or (N, C, L) in NCHW format.
kiln_status make_descs(const kiln_tensor *x, kiln_layout layout, bool inference, dnn_descs *d,
                       cudnnBatchNormMode_t *mode) {
    const bool nchw = layout == KILN_LAYOUT_NCHW; // (a 2-D x is per-feature whatever it says)
    int64_t dims[4] = {1, 1, 1, 1}; // N, C, H, W
    if (x->ndim == 2) {
        dims[0] = x->shape[0];
        dims[1] = x->shape[1];
    } else if (nchw) {
        for (int k = 0; k < x->ndim; k++) dims[k] = x->shape[k];
    } else {
        dims[0] = x->shape[0];
        dims[1] = x->shape[x->ndim - 1];
        for (int k = 1; k < x->ndim - 1; k++) dims[k + 1] = x->shape[k];
    }
    for (int k = 0; k < 4; k++)
        if (dims[k] > INT32_MAX)
            return kiln_error(KILN_ERR_UNSUPPORTED, "batchnorm (cuDNN): dimension %lld is past cuDNN's int range",
                              (long long)dims[k]);
    cudnnDataType_t t = CUDNN_DATA_FLOAT;
    KILN_TRY(dnn_type(x->dtype, &t));
    *mode = x->ndim == 2 ? CUDNN_BATCHNORM_PER_ACTIVATION
            : (!nchw && !inference) ? CUDNN_BATCHNORM_SPATIAL_PERSISTENT
                                    : CUDNN_BATCHNORM_SPATIAL;
    KILN_CUDNN_TRY(cudnnCreateTensorDescriptor(&d->x));
    KILN_CUDNN_TRY(cudnnCreateTensorDescriptor(&d->bn));
    KILN_CUDNN_TRY(cudnnSetTensor4dDescriptor(d->x, (nchw || x->ndim == 2) ? CUDNN_TENSOR_NCHW : CUDNN_TENSOR_NHWC,
                                              t, (int)dims[0], (int)dims[1], (int)dims[2], (int)dims[3]));
    KILN_CUDNN_TRY(cudnnDeriveBNTensorDescriptor(d->bn, d->x, *mode));
    return KILN_OK;
}

// Scratch: C + C floats for unwanted dgamma, dbeta, then cuDNN's workspace; every slice 256-byte
// aligned. Nothing is written into it here: a call with gamma and beta given queues no fill.
struct dnn_scratch {
    float *dgamma, *dbeta;
    void *work;
};

kiln_status get_scratch(kiln_backend *be, int64_t C, size_t work_bytes, dnn_scratch *s) {
    const size_t slice = ((size_t)C * sizeof(float) + 255) & ~(size_t)255;
    void *base = NULL;
    KILN_TRY(kiln_cuda_scratch(be, 2 * slice + work_bytes, &base));
    char *b = static_cast<char *>(base);
    s->dgamma = reinterpret_cast<float *>(b);
    s->dbeta = reinterpret_cast<float *>(b + slice);
    s->work = work_bytes ? b + 2 * slice : NULL;
    return KILN_OK;
}

struct fill_ones {
    float *p;
    __device__ void operator()(int64_t i) const { p[i] = 1.0f; }
};

// gamma = 1 and beta = 0 for a layer without scale or center: the context keeps C of each,
// filled once and again only when a layer with more channels comes (they outlive the call, so
// they are not in the scratch buffer, which the next op may overwrite).
kiln_status bn_constants(kiln_backend *be, int64_t C, const float **ones, const float **zeros) {
    kiln_cuda_ctx *c = kiln_cuda_ctx_of(be);
    if (C > c->bn_const_c) {
        const size_t bytes = (size_t)C * sizeof(float);
        void *o = NULL, *z = NULL;
        KILN_TRY(kiln_cuda_alloc(be, bytes, &o));
        kiln_status s = kiln_cuda_alloc(be, bytes, &z);
        if (s == KILN_OK)
            s = kiln_cuda_map(c->stream, C, fill_ones{static_cast<float *>(o)}, "launch of fill_ones");
        if (s == KILN_OK)
            s = kiln_cuda_check_rt(cudaMemsetAsync(z, 0, bytes, c->stream), "cudaMemsetAsync(zeros)",
                                   __FILE__, __LINE__);
        if (s != KILN_OK) {
            kiln_cuda_pool_release(c->pool, o);
            kiln_cuda_pool_release(c->pool, z);
            return s;
        }
        kiln_cuda_pool_release(c->pool, c->bn_ones); // queued work still using them runs first
        kiln_cuda_pool_release(c->pool, c->bn_zeros);
        c->bn_ones = static_cast<float *>(o);
        c->bn_zeros = static_cast<float *>(z);
        c->bn_const_c = C;
    }
    *ones = c->bn_ones;
    *zeros = c->bn_zeros;
    return KILN_OK;
}

// gamma and beta of a call: the layer's own, or the context's constants when it has none (the
// backward reads no beta).
kiln_status gamma_beta(kiln_backend *be, const kiln_op *op, int64_t C, const float **gamma,
                       const float **beta) {
    const kiln_bn_args &a = op->bn;
    const bool need_beta = op->type != KILN_OP_BN_BWD;
    const float *ones = NULL, *zeros = NULL;
    if (!a.gamma || (need_beta && !a.beta)) KILN_TRY(bn_constants(be, C, &ones, &zeros));
    *gamma = a.gamma ? static_cast<const float *>(a.gamma->data) : ones;
    *beta = a.beta ? static_cast<const float *>(a.beta->data) : zeros;
    return KILN_OK;
}

// moving = keep * moving + w * batch, from cuDNN's saved mean and 1/std
struct moving_update {
    float *mm, *mv;
    const float *mean, *invstd;
    double keep, w, eps;
    int64_t n;
    bool unbiased;
    __device__ void operator()(int64_t c) const {
        const double inv = invstd[c], var0 = 1.0 / (inv * inv) - eps;
        const double var = var0 < 0.0 ? 0.0 : var0; // keeps a NaN
        const double m = kiln_bn_mean_rule((double)mean[c], var);
        mm[c] = kiln_bn_moving(mm[c], m, keep, w);
        mv[c] = kiln_bn_moving(mv[c], kiln_bn_sample_var(var, n, unbiased), keep, w);
    }
};

} // namespace

extern "C" kiln_status kiln_cuda_batchnorm_cudnn(kiln_backend *be, const kiln_op *op) {
    kiln_status s = KILN_OK;
    cudnnHandle_t h = kiln_cuda_cudnn(be, &s);
    if (!h) return s;
    const kiln_bn_args &a = op->bn; // BN_FWD_TRAIN, BN_FWD_INFER or BN_BWD: x is given
    const kiln_bn_geom g = kiln_bn_geometry(a.x, a.layout);
    const bool inference = op->type == KILN_OP_BN_FWD_INFER;
    dnn_descs d;
    cudnnBatchNormMode_t mode;
    KILN_TRY(make_descs(a.x, a.layout, inference, &d, &mode));
    const cudnnBatchNormOps_t ops = CUDNN_BATCHNORM_OPS_BN;
    const float one = 1.0f, zero = 0.0f;
    const double eps = (double)a.epsilon;
    size_t work = 0, reserve = 0;
    if (!inference)
        KILN_CUDNN_TRY(cudnnGetBatchNormalizationTrainingExReserveSpaceSize(h, mode, ops, NULL, d.x, &reserve));
    if (op->type == KILN_OP_BN_FWD_TRAIN && reserve == 0)
        KILN_CUDNN_TRY(cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize(h, mode, ops, d.x, NULL, d.x, d.bn,
                                                                               NULL, &work));
    if (op->type == KILN_OP_BN_BWD && reserve == 0)
        KILN_CUDNN_TRY(cudnnGetBatchNormalizationBackwardExWorkspaceSize(h, mode, ops, d.x, d.x, d.x, NULL, d.x,
                                                                        d.bn, NULL, &work));
    dnn_scratch sc;
    KILN_TRY(get_scratch(be, g.c, work, &sc));
    const float *gamma = NULL, *beta = NULL;
    KILN_TRY(gamma_beta(be, op, g.c, &gamma, &beta));
    const void *x = a.x->data;
    switch (op->type) {
    case KILN_OP_BN_FWD_TRAIN: {
        void *y = a.y->data, *sm = a.save_mean->data, *sv = a.save_invstd->data;
        if (reserve == 0)
            KILN_CUDNN_TRY(cudnnBatchNormalizationForwardTrainingEx(
                h, mode, ops, &one, &zero, d.x, x, NULL, NULL, d.x, y, d.bn, gamma, beta, 0.0, NULL, NULL,
                eps, sm, sv, NULL, sc.work, work, NULL, 0));
        else
            KILN_CUDNN_TRY(cudnnBatchNormalizationForwardTraining(h, mode, &one, &zero, d.x, x, d.x, y, d.bn,
                                                                  gamma, beta, 0.0, NULL, NULL, eps, sm, sv));
        if (a.moving_mean) {
            moving_update f = {static_cast<float *>(a.moving_mean->data), static_cast<float *>(a.moving_var->data),
                               static_cast<const float *>(sm), static_cast<const float *>(sv),
                               a.keep, a.weight, eps, g.n, a.unbiased};
            KILN_TRY(kiln_cuda_map(kiln_cuda_stream(be), g.c, f, "launch of moving_update"));
        }
        return KILN_OK;
    }
    case KILN_OP_BN_FWD_INFER:
        KILN_CUDNN_TRY(cudnnBatchNormalizationForwardInference(
            h, mode, &one, &zero, d.x, x, d.x, a.y->data, d.bn, gamma, beta,
            a.mean->data, a.var->data, eps));
        return KILN_OK;
    case KILN_OP_BN_BWD: {
        const void *dy = a.dy->data, *sm = a.mean->data, *sv = a.invstd->data;
        void *dx = a.dx->data;
        void *dg = a.dgamma ? a.dgamma->data : sc.dgamma, *db = a.dbeta ? a.dbeta->data : sc.dbeta;
        if (reserve == 0)
            KILN_CUDNN_TRY(cudnnBatchNormalizationBackwardEx(
                h, mode, ops, &one, &zero, &one, &zero, d.x, x, NULL, NULL, d.x, dy, NULL, NULL, d.x, dx,
                d.bn, gamma, NULL, dg, db, eps, sm, sv, NULL, sc.work, work, NULL, 0));
        else
            KILN_CUDNN_TRY(cudnnBatchNormalizationBackward(h, mode, &one, &zero, &one, &zero, d.x, x, d.x, dy,
                                                           d.x, dx, d.bn, gamma, dg, db, eps, sm, sv));
        return KILN_OK;
    }
    default:
        return kiln_error(KILN_ERR_UNSUPPORTED, "batchnorm (cuDNN): %s has no cuDNN counterpart",
                          kiln_op_name(op->type));
    }
}
