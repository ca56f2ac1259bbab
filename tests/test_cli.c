/* test_cli.c: the `kiln` command end to end, running the built binary (KILN_CLI_PATH) on small
 * synthetic data: --help is docs/cli.md's usage block; train writes history.csv, the step log,
 * the chart, the checkpoint and the model; evaluate's accuracy is the last val_accuracy;
 * predict's rows are probabilities; summary prints Keras' counts; a resumed run equals an
 * uninterrupted one byte for byte; Keras 2 and Keras 3 JSON models train; your own NumPy data
 * trains a built-in shaped for it; --init-weights and --freeze keep what they should. Bad
 * input is tests/test_cli_errors.c. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_run.h"
#include "datafiles.h"
#include "harness.h"
#include "kiln/safetensors.h"

#define KILN(...) kt_run_program(KILN_CLI_PATH, __VA_ARGS__)
#define SMALL "--train-size 64 --test-size 16 --image-size 8 --batch-size 16"

static char *read_text(const char *path) {
    size_t len;
    char *s = kt_read_file(path, &len);
    cr_assert_not_null(s, "cannot read %s", path);
    char *t = realloc(s, len + 1);
    cr_assert_not_null(t);
    t[len] = '\0';
    return t;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* the file with ' turned into " (JSON written readably in C) */
static void write_json(const char *path, const char *text) {
    char *j = strdup(text);
    for (char *p = j; *p; p++)
        if (*p == '\'') *p = '"';
    kt_write_file(path, j, strlen(j), false);
    free(j);
}

Test(cli, help_is_the_usage_block_of_docs) {
    char *doc = read_text(KILN_SOURCE_DIR "/docs/cli.md");
    const char *usage = strstr(doc, "## Usage");
    cr_assert_not_null(usage, "docs/cli.md has no '## Usage' section");
    const char *open = strstr(usage, "```text\n"), *close = open ? strstr(open + 8, "\n```\n") : NULL;
    cr_assert(open && close, "docs/cli.md: no ```text block under ## Usage");
    char *block = strndup(open + 8, (size_t)(close - open - 8) + 1);
    const char *runs[] = {"--help", "train --help", "evaluate --help", "predict --help", "summary --model seed-cnn --help"};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        kt_run r = KILN("%s", runs[i]);
        kt_expect_ok(&r, runs[i]);
        cr_expect_str_eq(r.out, block, "kiln %s differs from docs/cli.md's usage block", runs[i]);
        kt_run_free(&r);
    }
    kt_run r = KILN("%s", "");
    cr_expect_eq(r.status, 2);
    cr_expect_str_eq(r.err, block, "kiln without a command prints the usage to stderr");
    kt_run_free(&r);
    free(block);
    free(doc);
}

/* the value of column `col` (0-based) in the last line of a CSV */
static double last_field(const char *csv, int col) {
    const char *line = csv, *p;
    for (p = csv; *p; p++)
        if (*p == '\n' && p[1]) line = p + 1;
    for (int c = 0; c < col; c++) line = strchr(line, ',') + 1;
    return strtod(line, NULL);
}

