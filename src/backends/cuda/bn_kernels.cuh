// cuda/bn_kernels.cuh: kiln's batch-norm kernels (included by batchnorm.cu only, which plans
// and launches them).
//
// One kernel template, bn_kernel<RED, CL, T, VEC>, does both directions:
//   phase 1  read x (and dy), reduce per channel: Welford (count, mean, M2) for the forward,
//            sum(dy) and sum(dy (x - mean)) for the backward; warp shuffles, then shared memory
//            across the 8 warps (bn_reduce.cuh); the items read may stay in shared memory;
//   finish   per channel, in double: mean, 1/std, the moving statistics, dgamma, dbeta, and
//            the coefficients of phase 2; across blocks by Chan's merge in a fixed order;
//   phase 2  y = p ((x - hi) - lo) + q, or dx = p ((x - hi) - lo) + r dy + q, from the kept
//            items where there are any (read in reverse order: the last ones are in L2).
// Modes (docs/batchnorm.md, "Kernel design"): LOCAL, a block owns whole channels (no grid
// sync); COOP, one cooperative kernel with two grid-wide barriers, every item kept on chip;
// MULTI, phase 1 (REDUCE), a finalize kernel, phase 2 (APPLY). x is viewed as (outer, C, inner):
// channels last (inner = 1: NHWC, (N, C)) puts a thread on VEC channels of one row; channels
// first (NCHW) puts a block on one channel. No atomics: results repeat bit for bit.
#ifndef KILN_CUDA_BN_KERNELS_CUH
#define KILN_CUDA_BN_KERNELS_CUH

#include <cooperative_groups.h>

#include <type_traits>

#include "bn_reduce.cuh"

