// emu/kiln_cuda_emu.cuh: the CUDA emulator: what kiln's kernels use of CUDA, for the host C++
// compiler, so the same kernel source runs on the CPU (-DKILN_CUDA_EMU=ON: the "cuda-emu"
// backend). The toolkit headers the kernels include (cuda_runtime.h, cuda_fp16.h, cuda_bf16.h,
// cooperative_groups.h, cublas_v2.h, cudnn.h) are emu/include's one-line stand-ins for this one:
// the emulated build needs neither nvcc nor the CUDA toolkit.
//
// ---- Writing a kernel that runs on both (read this when you add one) -------------------------
//   launch   KILN_LAUNCH(kernel, grid, block, dyn_smem, stream)(args...);   (common.cuh)
//            never kernel<<<...>>>: nvcc gets exactly that, the emulator a host call.
//            A cooperative launch: kiln_launch_coop(kernel, grid, block, dyn_smem, stream, args...)
//            returns the cudaError_t of cudaLaunchCooperativeKernel.
//   shared   KILN_SHARED(float, name, [32]);        instead of  __shared__ float name[32];
//            KILN_DYNAMIC_SHARED(unsigned char, name); instead of extern __shared__ ... name[];
//   names    every extern "C" function of cuda.h is renamed below (kiln_cuda_emu_*), and each
//            .cu file is compiled inside namespace kiln_emu_k (emu/k_*.cpp), so the emulated
//            copies never meet nvcc's in one link. A new function in cuda.h needs a line here.
//   checks   the emulator reports, as a failed launch naming the kernel: a shared-memory race
//            (two threads, one writing, no barrier between), an access outside every live
//            device allocation, a barrier or shuffle that cannot complete (deadlock), a shuffle
//            reading a lane outside its mask or past a partial warp, a grid sync outside a
//            cooperative launch, more shared memory than the emulated device gives a block.
//
// ---- How it runs ------------------------------------------------------------------------------
// A launch runs its blocks one after another (a cooperative launch: all at once); the threads of
// a block are fibers (emu_runtime.cpp) switched only at __syncthreads, a shuffle and a grid sync,
// in thread order, so a run is deterministic. A thread that never waits runs start to end
// without a switch back and forth between others. Arithmetic is the host's IEEE f32/f64 (round
// to nearest: the _rn intrinsics are plain operators); nvcc may contract a*b+c into an FMA where
// the source does not say fmaf, the host does not, so results can differ from a GPU's in the
// last bit within the parity tolerances.
#ifndef KILN_CUDA_EMU_CUH
#define KILN_CUDA_EMU_CUH

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <tuple>
#include <type_traits>
#include <utility>

#include "kiln_cuda_emu.h"

#define KILN_CUDA_EMU 1
#define KILN_CUDA_NAME "cuda-emu"

// ---- one name per emulated entry point (see above) ----------------------------------------------
#define kiln_backend_cuda_init kiln_backend_cuda_emu_init
#define kiln_cuda_pool_new kiln_cuda_emu_pool_new
#define kiln_cuda_pool_alloc kiln_cuda_emu_pool_alloc
#define kiln_cuda_pool_release kiln_cuda_emu_pool_release
#define kiln_cuda_pool_stats kiln_cuda_emu_pool_stats
#define kiln_cuda_pool_free kiln_cuda_emu_pool_free
#define kiln_cuda_activate kiln_cuda_emu_activate
#define kiln_cuda_alloc kiln_cuda_emu_alloc
#define kiln_cuda_cudnn kiln_cuda_emu_cudnn
#define kiln_cuda_scratch kiln_cuda_emu_scratch
#define kiln_cuda_fill kiln_cuda_emu_fill
#define kiln_cuda_copy kiln_cuda_emu_copy
#define kiln_cuda_cast kiln_cuda_emu_cast
#define kiln_cuda_binary kiln_cuda_emu_binary
#define kiln_cuda_unary kiln_cuda_emu_unary
#define kiln_cuda_scale_f32 kiln_cuda_emu_scale_f32
#define kiln_cuda_reduce kiln_cuda_emu_reduce
#define kiln_cuda_gemm kiln_cuda_emu_gemm
#define kiln_cuda_softmax kiln_cuda_emu_softmax
#define kiln_cuda_argmax kiln_cuda_emu_argmax
#define kiln_cuda_conv2d kiln_cuda_emu_conv2d
#define kiln_cuda_pool2d kiln_cuda_emu_pool2d
#define kiln_cuda_resize2d kiln_cuda_emu_resize2d
#define kiln_cuda_activation kiln_cuda_emu_activation
#define kiln_cuda_optim kiln_cuda_emu_optim
#define kiln_cuda_batchnorm kiln_cuda_emu_batchnorm
#define kiln_cuda_bn_plans_free kiln_cuda_emu_bn_plans_free
#define kiln_cuda_batchnorm_cudnn kiln_cuda_emu_batchnorm_cudnn
#define kiln_cuda_comm_create kiln_cuda_emu_comm_create
#define kiln_cuda_bn_plans kiln_cuda_emu_bn_plans
#define kiln_cuda_pool kiln_cuda_emu_pool_t
#define kiln_cuda_ctx kiln_cuda_emu_ctx_t
#define kiln_bn kiln_bn_emu

