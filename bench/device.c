/* bench/device.c: the timing device of kiln-bench, CPU side: the host clock, a flush of the
 * CPU's last-level cache, memcpy as the CPU's copy ceiling; the timing loop and the copy
 * ceiling shared by every device; and bench_device_open, the one place that knows whether
 * this build has the CUDA timing table (device_cuda.cu). */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

double bench_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

/* ---- the CPU device ---------------------------------------------------------------------- */

typedef struct cpu_ctx {
    double t0;
    unsigned char *flush_buf;
    size_t flush_bytes;
    unsigned char *copy_src, *copy_dst;
    size_t copy_bytes;
    volatile uint64_t sink;
} cpu_ctx;

/* the largest cache of cpu0 from sysfs ("32768K"), 0 when unknown */
static size_t largest_cache(void) {
    size_t best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96], buf[32];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(buf, sizeof buf, f)) {
            char *end;
            unsigned long long v = strtoull(buf, &end, 10);
            if (*end == 'K') v <<= 10;
            else if (*end == 'M') v <<= 20;
            if (v > best) best = (size_t)v;
        }
        fclose(f);
    }
    return best;
}

static void cpu_model_name(char *out, size_t n) {
    snprintf(out, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10)) continue;
        const char *v = strchr(line, ':');
        if (!v) break;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        snprintf(out, n, "%s", v);
        out[strcspn(out, "\n")] = 0;
        break;
    }
    fclose(f);
}

/* a pattern no output is made of, never zeros */
static void fill_pattern(unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 2654435761u >> 13) | 1u;
}

static kiln_status cpu_flush(bench_device *d) {
    cpu_ctx *c = d->ctx;
    const uint64_t *p = (const uint64_t *)c->flush_buf;
    uint64_t acc = 0;
    for (size_t i = 0; i < c->flush_bytes / 8; i += 8) acc ^= p[i]; /* one word per 64-byte line */
    c->sink = acc;
    return KILN_OK;
}

static kiln_status cpu_start(bench_device *d) {
    ((cpu_ctx *)d->ctx)->t0 = bench_now_ms();
    return KILN_OK;
}

static kiln_status cpu_stop(bench_device *d, double *ms) {
    kiln_status s = kiln_backend_synchronize(d->be);
    *ms = bench_now_ms() - ((cpu_ctx *)d->ctx)->t0;
    return s;
}

static kiln_status cpu_copy(bench_device *d, size_t bytes) {
    cpu_ctx *c = d->ctx;
    if (bytes > c->copy_bytes) {
        free(c->copy_src);
        free(c->copy_dst);
        c->copy_src = malloc(bytes);
        c->copy_dst = malloc(bytes);
        c->copy_bytes = c->copy_src && c->copy_dst ? bytes : 0;
        if (!c->copy_bytes) {
            fprintf(stderr, "kiln-bench: out of host memory for a %zu-byte copy\n", bytes);
            return KILN_ERR_OOM;
        }
        fill_pattern(c->copy_src, bytes);
        memset(c->copy_dst, 1, bytes); /* fault the pages in outside the timed copies */
    }
    memcpy(c->copy_dst, c->copy_src, bytes);
    c->sink = c->copy_dst[bytes / 2];
    return KILN_OK;
}

static void cpu_close(bench_device *d) {
    cpu_ctx *c = d->ctx;
    if (c) {
        free(c->flush_buf);
        free(c->copy_src);
        free(c->copy_dst);
        free(c);
    }
    d->ctx = NULL;
}

static kiln_status cpu_open(bench_device *d) {
    kiln_status s = kiln_backend_init("cpu", &d->be);
    if (s != KILN_OK) return s;
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!c) return KILN_ERR_OOM;
    d->ctx = c;
    d->kind = "cpu";
    cpu_model_name(d->name, sizeof d->name);
    d->driver[0] = 0;
    d->sms = (int)sysconf(_SC_NPROCESSORS_ONLN);
    d->cache_bytes = largest_cache();
    if (d->cache_bytes == 0) d->cache_bytes = (size_t)32 << 20;
    c->flush_bytes = 4 * d->cache_bytes;
    c->flush_buf = malloc(c->flush_bytes);
    if (!c->flush_buf) return KILN_ERR_OOM;
    fill_pattern(c->flush_buf, c->flush_bytes);
    d->flush = cpu_flush;
    d->start = cpu_start;
    d->stop = cpu_stop;
    d->copy = cpu_copy;
    d->close = cpu_close;
    return KILN_OK;
}

