// cuda/optim.cu: the fused optimizer steps (Adam / AdamW / AMSGrad, SGD with momentum and
// Nesterov), one kernel per parameter tensor or group, and the sum of squares and clip factor
// of global-norm clipping.
//
// The update arithmetic is the CPU's (src/backends/cpu/optim.c) operation for operation, with
// round-to-nearest intrinsics (__fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn, __fsqrt_rn) that
// nvcc never fuses into an FMA, so both backends give the same bits. Arguments: kiln_adam_args,
// kiln_sgd_args (src/ops/op_args.h).
// One kernel launch per op: a single update is a parameter group of one (optim_group.h), a
// group of up to 32 tensors is one launch over their concatenated elements.
// The sum of squares is deterministic: per-block double sums of a grid fixed by the size alone,
// then one block adds the partials in a fixed tree order.
#include "common.cuh"

namespace {

// w = w - (w * wd) * lr, when weight decay is on
__device__ __forceinline__ float decay(float w, bool on, float wd, float lr) {
    return on ? __fsub_rn(w, __fmul_rn(__fmul_rn(w, wd), lr)) : w;
}

// A parameter group's device pointers, passed by value (about 1.6 KB of kernel parameters):
// tensor k holds elements [start[k], start[k + 1]) of the flattened group.
struct group_ptrs {
    float *w[KILN_GROUP_MAX];
    float *m[KILN_GROUP_MAX], *v[KILN_GROUP_MAX], *v_hat[KILN_GROUP_MAX]; // Adam (v_hat or NULL)
    float *velocity[KILN_GROUP_MAX];                                      // SGD, or NULL
    const float *g[KILN_GROUP_MAX];
    int64_t start[KILN_GROUP_MAX + 1];
    int n;
};

// Adam on element j of tensor k (the op's hyperparameters in a; its pointers unused here)
struct adam_step {
    kiln_adam_args a;
    __device__ void operator()(const group_ptrs &p, int k, int64_t j, const float *gs) const {
        float *w = p.w[k], *m = p.m[k], *v = p.v[k], *vh = p.v_hat[k];
        float gv = p.g[k][j];
        if (gs) gv = __fmul_rn(gv, gs[0]);
        const float wv = decay(w[j], a.decay_on, a.weight_decay, a.lr);
        const float mv = __fadd_rn(m[j], __fmul_rn(__fsub_rn(gv, m[j]), a.one_minus_beta_1));
        const float vv =
            __fadd_rn(v[j], __fmul_rn(__fsub_rn(__fmul_rn(gv, gv), v[j]), a.one_minus_beta_2));
        float vs = vv;
        if (vh) {
            const float h = vh[j];
            vs = (vv > h || vv != vv) ? vv : h;
            vh[j] = vs;
        }
        const float step =
            __fdiv_rn(__fmul_rn(mv, a.alpha), __fadd_rn(__fsqrt_rn(vs), a.epsilon));
        w[j] = __fsub_rn(wv, step);
        m[j] = mv;
        v[j] = vv;
    }
};

// SGD on element j of tensor k (its velocity NULL without momentum; the op's hyperparameters
// in a, its pointers unused here)
struct sgd_step {
    kiln_sgd_args a;
    __device__ void operator()(const group_ptrs &p, int k, int64_t j, const float *gs) const {
        float *w = p.w[k], *u = p.velocity[k];
        float gv = p.g[k][j];
        if (gs) gv = __fmul_rn(gv, gs[0]);
        const float wv = decay(w[j], a.decay_on, a.weight_decay, a.lr), glr = __fmul_rn(gv, a.lr);
        if (!u) {
            w[j] = __fsub_rn(wv, glr);
            return;
        }
        const float uv = __fsub_rn(__fmul_rn(u[j], a.momentum), glr);
        u[j] = uv;
        w[j] = __fadd_rn(wv, a.nesterov ? __fsub_rn(__fmul_rn(uv, a.momentum), glr) : uv);
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

float *data_or_null(kiln_tensor *t) { return t ? (float *)t->data : NULL; }

// one launch over the group's elements; grad_scale: 1 value or NULL
template <class Step>
kiln_status run_group(cudaStream_t s, const kiln_param_group *grp, const kiln_tensor *grad_scale,
                      const Step &step, const char *name) {
    group_ptrs p;
    memset(&p, 0, sizeof p);
    p.n = grp->n;
    p.start[0] = 0;
    for (int k = 0; k < grp->n; k++) {
        p.w[k] = (float *)grp->w[k]->data;
        p.g[k] = (const float *)grp->g[k]->data;
        p.m[k] = data_or_null(grp->m[k]);
        p.v[k] = data_or_null(grp->v[k]);
        p.v_hat[k] = data_or_null(grp->v_hat[k]);
        p.velocity[k] = data_or_null(grp->velocity[k]);
        p.start[k + 1] = p.start[k] + kiln_tensor_numel(grp->w[k]);
    }
    if (p.start[p.n] == 0) return KILN_OK; // nothing to update (a zero-block grid is invalid)
    const float *gs = grad_scale ? (const float *)grad_scale->data : NULL;
    KILN_LAUNCH(group_kernel<Step>, kiln_cuda_blocks(p.start[p.n], KILN_CUDA_BLOCK), KILN_CUDA_BLOCK, 0, s)(
        p, gs, step);
    return kiln_cuda_check_rt(cudaGetLastError(), name, __FILE__, __LINE__);
}

constexpr int SUMSQ_THREADS = 256;
constexpr int64_t SUMSQ_PER_BLOCK = 8192; // elements per block (at most SUMSQ_MAX_BLOCKS blocks)
constexpr int64_t SUMSQ_MAX_BLOCKS = 1024;

// partial[b] = sum of g[i]^2 over the block's grid-stride share, in double
__global__ void sumsq_partial_kernel(const float *g, int64_t n, double *partial) {
    KILN_SHARED(double, smem, [32]);
    double acc = 0.0;
    KILN_CUDA_FOR(i, n) acc += (double)g[i] * (double)g[i];
    acc = kiln_block_reduce(acc, kiln_sum_op{}, smem);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// acc[0] = (float)(acc[0] + sum of the partials), one block
__global__ void sumsq_final_kernel(const double *partial, int64_t blocks, float *acc_out) {
    KILN_SHARED(double, smem, [32]);
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

kiln_status sum_squares(kiln_backend *be, const kiln_sumsq_args &a) {
    const cudaStream_t s = kiln_cuda_stream(be);
    const int64_t n = kiln_tensor_numel(a.g);
    int64_t blocks = (n + SUMSQ_PER_BLOCK - 1) / SUMSQ_PER_BLOCK;
    blocks = blocks < 1 ? 1 : blocks > SUMSQ_MAX_BLOCKS ? SUMSQ_MAX_BLOCKS : blocks;
    void *scratch = NULL;
    KILN_TRY(kiln_cuda_scratch(be, (size_t)blocks * sizeof(double), &scratch));
    double *partial = (double *)scratch;
    KILN_LAUNCH(sumsq_partial_kernel, (unsigned)blocks, SUMSQ_THREADS, 0, s)((const float *)a.g->data, n,
                                                                    partial);
    KILN_CUDA_CHECK_LAUNCH("sumsq_partial_kernel");
    KILN_LAUNCH(sumsq_final_kernel, 1, SUMSQ_THREADS, 0, s)(partial, blocks, (float *)a.acc->data);
    KILN_CUDA_CHECK_LAUNCH("sumsq_final_kernel");
    return KILN_OK;
}

} // namespace

extern "C" kiln_status kiln_cuda_optim(kiln_backend *be, const kiln_op *op) {
    const cudaStream_t s = kiln_cuda_stream(be);
    switch (op->type) {
    case KILN_OP_ADAM:
        return run_group(s, op->adam.group, op->adam.grad_scale, adam_step{op->adam},
                         "launch of adam_update");
    case KILN_OP_SGD:
        return run_group(s, op->sgd.group, op->sgd.grad_scale, sgd_step{op->sgd},
                         "launch of sgd_update");
    case KILN_OP_SUMSQ_ACC: return sum_squares(be, op->sumsq);
    default: // CLIP_SCALE
        KILN_LAUNCH(clip_scale_kernel, 1, 1, 0, s)((const float *)op->clip.sumsq->data, op->clip.clip_norm,
                                          (float *)op->clip.scale->data);
        KILN_CUDA_CHECK_LAUNCH("clip_scale_kernel");
        return KILN_OK;
    }
}
