/* test_keras_files.c: Keras 3's files (issue 13, items 1 and 2) against fixtures written by
 * real Keras 3.15 (tests/fixtures/keras/make_fixtures.py; CI needs no TensorFlow):
 *   - a Functional model's JSON as Keras writes it (module, class, each __keras_tensor__'s
 *     shape and dtype, compared with Keras' own file layer by layer);
 *   - Keras' path names (naming.to_snake_case);
 *   - .keras and .weights.h5 written by Keras load into kiln, which then predicts what Keras
 *     predicted (inference mode, non-trivial BN moving statistics, BN without center or scale,
 *     Conv2D without bias), with Keras' parameter counts;
 *   - kiln's own .keras / .weights.h5 round trip bit for bit;
 *   - hostile and foreign files: a file of another kind named for what it is, an external link,
 *     a Keras 2 file, a wrong model, truncations and seeded byte flips: a clear error, no crash,
 *     the model's weights untouched.
 * Without libhdf5/libzip the file tests skip and one test checks the "built without" message. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datafiles.h"
#include "harness.h"
#include "keras_file.h"
#include "keras_h5.h"
#include "keras_zip.h"
#include "kiln/kiln.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

/* LeakSanitizer (the sanitizer build) reads this: libhdf5 1.10.8 loses memory inside itself on
 * some of the malformed files below (docs/formats.md, "Faults inside the libraries"). Memory
 * HDF5 still tracks (every object kiln might leave open) is freed by HDF5's own exit handler,
 * which runs before the leak check, so what is reported is lost inside the library; kiln's own
 * allocations stay checked. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5_serial.so\nleak:libhdf5.so\n"; }

static const char *fixture(const char *name) {
    static char p[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/tests/fixtures/keras/%s", KILN_SOURCE_DIR, name);
    return p[k];
}

static void need_libs(void) {
    if (!kiln_h5_available() || !kiln_zip_available()) cr_skip_test("kiln was built without libhdf5 or libzip");
}

static void setup(void) { kt_tmpdir_new(); }
static void teardown(void) { kt_tmpdir_remove(); }

/* a float32 .npy fixture (malloc'ed values; *n elements) */
static float *npy_f32(const char *name, int64_t *n) {
    size_t len;
    void *buf = kt_read_file(fixture(name), &len);
    cr_assert_not_null(buf, "cannot read %s", fixture(name));
    kiln_npy a;
    OK(kiln_npy_parse(buf, len, name, &a));
    cr_assert_eq(a.dtype, KILN_NPY_F32);
    float *v = malloc(a.nbytes);
    memcpy(v, a.data, a.nbytes);
    *n = (int64_t)(a.nbytes / sizeof(float));
    free(buf);
    return v;
}

/* kiln's predictions for the fixture inputs <name>_x.npy (4 examples), malloc'ed */
static float *predict(kiln_model *m, const char *name, int64_t *n_out) {
    char xn[64];
    snprintf(xn, sizeof xn, "%s_x.npy", name);
    int64_t nx;
    float *x = npy_f32(xn, &nx);
    int nd;
    int64_t shape[3];
    OK(kiln_model_output_shape(m, kiln_model_layer_count(m) - 1, &nd, shape));
    float *p = malloc(sizeof(float) * 4 * (size_t)shape[0]);
    OK(kiln_model_predict(m, x, 4, 4, p));
    free(x);
    *n_out = 4 * shape[0];
    return p;
}

/* kiln predicts what Keras did on the fixture's inputs */
static void expect_keras_predictions(kiln_model *m, const char *name) {
    char pn[64];
    snprintf(pn, sizeof pn, "%s_p.npy", name);
    int64_t n, np_;
    float *want = npy_f32(pn, &np_), *got = predict(m, name, &n);
    cr_assert_eq(n, np_, "%s: %lld outputs, Keras has %lld", name, (long long)n, (long long)np_);
    kt_expect_close(name, got, want, n, 1e-6);
    free(want);
    free(got);
}

static kiln_model *from_keras(const char *file) {
    kiln_model *m;
    OK(kiln_model_from_keras(fixture(file), &m));
    OK(kiln_model_build(m, kt_cpu(), 7));
    return m;
}

static kiln_model *from_json(const char *file) {
    size_t len;
    char *json = kt_read_file(fixture(file), &len);
    cr_assert_not_null(json);
    kiln_model *m;
    OK(kiln_model_from_json(json, len, &m));
    free(json);
    OK(kiln_model_build(m, kt_cpu(), 7));
    return m;
}

/* ---- item 1: the Functional JSON ---- */

