/* test_hostile_cli.c: the library side of the `kiln` command's hostile-input fixes (issue 10):
 * fit leaves its history empty on every early return (the caller frees it); the optimizer's
 * step count stops at KILN_ITERATIONS_MAX instead of overflowing; a checkpoint's kiln.* numbers
 * are checked before anything of the model is touched, at the edges of their ranges; a full
 * checkpoint missing optimizer state is refused with the model untouched; layer
 * names kiln reserves for its checkpoints are refused by kiln_model_add and the JSON reader,
 * and names beside them work. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datafiles.h"
#include "harness.h"
#include "kiln/kiln.h"
#include "model_impl.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

/* n seeded examples for small_model (free x and y) */
static kiln_data small_data(int n) {
    kt_rng r;
    kt_rng_seed(&r, 77);
    float *x = malloc(sizeof(float) * (size_t)n * 108);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    cr_assert(x && y);
    for (int i = 0; i < n; i++) {
        y[i] = (int32_t)(kt_next(&r) % 4);
        for (int j = 0; j < 108; j++) x[i * 108 + j] = (float)kt_uniform(&r, 0.1, 1.0);
    }
    return (kiln_data){x, y, NULL, n};
}

static void free_data(kiln_data d) {
    free((void *)d.x);
    free((void *)d.y);
}

/* a history the caller never initialized: fit must empty it before any early return */
Test(hostile_cli, fit_empties_the_history_on_early_failure) {
    kiln_model *m = kt_small_model(1);
    kiln_data d = small_data(8);
    kiln_fit_config fc = kiln_fit_defaults();
    fc.verbose = 0;
    fc.batch_size = 4;
    static const int bad_epochs[][2] = {{-5, 2}, {0, -1}};
    for (int k = 0; k < 2; k++) {
        fc.initial_epoch = bad_epochs[k][0];
        fc.epochs = bad_epochs[k][1];
        kiln_history h;
        memset(&h, 0xa5, sizeof h);
        kt_expect_error(kiln_model_fit(m, &d, &fc, &h), KILN_ERR_INVALID_ARG, "must be >= 0");
        cr_expect(h.logs == NULL && h.epochs == 0 && !h.stopped_early, "case %d: history not emptied", k);
        kiln_history_free(&h); /* what the CLI does: must be safe */
    }
    free_data(d);
    kiln_model_free(m);
}

/* at KILN_ITERATIONS_MAX steps the next step is refused, with nothing overflowing */
Test(hostile_cli, step_count_stops_at_its_limit) {
    kiln_model *m = kt_small_model(2);
    kiln_data d = small_data(4);
    kiln_fit_config fc = kiln_fit_defaults();
    fc.verbose = 0;
    fc.batch_size = 4;
    m->iterations = KILN_ITERATIONS_MAX;
    kt_expect_error(kiln_model_fit(m, &d, &fc, NULL), KILN_ERR_INVALID_ARG, "has taken 9007199254740992 optimizer steps");
    cr_expect_eq(kiln_model_iterations(m), KILN_ITERATIONS_MAX);
    m->iterations = INT64_MAX; /* whatever set it: refused too */
    kt_expect_error(kiln_model_fit(m, &d, &fc, NULL), KILN_ERR_INVALID_ARG, "has taken 9223372036854775807 optimizer steps");
    m->iterations = KILN_ITERATIONS_MAX - 1; /* the last step kiln counts still runs */
    OK(kiln_model_fit(m, &d, &fc, NULL));
    cr_expect_eq(kiln_model_iterations(m), KILN_ITERATIONS_MAX);
    free_data(d);
    kiln_model_free(m);
}

/* a full checkpoint of a (trained) with metadata key set to value, loaded into b */
static kiln_status load_with(kiln_model *a, kiln_model *b, const char *key, const char *value, int *epoch) {
    OK(kiln_model_save(a, kt_path("a.safetensors"), true, 3));
    kt_safetensors_set_meta(kt_path("a.safetensors"), kt_path("b.safetensors"), key, value);
    return kiln_model_load(b, kt_path("b.safetensors"), false, true, epoch);
}