// ---- qualifiers -------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __restrict__ __restrict
#define __noinline__ __attribute__((noinline))

// ---- runtime types -----------------------------------------------------------------------------------
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
    cudaErrorNoDevice = 100,
    cudaErrorNotSupported = 801,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchFailure = 719,
    cudaErrorCooperativeLaunchTooLarge = 720,
};
typedef cudaError_t cudaError;

struct kiln_emu_stream;
struct kiln_emu_event;
typedef kiln_emu_stream *cudaStream_t;
typedef kiln_emu_event *cudaEvent_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};
enum cudaDeviceAttr {
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrL2CacheSize = 38,
    cudaDevAttrMaxThreadsPerMultiProcessor = 39,
    cudaDevAttrCooperativeLaunch = 95,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
    cudaDevAttrMaxSharedMemoryPerMultiprocessor = 81,
    cudaDevAttrMaxRegistersPerMultiprocessor = 82,
    cudaDevAttrMaxBlocksPerMultiprocessor = 106,
};
enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9
};
struct cudaFuncAttributes {
    size_t sharedSizeBytes, constSizeBytes, localSizeBytes;
    int maxThreadsPerBlock, numRegs, ptxVersion, binaryVersion, cacheModeCA;
    int maxDynamicSharedSizeBytes, preferredShmemCarveout;
};
#define cudaStreamDefault 0x00u
#define cudaStreamNonBlocking 0x01u
#define cudaEventDefault 0x00u
#define cudaEventDisableTiming 0x02u

// The runtime calls kiln makes (emu_runtime.cpp): every one synchronous, every one checked.
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int device);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s = 0);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, const void *fn);
cudaError_t cudaFuncSetAttribute(const void *fn, cudaFuncAttribute a, int v);
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, const void *fn, int block, size_t dyn);

// ---- the execution model (emu_runtime.cpp) ---------------------------------------------------------
namespace kiln_emu {

extern thread_local uint3 t_thread, t_block;
extern thread_local dim3 t_block_dim, t_grid_dim;

void syncthreads();
void grid_sync();
enum shfl_mode { SHFL_IDX, SHFL_UP, SHFL_DOWN, SHFL_XOR };
uint64_t shfl(unsigned mask, uint64_t v, shfl_mode mode, int arg, int width);
void *shared_static(const void *key, size_t size, size_t align);
void *shared_dynamic();

// One launch: body(ctx) runs once per thread of the grid; fn identifies the kernel (attributes).
cudaError_t launch(const char *name, const void *fn, dim3 grid, dim3 block, size_t dyn,
                   cudaStream_t st, bool coop, void (*body)(void *), void *ctx);

template <class F> void call_body(void *f) { (*static_cast<F *>(f))(); }

// KILN_LAUNCH's object: converts the arguments to the kernel's parameter types once, then each
// emulated thread calls the kernel with its own copies (a kernel's parameters are by value).
template <class... P> struct launcher {
    void (*k)(P...);
    dim3 grid, block;
    size_t dyn;
    cudaStream_t st;
    const char *name;
    bool coop;
    // (the kernel's own parameter types: arguments convert as in a call, NULL included)
    cudaError_t operator()(typename std::decay<P>::type... a) const {
        std::tuple<typename std::decay<P>::type...> args(a...);
        auto body = [&]() { std::apply(k, args); };
        return launch(name, (const void *)k, grid, block, dyn, st, coop, &call_body<decltype(body)>,
                      &body);
    }
};

template <class... P>
launcher<P...> make_launcher(void (*k)(P...), dim3 g, dim3 b, size_t dyn, cudaStream_t st,
                             const char *name, bool coop) {
    return launcher<P...>{k, g, b, dyn, st, name, coop};
}

} // namespace kiln_emu

#define threadIdx (::kiln_emu::t_thread)
#define blockIdx (::kiln_emu::t_block)
#define blockDim (::kiln_emu::t_block_dim)
#define gridDim (::kiln_emu::t_grid_dim)
#define warpSize 32

#define KILN_LAUNCH(k, g, b, s, st) ::kiln_emu::make_launcher(k, g, b, s, st, #k, false)

// the cooperative launch: the status cudaLaunchCooperativeKernel would return
template <class... P>
static inline cudaError_t kiln_launch_coop(void (*k)(P...), dim3 g, dim3 b, size_t dyn,
                                           cudaStream_t st, typename std::decay<P>::type... a) {
    return ::kiln_emu::make_launcher(k, g, b, dyn, st, "cooperative kernel", true)(a...);
}

