/* epoch.c: one fit's training state and its epochs (epoch.h). Each step uploads a batch
 * (staging.c), runs forward, the fused loss, backward and the optimizer update, and leaves its
 * loss sum and correct count on the device in per-epoch arrays, downloaded once per log
 * interval (and at the end of the epoch), so the device is not stopped every step. A NaN or
 * infinite loss stops training with a message naming the epoch and the step. Batches are
 * copied from the training rows, or, with kiln_fit_config.batches, taken from a batch source
 * (a prefetcher thread) in the same order; the device is synchronized before the source may
 * refill its buffers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "check.h"
#include "dist_fit.h"
#include "epoch.h"
#include "error.h"
#include "evaluate.h"
#include "rng.h"

/* ---- the per-step arrays ---- */

static void steps_free(kiln_fit_steps *e) {
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
    memset(e, 0, sizeof *e);
}

static kiln_status steps_new(kiln_model *m, int64_t steps, kiln_fit_steps *e) {
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

/* brings steps [fetched, upto) of epoch `epoch` to the host; checks their losses */
static kiln_status fetch(kiln_fit_run *r, int64_t upto, int epoch) {
    kiln_fit_steps *e = &r->e;
    const kiln_fit_config *c = r->c;
    int64_t n = r->train->n, batch = c->batch_size;
    if (upto <= e->fetched) return KILN_OK;
    /* the whole arrays are small (steps floats): one download each */
    KILN_TRY(kiln_tensor_get(e->loss, e->h_loss, sizeof(float) * (size_t)e->steps));
    KILN_TRY(kiln_tensor_get(e->correct, e->h_correct, sizeof(float) * (size_t)e->steps));
    for (int64_t s = e->fetched; s < upto; s++) {
        int64_t b = (s + 1) * batch <= n ? batch : n - s * batch;
        if (!isfinite(e->h_loss[s]))
            return kiln_error(KILN_ERR_NUMERIC, "kiln_model_fit: the loss is %s at epoch %d, step %lld (of %lld); training stopped",
                              isnan(e->h_loss[s]) ? "NaN" : "infinite", epoch + 1, (long long)s + 1, (long long)e->steps);
        e->loss_sum += e->h_loss[s];
        e->correct_sum += e->h_correct[s];
        e->seen += b;
        if (c->on_step)
            c->on_step(c->on_step_ctx, r->m->iterations - (upto - 1 - s), epoch, e->h_loss[s] / (double)b,
                       e->h_correct[s] / (double)b);
    }
    e->fetched = upto;
    return KILN_OK;
}

/* ---- the batch source ---- */

static kiln_status source_start(kiln_fit_run *r, int epoch) {
    const kiln_fit_config *c = r->c;
    if (!c->batches) return KILN_OK;
    KILN_TRY(kiln_backend_synchronize(r->m->be));
    return c->batches->start(c->batches->ctx, r->idx, r->train->n, c->seed * 0x9e3779b97f4a7c15ull + (uint64_t)epoch + 1);
}

static void source_stop(kiln_fit_run *r) {
    const kiln_fit_config *c = r->c;
    if (!c->batches) return;
    (void)kiln_backend_synchronize(r->m->be); /* an error here was or will be reported by the loop */
    if (c->batches->stop) c->batches->stop(c->batches->ctx);
}

/* ---- begin, epoch, end ---- */

kiln_status kiln_fit_begin(kiln_fit_run *r, kiln_model *m, const kiln_data *train, const kiln_data *val,
                           const kiln_fit_config *c) {
    memset(r, 0, sizeof *r);
    r->m = m;
    r->train = train;
    r->val = val;
    r->c = c;
    r->log_every = c->log_every > 0 ? c->log_every : kiln_backend_log_interval(m->be);
    r->labels = kiln_fit_has_accuracy(m);
    /* data-parallel (kiln_model_set_comm): rank 0 alone prints */
    r->prog = (kiln_progress){c->progress ? c->progress : stdout, kiln_comm_rank(m->comm) ? 0 : c->verbose, false, 0, 0, 0};
    KILN_TRY(kiln_fit_dist_check(m, c->batch_size));
    KILN_TRY(kiln_fit_dist_begin(m, &r->dist));
    r->idx = malloc(sizeof(int64_t) * (size_t)train->n);
    if (!r->idx) return kiln_error(KILN_ERR_OOM, "kiln_model_fit: out of host memory");
    if (c->batches && (!r->labels || !c->batches->start || !c->batches->next))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit: a batch source needs start() and next() and "
                          "a loss with integer labels");
    for (int k = 0; k < 2; k++) KILN_TRY(kiln_fit_staging_new(m, c->batch_size, &r->st[k]));
    return steps_new(m, (train->n + c->batch_size - 1) / c->batch_size, &r->e);
}

/* the epoch's order of the training rows: the same for a given (seed, epoch), whatever epoch
 * training resumed at; kiln_dataset_shuffle_indices(idx, n, seed * 1000003 + epoch) (data.h) */
static void order(kiln_fit_run *r, int epoch) {
    int64_t n = r->train->n;
    if (r->c->shuffle) kiln_rng_permutation(r->idx, n, r->c->seed * 1000003u + (uint64_t)epoch);
    else for (int64_t i = 0; i < n; i++) r->idx[i] = i;
}

