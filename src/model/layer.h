/* layer.h: the layer descriptor, everything kiln knows about one layer type (internal).
 *
 * Each layer is one file in src/model/layers that defines its descriptor kiln_layer_<name>
 * (with its public kiln_*_layer() config function), registered by one line of KILN_LAYER_LIST
 * in kiln/model.h. The model (names, build), the graph, the plans, the summary and the Keras
 * JSON reader and writer know layers only through their descriptors. */
#ifndef KILN_LAYER_H
#define KILN_LAYER_H

#include <stddef.h>

#include "error.h"
#include "model_impl.h"

struct cJSON;
typedef struct kiln_json_layer kiln_json_layer; /* layer_json.h */

struct kiln_layer_desc {
    const char *keras_class; /* Keras' class_name: "Conv2D" */
    const char *base_name;   /* Keras' automatic names: conv2d, conv2d_1, ... */
    /* it applies cfg.activation after forward (the graph keeps z, before it, apart from y) */
    bool has_activation;
    /* per-channel tensors of n->aux_len values the layer keeps (BN's saved statistics) */
    int n_aux;
    /* backward always wants every dx (given scratch where the graph needs none) */
    bool needs_dx;
    /* forward and backward copy their one input unchanged (Activation): the graph reads z
     * straight from the input's y and writes the activation's gradient straight into dx */
    bool passes_through;
    /* each input's gradient is dz itself (Add): the graph hands dz on (graph.c: an input's dy
     * may be dz, plan.c), and backward is never called */
    bool grad_is_dz;

    /* shape inference: sets n->out_ndim/out_shape from the inputs and declares the weights
     * (kiln_layer_declare_weight: names, shapes, trainability, initializers) */
    kiln_status (*infer)(kiln_node *n, const kiln_node *const *in);
    /* z = layer(x...) for this batch (the activation, if any, is applied by the graph) */
    kiln_status (*forward)(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z,
                           bool training, uint64_t step_seed);
    /* from dz: weight gradients (when n->grads_needed) and dx[k] for each input k with
     * dx[k] != NULL */
    kiln_status (*backward)(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z,
                            const kiln_tensor *dz, kiln_tensor *const *dx, uint64_t step_seed);

    /* Keras JSON (model.to_json()): reads the layer's own config keys into c, which holds
     * Keras' defaults (in_rank: the rank of its first input without the batch axis); NULL when
     * it has none. Refuses, naming the option, what kiln cannot do exactly. */
    kiln_status (*read_json)(const kiln_json_layer *j, kiln_layer_config *c, int in_rank);
    /* writes its own config keys, after name, trainable and dtype; NULL when it has none */
    void (*write_json)(const kiln_layer_config *c, struct cJSON *o);
    /* the rank of its output without the batch axis for an input of rank in_rank, before
     * shapes are known (the JSON reader's checks); NULL: in_rank */
    int (*out_rank)(const kiln_layer_config *c, int in_rank);
    /* Keras' variables of the layer in the order Keras saves them (layers/<path>/vars/0, 1, ...
     * of a .weights.h5; keras_file.c), by kiln's weight names, NULL-terminated; names the layer
     * does not have (BatchNormalization's gamma with scale off) are skipped. NULL: its declared
     * weights in their order (Conv2D kernel, bias; BatchNormalization gamma, beta, moving_mean,
     * moving_variance), which is Keras' for every layer declaring them as Keras builds them. */
    const char *const *keras_vars;
};

/* layers/registry.c: the registered layers */
const kiln_layer_desc *kiln_layer_desc_of(kiln_layer_type t); /* NULL for no layer type */
/* the type whose Keras class is `cls`, or KILN_LAYER_TYPE_COUNT */
kiln_layer_type kiln_layer_type_of_class(const char *cls);
/* the Keras classes kiln reads, "InputLayer, Conv2D, ..." */
void kiln_layer_class_list(char *buf, size_t n);

/* layer.c: what layers share */
/* Keras' defaults in every field of a config of type t */
kiln_layer_config kiln_layer_defaults(kiln_layer_type t);
/* declares n's next weight "<name>" (infer), allocated and initialized by the build */
void kiln_layer_declare_weight(kiln_node *n, const char *name, int ndim, const int64_t *shape, bool trainable,
                               kiln_initializer init);
/* n's output is shaped like its input `in` */
void kiln_layer_same_shape(kiln_node *n, const kiln_node *in);
/* z = x[0] seen with z's shape, and back (Flatten, Activation: the graph applies the latter) */
kiln_status kiln_layer_copy_forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training,
                                    uint64_t step_seed);
kiln_status kiln_layer_copy_backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z,
                                     const kiln_tensor *dz, kiln_tensor *const *dx, uint64_t step_seed);
/* a dropout mask's seed: the layer's own seed, or the step's, mixed with its id (Dropout,
 * SpatialDropout2D) */
uint64_t kiln_layer_mask_seed(const kiln_node *n, uint64_t step_seed);
/* an output rank of 1 (Dense, Flatten, GlobalAveragePooling2D) */
int kiln_layer_rank_one(const kiln_layer_config *c, int in_rank);

#endif
