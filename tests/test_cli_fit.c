/* test_cli_fit.c: fit's options on the `kiln train` command line (issue 13, item 5), each by a
 * short training run that shows its effect: the learning rate of every epoch under
 * --lr-schedule against Keras 3.15's schedules (numbers below), the epoch EarlyStopping stops
 * at and the weights it restores, the learning rates ReduceLROnPlateau sets (Keras' numbers),
 * --clipnorm's bound on how far a weight moves, --momentum and --nesterov changing the steps and
 * keeping velocity, --from-logits training a model with a linear output (and its absence
 * refused before "Epoch 1/..."), --label-smoothing changing the loss. Bad values are rows of
 * tests/test_cli_errors.c. */
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
/* one step per epoch: an epoch's learning rate is the schedule's at step = epoch */
#define ONE_STEP "--train-size 16 --test-size 8 --image-size 8 --batch-size 16 --verbose 0"
#define SMALL "--train-size 64 --test-size 8 --image-size 8 --batch-size 16 --verbose 0"

/* column `col` (0: epoch) of every row of history.csv in dir into v; the row count */
static int history_column(const char *dir, int col, double *v, int max) {
    char path[4096];
    snprintf(path, sizeof path, "%s/history.csv", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "no %s", path);
    char line[1024];
    int n = 0;
    cr_assert_not_null(fgets(line, sizeof line, f)); /* the header */
    while (n < max && fgets(line, sizeof line, f)) {
        char *p = line;
        for (int c = 0; c < col; c++) p = strchr(p, ',') + 1;
        v[n++] = strtod(p, NULL);
    }
    fclose(f);
    return n;
}

static void train_ok(const char *what, const char *args, const char *out) {
    kt_run r = KILN("train --model seed-cnn --seed 3 %s --out %s", args, out);
    kt_expect_ok(&r, what);
    kt_run_free(&r);
}

/* Keras 3.15, keras.optimizers.schedules at steps 0, 1, 5, 6, 10, 11 (float32, printed %.10g):
 *   ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5): 0.1000000015 0.09330330044 0.07071068138
 *     0.06597539037 0.05000000075 0.04665165022
 *   CosineDecay(0.1, decay_steps=10, alpha=0.1): 0.1000000015 0.09779754281 0.05499999598 0.0410942249
 *     0.01000000071 0.01000000071
 *   PiecewiseConstantDecay([5, 10], [0.1, 0.01, 0.001]): 0.1 0.1 0.1 0.009999999776 0.009999999776 0.001000000047
 * Keras computes in float32 (cosine at step 6 is 2.5e-7 from the exact 0.04109423525): within 1e-6 relative. */
Test(cli_fit, lr_schedules_match_keras, .timeout = 120) {
    static const int steps[6] = {0, 1, 5, 6, 10, 11};
    static const struct {
        const char *args;
        double keras[6];
    } rows[3] = {
        {"--lr 0.1 --lr-schedule exponential:decay_steps=10,decay_rate=0.5",
         {0.1000000015, 0.09330330044, 0.07071068138, 0.06597539037, 0.05000000075, 0.04665165022}},
        {"--lr 0.1 --lr-schedule cosine:decay_steps=10,alpha=0.1",
         {0.1000000015, 0.09779754281, 0.05499999598, 0.0410942249, 0.01000000071, 0.01000000071}},
        {"--lr-schedule piecewise:boundaries=5/10,values=0.1/0.01/0.001",
         {0.1000000015, 0.1000000015, 0.1000000015, 0.009999999776, 0.009999999776, 0.001000000047}},
    };
    kt_tmpdir_new();
    for (int i = 0; i < 3; i++) {
        char args[512];
        snprintf(args, sizeof args, "--optimizer sgd --epochs 12 " ONE_STEP " %s", rows[i].args);
        train_ok(rows[i].args, args, kt_path("run"));
        double lr[12];
        cr_assert_eq(history_column(kt_path("run"), 2, lr, 12), 12);
        for (int k = 0; k < 6; k++)
            cr_expect(fabs(lr[steps[k]] - rows[i].keras[k]) <= 1e-6 * rows[i].keras[k], "%s: step %d: lr %.10g, Keras' %.10g",
                      rows[i].args, steps[k], lr[steps[k]], rows[i].keras[k]);
    }
    kt_tmpdir_remove();
}

/* whether every tensor of two safetensors files is the same, byte for byte */
static bool same_files(const char *a, const char *b) {
    kiln_safetensors *sa, *sb;
    cr_assert_eq(kiln_safetensors_open(a, &sa), KILN_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_safetensors_open(b, &sb), KILN_OK, "%s", kiln_last_error());
    bool same = sa->n_entries == sb->n_entries;
    for (size_t i = 0; same && i < sa->n_entries; i++) {
        const kiln_st_entry *ea = &sa->entries[i], *eb = kiln_safetensors_find(sb, ea->name);
        same = eb && ea->nbytes == eb->nbytes && !memcmp(ea->data, eb->data, ea->nbytes);
    }
    kiln_safetensors_free(sa);
    kiln_safetensors_free(sb);
    return same;
}

