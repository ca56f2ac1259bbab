/* test_model_json.c: kiln_model_from_json, the Keras model.to_json() reader: the built-in
 * models round-trip through kiln_model_to_json (the same JSON, parameter counts and summary);
 * files as Keras 2 and Keras 3 write them (Sequential with and without an InputLayer,
 * Functional with both inbound_nodes forms, names outside the config) give the right graph;
 * every unsupported layer or option and every malformed file is refused with a message naming
 * it. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kiln/model.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

static kiln_model *parse(const char *json) {
    kiln_model *m = NULL;
    OK(kiln_model_from_json(json, strlen(json), &m));
    return m;
}

static char *summary_of(const kiln_model *m) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    OK(kiln_model_summary(m, f));
    fclose(f);
    return buf;
}

static void expect_round_trip(const char *name, int h, int classes) {
    kiln_model *a, *b;
    OK(kiln_model_builtin(name, h, h, 3, classes, &a));
    char *ja, *jb;
    OK(kiln_model_to_json(a, &ja));
    b = parse(ja);
    OK(kiln_model_to_json(b, &jb));
    cr_expect_str_eq(jb, ja, "%s: the JSON changed in the round trip", name);
    OK(kiln_model_build(a, kt_cpu(), 1));
    OK(kiln_model_build(b, kt_cpu(), 1));
    int64_t ta, tb, tra, trb;
    kiln_model_param_counts(a, &ta, &tra, NULL);
    kiln_model_param_counts(b, &tb, &trb, NULL);
    cr_expect(ta == tb && tra == trb, "%s: params %lld/%lld vs %lld/%lld", name, (long long)ta, (long long)tra,
              (long long)tb, (long long)trb);
    char *sa = summary_of(a), *sb = summary_of(b);
    cr_expect_str_eq(sb, sa);
    free(sa);
    free(sb);
    free(ja);
    free(jb);
    kiln_model_free(a);
    kiln_model_free(b);
}

Test(model_json, builtins_round_trip) {
    expect_round_trip("seed-cnn", 32, 10);
    expect_round_trip("resnet20", 32, 10);
    expect_round_trip("seed-cnn", 12, 4);
}

/* tf.keras 2.x, Functional, inbound_nodes [[["name", 0, 0, {}], ...]] */
static const char keras2_functional[] =
    "{\"class_name\": \"Functional\", \"config\": {\"name\": \"model\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 8, 8, 3], \"dtype\": \"float32\","
    " \"sparse\": false, \"ragged\": false, \"name\": \"input_1\"}, \"name\": \"input_1\", \"inbound_nodes\": []},"
    "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv2d\", \"trainable\": true, \"dtype\": \"float32\","
    " \"filters\": 4, \"kernel_size\": [3, 3], \"strides\": [1, 1], \"padding\": \"same\", \"data_format\": \"channels_last\","
    " \"dilation_rate\": [1, 1], \"groups\": 1, \"activation\": \"relu\", \"use_bias\": true,"
    " \"kernel_initializer\": {\"class_name\": \"GlorotUniform\", \"config\": {\"seed\": null}},"
    " \"kernel_regularizer\": null, \"bias_regularizer\": null, \"activity_regularizer\": null,"
    " \"kernel_constraint\": null, \"bias_constraint\": null}, \"name\": \"conv2d\", \"inbound_nodes\": [[[\"input_1\", 0, 0, {}]]]},"
    "{\"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"bn\", \"trainable\": false, \"axis\": [3],"
    " \"momentum\": 0.9, \"epsilon\": 0.001, \"center\": true, \"scale\": false}, \"name\": \"bn\","
    " \"inbound_nodes\": [[[\"conv2d\", 0, 0, {}]]]},"
    "{\"class_name\": \"Add\", \"config\": {\"name\": \"add\", \"trainable\": true, \"dtype\": \"float32\"}, \"name\": \"add\","
    " \"inbound_nodes\": [[[\"conv2d\", 0, 0, {}], [\"bn\", 0, 0, {}]]]},"
    "{\"class_name\": \"GlobalAveragePooling2D\", \"config\": {\"data_format\": \"channels_last\","
    " \"keepdims\": false}, \"name\": \"gap\", \"inbound_nodes\": [[[\"add\", 0, 0, {}]]]},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 5, \"activation\": \"softmax\", \"use_bias\": true},"
    " \"name\": \"dense\", \"inbound_nodes\": [[[\"gap\", 0, 0, {}]]]}],"
    " \"input_layers\": [[\"input_1\", 0, 0]], \"output_layers\": [[\"dense\", 0, 0]]},"
    " \"keras_version\": \"2.12.0\", \"backend\": \"tensorflow\"}";

