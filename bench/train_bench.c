/* bench/train_bench.c: `kiln-bench train`: training steps per second of kiln's built-in models
 * (the seed CNN at batch 32 and 256, ResNet-20 at batch 128; 32x32x3 inputs, 10 classes, Adam,
 * sparse categorical cross-entropy; --input 28x28x1 for MNIST-shaped data) through kiln_model_fit,
 * the path a user takes. One epoch of
 * `steps` batches warms up (plans, workspaces, handles); the next `reps` epochs are timed and
 * their median gives steps/s. The inputs are random images and labels: the speed of a step does
 * not depend on what it learns. bench/torch_train.py times the same models in PyTorch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "kiln/kiln.h"

typedef struct train_opts {
    const char *device, *model, *json;
    int batch, steps, reps;
    int in_h, in_w, in_c; /* --input HxWxC, 32x32x3 by default */
} train_opts;

static kiln_status builtin(const char *name, const train_opts *o, kiln_model **m) {
    return kiln_model_builtin(name, o->in_h, o->in_w, o->in_c, 10, m);
}

/* --input HxWxC: three sizes of 1 to 4096 */
static bool parse_input(const char *v, train_opts *o) {
    char tail;
    if (sscanf(v, "%dx%dx%d%c", &o->in_h, &o->in_w, &o->in_c, &tail) == 3 && o->in_h >= 1 &&
        o->in_h <= 4096 && o->in_w >= 1 && o->in_w <= 4096 && o->in_c >= 1 && o->in_c <= 4096)
        return true;
    fprintf(stderr, "kiln-bench train: --input is HxWxC (e.g. 28x28x1, each 1 to 4096), not '%s'\n", v);
    return false;
}

/* "layer_params":[...]: each layer's weight count (its weights are named "<layer>.<weight>"),
 * in the order of the model's weights, for the layer-by-layer check against PyTorch and Keras */
static void write_layer_params(FILE *json, const kiln_model *m) {
    fprintf(json, ",\"layer_params\":[");
    const char *prev = NULL;
    size_t prev_len = 0;
    int64_t sum = 0;
    for (int i = 0; i < kiln_model_weight_count(m); i++) {
        const char *name;
        kiln_tensor *t;
        if (kiln_model_weight(m, i, &name, &t, NULL) != KILN_OK) continue;
        const char *dot = strrchr(name, '.');
        size_t len = dot ? (size_t)(dot - name) : strlen(name);
        if (prev && (len != prev_len || strncmp(name, prev, len))) fprintf(json, "%lld,", (long long)sum), sum = 0;
        prev = name, prev_len = len;
        sum += kiln_tensor_numel(t);
    }
    if (prev) fprintf(json, "%lld", (long long)sum);
    fprintf(json, "]");
}

/* on_epoch_end: each epoch's wall time and mean loss */
typedef struct epoch_log {
    double *seconds, *loss;
    int n, cap;
} epoch_log;

static kiln_status on_epoch_end(void *ctx, kiln_model *m, const kiln_epoch_logs *l, bool *stop) {
    epoch_log *e = ctx;
    if (e->n < e->cap) e->seconds[e->n] = l->seconds, e->loss[e->n] = l->loss, e->n++;
    return KILN_OK;
}

static void train_usage(FILE *f) {
    fprintf(f, "usage: kiln-bench train [--device cpu|cuda] [--model seed-cnn|resnet20|all]\n"
               "                        [--batch N] [--steps N] [--reps N] [--json FILE]\n"
               "                        [--input HxWxC]\n"
               "  defaults: cuda; all models at their batch sizes (seed-cnn 32 and 256, resnet20 128);\n"
               "  50 steps per epoch on cuda, 5 on cpu; 3 timed epochs after one warm-up epoch;\n"
               "  input 32x32x3 (28x28x1: MNIST-shaped), 10 classes\n");
}

static bool parse_train_opts(int argc, char **argv, train_opts *o) {
    *o = (train_opts){.device = "cuda", .model = "all", .batch = 0, .steps = 0, .reps = 3,
                      .in_h = 32, .in_w = 32, .in_c = 3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            train_usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "kiln-bench train: %s needs a value (or is unknown)\n", a);
            return false;
        }
        i++;
        bool ok = true;
        if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--json")) o->json = v;
        else if (!strcmp(a, "--batch")) ok = bench_parse_int(a, v, 1, 65536, &o->batch);
        else if (!strcmp(a, "--steps")) ok = bench_parse_int(a, v, 1, 100000, &o->steps);
        else if (!strcmp(a, "--reps")) ok = bench_parse_int(a, v, 1, 1000, &o->reps);
        else if (!strcmp(a, "--input")) ok = parse_input(v, o);
        else {
            fprintf(stderr, "kiln-bench train: unknown option %s\n", a);
            ok = false;
        }
        if (!ok) return false;
    }
    if (strcmp(o->device, "cpu") && strcmp(o->device, "cuda")) {
        fprintf(stderr, "kiln-bench train: --device is cpu or cuda, not '%s'\n", o->device);
        return false;
    }
    if (strcmp(o->model, "all") && strcmp(o->model, "seed-cnn") && strcmp(o->model, "resnet20")) {
        fprintf(stderr, "kiln-bench train: --model is seed-cnn, resnet20 or all, not '%s'\n", o->model);
        return false;
    }
    if (!o->steps) o->steps = strcmp(o->device, "cpu") ? 50 : 5;
    return true;
}

