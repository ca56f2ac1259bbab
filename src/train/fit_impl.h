/* fit_impl.h: pieces of fit shared between fit.c, fit_loop.c and progress.c (internal). */
#ifndef KILN_FIT_IMPL_H
#define KILN_FIT_IMPL_H

#include "model_impl.h"

/* host staging for one batch (pinned on a device) */
typedef struct kiln_fit_staging {
    kiln_backend *be;
    float *x, *t;
    int32_t *y;
} kiln_fit_staging;

kiln_status kiln_fit_staging_new(kiln_model *m, int batch, kiln_fit_staging *st);
void kiln_fit_staging_free(kiln_fit_staging *st);
kiln_status kiln_fit_upload(kiln_model *m, kiln_plan *p, const kiln_data *d, const int64_t *idx,
                            int64_t first, int b, kiln_fit_staging *st);
kiln_status kiln_fit_check_data(const kiln_model *m, const kiln_data *d, const char *what);
bool kiln_fit_has_accuracy(const kiln_model *m);

typedef kiln_status (*kiln_eval_fn)(kiln_model *m, const kiln_data *d, int batch, kiln_fit_staging *st,
                                    double *loss, double *acc);
kiln_status kiln_fit_loop(kiln_model *m, const kiln_data *train, const kiln_data *val,
                          const kiln_fit_config *c, kiln_history *history, kiln_eval_fn eval);
double kiln_now(void);

/* progress.c: Keras' progress output */
typedef struct kiln_progress {
    FILE *out;
    int verbose;
    bool tty;
    int64_t steps;
    double start, last_draw;
} kiln_progress;

void kiln_progress_epoch_begin(kiln_progress *p, int epoch, int epochs, int64_t steps);
/* step done of steps; loss and accuracy the running means (accuracy NaN: not shown) */
void kiln_progress_update(kiln_progress *p, int64_t done, double loss, double accuracy);
void kiln_progress_epoch_end(kiln_progress *p, const kiln_epoch_logs *logs, bool has_acc);

#endif
