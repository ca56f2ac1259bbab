/* test_graph_grad.c: reverse-mode autograd over a layer graph, checked end to end: the
 * gradient of the loss with respect to every weight of a small residual graph model
 * (Conv2D, BatchNormalization in training mode, Add with fan-out, Activation layers, pooling,
 * Dense, fused softmax cross-entropy) against central finite differences of the loss; and ResNet-20's
 * parameter counts against Keras'. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_grad.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

/* every trainable weight's analytic gradient against central differences of the plan's loss
 * (model_grad.h). h = 1e-2 in float32: truncation ~h^2 |L'''| ~ 1e-5, rounding ~ 2^-24 |L| / h ~
 * 1e-5; against gradients of ~1e-2..1e-1 that is the 1e-2 bound */
static int check_weight_gradients(kiln_model *m, kiln_plan *p) { return kt_check_weight_gradients(m, p, 1e-2f, 1e-2); }

Test(graph, gradients_match_finite_differences, .timeout = 120) {
    kiln_model *m;
    OK(kiln_model_new("residual", &m));
    int64_t in[3] = {5, 5, 2};
    int x, a, b, s;
    kiln_layer_config l = kiln_input_layer(3, in);
    OK(kiln_model_add(m, &l, 0, NULL, &x));
    l = kiln_conv2d_layer(3, 3, 3, KILN_ACT_TANH);
    l.conv.padding = KILN_PADDING_SAME;
    OK(kiln_model_add(m, &l, 1, &x, &a));
    l = kiln_batchnorm_layer();
    OK(kiln_model_add(m, &l, 1, &a, &b));
    l = kiln_conv2d_layer(3, 3, 3, KILN_ACT_LINEAR);
    l.conv.padding = KILN_PADDING_SAME;
    OK(kiln_model_add(m, &l, 1, &b, &s));
    int pair[2] = {a, s}; /* a feeds both the BN and the Add: gradients sum */
    l = kiln_add_layer();
    OK(kiln_model_add(m, &l, 2, pair, &s));
    l = kiln_activation_layer(KILN_ACT_TANH); /* an Activation layer reads z from its input's y */
    OK(kiln_model_add(m, &l, 1, &s, &s));
    l = kiln_avg_pool2d_layer(2, 2);
    OK(kiln_model_add(m, &l, 1, &s, &s));
    l = kiln_flatten_layer();
    OK(kiln_model_add(m, &l, 1, &s, &s));
    l = kiln_dense_layer(4, KILN_ACT_LINEAR);
    OK(kiln_model_add(m, &l, 1, &s, &s));
    l = kiln_activation_layer(KILN_ACT_SOFTMAX); /* the last layer: the loss fuses its softmax */
    OK(kiln_model_add(m, &l, 1, &s, &s));
    OK(kiln_model_build(m, kt_cpu(), 7));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_SGD), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    OK(kiln_model_compile(m, &cc));
    enum { B = 6 };
    kiln_plan *p;
    OK(kiln_model_plan(m, B, &p));
    kt_rng r;
    kt_rng_seed(&r, 123);
    kt_fill_random(p->v[0].y, &r, -1, 1);
    int32_t labels[B] = {0, 1, 2, 3, 1, 2};
    OK(kiln_tensor_set(p->labels, labels, sizeof labels));
    /* analytic gradients */
    OK(kiln_model_forward(m, p, true, true, 1));
    OK(kiln_model_loss(m, p, true));
    OK(kiln_model_backward(m, p, 1));
    int checked = check_weight_gradients(m, p);
    cr_expect_eq(checked, 8, "checked %d weights (2 convs x2, BN gamma/beta, dense x2)", checked);
    kiln_model_free(m);
}

