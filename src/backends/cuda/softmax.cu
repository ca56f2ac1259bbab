// cuda/softmax.cu: softmax, fused softmax + sparse categorical cross-entropy and its backward,
// argmax and accuracy, over the last axis (rows, k), with the CPU's semantics
// (src/backends/cpu/softmax.c):
//  - a row is handled by one warp (k <= 1024) or one block of 256 threads (wider rows); each
//    thread takes the row's elements j = lane, lane + group size, ...; partial results meet in
//    fixed-order __shfl_xor_sync butterflies (and, per block, a fixed-order pass over the warps),
//    so results repeat bit for bit;
//  - softmax is max-subtracted, in double like the CPU: m = the row's max (NaN when any value
//    is NaN; 0 when every value is -inf, so NaN follows), s = sum exp(x - m), p = exp(x - m)/s,
//    loss = m + log(s) - x[label], NaN for a label outside [0, k);
//  - argmax = the first index of the largest value, comparing with > as the CPU's scan does:
//    NaNs never win, except that a NaN in column 0 gives 0 (the CPU's scan never leaves it);
//  - accuracy counts rows whose argmax equals the label, in integers, and stores a float.
#include "common.cuh"

#define ROW_BLOCK KILN_CUDA_BLOCK // threads per block in both layouts
#define WARP_ROW_MAX_K 1024       // widest row given to a single warp

// ---- one group of threads per row ------------------------------------------------------------

// kBlock: the group is the whole block, else one warp. Every thread of a group loops over the
// same rows, so each group-wide reduction has all its threads.
template <bool kBlock> struct row_group {
    int64_t first, step; // this group's first row and the distance to its next
    int lane, size;      // this thread's place in the group and the group's size
    __device__ row_group() {
        if constexpr (kBlock) {
            first = blockIdx.x;
            step = gridDim.x;
            lane = (int)threadIdx.x;
            size = (int)blockDim.x;
        } else {
            first = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
            step = (int64_t)gridDim.x * (blockDim.x / 32);
            lane = (int)(threadIdx.x & 31);
            size = 32;
        }
    }
    template <class T, class Op> __device__ T reduce(T v, Op op, T *smem) const {
        if constexpr (kBlock) return kiln_block_reduce(v, op, smem);
        else return kiln_warp_reduce(v, op);
    }
};

