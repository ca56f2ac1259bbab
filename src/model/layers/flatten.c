/* flatten.c: Flatten, (B, d1, d2, ...) -> (B, d1 * d2 * ...), row-major as Keras'
 * channels_last: a copy of the same values. */
#include "layer.h"
#include "layer_json.h"

kiln_layer_config kiln_flatten_layer(void) { return kiln_layer_defaults(KILN_LAYER_FLATTEN); }

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    n->out_ndim = 1;
    n->out_shape[0] = kiln_node_out_numel(in[0]);
    return KILN_OK;
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    return kiln_json_channels_last(j);
}

static void write_json(const kiln_layer_config *c, cJSON *o) { kiln_json_add_channels_last(o); }

const kiln_layer_desc kiln_layer_flatten = {
    .keras_class = "Flatten",
    .base_name = "flatten",
    .infer = infer,
    .forward = kiln_layer_copy_forward,
    .backward = kiln_layer_copy_backward,
    .read_json = read_json,
    .write_json = write_json,
    .out_rank = kiln_layer_rank_one,
};
