/* test_add_relu.c: Add -> ReLU fused (issue 12, src/model/fuse.c): kiln_add_relu against
 * kiln_add then kiln_relu, and the fused pair's backward mask against the unfused ReLU's
 * backward, bit for bit (NaN matching NaN); models trained with the fusion on and off
 * (KILN_FUSE=0) to the same bits.
 *
 * Op level, every element: random values and sums that are NaN (NaN in, inf - inf), +-inf, +-0
 * (-0 + -0, x + -x) and tiny; small and above the threaded size; b as a's shape and as its
 * trailing dims; out aliasing a; at every instruction-set level. The backward: dy masked by the
 * fused output, by both rules (Activation('relu'): kiln_relu_backward; the ReLU layer:
 * kiln_act_backward), against the unfused ReLU's backward of the sum, with NaN and inf in dy.
 *
 * Model level: a Functional model of Dense layers with Add -> Activation('relu') (two inputs),
 * Add -> ReLU layer (three inputs, its output read by two layers), and unfused pairs (ReLU with
 * max_value, an Add read twice, an Add whose two consumers are ReLU and tanh, an Add -> ReLU as
 * the model's output), a frozen branch; resnet20's nine Add -> ReLU are test_bn_relu.c's. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fusion_check.h"
#include "harness.h"
#include "model_impl.h"
#include "simd.h"

#define OK(call) cr_assert_eq((call), KILN_OK, "%s", kiln_last_error())

/* ---- op level ---- */

/* the same bits element for element, or NaN on both sides */
static void expect_same(const char *what, const kiln_tensor *a, const kiln_tensor *b) {
    int64_t n = kiln_tensor_numel(a), bad = 0, first = -1;
    float *ha = kt_get_f32(a), *hb = kt_get_f32(b);
    for (int64_t k = 0; k < n; k++)
        if (memcmp(&ha[k], &hb[k], sizeof(float)) && !(isnan(ha[k]) && isnan(hb[k]))) {
            if (first < 0) first = k;
            bad++;
        }
    if (bad)
        cr_expect_fail("%s: %lld of %lld elements differ, the first [%lld]: fused %.9g, unfused %.9g", what,
                       (long long)bad, (long long)n, (long long)first, (double)ha[first], (double)hb[first]);
    free(ha);
    free(hb);
}

/* pairs (a, b) whose sum is special: NaN, +-inf, +-0, tiny; dy values NaN, +-inf, -0 */
static const float special_a[] = {NAN, 1.0f, INFINITY, INFINITY, -INFINITY, -0.0f, 0.0f, 2.5f, 1e-45f, -1e-45f, -0.0f, 3.0f};
static const float special_b[] = {1.0f, NAN, -INFINITY, 1.0f, 2.0f, -0.0f, -0.0f, -2.5f, 0.0f, 0.0f, 0.0f, -1e-45f};
static const float special_dy[] = {NAN, INFINITY, -INFINITY, -0.0f, -1.0f, 2.0f};
#define N_SPECIAL (int64_t)(sizeof special_a / sizeof special_a[0])

/* random a, b and dy, every 5th element of a and b (and every 7th of dy) a special pair when
 * `specials`; b as long as a, or nb values (a's trailing dims) */
static void fill(kiln_tensor *a, kiln_tensor *b, kiln_tensor *dy, bool specials, uint64_t seed) {
    kt_rng r;
    kt_rng_seed(&r, seed);
    kt_fill_random(a, &r, -2, 2);
    kt_fill_random(b, &r, -2, 2);
    kt_fill_random(dy, &r, -1, 1);
    if (!specials) return;
    int64_t n = kiln_tensor_numel(a), nb = kiln_tensor_numel(b);
    float *ha = kt_get_f32(a), *hb = kt_get_f32(b), *hd = kt_get_f32(dy);
    for (int64_t k = 0; k < n; k += 5) {
        ha[k] = special_a[(k / 5) % N_SPECIAL];
        if (nb == n) hb[k] = special_b[(k / 5) % N_SPECIAL];
    }
    for (int64_t k = 3; k < n; k += 7) hd[k] = special_dy[(k / 7) % 6];
    kt_set_f32(a, ha);
    kt_set_f32(b, hb);
    kt_set_f32(dy, hd);
    free(ha);
    free(hb);
    free(hd);
}

