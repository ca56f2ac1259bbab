// cuda/reduce.cu: SUM and MEAN over any set of axes (a bitmask over up to 4 dims), in double,
// deterministic: no atomics, and an order of additions that depends on the shapes only, so a
// result repeats bit for bit from run to run (and across GPUs). The CPU adds in x's row-major
// order; here partial sums are combined in a tree, so the two can differ in the last bit.
//
// The plan, made on the host from the shapes:
//  1. Dims of size 1 are dropped; neighbouring dims that are both kept or both reduced are
//     merged. x is then kept dims (ks, in output order) and reduced dims (rs), each at most 2.
//  2. Each output's R reduced values are cut into G chunks of L consecutive reduced indices
//     (G > 1 only when there are too few outputs to fill the GPU).
//  3. ROW mode, when the innermost dim is reduced and long (>= 32): one warp per (output,
//     chunk), lanes reading neighbouring addresses, a butterfly sum across the warp.
//     COL mode otherwise: one thread per (output, chunk), adding its chunk in order; threads
//     next to each other take neighbouring outputs, so the reads coalesce (sum over the batch
//     of an (N, C) tensor, say).
//  4. G == 1: the chunk's sum is the result. G > 1: sums go to scratch (G, nout) in double, and
//     a last kernel adds each output's G partials in order.
#include "common.cuh"

struct reduce_plan {
    int nk, nr;                        // kept and reduced dims after merging
    int64_t ksize[KILN_MAX_DIMS], kstride[KILN_MAX_DIMS]; // outer to inner, strides in x
    int64_t rsize[KILN_MAX_DIMS], rstride[KILN_MAX_DIMS];
    int64_t nout, R; // outputs, values per output
    int64_t G, L;    // chunks per output, reduced indices per chunk
};

// x offset of the idx-th index (row-major) of the n dims (size, stride)
__host__ __device__ __forceinline__ int64_t offset_of(int64_t idx, int n, const int64_t *size,
                                             const int64_t *stride) {
    int64_t off = 0;
#ifdef __CUDA_ARCH__ // (the host compiler does not know the pragma)
#pragma unroll
#endif
    for (int d = KILN_MAX_DIMS - 1; d >= 0; d--) {
        if (d < n) {
            off += idx % size[d] * stride[d];
            idx /= size[d];
        }
    }
    return off;
}

// The chunk's sum: to y (G == 1; divided for MEAN) or to partial[chunk][o].
__device__ __forceinline__ void put(const reduce_plan &p, float *y, double *partial, int64_t o,
                                    int64_t chunk, double acc, bool mean, double count) {
    if (p.G == 1) y[o] = (float)(mean ? acc / count : acc);
    else partial[chunk * p.nout + o] = acc;
}

__global__ void reduce_row_kernel(const float *x, float *y, double *partial, reduce_plan p,
                                  bool mean, double count) {
    const int lane = (int)(threadIdx.x & 31);
    const int64_t nwarps = (int64_t)gridDim.x * (blockDim.x / 32);
    // w is the same in all lanes of a warp, so the whole warp takes part in every shuffle
    for (int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; w < p.nout * p.G;
         w += nwarps) {
        const int64_t o = w / p.G, chunk = w % p.G;
        const float *xo = x + offset_of(o, p.nk, p.ksize, p.kstride);
        const int64_t r0 = chunk * p.L, r1 = r0 + p.L < p.R ? r0 + p.L : p.R;
        double acc = 0.0;
        for (int64_t r = r0 + lane; r < r1; r += 32) acc += xo[offset_of(r, p.nr, p.rsize, p.rstride)];
        acc = kiln_warp_reduce(acc, kiln_sum_op());
        if (lane == 0) put(p, y, partial, o, chunk, acc, mean, count);
    }
}

__global__ void reduce_col_kernel(const float *x, float *y, double *partial, reduce_plan p,
                                  bool mean, double count) {
    KILN_CUDA_FOR(t, p.nout * p.G) {
        const int64_t o = t % p.nout, chunk = t / p.nout;
        const float *xo = x + offset_of(o, p.nk, p.ksize, p.kstride);
        const int64_t r0 = chunk * p.L, r1 = r0 + p.L < p.R ? r0 + p.L : p.R;
        double acc = 0.0;
        for (int64_t r = r0; r < r1; r++) acc += xo[offset_of(r, p.nr, p.rsize, p.rstride)];
        put(p, y, partial, o, chunk, acc, mean, count);
    }
}

