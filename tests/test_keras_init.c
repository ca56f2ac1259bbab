/* test_keras_init.c: Keras' initializers in a model's JSON (issue 13, item 4): the statistics
 * of drawn kernels against Keras' formulas (std, mean, truncation bounds), exact constants,
 * the string and dict forms, BatchNormalization's four initializers, determinism with the
 * model's seed and with an initializer's own seed, the default unchanged, the JSON written
 * back, and an unknown initializer refused naming the layer. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kiln/model.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

/* a Sequential model: Input (shape), then one layer of class `cls` with `keys` in its config */
static char *model_json(const char *shape, const char *cls, const char *keys) {
    char *j = malloc(4096);
    snprintf(j, 4096,
             "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
             "{\"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, %s]}},"
             "{\"class_name\": \"%s\", \"config\": {\"name\": \"l\"%s%s}}]}}",
             shape, cls, *keys ? ", " : "", keys);
    return j;
}

static kiln_model *built(const char *json, uint64_t seed) {
    kiln_model *m = NULL;
    OK(kiln_model_from_json(json, strlen(json), &m));
    OK(kiln_model_build(m, kt_cpu(), seed));
    return m;
}

static float *weight_of(const kiln_model *m, const char *name, int64_t *n) {
    kiln_tensor *t = kiln_model_find_weight(m, name);
    cr_assert_not_null(t, "no weight %s", name);
    *n = kiln_tensor_numel(t);
    return kt_get_f32(t);
}

/* a Dense(units) kernel on `in` features with kernel_initializer `init` (JSON), seed 3 */
static float *dense_kernel(const char *init, int in, int units, int64_t *n) {
    char shape[32], keys[512];
    snprintf(shape, sizeof shape, "%d", in);
    snprintf(keys, sizeof keys, "\"units\": %d, \"kernel_initializer\": %s", units, init);
    char *j = model_json(shape, "Dense", keys);
    kiln_model *m = built(j, 3);
    float *w = weight_of(m, "l.kernel", n);
    kiln_model_free(m);
    free(j);
    return w;
}

typedef struct stat_row {
    const char *init;   /* the JSON value */
    double std;         /* Keras' standard deviation of the values */
    double bound;       /* |w - mean| <= bound (0: unbounded) */
    double mean;
} stat_row;

/* Dense(128) on 256 features: fan_in 256, fan_out 128, fan_avg 192 */
static const stat_row rows[] = {
    {"\"he_normal\"", 0.08838834764831845, 2 * 0.08838834764831845 / 0.87962566103423978, 0},
    {"{\"class_name\": \"HeNormal\", \"config\": {\"seed\": null}}", 0.08838834764831845, 2 * 0.08838834764831845 / 0.87962566103423978, 0},
    {"\"he_uniform\"", 0.08838834764831845, 0.15309310892394862, 0},
    {"\"glorot_normal\"", 0.07216878364870322, 2 * 0.07216878364870322 / 0.87962566103423978, 0},
    {"\"GlorotUniform\"", 0.07216878364870322, 0.125, 0},
    {"\"lecun_normal\"", 0.0625, 2 * 0.0625 / 0.87962566103423978, 0},
    {"\"lecun_uniform\"", 0.0625, 0.10825317547305482, 0},
    {"{\"class_name\": \"VarianceScaling\", \"config\": {\"scale\": 3.0, \"mode\": \"fan_out\", \"distribution\": \"uniform\"}}",
     0.15309310892394862, 0.2651650429449553, 0},
    {"{\"class_name\": \"VarianceScaling\", \"config\": {\"scale\": 0.5, \"mode\": \"fan_avg\", \"distribution\": \"untruncated_normal\"}}",
     0.05103103630798288, 0, 0},
    {"\"random_normal\"", 0.05, 0, 0},
    {"{\"class_name\": \"RandomNormal\", \"config\": {\"mean\": 1.5, \"stddev\": 0.2}}", 0.2, 0, 1.5},
    {"{\"class_name\": \"RandomUniform\", \"config\": {\"minval\": -0.3, \"maxval\": 0.1}}", 0.4 / 3.4641016151377544, 0.2, -0.1},
    {"\"random_uniform\"", 0.1 / 3.4641016151377544, 0.05, 0},
    /* TruncatedNormal: stddev is the untruncated one; the values' std is 0.8796 of it */
    {"{\"class_name\": \"TruncatedNormal\", \"config\": {\"mean\": -1.0, \"stddev\": 0.1}}", 0.1 * 0.87962566103423978, 0.2, -1.0},
};

