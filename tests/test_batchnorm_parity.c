/* test_batchnorm_parity.c: kiln's CUDA batch norm against the CPU reference, one parity row per
 * (mode, layout, dtype, shape, options, forced path), every output element checked. The rows
 * are generated (the same list in every process: Criterion passes row indices only).
 *
 * Shapes (N, H, W, C), each as NHWC, NCHW and per-feature (N*H*W, C): the edge cases of
 * docs/batchnorm.md (n = 1, H*W = 1, C not a multiple of 32, odd sizes, 2048 channels, a 1e4
 * offset, more than 2^24 values per channel) and sizes that take each kernel path (a block per
 * channel tile, one cooperative kernel, three kernels).
 * Tolerances: f32 outputs 1e-5 (normalised error, harness.h): the statistics are f32 Welford
 * merged in double against the CPU's double two-pass; y and dx are one f32 FMA chain from f32
 * coefficients (~1e-7 each). f16/bf16 outputs: the CPU runs on f32 copies of the same values and
 * each CUDA element must lie within half an ulp of its dtype plus 1e-5 of the output's scale of
 * that f32 result (kt_expect_rounded): one rounding of a result as accurate as the f32 one.
 * `cpu_self` runs the rows up to 64K elements on two CPU backends, to show each row sound. */
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

enum { M_FWD_TRAIN, M_FWD_FROZEN, M_FWD_INFER, M_BWD, M_BWD_FROZEN, M_BWD_FROZEN_DX, M_BWD_INFER, M_COUNT };
static const char *const mode_names[M_COUNT] = {"fwd_train", "fwd_frozen", "fwd_infer", "bwd",
                                                "bwd_frozen", "bwd_frozen_dx", "bwd_infer"};
/* a row: .bn_call the mode, .bn its parameters (row_params: the option bits below, the path,
 * the layout) */
#define OPT_TORCH 1
#define OPT_NO_CENTER 2
#define OPT_NO_SCALE 4
#define OPT_CUMULATIVE 8

static kiln_bn_params row_params(int mode, int opts, kiln_bn_impl impl, kiln_layout layout) {
    kiln_bn_params p = (opts & OPT_TORCH) ? kiln_bn_params_torch() : kiln_bn_params_keras();
    p.center = !(opts & OPT_NO_CENTER);
    p.scale = !(opts & OPT_NO_SCALE);
    p.cumulative = (opts & OPT_CUMULATIVE) != 0;
    p.num_batches_tracked = 3;
    p.impl = impl;
    p.layout = layout;
    p.trainable = mode != M_FWD_FROZEN && mode != M_BWD_FROZEN && mode != M_BWD_FROZEN_DX;
    return p;
}

/* in: x, gamma, beta, moving_mean, moving_var; out: y, save_mean, save_invstd, and (2, C) for
 * the updated moving mean and variance (copied from the inputs, then updated in place) */
static kiln_status run_forward(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    kiln_bn_params p = c->bn; /* a copy: the training forward counts its batches in it */
    const kiln_tensor *g = p.scale ? in[1] : NULL, *b = p.center ? in[2] : NULL;
    if (c->bn_call == M_FWD_INFER) return kiln_batchnorm_forward_infer(in[0], g, b, in[3], in[4], &p, out[0]);
    int64_t C = kiln_tensor_numel(in[1]);
    kiln_tensor *mm = NULL, *mv = NULL;
    kiln_status s = kiln_tensor_view(out[3], 0, 1, &C, &mm);
    if (s == KILN_OK) s = kiln_tensor_view(out[3], C, 1, &C, &mv);
    if (s == KILN_OK) s = kiln_copy(in[3], mm);
    if (s == KILN_OK) s = kiln_copy(in[4], mv);
    if (s == KILN_OK) s = kiln_batchnorm_forward_train(in[0], g, b, mm, mv, &p, out[0], out[1], out[2]);
    kiln_tensor_free(mm);
    kiln_tensor_free(mv);
    return s;
}

