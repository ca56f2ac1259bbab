/* kiln/backend.h: choosing a device, and what each device can do.
 *
 * A backend owns memory and runs ops. The registry picks one by name:
 *   "cpu"        the CPU reference backend (always there)
 *   "cuda"       CUDA device 0; "cuda:N" device N (only in a CUDA build, only with a GPU)
 *   "auto"       CUDA device 0 when one can be used, else the CPU
 * Asking for "cuda" without a usable GPU returns KILN_ERR_NO_DEVICE with the message
 * "no CUDA device: <the driver's reason>". */
#ifndef KILN_BACKEND_H
#define KILN_BACKEND_H

#include "kiln/api.h"

#include "kiln/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_backend_kind { KILN_BACKEND_CPU = 0, KILN_BACKEND_CUDA } kiln_backend_kind;

/* Every op a backend can be asked to run. One switch over this per backend. */
typedef enum kiln_op_type {
    KILN_OP_FILL = 0,          /* dst = value                                  */
    KILN_OP_COPY,              /* dst = src (src may be strided), any dtype     */
    KILN_OP_CAST,              /* dst = (dst dtype) src                         */
    KILN_OP_ADD,               /* dst = a + b   (b repeats over a's leading dims) */
    KILN_OP_SUB,               /* dst = a - b                                   */
    KILN_OP_MUL,               /* dst = a * b                                   */
    KILN_OP_SCALE,             /* dst = alpha * a                               */
    KILN_OP_AXPY,              /* dst += alpha * a                              */
    KILN_OP_RELU,              /* dst = max(a, 0)                               */
    KILN_OP_RELU_BACK,         /* dst = dy * (x > 0)                            */
    KILN_OP_SUM,               /* dst = sum of a over the axes in a bitmask     */
    KILN_OP_MEAN,              /* dst = mean of a over the axes in a bitmask    */
    KILN_OP_GEMM,              /* C = alpha op(A) op(B) + beta C                */
    KILN_OP_SOFTMAX,           /* softmax over the last axis                    */
    KILN_OP_SOFTMAX_XENT,      /* probs and per-row loss from logits and labels */
    KILN_OP_SOFTMAX_XENT_BACK, /* dlogits = scale (probs - onehot(labels))      */
    KILN_OP_ARGMAX,            /* index of the largest value per row (i32)      */
    KILN_OP_ACCURACY,          /* number of rows whose argmax equals the label  */
    KILN_OP_BN_FWD_TRAIN,      /* batch norm forward, training mode (batchnorm.h) */
    KILN_OP_BN_FWD_INFER,      /* batch norm forward with the moving statistics */
    KILN_OP_BN_BWD,            /* batch norm backward: dx, dgamma, dbeta        */
    KILN_OP_BN_BWD_INFER,      /* batch norm backward of the inference forward  */
    /* nn ops (include/kiln/nn.h, src/ops/nn_ops.c) */
    KILN_OP_CONV2D,            /* y = conv(x, w) + b, NHWC, kernel (kh, kw, in, out) */
    KILN_OP_CONV2D_BACK_DATA,  /* dx of conv2d                                  */
    KILN_OP_CONV2D_BACK_FILTER,/* dw (and db) of conv2d                         */
    KILN_OP_MAX_POOL2D,        /* window max, NHWC                              */
    KILN_OP_MAX_POOL2D_BACK,   /* dy to each window's first maximal element     */
    KILN_OP_AVG_POOL2D,        /* window mean over in-range elements            */
    KILN_OP_AVG_POOL2D_BACK,   /* dy / count spread over each window            */
    KILN_OP_GLOBAL_AVG_POOL2D, /* (N, H, W, C) -> (N, C) mean                   */
    KILN_OP_GLOBAL_AVG_POOL2D_BACK, /* dx = dy / (H W)                          */
    KILN_OP_SIGMOID,           /* y = 1 / (1 + exp(-x))                         */
    KILN_OP_SIGMOID_BACK,      /* dx = dy y (1 - y)                             */
    KILN_OP_TANH,              /* y = tanh(x)                                   */
    KILN_OP_TANH_BACK,         /* dx = dy (1 - y^2)                             */
    KILN_OP_DROPOUT,           /* y = keep(seed, i) ? x / (1 - rate) : 0 (forward and backward) */
    /* optimizer ops (include/kiln/optim_ops.h, src/ops/optim_ops.c) */
    KILN_OP_ADAM,              /* fused Adam / AdamW / AMSGrad step             */
    KILN_OP_SGD,               /* fused SGD (momentum, Nesterov) step           */
    KILN_OP_SUMSQ_ACC,         /* acc += sum(g^2)                               */
    KILN_OP_CLIP_SCALE,        /* global-norm clip factor from a sum of squares */
    /* Keras' other activations and elementwise layers (include/kiln/nn.h: kiln_act) */
    KILN_OP_ACT,               /* y = f(x), f one of kiln_act_fn, in double     */
    KILN_OP_ACT_BACK,          /* dx = dy f'(x)                                 */
    KILN_OP_COPY_COLUMNS,      /* a block of columns into or out of a wider matrix (Concatenate) */
    /* resizing ops (include/kiln/nn.h, src/ops/resize_ops.c) */
    KILN_OP_PAD2D,             /* y = x shifted by (top, left) rows / columns, zeros around (or a crop) */
    KILN_OP_UPSAMPLE2D,        /* y = x repeated sh x sw (nearest)              */
    KILN_OP_UPSAMPLE2D_BACK,   /* dx = dy summed over each sh x sw block        */
    KILN_OP_BN_RELU,           /* a capability, never run alone: the BN ops take a fused ReLU (kiln_bn_params.relu) */
    KILN_OP_ADD_RELU,          /* dst = max(a + b, 0) in one pass (kiln_add_relu) */
    KILN_OP_COUNT
} kiln_op_type;