Test(model_json, keras2_functional) {
    kiln_model *m = parse(keras2_functional);
    cr_assert_eq(kiln_model_layer_count(m), 6);
    cr_expect_str_eq(kiln_model_name(m), "model");
    int add = kiln_model_find_layer(m, "add"), in[KILN_LAYER_MAX_INPUTS];
    cr_assert_eq(kiln_model_layer_inputs(m, add, in), 2);
    cr_expect(in[0] == kiln_model_find_layer(m, "conv2d") && in[1] == kiln_model_find_layer(m, "bn"));
    const kiln_layer_config *bn = kiln_model_layer(m, kiln_model_find_layer(m, "bn"));
    cr_expect(!bn->trainable && !bn->bn.scale && bn->bn.center && bn->bn.momentum == 0.9f);
    const kiln_layer_config *conv = kiln_model_layer(m, 1);
    cr_expect(conv->conv.padding == KILN_PADDING_SAME && conv->activation == KILN_ACT_RELU && conv->filters == 4);
    cr_expect_eq(kiln_model_find_layer(m, "gap"), 4, "a layer named only outside its config keeps that name");
    OK(kiln_model_build(m, kt_cpu(), 1));
    int nd;
    int64_t shape[3];
    OK(kiln_model_output_shape(m, 5, &nd, shape));
    cr_expect(nd == 1 && shape[0] == 5);
    kiln_model_free(m);
}

/* Keras 3: Sequential with an InputLayer (batch_shape) and DTypePolicy objects */
#define DTYPE3 "{\"module\": \"keras\", \"class_name\": \"DTypePolicy\", \"config\": {\"name\": \"float32\"}, \"registered_name\": null}"
static const char keras3_sequential[] =
    "{\"module\": \"keras\", \"class_name\": \"Sequential\", \"config\": {\"name\": \"sequential_7\", \"trainable\": true,"
    " \"dtype\": " DTYPE3 ", \"layers\": ["
    "{\"module\": \"keras.layers\", \"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, 10, 10, 1],"
    " \"dtype\": \"float32\", \"sparse\": false, \"name\": \"input_layer\"}, \"registered_name\": null},"
    "{\"module\": \"keras.layers\", \"class_name\": \"Conv2D\", \"config\": {\"name\": \"c\", \"trainable\": true, \"dtype\": " DTYPE3 ","
    " \"filters\": 6, \"kernel_size\": [3, 3], \"strides\": [2, 2], \"padding\": \"valid\", \"data_format\": \"channels_last\","
    " \"dilation_rate\": [1, 1], \"groups\": 1, \"activation\": \"tanh\", \"use_bias\": false}, \"registered_name\": null,"
    " \"build_config\": {\"input_shape\": [null, 10, 10, 1]}},"
    "{\"module\": \"keras.layers\", \"class_name\": \"AveragePooling2D\", \"config\": {\"name\": \"p\", \"pool_size\": [2, 2],"
    " \"padding\": \"same\", \"strides\": null, \"data_format\": \"channels_last\"}},"
    "{\"module\": \"keras.layers\", \"class_name\": \"Flatten\", \"config\": {\"name\": \"f\", \"data_format\": \"channels_last\"}},"
    "{\"module\": \"keras.layers\", \"class_name\": \"Dropout\", \"config\": {\"name\": \"d\", \"rate\": 0.25, \"seed\": 7, \"noise_shape\": null}},"
    "{\"module\": \"keras.layers\", \"class_name\": \"Dense\", \"config\": {\"name\": \"out\", \"units\": 3, \"activation\": \"softmax\"}}]},"
    " \"registered_name\": null, \"build_config\": {\"input_shape\": [null, 10, 10, 1]}}";

Test(model_json, keras3_sequential) {
    kiln_model *m = parse(keras3_sequential);
    cr_assert_eq(kiln_model_layer_count(m), 6);
    const kiln_layer_config *c = kiln_model_layer(m, 1), *p = kiln_model_layer(m, 2), *d = kiln_model_layer(m, 4);
    cr_expect(c->conv.stride_h == 2 && !c->use_bias && c->activation == KILN_ACT_TANH);
    cr_expect(p->type == KILN_LAYER_AVG_POOL2D && p->pool.stride_h == 0 && p->pool.padding == KILN_PADDING_SAME);
    cr_expect(d->rate == 0.25f && d->seed == 7);
    OK(kiln_model_build(m, kt_cpu(), 1));
    int64_t total;
    kiln_model_param_counts(m, &total, NULL, NULL);
    cr_expect_eq(total, 3 * 3 * 6 + (2 * 2 * 6) * 3 + 3); /* conv 4x4x6 -> pool (same) 2x2x6 */
    kiln_model_free(m);
}

