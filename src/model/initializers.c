/* initializers.c: weight initial values (Keras' initializers, kiln/model.h): constants,
 * glorot_uniform, the variance-scaling family, random normal / uniform / truncated normal, drawn
 * on the host from kiln's splitmix64 stream (core/rng.h), so a seed gives the same weights on
 * every device. Keras' formulas (keras/src/initializers): fans from compute_fans, the scale
 * divided by max(1, fan), the truncated normal's stddev divided by 0.87962566103423978 (the
 * stddev of a unit normal cut at +-2) and redrawn outside 2 stddev. */
#include <math.h>
#include <stdlib.h>

#include "error.h"
#include "model_impl.h"

#define TRUNCATED_STDDEV 0.87962566103423978 /* of N(0, 1) cut at +-2 */
#define TWO_PI 6.283185307179586

kiln_status kiln_init_uniform(kiln_tensor *t, uint64_t seed, double limit) {
    int64_t n = kiln_tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!h) return kiln_error(KILN_ERR_OOM, "initializing '%s': out of host memory", t->name);
    kiln_rng r;
    kiln_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) h[i] = (float)((2.0 * kiln_rng_uniform(&r) - 1.0) * limit);
    kiln_status s = kiln_tensor_set(t, h, sizeof(float) * (size_t)n);
    free(h);
    return s;
}

/* Keras' compute_fans: a kernel (..., in, out) has fans of in and out times its receptive
 * field (the product of the leading axes); a vector of n has n and n; a scalar 1 and 1 */
static void fans(const kiln_node *n, int w, double *fan_in, double *fan_out) {
    const int64_t *s = n->w_shape[w];
    int nd = n->w_ndim[w];
    if (nd < 2) {
        *fan_in = *fan_out = nd == 1 ? (double)s[0] : 1.0;
        return;
    }
    int64_t receptive = 1;
    for (int d = 0; d < nd - 2; d++) receptive *= s[d];
    *fan_in = (double)receptive * (double)s[nd - 2];
    *fan_out = (double)receptive * (double)s[nd - 1];
}

/* a standard normal draw (Box-Muller on two uniforms; 1 - u is in (0, 1]) */
static double normal(kiln_rng *r) {
    double u1 = 1.0 - kiln_rng_uniform(r), u2 = kiln_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(TWO_PI * u2);
}

typedef enum draw { DRAW_UNIFORM, DRAW_NORMAL, DRAW_TRUNCATED } draw;

/* fills t with a + b * X: X uniform in [-1, 1), a standard normal, or one cut at +-2 */
static kiln_status fill_random(kiln_tensor *t, uint64_t seed, draw d, double a, double b) {
    int64_t n = kiln_tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!h) return kiln_error(KILN_ERR_OOM, "initializing '%s': out of host memory", t->name);
    kiln_rng r;
    kiln_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) {
        double x = d == DRAW_UNIFORM ? 2.0 * kiln_rng_uniform(&r) - 1.0 : normal(&r);
        while (d == DRAW_TRUNCATED && fabs(x) > 2.0) x = normal(&r);
        h[i] = (float)(a + b * x);
    }
    kiln_status s = kiln_tensor_set(t, h, sizeof(float) * (size_t)n);
    free(h);
    return s;
}

/* VarianceScaling(scale, mode, distribution) */
static kiln_status variance_scaling(kiln_node *n, int w, const kiln_init_spec *init, uint64_t seed) {
    double fi, fo;
    fans(n, w, &fi, &fo);
    double fan = init->mode == KILN_FAN_IN ? fi : init->mode == KILN_FAN_OUT ? fo : (fi + fo) / 2.0;
    double scale = init->scale / fmax(1.0, fan);
    switch (init->distribution) {
    case KILN_DIST_TRUNCATED_NORMAL: return fill_random(n->w[w], seed, DRAW_TRUNCATED, 0.0, sqrt(scale) / TRUNCATED_STDDEV);
    case KILN_DIST_UNTRUNCATED_NORMAL: return fill_random(n->w[w], seed, DRAW_NORMAL, 0.0, sqrt(scale));
    default: return fill_random(n->w[w], seed, DRAW_UNIFORM, 0.0, sqrt(3.0 * scale));
    }
}

