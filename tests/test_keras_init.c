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
    expect_refused("\"units\": 2, \"kernel_initializer\": {\"class_name\": \"Orthogonal\", \"config\": {\"gain\": 1.0}}",
                   "layer 'l' (Dense): kernel_initializer 'Orthogonal' is not supported");
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
