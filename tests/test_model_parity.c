/* test_model_parity.c: whole-model parity, CPU against CUDA (skipped without a GPU): one
 * training step of the seed model from the same weights and batch (every gradient compared),
 * and a 50-step loss curve. Bounds (docs/testing.md): gradients 1e-4 of their scale (cuDNN's and
 * im2col+sgemm's fp32 sums differ in order, then pass through BN's reductions and two Dense
 * layers, each adding a few ulps); the loss curve 1e-2 relative per step (50 Adam steps amplify
 * the first-step differences; a bound set before any GPU run, to be confirmed there). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "model_impl.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

static kiln_model *seed_on(kiln_backend *be) {
    kiln_model *m;
    OK(kiln_model_builtin("seed-cnn", 16, 16, 3, 10, &m));
    OK(kiln_model_build(m, be, 21));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    OK(kiln_model_compile(m, &cc));
    return m;
}

/* the CUDA model takes the CPU model's initial weights */
static void copy_weights(kiln_model *from, kiln_model *to) {
    for (int i = 0; i < kiln_model_weight_count(from); i++) {
        kiln_tensor *a, *b;
        OK(kiln_model_weight(from, i, NULL, &a, NULL));
        OK(kiln_model_weight(to, i, NULL, &b, NULL));
        OK(kiln_tensor_transfer(a, b));
    }
}

static kiln_data make_data(int n) {
    kt_rng r;
    kt_rng_seed(&r, 8);
    float *x = malloc(sizeof(float) * (size_t)n * 16 * 16 * 3);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++) {
        y[i] = (int32_t)(kt_next(&r) % 10);
        for (int j = 0; j < 768; j++) x[i * 768 + j] = (float)(kt_uniform(&r, 0, 1) + 0.5 * ((j / 3) % 10 == y[i]));
    }
    return (kiln_data){x, y, NULL, n};
}

static void one_step(kiln_backend *cuda) {
    kiln_model *a = seed_on(kt_cpu()), *b = seed_on(cuda);
    copy_weights(a, b);
    kiln_data d = make_data(32);
    kiln_model *ms[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        kiln_plan *p;
        OK(kiln_model_plan(ms[k], 32, &p));
        OK(kiln_tensor_set(p->v[0].y, d.x, sizeof(float) * 32 * 768));
        OK(kiln_tensor_set(p->labels, d.y, sizeof(int32_t) * 32));
        OK(kiln_model_forward(ms[k], p, true, true, 1));
        OK(kiln_model_loss(ms[k], p, true));
        OK(kiln_model_backward(ms[k], p, 1));
    }
    OK(kiln_backend_synchronize(cuda));
    for (int i = 0; i < a->n_nodes; i++)
        for (int w = 0; w < a->nodes[i].n_w; w++) {
            if (!a->nodes[i].g[w]) continue;
            float *ga = kt_get_f32(a->nodes[i].g[w]), *gb = kt_get_f32(b->nodes[i].g[w]);
            kt_expect_close(a->nodes[i].w_name[w], gb, ga, kiln_tensor_numel(a->nodes[i].g[w]), 1e-4);
            free(ga);
            free(gb);
        }
    kiln_model_free(a);
    kiln_model_free(b);
    free((void *)d.x);
    free((void *)d.y);
}

typedef struct curve { double loss[64]; int n; } curve;

static void record(void *ctx, int64_t step, int epoch, double loss, double acc) {
    curve *c = ctx;
    if (c->n < 64) c->loss[c->n++] = loss;
}

static void loss_curve(kiln_backend *cuda) {
    kiln_model *a = seed_on(kt_cpu()), *b = seed_on(cuda);
    copy_weights(a, b);
    kiln_data d = make_data(50 * 16);
    curve ca = {0}, cb = {0};
    kiln_fit_config fc = kiln_fit_defaults();
    fc.verbose = 0;
    fc.batch_size = 16;
    fc.seed = 2;
    fc.log_every = 1;
    fc.on_step = record;
    fc.on_step_ctx = &ca;
    OK(kiln_model_fit(a, &d, &fc, NULL));
    fc.on_step_ctx = &cb;
    OK(kiln_model_fit(b, &d, &fc, NULL));
    cr_assert_eq(ca.n, 50);
    cr_assert_eq(cb.n, 50);
    for (int s = 0; s < 50; s++)
        cr_expect(fabs(cb.loss[s] - ca.loss[s]) <= 1e-2 * fabs(ca.loss[s]), "step %d: cuda loss %.7g, cpu %.7g", s + 1,
                  cb.loss[s], ca.loss[s]);
    kiln_model_free(a);
    kiln_model_free(b);
    free((void *)d.x);
    free((void *)d.y);
}

/* seed-cnn has convolutions: cuDNN's, so a GPU only (not the CUDA emulator) */
Test(model_parity, one_step_gradients) { one_step(kt_gpu_or_skip()); }
Test(model_parity, fifty_step_loss_curve, .timeout = 300) { loss_curve(kt_gpu_or_skip()); }
/* the same on a second CPU backend: shows the comparison itself sound (it matches exactly) */
Test(model_parity_rows, cpu_self_one_step) { one_step(kt_cpu_second()); }
Test(model_parity_rows, cpu_self_loss_curve, .timeout = 300) { loss_curve(kt_cpu_second()); }
