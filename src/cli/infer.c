/* infer.c: `kiln evaluate`, `kiln predict` and `kiln summary`. evaluate and predict
 * build the model of --model (a built-in, a Keras JSON or .keras file, kiln's safetensors), or
 * without it the architecture saved in --weights (kiln's "kiln.model" metadata, a .keras
 * archive's config.json), load the weights of --weights (or of --model's file) and run in inference mode (BatchNormalization with its moving statistics, Dropout
 * off) on the evaluation split of --data. summary infers the shapes only: no weights, no data. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "cli.h"
#include "error.h"
#include "file_atomic.h"

typedef struct infer_run {
    kiln_backend *be;
    kiln_dataset *data;
    kiln_model *m;
    const char *weights; /* the file the weights came from */
} infer_run;

static void infer_free(infer_run *r) {
    kiln_model_free(r->m);
    kiln_dataset_free(r->data);
    kiln_backend_free(r->be);
}

/* the model of --model (shaped like the data when it is a built-in), else of --weights */
static kiln_status infer_model(const kiln_cli_options *o, kiln_model **out) {
    if (!o->model) return kiln_cli_model_open(o->weights, 0, 0, 0, 0, out);
    int h = 0, w = 0, c = 0, classes = 0;
    if (kiln_cli_model_builtin(o->model)) KILN_TRY(kiln_cli_data_shape(o, &h, &w, &c, &classes));
    return kiln_cli_model_open(o->model, h, w, c, classes, out);
}

/* the backend, the data and the model, its weights loaded, checked */
static kiln_status infer_setup(infer_run *r, const kiln_cli_options *o) {
    memset(r, 0, sizeof *r);
    KILN_TRY(kiln_cli_weights_of(o, &r->weights));
    KILN_TRY(kiln_backend_init(o->device, &r->be));
    KILN_TRY(infer_model(o, &r->m));
    KILN_TRY(kiln_cli_data_eval(o, &r->data));
    KILN_TRY(kiln_cli_model_fill_input(r->m, r->data->h, r->data->w, r->data->c));
    KILN_TRY(kiln_model_build(r->m, r->be, 0));
    KILN_TRY(kiln_model_load(r->m, r->weights, false, false, NULL));
    return kiln_cli_model_check_data(r->m, r->data, "data");
}

/* the end of the message for a loss or an output that is not finite */
#define NOT_FINITE_WHY "not finite (the weights of '%s' hold a NaN or an infinity, or the model overflows on this data)"

kiln_status kiln_cli_evaluate(const kiln_cli_options *o) {
    infer_run r;
    kiln_status s = infer_setup(&r, o);
    /* the loss needs a compiled model; the optimizer is never used: plain SGD, which keeps no
     * state, so the memory budget counts none */
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_SGD), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, o->from_logits};
    if (s == KILN_OK) s = kiln_model_compile(r.m, &cc);
    if (s == KILN_OK) s = kiln_cli_loss_check(r.m, o); /* --from-logits, --label-smoothing */
    double loss = 0, acc = 0;
    if (s == KILN_OK) {
        kiln_data d = {r.data->images, r.data->labels, NULL, r.data->n};
        s = kiln_model_evaluate(r.m, &d, o->batch_size, &loss, &acc);
    }
    if (s == KILN_OK && !isfinite(loss))
        s = kiln_error(KILN_ERR_NUMERIC, "evaluate: the loss over %lld examples is %g, " NOT_FINITE_WHY, (long long)r.data->n,
                       loss, r.weights);
    if (s == KILN_OK) printf("%lld examples - loss: %.4f - accuracy: %.4f\n", (long long)r.data->n, loss, acc);
    infer_free(&r);
    return s;
}

static kiln_status write_failed(const char *name, int err) {
    return kiln_error(KILN_ERR_IO, "writing the predictions to '%s' failed: %s", name, strerror(err));
}

static kiln_status write_rows(FILE *f, const char *name, const float *p, int64_t n, int64_t k) {
    for (int64_t j = 0; j < k; j++) fprintf(f, "%sclass_%lld", j ? "," : "", (long long)j);
    fputc('\n', f);
    for (int64_t i = 0; i < n && !ferror(f); i++) {
        for (int64_t j = 0; j < k; j++) fprintf(f, "%s%.9g", j ? "," : "", (double)p[i * k + j]);
        fputc('\n', f);
    }
    return ferror(f) ? write_failed(name, errno) : KILN_OK;
}