/* min_delta 100: epoch 1 improves on nothing, epoch 2 does not improve, patience 1: Keras stops
 * after 2 epochs (Keras 3.15 on the same callback: 2 epochs run) with the weights of epoch 1 */
Test(cli_fit, early_stopping_stops_and_restores, .timeout = 120) {
    kt_tmpdir_new();
    train_ok("early", "--epochs 5 " SMALL " --early-stopping monitor=loss,min_delta=100,patience=1,restore_best_weights=true",
             kt_path("early"));
    double loss[8];
    cr_expect_eq(history_column(kt_path("early"), 3, loss, 8), 2, "EarlyStopping did not stop after epoch 2");
    train_ok("one", "--epochs 1 " SMALL, kt_path("one"));
    cr_expect(same_files(kt_path("early/model.safetensors"), kt_path("one/model.safetensors")),
              "restore_best_weights did not restore epoch 1's weights");
    /* patience 3 with the same rule: 4 epochs */
    train_ok("early3", "--epochs 6 " SMALL " --early-stopping monitor=loss,min_delta=100,patience=3", kt_path("early3"));
    cr_expect_eq(history_column(kt_path("early3"), 3, loss, 8), 4);
    kt_tmpdir_remove();
}

/* Keras 3.15, ReduceLROnPlateau(monitor="loss", min_delta=100, patience=1, factor=0.5) with Adam
 * 0.001: the learning rate of epochs 1-4 is 0.001, 0.001, 0.0005, 0.00025 */
Test(cli_fit, reduce_lr_on_plateau_matches_keras, .timeout = 120) {
    kt_tmpdir_new();
    train_ok("plateau", "--epochs 4 " SMALL " --reduce-lr-on-plateau monitor=loss,min_delta=100,patience=1,factor=0.5",
             kt_path("run"));
    double lr[4], keras[4] = {0.001, 0.001, 0.0005, 0.00025};
    cr_assert_eq(history_column(kt_path("run"), 2, lr, 4), 4);
    for (int e = 0; e < 4; e++) cr_expect(fabs(lr[e] - keras[e]) < 1e-12, "epoch %d: lr %g, Keras' %g", e + 1, lr[e], keras[e]);
    /* min_lr holds it: 0.0008 after the first cut */
    train_ok("plateau", "--epochs 4 " SMALL " --reduce-lr-on-plateau monitor=loss,min_delta=100,patience=1,factor=0.5,min_lr=0.0008",
             kt_path("run"));
    cr_assert_eq(history_column(kt_path("run"), 2, lr, 4), 4);
    cr_expect(lr[2] == 0.0008 && lr[3] == 0.0008, "min_lr: %g %g", lr[2], lr[3]);
    kt_tmpdir_remove();
}

/* the largest L2 distance between a trainable tensor of two files (BN's moving statistics
 * left out: they are not trained), and the smallest */
static void distances(const char *a, const char *b, double *most, double *least) {
    kiln_safetensors *sa, *sb;
    cr_assert_eq(kiln_safetensors_open(a, &sa), KILN_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_safetensors_open(b, &sb), KILN_OK, "%s", kiln_last_error());
    *most = 0, *least = INFINITY;
    for (size_t i = 0; i < sa->n_entries; i++) {
        const kiln_st_entry *ea = &sa->entries[i], *eb = kiln_safetensors_find(sb, ea->name);
        if (strstr(ea->name, "moving_")) continue;
        cr_assert(eb && eb->nbytes == ea->nbytes);
        double d = 0;
        for (size_t k = 0; k < ea->nbytes / 4; k++) {
            float x, y;
            memcpy(&x, (const char *)ea->data + 4 * k, 4);
            memcpy(&y, (const char *)eb->data + 4 * k, 4);
            d += ((double)x - y) * ((double)x - y);
        }
        *most = fmax(*most, sqrt(d));
        *least = fmin(*least, sqrt(d));
    }
    kiln_safetensors_free(sa);
    kiln_safetensors_free(sb);
}

