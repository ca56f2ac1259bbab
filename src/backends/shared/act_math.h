/* act_math.h: the formulas of kiln_act (kiln/nn.h) and Normalization, forward and derivative,
 * in double (internal, header-only). The CPU backend and the CUDA kernels include this one
 * definition and round its result to f32 once; a .cu file defines KILN_HOST_DEVICE as
 * __host__ __device__ before including it. */
#ifndef KILN_ACT_MATH_H
#define KILN_ACT_MATH_H

#include <math.h>

#include "kiln/nn.h"
#include "rng.h" /* KILN_HOST_DEVICE */

#define KILN_GELU_C 0.044715
#define KILN_SQRT_2_OVER_PI 0.79788456080286535588
#define KILN_INV_SQRT_2 0.70710678118654752440
#define KILN_INV_SQRT_2PI 0.39894228040143267794

static KILN_HOST_DEVICE inline double kiln_act_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* relu6(x + 3) / 6 (NaN stays NaN) */
static KILN_HOST_DEVICE inline double kiln_act_hard_sigmoid(double x) {
    double r = x + 3.0;
    r = r < 0.0 ? 0.0 : r;
    return (r > 6.0 ? 6.0 : r) / 6.0;
}

/* Keras' relu: x > t ? min(x, m) : -s (t - x), written to keep NaN (a comparison with NaN is false) */
static KILN_HOST_DEVICE inline double kiln_act_relu(const kiln_act_params *p, double x) {
    if (x > p->threshold) return x < p->max_value ? x : (double)p->max_value;
    if (x <= p->threshold) return p->negative_slope != 0.0f ? -(double)p->negative_slope * ((double)p->threshold - x) : 0.0;
    return x; /* NaN */
}

static KILN_HOST_DEVICE inline double kiln_act_f(const kiln_act_params *p, double x) {
    switch (p->fn) {
    case KILN_FN_RELU: return kiln_act_relu(p, x);
    case KILN_FN_ELU: return x > 0.0 ? x : (double)p->alpha * expm1(x);
    /* 1 + erf(v) as erfc(-v) and 1 + tanh(u) as 2 sigmoid(2u): no cancellation for x < 0 */
    case KILN_FN_GELU: return 0.5 * x * erfc(-x * KILN_INV_SQRT_2);
    case KILN_FN_GELU_TANH: return x * kiln_act_sigmoid(2.0 * KILN_SQRT_2_OVER_PI * (x + KILN_GELU_C * x * x * x));
    case KILN_FN_SWISH: return x * kiln_act_sigmoid(x);
    case KILN_FN_HARD_SIGMOID: return kiln_act_hard_sigmoid(x);
    case KILN_FN_HARD_SWISH: return x * kiln_act_hard_sigmoid(x);
    default: return x * (double)p->scale + (double)p->offset; /* AFFINE */
    }
}

/* f'(x); NaN in, NaN out */
static KILN_HOST_DEVICE inline double kiln_act_df(const kiln_act_params *p, double x) {
    if (x != x) return x;
    switch (p->fn) {
    case KILN_FN_RELU: return x > p->threshold ? (x < p->max_value ? 1.0 : 0.0) : (double)p->negative_slope;
    case KILN_FN_ELU: return x > 0.0 ? 1.0 : (double)p->alpha * exp(x);
    case KILN_FN_GELU: return 0.5 * erfc(-x * KILN_INV_SQRT_2) + x * KILN_INV_SQRT_2PI * exp(-0.5 * x * x);
    case KILN_FN_GELU_TANH: { /* s = (1 + tanh u) / 2, 1 - tanh^2 u = 4 s (1 - s) */
        double s = kiln_act_sigmoid(2.0 * KILN_SQRT_2_OVER_PI * (x + KILN_GELU_C * x * x * x));
        return s + 2.0 * x * s * (1.0 - s) * KILN_SQRT_2_OVER_PI * (1.0 + 3.0 * KILN_GELU_C * x * x);
    }
    case KILN_FN_SWISH: {
        double s = kiln_act_sigmoid(x);
        return s + x * s * (1.0 - s);
    }
    case KILN_FN_HARD_SIGMOID: return x > -3.0 && x < 3.0 ? 1.0 / 6.0 : 0.0;
    case KILN_FN_HARD_SWISH: return x <= -3.0 ? 0.0 : x >= 3.0 ? 1.0 : (2.0 * x + 3.0) / 6.0;
    default: return (double)p->scale; /* AFFINE */
    }
}

/* Normalization's divisor max(sqrt(var), epsilon), in double */
static KILN_HOST_DEVICE inline double kiln_norm_divisor(float var, float epsilon) {
    double s = sqrt((double)var);
    return s >= (double)epsilon || s != s ? s : (double)epsilon; /* a NaN variance stays NaN */
}

#endif
