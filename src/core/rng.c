/* rng.c: the seedings and the Fisher-Yates shuffle of kiln's splitmix64 module (rng.h). */
#include "rng.h"

void kiln_rng_seed(kiln_rng *r, uint64_t seed) { r->s = seed ^ 0x5deece66dull; }

kiln_rng kiln_rng_stream(uint64_t seed, uint64_t k) {
    return kiln_rng_at(kiln_hash64(seed) ^ kiln_hash64(k * 0xd1b54a32d192ed03ull + 1));
}

void kiln_rng_shuffle(kiln_rng *r, int64_t *idx, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)kiln_rng_below(r, (uint64_t)i + 1), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

void kiln_rng_permutation(int64_t *idx, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    kiln_rng r;
    kiln_rng_seed(&r, seed);
    kiln_rng_shuffle(&r, idx, n);
}
