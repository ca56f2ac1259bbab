/* test_bn_relu.c: batch norm with a fused ReLU (kiln_bn_params.relu, issue 12) against batch
 * norm then the ReLU, bit for bit (NaN matching NaN), and the model's BN -> ReLU fusion
 * (src/model/fuse.c) against the same models with KILN_FUSE=0.
 *
 * Op level, every element: the training forward and backward, the frozen layer's forward and
 * backward (the moving statistics: outputs of exactly 0 and +inf occur there), and the inference
 * forward; f32, f16 and bf16; rows (dense, NHWC) and runs (NCHW), small and above the threaded
 * size; clean inputs and inputs with NaN and infinities in x and dy; both mask rules
 * (KILN_BN_RELU: kiln_relu_backward's; KILN_BN_RELU_ACT: kiln_act_backward's for the ReLU
 * layer); the fused loops at every instruction-set level against the unfused ones. For f32 the
 * reference ReLU is kiln's own op (kiln_relu, kiln_act, and their backwards); f16 and bf16 have
 * no ReLU op, so their reference applies the same rule on the host.
 *
 * Model level: seed-cnn (no BN -> ReLU: nothing fuses), resnet20 (ten BN -> Activation('relu'))
 * and a small model with a ReLU layer, a frozen BN and per-feature BN, two Adam steps with and
 * without fusion: the same bits in every weight and in predict's outputs. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "fusion_check.h"
#include "harness.h"
#include "model_impl.h"
#include "simd.h"

#define OK(call) cr_assert_eq((call), KILN_OK, "%s", kiln_last_error())

/* ---- op level ---- */

typedef struct shape_case {
    const char *name;
    int ndim;
    int64_t shape[4];
    kiln_layout layout;
} shape_case;

static const shape_case shapes[] = {
    {"dense (33, 37)", 2, {33, 37}, KILN_LAYOUT_NHWC},
    {"NHWC (2, 5, 7, 33)", 4, {2, 5, 7, 33}, KILN_LAYOUT_NHWC},
    {"NCHW (2, 33, 5, 7)", 4, {2, 33, 5, 7}, KILN_LAYOUT_NCHW},
    {"NHWC threaded (8, 16, 16, 72)", 4, {8, 16, 16, 72}, KILN_LAYOUT_NHWC},
    {"NCHW threaded (4, 40, 30, 30)", 4, {4, 40, 30, 30}, KILN_LAYOUT_NCHW},
};

enum { MODE_TRAIN, MODE_FROZEN, MODE_INFER };
static const char *const mode_names[] = {"train", "frozen", "infer"};

static int64_t channels(const shape_case *s) {
    return s->ndim == 2 || s->layout == KILN_LAYOUT_NHWC ? s->shape[s->ndim - 1] : s->shape[1];
}

static int64_t channel_at(const shape_case *s, int64_t k) {
    if (s->ndim == 2 || s->layout == KILN_LAYOUT_NHWC) return k % s->shape[s->ndim - 1];
    return (k / (s->shape[2] * s->shape[3])) % s->shape[1];
}

/* element k of a tensor's host bytes as float, and back (exact for a value of the dtype) */
static float get_el(const void *h, kiln_dtype dt, int64_t k) {
    if (dt == KILN_F16) return kiln_f16_to_f32(((const uint16_t *)h)[k]);
    if (dt == KILN_BF16) return kiln_bf16_to_f32(((const uint16_t *)h)[k]);
    return ((const float *)h)[k];
}

static void set_el(void *h, kiln_dtype dt, int64_t k, float v) {
    if (dt == KILN_F16) ((uint16_t *)h)[k] = kiln_f32_to_f16(v);
    else if (dt == KILN_BF16) ((uint16_t *)h)[k] = kiln_f32_to_bf16(v);
    else ((float *)h)[k] = v;
}

