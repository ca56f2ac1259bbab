/* test_conv_family_layers.c: the convolution-family layers (ZeroPadding2D, DepthwiseConv2D,
 * Conv2D groups, SeparableConv2D, UpSampling2D, Conv2DTranspose, GlobalMaxPooling2D) as
 * layers:
 *  - against real Keras: small models made by tests/fixtures/keras/conv_layers/
 *    gen_conv_layers.py (Keras 3, its to_json(), weights, a batch and Keras' predictions, in
 *    conv_layers.h): kiln reads the JSON, takes the weights by name in Keras' order, counts
 *    Keras' parameters, predicts what Keras predicts, writes every Keras config key back with
 *    Keras' value, reads its own JSON back to the same JSON, and lists the layers in summary;
 *  - every weight gradient through each layer against central finite differences of the loss
 *    (a Conv2D before the weightless layers, so their backward is what it sees). */
#define _POSIX_C_SOURCE 200809L /* open_memstream */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures/keras/conv_layers/conv_layers.h"
#include "harness.h"
#include "model_impl.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())
#define N_MODELS (sizeof kf_models / sizeof kf_models[0])

/* the Keras config keys kiln does not write: dtypes are written as kiln's own policy, and
 * initializers, regularizers and constraints are another part of the reader's */
static bool ignored_key(const char *k) {
    static const char *const ends[] = {"_initializer", "_regularizer", "_constraint"};
    if (!strcmp(k, "dtype")) return true;
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(k), e = strlen(ends[i]);
        if (n >= e && !strcmp(k + n - e, ends[i])) return true;
    }
    return false;
}

static const cJSON *layer_named(const cJSON *doc, const char *name) {
    const cJSON *layers = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "config"), "layers"), *l;
    cJSON_ArrayForEach(l, layers) {
        const cJSON *c = cJSON_GetObjectItem(l, "config");
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "name")), name)) return c;
    }
    return NULL;
}

/* every key of each Keras layer config (but the ignored ones) is in kiln's with the same value */
static void expect_same_configs(const char *model, const char *keras_json, const char *kiln_json) {
    cJSON *k = cJSON_Parse(keras_json), *o = cJSON_Parse(kiln_json);
    cr_assert(k && o, "%s: JSON does not parse", model);
    const cJSON *l, *layers = cJSON_GetObjectItem(cJSON_GetObjectItem(k, "config"), "layers");
    int checked = 0;
    cJSON_ArrayForEach(l, layers) {
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(l, "class_name")), "InputLayer")) continue;
        const cJSON *kc = cJSON_GetObjectItem(l, "config"), *e;
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(kc, "name"));
        const cJSON *oc = layer_named(o, name);
        cr_assert(oc, "%s: kiln's JSON has no layer '%s'", model, name);
        cJSON_ArrayForEach(e, kc) {
            if (ignored_key(e->string)) continue;
            const cJSON *v = cJSON_GetObjectItem(oc, e->string);
            char *want = cJSON_PrintUnformatted(e), *got = v ? cJSON_PrintUnformatted(v) : NULL;
            cr_expect(v && cJSON_Compare(e, v, true), "%s: layer '%s' key '%s' is %s in kiln's JSON, Keras writes %s",
                      model, name, e->string, got ? got : "missing", want);
            free(want);
            free(got);
            checked++;
        }
    }
    cr_expect_gt(checked, 10, "%s: %d keys compared", model, checked);
    cJSON_Delete(k);
    cJSON_Delete(o);
}

/* "1,234" as Keras' summary prints counts */
static void thousands(int64_t v, char *buf, size_t n) {
    char d[32];
    snprintf(d, sizeof d, "%lld", (long long)v);
    size_t len = strlen(d), o = 0;
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = d[i];
    }
    buf[o] = '\0';
}

static void expect_summary(const kiln_model *m, const kf_model *f) {
    char *text = NULL, want[KILN_NAME_MAX + 64], num[32];
    size_t len = 0;
    FILE *s = open_memstream(&text, &len);
    cr_assert_not_null(s);
    OK(kiln_model_summary(m, s));
    fclose(s);
    thousands(f->params, num, sizeof num);
    snprintf(want, sizeof want, "Total params: %s", num);
    cr_expect(strstr(text, want), "%s: summary lacks '%s':\n%s", f->name, want, text);
    for (int i = 1; i < kiln_model_layer_count(m); i++) {
        const kiln_layer_config *c = kiln_model_layer(m, i);
        snprintf(want, sizeof want, " %s (", c->name); /* the type column wraps */
        cr_expect(strstr(text, want), "%s: summary lacks '%s':\n%s", f->name, want, text);
    }
    free(text);
}