/* in: x, dy, gamma, save_mean, save_invstd; out: dx, dgamma, dbeta (dx alone: M_BWD_FROZEN_DX)
 * backward_infer: in: dy, gamma, moving_var; out: dx */
static kiln_status run_backward(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    kiln_bn_params p = c->bn;
    if (c->bn_call == M_BWD_INFER) return kiln_batchnorm_backward_infer(in[0], p.scale ? in[1] : NULL, in[2], &p, out[0]);
    const kiln_tensor *g = p.scale ? in[2] : NULL;
    if (c->bn_call == M_BWD_FROZEN_DX) return kiln_batchnorm_backward(in[0], in[1], g, in[3], in[4], &p, out[0], NULL, NULL);
    return kiln_batchnorm_backward(in[0], in[1], g, in[3], in[4], &p, out[0], out[1], out[2]);
}

/* ---- the row list ---- */

typedef struct shape_def {
    int64_t n, h, w, c;
    double lo, hi;   /* x's range */
    bool f32_only;   /* offsets and huge sizes: f32 rows only */
    bool few_modes;  /* huge: the training forward (both conventions) and backward only */
} shape_def;

static const shape_def shape_defs[] = {
    {2, 3, 3, 5, -2, 3, false, false},
    {1, 1, 1, 7, -2, 3, false, false},         /* n = 1 per channel */
    {16, 1, 1, 64, -1, 2, false, false},       /* H*W = 1 */
    {4, 7, 7, 37, -3, 1, false, false},        /* C not a multiple of 32, odd H*W */
    {8, 14, 14, 128, -2, 2, false, false},     /* 16-byte vectors on both layouts */
    {3, 5, 9, 3, 0, 1, false, false},          /* RGB-like */
    {32, 7, 7, 2048, -2, 2, false, false},     /* many channels: a block per channel tile */
    {64, 28, 28, 64, -2, 2, false, false},     /* 3.2M: the cooperative kernel */
    {32, 16, 16, 64, -1, 1, false, false},
    {16, 9, 9, 48, 1e4 - 1.7320508, 1e4 + 1.7320508, true, false}, /* mean 1e4, std 1 */
    {64, 56, 56, 64, -2, 2, true, true},       /* 51 MB: more than the chip holds */
    {(1 << 24) + (1 << 20) + 1, 1, 1, 1, 99, 101, true, true}, /* n > 2^24, one channel */
    {3, 5592406, 1, 2, -1, 1, true, true},     /* n > 2^24 per channel, two channels */
};
#define N_SHAPES ((int)(sizeof shape_defs / sizeof shape_defs[0]))

static const kiln_dtype dtypes[3] = {KILN_F32, KILN_F16, KILN_BF16};

#define MAX_ROWS 1200
#define MAX_GROUPS 128
static kt_case rows[MAX_ROWS];
static char names[MAX_ROWS][112];
static int n_rows;
/* rows [group_start[g], group_start[g + 1]) share a shape: one Criterion test each
 * (a process per row would cost more than the rows themselves) */
static int group_start[MAX_GROUPS + 1], n_groups;

static void new_group(void) {
    cr_assert(n_groups < MAX_GROUPS, "too many groups");
    group_start[n_groups++] = n_rows;
}

static kt_tspec spec(kiln_dtype dt, int ndim, const int64_t *shape, double lo, double hi) {
    kt_tspec t = {dt, ndim, {1, 1, 1, 1}, lo, hi};
    for (int d = 0; d < ndim; d++) t.shape[d] = shape[d];
    return t;
}

