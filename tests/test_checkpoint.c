/* test_checkpoint.c: model checkpoints and the built-in callbacks: a save/load round trip bit
 * for bit; resuming from a full checkpoint gives the same weights as an uninterrupted run on
 * the CPU; --init-weights style subset loads; mismatches refused with the name; EarlyStopping,
 * ReduceLROnPlateau, CSVLogger, ModelCheckpoint. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "kiln/kiln.h"
#include "kiln/safetensors.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

static char dir[64];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/kiln-ckpt-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static const char *path(const char *name) {
    static char p[4][128];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static kiln_data data(kt_rng *r, int n) {
    float *x = malloc(sizeof(float) * (size_t)n * 6 * 6 * 3);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++) {
        y[i] = (int32_t)(kt_next(r) % 4);
        for (int j = 0; j < 108; j++) x[i * 108 + j] = (float)(kt_uniform(r, 0, 1) + 0.3 * (j % 4 == y[i]));
    }
    return (kiln_data){x, y, NULL, n};
}

static void free_data(kiln_data d) {
    free((void *)d.x);
    free((void *)d.y);
}


Test(checkpoint, round_trip_and_names) {
    make_dir();
    kiln_model *a = kt_small_model(1), *b = kt_small_model(2);
    OK(kiln_model_save(a, path("w.safetensors"), false, 0));
    OK(kiln_model_load(b, path("w.safetensors"), false, false, NULL));
    kt_expect_same_weights(a, b);
    kiln_safetensors *st;
    OK(kiln_safetensors_open(path("w.safetensors"), &st));
    const kiln_st_entry *k = kiln_safetensors_find(st, "conv2d.kernel");
    cr_assert_not_null(k);
    cr_expect(k->ndim == 4 && k->shape[0] == 3 && k->shape[1] == 3 && k->shape[2] == 3 && k->shape[3] == 32);
    cr_expect_not_null(kiln_safetensors_find(st, "batch_normalization.moving_variance"));
    cr_expect_not_null(kiln_safetensors_find(st, "dense_1.bias"));
    const char *json = kiln_safetensors_metadata(st, "kiln.model");
    cr_assert_not_null(json);
    cr_expect(strstr(json, "\"class_name\":\"Sequential\"") && strstr(json, "\"filters\":32"), "%s", json);
    kiln_safetensors_free(st);
    kiln_model_free(a);
    kiln_model_free(b);
}

Test(checkpoint, mismatches_are_refused) {
    make_dir();
    kiln_model *a = kt_small_model(1), *big;
    OK(kiln_model_save(a, path("a.safetensors"), false, 0));
    OK(kiln_model_builtin("seed-cnn", 8, 8, 3, 4, &big)); /* dense.kernel differs in shape */
    OK(kiln_model_build(big, kt_cpu(), 1));
    cr_expect_eq(kiln_model_load(big, path("a.safetensors"), false, false, NULL), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "'dense.kernel'"), "%s", kiln_last_error());
    /* a file with only the conv kernel: an error unless a subset is allowed */
    kiln_tensor *k = kiln_model_find_weight(a, "conv2d.kernel");
    void *h = kt_get_bytes(k);
    int64_t shape[4] = {3, 3, 3, 32};
    kiln_st_tensor one = {"conv2d.kernel", KILN_ST_F32, 4, shape, h};
    OK(kiln_safetensors_write(path("k.safetensors"), &one, 1, NULL, 0));
    cr_expect_eq(kiln_model_load(a, path("k.safetensors"), false, false, NULL), KILN_ERR_FORMAT);
    cr_expect(strstr(kiln_last_error(), "is missing"), "%s", kiln_last_error());
    OK(kiln_model_load(a, path("k.safetensors"), true, false, NULL));
    /* a name the model lacks */
    kiln_st_tensor stray = {"conv2d_9.kernel", KILN_ST_F32, 4, shape, h};
    OK(kiln_safetensors_write(path("s.safetensors"), &stray, 1, NULL, 0));
    cr_expect_eq(kiln_model_load(a, path("s.safetensors"), true, false, NULL), KILN_ERR_FORMAT);
    cr_expect(strstr(kiln_last_error(), "'conv2d_9.kernel' matches no weight"), "%s", kiln_last_error());
    free(h);
    kiln_model_free(a);
    kiln_model_free(big);
}

