/* test_fit_source.c: kiln_fit_config.batches, fit taking its batches from a source: through a
 * prefetcher (threaded or not) fit gives the same weights and history, bit for bit, as when it
 * copies the rows itself (with a validation split too); with augmentation, the threaded and
 * the unthreaded prefetcher agree and a resumed run equals an uninterrupted one; fit's epoch
 * order is kiln_dataset_shuffle_indices with the documented seed; a source that gives the wrong
 * rows is refused with a message. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "kiln/kiln.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

static kiln_model *small_model(void) {
    kiln_model *m;
    OK(kiln_model_builtin("seed-cnn", 6, 6, 3, 4, &m));
    OK(kiln_model_build(m, kt_cpu(), 11));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    OK(kiln_model_compile(m, &cc));
    return m;
}

static kiln_dataset *small_data(int64_t n) {
    kiln_dataset *ds;
    OK(kiln_dataset_new(n, 6, 6, 3, 4, "test rows", &ds));
    kt_rng r;
    kt_rng_seed(&r, 21);
    for (int64_t i = 0; i < n; i++) {
        ds->labels[i] = (int32_t)(kt_next(&r) % 4);
        for (int j = 0; j < 108; j++) ds->images[i * 108 + j] = (float)(kt_uniform(&r, 0, 1) + 0.4 * (j % 4 == ds->labels[i]));
    }
    return ds;
}

static kiln_fit_config config(int epochs) {
    kiln_fit_config fc = kiln_fit_defaults();
    fc.verbose = 0;
    fc.batch_size = 8;
    fc.seed = 4;
    fc.epochs = epochs;
    return fc;
}


/* fit of a fresh model with batches from a prefetcher over ds */
static kiln_model *fit_with_prefetcher(kiln_dataset *ds, const kiln_augment *aug, bool threaded, kiln_fit_config fc,
                                       kiln_history *h) {
    kiln_model *m = small_model();
    kiln_prefetcher *p;
    OK(kiln_prefetcher_new(ds, fc.batch_size, aug, kt_cpu(), threaded, &p));
    kiln_batch_source src = kiln_prefetcher_batch_source(p);
    fc.batches = &src;
    kiln_data d = {ds->images, ds->labels, NULL, ds->n};
    OK(kiln_model_fit(m, &d, &fc, h));
    kiln_prefetcher_free(p);
    return m;
}

Test(fit_source, prefetcher_equals_copying_bit_for_bit, .timeout = 120) {
    kiln_dataset *ds = small_data(45); /* a partial last batch, and one in the validation split */
    kiln_fit_config fc = config(3);
    fc.validation_split = 0.2;
    kiln_data d = {ds->images, ds->labels, NULL, ds->n};
    kiln_model *plain = small_model();
    kiln_history hp, ht, hu;
    OK(kiln_model_fit(plain, &d, &fc, &hp));
    kiln_model *threaded = fit_with_prefetcher(ds, NULL, true, fc, &ht);
    kiln_model *inline_ = fit_with_prefetcher(ds, NULL, false, fc, &hu);
    kt_expect_same_weights(plain, threaded);
    kt_expect_same_weights(plain, inline_);
    cr_assert_eq(ht.epochs, hp.epochs);
    for (int e = 0; e < hp.epochs; e++) {
        cr_expect(hp.logs[e].loss == ht.logs[e].loss && hp.logs[e].accuracy == ht.logs[e].accuracy, "epoch %d", e);
        cr_expect(hp.logs[e].val_loss == ht.logs[e].val_loss && hp.logs[e].val_accuracy == hu.logs[e].val_accuracy, "epoch %d", e);
    }
    kiln_history_free(&hp);
    kiln_history_free(&ht);
    kiln_history_free(&hu);
    kiln_model_free(plain);
    kiln_model_free(threaded);
    kiln_model_free(inline_);
    kiln_dataset_free(ds);
}

Test(fit_source, augmented_runs_repeat_and_resume, .timeout = 120) {
    kiln_dataset *ds = small_data(40);
    kiln_augment aug = {2, true};
    kiln_model *a = fit_with_prefetcher(ds, &aug, true, config(3), NULL);
    kiln_model *b = fit_with_prefetcher(ds, &aug, false, config(3), NULL);
    kt_expect_same_weights(a, b);
    /* interrupted after 2 epochs, resumed into a fresh model */
    char dir[] = "/tmp/kiln-source-XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/full.safetensors", dir);
    kiln_model *c = fit_with_prefetcher(ds, &aug, true, config(2), NULL);
    OK(kiln_model_save(c, path, true, 2));
    kiln_model_free(c);
    kiln_model *d = small_model();
    int epoch;
    OK(kiln_model_load(d, path, false, true, &epoch));
    kiln_prefetcher *p;
    OK(kiln_prefetcher_new(ds, 8, &aug, kt_cpu(), true, &p));
    kiln_batch_source src = kiln_prefetcher_batch_source(p);
    kiln_fit_config fc = config(3);
    fc.initial_epoch = epoch;
    fc.batches = &src;
    kiln_data data = {ds->images, ds->labels, NULL, ds->n};
    OK(kiln_model_fit(d, &data, &fc, NULL));
    kt_expect_same_weights(a, d);
    /* and augmentation changes the result (it is applied at all) */
    kiln_model *plain = fit_with_prefetcher(ds, NULL, true, config(3), NULL);
    float *wa = kt_get_f32(kiln_model_find_weight(a, "conv2d.kernel")), *wp = kt_get_f32(kiln_model_find_weight(plain, "conv2d.kernel"));
    cr_expect(memcmp(wa, wp, sizeof(float) * 3 * 3 * 3 * 32) != 0, "augmentation made no difference");
    free(wa);
    free(wp);
    unlink(path);
    rmdir(dir);
    kiln_prefetcher_free(p);
    kiln_model_free(a);
    kiln_model_free(b);
    kiln_model_free(d);
    kiln_model_free(plain);
    kiln_dataset_free(ds);
}

