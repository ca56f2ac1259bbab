/* initializers.c: weight initial values drawn on the host from kiln's splitmix64 stream
 * (core/rng.h), so a seed gives the same weights on every device. */
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
