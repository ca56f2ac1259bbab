/* test_cli_keras.c: the `kiln` command with Keras 3's files (issue 13, item 2), on the fixtures
 * real Keras wrote (tests/fixtures/keras): predict --model m.keras and --model m.json --weights
 * m.weights.h5 print Keras' predictions; train --model m.keras starts from its weights; train
 * --out writes model.keras, which predicts what model.safetensors does; and each misuse (a
 * weights file as the architecture, a JSON without weights, a Keras 2 file, a wrong model, a
 * .keras to resume from) exits 1 or 2 with one line naming the file and what it is. Skipped
 * when kiln was built without libhdf5 or libzip. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_run.h"
#include "datafiles.h"
#include "harness.h"
#include "keras_h5.h"
#include "keras_zip.h"

#define FIX KILN_SOURCE_DIR "/tests/fixtures/keras/"
#define NPY4(m) "--data npy:" FIX m "_x.npy,%/y4.npy --batch-size 4 --device cpu"

typedef struct bad_case {
    const char *args; /* '%' stands for the test's temporary directory */
    int status;
    const char *needle;
} bad_case;

static const bad_case cases[] = {
    {"summary --model " FIX "func.weights.h5", 1,
     "func.weights.h5: this is an HDF5 file (Keras .weights.h5 or .h5), which holds weights but no architecture"},
    {"predict --weights " FIX "func.weights.h5 " NPY4("func"), 1, "func.weights.h5: this is an HDF5 file"},
    {"evaluate --model " FIX "func.json " NPY4("func"), 1, "func.json holds no weights: give them with --weights"},
    {"evaluate --model " FIX "seq.json --weights " FIX "legacy.h5 " NPY4("seq"), 1,
     "legacy.h5: a Keras 2 HDF5 file (it has 'model_weights'), not Keras 3's weights layout"},
    {"evaluate --model " FIX "seq.json --weights " FIX "func.keras " NPY4("seq"), 1,
     "func.keras: model.weights.h5: holds 10 layers, model 'seq' has 5"},
    {"train --model " FIX "seq.json --init-weights " FIX "func.weights.h5 " NPY4("seq") " --verbose 0", 1,
     "'layers/dense/vars/0' is (4, 3), but weight 'dense.kernel' of layer 'dense' (Dense) is (18, 5)"},
    {"train --model " FIX "seq.keras --resume " FIX "seq.keras " NPY4("seq") " --verbose 0", 1,
     "seq.keras: this is a zip archive (a Keras .keras file), which holds no kiln optimizer state"},
    {"summary --model " FIX "extlink.weights.h5", 1, "extlink.weights.h5: this is an HDF5 file"},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static void need_libs(void) {
    if (!kiln_h5_available() || !kiln_zip_available()) cr_skip_test("kiln was built without libhdf5 or libzip");
}

/* the temporary directory with y4.npy: labels 0 1 2 0 (int64) */
static void prepare(void) {
    kt_tmpdir_new();
    char npy[128] = "\x93NUMPY\x01\x00";
    const char *dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }";
    size_t hl = 128 - 10;
    npy[8] = (char)hl;
    memset(npy + 10, ' ', hl);
    memcpy(npy + 10, dict, strlen(dict));
    npy[127] = '\n';
    int64_t y[4] = {0, 1, 2, 0};
    char file[128 + sizeof y];
    memcpy(file, npy, 128);
    memcpy(file + 128, y, sizeof y);
    kt_write_file(kt_path("y4.npy"), file, sizeof file, false);
}