static size_t model_index[N_MODELS];

ParameterizedTestParameters(keras_fixture, matches_keras) {
    for (size_t k = 0; k < N_MODELS; k++) model_index[k] = k;
    return cr_make_param_array(size_t, model_index, N_MODELS);
}

ParameterizedTest(size_t *ix, keras_fixture, matches_keras) {
    const kf_model *f = &kf_models[*ix];
    kiln_model *m;
    OK(kiln_model_from_json(f->json, strlen(f->json), &m));
    OK(kiln_model_build(m, kt_cpu(), 1));
    int64_t total, trainable, frozen;
    kiln_model_param_counts(m, &total, &trainable, &frozen);
    cr_expect_eq(total, f->params, "%s: %lld parameters, Keras %lld", f->name, (long long)total, (long long)f->params);
    cr_expect_eq(trainable, f->trainable, "%s: %lld trainable, Keras %lld", f->name, (long long)trainable,
                 (long long)f->trainable);
    /* the weights in Keras' order, names and shapes */
    cr_assert_eq(kiln_model_weight_count(m), f->n_weights, "%s: %d weights, Keras %d", f->name,
                 kiln_model_weight_count(m), f->n_weights);
    for (int i = 0; i < f->n_weights; i++) {
        const char *name;
        kiln_tensor *t;
        OK(kiln_model_weight(m, i, &name, &t, NULL));
        cr_assert_str_eq(name, f->weights[i].name, "%s: weight %d", f->name, i);
        cr_assert_eq(t->ndim, f->weights[i].ndim, "%s: %s rank", f->name, name);
        for (int d = 0; d < t->ndim; d++)
            cr_assert_eq(t->shape[d], f->weights[i].shape[d], "%s: %s axis %d", f->name, name, d);
        kt_set_f32(t, f->weights[i].v);
    }
    /* predictions: TensorFlow's f32 convolutions against kiln's, sums of <= 54 products */
    int64_t in = f->in_shape[0] * f->in_shape[1] * f->in_shape[2], out = 1;
    for (int d = 0; d < f->out_ndim; d++) out *= f->out_shape[d];
    float *y = malloc(sizeof(float) * (size_t)(out * f->batch));
    cr_assert_not_null(y);
    OK(kiln_model_predict(m, f->x, f->batch, f->batch, y));
    int nd;
    int64_t shape[3];
    OK(kiln_model_output_shape(m, kiln_model_layer_count(m) - 1, &nd, shape));
    cr_assert_eq(nd, f->out_ndim, "%s: output rank", f->name);
    for (int d = 0; d < nd; d++) cr_assert_eq(shape[d], f->out_shape[d], "%s: output axis %d", f->name, d);
    char what[96];
    snprintf(what, sizeof what, "%s: kiln vs Keras predictions", f->name);
    kt_expect_close(what, y, f->y, out * f->batch, 1e-5);
    (void)in;
    free(y);
    /* JSON: Keras' keys and values, and kiln's own JSON read back to the same JSON */
    char *json, *again;
    OK(kiln_model_to_json(m, &json));
    expect_same_configs(f->name, f->json, json);
    kiln_model *m2;
    OK(kiln_model_from_json(json, strlen(json), &m2));
    OK(kiln_model_to_json(m2, &again));
    cr_expect_str_eq(again, json, "%s: kiln's JSON does not read back to itself", f->name);
    expect_summary(m, f);
    free(json);
    free(again);
    kiln_model_free(m2);
    kiln_model_free(m);
}

/* ---- gradients through each layer ---- */

static double loss_of(kiln_model *m, kiln_plan *p) {
    OK(kiln_model_forward(m, p, true, true, 1));
    OK(kiln_model_loss(m, p, false));
    float *rows = kt_get_f32(p->loss_rows);
    double s = 0;
    for (int i = 0; i < p->batch; i++) s += rows[i];
    free(rows);
    return s / p->batch;
}

/* every trainable weight's gradient against central differences, 1e-2 of the gradient's scale
 * (test_graph_grad.c's bound). h = 1e-3 in f32 (rounding ~ 2^-24 |L| / h ~ 1e-4, truncation
 * ~ h^2 |L'''| ~ 1e-6), small enough that no step moves a global max to another element;
 * returns the weights checked. A weight of more than 160 elements is checked at 160 of them,
 * evenly spaced (the Dense after the layer under test: CI time) */