/* every kiln.* number: the edges of its range load; one past them, junk and overflow are refused
 * naming the file and key, and the refused load leaves the model as it was */
Test(hostile_cli, checkpoint_numbers_checked_before_loading) {
    kt_tmpdir_new();
    kiln_model *a = kt_small_model(3), *b = kt_small_model(4), *b0 = kt_small_model(4);
    kiln_data d = small_data(8);
    kiln_fit_config fc = kiln_fit_defaults();
    fc.verbose = 0;
    fc.batch_size = 4;
    fc.seed = 99;
    OK(kiln_model_fit(a, &d, &fc, NULL)); /* nonzero Adam state and step count */
    static const char *const good[][3] = {
        {"kiln.iterations", "9007199254740992", NULL}, {"kiln.iterations", "0", NULL},
        {"kiln.epoch", "2147483647", NULL}, {"kiln.epoch", "0", NULL},
        {"kiln.seed", "18446744073709551615", NULL}, {"kiln.learning_rate", "1e-300", NULL},
    };
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        int epoch = -1;
        OK(load_with(a, b, good[k][0], good[k][1], &epoch));
        kt_expect_same_weights(a, b);
    }
    int epoch = -1;
    OK(load_with(a, b, "kiln.epoch", "2147483647", &epoch));
    cr_expect_eq(epoch, 2147483647);
    OK(load_with(a, b, "kiln.seed", "18446744073709551615", &epoch));
    cr_expect_eq(kiln_model_fit_seed(b), UINT64_MAX);
    static const char *const bad[][3] = {
        {"kiln.iterations", "9007199254740993", "not an integer in [0, 9007199254740992]"},
        {"kiln.iterations", "1 ", "not an integer"}, {"kiln.iterations", "+1", "not an integer"},
        {"kiln.epoch", "2147483648", "not an integer in [0, 2147483647]"}, {"kiln.epoch", " 1", "not an integer"},
        {"kiln.epoch", "0x10", "not an integer"}, {"kiln.seed", "18446744073709551616", "not an integer"},
        {"kiln.seed", "-1", "not an integer"}, {"kiln.learning_rate", "0", "not a finite number > 0"},
        {"kiln.learning_rate", "-0.1", "not a finite number > 0"}, {"kiln.learning_rate", "inf", "not a finite number > 0"},
        {"kiln.learning_rate", "1e999", "not a finite number > 0"}, {"kiln.learning_rate", "", "not a finite number > 0"},
        {"kiln.learning_rate", " 0.1", "not a finite number > 0"}, {"kiln.learning_rate", "0x1p-3", "not a finite number > 0"},
        {"kiln.checkpoint", "weights", "not a full checkpoint (kiln.checkpoint is 'weights'"},
    };
    kiln_model *fresh = kt_small_model(4);
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char needle[160];
        snprintf(needle, sizeof needle, "b.safetensors: metadata %s is '%s', %s", bad[k][0], bad[k][1], bad[k][2]);
        bool meta = strncmp(bad[k][0], "kiln.checkpoint", 15) != 0;
        epoch = -7;
        kt_expect_error(load_with(a, fresh, bad[k][0], bad[k][1], &epoch), KILN_ERR_FORMAT, meta ? needle : bad[k][2]);
        cr_expect_eq(epoch, -7, "%s '%s': *epoch written", bad[k][0], bad[k][1]);
        cr_expect_eq(kiln_model_iterations(fresh), 0, "%s '%s': step count changed", bad[k][0], bad[k][1]);
        kt_expect_same_weights(fresh, b0); /* nothing of the file was loaded */
    }
    kiln_model_free(fresh);
    free_data(d);
    kiln_model_free(a);
    kiln_model_free(b);
    kiln_model_free(b0);
    kt_tmpdir_remove();
}

/* a full checkpoint without the optimizer state the model has is refused, naming the slot,
 * before any weight is loaded */