/* n x k outputs that are all finite, or an error naming the first that is not */
static kiln_status check_finite(const float *p, int64_t n, int64_t k, const char *weights) {
    for (int64_t i = 0; i < n * k; i++)
        if (!isfinite(p[i]))
            return kiln_error(KILN_ERR_NUMERIC, "predict: output %lld of example %lld is %g, " NOT_FINITE_WHY, (long long)(i % k),
                              (long long)(i / k), (double)p[i], weights);
    return KILN_OK;
}

/* straight to a stream: stdout, or a device or pipe named by --out (/dev/stdout) */
static kiln_status write_through(const char *out, const float *p, int64_t n, int64_t k) {
    FILE *f = out ? fopen(out, "w") : stdout;
    if (!f) return kiln_error(KILN_ERR_IO, "cannot open '%s' for writing: %s", out, strerror(errno));
    kiln_status s = write_rows(f, out ? out : "stdout", p, n, k);
    if (f != stdout && fclose(f) != 0 && s == KILN_OK) s = write_failed(out, errno);
    return s;
}

/* The predictions' CSV: a file named by --out is replaced atomically (a failed or killed write
 * leaves the old file as it was, and no partial one); stdout, a device or a pipe is written
 * straight through. */
static kiln_status write_predictions(const char *out, const float *p, int64_t n, int64_t k) {
    struct stat st;
    if (!out || (stat(out, &st) == 0 && !S_ISREG(st.st_mode))) return write_through(out, p, n, k);
    char *csv = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&csv, &len);
    if (!f) return kiln_error(KILN_ERR_OOM, "out of host memory for the predictions' CSV");
    kiln_status s = write_rows(f, out, p, n, k);
    if (fclose(f) != 0 && s == KILN_OK) s = kiln_error(KILN_ERR_OOM, "out of host memory for the predictions' CSV");
    if (s == KILN_OK) s = kiln_file_write_atomic(out, &(kiln_file_part){csv, len}, 1);
    free(csv);
    return s;
}

kiln_status kiln_cli_predict(const kiln_cli_options *o) {
    infer_run r;
    kiln_status s = infer_setup(&r, o);
    int nd;
    int64_t shape[3], k = 0;
    float *probs = NULL;
    if (s == KILN_OK) s = kiln_model_output_shape(r.m, kiln_model_layer_count(r.m) - 1, &nd, shape);
    if (s == KILN_OK) {
        k = shape[0];
        probs = malloc(sizeof(float) * (size_t)r.data->n * (size_t)k);
        if (!probs) s = kiln_error(KILN_ERR_OOM, "out of host memory for %lld x %lld predictions", (long long)r.data->n, (long long)k);
    }
    if (s == KILN_OK) s = kiln_model_predict(r.m, r.data->images, r.data->n, o->batch_size, probs);
    if (s == KILN_OK) s = check_finite(probs, r.data->n, k, r.weights); /* before --out is touched */
    if (s == KILN_OK) s = write_predictions(o->out, probs, r.data->n, k);
    free(probs);
    infer_free(&r);
    return s;
}

kiln_status kiln_cli_summary(const kiln_cli_options *o) {
    kiln_model *m = NULL;
    int h = 32, w = 32, c = 3, classes = 10;
    /* a built-in takes the shape of --data when it is given; a file's model has its own. The
     * shapes come from the spec and the model's layers: no dataset is loaded, no weight allocated */
    bool builtin = kiln_cli_model_builtin(o->model);
    bool want_data = builtin && (strcmp(o->data, "synthetic") || o->synthetic_flag || o->classes_given);
    kiln_status s = want_data ? kiln_cli_data_shape(o, &h, &w, &c, &classes) : KILN_OK;
    if (s == KILN_OK) s = kiln_cli_model_open(o->model, h, w, c, classes, &m);
    if (s == KILN_OK) s = kiln_model_infer(m);
    if (s == KILN_OK) s = kiln_model_summary(m, stdout);
    kiln_model_free(m);
    return s;
}
