/* staging.c: getting a batch onto the device (staging.h). Rows of kiln_data are copied into
 * host staging buffers (pinned on a device) and uploaded asynchronously; a batch source's rows
 * are uploaded from its own buffers.
 *
 * Host buffers an asynchronous upload reads must not change until the copy is done: each
 * upload is followed by a marker, and a buffer is refilled only once its marker has passed.
 * Fit's own staging alternates between two buffers (markers 0 and 1), so the host prepares a
 * batch while the device still copies and trains on the one before; a batch source's buffers
 * (marker 2) are handed back at the next next(). */
#include <string.h>

#include "check.h"
#include "checked.h"
#include "error.h"
#include "staging.h"

enum { MARK_SOURCE = 2 };

static int32_t argmax_row(const float *t, int64_t k) {
    int32_t best = 0;
    for (int64_t j = 1; j < k; j++)
        if (t[j] > t[best]) best = (int32_t)j;
    return best;
}

kiln_status kiln_fit_staging_new(kiln_model *m, int batch, kiln_fit_staging *st) {
    memset(st, 0, sizeof *st);
    st->be = m->be;
    int64_t ex = kiln_fit_example_numel(m), out = kiln_fit_output_numel(m);
    KILN_TRY(kiln_shape_size("staging a batch of inputs", 2, (int64_t[2]){batch, ex}, sizeof(float), NULL, NULL));
    KILN_TRY(kiln_shape_size("staging a batch of targets", 2, (int64_t[2]){batch, out}, sizeof(float), NULL, NULL));
    KILN_TRY(kiln_host_alloc(m->be, sizeof(float) * (size_t)(ex * batch), (void **)&st->x));
    KILN_TRY(kiln_host_alloc(m->be, sizeof(int32_t) * (size_t)batch, (void **)&st->y));
    return kiln_host_alloc(m->be, sizeof(float) * (size_t)(out * batch), (void **)&st->t);
}

void kiln_fit_staging_free(kiln_fit_staging *st) {
    kiln_host_free(st->be, st->x);
    kiln_host_free(st->be, st->y);
    kiln_host_free(st->be, st->t);
    memset(st, 0, sizeof *st);
}

kiln_status kiln_fit_upload(kiln_model *m, kiln_plan *p, const kiln_data *d, const int64_t *idx,
                            int64_t first, int b, kiln_fit_staging *st) {
    int64_t ex = kiln_fit_example_numel(m), out = kiln_fit_output_numel(m);
    bool labels = kiln_fit_uses_labels(m);
    for (int r = 0; r < b; r++) {
        int64_t i = idx ? idx[first + r] : first + r;
        memcpy(st->x + (size_t)r * (size_t)ex, d->x + (size_t)i * (size_t)ex, sizeof(float) * (size_t)ex);
        if (labels) {
            st->y[r] = d->y[i];
            continue;
        }
        const float *t = d->y_dense + (size_t)i * (size_t)out;
        memcpy(st->t + (size_t)r * (size_t)out, t, sizeof(float) * (size_t)out);
        st->y[r] = argmax_row(t, out);
    }
    KILN_TRY(kiln_tensor_set_async(p->v[0].y, st->x, sizeof(float) * (size_t)(ex * b)));
    KILN_TRY(kiln_tensor_set_async(p->labels, st->y, sizeof(int32_t) * (size_t)b));
    if (labels) return KILN_OK;
    return kiln_tensor_set_async(p->y_dense, st->t, sizeof(float) * (size_t)(out * b));
}

kiln_status kiln_fit_upload_alternate(kiln_model *m, kiln_plan *p, const kiln_data *d, const int64_t *idx,
                                      int64_t first, int b, kiln_fit_staging st[2], int which) {
    KILN_TRY(kiln_backend_wait_mark(m->be, which));
    KILN_TRY(kiln_fit_upload(m, p, d, idx, first, b, &st[which]));
    return kiln_backend_mark(m->be, which);
}

kiln_status kiln_fit_upload_source(kiln_model *m, kiln_plan *p, kiln_batch_source *src, int b, int first, int count) {
    KILN_TRY(kiln_backend_wait_mark(m->be, MARK_SOURCE));
    kiln_batch bt;
    KILN_TRY(src->next(src->ctx, &bt));
    if (bt.count != b)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: the batch source gave %lld rows for a step of %d",
                          (long long)bt.count, b);
    int64_t ex = kiln_fit_example_numel(m), k = kiln_fit_output_numel(m);
    for (int r = 0; r < b; r++)
        if (bt.labels[r] < 0 || bt.labels[r] >= k)
            return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: the batch source gave label %d, outside the model's %lld classes",
                              bt.labels[r], (long long)k);
    KILN_TRY(kiln_tensor_set_async(p->v[0].y, bt.images + (size_t)first * (size_t)ex, sizeof(float) * (size_t)(ex * count)));
    KILN_TRY(kiln_tensor_set_async(p->labels, bt.labels + first, sizeof(int32_t) * (size_t)count));
    return kiln_backend_mark(m->be, MARK_SOURCE);
}
