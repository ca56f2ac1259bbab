/* test_cli_errors.c: the `kiln` command on bad input: every case exits with 1 (a failure) or 2
 * (a bad command line), never by a signal, and prints exactly one line on stderr, "kiln: ",
 * with the words that name the problem: unknown commands and flags, bad values, missing and
 * truncated files, MNIST files with a wrong magic number, truncated and oversized safetensors
 * headers, weights without an architecture, a Keras JSON with an unknown layer, models that do
 * not fit the data, and --device cuda without a GPU. One parameterized test per case. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_run.h"
#include "datafiles.h"
#include "harness.h"
#include "kiln/model.h"

#define SMALL "--train-size 32 --test-size 8 --image-size 8 --batch-size 8 --verbose 0"

typedef struct bad_case {
    const char *args; /* '@' stands for the case's directory of prepared files */
    int status;
    const char *needle;
} bad_case;

static const bad_case cases[] = {
    {"fly", 2, "unknown command 'fly'"},
    {"train --model seed-cnn --bogus", 2, "unknown flag '--bogus'"},
    {"train --model", 2, "--model needs a value"},
    {"train --model seed-cnn --epochs x", 2, "--epochs: 'x' is not an integer"},
    {"train --model seed-cnn --validation-split 1.5", 2, "--validation-split: '1.5' is not a number"},
    {"summary --model seed-cnn --epochs 2", 2, "summary does not take --epochs"},
    {"train --model seed-cnn --epochs 2 --epochs 3", 2, "--epochs is given twice"},
    {"train --epochs 2", 2, "--model is required"},
    {"evaluate --data synthetic", 2, "--weights is required"},
    {"train --model seed-cnn --validation-split 0.2 --validation-data synthetic", 2, "exclude each other"},
    {"train --model seed-cnn --optimizer rmsprop", 2, "--optimizer: 'rmsprop' is not adam, sgd or adamw"},
    {"train --model seed-cnn --no-shuffle=yes", 2, "--no-shuffle takes no value"},
    {"train --model @/missing.json " SMALL, 1, "missing.json': No such file or directory"},
    {"train --model @/truncated.json " SMALL, 1, "not valid JSON"},
    {"train --model @/lstm.json " SMALL, 1, "layer 'lstm' (LSTM): layer class LSTM is not supported"},
    {"train --model @/in8.json --train-size 32 --test-size 8 --image-size 16", 1, "takes inputs of shape (8, 8, 3), but the training data"},
    {"evaluate --weights @/missing.safetensors", 1, "missing.safetensors': No such file or directory"},
    {"evaluate --weights @/short.safetensors", 1, "too short for the 8-byte header length"},
    {"evaluate --weights @/truncated.safetensors", 1, "header length 1000 runs past the end of the file"},
    {"evaluate --weights @/oversized.safetensors", 1, "is over the 100000000-byte limit"},
    {"evaluate --weights @/bare.safetensors", 1, "no model architecture in it"},
    {"evaluate --weights @/weights.safetensors --train-size 32 --test-size 8 --image-size 16", 1, "takes inputs of shape (8, 8, 3)"},
    {"predict --weights @/weights.safetensors " "--train-size 32 --test-size 8 --image-size 8 --out @/nowhere/p.csv", 1, "nowhere/p.csv' for writing"},
    {"train --model seed-cnn --data mnist:@/mnist", 1, "train-labels-idx1-ubyte: offset 0: magic number 0x00000802, expected 0x00000801"},
    {"train --model seed-cnn --data mnist:@/nowhere", 1, "nowhere/train-images-idx3-ubyte not found"},
    {"train --model seed-cnn --data npy:@/x.npy,@/y.npy", 1, "x.npy: offset 8: header length 118 runs past the end of the file"},
    {"train --model seed-cnn --data cifar10:@ --train-size 5", 1, "--train-size applies to --data synthetic only"},
    {"train --model seed-cnn --device cuda " SMALL, 1, "no CUDA device: "},
    {"train --model seed-cnn --device tpu " SMALL, 1, "unknown backend 'tpu'"},
    {"train --model seed-cnn --freeze conv2d,nosuch " SMALL, 1, "model 'sequential' has no layer 'nosuch'"},
    {"train --model seed-cnn --resume @/weights.safetensors " SMALL, 1, "not a full checkpoint"},
    {"train --model seed-cnn --init-weights @/weights.safetensors --train-size 32 --test-size 8 --image-size 16", 1, "'dense.kernel'"},
    {"train --model seed-cnn --out @/weights.safetensors " SMALL, 1, "is not a directory"},
    /* 12 GiB of weights, 50 GiB with Adam at batch 8: refused before building (KILN_MEMORY_LIMIT, below) */
    {"train --model @/wide.json " SMALL, 1, "model 'wide' needs 50.25 GiB at batch 8 (weights 12.06 GiB, gradients 12.06 GiB, optimizer state 24.12 GiB, activations 2.00 GiB), the device cpu has "},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static void write_json(const char *name, const char *text) {
    char *j = strdup(text);
    for (char *p = j; *p; p++)
        if (*p == '\'') *p = '"';
    kt_write_file(kt_path(name), j, strlen(j), false);
    free(j);
}

static void write_u64_header(const char *name, uint64_t len, const char *rest) {
    unsigned char b[64];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(len >> (8 * i));
    size_t n = strlen(rest);
    memcpy(b + 8, rest, n);
    kt_write_file(kt_path(name), b, 8 + n, false);
}

/* every bad file the cases name */
static void prepare(void) {
    kt_tmpdir_new();
    write_json("truncated.json", "{'class_name': 'Sequential', 'config': {'layers': [{'class_name': 'Dense'");
    write_json("lstm.json", "{'class_name': 'Sequential', 'config': {'name': 's', 'layers': [{'class_name': 'InputLayer',"
                            " 'config': {'name': 'in', 'batch_shape': [null, 8, 8, 3]}}, {'class_name': 'LSTM', 'config':"
                            " {'name': 'lstm', 'units': 4}}]}}");
    write_json("in8.json", "{'class_name': 'Sequential', 'config': {'name': 's', 'layers': [{'class_name': 'InputLayer',"
                           " 'config': {'name': 'in', 'batch_shape': [null, 8, 8, 3]}}, {'class_name': 'Flatten', 'config':"
                           " {'name': 'f'}}, {'class_name': 'Dense', 'config': {'name': 'd', 'units': 10, 'activation': 'softmax'}}]}}");
    write_json("wide.json", "{'class_name': 'Sequential', 'config': {'name': 'wide', 'layers': [{'class_name': 'InputLayer',"
                            " 'config': {'name': 'in', 'batch_shape': [null, 8, 8, 3]}}, {'class_name': 'Flatten', 'config':"
                            " {'name': 'f'}}, {'class_name': 'Dense', 'config': {'name': 'd', 'units': 16777216}}]}}");
    kt_write_file(kt_path("short.safetensors"), "abcd", 4, false);
    write_u64_header("truncated.safetensors", 1000, "{\"a\":");
    write_u64_header("oversized.safetensors", (uint64_t)1 << 40, "{}");
    write_u64_header("bare.safetensors", 8, "{}      ");
    /* the weights of seed-cnn for 8x8x3, 10 classes, without optimizer state */
    kiln_model *m;
    cr_assert_eq(kiln_model_builtin("seed-cnn", 8, 8, 3, 10, &m), KILN_OK);
    cr_assert_eq(kiln_model_build(m, kt_cpu(), 1), KILN_OK);
    cr_assert_eq(kiln_model_save(m, kt_path("weights.safetensors"), false, 0), KILN_OK, "%s", kiln_last_error());
    kiln_model_free(m);
    /* MNIST: good images, labels with the images' magic number */
    cr_assert_eq(mkdir(kt_path("mnist"), 0777), 0);
    static const unsigned char images[16 + 2 * 4 * 4] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4, 1, 2, 3};
    static const unsigned char labels[8 + 2] = {0, 0, 8, 2, 0, 0, 0, 2, 1, 0};
    kt_write_file(kt_path("mnist/train-images-idx3-ubyte"), images, sizeof images, false);
    kt_write_file(kt_path("mnist/train-labels-idx1-ubyte"), labels, sizeof labels, false);
    /* a .npy cut short inside its header */
    kt_write_file(kt_path("x.npy"), "\x93NUMPY\x01\x00\x76\x00{'descr': '|u1', 'fortran", 35, false);
    kt_write_file(kt_path("y.npy"), "\x93NUMPY\x01\x00", 8, false);
}

