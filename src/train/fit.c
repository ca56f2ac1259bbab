/* fit.c: the training loop (fit), evaluate and predict, Keras' progress output and the
 * history. One step: upload the batch (pinned host memory, asynchronously on a device),
 * forward, fused loss, backward, optimizer update; per-step loss and correct counts stay on
 * the device in per-epoch arrays and come down once per log interval. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "fit_impl.h"
#include "model_impl.h"

kiln_fit_config kiln_fit_defaults(void) {
    kiln_fit_config c;
    memset(&c, 0, sizeof c);
    c.epochs = 1;
    c.batch_size = 32;
    c.shuffle = true;
    c.verbose = 1;
    return c;
}

void kiln_history_free(kiln_history *h) {
    if (!h) return;
    free(h->logs);
    memset(h, 0, sizeof *h);
}

double kiln_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- checks ---- */

static int64_t example_numel(const kiln_model *m) { return kiln_node_out_numel(&m->nodes[0]); }
static int64_t output_numel(const kiln_model *m) { return kiln_node_out_numel(&m->nodes[m->n_nodes - 1]); }
static bool uses_labels(const kiln_model *m) { return m->compile.loss == KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY; }
/* accuracy is logged for both cross-entropies (categorical: against the target's argmax) */
bool kiln_fit_has_accuracy(const kiln_model *m) { return m->compile.loss != KILN_LOSS_MEAN_SQUARED_ERROR; }

static int32_t argmax_row(const float *t, int64_t k) {
    int32_t best = 0;
    for (int64_t j = 1; j < k; j++)
        if (t[j] > t[best]) best = (int32_t)j;
    return best;
}

