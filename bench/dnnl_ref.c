/* bench/dnnl_ref.c: oneDNN called directly, as the CPU baselines of kiln-bench: its batch
 * normalization (forward training, inference, backward) on a bn config's host inputs, for
 * `kiln-bench bn --device cpu` (impl "onednn"), and its matmul against OpenBLAS for `kiln-bench
 * conv`'s GEMM rows. Each object makes its primitive once; run() is what is timed. In a build
 * without oneDNN every constructor answers KILN_ERR_UNSUPPORTED. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "error.h"

#ifndef KILN_BENCH_DNNL

kiln_status bench_dnnl_bn_new(const bench_bn_host *h, int dir, bench_dnnl **out) {
    *out = NULL;
    return kiln_error(KILN_ERR_UNSUPPORTED, "this build has no oneDNN");
}
kiln_status bench_dnnl_gemm_new(int m, int n, int k, bool ta, bool tb, bench_dnnl **out) {
    *out = NULL;
    return kiln_error(KILN_ERR_UNSUPPORTED, "this build has no oneDNN");
}
kiln_status bench_dnnl_run(void *ctx) { return KILN_ERR_UNSUPPORTED; }
void bench_dnnl_bn_outputs(bench_dnnl *b, bench_bn_out *o) { memset(o, 0, sizeof *o); }
void bench_dnnl_gemm_buffers(bench_dnnl *g, float **a, float **b, float **c) { *a = *b = *c = NULL; }
void bench_dnnl_free(bench_dnnl *b) { (void)b; }

#else
#include <oneapi/dnnl/dnnl.h>

enum { MAX_ARGS = 12 };

struct bench_dnnl {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_t prim;
    dnnl_memory_t mem[MAX_ARGS];
    dnnl_exec_arg_t args[MAX_ARGS];
    int nargs;
    /* bn: the config, direction and host outputs */
    const bench_bn_host *h;
    int dir;
    float *y, *mean, *var, *dscale, *dshift, *ch[4];
    /* gemm: the operands */
    float *a, *b, *c;
};

void bench_dnnl_free(bench_dnnl *d) {
    if (!d) return;
    for (int i = 0; i < d->nargs; i++) dnnl_memory_destroy(d->mem[i]);
    if (d->prim) dnnl_primitive_destroy(d->prim);
    if (d->stream) dnnl_stream_destroy(d->stream);
    if (d->engine) dnnl_engine_destroy(d->engine);
    free(d->y), free(d->mean), free(d->var), free(d->dscale), free(d->dshift);
    for (int i = 0; i < 4; i++) free(d->ch[i]);
    free(d->a), free(d->b), free(d->c);
    free(d);
}

static kiln_status fail(bench_dnnl *d, const char *what, dnnl_status_t s) {
    bench_dnnl_free(d);
    return kiln_error(KILN_ERR_DEVICE, "oneDNN %s failed (status %d)", what, (int)s);
}

static bench_dnnl *open_engine(dnnl_status_t *s) {
    bench_dnnl *d = calloc(1, sizeof *d);
    *s = d ? dnnl_engine_create(&d->engine, dnnl_cpu, 0) : dnnl_out_of_memory;
    if (*s == dnnl_success) *s = dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags);
    return d;
}

/* binds `data` as argument `arg` of the primitive, described as pd describes that argument */
static dnnl_status_t bind(bench_dnnl *d, const_dnnl_primitive_desc_t pd, int arg, void *data) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
    dnnl_status_t s = dnnl_memory_create(&d->mem[d->nargs], md, d->engine, data);
    if (s == dnnl_success) d->args[d->nargs] = (dnnl_exec_arg_t){arg, d->mem[d->nargs]}, d->nargs++;
    return s;
}

kiln_status bench_dnnl_run(void *ctx) {
    bench_dnnl *d = ctx;
    dnnl_status_t s = dnnl_primitive_execute(d->prim, d->stream, d->nargs, d->args);
    if (s == dnnl_success) s = dnnl_stream_wait(d->stream);
    return s == dnnl_success ? KILN_OK : kiln_error(KILN_ERR_DEVICE, "oneDNN execution failed (status %d)", (int)s);
}

/* ---- batch normalization -------------------------------------------------------------------- */

