/* test_model.c: the Keras workflow through the public C API on the CPU: the seed model's
 * summary counts, learning on a generated dataset, the fine-tuning recipe (freeze all but
 * BatchNormalization: frozen weights bitwise unchanged, BN parameters changed), graph models
 * with Add, and bad input refused with clear errors. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kiln/kiln.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

/* the Sequential model of the issue, for (h, w, 3) inputs */
static kiln_model *seed_cnn(int h, int w, bool with_bn) {
    kiln_model *m;
    OK(kiln_model_new("sequential", &m));
    int64_t in[3] = {h, w, 3};
    kiln_layer_config l = kiln_input_layer(3, in);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    l = kiln_conv2d_layer(32, 3, 3, KILN_ACT_RELU);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    if (with_bn) { l = kiln_batchnorm_layer(); OK(kiln_model_add(m, &l, 0, NULL, NULL)); }
    l = kiln_max_pool2d_layer(2, 2);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    l = kiln_flatten_layer();
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    l = kiln_dense_layer(64, KILN_ACT_RELU);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    if (with_bn) { l = kiln_batchnorm_layer(); OK(kiln_model_add(m, &l, 0, NULL, NULL)); }
    l = kiln_dense_layer(10, KILN_ACT_SOFTMAX);
    OK(kiln_model_add(m, &l, 0, NULL, NULL));
    return m;
}

static void compile_adam(kiln_model *m, double lr) {
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    cc.optimizer.adam.learning_rate = lr;
    OK(kiln_model_compile(m, &cc));
}

Test(model, seed_cnn_summary_counts) {
    kiln_model *m = seed_cnn(32, 32, true);
    OK(kiln_model_build(m, kt_cpu(), 1));
    int64_t t, tr, nt;
    kiln_model_param_counts(m, &t, &tr, &nt);
    cr_expect_eq(t, 462794);
    cr_expect_eq(tr, 462602);
    cr_expect_eq(nt, 192);
    compile_adam(m, 1e-3);
    OK(kiln_model_freeze_all_but(m, KILN_LAYER_BATCHNORM));
    kiln_model_param_counts(m, &t, &tr, &nt);
    cr_expect_eq(tr, 192);
    cr_expect_eq(nt, 462602);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    OK(kiln_model_summary(m, f));
    fclose(f);
    cr_expect(strstr(text, "conv2d (Conv2D)") && strstr(text, "(None, 30, 30, 32)"), "%s", text);
    cr_expect(strstr(text, "batch_normalization_1 (Batc"), "%s", text); /* wrapped, as Keras does */
    cr_expect(strstr(text, "dense_1 (Dense)") && strstr(text, "(None, 10)"), "%s", text);
    cr_expect(strstr(text, "Total params: 462,794"), "%s", text);
    cr_expect(strstr(text, "Trainable params: 192"), "%s", text);
    cr_expect(strstr(text, "Non-trainable params: 462,602"), "%s", text);
    free(text);
    cr_expect_not_null(kiln_model_find_weight(m, "conv2d.kernel"));
    cr_expect_not_null(kiln_model_find_weight(m, "batch_normalization.moving_variance"));
    cr_expect_not_null(kiln_model_find_weight(m, "dense_1.bias"));
    kiln_model_free(m);
}

