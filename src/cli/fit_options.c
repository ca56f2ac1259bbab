/* fit_options.c: the options of Keras' fit on kiln's command line (docs/cli.md): --momentum,
 * --nesterov, --lr-schedule, --clipnorm, --early-stopping, --reduce-lr-on-plateau,
 * --label-smoothing, --from-logits. Their specs are parsed and checked against each other with
 * the rest of the command line, before anything is opened (a usage error names the flag);
 * --from-logits is checked against the model's last layer once the model is open, before
 * training starts. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"

bool kiln_cli_usage_fault = false;

#define SCHEDULES "exponential:decay_steps=N,decay_rate=R[,staircase=true], cosine:decay_steps=N[,alpha=A] or " \
                  "piecewise:boundaries=B1/B2/...,values=V0/V1/V2/..."

/* a whole decimal number in [lo, hi] (as args.c takes numbers: no space, '+', junk or overflow) */
static kiln_status number(const char *flag, const char *key, const char *v, double lo, double hi, double *out) {
    char *end = NULL;
    double d = (*v >= '0' && *v <= '9') || *v == '-' || *v == '.' ? strtod(v, &end) : NAN;
    if (!end || *end || !isfinite(d) || d < lo || d > hi)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s '%s' is not a number in [%g, %g]", flag, key, v, lo, hi);
    *out = d;
    return KILN_OK;
}

static kiln_status integer(const char *flag, const char *key, const char *v, double lo, double hi, int64_t *out) {
    double d = 0;
    KILN_TRY(number(flag, key, v, lo, hi, &d));
    if (d != floor(d) || strpbrk(v, ".eE"))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s '%s' is not an integer in [%g, %g]", flag, key, v, lo, hi);
    *out = (int64_t)d;
    return KILN_OK;
}

static kiln_status boolean(const char *flag, const char *key, const char *v, bool *out) {
    if (strcmp(v, "true") && strcmp(v, "false"))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s '%s' is not true or false", flag, key, v);
    *out = !strcmp(v, "true");
    return KILN_OK;
}

/* a '/'-separated list of numbers (at most max) */
static kiln_status list(const char *flag, const char *key, char *v, double lo, double hi, bool whole, double *out, int max, int *n) {
    *n = 0;
    for (char *save = NULL, *t = strtok_r(v, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (*n == max) return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s has more than %d entries", flag, key, max);
        int64_t i = 0;
        if (whole) KILN_TRY(integer(flag, key, t, lo, hi, &i));
        if (whole) out[*n] = (double)i;
        else KILN_TRY(number(flag, key, t, lo, hi, &out[*n]));
        (*n)++;
    }
    return *n ? KILN_OK : kiln_error(KILN_ERR_INVALID_ARG, "%s: %s is empty", flag, key);
}

/* one "key=value" of a spec: a handler gets the key and the value (split in place) */
typedef kiln_status (*key_fn)(kiln_cli_options *o, const char *flag, const char *key, char *value);

/* "k=v,k=v,..." (spec is copied; an empty entry or one without '=' is an error) */
static kiln_status each_key(kiln_cli_options *o, const char *flag, const char *spec, key_fn fn) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", spec) >= (int)sizeof buf) return kiln_error(KILN_ERR_INVALID_ARG, "%s: the value is too long", flag);
    size_t n = strlen(buf);
    if (!n || buf[0] == ',' || buf[n - 1] == ',' || strstr(buf, ",,"))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: '%s' has an empty entry (key=value,key=value)", flag, spec);
    for (char *save = NULL, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq || eq == kv || !eq[1]) return kiln_error(KILN_ERR_INVALID_ARG, "%s: '%s' is not key=value", flag, kv);
        *eq = '\0';
        KILN_TRY(fn(o, flag, kv, eq + 1));
    }
    return KILN_OK;
}

static kiln_status unknown(const char *flag, const char *key, const char *known) {
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: unknown key '%s' (%s)", flag, key, known);
}

/* ---- --lr-schedule ---- */

static kiln_status schedule_key(kiln_cli_options *o, const char *flag, const char *key, char *v) {
    kiln_optimizer_config *s = &o->schedule;
    double vals[KILN_LR_MAX_PIECES];
    int n;
    if (!strcmp(key, "decay_steps") && s->schedule != KILN_LR_PIECEWISE) return integer(flag, key, v, 1, 1e15, &s->decay_steps);
    if (!strcmp(key, "decay_rate") && s->schedule == KILN_LR_EXPONENTIAL) return number(flag, key, v, 1e-300, 1e300, &s->decay_rate);
    if (!strcmp(key, "staircase") && s->schedule == KILN_LR_EXPONENTIAL) return boolean(flag, key, v, &s->staircase);
    if (!strcmp(key, "alpha") && s->schedule == KILN_LR_COSINE) return number(flag, key, v, 0, 1, &s->cosine_alpha);
    if (!strcmp(key, "values") && s->schedule == KILN_LR_PIECEWISE) {
        KILN_TRY(list(flag, key, v, 1e-30, 1e3, false, s->values, KILN_LR_MAX_PIECES, &n));
        s->n_boundaries = -n; /* the count of values, matched with the boundaries below */
        return KILN_OK;
    }
    if (!strcmp(key, "boundaries") && s->schedule == KILN_LR_PIECEWISE) {
        KILN_TRY(list(flag, key, v, 0, 1e15, true, vals, KILN_LR_MAX_PIECES - 1, &n));
        for (int i = 0; i < n; i++) {
            s->boundaries[i] = (int64_t)vals[i];
            if (i && s->boundaries[i] <= s->boundaries[i - 1])
                return kiln_error(KILN_ERR_INVALID_ARG, "%s: boundaries must increase", flag);
        }
        s->decay_steps = n; /* the count of boundaries until both are read */
        return KILN_OK;
    }
    return unknown(flag, key, SCHEDULES);
}

