// cuda/common.cuh: what every CUDA source of kiln shares.
//  - checks that turn each CUDA runtime, cuBLAS and cuDNN call into a kiln_status whose message
//    names the call, file:line and the library's own words (the library never aborts);
//  - a check after every kernel launch (cudaGetLastError);
//  - grid-stride loops with int64 indices (tensors past 2^31 elements) and capped grids;
//  - fixed-order warp and block reductions, so results repeat bit for bit.
#ifndef KILN_CUDA_COMMON_CUH
#define KILN_CUDA_COMMON_CUH

#include <stdint.h>
#include <string.h>

#include "cuda.h"
#include "error.h"

// ---- status checks ---------------------------------------------------------------------------

static inline const char *kiln_cuda_basename(const char *file) {
    const char *s = strrchr(file, '/');
    return s ? s + 1 : file;
}

static inline kiln_status kiln_cuda_check_rt(cudaError_t e, const char *call, const char *file,
                                             int line) {
    if (e == cudaSuccess) return KILN_OK;
    (void)cudaGetLastError(); // clear a non-sticky error so the next launch check is not blamed
    kiln_status code = e == cudaErrorMemoryAllocation ? KILN_ERR_OOM : KILN_ERR_DEVICE;
    return kiln_error(code, "cuda: %s failed at %s:%d: %s (%s)", call, kiln_cuda_basename(file),
                      line, cudaGetErrorString(e), cudaGetErrorName(e));
}

static inline kiln_status kiln_cuda_check_blas(cublasStatus_t e, const char *call,
                                               const char *file, int line) {
    if (e == CUBLAS_STATUS_SUCCESS) return KILN_OK;
    kiln_status code = e == CUBLAS_STATUS_ALLOC_FAILED ? KILN_ERR_OOM : KILN_ERR_DEVICE;
    return kiln_error(code, "cuBLAS: %s failed at %s:%d: %s", call, kiln_cuda_basename(file),
                      line, cublasGetStatusString(e));
}