/* a learnable task: class = which quadrant holds a bright square, plus noise */
static void make_data(kt_rng *r, int64_t n, int h, int w, float **x, int32_t **y) {
    *x = malloc(sizeof(float) * (size_t)(n * h * w * 3));
    *y = malloc(sizeof(int32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        int c = (int)(kt_next(r) % 4);
        (*y)[i] = c;
        int y0 = (c / 2) * h / 2, x0 = (c % 2) * w / 2;
        for (int a = 0; a < h; a++)
            for (int b = 0; b < w; b++)
                for (int ch = 0; ch < 3; ch++) {
                    bool in = a >= y0 + 1 && a < y0 + h / 2 - 1 && b >= x0 + 1 && b < x0 + w / 2 - 1;
                    (*x)[((i * h + a) * w + b) * 3 + ch] = (float)((in ? 0.8 : 0.2) + 0.15 * kt_normal(r));
                }
    }
}

Test(model, seed_cnn_learns_on_cpu, .timeout = 300) {
    kt_rng r;
    kt_rng_seed(&r, 77);
    float *x, *xv;
    int32_t *y, *yv;
    make_data(&r, 512, 12, 12, &x, &y);
    make_data(&r, 128, 12, 12, &xv, &yv);
    kiln_model *m = seed_cnn(12, 12, true);
    OK(kiln_model_build(m, kt_cpu(), 3));
    compile_adam(m, 1e-3);
    kiln_fit_config fc = kiln_fit_defaults();
    fc.epochs = 3;
    fc.verbose = 0;
    fc.seed = 5;
    fc.validation = (kiln_data){xv, yv, NULL, 128};
    kiln_data d = {x, y, NULL, 512};
    kiln_history h;
    OK(kiln_model_fit(m, &d, &fc, &h));
    cr_assert_eq(h.epochs, 3);
    cr_expect_lt(h.logs[2].loss, h.logs[0].loss, "loss did not fall: %g -> %g", h.logs[0].loss, h.logs[2].loss);
    cr_expect_gt(h.logs[2].val_accuracy, 0.6, "val accuracy %g (chance 0.25)", h.logs[2].val_accuracy);
    double loss, acc;
    OK(kiln_model_evaluate(m, &fc.validation, 32, &loss, &acc));
    cr_expect_float_eq(acc, h.logs[2].val_accuracy, 1e-12, "evaluate %g vs history %g", acc, h.logs[2].val_accuracy);
    float *probs = malloc(sizeof(float) * 128 * 4 * 10);
    OK(kiln_model_predict(m, xv, 128, 50, probs)); /* batch 50: a partial last batch */
    for (int i = 0; i < 128; i++) {
        double s = 0;
        for (int k = 0; k < 10; k++) s += probs[i * 10 + k];
        cr_expect(fabs(s - 1.0) < 1e-5, "row %d sums to %g", i, s);
    }
    free(probs);
    kiln_history_free(&h);
    kiln_model_free(m);
    free(x); free(y); free(xv); free(yv);
}

Test(model, fine_tuning_recipe, .timeout = 300) {
    kt_rng r;
    kt_rng_seed(&r, 78);
    float *x;
    int32_t *y;
    make_data(&r, 160, 10, 10, &x, &y);
    kiln_data d = {x, y, NULL, 160};
    kiln_model *m = seed_cnn(10, 10, true);
    OK(kiln_model_build(m, kt_cpu(), 4));
    compile_adam(m, 1e-3);
    kiln_fit_config fc = kiln_fit_defaults();
    fc.verbose = 0;
    fc.validation_split = 0.2;
    OK(kiln_model_fit(m, &d, &fc, NULL));
    /* freeze all but BN; snapshot every weight */
    OK(kiln_model_freeze_all_but(m, KILN_LAYER_BATCHNORM));
    int nw = kiln_model_weight_count(m);
    void *before[32];
    for (int i = 0; i < nw; i++) {
        kiln_tensor *t;
        OK(kiln_model_weight(m, i, NULL, &t, NULL));
        before[i] = kt_get_bytes(t);
    }
    OK(kiln_model_fit(m, &d, &fc, NULL));
    for (int i = 0; i < nw; i++) {
        const char *name;
        kiln_tensor *t;
        bool trainable;
        OK(kiln_model_weight(m, i, &name, &t, &trainable));
        void *after = kt_get_bytes(t);
        bool same = !memcmp(before[i], after, kiln_tensor_nbytes(t));
        bool is_bn = strstr(name, "batch_normalization") != NULL;
        bool is_moving = strstr(name, "moving_") != NULL;
        if (!is_bn) cr_expect(same, "frozen weight %s changed", name);
        else if (!is_moving) cr_expect(!same, "trainable BN weight %s did not change", name);
        /* moving statistics keep updating: BN layers are trainable and in training mode */
        else cr_expect(!same, "BN moving statistic %s did not update", name);
        free(after);
    }
    /* unfreeze and fine-tune with a lower rate: everything moves */
    OK(kiln_model_set_all_trainable(m, true));
    OK(kiln_model_set_learning_rate(m, 1e-4));
    OK(kiln_model_fit(m, &d, &fc, NULL));
    for (int i = 0; i < nw; i++) {
        kiln_tensor *t;
        const char *name;
        OK(kiln_model_weight(m, i, &name, &t, NULL));
        void *after = kt_get_bytes(t);
        cr_expect(memcmp(before[i], after, kiln_tensor_nbytes(t)), "weight %s unchanged after unfreezing", name);
        free(after);
        free(before[i]);
    }
    kiln_model_free(m);
    free(x); free(y);
}

Test(model, frozen_bn_runs_in_inference_mode) {
    kt_rng r;
    kt_rng_seed(&r, 79);
    float *x;
    int32_t *y;
    make_data(&r, 64, 8, 8, &x, &y);
    kiln_data d = {x, y, NULL, 64};
    kiln_model *m = seed_cnn(8, 8, true);
    OK(kiln_model_build(m, kt_cpu(), 4));
    compile_adam(m, 1e-3);
    OK(kiln_model_set_trainable(m, kiln_model_find_layer(m, "batch_normalization"), false));
    kiln_tensor *mm = kiln_model_find_weight(m, "batch_normalization.moving_mean");
    kiln_tensor *g = kiln_model_find_weight(m, "batch_normalization.gamma");
    void *mm0 = kt_get_bytes(mm), *g0 = kt_get_bytes(g);
    kiln_fit_config fc = kiln_fit_defaults();
    fc.verbose = 0;
    OK(kiln_model_fit(m, &d, &fc, NULL));
    void *mm1 = kt_get_bytes(mm), *g1 = kt_get_bytes(g);
    kt_expect_bitwise("frozen BN moving mean", mm0, mm1, kiln_tensor_nbytes(mm));
    kt_expect_bitwise("frozen BN gamma", g0, g1, kiln_tensor_nbytes(g));
    free(mm0); free(mm1); free(g0); free(g1);
    kiln_model_free(m);
    free(x); free(y);
}

Test(model, deterministic_replay_on_cpu) {
    kt_rng r;
    kt_rng_seed(&r, 80);
    float *x;
    int32_t *y;
    make_data(&r, 96, 8, 8, &x, &y);
    kiln_data d = {x, y, NULL, 96};
    void *w[2];
    for (int run = 0; run < 2; run++) {
        kiln_model *m = seed_cnn(8, 8, true);
        OK(kiln_model_build(m, kt_cpu(), 11));
        compile_adam(m, 1e-3);
        kiln_fit_config fc = kiln_fit_defaults();
        fc.verbose = 0;
        fc.epochs = 2;
        fc.seed = 3;
        OK(kiln_model_fit(m, &d, &fc, NULL));
        w[run] = kt_get_bytes(kiln_model_find_weight(m, "dense.kernel"));
        kiln_model_free(m);
    }
    kt_expect_bitwise("dense.kernel after two identical fits", w[0], w[1], sizeof(float) * 9 * 32 * 64);
    free(w[0]); free(w[1]); free(x); free(y);
}

Test(model, bad_input_is_refused) {
    kiln_model *m = seed_cnn(8, 8, false);
    OK(kiln_model_build(m, kt_cpu(), 1));
    compile_adam(m, 1e-3);
    float x[2 * 8 * 8 * 3] = {0.5f};
    int32_t y[2] = {3, 12};
    kiln_data d = {x, y, NULL, 2};
    kiln_fit_config fc = kiln_fit_defaults();
    fc.verbose = 0;
    cr_expect_eq(kiln_model_fit(m, &d, &fc, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "label 1 is 12, outside the model's 10 classes"), "%s", kiln_last_error());
    d.n = 0;
    cr_expect_eq(kiln_model_fit(m, &d, &fc, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "empty"), "%s", kiln_last_error());
    d.n = 2;
    y[1] = 1;
    fc.batch_size = 0;
    cr_expect_eq(kiln_model_fit(m, &d, &fc, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "batch size must be >= 1"), "%s", kiln_last_error());
    fc.batch_size = 2;
    x[5] = NAN; /* a NaN input: the loss is NaN at the first step */
    cr_expect_eq(kiln_model_fit(m, &d, &fc, NULL), KILN_ERR_NUMERIC);
    cr_expect(strstr(kiln_last_error(), "loss is NaN at epoch 1, step 1"), "%s", kiln_last_error());
    kiln_model_free(m);
    /* a Conv2D after a Flatten: the error names the layer (a Dense after a Conv2D is Keras'
     * Dense on the last axis, test_keras_layers2.c) */
    kiln_model *g;
    OK(kiln_model_new("bad", &g));
    int64_t in[3] = {8, 8, 3};
    kiln_layer_config l = kiln_input_layer(3, in);
    OK(kiln_model_add(g, &l, 0, NULL, NULL));
    l = kiln_flatten_layer();
    OK(kiln_model_add(g, &l, 0, NULL, NULL));
    l = kiln_conv2d_layer(4, 3, 3, KILN_ACT_RELU);
    OK(kiln_model_add(g, &l, 0, NULL, NULL));
    cr_expect_eq(kiln_model_build(g, kt_cpu(), 1), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "layer 'conv2d' (Conv2D)") && strstr(kiln_last_error(), "gives 1 axes"), "%s", kiln_last_error());
    kiln_model_free(g);
}

