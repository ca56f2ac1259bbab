/* fit_loop.c: the epochs and steps of fit. Per-step loss sums and correct counts are written
 * by the device into per-epoch arrays and downloaded once per log interval (and at the end of
 * the epoch), so the device is not stopped every step. A NaN or infinite loss stops training
 * with a message naming the epoch and the step. Batches are copied from the training rows, or,
 * with kiln_fit_config.batches, taken from a batch source (a prefetcher thread) in the same
 * order; the source's buffer is uploaded directly, and the device synchronized before the
 * source may refill it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "error.h"
#include "fit_impl.h"
#include "rng.h"

typedef struct epoch_state {
    kiln_tensor *loss, *correct;         /* (steps) on the device */
    kiln_tensor **loss_at, **correct_at; /* one-element views, made once per fit */
    float *h_loss, *h_correct;           /* host copies */
    int64_t steps, fetched;              /* steps whose values are on the host */
    double loss_sum, correct_sum;
    int64_t seen;                        /* examples in fetched steps */
} epoch_state;

static void epoch_state_free(epoch_state *e) {
    for (int64_t s = 0; s < e->steps && e->loss_at; s++) {
        kiln_tensor_free(e->loss_at[s]);
        kiln_tensor_free(e->correct_at[s]);
    }
    free(e->loss_at);
    free(e->correct_at);
    free(e->h_loss);
    free(e->h_correct);
    kiln_tensor_free(e->loss);
    kiln_tensor_free(e->correct);
}

static kiln_status epoch_state_new(kiln_model *m, int64_t steps, epoch_state *e) {
    memset(e, 0, sizeof *e);
    e->steps = steps;
    KILN_TRY(kiln_tensor_new(m->be, KILN_F32, 1, &steps, "step_loss", &e->loss));
    KILN_TRY(kiln_tensor_new(m->be, KILN_F32, 1, &steps, "step_correct", &e->correct));
    e->loss_at = calloc((size_t)steps, sizeof *e->loss_at);
    e->correct_at = calloc((size_t)steps, sizeof *e->correct_at);
    e->h_loss = calloc((size_t)steps, sizeof(float));
    e->h_correct = calloc((size_t)steps, sizeof(float));
    if (!e->loss_at || !e->correct_at || !e->h_loss || !e->h_correct)
        return kiln_error(KILN_ERR_OOM, "kiln_model_fit: out of host memory for %lld steps", (long long)steps);
    int64_t one = 1;
    for (int64_t s = 0; s < steps; s++) {
        KILN_TRY(kiln_tensor_view(e->loss, s, 1, &one, &e->loss_at[s]));
        KILN_TRY(kiln_tensor_view(e->correct, s, 1, &one, &e->correct_at[s]));
    }
    return KILN_OK;
}

/* brings steps [fetched, upto) to the host; checks their losses */
static kiln_status fetch(kiln_model *m, epoch_state *e, int64_t upto, int64_t n_train, int batch,
                         int epoch, const kiln_fit_config *c) {
    if (upto <= e->fetched) return KILN_OK;
    /* the whole arrays are small (steps floats): one download each */
    KILN_TRY(kiln_tensor_get(e->loss, e->h_loss, sizeof(float) * (size_t)e->steps));
    KILN_TRY(kiln_tensor_get(e->correct, e->h_correct, sizeof(float) * (size_t)e->steps));
    for (int64_t s = e->fetched; s < upto; s++) {
        int64_t b = (s + 1) * batch <= n_train ? batch : n_train - s * batch;
        if (!isfinite(e->h_loss[s]))
            return kiln_error(KILN_ERR_NUMERIC, "kiln_model_fit: the loss is %s at epoch %d, step %lld (of %lld); training stopped",
                              isnan(e->h_loss[s]) ? "NaN" : "infinite", epoch + 1, (long long)s + 1, (long long)e->steps);
        e->loss_sum += e->h_loss[s];
        e->correct_sum += e->h_correct[s];
        e->seen += b;
        if (c->on_step)
            c->on_step(c->on_step_ctx, m->iterations - (upto - 1 - s), epoch, e->h_loss[s] / (double)b,
                       e->h_correct[s] / (double)b);
    }
    e->fetched = upto;
    return KILN_OK;
}

