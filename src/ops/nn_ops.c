/* nn_ops.c: the device-independent front of the layer ops (include/kiln/nn.h): Conv2D,
 * pooling, sigmoid/tanh and dropout. Each checks its arguments once, with messages that name
 * the op, the shapes and the problem, computes the window geometry (padding), fills its
 * family's arguments in a kiln_op (op_args.h) and hands it to the tensors' backend. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "checked.h"
#include "error.h"
#include "kiln/nn.h"
#include "op_args.h"
#include "ops_check.h"

/* ---- window geometry, shared by convolution and pooling ---- */

/* Output positions and padding before the first element along one axis of `in` elements,
 * window k, stride s, dilation d. "same" follows TensorFlow: out = ceil(in / s), pad_total =
 * max((out - 1) s + (k - 1) d + 1 - in, 0), pad_before = pad_total / 2. */
static kiln_status window_axis(const char *fn, const char *axis, int64_t in, int k, int s, int d,
                               kiln_padding pad, int64_t *out, int *pad_before) {
    int64_t eff = (int64_t)(k - 1) * d + 1;
    if (in < 1 || in > INT32_MAX) /* the tensors' limit (check_4d), so no sum below overflows */
        return kiln_error(KILN_ERR_SHAPE, "%s: the input's %s is %lld, want 1 .. 2^31 - 1", fn, axis,
                          (long long)in);
    if (pad == KILN_PADDING_SAME) {
        *out = (in + s - 1) / s;
        int64_t total = (*out - 1) * s + eff - in;
        *pad_before = (int)(total > 0 ? total / 2 : 0);
        return KILN_OK;
    }
    if (in < eff)
        return kiln_error(KILN_ERR_SHAPE,
                          "%s: with padding \"valid\" the window's %s of %lld (size %d, dilation "
                          "%d) does not fit the input's %lld",
                          fn, axis, (long long)eff, k, d, (long long)in);
    *out = (in - eff) / s + 1;
    *pad_before = 0;
    return KILN_OK;
}

static kiln_status check_padding(const char *fn, kiln_padding pad) {
    if (pad != KILN_PADDING_VALID && pad != KILN_PADDING_SAME)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: unknown padding %d (valid or same)", fn,
                          (int)pad);
    return KILN_OK;
}

/* a positive int parameter no larger than 2^20 (a window or step past that is a mistake) */
static kiln_status check_param(const char *fn, const char *name, int v) {
    if (v < 1 || v > (1 << 20))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s is %d, want 1 .. 2^20", fn, name, v);
    return KILN_OK;
}

kiln_status kiln_check_4d(const char *fn, const char *arg, const kiln_tensor *t,
                            const char *layout) {
    KILN_TRY(kiln_check_f32(fn, arg, t));
    if (t->ndim != 4) {
        char s[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: %s %s must be 4-D %s", fn, arg,
                          kiln_shape_str(t, s, sizeof s), layout);
    }
    for (int i = 0; i < 4; i++)
        if (t->shape[i] > INT32_MAX)
            return kiln_error(KILN_ERR_SHAPE, "%s: %s has a dimension past 2^31", fn, arg);
    return KILN_OK;
}

static kiln_status check_shape_is(const char *fn, const char *arg, const kiln_tensor *t,
                                  const int64_t want[4]) {
    for (int i = 0; i < 4; i++)
        if (t->shape[i] != want[i]) {
            char s[96];
            return kiln_error(KILN_ERR_SHAPE, "%s: %s is %s, want (%lld, %lld, %lld, %lld)", fn,
                              arg, kiln_shape_str(t, s, sizeof s), (long long)want[0],
                              (long long)want[1], (long long)want[2], (long long)want[3]);
        }
    return KILN_OK;
}

/* ---- Conv2D ---- */

typedef struct conv_geom {
    int64_t y[4];
    int pad_top, pad_left;
} conv_geom;

