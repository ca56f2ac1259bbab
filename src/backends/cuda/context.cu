// cuda/context.cu: the backend context's shared resources, which the op families and the
// backend's function table (backend.cu) both use: making the device current, memory from the
// caching pool, the scratch buffer and the cuDNN handle. It calls nothing above it, so the
// calls go one way: backend.cu -> the op files -> context.cu (as on the CPU side).
#include "common.cuh"

extern "C" kiln_status kiln_cuda_activate(const kiln_backend *be) {
    KILN_CUDA_TRY(cudaSetDevice(kiln_cuda_ctx_of(be)->device));
    return KILN_OK;
}

extern "C" kiln_status kiln_cuda_alloc(kiln_backend *be, size_t nbytes, void **out) {
    KILN_TRY(kiln_cuda_activate(be));
    return kiln_cuda_pool_alloc(kiln_cuda_ctx_of(be)->pool, nbytes, out);
}

extern "C" kiln_status kiln_cuda_scratch(kiln_backend *be, size_t bytes, void **out) {
    kiln_cuda_ctx *c = kiln_cuda_ctx_of(be);
    if (bytes > c->scratch_bytes || !c->scratch) {
        size_t want = bytes > 2 * c->scratch_bytes ? bytes : 2 * c->scratch_bytes;
        if (want < 4096) want = 4096;
        void *p = NULL;
        KILN_TRY(kiln_cuda_alloc(be, want, &p));
        kiln_cuda_pool_release(c->pool, c->scratch); // queued work still using it runs first
        c->scratch = p;
        c->scratch_bytes = want;
    }
    *out = c->scratch;
    return KILN_OK;
}

extern "C" cudnnHandle_t kiln_cuda_cudnn(kiln_backend *be, kiln_status *status) {
    kiln_cuda_ctx *c = kiln_cuda_ctx_of(be);
    kiln_status s = KILN_OK;
    if (!c->cudnn) {
        cudnnHandle_t h = NULL;
        s = kiln_cuda_activate(be);
        if (s == KILN_OK) s = kiln_cuda_check_dnn(cudnnCreate(&h), "cudnnCreate", __FILE__, __LINE__);
        if (s == KILN_OK) {
            s = kiln_cuda_check_dnn(cudnnSetStream(h, c->stream), "cudnnSetStream", __FILE__,
                                    __LINE__);
            if (s != KILN_OK) cudnnDestroy(h);
            else c->cudnn = h;
        }
    }
    if (status) *status = s;
    return s == KILN_OK ? c->cudnn : NULL;
}
