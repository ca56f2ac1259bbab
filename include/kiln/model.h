/* kiln/model.h: Keras-style models: layers, Sequential and graph (DAG) models, summary,
 * freezing, compile (fit, evaluate and predict: kiln/fit.h).
 *
 * A model is built by appending layers; each takes the outputs of earlier layers (by id), or,
 * when no input is named, the previous layer's (Sequential). kiln_model_build infers every
 * shape, allocates the weights on a backend and initializes them (Keras' initializers).
 * Weights are named "<layer>.<weight>" with Keras' layer and weight names and layouts
 * (conv2d.kernel (kh, kw, in, out), dense.kernel (in, out), batch_normalization.gamma, ...).
 * docs/layers.md and docs/training.md tell the rest. */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include "kiln/api.h"

#include <stdio.h>

#include "kiln/batchnorm.h"
#include "kiln/nn.h"
#include "kiln/optim_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every layer kiln has, in the order of kiln_layer_type. X(ID, name) makes KILN_LAYER_<ID> and
 * registers the layer's descriptor kiln_layer_<name>, which its file in src/model/layers defines
 * (docs/layers.md: adding a layer is that file and one line here). */
#define KILN_LAYER_LIST(X)                     \
    X(INPUT, input)                            \
    X(CONV2D, conv2d)                          \
    X(DENSE, dense)                            \
    X(BATCHNORM, batchnorm)                    \
    X(MAX_POOL2D, max_pool2d)                  \
    X(AVG_POOL2D, avg_pool2d)                  \
    X(GLOBAL_AVG_POOL2D, global_avg_pool2d)    \
    X(FLATTEN, flatten)                        \
    X(DROPOUT, dropout)                        \
    X(ACTIVATION, activation)                  \
    X(ADD, add)                                \
    X(IDENTITY, identity)                      \
    X(RELU, relu)                              \
    X(LEAKY_RELU, leaky_relu)                  \
    X(ELU, elu)                                \
    X(RESCALING, rescaling)                    \
    X(RESHAPE, reshape)                        \
    X(CONCATENATE, concatenate)                \
    X(MULTIPLY, multiply)                      \
    X(SPATIAL_DROPOUT2D, spatial_dropout2d)    \
    X(NORMALIZATION, normalization)            \
    X(ZERO_PADDING2D, zero_padding2d)          \
    X(DEPTHWISE_CONV2D, depthwise_conv2d)      \
    X(SEPARABLE_CONV2D, separable_conv2d)      \
    X(UPSAMPLING2D, upsampling2d)              \
    X(CONV2D_TRANSPOSE, conv2d_transpose)      \
    X(GLOBAL_MAX_POOL2D, global_max_pool2d)    \
    /* a new layer: one line above this one */

#define KILN_LAYER_ENUM_(id, name) KILN_LAYER_##id,
typedef enum kiln_layer_type {
    KILN_LAYER_LIST(KILN_LAYER_ENUM_) /* KILN_LAYER_INPUT = 0, KILN_LAYER_CONV2D, ... */
    KILN_LAYER_TYPE_COUNT
} kiln_layer_type;
#undef KILN_LAYER_ENUM_

typedef enum kiln_activation {
    KILN_ACT_LINEAR = 0,
    KILN_ACT_RELU,
    KILN_ACT_SOFTMAX,
    KILN_ACT_SIGMOID,
    KILN_ACT_TANH,
    KILN_ACT_RELU6,        /* min(max(x, 0), 6) */
    KILN_ACT_SILU,         /* "silu" (Keras' name; "swish" reads as it): x sigmoid(x) */
    KILN_ACT_GELU,         /* approximate=False, Keras' default */
    KILN_ACT_ELU,          /* alpha 1 */
    KILN_ACT_HARD_SIGMOID, /* relu6(x + 3) / 6 */
    KILN_ACT_HARD_SILU,    /* "hard_silu" ("hard_swish" reads as it): x hard_sigmoid(x) */
    KILN_ACT_LEAKY_RELU,   /* negative_slope 0.2 (keras.activations.leaky_relu's default) */
    KILN_ACT_COUNT
} kiln_activation;

