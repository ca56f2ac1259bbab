/* fuzz_checkpoint_meta.c: libFuzzer target for a checkpoint's metadata (the kiln.* keys that
 * kiln_model_load reads when resuming: kiln.iterations, kiln.epoch, kiln.learning_rate,
 * kiln.seed, ...). A small compiled model's full checkpoint is made once; each input is a list of
 * lines, "key=value" for a metadata entry and "-name" to leave the tensor `name` out, from which
 * a safetensors file with the model's real tensors is written and loaded into the model, as a
 * full checkpoint and as plain weights. Any file must be loaded or refused with a message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "kiln/backend.h"
#include "kiln/model.h"
#include "kiln/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_META 16

static kiln_model *model;
static kiln_safetensors *ref; /* the model's own full checkpoint */
static char path[64];

static void remove_file(void) { unlink(path); }

static void setup(void) {
    kiln_backend *be = NULL;
    int64_t in[3] = {4, 4, 1};
    kiln_layer_config layers[] = {kiln_input_layer(3, in), kiln_conv2d_layer(2, 3, 3, KILN_ACT_RELU),
                                  kiln_batchnorm_layer(), kiln_flatten_layer(), kiln_dense_layer(3, KILN_ACT_SOFTMAX)};
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    cc.optimizer.schedule = KILN_LR_STEP;
    cc.optimizer.step_size = 10;
    cc.optimizer.step_gamma = 0.5;
    bool ok = kiln_backend_init("cpu", &be) == KILN_OK && kiln_model_new("fuzz", &model) == KILN_OK;
    for (size_t i = 0; ok && i < sizeof layers / sizeof layers[0]; i++) ok = kiln_model_add(model, &layers[i], 0, NULL, NULL) == KILN_OK;
    snprintf(path, sizeof path, "/tmp/kiln-fuzz-ckpt-%d.safetensors", (int)getpid());
    atexit(remove_file);
    ok = ok && kiln_model_build(model, be, 1) == KILN_OK && kiln_model_compile(model, &cc) == KILN_OK &&
         kiln_model_save(model, path, true, 1) == KILN_OK && kiln_safetensors_open(path, &ref) == KILN_OK;
    if (!ok) {
        fprintf(stderr, "fuzz_checkpoint_meta: setup failed: %s\n", kiln_last_error());
        abort();
    }
}

/* whether a line of the input asks to leave the tensor `name` out */
static bool dropped(const char *name, char **lines, int n) {
    for (int i = 0; i < n; i++)
        if (lines[i][0] == '-' && !strcmp(lines[i] + 1, name)) return true;
    return false;
}

/* the header JSON: the kept tensors of ref, back to back, and the input's metadata */
static char *header(char **lines, int n, size_t *data_len) {
    cJSON *h = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(h, "__metadata__");
    for (int i = 0; i < n; i++) {
        char *eq = strchr(lines[i], '=');
        if (lines[i][0] == '-' || !eq) continue;
        *eq = '\0';
        if (!cJSON_GetObjectItemCaseSensitive(meta, lines[i])) cJSON_AddStringToObject(meta, lines[i], eq + 1);
        *eq = '=';
    }
    size_t off = 0;
    for (size_t i = 0; i < ref->n_entries; i++) {
        const kiln_st_entry *e = &ref->entries[i];
        if (dropped(e->name, lines, n)) continue;
        cJSON *t = cJSON_AddObjectToObject(h, e->name);
        cJSON_AddStringToObject(t, "dtype", kiln_st_dtype_name(e->dtype));
        cJSON *shape = cJSON_AddArrayToObject(t, "shape"), *offs = cJSON_AddArrayToObject(t, "data_offsets");
        for (int d = 0; d < e->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + e->nbytes)));
        off += e->nbytes;
    }
    char *s = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    *data_len = off;
    return s;
}

static void write_file(char **lines, int n) {
    size_t data_len = 0;
    char *h = header(lines, n, &data_len);
    FILE *f = fopen(path, "wb");
    if (!h || !f) abort();
    uint64_t hl = strlen(h);
    fwrite(&hl, 8, 1, f);
    fwrite(h, 1, hl, f);
    for (size_t i = 0; i < ref->n_entries; i++)
        if (!dropped(ref->entries[i].name, lines, n)) fwrite(ref->entries[i].data, 1, ref->entries[i].nbytes, f);
    if (fclose(f) != 0) abort();
    free(h);
}

static void load(bool full) {
    int epoch = -12345;
    kiln_clear_error();
    if (kiln_model_load(model, path, false, full, &epoch) != KILN_OK) {
        if (!kiln_last_error()[0]) __builtin_trap(); /* a refusal says why */
        return;
    }
    volatile double lr = kiln_model_learning_rate(model); /* the schedule at the restored step */
    volatile int64_t it = kiln_model_iterations(model);
    (void)lr;
    (void)it;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model) setup();
    char *text = malloc(size + 1), *lines[MAX_META];
    memcpy(text, data, size);
    text[size] = '\0';
    int n = 0;
    for (char *p = text, *nl; p && n < MAX_META; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        if (*p) lines[n++] = p;
    }
    write_file(lines, n);
    load(true);
    load(false);
    free(text);
    return 0;
}
