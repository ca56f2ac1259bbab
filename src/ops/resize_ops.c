/* resize_ops.c: the front of the ops that move pixels without arithmetic on them
 * (include/kiln/nn.h): zero padding (and its inverse, the crop) and nearest upsampling with its
 * backward. Each checks its images once, with messages naming the op, the shapes and the
 * problem, fills a kiln_resize2d_args (op_args.h) and hands it to the tensors' backend. */
#include <stdio.h>

#include "error.h"
#include "kiln/nn.h"
#include "op_args.h"
#include "ops_check.h"

/* x and y: 4-D f32 images on one backend with the same batch and channels */
static kiln_status check_images(const char *fn, const char *xn, const kiln_tensor *x,
                                const char *yn, const kiln_tensor *y) {
    KILN_TRY(kiln_check_4d(fn, xn, x, "(N, H, W, C)"));
    KILN_TRY(kiln_check_4d(fn, yn, y, "(N, H, W, C)"));
    KILN_TRY(kiln_check_same_backend(fn, x, y));
    if (x->shape[0] != y->shape[0] || x->shape[3] != y->shape[3]) {
        char sx[96], sy[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: %s %s and %s %s differ in batch or channels", fn,
                          xn, kiln_shape_str(x, sx, sizeof sx), yn, kiln_shape_str(y, sy, sizeof sy));
    }
    return KILN_OK;
}

static kiln_status run(kiln_op_type type, const kiln_tensor *x, kiln_resize2d_args a) {
    if (kiln_tensor_numel(a.y) == 0) return KILN_OK;
    kiln_op op = kiln_op_on(type, x);
    op.resize = a;
    return kiln_op_run(&op);
}

kiln_status kiln_pad2d(const kiln_tensor *x, int top, int left, kiln_tensor *y) {
    const char *fn = "kiln_pad2d";
    KILN_TRY(check_images(fn, "x", x, "y", y));
    if (top < -(1 << 20) || top > (1 << 20) || left < -(1 << 20) || left > (1 << 20))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: top %d, left %d: want each in -2^20 .. 2^20",
                          fn, top, left);
    return run(KILN_OP_PAD2D, x, (kiln_resize2d_args){.x = x, .y = y, .top = top, .left = left});
}

/* big (N, H sh, W sw, C) is small (N, H, W, C) upsampled by sh x sw */
static kiln_status check_upsampled(const char *fn, const char *sn, const kiln_tensor *small,
                                   const char *bn, const kiln_tensor *big, int sh, int sw) {
    KILN_TRY(check_images(fn, sn, small, bn, big));
    if (sh < 1 || sh > (1 << 20) || sw < 1 || sw > (1 << 20))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: size %dx%d: want each in 1 .. 2^20", fn, sh, sw);
    if (big->shape[1] != small->shape[1] * sh || big->shape[2] != small->shape[2] * sw) {
        char ss[96], sb[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: %s %s is not %s %s upsampled %dx%d", fn, bn,
                          kiln_shape_str(big, sb, sizeof sb), sn, kiln_shape_str(small, ss, sizeof ss),
                          sh, sw);
    }
    return KILN_OK;
}

/* UPSAMPLE2D(_BACK) from src (x, or dy) to dst (y, or dx); small is the image not upsampled */
static kiln_status upsample(kiln_op_type type, const kiln_tensor *src, const kiln_tensor *small, kiln_tensor *dst,
                            int sh, int sw, bool bilinear) {
    kiln_resize2d_args a = {.x = src, .y = dst, .size_h = sh, .size_w = sw, .bilinear = bilinear};
    a.scale_h = (float)small->shape[1] / (float)(small->shape[1] * sh);
    a.scale_w = (float)small->shape[2] / (float)(small->shape[2] * sw);
    return run(type, src, a);
}

kiln_status kiln_upsample2d(const kiln_tensor *x, int size_h, int size_w, kiln_tensor *y) {
    KILN_TRY(check_upsampled("kiln_upsample2d", "x", x, "y", y, size_h, size_w));
    return upsample(KILN_OP_UPSAMPLE2D, x, x, y, size_h, size_w, false);
}

kiln_status kiln_upsample2d_backward(const kiln_tensor *dy, int size_h, int size_w, kiln_tensor *dx) {
    KILN_TRY(check_upsampled("kiln_upsample2d_backward", "dx", dx, "dy", dy, size_h, size_w));
    return upsample(KILN_OP_UPSAMPLE2D_BACK, dy, dx, dx, size_h, size_w, false);
}

kiln_status kiln_upsample2d_bilinear(const kiln_tensor *x, int size_h, int size_w, kiln_tensor *y) {
    KILN_TRY(check_upsampled("kiln_upsample2d_bilinear", "x", x, "y", y, size_h, size_w));
    return upsample(KILN_OP_UPSAMPLE2D, x, x, y, size_h, size_w, true);
}

kiln_status kiln_upsample2d_bilinear_backward(const kiln_tensor *dy, int size_h, int size_w, kiln_tensor *dx) {
    KILN_TRY(check_upsampled("kiln_upsample2d_bilinear_backward", "dx", dx, "dy", dy, size_h, size_w));
    return upsample(KILN_OP_UPSAMPLE2D_BACK, dy, dx, dx, size_h, size_w, true);
}
