/* dist_fit.c: fit's part in data-parallel training (dist_fit.h). Each rank takes the r-th
 * contiguous 1/N of every global batch (of the order every rank draws alike from the seed);
 * each trainable gradient becomes the sum over ranks of (share / B) x the rank's gradient, added
 * in rank order in double, so every rank applies the same update. The gradients go out in
 * buckets (the bucket scheduler below): grouped in the order the backward finishes them (last
 * layer first) into buckets of at most KILN_DIST_BUCKET_BYTES (default 25 MiB, as DDP), each
 * handed to the communicator (kiln_comm_grads_begin: the backend's device engine when it has
 * one, else the host path) as soon as the backward has produced all of its gradients; the step's
 * loss sum and correct count follow in a message of their own. KILN_DIST_BUCKET_BYTES=0 keeps
 * the single host message of gradients and metrics after the whole backward. Either way each
 * element's sum is the same bits (it does not depend on the grouping). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
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

/* rank 0's weights on every rank */
static kiln_status broadcast_weights(kiln_model *m) {
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

/* KILN_DIST_BUCKET_BYTES=0: gradients and metrics in one host message after the backward */
static kiln_status reduce_one_message(kiln_model *m, int count, int b, kiln_tensor *loss, kiln_tensor *correct) {
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

/* ---- the bucket scheduler ---- */

struct kiln_fit_dist {
    kiln_model *m;
    kiln_comm *comm;   /* where buckets go: device, or m->comm (the host path) */
    kiln_comm *device; /* the backend's device communicator (kiln_backend_comm_create), or NULL */
    int64_t cap;       /* bytes per bucket; 0: one host message (reduce_one_message) */
    bool eager;        /* buckets go during the backward (not with regularizers: their gradient
                        * terms join after it) */
    int n_t, n_b;      /* gradients, buckets */
    kiln_tensor **t;   /* the trainable gradients, in the order the backward finishes them */
    int *node;         /* t[k]'s node */
    int *first;        /* bucket j holds t[first[j] .. first[j + 1]) */
    int *pending;      /* bucket j's gradients still to come in this backward */
    int next;          /* the next bucket to hand over (buckets go in order on every rank) */
    double scale;      /* this step's count / b */
};

/* KILN_DIST_BUCKET_BYTES (bytes, >= 0), 25 MiB when unset */
static kiln_status bucket_bytes(int64_t *out) {
    const char *v = getenv("KILN_DIST_BUCKET_BYTES");
    *out = 25 << 20;
    if (!v || !*v) return KILN_OK;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || x < 0)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: KILN_DIST_BUCKET_BYTES='%s' is not a byte count "
                          "(a whole number >= 0; 0: one message after the backward)", v);
    *out = x;
    return KILN_OK;
}

static bool has_regularizers(const kiln_model *m) {
    for (int i = 0; i < m->n_nodes; i++)
        for (int w = 0; w < m->nodes[i].n_w; w++) {
            const kiln_node *n = &m->nodes[i];
            if ((n->w_reg[w].l1 != 0.0 || n->w_reg[w].l2 != 0.0) && n->g[w] && kiln_node_trainable(n, w)) return true;
        }
    return false;
}

/* d's gradients, last node first, and their buckets of at most d->cap bytes (one gradient
 * larger than that is a bucket of its own) */
static kiln_status buckets_plan(kiln_fit_dist *d, kiln_model *m) {
    int most = 0;
    for (int i = 0; i < m->n_nodes; i++) most += m->nodes[i].n_w;
    d->t = calloc((size_t)most + 1, sizeof *d->t);
    d->node = calloc((size_t)most + 1, sizeof *d->node);
    d->first = calloc((size_t)most + 2, sizeof *d->first);
    d->pending = calloc((size_t)most + 1, sizeof *d->pending);
    if (!d->t || !d->node || !d->first || !d->pending)
        return kiln_error(KILN_ERR_OOM, "kiln_model_fit: out of host memory for the gradient buckets");
    int64_t bytes = 0;
    for (int i = m->n_nodes - 1; i >= 0; i--)
        for (int w = 0; w < m->nodes[i].n_w; w++) {
            kiln_node *nd = &m->nodes[i];
            if (!nd->g[w] || !kiln_node_trainable(nd, w)) continue;
            int64_t nb = (int64_t)sizeof(float) * kiln_tensor_numel(nd->g[w]);
            if (d->n_t > d->first[d->n_b] && bytes + nb > d->cap) { /* close the bucket */
                d->first[++d->n_b] = d->n_t;
                bytes = 0;
            }
            bytes += nb;
            d->node[d->n_t] = i;
            d->t[d->n_t++] = nd->g[w];
        }
    if (d->n_t > d->first[d->n_b]) d->first[++d->n_b] = d->n_t;
    return KILN_OK;
}