/* Keras' Orthogonal: a (rows, cols) matrix (rows: the product of the leading axes) with
 * orthonormal columns (rows >= cols) or rows: the Q of the QR of a normal draw of the taller
 * shape, with R's diagonal made positive (modified Gram-Schmidt in double gives that Q), times gain */
static kiln_status orthogonal(kiln_node *n, int w, double gain, uint64_t seed) {
    int nd = n->w_ndim[w];
    if (nd < 2)
        return kiln_error(KILN_ERR_INVALID_ARG, "weight '%s': the orthogonal initializer needs 2 or more axes (it has %d)", n->w_name[w], nd);
    int64_t rows = 1, cols = n->w_shape[w][nd - 1];
    for (int d = 0; d < nd - 1; d++) rows *= n->w_shape[w][d];
    int64_t m = rows > cols ? rows : cols, k = rows > cols ? cols : rows;
    double *a = malloc(sizeof(double) * (size_t)(m * k));
    float *h = malloc(sizeof(float) * (size_t)(m * k));
    if (!a || !h) {
        free(a), free(h);
        return kiln_error(KILN_ERR_OOM, "initializing '%s': out of host memory", n->w_name[w]);
    }
    kiln_rng r;
    kiln_rng_seed(&r, seed);
    for (int64_t i = 0; i < m * k; i++) a[i] = normal(&r); /* a (m, k), row-major */
    for (int64_t j = 0; j < k; j++) {
        for (int64_t p = 0; p < j; p++) { /* remove the earlier columns */
            double dot = 0;
            for (int64_t i = 0; i < m; i++) dot += a[i * k + p] * a[i * k + j];
            for (int64_t i = 0; i < m; i++) a[i * k + j] -= dot * a[i * k + p];
        }
        double norm = 0;
        for (int64_t i = 0; i < m; i++) norm += a[i * k + j] * a[i * k + j];
        norm = sqrt(norm);
        for (int64_t i = 0; i < m; i++) a[i * k + j] /= norm;
    }
    /* rows >= cols: Q itself; else Q transposed, (k, m) = (rows, cols) */
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < k; j++) h[rows >= cols ? i * k + j : j * m + i] = (float)(gain * a[i * k + j]);
    kiln_status s = kiln_tensor_set(n->w[w], h, sizeof(float) * (size_t)(m * k));
    free(a), free(h);
    return s;
}

/* glorot_uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out)) */
static kiln_status glorot_uniform(kiln_node *n, int w, uint64_t seed) {
    double fi, fo;
    fans(n, w, &fi, &fo);
    return kiln_init_uniform(n->w[w], seed, sqrt(6.0 / (fi + fo)));
}

kiln_status kiln_init_weight(kiln_node *n, int w, uint64_t seed) {
    const kiln_init_spec *init = &n->w_init[w];
    /* a stream per weight; the first is the node's seed itself. A seeded initializer has its
     * own stream, whatever the model's seed and the weight's place. */
    uint64_t s = init->seeded ? kiln_hash64(init->seed ^ 0x6b696c6e696e6974ull) : seed + (uint64_t)w * 0x9e3779b97f4a7c15ull;
    switch (init->kind) {
    case KILN_INIT_CONSTANT: return kiln_fill(n->w[w], init->value);
    case KILN_INIT_GLOROT_UNIFORM: return glorot_uniform(n, w, s);
    case KILN_INIT_VARIANCE_SCALING: return variance_scaling(n, w, init, s);
    case KILN_INIT_RANDOM_NORMAL: return fill_random(n->w[w], s, DRAW_NORMAL, init->a, init->b);
    case KILN_INIT_TRUNCATED_NORMAL: return fill_random(n->w[w], s, DRAW_TRUNCATED, init->a, init->b);
    case KILN_INIT_ORTHOGONAL: return orthogonal(n, w, init->scale, s);
    case KILN_INIT_RANDOM_UNIFORM:
        return fill_random(n->w[w], s, DRAW_UNIFORM, (init->a + init->b) / 2.0, (init->b - init->a) / 2.0);
    default: return kiln_error(KILN_ERR_INVALID_ARG, "weight '%s': unknown initializer %d", n->w_name[w], (int)init->kind);
    }
}
