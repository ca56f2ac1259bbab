/* builtins.c: the built-in models.
 *   seed-cnn   the Sequential model of docs/training.md (Conv2D 32, BN, MaxPool, Flatten,
 *              Dense 64, BN, Dense softmax), for any h x w x c input
 *   resnet20   ResNet-20 v1 (He et al. 2016, CIFAR variant as in the Keras example): a 3x3
 *              conv of 16, three stages of three residual blocks (16, 32, 64 filters; the first
 *              block of stages 2 and 3 strides 2 with a 1x1 projection shortcut), global average
 *              pooling, Dense softmax. 'same' padding, Keras' default initializers. */
#include <string.h>

#include "error.h"
#include "model_impl.h"

static kiln_status add(kiln_model *m, kiln_layer_config l, int n_in, const int *in, int *id) {
    return kiln_model_add(m, &l, n_in, in, id);
}

static kiln_status seed_cnn(kiln_model *m, int classes) {
    KILN_TRY(add(m, kiln_conv2d_layer(32, 3, 3, KILN_ACT_RELU), 0, NULL, NULL));
    KILN_TRY(add(m, kiln_batchnorm_layer(), 0, NULL, NULL));
    KILN_TRY(add(m, kiln_max_pool2d_layer(2, 2), 0, NULL, NULL));
    KILN_TRY(add(m, kiln_flatten_layer(), 0, NULL, NULL));
    KILN_TRY(add(m, kiln_dense_layer(64, KILN_ACT_RELU), 0, NULL, NULL));
    KILN_TRY(add(m, kiln_batchnorm_layer(), 0, NULL, NULL));
    return add(m, kiln_dense_layer(classes, KILN_ACT_SOFTMAX), 0, NULL, NULL);
}

/* conv (same padding) -> BN -> optional relu; returns the last id */
static kiln_status conv_bn(kiln_model *m, int in, int filters, int k, int stride, bool relu, int *out) {
    kiln_layer_config c = kiln_conv2d_layer(filters, k, k, KILN_ACT_LINEAR);
    c.conv.padding = KILN_PADDING_SAME;
    c.conv.stride_h = c.conv.stride_w = stride;
    int id;
    KILN_TRY(add(m, c, 1, &in, &id));
    KILN_TRY(add(m, kiln_batchnorm_layer(), 1, &id, &id));
    if (relu) KILN_TRY(add(m, kiln_activation_layer(KILN_ACT_RELU), 1, &id, &id));
    *out = id;
    return KILN_OK;
}

static kiln_status resnet20(kiln_model *m, int classes) {
    int x = 0;
    KILN_TRY(conv_bn(m, x, 16, 3, 1, true, &x));
    for (int stage = 0; stage < 3; stage++) {
        int filters = 16 << stage;
        for (int block = 0; block < 3; block++) {
            int stride = stage > 0 && block == 0 ? 2 : 1, y, shortcut = x;
            KILN_TRY(conv_bn(m, x, filters, 3, stride, true, &y));
            KILN_TRY(conv_bn(m, y, filters, 3, 1, false, &y));
            if (stride != 1) { /* 1x1 projection to the new shape */
                kiln_layer_config p = kiln_conv2d_layer(filters, 1, 1, KILN_ACT_LINEAR);
                p.conv.stride_h = p.conv.stride_w = stride;
                p.conv.padding = KILN_PADDING_SAME;
                KILN_TRY(add(m, p, 1, &x, &shortcut));
            }
            int pair[2] = {y, shortcut};
            KILN_TRY(add(m, kiln_add_layer(), 2, pair, &x));
            KILN_TRY(add(m, kiln_activation_layer(KILN_ACT_RELU), 1, &x, &x));
        }
    }
    KILN_TRY(add(m, kiln_global_avg_pool2d_layer(), 1, &x, &x));
    return add(m, kiln_dense_layer(classes, KILN_ACT_SOFTMAX), 1, &x, NULL);
}

kiln_status kiln_model_builtin(const char *name, int h, int w, int c, int classes, kiln_model **out) {
    if (!name || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_builtin: NULL argument");
    *out = NULL;
    bool seed = !strcmp(name, "seed-cnn"), resnet = !strcmp(name, "resnet20");
    if (!seed && !resnet)
        return kiln_error(KILN_ERR_INVALID_ARG, "unknown built-in model '%s' (known: seed-cnn, resnet20)", name);
    if (h < 1 || w < 1 || c < 1 || classes < 2)
        return kiln_error(KILN_ERR_SHAPE, "model %s: input %dx%dx%d with %d classes is not usable", name, h, w, c, classes);
    kiln_model *m;
    KILN_TRY(kiln_model_new(seed ? "sequential" : "resnet20", &m));
    int64_t in[3] = {h, w, c};
    kiln_layer_config l = kiln_input_layer(3, in);
    kiln_status s = kiln_model_add(m, &l, 0, NULL, NULL);
    if (s == KILN_OK) s = seed ? seed_cnn(m, classes) : resnet20(m, classes);
    if (s != KILN_OK) {
        kiln_model_free(m);
        return s;
    }
    *out = m;
    return KILN_OK;
}
