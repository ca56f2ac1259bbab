/* data/prefetch.c: the batch prefetcher. A producer thread fills batch k+1 into one of two
 * host buffers while the caller trains on batch k from the other; without the thread, next()
 * fills the batch itself. Batch k's contents depend only on (order, k, seed), never on the
 * timing, so both modes give the same bytes. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "error.h"
#include "rng.h"

struct kiln_prefetcher {
    const kiln_dataset *ds;
    int64_t batch_size;
    kiln_augment aug;
    bool has_aug, threaded;
    kiln_backend *be;
    float *img[2];
    int32_t *lab[2];
    /* the epoch */
    int64_t *order, n, n_batches, next_batch;
    uint64_t seed;
    /* the producer; filled[s] is the batch slot s holds (-1: free), in_use the caller's slot */
    pthread_t thread;
    bool running, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t filled[2];
    int in_use;
};

static void fill(kiln_prefetcher *p, int slot, int64_t k) {
    int64_t start = k * p->batch_size, count = p->n - start < p->batch_size ? p->n - start : p->batch_size;
    kiln_rng r = kiln_rng_stream(p->seed, (uint64_t)k);
    /* the indices were checked in start(), so this cannot fail */
    (void)kiln_dataset_gather(p->ds, p->order + start, count, p->has_aug ? &p->aug : NULL,
                              kiln_rng_next(&r), p->img[slot], p->lab[slot]);
}

static void *producer(void *arg) {
    kiln_prefetcher *p = arg;
    for (int64_t k = 0; k < p->n_batches; k++) {
        int slot = (int)(k & 1);
        pthread_mutex_lock(&p->mu);
        while (!p->stop && (p->filled[slot] != -1 || p->in_use == slot)) pthread_cond_wait(&p->cv, &p->mu);
        bool stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        fill(p, slot, k);
        pthread_mutex_lock(&p->mu);
        p->filled[slot] = k;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

static void host_free(kiln_prefetcher *p, void *ptr) {
    if (p->be) kiln_host_free(p->be, ptr);
    else free(ptr);
}

static kiln_status host_alloc(kiln_prefetcher *p, size_t n, void **out) {
    if (p->be) return kiln_host_alloc(p->be, n, out);
    *out = malloc(n);
    return *out ? KILN_OK : kiln_error(KILN_ERR_OOM, "kiln_prefetcher_new: out of host memory (%zu bytes)", n);
}

kiln_status kiln_prefetcher_new(const kiln_dataset *ds, int64_t batch_size, const kiln_augment *aug,
                                kiln_backend *be, bool threaded, kiln_prefetcher **out) {
    if (!ds || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_prefetcher_new: NULL argument");
    *out = NULL;
    if (batch_size < 1 || batch_size > (int64_t)1 << 30)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_prefetcher_new: batch size %lld", (long long)batch_size);
    if (aug && (aug->pad < 0 || aug->pad > ds->h || aug->pad > ds->w))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_prefetcher_new: padding %d for %dx%d images", aug->pad,
                          ds->h, ds->w);
    size_t img_bytes, per = kiln_dataset_image_numel(ds);
    if (!kiln_mul_size(per * sizeof(float), (size_t)batch_size, &img_bytes))
        return kiln_error(KILN_ERR_OOM, "kiln_prefetcher_new: batch of %lld images overflows", (long long)batch_size);
    kiln_prefetcher *p = calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_ERR_OOM, "kiln_prefetcher_new: out of host memory");
    p->ds = ds;
    p->batch_size = batch_size;
    p->has_aug = aug != NULL;
    if (aug) p->aug = *aug;
    p->threaded = threaded;
    p->be = be;
    p->filled[0] = p->filled[1] = -1;
    p->in_use = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    kiln_status s = KILN_OK;
    for (int i = 0; i < 2 && s == KILN_OK; i++) {
        s = host_alloc(p, img_bytes, (void **)&p->img[i]);
        if (s == KILN_OK) s = host_alloc(p, (size_t)batch_size * sizeof(int32_t), (void **)&p->lab[i]);
    }
    if (s != KILN_OK) {
        kiln_prefetcher_free(p);
        return s;
    }
    *out = p;
    return KILN_OK;
}

void kiln_prefetcher_stop(kiln_prefetcher *p) {
    if (!p) return;
    if (p->running) {
        pthread_mutex_lock(&p->mu);
        p->stop = true;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
        p->running = false;
    }
    p->stop = false;
    p->filled[0] = p->filled[1] = -1;
    p->in_use = -1;
    p->next_batch = p->n_batches;
}

kiln_status kiln_prefetcher_start(kiln_prefetcher *p, const int64_t *order, int64_t n, uint64_t seed) {
    if (!p || n < 0 || (n > 0 && !order))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_prefetcher_start: NULL argument or negative count");
    kiln_prefetcher_stop(p);
    for (int64_t i = 0; i < n; i++)
        if (order[i] < 0 || order[i] >= p->ds->n)
            return kiln_error(KILN_ERR_INVALID_ARG, "kiln_prefetcher_start: %s: order[%lld] = %lld is outside [0, %lld)",
                              p->ds->source, (long long)i, (long long)order[i], (long long)p->ds->n);
    int64_t *copy = malloc((size_t)(n ? n : 1) * sizeof *copy);
    if (!copy) return kiln_error(KILN_ERR_OOM, "kiln_prefetcher_start: out of host memory");
    if (n) memcpy(copy, order, (size_t)n * sizeof *copy);
    free(p->order);
    p->order = copy;
    p->n = n;
    p->seed = seed;
    p->n_batches = (n + p->batch_size - 1) / p->batch_size;
    p->next_batch = 0;
    if (p->threaded && p->n_batches > 0) {
        int e = pthread_create(&p->thread, NULL, producer, p);
        if (e) {
            p->next_batch = p->n_batches;
            return kiln_error(KILN_ERR_OOM, "kiln_prefetcher_start: cannot start the producer thread (error %d)", e);
        }
        p->running = true;
    }
    return KILN_OK;
}

kiln_status kiln_prefetcher_next(kiln_prefetcher *p, kiln_batch *out) {
    if (!p || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_prefetcher_next: NULL argument");
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&p->mu);
    if (p->in_use >= 0) { /* the caller is done with the previous batch */
        p->filled[p->in_use] = -1;
        p->in_use = -1;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (p->next_batch >= p->n_batches) {
        kiln_prefetcher_stop(p);
        out->index = p->n_batches;
        return KILN_OK;
    }
    int64_t k = p->next_batch++;
    int slot = (int)(k & 1);
    if (p->running) {
        pthread_mutex_lock(&p->mu);
        while (p->filled[slot] != k) pthread_cond_wait(&p->cv, &p->mu);
        p->in_use = slot;
        pthread_mutex_unlock(&p->mu);
    } else {
        fill(p, slot, k);
        p->filled[slot] = k;
        p->in_use = slot;
    }
    int64_t start = k * p->batch_size;
    out->images = p->img[slot];
    out->labels = p->lab[slot];
    out->count = p->n - start < p->batch_size ? p->n - start : p->batch_size;
    out->index = k;
    return KILN_OK;
}

void kiln_prefetcher_free(kiln_prefetcher *p) {
    if (!p) return;
    kiln_prefetcher_stop(p);
    for (int i = 0; i < 2; i++) {
        host_free(p, p->img[i]);
        host_free(p, p->lab[i]);
    }
    free(p->order);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