static kiln_status conv_geometry(const char *fn, const int64_t xs[4], const int64_t ws[4],
                                 const kiln_conv2d_params *p, conv_geom *g) {
    if (!p) return kiln_error(KILN_ERR_INVALID_ARG, "%s: params is NULL", fn);
    KILN_TRY(check_param(fn, "stride_h", p->stride_h));
    KILN_TRY(check_param(fn, "stride_w", p->stride_w));
    KILN_TRY(check_param(fn, "dilation_h", p->dilation_h));
    KILN_TRY(check_param(fn, "dilation_w", p->dilation_w));
    KILN_TRY(check_padding(fn, p->padding));
    if (p->math != KILN_MATH_STRICT && p->math != KILN_MATH_TF32)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: unknown math mode %d", fn, (int)p->math);
    int groups = p->groups ? p->groups : 1;
    KILN_TRY(check_param(fn, "groups", groups));
    for (int i = 0; i < 4; i++)
        if (ws[i] < 1 || ws[i] > (1 << 20))
            return kiln_error(KILN_ERR_SHAPE,
                              "%s: kernel (%lld, %lld, %lld, %lld) (kh, kw, in, out) needs every "
                              "dimension in 1 .. 2^20",
                              fn, (long long)ws[0], (long long)ws[1], (long long)ws[2],
                              (long long)ws[3]);
    if (xs[3] != ws[2] * groups)
        return kiln_error(KILN_ERR_SHAPE,
                          "%s: x (%lld, %lld, %lld, %lld) has %lld channels, the kernel "
                          "(%lld, %lld, %lld, %lld) (kh, kw, in / groups, out) with %d groups "
                          "takes %lld",
                          fn, (long long)xs[0], (long long)xs[1], (long long)xs[2],
                          (long long)xs[3], (long long)xs[3], (long long)ws[0], (long long)ws[1],
                          (long long)ws[2], (long long)ws[3], groups, (long long)ws[2] * groups);
    if (ws[3] % groups)
        return kiln_error(KILN_ERR_SHAPE,
                          "%s: the kernel's %lld output channels do not split into %d groups", fn,
                          (long long)ws[3], groups);
    g->y[0] = xs[0];
    g->y[3] = ws[3];
    KILN_TRY(window_axis(fn, "height", xs[1], (int)ws[0], p->stride_h, p->dilation_h, p->padding,
                         &g->y[1], &g->pad_top));
    KILN_TRY(window_axis(fn, "width", xs[2], (int)ws[1], p->stride_w, p->dilation_w, p->padding,
                         &g->y[2], &g->pad_left));
    return KILN_OK;
}

kiln_status kiln_conv2d_output_shape(const int64_t x_shape[4], const int64_t w_shape[4],
                                     const kiln_conv2d_params *p, int64_t y_shape[4]) {
    const char *fn = "kiln_conv2d_output_shape";
    if (!x_shape || !w_shape || !y_shape)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: NULL shape", fn);
    conv_geom g;
    KILN_TRY(conv_geometry(fn, x_shape, w_shape, p, &g));
    memcpy(y_shape, g.y, sizeof g.y);
    return KILN_OK;
}

/* Checks x (image), w (kernel) and y (output image) of one conv op; fills the geometry of its
 * arguments `a` (the bottom/right padding follows from the shapes). */
static kiln_status conv_check(const char *fn, const char *xn, const kiln_tensor *x,
                              const char *wn, const kiln_tensor *w, const char *yn,
                              const kiln_tensor *y, const kiln_conv2d_params *p,
                              kiln_conv2d_args *a) {
    KILN_TRY(kiln_check_4d(fn, xn, x, "(N, H, W, C)"));
    KILN_TRY(kiln_check_4d(fn, wn, w, "(kh, kw, in, out)"));
    KILN_TRY(kiln_check_4d(fn, yn, y, "(N, OH, OW, out)"));
    KILN_TRY(kiln_check_same_backend(fn, x, w));
    KILN_TRY(kiln_check_same_backend(fn, x, y));
    conv_geom g;
    KILN_TRY(conv_geometry(fn, x->shape, w->shape, p, &g));
    KILN_TRY(check_shape_is(fn, yn, y, g.y));
    a->groups = p->groups ? p->groups : 1;
    a->stride_h = p->stride_h;
    a->stride_w = p->stride_w;
    a->dilation_h = p->dilation_h;
    a->dilation_w = p->dilation_w;
    a->pad_top = g.pad_top;
    a->pad_left = g.pad_left;
    a->math = p->math;
    return KILN_OK;
}

static kiln_status check_bias(const char *fn, const char *arg, const kiln_tensor *b,
                              const kiln_tensor *x, int64_t c) {
    KILN_TRY(kiln_check_f32(fn, arg, b));
    KILN_TRY(kiln_check_same_backend(fn, x, b));
    if (kiln_tensor_numel(b) != c || b->ndim != 1) {
        char s[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: %s %s must be (%lld,), one per output channel", fn,
                          arg, kiln_shape_str(b, s, sizeof s), (long long)c);
    }
    return KILN_OK;
}

