/* bench/bn_bench.c: `kiln-bench bn`: for each BatchNorm config (case, layout, dtype) it runs
 * every chosen implementation (kiln's kernels, auto or a forced variant, cuDNN through kiln's
 * KILN_BN_IMPL_CUDNN path, and the CPU backend on small cases) on the same inputs, in three
 * directions (training forward, inference forward, backward). Each implementation is first
 * validated against the float64 reference (bn_ref.c) on poisoned outputs, and only then
 * timed; a wrong result is reported loudly, never timed, and makes the exit status 1. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "error.h"
#include "half.h"

/* The variants, numbered as in llm.c's dev/cuda: --variant 0,1,2,3,cudnn (4 = cudnn). */
typedef struct impl_spec {
    const char *name;
    kiln_bn_impl impl;
} impl_spec;
static const impl_spec variants[] = {
    {"kiln", KILN_BN_IMPL_KILN},             /* 0: auto, kiln's choice by shape */
    {"kiln-block", KILN_BN_IMPL_KILN_BLOCK}, /* 1 */
    {"kiln-grid", KILN_BN_IMPL_KILN_GRID},   /* 2 */
    {"kiln-multi", KILN_BN_IMPL_KILN_MULTI}, /* 3 */
    {"cudnn", KILN_BN_IMPL_CUDNN},           /* 4 */
};
enum { N_VARIANTS = sizeof variants / sizeof variants[0] };
static const impl_spec cpu_impl = {"cpu", KILN_BN_IMPL_KILN};
static const impl_spec onednn_impl = {"onednn", KILN_BN_IMPL_KILN}; /* oneDNN itself (dnnl_ref.c) */

typedef struct bn_opts {
    const char *device, *json, *md;
    unsigned sets, dtypes, layouts, variants;
    int reps, warmup, cpu_reps;
    bool list, no_skip, warm;
} bn_opts;

/* ---- tensors of one config on one backend ------------------------------------------------- */

typedef struct bn_bufs {
    kiln_tensor *x, *dy, *y, *dx;
    kiln_tensor *gamma, *beta, *mm, *mv;
    kiln_tensor *fsm, *fsi;     /* written by the training forward */
    kiln_tensor *sm, *si;       /* given to the backward: the reference's saved statistics */
    kiln_tensor *dgamma, *dbeta;
} bn_bufs;

#define BN_BUFS_N 14
_Static_assert(sizeof(bn_bufs) == BN_BUFS_N * sizeof(kiln_tensor *), "bn_bufs: 14 pointers");
/* the tensors as an array, for allocating and freeing them in one loop */
static kiln_tensor **bufs_slots(bn_bufs *b) { return (kiln_tensor **)b; }

static void bufs_free(bn_bufs *b) {
    for (int i = 0; i < BN_BUFS_N; i++) kiln_tensor_free(bufs_slots(b)[i]);
    memset(b, 0, sizeof *b);
}

static kiln_status bufs_new(kiln_backend *be, const bench_bn_host *h, bn_bufs *b) {
    memset(b, 0, sizeof *b);
    int64_t shape[4], c = h->c;
    int nd = bench_config_shape(h->cfg, shape);
    kiln_dtype dt = h->cfg->dtype;
    kiln_tensor **t = bufs_slots(b);
    kiln_status s = KILN_OK;
    for (int i = 0; s == KILN_OK && i < BN_BUFS_N; i++)
        s = i < 4 ? kiln_tensor_new(be, dt, nd, shape, NULL, &t[i])
                  : kiln_tensor_new(be, KILN_F32, 1, &c, NULL, &t[i]);
    size_t cb = sizeof(float) * (size_t)c, xb = h->esize * h->numel;
    if (s == KILN_OK) s = kiln_tensor_set(b->x, h->x_raw, xb);
    if (s == KILN_OK) s = kiln_tensor_set(b->dy, h->dy_raw, xb);
    if (s == KILN_OK) s = kiln_tensor_set(b->gamma, h->gamma, cb);
    if (s == KILN_OK) s = kiln_tensor_set(b->beta, h->beta, cb);
    if (s == KILN_OK) s = kiln_tensor_set(b->sm, h->save_mean, cb);
    if (s == KILN_OK) s = kiln_tensor_set(b->si, h->save_invstd, cb);
    if (s != KILN_OK) bufs_free(b);
    return s;
}

