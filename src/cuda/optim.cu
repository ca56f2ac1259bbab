// cuda/optim.cu: the fused optimizer steps (Adam / AdamW / AMSGrad, SGD with momentum and
// Nesterov) as one kernel per parameter tensor, and the sum of squares and clip factor of
// global-norm clipping.
//
// The update arithmetic is the CPU's (src/cpu/optim.c) operation for operation, with
// round-to-nearest intrinsics (__fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn, __fsqrt_rn) that
// nvcc never fuses into an FMA, so both backends give the same bits. Slots: src/optim_ops.c.
// The sum of squares is deterministic: per-block double sums of a grid fixed by the size alone,
// then one block adds the partials in a fixed tree order.
#include "common.cuh"

namespace {

// w = w - (w * wd) * lr, when weight decay is on
__device__ __forceinline__ float decay(float w, bool on, float wd, float lr) {
    return on ? __fsub_rn(w, __fmul_rn(__fmul_rn(w, wd), lr)) : w;
}

struct adam_step {
    float *w, *m, *v, *vh; // vh NULL unless amsgrad
    const float *g, *gs;   // gs NULL without grad_scale
    float alpha, omb1, omb2, eps, wd, lr;
    bool decay_on;
    __device__ void operator()(int64_t i) const {
        float gv = g[i];
        if (gs) gv = __fmul_rn(gv, gs[0]);
        const float wv = decay(w[i], decay_on, wd, lr);
        const float mv = __fadd_rn(m[i], __fmul_rn(__fsub_rn(gv, m[i]), omb1));
        const float vv = __fadd_rn(v[i], __fmul_rn(__fsub_rn(__fmul_rn(gv, gv), v[i]), omb2));
        float vs = vv;
        if (vh) {
            const float h = vh[i];
            vs = (vv > h || vv != vv) ? vv : h;
            vh[i] = vs;
        }
        const float step = __fdiv_rn(__fmul_rn(mv, alpha), __fadd_rn(__fsqrt_rn(vs), eps));
        w[i] = __fsub_rn(wv, step);
        m[i] = mv;
        v[i] = vv;
    }
};

struct sgd_step {
    float *w, *u; // u NULL without momentum
    const float *g, *gs;
    float lr, mom, wd;
    bool nesterov, decay_on;
    __device__ void operator()(int64_t i) const {
        float gv = g[i];
        if (gs) gv = __fmul_rn(gv, gs[0]);
        const float wv = decay(w[i], decay_on, wd, lr), glr = __fmul_rn(gv, lr);
        if (!u) {
            w[i] = __fsub_rn(wv, glr);
            return;
        }
        const float uv = __fsub_rn(__fmul_rn(u[i], mom), glr);
        u[i] = uv;
        w[i] = __fadd_rn(wv, nesterov ? __fsub_rn(__fmul_rn(uv, mom), glr) : uv);
    }
};

constexpr int SUMSQ_THREADS = 256;
constexpr int64_t SUMSQ_PER_BLOCK = 8192; // elements per block (at most SUMSQ_MAX_BLOCKS blocks)
constexpr int64_t SUMSQ_MAX_BLOCKS = 1024;

// partial[b] = sum of g[i]^2 over the block's grid-stride share, in double
__global__ void sumsq_partial_kernel(const float *g, int64_t n, double *partial) {
    __shared__ double smem[32];
    double acc = 0.0;
    KILN_CUDA_FOR(i, n) acc += (double)g[i] * (double)g[i];
    acc = kiln_block_reduce(acc, kiln_sum_op{}, smem);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// acc[0] = (float)(acc[0] + sum of the partials), one block
__global__ void sumsq_final_kernel(const double *partial, int64_t blocks, float *acc_out) {
    __shared__ double smem[32];
    double acc = 0.0;
    for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x) acc += partial[b];
    acc = kiln_block_reduce(acc, kiln_sum_op{}, smem);
    if (threadIdx.x == 0) acc_out[0] = (float)((double)acc_out[0] + acc);
}

// scale = c * min(1 / norm, 1 / c) + (norm - norm), norm = sqrt(sumsq)
__global__ void clip_scale_kernel(const float *sumsq, float c, float *scale) {
    const float norm = __fsqrt_rn(sumsq[0]);
    const float inv = __fdiv_rn(1.0f, norm), invc = __fdiv_rn(1.0f, c);
    const float lo = inv < invc ? inv : invc;
    scale[0] = __fadd_rn(__fmul_rn(c, lo), __fsub_rn(norm, norm));
}

const float *data_or_null(const kiln_tensor *t) { return t ? (const float *)t->data : NULL; }

kiln_status sum_squares(kiln_backend *be, const kiln_op *op) {
    const cudaStream_t s = kiln_cuda_stream(be);
    const int64_t n = kiln_tensor_numel(op->src[0]);
    int64_t blocks = (n + SUMSQ_PER_BLOCK - 1) / SUMSQ_PER_BLOCK;
    blocks = blocks < 1 ? 1 : blocks > SUMSQ_MAX_BLOCKS ? SUMSQ_MAX_BLOCKS : blocks;
    void *scratch = NULL;
    KILN_TRY(kiln_cuda_scratch(be, (size_t)blocks * sizeof(double), &scratch));
    double *partial = (double *)scratch;
    sumsq_partial_kernel<<<(unsigned)blocks, SUMSQ_THREADS, 0, s>>>(
        (const float *)op->src[0]->data, n, partial);
    KILN_CUDA_CHECK_LAUNCH("sumsq_partial_kernel");
    sumsq_final_kernel<<<1, SUMSQ_THREADS, 0, s>>>(partial, blocks, (float *)op->dst[0]->data);
    KILN_CUDA_CHECK_LAUNCH("sumsq_final_kernel");
    return KILN_OK;
}

} // namespace

extern "C" kiln_status kiln_cuda_optim(kiln_backend *be, const kiln_op *op) {
    const cudaStream_t s = kiln_cuda_stream(be);
    switch (op->type) {
    case KILN_OP_ADAM: {
        adam_step f{(float *)op->dst[0]->data,    (float *)op->dst[1]->data,
                    (float *)op->dst[2]->data,    op->dst[3] ? (float *)op->dst[3]->data : NULL,
                    (const float *)op->src[0]->data, data_or_null(op->src[1]),
                    op->f[0], op->f[1], op->f[2], op->f[3], op->f[4], op->f[5], op->i[1] != 0};
        return kiln_cuda_map(s, kiln_tensor_numel(op->dst[0]), f, "adam_update");
    }
    case KILN_OP_SGD: {
        sgd_step f{(float *)op->dst[0]->data, op->dst[1] ? (float *)op->dst[1]->data : NULL,
                   (const float *)op->src[0]->data, data_or_null(op->src[1]),
                   op->f[0], op->f[1], op->f[2], op->i[0] != 0, op->i[2] != 0};
        return kiln_cuda_map(s, kiln_tensor_numel(op->dst[0]), f, "sgd_update");
    }
    case KILN_OP_SUMSQ_ACC: return sum_squares(be, op);
    default: // CLIP_SCALE
        clip_scale_kernel<<<1, 1, 0, s>>>((const float *)op->src[0]->data, op->f[0],
                                          (float *)op->dst[0]->data);
        KILN_CUDA_CHECK_LAUNCH("clip_scale_kernel");
        return KILN_OK;
    }
}
