/* test_add_grad.c: Add's backward without copies (issue 12). Each input's gradient of an Add is
 * its dz: the graph adds dz straight into an input's gradient already written, and inputs
 * whose first-reached consumer is the Add take the Add's dz as their dy (grad_alias, fuse.c and
 * plan.c): one owner, whose other consumers add into it later, and the quiet inputs (read by
 * the Add only) that read dz before those adds. Functional graphs of Dense layers with Adds of 2
 * and 3 inputs, fan out, one input feeding an Add twice, an Add as the model's last layer, a
 * frozen branch, and quiet inputs that may share dz and that may not (they read it after the
 * owner's other consumer has added into it): the weight gradients against finite differences
 * with the aliases on, and two Adam steps with the aliases on and off (KILN_FUSE=0, which runs
 * the graph as written: every input's gradient copied or added from dz) to the same bits. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <stdlib.h>
#include <string.h>

#include "fusion_check.h"
#include "model_grad.h"

#define OK(call) cr_assert_eq((call), KILN_OK, "%s", kiln_last_error())

enum { IN = 6, CLASSES = 3 };

/* layer c on the n inputs `in`; its id */
static int add(kiln_model *m, kiln_layer_config c, int n, const int *in) {
    int id;
    OK(kiln_model_add(m, &c, n, in, &id));
    return id;
}

static int dense(kiln_model *m, int units, kiln_activation act, int in) {
    return add(m, kiln_dense_layer(units, act), 1, &in);
}

static int add2(kiln_model *m, int a, int b) {
    int in[2] = {a, b};
    return add(m, kiln_add_layer(), 2, in);
}

/* a = Dense(x); s1 = Add(a, Dense(a)); s2 = Add(Dense(s1), s1, a); s3 = Add(s2, s2);
 * s4 = Add(s3, Dense(s3)); Activation('tanh'); Dense softmax. Aliased: Dense(a) to s1, s1
 * (which Dense(s1) also reads) to s2, s2 to s3, s3 (which the Dense after it also reads) to s4 */
static kiln_model *fan_out(void) {
    kiln_model *m;
    OK(kiln_model_new("fan_out", &m));
    int64_t shape[1] = {IN};
    int x = add(m, kiln_input_layer(1, shape), 0, NULL);
    int a = dense(m, 5, KILN_ACT_TANH, x);
    int s1 = add2(m, a, dense(m, 5, KILN_ACT_TANH, a));
    int three[3] = {dense(m, 5, KILN_ACT_TANH, s1), s1, a};
    int s2 = add(m, kiln_add_layer(), 3, three);
    int s3 = add2(m, s2, s2);
    int s4 = add2(m, s3, dense(m, 5, KILN_ACT_TANH, s3));
    int t = add(m, kiln_activation_layer(KILN_ACT_TANH), 1, &s4);
    dense(m, CLASSES, KILN_ACT_SOFTMAX, t);
    return m;
}

/* Add(Dense(x), Dense(x)) as the last layer: the loss writes its dz (logits); both share it */
static kiln_model *add_last(void) {
    kiln_model *m;
    OK(kiln_model_new("add_last", &m));
    int64_t shape[1] = {IN};
    int x = add(m, kiln_input_layer(1, shape), 0, NULL);
    int a = dense(m, CLASSES, KILN_ACT_TANH, x);
    add2(m, a, dense(m, CLASSES, KILN_ACT_LINEAR, x));
    return m;
}

/* f = frozen Dense(x) (nothing upstream of it trains); s = Add(f, Dense(f));
 * Add(Dense(s), f); Dense softmax: f's gradient is never wanted; three aliases (f owns the
 * second Add's dz, Dense(s) shares it) */
static kiln_model *frozen(void) {
    kiln_model *m;
    OK(kiln_model_new("frozen", &m));
    int64_t shape[1] = {IN};
    int x = add(m, kiln_input_layer(1, shape), 0, NULL);
    kiln_layer_config l = kiln_dense_layer(5, KILN_ACT_TANH);
    l.trainable = false;
    int f = add(m, l, 1, &x);
    int s = add2(m, f, dense(m, 5, KILN_ACT_TANH, f));
    s = add2(m, dense(m, 5, KILN_ACT_TANH, s), f);
    dense(m, CLASSES, KILN_ACT_SOFTMAX, s);
    return m;
}