// launches kernel<kBlock> with a grid of row groups for `rows` rows of `k` values
#define LAUNCH_ROWS(kernel, rows, k, stream, ...)                                              \
    do {                                                                                       \
        if ((k) <= WARP_ROW_MAX_K)                                                             \
            KILN_LAUNCH(kernel<false>, kiln_cuda_blocks((rows), ROW_BLOCK / 32), ROW_BLOCK, 0, (stream))( \
                __VA_ARGS__);                                                                  \
        else                                                                                   \
            KILN_LAUNCH(kernel<true>, kiln_cuda_blocks((rows), 1), ROW_BLOCK, 0, (stream))(__VA_ARGS__); \
        KILN_CUDA_CHECK_LAUNCH(#kernel);                                                       \
    } while (0)

struct max_nan_op { // the larger value; NaN wins
    __device__ float operator()(float a, float b) const {
        return isnan(a) ? a : isnan(b) ? b : b > a ? b : a;
    }
};

// ---- softmax and softmax + cross-entropy -------------------------------------------------------

// p (rows, k) = softmax(x (rows, k)); with labels (rows): loss (rows) = logsumexp - x[label].
// p may alias x: every read of a row happens before the group's last reduction, every write
// after it, and each thread writes only what it has just read.
template <bool kBlock>
__global__ void softmax_kernel(const float *x, float *p, const int32_t *labels, float *loss,
                               int64_t rows, int64_t k) {
    KILN_SHARED(float, smem_f, [32]);
    KILN_SHARED(double, smem_d, [32]);
    const row_group<kBlock> g;
    for (int64_t r = g.first; r < rows; r += g.step) {
        const float *xr = x + r * k;
        float mf = -INFINITY;
        for (int64_t j = g.lane; j < k; j += g.size) mf = max_nan_op()(mf, xr[j]);
        double m = g.reduce(mf, max_nan_op(), smem_f);
        if (isinf(m) && m < 0) m = 0.0; // every logit -inf: NaN follows, as on the CPU
        int32_t label = 0;
        float xl = 0.0f;
        if (labels && g.lane == 0) {
            label = labels[r];
            if (label >= 0 && label < k) xl = xr[label];
        }
        double s = 0.0;
        for (int64_t j = g.lane; j < k; j += g.size) s += exp((double)xr[j] - m);
        s = g.reduce(s, kiln_sum_op(), smem_d);
        for (int64_t j = g.lane; j < k; j += g.size) p[r * k + j] = (float)(exp((double)xr[j] - m) / s);
        if (labels && g.lane == 0)
            loss[r] = label < 0 || label >= k ? KILN_CUDA_NAN_F : (float)(m + log(s) - (double)xl);
    }
}

// dlogits = scale * (probs - onehot(label)); a row with a bad label is all NaN
struct xent_back_f {
    const float *p;
    const int32_t *labels;
    float *dx;
    float scale;
    int64_t k;
    __device__ void operator()(int64_t i) const {
        const int64_t r = i / k, j = i % k;
        const int32_t l = labels[r];
        dx[i] = l < 0 || l >= k ? KILN_CUDA_NAN_F
                                : __fmul_rn(scale, __fsub_rn(p[i], j == l ? 1.0f : 0.0f));
    }
};

extern "C" kiln_status kiln_cuda_softmax(kiln_backend *be, const kiln_op *op) {
    const kiln_softmax_args &a = op->softmax;
    const kiln_tensor *x = op->type == KILN_OP_SOFTMAX_XENT_BACK ? a.probs : a.x;
    const int64_t k = x->shape[x->ndim - 1], rows = kiln_tensor_numel(x) / k; // k >= 1: src/ops/ops.c
    const float *xp = (const float *)x->data;
    cudaStream_t st = kiln_cuda_stream(be);
    if (rows == 0) return KILN_OK;
    switch (op->type) {
    case KILN_OP_SOFTMAX:
        LAUNCH_ROWS(softmax_kernel, rows, k, st, xp, (float *)a.y->data, NULL, NULL, rows, k);
        return KILN_OK;
    case KILN_OP_SOFTMAX_XENT:
        LAUNCH_ROWS(softmax_kernel, rows, k, st, xp, (float *)a.y->data,
                    (const int32_t *)a.labels->data, (float *)a.loss->data, rows, k);
        return KILN_OK;
    default: { // x: the probabilities
        xent_back_f f = {xp, (const int32_t *)a.labels->data, (float *)a.dx->data, a.scale, k};
        return kiln_cuda_map(st, rows * k, f, "softmax_xent_backward");
    }
    }
}

// ---- argmax and accuracy -----------------------------------------------------------------------

#define NO_INDEX INT64_MAX

struct arg_best { // a candidate: value and column; j == NO_INDEX for none
    float v;
    int64_t j;
};

__device__ __forceinline__ arg_best kiln_shfl_xor(arg_best a, int o) {
    return arg_best{__shfl_xor_sync(0xffffffffu, a.v, o),
                    (int64_t)__shfl_xor_sync(0xffffffffu, (long long)a.j, o)};
}

struct arg_best_op { // the larger value, the lower column on ties: order-independent
    __device__ arg_best operator()(arg_best a, arg_best b) const {
        if (b.j == NO_INDEX) return a;
        if (a.j == NO_INDEX) return b;
        return b.v > a.v || (b.v == a.v && b.j < a.j) ? b : a;
    }
};

// idx (rows) = argmax of each row of x (rows, k)
template <bool kBlock>
__global__ void argmax_kernel(const float *x, int32_t *idx, int64_t rows, int64_t k) {
    KILN_SHARED(arg_best, smem, [32]);
    const row_group<kBlock> g;
    for (int64_t r = g.first; r < rows; r += g.step) {
        const float *xr = x + r * k;
        arg_best best = {-INFINITY, NO_INDEX};
        for (int64_t j = g.lane; j < k; j += g.size)
            if (!isnan(xr[j])) best = arg_best_op()(best, arg_best{xr[j], j});
        best = g.reduce(best, arg_best_op(), smem);
        if (g.lane == 0) idx[r] = isnan(xr[0]) ? 0 : (int32_t)best.j;
    }
}

// correct[0] = (float) #{r : idx[r] == labels[r]}; one block, integer counts
__global__ void count_matches_kernel(const int32_t *idx, const int32_t *labels, int64_t rows,
                                     float *correct) {
    KILN_SHARED(long long, smem, [32]);
    long long n = 0;
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) n += idx[r] == labels[r];
    n = kiln_block_reduce(n, kiln_sum_op(), smem);
    if (threadIdx.x == 0) correct[0] = (float)n;
}

extern "C" kiln_status kiln_cuda_argmax(kiln_backend *be, const kiln_op *op) {
    const kiln_argmax_args &a = op->argmax;
    const kiln_tensor *x = a.x;
    const int64_t k = x->shape[x->ndim - 1], rows = kiln_tensor_numel(x) / k;
    cudaStream_t st = kiln_cuda_stream(be);
    const bool accuracy = op->type == KILN_OP_ACCURACY;
    int32_t *idx = NULL;
    if (accuracy) KILN_TRY(kiln_cuda_scratch(be, (size_t)rows * sizeof(int32_t), (void **)&idx));
    else idx = (int32_t *)a.idx->data;
    if (rows > 0) LAUNCH_ROWS(argmax_kernel, rows, k, st, (const float *)x->data, idx, rows, k);
    if (accuracy) { // also with no rows: the count 0 is written
        KILN_LAUNCH(count_matches_kernel, 1, 1024, 0, st)(idx, (const int32_t *)a.labels->data, rows,
                                                 (float *)a.correct->data);
        KILN_CUDA_CHECK_LAUNCH("count_matches_kernel");
    }
    return KILN_OK;
}