kiln_status kiln_conv2d(const kiln_tensor *x, const kiln_tensor *w, const kiln_tensor *b,
                        const kiln_conv2d_params *p, kiln_tensor *y) {
    const char *fn = "kiln_conv2d";
    kiln_conv2d_args a = {.x = x, .w = w, .b = b, .y = y};
    KILN_TRY(conv_check(fn, "x", x, "w", w, "y", y, p, &a));
    if (b) KILN_TRY(check_bias(fn, "b", b, x, w->shape[3]));
    if (kiln_tensor_numel(y) == 0) return KILN_OK;
    kiln_op op = kiln_op_on(KILN_OP_CONV2D, x);
    op.conv = a;
    return kiln_op_run(&op);
}

kiln_status kiln_conv2d_backward_data(const kiln_tensor *dy, const kiln_tensor *w,
                                      const kiln_conv2d_params *p, kiln_tensor *dx) {
    const char *fn = "kiln_conv2d_backward_data";
    kiln_conv2d_args a = {.dy = dy, .w = w, .dx = dx};
    KILN_TRY(conv_check(fn, "dx", dx, "w", w, "dy", dy, p, &a));
    if (kiln_tensor_numel(dx) == 0) return KILN_OK;
    kiln_op op = kiln_op_on(KILN_OP_CONV2D_BACK_DATA, dy);
    op.conv = a;
    return kiln_op_run(&op);
}

/* db may be NULL */
kiln_status kiln_conv2d_backward_filter(const kiln_tensor *x, const kiln_tensor *dy,
                                        const kiln_conv2d_params *p, kiln_tensor *dw,
                                        kiln_tensor *db) {
    const char *fn = "kiln_conv2d_backward_filter";
    kiln_conv2d_args a = {.x = x, .dy = dy, .dw = dw, .db = db};
    KILN_TRY(conv_check(fn, "x", x, "dw", dw, "dy", dy, p, &a));
    if (db) KILN_TRY(check_bias(fn, "db", db, x, dw->shape[3]));
    if (x->shape[0] == 0) { /* an empty batch: the gradients are zero */
        KILN_TRY(kiln_fill(dw, 0.0));
        return db ? kiln_fill(db, 0.0) : KILN_OK;
    }
    kiln_op op = kiln_op_on(KILN_OP_CONV2D_BACK_FILTER, x);
    op.conv = a;
    return kiln_op_run(&op);
}

/* ---- pooling ---- */

typedef struct pool_geom {
    int64_t y[4];
    int stride_h, stride_w, pad_top, pad_left;
} pool_geom;

static kiln_status pool_geometry(const char *fn, const int64_t xs[4], const kiln_pool2d_params *p,
                                 pool_geom *g) {
    if (!p) return kiln_error(KILN_ERR_INVALID_ARG, "%s: params is NULL", fn);
    KILN_TRY(check_param(fn, "pool_h", p->pool_h));
    KILN_TRY(check_param(fn, "pool_w", p->pool_w));
    g->stride_h = p->stride_h ? p->stride_h : p->pool_h;
    g->stride_w = p->stride_w ? p->stride_w : p->pool_w;
    KILN_TRY(check_param(fn, "stride_h", g->stride_h));
    KILN_TRY(check_param(fn, "stride_w", g->stride_w));
    KILN_TRY(check_padding(fn, p->padding));
    g->y[0] = xs[0];
    g->y[3] = xs[3];
    KILN_TRY(window_axis(fn, "height", xs[1], p->pool_h, g->stride_h, 1, p->padding, &g->y[1],
                         &g->pad_top));
    KILN_TRY(window_axis(fn, "width", xs[2], p->pool_w, g->stride_w, 1, p->padding, &g->y[2],
                         &g->pad_left));
    return KILN_OK;
}

kiln_status kiln_pool2d_output_shape(const int64_t x_shape[4], const kiln_pool2d_params *p,
                                     int64_t y_shape[4]) {
    const char *fn = "kiln_pool2d_output_shape";
    if (!x_shape || !y_shape) return kiln_error(KILN_ERR_INVALID_ARG, "%s: NULL shape", fn);
    pool_geom g;
    KILN_TRY(pool_geometry(fn, x_shape, p, &g));
    memcpy(y_shape, g.y, sizeof g.y);
    return KILN_OK;
}

/* Checks the image `img` (x, or dx) and the pooled image `out` (y, or dy) of one pooling op,
 * fills the window of its arguments `a` (tensors filled) and runs it. */