static kiln_status train_step(kiln_model *m, kiln_plan *p, epoch_state *e, int64_t s, uint64_t seed) {
    KILN_TRY(kiln_model_forward(m, p, true, true, seed));
    KILN_TRY(kiln_model_loss(m, p, true));
    KILN_TRY(kiln_sum(p->loss_rows, 0x1, e->loss_at[s]));
    if (kiln_fit_has_accuracy(m))
        KILN_TRY(kiln_accuracy(p->v[m->n_nodes - 1].z, p->labels, e->correct_at[s]));
    else
        KILN_TRY(kiln_fill(e->correct_at[s], 0.0));
    KILN_TRY(kiln_model_backward(m, p, seed));
    return kiln_model_apply_gradients(m);
}

/* Host buffers an asynchronous upload reads must not change until the copy is done: each
 * upload is followed by a marker, and a buffer is refilled only once its marker has passed.
 * Fit's own staging alternates between two buffers (markers 0 and 1), so the host prepares a
 * batch while the device still copies and trains on the one before; a batch source's buffers
 * (marker 2) are handed back at the next next(). */
enum { MARK_SOURCE = 2 };

/* a batch from cfg->batches, uploaded straight from the source's buffers */
static kiln_status source_upload(kiln_model *m, kiln_plan *p, kiln_batch_source *src, int b) {
    KILN_TRY(kiln_backend_wait_mark(m->be, MARK_SOURCE));
    kiln_batch bt;
    KILN_TRY(src->next(src->ctx, &bt));
    if (bt.count != b)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: the batch source gave %lld rows for a step of %d",
                          (long long)bt.count, b);
    int64_t ex = kiln_node_out_numel(&m->nodes[0]), k = kiln_node_out_numel(&m->nodes[m->n_nodes - 1]);
    for (int r = 0; r < b; r++)
        if (bt.labels[r] < 0 || bt.labels[r] >= k)
            return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: the batch source gave label %d, outside the model's %lld classes",
                              bt.labels[r], (long long)k);
    KILN_TRY(kiln_tensor_set_async(p->v[0].y, bt.images, sizeof(float) * (size_t)(ex * b)));
    KILN_TRY(kiln_tensor_set_async(p->labels, bt.labels, sizeof(int32_t) * (size_t)b));
    return kiln_backend_mark(m->be, MARK_SOURCE);
}

/* a batch of rows idx[first..] through staging buffer `which` (0 or 1) */
static kiln_status staged_upload(kiln_model *m, kiln_plan *p, const kiln_data *d, const int64_t *idx,
                                 int64_t first, int b, kiln_fit_staging *st, int which) {
    KILN_TRY(kiln_backend_wait_mark(m->be, which));
    KILN_TRY(kiln_fit_upload(m, p, d, idx, first, b, &st[which]));
    return kiln_backend_mark(m->be, which);
}

static kiln_status source_start(kiln_model *m, const kiln_fit_config *c, const int64_t *idx, int64_t n, int epoch) {
    if (!c->batches) return KILN_OK;
    KILN_TRY(kiln_backend_synchronize(m->be));
    return c->batches->start(c->batches->ctx, idx, n, c->seed * 0x9e3779b97f4a7c15ull + (uint64_t)epoch + 1);
}

static void source_stop(kiln_model *m, const kiln_fit_config *c) {
    if (!c->batches) return;
    (void)kiln_backend_synchronize(m->be); /* an error here was or will be reported by the loop */
    if (c->batches->stop) c->batches->stop(c->batches->ctx);
}

static kiln_status run_callbacks_end(const kiln_fit_config *c, kiln_model *m, const kiln_epoch_logs *l, bool *stop) {
    for (int k = 0; k < c->n_callbacks; k++)
        if (c->callbacks[k].on_epoch_end) KILN_TRY(c->callbacks[k].on_epoch_end(c->callbacks[k].ctx, m, l, stop));
    return KILN_OK;
}

