/* dist_fit.c: fit's part in data-parallel training (dist_fit.h). Each rank takes the r-th
 * contiguous 1/N of every global batch (of the order every rank draws alike from the seed);
 * the gradients go to the host, are weighted by the share and added over ranks in rank order
 * (kiln_comm_allreduce_sum) in double, with the step's loss sum and correct count in the same
 * message, and come back, so every rank applies the same update. */
#include <stdlib.h>

#include "comm_impl.h"
#include "dist_fit.h"
#include "error.h"

static int ranks(const kiln_model *m) { return kiln_comm_size(m->comm); }

kiln_status kiln_fit_dist_check(const kiln_model *m, int batch_size) {
    int n = ranks(m);
    if (n > 1 && batch_size % n != 0)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: the batch size %d (the global batch) does not divide "
                          "among %d ranks; give a multiple of %d", batch_size, n, n);
    return KILN_OK;
}

kiln_status kiln_fit_dist_share(const kiln_model *m, int b, int *first, int *count) {
    int n = ranks(m), r = kiln_comm_rank(m->comm);
    int64_t lo = (int64_t)b * r / n, hi = (int64_t)b * (r + 1) / n;
    *first = (int)lo;
    *count = (int)(hi - lo);
    if (*count == 0)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: a batch of %d rows (the epoch's last) leaves rank %d of "
                          "%d nothing; choose a training size whose last batch has at least %d rows", b, r, n, n);
    return KILN_OK;
}

/* calls f on every weight tensor (all: true) or every trainable one's gradient (all: false) */
typedef kiln_status (*tensor_fn)(void *ctx, kiln_tensor *t);
static kiln_status each(kiln_model *m, bool all, tensor_fn f, void *ctx) {
    for (int i = 0; i < m->n_nodes; i++) {
        kiln_node *nd = &m->nodes[i];
        for (int w = 0; w < nd->n_w; w++) {
            if (all) KILN_TRY(f(ctx, nd->w[w]));
            else if (nd->g[w] && kiln_node_trainable(nd, w)) KILN_TRY(f(ctx, nd->g[w]));
        }
    }
    return KILN_OK;
}

typedef struct packing {
    double *h;
    float *f;
    int64_t at, cap;
    double scale;
    bool back; /* false: tensors -> h, true: h -> tensors */
} packing;

static kiln_status count_fn(void *ctx, kiln_tensor *t) {
    ((packing *)ctx)->at += kiln_tensor_numel(t);
    return KILN_OK;
}

static kiln_status pack_fn(void *ctx, kiln_tensor *t) {
    packing *p = ctx;
    int64_t k = kiln_tensor_numel(t);
    if (p->back) {
        for (int64_t i = 0; i < k; i++) p->f[i] = (float)p->h[p->at + i];
        KILN_TRY(kiln_tensor_set(t, p->f, sizeof(float) * (size_t)k));
    } else {
        KILN_TRY(kiln_tensor_get(t, p->f, sizeof(float) * (size_t)k));
        for (int64_t i = 0; i < k; i++) p->h[p->at + i] = (double)p->f[i] * p->scale;
    }
    p->at += k;
    return KILN_OK;
}

/* the host buffers for `extra` values after every tensor f visits */
static kiln_status packing_new(kiln_model *m, bool all, int64_t extra, packing *p) {
    *p = (packing){0};
    KILN_TRY(each(m, all, count_fn, p));
    p->cap = p->at + extra;
    p->at = 0;
    p->h = calloc((size_t)p->cap + 1, sizeof(double));
    p->f = calloc((size_t)p->cap + 1, sizeof(float));
    if (!p->h || !p->f) {
        free(p->h);
        free(p->f);
        return kiln_error(KILN_ERR_OOM, "kiln_model_fit: out of host memory for %lld values to all-reduce", (long long)p->cap);
    }
    return KILN_OK;
}

static void packing_free(packing *p) {
    free(p->h);
    free(p->f);
}

kiln_status kiln_fit_dist_begin(kiln_model *m) {
    if (ranks(m) <= 1) return KILN_OK;
    packing p;
    KILN_TRY(packing_new(m, true, 0, &p));
    p.scale = 1.0;
    kiln_status s = each(m, true, pack_fn, &p);
    if (s == KILN_OK) s = kiln_comm_broadcast(m->comm, p.h, sizeof(double) * (size_t)p.cap, 0);
    p.at = 0;
    p.back = true;
    if (s == KILN_OK) s = each(m, true, pack_fn, &p);
    packing_free(&p);
    return s;
}

kiln_status kiln_fit_dist_reduce(kiln_model *m, int count, int b, kiln_tensor *loss, kiln_tensor *correct) {
    if (ranks(m) <= 1) return KILN_OK;
    packing p;
    KILN_TRY(packing_new(m, false, 2, &p));
    p.scale = (double)count / (double)b;
    kiln_status s = each(m, false, pack_fn, &p);
    float lc[2] = {0, 0};
    if (s == KILN_OK) s = kiln_tensor_get(loss, &lc[0], sizeof(float));
    if (s == KILN_OK) s = kiln_tensor_get(correct, &lc[1], sizeof(float));
    int64_t tail = p.at;
    p.h[tail] = lc[0];
    p.h[tail + 1] = lc[1];
    if (s == KILN_OK) s = kiln_comm_allreduce_sum(m->comm, p.h, p.cap);
    p.at = 0;
    p.back = true;
    if (s == KILN_OK) s = each(m, false, pack_fn, &p);
    lc[0] = (float)p.h[tail];
    lc[1] = (float)p.h[tail + 1];
    if (s == KILN_OK) s = kiln_tensor_set(loss, &lc[0], sizeof(float));
    if (s == KILN_OK) s = kiln_tensor_set(correct, &lc[1], sizeof(float));
    packing_free(&p);
    return s;
}