static kiln_status schedule_parse(kiln_cli_options *o) {
    static const char *const forms[] = {"exponential:", "cosine:", "piecewise:"};
    static const kiln_lr_schedule kinds[] = {KILN_LR_EXPONENTIAL, KILN_LR_COSINE, KILN_LR_PIECEWISE};
    const char *flag = "--lr-schedule", *spec = o->lr_schedule;
    int f = 0;
    while (f < 3 && strncmp(spec, forms[f], strlen(forms[f]))) f++;
    if (f == 3) return kiln_error(KILN_ERR_INVALID_ARG, "%s: '%s' is not %s", flag, spec, SCHEDULES);
    o->schedule.schedule = kinds[f];
    KILN_TRY(each_key(o, flag, spec + strlen(forms[f]), schedule_key));
    kiln_optimizer_config *s = &o->schedule;
    if (s->schedule == KILN_LR_PIECEWISE) {
        int nv = -s->n_boundaries, nb = (int)s->decay_steps;
        if (!nb || !nv || nv != nb + 1)
            return kiln_error(KILN_ERR_INVALID_ARG, "%s: piecewise needs boundaries and one more value than boundaries "
                              "(has %d boundaries, %d values)", flag, nb, nv);
        s->n_boundaries = nb;
        s->decay_steps = 0;
        return KILN_OK;
    }
    if (s->decay_steps < 1 || (s->schedule == KILN_LR_EXPONENTIAL && !(s->decay_rate > 0)))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s needs decay_steps%s", flag, forms[f],
                          s->schedule == KILN_LR_EXPONENTIAL ? " and decay_rate" : "");
    return KILN_OK;
}

/* ---- --early-stopping, --reduce-lr-on-plateau ---- */

static kiln_status watch_key(kiln_cli_options *o, const char *flag, const char *key, char *v) {
    static const char *const monitors[] = {"loss", "accuracy", "val_loss", "val_accuracy"};
    bool early = !strcmp(flag, "--early-stopping");
    kiln_cli_watch *w = early ? &o->early : &o->plateau;
    int64_t i;
    if (!strcmp(key, "monitor")) {
        for (int k = 0; k < 4; k++)
            if (!strcmp(v, monitors[k])) {
                w->mon.monitor = monitors[k];
                return KILN_OK;
            }
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: monitor '%s' is not loss, accuracy, val_loss or val_accuracy", flag, v);
    }
    if (!strcmp(key, "patience")) {
        KILN_TRY(integer(flag, key, v, 0, 1e6, &i));
        w->mon.patience = (int)i;
        return KILN_OK;
    }
    if (!strcmp(key, "min_delta")) return number(flag, key, v, 0, 1e30, &w->mon.min_delta);
    if (early && !strcmp(key, "restore_best_weights")) return boolean(flag, key, v, &w->restore_best_weights);
    if (early) return unknown(flag, key, "monitor, patience, min_delta, restore_best_weights");
    if (!strcmp(key, "factor")) {
        KILN_TRY(number(flag, key, v, 0, 1, &w->factor));
        return w->factor > 0 && w->factor < 1 ? KILN_OK : kiln_error(KILN_ERR_INVALID_ARG, "%s: factor must be in (0, 1) (is %s)", flag, v);
    }
    if (!strcmp(key, "min_lr")) return number(flag, key, v, 0, 1e3, &w->min_lr);
    if (!strcmp(key, "cooldown")) {
        KILN_TRY(integer(flag, key, v, 0, 1e6, &i));
        w->cooldown = (int)i;
        return KILN_OK;
    }
    return unknown(flag, key, "monitor, factor, patience, min_delta, cooldown, min_lr");
}

/* Keras' defaults: EarlyStopping(val_loss, patience 0, min_delta 0), ReduceLROnPlateau(val_loss,
 * factor 0.1, patience 10, min_delta 1e-4, cooldown 0, min_lr 0) */
static kiln_status watch_parse(kiln_cli_options *o, const char *flag, const char *spec, kiln_cli_watch *w, bool validation) {
    bool early = w == &o->early;
    *w = (kiln_cli_watch){true, {"val_loss", early ? 0.0 : 1e-4, early ? 0 : 10}, false, 0.1, 0.0, 0};
    KILN_TRY(each_key(o, flag, spec, watch_key));
    if (!strncmp(w->mon.monitor, "val_", 4) && !validation)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: monitor %s needs validation data (--validation-split or --validation-data; "
                          "or monitor=loss)", flag, w->mon.monitor);
    return KILN_OK;
}

