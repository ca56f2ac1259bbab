/* chart.c: history.svg, the chart `kiln train` draws from history.csv: two panels, loss
 * and accuracy per epoch, each with axes, ticks, grid lines, the training curve (solid) and
 * the validation curve (dashed) with a marker per epoch, and a legend. Plain SVG 1.1 written
 * by hand, so any browser or image viewer opens it. Drawn from the CSV so a resumed run's
 * chart shows the epochs before the resume too; drawn in memory and written atomically
 * (file_atomic.h), so a kill or a full disk leaves the previous chart whole. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "file_atomic.h"

enum { COL_EPOCH, COL_LOSS, COL_ACC, COL_VAL_LOSS, COL_VAL_ACC, N_COLS };
static const char *const col_names[N_COLS] = {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"};

typedef struct series {
    int n;
    double *v[N_COLS]; /* n values per column, NaN where the CSV has none */
} series;

static void series_free(series *s) {
    for (int c = 0; c < N_COLS; c++) free(s->v[c]);
}

/* the columns of history.csv named in col_names (others ignored) */
static kiln_status series_read(const char *path, series *s) {
    memset(s, 0, sizeof *s);
    char *text;
    size_t len;
    KILN_TRY(kiln_cli_file_read(path, (size_t)64 << 20, &text, &len));
    int where[64], n_fields = 0, rows = 0;
    for (size_t i = 0; i < len; i++) rows += text[i] == '\n';
    for (int c = 0; c < N_COLS; c++) s->v[c] = malloc(sizeof(double) * (size_t)(rows + 1));
    kiln_status st = KILN_OK;
    for (int c = 0; c < N_COLS; c++)
        if (!s->v[c]) st = kiln_error(KILN_ERR_OOM, "out of host memory for the chart");
    char *save = NULL;
    bool header = true;
    for (char *line = strtok_r(text, "\n", &save); st == KILN_OK && line; line = strtok_r(NULL, "\n", &save)) {
        line[strcspn(line, "\r")] = '\0';
        for (int c = 0; !header && c < N_COLS; c++) s->v[c][s->n] = NAN;
        int f = 0;
        for (char *p = line, *next; p && f < 64; p = next, f++) {
            next = strchr(p, ',');
            if (next) *next++ = '\0';
            if (header) {
                where[f] = -1;
                for (int c = 0; c < N_COLS; c++)
                    if (!strcmp(p, col_names[c])) where[f] = c;
            } else if (f < n_fields && where[f] >= 0 && *p) {
                s->v[where[f]][s->n] = strtod(p, NULL);
            }
        }
        if (header) n_fields = f;
        else s->n++;
        header = false;
    }
    free(text);
    if (st != KILN_OK) series_free(s);
    return st;
}

/* a 1-2-5 step giving about `target` intervals over range */
static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1.0 : f < 3.0 ? 2.0 : f < 7.0 ? 5.0 : 10.0) * mag;
}

typedef struct panel {
    double x0, y0, w, h;          /* the plot area in SVG units */
    double xmin, xmax, ymin, ymax;
} panel;

static double px(const panel *p, double x) { return p->x0 + (x - p->xmin) / (p->xmax - p->xmin) * p->w; }
static double py(const panel *p, double y) { return p->y0 + p->h - (y - p->ymin) / (p->ymax - p->ymin) * p->h; }

static void axes(FILE *f, const panel *p, const char *name, double ystep) {
    int decimals = ystep >= 1 ? 0 : (int)ceil(-log10(ystep) - 1e-9);
    for (double y = p->ymin; y <= p->ymax + ystep * 1e-6; y += ystep) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", p->x0, py(p, y), p->x0 + p->w, py(p, y));
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", p->x0 - 5, py(p, y), p->x0, py(p, y));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.*f</text>\n", p->x0 - 8, py(p, y) + 4, decimals, y);
    }
    double xstep = fmax(1.0, nice_step(p->xmax - p->xmin, 8));
    for (double x = ceil(p->xmin / xstep) * xstep; x <= p->xmax + 1e-9; x += xstep) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", px(p, x), p->y0 + p->h, px(p, x), p->y0 + p->h + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.0f</text>\n", px(p, x), p->y0 + p->h + 19, x);
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", p->x0, p->y0, p->w, p->h);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">%s</text>\n",
            p->x0 + p->w / 2, p->y0 - 12, name);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">epoch</text>\n", p->x0 + p->w / 2, p->y0 + p->h + 40);
    fprintf(f, "<text transform=\"translate(%.1f %.1f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n", p->x0 - 48,
            p->y0 + p->h / 2, name);
}