static int check_weight_gradients(kiln_model *m, kiln_plan *p) {
    int checked = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        kiln_node *n = &m->nodes[i];
        for (int w = 0; w < n->n_w; w++) {
            if (!n->g[w]) continue;
            float *g = kt_get_f32(n->g[w]), *wv = kt_get_f32(n->w[w]);
            int64_t k = kiln_tensor_numel(n->w[w]), step = k > 160 ? (k + 159) / 160 : 1, taken = 0;
            double *fd = malloc(sizeof(double) * (size_t)k);
            for (int64_t j = 0; j < k; j += step, taken++) {
                float save = wv[j], h = 1e-3f;
                wv[j] = save + h;
                kt_set_f32(n->w[w], wv);
                double up = loss_of(m, p);
                wv[j] = save - h;
                kt_set_f32(n->w[w], wv);
                double dn = loss_of(m, p);
                wv[j] = save;
                kt_set_f32(n->w[w], wv);
                fd[taken] = (up - dn) / (2.0 * h);
                g[taken] = g[j];
            }
            k = taken;
            char what[KILN_NAME_MAX * 4 + 64];
            snprintf(what, sizeof what, "layer '%s' (%s): %s", n->cfg.name, kiln_layer_type_name(n->cfg.type), n->w_name[w]);
            kt_expect_close_f64(what, g, fd, k, 1e-2);
            checked++;
            free(fd);
            free(g);
            free(wv);
        }
    }
    return checked;
}

typedef struct grad_case {
    const char *name;
    int weights; /* the layer's own weights */
} grad_case;

static const grad_case grad_cases[] = {
    {"ZeroPadding2D", 0},    {"DepthwiseConv2D", 2}, {"Conv2D groups", 2},       {"SeparableConv2D", 3},
    {"UpSampling2D", 0},     {"Conv2DTranspose", 2}, {"GlobalMaxPooling2D", 0}, {"GlobalMaxPooling2D keepdims", 0},
    {"UpSampling2D bilinear", 0},
};
#define N_GRAD (sizeof grad_cases / sizeof grad_cases[0])
static size_t grad_index[N_GRAD];

static kiln_layer_config layer_under_test(size_t k) {
    kiln_layer_config l;
    switch (k) {
    case 0: return kiln_zero_padding2d_layer(1, 2, 0, 1);
    case 1:
        l = kiln_depthwise_conv2d_layer(3, 3, 2, KILN_ACT_TANH);
        l.conv.padding = KILN_PADDING_SAME;
        l.conv.stride_h = 2;
        return l;
    case 2:
        l = kiln_conv2d_layer(4, 3, 2, KILN_ACT_TANH);
        l.conv.groups = 2;
        return l;
    case 3:
        l = kiln_separable_conv2d_layer(3, 2, 3, KILN_ACT_TANH);
        l.depth_multiplier = 2;
        l.conv.padding = KILN_PADDING_SAME;
        return l;
    case 4: return kiln_upsampling2d_layer(2, 3);
    case 5:
        l = kiln_conv2d_transpose_layer(2, 3, 3, KILN_ACT_TANH);
        l.conv.stride_h = l.conv.stride_w = 2;
        return l;
    case 6: return kiln_global_max_pool2d_layer();
    case 7: l = kiln_global_max_pool2d_layer(); l.keepdims = true; return l;
    default: l = kiln_upsampling2d_layer(3, 2); l.bilinear = true; return l;
    }
}

ParameterizedTestParameters(conv_family_layers, gradients_match_finite_differences) {
    for (size_t k = 0; k < N_GRAD; k++) grad_index[k] = k;
    return cr_make_param_array(size_t, grad_index, N_GRAD);
}

/* Input (5, 4, 2) -> Conv2D(4, 2x2, same, tanh) -> the layer -> Flatten (when 3-D) -> Dense(3,
 * softmax), sparse categorical cross-entropy: the Conv2D's gradients pass through the layer's
 * backward */
