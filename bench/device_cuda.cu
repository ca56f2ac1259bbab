// bench/device_cuda.cu: the timing device of kiln-bench on a GPU (compiled only in a CUDA
// build): CUDA events recorded on the kiln backend's own stream, an L2 flush that reads a
// buffer four times the L2 (cudaDevAttrL2CacheSize), and cudaMemcpyAsync device-to-device as
// the copy ceiling. Every CUDA call is checked; every launch is followed by a launch check.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "common.cuh"

namespace {

struct cuda_timing {
    int device;
    cudaStream_t stream;
    cudaEvent_t ev0, ev1;
    unsigned *flush_buf;  // 4 x L2, read by every flush
    size_t flush_bytes;
    unsigned *sink;       // one word per flush block, so the reads cannot be dropped
    int flush_blocks;
    unsigned *copy_src, *copy_dst;
    size_t copy_bytes;
};

cuda_timing *timing_of(bench_device *d) { return (cuda_timing *)d->ctx; }

// Reads every 16-byte word of buf (a multiple of 16 bytes) and leaves one word per block.
__global__ void flush_kernel(const uint4 *buf, int64_t n, unsigned *sink) {
    unsigned acc = 0;
    KILN_CUDA_FOR(i, n) {
        uint4 v = buf[i];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    __shared__ unsigned part[KILN_CUDA_BLOCK / 32];
    acc = kiln_warp_reduce(acc, [](unsigned a, unsigned b) { return a ^ b; });
    if ((threadIdx.x & 31) == 0) part[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned all = part[0];
        for (int w = 1; w < KILN_CUDA_BLOCK / 32; w++) all ^= part[w];
        sink[blockIdx.x] = all;
    }
}

// A pattern that is never all zeros (a copy of zeros could run faster than real data).
__global__ void pattern_kernel(unsigned *p, int64_t n, unsigned salt) {
    KILN_CUDA_FOR(i, n) p[i] = ((unsigned)i * 2654435761u) ^ salt ^ 0x5a5a5a5au;
}

kiln_status fill_pattern(cudaStream_t s, unsigned *p, size_t bytes, unsigned salt) {
    int64_t n = (int64_t)(bytes / 4);
    pattern_kernel<<<kiln_cuda_blocks(n, KILN_CUDA_BLOCK), KILN_CUDA_BLOCK, 0, s>>>(p, n, salt);
    KILN_CUDA_CHECK_LAUNCH("pattern_kernel");
    return KILN_OK;
}

kiln_status cuda_flush(bench_device *d) {
    cuda_timing *t = timing_of(d);
    flush_kernel<<<t->flush_blocks, KILN_CUDA_BLOCK, 0, t->stream>>>(
        (const uint4 *)t->flush_buf, (int64_t)(t->flush_bytes / 16), t->sink);
    KILN_CUDA_CHECK_LAUNCH("flush_kernel");
    return KILN_OK;
}

kiln_status cuda_start(bench_device *d) {
    cuda_timing *t = timing_of(d);
    KILN_CUDA_TRY(cudaEventRecord(t->ev0, t->stream));
    return KILN_OK;
}

kiln_status cuda_stop(bench_device *d, double *ms) {
    cuda_timing *t = timing_of(d);
    float f = 0.0f;
    KILN_CUDA_TRY(cudaEventRecord(t->ev1, t->stream));
    KILN_CUDA_TRY(cudaEventSynchronize(t->ev1));
    KILN_CUDA_TRY(cudaEventElapsedTime(&f, t->ev0, t->ev1));
    // an error a kernel left behind (sticky or not) is not a timing
    KILN_CUDA_TRY(cudaGetLastError());
    *ms = (double)f;
    return KILN_OK;
}

kiln_status cuda_copy(bench_device *d, size_t bytes) {
    cuda_timing *t = timing_of(d);
    if (bytes > t->copy_bytes) {
        if (t->copy_src) KILN_CUDA_TRY(cudaFree(t->copy_src));
        if (t->copy_dst) KILN_CUDA_TRY(cudaFree(t->copy_dst));
        t->copy_src = t->copy_dst = NULL;
        t->copy_bytes = 0;
        KILN_CUDA_TRY(cudaMalloc((void **)&t->copy_src, bytes));
        KILN_CUDA_TRY(cudaMalloc((void **)&t->copy_dst, bytes));
        t->copy_bytes = bytes;
        KILN_TRY(fill_pattern(t->stream, t->copy_src, bytes, 1u));
        KILN_TRY(fill_pattern(t->stream, t->copy_dst, bytes, 2u));
    }
    KILN_CUDA_TRY(cudaMemcpyAsync(t->copy_dst, t->copy_src, bytes, cudaMemcpyDeviceToDevice,
                                  t->stream));
    return KILN_OK;
}

void cuda_close(bench_device *d) {
    cuda_timing *t = timing_of(d);
    if (!t) return;
    // teardown: report nothing, leave no error behind for the next call
    if (t->stream) (void)cudaStreamSynchronize(t->stream);
    if (t->ev0) (void)cudaEventDestroy(t->ev0);
    if (t->ev1) (void)cudaEventDestroy(t->ev1);
    if (t->flush_buf) (void)cudaFree(t->flush_buf);
    if (t->sink) (void)cudaFree(t->sink);
    if (t->copy_src) (void)cudaFree(t->copy_src);
    if (t->copy_dst) (void)cudaFree(t->copy_dst);
    (void)cudaGetLastError();
    free(t);
    d->ctx = NULL;
}

kiln_status setup(bench_device *d, cuda_timing *t) {
    t->device = kiln_cuda_ctx_of(d->be)->device;
    t->stream = kiln_cuda_stream(d->be);
    KILN_CUDA_TRY(cudaSetDevice(t->device));
    cudaDeviceProp prop;
    KILN_CUDA_TRY(cudaGetDeviceProperties(&prop, t->device));
    int l2 = 0, drv = 0, rt = 0;
    KILN_CUDA_TRY(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, t->device));
    KILN_CUDA_TRY(cudaDeviceGetAttribute(&d->sms, cudaDevAttrMultiProcessorCount, t->device));
    KILN_CUDA_TRY(cudaDriverGetVersion(&drv));
    KILN_CUDA_TRY(cudaRuntimeGetVersion(&rt));
    snprintf(d->name, sizeof d->name, "%s (cc %d.%d, %d SMs, %d MiB L2, %zu MiB)", prop.name,
             prop.major, prop.minor, d->sms, l2 >> 20, prop.totalGlobalMem >> 20);
    snprintf(d->driver, sizeof d->driver, "CUDA driver API %d, runtime %d, cuDNN %zu", drv, rt,
             (size_t)cudnnGetVersion());
    d->cache_bytes = l2 > 0 ? (size_t)l2 : (size_t)64 << 20;
    t->flush_bytes = 4 * d->cache_bytes;
    t->flush_blocks = 4 * d->sms;
    KILN_CUDA_TRY(cudaEventCreate(&t->ev0));
    KILN_CUDA_TRY(cudaEventCreate(&t->ev1));
    KILN_CUDA_TRY(cudaMalloc((void **)&t->flush_buf, t->flush_bytes));
    KILN_CUDA_TRY(cudaMalloc((void **)&t->sink, sizeof(unsigned) * (size_t)t->flush_blocks));
    KILN_TRY(fill_pattern(t->stream, t->flush_buf, t->flush_bytes, 3u));
    KILN_CUDA_TRY(cudaStreamSynchronize(t->stream));
    return KILN_OK;
}

} // namespace

extern "C" kiln_status bench_cuda_open(bench_device *d) {
    KILN_TRY(kiln_backend_init("cuda", &d->be)); // "no CUDA device: <reason>" when none
    cuda_timing *t = (cuda_timing *)calloc(1, sizeof *t);
    if (!t) return kiln_error(KILN_ERR_OOM, "kiln-bench: out of host memory");
    d->ctx = t;
    d->kind = "cuda";
    d->warmup_ms = 25.0; // as triton.testing.do_bench: the GPU's clocks are up when timing starts
    d->flush = cuda_flush;
    d->start = cuda_start;
    d->stop = cuda_stop;
    d->copy = cuda_copy;
    d->close = cuda_close;
    return setup(d, t);
}