/* std within 2% (32768 values: 0.4% is one standard error of a sample std, so 5 of them), mean
 * within 5 standard errors, every value inside the bound and some near it */
static void check_stats(const stat_row *r) {
    int64_t n;
    float *w = dense_kernel(r->init, 256, 128, &n);
    double s = 0, ss = 0, far = 0;
    for (int64_t i = 0; i < n; i++) s += w[i];
    double mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) {
        ss += (w[i] - mean) * (w[i] - mean);
        far = fmax(far, fabs(w[i] - r->mean));
    }
    double sd = sqrt(ss / (double)n);
    cr_expect(fabs(sd - r->std) <= 0.02 * r->std, "%s: std %.6f, Keras' %.6f", r->init, sd, r->std);
    cr_expect(fabs(mean - r->mean) <= 5 * r->std / sqrt((double)n), "%s: mean %.6f, expected %.6f", r->init, mean, r->mean);
    if (r->bound > 0) {
        cr_expect(far <= r->bound * (1 + 1e-6), "%s: a value %.6f from the mean, past the bound %.6f", r->init, far, r->bound);
        cr_expect(far >= 0.97 * r->bound, "%s: the largest distance %.6f is far inside the bound %.6f", r->init, far, r->bound);
    } else {
        cr_expect(far > 3 * r->std, "%s: no value past 3 std (%.6f): not a normal", r->init, far);
    }
    free(w);
}

Test(keras_init, kernel_statistics) {
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) check_stats(&rows[i]);
}

/* the example: Conv2D(64, 3) he_normal on one channel starts with std sqrt(2/9) = 0.471,
 * not glorot_uniform's 0.059 (576 values: one standard error of the std is 3%, 15% is 5) */
Test(keras_init, conv2d_he_normal_std) {
    char *j = model_json("8, 8, 1", "Conv2D",
                         "\"filters\": 64, \"kernel_size\": 3, \"kernel_initializer\": \"he_normal\"");
    kiln_model *m = built(j, 1);
    int64_t n;
    float *w = weight_of(m, "l.kernel", &n);
    cr_assert_eq(n, 576);
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)w[i] * w[i];
    double sd = sqrt(ss / (double)n), want = sqrt(2.0 / 9.0);
    cr_expect(fabs(sd - want) <= 0.15 * want, "Conv2D(64, 3) he_normal std %.4f, Keras' %.4f", sd, want);
    for (int64_t i = 0; i < n; i++)
        cr_expect(fabsf(w[i]) <= 2 * want / 0.87962566103423978 * (1 + 1e-6), "value %lld is %g, past 2 stddev", (long long)i, w[i]);
    free(w);
    kiln_model_free(m);
    free(j);
}

static void expect_all(const kiln_model *m, const char *name, float v) {
    int64_t n;
    float *w = weight_of(m, name, &n);
    for (int64_t i = 0; i < n; i++) cr_expect(w[i] == v, "%s[%lld] is %g, expected %g", name, (long long)i, w[i], v);
    free(w);
}

Test(keras_init, constants_exact) {
    char *j = model_json("5", "Dense",
                         "\"units\": 3, \"kernel_initializer\": {\"module\": \"keras.initializers\", \"class_name\": \"Constant\", "
                         "\"config\": {\"value\": 0.25}, \"registered_name\": null}, \"bias_initializer\": \"ones\"");
    kiln_model *m = built(j, 1);
    expect_all(m, "l.kernel", 0.25f);
    expect_all(m, "l.bias", 1.0f);
    kiln_model_free(m);
    free(j);
    j = model_json("4", "BatchNormalization",
                   "\"gamma_initializer\": \"zeros\", \"beta_initializer\": {\"class_name\": \"Constant\", \"config\": {\"value\": -0.5}}, "
                   "\"moving_mean_initializer\": {\"class_name\": \"Ones\", \"config\": {}}, "
                   "\"moving_variance_initializer\": {\"class_name\": \"Constant\", \"config\": {\"value\": 2}}");
    m = built(j, 1);
    expect_all(m, "l.gamma", 0.0f);
    expect_all(m, "l.beta", -0.5f);
    expect_all(m, "l.moving_mean", 1.0f);
    expect_all(m, "l.moving_variance", 2.0f);
    kiln_model_free(m);
    free(j);
}