#define KILN_LAYER_MAX_INPUTS 4
/* The most layers a model may have (kiln_model_add, and the Keras JSON reader, which says so
 * before reading any layer); model building is linear in the number of layers. */
#define KILN_MODEL_MAX_LAYERS 100000

/* Keras' initializers: how a weight starts (docs/training.md, Initializers). The variance-
 * scaling family (glorot, he, lecun: normal, uniform) draws with stddev sqrt(scale / fan) (its
 * truncated normal divided by 0.87962566103423978 and cut at 2 stddev) or U(-l, l), l =
 * sqrt(3 scale / fan), fans as Keras counts them. Draws come from kiln's own generator: the
 * model's seed, or the initializer's own `seed` (the same values for every weight of a shape,
 * as a seeded Keras initializer gives). */
typedef enum kiln_init_kind {
    KILN_INIT_CONSTANT = 0,     /* value (zeros, ones, constant) */
    KILN_INIT_GLOROT_UNIFORM,   /* Keras' default kernel initializer */
    KILN_INIT_VARIANCE_SCALING, /* scale, mode, distribution */
    KILN_INIT_RANDOM_NORMAL,    /* mean (a), stddev (b) */
    KILN_INIT_RANDOM_UNIFORM,   /* minval (a), maxval (b) */
    KILN_INIT_TRUNCATED_NORMAL, /* mean (a), stddev (b), redrawn outside mean +- 2 stddev */
    KILN_INIT_ORTHOGONAL,       /* gain (scale): Keras' Orthogonal, a weight of 2 or more axes */
    KILN_INIT_KIND_COUNT
} kiln_init_kind;
typedef enum kiln_fan_mode { KILN_FAN_IN = 0, KILN_FAN_OUT, KILN_FAN_AVG } kiln_fan_mode;
typedef enum kiln_init_distribution {
    KILN_DIST_TRUNCATED_NORMAL = 0,
    KILN_DIST_UNTRUNCATED_NORMAL,
    KILN_DIST_UNIFORM
} kiln_init_distribution;
typedef struct kiln_init_spec {
    kiln_init_kind kind;
    double value;       /* CONSTANT */
    double a, b, scale; /* see the kinds */
    kiln_fan_mode mode;
    kiln_init_distribution distribution;
    bool seeded;        /* false: drawn from the model's seed */
    uint64_t seed;
    char keras_class[24]; /* the Keras class written back ("HeNormal"); "" for the kind's own */
} kiln_init_spec;

/* Keras' kernel/bias regularizers: l1 * sum |w| + l2 * sum w^2 added to the loss (L1, L2,
 * L1L2; 0 and 0: none) */
typedef struct kiln_regularizer {
    double l1, l2;
} kiln_regularizer;

/* The initializer or regularizer a layer's config gives one of its weights, by Keras' key
 * prefix: "kernel" (kernel_initializer), "bias", "gamma", "beta", "moving_mean",
 * "moving_variance"; a prefix P also names the weight "P_kernel" ("depthwise"). */
#define KILN_LAYER_WEIGHT_OPTIONS 4
typedef struct kiln_weight_options {
    char weight[24];  /* "" : an unused entry */
    bool has_init;    /* false: the layer's default initializer */
    kiln_init_spec init;
    kiln_regularizer reg;
} kiln_weight_options;

/* One layer's configuration, Keras' arguments. Start from a kiln_*_layer() function below
 * (Keras' defaults) and change fields as needed. */