static kiln_status pool_op(kiln_op_type type, const char *fn, const char *imgn,
                           const kiln_tensor *img, const char *outn, const kiln_tensor *out,
                           const kiln_pool2d_params *p, kiln_pool2d_args *a) {
    KILN_TRY(kiln_check_4d(fn, imgn, img, "(N, H, W, C)"));
    KILN_TRY(kiln_check_4d(fn, outn, out, "(N, OH, OW, C)"));
    KILN_TRY(kiln_check_same_backend(fn, img, out));
    pool_geom g;
    KILN_TRY(pool_geometry(fn, img->shape, p, &g));
    KILN_TRY(check_shape_is(fn, outn, out, g.y));
    a->win = (kiln_pool_geom){.pool_h = p->pool_h, .pool_w = p->pool_w, .stride_h = g.stride_h,
                              .stride_w = g.stride_w, .pad_top = g.pad_top, .pad_left = g.pad_left};
    if (kiln_tensor_numel(img) == 0) return KILN_OK;
    kiln_op op = kiln_op_on(type, a->x ? a->x : a->dy); /* the first input */
    op.pool = *a;
    return kiln_op_run(&op);
}

kiln_status kiln_max_pool2d(const kiln_tensor *x, const kiln_pool2d_params *p, kiln_tensor *y) {
    kiln_pool2d_args a = {.x = x, .y = y};
    return pool_op(KILN_OP_MAX_POOL2D, "kiln_max_pool2d", "x", x, "y", y, p, &a);
}

kiln_status kiln_avg_pool2d(const kiln_tensor *x, const kiln_pool2d_params *p, kiln_tensor *y) {
    kiln_pool2d_args a = {.x = x, .y = y};
    return pool_op(KILN_OP_AVG_POOL2D, "kiln_avg_pool2d", "x", x, "y", y, p, &a);
}

kiln_status kiln_max_pool2d_backward(const kiln_tensor *x, const kiln_tensor *dy,
                                     const kiln_pool2d_params *p, kiln_tensor *dx) {
    const char *fn = "kiln_max_pool2d_backward";
    KILN_TRY(kiln_check_4d(fn, "dx", dx, "(N, H, W, C)"));
    KILN_TRY(kiln_check_4d(fn, "x", x, "(N, H, W, C)"));
    KILN_TRY(kiln_check_same_shape(fn, "x", x, "dx", dx));
    kiln_pool2d_args a = {.x = x, .dy = dy, .dx = dx};
    return pool_op(KILN_OP_MAX_POOL2D_BACK, fn, "dx", dx, "dy", dy, p, &a);
}

kiln_status kiln_avg_pool2d_backward(const kiln_tensor *dy, const kiln_pool2d_params *p,
                                     kiln_tensor *dx) {
    kiln_pool2d_args a = {.dy = dy, .dx = dx};
    return pool_op(KILN_OP_AVG_POOL2D_BACK, "kiln_avg_pool2d_backward", "dx", dx, "dy", dy, p,
                   &a);
}

/* y (N, C) or (N, 1, 1, C) for x (N, H, W, C) */
static kiln_status check_pooled(const char *fn, const char *xn, const kiln_tensor *x,
                                const char *yn, const kiln_tensor *y) {
    KILN_TRY(kiln_check_4d(fn, xn, x, "(N, H, W, C)"));
    KILN_TRY(kiln_check_f32(fn, yn, y));
    KILN_TRY(kiln_check_same_backend(fn, x, y));
    bool flat = y->ndim == 2 && y->shape[0] == x->shape[0] && y->shape[1] == x->shape[3];
    bool kept = y->ndim == 4 && y->shape[0] == x->shape[0] && y->shape[1] == 1 &&
                y->shape[2] == 1 && y->shape[3] == x->shape[3];
    if (!flat && !kept) {
        char sx[96], sy[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: %s %s must be (%lld, %lld) or (%lld, 1, 1, %lld) for %s %s",
                          fn, yn, kiln_shape_str(y, sy, sizeof sy), (long long)x->shape[0],
                          (long long)x->shape[3], (long long)x->shape[0], (long long)x->shape[3],
                          xn, kiln_shape_str(x, sx, sizeof sx));
    }
    if (x->shape[1] < 1 || x->shape[2] < 1) {
        char sx[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: %s %s has no pixels to pool", fn, xn,
                          kiln_shape_str(x, sx, sizeof sx));
    }
    return KILN_OK;
}