Test(graph, resnet20_counts_and_trains) {
    kiln_model *m;
    OK(kiln_model_builtin("resnet20", 32, 32, 3, 10, &m));
    OK(kiln_model_build(m, kt_cpu(), 1));
    int64_t t, tr, nt;
    kiln_model_param_counts(m, &t, &tr, &nt);
    /* Keras' resnet_v1(depth=20) for CIFAR-10 */
    cr_expect_eq(t, 274442);
    cr_expect_eq(tr, 273066);
    cr_expect_eq(nt, 1376);
    kiln_model_free(m);
    /* a few steps on 8x8 inputs: the graph runs forward and backward */
    OK(kiln_model_builtin("resnet20", 8, 8, 3, 10, &m));
    OK(kiln_model_build(m, kt_cpu(), 1));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    OK(kiln_model_compile(m, &cc));
    kt_rng r;
    kt_rng_seed(&r, 5);
    float *x = malloc(sizeof(float) * 16 * 8 * 8 * 3);
    int32_t y[16];
    for (int i = 0; i < 16 * 8 * 8 * 3; i++) x[i] = (float)kt_uniform(&r, 0, 1);
    for (int i = 0; i < 16; i++) y[i] = i % 10;
    kiln_data d = {x, y, NULL, 16};
    kiln_fit_config fc = kiln_fit_defaults();
    fc.verbose = 0;
    fc.batch_size = 8;
    fc.epochs = 2;
    kiln_history h;
    OK(kiln_model_fit(m, &d, &fc, &h));
    cr_expect(isfinite(h.logs[1].loss));
    cr_expect_eq(kiln_model_iterations(m), 4);
    kiln_history_free(&h);
    free(x);
    kiln_model_free(m);
}

/* a Dense model's weight gradients under a loss with dense targets, against finite differences */
static void dense_targets_fd(kiln_loss loss, kiln_activation last) {
    kiln_model *m;
    OK(kiln_model_new("mlp", &m));
    int64_t in[1] = {5};
    kiln_layer_config l = kiln_input_layer(1, in);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    l = kiln_dense_layer(6, KILN_ACT_TANH);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    l = kiln_dense_layer(3, last);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    OK(kiln_model_build(m, kt_cpu(), 9));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_SGD), loss, false};
    OK(kiln_model_compile(m, &cc));
    enum { B = 4 };
    kiln_plan *p;
    OK(kiln_model_plan(m, B, &p));
    kt_rng r;
    kt_rng_seed(&r, 321);
    kt_fill_random(p->v[0].y, &r, -1, 1);
    /* smoothed one-hot distributions (rows sum to 1), as label smoothing makes */
    float t[B * 3];
    for (int i = 0; i < B; i++)
        for (int j = 0; j < 3; j++) t[i * 3 + j] = j == i % 3 ? 0.8f : 0.1f;
    kt_set_f32(p->y_dense, t);
    /* the loss value against a double oracle of the forward's output */
    OK(kiln_model_forward(m, p, true, true, 1));
    OK(kiln_model_loss(m, p, true));
    float *z = kt_get_f32(p->v[2].z), *y = kt_get_f32(p->v[2].y), *rows = kt_get_f32(p->loss_rows);
    double want[B];
    for (int i = 0; i < B; i++) {
        double s = 0, mx = z[i * 3];
        for (int j = 1; j < 3; j++) mx = z[i * 3 + j] > mx ? z[i * 3 + j] : mx;
        double se = 0;
        for (int j = 0; j < 3; j++) se += exp(z[i * 3 + j] - mx);
        for (int j = 0; j < 3; j++) {
            double logp = z[i * 3 + j] - mx - log(se), d = (double)y[i * 3 + j] - t[i * 3 + j];
            s += loss == KILN_LOSS_CATEGORICAL_CROSSENTROPY ? -t[i * 3 + j] * logp : d * d / 3.0;
        }
        want[i] = s;
    }
    /* (lse - z0) + z0 - sum t z: a few ulps of the logits' size */
    kt_expect_close_f64("loss rows vs double oracle", rows, want, B, 1e-6);
    free(z); free(y); free(rows);
    OK(kiln_model_backward(m, p, 1));
    cr_expect_eq(check_weight_gradients(m, p), 4);
    kiln_model_free(m);
}

Test(graph, categorical_crossentropy_gradients) { dense_targets_fd(KILN_LOSS_CATEGORICAL_CROSSENTROPY, KILN_ACT_SOFTMAX); }
Test(graph, mean_squared_error_gradients) { dense_targets_fd(KILN_LOSS_MEAN_SQUARED_ERROR, KILN_ACT_SIGMOID); }