typedef struct kiln_layer_config {
    kiln_layer_type type;
    char name[KILN_NAME_MAX];   /* "" for Keras' automatic name (conv2d, conv2d_1, ...) */
    bool trainable;             /* false: frozen (BatchNormalization then runs in inference mode) */
    kiln_activation activation; /* Conv2D, Dense, Activation */
    int units;                  /* Dense */
    int filters, kernel_h, kernel_w; /* Conv2D */
    bool use_bias;              /* Conv2D, Dense */
    kiln_conv2d_params conv;    /* Conv2D: strides, dilation, padding, math */
    kiln_pool2d_params pool;    /* MaxPooling2D, AveragePooling2D */
    kiln_bn_params bn;          /* BatchNormalization */
    float rate;                 /* Dropout */
    uint64_t seed;              /* Dropout: 0 for the model's seed */
    int input_ndim;             /* Input: the shape without the batch axis, e.g. (32, 32, 3) */
    int64_t input_shape[3];
    /* initializers and regularizers of its weights (kiln_layer_set_initializer) */
    kiln_weight_options weight_opts[KILN_LAYER_WEIGHT_OPTIONS];
    kiln_act_params act;        /* ReLU (max_value, negative_slope, threshold), LeakyReLU
                                 * (negative_slope), ELU (alpha), Rescaling (scale, offset) */
    int axis;                   /* Concatenate: Keras' axis (-1: the last; 0 is the batch) */
    int target_ndim;            /* Reshape: target_shape without the batch, one size may be -1 */
    int64_t target_shape[3];
    unsigned input_free;        /* Input: bit d set: axis d is None in Keras (unknown until
                                 * kiln_model_set_input_shape gives it) */
    /* Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose use filters, kernel_h/w,
     * use_bias, conv (Conv2D: conv.groups) and activation */
    int depth_multiplier;       /* DepthwiseConv2D, SeparableConv2D (1) */
    int pad_top, pad_bottom, pad_left, pad_right; /* ZeroPadding2D (1 each) */
    int size_h, size_w;         /* UpSampling2D (2, 2) */
    bool bilinear;              /* UpSampling2D: interpolation "bilinear" (false: "nearest") */
    bool keepdims;              /* GlobalMaxPooling2D: (batch, 1, 1, C) instead of (batch, C) */
} kiln_layer_config;

/* Keras' initializer of a name ("he_normal", "HeNormal", "zeros", ...; the parameters take Keras'
 * defaults: RandomNormal stddev 0.05, ...); KILN_ERR_UNSUPPORTED naming the known ones. */
KILN_API kiln_status kiln_initializer_parse(const char *name, kiln_init_spec *out);
/* Sets the initializer / regularizer of c's weight `weight` (a Keras key prefix, see above). */
KILN_API kiln_status kiln_layer_set_initializer(kiln_layer_config *c, const char *weight, kiln_init_spec init);
KILN_API kiln_status kiln_layer_set_regularizer(kiln_layer_config *c, const char *weight, kiln_regularizer reg);

/* (shape NULL: sizes of 0, which kiln_model_build refuses) */
KILN_API kiln_layer_config kiln_input_layer(int ndim, const int64_t *shape);
KILN_API kiln_layer_config kiln_conv2d_layer(int filters, int kernel_h, int kernel_w, kiln_activation act);
KILN_API kiln_layer_config kiln_dense_layer(int units, kiln_activation act);
KILN_API kiln_layer_config kiln_batchnorm_layer(void);
KILN_API kiln_layer_config kiln_max_pool2d_layer(int pool_h, int pool_w);
KILN_API kiln_layer_config kiln_avg_pool2d_layer(int pool_h, int pool_w);
KILN_API kiln_layer_config kiln_global_avg_pool2d_layer(void);
KILN_API kiln_layer_config kiln_flatten_layer(void);
KILN_API kiln_layer_config kiln_dropout_layer(float rate);
KILN_API kiln_layer_config kiln_activation_layer(kiln_activation act);
KILN_API kiln_layer_config kiln_add_layer(void);
/* ReLU(max_value, negative_slope, threshold): max_value INFINITY for Keras' None */
KILN_API kiln_layer_config kiln_relu_layer(float max_value, float negative_slope, float threshold);
KILN_API kiln_layer_config kiln_leaky_relu_layer(float negative_slope); /* Keras' default 0.3 */
KILN_API kiln_layer_config kiln_elu_layer(float alpha);                 /* Keras' default 1.0 */
KILN_API kiln_layer_config kiln_rescaling_layer(float scale, float offset);
/* Reshape(target_shape): 1 to 3 sizes, one of them may be -1 (inferred) */
KILN_API kiln_layer_config kiln_reshape_layer(int ndim, const int64_t *target_shape);
KILN_API kiln_layer_config kiln_concatenate_layer(int axis);            /* Keras' default -1 */
KILN_API kiln_layer_config kiln_multiply_layer(void);
KILN_API kiln_layer_config kiln_spatial_dropout2d_layer(float rate);
/* Normalization (axis -1): set its weights mean, variance (and count) after the build */
KILN_API kiln_layer_config kiln_normalization_layer(void);
KILN_API kiln_layer_config kiln_zero_padding2d_layer(int top, int bottom, int left, int right);
KILN_API kiln_layer_config kiln_depthwise_conv2d_layer(int kernel_h, int kernel_w, int depth_multiplier,
                                                       kiln_activation act);
