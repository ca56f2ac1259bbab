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
