/* data/dataset.c: the in-memory dataset the loaders fill: creation, label checks, Keras'
 * validation split, per-channel standardization, index shuffling. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "error.h"
#include "rng.h"

#define KILN_DIM_MAX 65536

kiln_status kiln_dataset_new(int64_t n, int h, int w, int c, int num_classes, const char *source,
                             kiln_dataset **out) {
    if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_new: out is NULL");
    *out = NULL;
    if (n < 1 || h < 1 || w < 1 || c < 1 || h > KILN_DIM_MAX || w > KILN_DIM_MAX || c > KILN_DIM_MAX)
        return kiln_error(KILN_ERR_INVALID_ARG,
                          "kiln_dataset_new: %s: bad size n=%lld h=%d w=%d c=%d (n >= 1, 1 <= h, w, c <= %d)",
                          source ? source : "dataset", (long long)n, h, w, c, KILN_DIM_MAX);
    if (num_classes < 1 || num_classes > KILN_MAX_CLASSES)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_new: %s: %d classes (1 .. %d)",
                          source ? source : "dataset", num_classes, KILN_MAX_CLASSES);
    size_t per = (size_t)h * (size_t)w * (size_t)c, total, bytes;
    if (!kiln_mul_size(per, (size_t)n, &total) || !kiln_mul_size(total, sizeof(float), &bytes))
        return kiln_error(KILN_ERR_OOM, "kiln_dataset_new: %lld images of %zu floats overflow memory",
                          (long long)n, per);
    kiln_dataset *ds = calloc(1, sizeof *ds);
    if (ds) {
        ds->images = calloc(total, sizeof(float));
        ds->labels = calloc((size_t)n, sizeof(int32_t));
    }
    if (!ds || !ds->images || !ds->labels) {
        kiln_dataset_free(ds);
        return kiln_error(KILN_ERR_OOM, "kiln_dataset_new: out of host memory for %lld images (%zu bytes)",
                          (long long)n, bytes);
    }
    ds->n = n;
    ds->h = h;
    ds->w = w;
    ds->c = c;
    ds->num_classes = num_classes;
    snprintf(ds->source, sizeof ds->source, "%s", source ? source : "dataset");
    *out = ds;
    return KILN_OK;
}

void kiln_dataset_free(kiln_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    free(ds);
}

size_t kiln_dataset_image_numel(const kiln_dataset *ds) {
    if (!ds) kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_image_numel: NULL dataset");
    return ds ? (size_t)ds->h * (size_t)ds->w * (size_t)ds->c : 0;
}

kiln_status kiln_dataset_check(const kiln_dataset *ds) {
    if (!ds) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_check: NULL dataset");
    if (ds->n < 1 || !ds->images || !ds->labels)
        return kiln_error(KILN_ERR_FORMAT, "%s: the dataset is empty", ds->source);
    for (int64_t i = 0; i < ds->n; i++)
        if (ds->labels[i] < 0 || ds->labels[i] >= ds->num_classes)
            return kiln_error(KILN_ERR_FORMAT, "%s: label %d at index %lld is outside [0, %d)",
                              ds->source, (int)ds->labels[i], (long long)i, ds->num_classes);
    return KILN_OK;
}

kiln_status kiln_dataset_split(kiln_dataset *ds, double fraction, kiln_dataset **val) {
    if (!ds || !val) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_split: NULL argument");
    *val = NULL;
    if (!(fraction > 0.0 && fraction < 1.0))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_split: validation_split %g is not in (0, 1)",
                          fraction);
    int64_t at = (int64_t)floor((double)ds->n * (1.0 - fraction));
    if (at <= 0 || at >= ds->n)
        return kiln_error(KILN_ERR_INVALID_ARG,
                          "kiln_dataset_split: validation_split %g of %lld examples leaves %lld for "
                          "training and %lld for validation; both must be non-empty",
                          fraction, (long long)ds->n, (long long)at, (long long)(ds->n - at));
    char name[sizeof ds->source];
    snprintf(name, sizeof name, "%.200s (validation split)", ds->source);
    KILN_TRY(kiln_dataset_new(ds->n - at, ds->h, ds->w, ds->c, ds->num_classes, name, val));
    size_t per = kiln_dataset_image_numel(ds);
    memcpy((*val)->images, ds->images + (size_t)at * per, (size_t)(ds->n - at) * per * sizeof(float));
    memcpy((*val)->labels, ds->labels + at, (size_t)(ds->n - at) * sizeof(int32_t));
    float *img = realloc(ds->images, (size_t)at * per * sizeof(float));
    int32_t *lab = realloc(ds->labels, (size_t)at * sizeof(int32_t));
    if (img) ds->images = img; /* a failed shrink keeps the larger block, which is fine */
    if (lab) ds->labels = lab;
    ds->n = at;
    return KILN_OK;
}

