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

void kiln_cpu_fill(const kiln_op *op);
void kiln_cpu_copy(const kiln_op *op);
void kiln_cpu_cast(const kiln_op *op);
void kiln_cpu_binary(const kiln_op *op);   /* ADD, SUB, MUL */
void kiln_cpu_unary(const kiln_op *op);    /* SCALE, AXPY, RELU, RELU_BACK */
kiln_status kiln_cpu_reduce(const kiln_op *op);   /* SUM, MEAN */
void kiln_cpu_gemm(const kiln_op *op);
void kiln_cpu_softmax(const kiln_op *op);  /* SOFTMAX, SOFTMAX_XENT, SOFTMAX_XENT_BACK */
void kiln_cpu_argmax(const kiln_op *op);   /* ARGMAX, ACCURACY */
kiln_status kiln_cpu_conv2d(const kiln_op *op); /* CONV2D, _BACK_DATA, _BACK_FILTER (conv.c) */
/* CONV2D, _BACK_DATA, _BACK_FILTER with groups > 1: direct loops, double sums (conv_grouped.c) */
kiln_status kiln_cpu_conv2d_grouped(const kiln_op *op);
void kiln_cpu_resize2d(const kiln_op *op); /* PAD2D, UPSAMPLE2D(_BACK) (resize.c) */
kiln_status kiln_cpu_pool2d(const kiln_op *op); /* MAX/AVG_POOL2D(_BACK), GLOBAL_AVG_POOL2D(_BACK) */
void kiln_cpu_activation(const kiln_op *op); /* SIGMOID(_BACK), TANH(_BACK), DROPOUT */
void kiln_cpu_optim(const kiln_op *op);      /* ADAM, SGD, SUMSQ_ACC, CLIP_SCALE */
kiln_status kiln_cpu_batchnorm(const kiln_op *op); /* BN_FWD_TRAIN, BN_FWD_INFER, BN_BWD, BN_BWD_INFER */
void kiln_cpu_act(const kiln_op *op);        /* ACT, ACT_BACK, COPY_COLUMNS (act.c) */

#endif