Test(cli, train_evaluate_predict, .timeout = 120) {
    kt_tmpdir_new();
    kt_run r = KILN("train --model seed-cnn --validation-data synthetic " SMALL " --epochs 3 --seed 3 --out %s --log-steps %s "
                    "--verbose 2", kt_path("run"), kt_path("steps.csv"));
    kt_expect_ok(&r, "train");
    cr_expect(strstr(r.out, "Epoch 3/3") && strstr(r.out, "4/4 - ") && strstr(r.out, " - val_accuracy: "), "%s", r.out);
    kt_run_free(&r);
    /* history.csv: Keras' CSVLogger columns, one row per epoch */
    char *hist = read_text(kt_path("run/history.csv"));
    cr_expect_eq(count_lines(hist), 4, "%s", hist);
    cr_expect(!strncmp(hist, "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n0,", 58), "%s", hist);
    double val_acc = last_field(hist, 4);
    /* every step: 3 epochs of 64 / 16 */
    char *steps = read_text(kt_path("steps.csv"));
    cr_expect_eq(count_lines(steps), 13, "%s", steps);
    cr_expect(!strncmp(steps, "step,epoch,loss,accuracy\n1,0,", 29) && strstr(steps, "\n12,2,"), "%s", steps);
    char *svg = read_text(kt_path("run/history.svg"));
    cr_expect(strstr(svg, "<svg") && strstr(svg, "</svg>") && strstr(svg, "<polyline") && strstr(svg, ">validation<"));
    kiln_safetensors *st;
    cr_assert_eq(kiln_safetensors_open(kt_path("run/checkpoint.safetensors"), &st), KILN_OK, "%s", kiln_last_error());
    cr_expect_str_eq(kiln_safetensors_metadata(st, "kiln.epoch"), "3");
    cr_expect_not_null(kiln_safetensors_find(st, "optimizer.conv2d.kernel.m"));
    kiln_safetensors_free(st);
    /* evaluate: the model alone, rebuilt from its file, on the same test split */
    r = KILN("evaluate --weights %s " SMALL, kt_path("run/model.safetensors"));
    kt_expect_ok(&r, "evaluate");
    char want[64];
    snprintf(want, sizeof want, "16 examples - loss: ");
    cr_expect(strstr(r.out, want), "%s", r.out);
    snprintf(want, sizeof want, " - accuracy: %.4f\n", val_acc);
    cr_expect(strstr(r.out, want), "evaluate printed '%s', history.csv's last val_accuracy is %.17g", r.out, val_acc);
    kt_run_free(&r);
    /* predict: a header, then one row of probabilities per example */
    r = KILN("predict --weights %s " SMALL " --out %s", kt_path("run/model.safetensors"), kt_path("p.csv"));
    kt_expect_ok(&r, "predict");
    kt_run_free(&r);
    char *pred = read_text(kt_path("p.csv"));
    cr_expect(!strncmp(pred, "class_0,class_1,", 16) && strstr(pred, ",class_9\n"));
    cr_expect_eq(count_lines(pred), 17);
    const char *row = strchr(pred, '\n') + 1;
    for (int i = 0; i < 16; i++) {
        double sum = 0;
        char *end;
        for (int k = 0; k < 10; k++) {
            double p = strtod(row, &end);
            cr_expect(p >= 0 && p <= 1, "row %d: %g", i, p);
            sum += p;
            row = end + 1;
        }
        cr_expect(fabs(sum - 1.0) < 1e-5, "row %d sums to %.9g", i, sum);
    }
    free(pred);
    free(svg);
    free(steps);
    free(hist);
    kt_tmpdir_remove();
}

Test(cli, summary_counts) {
    kt_run r = KILN("summary --model seed-cnn");
    kt_expect_ok(&r, "summary");
    cr_expect(strstr(r.out, "Total params: 462,794\nTrainable params: 462,602\nNon-trainable params: 192\n"), "%s", r.out);
    kt_run_free(&r);
    r = KILN("summary --model seed-cnn --image-size 16 --classes 4"); /* the built-in follows the data */
    kt_expect_ok(&r, "summary 16x16");
    cr_expect(strstr(r.out, "Total params: 101,956\n"), "%s", r.out);
    kt_run_free(&r);
    r = KILN("summary --model resnet20");
    kt_expect_ok(&r, "summary resnet20");
    cr_expect(strstr(r.out, "Model: \"resnet20\"") && strstr(r.out, "Total params: 274,442\n"), "%s", r.out);
    kt_run_free(&r);
}

Test(cli, resume_equals_uninterrupted, .timeout = 120) {
    kt_tmpdir_new();
#define RUN_ARGS "train --model seed-cnn " SMALL " --augment --standardize --validation-split 0.25 --verbose 0"
    kt_run r = KILN(RUN_ARGS " --seed 7 --epochs 3 --out %s --log-steps %s", kt_path("a"), kt_path("a.csv"));
    kt_expect_ok(&r, "uninterrupted");
    kt_run_free(&r);
    r = KILN(RUN_ARGS " --seed 7 --epochs 2 --out %s --log-steps %s", kt_path("b"), kt_path("b.csv"));
    kt_expect_ok(&r, "first part");
    kt_run_free(&r);
    /* no --seed: the checkpoint's seed carries on */
    r = KILN(RUN_ARGS " --epochs 3 --resume %s --out %s --log-steps %s", kt_path("b/checkpoint.safetensors"), kt_path("b"),
             kt_path("b.csv"));
    kt_expect_ok(&r, "resumed");
    kt_run_free(&r);
#undef RUN_ARGS
    static const char *const files[][2] = {{"a/model.safetensors", "b/model.safetensors"},
                                           {"a/checkpoint.safetensors", "b/checkpoint.safetensors"},
                                           {"a/history.csv", "b/history.csv"},
                                           {"a.csv", "b.csv"}};
    for (int i = 0; i < 4; i++) {
        size_t la, lb;
        void *a = kt_read_file(kt_path(files[i][0]), &la), *b = kt_read_file(kt_path(files[i][1]), &lb);
        cr_assert(a && b);
        cr_expect(la == lb && !memcmp(a, b, la), "%s and %s differ", files[i][0], files[i][1]);
        free(a);
        free(b);
    }
    kt_tmpdir_remove();
}