kiln_status kiln_dataset_channel_stats(const kiln_dataset *ds, float *mean, float *std) {
    if (!ds || !mean || !std) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_channel_stats: NULL argument");
    KILN_TRY(kiln_dataset_check(ds));
    double *acc = calloc(2 * (size_t)ds->c, sizeof(double));
    if (!acc) return kiln_error(KILN_ERR_OOM, "kiln_dataset_channel_stats: out of host memory");
    double *sum = acc, *sq = acc + ds->c;
    size_t c = (size_t)ds->c, pixels = (size_t)ds->n * (size_t)ds->h * (size_t)ds->w;
    for (size_t p = 0; p < pixels; p++)
        for (size_t k = 0; k < c; k++) sum[k] += ds->images[p * c + k];
    for (size_t k = 0; k < c; k++) sum[k] /= (double)pixels;
    for (size_t p = 0; p < pixels; p++)
        for (size_t k = 0; k < c; k++) {
            double d = ds->images[p * c + k] - sum[k];
            sq[k] += d * d;
        }
    for (size_t k = 0; k < c; k++) {
        mean[k] = (float)sum[k];
        std[k] = (float)sqrt(sq[k] / (double)pixels);
    }
    free(acc);
    return KILN_OK;
}

kiln_status kiln_dataset_normalize(kiln_dataset *ds, const float *mean, const float *std) {
    if (!ds || !mean || !std) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_normalize: NULL argument");
    for (int k = 0; k < ds->c; k++)
        if (!isfinite(mean[k]) || !isfinite(std[k]))
            return kiln_error(KILN_ERR_NUMERIC, "kiln_dataset_normalize: %s: channel %d has mean %g, std %g",
                              ds->source, k, (double)mean[k], (double)std[k]);
    size_t c = (size_t)ds->c, pixels = (size_t)ds->n * (size_t)ds->h * (size_t)ds->w;
    for (size_t p = 0; p < pixels; p++)
        for (size_t k = 0; k < c; k++) {
            float s = std[k] < 1e-6f ? 1.0f : std[k];
            ds->images[p * c + k] = (ds->images[p * c + k] - mean[k]) / s;
        }
    return KILN_OK;
}

kiln_status kiln_dataset_standardize(kiln_dataset *train, kiln_dataset *test, float *mean_out,
                                     float *std_out) {
    if (!train) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_standardize: NULL training set");
    if (test && test->c != train->c)
        return kiln_error(KILN_ERR_SHAPE, "kiln_dataset_standardize: %s has %d channels, %s has %d",
                          train->source, train->c, test->source, test->c);
    float *st = malloc(2 * (size_t)train->c * sizeof(float));
    if (!st) return kiln_error(KILN_ERR_OOM, "kiln_dataset_standardize: out of host memory");
    kiln_status s = kiln_dataset_channel_stats(train, st, st + train->c);
    if (s == KILN_OK) s = kiln_dataset_normalize(train, st, st + train->c);
    if (s == KILN_OK && test) s = kiln_dataset_normalize(test, st, st + train->c);
    if (s == KILN_OK && mean_out) memcpy(mean_out, st, (size_t)train->c * sizeof(float));
    if (s == KILN_OK && std_out) memcpy(std_out, st + train->c, (size_t)train->c * sizeof(float));
    free(st);
    return s;
}

kiln_status kiln_dataset_shuffle_indices(int64_t *idx, int64_t n, uint64_t seed) {
    if (n < 0 || (n > 0 && !idx))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_shuffle_indices: NULL or negative size");
    kiln_rng_permutation(idx, n, seed); /* fit's epoch order too (kiln/data.h) */
    return KILN_OK;
}
