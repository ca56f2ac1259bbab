/* evaluate.h: the inference-mode pass that evaluate and fit's validation share (internal). */
#ifndef KILN_EVALUATE_H
#define KILN_EVALUATE_H

#include "model_impl.h"
#include "staging.h"

/* mean loss and accuracy (NaN for a loss without accuracy) over d in inference mode, in
 * batches of `batch` rows through st (staging for that many rows) */
kiln_status kiln_fit_evaluate(kiln_model *m, const kiln_data *d, int batch, kiln_fit_staging *st,
                              double *loss, double *acc);

#endif
