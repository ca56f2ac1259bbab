/* fuzz_model_json.c: libFuzzer target for the Keras JSON reader (kiln_model_from_json). Any
 * input must be refused with a message, or give a model whose layers have unique names and take
 * earlier layers only, and whose JSON (kiln_model_to_json) reads back to the same JSON. When
 * every number of the input is small (|x| <= 16, so the weights stay small), the model is also
 * built on the CPU, which runs every layer's shape inference and initializers, and summarised. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kiln/backend.h"
#include "kiln/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool numbers_small(const cJSON *v) {
    if (cJSON_IsNumber(v) && !(fabs(v->valuedouble) <= 16)) return false;
    for (const cJSON *c = v->child; c; c = c->next)
        if (!numbers_small(c)) return false;
    return true;
}

static void check_graph(const kiln_model *m) {
    int n = kiln_model_layer_count(m);
    if (n < 2) __builtin_trap();
    for (int i = 0; i < n; i++) {
        const kiln_layer_config *c = kiln_model_layer(m, i);
        if (!c || kiln_model_find_layer(m, c->name) != i) __builtin_trap();
        int in[KILN_LAYER_MAX_INPUTS];
        int k = kiln_model_layer_inputs(m, i, in);
        for (int j = 0; j < k; j++)
            if (in[j] < 0 || in[j] >= i) __builtin_trap();
    }
}

/* the model's JSON reads back to a model of the same JSON */
static void check_round_trip(const kiln_model *m) {
    char *a = NULL, *b = NULL;
    kiln_model *m2 = NULL;
    if (kiln_model_to_json(m, &a) != KILN_OK) __builtin_trap();
    if (kiln_model_from_json(a, strlen(a), &m2) != KILN_OK) __builtin_trap();
    if (kiln_model_to_json(m2, &b) != KILN_OK || strcmp(a, b)) __builtin_trap();
    free(a);
    free(b);
    kiln_model_free(m2);
}

static void try_build(kiln_model *m, const uint8_t *data, size_t size) {
    cJSON *root = cJSON_ParseWithLength((const char *)data, size);
    bool small = root && numbers_small(root);
    cJSON_Delete(root);
    static kiln_backend *be;
    if (!small || (!be && kiln_backend_init("cpu", &be) != KILN_OK)) return;
    kiln_clear_error();
    if (kiln_model_build(m, be, 1) != KILN_OK) {
        if (!kiln_last_error()[0]) __builtin_trap();
        return;
    }
    FILE *null = fopen("/dev/null", "w");
    if (!null || kiln_model_summary(m, null) != KILN_OK) __builtin_trap();
    fclose(null);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kiln_model *m = NULL;
    kiln_clear_error();
    if (kiln_model_from_json((const char *)data, size, &m) != KILN_OK) {
        if (m || !kiln_last_error()[0]) __builtin_trap(); /* a refusal says why and gives nothing */
        return 0;
    }
    check_graph(m);
    check_round_trip(m);
    try_build(m, data, size);
    kiln_model_free(m);
    return 0;
}