/* every batch end of the second epoch: the backend has not asked the system for memory since
 * the end of the first (buffers are planned once per batch size, the partial one included) */
typedef struct alloc_watch { uint64_t first_epoch_end, max_later; int64_t steps; } alloc_watch;

static kiln_status watch_batch(void *ctx, kiln_model *m, int64_t step, double loss) {
    alloc_watch *w = ctx;
    kiln_memory_stats st;
    kiln_status s = kiln_backend_memory_stats(kiln_model_backend(m), &st);
    if (step > w->steps && st.system_allocs > w->max_later) w->max_later = st.system_allocs;
    return s;
}

static kiln_status watch_epoch(void *ctx, kiln_model *m, const kiln_epoch_logs *l, bool *stop) {
    alloc_watch *w = ctx;
    kiln_memory_stats st;
    kiln_status s = kiln_backend_memory_stats(kiln_model_backend(m), &st);
    if (l->epoch == 0) w->first_epoch_end = w->max_later = st.system_allocs;
    return s;
}

Test(model, no_allocation_in_steady_steps) {
    kt_rng r;
    kt_rng_seed(&r, 81);
    float *x;
    int32_t *y;
    make_data(&r, 70, 8, 8, &x, &y); /* 70 = 4 batches of 16 and one of 6 */
    kiln_data d = {x, y, NULL, 70};
    kiln_model *m = seed_cnn(8, 8, true);
    OK(kiln_model_build(m, kt_cpu(), 2));
    compile_adam(m, 1e-3);
    alloc_watch w = {0, 0, 5};
    kiln_callback cb = {&w, NULL, watch_epoch, watch_batch, NULL, NULL};
    kiln_fit_config fc = kiln_fit_defaults();
    fc.verbose = 0;
    fc.epochs = 2;
    fc.batch_size = 16;
    fc.validation_split = 0.1;
    fc.callbacks = &cb;
    fc.n_callbacks = 1;
    OK(kiln_model_fit(m, &d, &fc, NULL));
    cr_expect_gt(w.first_epoch_end, 0);
    cr_expect_eq(w.max_later, w.first_epoch_end, "system allocations grew from %llu to %llu in the second epoch",
                 (unsigned long long)w.first_epoch_end, (unsigned long long)w.max_later);
    kiln_model_free(m);
    free(x); free(y);
}
