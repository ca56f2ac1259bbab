/* kiln/nn.h: the tensor ops behind Keras-style layers: Conv2D, pooling, sigmoid/tanh, dropout.
 *
 * Layouts are Keras' channels_last:
 *   images   x, y, dx, dy  (N, H, W, C)
 *   kernels  w, dw         (kh, kw, in, out)   (Conv2D's kernel as Keras stores it)
 *   biases   b, db         (out)
 * Every op checks its arguments and returns a status whose message names the op, the shapes
 * and the problem (kiln_last_error). Outputs are overwritten, never accumulated into.
 * docs/layers_ops.md gives each op's formula and its Keras counterpart. */
#ifndef KILN_NN_H
#define KILN_NN_H

#include "kiln/api.h"

#include "kiln/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Keras' padding="valid" (no padding) and padding="same" (TensorFlow's rule: the output has
 * ceil(in / stride) positions; pad_total = max((out - 1) * stride + (k - 1) * dilation + 1 - in,
 * 0), pad_before = pad_total / 2, the odd one after: at the bottom / right). */
typedef enum kiln_padding { KILN_PADDING_VALID = 0, KILN_PADDING_SAME } kiln_padding;

/* ---- Conv2D ---- */

typedef struct kiln_conv2d_params {
    int stride_h, stride_w;     /* >= 1 (Keras strides) */
    int dilation_h, dilation_w; /* >= 1 (Keras dilation_rate) */
    kiln_padding padding;
    kiln_math math;             /* STRICT fp32 (default) or TF32 tensor cores (CUDA only) */
    /* Keras' groups: 0 or 1 for none. With g groups the kernel is (kh, kw, in / g, out), output
     * channel o reads the input channels of its group o / (out / g): in and out divisible by g.
     * DepthwiseConv2D is groups = in with its (kh, kw, in, m) kernel seen as (kh, kw, 1, in m). */
    int groups;
} kiln_conv2d_params;

/* Keras' Conv2D defaults: strides 1, dilation 1, padding "valid", strict fp32, no groups. */
#define KILN_CONV2D_DEFAULTS {1, 1, 1, 1, KILN_PADDING_VALID, KILN_MATH_STRICT, 1}

/* y_shape = (N, OH, OW, out) for x_shape (N, H, W, in) and w_shape (kh, kw, in / groups, out).
 * KILN_ERR_SHAPE when the channel counts differ or a valid window does not fit the input. */
KILN_API kiln_status kiln_conv2d_output_shape(const int64_t x_shape[4], const int64_t w_shape[4],
                                     const kiln_conv2d_params *p, int64_t y_shape[4]);

/* y (N, OH, OW, out) = conv(x (N, H, W, in), w (kh, kw, in, out)) + b (out); b may be NULL.
 * y[n,i,j,o] = b[o] + sum_{ky,kx,c} x[n, i*sh - pt + ky*dh, j*sw - pl + kx*dw, c] w[ky,kx,c,o]
 * (out-of-range x reads are zeros). This is cross-correlation, as in Keras. */
KILN_API kiln_status kiln_conv2d(const kiln_tensor *x, const kiln_tensor *w, const kiln_tensor *b,
                        const kiln_conv2d_params *p, kiln_tensor *y);
/* dx (N, H, W, in) = d(sum dy * y)/dx for dy (N, OH, OW, out) and w (kh, kw, in, out). */
KILN_API kiln_status kiln_conv2d_backward_data(const kiln_tensor *dy, const kiln_tensor *w,
                                      const kiln_conv2d_params *p, kiln_tensor *dx);
/* dw (kh, kw, in, out) = d(sum dy * y)/dw; db (out) = sum of dy over N, OH, OW (db may be
 * NULL when the layer has no bias). */
KILN_API kiln_status kiln_conv2d_backward_filter(const kiln_tensor *x, const kiln_tensor *dy,
                                        const kiln_conv2d_params *p, kiln_tensor *dw,
                                        kiln_tensor *db);

