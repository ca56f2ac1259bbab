/* fusion_check.c: a model trained with fusion on and off, the same bits (fusion_check.h). */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "fusion_check.h"

#include <stdlib.h>

#include "harness.h"
#include "model_impl.h"

#define OK(call) cr_assert_eq((call), KILN_OK, "%s", kiln_last_error())

enum { SAMPLES = 16, BATCH = 8 };

int kt_fused_pairs(const kiln_model *m) {
    int k = 0;
    for (int i = 0; i < m->n_nodes; i++) k += m->nodes[i].fused_into != 0;
    return k;
}

/* one model of c, built, compiled, trained on (x, y); its predictions in out */
static kiln_model *trained(const kt_fusion_check *c, bool fuse, const float *x, const int32_t *y, float *out) {
    if (fuse) unsetenv("KILN_FUSE");
    else setenv("KILN_FUSE", "0", 1);
    kiln_model *m = c->make(c->arg);
    OK(kiln_model_build(m, kt_cpu(), c->build_seed));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                              c->from_logits};
    OK(kiln_model_compile(m, &cc));
    kiln_fit_config fc = kiln_fit_defaults();
    fc.batch_size = BATCH;
    fc.verbose = 0;
    fc.seed = 3;
    kiln_data d = {x, y, NULL, SAMPLES};
    OK(kiln_model_fit(m, &d, &fc, NULL));
    OK(kiln_model_predict(m, x, SAMPLES, BATCH, out));
    int want = fuse ? c->want : 0, got = c->count(m);
    cr_expect_eq(got, want, "%s: count %d with KILN_FUSE=%s, want %d", c->name, got, fuse ? "(unset)" : "0", want);
    return m;
}

void kt_check_fusion_same_bits(const kt_fusion_check *c) {
    kt_rng r;
    kt_rng_seed(&r, c->data_seed);
    size_t nx = (size_t)(SAMPLES * c->in_elems), ny = (size_t)(SAMPLES * c->classes);
    float *x = malloc(sizeof(float) * nx), *out[2] = {malloc(sizeof(float) * ny), malloc(sizeof(float) * ny)};
    int32_t *y = malloc(sizeof(int32_t) * SAMPLES);
    cr_assert(x && out[0] && out[1] && y);
    for (size_t i = 0; i < nx; i++) x[i] = (float)kt_uniform(&r, -1, 1);
    for (int i = 0; i < SAMPLES; i++) y[i] = (int32_t)(kt_next(&r) % (uint64_t)c->classes);
    kiln_model *m[2] = {trained(c, true, x, y, out[0]), trained(c, false, x, y, out[1])};
    unsetenv("KILN_FUSE");
    kt_expect_same_weights(m[0], m[1]);
    kt_expect_bitwise("predict", out[0], out[1], sizeof(float) * ny);
    for (int f = 0; f < 2; f++) kiln_model_free(m[f]), free(out[f]);
    free(x);
    free(y);
}