ParameterizedTest(size_t *ix, conv_family_layers, gradients_match_finite_differences, .timeout = 120) {
    kiln_model *m;
    OK(kiln_model_new("grad", &m));
    int64_t in[3] = {5, 4, 2};
    kiln_layer_config l = kiln_input_layer(3, in);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    l = kiln_conv2d_layer(4, 2, 2, KILN_ACT_TANH);
    l.conv.padding = KILN_PADDING_SAME;
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    l = layer_under_test(*ix);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    if (*ix != 6) { /* all but GlobalMaxPooling2D without keepdims give images */
        l = kiln_flatten_layer();
        OK(kiln_model_add(m, &l, 0, NULL, NULL));
    }
    l = kiln_dense_layer(3, KILN_ACT_SOFTMAX);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    OK(kiln_model_build(m, kt_cpu(), 11));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_SGD), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    OK(kiln_model_compile(m, &cc));
    enum { B = 3 };
    kiln_plan *p;
    OK(kiln_model_plan(m, B, &p));
    kt_rng r;
    kt_rng_seed(&r, 77 + *ix);
    kt_fill_random(p->v[0].y, &r, -1, 1);
    /* distinct biases keep the max of the global pooling away from ties */
    for (int i = 0; i < m->n_nodes; i++)
        for (int w = 0; w < m->nodes[i].n_w; w++) kt_fill_random(m->nodes[i].w[w], &r, -0.6, 0.6);
    int32_t labels[B] = {0, 2, 1};
    OK(kiln_tensor_set(p->labels, labels, sizeof labels));
    OK(kiln_model_forward(m, p, true, true, 1));
    OK(kiln_model_loss(m, p, true));
    OK(kiln_model_backward(m, p, 1));
    int checked = check_weight_gradients(m, p);
    int want = 2 + grad_cases[*ix].weights + 2;
    cr_expect_eq(checked, want, "%s: checked %d weights, want %d", grad_cases[*ix].name, checked, want);
    kiln_model_free(m);
}

/* Keras' refusals and options, read from JSON */
Test(conv_family_layers, json_options_and_refusals) {
    static const struct {
        const char *layer;
        kiln_status want;
        const char *needle;
    } rows[] = {
        {"{\"class_name\": \"ZeroPadding2D\", \"config\": {\"name\": \"z\", \"padding\": [[1, 2], [3]]}}", KILN_ERR_FORMAT,
         "'z' (ZeroPadding2D): padding must be an integer, a pair, or a pair of pairs"},
        {"{\"class_name\": \"ZeroPadding2D\", \"config\": {\"name\": \"z\", \"padding\": -1}}", KILN_ERR_FORMAT, "padding"},
        {"{\"class_name\": \"DepthwiseConv2D\", \"config\": {\"name\": \"d\", \"kernel_size\": 3, \"depthwise_constraint\": {\"class_name\": \"MaxNorm\"}}}",
         KILN_ERR_UNSUPPORTED, "'d' (DepthwiseConv2D): depthwise_constraint is not supported"},
        {"{\"class_name\": \"DepthwiseConv2D\", \"config\": {\"name\": \"d\"}}", KILN_ERR_FORMAT, "kernel_size is missing"},
        {"{\"class_name\": \"Conv2DTranspose\", \"config\": {\"name\": \"t\", \"filters\": 2, \"kernel_size\": 3, \"output_padding\": [1, 1]}}",
         KILN_ERR_UNSUPPORTED, "'t' (Conv2DTranspose): output_padding is not supported"},
        {"{\"class_name\": \"SeparableConv2D\", \"config\": {\"name\": \"s\", \"kernel_size\": 3}}", KILN_ERR_FORMAT, "filters"},
        {"{\"class_name\": \"GlobalMaxPooling2D\", \"config\": {\"name\": \"g\", \"data_format\": \"channels_first\"}}",
         KILN_ERR_UNSUPPORTED, "data_format 'channels_first'"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char json[1024];
        snprintf(json, sizeof json, "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
                 "{\"class_name\": \"InputLayer\", \"config\": {\"name\": \"in\", \"batch_shape\": [null, 8, 8, 3]}}, %s]}}",
                 rows[i].layer);
        kiln_model *m = NULL;
        kiln_status st = kiln_model_from_json(json, strlen(json), &m);
        cr_expect_eq(st, rows[i].want, "case %zu: status %d (%s)", i, st, kiln_last_error());
        cr_expect(strstr(kiln_last_error(), rows[i].needle), "case %zu: '%s' lacks '%s'", i, kiln_last_error(),
                  rows[i].needle);
        kiln_model_free(m);
    }
}

/* shape errors name the layer; groups that do not divide the channels are refused */
Test(conv_family_layers, shape_errors_name_the_layer) {
    kiln_model *m;
    OK(kiln_model_new("bad", &m));
    int64_t in[3] = {6, 6, 3};
    kiln_layer_config l = kiln_input_layer(3, in);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    l = kiln_conv2d_layer(4, 3, 3, KILN_ACT_LINEAR);
    l.conv.groups = 2;
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    cr_expect_eq(kiln_model_infer(m), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "'conv2d' (Conv2D): groups 2 must divide the 3 input channels"), "%s",
              kiln_last_error());
    kiln_model_free(m);
    OK(kiln_model_new("bad2", &m));
    l = kiln_input_layer(3, in);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    l = kiln_flatten_layer();
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    l = kiln_zero_padding2d_layer(1, 1, 1, 1);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    cr_expect_eq(kiln_model_infer(m), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "ZeroPadding2D takes (batch, H, W, C) inputs; 'flatten' gives 1 axes"), "%s",
              kiln_last_error());
    kiln_model_free(m);
}

