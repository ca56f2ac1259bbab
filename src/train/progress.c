/* progress.c: Keras' progress output (progress.h), and the clock.
 *   verbose 1 on a terminal:  "Epoch 1/10" then a bar redrawn in place,
 *       250/250 [==============================] - 3s 12ms/step - loss: 0.4512 - accuracy: 0.8610 - val_loss: ...
 *     with an ETA while running;
 *   verbose 1 when the output is not a terminal, and verbose 2: the epoch line and one line
 *     per epoch (no bar), as Keras prints to a log file;
 *   verbose 0: nothing. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, CLOCK_MONOTONIC, isatty */
#include <math.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

double kiln_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void kiln_progress_epoch_begin(kiln_progress *p, int epoch, int epochs, int64_t steps) {
    p->steps = steps;
    p->start = kiln_now();
    p->last_draw = 0.0;
    p->tty = p->verbose == 1 && isatty(fileno(p->out));
    if (p->verbose) {
        fprintf(p->out, "Epoch %d/%d\n", epoch + 1, epochs);
        fflush(p->out);
    }
}

static void duration(FILE *out, double s) {
    if (s >= 3600) fprintf(out, "%d:%02d:%02d", (int)(s / 3600), (int)fmod(s / 60, 60), (int)fmod(s, 60));
    else if (s >= 60) fprintf(out, "%d:%02d", (int)(s / 60), (int)fmod(s, 60));
    else fprintf(out, "%ds", (int)s);
}

static void per_step(FILE *out, double secs, int64_t steps) {
    double t = steps > 0 ? secs / (double)steps : 0.0;
    if (t >= 1.0) fprintf(out, " %.0fs/step", t);
    else if (t >= 1e-3) fprintf(out, " %.0fms/step", t * 1e3);
    else fprintf(out, " %.0fus/step", t * 1e6);
}

/* Keras' bar: (filled - 1) '=', then '>' while running ('=' when done), then '.' */
static void bar(kiln_progress *p, int64_t done) {
    int width = 30, filled = p->steps ? (int)((double)width * (double)done / (double)p->steps) : width;
    int digits = snprintf(NULL, 0, "%lld", (long long)p->steps);
    fprintf(p->out, "%*lld/%lld [", digits, (long long)done, (long long)p->steps);
    for (int i = 0; i < width; i++)
        fputc(i < filled - 1 ? '=' : i == filled - 1 ? (done < p->steps ? '>' : '=') : '.', p->out);
    fputc(']', p->out);
}

void kiln_progress_update(kiln_progress *p, int64_t done, double loss, double accuracy) {
    if (!p->tty) return;
    double now = kiln_now();
    if (done < p->steps && now - p->last_draw < 0.05) return;
    p->last_draw = now;
    fputc('\r', p->out);
    bar(p, done);
    double el = now - p->start;
    if (done < p->steps) {
        fprintf(p->out, " - ETA: ");
        duration(p->out, done ? el / (double)done * (double)(p->steps - done) : 0.0);
    }
    fprintf(p->out, " - loss: %.4f", loss);
    if (!isnan(accuracy)) fprintf(p->out, " - accuracy: %.4f", accuracy);
    fprintf(p->out, "\033[K");
    fflush(p->out);
}

void kiln_progress_epoch_end(kiln_progress *p, const kiln_epoch_logs *l, bool has_acc) {
    if (!p->verbose) return;
    if (p->tty) {
        fputc('\r', p->out);
        bar(p, p->steps);
    } else {
        fprintf(p->out, "%lld/%lld", (long long)p->steps, (long long)p->steps);
    }
    fprintf(p->out, " - ");
    duration(p->out, l->seconds);
    per_step(p->out, l->seconds, p->steps);
    fprintf(p->out, " - loss: %.4f", l->loss);
    if (has_acc) fprintf(p->out, " - accuracy: %.4f", l->accuracy);
    if (!isnan(l->val_loss)) fprintf(p->out, " - val_loss: %.4f", l->val_loss);
    if (has_acc && !isnan(l->val_accuracy)) fprintf(p->out, " - val_accuracy: %.4f", l->val_accuracy);
    fprintf(p->out, "%s\n", p->tty ? "\033[K" : "");
    fflush(p->out);
}