Test(hostile_cli, resume_without_optimizer_state_is_refused) {
    kt_tmpdir_new();
    kiln_model *sgd, *adam = kt_small_model(6), *adam0 = kt_small_model(6);
    OK(kiln_model_builtin("seed-cnn", 6, 6, 3, 4, &sgd));
    OK(kiln_model_build(sgd, kt_cpu(), 5));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_SGD), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    OK(kiln_model_compile(sgd, &cc)); /* SGD without momentum: no state at all */
    OK(kiln_model_save(sgd, kt_path("sgd.safetensors"), true, 1));
    kt_expect_error(kiln_model_load(adam, kt_path("sgd.safetensors"), false, true, NULL), KILN_ERR_FORMAT,
                    "optimizer state 'optimizer.conv2d.kernel.m' of model 'sequential' is missing");
    kt_expect_same_weights(adam, adam0); /* untouched */
    OK(kiln_model_load(adam, kt_path("sgd.safetensors"), false, false, NULL)); /* as weights: fine */
    OK(kiln_model_load(sgd, kt_path("sgd.safetensors"), false, true, NULL));   /* by its own optimizer: fine */
    kt_expect_error(kiln_model_save(sgd, kt_path("neg.safetensors"), true, -1), KILN_ERR_INVALID_ARG, "epoch -1 is negative");
    kiln_model_free(sgd);
    kiln_model_free(adam);
    kiln_model_free(adam0);
    kt_tmpdir_remove();
}

/* one Input(6,) and one Dense named `name`, or the status of adding it */
static kiln_status add_dense(const char *name, kiln_model **out) {
    int64_t shape[1] = {6};
    kiln_layer_config in = kiln_input_layer(1, shape), dense = kiln_dense_layer(3, KILN_ACT_LINEAR);
    snprintf(dense.name, sizeof dense.name, "%s", name);
    OK(kiln_model_new("m", out));
    OK(kiln_model_add(*out, &in, 0, NULL, NULL));
    return kiln_model_add(*out, &dense, 0, NULL, NULL);
}

/* "optimizer", "kiln" and names under them are refused, naming the layer; names beside them keep
 * their weights through a full checkpoint */
Test(hostile_cli, reserved_layer_names) {
    static const char *const reserved[] = {"optimizer", "optimizer.head", "optimizer.", "kiln", "kiln.model"};
    for (size_t k = 0; k < sizeof reserved / sizeof reserved[0]; k++) {
        kiln_model *m;
        char needle[96];
        snprintf(needle, sizeof needle, "kiln_model_add: layer '%s': names", reserved[k]);
        kt_expect_error(add_dense(reserved[k], &m), KILN_ERR_INVALID_ARG, needle);
        cr_expect_eq(kiln_model_layer_count(m), 1);
        kiln_model_free(m);
    }
    static const char json[] =
        "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
        "{\"name\": \"in\", \"batch_shape\": [null, 6]}}, {\"class_name\": \"Dense\", \"config\": {\"name\": "
        "\"optimizer.head\", \"units\": 3}}]}}";
    kiln_model *j = NULL;
    kt_expect_error(kiln_model_from_json(json, strlen(json), &j), KILN_ERR_INVALID_ARG,
                    "layer 'optimizer.head': names 'optimizer' and 'optimizer.*' are reserved");
    cr_expect_null(j);
    kt_tmpdir_new();
    static const char *const beside[] = {"optimizer_head", "optimizers", "kiln2", "my.optimizer", "Optimizer.x"};
    for (size_t k = 0; k < sizeof beside / sizeof beside[0]; k++) {
        kiln_model *a, *b;
        OK(add_dense(beside[k], &a));
        OK(add_dense(beside[k], &b));
        OK(kiln_model_build(a, kt_cpu(), 1));
        OK(kiln_model_build(b, kt_cpu(), 2));
        kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_MEAN_SQUARED_ERROR, false};
        OK(kiln_model_compile(a, &cc));
        OK(kiln_model_compile(b, &cc));
        OK(kiln_model_save(a, kt_path("r.safetensors"), true, 1));
        OK(kiln_model_load(b, kt_path("r.safetensors"), false, true, NULL));
        kt_expect_same_weights(a, b);
        kiln_model_free(a);
        kiln_model_free(b);
    }
    kt_tmpdir_remove();
}