/* tf.keras 2: Sequential without an InputLayer, batch_input_shape on the first layer */
static const char keras2_sequential[] =
    "{'class_name': 'Sequential', 'config': {'name': 'sequential', 'layers': ["
    "{'class_name': 'Conv2D', 'config': {'name': 'conv2d', 'trainable': true, 'batch_input_shape': [null, 8, 8, 3],"
    " 'dtype': 'float32', 'filters': 8, 'kernel_size': [3, 3], 'strides': [1, 1], 'padding': 'same',"
    " 'data_format': 'channels_last', 'dilation_rate': [1, 1], 'groups': 1, 'activation': 'relu', 'use_bias': true,"
    " 'kernel_initializer': {'class_name': 'GlorotUniform', 'config': {'seed': null}},"
    " 'bias_initializer': {'class_name': 'Zeros', 'config': {}}, 'kernel_regularizer': null, 'bias_regularizer': null,"
    " 'activity_regularizer': null, 'kernel_constraint': null, 'bias_constraint': null}},"
    "{'class_name': 'MaxPooling2D', 'config': {'name': 'max_pooling2d', 'trainable': true, 'dtype': 'float32',"
    " 'pool_size': [2, 2], 'padding': 'valid', 'strides': [2, 2], 'data_format': 'channels_last'}},"
    "{'class_name': 'Flatten', 'config': {'name': 'flatten', 'trainable': true, 'dtype': 'float32', 'data_format': 'channels_last'}},"
    "{'class_name': 'Dropout', 'config': {'name': 'dropout', 'trainable': true, 'dtype': 'float32', 'rate': 0.2,"
    " 'noise_shape': null, 'seed': null}},"
    "{'class_name': 'Dense', 'config': {'name': 'dense', 'trainable': true, 'dtype': 'float32', 'units': 10,"
    " 'activation': 'softmax', 'use_bias': true, 'kernel_regularizer': null}}]},"
    " 'keras_version': '2.13.1', 'backend': 'tensorflow'}";

/* Keras 3: Functional with a residual Add, inbound_nodes as {args: [keras tensors], kwargs} */
#define K3_TENSOR(name) "{'class_name': '__keras_tensor__', 'config': {'shape': [null, 8, 8, 8], 'dtype': 'float32', 'keras_history': ['" name "', 0, 0]}}"
#define K3_CALL(args) "'inbound_nodes': [{'args': [" args "], 'kwargs': {}}]"
#define K3_DTYPE "{'module': 'keras', 'class_name': 'DTypePolicy', 'config': {'name': 'float32'}, 'registered_name': null}"
static const char keras3_functional[] =
    "{'module': 'keras.src.models.functional', 'class_name': 'Functional', 'config': {'name': 'functional', 'trainable': true,"
    " 'layers': ["
    "{'module': 'keras.layers', 'class_name': 'InputLayer', 'config': {'batch_shape': [null, 8, 8, 3], 'dtype': 'float32',"
    " 'sparse': false, 'name': 'input_layer'}, 'registered_name': null, 'name': 'input_layer', 'inbound_nodes': []},"
    "{'module': 'keras.layers', 'class_name': 'Conv2D', 'config': {'name': 'conv2d', 'trainable': true, 'dtype': " K3_DTYPE ","
    " 'filters': 8, 'kernel_size': [3, 3], 'strides': [1, 1], 'padding': 'same', 'data_format': 'channels_last',"
    " 'dilation_rate': [1, 1], 'groups': 1, 'activation': 'linear', 'use_bias': false}, 'registered_name': null,"
    " 'build_config': {'input_shape': [null, 8, 8, 3]}, 'name': 'conv2d', " K3_CALL(K3_TENSOR("input_layer")) "},"
    "{'module': 'keras.layers', 'class_name': 'BatchNormalization', 'config': {'name': 'batch_normalization',"
    " 'trainable': true, 'dtype': " K3_DTYPE ", 'axis': -1, 'momentum': 0.99, 'epsilon': 0.001, 'center': true,"
    " 'scale': true, 'synchronized': false}, 'name': 'batch_normalization',"
    " 'inbound_nodes': [{'args': [" K3_TENSOR("conv2d") "], 'kwargs': {'mask': null}}]},"
    "{'module': 'keras.layers', 'class_name': 'Activation', 'config': {'name': 'activation', 'activation': 'relu'},"
    " 'name': 'activation', " K3_CALL(K3_TENSOR("batch_normalization")) "},"
    "{'module': 'keras.layers', 'class_name': 'Conv2D', 'config': {'name': 'conv2d_1', 'filters': 8, 'kernel_size': [1, 1],"
    " 'padding': 'same', 'activation': 'linear'}, 'name': 'conv2d_1', " K3_CALL(K3_TENSOR("input_layer")) "},"
    "{'module': 'keras.layers', 'class_name': 'Add', 'config': {'name': 'add', 'trainable': true, 'dtype': " K3_DTYPE "},"
    " 'name': 'add', " K3_CALL("[" K3_TENSOR("activation") ", " K3_TENSOR("conv2d_1") "]") "},"
    "{'module': 'keras.layers', 'class_name': 'GlobalAveragePooling2D', 'config': {'name': 'gap',"
    " 'data_format': 'channels_last', 'keepdims': false}, 'name': 'gap', " K3_CALL(K3_TENSOR("add")) "},"
    "{'module': 'keras.layers', 'class_name': 'Dense', 'config': {'name': 'dense', 'units': 10, 'activation': 'softmax'},"
    " 'name': 'dense', " K3_CALL(K3_TENSOR("gap")) "}],"
    " 'input_layers': [['input_layer', 0, 0]], 'output_layers': [['dense', 0, 0]]},"
    " 'registered_name': 'Functional', 'build_config': {'input_shape': null}}";

