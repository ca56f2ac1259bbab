// cuda/elementwise.cu: fill, copy, cast and the f32 elementwise arithmetic on CUDA, with the
// CPU's rules (src/backends/cpu/elementwise.c) bit for bit:
//  - conversions go through double like kiln_dtype_load/kiln_dtype_store: to f32/f16/bf16 via f32,
//    round to nearest even; to i32/u8 round to nearest even (rint), saturate, NaN -> 0; a NaN
//    stored as f16/bf16 gets the CPU's bits (half.h), not the GPU's canonical 0x7fff;
//  - arithmetic uses the _rn intrinsics (never contracted into an FMA) and fmaf for AXPY.
// Every op is one functor run by kiln_cuda_map (common.cuh): one grid-stride loop for all.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common.cuh"

extern "C" {
#include "dtype_convert.h" // kiln_dtype_store: FILL's value is converted on the host by the CPU's own rule
}

// ---- storage types and the conversions of kiln_dtype_load / kiln_dtype_store -------------------

struct f16_bits { uint16_t u; };  // IEEE binary16
struct bf16_bits { uint16_t u; }; // bfloat16

__device__ __forceinline__ double load(float v) { return v; }
__device__ __forceinline__ double load(int32_t v) { return v; }
__device__ __forceinline__ double load(uint8_t v) { return v; }
__device__ __forceinline__ double load(bf16_bits v) { return __uint_as_float((uint32_t)v.u << 16); }
__device__ __forceinline__ double load(f16_bits v) {
    uint32_t sign = (uint32_t)(v.u & 0x8000u) << 16, mant = v.u & 0x3ffu;
    if ((v.u & 0x7c00u) == 0x7c00u && mant) // NaN: keep the payload as kiln_f16_to_f32 does
        return __uint_as_float(sign | 0x7f800000u | (mant << 13));
    return __half2float(__ushort_as_half(v.u));
}

__device__ __forceinline__ double to_int(double v, double lo, double hi) {
    if (isnan(v)) return 0.0;
    v = rint(v); // nearest, ties to even: C's nearbyint in the default rounding mode
    return v < lo ? lo : v > hi ? hi : v;
}