/* ---- one call of one direction ------------------------------------------------------------ */

typedef struct bn_call {
    bn_bufs *b;
    kiln_bn_params p;
    int dir;
} bn_call;

static kiln_status bn_call_run(void *ctx) {
    bn_call *k = ctx;
    bn_bufs *b = k->b;
    switch (k->dir) {
    case BENCH_DIR_FWD_TRAIN:
        return kiln_batchnorm_forward_train(b->x, b->gamma, b->beta, b->mm, b->mv, &k->p, b->y,
                                            b->fsm, b->fsi);
    case BENCH_DIR_FWD_INFER:
        return kiln_batchnorm_forward_infer(b->x, b->gamma, b->beta, b->mm, b->mv, &k->p, b->y);
    default:
        return kiln_batchnorm_backward(b->x, b->dy, b->gamma, b->sm, b->si, &k->p, b->dx,
                                       b->dgamma, b->dbeta);
    }
}

/* host scratch for the downloaded outputs of one config */
typedef struct bn_scratch {
    void *raw;
    float *y, *ch[4];
} bn_scratch;

static kiln_status get_float(const kiln_tensor *t, void *raw, float *out) {
    size_t n = (size_t)kiln_tensor_numel(t);
    if (t->dtype == KILN_F32) return kiln_tensor_get(t, out, n * sizeof(float));
    kiln_status s = kiln_tensor_get(t, raw, n * 2);
    const uint16_t *h = raw;
    for (size_t i = 0; s == KILN_OK && i < n; i++)
        out[i] = t->dtype == KILN_F16 ? kiln_f16_to_f32(h[i]) : kiln_bf16_to_f32(h[i]);
    return s;
}

/* Poisons the outputs, resets the moving statistics, runs once and downloads what it wrote. */
static kiln_status validate_run(const bench_bn_host *h, bn_call *k, bn_scratch *sc,
                                bench_bn_out *o) {
    bn_bufs *b = k->b;
    size_t cb = sizeof(float) * (size_t)h->c;
    kiln_tensor *main_out = k->dir == BENCH_DIR_BWD ? b->dx : b->y;
    kiln_tensor *ch[4] = {NULL};
    if (k->dir == BENCH_DIR_FWD_TRAIN) ch[0] = b->fsm, ch[1] = b->fsi, ch[2] = b->mm, ch[3] = b->mv;
    if (k->dir == BENCH_DIR_BWD) ch[0] = b->dgamma, ch[1] = b->dbeta;
    KILN_TRY(kiln_fill(main_out, NAN));
    for (int i = 0; i < 2; i++)
        if (ch[i]) KILN_TRY(kiln_fill(ch[i], NAN));
    KILN_TRY(kiln_tensor_set(b->mm, h->mm, cb));
    KILN_TRY(kiln_tensor_set(b->mv, h->mv, cb));
    k->p.num_batches_tracked = 0;
    KILN_TRY(bn_call_run(k));
    KILN_TRY(kiln_backend_synchronize(main_out->backend));
    KILN_TRY(get_float(main_out, sc->raw, sc->y));
    o->y = sc->y;
    for (int i = 0; i < 4; i++) {
        o->ch[i] = NULL;
        if (!ch[i]) continue;
        KILN_TRY(kiln_tensor_get(ch[i], sc->ch[i], cb));
        o->ch[i] = sc->ch[i];
    }
    return KILN_OK;
}

static void set_message(bench_result *r, const char *fmt, ...) KILN_PRINTF(2, 3);
static void set_message(bench_result *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    for (char *p = r->message; *p; p++)
        if (*p == '|' || *p == '\n') *p = '/'; /* keeps the Markdown table whole */
}

