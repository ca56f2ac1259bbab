/* kiln/callbacks.h: Keras' built-in callbacks for kiln_model_fit: EarlyStopping,
 * ModelCheckpoint, ReduceLROnPlateau, CSVLogger. Each fills a kiln_callback (fit.h); pass
 * them in kiln_fit_config.callbacks and release them with kiln_callback_free. A callback of
 * your own is a kiln_callback with your functions and context. */
#ifndef KILN_CALLBACKS_H
#define KILN_CALLBACKS_H

#include "kiln/api.h"

#include "kiln/fit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* monitor: "loss", "accuracy", "val_loss" or "val_accuracy"; mode follows the name (accuracy:
 * max, loss: min), as Keras' mode="auto". */
typedef struct kiln_monitor {
    const char *monitor; /* "val_loss" (also when NULL) */
    double min_delta;    /* an improvement must beat the best by more than this */
    int patience;        /* epochs without improvement before acting, >= 0 */
} kiln_monitor;

/* EarlyStopping: stops training after `patience` epochs without improvement; with
 * restore_best_weights, the weights of the best epoch are put back when it stops. */
KILN_API kiln_status kiln_early_stopping(kiln_monitor mon, bool restore_best_weights, kiln_callback *out);

/* ModelCheckpoint: saves the model (kiln_model_save, weights only) to `path` after each epoch,
 * or with save_best_only only when the monitored value improved. */
KILN_API kiln_status kiln_model_checkpoint(const char *path, kiln_monitor mon, bool save_best_only,
                                  kiln_callback *out);

/* ReduceLROnPlateau: multiplies the learning rate by `factor` after `patience` epochs without
 * improvement, then waits `cooldown` epochs; never below min_lr. */
KILN_API kiln_status kiln_reduce_lr_on_plateau(kiln_monitor mon, double factor, int cooldown, double min_lr,
                                      kiln_callback *out);

/* CSVLogger: one row per epoch to `path`: epoch, then the logged values sorted by name
 * (accuracy, learning_rate, loss, val_accuracy, val_loss) as Keras writes them. With append,
 * an existing file is continued. */
KILN_API kiln_status kiln_csv_logger(const char *path, bool append, kiln_callback *out);

KILN_API void kiln_callback_free(kiln_callback *cb);

#ifdef __cplusplus
}
#endif
#endif