/* one curve: polylines between finite points, a marker on each */
static bool curve(FILE *f, const panel *p, const series *s, int col, const char *colour, bool dashed) {
    bool any = false, open = false;
    for (int i = 0; i <= s->n; i++) {
        bool ok = i < s->n && isfinite(s->v[col][i]) && isfinite(s->v[COL_EPOCH][i]);
        if (ok && !open)
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", colour,
                    dashed ? " stroke-dasharray=\"6 4\"" : "");
        if (ok) fprintf(f, "%.1f,%.1f ", px(p, s->v[COL_EPOCH][i] + 1), py(p, s->v[col][i]));
        if (!ok && open) fprintf(f, "\"/>\n");
        open = ok;
        any |= ok;
    }
    for (int i = 0; i < s->n; i++)
        if (isfinite(s->v[col][i]) && isfinite(s->v[COL_EPOCH][i]))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", px(p, s->v[COL_EPOCH][i] + 1), py(p, s->v[col][i]), colour);
    return any;
}

/* the legend's top: top right for loss (which falls), bottom right for accuracy (which rises) */
static double legend_top(const panel *p, bool bottom) { return bottom ? p->y0 + p->h - 54 : p->y0 + 6; }

static void legend_entry(FILE *f, const panel *p, bool bottom, int row, const char *colour, bool dashed, const char *label) {
    double x = p->x0 + p->w - 118, y = legend_top(p, bottom) + 12 + 20 * row;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", x, y, x + 28, y,
            colour, dashed ? " stroke-dasharray=\"6 4\"" : "");
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", x + 34, y + 4, label);
}

static void draw_panel(FILE *f, panel *p, const series *s, int train_col, const char *name) {
    double hi = 0.0;
    for (int i = 0; i < s->n; i++)
        for (int c = train_col; c <= train_col + 2; c += 2)
            if (isfinite(s->v[c][i])) hi = fmax(hi, s->v[c][i]);
    bool acc = train_col == COL_ACC;
    double ystep = acc ? 0.2 : nice_step(hi > 0 ? hi : 1.0, 5);
    p->ymin = 0.0;
    p->ymax = acc ? 1.0 : ceil((hi > 0 ? hi : 1.0) / ystep) * ystep;
    axes(f, p, name, ystep);
    static const char *const blue = "#1f77b4", *const orange = "#ff7f0e";
    bool has[2] = {curve(f, p, s, train_col, blue, false), curve(f, p, s, train_col + 2, orange, true)};
    int row = 0, rows = has[0] + has[1];
    if (rows) /* drawn after the curves, so it stays readable over them */
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"122\" height=\"%d\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#999\"/>\n",
                p->x0 + p->w - 126, legend_top(p, acc) + (acc ? 20 * (2 - rows) : 0), 8 + 20 * rows);
    if (has[0]) legend_entry(f, p, acc, row++ + (acc ? 2 - rows : 0), blue, false, "train");
    if (has[1]) legend_entry(f, p, acc, row++ + (acc ? 2 - rows : 0), orange, true, "validation");
    if (!row) fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">no epochs logged</text>\n", p->x0 + p->w / 2, p->y0 + p->h / 2);
}

static void escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

/* the whole SVG of s into f */
static void draw(FILE *f, const series *s, const char *title) {
    double first = s->n ? s->v[COL_EPOCH][0] + 1 : 1, last = s->n ? s->v[COL_EPOCH][s->n - 1] + 1 : 1;
    if (!(last > first)) { /* one epoch (or none): some room on both sides */
        first -= 1;
        last += 1;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"420\" viewBox=\"0 0 960 420\" "
               "font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\">\n"
               "<rect width=\"960\" height=\"420\" fill=\"white\"/>\n"
               "<text x=\"480\" y=\"26\" text-anchor=\"middle\" font-size=\"17\">");
    escaped(f, title);
    fprintf(f, ": loss and accuracy per epoch</text>\n");
    panel loss = {80, 70, 370, 280, first, last, 0, 1}, acc = {570, 70, 370, 280, first, last, 0, 1};
    draw_panel(f, &loss, s, COL_LOSS, "loss");
    draw_panel(f, &acc, s, COL_ACC, "accuracy");
    fprintf(f, "</svg>\n");
}

kiln_status kiln_cli_chart_write(const char *history_csv, const char *svg_path, const char *title) {
    series s;
    KILN_TRY(series_read(history_csv, &s));
    char *svg = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&svg, &len);
    if (f) draw(f, &s, title);
    bool bad = !f || ferror(f) != 0;
    bad |= f && fclose(f) != 0;
    series_free(&s);
    kiln_status st = bad ? kiln_error(KILN_ERR_OOM, "%s: out of host memory for the chart", svg_path)
                         : kiln_file_write_atomic(svg_path, &(kiln_file_part){svg, len}, 1);
    free(svg);
    return st;
}
