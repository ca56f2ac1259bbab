/* bench/report.c: what kiln-bench writes: the derived numbers of a result (GB/s on the ideal
 * bytes, percent of the measured copy ceiling, speedup over cuDNN), one JSON line per result
 * after a line of run metadata, and the Markdown table with its geometric-mean summary.
 * bench/merge_tables.py joins these JSON lines with torch_bn.py's into the final table. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

const char *bench_commit(void) {
    const char *c = getenv("KILN_COMMIT");
    return c && *c ? c : "unknown";
}

void bench_utc_now(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static char command_line[1024];

void bench_set_command(int argc, char **argv) {
    size_t k = 0;
    for (int i = 0; i < argc && k + 1 < sizeof command_line; i++)
        k += (size_t)snprintf(command_line + k, sizeof command_line - k, "%s%s", i ? " " : "", argv[i]);
}

const char *bench_command(void) { return command_line; }

void bench_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

void bench_json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.6g", v);
    else fputs("null", f);
}

/* ---- derived numbers ----------------------------------------------------------------------- */

void bench_results_derive(bench_result *r, int n) {
    for (int i = 0; i < n; i++) {
        bench_result *a = &r[i];
        bool ok = !strcmp(a->status, "ok") && a->t.median_ms > 0.0;
        a->gbps = ok ? a->bytes / (a->t.median_ms * 1e-3) / 1e9 : NAN;
        a->pct_copy = ok && a->copy_gbps > 0.0 ? 100.0 * a->gbps / a->copy_gbps : NAN;
        a->speedup_cudnn = NAN;
        for (int j = 0; ok && j < n; j++) {
            const bench_result *b = &r[j];
            /* the baseline: cuDNN for GPU results, oneDNN for CPU ones */
            const char *base = strcmp(a->device, "cpu") ? "cudnn" : "onednn";
            if (b->cfg == a->cfg && b->dir == a->dir && !strcmp(b->impl, base) &&
                !strcmp(b->status, "ok"))
                a->speedup_cudnn = b->t.median_ms / a->t.median_ms;
        }
    }
}

/* ---- JSON lines ---------------------------------------------------------------------------- */

void bench_write_meta(FILE *f, const char *bench, const bench_device *d) {
    char date[32];
    bench_utc_now(date, sizeof date);
    fprintf(f, "{\"bench\":\"meta\",\"what\":");
    bench_json_str(f, bench);
    fprintf(f, ",\"date\":\"%s\",\"device\":\"%s\",\"name\":", date, d->kind);
    bench_json_str(f, d->name);
    fprintf(f, ",\"driver\":");
    bench_json_str(f, d->driver);
    fprintf(f, ",\"cache_bytes\":%zu,\"units\":%d,\"copy_gbps\":", d->cache_bytes, d->sms);
    bench_json_num(f, d->copy_gbps > 0.0 ? d->copy_gbps : NAN); /* null: not measured */
    fprintf(f, ",\"command\":");
    bench_json_str(f, bench_command());
    fprintf(f, ",\"commit\":");
    bench_json_str(f, bench_commit());
    fprintf(f, "}\n");
    fflush(f);
}

void bench_write_result_json(FILE *f, const bench_result *r) {
    const bench_case *cs = r->cfg->cs;
    fprintf(f, "{\"bench\":\"bn\",\"impl\":\"%s\",\"device\":\"%s\",\"case\":", r->impl, r->device);
    bench_json_str(f, cs->name);
    if (cs->h) fprintf(f, ",\"shape\":[%lld,%lld,%lld,%lld]", (long long)cs->n, (long long)cs->c,
                       (long long)cs->h, (long long)cs->w);
    else fprintf(f, ",\"shape\":[%lld,%lld]", (long long)cs->n, (long long)cs->c);
    fprintf(f, ",\"layout\":\"%s\",\"dtype\":\"%s\",\"dir\":\"%s\",\"numel\":%lld,\"status\":\"%s\","
            "\"message\":", bench_layout_name(r->cfg), kiln_dtype_name(r->cfg->dtype),
            bench_dir_name(r->dir), (long long)bench_config_numel(r->cfg), r->status);
    bench_json_str(f, r->message);
    const char *keys[] = {"median_ms", "min_ms", "p90_ms", "bytes", "gbps", "copy_gbps",
                          "pct_copy", "speedup_cudnn", "err", "tol"};
    const double vals[] = {r->t.median_ms, r->t.min_ms, r->t.p90_ms, r->bytes, r->gbps,
                           r->copy_gbps, r->pct_copy, r->speedup_cudnn, r->err, r->tol};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        fprintf(f, ",\"%s\":", keys[k]);
        bench_json_num(f, vals[k]);
    }
    fprintf(f, ",\"reps\":%d}\n", r->t.reps);
    fflush(f);
}

