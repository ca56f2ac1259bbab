/* activation.c: the Activation layer: its input unchanged, then its `activation`, which the
 * graph applies as after Conv2D and Dense (src/model/activations.c). */
#include "layer.h"
#include "layer_json.h"

kiln_layer_config kiln_activation_layer(kiln_activation act) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_ACTIVATION);
    c.activation = act;
    return c;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    kiln_layer_same_shape(n, in[0]);
    return KILN_OK;
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    return kiln_json_activation(j, &c->activation);
}

static void write_json(const kiln_layer_config *c, cJSON *o) { kiln_json_add_activation(o, c->activation); }

const kiln_layer_desc kiln_layer_activation = {
    .keras_class = "Activation",
    .base_name = "activation",
    .has_activation = true,
    .passes_through = true,
    .infer = infer,
    .forward = kiln_layer_copy_forward,
    .backward = kiln_layer_copy_backward,
    .read_json = read_json,
    .write_json = write_json,
};