/* a = Dense(x); s = Add(Dense(Dense(a)), a): a owns dz, the quiet Dense shares it (it reads dz
 * after a's other reader has run); q = Dense(s), w = Dense(s); s2 = Add(s, q): s owns dz, q may
 * not share it (w adds into it first); Add(s2, w): s2 owns it, w may not share (s2 lends it to
 * s, into which w adds); Dense softmax: four aliases */
static kiln_model *shared(void) {
    kiln_model *m;
    OK(kiln_model_new("shared", &m));
    int64_t shape[1] = {IN};
    int x = add(m, kiln_input_layer(1, shape), 0, NULL);
    int a = dense(m, 5, KILN_ACT_TANH, x);
    int c = dense(m, 5, KILN_ACT_TANH, dense(m, 5, KILN_ACT_TANH, a));
    int s = add2(m, c, a);
    int q = dense(m, 5, KILN_ACT_TANH, s);
    int w = dense(m, 5, KILN_ACT_TANH, s);
    int s3 = add2(m, add2(m, s, q), w);
    dense(m, CLASSES, KILN_ACT_SOFTMAX, s3);
    return m;
}

typedef struct graph_case {
    const char *name;
    kiln_model *(*make)(void);
    int aliases;
} graph_case;

static const graph_case cases[] = {
    {"fan_out", fan_out, 4}, {"add_last", add_last, 2}, {"frozen", frozen, 3}, {"shared", shared, 4}};

static int aliases(const kiln_model *m) {
    int k = 0;
    for (int i = 0; i < m->n_nodes; i++) k += m->nodes[i].grad_alias != 0;
    return k;
}

static kiln_model *built(const graph_case *c, bool fuse) {
    if (fuse) unsetenv("KILN_FUSE");
    else setenv("KILN_FUSE", "0", 1);
    kiln_model *m = c->make();
    OK(kiln_model_build(m, kt_cpu(), 11));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                              c->make == add_last};
    OK(kiln_model_compile(m, &cc));
    return m;
}

/* the weight gradients of one batch against central differences, the aliases on */
static void check_fd(const graph_case *c) {
    kiln_model *m = built(c, true);
    enum { B = 5 };
    kiln_plan *p;
    OK(kiln_model_plan(m, B, &p));
    cr_expect_eq(aliases(m), c->aliases, "%s: %d inputs take their Add's dz, want %d", c->name, aliases(m), c->aliases);
    kt_rng r;
    kt_rng_seed(&r, 77);
    kt_fill_random(p->v[0].y, &r, -1, 1);
    int32_t labels[B] = {0, 1, 2, 1, 0};
    OK(kiln_tensor_set(p->labels, labels, sizeof labels));
    OK(kiln_model_forward(m, p, true, true, 1));
    OK(kiln_model_loss(m, p, true));
    OK(kiln_model_backward(m, p, 1));
    int checked = kt_check_weight_gradients(m, p, 1e-2f, 1e-2);
    cr_expect_gt(checked, 0, "%s: no weight checked", c->name);
    kiln_model_free(m);
}

static kiln_model *make_case(const void *arg) { return ((const graph_case *)arg)->make(); }

/* trained with the aliases on and off (KILN_FUSE=0): the same bits */
static void check_same_bits(const graph_case *c) {
    kt_check_fusion_same_bits(&(kt_fusion_check){c->name, make_case, c, IN, CLASSES, c->make == add_last, 19, 11,
                                                 aliases, c->aliases});
}

Test(add_grad, fan_out_finite_differences) { check_fd(&cases[0]); }
Test(add_grad, add_last_finite_differences) { check_fd(&cases[1]); }
Test(add_grad, frozen_finite_differences) { check_fd(&cases[2]); }
Test(add_grad, shared_finite_differences) { check_fd(&cases[3]); }
Test(add_grad, fan_out_same_bits_unaliased) { check_same_bits(&cases[0]); }
Test(add_grad, add_last_same_bits_unaliased) { check_same_bits(&cases[1]); }
Test(add_grad, frozen_same_bits_unaliased) { check_same_bits(&cases[2]); }
Test(add_grad, shared_same_bits_unaliased) { check_same_bits(&cases[3]); }