/* forward, loss, the step's loss sum and correct count into slot s, backward, update */
static kiln_status train_step(kiln_fit_run *r, kiln_plan *p, int64_t s, uint64_t seed, int b_global) {
    kiln_model *m = r->m;
    KILN_TRY(kiln_model_forward(m, p, true, true, seed));
    KILN_TRY(kiln_model_loss(m, p, true));
    KILN_TRY(kiln_sum(p->loss_rows, 0x1, r->e.loss_at[s]));
    if (r->labels)
        KILN_TRY(kiln_accuracy(p->v[m->n_nodes - 1].z, p->labels, r->e.correct_at[s]));
    else
        KILN_TRY(kiln_fill(r->e.correct_at[s], 0.0));
    KILN_TRY(kiln_fit_dist_backward(r->dist, p->batch, b_global));
    KILN_TRY(kiln_model_backward(m, p, seed));
    /* Keras' regularizers: the penalty (of the weights this step started from) joins the
     * batch's loss, counted once per example like the mean loss, and its gradient the weights' */
    const kiln_tensor *reg;
    KILN_TRY(kiln_model_regularize(m, true, &reg));
    if (reg) KILN_TRY(kiln_axpy((float)p->batch, reg, r->e.loss_at[s]));
    /* data-parallel: the global batch's gradient and metrics on every rank (dist_fit.c) */
    KILN_TRY(kiln_fit_dist_reduce(r->dist, p->batch, b_global, r->e.loss_at[s], r->e.correct_at[s]));
    return kiln_model_apply_gradients(m);
}

/* step s of epoch `epoch`: upload, train, and every log interval the metrics and callbacks */
static kiln_status step(kiln_fit_run *r, int epoch, int64_t s) {
    kiln_model *m = r->m;
    const kiln_fit_config *c = r->c;
    int batch = c->batch_size;
    int64_t n = r->train->n;
    int b = (int)((s + 1) * batch <= n ? batch : n - s * batch);
    uint64_t seed = c->seed * 0x2545f4914f6cdd1dull + (uint64_t)m->iterations + 1;
    kiln_plan *p;
    int first, count; /* this rank's rows of the batch (all of them in a plain process) */
    KILN_TRY(kiln_fit_dist_share(m, b, &first, &count));
    kiln_model_set_row0(m, first); /* Dropout's masks: those of these rows of the global batch */
    KILN_TRY(kiln_model_plan(m, count, &p));
    KILN_TRY(c->batches ? kiln_fit_upload_source(m, p, c->batches, b, first, count)
                        : kiln_fit_upload_alternate(m, p, r->train, r->idx, s * batch + first, count, r->st, (int)(s & 1)));
    KILN_TRY(train_step(r, p, s, seed, b));
    kiln_fit_steps *e = &r->e;
    if (s + 1 == e->steps || (s + 1) % r->log_every == 0) {
        KILN_TRY(fetch(r, s + 1, epoch));
        kiln_progress_update(&r->prog, s + 1, e->loss_sum / (double)e->seen,
                             r->labels ? e->correct_sum / (double)e->seen : NAN);
    }
    for (int k = 0; k < c->n_callbacks; k++)
        if (c->callbacks[k].on_batch_end && e->fetched == s + 1)
            KILN_TRY(c->callbacks[k].on_batch_end(c->callbacks[k].ctx, m, m->iterations, e->h_loss[s] / b));
    return KILN_OK;
}

kiln_status kiln_fit_epoch(kiln_fit_run *r, int epoch, kiln_epoch_logs *l) {
    kiln_model *m = r->m;
    const kiln_fit_config *c = r->c;
    kiln_fit_steps *e = &r->e;
    double n = (double)r->train->n;
    order(r, epoch);
    KILN_TRY(source_start(r, epoch));
    kiln_progress_epoch_begin(&r->prog, epoch, c->epochs, e->steps);
    double t0 = kiln_now(), lr = kiln_model_learning_rate(m);
    e->fetched = e->seen = 0;
    e->loss_sum = e->correct_sum = 0.0;
    for (int64_t s = 0; s < e->steps; s++) KILN_TRY(step(r, epoch, s));
    *l = (kiln_epoch_logs){epoch, e->loss_sum / n, r->labels ? e->correct_sum / n : NAN, NAN, NAN, lr, 0};
    if (r->val) {
        KILN_TRY(kiln_backend_synchronize(m->be));
        KILN_TRY(kiln_fit_evaluate(m, r->val, c->batch_size, &r->st[0], &l->val_loss, &l->val_accuracy));
    }
    l->seconds = kiln_now() - t0;
    kiln_progress_epoch_end(&r->prog, l, r->labels);
    return KILN_OK;
}

void kiln_fit_end(kiln_fit_run *r) {
    source_stop(r);
    kiln_fit_dist_free(r->dist);
    r->dist = NULL;
    steps_free(&r->e);
    kiln_fit_staging_free(&r->st[0]);
    kiln_fit_staging_free(&r->st[1]);
    free(r->idx);
    r->idx = NULL;
}
