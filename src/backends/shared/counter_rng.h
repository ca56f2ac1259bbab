/* counter_rng.h: the stateless (counter-based) hash behind dropout's mask (internal,
 * header-only), over core's splitmix64 mixer (rng.h). The CPU backend and the CUDA kernels
 * include this one definition, so both draw the same mask bit for bit; a .cu file defines
 * KILN_HOST_DEVICE as __host__ __device__ before including it. Element i's draw depends on
 * (seed, i) only: no state, any order, any thread. */
#ifndef KILN_COUNTER_RNG_H
#define KILN_COUNTER_RNG_H

#include <stdint.h>

#include "rng.h" /* kiln_mix64, kiln_hash64 and KILN_HOST_DEVICE */

/* the per-call key, computed once from the user's seed */
static KILN_HOST_DEVICE inline uint64_t kiln_dropout_key(uint64_t seed) { return kiln_hash64(seed); }

/* u in [0, 1), a multiple of 2^-24 (exact in f32), for element i */
static KILN_HOST_DEVICE inline float kiln_counter_uniform(uint64_t key, uint64_t i) {
    uint64_t h = kiln_mix64(key ^ (i * 0xd1b54a32d192ed03ull));
    return (float)(uint32_t)(h >> 40) * 0x1p-24f;
}

/* Keras keeps an element when its uniform draw is >= rate */
static KILN_HOST_DEVICE inline int kiln_dropout_keep(uint64_t key, uint64_t i, float rate) {
    return kiln_counter_uniform(key, i) >= rate;
}

#endif
