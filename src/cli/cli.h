/* cli.h: the pieces of the `kiln` command (the files of src/cli), which are built into
 * the executable only: the parsed command line, the usage text, dataset and model opening, the
 * four commands, and training's outputs (step log, checkpoints, chart). docs/cli.md describes
 * the command; this header only ties its files together. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/kiln.h"

typedef enum kiln_cli_command {
    KILN_CLI_TRAIN = 0,
    KILN_CLI_EVALUATE,
    KILN_CLI_PREDICT,
    KILN_CLI_SUMMARY,
    KILN_CLI_COMMAND_COUNT
} kiln_cli_command;

/* --early-stopping / --reduce-lr-on-plateau: Keras' arguments of the callback */
typedef struct kiln_cli_watch {
    bool on;
    kiln_monitor mon;
    bool restore_best_weights;    /* EarlyStopping */
    double factor, min_lr;        /* ReduceLROnPlateau */
    int cooldown;
} kiln_cli_watch;

/* The command line, after kiln_cli_args_parse. Strings point into argv; NULL when not given. */
typedef struct kiln_cli_options {
    kiln_cli_command command;
    const char *model, *data, *validation_data, *device, *optimizer, *init_weights, *resume;
    const char *freeze, *log_steps, *out, *weights;
    int epochs, batch_size, verbose;
    int threads;               /* --threads: 0 when not given (OMP_NUM_THREADS or every core) */
    double lr;                 /* NaN: the optimizer's default */
    double validation_split;   /* 0: none */
    uint64_t seed;
    bool no_shuffle, standardize, augment, help;
    /* dataset options (kiln_data_options); synthetic_flag names the first synthetic-only flag given */
    kiln_data_options data_opt;
    const char *synthetic_flag;
    bool classes_given;
    bool seed_given; /* --seed was on the command line (else --resume takes the checkpoint's) */
    /* fit's options, named as Keras names them (fit_options.c parses the specs) */
    double momentum, clipnorm, label_smoothing; /* NaN, 0, 0 when not given */
    bool nesterov, from_logits;
    const char *lr_schedule, *early_stopping, *reduce_lr;
    kiln_optimizer_config schedule;  /* --lr-schedule parsed (schedule KILN_LR_CONSTANT: none) */
    kiln_cli_watch early, plateau;   /* --early-stopping, --reduce-lr-on-plateau parsed */
    bool sync_bn;                    /* --sync-bn: every BatchNormalization synchronized (mpirun) */
} kiln_cli_options;

/* The usage text (docs/cli.md holds the same block). */
extern const char kiln_cli_usage[];

/* Parses argv[0..argc) (the arguments after the command name) for `cmd`. Errors are
 * KILN_ERR_INVALID_ARG with a message naming the flag. */
kiln_status kiln_cli_args_parse(kiln_cli_command cmd, int argc, char **argv, kiln_cli_options *o);

/* ---- fit's options (fit_options.c) ---- */

/* The specs of --lr-schedule, --early-stopping and --reduce-lr-on-plateau into o->schedule,
 * o->early and o->plateau, and the checks of fit's options against each other and the
 * optimizer: KILN_ERR_INVALID_ARG naming the flag (a usage error). */
kiln_status kiln_cli_fit_options_check(kiln_cli_options *o);
/* The compile configuration of train's flags (optimizer, --lr, momentum, schedule, clipnorm). */
kiln_compile_config kiln_cli_compile_config(const kiln_cli_options *o);
/* The callbacks of --early-stopping and --reduce-lr-on-plateau into cb (n: how many added). */
kiln_status kiln_cli_fit_callbacks(const kiln_cli_options *o, kiln_callback *cb, int *n);
/* --from-logits against the model's last layer and the loss, before training: a model ending
 * in a softmax takes no --from-logits, one ending in anything else needs it (a usage error,
 * which sets kiln_cli_usage_fault); label smoothing set. */
kiln_status kiln_cli_loss_check(kiln_model *m, const kiln_cli_options *o);
/* set when a command fails on a flag that does not suit its model: main exits 2 */
extern bool kiln_cli_usage_fault;

/* ---- data (data.c) ---- */

/* The training set of --data, standardized when asked, and the validation set (--validation-split
 * or --validation-data; NULL when neither), standardized with the training set's statistics. */