/* y (N, C) from x (N, H, W, C) */
kiln_status kiln_global_avg_pool2d(const kiln_tensor *x, kiln_tensor *y) {
    KILN_TRY(check_pooled("kiln_global_avg_pool2d", "x", x, "y", y));
    kiln_op op = kiln_op_on(KILN_OP_GLOBAL_AVG_POOL2D, x);
    op.pool = (kiln_pool2d_args){.x = x, .y = y};
    return kiln_tensor_numel(x) == 0 ? KILN_OK : kiln_op_run(&op);
}

/* dx (N, H, W, C) from dy (N, C) */
kiln_status kiln_global_avg_pool2d_backward(const kiln_tensor *dy, kiln_tensor *dx) {
    KILN_TRY(check_pooled("kiln_global_avg_pool2d_backward", "dx", dx, "dy", dy));
    kiln_op op = kiln_op_on(KILN_OP_GLOBAL_AVG_POOL2D_BACK, dy);
    op.pool = (kiln_pool2d_args){.dy = dy, .dx = dx};
    return kiln_tensor_numel(dx) == 0 ? KILN_OK : kiln_op_run(&op);
}

/* y (N, C) or (N, 1, 1, C) from x (N, H, W, C): one max-pooling window over the image */
static kiln_status global_max(kiln_op_type type, const kiln_tensor *x, const kiln_tensor *dy,
                              kiln_tensor *y, kiln_tensor *dx) {
    kiln_pool2d_args a = {.x = x, .dy = dy, .y = y, .dx = dx};
    a.win = (kiln_pool_geom){.pool_h = (int)x->shape[1], .pool_w = (int)x->shape[2],
                             .stride_h = (int)x->shape[1], .stride_w = (int)x->shape[2]};
    kiln_tensor img = *(y ? y : (kiln_tensor *)dy); /* (N, 1, 1, C), the pooled image */
    const int64_t s[4] = {x->shape[0], 1, 1, x->shape[3]};
    KILN_TRY(kiln_tensor_reshape(&img, 4, s));
    if (y) a.y = &img;
    else a.dy = &img;
    kiln_op op = kiln_op_on(type, x);
    op.pool = a;
    return kiln_tensor_numel(x) == 0 ? KILN_OK : kiln_op_run(&op);
}

kiln_status kiln_global_max_pool2d(const kiln_tensor *x, kiln_tensor *y) {
    KILN_TRY(check_pooled("kiln_global_max_pool2d", "x", x, "y", y));
    return global_max(KILN_OP_MAX_POOL2D, x, NULL, y, NULL);
}

kiln_status kiln_global_max_pool2d_backward(const kiln_tensor *x, const kiln_tensor *dy,
                                            kiln_tensor *dx) {
    const char *fn = "kiln_global_max_pool2d_backward";
    KILN_TRY(check_pooled(fn, "dx", dx, "dy", dy));
    KILN_TRY(kiln_check_f32(fn, "x", x));
    KILN_TRY(kiln_check_same_shape(fn, "x", x, "dx", dx));
    return global_max(KILN_OP_MAX_POOL2D_BACK, x, dy, NULL, dx);
}

/* ---- activations ---- */

/* SIGMOID, TANH */
static kiln_status activation(kiln_op_type type, const char *fn, const kiln_tensor *x,
                              kiln_tensor *y) {
    KILN_TRY(kiln_check_f32(fn, "x", x));
    KILN_TRY(kiln_check_f32(fn, "y", y));
    KILN_TRY(kiln_check_same_shape(fn, "x", x, "y", y));
    kiln_op op = kiln_op_on(type, x);
    op.unary = (kiln_unary_args){.x = x, .y = y};
    return kiln_tensor_numel(x) == 0 ? KILN_OK : kiln_op_run(&op);
}

/* SIGMOID_BACK, TANH_BACK: y is the forward's output */
static kiln_status activation_back(kiln_op_type type, const char *fn, const kiln_tensor *y,
                                   const kiln_tensor *dy, kiln_tensor *dx) {
    KILN_TRY(kiln_check_f32(fn, "y", y));
    KILN_TRY(kiln_check_f32(fn, "dy", dy));
    KILN_TRY(kiln_check_f32(fn, "dx", dx));
    KILN_TRY(kiln_check_same_shape(fn, "y", y, "dy", dy));
    KILN_TRY(kiln_check_same_shape(fn, "y", y, "dx", dx));
    kiln_op op = kiln_op_on(type, y);
    op.unary_back = (kiln_unary_back_args){.y = y, .dy = dy, .dx = dx};
    return kiln_tensor_numel(y) == 0 ? KILN_OK : kiln_op_run(&op);
}

