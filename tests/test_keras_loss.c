/* test_keras_loss.c: the cross-entropy as Keras 3.15 (TensorFlow 2.21) computes it in fit and
 * evaluate (issue 13, items 5 and 6): label smoothing against Keras' value (logits
 * [[1, 2, 0.5], [0.1, -1, 3]], labels [1, 2], CategoricalCrossentropy(label_smoothing=0.1):
 * 0.4242382049560547 for a linear output with from_logits and for a softmax output alike) and
 * its gradient against a finite difference; a softmax output whose true class has probability
 * e^-50 gives the loss 50 exactly (Keras: evaluate, fit and an eager call all print 50.0), not the
 * 16.118 of probabilities clipped at 1e-7; kiln_model_check_loss. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kiln/fit.h"
#include "kiln/model.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

/* Dense(3, act) on 2 features with kernel z (x = the identity gives the logits z) */
static kiln_model *model(kiln_activation act, bool from_logits, double lr) {
    kiln_model *m;
    OK(kiln_model_new("m", &m));
    int64_t shape[1] = {2};
    kiln_layer_config in = kiln_input_layer(1, shape), d = kiln_dense_layer(3, act);
    snprintf(d.name, sizeof d.name, "d");
    OK(kiln_model_add(m, &in, 0, NULL, NULL));
    OK(kiln_model_add(m, &d, 0, NULL, NULL));
    OK(kiln_model_build(m, kt_cpu(), 0));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_SGD), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, from_logits};
    cc.optimizer.sgd.learning_rate = lr;
    OK(kiln_model_compile(m, &cc));
    static const float z[6] = {1.0f, 2.0f, 0.5f, 0.1f, -1.0f, 3.0f}, b[3] = {0, 0, 0};
    kt_set_f32(kiln_model_find_weight(m, "d.kernel"), z);
    kt_set_f32(kiln_model_find_weight(m, "d.bias"), b);
    return m;
}

static const float X[4] = {1, 0, 0, 1};
static const int32_t Y[2] = {1, 2};
static const kiln_data data = {X, Y, NULL, 2};

static double evaluate(kiln_model *m) {
    double loss, acc;
    OK(kiln_model_evaluate(m, &data, 2, &loss, &acc));
    return loss;
}

Test(keras_loss, label_smoothing_value) {
    for (int k = 0; k < 2; k++) {
        kiln_model *m = model(k ? KILN_ACT_SOFTMAX : KILN_ACT_LINEAR, !k, 0.1);
        OK(kiln_model_set_label_smoothing(m, 0.1));
        double l = evaluate(m);
        cr_expect(fabs(l - 0.4242382049560547) < 1e-6, "%s output: loss %.9f, Keras' 0.4242382049560547", k ? "softmax" : "linear", l);
        OK(kiln_model_set_label_smoothing(m, 0.0));
        l = evaluate(m);
        /* by hand: (logsumexp - z_label) per row: 0.46436878 and 0.07077422, mean 0.26757150 */
        cr_expect(fabs(l - 0.26757150) < 1e-6, "without smoothing: loss %.9f", l);
        kiln_model_free(m);
    }
    kiln_model *m = model(KILN_ACT_SOFTMAX, false, 0.1);
    cr_expect_neq(kiln_model_set_label_smoothing(m, 1.0), KILN_OK);
    cr_expect_neq(kiln_model_set_label_smoothing(m, -0.1), KILN_OK);
    kiln_model_free(m);
}

/* one SGD step of lr 0.5 moves the kernel by -0.5 g: g against a finite difference of evaluate */
Test(keras_loss, label_smoothing_gradient) {
    const double lr = 0.5, h = 1e-3;
    kiln_model *m = model(KILN_ACT_LINEAR, true, lr), *f = model(KILN_ACT_LINEAR, true, lr);
    OK(kiln_model_set_label_smoothing(m, 0.3));
    OK(kiln_model_set_label_smoothing(f, 0.3));
    kiln_tensor *w = kiln_model_find_weight(f, "d.kernel");
    float *start = kt_get_f32(w);
    kiln_fit_config fc = kiln_fit_defaults();
    fc.batch_size = 2;
    fc.verbose = 0;
    fc.shuffle = false;
    OK(kiln_model_fit(m, &data, &fc, NULL));
    float *after = kt_get_f32(kiln_model_find_weight(m, "d.kernel"));
    for (int i = 0; i < 6; i++) {
        float v[6];
        memcpy(v, start, sizeof v);
        v[i] = (float)(start[i] + h);
        kt_set_f32(w, v);
        double up = evaluate(f);
        v[i] = (float)(start[i] - h);
        kt_set_f32(w, v);
        double down = evaluate(f);
        double fd = (up - down) / (2 * h), g = (start[i] - after[i]) / lr;
        cr_expect(fabs(fd - g) < 1e-4, "kernel[%d]: fit's gradient %.6f, finite difference %.6f", i, g, fd);
    }
    free(start), free(after);
    kiln_model_free(m), kiln_model_free(f);
}

/* item 6: softmax output, the true class at probability e^-50: the loss is 50, as Keras'
 * fit, evaluate and eager loss give (Keras 3 on TensorFlow takes the logits of a softmax output) */
Test(keras_loss, softmax_output_uses_the_logits) {
    kiln_model *m = model(KILN_ACT_SOFTMAX, false, 0.1);
    static const float z[6] = {0, 0, 0, 0, 0, 0}, b[3] = {0.0f, 50.0f, -1e4f};
    kt_set_f32(kiln_model_find_weight(m, "d.kernel"), z);
    kt_set_f32(kiln_model_find_weight(m, "d.bias"), b);
    static const int32_t y0[2] = {0, 0};
    kiln_data d = {X, y0, NULL, 2};
    double loss, acc;
    OK(kiln_model_evaluate(m, &d, 2, &loss, &acc));
    cr_expect(loss == 50.0, "loss %.17g, Keras' 50.0 (clipping at 1e-7 would give 16.118)", loss);
    kiln_model_free(m);
}

Test(keras_loss, check_loss) {
    kiln_model *m = model(KILN_ACT_SIGMOID, false, 0.1);
    cr_expect_eq(kiln_model_check_loss(m), KILN_ERR_UNSUPPORTED);
    cr_expect(strstr(kiln_last_error(), "layer 'd' has activation sigmoid"), "%s", kiln_last_error());
    kiln_model_free(m);
    m = model(KILN_ACT_LINEAR, true, 0.1);
    OK(kiln_model_check_loss(m));
    kiln_model_free(m);
}