/* the same bits element for element, or NaN on both sides */
static void expect_same(const char *what, const kiln_tensor *a, const kiln_tensor *b) {
    int64_t n = kiln_tensor_numel(a);
    size_t es = kiln_dtype_size(a->dtype);
    unsigned char *ha = kt_get_bytes(a), *hb = kt_get_bytes(b);
    int64_t bad = 0, first = -1;
    for (int64_t k = 0; k < n; k++) {
        float va = get_el(ha, a->dtype, k), vb = get_el(hb, b->dtype, k);
        if (memcmp(ha + (size_t)k * es, hb + (size_t)k * es, es) != 0 && !(isnan(va) && isnan(vb))) {
            if (first < 0) first = k;
            bad++;
        }
    }
    if (bad)
        cr_expect_fail("%s: %lld of %lld elements differ, the first [%lld]: fused %.9g, unfused %.9g", what,
                       (long long)bad, (long long)n, (long long)first, (double)get_el(ha, a->dtype, first),
                       (double)get_el(hb, b->dtype, first));
    free(ha);
    free(hb);
}

/* the inputs of one case */
typedef struct bn_in {
    const shape_case *s;
    kiln_dtype dt;
    int mode;
    kiln_tensor *x, *dy, *gamma, *beta, *mm, *mv;
} bn_in;

/* the outputs of one run */
typedef struct bn_out {
    kiln_tensor *y, *sm, *sv, *mm, *mv, *dx, *dg, *db;
} bn_out;

static kiln_tensor *like(const kiln_tensor *t) { return kt_new(kt_cpu(), t->dtype, t->ndim, t->shape); }

/* x and dy with NaN and infinities: x NaN in channel 1, +inf in 2, +inf and -inf in 3 (NaN
 * statistics when training; +inf and 0 outputs when frozen), x equal to the moving mean in
 * channel 0 (an output of exactly 0 when frozen, beta 0 there), dy NaN in channel 4 and +inf in
 * channel 5 */
static void add_specials(bn_in *in) {
    const shape_case *s = in->s;
    int64_t n = kiln_tensor_numel(in->x);
    unsigned char *x = kt_get_bytes(in->x), *dy = kt_get_bytes(in->dy);
    float *beta = kt_get_f32(in->beta), *mm = kt_get_f32(in->mm);
    beta[0] = 0.0f;
    int seen[6] = {0};
    for (int64_t k = 0; k < n; k++) {
        int64_t c = channel_at(s, k);
        if (c > 5 || seen[c]++ % 7 != 3) continue; /* a few elements per channel */
        switch (c) {
        case 0: set_el(x, in->dt, k, get_el(&mm[0], KILN_F32, 0)); break;
        case 1: set_el(x, in->dt, k, NAN); break;
        case 2: set_el(x, in->dt, k, INFINITY); break;
        case 3: set_el(x, in->dt, k, seen[c] % 2 ? INFINITY : -INFINITY); break;
        case 4: set_el(dy, in->dt, k, NAN); break;
        default: set_el(dy, in->dt, k, INFINITY); break;
        }
    }
    OK(kiln_tensor_set(in->x, x, kiln_tensor_nbytes(in->x)));
    OK(kiln_tensor_set(in->dy, dy, kiln_tensor_nbytes(in->dy)));
    kt_set_f32(in->beta, beta);
    free(x);
    free(dy);
    free(beta);
    free(mm);
}

static void make_inputs(bn_in *in, const shape_case *s, kiln_dtype dt, int mode, bool specials, uint64_t seed) {
    kt_rng r;
    kt_rng_seed(&r, seed);
    int64_t c = channels(s);
    *in = (bn_in){s, dt, mode, NULL, NULL, NULL, NULL, NULL, NULL};
    in->x = kt_new(kt_cpu(), dt, s->ndim, s->shape);
    in->dy = like(in->x);
    in->gamma = kt_new(kt_cpu(), KILN_F32, 1, &c);
    in->beta = like(in->gamma);
    in->mm = like(in->gamma);
    in->mv = like(in->gamma);
    kt_fill_random(in->x, &r, -2, 3);
    kt_fill_random(in->dy, &r, -1, 1);
    kt_fill_random(in->gamma, &r, -1.5, 1.5);
    kt_fill_random(in->beta, &r, -0.5, 0.5);
    kt_fill_random(in->mm, &r, -0.5, 1);
    kt_fill_random(in->mv, &r, 0.5, 2);
    if (specials) add_specials(in);
}

