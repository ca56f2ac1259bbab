/* cpu/conv_dnnl.c: Conv2D and GEMM through oneDNN (the CPU counterpart of cuDNN). Conv2D:
 * forward, backward data and backward filter on NHWC images and Keras' (kh, kw, in, out)
 * kernel, which oneDNN calls hwio; with groups > 1 (DepthwiseConv2D, Conv2D groups) the kernel
 * (kh, kw, in / groups, out) is oneDNN's grouped hwigo. GEMM: oneDNN's matmul on the row-major operands, alpha as its
 * output scale and beta as a sum post-op (kiln-bench conv measured it faster than OpenBLAS on
 * every GEMM of the models, docs/performance.md). Each (op, shape, strides, dilations, pads, groups, bias) gets its primitive once: a per-backend
 * cache of KILN_DNNL_CACHE entries, the least recently used evicted. The kernel is reordered
 * into the layout the primitive prefers (a small copy per call) through a scratch slot, and the
 * primitive's scratchpad is another slot (memory.c), so a steady step allocates nothing. The
 * bias gradient stays conv.c's (double accumulation). Without KILN_HAVE_DNNL (or with
 * KILN_CPU_CONV=im2col, KILN_CPU_GEMM=openblas) every call declines and conv.c runs im2col +
 * OpenBLAS (conv_grouped.c's direct loops with groups), gemm.c OpenBLAS. */
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "error.h"
#include "op_args.h"

#ifndef KILN_HAVE_DNNL

kiln_status kiln_cpu_dnnl_conv2d(kiln_backend *be, const kiln_op *op, bool *done) {
    *done = false;
    return KILN_OK;
}

kiln_status kiln_cpu_dnnl_gemm(kiln_backend *be, const kiln_op *op, bool *done) {
    *done = false;
    return KILN_OK;
}

void kiln_cpu_dnnl_free(kiln_cpu_ctx *c) { (void)c; }
int kiln_cpu_dnnl_cached(const kiln_cpu_ctx *c) { return 0; }
bool kiln_cpu_dnnl_built(void) { return false; }

#else
#include <oneapi/dnnl/dnnl.h>

#define KILN_DNNL_CACHE 64

/* what makes two convolutions the same primitive */
typedef struct dnnl_key {
    int type; /* the op */
    int64_t n, h, w, c, kh, kw, oc, oh, ow;
    int64_t g; /* groups: 1, or the grouped (DepthwiseConv2D: g = c) convolution's */
    int sh, sw, dh, dw, pt, pl;
    bool bias;
    int64_t m, gn, gk;  /* GEMM: C (m, gn) = alpha op(A) op(B) + beta C, inner dimension gk */
    bool ta, tb;
    float alpha, beta;
} dnnl_key;

/* one cached primitive and its memory objects (data handles set at each call) */
typedef struct dnnl_entry {
    dnnl_key key;
    uint64_t used;
    dnnl_primitive_t conv;
    dnnl_primitive_t reorder;  /* hwio <-> the primitive's kernel layout, NULL when the same */
    dnnl_memory_t img, kern, bias, out, user_kern, pad; /* see run_entry */
    size_t kern_bytes, pad_bytes;
} dnnl_entry;

struct kiln_cpu_dnnl {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_entry *e[KILN_DNNL_CACHE];
    int n;
    uint64_t clock;
};

static void entry_free(dnnl_entry *e) {
    if (!e) return;
    dnnl_primitive_destroy(e->conv);
    dnnl_primitive_destroy(e->reorder);
    dnnl_memory_t m[] = {e->img, e->kern, e->bias, e->out, e->user_kern, e->pad};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) dnnl_memory_destroy(m[i]);
    free(e);
}

void kiln_cpu_dnnl_free(kiln_cpu_ctx *c) {
    kiln_cpu_dnnl *d = c->dnnl;
    if (!d) return;
    for (int i = 0; i < d->n; i++) entry_free(d->e[i]);
    dnnl_stream_destroy(d->stream);
    dnnl_engine_destroy(d->engine);
    free(d);
    c->dnnl = NULL;
}

