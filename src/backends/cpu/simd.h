/* cpu/simd.h: run-time ISA dispatch for the CPU backend's loops (internal).
 *
 * A loop is written once, as a static inline function NAME_body; KILN_SIMD_CLONES(NAME, PARAMS,
 * ARGS) compiles it three times (AVX-512, AVX2, the baseline x86-64 or any other CPU) and defines
 * NAME, which calls the best one this CPU has (kiln_cpu_simd_level). No -march=native: the
 * library runs on any CPU of its architecture. Loops that sum keep explicit lanes (a fixed lane
 * count, merged in a fixed order), so every level gives the same bits; elementwise loops are
 * one IEEE operation per element at every level (the CPU layer compiles with -ffp-contract=off).
 * Tests force a level with kiln_cpu_simd_force to compare the three. */
#ifndef KILN_CPU_SIMD_H
#define KILN_CPU_SIMD_H

enum { KILN_SIMD_BASE = 0, KILN_SIMD_AVX2 = 1, KILN_SIMD_AVX512 = 2 };

/* the level the loops use now: the CPU's best, or what kiln_cpu_simd_force set */
int kiln_cpu_simd_level(void);
/* use `level` (capped at what the CPU has); -1 goes back to the CPU's best. Returns the level
 * now in use. For tests and benchmarks: not thread-safe against running ops. */
int kiln_cpu_simd_force(int level);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KILN_SIMD_X86 1
#if defined(__clang__) /* clang has no prefer-vector-width in a target string */
#define KILN_SIMD_T512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#else
#define KILN_SIMD_T512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma,prefer-vector-width=512")))
#endif
#define KILN_SIMD_T256 __attribute__((target("avx2,fma")))
#else
#define KILN_SIMD_X86 0
#define KILN_SIMD_T512
#define KILN_SIMD_T256
#endif

#if defined(__GNUC__) || defined(__clang__)
#define KILN_SIMD_INLINE static inline __attribute__((always_inline))
#else
#define KILN_SIMD_INLINE static inline
#endif

/* void NAME PARAMS, running NAME_body ARGS compiled for the CPU's best level */
#define KILN_SIMD_CLONES(name, params, args)                                   \
    static KILN_SIMD_T512 void name##_avx512 params { name##_body args; }      \
    static KILN_SIMD_T256 void name##_avx2 params { name##_body args; }        \
    static void name##_base params { name##_body args; }                       \
    static void name params {                                                  \
        switch (kiln_cpu_simd_level()) {                                       \
        case KILN_SIMD_AVX512: name##_avx512 args; break;                      \
        case KILN_SIMD_AVX2: name##_avx2 args; break;                          \
        default: name##_base args; break;                                      \
        }                                                                      \
    }

#endif
