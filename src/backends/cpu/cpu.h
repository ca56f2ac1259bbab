/* cpu.h: the CPU backend's op families (internal). Each takes a checked kiln_op (the front end
 * in src/ops has checked dtypes, shapes and contiguity), reads its family's arguments
 * (src/ops/op_args.h, which each family's file includes) and runs it on host memory. */
#ifndef KILN_CPU_H
#define KILN_CPU_H

#include "backend_impl.h"

/* the backend itself, opened by the registry (src/backends/registry.c) */
kiln_status kiln_backend_cpu_init(kiln_backend **out);
/* memory.c: the host memory still available (MemAvailable, and what RLIMIT_AS leaves) */
kiln_status kiln_cpu_memory_available(const kiln_backend *be, size_t *out);

/* The backend's context (be->ctx). Scratch slots are grow-only buffers an op reuses from call
 * to call (memory.c), so that a training step's patch matrices and workspaces are not
 * malloc'ed, faulted in and handed back to the system at every step. */
enum { KILN_CPU_SCRATCH_COL, KILN_CPU_SCRATCH_WEIGHTS, KILN_CPU_SCRATCH_DNNL,
       KILN_CPU_SCRATCH_SLOTS };
/* which convolution runs (KILN_CPU_CONV: "auto", "im2col" or "onednn", read at open) */
typedef enum { KILN_CPU_CONV_AUTO, KILN_CPU_CONV_IM2COL, KILN_CPU_CONV_ONEDNN } kiln_cpu_conv_impl;
/* which GEMM runs (KILN_CPU_GEMM: "auto", "openblas" or "onednn", read at open) */
typedef enum { KILN_CPU_GEMM_AUTO, KILN_CPU_GEMM_OPENBLAS, KILN_CPU_GEMM_ONEDNN } kiln_cpu_gemm_impl;
typedef struct kiln_cpu_dnnl kiln_cpu_dnnl;
typedef struct kiln_cpu_ctx {
    size_t bytes_in_use;
    uint64_t system_allocs;
    void *scratch[KILN_CPU_SCRATCH_SLOTS];
    size_t scratch_bytes[KILN_CPU_SCRATCH_SLOTS];
    kiln_cpu_conv_impl conv_impl;
    kiln_cpu_gemm_impl gemm_impl;
    kiln_cpu_dnnl *dnnl; /* conv_dnnl.c: engine, stream and primitive cache; NULL until used */
} kiln_cpu_ctx;
/* A scratch buffer of at least `bytes` (64-byte aligned) in `slot`, contents undefined; it
 * stays valid until the next call for the same slot. */
kiln_status kiln_cpu_scratch(kiln_backend *be, int slot, size_t bytes, void **out);
void kiln_cpu_scratch_free(kiln_cpu_ctx *c);
size_t kiln_cpu_scratch_held(const kiln_cpu_ctx *c);

/* fn(ctx, lo, hi) over [0, n) split into one contiguous range per OpenMP thread, each range's
 * ends multiples of `align` (except n); one call on this thread when n < KILN_CPU_PAR_MIN or one
 * thread is set. For elementwise loops: the split does not change any element's result. */
#define KILN_CPU_PAR_MIN 65536
typedef void (*kiln_cpu_range_fn)(void *ctx, int64_t lo, int64_t hi);
void kiln_cpu_parallel_ranges(int64_t n, int64_t align, kiln_cpu_range_fn fn, void *ctx);

void kiln_cpu_fill(const kiln_op *op);
void kiln_cpu_copy(const kiln_op *op);
void kiln_cpu_cast(const kiln_op *op);
void kiln_cpu_binary(const kiln_op *op);   /* ADD, SUB, MUL */
void kiln_cpu_unary(const kiln_op *op);    /* SCALE, AXPY, RELU, RELU_BACK */
kiln_status kiln_cpu_reduce(const kiln_op *op);   /* SUM, MEAN */
kiln_status kiln_cpu_gemm(kiln_backend *be, const kiln_op *op); /* oneDNN's matmul, else OpenBLAS */
void kiln_cpu_softmax(const kiln_op *op);  /* SOFTMAX, SOFTMAX_XENT, SOFTMAX_XENT_BACK */
void kiln_cpu_argmax(const kiln_op *op);   /* ARGMAX, ACCURACY */
kiln_status kiln_cpu_conv2d(kiln_backend *be, const kiln_op *op); /* CONV2D, _BACK_DATA, _BACK_FILTER (conv.c) */
/* CONV2D, _BACK_DATA, _BACK_FILTER with groups > 1: direct loops, double sums (conv_grouped.c);
 * kiln_cpu_conv2d runs it where oneDNN declines (or is not built in, or KILN_CPU_CONV=im2col) */
kiln_status kiln_cpu_conv2d_grouped(const kiln_op *op);
void kiln_cpu_resize2d(const kiln_op *op); /* PAD2D, UPSAMPLE2D(_BACK) (resize.c) */
/* conv_dnnl.c: the same through oneDNN; *done false when it declines (a build without oneDNN,
 * KILN_CPU_CONV=im2col, a shape oneDNN refuses) and conv.c's im2col path should run. The
 * backward filter leaves db to the caller. */
kiln_status kiln_cpu_dnnl_conv2d(kiln_backend *be, const kiln_op *op, bool *done);
kiln_status kiln_cpu_dnnl_gemm(kiln_backend *be, const kiln_op *op, bool *done); /* the same for GEMM */
void kiln_cpu_dnnl_free(kiln_cpu_ctx *c);
/* primitives in the cache (0 in a build without oneDNN); whether the build has oneDNN */
int kiln_cpu_dnnl_cached(const kiln_cpu_ctx *c);
bool kiln_cpu_dnnl_built(void);
kiln_status kiln_cpu_pool2d(const kiln_op *op); /* MAX/AVG_POOL2D(_BACK), GLOBAL_AVG_POOL2D(_BACK) */
void kiln_cpu_activation(const kiln_op *op); /* SIGMOID(_BACK), TANH(_BACK), DROPOUT */
void kiln_cpu_optim(const kiln_op *op);      /* ADAM, SGD, SUMSQ_ACC, CLIP_SCALE */
kiln_status kiln_cpu_batchnorm(const kiln_op *op); /* BN_FWD_TRAIN, BN_FWD_INFER, BN_BWD, BN_BWD_INFER */
void kiln_cpu_act(const kiln_op *op);        /* ACT, ACT_BACK, COPY_COLUMNS (act.c) */

#endif