/* ---- pooling ---- */

typedef struct kiln_pool2d_params {
    int pool_h, pool_w;     /* >= 1 (Keras pool_size) */
    int stride_h, stride_w; /* >= 1, or 0 for the pool size (Keras strides=None) */
    kiln_padding padding;
} kiln_pool2d_params;

/* y_shape = (N, OH, OW, C) for x_shape (N, H, W, C). */
KILN_API kiln_status kiln_pool2d_output_shape(const int64_t x_shape[4], const kiln_pool2d_params *p,
                                     int64_t y_shape[4]);

/* MaxPooling2D: y (N, OH, OW, C) = max of each window's in-range elements. A NaN in a window
 * gives NaN. */
KILN_API kiln_status kiln_max_pool2d(const kiln_tensor *x, const kiln_pool2d_params *p, kiln_tensor *y);
/* dx (N, H, W, C): each window's dy goes to the first maximal element of the window (row-major
 * within the window), summed where windows overlap; the same rule on every backend. */
KILN_API kiln_status kiln_max_pool2d_backward(const kiln_tensor *x, const kiln_tensor *dy,
                                     const kiln_pool2d_params *p, kiln_tensor *dx);
/* AveragePooling2D: y = mean of each window's in-range elements (padding is not counted, as
 * in TensorFlow's "same"). */
KILN_API kiln_status kiln_avg_pool2d(const kiln_tensor *x, const kiln_pool2d_params *p, kiln_tensor *y);
/* dx (N, H, W, C) = sum over the windows holding an element of dy / (window's element count). */
KILN_API kiln_status kiln_avg_pool2d_backward(const kiln_tensor *dy, const kiln_pool2d_params *p,
                                     kiln_tensor *dx);
/* GlobalAveragePooling2D: y (N, C) = mean of x (N, H, W, C) over H and W. */
KILN_API kiln_status kiln_global_avg_pool2d(const kiln_tensor *x, kiln_tensor *y);
/* dx (N, H, W, C) = dy (N, C) / (H W). */
KILN_API kiln_status kiln_global_avg_pool2d_backward(const kiln_tensor *dy, kiln_tensor *dx);

/* ---- activations (any shape; y may alias x) ---- */

/* y = 1 / (1 + exp(-x)) */
KILN_API kiln_status kiln_sigmoid(const kiln_tensor *x, kiln_tensor *y);
/* dx = dy * y * (1 - y), from the forward's output y (as TensorFlow's SigmoidGrad). */
KILN_API kiln_status kiln_sigmoid_backward(const kiln_tensor *y, const kiln_tensor *dy, kiln_tensor *dx);
/* y = tanh(x) */
KILN_API kiln_status kiln_tanh(const kiln_tensor *x, kiln_tensor *y);
/* dx = dy * (1 - y * y), from the forward's output y. */
KILN_API kiln_status kiln_tanh_backward(const kiln_tensor *y, const kiln_tensor *dy, kiln_tensor *dx);

/* ---- dropout (inverted, as Keras' Dropout in training) ---- */

/* y = keep(seed, i) ? x * 1/(1 - rate) : 0 for element i (row-major), rate in [0, 1).
 * keep(seed, i) = u >= rate with u = the top 24 bits of a stateless 64-bit hash of (seed, i)
 * times 2^-24: the same mask on every backend, bit for bit, and no mask to keep: the backward
 * recomputes it from the seed. Use a new seed for every training step. */
KILN_API kiln_status kiln_dropout(const kiln_tensor *x, float rate, uint64_t seed, kiln_tensor *y);
/* dx = keep(seed, i) ? dy * 1/(1 - rate) : 0 (the seed and rate of the forward). */
KILN_API kiln_status kiln_dropout_backward(const kiln_tensor *dy, float rate, uint64_t seed,
                                  kiln_tensor *dx);

