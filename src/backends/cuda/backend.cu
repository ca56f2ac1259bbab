// cuda/backend.cu: the CUDA backend: device selection, the function table (memory through the
// caching pool, copies on the backend's own stream, pinned host memory), and `compute`, the one
// switch over op types. The resources the op families share (scratch, cuDNN) are context.cu's.
#include <stdio.h>
#include <stdlib.h>

#include "common.cuh"

static kiln_cuda_ctx *ctx_of(const kiln_backend *be) { return kiln_cuda_ctx_of(be); }

// Each entry point makes the backend's device current for the calling thread (cheap when it
// already is), so several cuda:N backends can be used from one thread.
static kiln_status activate(const kiln_backend *be) { return kiln_cuda_activate(be); }

// ---- memory ----------------------------------------------------------------------------------

static kiln_status cuda_alloc(kiln_backend *be, size_t nbytes, void **out) {
    return kiln_cuda_alloc(be, nbytes, out);
}

static void cuda_release(kiln_backend *be, void *ptr) {
    kiln_cuda_pool_release(ctx_of(be)->pool, ptr);
}

static kiln_status cuda_memory_stats(const kiln_backend *be, kiln_memory_stats *out) {
    kiln_cuda_pool_stats(ctx_of(be)->pool, out);
    return KILN_OK;
}

// free device memory (cudaMemGetInfo) plus the pool's cached blocks, which it hands out again
static kiln_status cuda_memory_available(const kiln_backend *be, size_t *out) {
    KILN_TRY(activate(be));
    size_t free_bytes = 0, total = 0;
    KILN_CUDA_TRY(cudaMemGetInfo(&free_bytes, &total));
    kiln_memory_stats st;
    kiln_cuda_pool_stats(ctx_of(be)->pool, &st);
    *out = free_bytes + (st.bytes_reserved - st.bytes_in_use);
    return KILN_OK;
}

// ---- copies and synchronization --------------------------------------------------------------

static kiln_status cuda_synchronize(kiln_backend *be) {
    KILN_TRY(activate(be));
    KILN_CUDA_TRY(cudaStreamSynchronize(ctx_of(be)->stream));
    return KILN_OK;
}

static kiln_status cuda_upload(kiln_backend *be, void *dst, const void *host, size_t n,
                               bool async) {
    KILN_TRY(activate(be));
    KILN_CUDA_TRY(cudaMemcpyAsync(dst, host, n, cudaMemcpyHostToDevice, ctx_of(be)->stream));
    return async ? KILN_OK : cuda_synchronize(be);
}

static kiln_status cuda_download(kiln_backend *be, void *host, const void *src, size_t n,
                                 bool async) {
    KILN_TRY(activate(be));
    KILN_CUDA_TRY(cudaMemcpyAsync(host, src, n, cudaMemcpyDeviceToHost, ctx_of(be)->stream));
    return async ? KILN_OK : cuda_synchronize(be);
}

static kiln_status cuda_host_alloc(kiln_backend *be, size_t nbytes, void **out) {
    KILN_TRY(activate(be));
    KILN_CUDA_TRY(cudaMallocHost(out, nbytes ? nbytes : 1));
    return KILN_OK;
}

static void cuda_host_free(kiln_backend *be, void *ptr) {
    if (cudaFreeHost(ptr) != cudaSuccess) (void)cudaGetLastError();
}

// ---- ops -------------------------------------------------------------------------------------

static bool cuda_supports_op(const kiln_backend *be, kiln_op_type op, kiln_dtype dtype) {
    switch (op) {
    case KILN_OP_FILL:
    case KILN_OP_COPY:
    case KILN_OP_CAST: return (int)dtype >= 0 && dtype < KILN_DTYPE_COUNT;
    case KILN_OP_ADD:
    case KILN_OP_SUB:
    case KILN_OP_MUL:
    case KILN_OP_SCALE:
    case KILN_OP_AXPY:
    case KILN_OP_RELU:
    case KILN_OP_RELU_BACK:
    case KILN_OP_SUM:
    case KILN_OP_MEAN:
    case KILN_OP_GEMM:
    case KILN_OP_SOFTMAX:
    case KILN_OP_SOFTMAX_XENT:
    case KILN_OP_SOFTMAX_XENT_BACK:
    case KILN_OP_ARGMAX:
    case KILN_OP_ACCURACY:
    case KILN_OP_CONV2D:
    case KILN_OP_CONV2D_BACK_DATA:
    case KILN_OP_CONV2D_BACK_FILTER:
    case KILN_OP_MAX_POOL2D:
    case KILN_OP_MAX_POOL2D_BACK:
    case KILN_OP_AVG_POOL2D:
    case KILN_OP_AVG_POOL2D_BACK:
    case KILN_OP_GLOBAL_AVG_POOL2D:
    case KILN_OP_GLOBAL_AVG_POOL2D_BACK:
    case KILN_OP_SIGMOID:
    case KILN_OP_SIGMOID_BACK:
    case KILN_OP_TANH:
    case KILN_OP_TANH_BACK:
    case KILN_OP_DROPOUT:
    case KILN_OP_ADAM:
    case KILN_OP_SGD:
    case KILN_OP_SUMSQ_ACC:
    case KILN_OP_CLIP_SCALE:
    case KILN_OP_ACT:
    case KILN_OP_ACT_BACK:
    case KILN_OP_COPY_COLUMNS: return dtype == KILN_F32;
    case KILN_OP_PAD2D:
    case KILN_OP_UPSAMPLE2D:
    case KILN_OP_UPSAMPLE2D_BACK: return dtype == KILN_F32;
    case KILN_OP_BN_FWD_TRAIN:
    case KILN_OP_BN_FWD_INFER:
    case KILN_OP_BN_BWD:
    case KILN_OP_BN_BWD_INFER: return dtype == KILN_F32 || dtype == KILN_F16 || dtype == KILN_BF16;
    default: return false;
    }
}