kiln_status kiln_fit_check_data(const kiln_model *m, const kiln_data *d, const char *what) {
    if (!d || d->n < 1)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: the dataset is empty", what);
    if (!d->x) return kiln_error(KILN_ERR_INVALID_ARG, "%s: x is NULL", what);
    if (uses_labels(m)) {
        if (!d->y) return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s needs integer labels y", what, "sparse_categorical_crossentropy");
        int64_t k = output_numel(m);
        for (int64_t i = 0; i < d->n; i++)
            if (d->y[i] < 0 || d->y[i] >= k)
                return kiln_error(KILN_ERR_INVALID_ARG, "%s: label %lld is %d, outside the model's %lld classes [0, %lld)",
                                  what, (long long)i, d->y[i], (long long)k, (long long)k);
    } else if (!d->y_dense) {
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: this loss needs dense targets y_dense", what);
    } else if (m->compile.loss == KILN_LOSS_CATEGORICAL_CROSSENTROPY) {
        int64_t k = output_numel(m);
        for (int64_t i = 0; i < d->n; i++) { /* each target a distribution */
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
    }
    return KILN_OK;
}

/* ---- batches ---- */

/* uploads rows idx[0..b) of d into the plan's input and targets */
kiln_status kiln_fit_upload(kiln_model *m, kiln_plan *p, const kiln_data *d, const int64_t *idx,
                            int64_t first, int b, kiln_fit_staging *st) {
    int64_t ex = example_numel(m), out = output_numel(m);
    for (int r = 0; r < b; r++) {
        int64_t i = idx ? idx[first + r] : first + r;
        memcpy(st->x + (size_t)r * (size_t)ex, d->x + (size_t)i * (size_t)ex, sizeof(float) * (size_t)ex);
        if (uses_labels(m)) {
            st->y[r] = d->y[i];
            continue;
        }
        const float *t = d->y_dense + (size_t)i * (size_t)out;
        memcpy(st->t + (size_t)r * (size_t)out, t, sizeof(float) * (size_t)out);
        st->y[r] = argmax_row(t, out);
    }
    KILN_TRY(kiln_tensor_set_async(p->v[0].y, st->x, sizeof(float) * (size_t)(ex * b)));
    KILN_TRY(kiln_tensor_set_async(p->labels, st->y, sizeof(int32_t) * (size_t)b));
    if (uses_labels(m)) return KILN_OK;
    return kiln_tensor_set_async(p->y_dense, st->t, sizeof(float) * (size_t)(out * b));
}

kiln_status kiln_fit_staging_new(kiln_model *m, int batch, kiln_fit_staging *st) {
    memset(st, 0, sizeof *st);
    st->be = m->be;
    int64_t ex = example_numel(m), out = output_numel(m);
    KILN_TRY(kiln_host_alloc(m->be, sizeof(float) * (size_t)(ex * batch), (void **)&st->x));
    KILN_TRY(kiln_host_alloc(m->be, sizeof(int32_t) * (size_t)batch, (void **)&st->y));
    return kiln_host_alloc(m->be, sizeof(float) * (size_t)(out * batch), (void **)&st->t);
}

void kiln_fit_staging_free(kiln_fit_staging *st) {
    kiln_host_free(st->be, st->x);
    kiln_host_free(st->be, st->y);
    kiln_host_free(st->be, st->t);
    memset(st, 0, sizeof *st);
}

/* ---- evaluate and predict ---- */

/* mean loss and accuracy over d in inference mode, through staging st (batch rows) */
static kiln_status eval_sums(kiln_model *m, const kiln_data *d, int batch, kiln_fit_staging *st,
                             double *loss, double *acc) {
    kiln_status s = KILN_OK;
    double lsum = 0.0, csum = 0.0;
    kiln_tensor *lt = m->eval_loss, *ct = m->eval_correct;
    for (int64_t first = 0; s == KILN_OK && first < d->n; first += batch) {
        int b = (int)(d->n - first < batch ? d->n - first : batch);
        kiln_plan *p;
        float lv = 0.0f, cv = 0.0f;
        if ((s = kiln_model_plan(m, b, &p)) != KILN_OK) break;
        if ((s = kiln_fit_upload(m, p, d, NULL, first, b, st)) != KILN_OK) break;
        if ((s = kiln_model_forward(m, p, false, true, 0)) != KILN_OK) break;
        if ((s = kiln_model_loss(m, p, false)) != KILN_OK) break;
        if ((s = kiln_sum(p->loss_rows, 0x1, lt)) != KILN_OK) break;
        bool with_acc = kiln_fit_has_accuracy(m);
        if (with_acc && (s = kiln_accuracy(p->v[m->n_nodes - 1].z, p->labels, ct)) != KILN_OK) break;
        if ((s = kiln_tensor_get(lt, &lv, sizeof lv)) != KILN_OK) break;
        if (with_acc && (s = kiln_tensor_get(ct, &cv, sizeof cv)) != KILN_OK) break;
        lsum += lv;
        csum += cv;
    }
    *loss = lsum / (double)d->n;
    *acc = kiln_fit_has_accuracy(m) ? csum / (double)d->n : NAN;
    return s;
}

static kiln_status check_ready(const kiln_model *m, int batch, const char *fn) {
    if (!m) return kiln_error(KILN_ERR_INVALID_ARG, "%s: model is NULL", fn);
    if (!m->compiled) return kiln_error(KILN_ERR_INVALID_ARG, "%s: compile model '%s' first", fn, m->name);
    if (batch < 1) return kiln_error(KILN_ERR_INVALID_ARG, "%s: batch size must be >= 1 (is %d)", fn, batch);
    return KILN_OK;
}

kiln_status kiln_model_evaluate(kiln_model *m, const kiln_data *data, int batch_size, double *loss,
                                double *accuracy) {
    KILN_TRY(check_ready(m, batch_size, "kiln_model_evaluate"));
    KILN_TRY(kiln_fit_check_data(m, data, "kiln_model_evaluate"));
    double l, a;
    kiln_fit_staging st;
    KILN_TRY(kiln_fit_staging_new(m, batch_size, &st));
    kiln_status s = eval_sums(m, data, batch_size, &st, &l, &a);
    kiln_fit_staging_free(&st);
    KILN_TRY(s);
    if (loss) *loss = l;
    if (accuracy) *accuracy = a;
    return KILN_OK;
}

kiln_status kiln_model_predict(kiln_model *m, const float *x, int64_t n, int batch_size, float *out) {
    if (!m || !m->built) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_predict: model is not built");
    if (batch_size < 1) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_predict: batch size must be >= 1 (is %d)", batch_size);
    if (n < 1 || !x || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_predict: the dataset is empty");
    int64_t ex = example_numel(m), k = output_numel(m);
    for (int64_t first = 0; first < n; first += batch_size) {
        int b = (int)(n - first < batch_size ? n - first : batch_size);
        kiln_plan *p;
        KILN_TRY(kiln_model_plan(m, b, &p));
        KILN_TRY(kiln_tensor_set(p->v[0].y, x + (size_t)(first * ex), sizeof(float) * (size_t)(b * ex)));
        KILN_TRY(kiln_model_forward(m, p, false, false, 0));
        KILN_TRY(kiln_tensor_get(p->v[m->n_nodes - 1].y, out + (size_t)(first * k), sizeof(float) * (size_t)(b * k)));
    }
    return KILN_OK;
}

/* ---- fit ---- */

kiln_status kiln_model_fit(kiln_model *m, const kiln_data *train, const kiln_fit_config *cfg,
                           kiln_history *history) {
    kiln_fit_config c = cfg ? *cfg : kiln_fit_defaults();
    KILN_TRY(check_ready(m, c.batch_size, "kiln_model_fit"));
    if (c.epochs < 0 || c.initial_epoch < 0)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: epochs (%d) and initial_epoch (%d) must be >= 0",
                          c.epochs, c.initial_epoch);
    if (!(c.validation_split >= 0.0 && c.validation_split < 1.0))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: validation_split must be in [0, 1) (is %g)", c.validation_split);
    KILN_TRY(kiln_fit_check_data(m, train, "kiln_model_fit"));
    kiln_data tr = *train, val = c.validation;
    if (c.validation_split > 0.0) { /* Keras: the last fraction, before shuffling */
        int64_t nv = (int64_t)floor((double)train->n * c.validation_split);
        if (nv < 1 || nv >= train->n)
            return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: validation_split %g of %lld examples leaves an empty part",
                              c.validation_split, (long long)train->n);
        tr.n = train->n - nv;
        int64_t ex = example_numel(m), out = output_numel(m);
        val.x = train->x + (size_t)(tr.n * ex);
        val.y = train->y ? train->y + tr.n : NULL;
        val.y_dense = train->y_dense ? train->y_dense + (size_t)(tr.n * out) : NULL;
        val.n = nv;
    }
    if (val.n > 0) KILN_TRY(kiln_fit_check_data(m, &val, "kiln_model_fit (validation)"));
    if (history) memset(history, 0, sizeof *history);
    m->fit_seed = c.seed;
    return kiln_fit_loop(m, &tr, val.n > 0 ? &val : NULL, &c, history, eval_sums);
}