/* Keras 2 Sequential without an InputLayer: batch_input_shape on the first layer */
Test(model_json, keras2_sequential_without_input_layer) {
    kiln_model *m = parse("{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
                          "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"flatten\", \"batch_input_shape\": [null, 4, 4, 2]}},"
                          "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 2}},"
                          "{\"class_name\": \"Activation\", \"config\": {\"name\": \"act\", \"activation\": \"sigmoid\"}}]}}");
    cr_assert_eq(kiln_model_layer_count(m), 4);
    cr_expect_eq(kiln_model_layer(m, 0)->type, KILN_LAYER_INPUT);
    cr_expect_eq(kiln_model_layer(m, 3)->activation, KILN_ACT_SIGMOID);
    OK(kiln_model_build(m, kt_cpu(), 1));
    kiln_model_free(m);
}

typedef struct bad_case {
    bool doc;          /* text is a whole document, else one layer after an (8, 8, 3) input */
    const char *text;
    kiln_status want;
    const char *needle;
} bad_case;

static const bad_case bad[] = {
    {false, "{\"class_name\": \"LSTM\", \"config\": {\"name\": \"lstm\", \"units\": 4}}", KILN_ERR_UNSUPPORTED, "'lstm' (LSTM): layer class LSTM is not supported"},
    {false, "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"c\", \"filters\": 2, \"kernel_size\": 3, \"data_format\": \"channels_first\"}}",
     KILN_ERR_UNSUPPORTED, "data_format 'channels_first' is not supported"},
    {false, "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"c\", \"filters\": 2, \"kernel_size\": 3, \"activation\": \"log_softmax\"}}",
     KILN_ERR_UNSUPPORTED, "activation 'log_softmax' is not supported"},
    {false, "{\"class_name\": \"UpSampling2D\", \"config\": {\"name\": \"u\", \"interpolation\": \"bicubic\"}}",
     KILN_ERR_UNSUPPORTED, "'u' (UpSampling2D): interpolation 'bicubic' is not supported (nearest or bilinear)"},
    {false, "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"c\", \"filters\": 4, \"kernel_size\": 3, \"padding\": \"causal\"}}",
     KILN_ERR_UNSUPPORTED, "padding 'causal'"},
    {false, "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": 4, \"activity_regularizer\": {\"class_name\": \"L2\"}}}",
     KILN_ERR_UNSUPPORTED, "'d' (Dense): activity_regularizer is not supported"}, /* kernel_regularizer is read: test_keras_reg.c */
    {false, "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": 4, \"dtype\": \"float16\"}}", KILN_ERR_UNSUPPORTED, "dtype float16"},
    {false, "{\"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"b\", \"axis\": 1}}", KILN_ERR_UNSUPPORTED, "axis 1 is not supported"},
    {false, "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": -3}}", KILN_ERR_FORMAT, "units must be an integer"},
    {true, "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"Dense\", \"config\": {\"units\": 2}}]}}",
     KILN_ERR_FORMAT, "has no input shape"},
    {true, "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [", KILN_ERR_FORMAT, "not valid JSON"},
    {true, "{\"class_name\": \"Tokenizer\", \"config\": {}}", KILN_ERR_UNSUPPORTED, "class_name 'Tokenizer' is not a model"},
    {true, "{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"name\": \"i\","
     " \"config\": {\"batch_shape\": [null, 4]}, \"inbound_nodes\": []}, {\"class_name\": \"Dense\", \"name\": \"d\","
     " \"config\": {\"units\": 2}, \"inbound_nodes\": [[[\"i\", 0, 0, {}]], [[\"i\", 0, 0, {}]]]}],"
     " \"input_layers\": [[\"i\", 0, 0]], \"output_layers\": [[\"d\", 0, 0]]}}", KILN_ERR_UNSUPPORTED, "called 2 times"},
    {true, "{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"name\": \"i\","
     " \"config\": {\"batch_shape\": [null, 4]}, \"inbound_nodes\": []}, {\"class_name\": \"Dense\", \"name\": \"d\","
     " \"config\": {\"units\": 2}, \"inbound_nodes\": [{\"args\": [{\"class_name\": \"__keras_tensor__\", \"config\":"
     " {\"keras_history\": [\"nowhere\", 0, 0]}}], \"kwargs\": {}}]}],"
     " \"input_layers\": [\"i\", 0, 0], \"output_layers\": [\"d\", 0, 0]}}", KILN_ERR_FORMAT, "takes 'nowhere', which is no layer"},
    {true, "{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"name\": \"i\","
     " \"config\": {\"batch_shape\": [null, 4]}, \"inbound_nodes\": []}],"
     " \"input_layers\": [[\"i\", 0, 0]], \"output_layers\": [[\"i\", 0, 0], [\"i\", 0, 0]]}}", KILN_ERR_UNSUPPORTED, "2 output_layers"},
    {true, "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\":"
     " {\"batch_shape\": [null, 2.5, null, 3]}}]}}", KILN_ERR_UNSUPPORTED, "each positive or null"}, /* None: test_keras_layers2.c */
};

