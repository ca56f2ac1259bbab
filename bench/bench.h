/* bench/bench.h: what the files of kiln-bench share (internal to bench/).
 *
 *   device.c / device_cuda.cu  the timing device: a small function table (host clock and an
 *                              LLC flush on the CPU; CUDA events, an L2 flush and the
 *                              device-to-device copy ceiling on a GPU), so that the C code
 *                              never tests for CUDA;
 *   cases.c                    the BatchNorm cases (shapes, layouts, dtypes, sets);
 *   bn_ref.c                   inputs, the float64 reference and the validation;
 *   bn_bench.c                 the `bn` subcommand;
 *   train_bench.c              the `train` subcommand;
 *   report.c                   medians, JSON lines, the Markdown table and its summary.
 * docs/performance.md explains what is measured and why. */
#ifndef KILN_BENCH_H
#define KILN_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/kiln.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the timing device -------------------------------------------------------------------- */

typedef struct bench_device bench_device;
struct bench_device {
    kiln_backend *be;
    const char *kind;         /* "cpu" or "cuda" */
    char name[400];           /* the CPU model or the GPU's name, with its size */
    char driver[128];         /* GPU: driver, runtime and cuDNN versions; CPU: "" */
    size_t cache_bytes;       /* the cache a flush must defeat: the GPU's L2, the CPU's LLC */
    int sms;                  /* GPU multiprocessors, CPU cores */
    double copy_gbps;         /* the measured copy ceiling, bytes read + written; 0 = not yet */
    double warmup_ms;         /* warm-up goes on, call by call, at least this long (clocks up) */
    bool warm;                /* no flush before a timed rep: the last rep's data stay cached */
    void *ctx;
    /* evicts the cache: reads a buffer several times its size (reads, so that no dirty line
     * is left to be written back inside the next timed region) */
    kiln_status (*flush)(bench_device *d);
    /* marks the start of a timed region (queued on the backend's stream on a GPU) */
    kiln_status (*start)(bench_device *d);
    /* waits for the queued work and returns milliseconds since start */
    kiln_status (*stop)(bench_device *d, double *ms);
    /* one copy of `bytes` between two buffers of the device (the ceiling's probe), queued
     * between start and stop by the caller */
    kiln_status (*copy)(bench_device *d, size_t bytes);
    void (*close)(bench_device *d);
};

/* Opens "cpu" or "cuda". Without a usable GPU (or in a build without CUDA) it returns
 * KILN_ERR_NO_DEVICE and kiln_last_error() says "no CUDA device: <reason>". */
kiln_status bench_device_open(const char *kind, bench_device *d);
void bench_device_close(bench_device *d);
/* Measures the copy ceiling (d->copy_gbps): the median of `reps` copies of a buffer of at
 * least 8 times the cache, counting bytes read plus bytes written. */
kiln_status bench_measure_copy(bench_device *d, int reps);

/* The host timer and flush, shared by the CPU device and the CPU side of a GPU run. */
double bench_now_ms(void);
/* Opened by device_cuda.cu (only in a CUDA build). */
kiln_status bench_cuda_open(bench_device *d);

/* ---- timing ------------------------------------------------------------------------------- */

typedef struct bench_stats {
    double median_ms, min_ms, p90_ms;
    int reps;
} bench_stats;

/* Runs fn(ctx) `warmup` times and for at least d->warmup_ms (waiting for each call), then
 * `reps` times each behind a flush and between start and stop; the order statistics of the
 * reps go to *out. */
typedef kiln_status (*bench_fn)(void *ctx);
kiln_status bench_time(bench_device *d, bench_fn fn, void *ctx, int warmup, int reps,
                       bench_stats *out);

/* Sorts v (n values) and returns its median; min and the 90th percentile too when asked. */
double bench_median(double *v, int n, double *min, double *p90);

/* ---- BatchNorm cases ---------------------------------------------------------------------- */

enum { BENCH_DIR_FWD_TRAIN = 0, BENCH_DIR_FWD_INFER, BENCH_DIR_BWD, BENCH_DIR_COUNT };
const char *bench_dir_name(int dir); /* "fwd_train", "fwd_infer", "bwd" */

