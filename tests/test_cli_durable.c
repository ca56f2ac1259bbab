/* test_cli_durable.c: what `kiln train` leaves on the disk when it is killed or a write fails,
 * and what a resumed run makes of it. SIGKILL at seeded random instants of a small run (--out,
 * a checkpoint every epoch, --log-steps): after each kill every .safetensors opens, history.csv
 * and the step log hold whole rows in order and never fewer than the checkpoint has, and the
 * resumed run's model, checkpoint, history, step log and chart equal the uninterrupted run's
 * byte for byte, with no temporary file left. Also: rows of an epoch the checkpoint lacks are
 * cut on resume, the step log may live in a fresh --out, killed writers' temporary files are
 * removed by the next write, the chart is replaced atomically, and write failures name the file
 * and the reason. scripts/kill_test.py runs many more kills by hand. (No .timeout: with two
 * timeouts pending at once Criterion 2.4.1 leaks 48 bytes under LeakSanitizer; CTest times out.) */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli_run.h"
#include "datafiles.h"
#include "file_atomic.h"
#include "harness.h"
#include "kiln/safetensors.h"

#define KILN(...) kt_run_program(KILN_CLI_PATH, __VA_ARGS__)
/* 64 examples, a quarter for validation: 3 steps of 16 per epoch */
#define BASE "train --model seed-cnn --train-size 64 --test-size 16 --image-size 8 --batch-size 16 --augment " \
             "--standardize --validation-split 0.25 --verbose 0 --seed 7"
#define RUN BASE " --epochs 4"
#define STEPS_PER_EPOCH 3

static const char *const outputs[] = {"model.safetensors", "checkpoint.safetensors", "history.csv", "steps.csv", "history.svg"};

/* "dir/name" into buf[1024] */
static char *join(char *buf, const char *dir, const char *name) {
    int n = snprintf(buf, 1024, "%s/%s", dir, name);
    cr_assert(n > 0 && n < 1024, "the path %s/%s is too long", dir, name);
    return buf;
}

/* the whole file as a string, or NULL when it is not there */
static char *text_of(const char *path) {
    size_t len;
    char *s = kt_read_file(path, &len);
    if (!s) return NULL;
    char *t = realloc(s, len + 1);
    cr_assert_not_null(t);
    t[len] = '\0';
    return t;
}

/* RUN into dir (--out dir, --log-steps dir/steps.csv); resume_from: a checkpoint, or NULL */
static kt_run train_into(const char *dir, const char *resume_from) {
    if (resume_from) return KILN(RUN " --out %s --log-steps %s/steps.csv --resume %s", dir, dir, resume_from);
    return KILN(RUN " --out %s --log-steps %s/steps.csv", dir, dir);
}

static void expect_same_outputs(const char *ref, const char *dir, const char *what) {
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
        char a[1024], b[1024];
        size_t la, lb;
        void *x = kt_read_file(join(a, ref, outputs[i]), &la), *y = kt_read_file(join(b, dir, outputs[i]), &lb);
        cr_expect(x && y && la == lb && !memcmp(x, y, la), "%s: %s differs from the uninterrupted run's", what, b);
        free(x);
        free(y);
    }
}

/* number of entries of dir whose name holds ".tmp-" (each one named) */
static int temp_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        if (strstr(e->d_name, ".tmp-")) {
            cr_expect_fail("%s/%s: a temporary file", dir, e->d_name);
            n++;
        }
    if (d) closedir(d);
    return n;
}

/* Checks a log's whole rows (a last row cut short by the kill is allowed: a resume cuts it):
 * the header, then rows whose first field counts 1, 2, ... (step log) or 0, 1, ... (history).
 * Returns the number of whole rows. */