int kiln_cpu_dnnl_cached(const kiln_cpu_ctx *c) { return c->dnnl ? c->dnnl->n : 0; }
bool kiln_cpu_dnnl_built(void) { return true; }

static kiln_status dnnl_fail(const kiln_op *op, const char *what, dnnl_status_t s) {
    return kiln_error(KILN_ERR_DEVICE, "kiln_%s: oneDNN %s failed (status %d)",
                      kiln_op_name(op->type), what, (int)s);
}

static kiln_status dnnl_open(kiln_cpu_ctx *c, const kiln_op *op) {
    if (c->dnnl) return KILN_OK;
    kiln_cpu_dnnl *d = calloc(1, sizeof *d);
    if (!d) return kiln_error(KILN_ERR_OOM, "cpu: out of host memory opening oneDNN");
    dnnl_status_t s = dnnl_engine_create(&d->engine, dnnl_cpu, 0);
    if (s == dnnl_success) s = dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags);
    if (s != dnnl_success) {
        if (d->engine) dnnl_engine_destroy(d->engine);
        free(d);
        return dnnl_fail(op, "engine", s);
    }
    c->dnnl = d;
    return KILN_OK;
}

static dnnl_key key_of(const kiln_op *op) {
    const kiln_conv2d_args *a = &op->conv;
    const kiln_tensor *x = op->type == KILN_OP_CONV2D_BACK_DATA ? a->dx : a->x;
    const kiln_tensor *w = op->type == KILN_OP_CONV2D_BACK_FILTER ? a->dw : a->w;
    const kiln_tensor *y = op->type == KILN_OP_CONV2D ? a->y : a->dy;
    dnnl_key k;
    memset(&k, 0, sizeof k); /* the padding bytes too: keys are compared with memcmp */
    k.type = (int)op->type;
    k.n = x->shape[0], k.h = x->shape[1], k.w = x->shape[2], k.c = x->shape[3];
    k.kh = w->shape[0], k.kw = w->shape[1], k.oc = w->shape[3];
    k.oh = y->shape[1], k.ow = y->shape[2];
    k.sh = a->stride_h, k.sw = a->stride_w, k.dh = a->dilation_h, k.dw = a->dilation_w;
    k.pt = a->pad_top, k.pl = a->pad_left;
    k.g = a->groups > 1 ? a->groups : 1;
    k.bias = op->type == KILN_OP_CONV2D && a->b;
    return k;
}

/* the padding after the last row: what makes (in + pads - extent) / stride + 1 the output */
static int64_t pad_after(int64_t in, int64_t k, int64_t out, int s, int d, int before) {
    int64_t need = (out - 1) * s + (k - 1) * d + 1 - in - before;
    return need > 0 ? need : 0;
}

/* the kernel of key k, (oc, c, kh, kw) or with groups (g, oc / g, c / g, kh, kw), in Keras' layout
 * (user) or the one oneDNN picks: Keras' (kh, kw, c / g, oc) is hwio, with groups hwigo (output
 * channel o is o % (oc / g) of group o / (oc / g), conv_grouped.c's rule) */
static dnnl_status_t kernel_md(const dnnl_key *k, bool user, dnnl_memory_desc_t *md) {
    if (k->g == 1) {
        dnnl_dims_t wd = {k->oc, k->c, k->kh, k->kw};
        return dnnl_memory_desc_init_by_tag(md, 4, wd, dnnl_f32, user ? dnnl_hwio : dnnl_format_tag_any);
    }
    dnnl_dims_t wd = {k->g, k->oc / k->g, k->c / k->g, k->kh, k->kw};
    return dnnl_memory_desc_init_by_tag(md, 5, wd, dnnl_f32, user ? dnnl_hwigo : dnnl_format_tag_any);
}