/* Case sets, as bits: a case belongs to one or more. */
enum {
    BENCH_SET_SEED = 1,
    BENCH_SET_RESNET50 = 2,
    BENCH_SET_PATHOLOGICAL = 4,
    BENCH_SET_SMALL = 8, /* small enough for the CPU backend */
    BENCH_SET_RESNET20 = 16, /* ResNet-20 at batch 128: the CPU training benchmark's BN layers */
};

/* One shape: (N, C) when h = 0, else the logical (N, C, H, W), laid out NHWC or NCHW. */
typedef struct bench_case {
    const char *name;
    int64_t n, c, h, w;
    unsigned sets;
} bench_case;

/* One run of a case: a shape in one layout and one dtype. */
typedef struct bench_config {
    const bench_case *cs;
    kiln_layout layout;   /* ignored for (N, C) */
    kiln_dtype dtype;
} bench_config;

/* Parses "all", "seed", "resnet50", "pathological", "small" (comma-separated allowed). */
kiln_status bench_parse_sets(const char *s, unsigned *sets);
/* The configs of the chosen sets, dtypes (bits of 1 << kiln_dtype) and layouts (bits of
 * 1 << kiln_layout), f32 first; malloc'ed, *n of them. (N, C) cases appear once, with
 * layout NHWC. */
kiln_status bench_configs(unsigned sets, unsigned dtypes, unsigned layouts, bench_config **out,
                          int *n);
const char *bench_layout_name(const bench_config *c); /* "nhwc", "nchw", or "nc" for (N, C) */
int64_t bench_config_numel(const bench_config *c);
/* The tensor shape: (N, C), (N, H, W, C) or (N, C, H, W); returns ndim. */
int bench_config_shape(const bench_config *c, int64_t shape[4]);
/* "(256, 64, 112, 112)" in the logical N, C, H, W order */
char *bench_config_shape_str(const bench_config *c, char *buf, size_t n);

/* ---- the float64 reference (bn_ref.c) ------------------------------------------------------ */

/* Host copies of one config's inputs and the reference's per-channel results. */
typedef struct bench_bn_host {
    const bench_config *cfg;
    int64_t outer, c, inner, n;     /* the (outer, C, inner) view, n = outer * inner */
    size_t esize, numel;
    void *x_raw, *dy_raw;           /* in the config's dtype, for upload */
    float *x, *dy;                  /* the same values as float */
    float *gamma, *beta, *mm, *mv;  /* per channel inputs (moving statistics before a step) */
    /* the reference (double, per channel) */
    double *mean, *var, *invstd;    /* batch statistics of x */
    float *save_mean, *save_invstd; /* what the backward pass is given (float of the above) */
    double *mm_new, *mv_new;        /* the moving statistics after one training step */
    double *dgamma, *dbeta;         /* from dy, x and save_mean, save_invstd */
    double *coef[3];                /* scratch: per channel coefficients of one check */
} bench_bn_host;

/* The BN parameters every implementation runs with (PyTorch's: eps 1e-5, momentum 0.1,
 * unbiased moving variance) in the config's layout, and the implementation `impl`. */
kiln_bn_params bench_bn_params(const bench_config *cfg, kiln_bn_impl impl);

/* Draws the inputs (seeded by the config, never zeros) and computes the reference. */
kiln_status bench_bn_host_new(const bench_config *cfg, uint64_t seed, bench_bn_host **out);
void bench_bn_host_free(bench_bn_host *h);

/* Outputs of one direction downloaded as float; NULL where not produced. */
typedef struct bench_bn_out {
    float *y;          /* y (fwd) or dx (bwd), numel values */
    float *ch[4];      /* fwd_train: save_mean, save_invstd, moving_mean, moving_var;
                          bwd: dgamma, dbeta */
} bench_bn_out;

/* Checks `o` against the reference for direction `dir`, output by output, with the error
 * max |got - want| / max |want|; a NaN or an infinity anywhere (the outputs are poisoned with
 * NaN before the run) gives +inf. Returns whether every output is within its tolerance; *err,
 * *tol and *what describe the output closest to (or furthest past) its tolerance. */
bool bench_bn_check(const bench_bn_host *h, int dir, const bench_bn_out *o, double *err,
                    double *tol, const char **what);
