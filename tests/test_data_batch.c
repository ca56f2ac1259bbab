/* test_data_batch.c: the generated dataset (deterministic from its seed, classes that
 * differ), and the dataset helpers: label checks, Keras' validation split, per-channel
 * standardization, shuffling, batch gathering with augmentation, and the prefetcher (the same
 * batches with and without its thread). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "kiln/data.h"
#include "datafiles.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())
#define expect_error kt_expect_error

Test(synthetic, deterministic_from_seed) {
    kiln_data_options o = {.n_train = 40, .n_test = 10, .seed = 1234};
    kiln_dataset *a, *at, *b, *bt, *c;
    OK(kiln_dataset_synthetic(&o, &a, &at));
    OK(kiln_dataset_synthetic(&o, &b, &bt));
    cr_assert(a->n == 40 && at->n == 10 && a->h == 32 && a->w == 32 && a->c == 3 && a->num_classes == 10);
    size_t n = (size_t)a->n * kiln_dataset_image_numel(a);
    kt_expect_bitwise("train images", a->images, b->images, n * sizeof(float));
    kt_expect_bitwise("train labels", a->labels, b->labels, (size_t)a->n * sizeof(int32_t));
    kt_expect_bitwise("test images", at->images, bt->images, (size_t)at->n * 3072 * sizeof(float));
    for (size_t i = 0; i < n; i++) cr_assert(a->images[i] >= 0.0f && a->images[i] <= 1.0f, "pixel %zu", i);
    OK(kiln_dataset_check(a));
    cr_assert_neq(memcmp(a->images, at->images, 10 * 3072 * sizeof(float)), 0, "train and test streams coincide");
    /* fewer images: the same first images (each image has its own stream) */
    o.n_train = 5;
    o.seed = 1234;
    OK(kiln_dataset_synthetic(&o, &c, NULL));
    kt_expect_bitwise("prefix", a->images, c->images, 5 * 3072 * sizeof(float));
    kiln_dataset_free(c);
    o.seed = 1235;
    OK(kiln_dataset_synthetic(&o, &c, NULL));
    cr_assert_neq(memcmp(a->images, c->images, 5 * 3072 * sizeof(float)), 0, "another seed, the same images");
    kiln_dataset_free(a), kiln_dataset_free(at), kiln_dataset_free(b), kiln_dataset_free(bt), kiln_dataset_free(c);
}

/* Every class appears, class means differ, and a nearest-class-mean classifier on pixels is
 * well above chance on the test set yet far from perfect (the task is not trivial). */
Test(synthetic, classes_differ) {
    kiln_data_options o = {.n_train = 1000, .n_test = 300, .image_size = 16, .seed = 7};
    kiln_dataset *tr, *te;
    OK(kiln_dataset_synthetic(&o, &tr, &te));
    size_t per = kiln_dataset_image_numel(tr);
    double *mean = calloc(10 * per, sizeof(double));
    int count[10] = {0};
    for (int64_t i = 0; i < tr->n; i++) {
        count[tr->labels[i]]++;
        for (size_t k = 0; k < per; k++) mean[tr->labels[i] * per + k] += tr->images[(size_t)i * per + k];
    }
    for (int c = 0; c < 10; c++) {
        cr_assert_gt(count[c], 50, "class %d has %d of 1000 examples", c, count[c]);
        for (size_t k = 0; k < per; k++) mean[c * per + k] /= count[c];
    }
    for (int a = 0; a < 10; a++)
        for (int b = a + 1; b < 10; b++) {
            double d = 0;
            for (size_t k = 0; k < per; k++) d += fabs(mean[a * per + k] - mean[b * per + k]);
            cr_assert_gt(d / (double)per, 0.01, "classes %d and %d look alike (%g)", a, b, d / (double)per);
        }
    int right = 0;
    for (int64_t i = 0; i < te->n; i++) {
        int best = 0;
        double bd = INFINITY;
        for (int c = 0; c < 10; c++) {
            double d = 0;
            for (size_t k = 0; k < per; k++) {
                double e = te->images[(size_t)i * per + k] - mean[c * per + k];
                d += e * e;
            }
            if (d < bd) bd = d, best = c;
        }
        right += best == te->labels[i];
    }
    double acc = (double)right / (double)te->n;
    cr_log_info("nearest class mean accuracy %.3f", acc);
    cr_assert(acc > 0.25 && acc < 0.9, "nearest-class-mean accuracy %.3f", acc);
    free(mean);
    kiln_dataset_free(tr);
    kiln_dataset_free(te);
}

