/* fit.c: kiln_model_fit: its defaults and argument checks, Keras' validation split, the
 * history, and the callbacks around the epochs, which epoch.c runs (begin, each epoch, end). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "epoch.h"
#include "error.h"

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

static kiln_status check_config(const kiln_fit_config *c) {
    if (c->epochs < 0 || c->initial_epoch < 0)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: epochs (%d) and initial_epoch (%d) must be >= 0",
                          c->epochs, c->initial_epoch);
    if (c->n_callbacks < 0 || (c->n_callbacks > 0 && !c->callbacks))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: %d callbacks in %s", c->n_callbacks,
                          c->callbacks ? "an array" : "a NULL array");
    if (!(c->validation_split >= 0.0 && c->validation_split < 1.0))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: validation_split must be in [0, 1) (is %g)", c->validation_split);
    return KILN_OK;
}

/* Keras' validation_split: the last fraction of train, before shuffling, becomes *val */
static kiln_status split(const kiln_model *m, const kiln_data *train, double fraction, kiln_data *tr, kiln_data *val) {
    int64_t nv = (int64_t)floor((double)train->n * fraction);
    if (nv < 1 || nv >= train->n)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: validation_split %g of %lld examples leaves an empty part",
                          fraction, (long long)train->n);
    tr->n = train->n - nv;
    int64_t ex = kiln_fit_example_numel(m), out = kiln_fit_output_numel(m);
    val->x = train->x + (size_t)(tr->n * ex);
    val->y = train->y ? train->y + tr->n : NULL;
    val->y_dense = train->y_dense ? train->y_dense + (size_t)(tr->n * out) : NULL;
    val->n = nv;
    return KILN_OK;
}

static kiln_status history_new(kiln_history *h, const kiln_fit_config *c) {
    if (!h) return KILN_OK;
    h->logs = calloc((size_t)(c->epochs > c->initial_epoch ? c->epochs - c->initial_epoch : 1), sizeof *h->logs);
    return h->logs ? KILN_OK : kiln_error(KILN_ERR_OOM, "kiln_model_fit: out of host memory");
}

/* ---- the callbacks (on_batch_end is called by the epoch, epoch.c) ---- */

static kiln_status train_begin(const kiln_fit_config *c, kiln_model *m) {
    for (int k = 0; k < c->n_callbacks; k++)
        if (c->callbacks[k].on_train_begin) KILN_TRY(c->callbacks[k].on_train_begin(c->callbacks[k].ctx, m));
    return KILN_OK;
}

static kiln_status epoch_end(const kiln_fit_config *c, kiln_model *m, const kiln_epoch_logs *l, bool *stop) {
    for (int k = 0; k < c->n_callbacks; k++)
        if (c->callbacks[k].on_epoch_end) KILN_TRY(c->callbacks[k].on_epoch_end(c->callbacks[k].ctx, m, l, stop));
    return KILN_OK;
}

/* every callback's on_train_end, whatever s is; returns s, or the first failure when s is OK */
static kiln_status train_end(const kiln_fit_config *c, kiln_model *m, kiln_status s) {
    for (int k = 0; k < c->n_callbacks; k++)
        if (c->callbacks[k].on_train_end) {
            kiln_status s2 = c->callbacks[k].on_train_end(c->callbacks[k].ctx, m);
            if (s == KILN_OK) s = s2;
        }
    return s;
}

/* ---- fit ---- */

/* the epochs from c->initial_epoch, each into the history, until the last or a callback's stop */
static kiln_status run_epochs(kiln_fit_run *r, const kiln_fit_config *c, kiln_history *history) {
    kiln_status s = KILN_OK;
    bool stop = false;
    for (int epoch = c->initial_epoch; s == KILN_OK && epoch < c->epochs && !stop; epoch++) {
        kiln_epoch_logs l;
        if ((s = kiln_fit_epoch(r, epoch, &l)) != KILN_OK) break;
        if (history) history->logs[history->epochs++] = l;
        s = epoch_end(c, r->m, &l, &stop);
    }
    if (history) history->stopped_early = stop;
    return s;
}

kiln_status kiln_model_fit(kiln_model *m, const kiln_data *train, const kiln_fit_config *cfg,
                           kiln_history *history) {
    if (history) memset(history, 0, sizeof *history); /* empty on every return: the caller frees it */
    kiln_fit_config c = cfg ? *cfg : kiln_fit_defaults();
    KILN_TRY(kiln_fit_check_ready(m, c.batch_size, "kiln_model_fit"));
    KILN_TRY(check_config(&c));
    KILN_TRY(kiln_fit_check_data(m, train, "kiln_model_fit"));
    kiln_data tr = *train, val = c.validation;
    if (c.validation_split > 0.0) KILN_TRY(split(m, train, c.validation_split, &tr, &val));
    if (val.n > 0) KILN_TRY(kiln_fit_check_data(m, &val, "kiln_model_fit (validation)"));
    m->fit_seed = c.seed;
    kiln_fit_run run;
    kiln_status s = kiln_fit_begin(&run, m, &tr, val.n > 0 ? &val : NULL, &c);
    if (s == KILN_OK) s = history_new(history, &c);
    if (s == KILN_OK) s = train_begin(&c, m);
    if (s == KILN_OK) s = run_epochs(&run, &c, history);
    kiln_fit_end(&run);
    return train_end(&c, m, s);
}
