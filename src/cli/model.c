/* model.c: the model of a `kiln` command: a built-in (seed-cnn, resnet20) shaped for the
 * data, a Keras model.to_json() file, a Keras 3 .keras archive (its config.json), or the
 * architecture kiln saved in a safetensors file's metadata ("kiln.model"), which is how
 * evaluate and predict need only --weights. A file's kind is told by its content
 * (io/file_kind.h); a Keras .weights.h5 holds no architecture and is refused, saying so. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "file_kind.h"
#include "kiln/safetensors.h"

#define MODEL_JSON_MAX ((size_t)64 << 20)

kiln_status kiln_cli_file_read(const char *path, size_t max, char **buf, size_t *len) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_error(KILN_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *b = malloc(cap + 1);
    kiln_status s = b ? KILN_OK : kiln_error(KILN_ERR_OOM, "out of host memory reading '%s'", path);
    while (s == KILN_OK) {
        if (n == cap) {
            char *nb = cap < max ? realloc(b, (cap *= 2) + 1) : NULL;
            if (!nb) {
                s = kiln_error(cap < max ? KILN_ERR_OOM : KILN_ERR_FORMAT, "'%s' is larger than %zu bytes", path, max);
                break;
            }
            b = nb;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) s = kiln_error(KILN_ERR_IO, "reading '%s' failed: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (s != KILN_OK) {
        free(b);
        return s;
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return KILN_OK;
}

/* the "kiln.model" metadata of a safetensors file */
static kiln_status from_weights(const char *path, kiln_model **out) {
    kiln_safetensors *st;
    KILN_TRY(kiln_safetensors_open(path, &st));
    const char *json = kiln_safetensors_metadata(st, "kiln.model");
    bool has_json = json && *json; /* json lives in st: decide before st is freed */
    kiln_status s = has_json ? kiln_model_from_json(json, strlen(json), out)
                             : kiln_error(KILN_ERR_FORMAT, "%s: no model architecture in it (no \"kiln.model\" in its "
                                          "__metadata__; kiln writes one with every model it saves)", path);
    kiln_safetensors_free(st);
    if (s != KILN_OK && has_json) return kiln_error_context(s, "%s", path);
    return s;
}

bool kiln_cli_model_builtin(const char *spec) { return !strcmp(spec, "seed-cnn") || !strcmp(spec, "resnet20"); }

kiln_status kiln_cli_model_open(const char *spec, int h, int w, int c, int classes, kiln_model **out) {
    *out = NULL;
    if (kiln_cli_model_builtin(spec)) return kiln_model_builtin(spec, h, w, c, classes, out);
    kiln_file_kind kind;
    KILN_TRY(kiln_file_kind_of(spec, &kind));
    if (kind == KILN_FILE_HDF5)
        return kiln_error(KILN_ERR_FORMAT, "%s: this is %s, which holds weights but no architecture: give the architecture "
                          "with --model (a built-in name, a Keras JSON or .keras file) and this file with --weights",
                          spec, kiln_file_kind_name(kind));
    kiln_status s;
    if (kind == KILN_FILE_ZIP) {
        s = kiln_model_from_keras(spec, out);
    } else if (kind != KILN_FILE_JSON) {
        s = from_weights(spec, out); /* a safetensors file starts with its header's length */
    } else {
        char *buf;
        size_t len;
        KILN_TRY(kiln_cli_file_read(spec, MODEL_JSON_MAX, &buf, &len));
        s = kiln_model_from_json(buf, len, out);
        free(buf);
        if (s != KILN_OK) return kiln_error_context(s, "%s", spec);
    }
    if (s == KILN_OK && h > 0) s = kiln_cli_model_fill_input(*out, h, w, c);
    if (s != KILN_OK && *out) {
        kiln_model_free(*out);
        *out = NULL;
    }
    return s;
}

kiln_status kiln_cli_model_fill_input(kiln_model *m, int h, int w, int c) {
    if (!kiln_model_layer(m, 0)->input_free) return KILN_OK;
    return kiln_model_set_input_shape(m, 3, (const int64_t[3]){h, w, c});
}

kiln_status kiln_cli_weights_of(const kiln_cli_options *o, const char **weights) {
    *weights = o->weights;
    if (o->weights) return KILN_OK;
    kiln_file_kind kind = KILN_FILE_UNKNOWN;
    if (!kiln_cli_model_builtin(o->model)) KILN_TRY(kiln_file_kind_of(o->model, &kind));
    if (kind == KILN_FILE_JSON || kiln_cli_model_builtin(o->model))
        return kiln_error(KILN_ERR_INVALID_ARG, "--model %s holds no weights: give them with --weights (kiln's .safetensors "
                          "or a Keras .weights.h5)", o->model);
    *weights = o->model; /* a .keras archive or kiln's safetensors */
    return KILN_OK;
}

kiln_status kiln_cli_model_check_data(const kiln_model *m, const kiln_dataset *ds, const char *what) {
    int nd, last = kiln_model_layer_count(m) - 1;
    int64_t in[3], out[3];
    KILN_TRY(kiln_model_output_shape(m, 0, &nd, in));
    int64_t numel = 1;
    for (int d = 0; d < nd; d++) numel *= in[d];
    bool image = nd == 3 && in[0] == ds->h && in[1] == ds->w && in[2] == ds->c;
    if (!image && numel != (int64_t)ds->h * ds->w * ds->c) { /* a flat input takes the images' pixels in order */
        char shape[64];
        int o = snprintf(shape, sizeof shape, "(");
        for (int d = 0; d < nd; d++) o += snprintf(shape + o, sizeof shape - (size_t)o, "%s%lld", d ? ", " : "", (long long)in[d]);
        snprintf(shape + o, sizeof shape - (size_t)o, "%s)", nd == 1 ? "," : "");
        return kiln_error(KILN_ERR_SHAPE, "model '%s' takes inputs of shape %s, but the %s %s has %dx%dx%d images",
                          kiln_model_name(m), shape, what, ds->source, ds->h, ds->w, ds->c);
    }
    KILN_TRY(kiln_model_output_shape(m, last, &nd, out));
    if (nd != 1 || out[0] < ds->num_classes)
        return kiln_error(KILN_ERR_SHAPE, "model '%s' has %lld outputs, but the %s %s has %d classes", kiln_model_name(m),
                          (long long)(nd == 1 ? out[0] : -1), what, ds->source, ds->num_classes);
    return KILN_OK;
}
