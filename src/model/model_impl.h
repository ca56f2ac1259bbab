/* model_impl.h: the model graph's internals (internal).
 *
 * A model is an array of nodes in insertion order, which is a topological order (a node's
 * inputs are earlier nodes). Each node is one layer: its config, its layer type's descriptor
 * (layer.h: one per layer type, in src/model/layers), its weights, and its activations.
 * Activations are allocated once for the largest batch used (node->buf) and seen through
 * per-batch-size "plans" of views, so a steady training loop, the partial last batch included,
 * allocates nothing. */
#ifndef KILN_MODEL_IMPL_H
#define KILN_MODEL_IMPL_H

#include "kiln/dist.h"
#include "kiln/model.h"
#include "name_index.h"
#include "rng.h"

#define KILN_MAX_WEIGHTS 4
#define KILN_MAX_AUX 2
#define KILN_MAX_PLANS 4

typedef struct kiln_node kiln_node;
typedef struct kiln_layer_desc kiln_layer_desc; /* layer.h */

/* a layer's default initializer of a weight: a constant, or glorot_uniform over its fans (a
 * config's own, kiln_init_spec, replaces it: kiln_layer_declare_weight) */
typedef struct kiln_initializer {
    kiln_init_kind kind;
    double value; /* KILN_INIT_CONSTANT */
} kiln_initializer;


/* the tensors of one node for one batch size (views into the node's buffers) */
typedef struct kiln_node_views {
    kiln_tensor *y, *z, *dy, *dz;
    kiln_tensor *scratch[KILN_LAYER_MAX_INPUTS]; /* shaped like y, over the model's scratch */
} kiln_node_views;

typedef struct kiln_plan {
    int batch;
    kiln_node_views *v; /* one per node */
    kiln_tensor *loss_rows, *labels, *y_dense; /* (batch), (batch) i32, (batch, outputs) */
    kiln_tensor *rows_tmp;                     /* (batch) */
    kiln_tensor *zero_labels;                  /* (batch) i32 zeros */
} kiln_plan;

struct kiln_node {
    kiln_layer_config cfg;
    const kiln_layer_desc *desc;
    int id;
    int n_in;
    int in[KILN_LAYER_MAX_INPUTS];
    int out_ndim; /* without the batch axis */
    int64_t out_shape[3];
    /* weights */
    int n_w;
    char w_name[KILN_MAX_WEIGHTS][KILN_NAME_MAX * 2];
    int w_ndim[KILN_MAX_WEIGHTS];
    int64_t w_shape[KILN_MAX_WEIGHTS][4];
    bool w_trainable[KILN_MAX_WEIGHTS]; /* by nature (false: BN's moving statistics) */
    kiln_init_spec w_init[KILN_MAX_WEIGHTS];
    kiln_regularizer w_reg[KILN_MAX_WEIGHTS]; /* kernel_regularizer, ... (none: 0, 0) */
    kiln_tensor *w[KILN_MAX_WEIGHTS];
    kiln_tensor *g[KILN_MAX_WEIGHTS];     /* gradients of the trainable ones */
    kiln_tensor *slot[KILN_MAX_WEIGHTS][3]; /* optimizer state (m, v, v_hat / velocity) */
    kiln_tensor *aux[KILN_MAX_AUX];       /* BN: save_mean, save_invstd */
    int64_t aux_len;
    /* activations for the largest batch planned */
    int buf_batch;
    kiln_tensor *y_buf, *z_buf, *dy_buf, *dz_buf;
    /* set before each backward pass */
    bool grads_needed;   /* its own weight gradients are wanted */
    bool upstream_trains; /* it, or something feeding it, has trainable weights */
    /* during a backward pass: dy holds a gradient already (later ones are added) */
    bool dy_written;
    /* BatchNormalization or Add -> ReLU run as one (fuse.c, set with the first plan): on the BN
     * or Add, the ReLU's id and its kiln_bn_relu rule; on the ReLU, the BN's id (0: not fused) */
    int fused_relu, fused_rule, fused_into;
    /* its dy is the dz of this consumer (0: its own), a layer that passes its gradient on
     * unchanged (grad_is_dz: Add) and reaches it first (fuse.c, alias_inputs) */
    int grad_alias;
    /* data-parallel training (kiln_model_set_comm): the communicator, and a layer's own state
     * for it (synchronized BatchNormalization), freed with ext_free */
    kiln_comm *comm;
    int64_t row0; /* this step's first row in the global batch (kiln_model_set_row0; Dropout's masks) */
    void *ext;
    void (*ext_free)(void *ext);
};