static bool same(const float *a, const float *b, int64_t n) { return !memcmp(a, b, sizeof(float) * (size_t)n); }

Test(keras_init, seeds) {
    char *j = model_json("16", "Dense", "\"units\": 8, \"kernel_initializer\": \"lecun_normal\"");
    int64_t n;
    kiln_model *a = built(j, 7), *b = built(j, 7), *c = built(j, 8);
    float *wa = weight_of(a, "l.kernel", &n), *wb = weight_of(b, "l.kernel", &n), *wc = weight_of(c, "l.kernel", &n);
    cr_expect(same(wa, wb, n), "the same model seed gave other values");
    cr_expect(!same(wa, wc, n), "another model seed gave the same values");
    free(wa), free(wb), free(wc);
    kiln_model_free(a), kiln_model_free(b), kiln_model_free(c);
    free(j);
    /* a seeded initializer: its own values, whatever the model's seed (as a seeded Keras one) */
    j = model_json("16", "Dense", "\"units\": 8, \"kernel_initializer\": {\"class_name\": \"HeUniform\", \"config\": {\"seed\": 42}}");
    a = built(j, 7), c = built(j, 8);
    wa = weight_of(a, "l.kernel", &n), wc = weight_of(c, "l.kernel", &n);
    cr_expect(same(wa, wc, n), "a seeded initializer changed with the model's seed");
    char *k = model_json("16", "Dense", "\"units\": 8, \"kernel_initializer\": {\"class_name\": \"HeUniform\", \"config\": {\"seed\": 43}}");
    b = built(k, 7);
    wb = weight_of(b, "l.kernel", &n);
    cr_expect(!same(wa, wb, n), "seeds 42 and 43 gave the same values");
    free(wa), free(wb), free(wc);
    kiln_model_free(a), kiln_model_free(b), kiln_model_free(c);
    free(j), free(k);
}

/* no initializer key, "glorot_uniform" and Keras 3's GlorotUniform object: the same weights */
Test(keras_init, default_unchanged) {
    const char *forms[] = {"\"units\": 6", "\"units\": 6, \"kernel_initializer\": \"glorot_uniform\"",
                           "\"units\": 6, \"kernel_initializer\": {\"module\": \"keras.initializers\", \"class_name\": "
                           "\"GlorotUniform\", \"config\": {\"seed\": null}, \"registered_name\": null}, \"bias_initializer\": \"zeros\""};
    float *w0 = NULL;
    int64_t n;
    for (int f = 0; f < 3; f++) {
        char *j = model_json("10", "Dense", forms[f]);
        kiln_model *m = built(j, 5);
        float *w = weight_of(m, "l.kernel", &n);
        if (w0) cr_expect(same(w, w0, n), "form %d changed the default kernel", f);
        if (!w0) w0 = w;
        else free(w);
        kiln_model_free(m);
        free(j);
    }
    free(w0);
}

/* the initializers are written back, and the model read again draws the same weights */
Test(keras_init, json_round_trip) {
    char *j = model_json("6", "Dense",
                         "\"units\": 4, \"kernel_initializer\": {\"class_name\": \"TruncatedNormal\", \"config\": {\"mean\": 0.5, "
                         "\"stddev\": 0.25, \"seed\": 9}}, \"bias_initializer\": {\"class_name\": \"Constant\", \"config\": {\"value\": 0.75}}");
    kiln_model *a = built(j, 2), *b = NULL;
    char *out;
    OK(kiln_model_to_json(a, &out));
    cr_expect(strstr(out, "\"kernel_initializer\":{\"module\":\"keras.initializers\",\"class_name\":\"TruncatedNormal\","
                          "\"config\":{\"mean\":0.5,\"stddev\":0.25,\"seed\":9}") != NULL, "written: %s", out);
    cr_expect(strstr(out, "\"bias_initializer\":{\"module\":\"keras.initializers\",\"class_name\":\"Constant\",\"config\":{\"value\":0.75}") != NULL,
              "written: %s", out);
    OK(kiln_model_from_json(out, strlen(out), &b));
    OK(kiln_model_build(b, kt_cpu(), 2));
    kt_expect_same_weights(a, b);
    free(out);
    kiln_model_free(a), kiln_model_free(b);
    free(j);
}