// y[o] = sum over chunks, in chunk order
__global__ void reduce_finish_kernel(const double *partial, float *y, int64_t nout, int64_t G,
                                     bool mean, double count) {
    KILN_CUDA_FOR(o, nout) {
        double acc = 0.0;
        for (int64_t c = 0; c < G; c++) acc += partial[c * nout + o];
        y[o] = (float)(mean ? acc / count : acc);
    }
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Steps 1 and 2 of the plan; returns whether ROW mode fits.
static bool make_plan(const kiln_tensor *x, unsigned axes, reduce_plan *p) {
    int64_t size[KILN_MAX_DIMS], stride[KILN_MAX_DIMS];
    bool red[KILN_MAX_DIMS];
    int n = 0;
    int64_t s = 1;
    for (int d = KILN_MAX_DIMS - 1; d >= 0; d--) { // x is contiguous: row-major strides
        int64_t e = d < x->ndim ? x->shape[d] : 1;
        bool r = d < x->ndim && (axes >> d & 1u);
        if (e != 1) {
            if (n > 0 && red[n - 1] == r) { // merge with the inner neighbour
                size[n - 1] *= e;
            } else {
                size[n] = e;
                stride[n] = s;
                red[n] = r;
                n++;
            }
        }
        s *= e;
    }
    // the list runs inner to outer; the plan's dims run outer to inner
    *p = reduce_plan{};
    p->nout = p->R = 1;
    for (int i = n - 1; i >= 0; i--) {
        if (red[i]) {
            p->rsize[p->nr] = size[i];
            p->rstride[p->nr++] = stride[i];
            p->R *= size[i];
        } else {
            p->ksize[p->nk] = size[i];
            p->kstride[p->nk++] = stride[i];
            p->nout *= size[i];
        }
    }
    const bool row = n > 0 && red[0] && size[0] >= 32;
    p->G = p->L = 1;
    if (p->nout == 0) return row; // nothing to write
    // enough (output, chunk) work items to fill a GPU, chunks no shorter than `min_len`
    const int64_t want = row ? 8192 : (int64_t)1 << 18, min_len = row ? 2048 : 64;
    int64_t g = ceil_div(want, p->nout), gmax = ceil_div(p->R, min_len);
    if (g > gmax) g = gmax;
    if (g < 1) g = 1;
    p->L = ceil_div(p->R, g);
    if (row) p->L = ceil_div(p->L, 32) * 32;
    if (p->L < 1) p->L = 1;
    p->G = ceil_div(p->R, p->L);
    if (p->G < 1) p->G = 1; // R == 0: one empty chunk, the sum 0 (mean 0/0 = NaN, as on the CPU)
    return row;
}

extern "C" kiln_status kiln_cuda_reduce(kiln_backend *be, const kiln_op *op) {
    const kiln_tensor *x = op->reduce.x;
    float *y = (float *)op->reduce.y->data;
    const bool mean = op->type == KILN_OP_MEAN;
    cudaStream_t st = kiln_cuda_stream(be);
    reduce_plan p;
    const bool row = make_plan(x, op->reduce.axes, &p);
    if (p.nout == 0) return KILN_OK;
    const double count = (double)kiln_tensor_numel(x) / (double)p.nout; // as the CPU divides
    double *partial = NULL;
    if (p.G > 1)
        KILN_TRY(kiln_cuda_scratch(be, (size_t)(p.G * p.nout) * sizeof(double), (void **)&partial));
    const float *xp = (const float *)x->data;
    if (row) {
        KILN_LAUNCH(reduce_row_kernel, kiln_cuda_blocks(p.nout * p.G, KILN_CUDA_BLOCK / 32), KILN_CUDA_BLOCK,
                            0, st)(xp, y, partial, p, mean, count);
        KILN_CUDA_CHECK_LAUNCH("reduce_row_kernel");
    } else {
        KILN_LAUNCH(reduce_col_kernel, kiln_cuda_blocks(p.nout * p.G, KILN_CUDA_BLOCK), KILN_CUDA_BLOCK, 0,
                            st)(xp, y, partial, p, mean, count);
        KILN_CUDA_CHECK_LAUNCH("reduce_col_kernel");
    }
    if (p.G > 1) {
        KILN_LAUNCH(reduce_finish_kernel, kiln_cuda_blocks(p.nout, KILN_CUDA_BLOCK), KILN_CUDA_BLOCK, 0, st)(
            partial, y, p.nout, p.G, mean, count);
        KILN_CUDA_CHECK_LAUNCH("reduce_finish_kernel");
    }
    return KILN_OK;
}
