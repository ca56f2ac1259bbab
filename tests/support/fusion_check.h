/* fusion_check.h: the check the fusion tests share (test_bn_relu.c, test_add_relu.c,
 * test_add_grad.c): a model trained with the execution-only rewrites of src/model/fuse.c on and
 * with KILN_FUSE=0 gives the same bits in every weight and in predict's output. */
#ifndef KILN_TEST_FUSION_CHECK_H
#define KILN_TEST_FUSION_CHECK_H
#include <stdbool.h>
#include <stdint.h>

#include "kiln/kiln.h"

typedef struct kt_fusion_check {
    const char *name;
    kiln_model *(*make)(const void *arg); /* a new model, not built */
    const void *arg;
    int64_t in_elems; /* one sample's input values */
    int classes;      /* sparse categorical cross-entropy over this many */
    bool from_logits;
    uint64_t data_seed, build_seed;
    /* what the rewrite did to a built model (pairs fused, gradients aliased): `want` with it
     * on, 0 with KILN_FUSE=0 */
    int (*count)(const kiln_model *m);
    int want;
} kt_fusion_check;

/* the ReLUs a built model runs fused into the layer before them (fuse.c: fused_into) */
int kt_fused_pairs(const kiln_model *m);

/* 16 samples drawn from data_seed, two Adam steps of batch 8 with fit's seed 3, then predict;
 * once with KILN_FUSE unset, once with KILN_FUSE=0 (unset again afterwards) */
void kt_check_fusion_same_bits(const kt_fusion_check *c);
#endif