kiln_status kiln_fit_loop(kiln_model *m, const kiln_data *train, const kiln_data *val,
                          const kiln_fit_config *c, kiln_history *history, kiln_eval_fn eval) {
    int batch = c->batch_size;
    int64_t n = train->n, steps = (n + batch - 1) / batch;
    int log_every = c->log_every > 0 ? c->log_every : kiln_backend_log_interval(m->be);
    bool labels = kiln_fit_has_accuracy(m);
    kiln_progress prog = {c->progress ? c->progress : stdout, c->verbose, false, 0, 0, 0};
    kiln_fit_staging st[2] = {0};
    epoch_state e = {0};
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)n);
    if (!idx) return kiln_error(KILN_ERR_OOM, "kiln_model_fit: out of host memory");
    kiln_status s = c->batches && (!labels || !c->batches->start || !c->batches->next)
                        ? kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: a batch source needs start() and next() and "
                                     "a loss with integer labels")
                        : KILN_OK;
    for (int k = 0; s == KILN_OK && k < 2; k++) s = kiln_fit_staging_new(m, batch, &st[k]);
    if (s == KILN_OK) s = epoch_state_new(m, steps, &e);
    int epochs = c->epochs;
    if (history && s == KILN_OK) {
        history->logs = calloc((size_t)(epochs > c->initial_epoch ? epochs - c->initial_epoch : 1), sizeof *history->logs);
        if (!history->logs) s = kiln_error(KILN_ERR_OOM, "kiln_model_fit: out of host memory");
    }
    for (int k = 0; s == KILN_OK && k < c->n_callbacks; k++)
        if (c->callbacks[k].on_train_begin) s = c->callbacks[k].on_train_begin(c->callbacks[k].ctx, m);
    bool stop = false;
    for (int epoch = c->initial_epoch; s == KILN_OK && epoch < epochs && !stop; epoch++) {
        /* the same shuffle for a given (seed, epoch), whatever epoch training resumed at:
         * kiln_dataset_shuffle_indices(idx, n, seed * 1000003 + epoch) (kiln/data.h) */
        if (c->shuffle) kiln_rng_permutation(idx, n, c->seed * 1000003u + (uint64_t)epoch);
        else for (int64_t i = 0; i < n; i++) idx[i] = i;
        if ((s = source_start(m, c, idx, n, epoch)) != KILN_OK) break;
        kiln_progress_epoch_begin(&prog, epoch, epochs, steps);
        double t0 = kiln_now(), lr = kiln_model_learning_rate(m);
        e.fetched = e.seen = 0;
        e.loss_sum = e.correct_sum = 0.0;
        for (int64_t st_i = 0; s == KILN_OK && st_i < steps; st_i++) {
            int b = (int)((st_i + 1) * batch <= n ? batch : n - st_i * batch);
            kiln_plan *p;
            uint64_t seed = c->seed * 0x2545f4914f6cdd1dull + (uint64_t)m->iterations + 1;
            if ((s = kiln_model_plan(m, b, &p)) != KILN_OK) break;
            s = c->batches ? source_upload(m, p, c->batches, b)
                           : staged_upload(m, p, train, idx, st_i * batch, b, st, (int)(st_i & 1));
            if (s != KILN_OK) break;
            if ((s = train_step(m, p, &e, st_i, seed)) != KILN_OK) break;
            bool last = st_i + 1 == steps;
            if (last || (st_i + 1) % log_every == 0) {
                if ((s = fetch(m, &e, st_i + 1, n, batch, epoch, c)) != KILN_OK) break;
                kiln_progress_update(&prog, st_i + 1, e.loss_sum / (double)e.seen,
                                     labels ? e.correct_sum / (double)e.seen : NAN);
            }
            for (int k = 0; s == KILN_OK && k < c->n_callbacks; k++)
                if (c->callbacks[k].on_batch_end && e.fetched == st_i + 1)
                    s = c->callbacks[k].on_batch_end(c->callbacks[k].ctx, m, m->iterations, e.h_loss[st_i] / b);
        }
        if (s != KILN_OK) break;
        kiln_epoch_logs l = {epoch, e.loss_sum / (double)n, labels ? e.correct_sum / (double)n : NAN, NAN, NAN, lr, 0};
        if (val && ((s = kiln_backend_synchronize(m->be)) != KILN_OK ||
                    (s = eval(m, val, batch, &st[0], &l.val_loss, &l.val_accuracy)) != KILN_OK))
            break;
        l.seconds = kiln_now() - t0;
        kiln_progress_epoch_end(&prog, &l, labels);
        if (history) history->logs[history->epochs++] = l;
        s = run_callbacks_end(c, m, &l, &stop);
    }
    source_stop(m, c);
    if (history) history->stopped_early = stop;
    for (int k = 0; k < c->n_callbacks; k++)
        if (c->callbacks[k].on_train_end) {
            kiln_status s2 = c->callbacks[k].on_train_end(c->callbacks[k].ctx, m);
            if (s == KILN_OK) s = s2;
        }
    epoch_state_free(&e);
    kiln_fit_staging_free(&st[0]);
    kiln_fit_staging_free(&st[1]);
    free(idx);
    return s;
}