/* the reference ReLU of y into out: kiln's ops for f32, the same rule on the host otherwise */
static void ref_relu(kiln_bn_relu rule, const kiln_tensor *y, kiln_tensor *out) {
    if (y->dtype == KILN_F32) {
        kiln_act_params ap = kiln_act_defaults(KILN_FN_RELU);
        OK(rule == KILN_BN_RELU ? kiln_relu(y, out) : kiln_act(&ap, y, out));
        return;
    }
    unsigned char *h = kt_get_bytes(y);
    for (int64_t k = 0; k < kiln_tensor_numel(y); k++) {
        float v = get_el(h, y->dtype, k);
        set_el(h, y->dtype, k, v > 0.0f ? v : isnan(v) ? v : 0.0f);
    }
    OK(kiln_tensor_set(out, h, kiln_tensor_nbytes(out)));
    free(h);
}

/* the reference ReLU backward: dy masked by the BN output y into out */
static void ref_mask(kiln_bn_relu rule, const kiln_tensor *y, const kiln_tensor *dy, kiln_tensor *out) {
    if (y->dtype == KILN_F32) {
        kiln_act_params ap = kiln_act_defaults(KILN_FN_RELU);
        OK(rule == KILN_BN_RELU ? kiln_relu_backward(y, dy, out) : kiln_act_backward(&ap, y, dy, out));
        return;
    }
    unsigned char *hy = kt_get_bytes(y), *hg = kt_get_bytes(dy);
    for (int64_t k = 0; k < kiln_tensor_numel(y); k++) {
        double v = get_el(hy, y->dtype, k), g = get_el(hg, y->dtype, k);
        double d = v != v ? v : v > 0.0 && v < INFINITY ? 1.0 : 0.0; /* kiln_act_df of a default ReLU */
        set_el(hg, y->dtype, k, rule == KILN_BN_RELU ? (v > 0.0 ? (float)g : 0.0f) : (float)(g * d));
    }
    OK(kiln_tensor_set(out, hg, kiln_tensor_nbytes(out)));
    free(hy);
    free(hg);
}

/* BN then the ReLU (rule NONE given: `fused` false) or BN with the ReLU fused, into o */
static void run(const bn_in *in, kiln_bn_relu rule, bool fused, bn_out *o) {
    kiln_bn_params p = in->s->layout == KILN_LAYOUT_NCHW ? kiln_bn_params_torch() : kiln_bn_params_keras();
    p.layout = in->s->layout;
    p.trainable = in->mode != MODE_FROZEN;
    p.relu = fused ? rule : KILN_BN_RELU_NONE;
    *o = (bn_out){like(in->x), like(in->gamma), like(in->gamma), kt_clone(kt_cpu(), in->mm),
                  kt_clone(kt_cpu(), in->mv), like(in->x), like(in->gamma), like(in->gamma)};
    kiln_tensor *y = fused ? o->y : like(in->x);
    kiln_tensor *outs[] = {o->y, y, o->sm, o->sv, o->dx, o->dg, o->db};
    for (size_t k = 0; k < sizeof outs / sizeof outs[0]; k++) kt_poison(outs[k]);
    if (in->mode == MODE_INFER) OK(kiln_batchnorm_forward_infer(in->x, in->gamma, in->beta, o->mm, o->mv, &p, y));
    else OK(kiln_batchnorm_forward_train(in->x, in->gamma, in->beta, o->mm, o->mv, &p, y, o->sm, o->sv));
    if (!fused) ref_relu(rule, y, o->y);
    if (in->mode != MODE_INFER) {
        if (fused) {
            OK(kiln_batchnorm_backward_relu(in->x, o->y, in->dy, in->gamma, o->sm, o->sv, &p, o->dx, o->dg, o->db));
        } else {
            kiln_tensor *dym = like(in->dy);
            ref_mask(rule, y, in->dy, dym);
            OK(kiln_batchnorm_backward(in->x, dym, in->gamma, o->sm, o->sv, &p, o->dx, o->dg, o->db));
            kiln_tensor_free(dym);
        }
    }
    if (!fused) kiln_tensor_free(y);
}