/* "add", "gemm", ...; "?" for no op. */
KILN_API const char *kiln_op_name(kiln_op_type op);

/* Opens a backend by name ("cpu", "cuda", "cuda:N", "auto"; NULL means "auto"). */
KILN_API kiln_status kiln_backend_init(const char *name, kiln_backend **out);
KILN_API void kiln_backend_free(kiln_backend *be);

/* "cpu", "cuda:0", ... ("(null)" for a NULL backend) */
KILN_API const char *kiln_backend_name(const kiln_backend *be);
/* The backend's kind; (kiln_backend_kind)-1 for a NULL backend. */
KILN_API kiln_backend_kind kiln_backend_kind_of(const kiln_backend *be);

/* Waits until every op and copy queued on the backend has finished; reports any deferred
 * device error. */
KILN_API kiln_status kiln_backend_synchronize(kiln_backend *be);

/* Markers in the backend's queue, so the host can reuse a buffer once the copies from it are
 * done without waiting for everything: kiln_backend_mark records marker `slot` (0 ..
 * KILN_MAX_MARKS - 1) behind all work queued so far; kiln_backend_wait_mark waits until that
 * work has finished (at once for a marker never recorded). The CPU backend runs everything at
 * once, so both return at once there. */
#define KILN_MAX_MARKS 8
KILN_API kiln_status kiln_backend_mark(kiln_backend *be, int slot);
KILN_API kiln_status kiln_backend_wait_mark(kiln_backend *be, int slot);

/* Whether `be` runs `op` on tensors of `dtype` (false for a NULL backend, no op or no dtype). */
KILN_API bool kiln_backend_supports(const kiln_backend *be, kiln_op_type op, kiln_dtype dtype);

/* True when this build contains the CUDA backend (whether or not a GPU is present). */
KILN_API bool kiln_cuda_built(void);

/* Host memory suited to asynchronous copies (pinned on a CUDA backend, plain otherwise). */
KILN_API kiln_status kiln_host_alloc(kiln_backend *be, size_t nbytes, void **out);
KILN_API void kiln_host_free(kiln_backend *be, void *ptr);

/* Bytes the backend holds from the system (its pool included) and how many times it has asked
 * the system for device memory; a steady training loop leaves the second unchanged. */
typedef struct kiln_memory_stats {
    size_t bytes_reserved;
    size_t bytes_in_use;
    uint64_t system_allocs;
} kiln_memory_stats;
KILN_API kiln_status kiln_backend_memory_stats(const kiln_backend *be, kiln_memory_stats *out);

/* Bytes the backend can still allocate: on the CPU the smaller of the kernel's MemAvailable
 * (/proc/meminfo) and what RLIMIT_AS leaves of the address space; on CUDA the device's free
 * memory (cudaMemGetInfo) plus the blocks cached in the backend's pool; SIZE_MAX when the system
 * does not say. The environment variable KILN_MEMORY_LIMIT (bytes, or a number with K, M, G or
 * T, powers of 1024) caps it; a malformed value is KILN_ERR_INVALID_ARG. kiln_model_build,
 * kiln_model_compile and the model's batch plans refuse what does not fit in it
 * (kiln_model_check_memory). */
KILN_API kiln_status kiln_backend_memory_available(const kiln_backend *be, size_t *out);

/* The threads of the CPU backend's work, process-wide: OpenMP's loops, OpenBLAS' GEMM and
 * oneDNN's convolutions (which run on OpenMP). n in [1, 4096]; KILN_ERR_INVALID_ARG otherwise.
 * Without a call the libraries' own defaults hold: OMP_NUM_THREADS (OpenBLAS reads it too, after
 * OPENBLAS_NUM_THREADS), else every core. kiln_threads_get: the count OpenMP will use now (1 in
 * a build without OpenMP). */
KILN_API kiln_status kiln_threads_set(int n);
KILN_API int kiln_threads_get(void);

#ifdef __cplusplus
}
#endif
#endif