/* ---- Keras' other activations and elementwise layers (any shape; y may alias x) ----
 *
 * Each f below is computed in double from the f32 input and rounded once to f32 (dx likewise
 * from x and dy): kiln's reference values, within half an ulp of the exact result (up to the
 * rare tie that rounding through double can move). docs/layers_ops.md lists the formulas. */
typedef enum kiln_act_fn {
    KILN_FN_RELU = 0,     /* Keras' relu(x, negative_slope, max_value, threshold): the ReLU,
                           * LeakyReLU layers and the relu6 / leaky_relu activations */
    KILN_FN_ELU,          /* x > 0 ? x : alpha (e^x - 1) */
    KILN_FN_GELU,         /* 0.5 x (1 + erf(x / sqrt 2)) (Keras' gelu, approximate=False) */
    KILN_FN_GELU_TANH,    /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (approximate=True) */
    KILN_FN_SWISH,        /* x sigmoid(x) (Keras' silu, alias swish) */
    KILN_FN_HARD_SIGMOID, /* relu6(x + 3) / 6 (Keras 3) */
    KILN_FN_HARD_SWISH,   /* x hard_sigmoid(x) (Keras' hard_silu, alias hard_swish) */
    KILN_FN_AFFINE,       /* x scale + offset (Rescaling) */
    KILN_FN_COUNT
} kiln_act_fn;

typedef struct kiln_act_params {
    kiln_act_fn fn;
    /* RELU: x > threshold ? min(x, max_value) : -negative_slope (threshold - x); max_value
     * INFINITY for none; each >= 0 (as Keras' ReLU layer requires) */
    float negative_slope, max_value, threshold;
    float alpha;         /* ELU */
    float scale, offset; /* AFFINE */
} kiln_act_params;

/* Keras' relu() defaults: {KILN_FN_RELU, 0, INFINITY, 0} (a plain max(x, 0)). */
KILN_API kiln_act_params kiln_act_defaults(kiln_act_fn fn);
/* y = f(x) */
KILN_API kiln_status kiln_act(const kiln_act_params *p, const kiln_tensor *x, kiln_tensor *y);
/* dx = dy f'(x), from the forward's input x (at a kink: the right-hand side's slope, except
 * RELU at x == max_value, which takes 0, as TensorFlow's relu6 gradient) */
KILN_API kiln_status kiln_act_backward(const kiln_act_params *p, const kiln_tensor *x,
                                       const kiln_tensor *dy, kiln_tensor *dx);

/* Concatenate's data movement: x (rows, wx) into columns [offset, offset + wx) of y (rows, wy)
 * (a tensor of any shape is seen as rows of its last `wx` or `wy` elements), the rest of y
 * untouched; kiln_copy_columns_back takes the columns back out of y into x. */
KILN_API kiln_status kiln_copy_columns(const kiln_tensor *x, kiln_tensor *y, int64_t wx, int64_t wy,
                                       int64_t offset);
KILN_API kiln_status kiln_copy_columns_back(const kiln_tensor *y, kiln_tensor *x, int64_t wx,
                                            int64_t wy, int64_t offset);

/* Multiply's broadcast (squeeze-and-excitation): x (N, ..., C), g of N x C values (e.g.
 * (N, 1, 1, C)): y = x[n, ..., c] g[n, c], one f32 product (y may alias x). */
KILN_API kiln_status kiln_mul_channels(const kiln_tensor *x, const kiln_tensor *g, kiln_tensor *y);

/* SpatialDropout2D (training): x (N, H, W, C); a whole channel of an example is kept or
 * dropped: y = keep(seed, n C + c) ? x / (1 - rate) : 0 with kiln_dropout's hash. The backward
 * is the same op on dy. */
