// cuda/optim.cu: the fused optimizer steps (Adam / AdamW / AMSGrad, SGD with momentum and
// Nesterov), one kernel per parameter tensor or group, and the sum of squares and clip factor
// of global-norm clipping.
//
// The update arithmetic is the CPU's (src/cpu/optim.c) operation for operation, with
// round-to-nearest intrinsics (__fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn, __fsqrt_rn) that
// nvcc never fuses into an FMA, so both backends give the same bits. Slots: src/optim_ops.c.
// One kernel launch per op: a single update is a parameter group of one (optim_group.h), a
// group of up to 32 tensors is one launch over their concatenated elements.
// The sum of squares is deterministic: per-block double sums of a grid fixed by the size alone,
// then one block adds the partials in a fixed tree order.
#include "common.cuh"
#include "optim_group.h"

namespace {

// w = w - (w * wd) * lr, when weight decay is on
__device__ __forceinline__ float decay(float w, bool on, float wd, float lr) {
    return on ? __fsub_rn(w, __fmul_rn(__fmul_rn(w, wd), lr)) : w;
}

// A parameter group's device pointers, passed by value (about 1.6 KB of kernel parameters):
// tensor k holds elements [start[k], start[k + 1]) of the flattened group.
struct group_ptrs {
    float *w[KILN_GROUP_MAX], *s0[KILN_GROUP_MAX], *s1[KILN_GROUP_MAX], *s2[KILN_GROUP_MAX];
    const float *g[KILN_GROUP_MAX];
    int64_t start[KILN_GROUP_MAX + 1];
    int n;
};

// Adam on element j of tensor k (s0 m, s1 v, s2 v_hat or NULL)
struct adam_step {
    float alpha, omb1, omb2, eps, wd, lr;
    bool decay_on;
    __device__ void operator()(const group_ptrs &p, int k, int64_t j, const float *gs) const {
        float *w = p.w[k], *m = p.s0[k], *v = p.s1[k], *vh = p.s2[k];
        float gv = p.g[k][j];
        if (gs) gv = __fmul_rn(gv, gs[0]);
        const float wv = decay(w[j], decay_on, wd, lr);
        const float mv = __fadd_rn(m[j], __fmul_rn(__fsub_rn(gv, m[j]), omb1));
        const float vv = __fadd_rn(v[j], __fmul_rn(__fsub_rn(__fmul_rn(gv, gv), v[j]), omb2));
        float vs = vv;
        if (vh) {
            const float h = vh[j];
            vs = (vv > h || vv != vv) ? vv : h;
            vh[j] = vs;
        }
        const float step = __fdiv_rn(__fmul_rn(mv, alpha), __fadd_rn(__fsqrt_rn(vs), eps));
        w[j] = __fsub_rn(wv, step);
        m[j] = mv;
        v[j] = vv;
    }
};

// SGD on element j of tensor k (s0 the velocity, NULL without momentum)
struct sgd_step {
    float lr, mom, wd;
    bool nesterov, decay_on;
    __device__ void operator()(const group_ptrs &p, int k, int64_t j, const float *gs) const {
        float *w = p.w[k], *u = p.s0[k];
        float gv = p.g[k][j];
        if (gs) gv = __fmul_rn(gv, gs[0]);
        const float wv = decay(w[j], decay_on, wd, lr), glr = __fmul_rn(gv, lr);
        if (!u) {
            w[j] = __fsub_rn(wv, glr);
            return;
        }
        const float uv = __fsub_rn(__fmul_rn(u[j], mom), glr);
        u[j] = uv;
        w[j] = __fadd_rn(wv, nesterov ? __fsub_rn(__fmul_rn(uv, mom), glr) : uv);
    }
};

// every element of the group: find its tensor (the last k with start[k] <= i; empty tensors
// have start[k] == start[k + 1] and are passed over), then one step
template <class Step> __global__ void group_kernel(group_ptrs p, const float *gs, Step step) {
    KILN_CUDA_FOR(i, p.start[p.n]) {
        int lo = 0, hi = p.n - 1;
        while (lo < hi) {
            const int mid = (lo + hi + 1) / 2;
            if (p.start[mid] <= i) lo = mid;
            else hi = mid - 1;
        }
        step(p, lo, i - p.start[lo], gs);
    }
}

template <class Step>
kiln_status run_group(cudaStream_t s, const kiln_op *op, const Step &step, const char *name) {
    kiln_param_group one;
    const kiln_param_group *grp = kiln_param_group_of(op, &one);
    group_ptrs p;
    memset(&p, 0, sizeof p);
    p.n = grp->n;
    p.start[0] = 0;
    for (int k = 0; k < grp->n; k++) {
        p.w[k] = (float *)grp->w[k]->data;
        p.g[k] = (const float *)grp->g[k]->data;
        p.s0[k] = grp->s0[k] ? (float *)grp->s0[k]->data : NULL;
        p.s1[k] = grp->s1[k] ? (float *)grp->s1[k]->data : NULL;
        p.s2[k] = grp->s2[k] ? (float *)grp->s2[k]->data : NULL;
        p.start[k + 1] = p.start[k] + kiln_tensor_numel(grp->w[k]);
    }
    if (p.start[p.n] == 0) return KILN_OK; // nothing to update (a zero-block grid is invalid)
    const float *gs = op->src[1] ? (const float *)op->src[1]->data : NULL;
    group_kernel<Step><<<kiln_cuda_blocks(p.start[p.n], KILN_CUDA_BLOCK), KILN_CUDA_BLOCK, 0, s>>>(
        p, gs, step);
    return kiln_cuda_check_rt(cudaGetLastError(), name, __FILE__, __LINE__);
}

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
        adam_step f{op->f[0], op->f[1], op->f[2], op->f[3], op->f[4], op->f[5], op->i[1] != 0};
        return run_group(s, op, f, "launch of adam_update");
    }
    case KILN_OP_SGD: {
        sgd_step f{op->f[0], op->f[1], op->f[2], op->i[0] != 0, op->i[2] != 0};
        return run_group(s, op, f, "launch of sgd_update");
    }
    case KILN_OP_SUMSQ_ACC: return sum_squares(be, op);
    default: // CLIP_SCALE
        clip_scale_kernel<<<1, 1, 0, s>>>((const float *)op->src[0]->data, op->f[0],
                                          (float *)op->dst[0]->data);
        KILN_CUDA_CHECK_LAUNCH("clip_scale_kernel");
        return KILN_OK;
    }
}
