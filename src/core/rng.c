/* rng.c: the library's host random numbers (splitmix64): weight initializers and shuffling,
 * the same sequence on every machine for a given seed. */
#include "rng.h"

void kiln_rng_seed(kiln_rng *r, uint64_t seed) { r->s = seed ^ 0x5deece66dull; }

uint64_t kiln_rng_next(kiln_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double kiln_rng_uniform(kiln_rng *r) { return (double)(kiln_rng_next(r) >> 11) * 0x1.0p-53; }
