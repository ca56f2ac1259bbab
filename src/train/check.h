/* check.h: what fit, evaluate and predict ask of a model and of the host data they are given
 * (internal). */
#ifndef KILN_CHECK_H
#define KILN_CHECK_H

#include "kiln/fit.h"
#include "model_impl.h"

int64_t kiln_fit_example_numel(const kiln_model *m); /* floats of one input row */
int64_t kiln_fit_output_numel(const kiln_model *m);  /* outputs of one row */
/* the loss takes integer labels y (sparse categorical cross-entropy), else dense targets */
bool kiln_fit_uses_labels(const kiln_model *m);
/* accuracy is logged (both cross-entropies; categorical: against the target's argmax) */
bool kiln_fit_has_accuracy(const kiln_model *m);

/* m compiled, batch >= 1; messages start with fn */
kiln_status kiln_fit_check_ready(const kiln_model *m, int batch, const char *fn);
/* n rows of inputs and of outputs of m fit kiln's size limit (core/checked.h): the arrays
 * fit, evaluate and predict index hold no overflowing offset */
kiln_status kiln_fit_check_rows(const kiln_model *m, int64_t n, const char *what);
/* d non-empty (its rows checked as above) with the targets m's loss needs, labels in range, categorical targets
 * distributions; messages start with what */
kiln_status kiln_fit_check_data(const kiln_model *m, const kiln_data *d, const char *what);

#endif
