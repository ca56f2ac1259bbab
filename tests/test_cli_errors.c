/* test_cli_errors.c: the `kiln` command on bad input: every case exits with 1 (a failure) or 2
 * (a bad command line), never by a signal, and prints exactly one line on stderr, "kiln: ",
 * with the words that name the problem: unknown commands and flags, bad values, missing and
 * truncated files, MNIST files with a wrong magic number, truncated and oversized safetensors
 * headers, weights without an architecture, a Keras JSON with an unknown layer, models that do
 * not fit the data, and --device cuda without a GPU; hostile input (issue 10): a bad kiln.model,
 * crafted checkpoint numbers, a checkpoint without optimizer state, reserved layer names,
 * overflowing and malformed numbers, empty --freeze names, NaN weights, a full disk and
 * `ulimit -f`. No case leaves a temporary file behind. One parameterized test per case. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <math.h>
#include <sys/resource.h>
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

#define RESUME "train --model seed-cnn --resume @/"
#define INFER "--train-size 32 --test-size 8 --image-size 8"

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
    {"train --model seed-cnn --threads 0", 2, "--threads: '0' is not an integer in [1, 4096]"},
    {"evaluate --weights w.safetensors --threads 2x", 2, "--threads: '2x' is not an integer in [1, 4096]"},
    {"summary --model seed-cnn --threads 2", 2, "summary does not take --threads"},
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
    {"predict --weights @/weights.safetensors " "--train-size 32 --test-size 8 --image-size 8 --out @/nowhere/p.csv", 1, "nowhere/p.csv: cannot create a temporary file in"},
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
    /* hostile files and values (issue 10) */
    {"evaluate --weights @/badmodel.safetensors " INFER, 1, "badmodel.safetensors: model JSON"},
    {"summary --model @/badmodel.safetensors", 1, "badmodel.safetensors: model JSON"},
    {RESUME "epoch_neg.safetensors " SMALL, 1, "epoch_neg.safetensors: metadata kiln.epoch is '-5', not an integer in [0, 2147483647]"},
    {RESUME "epoch_big.safetensors " SMALL, 1, "metadata kiln.epoch is '99999999999999999999', not an integer"},
    {RESUME "epoch_abc.safetensors " SMALL, 1, "metadata kiln.epoch is 'abc', not an integer"},
    {RESUME "epoch_empty.safetensors " SMALL, 1, "metadata kiln.epoch is '', not an integer"},
    {RESUME "seed_abc.safetensors " SMALL, 1, "seed_abc.safetensors: metadata kiln.seed is 'abc', not an integer"},
    {RESUME "seed_big.safetensors " SMALL, 1, "metadata kiln.seed is '18446744073709551616', not an integer"},
    {RESUME "iter_max.safetensors " SMALL, 1, "metadata kiln.iterations is '9223372036854775807', not an integer in [0, 9007199254740992]"},
    {RESUME "iter_neg.safetensors " SMALL, 1, "metadata kiln.iterations is '-1', not an integer"},
    {RESUME "lr_nan.safetensors " SMALL, 1, "metadata kiln.learning_rate is 'nan', not a finite number > 0"},
    {RESUME "lr_junk.safetensors " SMALL, 1, "metadata kiln.learning_rate is '0.001x', not a finite number > 0"},
    {RESUME "sgd.safetensors " SMALL, 1, "optimizer state 'optimizer.conv2d.kernel.m' of model 'sequential' is missing"},
    {RESUME "weights.safetensors " SMALL, 1, "not a full checkpoint (kiln.checkpoint is 'weights', not 'full')"},
    {"train --model @/reserved.json " SMALL, 1, "layer 'optimizer.head': names 'optimizer' and 'optimizer.*' are reserved"},
    {"summary --model @/reserved_kiln.json", 1, "layer 'kiln': names 'kiln' and 'kiln.*' are reserved"},
    {"train --model seed-cnn --seed 18446744073709551616 " SMALL, 2, "--seed: '18446744073709551616' is not an integer in [0, 18446744073709551615]"},
    {"train --model seed-cnn --seed -1 " SMALL, 2, "--seed: '-1' is not an integer"},
    {"train --model seed-cnn --data-seed 0x10 " SMALL, 2, "--data-seed: '0x10' is not an integer"},
    {"train --model seed-cnn --epochs=+3 " SMALL, 2, "--epochs: '+3' is not an integer"},
    {"train --model seed-cnn --epochs 99999999999999999999 " SMALL, 2, "--epochs: '99999999999999999999' is not an integer"},
    {"train --model seed-cnn --train-size 9223372036854775808 " SMALL, 2, "--train-size: '9223372036854775808' is not an integer"},
    {"train --model seed-cnn --lr 1e400 " SMALL, 2, "--lr: '1e400' is not a number"},
    {"train --model seed-cnn --lr= " SMALL, 2, "--lr: '' is not a number"},
    {"train --model seed-cnn --freeze ,,, " SMALL, 2, "--freeze: ',,,' has an empty layer name"},
    {"train --model seed-cnn --freeze conv2d,,dense " SMALL, 2, "--freeze: 'conv2d,,dense' has an empty layer name"},
    {"evaluate --weights @/nan.safetensors " INFER, 1, "evaluate: the loss over 8 examples is nan, not finite"},
    {"predict --weights @/nan.safetensors " INFER " --out @/p.csv", 1, "predict: output 0 of example 0 is nan, not finite"},
    {"predict --weights @/weights.safetensors " INFER " --out /dev/full", 1, "writing the predictions to '/dev/full' failed: No space left on device"},
    /* fit's options (issue 13): bad values and combinations, refused before training */
    {"train --model seed-cnn --momentum 0.9 " SMALL, 2, "--momentum applies to --optimizer sgd only (the optimizer is adam)"},
    {"train --model seed-cnn --optimizer adamw --nesterov " SMALL, 2, "--nesterov applies to --optimizer sgd only"},
    {"train --model seed-cnn --optimizer sgd --momentum 1.5 " SMALL, 2, "--momentum: '1.5' is not a number in [0, 1]"},
    {"train --model seed-cnn --lr-schedule linear:decay_steps=3 " SMALL, 2, "--lr-schedule: 'linear:decay_steps=3' is not exponential:decay_steps=N,decay_rate=R"},
    {"train --model seed-cnn --lr-schedule exponential:decay_steps=0,decay_rate=0.5 " SMALL, 2, "--lr-schedule: decay_steps '0' is not a number in [1, "},
    {"train --model seed-cnn --lr-schedule exponential:decay_steps=2.5,decay_rate=0.5 " SMALL, 2, "decay_steps '2.5' is not an integer"},
    {"train --model seed-cnn --lr-schedule exponential:decay_steps=10 " SMALL, 2, "--lr-schedule: exponential: needs decay_steps and decay_rate"},
    {"train --model seed-cnn --lr-schedule cosine:decay_steps=10,warmup_steps=3 " SMALL, 2, "--lr-schedule: unknown key 'warmup_steps'"},
    {"train --model seed-cnn --lr-schedule cosine:decay_steps=10,,alpha=0 " SMALL, 2, "has an empty entry"},
    {"train --model seed-cnn --lr-schedule piecewise:boundaries=5/3,values=1/2/3 " SMALL, 2, "--lr-schedule: boundaries must increase"},
    {"train --model seed-cnn --lr-schedule piecewise:boundaries=5,values=0.1 " SMALL, 2, "one more value than boundaries (has 1 boundaries, 1 values)"},
    {"train --model seed-cnn --lr 0.1 --lr-schedule piecewise:boundaries=5,values=0.1/0.01 " SMALL, 2, "--lr and --lr-schedule piecewise exclude each other"},
    {"train --model seed-cnn --clipnorm 0 " SMALL, 2, "--clipnorm: '0' is not a number in [1e-30, 1e+30]"},
    {"train --model seed-cnn --early-stopping patience=2 " SMALL, 2, "--early-stopping: monitor val_loss needs validation data"},
    {"train --model seed-cnn --early-stopping monitor=val_auc --validation-split 0.25 " SMALL, 2, "--early-stopping: monitor 'val_auc' is not loss, accuracy, val_loss or val_accuracy"},
    {"train --model seed-cnn --early-stopping monitor=loss,patience=-1 " SMALL, 2, "--early-stopping: patience '-1' is not a number in [0, 1e+06]"},
    {"train --model seed-cnn --early-stopping patience " SMALL, 2, "--early-stopping: 'patience' is not key=value"},
    {"train --model seed-cnn --early-stopping monitor=loss,restore_best_weights=yes " SMALL, 2, "restore_best_weights 'yes' is not true or false"},
    {"train --model seed-cnn --early-stopping monitor=loss,factor=0.5 " SMALL, 2, "--early-stopping: unknown key 'factor'"},
    {"train --model seed-cnn --reduce-lr-on-plateau monitor=loss,factor=1 " SMALL, 2, "--reduce-lr-on-plateau: factor must be in (0, 1) (is 1)"},
    {"train --model seed-cnn --reduce-lr-on-plateau monitor=loss --lr-schedule cosine:decay_steps=5 " SMALL, 2, "--reduce-lr-on-plateau and --lr-schedule exclude each other"},
    {"train --model seed-cnn --label-smoothing 1 " SMALL, 2, "--label-smoothing: 1 is not in [0, 1)"},
    {"train --model seed-cnn --label-smoothing -0.1 " SMALL, 2, "--label-smoothing: '-0.1' is not a number in [0, 1]"},
    {"predict --weights @/weights.safetensors --label-smoothing 0.1 " INFER, 2, "predict does not take --label-smoothing"},
    /* the model's last layer against --from-logits: found before training, a usage error */
    {"train --model @/linear8.json " SMALL, 2, "the last layer 'd' of model 's' has activation linear, not softmax: its outputs are not probabilities; "
                                               "if they are logits (a linear Dense), pass --from-logits"},
    {"train --model seed-cnn --from-logits " SMALL, 2, "--from-logits: the last layer 'dense_1' of model 'sequential' has activation softmax, so its outputs are not logits but probabilities"},
    {"evaluate --weights @/weights.safetensors --from-logits " INFER, 2, "--from-logits: the last layer 'dense_1'"},
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