Test(synthetic, options) {
    kiln_data_options o = {.n_train = 7, .n_test = 3, .image_size = 12, .num_classes = 4, .seed = 2};
    kiln_dataset *tr, *te;
    OK(kiln_dataset_synthetic(&o, &tr, &te));
    cr_assert(tr->n == 7 && te->n == 3 && tr->h == 12 && tr->w == 12 && tr->num_classes == 4);
    for (int i = 0; i < 7; i++) cr_assert(tr->labels[i] >= 0 && tr->labels[i] < 4);
    kiln_dataset_free(tr);
    kiln_dataset_free(te);
    o.image_size = 4;
    expect_error(kiln_dataset_synthetic(&o, &tr, &te), KILN_ERR_INVALID_ARG, "image_size 4");
    o.image_size = 16, o.num_classes = 11;
    expect_error(kiln_dataset_synthetic(&o, &tr, &te), KILN_ERR_INVALID_ARG, "num_classes 11");
    o.num_classes = 0, o.n_train = -1;
    expect_error(kiln_dataset_synthetic(&o, &tr, &te), KILN_ERR_INVALID_ARG, "n_train -1");
}

/* ---- the dataset helpers ---- */

/* n random examples of h x w x c with labels below k. */
static kiln_dataset *random_dataset(uint64_t seed, int64_t n, int h, int w, int c, int k) {
    kiln_dataset *ds;
    OK(kiln_dataset_new(n, h, w, c, k, "random", &ds));
    kt_rng r;
    kt_rng_seed(&r, seed);
    for (size_t i = 0; i < (size_t)n * kiln_dataset_image_numel(ds); i++) ds->images[i] = (float)kt_uniform(&r, -1, 3);
    for (int64_t i = 0; i < n; i++) ds->labels[i] = (int32_t)(kt_next(&r) % (uint64_t)k);
    return ds;
}

Test(dataset, check_labels_and_sizes) {
    kiln_dataset *ds = random_dataset(1, 5, 2, 2, 1, 3);
    OK(kiln_dataset_check(ds));
    ds->labels[3] = 3;
    expect_error(kiln_dataset_check(ds), KILN_ERR_FORMAT, "label 3 at index 3 is outside [0, 3)");
    ds->labels[3] = -2;
    expect_error(kiln_dataset_check(ds), KILN_ERR_FORMAT, "label -2 at index 3");
    kiln_dataset_free(ds);
    expect_error(kiln_dataset_new(0, 2, 2, 1, 3, "e", &ds), KILN_ERR_INVALID_ARG, "bad size n=0");
    expect_error(kiln_dataset_new(1, 2, 2, 1, 0, "e", &ds), KILN_ERR_INVALID_ARG, "0 classes");
    expect_error(kiln_dataset_new((int64_t)1 << 62, 64, 64, 3, 10, "e", &ds), KILN_ERR_OOM, "overflow");
}