/* ---- opening, closing ---------------------------------------------------------------------- */

#ifndef KILN_BENCH_CUDA
/* This build has no CUDA timing table: the registry gives the reason ("no CUDA device: this
 * kiln was built without the CUDA backend ..."). */
kiln_status bench_cuda_open(bench_device *d) {
    kiln_status s = kiln_backend_init("cuda", &d->be);
    if (s == KILN_OK) { /* cannot happen in a build without CUDA; refuse rather than mistime */
        kiln_backend_free(d->be);
        d->be = NULL;
        fprintf(stderr, "kiln-bench: built without CUDA timing, cannot time a CUDA backend\n");
        return KILN_ERR_NO_DEVICE;
    }
    return s;
}
#endif

kiln_status bench_device_open(const char *kind, bench_device *d) {
    memset(d, 0, sizeof *d);
    kiln_status s;
    if (!strcmp(kind, "cpu")) s = cpu_open(d);
    else if (!strcmp(kind, "cuda")) s = bench_cuda_open(d);
    else {
        fprintf(stderr, "kiln-bench: unknown device '%s' (cpu, cuda)\n", kind);
        return KILN_ERR_INVALID_ARG;
    }
    if (s != KILN_OK) bench_device_close(d);
    return s;
}

void bench_device_close(bench_device *d) {
    if (d->close) d->close(d);
    if (d->be) kiln_backend_free(d->be);
    d->be = NULL;
    d->close = NULL;
}

/* ---- timing -------------------------------------------------------------------------------- */

double bench_median(double *v, int n, double *min, double *p90) {
    for (int i = 1; i < n; i++) { /* insertion sort: n is a few hundred at most */
        double t = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] > t) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = t;
    }
    if (min) *min = n ? v[0] : NAN;
    if (p90) *p90 = n ? v[(int)((n - 1) * 0.9 + 0.5)] : NAN;
    if (!n) return NAN;
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

kiln_status bench_time(bench_device *d, bench_fn fn, void *ctx, int warmup, int reps,
                       bench_stats *out) {
    double *t = malloc(sizeof(double) * (size_t)(reps > 0 ? reps : 1));
    if (!t) return KILN_ERR_OOM;
    kiln_status s = KILN_OK;
    const double t0 = bench_now_ms();
    for (int i = 0; s == KILN_OK && (i < warmup || (i < 100000 && bench_now_ms() - t0 < d->warmup_ms)); i++) {
        s = fn(ctx);
        if (s == KILN_OK) s = kiln_backend_synchronize(d->be); /* the clock counts finished work */
    }
    int done = 0;
    for (; s == KILN_OK && done < reps; done++) {
        if (!d->warm && (s = d->flush(d)) != KILN_OK) break;
        if ((s = d->start(d)) != KILN_OK) break;
        if ((s = fn(ctx)) != KILN_OK) break;
        if ((s = d->stop(d, &t[done])) != KILN_OK) break;
    }
    out->reps = done;
    out->median_ms = bench_median(t, done, &out->min_ms, &out->p90_ms);
    free(t);
    return s;
}

typedef struct copy_ctx {
    bench_device *d;
    size_t bytes;
} copy_ctx;

static kiln_status copy_once(void *p) {
    copy_ctx *c = p;
    return c->d->copy(c->d, c->bytes);
}

kiln_status bench_measure_copy(bench_device *d, int reps) {
    size_t bytes = 8 * d->cache_bytes;
    if (bytes < ((size_t)256 << 20)) bytes = (size_t)256 << 20;
    if (bytes > ((size_t)2 << 30)) bytes = (size_t)2 << 30;
    copy_ctx c = {d, bytes};
    bench_stats st;
    double w = d->warmup_ms;
    d->warmup_ms = w > 0.0 ? 500.0 : 0.0; /* the first timing of the run: let the clocks rise */
    kiln_status s = bench_time(d, copy_once, &c, 3, reps, &st);
    d->warmup_ms = w;
    if (s != KILN_OK) return s;
    d->copy_gbps = 2.0 * (double)bytes / (st.median_ms * 1e-3) / 1e9;
    fprintf(stderr, "kiln-bench: copy ceiling on %s: %.1f GB/s (%zu MiB copied, read + written, "
            "median of %d, min %.3f ms, median %.3f ms)\n", d->name, d->copy_gbps, bytes >> 20,
            st.reps, st.min_ms, st.median_ms);
    return KILN_OK;
}