Test(cli, keras_json_models_train, .timeout = 120) {
    kt_tmpdir_new();
    const char *const models[2] = {keras2_sequential, keras3_functional};
    const char *const names[2] = {"k2.json", "k3.json"};
    for (int i = 0; i < 2; i++) {
        write_json(kt_path(names[i]), models[i]);
        kt_run r = KILN("train --model %s " SMALL " --epochs 1 --verbose 0 --out %s", kt_path(names[i]), kt_path("out"));
        kt_expect_ok(&r, names[i]);
        kt_run_free(&r);
        r = KILN("evaluate --weights %s " SMALL, kt_path("out/model.safetensors"));
        kt_expect_ok(&r, "evaluate");
        cr_expect(strstr(r.out, "16 examples - loss: "), "%s", r.out);
        kt_run_free(&r);
        r = KILN("summary --model %s", kt_path(names[i]));
        kt_expect_ok(&r, "summary");
        cr_expect(strstr(r.out, i ? "add (Add)" : "dropout (Dropout)"), "%s", r.out);
        kt_run_free(&r);
    }
    kt_tmpdir_remove();
}

/* whether tensor `name` has the same bytes in two safetensors files */
static bool same_tensor(const char *a, const char *b, const char *name) {
    kiln_safetensors *sa, *sb;
    cr_assert_eq(kiln_safetensors_open(a, &sa), KILN_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_safetensors_open(b, &sb), KILN_OK, "%s", kiln_last_error());
    const kiln_st_entry *ea = kiln_safetensors_find(sa, name), *eb = kiln_safetensors_find(sb, name);
    cr_assert(ea && eb, "no tensor %s", name);
    bool same = ea->nbytes == eb->nbytes && !memcmp(ea->data, eb->data, ea->nbytes);
    kiln_safetensors_free(sa);
    kiln_safetensors_free(sb);
    return same;
}

Test(cli, init_weights_and_freeze, .timeout = 120) {
    kt_tmpdir_new();
    kt_run r = KILN("train --model seed-cnn " SMALL " --epochs 1 --verbose 0 --out %s", kt_path("a"));
    kt_expect_ok(&r, "a");
    kt_run_free(&r);
    const char *a = strdup(kt_path("a/model.safetensors"));
    r = KILN("train --model seed-cnn " SMALL " --epochs 1 --seed 9 --verbose 0 --init-weights %s --freeze conv2d,dense --out %s",
             a, kt_path("b"));
    kt_expect_ok(&r, "b");
    kt_run_free(&r);
    const char *b = strdup(kt_path("b/model.safetensors"));
    cr_expect(same_tensor(a, b, "conv2d.kernel") && same_tensor(a, b, "conv2d.bias") && same_tensor(a, b, "dense.kernel"),
              "a frozen layer changed");
    cr_expect(!same_tensor(a, b, "dense_1.kernel"), "a trainable layer did not change");
    r = KILN("train --model seed-cnn " SMALL " --epochs 1 --verbose 0 --init-weights %s --freeze all-but-batchnorm --out %s",
             a, kt_path("c"));
    kt_expect_ok(&r, "c");
    kt_run_free(&r);
    const char *c = kt_path("c/model.safetensors");
    cr_expect(same_tensor(a, c, "conv2d.kernel") && same_tensor(a, c, "dense.kernel") && same_tensor(a, c, "dense_1.bias"));
    cr_expect(!same_tensor(a, c, "batch_normalization.gamma") && !same_tensor(a, c, "batch_normalization_1.beta"));
    free((void *)a);
    free((void *)b);
    kt_tmpdir_remove();
}

