/* epoch.h: one fit's training state and its epochs (internal): kiln_fit_begin allocates,
 * kiln_fit_epoch trains one epoch, kiln_fit_end releases; fit.c calls them in that order. */
#ifndef KILN_EPOCH_H
#define KILN_EPOCH_H

#include "kiln/fit.h"
#include "model_impl.h"
#include "progress.h"
#include "staging.h"

/* per-step loss sums and correct counts, written by the device into per-epoch arrays and
 * downloaded once per log interval */
typedef struct kiln_fit_steps {
    kiln_tensor *loss, *correct;         /* (steps) on the device */
    kiln_tensor **loss_at, **correct_at; /* one-element views, made once per fit */
    float *h_loss, *h_correct;           /* host copies */
    int64_t steps, fetched;              /* steps whose values are on the host */
    double loss_sum, correct_sum;
    int64_t seen;                        /* examples in fetched steps */
} kiln_fit_steps;

typedef struct kiln_fit_run {
    kiln_model *m;
    const kiln_data *train, *val;  /* val NULL: no validation */
    const kiln_fit_config *c;
    int log_every;
    bool labels;                   /* accuracy is logged */
    int64_t *idx;                  /* the epoch's order of the training rows */
    kiln_fit_staging st[2];
    kiln_fit_steps e;
    kiln_progress prog;
    struct kiln_fit_dist *dist;    /* data-parallel state (dist_fit.h), NULL in a plain process */
} kiln_fit_run;

/* r for a fit of m on train (validation val, may be NULL) with c, all three checked and
 * outliving r; on failure r can still be passed to kiln_fit_end */
kiln_status kiln_fit_begin(kiln_fit_run *r, kiln_model *m, const kiln_data *train, const kiln_data *val,
                           const kiln_fit_config *c);
/* epoch `epoch` (0-based): the order, the steps (with on_step and on_batch_end), validation
 * and the epoch's progress line; *logs its values */
kiln_status kiln_fit_epoch(kiln_fit_run *r, int epoch, kiln_epoch_logs *logs);
/* stops the batch source (after waiting for the device) and frees r's buffers */
void kiln_fit_end(kiln_fit_run *r);

#endif