/* seed-cnn for 8x8x3 and 10 classes saved to name: compiled with `opt` for a full checkpoint
 * (-1: weights only), its last bias all NaN when asked */
static void save_seed_cnn(const char *name, int opt, bool nan_bias) {
    kiln_model *m;
    cr_assert_eq(kiln_model_builtin("seed-cnn", 8, 8, 3, 10, &m), KILN_OK);
    cr_assert_eq(kiln_model_build(m, kt_cpu(), 1), KILN_OK);
    kiln_compile_config cc = {kiln_optimizer_defaults(opt < 0 ? KILN_OPT_ADAM : (kiln_optimizer_type)opt),
                              KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    if (opt >= 0) cr_assert_eq(kiln_model_compile(m, &cc), KILN_OK, "%s", kiln_last_error());
    if (nan_bias) {
        float nan[10];
        for (int i = 0; i < 10; i++) nan[i] = NAN;
        cr_assert_eq(kiln_tensor_set(kiln_model_find_weight(m, "dense_1.bias"), nan, sizeof nan), KILN_OK);
    }
    cr_assert_eq(kiln_model_save(m, kt_path(name), opt >= 0, 1), KILN_OK, "%s", kiln_last_error());
    kiln_model_free(m);
}

/* the crafted checkpoints, weights and models of the hostile-input cases (issue 10) */
static void prepare_hostile(void) {
    save_seed_cnn("ckpt.safetensors", KILN_OPT_ADAM, false);
    save_seed_cnn("sgd.safetensors", KILN_OPT_SGD, false); /* no optimizer state: SGD without momentum */
    save_seed_cnn("nan.safetensors", -1, true);
    static const char *const meta[][3] = {
        {"epoch_neg", "kiln.epoch", "-5"}, {"epoch_big", "kiln.epoch", "99999999999999999999"},
        {"epoch_abc", "kiln.epoch", "abc"}, {"epoch_empty", "kiln.epoch", ""},
        {"seed_abc", "kiln.seed", "abc"}, {"seed_big", "kiln.seed", "18446744073709551616"},
        {"iter_max", "kiln.iterations", "9223372036854775807"}, {"iter_neg", "kiln.iterations", "-1"},
        {"lr_nan", "kiln.learning_rate", "nan"}, {"lr_junk", "kiln.learning_rate", "0.001x"},
    };
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.safetensors", meta[i][0]);
        kt_safetensors_set_meta(kt_path("ckpt.safetensors"), kt_path(name), meta[i][1], meta[i][2]);
    }
    kt_safetensors_set_meta(kt_path("weights.safetensors"), kt_path("badmodel.safetensors"), "kiln.model", "{\"class_name\": \"Sequential\"}");
    static const char *const reserved[2][2] = {{"reserved.json", "optimizer.head"}, {"reserved_kiln.json", "kiln"}};
    for (int i = 0; i < 2; i++) {
        char json[512];
        snprintf(json, sizeof json, "{'class_name': 'Sequential', 'config': {'name': 's', 'layers': [{'class_name': "
                 "'InputLayer', 'config': {'name': 'in', 'batch_shape': [null, 8, 8, 3]}}, {'class_name': 'Flatten', "
                 "'config': {'name': 'f'}}, {'class_name': 'Dense', 'config': {'name': '%s', 'units': 10}}]}}", reserved[i][1]);
        write_json(reserved[i][0], json);
    }
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
    write_json("linear8.json", "{'class_name': 'Sequential', 'config': {'name': 's', 'layers': [{'class_name': 'InputLayer',"
                               " 'config': {'name': 'in', 'batch_shape': [null, 8, 8, 3]}}, {'class_name': 'Flatten', 'config':"
                               " {'name': 'f'}}, {'class_name': 'Dense', 'config': {'name': 'd', 'units': 10}}]}}");
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
    prepare_hostile();
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

/* a temporary file of an atomic write ("*.tmp-*") under dir (one level of subdirectories), named in found */
static bool find_temp_file(const char *dir, int depth, char *found, size_t n) {
    DIR *d = opendir(dir);
    bool hit = false;
    for (struct dirent *e; d && !hit && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(found, n, "%s", path);
        struct stat st;
        if (strstr(e->d_name, ".tmp-")) hit = true;
        else if (depth < 1 && lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) hit = find_temp_file(path, depth + 1, found, n);
    }
    if (d) closedir(d);
    return hit;
}

ParameterizedTestParameters(cli_errors, each_case) {
    static size_t index[N_CASES];
    for (size_t i = 0; i < N_CASES; i++) index[i] = i;
    return cr_make_param_array(size_t, index, N_CASES);
}

/* runs case c (under RLIMIT_FSIZE fsize_limit bytes when > 0) and checks its exit, its one line
 * and that no temporary file was left behind */
static void check_case(const bad_case *c, long fsize_limit) {
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
    struct rlimit old;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    if (fsize_limit > 0) { /* inherited by kiln; this process writes nothing large until it is lifted */
        struct rlimit lim = {(rlim_t)fsize_limit, old.rlim_max};
        cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    }
    kt_run r = kt_run_program(KILN_CLI_PATH, "%s", args);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    char tmp[1024];
    cr_expect(!find_temp_file(kt_path(""), 0, tmp, sizeof tmp), "kiln %s: left the temporary file %s", args, tmp);
    cr_expect(!r.signaled, "kiln %s: killed by signal %d; stderr: %s", args, r.status - 128, r.err);
    cr_expect_eq(r.status, c->status, "kiln %s: exit %d, want %d; stderr: %s", args, r.status, c->status, r.err);
    const char *nl = strchr(r.err, '\n');
    cr_expect(!strncmp(r.err, "kiln: ", 6) && nl && nl[1] == '\0', "kiln %s: stderr is not one 'kiln: ' line: %s", args, r.err);
    cr_expect(strstr(r.err, c->needle), "kiln %s: stderr lacks '%s': %s", args, c->needle, r.err);
    kt_run_free(&r);
    kt_tmpdir_remove();
}

ParameterizedTest(size_t *k, cli_errors, each_case, .timeout = 60) { check_case(&cases[*k], 0); }

/* `ulimit -f` (SIGXFSZ ignored): the checkpoint's write fails with the OS reason, its temporary
 * file removed, instead of a kill by SIGXFSZ (issue 10) */
Test(cli_errors, file_size_limit, .timeout = 60) {
    static const bad_case c = {"train --model seed-cnn " SMALL " --out @/run", 1,
                               "checkpoint.safetensors: writing the temporary file"};
    check_case(&c, 16384);
}

/* predict --out replaces its file atomically: a write cut short (here by a file-size limit
 * below the CSV's size) leaves the old file whole and no temporary file */
Test(cli_errors, predictions_replaced_whole, .timeout = 60) {
    prepare();
    setenv("KILN_MEMORY_LIMIT", "16G", 1);
    const char old[] = "class_0\nthe previous predictions\n";
    kt_write_file(kt_path("p.csv"), old, sizeof old - 1, false);
    char args[1024];
    expand("predict --weights @/weights.safetensors " INFER " --out @/p.csv", args, sizeof args);
    struct rlimit was, lim;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &was), 0);
    lim = (struct rlimit){256, was.rlim_max}; /* 8 rows of 10 probabilities need more */
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    kt_run r = kt_run_program(KILN_CLI_PATH, "%s", args);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &was), 0);
    cr_expect_eq(r.status, 1, "exit %d; stderr: %s", r.status, r.err);
    cr_expect(strstr(r.err, "p.csv: writing the temporary file"), "stderr: %s", r.err);
    size_t len;
    char *now = kt_read_file(kt_path("p.csv"), &len);
    cr_expect(len == sizeof old - 1 && !memcmp(now, old, len), "p.csv changed: %.*s", (int)len, now);
    char tmp[1024];
    cr_expect(!find_temp_file(kt_path(""), 0, tmp, sizeof tmp), "left the temporary file %s", tmp);
    free(now);
    kt_run_free(&r);
    kt_tmpdir_remove();
}