struct kiln_model {
    char name[KILN_NAME_MAX];
    kiln_node *nodes;
    int n_nodes, cap_nodes;
    kiln_name_index names;                    /* the layers by name (kiln_model_find_layer) */
    int type_count[KILN_LAYER_TYPE_COUNT];    /* layers of each type, for Keras' automatic names */
    int type_next[KILN_LAYER_TYPE_COUNT];     /* the next suffix worth trying for each type's name */
    int (*weight_at)[2];                      /* weight i is nodes[weight_at[i][0]].w[weight_at[i][1]] (built) */
    int n_weights;                            /* the length of weight_at */
    bool built, graph_form;
    bool shaped; /* every node's shapes and weight shapes inferred (kiln_model_infer), nothing allocated */
    kiln_backend *be;
    /* compile */
    bool compiled;
    kiln_compile_config compile;
    double base_lr;
    double label_smoothing; /* kiln_model_set_label_smoothing */
    int64_t iterations;
    uint64_t fit_seed; /* the seed of the last fit (shuffles, dropout), kept in full checkpoints */
    /* plans */
    kiln_plan plans[KILN_MAX_PLANS];
    int n_plans;
    kiln_tensor *scratch_buf[KILN_LAYER_MAX_INPUTS]; /* fan-in gradients, largest activation */
    kiln_tensor *clip_sumsq, *clip_scale;
    kiln_tensor *eval_loss, *eval_correct; /* 1-element sums for evaluate */
    kiln_tensor *reg_tmp[3], *reg_sum, *reg_total; /* regularize.c (made on first use) */
    /* the parameter group: every trainable weight with its gradient and optimizer slots,
     * gathered by kiln_model_sync_slots for one fused update call per step */
    int n_group;
    kiln_tensor **group_w, **group_g, **group_slot[3];
    kiln_comm *comm; /* kiln_model_set_comm: NULL or one rank: a plain process */
    /* called by kiln_model_backward after node `node`'s backward has written its weights'
     * gradients (fit's gradient buckets, src/train/dist_fit.c); NULL: nothing is called */
    kiln_status (*grads_ready)(void *ctx, int node);
    void *grads_ready_ctx;
};

/* dist_model.c: the next forward and backward run on rows row0 .. of the global batch (a
 * data-parallel rank's share; 0 in a plain process): Dropout and SpatialDropout2D draw the
 * masks one process draws for those rows */
void kiln_model_set_row0(kiln_model *m, int64_t row0);

/* node.c */
int64_t kiln_node_out_numel(const kiln_node *n); /* per example */
/* the node keeps z, its output before its activation, apart from y */
bool kiln_node_has_z(const kiln_node *n);
/* its z is its input's y (a layer that passes its input through, with an activation) */
bool kiln_node_z_is_input(const kiln_node *n);
/* the graph applies its fused ReLU's mask (fuse.c) into its dz: a layer that passes dz on
 * (grad_is_dz) has no backward to do it in */
bool kiln_node_graph_masks(const kiln_node *n);
/* its activation buffers for a batch: y and dy, dz when it keeps z, z unless z is its input */
int kiln_node_buffers(const kiln_node *n);
/* the most inputs a layer of m takes (at least 1): the plans' scratch buffers */
int kiln_model_max_inputs(const kiln_model *m);
bool kiln_node_trainable(const kiln_node *n, int w); /* by nature and not frozen */
int64_t kiln_node_weight_numel(const kiln_node *n, int w);
/* Keras' parameter counts of one layer: all its weights, and the trainable ones */
void kiln_node_param_counts(const kiln_node *n, int64_t *total, int64_t *trainable);
/* After the layer's shape inference: its output (per example) and each weight fit kiln's size
 * limit (core/checked.h) and so does their sum, the layer's parameter count (into *params);
 * KILN_ERR_SHAPE naming the output or the weight otherwise ("weight 'kernel' of 1152921504606846976
 * x 4 elements of 4 bytes overflows 64 bits"). */
kiln_status kiln_node_check_sizes(const kiln_node *n, int64_t *params);

/* model.c: records "<fn>: NULL argument" (m NULL) or "<fn>: no layer id <id>" and returns -1,
 * the safe value of the public accessors that return a count or an id */
int kiln_model_bad_arg(const char *fn, const kiln_model *m, int id);

/* ---- budget.c: the memory budget: the device bytes of a model's tensors, counted from the
 * same shapes and helpers (node.c) as the code that allocates them, and the check made before
 * allocating ---- */

/* the scalars kiln_model_build allocates besides the layers' tensors; the (batch)-long tensors
 * of one plan's loss (besides its targets) */
#define KILN_BUILD_SCALARS 4
#define KILN_LOSS_ROW_TENSORS 4

/* the optimizer slots per trainable weight (m, v, v_hat / velocity) */
int kiln_optimizer_slots(const kiln_optimizer_config *o);
/* the optimizer slots of the model as it is: -1 when not compiled (no gradients either) */
int kiln_model_slots_now(const kiln_model *m);
/* what kiln_model_build allocates: every weight, BN's saved statistics, the scalars */
double kiln_model_weight_bytes(const kiln_model *m);
/* the trainable weights' bytes: one gradient, or one optimizer slot, of each (sync_slots) */
double kiln_model_trainable_bytes(const kiln_model *m);
/* what a plan for `batch` examples allocates: the activations and their gradients, the
 * scratch, and one plan's loss tensors; 0 for batch 0 */