kiln_status kiln_cli_fit_options_check(kiln_cli_options *o) {
    bool sgd = !strcmp(o->optimizer, "sgd"), validation = o->validation_split > 0 || o->validation_data;
    o->schedule = kiln_optimizer_defaults(KILN_OPT_ADAM);
    if ((!isnan(o->momentum) || o->nesterov) && !sgd)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s applies to --optimizer sgd only (the optimizer is %s)",
                          o->nesterov ? "--nesterov" : "--momentum", o->optimizer);
    if (o->label_smoothing >= 1.0)
        return kiln_error(KILN_ERR_INVALID_ARG, "--label-smoothing: %g is not in [0, 1)", o->label_smoothing);
    if (o->lr_schedule) KILN_TRY(schedule_parse(o));
    if (o->schedule.schedule == KILN_LR_PIECEWISE && !isnan(o->lr))
        return kiln_error(KILN_ERR_INVALID_ARG, "--lr and --lr-schedule piecewise exclude each other (its values are the learning rates)");
    if (o->early_stopping) KILN_TRY(watch_parse(o, "--early-stopping", o->early_stopping, &o->early, validation));
    if (o->reduce_lr) KILN_TRY(watch_parse(o, "--reduce-lr-on-plateau", o->reduce_lr, &o->plateau, validation));
    if (o->reduce_lr && o->lr_schedule)
        return kiln_error(KILN_ERR_INVALID_ARG, "--reduce-lr-on-plateau and --lr-schedule exclude each other "
                          "(Keras cannot set a learning rate that a schedule gives)");
    return KILN_OK;
}

kiln_compile_config kiln_cli_compile_config(const kiln_cli_options *o) {
    kiln_optimizer_type t = !strcmp(o->optimizer, "sgd") ? KILN_OPT_SGD : !strcmp(o->optimizer, "adamw") ? KILN_OPT_ADAMW : KILN_OPT_ADAM;
    kiln_compile_config cc = {kiln_optimizer_defaults(t), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, o->from_logits};
    kiln_optimizer_config *c = &cc.optimizer;
    const kiln_optimizer_config *s = &o->schedule;
    if (!isnan(o->lr)) c->adam.learning_rate = c->sgd.learning_rate = o->lr;
    if (!isnan(o->momentum)) c->sgd.momentum = o->momentum;
    c->sgd.nesterov = o->nesterov;
    c->clipnorm = (float)o->clipnorm;
    if (!o->lr_schedule) return cc;
    c->schedule = s->schedule;
    c->decay_steps = s->decay_steps;
    c->decay_rate = s->decay_rate;
    c->staircase = s->staircase;
    c->cosine_alpha = s->cosine_alpha;
    c->n_boundaries = s->n_boundaries;
    memcpy(c->boundaries, s->boundaries, sizeof c->boundaries);
    memcpy(c->values, s->values, sizeof c->values);
    return cc;
}

kiln_status kiln_cli_fit_callbacks(const kiln_cli_options *o, kiln_callback *cb, int *n) {
    if (o->early.on) {
        KILN_TRY(kiln_early_stopping(o->early.mon, o->early.restore_best_weights, &cb[*n]));
        (*n)++;
    }
    if (o->plateau.on) {
        KILN_TRY(kiln_reduce_lr_on_plateau(o->plateau.mon, o->plateau.factor, o->plateau.cooldown, o->plateau.min_lr, &cb[*n]));
        (*n)++;
    }
    return KILN_OK;
}

kiln_status kiln_cli_loss_check(kiln_model *m, const kiln_cli_options *o) {
    const kiln_layer_config *last = kiln_model_layer(m, kiln_model_layer_count(m) - 1);
    kiln_status s = KILN_OK;
    if (o->from_logits && last->activation != KILN_ACT_LINEAR)
        s = kiln_error(KILN_ERR_INVALID_ARG, "--from-logits: the last layer '%s' of model '%s' has activation %s, so its outputs "
                       "are not logits%s", last->name, kiln_model_name(m), kiln_activation_name(last->activation),
                       last->activation == KILN_ACT_SOFTMAX ? " but probabilities: leave --from-logits out" : " (logits come from a linear layer)");
    else if (kiln_model_check_loss(m) != KILN_OK)
        s = kiln_error(KILN_ERR_INVALID_ARG, "the last layer '%s' of model '%s' has activation %s, not softmax: its outputs are "
                       "not probabilities; if they are logits (a linear Dense), pass --from-logits (Keras' from_logits=True)",
                       last->name, kiln_model_name(m), kiln_activation_name(last->activation));
    kiln_cli_usage_fault = s != KILN_OK;
    return s != KILN_OK ? s : kiln_model_set_label_smoothing(m, o->label_smoothing);
}
