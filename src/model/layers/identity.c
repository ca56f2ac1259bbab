/* identity.c: Identity (keras.layers.Identity), the layer that passes its input through
 * unchanged: a copy forward, the gradient copied back. It has no weights and no config keys of
 * its own. (The worked example of docs/layers.md: this file and its KILN_LAYER_LIST line are all
 * it took.) */
#include "layer.h"

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    kiln_layer_same_shape(n, in[0]);
    return KILN_OK;
}

const kiln_layer_desc kiln_layer_identity = {
    .keras_class = "Identity",
    .base_name = "identity",
    .infer = infer,
    .forward = kiln_layer_copy_forward,
    .backward = kiln_layer_copy_backward,
};
