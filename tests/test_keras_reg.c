/* test_keras_reg.c: Keras' kernel_regularizer / bias_regularizer (issue 13): the penalty
 * l1 sum|w| + l2 sum w^2 (no 1/2) joins the loss evaluate and fit report, against a value
 * computed by hand and by Keras 3.15 (the model below: evaluate 0.08049999922513962, fit's
 * loss the same, with the layer frozen 0.05000000074505806); fit's gradient (from one SGD step)
 * against a finite difference of evaluate's loss; the JSON written back; bad values refused. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kiln/fit.h"
#include "kiln/model.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

/* Dense(2) on 3 features, kernel L1L2(l1=0.01, l2=0.1), bias "l2" (L2(0.01)) */
static const char *json =
    "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, 3]}},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": 2, \"activation\": \"linear\","
    " \"kernel_regularizer\": {\"module\": \"keras.regularizers\", \"class_name\": \"L1L2\", \"config\": {\"l1\": 0.01, \"l2\": 0.1},"
    " \"registered_name\": null}, \"bias_regularizer\": \"l2\", \"activity_regularizer\": null}}]}}";

static const float W[6] = {-0.2f, -0.1f, 0.0f, 0.1f, 0.2f, 0.3f}, B[2] = {0.3f, -0.4f};
static const float X[6] = {1, 1, 1, 1, 1, 1}, T[4] = {0, 0, 0, 0};

static kiln_model *model(double lr) {
    kiln_model *m = NULL;
    OK(kiln_model_from_json(json, strlen(json), &m));
    OK(kiln_model_build(m, kt_cpu(), 1));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_SGD), KILN_LOSS_MEAN_SQUARED_ERROR, false};
    cc.optimizer.sgd.learning_rate = lr;
    OK(kiln_model_compile(m, &cc));
    kt_set_f32(kiln_model_find_weight(m, "d.kernel"), W);
    kt_set_f32(kiln_model_find_weight(m, "d.bias"), B);
    return m;
}

static const kiln_data data = {X, NULL, T, 2};

static double evaluate(kiln_model *m) {
    double loss, acc;
    OK(kiln_model_evaluate(m, &data, 2, &loss, &acc));
    return loss;
}

/* by hand: the data loss is the mean of (x W + b)^2 = mean(0.3, 0.2)^2... : rows are equal,
 * x W = (-0.2 + 0 + 0.2, -0.1 + 0.1 + 0.3) = (0, 0.3), plus b: (0.3, -0.1), mse 0.05;
 * the penalty 0.01 * 0.9 + 0.1 * 0.19 + 0.01 * 0.25 = 0.0305 */
Test(keras_reg, loss_value) {
    kiln_model *m = model(0.01);
    double l = evaluate(m);
    cr_expect(fabs(l - 0.0805) < 1e-6, "evaluate's loss %.9f, Keras' 0.08049999922513962", l);
    kiln_history h;
    kiln_fit_config fc = kiln_fit_defaults();
    fc.batch_size = 2;
    fc.verbose = 0;
    OK(kiln_model_fit(m, &data, &fc, &h));
    cr_expect(fabs(h.logs[0].loss - 0.0805) < 1e-6, "fit's loss %.9f, Keras' 0.08049999922513962", h.logs[0].loss);
    kiln_history_free(&h);
    /* frozen: Keras counts the trainable weights' regularizers only */
    OK(kiln_model_set_all_trainable(m, false));
    kt_set_f32(kiln_model_find_weight(m, "d.kernel"), W);
    kt_set_f32(kiln_model_find_weight(m, "d.bias"), B);
    l = evaluate(m);
    cr_expect(fabs(l - 0.05) < 1e-6, "frozen: evaluate's loss %.9f, Keras' 0.05000000074505806", l);
    kiln_model_free(m);
}