/* the operation descriptor of op `type` on key k's shapes, the kernel's layout left to oneDNN */
static dnnl_status_t conv_desc(const dnnl_key *k, int type, dnnl_convolution_desc_t *cd) {
    dnnl_memory_desc_t x, w, b, y;
    dnnl_dims_t xd = {k->n, k->c, k->h, k->w};
    dnnl_dims_t yd = {k->n, k->oc, k->oh, k->ow}, bd = {k->oc};
    dnnl_dims_t st = {k->sh, k->sw}, dil = {k->dh - 1, k->dw - 1}, pl = {k->pt, k->pl};
    dnnl_dims_t pr = {pad_after(k->h, k->kh, k->oh, k->sh, k->dh, k->pt),
                      pad_after(k->w, k->kw, k->ow, k->sw, k->dw, k->pl)};
    dnnl_status_t s = dnnl_memory_desc_init_by_tag(&x, 4, xd, dnnl_f32, dnnl_nhwc);
    if (s == dnnl_success) s = kernel_md(k, false, &w);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&y, 4, yd, dnnl_f32, dnnl_nhwc);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&b, 1, bd, dnnl_f32, dnnl_x);
    if (s != dnnl_success) return s;
    switch (type) {
    case KILN_OP_CONV2D:
        return dnnl_dilated_convolution_forward_desc_init(cd, dnnl_forward_training, dnnl_convolution_direct,
                                                          &x, &w, k->bias ? &b : NULL, &y, st, dil, pl, pr);
    case KILN_OP_CONV2D_BACK_DATA:
        return dnnl_dilated_convolution_backward_data_desc_init(cd, dnnl_convolution_direct, &x, &w, &y,
                                                                st, dil, pl, pr);
    default:
        return dnnl_dilated_convolution_backward_weights_desc_init(cd, dnnl_convolution_direct, &x, &w,
                                                                   NULL, &y, st, dil, pl, pr);
    }
}

/* the primitive descriptor of key k (the backward ones hinted by a forward one) */
static dnnl_status_t conv_pd(kiln_cpu_dnnl *d, const dnnl_key *k, dnnl_primitive_desc_t *pd) {
    dnnl_convolution_desc_t cd, fd;
    dnnl_primitive_desc_t hint = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_status_t s = conv_desc(k, k->type, &cd);
    if (s == dnnl_success && k->type != KILN_OP_CONV2D) {
        s = conv_desc(k, KILN_OP_CONV2D, &fd);
        if (s == dnnl_success) s = dnnl_primitive_desc_create(&hint, &fd, NULL, d->engine, NULL);
    }
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(pd, &cd, attr, d->engine, hint);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (hint) dnnl_primitive_desc_destroy(hint);
    return s;
}

static dnnl_status_t memory_of(kiln_cpu_dnnl *d, const_dnnl_primitive_desc_t pd, dnnl_query_t q,
                               dnnl_memory_t *m) {
    return dnnl_memory_create(m, dnnl_primitive_desc_query_md(pd, q, 0), d->engine, DNNL_MEMORY_NONE);
}