static float *floats(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* the data descriptor of a bn config: (N, C) or (N, C, H, W) in its layout */
static dnnl_status_t bn_data_md(const bench_bn_host *h, dnnl_memory_desc_t *md) {
    const bench_case *cs = h->cfg->cs;
    if (!cs->h) return dnnl_memory_desc_init_by_tag(md, 2, (dnnl_dims_t){cs->n, cs->c}, dnnl_f32, dnnl_nc);
    dnnl_format_tag_t tag = h->cfg->layout == KILN_LAYOUT_NCHW ? dnnl_nchw : dnnl_nhwc;
    return dnnl_memory_desc_init_by_tag(md, 4, (dnnl_dims_t){cs->n, cs->c, cs->h, cs->w}, dnnl_f32, tag);
}

static dnnl_status_t bn_pd(bench_dnnl *d, const bench_bn_host *h, int dir, dnnl_primitive_desc_t *pd) {
    const float eps = 1e-5f;
    dnnl_memory_desc_t md;
    dnnl_batch_normalization_desc_t fd, bd;
    unsigned flags = dnnl_use_scale | dnnl_use_shift | (dir == BENCH_DIR_FWD_INFER ? dnnl_use_global_stats : 0u);
    dnnl_primitive_desc_t hint = NULL;
    dnnl_status_t s = bn_data_md(h, &md);
    if (s == dnnl_success)
        s = dnnl_batch_normalization_forward_desc_init(&fd, dir == BENCH_DIR_FWD_INFER ? dnnl_forward_inference : dnnl_forward_training,
                                                       &md, eps, flags);
    if (s != dnnl_success || dir != BENCH_DIR_BWD) return s == dnnl_success ? dnnl_primitive_desc_create(pd, &fd, NULL, d->engine, NULL) : s;
    s = dnnl_primitive_desc_create(&hint, &fd, NULL, d->engine, NULL);
    if (s == dnnl_success) s = dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &md, &md, eps, flags);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(pd, &bd, NULL, d->engine, hint);
    if (hint) dnnl_primitive_desc_destroy(hint);
    return s;
}

/* the arguments of direction dir; the backward's variance is recovered from the reference's
 * saved inverse deviation (var = 1 / invstd^2 - eps, in double) */
static dnnl_status_t bn_bind(bench_dnnl *d, const_dnnl_primitive_desc_t pd) {
    const bench_bn_host *h = d->h;
    size_t c = (size_t)h->c;
    for (size_t i = 0; d->dir == BENCH_DIR_BWD && i < c; i++) {
        double is = h->save_invstd[i];
        d->mean[i] = h->save_mean[i], d->var[i] = (float)(1.0 / (is * is) - 1e-5);
    }
    for (size_t i = 0; d->dir == BENCH_DIR_FWD_INFER && i < c; i++) d->mean[i] = h->mm[i], d->var[i] = h->mv[i];
    bool bwd = d->dir == BENCH_DIR_BWD;
    dnnl_status_t s = bind(d, pd, DNNL_ARG_SRC, h->x);
    if (s == dnnl_success) s = bind(d, pd, DNNL_ARG_SCALE, h->gamma);
    if (s == dnnl_success) s = bind(d, pd, DNNL_ARG_SHIFT, h->beta);
    if (s == dnnl_success) s = bind(d, pd, DNNL_ARG_MEAN, d->mean);
    if (s == dnnl_success) s = bind(d, pd, DNNL_ARG_VARIANCE, d->var);
    if (s == dnnl_success && !bwd) s = bind(d, pd, DNNL_ARG_DST, d->y);
    if (s != dnnl_success || !bwd) return s;
    s = bind(d, pd, DNNL_ARG_DIFF_DST, h->dy);
    if (s == dnnl_success) s = bind(d, pd, DNNL_ARG_DIFF_SRC, d->y);
    if (s == dnnl_success) s = bind(d, pd, DNNL_ARG_DIFF_SCALE, d->dscale);
    if (s == dnnl_success) s = bind(d, pd, DNNL_ARG_DIFF_SHIFT, d->dshift);
    return s;
}

