/* train.c: `kiln train`: the data, the model (built on the chosen device, frozen, compiled,
 * given --init-weights or restored by --resume), then kiln_model_fit with its batches gathered
 * (and augmented) by a prefetcher thread, Keras' progress, and into --out: history.csv
 * (CSVLogger), checkpoint.safetensors at every epoch's end, model.safetensors and model.keras
 * (Keras 3's file, when kiln has libhdf5 and libzip) at the end, and history.svg, the chart of
 * history.csv. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "file_kind.h"
#include "keras_h5.h"
#include "keras_zip.h"

typedef struct train_run {
    kiln_backend *be;
    kiln_dataset *train, *val;
    kiln_model *m;
    kiln_prefetcher *pf;
    kiln_callback cb[4]; /* EarlyStopping, ReduceLROnPlateau, CSVLogger, the checkpoint */
    int n_cb;
    kiln_cli_step_log *steps;
    int initial_epoch;
    char paths[5][4096]; /* history.csv, checkpoint.safetensors, model.safetensors, history.svg, model.keras */
    kiln_comm *comm;     /* under mpirun: the MPI ranks (docs/distributed.md); else one rank */
} train_run;

enum { HISTORY, CHECKPOINT, MODEL, CHART, KERAS };

static void run_free(train_run *r) {
    for (int i = 0; i < r->n_cb; i++) kiln_callback_free(&r->cb[i]);
    (void)kiln_cli_step_log_close(r->steps);
    kiln_prefetcher_free(r->pf);
    kiln_model_free(r->m);
    kiln_dataset_free(r->train);
    kiln_dataset_free(r->val);
    kiln_backend_free(r->be);
}

