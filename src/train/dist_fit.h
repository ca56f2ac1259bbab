/* dist_fit.h: fit's part in data-parallel training (internal, dist_fit.c): each rank's share
 * of a global batch, the weights made equal at the start, and each step's all-reduce of the
 * gradients and the metrics. A model without a communicator (or with one rank) skips all. */
#ifndef KILN_DIST_FIT_H
#define KILN_DIST_FIT_H

#include "model_impl.h"

/* the global batch size divides among the ranks (else the message says so) */
kiln_status kiln_fit_dist_check(const kiln_model *m, int batch_size);
/* rank r's rows of a global batch of b: [*first, *first + *count), the r-th contiguous
 * 1/N of it (b need not divide: the last batch of an epoch); an empty share is refused */
kiln_status kiln_fit_dist_share(const kiln_model *m, int b, int *first, int *count);
/* fit's data-parallel state (dist_fit.c): the gradient buckets and where they go */
typedef struct kiln_fit_dist kiln_fit_dist;
/* every weight of rank 0 on every rank (the same initial weights whatever each built), and
 * the gradient buckets (KILN_DIST_BUCKET_BYTES; the backend's device communicator when it has
 * one); *out stays NULL for a plain process (every call below then does nothing) */
kiln_status kiln_fit_dist_begin(kiln_model *m, kiln_fit_dist **out);
/* before a step's backward over `count` of the global batch's b rows: buckets go to the
 * communicator as the backward completes them (m->grads_ready) */
kiln_status kiln_fit_dist_backward(kiln_fit_dist *d, int count, int b);
/* after backward, before the optimizer: each trainable weight's gradient becomes the sum over
 * ranks of (count / b) * its gradient (the gradient of the global batch's mean loss), and the
 * step's loss sum and correct count their sums over ranks */
kiln_status kiln_fit_dist_reduce(kiln_fit_dist *d, int count, int b, kiln_tensor *loss, kiln_tensor *correct);
/* d's buffers and device communicator; m's hook unset (NULL: nothing) */
void kiln_fit_dist_free(kiln_fit_dist *d);

#endif