static kiln_status cuda_compute(kiln_backend *be, const kiln_op *op) {
    KILN_TRY(activate(be));
    switch (op->type) {
    case KILN_OP_FILL: return kiln_cuda_fill(be, op);
    case KILN_OP_COPY: return kiln_cuda_copy(be, op);
    case KILN_OP_CAST: return kiln_cuda_cast(be, op);
    case KILN_OP_ADD:
    case KILN_OP_SUB:
    case KILN_OP_MUL: return kiln_cuda_binary(be, op);
    case KILN_OP_SCALE:
    case KILN_OP_AXPY:
    case KILN_OP_RELU:
    case KILN_OP_RELU_BACK: return kiln_cuda_unary(be, op);
    case KILN_OP_SUM:
    case KILN_OP_MEAN: return kiln_cuda_reduce(be, op);
    case KILN_OP_GEMM: return kiln_cuda_gemm(be, op);
    case KILN_OP_SOFTMAX:
    case KILN_OP_SOFTMAX_XENT:
    case KILN_OP_SOFTMAX_XENT_BACK: return kiln_cuda_softmax(be, op);
    case KILN_OP_ARGMAX:
    case KILN_OP_ACCURACY: return kiln_cuda_argmax(be, op);
    case KILN_OP_CONV2D:
    case KILN_OP_CONV2D_BACK_DATA:
    case KILN_OP_CONV2D_BACK_FILTER: return kiln_cuda_conv2d(be, op);
    case KILN_OP_PAD2D:
    case KILN_OP_UPSAMPLE2D:
    case KILN_OP_UPSAMPLE2D_BACK: return kiln_cuda_resize2d(be, op);
    case KILN_OP_MAX_POOL2D:
    case KILN_OP_MAX_POOL2D_BACK:
    case KILN_OP_AVG_POOL2D:
    case KILN_OP_AVG_POOL2D_BACK:
    case KILN_OP_GLOBAL_AVG_POOL2D:
    case KILN_OP_GLOBAL_AVG_POOL2D_BACK: return kiln_cuda_pool2d(be, op);
    case KILN_OP_SIGMOID:
    case KILN_OP_SIGMOID_BACK:
    case KILN_OP_TANH:
    case KILN_OP_TANH_BACK:
    case KILN_OP_DROPOUT:
    case KILN_OP_ACT:
    case KILN_OP_ACT_BACK:
    case KILN_OP_COPY_COLUMNS: return kiln_cuda_activation(be, op);
    case KILN_OP_ADAM:
    case KILN_OP_SGD:
    case KILN_OP_SUMSQ_ACC:
    case KILN_OP_CLIP_SCALE: return kiln_cuda_optim(be, op);
    case KILN_OP_BN_FWD_TRAIN:
    case KILN_OP_BN_FWD_INFER:
    case KILN_OP_BN_BWD:
    case KILN_OP_BN_BWD_INFER: return kiln_cuda_batchnorm(be, op);
    default:
        return kiln_error(KILN_ERR_UNSUPPORTED, "%s: op %s is not implemented", be->name,
                          kiln_op_name(op->type));
    }
}

// ---- lifetime --------------------------------------------------------------------------------

// Markers are CUDA events recorded on the backend's stream (timing off: cheaper).
static kiln_status cuda_mark(kiln_backend *be, int slot) {
    KILN_TRY(activate(be));
    kiln_cuda_ctx *c = ctx_of(be);
    if (!c->marks[slot]) KILN_CUDA_TRY(cudaEventCreateWithFlags(&c->marks[slot], cudaEventDisableTiming));
    KILN_CUDA_TRY(cudaEventRecord(c->marks[slot], c->stream));
    return KILN_OK;
}