namespace kiln_bn {

namespace cg = cooperative_groups;

enum red_kind { RED_STATS = 0, RED_GRAD = 1 };
enum mode_kind { MODE_REDUCE = 0, MODE_APPLY, MODE_LOCAL, MODE_COOP, MODE_MULTI };
enum coef_kind { COEF_INFER = 0, COEF_DX_VAR, COEF_DX_INVSTD };
constexpr int kUnroll = 4; // loads in flight per thread

struct bn_args {
    int64_t outer, C, inner, n; // x as (outer, C, inner); n = outer * inner per channel
    int64_t cv;     // channels last: channel vectors C / VEC; channels first: vectors per plane
    int64_t items;  // items of one channel tile: rows (channels last) or n / VEC vectors
    int L;          // channel slots per warp (channels last), 1 for channels first
    int S;          // splits of the items = gridDim.y
    int kc;         // items per thread kept in shared memory between the phases
    int mode;
    const void *x;  // x, or dy for a pure scaling (COEF_DX_*)
    const void *dy; // the backward's dy
    void *out;      // y or dx
    const float *gamma, *beta;
    float *mm, *mv;                     // moving statistics updated by the forward (or NULL)
    float *save_mean, *save_invstd;     // written by the forward
    const float *mean_in, *var_in, *invstd_in; // read: saved or moving statistics
    float *dgamma, *dbeta;
    float eps;
    double keep, w; // moving = keep * moving + w * batch
    bool unbiased;  // the moving variance takes n / (n - 1) var (kiln_bn_args)
    bool frozen;    // the backward of the inference forward (kiln_bn_args)
    void *part;     // [S][C] partial results (wpart or gpart)
    coef_t *coef;   // [C]
};

// ---- per-channel finish (one thread per channel) ------------------------------------------

template <bool CL, class T> __device__ __forceinline__ float shift_of(const bn_args &a, int64_t c) {
    // the first value of channel c: row 0 (channels last) or plane (0, c) (channels first)
    const T *x = static_cast<const T *>(a.x);
    return to_f32(x[CL ? c : c * a.inner]);
}

// mean_d: the mean of x - shift; m2: the sum of squared deviations, both over a.n values
template <bool CL, class T>
__device__ void finalize_fwd(const bn_args &a, int64_t c, double mean_d, double m2, coef_t *out) {
    const double var0 = m2 / (double)a.n;
    const double var = var0 < 0.0 ? 0.0 : var0; // keeps a NaN
    const double mean = kiln_bn_mean_rule((double)shift_of<CL, T>(a, c) + mean_d, var);
    const double invstd = kiln_bn_invstd(var, (double)a.eps);
    a.save_mean[c] = (float)mean;
    a.save_invstd[c] = (float)invstd;
    if (a.mm) {
        a.mm[c] = kiln_bn_moving(a.mm[c], mean, a.keep, a.w);
        a.mv[c] = kiln_bn_moving(a.mv[c], kiln_bn_sample_var(var, a.n, a.unbiased), a.keep, a.w);
    }
    coef_t k;
    k.hi = (float)mean;
    k.lo = (float)(mean - (double)k.hi);
    k.p = (float)((a.gamma ? (double)a.gamma[c] : 1.0) * invstd);
    k.q = a.beta ? a.beta[c] : 0.0f;
    k.r = 0.0f;
    *out = k;
}

// s1 = sum(dy), s2 = sum(dy (x - mean)) over a.n values
__device__ void finalize_bwd(const bn_args &a, int64_t c, double s1, double s2, coef_t *out) {
    const double invstd = a.invstd_in[c], dgamma = s2 * invstd, dbeta = s1;
    if (a.dgamma) a.dgamma[c] = (float)dgamma;
    if (a.dbeta) a.dbeta[c] = (float)dbeta;
    const kiln_bn_bwd_coef k = kiln_bn_backward_coef(a.gamma ? (double)a.gamma[c] : 1.0, invstd,
                                                     dgamma, dbeta, a.n, a.frozen);
    coef_t o;
    if (a.frozen) { // applied to dy alone: dx = A dy (x is not read)
        o.hi = o.lo = o.q = o.r = 0.0f;
        o.p = (float)k.a;
    } else {
        o.hi = a.mean_in[c];
        o.lo = 0.0f;
        o.p = (float)k.p;
        o.q = (float)k.q;
        o.r = (float)k.a;
    }
    *out = o;
}

// Channels [first, C) step `count`, one warp each: merge the S partials (lane l takes splits
// l, l + 32, ... in order, then a butterfly in double), lane 0 finishes the channel.
template <int RED, bool CL, class T>
__device__ void finalize_range(const bn_args &a, int64_t first, int64_t count) {
    const int lane = (int)(threadIdx.x & 31);
    for (int64_t c = first; c < a.C; c += count) {
        if constexpr (RED == RED_STATS) {
            const wpart *p = static_cast<const wpart *>(a.part);
            dstate s = {0.0, 0.0, 0.0};
            for (int sp = lane; sp < a.S; sp += 32) {
                const wpart q = load_cg(&p[(int64_t)sp * a.C + c]);
                const dstate d = {(double)q.n, (double)q.mean, (double)q.m2};
                merge(s, d);
            }
            for (int off = 1; off < 32; off <<= 1) {
                const dstate o = {__shfl_xor_sync(kFull, s.n, off), __shfl_xor_sync(kFull, s.mean, off),
                                  __shfl_xor_sync(kFull, s.m2, off)};
                merge(s, o);
            }
            if (lane == 0) finalize_fwd<CL, T>(a, c, s.mean, s.m2, &a.coef[c]);
        } else {
            const gpart *p = static_cast<const gpart *>(a.part);
            double s1 = 0.0, s2 = 0.0;
            for (int sp = lane; sp < a.S; sp += 32) {
                const gpart q = load_cg(&p[(int64_t)sp * a.C + c]);
                s1 += (double)q.s1;
                s2 += (double)q.s2;
            }
            for (int off = 1; off < 32; off <<= 1) {
                s1 += __shfl_xor_sync(kFull, s1, off);
                s2 += __shfl_xor_sync(kFull, s2, off);
            }
            if (lane == 0) finalize_bwd(a, c, s1, s2, &a.coef[c]);
        }
    }
}

// ---- the main kernel -------------------------------------------------------------------------

// A thread's place in the work: its channel slot and channel vector (channels last), and its
// items: item k is number first + k * stride of the tile's `items` (rows for channels last,
// vectors of the channel for channels first), in the same order in every pass.
template <bool CL, int VEC> struct walker {
    int slot;              // channel slot of the lane (0 for channels first)
    int64_t cvec;          // channels last: the thread's channel vector (channels cvec*VEC ..)
    bool cvalid;           // the thread has a channel (channels last: cvec < a.cv)
    int64_t base;          // CL: cvec * VEC (-1 without a channel); CF: offset of plane (0, c)
    int64_t first, stride;
    int kmax;              // items per thread, rounded up: the same in every thread of the grid
    __host__ __device__ walker(const bn_args &a, int64_t tile, int split, int tid) {
        const int lane = tid & 31, warp = tid >> 5, L = CL ? a.L : 1;
        slot = lane & (L - 1);
        cvec = CL ? tile * L + slot : 0;
        cvalid = CL ? cvec < a.cv : true;
        // items per block per k: 8 warps x (32 / L) rows (CL), or one per thread (CF)
        const int64_t step = CL ? (int64_t)kWarps * (32 / L) : kThreads;
        base = CL ? (cvalid ? cvec * VEC : -1) : tile * a.inner;
        first = (int64_t)split * step + (CL ? warp * (32 / L) + lane / L : tid);
        stride = (int64_t)a.S * step;
        kmax = (int)((a.items + stride - 1) / stride);
    }
    // the element offset of item k's vector, or -1 past the end (or without a channel)
    __host__ __device__ __forceinline__ int64_t offset(const bn_args &a, int k) const {
        const int64_t it = first + (int64_t)k * stride;
        if (it >= a.items || base < 0) return -1;
        if constexpr (CL) return it * a.C + base; // (row, C) row-major
        const int64_t o = div_nonneg(it, a.cv), col = it - o * a.cv;
        return o * a.C * a.inner + base + col * VEC; // (o, c, col * VEC) of (outer, C, inner)
    }
};

template <int RED, bool CL, class T, int VEC, class S>
__device__ __forceinline__ void accumulate(S &st, const vec_t<T, VEC> &x, const vec_t<T, VEC> &g,
                                           const float (&K)[CL ? VEC : 1]) {
    if constexpr (RED == RED_STATS && CL) {
        double d[VEC]; // exact: the difference of two floats fits a double
#pragma unroll
        for (int i = 0; i < VEC; i++) d[i] = (double)to_f32(x.v[i]) - (double)K[i];
        push_each(st, d);
    } else if constexpr (RED == RED_STATS) {
        double d[VEC];
#pragma unroll
        for (int i = 0; i < VEC; i++) d[i] = (double)to_f32(x.v[i]) - (double)K[0];
        push_group<VEC>(st, d);
    } else {
#pragma unroll
        for (int i = 0; i < VEC; i++) {
            const int s = CL ? i : 0;
            const float gi = to_f32(g.v[i]);
            st.s1[s] += gi;
            st.s2[s] = fmaf(gi, to_f32(x.v[i]) - K[s], st.s2[s]);
        }
    }
}

template <int RED, bool CL, class T, int VEC>
__global__ void __launch_bounds__(kThreads, 2) bn_kernel(const bn_args a) {
    using V = vec_t<T, VEC>;
    constexpr int NS = CL ? VEC : 1;              // channels per thread
    constexpr int NIN = RED == RED_GRAD ? 2 : 1;  // x, and dy
    using St = typename std::conditional<RED == RED_STATS, wstate<NS>, gstate<NS>>::type;
    KILN_SHARED(St, s_part, [kWarps][32]);
    KILN_SHARED(coef_t, s_coef, [CL ? 32 * VEC : 1]);
    KILN_DYNAMIC_SHARED(unsigned char, s_dyn);
    V *cache = reinterpret_cast<V *>(s_dyn); // [kc][NIN][kThreads]

    const int tid = (int)threadIdx.x, warp = tid >> 5, L = CL ? a.L : 1;
    const int64_t tile = blockIdx.x;
    const int split = (int)blockIdx.y;
    const walker<CL, VEC> wk(a, tile, split, tid);
    const int slot = wk.slot, kmax = wk.kmax;
    const int64_t cvec = wk.cvec;
    const bool cvalid = wk.cvalid;
    const T *xp = static_cast<const T *>(a.x);
    const T *gp = static_cast<const T *>(a.dy);

    if (a.mode != MODE_APPLY) {
        // ---- phase 1 ----
        St st;
        init(st);
        float K[NS]; // forward: the channel's first value (a shift against cancellation);
                     // backward: the saved mean
#pragma unroll
        for (int s = 0; s < NS; s++) K[s] = 0.0f;
        if (cvalid) {
            if constexpr (RED == RED_GRAD) {
#pragma unroll
                for (int s = 0; s < NS; s++) K[s] = a.mean_in[CL ? cvec * VEC + s : tile];
            } else if constexpr (CL) {
                const V v0 = *reinterpret_cast<const V *>(xp + wk.base);
#pragma unroll
                for (int s = 0; s < NS; s++) K[s] = to_f32(v0.v[s]);
            } else {
                K[0] = to_f32(xp[wk.base]);
            }
        }
        for (int k0 = 0; k0 < kmax; k0 += kUnroll) {
            V xv[kUnroll], gv[kUnroll];
            int64_t off[kUnroll];
#pragma unroll
            for (int u = 0; u < kUnroll; u++) {
                off[u] = k0 + u < kmax ? wk.offset(a, k0 + u) : -1;
                if (off[u] >= 0) {
                    xv[u] = *reinterpret_cast<const V *>(xp + off[u]);
                    if constexpr (NIN == 2) gv[u] = *reinterpret_cast<const V *>(gp + off[u]);
                    else gv[u] = xv[u];
                }
            }
#pragma unroll
            for (int u = 0; u < kUnroll; u++) {
                if (off[u] < 0) continue;
                const int k = k0 + u;
                if (k < a.kc) {
                    cache[(k * NIN) * kThreads + tid] = xv[u];
                    if constexpr (NIN == 2) cache[(k * NIN + 1) * kThreads + tid] = gv[u];
                }
                accumulate<RED, CL, T, VEC>(st, xv[u], gv[u], K);
            }
        }
        const bool owner = block_combine(st, s_part, L); // thread t < L: slot t, cvec as above
        if (a.mode == MODE_LOCAL) {
            if (owner && cvalid) {
#pragma unroll
                for (int s = 0; s < NS; s++) {
                    const int64_t c = CL ? cvec * VEC + s : tile;
                    if constexpr (RED == RED_STATS)
                        finalize_fwd<CL, T>(a, c, st.mean[s], st.m2[s], &s_coef[slot * VEC + s]);
                    else
                        finalize_bwd(a, c, st.s1[s], st.s2[s], &s_coef[slot * VEC + s]);
                }
            }
            __syncthreads();
        } else {
            if (owner && cvalid) {
#pragma unroll
                for (int s = 0; s < NS; s++) {
                    const int64_t c = CL ? cvec * VEC + s : tile, at = (int64_t)split * a.C + c;
                    if constexpr (RED == RED_STATS)
                        static_cast<wpart *>(a.part)[at] = wpart{st.mean[s], st.m2[s], st.n};
                    else
                        static_cast<gpart *>(a.part)[at] = gpart{st.s1[s], st.s2[s]};
                }
            }
            if (a.mode == MODE_REDUCE) return;
            // MODE_COOP: every block's partials, then the channels spread over all warps
            cg::this_grid().sync();
            const int64_t nwarps = (int64_t)gridDim.x * gridDim.y * kWarps;
            const int64_t gwarp = ((int64_t)blockIdx.y * gridDim.x + blockIdx.x) * kWarps + warp;
            finalize_range<RED, CL, T>(a, gwarp, nwarps);
            cg::this_grid().sync();
        }
    }
    if (a.mode != MODE_LOCAL) { // the tile's coefficients from global memory
        const int nco = CL ? L * VEC : 1;
        if (tid < nco) {
            const int64_t c = CL ? tile * L * VEC + tid : tile;
            if (c < a.C) s_coef[tid] = load_cg(&a.coef[c]);
        }
        __syncthreads();
    }

    // ---- phase 2, last items first ----
    coef_t cf[NS];
#pragma unroll
    for (int s = 0; s < NS; s++) cf[s] = cvalid ? s_coef[CL ? slot * VEC + s : 0] : coef_t{0, 0, 0, 0, 0};
    T *op = static_cast<T *>(a.out);
    for (int k0 = kmax - 1; k0 >= 0; k0 -= kUnroll) {
        V xv[kUnroll], gv[kUnroll];
        int64_t off[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const int k = k0 - u;
            off[u] = k >= 0 ? wk.offset(a, k) : -1;
            if (off[u] < 0) continue;
            if (k < a.kc) {
                xv[u] = cache[(k * NIN) * kThreads + tid];
                if constexpr (NIN == 2) gv[u] = cache[(k * NIN + 1) * kThreads + tid];
            } else {
                xv[u] = *reinterpret_cast<const V *>(xp + off[u]);
                if constexpr (NIN == 2) gv[u] = *reinterpret_cast<const V *>(gp + off[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            if (off[u] < 0) continue;
            V o;
#pragma unroll
            for (int i = 0; i < VEC; i++) {
                const coef_t &c = cf[CL ? i : 0];
                float base = c.q;
                if constexpr (NIN == 2) base = fmaf(c.r, to_f32(gv[u].v[i]), c.q);
                o.v[i] = from_f32<T>(fmaf(c.p, (to_f32(xv[u].v[i]) - c.hi) - c.lo, base));
            }
            *reinterpret_cast<V *>(op + off[u]) = o;
        }
    }
}

template <int RED, bool CL, class T>
__global__ void __launch_bounds__(kThreads) bn_finalize_kernel(const bn_args a) {
    finalize_range<RED, CL, T>(a, (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5),
                               (int64_t)gridDim.x * kWarps);
}

// Coefficients of a pure elementwise pass, one thread per channel:
//   COEF_INFER      y  = gamma (x - mean) / sqrt(var + eps) + beta  (and the frozen saves)
//   COEF_DX_VAR     dx = dy gamma / sqrt(var + eps)
//   COEF_DX_INVSTD  dx = dy gamma invstd
__global__ void bn_coef_kernel(const bn_args a, int kind) {
    KILN_CUDA_FOR(c, a.C) {
        const double invstd = kind == COEF_DX_INVSTD ? (double)a.invstd_in[c]
                                                     : kiln_bn_invstd(a.var_in[c], (double)a.eps);
        coef_t k;
        k.hi = kind == COEF_INFER ? a.mean_in[c] : 0.0f;
        k.lo = k.r = 0.0f;
        k.p = (float)((a.gamma ? (double)a.gamma[c] : 1.0) * invstd);
        k.q = (kind == COEF_INFER && a.beta) ? a.beta[c] : 0.0f;
        a.coef[c] = k;
        if (a.save_mean) a.save_mean[c] = a.mean_in[c];
        if (a.save_invstd) a.save_invstd[c] = (float)invstd;
    }
}

} // namespace kiln_bn

#endif