/* Builds, compiles and trains one model; writes its JSON line. */
static kiln_status run_model(bench_device *d, const char *name, int batch, const train_opts *o,
                             FILE *json) {
    const int64_t n = (int64_t)batch * o->steps, ex = (int64_t)o->in_h * o->in_w * o->in_c;
    float *x = malloc(sizeof(float) * (size_t)(n * ex));
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    double *sec = malloc(sizeof(double) * (size_t)(o->reps + 1)), *loss = malloc(sizeof(double) * (size_t)(o->reps + 1));
    kiln_model *m = NULL;
    kiln_status s = x && y && sec && loss ? KILN_OK : KILN_ERR_OOM;
    uint64_t r = 0x9e3779b97f4a7c15ull;
    for (int64_t i = 0; s == KILN_OK && i < n * ex; i++) { /* xorshift64: images in [0, 1) */
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        x[i] = (float)(r >> 40) * (1.0f / 16777216.0f);
    }
    for (int64_t i = 0; s == KILN_OK && i < n; i++) r ^= r << 13, r ^= r >> 7, r ^= r << 17, y[i] = (int32_t)(r % 10);
    if (s == KILN_OK) s = builtin(name, o, &m);
    if (s == KILN_OK) s = kiln_model_build(m, d->be, 42);
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM),
                              KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    if (s == KILN_OK) s = kiln_model_compile(m, &cc);
    epoch_log log = {sec, loss, 0, o->reps + 1};
    kiln_callback cb = {.ctx = &log, .on_epoch_end = on_epoch_end};
    kiln_fit_config fc = kiln_fit_defaults();
    fc.epochs = o->reps + 1;
    fc.batch_size = batch;
    fc.shuffle = false;
    fc.verbose = 0;
    fc.callbacks = &cb;
    fc.n_callbacks = 1;
    kiln_data data = {x, y, NULL, n};
    kiln_history h = {0};
    if (s == KILN_OK) s = kiln_model_fit(m, &data, &fc, &h);
    if (s == KILN_OK && log.n == o->reps + 1) {
        int64_t params = 0, trainable = 0, frozen = 0;
        kiln_model_param_counts(m, &params, &trainable, &frozen);
        double first_loss = loss[0], last_loss = loss[log.n - 1], mn, p90;
        double med = bench_median(sec + 1, o->reps, &mn, &p90); /* epoch 0 is the warm-up */
        fprintf(json, "{\"bench\":\"train\",\"impl\":\"kiln\",\"device\":\"%s\",\"model\":\"%s\","
                "\"batch\":%d,\"steps\":%d,\"reps\":%d,\"median_s\":", d->kind, name, batch, o->steps, o->reps);
        bench_json_num(json, med);
        fprintf(json, ",\"min_s\":");
        bench_json_num(json, mn);
        fprintf(json, ",\"steps_per_s\":");
        bench_json_num(json, o->steps / med);
        fprintf(json, ",\"images_per_s\":");
        bench_json_num(json, (double)n / med);
        fprintf(json, ",\"params\":%lld", (long long)params);
        write_layer_params(json, m);
        fprintf(json, ",\"input\":\"%dx%dx%d\",\"warmup_s\":", o->in_h, o->in_w, o->in_c);
        bench_json_num(json, sec[0]);
        fprintf(json, ",\"loss_first\":");
        bench_json_num(json, first_loss);
        fprintf(json, ",\"loss_last\":");
        bench_json_num(json, last_loss);
        fprintf(json, "}\n");
        fflush(json);
        fprintf(stderr, "kiln-bench train: %s batch %d on %s: %.2f steps/s (%.0f images/s), "
                "median of %d epochs of %d steps; %lld params; loss %.4f -> %.4f\n", name, batch,
                d->kind, o->steps / med, (double)n / med, o->reps, o->steps, (long long)params,
                first_loss, last_loss);
    } else if (s != KILN_OK && s != KILN_ERR_UNSUPPORTED) {
        fprintf(stderr, "kiln-bench train: %s batch %d on %s failed: %s\n", name, batch, d->kind,
                kiln_last_error());
    }
    kiln_history_free(&h);
    kiln_model_free(m);
    free(x), free(y), free(sec), free(loss);
    return s;
}

int bench_train_main(int argc, char **argv) {
    train_opts o;
    if (!parse_train_opts(argc, argv, &o)) {
        train_usage(stderr);
        return 2;
    }
    static const struct {
        const char *model;
        int batch;
    } runs[] = {{"seed-cnn", 32}, {"seed-cnn", 256}, {"resnet20", 128}};
    bench_device d;
    if (bench_device_open(o.device, &d) != KILN_OK) {
        fprintf(stderr, "%s\n", kiln_last_error());
        return 1;
    }
    FILE *json = o.json ? fopen(o.json, "w") : stdout;
    if (!json) {
        perror(o.json);
        bench_device_close(&d);
        return 1;
    }
    bench_write_meta(json, "train", &d);
    int failed = 0;
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        if (strcmp(o.model, "all") && strcmp(o.model, runs[i].model)) continue;
        if (o.batch && i > 0 && !strcmp(runs[i].model, runs[i - 1].model)) continue; /* one --batch per model */
        failed += run_model(&d, runs[i].model, o.batch ? o.batch : runs[i].batch, &o, json) != KILN_OK;
    }
    if (json != stdout) fclose(json);
    bench_device_close(&d);
    return failed ? 1 : 0;
}
