/* initializers.c: weight initial values (Keras' initializers): constants, and glorot_uniform
 * drawn on the host from kiln's splitmix64 stream (core/rng.h), so a seed gives the same
 * weights on every device. */
#include <math.h>
#include <stdlib.h>

#include "error.h"
#include "model_impl.h"

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

/* glorot_uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out)); a kernel (..., in, out) has
 * fans of in and out times its receptive field (the product of the leading axes) */
static kiln_status glorot_uniform(kiln_node *n, int w, uint64_t seed) {
    const int64_t *s = n->w_shape[w];
    int nd = n->w_ndim[w];
    if (nd < 2)
        return kiln_error(KILN_ERR_INVALID_ARG, "glorot_uniform needs a weight of 2 or more axes ('%s' has %d)",
                          n->w_name[w], nd);
    int64_t receptive = 1;
    for (int d = 0; d < nd - 2; d++) receptive *= s[d];
    double fan_in = (double)receptive * (double)s[nd - 2], fan_out = (double)receptive * (double)s[nd - 1];
    return kiln_init_uniform(n->w[w], seed, sqrt(6.0 / (fan_in + fan_out)));
}

kiln_status kiln_init_weight(kiln_node *n, int w, uint64_t seed) {
    const kiln_initializer *init = &n->w_init[w];
    switch (init->kind) {
    case KILN_INIT_CONSTANT: return kiln_fill(n->w[w], init->value);
    /* a stream per weight; the first is the node's seed itself */
    case KILN_INIT_GLOROT_UNIFORM: return glorot_uniform(n, w, seed + (uint64_t)w * 0x9e3779b97f4a7c15ull);
    default: return kiln_error(KILN_ERR_INVALID_ARG, "weight '%s': unknown initializer %d", n->w_name[w], (int)init->kind);
    }
}