/* A result of im on h in direction dir, not yet run. */
static void result_init(const bench_device *d, const bench_bn_host *h, const impl_spec *im, int dir,
                        bench_result *r) {
    memset(r, 0, sizeof *r);
    r->cfg = h->cfg;
    r->dir = dir;
    r->impl = im->name;
    r->device = d->kind;
    r->err = NAN;
    r->tol = bench_bn_tolerance(h->cfg->dtype);
    r->bytes = bench_bn_bytes(h->cfg, dir);
    r->copy_gbps = d->copy_gbps;
    r->t.median_ms = r->t.min_ms = r->t.p90_ms = NAN;
}

/* Validates, then times, one implementation in one direction. */
static void run_one(bench_device *d, const bench_bn_host *h, bn_bufs *b, const impl_spec *im,
                    int dir, const bn_opts *o, bn_scratch *sc, bench_result *r) {
    result_init(d, h, im, dir, r);
    bn_call k = {b, bench_bn_params(h->cfg, im->impl), dir};
    bench_bn_out out;
    kiln_clear_error();
    kiln_status s = validate_run(h, &k, sc, &out);
    if (s != KILN_OK) {
        r->status = s == KILN_ERR_UNSUPPORTED ? "unsupported" : "error";
        set_message(r, "%s", kiln_last_error());
        return;
    }
    const char *what = "";
    if (!bench_bn_check(h, dir, &out, &r->err, &r->tol, &what)) {
        r->status = "invalid";
        set_message(r, "%s: error %.3g > tolerance %.1g", what, r->err, r->tol);
        return;
    }
    int reps = !strcmp(d->kind, "cpu") && strcmp(o->device, "cpu") ? o->cpu_reps : o->reps;
    s = bench_time(d, bn_call_run, &k, o->warmup, reps, &r->t);
    if (s != KILN_OK) {
        r->status = "error";
        set_message(r, "while timing: %s", kiln_last_error());
        return;
    }
    r->status = "ok";
}

/* ---- options ------------------------------------------------------------------------------ */

static void bn_usage(FILE *f) {
    fprintf(f,
            "usage: kiln-bench bn [--device cpu|cuda] [--cases all|seed|resnet50|pathological|small|resnet20]\n"
            "                     [--dtype f32|f16|bf16|all] [--layout nhwc|nchw|all]\n"
            "                     [--variant all|LIST] [--reps N] [--warmup N] [--cpu-reps N]\n"
            "                     [--json FILE] [--md FILE] [--list] [--no-skip] [--warm]\n"
            "  --device    cuda (default) or cpu; without a usable GPU, cuda prints\n"
            "              \"no CUDA device: <reason>\" and exits 1\n"
            "  --cases     sets, comma-separated (default: all on cuda, small on cpu)\n"
            "  --variant   comma-separated: 0 kiln (auto), 1 kiln-block, 2 kiln-grid, 3 kiln-multi,\n"
            "              4 or cudnn, cpu (the CPU backend, on small cases only); default all\n"
            "              with cpu, oneDNN's batch normalization (impl onednn, f32) runs too, as the\n"
            "              CPU backend's baseline (the ratio column)\n"
            "  --reps      timed repetitions, median reported (default 50 cuda, 10 cpu)\n"
            "  --json      JSON lines to FILE (default: stdout); --md: Markdown table to FILE\n"
            "  --list      print the chosen configs as JSON lines and exit\n"
            "  --no-skip   also time kiln-block where its blocks cannot fill the GPU (fewer channel\n"
            "              tiles than SMs) and the inference forward of every kiln variant (by\n"
            "              default it runs the same kernel on every path and is timed once)\n"
            "  --warm      no cache flush before each timed rep (the default flushes): the data of\n"
            "              the rep before stay in cache as far as they fit, as in a training step\n"
            "              where a layer reads what the layer before it just wrote; the copy\n"
            "              ceiling is still measured flushed\n");
}

/* names of a comma list -> bits; names[i] sets bit i (or the bit in bits[] when given) */
static bool parse_list(const char *opt, const char *v, const char *const *names,
                       const unsigned *bits, int n, unsigned all, unsigned *out) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    *out = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (!strcmp(tok, "all")) {
            *out |= all;
            continue;
        }
        int i = 0;
        while (i < n && strcmp(tok, names[i])) i++;
        if (i == n) {
            fprintf(stderr, "kiln-bench: %s: unknown value '%s'\n", opt, tok);
            return false;
        }
        *out |= bits ? bits[i] : 1u << i;
    }
    return *out != 0;
}