static void expect_refused(const char *keys, const char *msg) {
    char *j = model_json("6", "Dense", keys);
    kiln_model *m = NULL;
    cr_expect_neq(kiln_model_from_json(j, strlen(j), &m), KILN_OK, "%s was accepted", keys);
    cr_expect(strstr(kiln_last_error(), msg) != NULL, "message '%s' lacks '%s'", kiln_last_error(), msg);
    cr_expect_null(m);
    kiln_model_free(m);
    free(j);
}

Test(keras_init, refused) {
    expect_refused("\"units\": 2, \"kernel_initializer\": \"he_nromal\"",
                   "layer 'l' (Dense): kernel_initializer 'he_nromal' is not supported (glorot_uniform");
    expect_refused("\"units\": 2, \"kernel_initializer\": {\"class_name\": \"Identity\", \"config\": {\"gain\": 1.0}}",
                   "layer 'l' (Dense): kernel_initializer 'Identity' is not supported");
    expect_refused("\"units\": 2, \"bias_initializer\": 3", "layer 'l' (Dense): bias_initializer must be an initializer's name");
    expect_refused("\"units\": 2, \"kernel_initializer\": {\"class_name\": \"RandomNormal\", \"config\": {\"stddev\": -1}}",
                   "layer 'l' (Dense): kernel_initializer: parameters out of range");
    expect_refused("\"units\": 2, \"kernel_initializer\": {\"class_name\": \"VarianceScaling\", \"config\": {\"mode\": \"fan_max\"}}",
                   "kernel_initializer: mode must be one of fan_in, fan_out, fan_avg");
    expect_refused("\"units\": 2, \"kernel_initializer\": {\"class_name\": \"HeNormal\", \"config\": {\"input_axes\": [0]}}",
                   "kernel_initializer: input_axes is not supported");
}

/* the C API: kiln_initializer_parse and kiln_layer_set_initializer */
Test(keras_init, c_api) {
    kiln_init_spec s;
    OK(kiln_initializer_parse("ones", &s));
    cr_expect(s.kind == KILN_INIT_CONSTANT && s.value == 1.0);
    cr_expect_eq(kiln_initializer_parse("identity", &s), KILN_ERR_UNSUPPORTED);
    kiln_model *m;
    OK(kiln_model_new("api", &m));
    int64_t shape[1] = {3};
    kiln_layer_config in = kiln_input_layer(1, shape), d = kiln_dense_layer(2, KILN_ACT_LINEAR);
    OK(kiln_initializer_parse("constant", &s));
    s.value = -2.0;
    OK(kiln_layer_set_initializer(&d, "kernel", s));
    s.value = 0.125;
    OK(kiln_layer_set_initializer(&d, "bias", s));
    snprintf(d.name, sizeof d.name, "l");
    OK(kiln_model_add(m, &in, 0, NULL, NULL));
    OK(kiln_model_add(m, &d, 0, NULL, NULL));
    OK(kiln_model_build(m, kt_cpu(), 0));
    expect_all(m, "l.kernel", -2.0f);
    expect_all(m, "l.bias", 0.125f);
    kiln_model_free(m);
}

/* Keras 3.15's own model.to_json() (tests/fixtures/make_keras_init_json.py made it; Keras drew
 * a conv kernel of std 0.2383 for sqrt(2/36) = 0.2357 and a dense kernel of std 0.01758, max |w|
 * 0.04): every initializer and regularizer is read, the weights are drawn as Keras' formulas say,
 * and the regularizers are written back */