Test(model_json, refusals_name_the_problem) {
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[2048];
        if (!bad[i].doc)
            snprintf(json, sizeof json, "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
                     "{\"class_name\": \"InputLayer\", \"config\": {\"name\": \"in\", \"batch_shape\": [null, 8, 8, 3]}}, %s]}}",
                     bad[i].text);
        else
            snprintf(json, sizeof json, "%s", bad[i].text);
        kiln_model *m = (kiln_model *)1;
        kiln_status s = kiln_model_from_json(json, strlen(json), &m);
        cr_expect_eq(s, bad[i].want, "case %zu: status %s, want %s (%s)", i, kiln_status_name(s),
                     kiln_status_name(bad[i].want), kiln_last_error());
        cr_expect_null(m, "case %zu: *out must be NULL on failure", i);
        cr_expect(strstr(kiln_last_error(), bad[i].needle), "case %zu: message '%s' lacks '%s'", i, kiln_last_error(),
                  bad[i].needle);
    }
}

/* Identity (src/model/layers/identity.c, the worked example of docs/layers.md: one file and one
 * KILN_LAYER_LIST line): read from Keras JSON, named and summarised like any layer, written
 * back unchanged, and a model with it trains to exactly the weights of the model without it. */
#define DENSE_PAIR(mid)                                                                                      \
    "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["                              \
    "{\"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, 6], \"name\": \"in\"}},"            \
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"h\", \"units\": 5, \"activation\": \"relu\"}}," mid  \
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"out\", \"units\": 3, \"activation\": \"softmax\"}}]}}"

static void fit_two_epochs(kiln_model *m, const float *x, const int32_t *y, int64_t n) {
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    OK(kiln_model_compile(m, &cc));
    kiln_fit_config fc = kiln_fit_defaults();
    fc.epochs = 2;
    fc.batch_size = 8;
    fc.verbose = 0;
    fc.seed = 3;
    kiln_data d = {x, y, NULL, n};
    OK(kiln_model_fit(m, &d, &fc, NULL));
}

Test(model_json, identity_layer_changes_nothing) {
    kiln_model *plain = parse(DENSE_PAIR("")),
               *with = parse(DENSE_PAIR("{\"class_name\": \"Identity\", \"config\": {\"name\": \"i\", \"trainable\": true}},"));
    cr_assert_eq(kiln_model_layer_count(with), 4);
    cr_expect_eq(kiln_model_layer(with, 2)->type, KILN_LAYER_IDENTITY);
    char *j1, *j2;
    OK(kiln_model_to_json(with, &j1));
    kiln_model *again = parse(j1);
    OK(kiln_model_to_json(again, &j2));
    cr_expect_str_eq(j2, j1);
    OK(kiln_model_build(plain, kt_cpu(), 1));
    OK(kiln_model_build(with, kt_cpu(), 2));
    char *s = summary_of(with);
    cr_expect(strstr(s, "i (Identity)") != NULL, "summary:\n%s", s);
    for (int w = 0; w < kiln_model_weight_count(plain); w++) { /* the same starting weights */
        const char *name;
        kiln_tensor *tp;
        OK(kiln_model_weight(plain, w, &name, &tp, NULL));
        void *bytes = kt_get_bytes(tp);
        OK(kiln_tensor_set(kiln_model_find_weight(with, name), bytes, kiln_tensor_nbytes(tp)));
        free(bytes);
    }
    kt_rng r;
    kt_rng_seed(&r, 91);
    enum { N = 40 };
    float x[N * 6];
    int32_t y[N];
    for (int i = 0; i < N * 6; i++) x[i] = (float)kt_uniform(&r, -1, 1);
    for (int i = 0; i < N; i++) y[i] = (int32_t)(kt_next(&r) % 3);
    fit_two_epochs(plain, x, y, N);
    fit_two_epochs(with, x, y, N);
    kt_expect_same_weights(plain, with);
    free(s);
    free(j1);
    free(j2);
    kiln_model_free(again);
    kiln_model_free(plain);
    kiln_model_free(with);
}