KILN_API kiln_layer_config kiln_separable_conv2d_layer(int filters, int kernel_h, int kernel_w,
                                                       kiln_activation act);
KILN_API kiln_layer_config kiln_upsampling2d_layer(int size_h, int size_w);
KILN_API kiln_layer_config kiln_conv2d_transpose_layer(int filters, int kernel_h, int kernel_w,
                                                       kiln_activation act);
KILN_API kiln_layer_config kiln_global_max_pool2d_layer(void);

KILN_API const char *kiln_layer_type_name(kiln_layer_type t);     /* Keras class: "Conv2D"; "?" for no type */
KILN_API const char *kiln_activation_name(kiln_activation a);      /* Keras name: "relu"; "?" for none */
/* Parses a Keras activation name ("linear", "relu", ...). */
KILN_API kiln_status kiln_activation_parse(const char *name, kiln_activation *out);

typedef struct kiln_model kiln_model;

KILN_API kiln_status kiln_model_new(const char *name, kiln_model **out);
KILN_API void kiln_model_free(kiln_model *m);

/* Appends a layer fed by the layers `inputs` (ids returned by earlier calls); with
 * n_inputs = 0 it is fed by the previous layer. The first layer must be an Input. The new
 * layer's id goes to *id (may be NULL). Errors name the layer. The names "optimizer" and
 * "kiln", and names under them ("optimizer.head"), are kept for checkpoints and refused. */
KILN_API kiln_status kiln_model_add(kiln_model *m, const kiln_layer_config *cfg, int n_inputs,
                           const int *inputs, int *id);

/* A built-in model, not yet built: "seed-cnn" (the Sequential model of docs/training.md) or
 * "resnet20" (ResNet-20 v1, a graph model), for h x w x c inputs and `classes` classes. */
KILN_API kiln_status kiln_model_builtin(const char *name, int h, int w, int c, int classes, kiln_model **out);

/* Gives the sizes of the Input's unknown axes (None in Keras' batch_shape, e.g. [None, None,
 * None, 3]: kiln_layer_config.input_free), before the model is inferred or built: shape has the
 * Input's ndim sizes >= 1, and its known axes must have the sizes given. kiln infers every shape
 * once, so a model takes one size per build (the kiln CLI gives the data's). */
KILN_API kiln_status kiln_model_set_input_shape(kiln_model *m, int ndim, const int64_t *shape);

/* Infers every layer's output shape and weight shapes without allocating anything (once; later
 * calls do nothing): enough for kiln_model_summary, kiln_model_param_counts,
 * kiln_model_output_shape and kiln_model_check_memory. No layer can be added afterwards. */
