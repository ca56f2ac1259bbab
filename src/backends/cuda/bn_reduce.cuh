// cuda/bn_reduce.cuh: the device pieces of kiln's batch-norm kernels (batchnorm.cu): storage
// conversions, 16-byte vectors, the per-thread statistics (Welford for the forward, plain sums
// for the backward), Chan's merge of partial (count, mean, M2) results, and the fixed-order
// warp-shuffle and shared-memory combines. No atomics anywhere: every merge happens in an order
// fixed by the launch shape, so results repeat bit for bit. docs/batchnorm.md explains them.
#ifndef KILN_CUDA_BN_REDUCE_CUH
#define KILN_CUDA_BN_REDUCE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define KILN_BN_HD __host__ __device__
#include "batchnorm_math.h"
#include "common.cuh"

namespace kiln_bn {

constexpr int kThreads = 256; // every BN kernel runs 256-thread blocks
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;

// ---- storage types: f32 arithmetic, rounded once on the way out ----------------------------

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

// VEC consecutive elements moved as one access: 16 bytes when VEC = 16 / sizeof(T) (the host
// picks VEC > 1 only when every such access is 16-byte aligned), else one element.
template <class T, int VEC> struct alignas(sizeof(T) * VEC) vec_t {
    T v[VEC];
};

// ---- per-channel coefficients of the elementwise pass --------------------------------------
// forward:  y  = p ((x - hi) - lo) + q                  (hi + lo = the mean, as a float pair)
// backward: dx = p ((x - hi) - lo) + (r dy + q)
struct coef_t {
    float hi, lo, p, q, r;
};

// ---- Welford states: NS channels' (mean, M2) sharing one count --------------------------------
// The values arrive in f32; d = x - K and the running mean and M2 are double. In f32 each
// update rounded the running mean to 2^-24 of its size (the shift K makes it |mean - K|, up to
// the data's spread) over a thread's hundreds to thousands of updates, and x - K rounded in f32
// is biased: x on a coarser grid than K leaves only a few residues, so the rounding errors do
// not cancel (5e-9 on the mean of 16.7M values in [-1, 1], 3e-5 of its scale). The CUDA
// emulator's parity rows caught both (docs/testing.md); the partials stay double too.

template <int NS> struct wstate {
    int n;
    double mean[NS], m2[NS];
};

template <int NS> __device__ __forceinline__ void init(wstate<NS> &s) {
    s.n = 0;
#pragma unroll
    for (int i = 0; i < NS; i++) s.mean[i] = s.m2[i] = 0.0;
}

// One more value per channel (channels last: a thread's NS channels see one value per row).
template <int NS> __device__ __forceinline__ void push_each(wstate<NS> &s, const double (&d)[NS]) {
    s.n += 1;
    const double r = 1.0 / (double)s.n;
#pragma unroll
    for (int i = 0; i < NS; i++) {
        const double delta = d[i] - s.mean[i];
        s.mean[i] = fma(delta, r, s.mean[i]);
        s.m2[i] = fma(delta, d[i] - s.mean[i], s.m2[i]);
    }
}

// G values of one channel (channels first: a vector along H*W): their own mean and M2 by two
// passes over registers, then Chan's merge into the running state.
template <int G> __device__ __forceinline__ void push_group(wstate<1> &s, const double (&d)[G]) {
    double sum = 0.0;
#pragma unroll
    for (int i = 0; i < G; i++) sum += d[i];
    const double gm = sum * (1.0 / (double)G);
    double gm2 = 0.0;
#pragma unroll
    for (int i = 0; i < G; i++) {
        const double e = d[i] - gm;
        gm2 = fma(e, e, gm2);
    }
    const int n = s.n + G;
    const double wb = (double)G / (double)n, delta = gm - s.mean[0];
    s.mean[0] = fma(delta, wb, s.mean[0]);
    s.m2[0] = s.m2[0] + gm2 + delta * delta * ((double)s.n * wb);
    s.n = n;
}

// Chan et al.: (n_a, mean_a, M2_a) + (n_b, mean_b, M2_b). An empty side is skipped; a NaN on a
// non-empty side propagates (no fmax, no clamping).
template <int NS> __device__ __forceinline__ void merge(wstate<NS> &a, const wstate<NS> &b) {
    if (b.n == 0) return;
    if (a.n == 0) {
        a = b;
        return;
    }
    const int n = a.n + b.n;
    const double wb = (double)b.n / (double)n, wab = (double)a.n * wb;
#pragma unroll
    for (int i = 0; i < NS; i++) {
        const double delta = b.mean[i] - a.mean[i];
        a.mean[i] = fma(delta, wb, a.mean[i]);
        a.m2[i] = a.m2[i] + b.m2[i] + delta * delta * wab;
    }
    a.n = n;
}

template <int NS> __device__ __forceinline__ wstate<NS> shfl_xor(const wstate<NS> &s, int off) {
    wstate<NS> o;
    o.n = __shfl_xor_sync(kFull, s.n, off);
#pragma unroll
    for (int i = 0; i < NS; i++) {
        o.mean[i] = __shfl_xor_sync(kFull, s.mean[i], off);
        o.m2[i] = __shfl_xor_sync(kFull, s.m2[i], off);
    }
    return o;
}

// ---- backward sums: sum(dy) and sum(dy (x - mean)) per channel ---------------------------------

template <int NS> struct gstate {
    float s1[NS], s2[NS];
};

template <int NS> __device__ __forceinline__ void init(gstate<NS> &s) {
#pragma unroll
    for (int i = 0; i < NS; i++) s.s1[i] = s.s2[i] = 0.0f;
}

template <int NS> __device__ __forceinline__ void merge(gstate<NS> &a, const gstate<NS> &b) {
#pragma unroll
    for (int i = 0; i < NS; i++) {
        a.s1[i] += b.s1[i];
        a.s2[i] += b.s2[i];
    }
}

template <int NS> __device__ __forceinline__ gstate<NS> shfl_xor(const gstate<NS> &s, int off) {
    gstate<NS> o;
#pragma unroll
    for (int i = 0; i < NS; i++) {
        o.s1[i] = __shfl_xor_sync(kFull, s.s1[i], off);
        o.s2[i] = __shfl_xor_sync(kFull, s.s2[i], off);
    }
    return o;
}

// ---- block combine ---------------------------------------------------------------------------
// The block's lanes are laid out as L channel slots x (32 / L) rows per warp (L a power of two:
// L = 1 when the whole block works on one channel). Lanes that share a slot differ only in the
// bits from L up, so a butterfly over offsets L, 2L, .., 16 merges exactly one slot's rows
// (every lane takes part in every shuffle). The lanes of row 0 write their warp's result to
// shared memory; thread t < L then merges warps 0..7 of slot t in that order. Returns true in
// the threads that hold a slot's block result (thread t = slot t).
template <class S>
__device__ __forceinline__ bool block_combine(S &st, S (*smem)[32], int L) {
    const int lane = (int)(threadIdx.x & 31), warp = (int)(threadIdx.x >> 5);
    for (int off = L; off < 32; off <<= 1) merge(st, shfl_xor(st, off));
    if (lane < L) smem[warp][lane] = st;
    __syncthreads();
    const bool owner = (int)threadIdx.x < L;
    if (owner) {
        st = smem[0][threadIdx.x];
        for (int w = 1; w < kWarps; w++) merge(st, smem[w][threadIdx.x]);
    }
    return owner;
}

// ---- double precision across blocks ----------------------------------------------------------

struct dstate {
    double n, mean, m2;
};

__device__ __forceinline__ void merge(dstate &a, const dstate &b) {
    if (b.n == 0.0) return;
    if (a.n == 0.0) {
        a = b;
        return;
    }
    const double n = a.n + b.n, delta = b.mean - a.mean;
    a.mean += delta * (b.n / n);
    a.m2 += b.m2 + delta * delta * (a.n * b.n / n);
    a.n = n;
}

// Partial results of one block (one split of the rows) for one channel, in scratch memory.
struct wpart {
    double mean, m2;
    int n;
};
struct gpart {
    float s1, s2;
};

// Loads that bypass L1: partials and coefficients written by other blocks of a cooperative
// kernel before its grid-wide barrier.
__device__ __forceinline__ wpart load_cg(const wpart *p) {
    wpart r;
    r.mean = __ldcg(&p->mean);
    r.m2 = __ldcg(&p->m2);
    r.n = __ldcg(&p->n);
    return r;
}
__device__ __forceinline__ gpart load_cg(const gpart *p) {
    gpart r;
    r.s1 = __ldcg(&p->s1);
    r.s2 = __ldcg(&p->s2);
    return r;
}
__device__ __forceinline__ coef_t load_cg(const coef_t *p) {
    coef_t r;
    r.hi = __ldcg(&p->hi);
    r.lo = __ldcg(&p->lo);
    r.p = __ldcg(&p->p);
    r.q = __ldcg(&p->q);
    r.r = __ldcg(&p->r);
    return r;
}

// a / b for non-negative a, b > 0: 32-bit division when both fit (the common case)
__host__ __device__ __forceinline__ int64_t div_nonneg(int64_t a, int64_t b) {
    if (((a | b) >> 32) == 0) return (int64_t)((uint32_t)a / (uint32_t)b);
    return a / b;
}

} // namespace kiln_bn

#endif