KILN_API kiln_status kiln_spatial_dropout2d(const kiln_tensor *x, float rate, uint64_t seed, kiln_tensor *y);
/* kiln_dropout (spatial false) or kiln_spatial_dropout2d (spatial true) on rows first_row ..
 * first_row + N - 1 of a larger batch: x's row k draws the mask that batch's row first_row + k
 * draws (a data-parallel rank's share draws what one process draws for those rows of the
 * global batch); first_row 0 is the plain op, bit for bit. The backward is the same call on dy. */
KILN_API kiln_status kiln_dropout_rows(const kiln_tensor *x, float rate, uint64_t seed, int64_t first_row, bool spatial,
                                       kiln_tensor *y);

/* Normalization (Keras' preprocessing layer, axis -1): y = (x - mean[c]) / max(sqrt(var[c]),
 * epsilon) over the last axis c, mean and var (C) f32; dx = dy / max(sqrt(var[c]), epsilon). */
KILN_API kiln_status kiln_normalize(const kiln_tensor *x, const kiln_tensor *mean, const kiln_tensor *var,
                                    float epsilon, kiln_tensor *y);
KILN_API kiln_status kiln_normalize_backward(const kiln_tensor *var, float epsilon, const kiln_tensor *dy,
                                             kiln_tensor *dx);
/* ---- zero padding, upsampling, global max pooling (ZeroPadding2D, UpSampling2D,
 * GlobalMaxPooling2D; docs/layers_ops.md) ---- */

/* y (N, OH, OW, C)[n, i, j, c] = x (N, H, W, C)[n, i - top, j - left, c], 0 where that is
 * outside x: a zero border of `top` rows and `left` columns before x (the rest after it follows
 * from y's shape); negative top / left crop instead, so the backward of a padding is the
 * padding with -top, -left from dy to dx. |top|, |left| <= 2^20. */
KILN_API kiln_status kiln_pad2d(const kiln_tensor *x, int top, int left, kiln_tensor *y);
/* UpSampling2D, nearest: y (N, H sh, W sw, C)[n, i, j, c] = x[n, i / sh, j / sw, c]. */
KILN_API kiln_status kiln_upsample2d(const kiln_tensor *x, int size_h, int size_w, kiln_tensor *y);
/* dx (N, H, W, C)[n, i, j, c] = the sum of dy over the sh x sw block of (i, j), row-major, in
 * f32 (the same order on every backend). */
KILN_API kiln_status kiln_upsample2d_backward(const kiln_tensor *dy, int size_h, int size_w,
                                              kiln_tensor *dx);
/* UpSampling2D, bilinear (TensorFlow's resize_bilinear with half-pixel centres, as Keras 3):
 * y (N, H sh, W sw, C) interpolates x between the two nearest rows and columns of each output's
 * source position (i + 0.5) / sh - 0.5 (clamped to the image). */
KILN_API kiln_status kiln_upsample2d_bilinear(const kiln_tensor *x, int size_h, int size_w, kiln_tensor *y);
/* dx (N, H, W, C) = the sum over the outputs reading each input of dy times its weights, in f32
 * in (row, column) order of the outputs (the same on every backend). */
KILN_API kiln_status kiln_upsample2d_bilinear_backward(const kiln_tensor *dy, int size_h, int size_w,
                                                       kiln_tensor *dx);
/* GlobalMaxPooling2D: y (N, C) or (N, 1, 1, C) = max of x (N, H, W, C) over H and W (NaN in, NaN
 * out): the max pooling of one H x W window. */
KILN_API kiln_status kiln_global_max_pool2d(const kiln_tensor *x, kiln_tensor *y);
/* dx (N, H, W, C): dy goes to the first maximal element of each (n, c) in (h, w) row-major
 * order (MaxPooling2D's rule; TensorFlow's reduce_max splits it among ties). */
KILN_API kiln_status kiln_global_max_pool2d_backward(const kiln_tensor *x, const kiln_tensor *dy,
                                                     kiln_tensor *dx);

#ifdef __cplusplus
}
#endif
#endif