/* out against the rule itself on the host: the f32 sum, > 0 kept, NaN kept, else +0 */
static void expect_host_rule(const kiln_tensor *a, const kiln_tensor *b, const kiln_tensor *out) {
    int64_t n = kiln_tensor_numel(a), nb = kiln_tensor_numel(b), bad = 0;
    float *ha = kt_get_f32(a), *hb = kt_get_f32(b), *ho = kt_get_f32(out);
    for (int64_t k = 0; k < n; k++) {
        volatile float v = ha[k] + hb[k % nb]; /* rounded to f32 */
        float w = v > 0.0f ? v : isnan(v) ? v : 0.0f;
        bad += memcmp(&w, &ho[k], sizeof w) && !(isnan(w) && isnan(ho[k]));
    }
    cr_expect_eq(bad, 0, "kiln_add_relu: %lld of %lld elements differ from the rule on the host", (long long)bad,
                 (long long)n);
    free(ha);
    free(hb);
    free(ho);
}

/* a model of two nodes, node 0 an Add with node 1, a default ReLU of `rule`, fused after it:
 * what kiln_model_fused_relu_backward reads */
static void fake_pair(kiln_model *m, kiln_node nodes[2], kiln_bn_relu rule) {
    memset(m, 0, sizeof *m);
    memset(nodes, 0, 2 * sizeof *nodes);
    nodes[0].fused_relu = 1;
    nodes[0].fused_rule = (int)rule;
    nodes[1].cfg = rule == KILN_BN_RELU ? kiln_activation_layer(KILN_ACT_RELU) : kiln_relu_layer(INFINITY, 0.0f, 0.0f);
    m->nodes = nodes;
    m->n_nodes = 2;
}

/* kiln_add_relu(a, b) against kiln_add then kiln_relu, in place too; the fused backward (dy
 * masked by the fused output) against the unfused ReLU's backward of the sum, both rules */
static void check_case(int ndim, const int64_t *shape, int bdim, bool specials, uint64_t seed) {
    kiln_backend *be = kt_cpu();
    kiln_tensor *a = kt_new(be, KILN_F32, ndim, shape), *b = kt_new(be, KILN_F32, bdim, shape + ndim - bdim);
    kiln_tensor *dy = kt_new(be, KILN_F32, ndim, shape), *sum = kt_new(be, KILN_F32, ndim, shape);
    kiln_tensor *want = kt_new(be, KILN_F32, ndim, shape), *got = kt_new(be, KILN_F32, ndim, shape);
    fill(a, b, dy, specials, seed);
    OK(kiln_add(a, b, sum));
    OK(kiln_relu(sum, want));
    kt_poison(got);
    OK(kiln_add_relu(a, b, got));
    expect_same("kiln_add_relu", got, want);
    expect_host_rule(a, b, got);
    kiln_tensor *in_place = kt_clone(be, a);
    OK(kiln_add_relu(in_place, b, in_place));
    expect_same("kiln_add_relu in place", in_place, want);
    kiln_model m;
    kiln_node nodes[2];
    for (int rule = KILN_BN_RELU; rule <= KILN_BN_RELU_ACT; rule++) {
        fake_pair(&m, nodes, (kiln_bn_relu)rule);
        kiln_act_params ap = nodes[1].cfg.act;
        OK(rule == KILN_BN_RELU ? kiln_relu_backward(sum, dy, want) : kiln_act_backward(&ap, sum, dy, want));
        kt_poison(got);
        OK(kiln_model_fused_relu_backward(&m, &nodes[0], in_place, dy, got));
        expect_same(rule == KILN_BN_RELU ? "backward, Activation('relu')" : "backward, ReLU layer", got, want);
    }
    kiln_tensor *all[] = {a, b, dy, sum, want, got, in_place};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) kiln_tensor_free(all[k]);
}

static const int64_t small_shape[2] = {37, 29}, big_shape[4] = {3, 31, 29, 33}; /* big: threaded */

Test(add_relu, op_same_bits_at_every_level) {
    for (int level = KILN_SIMD_BASE; level <= KILN_SIMD_AVX512; level++) {
        int used = kiln_cpu_simd_force(level);
        for (int specials = 0; specials < 2; specials++) {
            check_case(2, small_shape, 2, specials, 10u + (unsigned)level);
            check_case(4, big_shape, 4, specials, 20u + (unsigned)level);
            check_case(4, big_shape, 1, specials, 30u + (unsigned)level); /* b: one value per channel */
        }
        if (used < level) break; /* the CPU has no higher level */
    }
    kiln_cpu_simd_force(-1);
}

Test(add_relu, op_refuses_bad_arguments) {
    int64_t s[2] = {4, 3}, t[1] = {4};
    kiln_tensor *a = kt_new(kt_cpu(), KILN_F32, 2, s), *b = kt_new(kt_cpu(), KILN_F32, 1, t);
    cr_expect_eq(kiln_add_relu(a, b, a), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "kiln_add_relu"), "%s", kiln_last_error());
    kiln_tensor_free(a);
    kiln_tensor_free(b);
}

/* ---- model level ---- */