Test(dataset, validation_split_takes_the_last_part) {
    kiln_dataset *ds = random_dataset(2, 10, 3, 2, 2, 4), *copy = random_dataset(2, 10, 3, 2, 2, 4), *val;
    OK(kiln_dataset_split(ds, 0.25, &val)); /* floor(10 * 0.75) = 7 stay */
    cr_assert(ds->n == 7 && val->n == 3 && val->h == 3 && val->w == 2 && val->c == 2 && val->num_classes == 4);
    kt_expect_bitwise("train part", ds->images, copy->images, 7 * 12 * sizeof(float));
    kt_expect_bitwise("validation part", val->images, copy->images + 7 * 12, 3 * 12 * sizeof(float));
    kt_expect_bitwise("train labels", ds->labels, copy->labels, 7 * sizeof(int32_t));
    kt_expect_bitwise("validation labels", val->labels, copy->labels + 7, 3 * sizeof(int32_t));
    kiln_dataset_free(val);
    expect_error(kiln_dataset_split(ds, 1.0, &val), KILN_ERR_INVALID_ARG, "not in (0, 1)");
    expect_error(kiln_dataset_split(ds, 0.0, &val), KILN_ERR_INVALID_ARG, "not in (0, 1)");
    expect_error(kiln_dataset_split(ds, NAN, &val), KILN_ERR_INVALID_ARG, "not in (0, 1)");
    expect_error(kiln_dataset_split(ds, 1e-17, &val), KILN_ERR_INVALID_ARG, "leaves 7 for training and 0");
    cr_assert_null(val);
    expect_error(kiln_dataset_split(ds, 0.9999, &val), KILN_ERR_INVALID_ARG, "leaves 0 for training");
    cr_assert_eq(ds->n, 7, "a refused split changed the dataset");
    kiln_dataset_free(ds);
    kiln_dataset_free(copy);
}

Test(dataset, standardize_per_channel) {
    kiln_dataset *tr = random_dataset(3, 20, 4, 4, 3, 2), *te = random_dataset(4, 5, 4, 4, 3, 2);
    kiln_dataset *te0 = random_dataset(4, 5, 4, 4, 3, 2);
    for (size_t p = 0; p < 20 * 16; p++) tr->images[p * 3 + 2] = 0.5f; /* a constant channel */
    double mean[3] = {0}, sq[3] = {0};
    for (size_t p = 0; p < 20 * 16; p++)
        for (int k = 0; k < 3; k++) mean[k] += tr->images[p * 3 + k] / 320.0;
    for (size_t p = 0; p < 20 * 16; p++)
        for (int k = 0; k < 3; k++) sq[k] += pow(tr->images[p * 3 + k] - mean[k], 2) / 320.0;
    float m[3], s[3];
    OK(kiln_dataset_standardize(tr, te, m, s));
    for (int k = 0; k < 3; k++) {
        cr_assert_float_eq(m[k], mean[k], 1e-5, "mean %d", k);
        cr_assert_float_eq(s[k], sqrt(sq[k]), 1e-5, "std %d", k);
    }
    cr_assert_eq(s[2], 0.0f);
    for (size_t i = 0; i < 5 * 48; i++) { /* the test set uses the training statistics */
        int k = (int)(i % 3);
        double want = (te0->images[i] - m[k]) / (k == 2 ? 1.0 : s[k]);
        cr_assert_float_eq(te->images[i], want, 1e-5, "test element %zu", i);
    }
    double after[3] = {0}, after_sq[3] = {0};
    for (size_t p = 0; p < 20 * 16; p++)
        for (int k = 0; k < 3; k++) after[k] += tr->images[p * 3 + k] / 320.0, after_sq[k] += pow(tr->images[p * 3 + k], 2) / 320.0;
    for (int k = 0; k < 2; k++) {
        cr_assert_float_eq(after[k], 0.0, 1e-5, "channel %d mean after", k);
        cr_assert_float_eq(after_sq[k], 1.0, 1e-4, "channel %d variance after", k);
    }
    cr_assert_float_eq(after[2], 0.0, 1e-6);
    kiln_dataset *one = random_dataset(5, 2, 4, 4, 1, 2);
    expect_error(kiln_dataset_standardize(tr, one, NULL, NULL), KILN_ERR_SHAPE, "has 3 channels");
    kiln_dataset_free(tr), kiln_dataset_free(te), kiln_dataset_free(te0), kiln_dataset_free(one);
}