/* one SGD step of lr 0.5 moves w by -0.5 g: g against (L(w + h) - L(w - h)) / 2h of evaluate */
Test(keras_reg, gradient_finite_difference) {
    const double lr = 0.5, h = 1e-3;
    kiln_model *m = model(lr);
    kiln_fit_config fc = kiln_fit_defaults();
    fc.batch_size = 2;
    fc.verbose = 0;
    fc.shuffle = false;
    OK(kiln_model_fit(m, &data, &fc, NULL));
    const char *names[2] = {"d.kernel", "d.bias"};
    const float *start[2] = {W, B};
    float *after[2] = {kt_get_f32(kiln_model_find_weight(m, names[0])), kt_get_f32(kiln_model_find_weight(m, names[1]))};
    kiln_model *f = model(lr);
    for (int t = 0; t < 2; t++) {
        kiln_tensor *wt = kiln_model_find_weight(f, names[t]);
        int64_t n = kiln_tensor_numel(wt);
        for (int64_t i = 0; i < n; i++) {
            float v[6];
            memcpy(v, start[t], sizeof(float) * (size_t)n);
            v[i] = (float)(start[t][i] + h);
            kt_set_f32(wt, v);
            double up = evaluate(f);
            v[i] = (float)(start[t][i] - h);
            kt_set_f32(wt, v);
            double down = evaluate(f);
            kt_set_f32(wt, start[t]);
            double fd = (up - down) / (2 * h), g = (start[t][i] - after[t][i]) / lr;
            cr_expect(fabs(fd - g) < 2e-4, "%s[%lld]: fit's gradient %.6f, finite difference %.6f", names[t], (long long)i, g, fd);
        }
    }
    free(after[0]), free(after[1]);
    kiln_model_free(m), kiln_model_free(f);
}

Test(keras_reg, json_written_back) {
    kiln_model *m = model(0.01), *b = NULL;
    char *out;
    OK(kiln_model_to_json(m, &out));
    cr_expect(strstr(out, "\"kernel_regularizer\":{\"module\":\"keras.regularizers\",\"class_name\":\"L1L2\",\"config\":{\"l1\":0.01,\"l2\":0.1}") != NULL,
              "%s", out);
    cr_expect(strstr(out, "\"bias_regularizer\":{\"module\":\"keras.regularizers\",\"class_name\":\"L2\",\"config\":{\"l2\":0.01}") != NULL, "%s", out);
    OK(kiln_model_from_json(out, strlen(out), &b));
    OK(kiln_model_build(b, kt_cpu(), 1));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_SGD), KILN_LOSS_MEAN_SQUARED_ERROR, false};
    OK(kiln_model_compile(b, &cc));
    kt_set_f32(kiln_model_find_weight(b, "d.kernel"), W);
    kt_set_f32(kiln_model_find_weight(b, "d.bias"), B);
    double l = evaluate(b);
    cr_expect(fabs(l - 0.0805) < 1e-6, "read back: loss %.9f", l);
    free(out);
    kiln_model_free(m), kiln_model_free(b);
}

static void expect_refused(const char *reg, const char *msg) {
    char j[1024];
    snprintf(j, sizeof j,
             "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
             "{\"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, 3]}},"
             "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": 2, \"kernel_regularizer\": %s}}]}}", reg);
    kiln_model *m = NULL;
    cr_expect_neq(kiln_model_from_json(j, strlen(j), &m), KILN_OK, "%s was accepted", reg);
    cr_expect(strstr(kiln_last_error(), msg) != NULL, "message '%s' lacks '%s'", kiln_last_error(), msg);
    kiln_model_free(m);
}

Test(keras_reg, refused) {
    expect_refused("\"l3\"", "layer 'd' (Dense): kernel_regularizer 'l3' is not supported (l1, l2, l1_l2");
    expect_refused("{\"class_name\": \"OrthogonalRegularizer\", \"config\": {\"factor\": 0.01}}",
                   "kernel_regularizer 'OrthogonalRegularizer' is not supported");
    expect_refused("{\"class_name\": \"L2\", \"config\": {\"l2\": -1}}", "kernel_regularizer: l1 and l2 must be >= 0");
    kiln_layer_config d = kiln_dense_layer(2, KILN_ACT_LINEAR);
    cr_expect_neq(kiln_layer_set_regularizer(&d, "kernel", (kiln_regularizer){NAN, 0}), KILN_OK);
}
