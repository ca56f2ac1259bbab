/* rng.h: kiln's one random-number module (internal): splitmix64. Its mixer (a bijective hash
 * of a 64-bit word, also usable in CUDA device code: a .cu file defines KILN_HOST_DEVICE as
 * __host__ __device__ before including this header), its stream, the ways kiln seeds a stream,
 * uniform and bounded draws, and the one Fisher-Yates shuffle. The same numbers on every
 * machine for a given seed.
 *
 * Who draws what (each stream fixed: changing one changes results):
 *   kiln_rng_seed(seed)        weight initializers (seed of the weight), fit's shuffle
 *   kiln_rng_stream(seed, k)   synthetic example k, augmentation of batch row k, prefetcher batch k
 *   kiln_rng_at(state)         a stream at a raw state (the tests' kt_rng)
 *   kiln_hash64(x)             one word: the synthetic splits' seeds, dropout's key
 *   kiln_mix64(x)              dropout's per-element hash (backends/shared/counter_rng.h) */
#ifndef KILN_RNG_H
#define KILN_RNG_H

#include <stdint.h>

#ifndef KILN_HOST_DEVICE
#define KILN_HOST_DEVICE
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* splitmix64's increment (2^64 / the golden ratio) */
#define KILN_RNG_GAMMA 0x9e3779b97f4a7c15ull

/* splitmix64's output function: a bijective 64-bit mixer */
static KILN_HOST_DEVICE inline uint64_t kiln_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* splitmix64 as a hash of one word: the first output of the stream at state x */
static KILN_HOST_DEVICE inline uint64_t kiln_hash64(uint64_t x) { return kiln_mix64(x + KILN_RNG_GAMMA); }

/* a splitmix64 stream: its state advances by KILN_RNG_GAMMA per draw */
typedef struct kiln_rng {
    uint64_t s;
} kiln_rng;

static inline kiln_rng kiln_rng_at(uint64_t state) {
    kiln_rng r = {state};
    return r;
}
/* the library's seeding (weight initializers, fit's shuffle) */
void kiln_rng_seed(kiln_rng *r, uint64_t seed);
/* stream k of seed: distinct k give independent streams (the data layer's draws) */
kiln_rng kiln_rng_stream(uint64_t seed, uint64_t k);

static inline uint64_t kiln_rng_next(kiln_rng *r) { return kiln_mix64(r->s += KILN_RNG_GAMMA); }
/* uniform in [0, 1) with 53 random bits */
static inline double kiln_rng_uniform(kiln_rng *r) { return (double)(kiln_rng_next(r) >> 11) * 0x1.0p-53; }
/* uniform integer in [0, n), n > 0 (a modulo; the bias is below n / 2^64) */
static inline uint64_t kiln_rng_below(kiln_rng *r, uint64_t n) { return kiln_rng_next(r) % n; }

/* Fisher-Yates: permutes idx[0..n) in place, drawing j below i + 1 for i = n-1 down to 1 */
void kiln_rng_shuffle(kiln_rng *r, int64_t *idx, int64_t n);
/* idx[0..n) = 0..n-1 shuffled by the stream kiln_rng_seed(seed): fit's epoch order and
 * kiln_dataset_shuffle_indices */
void kiln_rng_permutation(int64_t *idx, int64_t n, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
