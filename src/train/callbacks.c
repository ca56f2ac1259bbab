/* callbacks.c: Keras' built-in callbacks on kiln's callback interface. The monitored-value
 * logic (best, wait, min_delta, mode) is shared by EarlyStopping, ModelCheckpoint and
 * ReduceLROnPlateau. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "kiln/callbacks.h"
#include "model_impl.h"

typedef struct watch {
    char monitor[32];
    double min_delta, best;
    int patience, wait;
    bool maximize;
} watch;

static kiln_status watch_init(watch *w, kiln_monitor m) {
    if (m.patience < 0) return kiln_error(KILN_ERR_INVALID_ARG, "callback: patience %d is negative", m.patience);
    const char *name = m.monitor ? m.monitor : "val_loss";
    static const char *const known[] = {"loss", "accuracy", "val_loss", "val_accuracy"};
    bool ok = false;
    for (int i = 0; i < 4; i++) ok |= !strcmp(name, known[i]);
    if (!ok) return kiln_error(KILN_ERR_INVALID_ARG, "callback: unknown monitor '%s' (loss, accuracy, val_loss, val_accuracy)", name);
    snprintf(w->monitor, sizeof w->monitor, "%s", name);
    w->maximize = strstr(name, "accuracy") != NULL;
    w->min_delta = fabs(m.min_delta);
    w->patience = m.patience;
    w->best = w->maximize ? -INFINITY : INFINITY;
    w->wait = 0;
    return KILN_OK;
}

static double watched(const watch *w, const kiln_epoch_logs *l) {
    if (!strcmp(w->monitor, "loss")) return l->loss;
    if (!strcmp(w->monitor, "accuracy")) return l->accuracy;
    if (!strcmp(w->monitor, "val_loss")) return l->val_loss;
    return l->val_accuracy;
}

/* true when this epoch improved on the best (and records it) */
static bool watch_improved(watch *w, const kiln_epoch_logs *l) {
    double v = watched(w, l);
    bool better = w->maximize ? v - w->min_delta > w->best : v + w->min_delta < w->best;
    if (better) {
        w->best = v;
        w->wait = 0;
    } else {
        w->wait++;
    }
    return better;
}

static kiln_status missing(const watch *w, const kiln_epoch_logs *l, const char *who) {
    if (isnan(watched(w, l)))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: '%s' is not logged (no validation data?)", who, w->monitor);
    return KILN_OK;
}

/* ---- EarlyStopping ---- */

typedef struct early {
    watch w;
    bool restore;
    int nw;
    void **best_weights; /* host copies at the best epoch */
} early;

static void early_free(void *ctx) {
    early *e = ctx;
    for (int i = 0; e->best_weights && i < e->nw; i++) free(e->best_weights[i]);
    free(e->best_weights);
    free(e);
}

static kiln_status copy_weights(kiln_model *m, void **bufs, bool to_model) {
    for (int i = 0; i < kiln_model_weight_count(m); i++) {
        kiln_tensor *t;
        KILN_TRY(kiln_model_weight(m, i, NULL, &t, NULL));
        size_t n = kiln_tensor_nbytes(t);
        if (to_model) {
            KILN_TRY(kiln_tensor_set(t, bufs[i], n));
            continue;
        }
        if (!bufs[i] && !(bufs[i] = malloc(n ? n : 1))) return kiln_error(KILN_ERR_OOM, "EarlyStopping: out of host memory");
        KILN_TRY(kiln_tensor_get(t, bufs[i], n));
    }
    return KILN_OK;
}

static kiln_status early_begin(void *ctx, kiln_model *m) {
    early *e = ctx;
    e->w.best = e->w.maximize ? -INFINITY : INFINITY;
    e->w.wait = 0;
    if (e->restore && !e->best_weights) {
        e->nw = kiln_model_weight_count(m);
        e->best_weights = calloc((size_t)e->nw, sizeof(void *));
        if (!e->best_weights) return kiln_error(KILN_ERR_OOM, "EarlyStopping: out of host memory");
    }
    return KILN_OK;
}