/* every layer of the family in one model trains through fit (plans, the partial last batch,
 * the optimizer step) and its loss stays finite */
Test(conv_family_layers, a_model_of_them_all_trains) {
    kiln_model *m;
    OK(kiln_model_new("all", &m));
    int64_t in[3] = {8, 8, 3};
    kiln_layer_config l[9] = {kiln_input_layer(3, in), kiln_zero_padding2d_layer(1, 1, 1, 1),
                              kiln_depthwise_conv2d_layer(3, 3, 2, KILN_ACT_RELU), kiln_conv2d_layer(4, 1, 1, KILN_ACT_RELU),
                              kiln_separable_conv2d_layer(4, 3, 3, KILN_ACT_RELU), kiln_upsampling2d_layer(2, 2),
                              kiln_conv2d_transpose_layer(3, 3, 3, KILN_ACT_RELU), kiln_global_max_pool2d_layer(),
                              kiln_dense_layer(3, KILN_ACT_SOFTMAX)};
    l[2].conv.stride_h = l[2].conv.stride_w = 2; /* (10, 10, 3) -> (4, 4, 6) */
    l[3].conv.groups = 2;
    l[4].conv.padding = l[6].conv.padding = KILN_PADDING_SAME;
    l[6].conv.stride_h = l[6].conv.stride_w = 2;
    for (int i = 0; i < 9; i++) OK(kiln_model_add(m, &l[i], 0, NULL, NULL));
    OK(kiln_model_build(m, kt_cpu(), 3));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    OK(kiln_model_compile(m, &cc));
    enum { N = 10 };
    float *x = malloc(sizeof(float) * N * 8 * 8 * 3);
    int32_t y[N];
    kt_rng r;
    kt_rng_seed(&r, 9);
    for (int i = 0; i < N * 8 * 8 * 3; i++) x[i] = (float)kt_uniform(&r, 0, 1);
    for (int i = 0; i < N; i++) y[i] = i % 3;
    kiln_data d = {x, y, NULL, N};
    kiln_fit_config fc = kiln_fit_defaults();
    fc.verbose = 0;
    fc.batch_size = 4; /* 4, 4, 2 */
    fc.epochs = 2;
    kiln_history h;
    OK(kiln_model_fit(m, &d, &fc, &h));
    cr_expect(isfinite(h.logs[0].loss) && isfinite(h.logs[1].loss), "losses %g, %g", h.logs[0].loss, h.logs[1].loss);
    cr_expect_eq(kiln_model_iterations(m), 6);
    kiln_history_free(&h);
    free(x);
    kiln_model_free(m);
}

/* sizes from the C API that would overflow are refused, naming the layer */
Test(conv_family_layers, overflowing_sizes_are_refused) {
    static const int64_t big[3] = {(int64_t)1 << 40, 1, 1}, wide[3] = {2, 2, ((int64_t)1 << 21)};
    for (int k = 0; k < 4; k++) {
        kiln_model *m;
        OK(kiln_model_new("big", &m));
        kiln_layer_config l = kiln_input_layer(3, k < 2 ? big : wide);
        OK(kiln_model_add(m, &l, 0, NULL, NULL));
        l = k == 0 ? kiln_upsampling2d_layer(1 << 20, 1) : k == 1 ? kiln_conv2d_transpose_layer(1, 1, 1, KILN_ACT_LINEAR)
            : k == 2 ? kiln_depthwise_conv2d_layer(1, 1, 1 << 20, KILN_ACT_LINEAR) : kiln_separable_conv2d_layer(1, 1, 1, KILN_ACT_LINEAR);
        OK(kiln_model_add(m, &l, 0, NULL, NULL));
        if (k == 0) OK(kiln_model_add(m, &l, 0, NULL, NULL)); /* 2^40 x 2^20 x 2^20 */
        cr_expect_eq(kiln_model_infer(m), KILN_ERR_SHAPE, "case %d: %s", k, kiln_last_error());
        cr_expect(strstr(kiln_last_error(), "layer '"), "case %d: %s", k, kiln_last_error());
        kiln_model_free(m);
    }
}