kiln_status kiln_cli_data_train(const kiln_cli_options *o, kiln_dataset **train, kiln_dataset **val);
/* The split evaluate and predict use: --data's test split when it has one, else its training
 * split; standardized with the training split's statistics when asked. */
kiln_status kiln_cli_data_eval(const kiln_cli_options *o, kiln_dataset **out);
/* The image shape and class count of --data without loading it: MNIST's and CIFAR-10's are
 * fixed, synthetic's come from one generated example; npy files are read. */
kiln_status kiln_cli_data_shape(const kiln_cli_options *o, int *h, int *w, int *c, int *classes);

/* ---- models (model.c) ---- */

/* A model (not built) from M: a built-in name (input h x w x c, `classes` outputs), a Keras JSON
 * file, a Keras 3 .keras archive, or a safetensors file holding kiln's "kiln.model" metadata
 * (told by content; a Keras .weights.h5 is refused: it holds no architecture). */
kiln_status kiln_cli_model_open(const char *spec, int h, int w, int c, int classes, kiln_model **out);
/* Whether M names a built-in model (seed-cnn, resnet20). */
bool kiln_cli_model_builtin(const char *spec);
/* The weights file of evaluate and predict: --weights, else --model when it holds weights (a
 * .keras archive or kiln's safetensors); an error naming --model when it holds none. */
kiln_status kiln_cli_weights_of(const kiln_cli_options *o, const char **weights);
/* an Input with None sizes (Keras' Input((None, None, 3))) takes the data's h x w x c */
kiln_status kiln_cli_model_fill_input(kiln_model *m, int h, int w, int c);
/* Checks that a built model takes ds's images and has an output for each of its classes. */
kiln_status kiln_cli_model_check_data(const kiln_model *m, const kiln_dataset *ds, const char *what);
/* Reads a whole file (at most max bytes) into a NUL-terminated buffer (free with free()). */
kiln_status kiln_cli_file_read(const char *path, size_t max, char **buf, size_t *len);

/* ---- commands (train.c, infer.c) ---- */

kiln_status kiln_cli_train(const kiln_cli_options *o);
kiln_status kiln_cli_evaluate(const kiln_cli_options *o);
kiln_status kiln_cli_predict(const kiln_cli_options *o);
kiln_status kiln_cli_summary(const kiln_cli_options *o);

/* ---- training's outputs (outputs.c, chart.c) ---- */

/* Creates dir and its missing parents. */
kiln_status kiln_cli_dir_make(const char *dir);
/* "dir/name" into buf (an error when it does not fit). */
kiln_status kiln_cli_path_join(const char *dir, const char *name, char *buf, size_t n);
/* --log-steps: a CSV of every step (step,epoch,loss,accuracy) through kiln_fit_config.on_step,
 * each row written through to the file as it is logged. */
typedef struct kiln_cli_step_log kiln_cli_step_log;
kiln_status kiln_cli_step_log_open(const char *path, bool append, kiln_cli_step_log **out);
void kiln_cli_step_log_write(void *ctx, int64_t step, int epoch, double loss, double accuracy);
/* Flushes and syncs the rows to the disk; reports a write error that happened on the way (NULL: OK). */
kiln_status kiln_cli_step_log_sync(kiln_cli_step_log *log);
/* Closes the file; reports a write error that happened on the way. */
kiln_status kiln_cli_step_log_close(kiln_cli_step_log *log);

/* A callback saving a full checkpoint (kiln_model_save(..., full, epochs done)) to path at the
 * end of every epoch, after syncing `steps` (NULL: none), so no log is behind a checkpoint. */
kiln_status kiln_cli_checkpoint_callback(const char *path, kiln_cli_step_log *steps, kiln_callback *out);

/* Cuts a log with an "epoch" column (history.csv, the step log) back to the first `epochs`
 * epochs of a checkpoint a run resumes from: the rows of later epochs, written before a kill or a
 * failed checkpoint, and a row cut short go. A missing file, or one that is no such log, is
 * left as it is. */
kiln_status kiln_cli_log_cut(const char *path, int epochs);

/* An SVG chart of history.csv (CSVLogger's columns): loss and accuracy per epoch, train and
 * validation, in two panels. */
kiln_status kiln_cli_chart_write(const char *history_csv, const char *svg_path, const char *title);

#endif