static const char keras_json_fixture[] =
    "{\"module\": \"keras\", \"class_name\": \"Sequential\", \"config\": {\"name\": \"fixture\", \"trainable\": tru"
    "e, \"dtype\": {\"module\": \"keras\", \"class_name\": \"DTypePolicy\", \"config\": {\"name\": \"float32\"}, \""
    "registered_name\": null}, \"layers\": [{\"module\": \"keras.layers\", \"class_name\": \"InputLayer\", \"config"
    "\": {\"batch_shape\": [null, 16, 16, 4], \"dtype\": \"float32\", \"sparse\": false, \"ragged\": false, \"name\""
    ": \"input_layer\", \"optional\": false}, \"registered_name\": null}, {\"module\": \"keras.layers\", \"class_na"
    "me\": \"Conv2D\", \"config\": {\"name\": \"conv\", \"trainable\": true, \"dtype\": {\"module\": \"keras\", \"c"
    "lass_name\": \"DTypePolicy\", \"config\": {\"name\": \"float32\"}, \"registered_name\": null}, \"filters\": 64"
    ", \"kernel_size\": [3, 3], \"strides\": [1, 1], \"padding\": \"valid\", \"data_format\": \"channels_last\", \""
    "dilation_rate\": [1, 1], \"groups\": 1, \"activation\": \"linear\", \"use_bias\": true, \"kernel_initializer\""
    ": {\"module\": \"keras.initializers\", \"class_name\": \"HeNormal\", \"config\": {\"seed\": null, \"input_axes"
    "\": null, \"output_axes\": null}, \"registered_name\": null}, \"bias_initializer\": {\"module\": \"keras.initi"
    "alizers\", \"class_name\": \"Constant\", \"config\": {\"value\": 0.1}, \"registered_name\": null}, \"kernel_re"
    "gularizer\": {\"module\": \"keras.regularizers\", \"class_name\": \"L2\", \"config\": {\"l2\": 0.001}, \"regis"
    "tered_name\": null}, \"bias_regularizer\": null, \"activity_regularizer\": null, \"kernel_constraint\": null, "
    "\"bias_constraint\": null}, \"registered_name\": null, \"build_config\": {\"input_shape\": [null, 16, 16, 4]}}"
    ", {\"module\": \"keras.layers\", \"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"bn\", \"trai"
    "nable\": true, \"dtype\": {\"module\": \"keras\", \"class_name\": \"DTypePolicy\", \"config\": {\"name\": \"fl"
    "oat32\"}, \"registered_name\": null}, \"axis\": -1, \"momentum\": 0.99, \"epsilon\": 0.001, \"center\": true, "
    "\"scale\": true, \"beta_initializer\": {\"module\": \"keras.initializers\", \"class_name\": \"Zeros\", \"confi"
    "g\": {}, \"registered_name\": null}, \"gamma_initializer\": {\"module\": \"keras.initializers\", \"class_name\""
    ": \"Zeros\", \"config\": {}, \"registered_name\": null}, \"moving_mean_initializer\": {\"module\": \"keras.ini"
    "tializers\", \"class_name\": \"Zeros\", \"config\": {}, \"registered_name\": null}, \"moving_variance_initiali"
    "zer\": {\"module\": \"keras.initializers\", \"class_name\": \"Constant\", \"config\": {\"value\": 2.0}, \"regi"
    "stered_name\": null}, \"beta_regularizer\": {\"module\": \"keras.regularizers\", \"class_name\": \"L1\", \"con"
    "fig\": {\"l1\": 0.009999999776482582}, \"registered_name\": null}, \"gamma_regularizer\": null, \"beta_constra"
    "int\": null, \"gamma_constraint\": null, \"synchronized\": false, \"renorm\": false, \"renorm_clipping\": null"
    ", \"renorm_momentum\": 0.99}, \"registered_name\": null, \"build_config\": {\"input_shape\": [null, 14, 14, 64"
    "]}}, {\"module\": \"keras.layers\", \"class_name\": \"Flatten\", \"config\": {\"name\": \"flat\", \"trainable\""
    ": true, \"dtype\": {\"module\": \"keras\", \"class_name\": \"DTypePolicy\", \"config\": {\"name\": \"float32\""
    "}, \"registered_name\": null}, \"data_format\": \"channels_last\"}, \"registered_name\": null, \"build_config\""
    ": {\"input_shape\": [null, 14, 14, 64]}}, {\"module\": \"keras.layers\", \"class_name\": \"Dense\", \"config\""
    ": {\"name\": \"dense\", \"trainable\": true, \"dtype\": {\"module\": \"keras\", \"class_name\": \"DTypePolicy\""
    ", \"config\": {\"name\": \"float32\"}, \"registered_name\": null}, \"units\": 32, \"activation\": \"linear\", "
    "\"use_bias\": true, \"kernel_initializer\": {\"module\": \"keras.initializers\", \"class_name\": \"TruncatedNo"
    "rmal\", \"config\": {\"seed\": 7, \"mean\": 0.0, \"stddev\": 0.02}, \"registered_name\": null}, \"bias_initial"
    "izer\": {\"module\": \"keras.initializers\", \"class_name\": \"Ones\", \"config\": {}, \"registered_name\": nu"
    "ll}, \"kernel_regularizer\": {\"module\": \"keras.regularizers\", \"class_name\": \"L1L2\", \"config\": {\"l1\""
    ": 0.0001, \"l2\": 1e-05}, \"registered_name\": null}, \"bias_regularizer\": null, \"kernel_constraint\": null,"
    " \"bias_constraint\": null, \"quantization_config\": null}, \"registered_name\": null, \"build_config\": {\"in"
    "put_shape\": [null, 12544]}}], \"build_input_shape\": [null, 16, 16, 4]}, \"registered_name\": null, \"build_c"
    "onfig\": {\"input_shape\": [null, 16, 16, 4]}, \"compile_config\": {}}";

