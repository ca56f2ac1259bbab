/* args.c: the command line of each `kiln` command, from one table of flags (name, kind,
 * where the value goes, which commands take it, the allowed range). Flags take their value as
 * the next argument or after '='; a flag given twice, a flag the command does not take, a
 * missing or malformed value (a number with junk, an overflow or out of its range), and a stray
 * argument are errors naming the flag. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"

typedef enum arg_kind { ARG_STR, ARG_INT, ARG_I64, ARG_U64, ARG_F64, ARG_FLAG } arg_kind;

#define T (1u << KILN_CLI_TRAIN)
#define E (1u << KILN_CLI_EVALUATE)
#define P (1u << KILN_CLI_PREDICT)
#define S (1u << KILN_CLI_SUMMARY)
#define ALL (T | E | P | S)
#define OFF(field) offsetof(kiln_cli_options, field)

typedef struct arg_spec {
    const char *name;
    arg_kind kind;
    size_t offset;
    unsigned commands;
    double lo, hi;      /* numbers: the allowed range */
    bool synthetic;     /* a dataset option of --data synthetic only */
} arg_spec;

static const arg_spec specs[] = {
    {"--model", ARG_STR, OFF(model), ALL, 0, 0, false},
    {"--data", ARG_STR, OFF(data), ALL, 0, 0, false},
    {"--weights", ARG_STR, OFF(weights), E | P, 0, 0, false},
    {"--epochs", ARG_INT, OFF(epochs), T, 0, 1000000, false},
    {"--batch-size", ARG_INT, OFF(batch_size), T | E | P, 1, 1 << 20, false},
    {"--optimizer", ARG_STR, OFF(optimizer), T, 0, 0, false},
    {"--lr", ARG_F64, OFF(lr), T, 1e-30, 1e3, false},
    {"--validation-split", ARG_F64, OFF(validation_split), T, 1e-9, 1 - 1e-9, false},
    {"--validation-data", ARG_STR, OFF(validation_data), T, 0, 0, false},
    {"--device", ARG_STR, OFF(device), T | E | P, 0, 0, false},
    {"--seed", ARG_U64, OFF(seed), T, 0, 0, false},
    {"--no-shuffle", ARG_FLAG, OFF(no_shuffle), T, 0, 0, false},
    {"--init-weights", ARG_STR, OFF(init_weights), T, 0, 0, false},
    {"--resume", ARG_STR, OFF(resume), T, 0, 0, false},
    {"--freeze", ARG_STR, OFF(freeze), T, 0, 0, false},
    {"--log-steps", ARG_STR, OFF(log_steps), T, 0, 0, false},
    {"--out", ARG_STR, OFF(out), T | P, 0, 0, false},
    {"--verbose", ARG_INT, OFF(verbose), T, 0, 2, false},
    {"--standardize", ARG_FLAG, OFF(standardize), T | E | P, 0, 0, false},
    {"--augment", ARG_FLAG, OFF(augment), T, 0, 0, false},
    {"--train-size", ARG_I64, OFF(data_opt.n_train), ALL, 1, 1e9, true},
    {"--test-size", ARG_I64, OFF(data_opt.n_test), ALL, 1, 1e9, true},
    {"--image-size", ARG_INT, OFF(data_opt.image_size), ALL, 8, 256, true},
    {"--data-seed", ARG_U64, OFF(data_opt.seed), ALL, 0, 0, true},
    {"--classes", ARG_INT, OFF(data_opt.num_classes), ALL, 2, KILN_MAX_CLASSES, false},
    {"--help", ARG_FLAG, OFF(help), ALL, 0, 0, false},
    /* fit's options (fit_options.c) */
    {"--momentum", ARG_F64, OFF(momentum), T, 0, 1, false},
    {"--nesterov", ARG_FLAG, OFF(nesterov), T, 0, 0, false},
    {"--lr-schedule", ARG_STR, OFF(lr_schedule), T, 0, 0, false},
    {"--clipnorm", ARG_F64, OFF(clipnorm), T, 1e-30, 1e30, false},
    {"--early-stopping", ARG_STR, OFF(early_stopping), T, 0, 0, false},
    {"--reduce-lr-on-plateau", ARG_STR, OFF(reduce_lr), T, 0, 0, false},
    {"--label-smoothing", ARG_F64, OFF(label_smoothing), T | E, 0, 1, false},
    {"--from-logits", ARG_FLAG, OFF(from_logits), T | E, 0, 0, false},
    {"--threads", ARG_INT, OFF(threads), T | E | P, 1, 4096, false},
    {"--sync-bn", ARG_FLAG, OFF(sync_bn), T, 0, 0, false}, /* docs/distributed.md */
};
#define N_SPECS (sizeof specs / sizeof specs[0])

static const char *const command_names[KILN_CLI_COMMAND_COUNT] = {"train", "evaluate", "predict", "summary"};

static kiln_status bad_value(const arg_spec *a, const char *v, const char *what) {
    if (a->kind == ARG_U64)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: '%s' is not %s in [0, %llu]", a->name, v, what, (unsigned long long)UINT64_MAX);
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: '%s' is not %s in [%g, %g]", a->name, v, what, a->lo, a->hi);
}

/* Every number of the command line: the whole value, starting with a digit (or '-' for a
 * signed kind, also '.' for a real), that strto* takes without overflow, in the flag's range.
 * Leading space, '+', trailing junk, an overflow and an out-of-range value are all refused. */
