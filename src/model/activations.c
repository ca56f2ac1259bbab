/* activations.c: the `activation` argument of Conv2D, Dense and Activation: Keras' names (and
 * aliases), and forward and backward mapped onto the ops (kiln_act for Keras' others). A softmax has no backward here
 * (KILN_ERR_UNSUPPORTED): the last layer's softmax feeding a cross-entropy loss never takes this
 * path, the loss fuses it (loss.c, docs/training.md), and fit refuses one elsewhere. */
#include <string.h>

#include "error.h"
#include "model_impl.h"

static const char *const act_names[KILN_ACT_COUNT] = {"linear", "relu", "softmax", "sigmoid", "tanh",
                                                      "relu6", "silu", "gelu", "elu", "hard_sigmoid",
                                                      "hard_silu", "leaky_relu"};
#define KNOWN_ACTS "linear, relu, softmax, sigmoid, tanh, relu6, silu (swish), gelu, elu, hard_sigmoid, " \
                   "hard_silu (hard_swish), leaky_relu"

/* Keras' other names for the same functions */
static const struct {
    const char *alias;
    kiln_activation a;
} aliases[] = {{"swish", KILN_ACT_SILU}, {"hard_swish", KILN_ACT_HARD_SILU}};

/* the kiln_act function (kiln/nn.h) of the activations that are one; fn = KILN_FN_COUNT otherwise */
static kiln_act_params act_params(kiln_activation a) {
    kiln_act_params p = kiln_act_defaults(KILN_FN_COUNT);
    switch (a) {
    case KILN_ACT_RELU6: p = kiln_act_defaults(KILN_FN_RELU); p.max_value = 6.0f; break;
    case KILN_ACT_SILU: p.fn = KILN_FN_SWISH; break;
    case KILN_ACT_GELU: p.fn = KILN_FN_GELU; break;
    case KILN_ACT_ELU: p.fn = KILN_FN_ELU; break;
    case KILN_ACT_HARD_SIGMOID: p.fn = KILN_FN_HARD_SIGMOID; break;
    case KILN_ACT_HARD_SILU: p.fn = KILN_FN_HARD_SWISH; break;
    case KILN_ACT_LEAKY_RELU: p = kiln_act_defaults(KILN_FN_RELU); p.negative_slope = 0.2f; break;
    default: break;
    }
    return p;
}

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
    for (size_t k = 0; k < sizeof aliases / sizeof aliases[0]; k++)
        if (name && !strcmp(name, aliases[k].alias)) {
            *out = aliases[k].a;
            return KILN_OK;
        }
    return kiln_error(KILN_ERR_UNSUPPORTED, "unknown activation '%s' (known: " KNOWN_ACTS ")", name ? name : "(null)");
}

kiln_status kiln_activation_forward(kiln_activation a, const kiln_tensor *z, kiln_tensor *y) {
    switch (a) {
    case KILN_ACT_LINEAR: return z == y ? KILN_OK : kiln_copy(z, y);
    case KILN_ACT_RELU: return kiln_relu(z, y);
    case KILN_ACT_SOFTMAX: return kiln_softmax(z, y);
    case KILN_ACT_SIGMOID: return kiln_sigmoid(z, y);
    case KILN_ACT_TANH: return kiln_tanh(z, y);
    default: break;
    }
    kiln_act_params p = act_params(a);
    if (p.fn == KILN_FN_COUNT) return kiln_error(KILN_ERR_UNSUPPORTED, "unknown activation %d", (int)a);
    return kiln_act(&p, z, y);
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
    default: break;
    }
    kiln_act_params p = act_params(a);
    if (p.fn == KILN_FN_COUNT) return kiln_error(KILN_ERR_UNSUPPORTED, "unknown activation %d", (int)a);
    return kiln_act_backward(&p, z, dy, dz);
}
