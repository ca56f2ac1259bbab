/* kiln/fit.h: training and inference on host data: kiln_model_fit (Keras' fit: epochs of
 * shuffled batches, validation, the history, callbacks, progress output, a batch source such as
 * a prefetcher), kiln_model_evaluate and kiln_model_predict, for a model of kiln/model.h built
 * and compiled. docs/training.md tells how fit trains; kiln/callbacks.h has Keras' built-in
 * callbacks. */
#ifndef KILN_FIT_H
#define KILN_FIT_H

#include "kiln/api.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/data.h"
#include "kiln/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Host data: x (n, input shape...) f32, y (n) i32 class labels (sparse losses) or
 * y_dense (n, classes) f32 (categorical cross-entropy, mean squared error). */
typedef struct kiln_data {
    const float *x;
    const int32_t *y;
    const float *y_dense;
    int64_t n;
} kiln_data;

typedef struct kiln_epoch_logs {
    int epoch;               /* 0-based */
    double loss, accuracy;   /* accuracy is NaN for losses without class labels */
    double val_loss, val_accuracy; /* NaN without validation */
    double learning_rate;
    double seconds;
} kiln_epoch_logs;

typedef struct kiln_history {
    int epochs;
    kiln_epoch_logs *logs;   /* epochs entries; free with kiln_history_free */
    bool stopped_early;
} kiln_history;
KILN_API void kiln_history_free(kiln_history *h);

/* A callback: any member may be NULL. Return non-OK to stop training with that status;
 * set *stop to end training after this epoch (EarlyStopping). */
typedef struct kiln_callback {
    void *ctx;
    kiln_status (*on_train_begin)(void *ctx, kiln_model *m);
    kiln_status (*on_epoch_end)(void *ctx, kiln_model *m, const kiln_epoch_logs *logs, bool *stop);
    kiln_status (*on_batch_end)(void *ctx, kiln_model *m, int64_t step, double loss);
    kiln_status (*on_train_end)(void *ctx, kiln_model *m);
    void (*free)(void *ctx);
} kiln_callback;

/* Where fit's training batches come from instead of rows of train->x and train->y (sparse
 * labels only). Each epoch, start() gets the epoch's order of the training rows (shuffled by
 * fit exactly as it shuffles its own) and a seed of the (fit seed, epoch); each step, next()
 * must give the next rows of that order, as many as the step takes, in host memory that stays
 * untouched until the following next() or stop(); fit finishes using a batch before asking for
 * the next one. stop() ends an epoch early (may be NULL). The same rows give the same result,
 * bit for bit, as fit's own copying. kiln_prefetcher_batch_source wraps a prefetcher (data.h),
 * which gathers (and augments) the next batch on a background thread. */
typedef struct kiln_batch_source {
    void *ctx;
    kiln_status (*start)(void *ctx, const int64_t *order, int64_t n, uint64_t seed);
    kiln_status (*next)(void *ctx, kiln_batch *out);
    void (*stop)(void *ctx);
} kiln_batch_source;

/* A batch source over p, whose dataset holds the training rows of fit's `train` (x, y). */
KILN_API kiln_batch_source kiln_prefetcher_batch_source(kiln_prefetcher *p);

typedef struct kiln_fit_config {
    int epochs;              /* 1 */
    int batch_size;          /* 32 */
    bool shuffle;            /* true, seeded */
    uint64_t seed;           /* shuffling and dropout */
    kiln_data validation;    /* validation_data (n = 0: none) */
    double validation_split; /* Keras: the last fraction of the data, taken before shuffling */
    int initial_epoch;
    int verbose;             /* 0 silent, 1 progress bar (a line per epoch when not a tty), 2 a line per epoch */
    FILE *progress;          /* stdout when NULL */
    int log_every;           /* steps between metric downloads (0: the backend's, 1 CPU, 32 CUDA) */
    kiln_callback *callbacks; /* n_callbacks of them (n_callbacks >= 0; NULL only with 0) */
    int n_callbacks;
    /* called with every step's loss and accuracy, once they are on the host */
    void (*on_step)(void *ctx, int64_t step, int epoch, double loss, double accuracy);
    void *on_step_ctx;
    /* NULL: batches are copied from train's rows; else they come from this source */
    kiln_batch_source *batches;
} kiln_fit_config;

KILN_API kiln_fit_config kiln_fit_defaults(void);

/* Trains m on train (Keras' fit). `history` (may be NULL) is emptied first, whatever the
 * outcome, then receives one entry per epoch run; free it with kiln_history_free. */
KILN_API kiln_status kiln_model_fit(kiln_model *m, const kiln_data *train, const kiln_fit_config *cfg,
                           kiln_history *history);
/* Loss and accuracy in inference mode. */
KILN_API kiln_status kiln_model_evaluate(kiln_model *m, const kiln_data *data, int batch_size,
                                double *loss, double *accuracy);
/* The model's outputs (probabilities after a softmax) for n rows into out (n x outputs). */
KILN_API kiln_status kiln_model_predict(kiln_model *m, const float *x, int64_t n, int batch_size,
                               float *out);

#ifdef __cplusplus
}
#endif
#endif