/* --freeze all-but-batchnorm or LAYER,LAYER,... */
static kiln_status freeze(kiln_model *m, const char *list) {
    if (!strcmp(list, "all-but-batchnorm")) return kiln_model_freeze_all_but(m, KILN_LAYER_BATCHNORM);
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", list) >= (int)sizeof buf) return kiln_error(KILN_ERR_INVALID_ARG, "--freeze: the list is too long");
    for (char *save = NULL, *name = strtok_r(buf, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        int id = kiln_model_find_layer(m, name);
        if (id < 0) return kiln_error(KILN_ERR_INVALID_ARG, "--freeze: model '%s' has no layer '%s'", kiln_model_name(m), name);
        KILN_TRY(kiln_model_set_trainable(m, id, false));
    }
    return KILN_OK;
}

/* the model, built, frozen, compiled, with its starting weights */
static kiln_status model_setup(train_run *r, const kiln_cli_options *o) {
    const kiln_dataset *d = r->train;
    kiln_compile_config cc = kiln_cli_compile_config(o);
    KILN_TRY(kiln_cli_model_open(o->model ? o->model : o->resume, d->h, d->w, d->c, d->num_classes, &r->m));
    /* the memory budget of the whole run before anything is allocated (a step's batch is at most n) */
    KILN_TRY(kiln_model_check_memory(r->m, r->be, (int)(d->n < o->batch_size ? d->n : o->batch_size), &cc.optimizer));
    KILN_TRY(kiln_model_build(r->m, r->be, o->seed));
    KILN_TRY(kiln_cli_model_check_data(r->m, d, "training data"));
    if (r->val) KILN_TRY(kiln_cli_model_check_data(r->m, r->val, "validation data"));
    if (o->freeze) KILN_TRY(freeze(r->m, o->freeze));
    KILN_TRY(kiln_model_compile(r->m, &cc));
    KILN_TRY(kiln_cli_loss_check(r->m, o)); /* before training: --from-logits against the last layer */
    KILN_TRY(kiln_cli_fit_callbacks(o, r->cb, &r->n_cb)); /* EarlyStopping, ReduceLROnPlateau */
    /* a .keras --model brings its weights (architecture and weights), unless --init-weights or --resume give others */
    kiln_file_kind kind = KILN_FILE_UNKNOWN;
    if (o->model && !o->init_weights && !o->resume && !kiln_cli_model_builtin(o->model)) KILN_TRY(kiln_file_kind_of(o->model, &kind));
    if (kind == KILN_FILE_ZIP) KILN_TRY(kiln_model_load(r->m, o->model, false, false, NULL));
    if (o->init_weights) KILN_TRY(kiln_model_load(r->m, o->init_weights, true, false, NULL));
    if (o->resume) KILN_TRY(kiln_model_load(r->m, o->resume, false, true, &r->initial_epoch));
    return KILN_OK;
}

static kiln_status outputs_setup(train_run *r, const kiln_cli_options *o) {
    static const char *const names[5] = {"history.csv", "checkpoint.safetensors", "model.safetensors", "history.svg",
                                         "model.keras"};
    if (o->out) KILN_TRY(kiln_cli_dir_make(o->out)); /* first: the step log may be in it */
    for (int i = 0; o->out && i < 5; i++) KILN_TRY(kiln_cli_path_join(o->out, names[i], r->paths[i], sizeof r->paths[i]));
    /* a resumed run continues its logs from the checkpoint: rows of later epochs go */
    if (o->resume && o->out) KILN_TRY(kiln_cli_log_cut(r->paths[HISTORY], r->initial_epoch));
    if (o->resume && o->log_steps) KILN_TRY(kiln_cli_log_cut(o->log_steps, r->initial_epoch));
    if (o->log_steps) KILN_TRY(kiln_cli_step_log_open(o->log_steps, o->resume != NULL, &r->steps));
    if (!o->out) return KILN_OK;
    /* at an epoch's end the history row, then the checkpoint (which syncs the step log first) */
    KILN_TRY(kiln_csv_logger(r->paths[HISTORY], o->resume != NULL, &r->cb[r->n_cb]));
    r->n_cb++;
    KILN_TRY(kiln_cli_checkpoint_callback(r->paths[CHECKPOINT], r->steps, &r->cb[r->n_cb]));
    r->n_cb++;
    return KILN_OK;
}

static kiln_status fit(train_run *r, const kiln_cli_options *o) {
    kiln_augment aug = {4, true};
    KILN_TRY(kiln_prefetcher_new(r->train, o->batch_size, o->augment ? &aug : NULL, r->be, true, &r->pf));
    kiln_batch_source src = kiln_prefetcher_batch_source(r->pf);
    kiln_fit_config fc = kiln_fit_defaults();
    fc.epochs = o->epochs;
    fc.batch_size = o->batch_size;
    fc.shuffle = !o->no_shuffle;
    /* a resumed run shuffles and drops out with the checkpoint's seed unless --seed says otherwise */
    fc.seed = o->resume && !o->seed_given ? kiln_model_fit_seed(r->m) : o->seed;
    fc.initial_epoch = r->initial_epoch;
    fc.verbose = o->verbose;
    fc.callbacks = r->cb;
    fc.n_callbacks = r->n_cb;
    fc.batches = &src;
    if (r->val) fc.validation = (kiln_data){r->val->images, r->val->labels, NULL, r->val->n};
    if (r->steps) {
        fc.on_step = kiln_cli_step_log_write;
        fc.on_step_ctx = r->steps;
    }
    kiln_data train = {r->train->images, r->train->labels, NULL, r->train->n};
    kiln_history h = {0};
    kiln_status s = kiln_model_fit(r->m, &train, &fc, &h);
    kiln_history_free(&h);
    return s;
}

/* data-parallel: every rank trains; rank 0 alone prints and writes (the others run as if
 * without --out, --log-steps and with --verbose 0); a global batch that does not divide among
 * the ranks is a usage error (exit 2, as a bad flag) */
static kiln_status dist_setup(train_run *r, const kiln_cli_options *o) {
    int n = kiln_comm_size(r->comm);
    if (n > 1 && o->batch_size % n != 0) {
        kiln_cli_usage_fault = true;
        return kiln_error(KILN_ERR_INVALID_ARG, "--batch-size %d (the global batch) does not divide among %d ranks; give "
                          "a multiple of %d", o->batch_size, n, n);
    }
    KILN_TRY(kiln_model_set_comm(r->m, r->comm));
    return o->sync_bn ? kiln_model_sync_batchnorm(r->m, true) : KILN_OK;
}

static kiln_status train(train_run *r, const kiln_cli_options *o);

kiln_status kiln_cli_train(const kiln_cli_options *opts) {
    train_run r;
    memset(&r, 0, sizeof r);
    kiln_status s = kiln_dist_init(&r.comm);
    if (s != KILN_OK) return s;
    kiln_cli_options o = *opts;
    if (kiln_comm_rank(r.comm) != 0) {
        o.out = o.log_steps = NULL;
        o.verbose = 0;
    }
    s = train(&r, &o);
    if (s != KILN_OK && kiln_comm_size(r.comm) > 1) /* ends every rank, with main's exit status */
        kiln_comm_abort_code(r.comm, kiln_last_error(), kiln_cli_usage_fault ? 2 : 1);
    kiln_comm_free(r.comm);
    return s;
}

static kiln_status train(train_run *rp, const kiln_cli_options *o) {
    train_run r = *rp;
    kiln_status s = kiln_backend_init(o->device, &r.be);
    if (s == KILN_OK) s = kiln_cli_data_train(o, &r.train, &r.val);
    if (s == KILN_OK) s = model_setup(&r, o);
    if (s == KILN_OK) s = dist_setup(&r, o);
    if (s == KILN_OK) s = outputs_setup(&r, o);
    if (s == KILN_OK && o->verbose && r.initial_epoch < o->epochs)
        printf("kiln: training '%s' on %s: %lld examples, %lld for validation, epochs %d to %d\n", kiln_model_name(r.m),
               kiln_backend_name(r.be), (long long)r.train->n, (long long)(r.val ? r.val->n : 0), r.initial_epoch + 1,
               o->epochs);
    if (s == KILN_OK && r.initial_epoch >= o->epochs && o->verbose)
        printf("kiln: the checkpoint has %d epochs already, --epochs is %d: nothing to train\n", r.initial_epoch, o->epochs);
    if (s == KILN_OK) s = fit(&r, o);
    if (s == KILN_OK && o->verbose && kiln_comm_size(r.comm) > 1) /* docs/distributed.md */
        printf("kiln: data-parallel over %d ranks (%s): %.3f s of rank 0 in collectives\n", kiln_comm_size(r.comm),
               kiln_comm_engine(r.comm), kiln_comm_seconds(r.comm));
    if (s == KILN_OK && r.steps) {
        s = kiln_cli_step_log_close(r.steps);
        r.steps = NULL;
    }
    int done = r.initial_epoch > o->epochs ? r.initial_epoch : o->epochs;
    if (s == KILN_OK && o->out) s = kiln_model_save(r.m, r.paths[MODEL], false, done);
    bool keras = kiln_h5_available() && kiln_zip_available(); /* else kiln was built without libhdf5 or libzip */
    if (s == KILN_OK && o->out && keras) s = kiln_model_save_keras(r.m, r.paths[KERAS]);
    if (s == KILN_OK && o->out && r.initial_epoch >= o->epochs) s = kiln_model_save(r.m, r.paths[CHECKPOINT], true, done);
    if (s == KILN_OK && o->out) s = kiln_cli_chart_write(r.paths[HISTORY], r.paths[CHART], kiln_model_name(r.m));
    if (s == KILN_OK && o->out && o->verbose)
        printf("kiln: wrote %s, %s%s%s, %s and %s\n", r.paths[MODEL], keras ? r.paths[KERAS] : "", keras ? ", " : "",
               r.paths[CHECKPOINT], r.paths[HISTORY], r.paths[CHART]);
    if (s == KILN_OK && o->out && o->verbose && !keras)
        printf("kiln: no model.keras: kiln was built without libhdf5 or libzip (docs/formats.md)\n");
    run_free(&r);
    return s;
}