static kiln_status early_epoch(void *ctx, kiln_model *m, const kiln_epoch_logs *l, bool *stop) {
    early *e = ctx;
    KILN_TRY(missing(&e->w, l, "EarlyStopping"));
    if (watch_improved(&e->w, l)) return e->restore ? copy_weights(m, e->best_weights, false) : KILN_OK;
    if (e->w.wait >= e->w.patience) {
        *stop = true;
        if (e->restore && e->best_weights[0]) return copy_weights(m, e->best_weights, true);
    }
    return KILN_OK;
}

kiln_status kiln_early_stopping(kiln_monitor mon, bool restore_best_weights, kiln_callback *out) {
    if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "EarlyStopping: out is NULL");
    early *e = calloc(1, sizeof *e);
    if (!e) return kiln_error(KILN_ERR_OOM, "EarlyStopping: out of host memory");
    kiln_status s = watch_init(&e->w, mon);
    if (s != KILN_OK) {
        free(e);
        return s;
    }
    e->restore = restore_best_weights;
    *out = (kiln_callback){e, early_begin, early_epoch, NULL, NULL, early_free};
    return KILN_OK;
}

/* ---- ModelCheckpoint ---- */

typedef struct checkpoint {
    watch w;
    bool best_only;
    char path[4096];
} checkpoint;

static kiln_status checkpoint_epoch(void *ctx, kiln_model *m, const kiln_epoch_logs *l, bool *stop) {
    checkpoint *c = ctx;
    if (c->best_only) {
        KILN_TRY(missing(&c->w, l, "ModelCheckpoint"));
        if (!watch_improved(&c->w, l)) return KILN_OK;
    }
    return kiln_model_save(m, c->path, false, l->epoch + 1);
}

kiln_status kiln_model_checkpoint(const char *path, kiln_monitor mon, bool save_best_only, kiln_callback *out) {
    if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "ModelCheckpoint: out is NULL");
    if (!path || strlen(path) >= 4096) return kiln_error(KILN_ERR_INVALID_ARG, "ModelCheckpoint: bad path");
    checkpoint *c = calloc(1, sizeof *c);
    if (!c) return kiln_error(KILN_ERR_OOM, "ModelCheckpoint: out of host memory");
    kiln_status s = watch_init(&c->w, mon);
    if (s != KILN_OK) {
        free(c);
        return s;
    }
    c->best_only = save_best_only;
    snprintf(c->path, sizeof c->path, "%s", path);
    *out = (kiln_callback){c, NULL, checkpoint_epoch, NULL, NULL, free};
    return KILN_OK;
}

/* ---- ReduceLROnPlateau ---- */

typedef struct plateau {
    watch w;
    double factor, min_lr;
    int cooldown, cooling;
} plateau;

static kiln_status plateau_epoch(void *ctx, kiln_model *m, const kiln_epoch_logs *l, bool *stop) {
    plateau *p = ctx;
    KILN_TRY(missing(&p->w, l, "ReduceLROnPlateau"));
    if (p->cooling > 0) {
        p->cooling--;
        p->w.wait = 0;
    }
    if (watch_improved(&p->w, l) || p->cooling > 0 || p->w.wait < p->w.patience) return KILN_OK;
    double lr = kiln_model_learning_rate(m);
    if (lr > p->min_lr) KILN_TRY(kiln_model_set_learning_rate(m, fmax(lr * p->factor, p->min_lr)));
    p->cooling = p->cooldown;
    p->w.wait = 0;
    return KILN_OK;
}