#define VARIANT_CPU (1u << N_VARIANTS)

static bool parse_bn_opts(int argc, char **argv, bn_opts *o) {
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    static const unsigned dtype_bits[] = {1u << KILN_F32, 1u << KILN_F16, 1u << KILN_BF16};
    static const char *const layouts[] = {"nhwc", "nchw"};
    static const unsigned layout_bits[] = {1u << KILN_LAYOUT_NHWC, 1u << KILN_LAYOUT_NCHW};
    static const char *const vnames[] = {"0", "1", "2", "3", "4", "auto", "block", "grid",
                                         "multi", "cudnn", "cpu", "kiln", "kiln-block",
                                         "kiln-grid", "kiln-multi"};
    static const unsigned vbits[] = {1, 2, 4, 8, 16, 1, 2, 4, 8, 16, VARIANT_CPU, 1, 2, 4, 8};
    const char *cases = NULL;
    *o = (bn_opts){.device = "cuda", .dtypes = dtype_bits[0] | dtype_bits[1] | dtype_bits[2],
                   .layouts = 3, .variants = 0x1fu | VARIANT_CPU, .cpu_reps = 10};
    o->reps = o->warmup = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--list")) {
            o->list = true;
            continue;
        }
        if (!strcmp(a, "--no-skip")) {
            o->no_skip = true;
            continue;
        }
        if (!strcmp(a, "--warm")) {
            o->warm = true;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            bn_usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "kiln-bench bn: %s needs a value (or is unknown)\n", a);
            return false;
        }
        i++;
        if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--cases")) cases = v;
        else if (!strcmp(a, "--dtype")) ok = parse_list(a, v, dtypes, dtype_bits, 3, o->dtypes, &o->dtypes);
        else if (!strcmp(a, "--layout")) ok = parse_list(a, v, layouts, layout_bits, 2, o->layouts, &o->layouts);
        else if (!strcmp(a, "--variant"))
            ok = parse_list(a, v, vnames, vbits, (int)(sizeof vbits / sizeof vbits[0]),
                            0x1fu | VARIANT_CPU, &o->variants);
        else if (!strcmp(a, "--reps")) ok = bench_parse_int(a, v, 1, 100000, &o->reps);
        else if (!strcmp(a, "--warmup")) ok = bench_parse_int(a, v, 0, 10000, &o->warmup);
        else if (!strcmp(a, "--cpu-reps")) ok = bench_parse_int(a, v, 1, 100000, &o->cpu_reps);
        else if (!strcmp(a, "--json")) o->json = v;
        else if (!strcmp(a, "--md")) o->md = v;
        else {
            fprintf(stderr, "kiln-bench bn: unknown option %s\n", a);
            ok = false;
        }
        if (!ok) return false;
    }
    bool cpu = !strcmp(o->device, "cpu");
    if (!cpu && strcmp(o->device, "cuda")) {
        fprintf(stderr, "kiln-bench bn: --device is cpu or cuda, not '%s'\n", o->device);
        return false;
    }
    if (bench_parse_sets(cases ? cases : cpu ? "small" : "all", &o->sets) != KILN_OK) return false;
    if (o->reps < 0) o->reps = cpu ? 10 : 50;
    if (o->warmup < 0) o->warmup = cpu ? 2 : 5;
    if (cpu) o->variants = VARIANT_CPU; /* the CPU backend ignores the impl */
    return true;
}

/* ---- the run ------------------------------------------------------------------------------ */

static void list_configs(const bench_config *c, int n) {
    for (int i = 0; i < n; i++) {
        const bench_case *cs = c[i].cs;
        printf("{\"bench\":\"bn-case\",\"case\":\"%s\",\"shape\":", cs->name);
        if (cs->h) printf("[%lld,%lld,%lld,%lld]", (long long)cs->n, (long long)cs->c, (long long)cs->h, (long long)cs->w);
        else printf("[%lld,%lld]", (long long)cs->n, (long long)cs->c);
        printf(",\"layout\":\"%s\",\"dtype\":\"%s\",\"numel\":%lld,\"small\":%s}\n",
               bench_layout_name(&c[i]), kiln_dtype_name(c[i].dtype),
               (long long)bench_config_numel(&c[i]), cs->sets & BENCH_SET_SMALL ? "true" : "false");
    }
}