Test(checkpoint, resume_equals_uninterrupted, .timeout = 120) {
    make_dir();
    kt_rng r;
    kt_rng_seed(&r, 3);
    kiln_data d = data(&r, 40);
    kiln_fit_config fc = kiln_fit_defaults();
    fc.verbose = 0;
    fc.batch_size = 8;
    fc.seed = 9;
    /* uninterrupted: 4 epochs */
    kiln_model *a = kt_small_model(5);
    fc.epochs = 4;
    OK(kiln_model_fit(a, &d, &fc, NULL));
    /* interrupted after 2, saved, restored into a fresh model, continued to 4 */
    kiln_model *b = kt_small_model(5);
    fc.epochs = 2;
    OK(kiln_model_fit(b, &d, &fc, NULL));
    OK(kiln_model_save(b, path("full.safetensors"), true, 2));
    kiln_model_free(b);
    kiln_model *c = kt_small_model(77); /* other initial weights: all must come from the file */
    int epoch = -1;
    OK(kiln_model_load(c, path("full.safetensors"), false, true, &epoch));
    cr_expect_eq(epoch, 2);
    cr_expect_eq(kiln_model_iterations(c), 10);
    cr_expect_eq(kiln_model_fit_seed(c), 9);
    fc.seed = kiln_model_fit_seed(c);
    fc.epochs = 4;
    fc.initial_epoch = epoch;
    OK(kiln_model_fit(c, &d, &fc, NULL));
    kt_expect_same_weights(a, c);
    kiln_model_free(a);
    kiln_model_free(c);
    free_data(d);
}

Test(callbacks, early_stopping_plateau_csv_checkpoint, .timeout = 120) {
    make_dir();
    kt_rng r;
    kt_rng_seed(&r, 4);
    kiln_data d = data(&r, 32);
    kiln_model *m = kt_small_model(6);
    kiln_callback cbs[4];
    /* val_loss can't improve by 1e9: stop after patience 2, i.e. at the third epoch */
    OK(kiln_early_stopping((kiln_monitor){"val_loss", 1e9, 2}, true, &cbs[0]));
    OK(kiln_reduce_lr_on_plateau((kiln_monitor){"val_loss", 1e9, 1}, 0.5, 0, 1e-9, &cbs[1]));
    OK(kiln_csv_logger(path("history.csv"), false, &cbs[2]));
    OK(kiln_model_checkpoint(path("best.safetensors"), (kiln_monitor){"val_loss", 0, 0}, true, &cbs[3]));
    kiln_fit_config fc = kiln_fit_defaults();
    fc.verbose = 0;
    fc.epochs = 10;
    fc.validation_split = 0.25;
    fc.callbacks = cbs;
    fc.n_callbacks = 4;
    kiln_history h;
    OK(kiln_model_fit(m, &d, &fc, &h));
    cr_expect(h.stopped_early);
    cr_expect_eq(h.epochs, 3, "ran %d epochs", h.epochs);
    /* the first epoch sets the best; epochs 2 and 3 each wait and halve the rate */
    cr_expect_float_eq(kiln_model_learning_rate(m), 0.25e-3, 1e-12, "lr %g", kiln_model_learning_rate(m));
    cr_expect_float_eq(h.logs[1].learning_rate, 1e-3, 1e-12);
    FILE *f = fopen(path("history.csv"), "r");
    cr_assert_not_null(f);
    char line[512];
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_expect_str_eq(line, "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n");
    int rows = 0;
    while (fgets(line, sizeof line, f)) rows++;
    fclose(f);
    cr_expect_eq(rows, 3);
    cr_expect_eq(access(path("best.safetensors"), R_OK), 0);
    for (int i = 0; i < 4; i++) kiln_callback_free(&cbs[i]);
    kiln_history_free(&h);
    kiln_model_free(m);
    free_data(d);
}