static int layer(kiln_model *m, kiln_layer_config c, int n, const int *in) {
    int id;
    OK(kiln_model_add(m, &c, n, in, &id));
    return id;
}

static int dense(kiln_model *m, int units, int in) { return layer(m, kiln_dense_layer(units, KILN_ACT_LINEAR), 1, &in); }

static int add2(kiln_model *m, int a, int b) {
    int in[2] = {a, b};
    return layer(m, kiln_add_layer(), 2, in);
}

static int relu_act(kiln_model *m, int in) { return layer(m, kiln_activation_layer(KILN_ACT_RELU), 1, &in); }

/* f = frozen Dense(x), a = Dense(x); r1 = relu(Add(a, Dense(a))) [fused, Activation];
 * r2 = ReLU(Add(Dense(r1), r1, f)) [fused, ReLU layer, three inputs]; r3 = ReLU(max_value 6)(
 * Add(r2, r2)) [not fused]; s4 = Add(Dense(r3), r3) read by relu and tanh [not fused];
 * r5 = relu(Add(those two)) [fused]; Dense softmax */
static kiln_model *functional(void) {
    kiln_model *m;
    OK(kiln_model_new("add_relu", &m));
    int64_t shape[1] = {6};
    int x = layer(m, kiln_input_layer(1, shape), 0, NULL);
    kiln_layer_config fz = kiln_dense_layer(5, KILN_ACT_TANH);
    fz.trainable = false;
    int f = layer(m, fz, 1, &x), a = dense(m, 5, x);
    int r1 = relu_act(m, add2(m, a, dense(m, 5, a)));
    int three[3] = {dense(m, 5, r1), r1, f};
    int s2 = layer(m, kiln_add_layer(), 3, three);
    int r2 = layer(m, kiln_relu_layer(INFINITY, 0.0f, 0.0f), 1, &s2);
    int s3 = add2(m, r2, r2);
    int r3 = layer(m, kiln_relu_layer(6.0f, 0.0f, 0.0f), 1, &s3);
    int s4 = add2(m, dense(m, 5, r3), r3);
    int t = layer(m, kiln_activation_layer(KILN_ACT_TANH), 1, &s4);
    int r5 = relu_act(m, add2(m, relu_act(m, s4), t));
    layer(m, kiln_dense_layer(3, KILN_ACT_SOFTMAX), 1, &r5);
    return m;
}

/* relu(Add(Dense(x), Dense(x))) as the model's output (logits): not fused */
static kiln_model *relu_out(void) {
    kiln_model *m;
    OK(kiln_model_new("relu_out", &m));
    int64_t shape[1] = {6};
    int x = layer(m, kiln_input_layer(1, shape), 0, NULL);
    relu_act(m, add2(m, dense(m, 3, x), dense(m, 3, x)));
    return m;
}

typedef struct maker {
    kiln_model *(*make)(void);
} maker;

static kiln_model *make_of(const void *arg) { return ((const maker *)arg)->make(); }

/* the model trained with fusion on and off (KILN_FUSE=0): the same bits; `pairs` pairs fused */
static void check_model(kiln_model *(*make)(void), bool logits, int pairs) {
    maker k = {make};
    kt_check_fusion_same_bits(&(kt_fusion_check){"add_relu model", make_of, &k, 6, 3, logits, 23, 5, kt_fused_pairs,
                                                 pairs});
}

Test(add_relu_model, functional_fused_same_weights) { check_model(functional, false, 3); }
Test(add_relu_model, relu_output_not_fused) { check_model(relu_out, true, 0); }

/* CUDA (a GPU, or its emulator) has no kiln_add_relu: it says so, and a model there runs the
 * Add then the ReLU */
Test(add_relu, cuda_refuses_and_models_stay_unfused, .timeout = 300) {
    kiln_backend *be = kt_cuda_or_skip();
    cr_expect(!kiln_backend_supports(be, KILN_OP_ADD_RELU, KILN_F32));
    int64_t sh[2] = {4, 3};
    kiln_tensor *a = kt_new(be, KILN_F32, 2, sh);
    cr_expect_eq(kiln_add_relu(a, a, a), KILN_ERR_UNSUPPORTED);
    kiln_tensor_free(a);
    kiln_model *m = relu_out();
    int relu = m->n_nodes - 1; /* a layer after it: the pair would fuse on the CPU */
    layer(m, kiln_dense_layer(3, KILN_ACT_SOFTMAX), 1, &relu);
    OK(kiln_model_build(m, be, 7));
    kiln_plan *p;
    OK(kiln_model_plan(m, 4, &p));
    cr_expect_eq(kt_fused_pairs(m), 0, "%d pairs fused on %s", kt_fused_pairs(m), kiln_backend_name(be));
    kiln_model_free(m);
}