/* args or needle with each '@' replaced by the directory */
static void expand(const char *in, char *out, size_t n) {
    const char *dir = kt_path("");
    size_t o = 0, dl = strlen(dir) - 1; /* without the trailing '/' */
    for (; *in && o + dl + 1 < n; in++) {
        if (*in == '@') {
            memcpy(out + o, dir, dl);
            o += dl;
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
}

ParameterizedTestParameters(cli_errors, each_case) {
    static size_t index[N_CASES];
    for (size_t i = 0; i < N_CASES; i++) index[i] = i;
    return cr_make_param_array(size_t, index, N_CASES);
}

ParameterizedTest(size_t *k, cli_errors, each_case, .timeout = 60) {
    const bad_case *c = &cases[*k];
    if (strstr(c->needle, "no CUDA device")) {
        kiln_backend *be = NULL;
        if (kiln_backend_init("cuda", &be) == KILN_OK) {
            kiln_backend_free(be);
            cr_skip_test("a CUDA device is present");
        }
    }
    prepare();
    setenv("KILN_MEMORY_LIMIT", "16G", 1); /* the memory budget's cases are refused on any machine */
    char args[1024];
    expand(c->args, args, sizeof args);
    kt_run r = kt_run_program(KILN_CLI_PATH, "%s", args);
    cr_expect(!r.signaled, "kiln %s: killed by signal %d; stderr: %s", args, r.status - 128, r.err);
    cr_expect_eq(r.status, c->status, "kiln %s: exit %d, want %d; stderr: %s", args, r.status, c->status, r.err);
    const char *nl = strchr(r.err, '\n');
    cr_expect(!strncmp(r.err, "kiln: ", 6) && nl && nl[1] == '\0', "kiln %s: stderr is not one 'kiln: ' line: %s", args, r.err);
    cr_expect(strstr(r.err, c->needle), "kiln %s: stderr lacks '%s': %s", args, c->needle, r.err);
    kt_run_free(&r);
    kt_tmpdir_remove();
}