KILN_API kiln_status kiln_model_infer(kiln_model *m);
/* Infers every shape (kiln_model_infer), allocates the weights on `be` and initializes them
 * from `seed`. Weights that do not fit in what `be` can give (kiln_backend_memory_available)
 * are refused with KILN_ERR_OOM naming the sizes, before any is allocated. A layer whose output
 * (per example) or weight has an element or byte count past INT64_MAX, or a model whose
 * parameter count passes it, is refused (KILN_ERR_SHAPE, by kiln_model_infer already) naming
 * the layer: "layer 'dense' (Dense): weight 'kernel' of 1152921504606846976 x 16 elements
 * overflows 64 bits". A build that fails leaves the model unbuilt, ready for another try. */
KILN_API kiln_status kiln_model_build(kiln_model *m, kiln_backend *be, uint64_t seed);

/* The accessors below return -1 (a count or an id) or NULL for a NULL model or an id outside
 * 0 .. kiln_model_layer_count() - 1, with a message. */
KILN_API int kiln_model_layer_count(const kiln_model *m);
KILN_API const kiln_layer_config *kiln_model_layer(const kiln_model *m, int id);
/* The id of the layer named `name`, or -1. */
KILN_API int kiln_model_find_layer(const kiln_model *m, const char *name);
/* The ids feeding layer `id` (count returned, ids into `inputs`; -1 for a bad argument). */
KILN_API int kiln_model_layer_inputs(const kiln_model *m, int id, int inputs[KILN_LAYER_MAX_INPUTS]);
/* The output shape of a layer (of a built or inferred model) without the batch axis. */
KILN_API kiln_status kiln_model_output_shape(const kiln_model *m, int id, int *ndim, int64_t shape[3]);
/* The backend it is built on (NULL before the build) and its name. */
KILN_API kiln_backend *kiln_model_backend(const kiln_model *m);
KILN_API const char *kiln_model_name(const kiln_model *m);

/* Freezing (Keras' layer.trainable). May change between fits; optimizer state of a frozen
 * weight is dropped and it gets no update. */
KILN_API kiln_status kiln_model_set_trainable(kiln_model *m, int id, bool trainable);
KILN_API kiln_status kiln_model_set_all_trainable(kiln_model *m, bool trainable);
/* Freezes every layer but those of type `keep` (all-but-batchnorm: KILN_LAYER_BATCHNORM). */
KILN_API kiln_status kiln_model_freeze_all_but(kiln_model *m, kiln_layer_type keep);

/* Keras' parameter counts (BatchNormalization's moving statistics are non-trainable); zeros for
 * a NULL model. Each output pointer may be NULL. */
KILN_API void kiln_model_param_counts(const kiln_model *m, int64_t *total, int64_t *trainable,
                             int64_t *non_trainable);
/* Keras' summary table to `out` (of a built or inferred model: it needs no weights). */
KILN_API kiln_status kiln_model_summary(const kiln_model *m, FILE *out);

/* Every weight: name "<layer>.<weight>", the tensor (on the model's backend), and whether an
 * optimizer updates it; i in 0 .. kiln_model_weight_count() - 1 (-1 for a NULL model); each
 * output pointer may be NULL. kiln_model_find_weight: NULL when there is none. */
KILN_API int kiln_model_weight_count(const kiln_model *m);
KILN_API kiln_status kiln_model_weight(const kiln_model *m, int i, const char **name, kiln_tensor **t,
                              bool *trainable);
KILN_API kiln_tensor *kiln_model_find_weight(const kiln_model *m, const char *name);

/* ---- architecture as Keras JSON, weights as safetensors ---- */

/* The architecture as Keras 3's model.to_json() writes it (free with free()). */
KILN_API kiln_status kiln_model_to_json(const kiln_model *m, char **out);
/* A model (not yet built) from the JSON of Keras' model.to_json(), Keras 2 or 3, Sequential or
 * Functional, for the layers above; an unsupported layer or option is KILN_ERR_UNSUPPORTED and
 * malformed JSON KILN_ERR_FORMAT, naming the layer and the option. docs/cli.md has the rules. */
KILN_API kiln_status kiln_model_from_json(const char *json, size_t len, kiln_model **out);

