/* activations.c: the `activation` argument of Conv2D, Dense and Activation: Keras' names, and
 * forward and backward mapped onto the ops. A softmax has no backward here
 * (KILN_ERR_UNSUPPORTED): the last layer's softmax feeding a cross-entropy loss never takes this
 * path, the loss fuses it (loss.c, docs/training.md), and fit refuses one elsewhere. */
#include <string.h>

#include "error.h"
#include "model_impl.h"

static const char *const act_names[KILN_ACT_COUNT] = {"linear", "relu", "softmax", "sigmoid", "tanh"};

const char *kiln_activation_name(kiln_activation a) {
    if ((int)a >= 0 && a < KILN_ACT_COUNT) return act_names[a];
    kiln_error(KILN_ERR_INVALID_ARG, "kiln_activation_name: unknown activation %d", (int)a);
    return "?";
}

kiln_status kiln_activation_parse(const char *name, kiln_activation *out) {
    if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_activation_parse: out is NULL");
    for (int a = 0; a < KILN_ACT_COUNT; a++)
        if (name && !strcmp(name, act_names[a])) {
            *out = (kiln_activation)a;
            return KILN_OK;
        }
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "unknown activation '%s' (known: linear, relu, softmax, sigmoid, tanh)",
                      name ? name : "(null)");
}

kiln_status kiln_activation_forward(kiln_activation a, const kiln_tensor *z, kiln_tensor *y) {
    switch (a) {
    case KILN_ACT_LINEAR: return z == y ? KILN_OK : kiln_copy(z, y);
    case KILN_ACT_RELU: return kiln_relu(z, y);
    case KILN_ACT_SOFTMAX: return kiln_softmax(z, y);
    case KILN_ACT_SIGMOID: return kiln_sigmoid(z, y);
    case KILN_ACT_TANH: return kiln_tanh(z, y);
    default: return kiln_error(KILN_ERR_UNSUPPORTED, "unknown activation %d", (int)a);
    }
}

kiln_status kiln_activation_backward(kiln_activation a, const kiln_tensor *z, const kiln_tensor *y,
                                     const kiln_tensor *dy, kiln_tensor *dz) {
    switch (a) {
    case KILN_ACT_LINEAR: return dy == dz ? KILN_OK : kiln_copy(dy, dz);
    case KILN_ACT_RELU: return kiln_relu_backward(z, dy, dz);
    case KILN_ACT_SIGMOID: return kiln_sigmoid_backward(y, dy, dz);
    case KILN_ACT_TANH: return kiln_tanh_backward(y, dy, dz);
    case KILN_ACT_SOFTMAX:
        return kiln_error(KILN_ERR_UNSUPPORTED,
                          "softmax backward outside a cross-entropy loss is not supported: "
                          "put softmax on the last layer with a cross-entropy loss");
    default: return kiln_error(KILN_ERR_UNSUPPORTED, "unknown activation %d", (int)a);
    }
}