/* the shape of every __keras_tensor__ in a layer's inbound call, as text: "[null,6,6,4];..." */
static void tensor_shapes(const cJSON *layer, char *buf, size_t n) {
    buf[0] = '\0';
    const cJSON *args = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(layer, "inbound_nodes"), 0), "args");
    const cJSON *list = cJSON_IsArray(cJSON_GetArrayItem(args, 0)) ? cJSON_GetArrayItem(args, 0) : args;
    for (const cJSON *t = list ? list->child : NULL; t; t = t->next) {
        const cJSON *cfg = cJSON_GetObjectItem(t, "config");
        char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(cfg, "shape"));
        const cJSON *dt = cJSON_GetObjectItem(cfg, "dtype");
        snprintf(buf + strlen(buf), n - strlen(buf), "%s/%s;", s ? s : "(none)", cJSON_IsString(dt) ? dt->valuestring : "(none)");
        free(s);
    }
}

Test(keras_json, functional_as_keras_writes_it) {
    kiln_model *m = from_json("func.json");
    char *ours;
    OK(kiln_model_to_json(m, &ours));
    size_t len;
    char *theirs_text = kt_read_file(fixture("func.json"), &len);
    cJSON *a = cJSON_Parse(ours), *b = cJSON_ParseWithLength(theirs_text, len);
    cr_assert(a && b);
    cr_expect_str_eq(cJSON_GetObjectItem(a, "module")->valuestring, "keras.src.models.functional");
    cr_expect_str_eq(cJSON_GetObjectItem(a, "class_name")->valuestring, "Functional");
    const cJSON *la = cJSON_GetObjectItem(cJSON_GetObjectItem(a, "config"), "layers");
    const cJSON *lb = cJSON_GetObjectItem(cJSON_GetObjectItem(b, "config"), "layers");
    cr_assert_eq(cJSON_GetArraySize(la), cJSON_GetArraySize(lb));
    int checked = 0;
    for (const cJSON *x = la->child, *y = lb->child; x && y; x = x->next, y = y->next) {
        char sa[512], sb[512];
        tensor_shapes(x, sa, sizeof sa);
        tensor_shapes(y, sb, sizeof sb);
        cr_expect_str_eq(sa, sb, "layer '%s': kiln's keras tensors %s, Keras' %s", cJSON_GetObjectItem(x, "name")->valuestring,
                         sa, sb);
        checked += sb[0] != '\0';
    }
    cr_expect_eq(checked, 9, "%d layers with inputs compared", checked);
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(ours);
    free(theirs_text);
    kiln_model_free(m);
}

