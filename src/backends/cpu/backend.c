/* cpu/backend.c: the CPU reference backend: host memory, synchronous copies, and one switch
 * over the op types. Plain loops, double accumulation where a sum is taken: it is the
 * reference the CUDA backend answers to. */
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "error.h"
#include "op_args.h"

typedef kiln_cpu_ctx cpu_ctx; /* cpu.h */

/* Each block carries its size in a 64-byte header, so stats stay exact. */
#define CPU_ALIGN 64

static kiln_status cpu_alloc(kiln_backend *be, size_t nbytes, void **out) {
    cpu_ctx *c = be->ctx;
    size_t total = CPU_ALIGN + ((nbytes + CPU_ALIGN - 1) / CPU_ALIGN) * CPU_ALIGN;
    if (total < nbytes) return kiln_error(KILN_ERR_OOM, "cpu: allocation of %zu bytes overflows", nbytes);
    char *p = aligned_alloc(CPU_ALIGN, total);
    if (!p) return kiln_error(KILN_ERR_OOM, "cpu: out of host memory allocating %zu bytes", nbytes);
    memcpy(p, &total, sizeof total);
    c->bytes_in_use += total;
    c->system_allocs++;
    *out = p + CPU_ALIGN;
    return KILN_OK;
}

static void cpu_release(kiln_backend *be, void *ptr) {
    cpu_ctx *c = be->ctx;
    char *p = (char *)ptr - CPU_ALIGN;
    size_t total;
    memcpy(&total, p, sizeof total);
    c->bytes_in_use -= total;
    free(p);
}

static kiln_status cpu_upload(kiln_backend *be, void *dst, const void *host, size_t n, bool async) {
    memcpy(dst, host, n);
    return KILN_OK;
}

static kiln_status cpu_download(kiln_backend *be, void *host, const void *src, size_t n, bool async) {
    memcpy(host, src, n);
    return KILN_OK;
}

static kiln_status cpu_synchronize(kiln_backend *be) { return KILN_OK; }

static kiln_status cpu_host_alloc(kiln_backend *be, size_t nbytes, void **out) {
    *out = malloc(nbytes ? nbytes : 1);
    return *out ? KILN_OK : kiln_error(KILN_ERR_OOM, "cpu: out of host memory allocating %zu bytes", nbytes);
}

static void cpu_host_free(kiln_backend *be, void *ptr) { free(ptr); }

static bool cpu_supports_op(const kiln_backend *be, kiln_op_type op, kiln_dtype dtype) {
    switch (op) {
    case KILN_OP_FILL:
    case KILN_OP_COPY:
    case KILN_OP_CAST: return dtype < KILN_DTYPE_COUNT;
    case KILN_OP_BN_FWD_TRAIN:
    case KILN_OP_BN_FWD_INFER:
    case KILN_OP_BN_BWD:
    case KILN_OP_BN_BWD_INFER:
    case KILN_OP_BN_RELU: return dtype == KILN_F32 || dtype == KILN_F16 || dtype == KILN_BF16;
    default: return dtype == KILN_F32;
    }
}