/* the kernel reorder between Keras' hwio (hwigo) and the primitive's layout, if they differ */
static dnnl_status_t kernel_reorder(kiln_cpu_dnnl *d, dnnl_entry *e, const dnnl_memory_desc_t *prim) {
    dnnl_memory_desc_t user;
    dnnl_status_t s = kernel_md(&e->key, true, &user);
    if (s == dnnl_success) s = dnnl_memory_create(&e->user_kern, &user, d->engine, DNNL_MEMORY_NONE);
    e->kern_bytes = dnnl_memory_desc_get_size(prim);
    if (s != dnnl_success || dnnl_memory_desc_equal(&user, prim)) return s;
    bool to_user = e->key.type == KILN_OP_CONV2D_BACK_FILTER;
    dnnl_primitive_desc_t rpd;
    s = dnnl_reorder_primitive_desc_create(&rpd, to_user ? prim : &user, d->engine, to_user ? &user : prim,
                                           d->engine, NULL);
    if (s != dnnl_success) return s;
    s = dnnl_primitive_create(&e->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    return s;
}

/* the matmul of GEMM key k: A (m, k) and B (k, n) row-major or stored transposed */
static dnnl_status_t gemm_pd(kiln_cpu_dnnl *d, const dnnl_key *k, dnnl_primitive_desc_t *pd) {
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t ad = {k->m, k->gk}, bd = {k->gk, k->gn}, cd = {k->m, k->gn};
    dnnl_dims_t as = {k->ta ? 1 : k->gk, k->ta ? k->m : 1}, bs = {k->tb ? 1 : k->gn, k->tb ? k->gk : 1};
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_status_t s = dnnl_memory_desc_init_by_strides(&a, 2, ad, dnnl_f32, as);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_strides(&b, 2, bd, dnnl_f32, bs);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&c, 2, cd, dnnl_f32, dnnl_ab);
    if (s == dnnl_success) s = dnnl_matmul_desc_init(&md, &a, &b, NULL, &c);
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success && k->alpha != 1.0f) s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha);
    if (s == dnnl_success && k->beta != 0.0f) s = dnnl_post_ops_create(&po);
    if (s == dnnl_success && po) s = dnnl_post_ops_append_sum(po, k->beta);
    if (s == dnnl_success && po) s = dnnl_primitive_attr_set_post_ops(attr, po);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(pd, &md, attr, d->engine, NULL);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

/* a GEMM entry: img = A, kern = B, out = C */
static dnnl_status_t gemm_entry(kiln_cpu_dnnl *d, dnnl_entry *e, const_dnnl_primitive_desc_t pd) {
    dnnl_status_t s = dnnl_primitive_create(&e->conv, pd);
    if (s == dnnl_success) s = memory_of(d, pd, dnnl_query_src_md, &e->img);
    if (s == dnnl_success) s = memory_of(d, pd, dnnl_query_weights_md, &e->kern);
    if (s == dnnl_success) s = memory_of(d, pd, dnnl_query_dst_md, &e->out);
    if (s == dnnl_success) s = memory_of(d, pd, dnnl_query_scratchpad_md, &e->pad);
    if (s == dnnl_success)
        e->pad_bytes = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    return s;
}

/* a new entry for key k; NULL (and *st) when oneDNN refuses it */
static dnnl_entry *entry_new(kiln_cpu_dnnl *d, const dnnl_key *k, dnnl_status_t *st) {
    dnnl_entry *e = calloc(1, sizeof *e);
    dnnl_primitive_desc_t pd = NULL;
    bool gemm = k->type == KILN_OP_GEMM;
    dnnl_status_t s = !e ? dnnl_out_of_memory : gemm ? gemm_pd(d, k, &pd) : conv_pd(d, k, &pd);
    if (s != dnnl_success) goto out;
    e->key = *k;
    if (gemm) {
        s = gemm_entry(d, e, pd);
        goto out;
    }
    bool bwd_w = k->type == KILN_OP_CONV2D_BACK_FILTER, bwd_d = k->type == KILN_OP_CONV2D_BACK_DATA;
    dnnl_query_t qk = bwd_w ? dnnl_query_diff_weights_md : dnnl_query_weights_md;
    s = dnnl_primitive_create(&e->conv, pd);
    if (s == dnnl_success) s = memory_of(d, pd, bwd_d ? dnnl_query_diff_src_md : dnnl_query_src_md, &e->img);
    if (s == dnnl_success) s = memory_of(d, pd, qk, &e->kern);
    if (s == dnnl_success) s = memory_of(d, pd, k->type == KILN_OP_CONV2D ? dnnl_query_dst_md : dnnl_query_diff_dst_md, &e->out);
    if (s == dnnl_success && k->bias) /* the bias is the second weights argument */
        s = dnnl_memory_create(&e->bias, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1),
                               d->engine, DNNL_MEMORY_NONE);
    if (s == dnnl_success) s = memory_of(d, pd, dnnl_query_scratchpad_md, &e->pad);
    if (s == dnnl_success) {
        e->pad_bytes = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
        s = kernel_reorder(d, e, dnnl_primitive_desc_query_md(pd, qk, 0));
    }
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    *st = s;
    if (s == dnnl_success) return e;
    entry_free(e);
    return NULL;
}