kiln_status kiln_sigmoid(const kiln_tensor *x, kiln_tensor *y) {
    return activation(KILN_OP_SIGMOID, "kiln_sigmoid", x, y);
}
kiln_status kiln_sigmoid_backward(const kiln_tensor *y, const kiln_tensor *dy, kiln_tensor *dx) {
    return activation_back(KILN_OP_SIGMOID_BACK, "kiln_sigmoid_backward", y, dy, dx);
}
kiln_status kiln_tanh(const kiln_tensor *x, kiln_tensor *y) {
    return activation(KILN_OP_TANH, "kiln_tanh", x, y);
}
kiln_status kiln_tanh_backward(const kiln_tensor *y, const kiln_tensor *dy, kiln_tensor *dx) {
    return activation_back(KILN_OP_TANH_BACK, "kiln_tanh_backward", y, dy, dx);
}

/* ---- dropout ---- */

/* the draw index of x's first element when x's rows are rows first_row .. of a larger batch */
static kiln_status dropout_offset(const char *fn, const kiln_tensor *x, bool spatial, int64_t first_row, int64_t *out) {
    int64_t per_row = 0, last = 0;
    if (x->ndim >= 1 && x->shape[0] > 0) per_row = spatial ? x->shape[3] : kiln_tensor_numel(x) / x->shape[0];
    if (first_row < 0 || x->ndim < 1 || !kiln_mul_i64(first_row, per_row, out) ||
        !kiln_add_i64(*out, spatial ? x->shape[0] * per_row : kiln_tensor_numel(x), &last))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: first row %lld of a batch is out of range for x of %d dimensions "
                          "(%lld draws a row)", fn, (long long)first_row, x->ndim, (long long)per_row);
    return KILN_OK;
}

/* DROPOUT on x (or dy), giving y (or dx) */
static kiln_status dropout(const char *fn, const char *xn, const kiln_tensor *x, float rate,
                           uint64_t seed, const char *yn, kiln_tensor *y, bool spatial, int64_t first_row) {
    KILN_TRY(kiln_check_f32(fn, xn, x));
    KILN_TRY(kiln_check_f32(fn, yn, y));
    KILN_TRY(kiln_check_same_shape(fn, xn, x, yn, y));
    if (!(rate >= 0.0f && rate < 1.0f))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: rate %g is outside [0, 1)", fn, (double)rate);
    /* Keras: 1 / (1 - rate) in Python floats (double), then the tensor's f32 */
    kiln_op op = kiln_op_on(KILN_OP_DROPOUT, x);
    op.dropout = (kiln_dropout_args){.x = x, .y = y, .rate = rate,
                                     .scale = (float)(1.0 / (1.0 - (double)rate)), .seed = seed};
    if (spatial) { /* one draw per (example, channel) of an (N, H, W, C) x */
        op.dropout.channels = x->shape[3];
        op.dropout.per_example = x->shape[1] * x->shape[2] * x->shape[3];
    }
    if (kiln_tensor_numel(x) == 0) return KILN_OK;
    if (first_row) KILN_TRY(dropout_offset(fn, x, spatial, first_row, &op.dropout.offset));
    return kiln_op_run(&op);
}

kiln_status kiln_dropout(const kiln_tensor *x, float rate, uint64_t seed, kiln_tensor *y) {
    return dropout("kiln_dropout", "x", x, rate, seed, "y", y, false, 0);
}

kiln_status kiln_dropout_backward(const kiln_tensor *dy, float rate, uint64_t seed,
                                  kiln_tensor *dx) {
    return dropout("kiln_dropout_backward", "dy", dy, rate, seed, "dx", dx, false, 0);
}

kiln_status kiln_dropout_rows(const kiln_tensor *x, float rate, uint64_t seed, int64_t first_row, bool spatial,
                              kiln_tensor *y) {
    const char *fn = "kiln_dropout_rows";
    if (spatial) KILN_TRY(kiln_check_4d(fn, "x", x, "(N, H, W, C)"));
    return dropout(fn, "x", x, rate, seed, "y", y, spatial, first_row);
}

/* ---- Keras' other activations, Concatenate's columns, SpatialDropout2D, Normalization ---- */

kiln_act_params kiln_act_defaults(kiln_act_fn fn) {
    kiln_act_params p = {fn, 0.0f, INFINITY, 0.0f, 1.0f, 1.0f, 0.0f};
    return p;
}