static kiln_status cpu_compute(kiln_backend *be, const kiln_op *op) {
    switch (op->type) {
    case KILN_OP_FILL: kiln_cpu_fill(op); break;
    case KILN_OP_COPY: kiln_cpu_copy(op); break;
    case KILN_OP_CAST: kiln_cpu_cast(op); break;
    case KILN_OP_ADD:
    case KILN_OP_SUB:
    case KILN_OP_MUL:
    case KILN_OP_ADD_RELU: kiln_cpu_binary(op); break;
    case KILN_OP_SCALE:
    case KILN_OP_AXPY:
    case KILN_OP_RELU:
    case KILN_OP_RELU_BACK: kiln_cpu_unary(op); break;
    case KILN_OP_SUM:
    case KILN_OP_MEAN: return kiln_cpu_reduce(op);
    case KILN_OP_GEMM: return kiln_cpu_gemm(be, op);
    case KILN_OP_SOFTMAX:
    case KILN_OP_SOFTMAX_XENT:
    case KILN_OP_SOFTMAX_XENT_BACK: kiln_cpu_softmax(op); break;
    case KILN_OP_ARGMAX:
    case KILN_OP_ACCURACY: kiln_cpu_argmax(op); break;
    case KILN_OP_CONV2D:
    case KILN_OP_CONV2D_BACK_DATA:
    case KILN_OP_CONV2D_BACK_FILTER: return kiln_cpu_conv2d(be, op); /* groups too */
    case KILN_OP_PAD2D:
    case KILN_OP_UPSAMPLE2D:
    case KILN_OP_UPSAMPLE2D_BACK: kiln_cpu_resize2d(op); break;
    case KILN_OP_MAX_POOL2D:
    case KILN_OP_MAX_POOL2D_BACK:
    case KILN_OP_AVG_POOL2D:
    case KILN_OP_AVG_POOL2D_BACK:
    case KILN_OP_GLOBAL_AVG_POOL2D:
    case KILN_OP_GLOBAL_AVG_POOL2D_BACK: return kiln_cpu_pool2d(op);
    case KILN_OP_SIGMOID:
    case KILN_OP_SIGMOID_BACK:
    case KILN_OP_TANH:
    case KILN_OP_TANH_BACK:
    case KILN_OP_DROPOUT: kiln_cpu_activation(op); break;
    case KILN_OP_ADAM:
    case KILN_OP_SGD:
    case KILN_OP_SUMSQ_ACC:
    case KILN_OP_CLIP_SCALE: kiln_cpu_optim(op); break;
    case KILN_OP_BN_FWD_TRAIN:
    case KILN_OP_BN_FWD_INFER:
    case KILN_OP_BN_BWD:
    case KILN_OP_BN_BWD_INFER: return kiln_cpu_batchnorm(op);
    case KILN_OP_ACT:
    case KILN_OP_ACT_BACK:
    case KILN_OP_COPY_COLUMNS: kiln_cpu_act(op); break;
    default:
        return kiln_error(KILN_ERR_UNSUPPORTED, "cpu: op %s is not implemented",
                          kiln_op_name(op->type));
    }
    return KILN_OK;
}

static kiln_status cpu_memory_stats(const kiln_backend *be, kiln_memory_stats *out) {
    const cpu_ctx *c = be->ctx;
    out->bytes_in_use = c->bytes_in_use;
    out->bytes_reserved = c->bytes_in_use + kiln_cpu_scratch_held(c);
    out->system_allocs = c->system_allocs;
    return KILN_OK;
}

/* everything has run by the time a call returns: markers are always passed */
static kiln_status cpu_mark(kiln_backend *be, int slot) { return KILN_OK; }
static kiln_status cpu_wait_mark(kiln_backend *be, int slot) { return KILN_OK; }

static void cpu_free(kiln_backend *be) {
    kiln_cpu_dnnl_free(be->ctx);
    kiln_cpu_scratch_free(be->ctx);
    free(be->ctx);
    free(be);
}

static const kiln_backend_iface cpu_iface = {
    .free = cpu_free,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_upload,
    .download = cpu_download,
    .synchronize = cpu_synchronize,
    .host_alloc = cpu_host_alloc,
    .host_free = cpu_host_free,
    .supports_op = cpu_supports_op,
    .compute = cpu_compute,
    .memory_stats = cpu_memory_stats,
    .memory_available = kiln_cpu_memory_available,
    .mark = cpu_mark,
    .wait_mark = cpu_wait_mark,
};

/* a path forced by environment variable `var`: 1 for `classic` (im2col, OpenBLAS), 2 for
 * "onednn", 0 (auto) otherwise; the values of kiln_cpu_conv_impl and kiln_cpu_gemm_impl */
static int impl_from_env(const char *var, const char *classic) {
    const char *v = getenv(var);
    return !v ? 0 : !strcmp(v, classic) ? 1 : !strcmp(v, "onednn") ? 2 : 0;
}

kiln_status kiln_backend_cpu_init(kiln_backend **out) {
    kiln_backend *be = calloc(1, sizeof *be);
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return kiln_error(KILN_ERR_OOM, "cpu: out of host memory opening the backend");
    }
    c->conv_impl = (kiln_cpu_conv_impl)impl_from_env("KILN_CPU_CONV", "im2col");
    c->gemm_impl = (kiln_cpu_gemm_impl)impl_from_env("KILN_CPU_GEMM", "openblas");
    be->iface = &cpu_iface;
    be->ctx = c;
    be->kind = KILN_BACKEND_CPU;
    be->log_interval = 1;
    be->device = -1;
    strcpy(be->name, "cpu");
    *out = be;
    return KILN_OK;
}
