/* fuzz_keras.c: libFuzzer target for Keras 3's files: a .keras zip archive (libzip: its
 * config.json to the Keras JSON reader, its model.weights.h5 to the weights reader) or a
 * .weights.h5 HDF5 image (libhdf5 through its core driver, from memory), loaded into a fixed
 * model shaped like tests/fixtures/keras/seq (whose files seed the corpus), both whole and as a
 * subset (--init-weights). Any input must be refused with a status and a message, or loaded;
 * the sanitizers catch the rest. A fault inside libhdf5 or libzip is documented with its
 * reproducer in docs/formats.md. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "keras_file.h"
#include "kiln/kiln.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Input (3, 3, 2) -> Flatten -> Dense(5, relu) -> BN(scale=False) -> Dropout -> Dense(3, softmax) */
static kiln_model *seq_model(void) {
    static kiln_backend *be;
    static kiln_model *m;
    if (m) return m;
    int64_t in[3] = {3, 3, 2};
    kiln_layer_config layers[6] = {kiln_input_layer(3, in), kiln_flatten_layer(), kiln_dense_layer(5, KILN_ACT_RELU),
                                   kiln_batchnorm_layer(), kiln_dropout_layer(0.25f), kiln_dense_layer(3, KILN_ACT_SOFTMAX)};
    layers[3].bn.scale = false;
    if (kiln_backend_init("cpu", &be) != KILN_OK || kiln_model_new("seq", &m) != KILN_OK) __builtin_trap();
    for (int i = 0; i < 6; i++)
        if (kiln_model_add(m, &layers[i], 0, NULL, NULL) != KILN_OK) __builtin_trap();
    if (kiln_model_build(m, be, 1) != KILN_OK) __builtin_trap();
    return m;
}

static void refused_or_loaded(kiln_status s) {
    if (s != KILN_OK && !kiln_last_error()[0]) __builtin_trap(); /* a refusal says why */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kiln_model *m = seq_model();
    kiln_clear_error();
    refused_or_loaded(kiln_model_load_keras_bytes(m, data, size, "fuzz", false));
    kiln_clear_error();
    refused_or_loaded(kiln_model_load_keras_bytes(m, data, size, "fuzz", true));
    char *json = NULL;
    size_t len = 0;
    kiln_clear_error();
    if (size >= 2 && data[0] == 'P' && data[1] == 'K' && kiln_keras_config(data, size, "fuzz", &json, &len) == KILN_OK) {
        kiln_model *c = NULL;
        refused_or_loaded(kiln_model_from_json(json, len, &c));
        kiln_model_free(c);
        free(json);
    }
    return 0;
}