static double std_of(const kiln_model *m, const char *name, double *most) {
    int64_t n;
    float *w = weight_of(m, name, &n);
    double s = 0, ss = 0;
    *most = 0;
    for (int64_t i = 0; i < n; i++) s += w[i];
    for (int64_t i = 0; i < n; i++) {
        ss += (w[i] - s / (double)n) * (w[i] - s / (double)n);
        *most = fmax(*most, fabs(w[i]));
    }
    free(w);
    return sqrt(ss / (double)n);
}

Test(keras_init, keras_written_json) {
    kiln_model *m = built(keras_json_fixture, 1), *m2 = built(keras_json_fixture, 2);
    double most, sd = std_of(m, "conv.kernel", &most);
    /* 2304 values: one standard error of the std is 1.5%, 8% is 5 */
    cr_expect(fabs(sd - sqrt(2.0 / 36.0)) <= 0.08 * sqrt(2.0 / 36.0), "conv he_normal std %.4f, Keras' formula %.4f", sd, sqrt(2.0 / 36.0));
    sd = std_of(m, "dense.kernel", &most);
    cr_expect(fabs(sd - 0.02 * 0.87962566103423978) <= 0.02 * 0.02 * 0.87962566103423978, "dense TruncatedNormal(0.02) std %.5f", sd);
    cr_expect(most <= 0.04 * (1 + 1e-6), "dense TruncatedNormal(0.02): |w| reaches %.5f, past 2 stddev", most);
    expect_all(m, "conv.bias", 0.1f);
    expect_all(m, "bn.gamma", 0.0f);
    expect_all(m, "bn.beta", 0.0f);
    expect_all(m, "bn.moving_mean", 0.0f);
    expect_all(m, "bn.moving_variance", 2.0f);
    expect_all(m, "dense.bias", 1.0f);
    int64_t n;
    float *a = weight_of(m, "dense.kernel", &n), *b = weight_of(m2, "dense.kernel", &n);
    cr_expect(same(a, b, n), "the dense kernel's seed 7 did not fix its values");
    free(a), free(b);
    char *out;
    OK(kiln_model_to_json(m, &out));
    cr_expect(strstr(out, "\"kernel_regularizer\":{\"module\":\"keras.regularizers\",\"class_name\":\"L2\",\"config\":{\"l2\":0.001") != NULL, "%s", out);
    cr_expect(strstr(out, "\"beta_regularizer\":{\"module\":\"keras.regularizers\",\"class_name\":\"L1\",\"config\":{\"l1\":0.0099999997764825") != NULL, "%s", out);
    cr_expect(strstr(out, "\"class_name\":\"L1L2\",\"config\":{\"l1\":0.0001,\"l2\":1e-05}") != NULL, "%s", out);
    cr_expect(strstr(out, "\"kernel_initializer\":{\"module\":\"keras.initializers\",\"class_name\":\"HeNormal\",\"config\":{\"seed\":null}") != NULL, "%s", out);
    free(out);
    kiln_model_free(m), kiln_model_free(m2);
}

