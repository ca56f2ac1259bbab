/* half.h: f16 and bf16 <-> f32 conversions for the CPU (internal, header-only).
 *
 * Both round to nearest, ties to even, keep signed zeros, infinities and NaN (a NaN stays a
 * quiet NaN), and f16 handles subnormals: the same results as CUDA's __float2half_rn and
 * __float2bfloat16_rn, which the parity suite checks. */
#ifndef KILN_HALF_H
#define KILN_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t kiln_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float kiln_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t kiln_f32_to_bf16(float f) {
    uint32_t u = kiln_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float kiln_bf16_to_f32(uint16_t h) { return kiln_bits_f32((uint32_t)h << 16); }

static inline uint16_t kiln_f32_to_f16(float f) {
    uint32_t u = kiln_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf (>= 65520) */
    if (a < 0x38800000u) {                                   /* below 2^-14: subnormal or 0 */
        /* value = a_float; result = round(value * 2^24) as an integer mantissa */
        uint32_t exp = a >> 23;
        if (exp < 102) return sign;  /* below half of the smallest subnormal: +-0 */
        uint32_t mant = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - exp; /* 14 .. 24 */
        uint32_t r = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    /* normal: rebias the exponent, round the 13 dropped mantissa bits */
    uint32_t r = a - 0x38000000u; /* exponent 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

static inline float kiln_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return kiln_bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0) return kiln_bits_f32(sign);
        /* subnormal: mant * 2^-24 */
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return kiln_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

#endif
