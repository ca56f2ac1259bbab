/* test_keras_chain.c: a Functional model that is a plain chain (keras.applications.MobileNet is
 * one) loads its weights from Keras' files: kiln runs it as a Sequential model, but Keras'
 * weights file also holds its InputLayer (layers/input_layer), which must not count as a layer
 * too many. Fixtures: tests/fixtures/keras/make_chain_fixture.py (real Keras 3.15). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>

#include "harness.h"
#include "keras_h5.h"
#include "keras_zip.h"
#include "kiln/kiln.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5_serial.so\nleak:libhdf5.so\n"; }

static const char *fixture(const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/tests/fixtures/keras/%s", KILN_SOURCE_DIR, name);
    return buf;
}

Test(keras_chain, functional_chain_loads_keras_weights) {
    if (!kiln_h5_available() || !kiln_zip_available()) cr_skip_test("kiln was built without libhdf5 or libzip");
    static const char *const files[] = {"chain.keras", "chain.weights.h5"};
    char model_path[1024], path[1024];
    for (int i = 0; i < 2; i++) {
        kiln_model *m;
        OK(kiln_model_from_keras(fixture("chain.keras", model_path, sizeof model_path), &m));
        OK(kiln_model_build(m, kt_cpu(), 7));
        OK(kiln_model_load(m, fixture(files[i], path, sizeof path), false, false, NULL));
        kiln_model_free(m);
    }
}