static int check_rows(const char *path, const char *header, int first, const char *what) {
    char *t = text_of(path);
    if (!t) return 0;
    int rows = 0;
    size_t hl = strlen(header);
    const char *line = t, *nl;
    if ((nl = strchr(line, '\n')) != NULL) {
        cr_expect(!strncmp(t, header, hl) && t[hl] == '\n', "%s: %s starts '%.40s'", what, path, t);
        for (line = nl + 1; (nl = strchr(line, '\n')) != NULL; line = nl + 1, rows++)
            cr_expect_eq(atoi(line), first + rows, "%s: %s: row %d is '%.*s'", what, path, rows, (int)(nl - line), line);
    }
    free(t);
    return rows;
}

/* After a kill: every .safetensors opens; the logs are whole rows in order, with at least the
 * checkpoint's epochs and at most the epoch in flight besides. */
static void check_after_kill(const char *dir, const char *what) {
    int epochs = 0;
    for (int i = 0; i < 2; i++) {
        char p[1024];
        if (access(join(p, dir, outputs[i]), F_OK) != 0) continue;
        kiln_safetensors *st;
        cr_assert_eq(kiln_safetensors_open(p, &st), KILN_OK, "%s: %s does not open: %s", what, p, kiln_last_error());
        const char *e = i == 1 ? kiln_safetensors_metadata(st, "kiln.epoch") : "0";
        cr_expect_not_null(e, "%s: %s has no kiln.epoch", what, p);
        if (i == 1 && e) epochs = atoi(e);
        kiln_safetensors_free(st);
    }
    char h[1024], s[1024];
    int rows = check_rows(join(h, dir, "history.csv"), "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss", 0, what);
    cr_expect(rows == epochs || rows == epochs + 1, "%s: history.csv has %d rows, the checkpoint %d epochs", what, rows, epochs);
    int steps = check_rows(join(s, dir, "steps.csv"), "step,epoch,loss,accuracy", 1, what);
    cr_expect(steps >= epochs * STEPS_PER_EPOCH && steps <= (epochs + 1) * STEPS_PER_EPOCH,
              "%s: the step log has %d rows, the checkpoint %d epochs of %d steps", what, steps, epochs, STEPS_PER_EPOCH);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

Test(durable, kill_at_random_instants_then_resume) {
    kt_tmpdir_new();
    char ref[1024];
    snprintf(ref, sizeof ref, "%s", kt_path("ref"));
    double t0 = now();
    kt_run r = train_into(ref, NULL);
    double took = now() - t0;
    kt_expect_ok(&r, "uninterrupted");
    kt_run_free(&r);
    kt_rng rng;
    kt_rng_seed(&rng, 2026);
    for (int k = 0; k < 6; k++) { /* instants spread over the whole run, whatever this build's speed */
        char name[16], dir[1024], what[64], ckpt[1024];
        snprintf(name, sizeof name, "k%d", k);
        snprintf(dir, sizeof dir, "%s", kt_path(name));
        long us = (long)(kt_uniform(&rng, 0.0, 1.0) * took * 1e6);
        snprintf(what, sizeof what, "kill %d at %ld us of %.0f", k, us, took * 1e6);
        r = kt_run_killed(KILN_CLI_PATH, us, RUN " --out %s --log-steps %s/steps.csv", dir, dir);
        cr_expect(r.signaled || r.status == 0, "%s: exit %d, stderr: %s", what, r.status, r.err);
        kt_run_free(&r);
        check_after_kill(dir, what);
        r = train_into(dir, access(join(ckpt, dir, "checkpoint.safetensors"), F_OK) == 0 ? ckpt : NULL);
        kt_expect_ok(&r, what);
        kt_run_free(&r);
        expect_same_outputs(ref, dir, what);
        cr_expect_eq(temp_files(dir), 0, "%s: temporary files left in %s", what, dir);
    }
    kt_tmpdir_remove();
}

/* a kill after the history row and the step rows, before the checkpoint (or a checkpoint that
 * failed to write) leaves rows of an epoch the checkpoint lacks, one cut short: the resume cuts them */
Test(durable, resume_cuts_rows_the_checkpoint_lacks) {
    kt_tmpdir_new();
    kt_run r = train_into(kt_path("ref"), NULL);
    kt_expect_ok(&r, "uninterrupted");
    kt_run_free(&r);
    r = KILN(BASE " --epochs 2 --out %s --log-steps %s", kt_path("b"), kt_path("b/steps.csv"));
    kt_expect_ok(&r, "two epochs");
    kt_run_free(&r);
    FILE *f = fopen(kt_path("b/history.csv"), "a");
    cr_assert_not_null(f);
    fputs("2,0.5,0.001,1.25,0.5,1.5\n", f);
    fclose(f);
    cr_assert_not_null(f = fopen(kt_path("b/steps.csv"), "a"));
    fputs("7,2,1.5,0.25\n8,2,1.", f);
    fclose(f);
    r = train_into(kt_path("b"), kt_path("b/checkpoint.safetensors"));
    kt_expect_ok(&r, "resumed");
    kt_run_free(&r);
    expect_same_outputs(kt_path("ref"), kt_path("b"), "resumed after extra rows");
    kt_tmpdir_remove();
}

/* true once the step log at path holds the header and two whole rows */
static bool two_rows(void *path) {
    size_t len;
    char *t = kt_read_file(path, &len);
    int lines = 0;
    for (size_t i = 0; t && i < len; i++) lines += t[i] == '\n';
    free(t);
    return lines >= 3;
}

/* without --out (no checkpoint to sync it) each step's row still reaches the file as it is
 * logged: a kill loses none. 30 epochs of 3 steps write less than stdio's buffer holds, so
 * buffered rows would show only as kiln exits, all 90 at once. */
Test(durable, step_rows_reach_the_file_while_training) {
    kt_tmpdir_new();
    char log[1024];
    snprintf(log, sizeof log, "%s", kt_path("steps.csv"));
    kt_run r = kt_run_killed_when(KILN_CLI_PATH, two_rows, log, BASE " --epochs 30 --log-steps %s", log);
    cr_expect(r.signaled, "kiln ended (exit %d) before its step log showed two rows: they waited in a buffer", r.status);
    kt_run_free(&r);
    int rows = check_rows(log, "step,epoch,loss,accuracy", 1, "killed");
    cr_expect(rows >= 2 && rows < 30 * STEPS_PER_EPOCH, "%d rows when killed: they came all at once, at the exit", rows);
    kt_tmpdir_remove();
}

/* the docs' example: the step log inside an --out that does not exist yet */
Test(durable, log_steps_inside_a_fresh_out) {
    kt_tmpdir_new();
    kt_run r = KILN("train --model seed-cnn --train-size 32 --test-size 8 --image-size 8 --batch-size 16 --verbose 0 "
                    "--out %s --log-steps %s", kt_path("run"), kt_path("run/steps.csv"));
    kt_expect_ok(&r, "--out run --log-steps run/steps.csv");
    kt_run_free(&r);
    cr_expect_eq(check_rows(kt_path("run/steps.csv"), "step,epoch,loss,accuracy", 1, "fresh --out"), 2);
    kt_tmpdir_remove();
}

/* the chart replaces the old one (a new file renamed over it), never rewrites it in place */
Test(durable, chart_replaced_atomically) {
    kt_tmpdir_new();
    cr_assert_eq(mkdir(kt_path("run"), 0777), 0);
    kt_write_file(kt_path("run/history.svg"), "old chart", 9, false);
    cr_assert_eq(link(kt_path("run/history.svg"), kt_path("old.svg")), 0);
    kt_run r = KILN("train --model seed-cnn --train-size 32 --test-size 8 --image-size 8 --batch-size 16 --verbose 0 --out %s",
                    kt_path("run"));
    kt_expect_ok(&r, "train");
    kt_run_free(&r);
    char *old = text_of(kt_path("old.svg")), *svg = text_of(kt_path("run/history.svg"));
    cr_expect_str_eq(old, "old chart", "the chart was written into the old file: %.60s", old);
    cr_expect(svg && strstr(svg, "<svg") && strstr(svg, "</svg>\n"), "%.60s", svg);
    cr_expect_eq(temp_files(kt_path("run")), 0);
    free(old);
    free(svg);
    kt_tmpdir_remove();
}

/* a pid that no longer runs: a child that has exited and been waited for */
static long dead_pid(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    cr_assert_gt(p, 0);
    cr_assert_eq(waitpid(p, NULL, 0), p);
    return (long)p;
}

/* the next write to a target removes the temporary files killed writers left for it, and no other file */
Test(durable, leftover_temp_files_removed) {
    kt_tmpdir_new();
    char gone[2][64], kept[5][64];
    /* file_atomic.c's temporary names: ".<target>.tmp-<pid>-<n>" */
    snprintf(gone[0], 64, ".w.safetensors.tmp-%ld-0", dead_pid());
    snprintf(gone[1], 64, ".w.safetensors.tmp-%ld-7", (long)getpid()); /* a process with this pid before */
    snprintf(kept[0], 64, ".w.safetensors.tmp-%ld-3", (long)getppid()); /* a live writer */
    snprintf(kept[1], 64, ".v.safetensors.tmp-%ld-0", dead_pid());       /* another target */
    snprintf(kept[2], 64, ".w.safetensors.tmp-%ldx-0", dead_pid());      /* not kiln's name */
    snprintf(kept[3], 64, "w.safetensors.tmp-%ld-0", dead_pid());
    snprintf(kept[4], 64, ".w.safetensors.tmp-0-0");
    for (int i = 0; i < 2; i++) kt_write_file(kt_path(gone[i]), "x", 1, false);
    for (int i = 0; i < 5; i++) kt_write_file(kt_path(kept[i]), "x", 1, false);
    kiln_file_part part = {"new", 3};
    cr_assert_eq(kiln_file_write_atomic(kt_path("w.safetensors"), &part, 1), KILN_OK, "%s", kiln_last_error());
    for (int i = 0; i < 2; i++) cr_expect_neq(access(kt_path(gone[i]), F_OK), 0, "%s is still there", gone[i]);
    for (int i = 0; i < 5; i++) cr_expect_eq(access(kt_path(kept[i]), F_OK), 0, "%s was removed", kept[i]);
    cr_expect_eq(kt_dir_count(kt_tmpdir()), 6);
    kt_tmpdir_remove();
}

/* write failures: one line naming the file and the system's reason */
static void expect_failure(const char *args, const char *needle) {
    kt_run r = KILN("train --model seed-cnn --train-size 32 --test-size 8 --image-size 8 --batch-size 16 --verbose 0 %s", args);
    cr_expect(!r.signaled && r.status == 1, "%s: exit %d, stderr: %s", args, r.status, r.err);
    const char *nl = strchr(r.err, '\n');
    cr_expect(!strncmp(r.err, "kiln: ", 6) && nl && nl[1] == '\0', "%s: stderr is not one 'kiln: ' line: %s", args, r.err);
    cr_expect(strstr(r.err, needle), "%s: stderr lacks '%s': %s", args, needle, r.err);
    kt_run_free(&r);
}

Test(durable, write_failures_name_file_and_reason) {
    kt_tmpdir_new();
    char args[2048];
    cr_assert_eq(mkdir(kt_path("run"), 0777), 0);
    cr_assert_eq(mkdir(kt_path("run/history.csv"), 0777), 0);
    snprintf(args, sizeof args, "--out %s", kt_path("run"));
    expect_failure(args, "CSVLogger: cannot open '");
    expect_failure(args, "run/history.csv' for writing: Is a directory");
    if (access("/dev/full", W_OK) == 0) { /* every write fails with ENOSPC: said at the epoch's end */
        snprintf(args, sizeof args, "--out %s --log-steps /dev/full", kt_path("run2"));
        expect_failure(args, "--log-steps: writing '/dev/full' failed: No space left on device");
    }
    kt_tmpdir_remove();
}