static kiln_status cuda_wait_mark(kiln_backend *be, int slot) {
    kiln_cuda_ctx *c = ctx_of(be);
    if (!c->marks[slot]) return KILN_OK;
    KILN_TRY(activate(be));
    KILN_CUDA_TRY(cudaEventSynchronize(c->marks[slot]));
    return KILN_OK;
}

static void cuda_free(kiln_backend *be) {
    if (!be) return;
    kiln_cuda_ctx *c = ctx_of(be);
    if (c) {
        if (cudaSetDevice(c->device) != cudaSuccess) (void)cudaGetLastError();
        if (c->stream && cudaStreamSynchronize(c->stream) != cudaSuccess) (void)cudaGetLastError();
        if (c->pool && c->scratch) kiln_cuda_pool_release(c->pool, c->scratch);
        if (c->pool && c->bn_ones) kiln_cuda_pool_release(c->pool, c->bn_ones);
        if (c->pool && c->bn_zeros) kiln_cuda_pool_release(c->pool, c->bn_zeros);
        kiln_cuda_bn_plans_free(c->bn_plans);
        for (int k = 0; k < KILN_MAX_MARKS; k++)
            if (c->marks[k]) (void)cudaEventDestroy(c->marks[k]);
        if (c->cudnn) cudnnDestroy(c->cudnn);
        if (c->cublas) cublasDestroy(c->cublas);
        kiln_cuda_pool_free(c->pool);
        if (c->stream) (void)cudaStreamDestroy(c->stream);
        (void)cudaGetLastError();
        free(c);
    }
    free(be);
}

static const kiln_backend_iface cuda_iface = {
    /* .free = */ cuda_free,
    /* .alloc = */ cuda_alloc,
    /* .release = */ cuda_release,
    /* .upload = */ cuda_upload,
    /* .download = */ cuda_download,
    /* .synchronize = */ cuda_synchronize,
    /* .host_alloc = */ cuda_host_alloc,
    /* .host_free = */ cuda_host_free,
    /* .supports_op = */ cuda_supports_op,
    /* .compute = */ cuda_compute,
    /* .memory_stats = */ cuda_memory_stats,
    /* .memory_available = */ cuda_memory_available,
    /* .mark = */ cuda_mark,
    /* .wait_mark = */ cuda_wait_mark,
    /* .comm_create = */ kiln_cuda_comm_create,
};

// This process's rank on its node as the launcher says (Open MPI, MPICH/Hydra, Slurm), 0 when
// none does: "cuda" and "auto" open device local rank mod the device count, one GPU per rank.
static int local_rank(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v && atoi(v) > 0) return atoi(v);
    }
    return 0;
}

// The device must exist: the driver's reason when none can be used, never a crash. A negative
// *device: the launch's local rank modulo the device count (the device picked comes back).
static kiln_status pick_device(int *device_io) {
    int count = 0, device = *device_io;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return kiln_error(KILN_ERR_NO_DEVICE, "no CUDA device: %s", cudaGetErrorString(e));
    }
    if (device < 0 && count > 0) device = local_rank() % count;
    *device_io = device;
    if (count <= 0 || device < 0 || device >= count)
        return kiln_error(KILN_ERR_NO_DEVICE, "no CUDA device: %d devices found, asked for cuda:%d",
                          count, device);
    KILN_CUDA_TRY(cudaSetDevice(device));
    return KILN_OK;
}

extern "C" kiln_status kiln_backend_cuda_init(int device, kiln_backend **out) {
    if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_backend_cuda_init: out is NULL");
    *out = NULL;
    KILN_TRY(pick_device(&device));
    kiln_backend *be = (kiln_backend *)calloc(1, sizeof *be);
    kiln_cuda_ctx *c = (kiln_cuda_ctx *)calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return kiln_error(KILN_ERR_OOM, "cuda: out of host memory opening the backend");
    }
    be->iface = &cuda_iface;
    be->ctx = c;
    be->kind = KILN_BACKEND_CUDA;
    be->log_interval = 32;
    be->device = device;
    snprintf(be->name, sizeof be->name, KILN_CUDA_NAME ":%d", device);
    c->device = device;
    kiln_status s = kiln_cuda_pool_new(device, &c->pool);
    if (s == KILN_OK)
        s = kiln_cuda_check_rt(cudaStreamCreateWithFlags(&c->stream, cudaStreamDefault),
                               "cudaStreamCreateWithFlags", __FILE__, __LINE__);
    if (s == KILN_OK)
        s = kiln_cuda_check_blas(cublasCreate(&c->cublas), "cublasCreate", __FILE__, __LINE__);
    if (s == KILN_OK)
        s = kiln_cuda_check_blas(cublasSetStream(c->cublas, c->stream), "cublasSetStream",
                                 __FILE__, __LINE__);
    if (s != KILN_OK) {
        cuda_free(be);
        return s;
    }
    *out = be;
    return KILN_OK;
}
