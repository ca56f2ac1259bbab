/* outputs.c: what `kiln train` writes besides the model and the chart: the output
 * directory, a full checkpoint at every epoch's end (for --resume), and the per-step log of
 * --log-steps. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "error.h"

kiln_status kiln_cli_path_join(const char *dir, const char *name, char *buf, size_t n) {
    int len = snprintf(buf, n, "%s/%s", dir, name);
    if (len < 0 || (size_t)len >= n) return kiln_error(KILN_ERR_INVALID_ARG, "the path '%s/%s' is too long", dir, name);
    return KILN_OK;
}

kiln_status kiln_cli_dir_make(const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return kiln_error(KILN_ERR_INVALID_ARG, "the path '%s' is too long", dir);
    for (char *p = path + 1;; p++) { /* each parent, then the directory itself */
        bool end = *p == '\0';
        if (*p != '/' && !end) continue;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return kiln_error(KILN_ERR_IO, "cannot create the directory '%s': %s", path, strerror(errno));
        if (end) break;
        *p = '/';
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return kiln_error(KILN_ERR_IO, "--out '%s' is not a directory", dir);
    return KILN_OK;
}

/* ---- a full checkpoint at every epoch's end ---- */

static kiln_status checkpoint_epoch(void *ctx, kiln_model *m, const kiln_epoch_logs *l, bool *stop) {
    return kiln_model_save(m, ctx, true, l->epoch + 1);
}

kiln_status kiln_cli_checkpoint_callback(const char *path, kiln_callback *out) {
    char *p = strdup(path);
    if (!p) return kiln_error(KILN_ERR_OOM, "out of host memory");
    *out = (kiln_callback){p, NULL, checkpoint_epoch, NULL, NULL, free};
    return KILN_OK;
}

/* ---- --log-steps ---- */

struct kiln_cli_step_log {
    FILE *f;
    char path[4096];
    bool failed;
};

kiln_status kiln_cli_step_log_open(const char *path, bool append, kiln_cli_step_log **out) {
    kiln_cli_step_log *l = calloc(1, sizeof *l);
    if (!l) return kiln_error(KILN_ERR_OOM, "out of host memory");
    snprintf(l->path, sizeof l->path, "%s", path);
    FILE *old = append ? fopen(path, "r") : NULL;
    bool fresh = !old || fgetc(old) == EOF;
    if (old) fclose(old);
    l->f = fopen(path, append ? "a" : "w");
    if (!l->f) {
        free(l);
        return kiln_error(KILN_ERR_IO, "--log-steps: cannot open '%s' for writing: %s", path, strerror(errno));
    }
    if (fresh) fprintf(l->f, "step,epoch,loss,accuracy\n");
    *out = l;
    return KILN_OK;
}

void kiln_cli_step_log_write(void *ctx, int64_t step, int epoch, double loss, double accuracy) {
    kiln_cli_step_log *l = ctx;
    if (fprintf(l->f, "%lld,%d,%.9g,%.9g\n", (long long)step, epoch, loss, accuracy) < 0) l->failed = true;
}

kiln_status kiln_cli_step_log_close(kiln_cli_step_log *l) {
    if (!l) return KILN_OK;
    bool bad = l->failed || ferror(l->f);
    bad |= fclose(l->f) != 0;
    kiln_status s = bad ? kiln_error(KILN_ERR_IO, "--log-steps: writing '%s' failed", l->path) : KILN_OK;
    free(l);
    return s;
}