/* SGD lr 0.01, 4 steps: with --clipnorm 1e-4 every weight moves by at most 4 * 0.01 * 1e-4 */
Test(cli_fit, clipnorm_bounds_each_step, .timeout = 120) {
    kt_tmpdir_new();
    train_ok("start", "--epochs 0 " SMALL, kt_path("start"));
    train_ok("clipped", "--epochs 1 --optimizer sgd --clipnorm 1e-4 " SMALL, kt_path("clip"));
    train_ok("free", "--epochs 1 --optimizer sgd " SMALL, kt_path("free"));
    double most, least;
    distances(kt_path("start/model.safetensors"), kt_path("clip/model.safetensors"), &most, &least);
    cr_expect(most <= 4e-6 * (1 + 1e-3), "with --clipnorm 1e-4 a weight moved by %g, more than 4e-6", most);
    cr_expect(least > 1e-6, "with --clipnorm a weight moved by only %g: clipped to much less than the norm", least);
    distances(kt_path("start/model.safetensors"), kt_path("free/model.safetensors"), &most, &least);
    cr_expect(most > 1e-4, "without --clipnorm the largest move is %g: the bound above shows nothing", most);
    kt_tmpdir_remove();
}

static bool has_tensor(const char *file, const char *name) {
    kiln_safetensors *s;
    cr_assert_eq(kiln_safetensors_open(file, &s), KILN_OK, "%s", kiln_last_error());
    bool has = kiln_safetensors_find(s, name) != NULL;
    kiln_safetensors_free(s);
    return has;
}

Test(cli_fit, momentum_and_nesterov, .timeout = 120) {
    kt_tmpdir_new();
    train_ok("plain", "--epochs 1 --optimizer sgd " SMALL, kt_path("plain"));
    train_ok("momentum", "--epochs 1 --optimizer sgd --momentum 0.9 " SMALL, kt_path("mom"));
    train_ok("nesterov", "--epochs 1 --optimizer sgd --momentum 0.9 --nesterov " SMALL, kt_path("nest"));
    const char *plain = kt_path("plain/model.safetensors"), *mom = kt_path("mom/model.safetensors"), *nest = kt_path("nest/model.safetensors");
    cr_expect(!same_files(plain, mom), "--momentum changed nothing");
    cr_expect(!same_files(mom, nest), "--nesterov changed nothing");
    cr_expect(has_tensor(kt_path("mom/checkpoint.safetensors"), "optimizer.dense.kernel.velocity"), "no velocity with --momentum");
    cr_expect(!has_tensor(kt_path("plain/checkpoint.safetensors"), "optimizer.dense.kernel.velocity"), "velocity without --momentum");
    kt_tmpdir_remove();
}

/* a model ending in a linear Dense: refused before training without --from-logits, trained and
 * evaluated with it */
Test(cli_fit, from_logits, .timeout = 120) {
    kt_tmpdir_new();
    const char *json = "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": [{\"class_name\": \"InputLayer\","
                       " \"config\": {\"name\": \"in\", \"batch_shape\": [null, 8, 8, 3]}}, {\"class_name\": \"Flatten\", \"config\":"
                       " {\"name\": \"f\"}}, {\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": 10}}]}}";
    kt_write_file(kt_path("linear.json"), json, strlen(json), false);
    kt_run r = KILN("train --model %s --epochs 1 --train-size 64 --test-size 8 --image-size 8 --batch-size 16", kt_path("linear.json"));
    cr_expect_eq(r.status, 2, "exit %d", r.status);
    cr_expect(strstr(r.err, "pass --from-logits"), "%s", r.err);
    cr_expect(!strstr(r.out, "Epoch"), "the refusal came after training started: %s", r.out);
    kt_run_free(&r);
    r = KILN("train --model %s --from-logits --epochs 2 " SMALL " --out %s", kt_path("linear.json"), kt_path("run"));
    kt_expect_ok(&r, "--from-logits");
    kt_run_free(&r);
    double loss[2];
    cr_assert_eq(history_column(kt_path("run"), 3, loss, 2), 2);
    cr_expect(isfinite(loss[0]) && loss[1] < loss[0], "losses %g, %g", loss[0], loss[1]);
    r = KILN("evaluate --weights %s --from-logits --train-size 64 --test-size 8 --image-size 8", kt_path("run/model.safetensors"));
    kt_expect_ok(&r, "evaluate --from-logits");
    cr_expect(strstr(r.out, "8 examples - loss: "), "%s", r.out);
    kt_run_free(&r);
    kt_tmpdir_remove();
}

/* the same run with --label-smoothing 0.2: another loss from the first step */
Test(cli_fit, label_smoothing_changes_the_loss, .timeout = 120) {
    kt_tmpdir_new();
    train_ok("plain", "--epochs 1 " SMALL, kt_path("plain"));
    train_ok("smoothed", "--epochs 1 --label-smoothing 0.2 " SMALL, kt_path("ls"));
    double a, b;
    cr_assert_eq(history_column(kt_path("plain"), 3, &a, 1), 1);
    cr_assert_eq(history_column(kt_path("ls"), 3, &b, 1), 1);
    cr_expect(a != b && isfinite(b), "--label-smoothing left the loss at %g", b);
    kt_tmpdir_remove();
}