__device__ __forceinline__ void store(float *p, double v) { *p = __double2float_rn(v); }
__device__ __forceinline__ void store(int32_t *p, double v) {
    *p = (int32_t)to_int(v, -2147483648.0, 2147483647.0);
}
__device__ __forceinline__ void store(uint8_t *p, double v) { *p = (uint8_t)to_int(v, 0.0, 255.0); }
__device__ __forceinline__ void store(f16_bits *p, double v) {
    float f = __double2float_rn(v);
    uint32_t u = __float_as_uint(f);
    p->u = isnan(f) ? (uint16_t)(((u >> 16) & 0x8000u) | 0x7e00u)
                    : __half_as_ushort(__float2half_rn(f));
}
__device__ __forceinline__ void store(bf16_bits *p, double v) {
    float f = __double2float_rn(v);
    uint32_t u = __float_as_uint(f);
    p->u = isnan(f) ? (uint16_t)((u >> 16) | 0x40u) : __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

// f(T{}) with T the storage type of dtype t.
template <class F> static kiln_status with_storage(kiln_dtype t, F f) {
    switch (t) {
    case KILN_F32: return f(float{});
    case KILN_F16: return f(f16_bits{});
    case KILN_BF16: return f(bf16_bits{});
    case KILN_I32: return f(int32_t{});
    case KILN_U8: return f(uint8_t{});
    default: return kiln_error(KILN_ERR_DTYPE, "cuda: unknown dtype %d", (int)t);
    }
}

// f(T{}) with T an unsigned integer of `size` bytes: for moving bits, whatever they mean.
template <class F> static kiln_status with_bits(size_t size, F f) {
    switch (size) {
    case 1: return f(uint8_t{});
    case 2: return f(uint16_t{});
    case 4: return f(uint32_t{});
    default: return kiln_error(KILN_ERR_DTYPE, "cuda: no %zu-byte element type", size);
    }
}

// ---- fill, copy, cast --------------------------------------------------------------------------

template <class T> struct fill_f {
    T *y;
    T v;
    __device__ void operator()(int64_t i) const { y[i] = v; }
};

extern "C" kiln_status kiln_cuda_fill(kiln_backend *be, const kiln_op *op) {
    kiln_tensor *t = op->fill.dst;
    int64_t n = kiln_tensor_numel(t);
    size_t es = kiln_dtype_size(t->dtype);
    if (n == 0) return KILN_OK;
    unsigned char pat[8] = {0};
    kiln_dtype_store(pat, t->dtype, 0, op->fill.value);
    bool bytewise = true; // every byte the same (0 included): a memset does it
    for (size_t b = 1; b < es; b++) bytewise = bytewise && pat[b] == pat[0];
    if (bytewise) {
        KILN_CUDA_TRY(cudaMemsetAsync(t->data, pat[0], (size_t)n * es, kiln_cuda_stream(be)));
        return KILN_OK;
    }
    return with_bits(es, [&](auto tag) {
        using T = decltype(tag);
        fill_f<T> f = {(T *)t->data, T{}};
        memcpy(&f.v, pat, sizeof(T));
        return kiln_cuda_map(kiln_cuda_stream(be), n, f, "fill");
    });
}

// dst (contiguous) = src (any strides), walking src's 4-D index space in row-major order
template <class T> struct strided_copy_f {
    const T *x;
    T *y;
    int64_t shape[KILN_MAX_DIMS], stride[KILN_MAX_DIMS];
    __device__ void operator()(int64_t k) const {
        int64_t off = 0, rest = k;
        for (int d = KILN_MAX_DIMS - 1; d >= 0; d--) {
            off += rest % shape[d] * stride[d];
            rest /= shape[d];
        }
        y[k] = x[off];
    }
};

extern "C" kiln_status kiln_cuda_copy(kiln_backend *be, const kiln_op *op) {
    const kiln_tensor *s = op->copy.src;
    kiln_tensor *d = op->copy.dst;
    int64_t n = kiln_tensor_numel(s);
    size_t es = kiln_dtype_size(s->dtype);
    if (n == 0) return KILN_OK;
    if (kiln_tensor_is_contiguous(s)) {
        KILN_CUDA_TRY(cudaMemcpyAsync(d->data, s->data, (size_t)n * es, cudaMemcpyDeviceToDevice,
                                      kiln_cuda_stream(be)));
        return KILN_OK;
    }
    return with_bits(es, [&](auto tag) {
        using T = decltype(tag);
        strided_copy_f<T> f;
        f.x = (const T *)s->data;
        f.y = (T *)d->data;
        for (int i = 0; i < KILN_MAX_DIMS; i++) { // n > 0: every extent is at least 1
            f.shape[i] = s->shape[i];
            f.stride[i] = s->stride[i];
        }
        return kiln_cuda_map(kiln_cuda_stream(be), n, f, "copy (strided)");
    });
}

template <class S, class D> struct cast_f {
    const S *x;
    D *y;
    __device__ void operator()(int64_t i) const { store(&y[i], load(x[i])); }
};

// Always through the conversion, even between equal dtypes: the CPU does so too (a f16 NaN's
// payload, say, does not survive it).
extern "C" kiln_status kiln_cuda_cast(kiln_backend *be, const kiln_op *op) {
    const kiln_tensor *s = op->copy.src;
    kiln_tensor *d = op->copy.dst;
    int64_t n = kiln_tensor_numel(s);
    return with_storage(s->dtype, [&](auto stag) {
        return with_storage(d->dtype, [&](auto dtag) {
            using S = decltype(stag);
            using D = decltype(dtag);
            cast_f<S, D> f = {(const S *)s->data, (D *)d->data};
            return kiln_cuda_map(kiln_cuda_stream(be), n, f, "cast");
        });
    });
}

// ---- f32 arithmetic ----------------------------------------------------------------------------

// y = x (OP) z, z repeating with period nz (a bias over x's leading dims); alpha for SCALE, AXPY
template <kiln_op_type OP> struct pointwise_f {
    const float *x, *z;
    float *y;
    float alpha;
    int64_t n, nz;
    __device__ void operator()(int64_t i) const {
        const float xi = x[i];
        if constexpr (OP == KILN_OP_ADD || OP == KILN_OP_SUB || OP == KILN_OP_MUL) {
            const float zi = z[nz == n ? i : i % nz];
            y[i] = OP == KILN_OP_ADD ? __fadd_rn(xi, zi)
                 : OP == KILN_OP_SUB ? __fsub_rn(xi, zi) : __fmul_rn(xi, zi);
        } else if constexpr (OP == KILN_OP_SCALE) {
            y[i] = __fmul_rn(alpha, xi);
        } else if constexpr (OP == KILN_OP_AXPY) {
            y[i] = fmaf(alpha, xi, y[i]);
        } else if constexpr (OP == KILN_OP_RELU) {
            y[i] = xi > 0.0f || isnan(xi) ? xi : 0.0f;
        } else { // RELU_BACK: x, then dy in z
            y[i] = xi > 0.0f ? z[i] : 0.0f;
        }
    }
};

template <kiln_op_type OP>
static kiln_status pointwise(cudaStream_t st, const float *x, const float *z, float *y,
                             float alpha, int64_t n, int64_t nz) {
    pointwise_f<OP> f = {x, z, y, alpha, n, nz};
    return kiln_cuda_map(st, n, f, kiln_op_name(OP));
}

extern "C" kiln_status kiln_cuda_scale_f32(cudaStream_t stream, const float *x, float alpha,
                                           float *y, int64_t n) {
    return pointwise<KILN_OP_SCALE>(stream, x, NULL, y, alpha, n, n);
}

extern "C" kiln_status kiln_cuda_binary(kiln_backend *be, const kiln_op *op) {
    const kiln_binary_args &args = op->binary;
    const float *a = (const float *)args.a->data, *b = (const float *)args.b->data;
    float *y = (float *)args.out->data;
    int64_t n = kiln_tensor_numel(args.a), nb = kiln_tensor_numel(args.b);
    cudaStream_t st = kiln_cuda_stream(be);
    if (n == 0) return KILN_OK; // (nb is 0 only then)
    switch (op->type) {
    case KILN_OP_ADD: return pointwise<KILN_OP_ADD>(st, a, b, y, 0.0f, n, nb);
    case KILN_OP_SUB: return pointwise<KILN_OP_SUB>(st, a, b, y, 0.0f, n, nb);
    default: return pointwise<KILN_OP_MUL>(st, a, b, y, 0.0f, n, nb);
    }
}

extern "C" kiln_status kiln_cuda_unary(kiln_backend *be, const kiln_op *op) {
    cudaStream_t st = kiln_cuda_stream(be);
    if (op->type == KILN_OP_RELU_BACK) { // x, then dy in z; dx
        const kiln_unary_back_args &a = op->unary_back;
        const int64_t n = kiln_tensor_numel(a.x);
        return pointwise<KILN_OP_RELU_BACK>(st, (const float *)a.x->data,
                                            (const float *)a.dy->data, (float *)a.dx->data, 0.0f,
                                            n, n);
    }
    const kiln_unary_args &a = op->unary;
    const float *x = (const float *)a.x->data;
    float *y = (float *)a.y->data;
    const int64_t n = kiln_tensor_numel(a.x);
    switch (op->type) {
    case KILN_OP_SCALE: return pointwise<KILN_OP_SCALE>(st, x, NULL, y, a.alpha, n, n);
    case KILN_OP_AXPY: return pointwise<KILN_OP_AXPY>(st, x, NULL, y, a.alpha, n, n);
    default: return pointwise<KILN_OP_RELU>(st, x, NULL, y, 0.0f, n, n);
    }
}