kiln_status kiln_reduce_lr_on_plateau(kiln_monitor mon, double factor, int cooldown, double min_lr, kiln_callback *out) {
    if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "ReduceLROnPlateau: out is NULL");
    if (cooldown < 0 || !(min_lr >= 0.0)) return kiln_error(KILN_ERR_INVALID_ARG, "ReduceLROnPlateau: cooldown %d and min_lr %g must be >= 0", cooldown, min_lr);
    if (!(factor > 0.0 && factor < 1.0)) return kiln_error(KILN_ERR_INVALID_ARG, "ReduceLROnPlateau: factor must be in (0, 1) (is %g)", factor);
    plateau *p = calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_ERR_OOM, "ReduceLROnPlateau: out of host memory");
    kiln_status s = watch_init(&p->w, mon);
    if (s != KILN_OK) {
        free(p);
        return s;
    }
    p->factor = factor;
    p->cooldown = cooldown;
    p->min_lr = min_lr;
    *out = (kiln_callback){p, NULL, plateau_epoch, NULL, NULL, free};
    return KILN_OK;
}

/* ---- CSVLogger ---- */

typedef struct csv {
    char path[4096];
    bool append;
    FILE *f;
} csv;

static kiln_status csv_begin(void *ctx, kiln_model *m) {
    csv *c = ctx;
    bool fresh = true;
    if (c->append) {
        FILE *old = fopen(c->path, "r");
        if (old) {
            fresh = fgetc(old) == EOF;
            fclose(old);
        }
    }
    c->f = fopen(c->path, c->append ? "a" : "w");
    if (!c->f) return kiln_error(KILN_ERR_IO, "CSVLogger: cannot open '%s' for writing: %s", c->path, strerror(errno));
    if (fresh) fprintf(c->f, "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n");
    return KILN_OK;
}

static void csv_value(FILE *f, double v) {
    if (isnan(v)) fprintf(f, ",");
    else fprintf(f, ",%.17g", v);
}

static kiln_status csv_epoch(void *ctx, kiln_model *m, const kiln_epoch_logs *l, bool *stop) {
    csv *c = ctx;
    fprintf(c->f, "%d", l->epoch);
    csv_value(c->f, l->accuracy);
    csv_value(c->f, l->learning_rate);
    csv_value(c->f, l->loss);
    csv_value(c->f, l->val_accuracy);
    csv_value(c->f, l->val_loss);
    fputc('\n', c->f);
    /* on the disk before a checkpoint a later callback writes: a row may run ahead of the
     * checkpoint (a resumed run cuts it), never behind it */
    if (fflush(c->f) || (fsync(fileno(c->f)) && errno != EINVAL && errno != EROFS && errno != ENOTSUP))
        return kiln_error(KILN_ERR_IO, "CSVLogger: writing '%s' failed: %s", c->path, strerror(errno));
    return KILN_OK;
}

static kiln_status csv_end(void *ctx, kiln_model *m) {
    csv *c = ctx;
    int bad = c->f ? fclose(c->f) : 0;
    c->f = NULL;
    return bad ? kiln_error(KILN_ERR_IO, "CSVLogger: closing '%s' failed: %s", c->path, strerror(errno)) : KILN_OK;
}

static void csv_free(void *ctx) {
    csv *c = ctx;
    if (c->f) fclose(c->f);
    free(c);
}

kiln_status kiln_csv_logger(const char *path, bool append, kiln_callback *out) {
    if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "CSVLogger: out is NULL");
    if (!path || strlen(path) >= 4096) return kiln_error(KILN_ERR_INVALID_ARG, "CSVLogger: bad path");
    csv *c = calloc(1, sizeof *c);
    if (!c) return kiln_error(KILN_ERR_OOM, "CSVLogger: out of host memory");
    snprintf(c->path, sizeof c->path, "%s", path);
    c->append = append;
    *out = (kiln_callback){c, csv_begin, csv_epoch, NULL, csv_end, csv_free};
    return KILN_OK;
}

void kiln_callback_free(kiln_callback *cb) {
    if (cb && cb->free) cb->free(cb->ctx);
    if (cb) memset(cb, 0, sizeof *cb);
}