/* the cached entry of k, made (and the least recently used one evicted) when missing */
static dnnl_entry *entry_get(kiln_cpu_dnnl *d, const dnnl_key *k, dnnl_status_t *st) {
    *st = dnnl_success;
    d->clock++;
    int lru = 0;
    for (int i = 0; i < d->n; i++) {
        if (!memcmp(&d->e[i]->key, k, sizeof *k)) {
            d->e[i]->used = d->clock;
            return d->e[i];
        }
        if (d->e[i]->used < d->e[lru]->used) lru = i;
    }
    dnnl_entry *e = entry_new(d, k, st);
    if (!e) return NULL;
    e->used = d->clock;
    if (d->n == KILN_DNNL_CACHE) entry_free(d->e[lru]);
    d->e[d->n == KILN_DNNL_CACHE ? lru : d->n++] = e;
    return e;
}

static dnnl_status_t exec(kiln_cpu_dnnl *d, dnnl_primitive_t p, int n, const dnnl_exec_arg_t *args) {
    dnnl_status_t s = dnnl_primitive_execute(p, d->stream, n, args);
    return s == dnnl_success ? dnnl_stream_wait(d->stream) : s;
}

/* runs entry e on the op's tensors: kernel reorder before (forward, backward data) or after
 * (backward filter) the convolution when the layouts differ */
static kiln_status run_entry(kiln_backend *be, kiln_cpu_dnnl *d, dnnl_entry *e, const kiln_op *op) {
    const kiln_conv2d_args *a = &op->conv;
    int t = e->key.type;
    void *pad, *kbuf = NULL;
    KILN_TRY(kiln_cpu_scratch(be, KILN_CPU_SCRATCH_DNNL, e->pad_bytes ? e->pad_bytes : 1, &pad));
    if (e->reorder) KILN_TRY(kiln_cpu_scratch(be, KILN_CPU_SCRATCH_WEIGHTS, e->kern_bytes, &kbuf));
    void *user_kern = t == KILN_OP_CONV2D_BACK_FILTER ? a->dw->data : a->w->data;
    void *img = t == KILN_OP_CONV2D_BACK_DATA ? a->dx->data : a->x->data;
    void *out = t == KILN_OP_CONV2D ? a->y->data : a->dy->data;
    dnnl_status_t s = dnnl_memory_set_data_handle(e->img, img);
    if (s == dnnl_success) s = dnnl_memory_set_data_handle(e->out, out);
    if (s == dnnl_success) s = dnnl_memory_set_data_handle(e->user_kern, user_kern);
    if (s == dnnl_success) s = dnnl_memory_set_data_handle(e->kern, e->reorder ? kbuf : user_kern);
    if (s == dnnl_success) s = dnnl_memory_set_data_handle(e->pad, pad);
    if (s == dnnl_success && e->bias) s = dnnl_memory_set_data_handle(e->bias, a->b->data);
    dnnl_exec_arg_t to_prim[] = {{DNNL_ARG_FROM, e->user_kern}, {DNNL_ARG_TO, e->kern}};
    dnnl_exec_arg_t to_user[] = {{DNNL_ARG_FROM, e->kern}, {DNNL_ARG_TO, e->user_kern}};
    if (s == dnnl_success && e->reorder && t != KILN_OP_CONV2D_BACK_FILTER) s = exec(d, e->reorder, 2, to_prim);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SCRATCHPAD, e->pad}};
    int n = 1;
    if (t == KILN_OP_CONV2D) {
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, e->img};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, e->kern};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, e->out};
        if (e->bias) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, e->bias};
    } else if (t == KILN_OP_CONV2D_BACK_DATA) {
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, e->img};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, e->kern};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, e->out};
    } else {
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, e->img};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_WEIGHTS, e->kern};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, e->out};
    }
    if (s == dnnl_success) s = exec(d, e->conv, n, args);
    if (s == dnnl_success && e->reorder && t == KILN_OP_CONV2D_BACK_FILTER) s = exec(d, e->reorder, 2, to_user);
    return s == dnnl_success ? KILN_OK : dnnl_fail(op, "execution", s);
}