/* Writes the weights to a safetensors file, atomically, named "<layer>.<weight>" in Keras'
 * layouts, with the architecture (kiln_model_to_json) in the header's __metadata__ under
 * "kiln.model". With `full`, also the optimizer's state ("optimizer.<weight>.m" ...), the
 * iteration count, the learning rate, the fit's seed and `epoch` (the epochs completed), so that
 * kiln_model_load(..., full) resumes training as if never stopped. epoch must be >= 0. */
KILN_API kiln_status kiln_model_save(const kiln_model *m, const char *path, bool full, int epoch);

/* Loads weights by name into a built model (shapes checked). A tensor of the file that is no
 * weight of the model is an error (optimizer entries aside); a weight of the model missing
 * from the file is an error unless `subset` is set (--init-weights). With `full`, also the optimizer state, iterations and learning rate (the
 * model must be compiled with the same optimizer); *epoch (may be NULL) receives the epochs
 * completed. A full load needs a full checkpoint ("kiln.checkpoint" "full") holding every
 * optimizer slot the model has, and checks its kiln.* numbers (type, range, overflow) before
 * any tensor is loaded. */
KILN_API kiln_status kiln_model_load(kiln_model *m, const char *path, bool subset, bool full, int *epoch);
/* (kiln_model_load also takes a Keras 3 .keras archive or .weights.h5 file, told by its
 * content: weights only, by Keras' layer paths, every variable's count and shape checked before
 * any is loaded; a full load of one is refused, it holds no kiln optimizer state.) */

/* ---- Keras 3 files (docs/formats.md; told by their content, never by their name) ---- */

/* Writes a Keras 3 .keras archive, atomically: config.json (kiln_model_to_json), metadata.json
 * and model.weights.h5 (the weights in Keras' layout: layers/<layer path>/vars/<i>), which
 * keras.models.load_model reads. The model must be built. KILN_ERR_UNSUPPORTED when kiln was
 * built without libhdf5 or libzip. */
KILN_API kiln_status kiln_model_save_keras(const kiln_model *m, const char *path);
/* Writes the weights alone as Keras' model.save_weights does (a .weights.h5 HDF5 file). */
KILN_API kiln_status kiln_model_save_weights_h5(const kiln_model *m, const char *path);
/* A model (not yet built) from the config.json of a Keras 3 .keras archive; its weights then
 * load with kiln_model_load(m, path, ...). */
KILN_API kiln_status kiln_model_from_keras(const char *path, kiln_model **out);

/* ---- compile: optimizer, schedule, clipping, loss ---- */

typedef enum kiln_optimizer_type { KILN_OPT_ADAM = 0, KILN_OPT_SGD, KILN_OPT_ADAMW } kiln_optimizer_type;
typedef enum kiln_lr_schedule {
    KILN_LR_CONSTANT = 0,
    KILN_LR_STEP,
    KILN_LR_COSINE,
    KILN_LR_EXPONENTIAL, /* Keras' ExponentialDecay */
    KILN_LR_PIECEWISE    /* Keras' PiecewiseConstantDecay */
} kiln_lr_schedule;
#define KILN_LR_MAX_PIECES 16

typedef struct kiln_optimizer_config {
    kiln_optimizer_type type;
    kiln_adam_params adam;   /* Adam and AdamW (weight_decay) */
    kiln_sgd_params sgd;
    /* learning rate = base * schedule(step): step decay multiplies by step_gamma every
     * step_size steps (Keras ExponentialDecay with staircase); cosine goes from 1 to
     * cosine_alpha over decay_steps (Keras CosineDecay) */
    kiln_lr_schedule schedule;
    int64_t step_size;
    double step_gamma;
    int64_t decay_steps;
    double cosine_alpha;
    float global_clipnorm;   /* > 0: clip gradients by their global norm */
    /* exponential (Keras' ExponentialDecay): base * decay_rate^(step / decay_steps), the
     * exponent floored with staircase */
    double decay_rate;
    bool staircase;
    /* piecewise (Keras' PiecewiseConstantDecay): values[0] while step <= boundaries[0],
     * values[i] while boundaries[i-1] < step <= boundaries[i], values[n_boundaries] after the
     * last; the values are the learning rates (the base one is not used); boundaries increase */
    int n_boundaries;        /* 1 .. KILN_LR_MAX_PIECES - 1 */
    int64_t boundaries[KILN_LR_MAX_PIECES - 1];
    double values[KILN_LR_MAX_PIECES];
    float clipnorm;          /* > 0: clip each gradient to this norm on its own (Keras' clipnorm);
                              * not with global_clipnorm */
} kiln_optimizer_config;