/* ---- Markdown ------------------------------------------------------------------------------ */

static void md_num(FILE *f, const char *fmt, double v) {
    if (isfinite(v)) fprintf(f, fmt, v);
    else fputs(" - |", f);
}

/* the geometric mean of the finite, positive values v[0..n) (NaN when none) */
static double geomean(const double *v, int n, int *used) {
    double s = 0.0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i]) && v[i] > 0.0) s += log(v[i]), k++;
    *used = k;
    return k ? exp(s / k) : NAN;
}

static void md_summary(FILE *f, const bench_result *r, int n) {
    static const char *layouts[] = {"nhwc", "nchw", "nc"};
    const char *impls[16];
    int ni = 0;
    for (int i = 0; i < n; i++) { /* implementations in order of appearance */
        int j = 0;
        while (j < ni && strcmp(impls[j], r[i].impl)) j++;
        if (j == ni && ni < 16) impls[ni++] = r[i].impl;
    }
    double *g = malloc(sizeof(double) * (size_t)n), *p = malloc(sizeof(double) * (size_t)n),
           *s = malloc(sizeof(double) * (size_t)n);
    if (!g || !p || !s) {
        free(g), free(p), free(s);
        return;
    }
    fprintf(f, "\n## Geometric means (configs measured ok)\n\n"
               "| dir | layout | impl | configs | GB/s | %% of copy | speedup vs cuDNN (GPU) / oneDNN (CPU) |\n"
               "|---|---|---|---:|---:|---:|---:|\n");
    for (int dir = 0; dir < BENCH_DIR_COUNT; dir++)
        for (int l = 0; l < 3; l++)
            for (int k = 0; k < ni; k++) {
                int m = 0, used;
                for (int i = 0; i < n; i++)
                    if (r[i].dir == dir && !strcmp(bench_layout_name(r[i].cfg), layouts[l]) &&
                        !strcmp(r[i].impl, impls[k]) && !strcmp(r[i].status, "ok"))
                        g[m] = r[i].gbps, p[m] = r[i].pct_copy, s[m] = r[i].speedup_cudnn, m++;
                if (!m) continue;
                fprintf(f, "| %s | %s | %s | %d |", bench_dir_name(dir), layouts[l], impls[k], m);
                md_num(f, " %.1f |", geomean(g, m, &used));
                md_num(f, " %.1f |", geomean(p, m, &used));
                double sp = geomean(s, m, &used);
                if (used) fprintf(f, " %.2fx (%d) |\n", sp, used);
                else fputs(" - |\n", f);
            }
    free(g), free(p), free(s);
}

void bench_write_markdown(FILE *f, const bench_device *const *devs, int nd,
                          const bench_result *r, int n) {
    char date[32];
    bench_utc_now(date, sizeof date);
    fprintf(f, "# kiln-bench bn\n\n- date: %s\n- command: `%s`\n- kiln commit: %s\n", date,
            bench_command(), bench_commit());
    for (int i = 0; i < nd; i++) {
        fprintf(f, "- %s: %s%s%s; cache %zu MiB; copy ceiling %.1f GB/s (bytes read + written)\n",
                devs[i]->kind, devs[i]->name, devs[i]->driver[0] ? "; " : "", devs[i]->driver,
                devs[i]->cache_bytes >> 20, devs[i]->copy_gbps);
    }
    fprintf(f, "- bytes: ideal (forward: x read + y written; backward: x, dy read + dx written); "
               "time: median, %s; error: max |got - want| / max |want| "
               "against a float64 reference\n\n"
               "| case | shape | layout | dtype | dir | impl | median ms | GB/s | %% of copy | "
               "vs cuDNN (GPU) / oneDNN (CPU) | error | status |\n"
               "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---|\n",
            nd > 0 && devs[0]->warm ? "cache warm (no flush between reps)" : "cache flushed before every rep");
    for (int i = 0; i < n; i++) {
        const bench_result *a = &r[i];
        char shape[64];
        fprintf(f, "| %s | %s | %s | %s | %s | %s |", a->cfg->cs->name,
                bench_config_shape_str(a->cfg, shape, sizeof shape), bench_layout_name(a->cfg),
                kiln_dtype_name(a->cfg->dtype), bench_dir_name(a->dir), a->impl);
        md_num(f, " %.4f |", strcmp(a->status, "ok") ? NAN : a->t.median_ms);
        md_num(f, " %.1f |", a->gbps);
        md_num(f, " %.1f |", a->pct_copy);
        md_num(f, " %.2fx |", a->speedup_cudnn);
        md_num(f, " %.1e |", a->err);
        fprintf(f, " %s%s%s |\n", a->status, a->message[0] ? ": " : "", a->message);
    }
    md_summary(f, r, n);
    fflush(f);
}