static uint64_t config_seed(const bench_config *c) { /* FNV-1a of the name, dtype, layout */
    uint64_t h = 1469598103934665603ull;
    for (const char *p = c->cs->name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h ^ ((uint64_t)c->dtype << 40) ^ ((uint64_t)c->layout << 48);
}

static void print_progress(const bench_result *r, int k, int n) {
    fprintf(stderr, "[%d/%d] %-18s %-4s %-4s %-9s %-10s ", k, n, r->cfg->cs->name,
            bench_layout_name(r->cfg), kiln_dtype_name(r->cfg->dtype), bench_dir_name(r->dir), r->impl);
    if (!strcmp(r->status, "ok")) {
        fprintf(stderr, "%9.4f ms %8.1f GB/s %5.1f%% of copy  err %.1e", r->t.median_ms, r->gbps,
                r->pct_copy, r->err);
        if (isfinite(r->speedup_cudnn))
            fprintf(stderr, "  %5.2fx %s", r->speedup_cudnn, strcmp(r->device, "cpu") ? "cuDNN" : "oneDNN");
        fputc('\n', stderr);
    } else
        fprintf(stderr, "%s%s: %s\n", !strcmp(r->status, "invalid") ? "*** INVALID *** " : "",
                r->status, r->message);
}

/* ---- what is not timed (docs/gpu.md: the bn stage fits one 10-minute call) ----------------- */

/* kiln-block's grid: one block per channel tile, counted as batchnorm.cu's shape_plan counts
 * them (channels first: a channel per block; channels last: up to 32 channel vectors of 16
 * bytes per block; the benchmark's tensors are aligned). */
static int64_t block_tiles(const bench_config *c) {
    const bench_case *cs = c->cs;
    if (cs->h && c->layout == KILN_LAYOUT_NCHW) return cs->c;
    const int64_t v = 16 / (int64_t)kiln_dtype_size(c->dtype), cv = cs->c % v == 0 ? cs->c / v : cs->c;
    int64_t l = 1;
    while (l < 32 && l < cv) l <<= 1;
    return (cv + l - 1) / l;
}

/* True (and r filled as "skipped") when im in direction dir is not worth GPU time:
 *  - kiln-block with fewer channel tiles than SMs leaves most of the GPU idle (one block on
 *    ResNet-50's 822 MB tensors: tens of ms a call), so it says nothing about the kernels;
 *  - the inference forward is one elementwise kernel whatever path is forced, so it is timed
 *    once per config, by the first kiln variant (*infer_by remembers which).
 * --no-skip times everything. */
static bool skipped(const bench_device *d, const bench_bn_host *h, const impl_spec *im, int dir,
                    const bn_opts *o, const char **infer_by, bench_result *r) {
    if (o->no_skip || !strcmp(d->kind, "cpu") || im->impl == KILN_BN_IMPL_CUDNN) return false;
    const int64_t tiles = block_tiles(h->cfg);
    if (im->impl == KILN_BN_IMPL_KILN_BLOCK && dir != BENCH_DIR_FWD_INFER && tiles < d->sms) {
        result_init(d, h, im, dir, r);
        r->status = "skipped";
        set_message(r, "%lld channel tiles for %d SMs: a block per tile cannot fill the GPU",
                    (long long)tiles, d->sms);
        return true;
    }
    if (dir != BENCH_DIR_FWD_INFER) return false;
    if (!*infer_by) {
        *infer_by = im->name;
        return false;
    }
    result_init(d, h, im, dir, r);
    r->status = "skipped";
    set_message(r, "inference runs the same kernel on every path: timed once, as %s", *infer_by);
    return true;
}

/* Every implementation of one backend on config h; results appended at r[*nr]. */
static kiln_status run_backend(bench_device *d, const bench_bn_host *h, const impl_spec *const *im,
                               int ni, const bn_opts *o, bn_scratch *sc, bench_result *r, int *nr) {
    if (!ni) return KILN_OK;
    bn_bufs b;
    kiln_status s = bufs_new(d->be, h, &b);
    if (s != KILN_OK) {
        fprintf(stderr, "kiln-bench: %s on %s: %s\n", h->cfg->cs->name, d->kind, kiln_last_error());
        return s;
    }
    const char *infer_by = NULL;
    for (int i = 0; i < ni; i++)
        for (int dir = 0; dir < BENCH_DIR_COUNT; dir++) {
            bench_result *ri = &r[(*nr)++];
            if (!skipped(d, h, im[i], dir, o, &infer_by, ri)) run_one(d, h, &b, im[i], dir, o, sc, ri);
        }
    bufs_free(&b);
    return KILN_OK;
}

/* oneDNN's batch normalization on the same inputs, validated and timed as run_one does; the CPU
 * backend's baseline (the ratio column compares the CPU results with it) */
static void run_onednn(bench_device *d, const bench_bn_host *h, const bn_opts *o, bench_result *r, int *nr) {
    for (int dir = 0; dir < BENCH_DIR_COUNT; dir++) {
        bench_result *ri = &r[(*nr)++];
        result_init(d, h, &onednn_impl, dir, ri);
        bench_dnnl *b;
        bench_bn_out out;
        const char *what = "";
        kiln_clear_error();
        kiln_status s = bench_dnnl_bn_new(h, dir, &b);
        if (s == KILN_OK) s = bench_dnnl_run(b);
        if (s != KILN_OK) {
            ri->status = s == KILN_ERR_UNSUPPORTED ? "unsupported" : "error";
            set_message(ri, "%s", kiln_last_error());
        } else if (bench_dnnl_bn_outputs(b, &out), !bench_bn_check(h, dir, &out, &ri->err, &ri->tol, &what)) {
            ri->status = "invalid";
            set_message(ri, "%s: error %.3g > tolerance %.1g", what, ri->err, ri->tol);
        } else if (bench_time(d, bench_dnnl_run, b, o->warmup, !strcmp(o->device, "cpu") ? o->reps : o->cpu_reps, &ri->t) != KILN_OK) {
            ri->status = "error";
            set_message(ri, "while timing: %s", kiln_last_error());
        } else {
            ri->status = "ok";
        }
        bench_dnnl_free(b);
    }
}

static bool scratch_new(const bench_bn_host *h, bn_scratch *sc) {
    memset(sc, 0, sizeof *sc);
    bool ok = (sc->raw = malloc(h->esize * h->numel)) && (sc->y = malloc(sizeof(float) * h->numel));
    for (int i = 0; i < 4; i++) ok = ok && (sc->ch[i] = malloc(sizeof(float) * (size_t)h->c));
    return ok;
}

static void scratch_free(bn_scratch *sc) {
    free(sc->raw), free(sc->y);
    for (int i = 0; i < 4; i++) free(sc->ch[i]);
}

/* Runs every config; returns the number of failed (invalid or error) results, -1 when the run
 * itself could not go on. */
static int run_configs(bench_device *gpu, bench_device *cpu, const bench_config *cf, int nc,
                       const bn_opts *o, FILE *json, bench_result **out, int *nout) {
    const impl_spec *gpu_impls[N_VARIANTS];
    int ngi = 0, failed = 0, nr = 0;
    for (int v = 0; gpu && v < N_VARIANTS; v++)
        if (o->variants & (1u << v)) gpu_impls[ngi++] = &variants[v];
    const impl_spec *cpu_impls[1] = {&cpu_impl};
    bench_result *r = malloc(sizeof *r * (size_t)(nc * (N_VARIANTS + 2) * BENCH_DIR_COUNT));
    if (!r) return -1;
    for (int i = 0; i < nc; i++) {
        bench_bn_host *h;
        bn_scratch sc;
        if (bench_bn_host_new(&cf[i], config_seed(&cf[i]), &h) != KILN_OK) {
            failed = -1;
            break;
        }
        if (!scratch_new(h, &sc)) {
            scratch_free(&sc);
            bench_bn_host_free(h);
            failed = -1;
            break;
        }
        int first = nr;
        bool with_cpu = cpu && (!gpu || (cf[i].cs->sets & (BENCH_SET_SMALL | BENCH_SET_RESNET20)));
        kiln_status s = gpu ? run_backend(gpu, h, gpu_impls, ngi, o, &sc, r, &nr) : KILN_OK;
        if (s == KILN_OK && with_cpu) s = run_backend(cpu, h, cpu_impls, 1, o, &sc, r, &nr);
        if (s == KILN_OK && with_cpu) run_onednn(cpu, h, o, r, &nr);
        scratch_free(&sc);
        bench_bn_host_free(h);
        bench_results_derive(r + first, nr - first);
        for (int k = first; k < nr; k++) {
            bench_write_result_json(json, &r[k]);
            print_progress(&r[k], i + 1, nc);
            failed += !strcmp(r[k].status, "invalid") || !strcmp(r[k].status, "error");
        }
        if (s != KILN_OK) { /* no memory for the config's tensors: the rest would fail too */
            failed = -1;
            break;
        }
    }
    *out = r;
    *nout = nr;
    return failed;
}

int bench_bn_main(int argc, char **argv) {
    bn_opts o;
    if (!parse_bn_opts(argc, argv, &o)) {
        bn_usage(stderr);
        return 2;
    }
    bench_config *cf;
    int nc;
    if (bench_configs(o.sets, o.dtypes, o.layouts, &cf, &nc) != KILN_OK) return 1;
    if (o.list) {
        list_configs(cf, nc);
        free(cf);
        return 0;
    }
    bench_device gpu, cpu;
    bool on_gpu = !strcmp(o.device, "cuda"), want_cpu = !on_gpu || (o.variants & VARIANT_CPU);
    if (on_gpu && (o.variants & 0x1fu) == 0) {
        fprintf(stderr, "kiln-bench bn: --variant names no GPU implementation\n");
        return 2;
    }
    if (on_gpu && bench_device_open("cuda", &gpu) != KILN_OK) {
        fprintf(stderr, "%s\n", kiln_last_error());
        free(cf);
        return 1;
    }
    if (want_cpu && bench_device_open("cpu", &cpu) != KILN_OK) {
        fprintf(stderr, "kiln-bench: cannot open the CPU backend: %s\n", kiln_last_error());
        return 1;
    }
    const bench_device *devs[2];
    int nd = 0;
    if (on_gpu) devs[nd++] = &gpu;
    if (want_cpu) devs[nd++] = &cpu;
    FILE *json = o.json ? fopen(o.json, "w") : stdout;
    int failed = -1, nr = 0;
    bench_result *r = NULL;
    if (!json) {
        perror(o.json);
    } else if ((!on_gpu || bench_measure_copy(&gpu, 20) == KILN_OK) &&
               (!want_cpu || bench_measure_copy(&cpu, 10) == KILN_OK)) {
        for (int i = 0; i < nd; i++) bench_write_meta(json, "bn", devs[i]);
        gpu.warm = cpu.warm = o.warm; /* after the copy ceiling, which stays flushed */
        failed = run_configs(on_gpu ? &gpu : NULL, want_cpu ? &cpu : NULL, cf, nc, &o, json, &r, &nr);
    } else {
        fprintf(stderr, "kiln-bench: measuring the copy ceiling failed: %s\n", kiln_last_error());
    }
    if (json && json != stdout) fclose(json);
    if (o.md && r) {
        FILE *md = fopen(o.md, "w");
        if (md) {
            bench_write_markdown(md, devs, nd, r, nr);
            fclose(md);
        } else {
            perror(o.md);
            failed = failed < 0 ? failed : failed + 1;
        }
    }
    if (failed) fprintf(stderr, "kiln-bench bn: %s\n", failed < 0 ? "the run stopped early" : "*** some implementations FAILED validation or errored (see above) ***");
    free(r);
    free(cf);
    if (on_gpu) bench_device_close(&gpu);
    if (want_cpu) bench_device_close(&cpu);
    return failed ? 1 : 0;
}
