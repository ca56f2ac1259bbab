/* staging.h: getting a batch onto the device for fit and evaluate (internal): host staging
 * buffers (pinned on a device), rows of kiln_data copied through them, or a batch source's
 * buffers uploaded directly. */
#ifndef KILN_STAGING_H
#define KILN_STAGING_H

#include "kiln/fit.h"
#include "model_impl.h"

/* host staging for one batch (pinned on a device) */
typedef struct kiln_fit_staging {
    kiln_backend *be;
    float *x, *t;
    int32_t *y;
} kiln_fit_staging;

kiln_status kiln_fit_staging_new(kiln_model *m, int batch, kiln_fit_staging *st);
void kiln_fit_staging_free(kiln_fit_staging *st); /* also after a failed new */

/* uploads rows idx[first..first+b) of d (rows first..first+b when idx is NULL) into the plan's
 * input and targets through st; st must not change until the device has read it */
kiln_status kiln_fit_upload(kiln_model *m, kiln_plan *p, const kiln_data *d, const int64_t *idx,
                            int64_t first, int b, kiln_fit_staging *st);
/* the same through st[which] (which 0 or 1), once the device is done with that buffer's last
 * upload, so the host fills one while the device reads the other */
kiln_status kiln_fit_upload_alternate(kiln_model *m, kiln_plan *p, const kiln_data *d, const int64_t *idx,
                                      int64_t first, int b, kiln_fit_staging st[2], int which);
/* the next batch of src (b rows, labels checked), its rows [first, first + count) uploaded
 * straight from its buffers (a data-parallel rank's share; 0 and b otherwise) */
kiln_status kiln_fit_upload_source(kiln_model *m, kiln_plan *p, kiln_batch_source *src, int b, int first, int count);

#endif