static kiln_status check_act_params(const char *fn, const kiln_act_params *p) {
    if (!p) return kiln_error(KILN_ERR_INVALID_ARG, "%s: params is NULL", fn);
    if ((int)p->fn < 0 || p->fn >= KILN_FN_COUNT)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: unknown function %d", fn, (int)p->fn);
    if (p->fn == KILN_FN_RELU && !(p->negative_slope >= 0.0f && p->max_value >= 0.0f && p->threshold >= 0.0f &&
                                   isfinite(p->negative_slope) && isfinite(p->threshold)))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: relu needs negative_slope, max_value and threshold >= 0 "
                          "(are %g, %g, %g)", fn, (double)p->negative_slope, (double)p->max_value,
                          (double)p->threshold);
    if ((p->fn == KILN_FN_ELU && !isfinite(p->alpha)) ||
        (p->fn == KILN_FN_AFFINE && !(isfinite(p->scale) && isfinite(p->offset))))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: a parameter is not finite", fn);
    return KILN_OK;
}

kiln_status kiln_act(const kiln_act_params *p, const kiln_tensor *x, kiln_tensor *y) {
    const char *fn = "kiln_act";
    KILN_TRY(check_act_params(fn, p));
    KILN_TRY(kiln_check_f32(fn, "x", x));
    KILN_TRY(kiln_check_f32(fn, "y", y));
    KILN_TRY(kiln_check_same_shape(fn, "x", x, "y", y));
    kiln_op op = kiln_op_on(KILN_OP_ACT, x);
    op.act = (kiln_act_args){.x = x, .y = y, .p = *p};
    return kiln_tensor_numel(x) == 0 ? KILN_OK : kiln_op_run(&op);
}

kiln_status kiln_act_backward(const kiln_act_params *p, const kiln_tensor *x, const kiln_tensor *dy,
                              kiln_tensor *dx) {
    const char *fn = "kiln_act_backward";
    KILN_TRY(check_act_params(fn, p));
    KILN_TRY(kiln_check_f32(fn, "x", x));
    KILN_TRY(kiln_check_f32(fn, "dy", dy));
    KILN_TRY(kiln_check_f32(fn, "dx", dx));
    KILN_TRY(kiln_check_same_shape(fn, "x", x, "dy", dy));
    KILN_TRY(kiln_check_same_shape(fn, "x", x, "dx", dx));
    kiln_op op = kiln_op_on(KILN_OP_ACT_BACK, x);
    op.act = (kiln_act_args){.x = x, .dy = dy, .dx = dx, .p = *p};
    return kiln_tensor_numel(x) == 0 ? KILN_OK : kiln_op_run(&op);
}

/* COPY_COLUMNS: `narrow` has rows of wx, `wide` rows of wy, the same number of rows */
static kiln_status columns(const char *fn, const kiln_tensor *src, kiln_tensor *dst, bool back, int64_t wx,
                           int64_t wy, int64_t offset) {
    const kiln_tensor *narrow = back ? dst : src, *wide = back ? src : dst;
    KILN_TRY(kiln_check_f32(fn, "x", narrow));
    KILN_TRY(kiln_check_f32(fn, "y", wide));
    KILN_TRY(kiln_check_same_backend(fn, narrow, wide));
    int64_t nx = kiln_tensor_numel(narrow), ny = kiln_tensor_numel(wide);
    if (wx < 1 || wy < 1 || offset < 0 || offset > wy - wx || nx % wx || ny % wy || nx / wx != ny / wy)
        return kiln_error(KILN_ERR_SHAPE, "%s: x of %lld elements in rows of %lld does not fit columns %lld .. "
                          "%lld of y of %lld elements in rows of %lld", fn, (long long)nx, (long long)wx,
                          (long long)offset, (long long)(offset + wx), (long long)ny, (long long)wy);
    if (nx == 0) return KILN_OK;
    kiln_op op = kiln_op_on(KILN_OP_COPY_COLUMNS, src);
    op.columns = (kiln_columns_args){src, dst, nx / wx, wx, wy, offset, back};
    return kiln_op_run(&op);
}

kiln_status kiln_copy_columns(const kiln_tensor *x, kiln_tensor *y, int64_t wx, int64_t wy, int64_t offset) {
    return columns("kiln_copy_columns", x, y, false, wx, wy, offset);
}

kiln_status kiln_copy_columns_back(const kiln_tensor *y, kiln_tensor *x, int64_t wx, int64_t wy, int64_t offset) {
    return columns("kiln_copy_columns_back", y, x, true, wx, wy, offset);
}