Test(dataset, shuffle_is_a_seeded_permutation) {
    int64_t a[1000], b[1000], c[1000];
    OK(kiln_dataset_shuffle_indices(a, 1000, 42));
    OK(kiln_dataset_shuffle_indices(b, 1000, 42));
    OK(kiln_dataset_shuffle_indices(c, 1000, 43));
    bool seen[1000] = {false};
    int fixed = 0;
    for (int i = 0; i < 1000; i++) {
        cr_assert(a[i] >= 0 && a[i] < 1000 && !seen[a[i]], "not a permutation at %d", i);
        seen[a[i]] = true;
        cr_assert_eq(a[i], b[i]);
        fixed += a[i] == i;
    }
    cr_assert_lt(fixed, 10, "%d fixed points", fixed);
    cr_assert_neq(memcmp(a, c, sizeof a), 0);
}

Test(batch, gather_plain) {
    kiln_dataset *ds = random_dataset(6, 9, 3, 3, 2, 5);
    int64_t idx[4] = {8, 0, 8, 3};
    float x[4 * 18];
    int32_t y[4];
    OK(kiln_dataset_gather(ds, idx, 4, NULL, 0, x, y));
    for (int j = 0; j < 4; j++) {
        kt_expect_bitwise("row", x + j * 18, ds->images + idx[j] * 18, 18 * sizeof(float));
        cr_assert_eq(y[j], ds->labels[idx[j]]);
    }
    kiln_augment none = {0, false};
    float x2[4 * 18];
    OK(kiln_dataset_gather(ds, idx, 4, &none, 99, x2, y));
    kt_expect_bitwise("pad 0, no flip", x, x2, sizeof x);
    idx[2] = 9;
    expect_error(kiln_dataset_gather(ds, idx, 4, NULL, 0, x, y), KILN_ERR_INVALID_ARG, "index 9 (batch row 2) outside [0, 9)");
    kiln_dataset_free(ds);
}

/* Whether out is in shifted by (dy, dx), maybe mirrored, with zeros outside. */
static bool is_crop_of(const float *in, const float *out, int h, int w, int c, int dy, int dx, bool flip) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) {
                int sy = y + dy, sx = (flip ? w - 1 - x : x) + dx;
                float want = sy < 0 || sy >= h || sx < 0 || sx >= w ? 0.0f : in[(sy * w + sx) * c + k];
                if (memcmp(&out[(y * w + x) * c + k], &want, sizeof want)) return false;
            }
    return true;
}

Test(batch, augment_crop_and_flip) {
    kiln_dataset *ds = random_dataset(7, 6, 8, 8, 3, 2);
    for (size_t i = 0; i < 6 * 192; i++) ds->images[i] += 5.0f; /* no pixel is 0, so padding shows */
    enum { B = 64 };
    int64_t idx[B];
    for (int j = 0; j < B; j++) idx[j] = j % 6;
    static float x[B * 192], x2[B * 192], x3[B * 192];
    int32_t y[B];
    kiln_augment aug = {4, true};
    OK(kiln_dataset_gather(ds, idx, B, &aug, 1, x, y));
    OK(kiln_dataset_gather(ds, idx, B, &aug, 1, x2, y));
    OK(kiln_dataset_gather(ds, idx, B, &aug, 2, x3, y));
    kt_expect_bitwise("same seed", x, x2, sizeof x);
    cr_assert_neq(memcmp(x, x3, sizeof x), 0, "another seed, the same crops");
    int flips = 0, shifted = 0;
    for (int j = 0; j < B; j++) {
        bool found = false;
        for (int dy = -4; dy <= 4 && !found; dy++)
            for (int dx = -4; dx <= 4 && !found; dx++)
                for (int f = 0; f < 2 && !found; f++)
                    if (is_crop_of(ds->images + idx[j] * 192, x + j * 192, 8, 8, 3, dy, dx, f)) {
                        found = true;
                        flips += f && !is_crop_of(ds->images + idx[j] * 192, x + j * 192, 8, 8, 3, dy, dx, false);
                        shifted += dy || dx;
                    }
        cr_assert(found, "batch row %d is no crop or flip of example %lld", j, (long long)idx[j]);
    }
    cr_assert(flips > 10 && flips < 54, "%d of %d flipped", flips, B);
    cr_assert_gt(shifted, 40, "%d of %d shifted", shifted, B);
    aug.pad = 9;
    expect_error(kiln_dataset_gather(ds, idx, B, &aug, 1, x, y), KILN_ERR_INVALID_ARG, "padding 9");
    kiln_dataset_free(ds);
}

