/* cuda/cuda.h: the CUDA backend's internals (like src/backends/cpu/cpu.h): the backend
 * context, the caching device-memory pool, handles and scratch memory shared by every op family
 * (context.cu), and the op families that backend.cu's one switch calls. Included by the .cu
 * files of src/backends/cuda (and the benchmark's device code) only.
 *
 * Every family takes a kiln_op already checked by the front end in src/ops (dtypes, shapes,
 * contiguity), reads its family's arguments (src/ops/op_args.h), queues its work on the
 * backend's stream and returns KILN_OK or a status naming the failed call. */
#ifndef KILN_CUDA_H
#define KILN_CUDA_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "op_args.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the caching pool (allocator.cu) ------------------------------------------------------ */

typedef struct kiln_cuda_pool kiln_cuda_pool;

kiln_status kiln_cuda_pool_new(int device, kiln_cuda_pool **out);
/* A block of at least nbytes (0 allowed), reused from the free lists when one fits. */
kiln_status kiln_cuda_pool_alloc(kiln_cuda_pool *p, size_t nbytes, void **out);
/* Back to the free lists (not to the driver); NULL is allowed. Safe while kernels on the
 * backend's one stream still use the block: later users are queued behind them. */
void kiln_cuda_pool_release(kiln_cuda_pool *p, void *ptr);
void kiln_cuda_pool_stats(const kiln_cuda_pool *p, kiln_memory_stats *out);
/* Returns every block to the driver. */
void kiln_cuda_pool_free(kiln_cuda_pool *p);

/* ---- the backend context (created by backend.cu; its shared resources in context.cu) -------- */

/* The BN plans already made (batchnorm.cu): defined there, freed by kiln_cuda_bn_plans_free. */
typedef struct kiln_cuda_bn_plans kiln_cuda_bn_plans;

typedef struct kiln_cuda_ctx {
    int device;
    cudaStream_t stream;       /* every op and async copy of the backend runs here, in order */
    cublasHandle_t cublas;     /* bound to stream */
    cudnnHandle_t cudnn;       /* created on first use by kiln_cuda_cudnn, bound to stream */
    kiln_cuda_pool *pool;
    void *scratch;             /* kiln_cuda_scratch's buffer, from the pool, never shrinks */
    size_t scratch_bytes;
    cudaEvent_t marks[KILN_MAX_MARKS]; /* kiln_backend_mark's events, created on first use */
    kiln_cuda_bn_plans *bn_plans; /* kiln's BN plans per shape, made on first use */
    float *bn_ones, *bn_zeros;    /* cuDNN BN's gamma = 1, beta = 0 when a layer has none: */
    int64_t bn_const_c;           /* bn_const_c of each, from the pool, filled once */
} kiln_cuda_ctx;

static inline kiln_cuda_ctx *kiln_cuda_ctx_of(const kiln_backend *be) {
    return (kiln_cuda_ctx *)be->ctx;
}
static inline cudaStream_t kiln_cuda_stream(const kiln_backend *be) {
    return kiln_cuda_ctx_of(be)->stream;
}

/* Makes the backend's device current for the calling thread (cheap when it already is). */
kiln_status kiln_cuda_activate(const kiln_backend *be);

/* Device memory from the backend's pool, its device made current first. */
kiln_status kiln_cuda_alloc(kiln_backend *be, size_t nbytes, void **out);

/* The backend's cuDNN handle, created (and bound to its stream) on the first call. On failure
 * returns NULL and sets *status (when status is non-NULL) with the message recorded. */
cudnnHandle_t kiln_cuda_cudnn(kiln_backend *be, kiln_status *status);

/* A device buffer of at least `bytes` for temporary use inside one op. The same buffer comes
 * back on every call (grown through the pool when too small, never shrunk), so an op must not
 * hold it across another op's call to kiln_cuda_scratch; the stream orders the reuse. */
kiln_status kiln_cuda_scratch(kiln_backend *be, size_t bytes, void **out);

/* ---- op families, one file each --------------------------------------------------------- */

/* elementwise.cu */
kiln_status kiln_cuda_fill(kiln_backend *be, const kiln_op *op);
kiln_status kiln_cuda_copy(kiln_backend *be, const kiln_op *op);
kiln_status kiln_cuda_cast(kiln_backend *be, const kiln_op *op);
kiln_status kiln_cuda_binary(kiln_backend *be, const kiln_op *op);  /* ADD, SUB, MUL */
kiln_status kiln_cuda_unary(kiln_backend *be, const kiln_op *op);   /* SCALE, AXPY, RELU, RELU_BACK */
/* y (n) = alpha * x (n) in f32 on `stream` (y may alias x); for other families (GEMM, K = 0) */
kiln_status kiln_cuda_scale_f32(cudaStream_t stream, const float *x, float alpha, float *y,
                                int64_t n);
/* reduce.cu */
kiln_status kiln_cuda_reduce(kiln_backend *be, const kiln_op *op);  /* SUM, MEAN */
/* gemm.cu */
kiln_status kiln_cuda_gemm(kiln_backend *be, const kiln_op *op);
/* softmax.cu */
kiln_status kiln_cuda_softmax(kiln_backend *be, const kiln_op *op); /* SOFTMAX, _XENT, _XENT_BACK */
kiln_status kiln_cuda_argmax(kiln_backend *be, const kiln_op *op);  /* ARGMAX, ACCURACY */
/* conv.cu (cuDNN): CONV2D, CONV2D_BACK_DATA, CONV2D_BACK_FILTER */
kiln_status kiln_cuda_conv2d(kiln_backend *be, const kiln_op *op);
kiln_status kiln_cuda_resize2d(kiln_backend *be, const kiln_op *op); /* PAD2D, UPSAMPLE2D(_BACK) (resize.cu) */
/* pooling.cu: MAX/AVG_POOL2D(_BACK), GLOBAL_AVG_POOL2D(_BACK) */
kiln_status kiln_cuda_pool2d(kiln_backend *be, const kiln_op *op);
/* activation.cu: SIGMOID(_BACK), TANH(_BACK), DROPOUT */
kiln_status kiln_cuda_activation(kiln_backend *be, const kiln_op *op);
/* optim.cu: ADAM, SGD, SUMSQ_ACC, CLIP_SCALE */
kiln_status kiln_cuda_optim(kiln_backend *be, const kiln_op *op);
/* batchnorm.cu: BN_FWD_TRAIN, BN_FWD_INFER, BN_BWD, BN_BWD_INFER (kiln's kernels, or cuDNN's
 * when the op's impl asks for it) */
kiln_status kiln_cuda_batchnorm(kiln_backend *be, const kiln_op *op);
/* comm_nccl.cu: the backend's device communicator (iface.comm_create): NCCL over the ranks of
 * bootstrap, its unique id broadcast by rank 0 through bootstrap; gradient buckets on a stream
 * of its own. *out NULL when kiln was built without NCCL (and on the emulator). */
kiln_status kiln_cuda_comm_create(kiln_backend *be, kiln_comm *bootstrap, kiln_comm **out);
/* The plan cache of kiln_cuda_batchnorm (host memory only); NULL is allowed. */
void kiln_cuda_bn_plans_free(kiln_cuda_bn_plans *plans);
/* batchnorm_cudnn.cu: the BN ops that cuDNN has, through cuDNN (called by kiln_cuda_batchnorm) */
kiln_status kiln_cuda_batchnorm_cudnn(kiln_backend *be, const kiln_op *op);

#ifdef __cplusplus
}
#endif
#endif
