/* fit_source.c: a kiln_prefetcher as fit's batch source (kiln_fit_config.batches), so that
 * gathering and augmenting the next batch runs on the prefetcher's thread while the model
 * trains on the current one. */
#include "kiln/fit.h"

static kiln_status source_start(void *ctx, const int64_t *order, int64_t n, uint64_t seed) {
    return kiln_prefetcher_start(ctx, order, n, seed);
}

static kiln_status source_next(void *ctx, kiln_batch *out) { return kiln_prefetcher_next(ctx, out); }

static void source_stop(void *ctx) { kiln_prefetcher_stop(ctx); }

kiln_batch_source kiln_prefetcher_batch_source(kiln_prefetcher *p) {
    return (kiln_batch_source){p, source_start, source_next, source_stop};
}