/* Runs an epoch through a prefetcher and returns the concatenated images and labels. */
static size_t run_epoch(kiln_prefetcher *p, const int64_t *order, int64_t n, uint64_t seed, float *x, int32_t *y,
                        int64_t batch, size_t per) {
    OK(kiln_prefetcher_start(p, order, n, seed));
    size_t rows = 0;
    for (int64_t k = 0;; k++) {
        kiln_batch b;
        OK(kiln_prefetcher_next(p, &b));
        if (!b.count) {
            cr_assert_eq(b.index, (n + batch - 1) / batch);
            break;
        }
        cr_assert_eq(b.index, k);
        cr_assert_eq(b.count, n - k * batch < batch ? n - k * batch : batch, "batch %lld", (long long)k);
        memcpy(x + rows * per, b.images, (size_t)b.count * per * sizeof(float));
        memcpy(y + rows, b.labels, (size_t)b.count * sizeof(int32_t));
        rows += (size_t)b.count;
    }
    return rows;
}

Test(prefetch, threaded_equals_unthreaded_equals_gather) {
    kiln_dataset *ds = random_dataset(8, 50, 6, 6, 3, 4);
    size_t per = 108;
    int64_t order[50];
    OK(kiln_dataset_shuffle_indices(order, 50, 3));
    static float want[50 * 108], a[50 * 108], b[50 * 108];
    int32_t want_y[50], ya[50], yb[50];
    OK(kiln_dataset_gather(ds, order, 50, NULL, 0, want, want_y));
    kiln_augment aug = {2, true};
    for (int with_aug = 0; with_aug < 2; with_aug++) {
        kiln_prefetcher *t, *u;
        OK(kiln_prefetcher_new(ds, 7, with_aug ? &aug : NULL, NULL, true, &t));
        OK(kiln_prefetcher_new(ds, 7, with_aug ? &aug : NULL, kt_cpu(), false, &u));
        for (int epoch = 0; epoch < 3; epoch++) {
            cr_assert_eq(run_epoch(t, order, 50, (uint64_t)epoch, a, ya, 7, per), 50);
            cr_assert_eq(run_epoch(u, order, 50, (uint64_t)epoch, b, yb, 7, per), 50);
            kt_expect_bitwise("threaded vs unthreaded", a, b, sizeof a);
            kt_expect_bitwise("labels", ya, yb, sizeof ya);
            kt_expect_bitwise("labels vs gather", ya, want_y, sizeof ya);
            if (!with_aug) kt_expect_bitwise("vs gather", a, want, sizeof a);
        }
        /* stop mid-epoch and start again: the same first batches */
        kiln_batch first;
        OK(kiln_prefetcher_start(t, order, 50, 0));
        OK(kiln_prefetcher_next(t, &first));
        kiln_prefetcher_stop(t);
        OK(kiln_prefetcher_next(t, &first));
        cr_assert_eq(first.count, 0, "a stopped epoch hands out more batches");
        cr_assert_eq(run_epoch(t, order, 50, 0, a, ya, 7, per), 50);
        cr_assert_eq(run_epoch(u, order, 50, 0, b, yb, 7, per), 50);
        kt_expect_bitwise("after a stop", a, b, sizeof a);
        /* freeing in the middle of an epoch joins the thread */
        OK(kiln_prefetcher_start(t, order, 50, 0));
        OK(kiln_prefetcher_next(t, &first));
        kiln_prefetcher_free(t);
        kiln_prefetcher_free(u);
    }
    kiln_dataset_free(ds);
}