/* the cached entry of key k, made when missing; NULL (nothing to report) when oneDNN declines */
static kiln_status entry_for(kiln_cpu_ctx *c, const kiln_op *op, const dnnl_key *k, dnnl_entry **e) {
    KILN_TRY(dnnl_open(c, op));
    dnnl_status_t s;
    *e = entry_get(c->dnnl, k, &s);
    if (!*e && s == dnnl_out_of_memory)
        return kiln_error(KILN_ERR_OOM, "kiln_%s: out of host memory making a oneDNN primitive",
                          kiln_op_name(op->type));
    return KILN_OK;
}

kiln_status kiln_cpu_dnnl_conv2d(kiln_backend *be, const kiln_op *op, bool *done) {
    kiln_cpu_ctx *c = be->ctx;
    *done = false;
    if (c->conv_impl == KILN_CPU_CONV_IM2COL) return KILN_OK;
    dnnl_key k = key_of(op);
    if (!k.n || !k.h || !k.w || !k.c || !k.oc || !k.oh || !k.ow) return KILN_OK; /* nothing to run */
    dnnl_entry *e;
    KILN_TRY(entry_for(c, op, &k, &e));
    if (!e) return KILN_OK; /* a shape oneDNN declines: im2col */
    KILN_TRY(run_entry(be, c->dnnl, e, op));
    *done = true;
    return KILN_OK;
}

kiln_status kiln_cpu_dnnl_gemm(kiln_backend *be, const kiln_op *op, bool *done) {
    kiln_cpu_ctx *c = be->ctx;
    const kiln_gemm_args *g = &op->gemm;
    *done = false;
    if (c->gemm_impl == KILN_CPU_GEMM_OPENBLAS) return KILN_OK;
    dnnl_key k;
    memset(&k, 0, sizeof k);
    k.type = (int)op->type, k.m = g->m, k.gn = g->n, k.gk = g->k, k.ta = g->trans_a, k.tb = g->trans_b;
    k.alpha = g->alpha, k.beta = g->beta;
    dnnl_entry *e;
    KILN_TRY(entry_for(c, op, &k, &e));
    if (!e) return KILN_OK;
    void *pad;
    KILN_TRY(kiln_cpu_scratch(be, KILN_CPU_SCRATCH_DNNL, e->pad_bytes ? e->pad_bytes : 1, &pad));
    dnnl_status_t s = dnnl_memory_set_data_handle(e->img, g->a->data);
    if (s == dnnl_success) s = dnnl_memory_set_data_handle(e->kern, g->b->data);
    if (s == dnnl_success) s = dnnl_memory_set_data_handle(e->out, g->c->data);
    if (s == dnnl_success) s = dnnl_memory_set_data_handle(e->pad, pad);
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, e->img}, {DNNL_ARG_WEIGHTS, e->kern}, {DNNL_ARG_DST, e->out},
                              {DNNL_ARG_SCRATCHPAD, e->pad}};
    if (s == dnnl_success) s = exec(c->dnnl, e->conv, 4, args);
    if (s != dnnl_success) return dnnl_fail(op, "execution", s);
    *done = true;
    return KILN_OK;
}
#endif
