/* dtype_convert.h: one element of a tensor of any dtype to and from double (internal,
 * header-only): the CPU backend's fill, cast and BN loops use it, and the CUDA backend converts
 * FILL's value on the host with it, so both devices round a value the same way. */
#ifndef KILN_DTYPE_CONVERT_H
#define KILN_DTYPE_CONVERT_H

#include <math.h>
#include <stdint.h>

#include "half.h"
#include "kiln/tensor.h"

static inline double kiln_dtype_load(const void *data, kiln_dtype t, int64_t i) {
    switch (t) {
    case KILN_F32: return ((const float *)data)[i];
    case KILN_F16: return kiln_f16_to_f32(((const uint16_t *)data)[i]);
    case KILN_BF16: return kiln_bf16_to_f32(((const uint16_t *)data)[i]);
    case KILN_I32: return ((const int32_t *)data)[i];
    case KILN_U8: return ((const uint8_t *)data)[i];
    default: return 0.0;
    }
}

/* Integers: round to nearest even, saturate, NaN -> 0. Floats: through f32, round to nearest
 * even (integer sources wider than 24 bits round twice; see docs/testing.md). */
static inline double kiln_dtype_to_int(double v, double lo, double hi) {
    if (isnan(v)) return 0.0;
    v = nearbyint(v);
    return v < lo ? lo : v > hi ? hi : v;
}

static inline void kiln_dtype_store(void *data, kiln_dtype t, int64_t i, double v) {
    switch (t) {
    case KILN_F32: ((float *)data)[i] = (float)v; break;
    case KILN_F16: ((uint16_t *)data)[i] = kiln_f32_to_f16((float)v); break;
    case KILN_BF16: ((uint16_t *)data)[i] = kiln_f32_to_bf16((float)v); break;
    case KILN_I32: ((int32_t *)data)[i] = (int32_t)kiln_dtype_to_int(v, -2147483648.0, 2147483647.0); break;
    case KILN_U8: ((uint8_t *)data)[i] = (uint8_t)kiln_dtype_to_int(v, 0.0, 255.0); break;
    default: break;
    }
}

#endif