// cuDNN 9 groups its statuses by thousands (cudnn_graph.h: CUDNN_STATUS_CATEGORY): every
// CUDNN_STATUS_NOT_SUPPORTED_* code (3000..3999: shape, data type, layout, arch, shared memory...)
// is a configuration cuDNN refuses, not a broken device, so it is KILN_ERR_UNSUPPORTED and a
// caller (the benchmark, the parity tests) can skip that row with cuDNN's reason.
static inline kiln_status kiln_cuda_dnn_code(cudnnStatus_t e) {
    if (e == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
        e == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
        return KILN_ERR_OOM; // ALLOC_FAILED is the host code's old, deprecated name
    if ((int)CUDNN_STATUS_CATEGORY((int)e) == (int)CUDNN_STATUS_NOT_SUPPORTED)
        return KILN_ERR_UNSUPPORTED;
    return KILN_ERR_DEVICE;
}

static inline kiln_status kiln_cuda_check_dnn(cudnnStatus_t e, const char *call,
                                              const char *file, int line) {
    if (e == CUDNN_STATUS_SUCCESS) return KILN_OK;
    kiln_status code = kiln_cuda_dnn_code(e);
    return kiln_error(code, "cuDNN: %s failed at %s:%d: %s", call, kiln_cuda_basename(file),
                      line, cudnnGetErrorString(e));
}

// Return from the enclosing function (which returns kiln_status) when the call fails.
#define KILN_CUDA_TRY(call) KILN_TRY(kiln_cuda_check_rt((call), #call, __FILE__, __LINE__))
#define KILN_CUBLAS_TRY(call) KILN_TRY(kiln_cuda_check_blas((call), #call, __FILE__, __LINE__))
#define KILN_CUDNN_TRY(call) KILN_TRY(kiln_cuda_check_dnn((call), #call, __FILE__, __LINE__))
// After every kernel launch: a bad configuration or a sticky error from earlier work.
#define KILN_CUDA_CHECK_LAUNCH(kernel_name) \
    KILN_TRY(kiln_cuda_check_rt(cudaGetLastError(), "launch of " kernel_name, __FILE__, __LINE__))

// ---- launches: the one helper, so the same source compiles for nvcc and for the emulator -------
// KILN_LAUNCH(kernel, grid, block, dynamic shared bytes, stream)(args...) is kernel<<<...>>>(args)
// under nvcc and a host call under the emulator (emu/kiln_cuda_emu.cuh, which defines all of
// these itself); kiln_launch_coop(...) is cudaLaunchCooperativeKernel with typed arguments.
// Shared memory: KILN_SHARED(type, name, [dims]) and KILN_DYNAMIC_SHARED(type, name).
#ifndef KILN_CUDA_EMU
#define KILN_CUDA_NAME "cuda"
#define KILN_LAUNCH(k, g, b, s, st) k<<<g, b, s, st>>>
#define KILN_SHARED(T, name, dims) __shared__ T name dims
#define KILN_DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) T name[]

template <class... P>
static inline cudaError_t kiln_launch_coop(void (*k)(P...), dim3 g, dim3 b, size_t dyn, cudaStream_t st,
                                           P... a) {
    void *args[] = {(void *)&a...};
    return cudaLaunchCooperativeKernel((const void *)k, g, b, args, dyn, st);
}
#endif

// ---- grids -----------------------------------------------------------------------------------

#define KILN_CUDA_BLOCK 256
// Grids are capped; grid-stride loops cover the rest. The cap depends on nothing but the
// work size, so no result depends on the GPU model.
#define KILN_CUDA_MAX_BLOCKS ((int64_t)1 << 20)

// Blocks for `work` items at `per_block` items per block: at least 1, at most the cap.
static inline unsigned kiln_cuda_blocks(int64_t work, int64_t per_block) {
    int64_t b = (work + per_block - 1) / per_block;
    return (unsigned)(b < 1 ? 1 : b > KILN_CUDA_MAX_BLOCKS ? KILN_CUDA_MAX_BLOCKS : b);
}

// for (int64_t i = global thread; i < n; i += all threads)
#define KILN_CUDA_FOR(i, n)                                                     \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)blockDim.x * gridDim.x)

// f(i) for every i in [0, n): the one elementwise loop, with f a small functor.
template <class F> __global__ void kiln_map_kernel(int64_t n, F f) {
    KILN_CUDA_FOR(i, n) f(i);
}

template <class F>
static inline kiln_status kiln_cuda_map(cudaStream_t stream, int64_t n, const F &f,
                                        const char *name) {
    if (n <= 0) return KILN_OK; // a zero-block grid is an invalid launch
    KILN_LAUNCH(kiln_map_kernel<F>, kiln_cuda_blocks(n, KILN_CUDA_BLOCK), KILN_CUDA_BLOCK, 0, stream)(n, f);
    cudaError_t e = cudaGetLastError();
    return kiln_cuda_check_rt(e, name, __FILE__, __LINE__);
}

// ---- fixed-order reductions ----------------------------------------------------------------
// A butterfly over the 32 lanes of a warp: lane i combines with lane i^o, so with a commutative
// op every lane ends with the same bits, and the order depends on nothing at run time.

// kiln_shfl_xor moves a value between lanes; a struct type gets its own overload (found by
// argument-dependent lookup) that moves each field.
template <class T> __device__ __forceinline__ T kiln_shfl_xor(T v, int o) {
    return __shfl_xor_sync(0xffffffffu, v, o);
}

template <class T, class Op> __device__ __forceinline__ T kiln_warp_reduce(T v, Op op) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, kiln_shfl_xor(v, o));
    return v;
}

// The whole block (blockDim.x a multiple of 32, at most 1024) combines v; every thread gets the
// result. smem: 32 T of shared memory. Every thread of the block must call it.
template <class T, class Op> __device__ __forceinline__ T kiln_block_reduce(T v, Op op, T *smem) {
    v = kiln_warp_reduce(v, op);
    const int warp = (int)(threadIdx.x / 32), nwarps = (int)(blockDim.x / 32);
    __syncthreads(); // an earlier call may still be reading smem
    if ((threadIdx.x & 31) == 0) smem[warp] = v;
    __syncthreads();
    v = smem[0];
    for (int w = 1; w < nwarps; w++) v = op(v, smem[w]); // same order in every thread
    return v;
}

struct kiln_sum_op {
    template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

// The quiet NaN C's NAN macro stores (0x7fc00000), so NaN results match the CPU bit for bit.
#define KILN_CUDA_NAN_F (__int_as_float(0x7fc00000))

#endif