kiln_status bench_dnnl_bn_new(const bench_bn_host *h, int dir, bench_dnnl **out) {
    *out = NULL;
    if (h->cfg->dtype != KILN_F32)
        return kiln_error(KILN_ERR_UNSUPPORTED, "the oneDNN baseline runs f32 only");
    dnnl_status_t s;
    bench_dnnl *d = open_engine(&s);
    if (s != dnnl_success) return fail(d, "engine", s);
    d->h = h, d->dir = dir;
    size_t c = (size_t)h->c;
    d->y = floats(h->numel), d->mean = floats(c), d->var = floats(c), d->dscale = floats(c), d->dshift = floats(c);
    for (int i = 0; i < 4; i++) d->ch[i] = floats(c);
    if (!d->y || !d->mean || !d->var || !d->dscale || !d->dshift || !d->ch[3]) {
        bench_dnnl_free(d);
        return kiln_error(KILN_ERR_OOM, "out of host memory for the oneDNN baseline");
    }
    dnnl_primitive_desc_t pd = NULL;
    s = bn_pd(d, h, dir, &pd);
    if (s == dnnl_success) s = dnnl_primitive_create(&d->prim, pd);
    if (s == dnnl_success) s = bn_bind(d, pd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (s == dnnl_unimplemented) {
        bench_dnnl_free(d);
        return kiln_error(KILN_ERR_UNSUPPORTED, "oneDNN has no batch normalization for this shape");
    }
    if (s != dnnl_success) return fail(d, "batch normalization setup", s);
    *out = d;
    return KILN_OK;
}

/* the outputs in the shapes bench_bn_check reads; the training forward's inverse deviation and
 * moving statistics (PyTorch's momentum 0.1, unbiased variance) derived from oneDNN's mean and
 * biased variance on the host, outside the timed call */
void bench_dnnl_bn_outputs(bench_dnnl *d, bench_bn_out *o) {
    memset(o, 0, sizeof *o);
    o->y = d->y;
    const bench_bn_host *h = d->h;
    if (d->dir == BENCH_DIR_BWD) {
        o->ch[0] = d->dscale, o->ch[1] = d->dshift;
        return;
    }
    if (d->dir != BENCH_DIR_FWD_TRAIN) return;
    double n = (double)h->n, unbias = n > 1 ? n / (n - 1) : 1.0;
    for (int64_t i = 0; i < h->c; i++) {
        d->ch[0][i] = d->mean[i];
        d->ch[1][i] = (float)(1.0 / sqrt((double)d->var[i] + 1e-5));
        d->ch[2][i] = (float)(0.9 * h->mm[i] + 0.1 * d->mean[i]);
        d->ch[3][i] = (float)(0.9 * h->mv[i] + 0.1 * d->var[i] * unbias);
    }
    for (int i = 0; i < 4; i++) o->ch[i] = d->ch[i];
}

/* ---- matmul: C (m, n) = op(A) op(B), row-major, A (m, k) or its transpose stored (k, m) ---- */

kiln_status bench_dnnl_gemm_new(int m, int n, int k, bool ta, bool tb, bench_dnnl **out) {
    *out = NULL;
    dnnl_status_t s;
    bench_dnnl *d = open_engine(&s);
    if (s != dnnl_success) return fail(d, "engine", s);
    d->a = floats((size_t)m * (size_t)k), d->b = floats((size_t)k * (size_t)n), d->c = floats((size_t)m * (size_t)n);
    if (!d->a || !d->b || !d->c) {
        bench_dnnl_free(d);
        return kiln_error(KILN_ERR_OOM, "out of host memory for the matmul operands");
    }
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t ad = {m, k}, bd = {k, n}, cd = {m, n};
    dnnl_dims_t as = {ta ? 1 : k, ta ? m : 1}, bs = {tb ? 1 : n, tb ? k : 1};
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    s = dnnl_memory_desc_init_by_strides(&a, 2, ad, dnnl_f32, as);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_strides(&b, 2, bd, dnnl_f32, bs);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&c, 2, cd, dnnl_f32, dnnl_ab);
    if (s == dnnl_success) s = dnnl_matmul_desc_init(&md, &a, &b, NULL, &c);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &md, NULL, d->engine, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&d->prim, pd);
    if (s == dnnl_success) s = bind(d, pd, DNNL_ARG_SRC, d->a);
    if (s == dnnl_success) s = bind(d, pd, DNNL_ARG_WEIGHTS, d->b);
    if (s == dnnl_success) s = bind(d, pd, DNNL_ARG_DST, d->c);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) return fail(d, "matmul setup", s);
    *out = d;
    return KILN_OK;
}

void bench_dnnl_gemm_buffers(bench_dnnl *d, float **a, float **b, float **c) {
    *a = d->a, *b = d->b, *c = d->c;
}
#endif