static void add_row(const shape_def *s, int layout_kind, kiln_dtype dt, int mode, int opts, int impl) {
    cr_assert(n_rows < MAX_ROWS, "too many rows");
    kt_case *c = &rows[n_rows];
    int64_t shape[4];
    int ndim = 4;
    if (layout_kind == 0) { shape[0] = s->n; shape[1] = s->h; shape[2] = s->w; shape[3] = s->c; }
    else if (layout_kind == 1) { shape[0] = s->n; shape[1] = s->c; shape[2] = s->h; shape[3] = s->w; }
    else { ndim = 2; shape[0] = s->n * s->h * s->w; shape[1] = s->c; }
    int64_t C = s->c, cs[2] = {2, s->c};
    double mid = (s->lo + s->hi) / 2;
    kt_tspec x = spec(dt, ndim, shape, s->lo, s->hi), dy = spec(dt, ndim, shape, -1, 1);
    kt_tspec ch = spec(KILN_F32, 1, &C, 0.5, 1.5), sh = spec(KILN_F32, 1, &C, -1, 1);
    kt_tspec mean = spec(KILN_F32, 1, &C, mid - 0.5, mid + 0.5), var = spec(KILN_F32, 1, &C, 0.5, 2);
    kt_tspec y = spec(dt, ndim, shape, 0, 0), pc = spec(KILN_F32, 1, &C, 0, 0), mv2 = spec(KILN_F32, 2, cs, 0, 0);
    kiln_layout layout = layout_kind == 1 ? KILN_LAYOUT_NCHW : KILN_LAYOUT_NHWC;
    *c = (kt_case){.tol = 1e-5, .seed = (uint64_t)(1000 + n_rows), .ref_f32 = dt != KILN_F32,
                   .bn_call = mode, .bn = row_params(mode, opts, (kiln_bn_impl)impl, layout)};
    if (mode <= M_FWD_INFER) {
        c->run = run_forward;
        c->n_in = 5;
        c->in[0] = x; c->in[1] = ch; c->in[2] = sh; c->in[3] = mean; c->in[4] = var;
        c->n_out = mode == M_FWD_INFER ? 1 : 4;
        c->out[0] = y; c->out[1] = pc; c->out[2] = pc; c->out[3] = mv2;
    } else if (mode == M_BWD_INFER) {
        c->run = run_backward;
        c->n_in = 3;
        c->in[0] = dy; c->in[1] = ch; c->in[2] = var;
        c->n_out = 1;
        c->out[0] = y;
    } else {
        c->run = run_backward;
        c->n_in = 5;
        c->in[0] = x; c->in[1] = dy; c->in[2] = ch; c->in[3] = mean; c->in[4] = var;
        c->n_out = mode == M_BWD_FROZEN_DX ? 1 : 3;
        c->out[0] = y; c->out[1] = pc; c->out[2] = pc;
    }
    static const char *const lay[3] = {"NHWC", "NCHW", "dense"};
    static const char *const impls[KILN_BN_IMPL_COUNT] = {"auto", "cudnn", "block", "grid", "multi"};
    char sz[48];
    if (ndim == 4) snprintf(sz, sizeof sz, "(%lld,%lld,%lld,%lld)", (long long)shape[0], (long long)shape[1], (long long)shape[2], (long long)shape[3]);
    else snprintf(sz, sizeof sz, "(%lld,%lld)", (long long)shape[0], (long long)shape[1]);
    snprintf(names[n_rows], sizeof names[0], "%s %s %s %s%s%s%s%s %s", mode_names[mode], lay[layout_kind], sz,
             kiln_dtype_name(dt), opts & OPT_TORCH ? " torch" : " keras", opts & OPT_NO_CENTER ? " -center" : "",
             opts & OPT_NO_SCALE ? " -scale" : "", opts & OPT_CUMULATIVE ? " cumulative" : "", impls[impl]);
    c->name = names[n_rows];
    n_rows++;
}