kiln_status kiln_spatial_dropout2d(const kiln_tensor *x, float rate, uint64_t seed, kiln_tensor *y) {
    const char *fn = "kiln_spatial_dropout2d";
    KILN_TRY(kiln_check_4d(fn, "x", x, "(N, H, W, C)"));
    return dropout(fn, "x", x, rate, seed, "y", y, true, 0);
}

static kiln_status check_channels(const char *fn, const char *arg, const kiln_tensor *v, const kiln_tensor *x) {
    KILN_TRY(kiln_check_f32(fn, arg, v));
    KILN_TRY(kiln_check_same_backend(fn, v, x));
    if (x->ndim < 1 || v->ndim != 1 || v->shape[0] != x->shape[x->ndim - 1]) {
        char sv[96], sx[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: %s %s must hold one value per channel of %s (the last axis)", fn,
                          arg, kiln_shape_str(v, sv, sizeof sv), kiln_shape_str(x, sx, sizeof sx));
    }
    return KILN_OK;
}

/* ACT (mean given) or ACT_BACK of Normalization */
static kiln_status normalize(const char *fn, const kiln_tensor *x, const kiln_tensor *mean, const kiln_tensor *var,
                             float epsilon, kiln_tensor *y, const kiln_tensor *dy) {
    const kiln_tensor *in = x ? x : dy;
    KILN_TRY(kiln_check_f32(fn, x ? "x" : "dy", in));
    KILN_TRY(kiln_check_f32(fn, x ? "y" : "dx", y));
    KILN_TRY(kiln_check_same_shape(fn, x ? "x" : "dy", in, x ? "y" : "dx", y));
    if (mean) KILN_TRY(check_channels(fn, "mean", mean, in));
    KILN_TRY(check_channels(fn, "var", var, in));
    if (!(epsilon >= 0.0f && isfinite(epsilon)))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: epsilon %g must be finite and >= 0", fn, (double)epsilon);
    kiln_op op = kiln_op_on(x ? KILN_OP_ACT : KILN_OP_ACT_BACK, in);
    op.act = (kiln_act_args){.x = x, .dy = dy, .mean = mean, .var = var, .p = kiln_act_defaults(KILN_FN_AFFINE),
                             .channels = var->shape[0], .epsilon = epsilon};
    if (x) op.act.y = y;
    else op.act.dx = y;
    return kiln_tensor_numel(in) == 0 ? KILN_OK : kiln_op_run(&op);
}

kiln_status kiln_normalize(const kiln_tensor *x, const kiln_tensor *mean, const kiln_tensor *var, float epsilon,
                           kiln_tensor *y) {
    if (!x || !mean) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_normalize: NULL argument");
    return normalize("kiln_normalize", x, mean, var, epsilon, y, NULL);
}

kiln_status kiln_normalize_backward(const kiln_tensor *var, float epsilon, const kiln_tensor *dy, kiln_tensor *dx) {
    if (!dy) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_normalize_backward: NULL argument");
    return normalize("kiln_normalize_backward", NULL, NULL, var, epsilon, dx, dy);
}

kiln_status kiln_mul_channels(const kiln_tensor *x, const kiln_tensor *g, kiln_tensor *y) {
    const char *fn = "kiln_mul_channels";
    KILN_TRY(kiln_check_f32(fn, "x", x));
    KILN_TRY(kiln_check_f32(fn, "g", g));
    KILN_TRY(kiln_check_f32(fn, "y", y));
    KILN_TRY(kiln_check_same_shape(fn, "x", x, "y", y));
    KILN_TRY(kiln_check_same_backend(fn, x, g));
    int64_t c = x->ndim >= 2 ? x->shape[x->ndim - 1] : 0;
    if (x->ndim < 2 || kiln_tensor_numel(g) != x->shape[0] * c || (g->ndim >= 1 && g->shape[0] != x->shape[0])) {
        char sx[96], sg[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: g %s must hold one value per example and channel of x %s", fn,
                          kiln_shape_str(g, sg, sizeof sg), kiln_shape_str(x, sx, sizeof sx));
    }
    kiln_op op = kiln_op_on(KILN_OP_ACT, x);
    op.act = (kiln_act_args){.x = x, .y = y, .p = kiln_act_defaults(KILN_FN_AFFINE), .channels = c, .gate = g,
                             .per_example = x->shape[0] ? kiln_tensor_numel(x) / x->shape[0] : 0};
    return kiln_tensor_numel(x) == 0 ? KILN_OK : kiln_op_run(&op);
}
