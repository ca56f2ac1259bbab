// test_cuda_emu_teeth.cpp: the CUDA emulator catches what it claims to (built with
// -DKILN_CUDA_EMU=ON only). Copies of kiln's kernel patterns, compiled for this test only, each
// with one planted bug, next to the correct copy:
//   - kiln_block_reduce (common.cuh) without its second __syncthreads: a shared-memory race,
//     reported with the kernel, both threads and the offset;
//   - an elementwise kernel whose loop runs one element past the end: an access outside the
//     allocation, reported (in every build: the emulator's device memory is bounds-checked);
//   - kiln_warp_reduce with a wrong shuffle lane: wrong sums; a lane outside the mask and a
//     partial warp: reported;
//   - a cooperative grid too large for the emulated device: refused with
//     cudaErrorCooperativeLaunchTooLarge, and kiln's batch norm in automatic mode falls back
//     to its multi-kernel path (batchnorm.cu's coop_falls_back) with the CPU's results.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "harness.h"
#include "kiln_cuda_emu.h"

static void expect_report(const char *what, const char *needle) {
    const char *r = kiln_emu_last_report();
    cr_expect(strstr(r, needle) != NULL, "%s: the report '%s' does not say '%s'", what, r, needle);
}

static float *dev_floats(size_t n, const float *host) {
    void *p = NULL;
    cr_assert_eq(cudaMalloc(&p, n * sizeof(float)), cudaSuccess);
    if (host) cr_assert_eq(cudaMemcpy(p, host, n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    return (float *)p;
}

// ---- 1. a missing __syncthreads ------------------------------------------------------------------

template <bool kBarrier> __global__ void block_sum(const float *x, float *out) {
    KILN_SHARED(float, smem, [32]);
    float v = x[blockIdx.x * blockDim.x + threadIdx.x];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = (int)(threadIdx.x / 32), nwarps = (int)(blockDim.x / 32);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) smem[warp] = v;
    if (kBarrier) __syncthreads(); // the planted bug: without it, warp 0 reads what others write
    v = smem[0];
    for (int w = 1; w < nwarps; w++) v += smem[w];
    if (threadIdx.x == 0) out[blockIdx.x] = v;
}

Test(cuda_emu_teeth, missing_syncthreads_is_a_race) {
    float h[512];
    for (int i = 0; i < 512; i++) h[i] = (float)(i % 7);
    float *x = dev_floats(512, h), *y = dev_floats(2, NULL);
    kiln_emu_clear_report();
    cr_expect_eq(KILN_LAUNCH(block_sum<true>, 2, 256, 0, 0)(x, y), cudaSuccess, "%s", kiln_emu_last_report());
    float got[2];
    cr_assert_eq(cudaMemcpy(got, y, sizeof got, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int b = 0; b < 2; b++) {
        float want = 0;
        for (int i = 0; i < 256; i++) want += h[b * 256 + i];
        cr_expect_eq(got[b], want, "block %d: %g, want %g", b, (double)got[b], (double)want);
    }
    const uint64_t races = kiln_emu_stats_get().races;
    cr_expect_eq(KILN_LAUNCH(block_sum<false>, 2, 256, 0, 0)(x, y), cudaErrorLaunchFailure);
    cr_expect_eq(cudaGetLastError(), cudaErrorLaunchFailure);
    cr_expect_gt(kiln_emu_stats_get().races, races);
    expect_report("race", "shared-memory race");
    expect_report("race", "block_sum<false>");
    // the last thread to reach the barrier runs on and reads smem[0] before thread 0 writes it
    expect_report("race", "thread (0,0,0) of block (0,0,0) writes 4 bytes at shared offset 0, which "
                          "other threads read since the last barrier");
    cudaFree(x);
    cudaFree(y);
}

// ---- 2. an out-of-bounds tail access ---------------------------------------------------------------

template <bool kTail> __global__ void scale2(const float *x, float *y, int64_t n) {
    const int64_t end = kTail ? n + 1 : n; // the planted bug: <= n
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < end; i += (int64_t)blockDim.x * gridDim.x)
        y[i] = 2.0f * x[i];
}

Test(cuda_emu_teeth, tail_access_is_caught) {
    const int64_t n = 1000; // not a multiple of the block: a tail
    float *x = dev_floats((size_t)n, NULL), *y = dev_floats((size_t)n, NULL);
    cr_expect_eq(KILN_LAUNCH(scale2<false>, 4, 256, 0, 0)(x, y, n), cudaSuccess, "%s", kiln_emu_last_report());
    kiln_emu_clear_report();
    cr_expect_eq(KILN_LAUNCH(scale2<true>, 4, 256, 0, 0)(x, y, n), cudaErrorIllegalAddress);
    expect_report("tail", "scale2<true>");
    expect_report("tail", "thread (232,0,0) of block (3,0,0) reads 4 bytes");
    expect_report("tail", "past the end of a 4000-byte allocation");
    cr_expect_gt(kiln_emu_stats_get().bad_accesses, 0);
    // a copy past the end is refused too
    float h[4];
    cr_expect_eq(cudaMemcpy(h, y + n - 2, sizeof h, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
    cudaFree(x);
    cudaFree(y);
    // and use after free
    kiln_emu_clear_report();
    cr_expect_eq(KILN_LAUNCH(scale2<false>, 4, 256, 0, 0)(x, y, n), cudaErrorIllegalAddress);
    expect_report("use after free", "freed");
}

// ---- 3. shuffles: a wrong lane, a lane outside the mask, a partial warp ------------------------------

template <int kWrong> __global__ void warp_sum(const float *x, float *out, unsigned mask) {
    float v = x[threadIdx.x];
    // planted: a shift down (lane + o) where the butterfly takes lane ^ o: only lane 0 gets the sum
    for (int o = 16; o > 0; o >>= 1) v += kWrong ? __shfl_down_sync(mask, v, o) : __shfl_xor_sync(mask, v, o);
    out[threadIdx.x] = v;
}

Test(cuda_emu_teeth, shuffle_lanes) {
    float h[32], want = 0;
    for (int i = 0; i < 32; i++) want += (h[i] = (float)(i * i % 11));
    float *x = dev_floats(32, h), *y = dev_floats(32, NULL);
    float got[32];
    cr_assert_eq(KILN_LAUNCH(warp_sum<0>, 1, 32, 0, 0)(x, y, 0xffffffffu), cudaSuccess, "%s", kiln_emu_last_report());
    cr_assert_eq(cudaMemcpy(got, y, sizeof got, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int i = 0; i < 32; i++) cr_expect_eq(got[i], want, "lane %d: %g, want %g", i, (double)got[i], (double)want);
    cr_assert_eq(KILN_LAUNCH(warp_sum<1>, 1, 32, 0, 0)(x, y, 0xffffffffu), cudaSuccess);
    cr_assert_eq(cudaMemcpy(got, y, sizeof got, cudaMemcpyDeviceToHost), cudaSuccess);
    int wrong = 0;
    for (int i = 0; i < 32; i++) wrong += got[i] != want;
    cr_expect_gt(wrong, 0, "the wrong lane gave the right sums");
    // a mask of the upper half: lanes 0..15 call a shuffle whose mask leaves them out
    kiln_emu_clear_report();
    cr_expect_eq(KILN_LAUNCH(warp_sum<0>, 1, 32, 0, 0)(x, y, 0xffff0000u), cudaErrorLaunchFailure);
    expect_report("mask", "a shuffle whose mask does not name the calling lane");
    // a block of 40 threads: its second warp has 8 lanes, a full mask names 24 that do not exist
    float *x2 = dev_floats(40, NULL), *y2 = dev_floats(40, NULL);
    kiln_emu_clear_report();
    cr_expect_eq(KILN_LAUNCH(warp_sum<0>, 1, 40, 0, 0)(x2, y2, 0xffffffffu), cudaErrorLaunchFailure);
    expect_report("partial warp", "past this partial warp of 8");
    cudaFree(x); cudaFree(y); cudaFree(x2); cudaFree(y2);
}

// ---- 4. cooperative launches ---------------------------------------------------------------------------

__global__ void grid_total(const float *x, float *partial, float *out) {
    if (threadIdx.x == 0) partial[blockIdx.x] = x[blockIdx.x];
    cooperative_groups::this_grid().sync();
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        float s = 0;
        for (unsigned b = 0; b < gridDim.x; b++) s += partial[b];
        out[0] = s;
    }
}

Test(cuda_emu_teeth, cooperative_grid_limits) {
    kiln_emu_device d = kiln_emu_device_default();
    d.sm_count = 2;
    d.max_blocks_per_sm = 4; // at most 8 blocks resident
    kiln_emu_device_set(&d);
    float h[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float *x = dev_floats(9, h), *part = dev_floats(9, NULL), *out = dev_floats(1, NULL);
    cr_expect_eq(kiln_launch_coop(grid_total, 8, 256, 0, 0, x, part, out), cudaSuccess, "%s", kiln_emu_last_report());
    float got = 0;
    cr_assert_eq(cudaMemcpy(&got, out, 4, cudaMemcpyDeviceToHost), cudaSuccess);
    cr_expect_eq(got, 36.0f);
    cr_expect_eq(kiln_launch_coop(grid_total, 9, 256, 0, 0, x, part, out), cudaErrorCooperativeLaunchTooLarge);
    // a grid sync outside a cooperative launch never completes: reported, not hung
    kiln_emu_clear_report();
    cr_expect_eq(KILN_LAUNCH(grid_total, 2, 32, 0, 0)(x, part, out), cudaErrorLaunchFailure);
    expect_report("grid sync", "outside a cooperative launch");
    kiln_emu_device_set(&d);
    cudaFree(x); cudaFree(part); cudaFree(out);
    d = kiln_emu_device_default();
    kiln_emu_device_set(&d);
}

// kiln's batch norm on a device that refuses every cooperative launch of more than 2 blocks
// (as MPS or a sanitizer may): automatic mode falls back to the multi-kernel path with the
// CPU's results; the forced cooperative path reports the refusal.
static kiln_status bn_forward(kiln_backend *be, kiln_bn_impl impl, const float *xv, int64_t n, float *y, float *mean) {
    int64_t shape[4] = {8, 14, 14, 64}, C = 64;
    kiln_tensor *x = kt_new(be, KILN_F32, 4, shape), *ty = kt_new(be, KILN_F32, 4, shape);
    kiln_tensor *mm = kt_new(be, KILN_F32, 1, &C), *mv = kt_new(be, KILN_F32, 1, &C);
    kiln_tensor *sm = kt_new(be, KILN_F32, 1, &C), *sv = kt_new(be, KILN_F32, 1, &C);
    kt_set_f32(x, xv);
    kiln_bn_params p = kiln_bn_params_keras();
    p.impl = impl;
    p.scale = p.center = false;
    cr_assert_eq(kiln_batchnorm_init(&p, NULL, NULL, mm, mv), KILN_OK, "%s", kiln_last_error());
    kiln_status s = kiln_batchnorm_forward_train(x, NULL, NULL, mm, mv, &p, ty, sm, sv);
    if (s == KILN_OK) s = kiln_backend_synchronize(be);
    if (s == KILN_OK) {
        cr_assert_eq(kiln_tensor_get(ty, y, (size_t)n * 4), KILN_OK);
        cr_assert_eq(kiln_tensor_get(sm, mean, (size_t)C * 4), KILN_OK);
    }
    kiln_tensor *all[] = {x, ty, mm, mv, sm, sv};
    for (int k = 0; k < 6; k++) kiln_tensor_free(all[k]);
    return s;
}

Test(cuda_emu_teeth, bn_cooperative_refused_falls_back) {
    kiln_emu_device d = kiln_emu_device_default();
    d.coop_max_blocks = 2;
    kiln_emu_device_set(&d);
    kiln_backend *emu = NULL;
    cr_assert_eq(kiln_backend_init("cuda-emu", &emu), KILN_OK, "%s", kiln_last_error());
    const int64_t n = 8 * 14 * 14 * 64;
    float *x = (float *)malloc((size_t)n * 4), *y = (float *)malloc((size_t)n * 4), *yc = (float *)malloc((size_t)n * 4);
    float mean[64], meanc[64];
    kt_rng r;
    kt_rng_seed(&r, 11);
    for (int64_t i = 0; i < n; i++) x[i] = (float)kt_uniform(&r, -2, 3);
    const kiln_emu_stats before = kiln_emu_stats_get();
    cr_assert_eq(bn_forward(emu, KILN_BN_IMPL_KILN, x, n, y, mean), KILN_OK, "%s", kiln_last_error());
    const kiln_emu_stats after = kiln_emu_stats_get();
    cr_expect_gt(after.coop_refused, before.coop_refused, "automatic mode did not try the cooperative kernel");
    cr_assert_eq(bn_forward(kt_cpu(), KILN_BN_IMPL_KILN, x, n, yc, meanc), KILN_OK, "%s", kiln_last_error());
    kt_expect_close("bn y after the fallback (cuda-emu vs cpu)", y, yc, n, 1e-5);
    kt_expect_close("bn mean after the fallback (cuda-emu vs cpu)", mean, meanc, 64, 1e-5);
    kiln_status s = bn_forward(emu, KILN_BN_IMPL_KILN_GRID, x, n, y, mean);
    cr_expect_eq(s, KILN_ERR_DEVICE, "forced grid: %s", kiln_last_error());
    cr_expect(strstr(kiln_last_error(), "cudaErrorCooperativeLaunchTooLarge") != NULL, "%s", kiln_last_error());
    free(x); free(y); free(yc);
    kiln_backend_free(emu);
    d = kiln_emu_device_default();
    kiln_emu_device_set(&d);
}