/* a prefetcher's source that records the order fit gives each epoch */
typedef struct order_log {
    kiln_batch_source inner;
    int64_t order[4][45];
    int64_t n[4];
    int epochs;
} order_log;
static kiln_status log_start(void *ctx, const int64_t *order, int64_t n, uint64_t seed) {
    order_log *l = ctx;
    cr_assert(l->epochs < 4 && n <= 45);
    memcpy(l->order[l->epochs], order, sizeof(int64_t) * (size_t)n);
    l->n[l->epochs++] = n;
    return l->inner.start(l->inner.ctx, order, n, seed);
}
static kiln_status log_next(void *ctx, kiln_batch *out) {
    order_log *l = ctx;
    return l->inner.next(l->inner.ctx, out);
}
static void log_stop(void *ctx) {
    order_log *l = ctx;
    l->inner.stop(l->inner.ctx);
}

/* fit's order for epoch e is kiln_dataset_shuffle_indices(idx, n, seed * 1000003 + e)
 * (kiln/data.h), element by element, from the first epoch or a resumed one */
Test(fit_source, epoch_order_is_shuffle_indices, .timeout = 120) {
    kiln_dataset *ds = small_data(45);
    kiln_data d = {ds->images, ds->labels, NULL, ds->n};
    const uint64_t seeds[2] = {4, 0xfedcba9876543210ull};
    for (int k = 0; k < 2; k++) {
        kiln_fit_config fc = config(3);
        fc.seed = seeds[k];
        fc.initial_epoch = k; /* the second run resumes at epoch 1 */
        kiln_prefetcher *p;
        OK(kiln_prefetcher_new(ds, fc.batch_size, NULL, kt_cpu(), false, &p));
        order_log log = {kiln_prefetcher_batch_source(p), {{0}}, {0}, 0};
        kiln_batch_source src = {&log, log_start, log_next, log_stop};
        fc.batches = &src;
        kiln_model *m = small_model();
        OK(kiln_model_fit(m, &d, &fc, NULL));
        cr_assert_eq(log.epochs, 3 - k);
        for (int e = 0; e < log.epochs; e++) {
            int64_t want[45];
            cr_assert_eq(log.n[e], 45);
            OK(kiln_dataset_shuffle_indices(want, 45, fc.seed * 1000003u + (uint64_t)(fc.initial_epoch + e)));
            for (int i = 0; i < 45; i++)
                cr_assert_eq(log.order[e][i], want[i], "seed %llu, epoch %d, row %d: fit has %lld, shuffle_indices %lld",
                             (unsigned long long)fc.seed, fc.initial_epoch + e, i, (long long)log.order[e][i],
                             (long long)want[i]);
        }
        kiln_model_free(m);
        kiln_prefetcher_free(p);
    }
    kiln_dataset_free(ds);
}

/* a source that always gives *ctx rows (at most 8) of class 9 */
static float bad_images[8 * 108];
static int32_t bad_labels[8] = {9, 9, 9, 9, 9, 9, 9, 9};
static kiln_status bad_start(void *ctx, const int64_t *order, int64_t n, uint64_t seed) { return KILN_OK; }
static kiln_status bad_next(void *ctx, kiln_batch *out) {
    *out = (kiln_batch){bad_images, bad_labels, *(int64_t *)ctx, 0};
    return KILN_OK;
}

Test(fit_source, wrong_rows_are_refused) {
    kiln_dataset *ds = small_data(16);
    kiln_data d = {ds->images, ds->labels, NULL, ds->n};
    kiln_fit_config fc = config(1);
    int64_t count = 3;
    kiln_batch_source src = {&count, bad_start, bad_next, NULL};
    fc.batches = &src;
    kiln_model *m = small_model();
    cr_expect_eq(kiln_model_fit(m, &d, &fc, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "gave 3 rows for a step of 8"), "%s", kiln_last_error());
    count = 8;
    cr_expect_eq(kiln_model_fit(m, &d, &fc, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "gave label 9"), "%s", kiln_last_error());
    kiln_model_free(m);
    kiln_dataset_free(ds);
}
