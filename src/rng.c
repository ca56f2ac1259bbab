/* rng.c: the library's host random numbers (splitmix64): weight initializers and shuffling,
 * the same sequence on every machine for a given seed. */
#include <stdlib.h>

#include "error.h"
#include "model_impl.h"

void kiln_rng_seed(kiln_rng *r, uint64_t seed) { r->s = seed ^ 0x5deece66dull; }

uint64_t kiln_rng_next(kiln_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double kiln_rng_uniform(kiln_rng *r) { return (double)(kiln_rng_next(r) >> 11) * 0x1.0p-53; }

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