static kiln_status store_number(const arg_spec *a, const char *v, char *field) {
    char *end = NULL;
    bool digit = *v >= '0' && *v <= '9';
    errno = 0;
    if (a->kind == ARG_F64) {
        double d = digit || *v == '-' || *v == '.' ? strtod(v, &end) : NAN;
        if (!end || *end || !isfinite(d) || d < a->lo || d > a->hi) return bad_value(a, v, "a number");
        *(double *)(void *)field = d;
        return KILN_OK;
    }
    if (a->kind == ARG_U64) {
        unsigned long long u = digit ? strtoull(v, &end, 10) : 0;
        if (!end || *end || errno == ERANGE) return bad_value(a, v, "an integer");
        *(uint64_t *)(void *)field = (uint64_t)u;
        return KILN_OK;
    }
    long long i = digit || *v == '-' ? strtoll(v, &end, 10) : 0;
    if (!end || *end || errno == ERANGE || (double)i < a->lo || (double)i > a->hi) return bad_value(a, v, "an integer");
    if (a->kind == ARG_INT) *(int *)(void *)field = (int)i;
    else *(int64_t *)(void *)field = (int64_t)i;
    return KILN_OK;
}

static kiln_status store(const arg_spec *a, const char *v, kiln_cli_options *o) {
    char *field = (char *)o + a->offset;
    if (a->kind != ARG_STR) return store_number(a, v, field);
    if (!*v) return kiln_error(KILN_ERR_INVALID_ARG, "%s: the value is empty", a->name);
    *(const char **)(void *)field = v;
    return KILN_OK;
}

/* --freeze LAYER,...: no empty name (",,," or a stray comma would freeze nothing by mistake) */
static kiln_status check_freeze(const char *list) {
    size_t n = strlen(list);
    if (list[0] == ',' || list[n - 1] == ',' || strstr(list, ",,"))
        return kiln_error(KILN_ERR_INVALID_ARG, "--freeze: '%s' has an empty layer name (LAYER,LAYER,... or all-but-batchnorm)", list);
    return KILN_OK;
}

static void defaults(kiln_cli_command cmd, kiln_cli_options *o) {
    memset(o, 0, sizeof *o);
    o->command = cmd;
    o->data = "synthetic";
    o->device = "auto";
    o->optimizer = "adam";
    o->epochs = 1;
    o->batch_size = 32;
    o->verbose = 1;
    o->lr = NAN;
    o->momentum = NAN;
}

static kiln_status check(kiln_cli_options *o) {
    if (o->help) return KILN_OK;
    const char *cmd = command_names[o->command];
    if (o->command == KILN_CLI_TRAIN && !o->model && !o->resume)
        return kiln_error(KILN_ERR_INVALID_ARG, "train: --model is required (or --resume FILE)");
    if (o->command == KILN_CLI_SUMMARY && !o->model)
        return kiln_error(KILN_ERR_INVALID_ARG, "summary: --model is required");
    if ((o->command == KILN_CLI_EVALUATE || o->command == KILN_CLI_PREDICT) && !o->weights && !o->model)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: --weights is required (or --model with a file that holds weights: "
                          ".keras or kiln's .safetensors)", cmd);
    if (o->validation_split > 0 && o->validation_data)
        return kiln_error(KILN_ERR_INVALID_ARG, "train: --validation-split and --validation-data exclude each other");
    if (o->init_weights && o->resume)
        return kiln_error(KILN_ERR_INVALID_ARG, "train: --init-weights and --resume exclude each other "
                          "(a checkpoint restores every weight)");
    if (strcmp(o->optimizer, "adam") && strcmp(o->optimizer, "sgd") && strcmp(o->optimizer, "adamw"))
        return kiln_error(KILN_ERR_INVALID_ARG, "--optimizer: '%s' is not adam, sgd or adamw", o->optimizer);
    if (o->freeze) KILN_TRY(check_freeze(o->freeze));
    return kiln_cli_fit_options_check(o);
}

kiln_status kiln_cli_args_parse(kiln_cli_command cmd, int argc, char **argv, kiln_cli_options *o) {
    defaults(cmd, o);
    bool seen[N_SPECS] = {0};
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *eq = strncmp(arg, "--", 2) ? NULL : strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        size_t k = 0;
        while (k < N_SPECS && (strlen(specs[k].name) != len || strncmp(specs[k].name, arg, len))) k++;
        if (k == N_SPECS)
            return kiln_error(KILN_ERR_INVALID_ARG, strncmp(arg, "-", 1) ? "%s: unexpected argument '%s' (flags start with --)"
                                                                        : "%s: unknown flag '%s' (kiln %s --help lists them)",
                              command_names[cmd], arg, command_names[cmd]);
        const arg_spec *a = &specs[k];
        if (!(a->commands & (1u << cmd)))
            return kiln_error(KILN_ERR_INVALID_ARG, "%s does not take %s", command_names[cmd], a->name);
        if (seen[k]) return kiln_error(KILN_ERR_INVALID_ARG, "%s is given twice", a->name);
        seen[k] = true;
        if (a->synthetic && !o->synthetic_flag) o->synthetic_flag = a->name;
        if (a->offset == OFF(data_opt.num_classes)) o->classes_given = true;
        if (a->offset == OFF(seed)) o->seed_given = true;
        if (a->kind == ARG_FLAG) {
            if (eq) return kiln_error(KILN_ERR_INVALID_ARG, "%s takes no value", a->name);
            *(bool *)(void *)((char *)o + a->offset) = true;
            continue;
        }
        const char *v = eq ? eq + 1 : i + 1 < argc && strncmp(argv[i + 1], "--", 2) ? argv[++i] : NULL;
        if (!v) return kiln_error(KILN_ERR_INVALID_ARG, "%s needs a value", a->name);
        KILN_TRY(store(a, v, o));
    }
    return check(o);
}
