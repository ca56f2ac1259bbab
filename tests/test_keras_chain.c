/* test_keras_chain.c: a Functional model that is a plain chain (keras.applications.MobileNet is
 * one) loads its weights from Keras' files: kiln runs it as a Sequential model, but Keras'
 * weights file also holds its InputLayer (layers/input_layer), which must not count as a layer
 * too many. And MobileNetV3's hard sigmoid, `x + 3.0` and `x * (1/6)` on Keras tensors (operation
 * nodes keras.src.ops.numpy Add / Multiply with a number), reads as Rescaling and predicts what
 * Keras did. Fixtures: tests/fixtures/keras/make_chain_fixture.py (real Keras 3.15). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datafiles.h"
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

/* a float32 .npy fixture's values (malloc'ed), *n of them */
static float *npy_f32(const char *name, int64_t *n) {
    char path[1024];
    size_t len;
    void *buf = kt_read_file(fixture(name, path, sizeof path), &len);
    cr_assert_not_null(buf, "cannot read %s", path);
    kiln_npy a;
    OK(kiln_npy_parse(buf, len, name, &a));
    cr_assert_eq(a.dtype, KILN_NPY_F32);
    float *v = malloc(a.nbytes);
    memcpy(v, a.data, a.nbytes);
    *n = (int64_t)(a.nbytes / sizeof(float));
    free(buf);
    return v;
}

Test(keras_chain, scalar_add_and_multiply_ops_read_as_rescaling) {
    if (!kiln_h5_available() || !kiln_zip_available()) cr_skip_test("kiln was built without libhdf5 or libzip");
    char path[1024];
    kiln_model *m;
    OK(kiln_model_from_keras(fixture("hsig.keras", path, sizeof path), &m));
    OK(kiln_model_build(m, kt_cpu(), 7));
    OK(kiln_model_load(m, path, false, false, NULL));
    int64_t nx, np_;
    float *x = npy_f32("hsig_x.npy", &nx), *want = npy_f32("hsig_p.npy", &np_);
    float *got = malloc(sizeof(float) * (size_t)np_);
    OK(kiln_model_predict(m, x, 3, 3, got));
    kt_expect_close("hsig predictions", got, want, np_, 1e-6);
    free(x);
    free(want);
    free(got);
    kiln_model_free(m);
}
