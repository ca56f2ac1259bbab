/* rng.h: the library's host random numbers (splitmix64), the same sequence on every machine
 * for a given seed (internal). */
#ifndef KILN_RNG_H
#define KILN_RNG_H

#include <stdint.h>

typedef struct kiln_rng { uint64_t s; } kiln_rng;
void kiln_rng_seed(kiln_rng *r, uint64_t seed);
uint64_t kiln_rng_next(kiln_rng *r);
double kiln_rng_uniform(kiln_rng *r); /* [0, 1) */

#endif
