/* progress.h: Keras' progress output for fit, and the clock it and the epoch logs read
 * (internal). Called by the epoch loop; calls nothing of fit's. */
#ifndef KILN_PROGRESS_H
#define KILN_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/fit.h"

/* seconds on a monotonic clock */
double kiln_now(void);

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
