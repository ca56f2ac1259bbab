/* check.c: what fit, evaluate and predict ask of a model and its host data (check.h): the
 * model's row sizes, which targets its loss takes, and the checks of kiln_data against it. */
#include <math.h>

#include <stdio.h>

#include "check.h"
#include "checked.h"
#include "error.h"

int64_t kiln_fit_example_numel(const kiln_model *m) { return kiln_node_out_numel(&m->nodes[0]); }

int64_t kiln_fit_output_numel(const kiln_model *m) { return kiln_node_out_numel(&m->nodes[m->n_nodes - 1]); }

bool kiln_fit_uses_labels(const kiln_model *m) { return m->compile.loss == KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY; }

bool kiln_fit_has_accuracy(const kiln_model *m) { return m->compile.loss != KILN_LOSS_MEAN_SQUARED_ERROR; }

kiln_status kiln_fit_check_ready(const kiln_model *m, int batch, const char *fn) {
    if (!m) return kiln_error(KILN_ERR_INVALID_ARG, "%s: model is NULL", fn);
    if (!m->compiled) return kiln_error(KILN_ERR_INVALID_ARG, "%s: compile model '%s' first", fn, m->name);
    if (batch < 1) return kiln_error(KILN_ERR_INVALID_ARG, "%s: batch size must be >= 1 (is %d)", fn, batch);
    return KILN_OK;
}

static kiln_status check_labels(const kiln_model *m, const kiln_data *d, const char *what) {
    if (!d->y) return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s needs integer labels y", what, "sparse_categorical_crossentropy");
    int64_t k = kiln_fit_output_numel(m);
    for (int64_t i = 0; i < d->n; i++)
        if (d->y[i] < 0 || d->y[i] >= k)
            return kiln_error(KILN_ERR_INVALID_ARG, "%s: label %lld is %d, outside the model's %lld classes [0, %lld)",
                              what, (long long)i, d->y[i], (long long)k, (long long)k);
    return KILN_OK;
}

/* each target row a distribution: non-negative, summing to 1 within 1e-3 */
static kiln_status check_distributions(const kiln_model *m, const kiln_data *d, const char *what) {
    int64_t k = kiln_fit_output_numel(m);
    for (int64_t i = 0; i < d->n; i++) {
        double s = 0.0;
        bool neg = false;
        for (int64_t j = 0; j < k; j++) {
            s += d->y_dense[i * k + j];
            neg |= d->y_dense[i * k + j] < 0.0f;
        }
        if (neg || !(fabs(s - 1.0) <= 1e-3))
            return kiln_error(KILN_ERR_INVALID_ARG, "%s: categorical_crossentropy target row %lld %s (sum %g); "
                              "targets must be distributions (one-hot or smoothed)",
                              what, (long long)i, neg ? "has a negative entry" : "does not sum to 1", s);
    }
    return KILN_OK;
}

kiln_status kiln_fit_check_rows(const kiln_model *m, int64_t n, const char *what) {
    char name[160];
    snprintf(name, sizeof name, "%s: x", what);
    KILN_TRY(kiln_shape_size(name, 2, (int64_t[2]){n, kiln_fit_example_numel(m)}, sizeof(float), NULL, NULL));
    snprintf(name, sizeof name, "%s: the outputs", what);
    return kiln_shape_size(name, 2, (int64_t[2]){n, kiln_fit_output_numel(m)}, sizeof(float), NULL, NULL);
}

kiln_status kiln_fit_check_data(const kiln_model *m, const kiln_data *d, const char *what) {
    if (!d || d->n < 1) return kiln_error(KILN_ERR_INVALID_ARG, "%s: the dataset is empty", what);
    if (!d->x) return kiln_error(KILN_ERR_INVALID_ARG, "%s: x is NULL", what);
    KILN_TRY(kiln_fit_check_rows(m, d->n, what));
    if (kiln_fit_uses_labels(m)) return check_labels(m, d, what);
    if (!d->y_dense) return kiln_error(KILN_ERR_INVALID_ARG, "%s: this loss needs dense targets y_dense", what);
    if (m->compile.loss == KILN_LOSS_CATEGORICAL_CROSSENTROPY) return check_distributions(m, d, what);
    return KILN_OK;
}
