/* outputs.c: what `kiln train` writes besides the model and the chart: the output
 * directory, a full checkpoint at every epoch's end (for --resume), the per-step log of
 * --log-steps, and the cut of both logs back to a checkpoint's epoch when a run resumes.
 *
 * The order that survives a kill at any instant: a step's row reaches the file when it is
 * logged (line buffered), the epoch's history.csv row when the epoch ends (CSVLogger), and both
 * are synced to the disk before the checkpoint that covers them is renamed into place. The logs
 * may so run ahead of the checkpoint by the epoch in flight, never behind it; a resumed run
 * removes the rows of epochs the checkpoint does not have, so its files equal an
 * uninterrupted run's. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

typedef struct checkpoint_ctx {
    kiln_cli_step_log *steps; /* synced before the checkpoint; NULL without --log-steps */
    char path[];
} checkpoint_ctx;

static kiln_status checkpoint_epoch(void *ctx, kiln_model *m, const kiln_epoch_logs *l, bool *stop) {
    checkpoint_ctx *c = ctx;
    KILN_TRY(kiln_cli_step_log_sync(c->steps));
    return kiln_model_save(m, c->path, true, l->epoch + 1);
}

kiln_status kiln_cli_checkpoint_callback(const char *path, kiln_cli_step_log *steps, kiln_callback *out) {
    size_t n = strlen(path) + 1;
    checkpoint_ctx *c = malloc(sizeof *c + n);
    if (!c) return kiln_error(KILN_ERR_OOM, "out of host memory");
    c->steps = steps;
    memcpy(c->path, path, n);
    *out = (kiln_callback){c, NULL, checkpoint_epoch, NULL, NULL, free};
    return KILN_OK;
}

/* ---- cutting a log back to a checkpoint ---- */

/* the index of the column named "epoch" in a CSV header line, -1 when there is none */
static int epoch_column(const char *header) {
    int col = 0;
    for (const char *p = header;; col++) {
        size_t len = strcspn(p, ",\r\n");
        if (len == 5 && !strncmp(p, "epoch", 5)) return col;
        if (p[len] != ',') return -1;
        p += len + 1;
    }
}

/* true when field `col` of a CSV row is an integer below `epochs` */
static bool row_before(const char *row, int col, int epochs) {
    for (int c = 0; c < col; c++) {
        row = strchr(row, ',');
        if (!row) return false;
        row++;
    }
    char *end;
    errno = 0;
    long long e = strtoll(row, &end, 10);
    return !errno && end != row && (*end == ',' || *end == '\n' || *end == '\r') && e >= 0 && e < epochs;
}

/* the length of the part of f to keep: the header and the complete rows before the first that
 * is cut short (a kill during its write), unreadable or of epoch `epochs` or later; -1 when
 * the file is not a log with an "epoch" column (then it is left alone) */
static long long kept_length(FILE *f, int epochs) {
    char *line = NULL;
    size_t cap = 0;
    long long keep = 0;
    int col = -2;
    for (ssize_t n; (n = getline(&line, &cap, f)) > 0; keep += n) {
        if (line[n - 1] != '\n') break;
        if (col == -2 && (col = epoch_column(line)) < 0) break;
        if (keep && !row_before(line, col, epochs)) break;
    }
    free(line);
    return col == -1 ? -1 : keep;
}

kiln_status kiln_cli_log_cut(const char *path, int epochs) {
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? KILN_OK : kiln_error(KILN_ERR_IO, "cannot read '%s' to continue it: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return KILN_OK; /* a pipe, /dev/stdout: nothing to cut */
    FILE *f = fopen(path, "r");
    if (!f) return kiln_error(KILN_ERR_IO, "cannot open '%s' to continue it: %s", path, strerror(errno));
    long long keep = kept_length(f, epochs);
    bool bad = ferror(f) != 0;
    int e = errno;
    fclose(f);
    if (bad) return kiln_error(KILN_ERR_IO, "reading '%s' failed: %s", path, strerror(e));
    if (keep < 0 || keep == (long long)st.st_size) return KILN_OK;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    bool ok = fd >= 0 && ftruncate(fd, (off_t)keep) == 0 && (fsync(fd) == 0 || errno == EINVAL);
    e = errno;
    if (fd >= 0) close(fd);
    if (!ok)
        return kiln_error(KILN_ERR_IO, "cannot cut '%s' back to the checkpoint's %d epochs: %s", path, epochs, strerror(e));
    return KILN_OK;
}

/* ---- --log-steps ---- */

struct kiln_cli_step_log {
    FILE *f;
    char path[4096];
    int error; /* errno of the first failed write, 0 while none failed */
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
    setvbuf(l->f, NULL, _IOLBF, 0); /* each row reaches the file when it is logged: a kill loses none */
    if (fresh && fprintf(l->f, "step,epoch,loss,accuracy\n") < 0) l->error = errno;
    *out = l;
    return KILN_OK;
}

void kiln_cli_step_log_write(void *ctx, int64_t step, int epoch, double loss, double accuracy) {
    kiln_cli_step_log *l = ctx;
    if (fprintf(l->f, "%lld,%d,%.9g,%.9g\n", (long long)step, epoch, loss, accuracy) < 0 && !l->error) l->error = errno;
}

static kiln_status step_log_failed(const kiln_cli_step_log *l) {
    return kiln_error(KILN_ERR_IO, "--log-steps: writing '%s' failed: %s", l->path, strerror(l->error ? l->error : EIO));
}

kiln_status kiln_cli_step_log_sync(kiln_cli_step_log *l) {
    if (!l) return KILN_OK;
    if (!l->error && fflush(l->f) != 0) l->error = errno;
    if (!l->error && fsync(fileno(l->f)) != 0 && errno != EINVAL && errno != EROFS && errno != ENOTSUP) l->error = errno;
    return l->error ? step_log_failed(l) : KILN_OK;
}

kiln_status kiln_cli_step_log_close(kiln_cli_step_log *l) {
    if (!l) return KILN_OK;
    if (!l->error && ferror(l->f)) l->error = EIO;
    if (fclose(l->f) != 0 && !l->error) l->error = errno;
    kiln_status s = l->error ? step_log_failed(l) : KILN_OK;
    free(l);
    return s;
}