static void out_free(bn_out *o) {
    kiln_tensor *all[] = {o->y, o->sm, o->sv, o->mm, o->mv, o->dx, o->dg, o->db};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) kiln_tensor_free(all[k]);
}

static void in_free(bn_in *in) {
    kiln_tensor *all[] = {in->x, in->dy, in->gamma, in->beta, in->mm, in->mv};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) kiln_tensor_free(all[k]);
}

static void compare(const char *row, const bn_in *in, const bn_out *f, const bn_out *u) {
    char w[192];
    const char *const names[] = {"y", "save_mean", "save_invstd", "moving_mean", "moving_var", "dx", "dgamma", "dbeta"};
    const kiln_tensor *const a[] = {f->y, f->sm, f->sv, f->mm, f->mv, f->dx, f->dg, f->db};
    const kiln_tensor *const b[] = {u->y, u->sm, u->sv, u->mm, u->mv, u->dx, u->dg, u->db};
    int n = in->mode == MODE_INFER ? 1 : 8;
    for (int k = 0; k < n; k++) {
        snprintf(w, sizeof w, "%s: %s", row, names[k]);
        expect_same(w, a[k], b[k]);
    }
}

/* every shape, dtype, rule and input kind of one mode, the fused loops at every level */
static void check_mode(int mode) {
    const kiln_dtype dts[] = {KILN_F32, KILN_F16, KILN_BF16};
    int top = kiln_cpu_simd_force(99);
    uint64_t seed = 100 + 1000 * (uint64_t)mode;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int d = 0; d < 3; d++)
            for (int sp = 0; sp < 2; sp++) {
                bn_in in;
                make_inputs(&in, &shapes[si], dts[d], mode, sp, seed++);
                for (kiln_bn_relu rule = KILN_BN_RELU; rule <= KILN_BN_RELU_ACT; rule++) {
                    bn_out u, f;
                    kiln_cpu_simd_force(-1);
                    run(&in, rule, false, &u);
                    for (int lv = 0; lv <= top; lv++) {
                        char row[160];
                        snprintf(row, sizeof row, "%s %s %s %s%s level %d", mode_names[mode], shapes[si].name,
                                 kiln_dtype_name(dts[d]), rule == KILN_BN_RELU ? "relu" : "relu_act",
                                 sp ? " NaN/inf" : "", lv);
                        kiln_cpu_simd_force(lv);
                        run(&in, rule, true, &f);
                        compare(row, &in, &f, &u);
                        out_free(&f);
                    }
                    kiln_cpu_simd_force(-1);
                    out_free(&u);
                }
                in_free(&in);
            }
}

Test(bn_relu, train_matches_bn_then_relu, .timeout = 300) { check_mode(MODE_TRAIN); }
Test(bn_relu, frozen_matches_bn_then_relu, .timeout = 300) { check_mode(MODE_FROZEN); }
Test(bn_relu, infer_matches_bn_then_relu, .timeout = 300) { check_mode(MODE_INFER); }