/* Keras' defaults for each optimizer (Adam lr 1e-3, SGD lr 1e-2, AdamW wd 0.004). */
KILN_API kiln_optimizer_config kiln_optimizer_defaults(kiln_optimizer_type type);

typedef enum kiln_loss {
    KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY = 0,
    KILN_LOSS_CATEGORICAL_CROSSENTROPY,
    KILN_LOSS_MEAN_SQUARED_ERROR
} kiln_loss;

typedef struct kiln_compile_config {
    kiln_optimizer_config optimizer;
    kiln_loss loss;
    /* true: the model's outputs are logits; false: probabilities (Keras' default). When the
     * last layer's activation is softmax, the loss is computed from its logits by the fused,
     * stable softmax + cross-entropy either way (docs/training.md). */
    bool from_logits;
} kiln_compile_config;

KILN_API kiln_status kiln_model_compile(kiln_model *m, const kiln_compile_config *cfg);
/* Keras' label_smoothing of the cross-entropies: the targets become (1 - ls) onehot + ls / K
 * (K classes), in fit and evaluate; 0 <= ls < 1, 0 by default; kept across compiles.
 * sparse_categorical_crossentropy takes it too (Keras' categorical loss on one-hot labels);
 * with categorical_crossentropy, smooth the targets themselves (refused at the loss). */
KILN_API kiln_status kiln_model_set_label_smoothing(kiln_model *m, double ls);
/* KILN_OK when the last layer's activation suits the compiled loss: a cross-entropy takes
 * probabilities from a softmax, or logits (from_logits); else KILN_ERR_UNSUPPORTED saying so.
 * fit and evaluate check it at their first step; call it to know before training. */
KILN_API kiln_status kiln_model_check_loss(const kiln_model *m);
/* The learning rate the next step will use (NaN for a NULL model). */
KILN_API double kiln_model_learning_rate(const kiln_model *m);
/* Sets the base learning rate (ReduceLROnPlateau, or a fine-tuning phase). */
KILN_API kiln_status kiln_model_set_learning_rate(kiln_model *m, double lr);
/* Optimizer steps taken so far (-1 for a NULL model). */
KILN_API int64_t kiln_model_iterations(const kiln_model *m);
/* The seed of the last fit (or the one a full checkpoint restored): a resumed fit that uses it
 * shuffles and drops out exactly as the interrupted one would have. 0 for a NULL model. */
KILN_API uint64_t kiln_model_fit_seed(const kiln_model *m);

/* The memory budget: KILN_OK when training m (inferring its shapes first) at `batch` examples
 * with `opt` fits in what `be` can still give (kiln_backend_memory_available): its weights,
 * their gradients and optimizer state (none when opt is NULL: inference) and the activations
 * for `batch` examples (none for batch 0), less what m holds on it already. Otherwise
 * KILN_ERR_OOM: "model 'M' needs X GiB at batch B (weights ..., gradients ..., optimizer state
 * ..., activations ...), the device D has Y GiB", before anything is allocated. kiln_model_build,
 * kiln_model_compile and the batch plans of fit, evaluate and predict make the same check for
 * what each of them allocates. */
KILN_API kiln_status kiln_model_check_memory(kiln_model *m, kiln_backend *be, int batch, const kiln_optimizer_config *opt);

#ifdef __cplusplus
}
#endif
#endif