/* args with each '%' replaced by the temporary directory */
static void expand(const char *in, char *out, size_t n) {
    const char *dir = kt_path("");
    size_t o = 0, dl = strlen(dir) - 1;
    for (; *in && o + dl + 1 < n; in++) {
        if (*in == '%') {
            memcpy(out + o, dir, dl);
            o += dl;
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
}

static kt_run run(const char *fmt) {
    char args[2048];
    expand(fmt, args, sizeof args);
    return kt_run_program(KILN_CLI_PATH, "%s", args);
}

ParameterizedTestParameters(cli_keras, each_case) {
    static size_t index[N_CASES];
    for (size_t i = 0; i < N_CASES; i++) index[i] = i;
    return cr_make_param_array(size_t, index, N_CASES);
}

ParameterizedTest(size_t *k, cli_keras, each_case, .timeout = 60) {
    need_libs();
    prepare();
    const bad_case *c = &cases[*k];
    kt_run r = run(c->args);
    cr_expect(!r.signaled, "kiln %s: killed by signal %d; stderr: %s", c->args, r.status - 128, r.err);
    cr_expect_eq(r.status, c->status, "kiln %s: exit %d, want %d; stderr: %s", c->args, r.status, c->status, r.err);
    const char *nl = strchr(r.err, '\n');
    cr_expect(!strncmp(r.err, "kiln: ", 6) && nl && nl[1] == '\0', "kiln %s: stderr is not one 'kiln: ' line: %s", c->args, r.err);
    cr_expect(strstr(r.err, c->needle), "kiln %s: stderr lacks '%s': %s", c->args, c->needle, r.err);
    kt_run_free(&r);
    kt_tmpdir_remove();
}

/* a whole file as a NUL-terminated string (malloc'ed) */
static char *text_of(const char *path) {
    size_t len;
    char *b = kt_read_file(path, &len), *t = b ? malloc(len + 1) : NULL;
    cr_assert_not_null(t, "cannot read %s", path);
    memcpy(t, b, len);
    t[len] = '\0';
    free(b);
    return t;
}

/* the 4 x 3 probabilities of a predictions CSV */
static void read_csv(const char *path, double p[12]) {
    char *t = text_of(path), *line = strchr(t, '\n');
    cr_assert_not_null(line, "%s: no rows", path);
    for (int i = 0; i < 12; i++) {
        char *end;
        p[i] = strtod(line + 1, &end);
        cr_assert(end != line + 1, "%s: value %d is missing", path, i);
        line = end;
    }
    free(t);
}

/* `kiln predict ARGS --out %/p.csv` prints Keras' predictions of fixture m */
static void expect_keras(const char *args, const char *m) {
    char fmt[1024], want_path[256];
    snprintf(fmt, sizeof fmt, "predict %s --out %%/p.csv", args);
    kt_run r = run(fmt);
    kt_expect_ok(&r, fmt);
    kt_run_free(&r);
    double got[12];
    read_csv(kt_path("p.csv"), got);
    snprintf(want_path, sizeof want_path, FIX "%s_p.npy", m);
    size_t len;
    void *buf = kt_read_file(want_path, &len);
    kiln_npy a;
    cr_assert_eq(kiln_npy_parse(buf, len, want_path, &a), KILN_OK);
    cr_assert_eq(a.nbytes, 12 * sizeof(float));
    float want[12];
    memcpy(want, a.data, sizeof want);
    for (int i = 0; i < 12; i++) cr_expect(fabs(got[i] - want[i]) < 1e-6, "%s: p[%d] = %.9g, Keras %.9g", fmt, i, got[i], want[i]);
    free(buf);
}

Test(cli_keras, predict_from_keras_files, .timeout = 60) {
    need_libs();
    prepare();
    expect_keras("--model " FIX "func.keras " NPY4("func"), "func");
    expect_keras("--model " FIX "seq.json --weights " FIX "seq.weights.h5 " NPY4("seq"), "seq");
    expect_keras("--weights " FIX "seq.keras " NPY4("seq"), "seq");
    /* train --model m.keras starts from its weights: 0 epochs save them as they came */
    kt_run r = run("train --model " FIX "func.keras " NPY4("func") " --epochs 0 --verbose 0 --out %/run");
    kt_expect_ok(&r, "train --model func.keras --epochs 0");
    kt_run_free(&r);
    expect_keras("--weights %/run/model.safetensors " NPY4("func"), "func");
    kt_tmpdir_remove();
}

Test(cli_keras, train_out_writes_model_keras, .timeout = 120) {
    need_libs();
    prepare();
    kt_run r = run("train --model seed-cnn --train-size 32 --test-size 8 --image-size 8 --batch-size 8 --verbose 0 "
                   "--device cpu --out %/run");
    kt_expect_ok(&r, "train --out");
    kt_run_free(&r);
    const char *outs[2] = {"--weights %/run/model.safetensors", "--model %/run/model.keras"};
    char *csv[2];
    for (int i = 0; i < 2; i++) {
        char fmt[512];
        snprintf(fmt, sizeof fmt, "predict %s --train-size 32 --test-size 8 --image-size 8 --device cpu --out %%/p%d.csv", outs[i], i);
        r = run(fmt);
        kt_expect_ok(&r, fmt);
        kt_run_free(&r);
        char name[16];
        snprintf(name, sizeof name, "p%d.csv", i);
        csv[i] = text_of(kt_path(name));
    }
    cr_expect_str_eq(csv[0], csv[1], "model.keras predicts otherwise than model.safetensors");
    free(csv[0]);
    free(csv[1]);
    kt_tmpdir_remove();
}