/* the argument checks of the fused forms */
Test(bn_relu, refuses_what_it_cannot_do) {
    int64_t sh[2] = {4, 3}, c = 3;
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 2, sh), *y = like(x), *dy = like(x), *dx = like(x);
    kiln_tensor *g = kt_new(kt_cpu(), KILN_F32, 1, &c), *sm = like(g), *sv = like(g);
    kt_rng r;
    kt_rng_seed(&r, 5);
    kiln_tensor *all[] = {x, y, dy, dx, g, sm, sv};
    for (int k = 0; k < 7; k++) kt_fill_random(all[k], &r, 0.5, 1);
    kiln_bn_params p = kiln_bn_params_keras();
    p.relu = KILN_BN_RELU;
    cr_expect_eq(kiln_batchnorm_backward(x, dy, g, sm, sv, &p, dx, NULL, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "kiln_batchnorm_backward_relu"), "%s", kiln_last_error());
    cr_expect_eq(kiln_batchnorm_backward_relu(x, NULL, dy, g, sm, sv, &p, dx, NULL, NULL), KILN_ERR_INVALID_ARG);
    cr_expect_eq(kiln_batchnorm_backward_relu(x, dx, dy, g, sm, sv, &p, dx, NULL, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "share memory"), "%s", kiln_last_error());
    cr_expect_eq(kiln_batchnorm_backward_infer(dy, g, sv, &p, dx), KILN_ERR_UNSUPPORTED);
    p.relu = (kiln_bn_relu)7;
    cr_expect_eq(kiln_batchnorm_forward_infer(x, g, NULL, sm, sv, &p, y), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "unknown relu 7"), "%s", kiln_last_error());
    p.relu = KILN_BN_RELU_NONE;
    cr_expect_eq(kiln_batchnorm_backward_relu(x, y, dy, g, sm, sv, &p, dx, NULL, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(kiln_backend_supports(kt_cpu(), KILN_OP_BN_RELU, KILN_BF16));
    cr_expect_str_eq(kiln_op_name(KILN_OP_BN_RELU), "batchnorm_relu");
    for (int k = 0; k < 7; k++) kiln_tensor_free(all[k]);
}

/* ---- model level ---- */

static void add(kiln_model *m, kiln_layer_config c) { OK(kiln_model_add(m, &c, 0, NULL, NULL)); }

/* Conv2D -> BN -> ReLU layer -> Conv2D -> BN (frozen) -> Activation('relu') -> Activation('tanh')
 * -> Conv2D -> BN ->
 * ReLU(max_value 6, not fused) -> Flatten -> Dense -> BN (per feature) -> ReLU layer -> Dense
 * softmax: three fused pairs */
static kiln_model *small_model(int h, int w, int ch, int classes) {
    kiln_model *m;
    OK(kiln_model_new("bn_relu", &m));
    int64_t in[3] = {h, w, ch};
    add(m, kiln_input_layer(3, in));
    add(m, kiln_conv2d_layer(6, 3, 3, KILN_ACT_LINEAR));
    add(m, kiln_batchnorm_layer());
    add(m, kiln_relu_layer(INFINITY, 0.0f, 0.0f));
    add(m, kiln_conv2d_layer(5, 3, 3, KILN_ACT_LINEAR));
    kiln_layer_config bn = kiln_batchnorm_layer();
    bn.trainable = false;
    add(m, bn);
    add(m, kiln_activation_layer(KILN_ACT_RELU));
    add(m, kiln_activation_layer(KILN_ACT_TANH)); /* reads the fused ReLU's output in place */
    add(m, kiln_conv2d_layer(4, 3, 3, KILN_ACT_LINEAR));
    add(m, kiln_batchnorm_layer());
    add(m, kiln_relu_layer(6.0f, 0.0f, 0.0f));
    add(m, kiln_flatten_layer());
    add(m, kiln_dense_layer(12, KILN_ACT_LINEAR));
    add(m, kiln_batchnorm_layer());
    add(m, kiln_relu_layer(INFINITY, 0.0f, 0.0f));
    add(m, kiln_dense_layer(classes, KILN_ACT_SOFTMAX));
    return m;
}

static kiln_model *model_of(const char *name, int h, int w, int ch, int classes) {
    if (!strcmp(name, "bn_relu")) return small_model(h, w, ch, classes);
    kiln_model *m;
    OK(kiln_model_builtin(name, h, w, ch, classes, &m));
    return m;
}

typedef struct model_spec {
    const char *name;
    int h, w, ch;
} model_spec;

static kiln_model *make_spec(const void *arg) {
    const model_spec *s = arg;
    return model_of(s->name, s->h, s->w, s->ch, 5);
}

/* `name` trained with fusion on and off (KILN_FUSE=0): the same bits; `pairs` pairs fused */
static void check_model(const char *name, int h, int w, int ch, int pairs) {
    model_spec s = {name, h, w, ch};
    kt_check_fusion_same_bits(&(kt_fusion_check){name, make_spec, &s, (int64_t)h * w * ch, 5, false, 41, 7,
                                                 kt_fused_pairs, pairs});
}

Test(bn_relu_model, seed_cnn_fuses_nothing_and_is_unchanged) { check_model("seed-cnn", 8, 8, 1, 0); }
/* ten BN -> Activation('relu') pairs and nine Add -> Activation('relu') (test_add_relu.c) */
Test(bn_relu_model, resnet20_fused_same_weights, .timeout = 300) { check_model("resnet20", 8, 8, 3, 19); }
Test(bn_relu_model, relu_layer_frozen_and_dense_bn, .timeout = 300) { check_model("bn_relu", 9, 9, 2, 3); }

/* CUDA (a GPU, or its emulator) has no fused form: it says so, the ops refuse it, and a model
 * there runs BN then the ReLU, as before */
Test(bn_relu, cuda_refuses_and_models_stay_unfused, .timeout = 300) {
    kiln_backend *be = kt_cuda_or_skip();
    cr_expect(!kiln_backend_supports(be, KILN_OP_BN_RELU, KILN_F32));
    int64_t sh[2] = {4, 3}, c = 3;
    kiln_tensor *x = kt_new(be, KILN_F32, 2, sh), *y = kt_new(be, KILN_F32, 2, sh);
    kiln_tensor *mm = kt_new(be, KILN_F32, 1, &c), *mv = kt_new(be, KILN_F32, 1, &c);
    kt_rng r;
    kt_rng_seed(&r, 9);
    kt_fill_random(x, &r, -1, 1);
    kiln_bn_params p = kiln_bn_params_keras();
    p.scale = p.center = false;
    OK(kiln_batchnorm_init(&p, NULL, NULL, mm, mv));
    p.relu = KILN_BN_RELU;
    cr_expect_eq(kiln_batchnorm_forward_infer(x, NULL, NULL, mm, mv, &p, y), KILN_ERR_UNSUPPORTED);
    cr_expect(strstr(kiln_last_error(), "fused ReLU"), "%s", kiln_last_error());
    kiln_model *m;
    OK(kiln_model_new("dense_bn_relu", &m));
    int64_t in[1] = {6};
    add(m, kiln_input_layer(1, in));
    add(m, kiln_dense_layer(8, KILN_ACT_LINEAR));
    add(m, kiln_batchnorm_layer());
    add(m, kiln_relu_layer(INFINITY, 0.0f, 0.0f));
    add(m, kiln_dense_layer(3, KILN_ACT_SOFTMAX));
    OK(kiln_model_build(m, be, 7));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    OK(kiln_model_compile(m, &cc));
    float xs[8 * 6];
    int32_t ys[8];
    for (int i = 0; i < 8 * 6; i++) xs[i] = (float)kt_uniform(&r, -1, 1);
    for (int i = 0; i < 8; i++) ys[i] = i % 3;
    kiln_fit_config fc = kiln_fit_defaults();
    fc.batch_size = 8;
    fc.verbose = 0;
    kiln_data d = {xs, ys, NULL, 8};
    OK(kiln_model_fit(m, &d, &fc, NULL));
    cr_expect_eq(kt_fused_pairs(m), 0, "%d pairs fused on %s", kt_fused_pairs(m), kiln_backend_name(be));
    kiln_model_free(m);
    kiln_tensor *all[] = {x, y, mm, mv};
    for (int k = 0; k < 4; k++) kiln_tensor_free(all[k]);
}