/* kiln_model_add checks what a config's weight options hold when they bypass the setters */
Test(keras_init, add_checks_the_options) {
    kiln_model *m;
    OK(kiln_model_new("api", &m));
    int64_t shape[1] = {3};
    kiln_layer_config in = kiln_input_layer(1, shape), d = kiln_dense_layer(2, KILN_ACT_LINEAR);
    OK(kiln_model_add(m, &in, 0, NULL, NULL));
    kiln_layer_config bad = d;
    memset(bad.weight_opts[0].weight, 'k', sizeof bad.weight_opts[0].weight);
    cr_expect_eq(kiln_model_add(m, &bad, 0, NULL, NULL), KILN_ERR_INVALID_ARG, "an unterminated weight name was taken");
    bad = d;
    snprintf(bad.weight_opts[0].weight, sizeof bad.weight_opts[0].weight, "kernel");
    bad.weight_opts[0].has_init = true;
    bad.weight_opts[0].init = (kiln_init_spec){.kind = KILN_INIT_RANDOM_NORMAL, .b = -1.0};
    cr_expect_eq(kiln_model_add(m, &bad, 0, NULL, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "weight 'kernel': parameters out of range"), "%s", kiln_last_error());
    bad.weight_opts[0].has_init = false;
    bad.weight_opts[0].reg.l2 = NAN;
    cr_expect_eq(kiln_model_add(m, &bad, 0, NULL, NULL), KILN_ERR_INVALID_ARG);
    OK(kiln_model_add(m, &d, 0, NULL, NULL));
    kiln_model_free(m);
}

/* Orthogonal(gain): K^T K = gain^2 I for a kernel of more rows (the product of the leading axes)
 * than columns, K K^T = gain^2 I for fewer; a vector is refused at the build */
static void expect_orthogonal(const char *shape, const char *cls, const char *keys, int64_t nrows, int64_t ncols, double gain) {
    char *j = model_json(shape, cls, keys);
    kiln_model *m = built(j, 4);
    int64_t n;
    float *k = weight_of(m, "l.kernel", &n);
    cr_assert_eq(n, nrows * ncols);
    bool tall = nrows >= ncols;
    int64_t d = tall ? ncols : nrows, len = tall ? nrows : ncols;
    for (int64_t a = 0; a < d; a++)
        for (int64_t b = 0; b < d; b++) {
            double dot = 0;
            for (int64_t i = 0; i < len; i++)
                dot += tall ? (double)k[i * ncols + a] * k[i * ncols + b] : (double)k[a * ncols + i] * k[b * ncols + i];
            cr_expect(fabs(dot - (a == b ? gain * gain : 0.0)) < 1e-5 * gain * gain, "%s %s: (%lld, %lld) product %g",
                      cls, keys, (long long)a, (long long)b, dot);
        }
    free(k);
    kiln_model_free(m);
    free(j);
}

Test(keras_init, orthogonal) {
    expect_orthogonal("6", "Dense", "\"units\": 4, \"kernel_initializer\": \"orthogonal\"", 6, 4, 1.0);
    expect_orthogonal("3", "Dense", "\"units\": 5, \"kernel_initializer\": \"orthogonal\"", 3, 5, 1.0);
    expect_orthogonal("5, 5, 2", "Conv2D",
                      "\"filters\": 8, \"kernel_size\": 3, \"kernel_initializer\": {\"class_name\": \"Orthogonal\", \"config\": {\"gain\": 2.0, \"seed\": null}}",
                      18, 8, 2.0);
    char *j = model_json("3", "Dense", "\"units\": 5, \"bias_initializer\": \"orthogonal\"");
    kiln_model *m = NULL;
    OK(kiln_model_from_json(j, strlen(j), &m));
    cr_expect_neq(kiln_model_build(m, kt_cpu(), 1), KILN_OK, "an orthogonal vector was built");
    cr_expect(strstr(kiln_last_error(), "the orthogonal initializer needs 2 or more axes"), "%s", kiln_last_error());
    kiln_model_free(m);
    free(j);
    j = model_json("3", "Dense", "\"units\": 5, \"kernel_initializer\": {\"class_name\": \"Orthogonal\", \"config\": {\"gain\": 0.5}}");
    m = built(j, 1);
    char *out;
    OK(kiln_model_to_json(m, &out));
    cr_expect(strstr(out, "\"class_name\":\"Orthogonal\",\"config\":{\"gain\":0.5,\"seed\":null}") != NULL, "%s", out);
    free(out);
    kiln_model_free(m);
    free(j);
}