Test(keras_json, snake_case_of_keras_classes) {
    static const char *const pairs[][2] = {
        {"Conv2D", "conv2d"}, {"BatchNormalization", "batch_normalization"}, {"InputLayer", "input_layer"},
        {"GlobalAveragePooling2D", "global_average_pooling2d"}, {"MaxPooling2D", "max_pooling2d"}, {"ReLU", "re_lu"},
        {"LeakyReLU", "leaky_re_lu"}, {"DepthwiseConv2D", "depthwise_conv2d"}, {"Conv2DTranspose", "conv2d_transpose"},
        {"UpSampling2D", "up_sampling2d"}, {"ZeroPadding2D", "zero_padding2d"}, {"Dense", "dense"}, {"Add", "add"},
        {"SpatialDropout2D", "spatial_dropout2d"}, {"GlobalMaxPooling2D", "global_max_pooling2d"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char out[64];
        kiln_keras_snake_case(pairs[i][0], out, sizeof out);
        cr_expect_str_eq(out, pairs[i][1], "%s -> %s, Keras says %s", pairs[i][0], out, pairs[i][1]);
    }
}

/* ---- item 2: Keras' files into kiln ---- */

static void expect_params(kiln_model *m, int64_t total, int64_t trainable) {
    int64_t t, tr, nt;
    kiln_model_param_counts(m, &t, &tr, &nt);
    cr_expect(t == total && tr == trainable && nt == total - trainable, "params %lld (%lld trainable), Keras %lld (%lld)",
              (long long)t, (long long)tr, (long long)total, (long long)trainable);
}

Test(keras_files, keras_archive_predicts_as_keras, .init = setup, .fini = teardown) {
    need_libs();
    /* Keras' count_params() and its trainable weights' sizes */
    static const struct { const char *name; int64_t total, trainable; } fx[] = {{"func", 135, 119}, {"seq", 128, 118}};
    for (int i = 0; i < 2; i++) {
        char file[64];
        snprintf(file, sizeof file, "%s.keras", fx[i].name);
        kiln_model *m = from_keras(file);
        expect_params(m, fx[i].total, fx[i].trainable);
        OK(kiln_model_load(m, fixture(file), false, false, NULL));
        expect_keras_predictions(m, fx[i].name);
        kiln_model_free(m);
    }
}

Test(keras_files, json_and_weights_h5_predict_as_keras, .init = setup, .fini = teardown) {
    need_libs();
    const char *names[2] = {"func", "seq"};
    for (int i = 0; i < 2; i++) {
        char json[64], h5[64];
        snprintf(json, sizeof json, "%s.json", names[i]);
        snprintf(h5, sizeof h5, "%s.weights.h5", names[i]);
        kiln_model *m = from_json(json);
        OK(kiln_model_load(m, fixture(h5), false, false, NULL));
        expect_keras_predictions(m, names[i]);
        kiln_model_free(m);
    }
}

/* every weight of a equals b's, bit for bit */
static void expect_same_weights(const kiln_model *a, const kiln_model *b) {
    cr_assert_eq(kiln_model_weight_count(a), kiln_model_weight_count(b));
    for (int i = 0; i < kiln_model_weight_count(a); i++) {
        kiln_tensor *ta, *tb;
        const char *name;
        OK(kiln_model_weight(a, i, &name, &ta, NULL));
        OK(kiln_model_weight(b, i, NULL, &tb, NULL));
        void *x = kt_get_bytes(ta), *y = kt_get_bytes(tb);
        cr_expect(!memcmp(x, y, kiln_tensor_nbytes(ta)), "weight '%s' differs after the round trip", name);
        free(x);
        free(y);
    }
}

Test(keras_files, kiln_files_round_trip_bit_for_bit, .init = setup, .fini = teardown) {
    need_libs();
    kiln_model *m = from_keras("func.keras");
    OK(kiln_model_load(m, fixture("func.keras"), false, false, NULL));
    OK(kiln_model_save_keras(m, kt_path("m.keras")));
    OK(kiln_model_save_weights_h5(m, kt_path("m.weights.h5")));
    kiln_model *a, *b = from_json("func.json");
    OK(kiln_model_from_keras(kt_path("m.keras"), &a));
    OK(kiln_model_build(a, kt_cpu(), 99));
    OK(kiln_model_load(a, kt_path("m.keras"), false, false, NULL));
    OK(kiln_model_load(b, kt_path("m.weights.h5"), false, false, NULL));
    expect_same_weights(m, a);
    expect_same_weights(m, b);
    expect_keras_predictions(a, "func");
    kiln_model_free(m);
    kiln_model_free(a);
    kiln_model_free(b);
}

/* ---- hostile and foreign files ---- */

Test(keras_hostile, a_file_of_another_kind_is_named, .init = setup, .fini = teardown) {
    need_libs();
    kiln_model *m = NULL;
    kt_expect_error(kiln_model_from_keras(fixture("func.weights.h5"), &m), KILN_ERR_FORMAT,
                    "func.weights.h5: this is an HDF5 file (Keras .weights.h5 or .h5), not a .keras zip archive");
    kt_expect_error(kiln_model_from_keras(fixture("func.json"), &m), KILN_ERR_FORMAT, "this is a JSON file, not a .keras");
    m = from_json("seq.json");
    kt_expect_error(kiln_model_load(m, fixture("legacy.h5"), false, false, NULL), KILN_ERR_FORMAT,
                    "legacy.h5: a Keras 2 HDF5 file (it has 'model_weights'), not Keras 3's weights layout");
    kt_expect_error(kiln_model_load(m, fixture("extlink.weights.h5"), false, false, NULL), KILN_ERR_FORMAT,
                    "extlink.weights.h5: 'layers/dense' is a external link");
    kiln_model_free(m);
}

/* a refused load leaves every weight as it was */
Test(keras_hostile, wrong_model_is_refused_untouched, .init = setup, .fini = teardown) {
    need_libs();
    kiln_model *m = from_json("seq.json"), *ref = from_json("seq.json");
    kt_expect_error(kiln_model_load(m, fixture("func.keras"), false, false, NULL), KILN_ERR_FORMAT,
                    "func.keras: model.weights.h5: holds 10 layers, model 'seq' has 5");
    kt_expect_error(kiln_model_load(m, fixture("func.keras"), true, false, NULL), KILN_ERR_SHAPE,
                    "'layers/dense/vars/0' is (4, 3), but weight 'dense.kernel' of layer 'dense' (Dense) is (18, 5)");
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    OK(kiln_model_compile(m, &cc));
    kt_expect_error(kiln_model_load(m, fixture("seq.keras"), false, true, NULL), KILN_ERR_FORMAT,
                    "seq.keras: this is a zip archive (a Keras .keras file), which holds no kiln optimizer state");
    expect_same_weights(m, ref);
    kiln_model_free(m);
    kiln_model_free(ref);
}

/* a file cut at `len` bytes, or with seeded byte flips: an error naming the file, or (a flip
 * in data bytes) a load; never a crash */
static void try_bytes(const void *bytes, size_t len, const char *ext, kiln_model *m) {
    char name[64];
    snprintf(name, sizeof name, "x%s", ext);
    kt_write_file(kt_path(name), bytes, len, false);
    kiln_status s = kiln_model_load(m, kt_path(name), false, false, NULL);
    if (s != KILN_OK) cr_expect(strstr(kiln_last_error(), name), "message '%s' does not name the file", kiln_last_error());
}

Test(keras_hostile, truncations_and_flips_never_crash, .init = setup, .fini = teardown) {
    need_libs();
    kiln_model *m = from_json("seq.json");
    static const char *const files[2][2] = {{"seq.keras", ".keras"}, {"seq.weights.h5", ".weights.h5"}};
    kt_rng r;
    kt_rng_seed(&r, 13);
    for (int f = 0; f < 2; f++) {
        size_t len;
        uint8_t *good = kt_read_file(fixture(files[f][0]), &len), *bad = malloc(len);
        for (size_t cut = 0; cut < len; cut += len / 23 + 1) try_bytes(good, cut, files[f][1], m);
        for (int trial = 0; trial < 60; trial++) {
            memcpy(bad, good, len);
            for (int k = 0; k < 4; k++) bad[kt_next(&r) % len] = (uint8_t)kt_next(&r);
            try_bytes(bad, len, files[f][1], m);
        }
        free(good);
        free(bad);
    }
    kiln_model_free(m);
}

Test(keras_hostile, built_without_the_libraries_says_so, .init = setup, .fini = teardown) {
    if (kiln_h5_available() && kiln_zip_available()) cr_skip_test("kiln has libhdf5 and libzip");
    kiln_model *m = from_json("seq.json");
    kiln_status s = kiln_model_save_keras(m, kt_path("m.keras"));
    cr_expect_eq(s, KILN_ERR_UNSUPPORTED);
    cr_expect(strstr(kiln_last_error(), "kiln was built without"), "%s", kiln_last_error());
    if (!kiln_h5_available())
        kt_expect_error(kiln_model_load(m, fixture("seq.weights.h5"), false, false, NULL), KILN_ERR_UNSUPPORTED,
                        "kiln was built without HDF5 support");
    kiln_model_free(m);
}

/* an Adam model's .keras carries Keras' compile_config and optimizer/vars: iterations, the
 * learning rate, then m and v of each trainable variable (check_keras.py shows real Keras
 * restoring them bit for bit) */
Test(keras_files, adam_state_goes_with_the_archive, .init = setup, .fini = teardown) {
    need_libs();
    kiln_model *m = from_json("seq.json");
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    cc.optimizer.adam.learning_rate = 0.025;
    OK(kiln_model_compile(m, &cc));
    OK(kiln_model_save_keras(m, kt_path("m.keras")));
    size_t len;
    void *zip = kt_read_file(kt_path("m.keras"), &len);
    char *json;
    size_t json_len;
    OK(kiln_keras_config(zip, len, "m.keras", &json, &json_len));
    cJSON *root = cJSON_Parse(json), *opt = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "compile_config"), "optimizer");
    cr_assert_not_null(opt, "no compile_config.optimizer in %s", json);
    cr_expect_str_eq(cJSON_GetObjectItem(opt, "class_name")->valuestring, "Adam");
    cr_expect_float_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(opt, "config"), "learning_rate")->valuedouble, 0.025, 1e-12);
    static const char *const member[1] = {"model.weights.h5"};
    kiln_file_part h5;
    OK(kiln_zip_read(zip, len, "m.keras", member, 1, (size_t)1 << 30, &h5));
    kiln_h5 *h;
    OK(kiln_h5_open_image(h5.data, h5.len, "model.weights.h5", &h));
    bool found;
    int64_t vars = 0;
    OK(kiln_h5_group_members(h, "optimizer/vars", &found, &vars));
    cr_expect(found && vars == 2 + 2 * 5, "optimizer/vars holds %lld variables, want 12 (3 Dense/BN layers: 5 trainable)",
              (long long)vars);
    int nd;
    int64_t shape[KILN_H5_MAX_DIMS];
    OK(kiln_h5_var_shape(h, "optimizer/vars/2", &nd, shape));
    cr_expect(nd == 2 && shape[0] == 18 && shape[1] == 5, "vars/2 is the first Dense kernel's m");
    kiln_h5_close(h);
    free((void *)h5.data);
    cJSON_Delete(root);
    free(json);
    free(zip);
    kiln_model_free(m);
}