/* a .npy v1 file: the header dict padded so the data starts at a multiple of 64 */
static void write_npy(const char *path, const char *descr, const char *shape, const void *data, size_t nbytes) {
    char head[256];
    int n = snprintf(head, sizeof head, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    int pad = (64 - (10 + n + 1) % 64) % 64;
    size_t hlen = (size_t)(n + pad + 1), len = 10 + hlen + nbytes;
    unsigned char *buf = malloc(len);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, head, (size_t)n);
    memset(buf + 10 + n, ' ', (size_t)pad);
    buf[10 + hlen - 1] = '\n';
    memcpy(buf + 10 + hlen, data, nbytes);
    kt_write_file(path, buf, len, false);
    free(buf);
}

Test(cli, own_npy_data_trains, .timeout = 120) {
    kt_tmpdir_new();
    enum { N = 40 };
    static unsigned char x[N * 8 * 8], y[N];
    for (int i = 0; i < N; i++) {
        y[i] = (unsigned char)(i % 3);
        for (int p = 0; p < 64; p++) x[i * 64 + p] = (unsigned char)((p % 8 < 3 * (y[i] + 1)) ? 200 : 30 + (p * 7 + i) % 40);
    }
    write_npy(kt_path("x.npy"), "|u1", "(40, 8, 8)", x, sizeof x);
    write_npy(kt_path("y.npy"), "|u1", "(40,)", y, sizeof y);
    kt_run r = KILN("train --model seed-cnn --data npy:%s,%s --classes 4 --standardize --validation-split 0.25 --epochs 2 "
                    "--batch-size 10 --verbose 0 --out %s", kt_path("x.npy"), kt_path("y.npy"), kt_path("out"));
    kt_expect_ok(&r, "train on npy");
    kt_run_free(&r);
    char *hist = read_text(kt_path("out/history.csv"));
    cr_expect_eq(count_lines(hist), 3, "%s", hist);
    free(hist);
    r = KILN("summary --model %s", kt_path("out/model.safetensors"));
    kt_expect_ok(&r, "summary of the saved model");
    cr_expect(strstr(r.out, "(None, 6, 6, 32)") && strstr(r.out, "(None, 4)"), "8x8x1 input, 4 classes: %s", r.out);
    kt_run_free(&r);
    kt_tmpdir_remove();
}

/* summary needs neither weights nor data (issue 10, item 6): a billion 256x256 training images
 * (786 TB, which could never be generated), MNIST from a folder that does not exist, and a
 * 3.2-billion-parameter model, all with KILN_MEMORY_LIMIT=0, so allocating anything through a
 * backend would be refused */
Test(cli, summary_allocates_nothing) {
    kt_tmpdir_new();
    setenv("KILN_MEMORY_LIMIT", "0", 1);
    kt_run r = KILN("summary --model seed-cnn --image-size 256 --train-size 1000000000 --test-size 1000000000");
    kt_expect_ok(&r, "summary at 256x256");
    cr_expect(strstr(r.out, "(None, 254, 254, 32)") && strstr(r.out, "Total params: 33,034,186\n"), "%s", r.out);
    kt_run_free(&r);
    r = KILN("summary --model seed-cnn --data mnist:%s", kt_path("nowhere"));
    kt_expect_ok(&r, "summary for MNIST");
    cr_expect(strstr(r.out, "(None, 26, 26, 32)") && strstr(r.out, "Total params: 347,530\n"), "%s", r.out);
    kt_run_free(&r);
    write_json(kt_path("wide.json"), "{'class_name': 'Sequential', 'config': {'name': 'wide', 'layers': [{'class_name': "
               "'InputLayer', 'config': {'name': 'in', 'batch_shape': [null, 8, 8, 3]}}, {'class_name': 'Flatten', "
               "'config': {'name': 'f'}}, {'class_name': 'Dense', 'config': {'name': 'd', 'units': 16777216}}]}}");
    r = KILN("summary --model %s", kt_path("wide.json"));
    kt_expect_ok(&r, "summary of a Dense(2^24)");
    cr_expect(strstr(r.out, "(None, 16777216)") && strstr(r.out, "Total params: 3,238,002,688\n"), "%s", r.out);
    kt_run_free(&r);
    unsetenv("KILN_MEMORY_LIMIT");
    kt_tmpdir_remove();
}