double kiln_plan_bytes(const kiln_model *m, int batch);

typedef struct kiln_model_bytes {
    double weights, gradients, optimizer, activations;
} kiln_model_bytes;
/* the bytes of a shaped model built, with gradients and `slots` optimizer slots per trainable
 * weight (slots < 0: neither) and activations for `batch` examples (0: none) */
kiln_model_bytes kiln_model_bytes_of(const kiln_model *m, int slots, int batch);
/* KILN_OK when taking m from what it holds now (built or not, kiln_model_slots_now, the batch
 * its buffers have) to (slots, batch) fits in what `be` can still give; else KILN_ERR_OOM:
 * "model 'M' needs X GiB at batch B (weights ..., ...), the device D has Y GiB" */
kiln_status kiln_model_budget(const kiln_model *m, kiln_backend *be, int slots, int batch);

/* plan.c: the plan for `batch` examples (made on first use; buffers grow as needed) */
kiln_status kiln_model_plan(kiln_model *m, int batch, kiln_plan **out);
void kiln_model_free_plans(kiln_model *m);

/* fuse.c: marks the BN -> ReLU and Add -> ReLU pairs run as one (unless KILN_FUSE=0 or the
 * backend lacks KILN_OP_BN_RELU, KILN_OP_ADD_RELU) and the gradients aliased to an Add's dz (grad_alias, unless KILN_FUSE=0);
 * plan.c calls it before a model's first plan */
void kiln_model_fuse(kiln_model *m);
/* dz = the gradient dy of node n's fused ReLU masked by the fused output y, by that ReLU's own
 * backward (kiln_relu_backward or kiln_act_backward; y > 0, +inf and NaN exactly where the ReLU's
 * input is, so the same bits): the graph's for an Add (kiln_node_graph_masks) */
kiln_status kiln_model_fused_relu_backward(const kiln_model *m, const kiln_node *n, const kiln_tensor *y,
                                           const kiln_tensor *dy, kiln_tensor *dz);

/* graph.c: forward over the graph; the output of the last node in plan->v[last].y. With
 * loss_follows, a last softmax that the loss fuses is left to kiln_model_loss (which writes the
 * probabilities into y), so it is not computed twice. */
kiln_status kiln_model_forward(kiln_model *m, kiln_plan *p, bool training, bool loss_follows, uint64_t step_seed);
/* backward over the graph from the last node's dz (kiln_model_loss) */
kiln_status kiln_model_backward(kiln_model *m, kiln_plan *p, uint64_t step_seed);

/* loss.c: loss rows and dz of the last node */
kiln_status kiln_model_loss(kiln_model *m, kiln_plan *p, bool need_grad);
/* true when the loss takes the last layer's logits (its softmax fused into the cross-entropy) */
bool kiln_model_fuses_softmax(const kiln_model *m);

/* The most optimizer steps a model counts (2^53: exact in a double, the learning-rate schedule's
 * and Adam's type); a checkpoint's kiln.iterations is refused above it, and a step at it fails. */
#define KILN_ITERATIONS_MAX ((int64_t)1 << 53)

/* reserved_names.c: "optimizer.<weight>.<slot>" names optimizer state in a full checkpoint
 * (checkpoint.c); a layer name kiln keeps for its checkpoints ("optimizer", "kiln" and names
 * under them) is refused, with a message naming the layer */
#define KILN_SLOT_PREFIX "optimizer"
kiln_status kiln_layer_name_check_reserved(const char *layer);

/* optimizer.c: one optimizer step over the trainable weights */
kiln_status kiln_model_apply_gradients(kiln_model *m);
/* drops optimizer state of frozen weights, makes it for trainable ones */
kiln_status kiln_model_sync_slots(kiln_model *m);

/* regularize.c: the regularization penalty of the trainable weights into a 1-element tensor
 * (*total: NULL when no weight has a regularizer), and with `grads` its gradient added to
 * theirs (after the backward pass) */
kiln_status kiln_model_regularize(kiln_model *m, bool grads, const kiln_tensor **total);

/* activations.c: the activation after a layer, forward and backward */
kiln_status kiln_activation_forward(kiln_activation a, const kiln_tensor *z, kiln_tensor *y);
kiln_status kiln_activation_backward(kiln_activation a, const kiln_tensor *z, const kiln_tensor *y,
                                     const kiln_tensor *dy, kiln_tensor *dz);

/* initializers.c: fills a weight with U(-limit, limit) drawn on the host (core/rng.h) */
kiln_status kiln_init_uniform(kiln_tensor *t, uint64_t seed, double limit);
/* fills node n's allocated weight w by its initializer; `seed` is the node's */
kiln_status kiln_init_weight(kiln_node *n, int w, uint64_t seed);

#endif
