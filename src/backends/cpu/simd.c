/* cpu/simd.c: which instruction set the CPU backend's loops use (simd.h): detected once from
 * the CPU (AVX-512 needs F, VL, BW and DQ;
 * AVX2 needs FMA too), or forced by a test. */
#include "simd.h"

static int level_now = -1; /* -1: not detected yet */

static int detect(void) {
#if KILN_SIMD_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
        return KILN_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return KILN_SIMD_AVX2;
#endif
    return KILN_SIMD_BASE;
}

int kiln_cpu_simd_level(void) {
    int l = __atomic_load_n(&level_now, __ATOMIC_RELAXED);
    if (l < 0) {
        l = detect();
        __atomic_store_n(&level_now, l, __ATOMIC_RELAXED);
    }
    return l;
}

int kiln_cpu_simd_force(int level) {
    int best = detect();
    int l = level < 0 || level > best ? best : level;
    __atomic_store_n(&level_now, l, __ATOMIC_RELAXED);
    return l;
}