Test(prefetch, bad_arguments) {
    kiln_dataset *ds = random_dataset(9, 4, 2, 2, 1, 2);
    kiln_prefetcher *p;
    expect_error(kiln_prefetcher_new(ds, 0, NULL, NULL, true, &p), KILN_ERR_INVALID_ARG, "batch size 0");
    kiln_augment bad = {-1, false};
    expect_error(kiln_prefetcher_new(ds, 2, &bad, NULL, true, &p), KILN_ERR_INVALID_ARG, "padding -1");
    OK(kiln_prefetcher_new(ds, 3, NULL, NULL, true, &p));
    int64_t order[3] = {0, 4, 1};
    expect_error(kiln_prefetcher_start(p, order, 3, 0), KILN_ERR_INVALID_ARG, "order[1] = 4 is outside [0, 4)");
    kiln_batch b;
    OK(kiln_prefetcher_next(p, &b));
    cr_assert_eq(b.count, 0);
    OK(kiln_prefetcher_start(p, order, 0, 0)); /* an empty epoch */
    OK(kiln_prefetcher_next(p, &b));
    cr_assert_eq(b.count, 0);
    kiln_prefetcher_free(p);
    kiln_dataset_free(ds);
}

/* Pinned buffers from a CUDA backend: the same batches, and each can be uploaded
 * asynchronously and read back unchanged (skipped without a GPU). */
Test(prefetch, pinned_buffers_on_cuda) {
    kiln_backend *cuda = kt_cuda_or_skip();
    kiln_dataset *ds = random_dataset(10, 20, 4, 4, 3, 3);
    int64_t order[20];
    OK(kiln_dataset_shuffle_indices(order, 20, 5));
    kiln_augment aug = {1, true};
    kiln_prefetcher *pinned, *plain;
    OK(kiln_prefetcher_new(ds, 8, &aug, cuda, true, &pinned));
    OK(kiln_prefetcher_new(ds, 8, &aug, NULL, false, &plain));
    OK(kiln_prefetcher_start(pinned, order, 20, 1));
    OK(kiln_prefetcher_start(plain, order, 20, 1));
    int64_t shape[4] = {8, 4, 4, 3};
    kiln_tensor *t = kt_new(cuda, KILN_F32, 4, shape);
    static float back[8 * 48];
    for (;;) {
        kiln_batch a, b;
        OK(kiln_prefetcher_next(pinned, &a));
        OK(kiln_prefetcher_next(plain, &b));
        cr_assert_eq(a.count, b.count);
        if (!a.count) break;
        kt_expect_bitwise("pinned vs plain", a.images, b.images, (size_t)a.count * 48 * sizeof(float));
        int64_t vshape[4] = {a.count, 4, 4, 3};
        kiln_tensor *v;
        OK(kiln_tensor_view(t, 0, 4, vshape, &v)); /* the last batch is smaller */
        OK(kiln_tensor_set_async(v, a.images, (size_t)a.count * 48 * sizeof(float)));
        OK(kiln_backend_synchronize(cuda));
        OK(kiln_tensor_get(v, back, (size_t)a.count * 48 * sizeof(float)));
        kiln_tensor_free(v);
        kt_expect_bitwise("uploaded batch", back, b.images, (size_t)a.count * 48 * sizeof(float));
    }
    kiln_tensor_free(t);
    kiln_prefetcher_free(pinned);
    kiln_prefetcher_free(plain);
    kiln_dataset_free(ds);
}