// Shared memory, private to each block (see the top of the file).
#define KILN_SHARED(T, name, dims)                                                              \
    typedef T kiln_emu_shared_##name##_t dims;                                                  \
    static const char kiln_emu_key_##name = 0;                                                  \
    kiln_emu_shared_##name##_t &name = *static_cast<kiln_emu_shared_##name##_t *>(            \
        ::kiln_emu::shared_static(&kiln_emu_key_##name, sizeof(kiln_emu_shared_##name##_t),     \
                                  alignof(kiln_emu_shared_##name##_t)))
#define KILN_DYNAMIC_SHARED(T, name) T *name = static_cast<T *>(::kiln_emu::shared_dynamic())

inline void __syncthreads() { ::kiln_emu::syncthreads(); }
inline void __threadfence() {}
inline void __threadfence_block() {}

// ---- warp shuffles: values up to 8 bytes, CUDA's lane rules (emu_runtime.cpp: kiln_emu::shfl) ----
template <class T> inline T kiln_emu_shfl(unsigned mask, T v, kiln_emu::shfl_mode m, int arg, int width) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of 8 bytes at most");
    uint64_t in = 0;
    memcpy(&in, &v, sizeof v);
    const uint64_t out = ::kiln_emu::shfl(mask, in, m, arg, width);
    T r;
    memcpy(&r, &out, sizeof r);
    return r;
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return kiln_emu_shfl(mask, v, kiln_emu::SHFL_XOR, lane_mask, width);
}
template <class T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return kiln_emu_shfl(mask, v, kiln_emu::SHFL_IDX, src, width);
}
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) {
    return kiln_emu_shfl(mask, v, kiln_emu::SHFL_UP, (int)d, width);
}
template <class T> inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
    return kiln_emu_shfl(mask, v, kiln_emu::SHFL_DOWN, (int)d, width);
}

// ---- loads and arithmetic intrinsics: the host rounds to nearest, like _rn ---------------------
template <class T> inline T __ldcg(const T *p) { return *p; }
template <class T> inline T __ldg(const T *p) { return *p; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __double2float_rn(double v) { return (float)v; }
inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float v) { int i; memcpy(&i, &v, 4); return i; }
inline float __uint_as_float(unsigned v) { float f; memcpy(&f, &v, 4); return f; }
inline unsigned __float_as_uint(float v) { unsigned i; memcpy(&i, &v, 4); return i; }
inline float __expf(float v) { return expf(v); }
inline float __logf(float v) { return logf(v); }
using std::isinf;
using std::isnan;

// ---- f16 and bf16: storage types with the GPU's conversions ------------------------------------
struct __half {
    uint16_t x;
};
struct __nv_bfloat16 {
    uint16_t x;
};
typedef __nv_bfloat16 nv_bfloat16;

inline float __half2float(__half h) {
    const uint32_t sign = (uint32_t)(h.x & 0x8000u) << 16, e = (h.x >> 10) & 0x1fu, m = h.x & 0x3ffu;
    uint32_t u;
    if (e == 0x1f) u = sign | 0x7f800000u | (m << 13);           // inf, NaN
    else if (e) u = sign | ((e + 112u) << 23) | (m << 13);       // normal
    else if (!m) u = sign;                                       // zero
    else {                                                       // subnormal: m * 2^-24
        float f = (float)m * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    return __uint_as_float(u);
}
// round to nearest even; NaN -> the GPU's canonical 0x7fff
inline __half __float2half_rn(float f) {
    const uint32_t u = __float_as_uint(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    __half h;
    if (a > 0x7f800000u) { h.x = 0x7fff; return h; }
    if (a >= 0x477ff000u) { h.x = (uint16_t)(sign | 0x7c00u); return h; } // >= 65520: inf
    if (a < 0x38800000u) { // below 2^-14: a multiple of 2^-24, rounded to nearest even
        const float m = fabsf(f) * 16777216.0f; // exact
        h.x = (uint16_t)(sign | (uint32_t)nearbyintf(m));
        return h;
    }
    const uint32_t r = a + 0xfffu + ((a >> 13) & 1u); // round the 13 dropped bits
    h.x = (uint16_t)(sign | ((r - 0x38000000u) >> 13));
    return h;
}
inline float __bfloat162float(__nv_bfloat16 b) { return __uint_as_float((uint32_t)b.x << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u = __float_as_uint(f);
    __nv_bfloat16 b;
    if ((u & 0x7fffffffu) > 0x7f800000u) { b.x = 0x7fff; return b; }
    u += 0x7fffu + ((u >> 16) & 1u);
    b.x = (uint16_t)(u >> 16);
    return b;
}
inline __half __ushort_as_half(unsigned short v) { __half h; h.x = v; return h; }
inline unsigned short __half_as_ushort(__half h) { return h.x; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short v) { __nv_bfloat16 b; b.x = v; return b; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }

// ---- cooperative groups: this_grid().sync() across the blocks of a cooperative launch ----------
namespace cooperative_groups {
struct grid_group {
    void sync() const { ::kiln_emu::grid_sync(); }
};
inline grid_group this_grid() { return grid_group{}; }
} // namespace cooperative_groups

#endif