/* The tolerance of an output of dtype t (y, dx in x's dtype; the per-channel statistics are
 * f32). The per-channel sums of the backward pass (dgamma, dbeta: sums of products that mostly
 * cancel) get BENCH_SUM_TOL: a float accumulator is not wrong, only less exact. */
double bench_bn_tolerance(kiln_dtype t);
#define BENCH_SUM_TOL 1e-3

/* ---- reports (report.c) ------------------------------------------------------------------- */

/* One measured (or refused) implementation of one config and direction. */
typedef struct bench_result {
    const bench_config *cfg;
    int dir;
    const char *impl;     /* "kiln", "kiln-block", "kiln-grid", "kiln-multi", "cudnn", "cpu" */
    const char *device;   /* "cuda" or "cpu" */
    const char *status;   /* "ok", "unsupported", "invalid", "error" */
    char message[200];    /* why, when not ok */
    bench_stats t;
    double err;           /* the validation error (normalised), NaN when not run */
    double tol;           /* the largest error accepted */
    double bytes;         /* ideal bytes moved */
    double copy_gbps;     /* the copy ceiling of the device it ran on */
    double gbps, pct_copy, speedup_cudnn; /* NaN when not defined */
} bench_result;

/* The ideal bytes of a direction: x read once and y written once (fwd_train, fwd_infer);
 * x and dy read once and dx written once (bwd). Per-channel vectors are not counted. */
double bench_bn_bytes(const bench_config *c, int dir);

/* Fills gbps, pct_copy from the time and the ceiling, and speedup_cudnn from the cuDNN result
 * of the same config and direction among r[0..n). */
void bench_results_derive(bench_result *r, int n);

/* Machine-readable: one line of run metadata, then one line per result. */
void bench_write_meta(FILE *f, const char *bench, const bench_device *d);
void bench_write_result_json(FILE *f, const bench_result *r);
/* The Markdown table: a header (date, devices, ceilings, command, commit), one row per result,
 * then geometric means per direction, layout and implementation. devs: the nd devices used. */
void bench_write_markdown(FILE *f, const bench_device *const *devs, int nd,
                          const bench_result *r, int n);
/* A JSON string (quotes included) */
void bench_json_str(FILE *f, const char *s);
/* A number, or null for NaN and infinities */
void bench_json_num(FILE *f, double v);
/* The command line, recorded once by main and written into every result file. */
void bench_set_command(int argc, char **argv);
const char *bench_command(void);

/* The commit the results belong to: $KILN_COMMIT, else "unknown". */
const char *bench_commit(void);
/* "2025-01-31T12:00:00Z" */
void bench_utc_now(char *buf, size_t n);

/* ---- oneDNN baselines (dnnl_ref.c; KILN_ERR_UNSUPPORTED in a build without oneDNN) -------- */
typedef struct bench_dnnl bench_dnnl;
/* oneDNN's batch normalization in direction dir on h's f32 inputs (impl "onednn") */
kiln_status bench_dnnl_bn_new(const bench_bn_host *h, int dir, bench_dnnl **out);
/* what the last run wrote, as bench_bn_check reads it */
void bench_dnnl_bn_outputs(bench_dnnl *d, bench_bn_out *o);
/* oneDNN matmul C (m, n) = op(A) op(B), row-major, with its own operands (zeros) */
kiln_status bench_dnnl_gemm_new(int m, int n, int k, bool ta, bool tb, bench_dnnl **out);
void bench_dnnl_gemm_buffers(bench_dnnl *d, float **a, float **b, float **c);
kiln_status bench_dnnl_run(void *ctx); /* a bench_fn: one execution */
void bench_dnnl_free(bench_dnnl *d);

/* ---- subcommands -------------------------------------------------------------------------- */
int bench_bn_main(int argc, char **argv);
int bench_train_main(int argc, char **argv);
int bench_conv_main(int argc, char **argv); /* conv_bench.c: Conv2D paths and GEMMs on the CPU */

/* Parses a positive integer option value; prints the error and returns false when bad. */
bool bench_parse_int(const char *opt, const char *v, int lo, int hi, int *out);

#ifdef __cplusplus
}
#endif
#endif
