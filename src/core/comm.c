/* comm.c: kiln/dist.h's calls on the communicator interface (comm_impl.h), the time spent in
 * collectives, and the "single" engine: one rank, where every collective leaves its buffer as
 * it is. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "comm_impl.h"
#include "error.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

kiln_status kiln_comm_wrap(const kiln_comm_iface *iface, void *ctx, int rank, int size, const char *engine,
                           kiln_comm **out) {
    kiln_comm *c = calloc(1, sizeof *c);
    if (!c) {
        if (iface->free) iface->free(ctx);
        return kiln_error(KILN_ERR_OOM, "kiln_dist_init: out of host memory");
    }
    *c = (kiln_comm){.iface = *iface, .ctx = ctx, .rank = rank, .size = size, .engine = engine};
    *out = c;
    return KILN_OK;
}

static kiln_status single_allreduce(void *ctx, double *buf, int64_t n) { return KILN_OK; }
static kiln_status single_broadcast(void *ctx, void *buf, size_t nbytes, int root) { return KILN_OK; }
static kiln_status single_barrier(void *ctx) { return KILN_OK; }

kiln_status kiln_comm_single(kiln_comm **out) {
    if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_comm_single: out is NULL");
    *out = NULL;
    static const kiln_comm_iface single = {.allreduce_sum = single_allreduce, .broadcast = single_broadcast,
                                           .barrier = single_barrier};
    return kiln_comm_wrap(&single, NULL, 0, 1, "single", out);
}

void kiln_comm_free(kiln_comm *c) {
    if (!c) return;
    if (c->iface.free) c->iface.free(c->ctx);
    free(c->host);
    free(c->host_f);
    free(c);
}

int kiln_comm_rank(const kiln_comm *c) { return c ? c->rank : 0; }
int kiln_comm_size(const kiln_comm *c) { return c ? c->size : 1; }
const char *kiln_comm_engine(const kiln_comm *c) { return c ? c->engine : "?"; }
double kiln_comm_seconds(const kiln_comm *c) { return c ? c->seconds : 0.0; }

kiln_status kiln_comm_allreduce_sum(kiln_comm *c, double *buf, int64_t n) {
    if (!c || (!buf && n > 0) || n < 0)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_comm_allreduce_sum: %s", !c ? "the communicator is NULL" : "bad buffer");
    double t0 = now();
    kiln_status s = c->iface.allreduce_sum(c->ctx, buf, n);
    c->seconds += now() - t0;
    return s;
}

kiln_status kiln_comm_broadcast(kiln_comm *c, void *buf, size_t nbytes, int root) {
    if (!c || (!buf && nbytes > 0) || root < 0 || root >= c->size)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_comm_broadcast: %s",
                          !c ? "the communicator is NULL" : "bad buffer or root");
    double t0 = now();
    kiln_status s = c->iface.broadcast(c->ctx, buf, nbytes, root);
    c->seconds += now() - t0;
    return s;
}

kiln_status kiln_comm_barrier(kiln_comm *c) {
    if (!c) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_comm_barrier: the communicator is NULL");
    double t0 = now();
    kiln_status s = c->iface.barrier(c->ctx);
    c->seconds += now() - t0;
    return s;
}

void kiln_comm_abort_code(kiln_comm *c, const char *msg, int code) {
    fprintf(stderr, "kiln: rank %d of %d failed: %s\n", kiln_comm_rank(c), kiln_comm_size(c),
            msg && *msg ? msg : "(no message)");
    fflush(stderr);
    if (c && c->size > 1 && c->iface.abort) c->iface.abort(c->ctx, msg, code > 0 ? code : 1);
}

void kiln_comm_abort(kiln_comm *c, const char *msg) { kiln_comm_abort_code(c, msg, 1); }

/* ---- the gradient all-reduce (kiln_comm_grads_begin); the host path ---- */

/* c's host buffers hold at least n values */
static kiln_status host_reserve(kiln_comm *c, int64_t n) {
    if (n <= c->host_cap) return KILN_OK;
    double *h = realloc(c->host, sizeof(double) * (size_t)n);
    if (h) c->host = h;
    float *f = h ? realloc(c->host_f, sizeof(float) * (size_t)n) : NULL;
    if (f) c->host_f = f;
    if (!h || !f) return kiln_error(KILN_ERR_OOM, "kiln_comm: out of host memory for %lld gradient values", (long long)n);
    c->host_cap = n;
    return KILN_OK;
}

/* t's values times scale into h (back: false), or h's rounded to float into t (back: true) */
static kiln_status host_move(kiln_comm *c, kiln_tensor *t, double *h, double scale, bool back) {
    int64_t k = kiln_tensor_numel(t);
    float *f = c->host_f;
    if (back) {
        for (int64_t i = 0; i < k; i++) f[i] = (float)h[i];
        return kiln_tensor_set(t, f, sizeof(float) * (size_t)k);
    }
    KILN_TRY(kiln_tensor_get(t, f, sizeof(float) * (size_t)k));
    for (int64_t i = 0; i < k; i++) h[i] = (double)f[i] * scale;
    return KILN_OK;
}

/* the tensors' values in one message through the engine's allreduce_sum */
static kiln_status host_grads(kiln_comm *c, kiln_tensor *const *t, int n, double scale) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += kiln_tensor_numel(t[i]);
    KILN_TRY(host_reserve(c, total + 1));
    int64_t at = 0;
    for (int i = 0; i < n; at += kiln_tensor_numel(t[i]), i++) KILN_TRY(host_move(c, t[i], c->host + at, scale, false));
    KILN_TRY(kiln_comm_allreduce_sum(c, c->host, total));
    at = 0;
    for (int i = 0; i < n; at += kiln_tensor_numel(t[i]), i++) KILN_TRY(host_move(c, t[i], c->host + at, 1.0, true));
    return KILN_OK;
}

kiln_status kiln_comm_grads_begin(kiln_comm *c, kiln_tensor *const *t, int n, double scale) {
    if (!c || n < 0 || (!t && n > 0)) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_comm_grads_begin: bad arguments");
    for (int i = 0; i < n; i++)
        if (!t[i] || t[i]->dtype != KILN_F32)
            return kiln_error(KILN_ERR_INVALID_ARG, "kiln_comm_grads_begin: tensor %d is %s", i, t[i] ? "not f32" : "NULL");
    if (!c->iface.grads_begin) return host_grads(c, t, n, scale);
    double t0 = now();
    kiln_status s = c->iface.grads_begin(c->ctx, t, n, scale);
    c->seconds += now() - t0;
    return s;
}

kiln_status kiln_comm_grads_wait(kiln_comm *c) {
    if (!c) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_comm_grads_wait: the communicator is NULL");
    if (!c->iface.grads_wait) return KILN_OK;
    double t0 = now();
    kiln_status s = c->iface.grads_wait(c->ctx);
    c->seconds += now() - t0;
    return s;
}
