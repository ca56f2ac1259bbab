/* data.c: the datasets of a `kiln` command: --data and --validation-data opened through
 * kiln_dataset_open with the synthetic and npy options, Keras' validation split, and
 * --standardize, whose per-channel statistics always come from --data's whole training split
 * (before any validation split), so that evaluate and predict reproduce them from the same
 * --data. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"

/* the dataset flags that apply to spec */
static kiln_status check_spec(const kiln_cli_options *o, const char *spec) {
    bool synthetic = !strcmp(spec, "synthetic"), npy = !strncmp(spec, "npy:", 4);
    if (o->synthetic_flag && !synthetic)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s applies to --data synthetic only, not '%s'", o->synthetic_flag, spec);
    if (o->classes_given && !synthetic && !npy)
        return kiln_error(KILN_ERR_INVALID_ARG, "--classes applies to synthetic and npy data only, not '%s'", spec);
    return KILN_OK;
}

static kiln_status open_spec(const kiln_cli_options *o, const char *spec, kiln_dataset **train, kiln_dataset **test) {
    KILN_TRY(check_spec(o, spec));
    return kiln_dataset_open(spec, &o->data_opt, train, test);
}

kiln_status kiln_cli_data_shape(const kiln_cli_options *o, int *h, int *w, int *c, int *classes) {
    KILN_TRY(check_spec(o, o->data));
    bool mnist = !strncmp(o->data, "mnist:", 6) && o->data[6], cifar = !strncmp(o->data, "cifar10:", 8) && o->data[8];
    if (mnist || cifar) { /* the loaders' fixed shapes (include/kiln/data.h) */
        *h = *w = mnist ? 28 : 32;
        *c = mnist ? 1 : 3;
        *classes = 10;
        return KILN_OK;
    }
    kiln_data_options probe = o->data_opt; /* synthetic: one example, checked and drawn as --data would be */
    probe.n_train = probe.n_test = 1;
    kiln_dataset *ds = NULL;
    KILN_TRY(kiln_dataset_open(o->data, strcmp(o->data, "synthetic") ? &o->data_opt : &probe, &ds, NULL));
    *h = ds->h;
    *w = ds->w;
    *c = ds->c;
    *classes = ds->num_classes;
    kiln_dataset_free(ds);
    return KILN_OK;
}

/* the per-channel statistics of ds (mean and std, c floats each, in one malloc'ed block) */
static kiln_status stats_of(const kiln_dataset *ds, float **stats) {
    *stats = malloc(sizeof(float) * 2 * (size_t)ds->c);
    if (!*stats) return kiln_error(KILN_ERR_OOM, "out of host memory");
    kiln_status s = kiln_dataset_channel_stats(ds, *stats, *stats + ds->c);
    if (s != KILN_OK) {
        free(*stats);
        *stats = NULL;
    }
    return s;
}

static kiln_status same_shape(const kiln_dataset *a, const kiln_dataset *b) {
    if (a->h == b->h && a->w == b->w && a->c == b->c) return KILN_OK;
    return kiln_error(KILN_ERR_SHAPE, "%s has %dx%dx%d images, but %s has %dx%dx%d", b->source, b->h, b->w, b->c,
                      a->source, a->h, a->w, a->c);
}

/* the validation set of --validation-data: its test split when it has one */
static kiln_status open_validation(const kiln_cli_options *o, const kiln_dataset *train, const float *stats,
                                   kiln_dataset **val) {
    kiln_dataset *tr = NULL, *te = NULL;
    KILN_TRY(open_spec(o, o->validation_data, &tr, &te));
    *val = te ? te : tr;
    kiln_dataset_free(te ? tr : NULL);
    kiln_status s = same_shape(train, *val);
    if (s == KILN_OK && stats) s = kiln_dataset_normalize(*val, stats, stats + train->c);
    if (s != KILN_OK) {
        kiln_dataset_free(*val);
        *val = NULL;
    }
    return s;
}

kiln_status kiln_cli_data_train(const kiln_cli_options *o, kiln_dataset **train, kiln_dataset **val) {
    *train = *val = NULL;
    float *stats = NULL;
    KILN_TRY(open_spec(o, o->data, train, NULL));
    kiln_status s = KILN_OK;
    if (o->standardize && (s = stats_of(*train, &stats)) == KILN_OK)
        s = kiln_dataset_normalize(*train, stats, stats + (*train)->c);
    if (s == KILN_OK && o->validation_split > 0) s = kiln_dataset_split(*train, o->validation_split, val);
    if (s == KILN_OK && o->validation_data) s = open_validation(o, *train, stats, val);
    free(stats);
    if (s != KILN_OK) {
        kiln_dataset_free(*train);
        kiln_dataset_free(*val);
        *train = *val = NULL;
    }
    return s;
}

kiln_status kiln_cli_data_eval(const kiln_cli_options *o, kiln_dataset **out) {
    kiln_dataset *tr = NULL, *te = NULL;
    float *stats = NULL;
    KILN_TRY(open_spec(o, o->data, &tr, &te));
    kiln_dataset *ev = te ? te : tr;
    kiln_status s = KILN_OK;
    if (o->standardize && (s = stats_of(tr, &stats)) == KILN_OK) s = kiln_dataset_normalize(ev, stats, stats + tr->c);
    free(stats);
    kiln_dataset_free(ev == tr ? te : tr);
    if (s != KILN_OK) {
        kiln_dataset_free(ev);
        return s;
    }
    *out = ev;
    return KILN_OK;
}