static void build_rows(void) {
    if (n_rows) return;
    int k = 0;
    for (int si = 0; si < N_SHAPES; si++) {
        new_group();
        for (int lk = 0; lk < 3; lk++) {
            for (int di = 0; di < 3; di++) {
                const shape_def *s = &shape_defs[si];
                if (s->f32_only && di) continue;
                for (int mode = 0; mode < M_COUNT; mode++) {
                    if (s->few_modes && mode != M_FWD_TRAIN && mode != M_BWD) continue;
                    /* options rotate over the rows: full, no beta, no gamma, cumulative average */
                    int v = k++ % 4;
                    int opts = v == 1 ? OPT_NO_CENTER : v == 2 ? OPT_NO_SCALE : v == 3 ? OPT_TORCH | OPT_CUMULATIVE : 0;
                    if (mode == M_FWD_TRAIN) { /* both conventions for the training forward */
                        add_row(s, lk, dtypes[di], mode, opts & ~OPT_TORCH & ~OPT_CUMULATIVE, KILN_BN_IMPL_KILN);
                        add_row(s, lk, dtypes[di], mode, opts | OPT_TORCH, KILN_BN_IMPL_KILN);
                    } else {
                        add_row(s, lk, dtypes[di], mode, opts, KILN_BN_IMPL_KILN);
                    }
                }
            }
        }
    }
    /* every kernel path forced, on shapes each path can take */
    static const int forced_shapes[] = {3, 4, 8};
    static const int forced[] = {KILN_BN_IMPL_KILN_BLOCK, KILN_BN_IMPL_KILN_GRID, KILN_BN_IMPL_KILN_MULTI};
    for (int fs = 0; fs < 3; fs++) {
        new_group();
        for (int lk = 0; lk < 3; lk++)
            for (int di = 0; di < 3; di += 2)
                for (int fi = 0; fi < 3; fi++) {
                    add_row(&shape_defs[forced_shapes[fs]], lk, dtypes[di], M_FWD_TRAIN, fi == 1 ? OPT_TORCH : 0, forced[fi]);
                    add_row(&shape_defs[forced_shapes[fs]], lk, dtypes[di], M_BWD, 0, forced[fi]);
                }
    }
    group_start[n_groups] = n_rows;
}

static int64_t row_numel(const kt_case *c) {
    int64_t n = 1;
    for (int d = 0; d < c->in[0].ndim; d++) n *= c->in[0].shape[d];
    return n;
}

static size_t group_index[MAX_GROUPS];

static struct criterion_test_params bn_params(void) {
    build_rows();
    for (int g = 0; g < n_groups; g++) group_index[g] = (size_t)g;
    return cr_make_param_array(size_t, group_index, (size_t)n_groups);
}

ParameterizedTestParameters(bn_parity, cuda_vs_cpu) { return bn_params(); }
ParameterizedTest(size_t *g, bn_parity, cuda_vs_cpu, .timeout = 600) {
    build_rows();
    kt_cuda_or_skip();
    for (int k = group_start[*g]; k < group_start[*g + 1]; k++) (void)kt_parity_try(&rows[k]);
}

ParameterizedTestParameters(bn_parity, cpu_self) { return bn_params(); }
ParameterizedTest(size_t *g, bn_parity, cpu_self) {
    build_rows();
    if (row_numel(&rows[group_start[*g]]) > (1 << 16))
        cr_skip_test("%s: over 64K elements, run on CUDA only", rows[group_start[*g]].name);
    for (int k = group_start[*g]; k < group_start[*g + 1]; k++)
        kt_parity_run_between(&rows[k], kt_cpu(), kt_cpu_second());
}

Test(bn_parity, table_covers_every_mode_layout_dtype) {
    build_rows();
    bool seen[M_COUNT][3][3] = {{{false}}};
    for (int k = 0; k < n_rows; k++) {
        const kt_case *c = &rows[k];
        int lk = c->in[0].ndim == 2 ? 2 : c->bn.layout == KILN_LAYOUT_NCHW ? 1 : 0;
        int di = c->in[0].dtype == KILN_F32 ? 0 : c->in[0].dtype == KILN_F16 ? 1 : 2;
        seen[c->bn_call][lk][di] = true;
    }
    for (int m = 0; m < M_COUNT; m++)
        for (int l = 0; l < 3; l++)
            for (int d = 0; d < 3; d++) cr_expect(seen[m][l][d], "no row for mode %s layout %d dtype %d", mode_names[m], l, d);
}