/* hands bucket d->next and every complete one after it to the communicator */
static kiln_status buckets_launch(kiln_fit_dist *d, bool all) {
    for (; d->next < d->n_b && (all || d->pending[d->next] == 0); d->next++) {
        int j = d->next;
        KILN_TRY(kiln_comm_grads_begin(d->comm, d->t + d->first[j], d->first[j + 1] - d->first[j], d->scale));
    }
    return KILN_OK;
}

/* m->grads_ready: node's gradients are written; the buckets they complete go out */
static kiln_status grads_ready(void *ctx, int node) {
    kiln_fit_dist *d = ctx;
    int j = 0;
    for (int k = 0; k < d->n_t; k++) {
        while (k >= d->first[j + 1]) j++;
        if (d->node[k] == node) d->pending[j]--;
    }
    return buckets_launch(d, false);
}

void kiln_fit_dist_free(kiln_fit_dist *d) {
    if (!d) return;
    if (d->m && d->m->grads_ready_ctx == d) {
        d->m->grads_ready = NULL;
        d->m->grads_ready_ctx = NULL;
    }
    kiln_comm_free(d->device);
    free(d->t);
    free(d->node);
    free(d->first);
    free(d->pending);
    free(d);
}

kiln_status kiln_fit_dist_begin(kiln_model *m, kiln_fit_dist **out) {
    *out = NULL;
    if (ranks(m) <= 1) return KILN_OK;
    KILN_TRY(broadcast_weights(m));
    kiln_fit_dist *d = calloc(1, sizeof *d);
    if (!d) return kiln_error(KILN_ERR_OOM, "kiln_model_fit: out of host memory");
    *out = d;
    d->m = m;
    d->comm = m->comm;
    KILN_TRY(bucket_bytes(&d->cap));
    if (d->cap == 0) return KILN_OK;
    d->eager = !has_regularizers(m);
    KILN_TRY(buckets_plan(d, m));
    KILN_TRY(kiln_backend_comm_create(m->be, m->comm, &d->device));
    if (d->device) d->comm = d->device;
    return KILN_OK;
}

kiln_status kiln_fit_dist_backward(kiln_fit_dist *d, int count, int b) {
    if (!d || d->cap == 0) return KILN_OK;
    d->scale = (double)count / (double)b;
    d->next = 0;
    for (int j = 0; j < d->n_b; j++) d->pending[j] = d->first[j + 1] - d->first[j];
    d->m->grads_ready = d->eager ? grads_ready : NULL;
    d->m->grads_ready_ctx = d->eager ? d : NULL;
    return KILN_OK;
}

kiln_status kiln_fit_dist_reduce(kiln_fit_dist *d, int count, int b, kiln_tensor *loss, kiln_tensor *correct) {
    if (!d) return KILN_OK;
    kiln_model *m = d->m;
    if (d->cap == 0) return reduce_one_message(m, count, b, loss, correct);
    m->grads_ready = NULL;
    m->grads_ready_ctx = NULL;
    KILN_TRY(buckets_launch(d, true)); /* all of them without the hook (regularizers) */
    KILN_TRY(kiln_comm_grads_wait(d->comm));
    float lc[2] = {0, 0};
    KILN_TRY(kiln_tensor_get(loss, &lc[0], sizeof(float)));
    KILN_TRY(kiln_tensor_get(correct, &lc[1], sizeof(float)));
    double h[2] = {lc[0], lc[1]};
    KILN_TRY(kiln_comm_allreduce_sum(m->comm, h, 2));
    lc[0] = (float)h[0];
    lc[1] = (float)h[1];
    KILN_TRY(kiln_tensor_set(loss, &lc[0], sizeof(float)));
    return kiln_tensor_set(correct, &lc[1], sizeof(float));
}
