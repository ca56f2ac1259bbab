/* optim_group.h: a group of parameter tensors that one fused optimizer op updates (internal).
 *
 * kiln_adam_update_group / kiln_sgd_update_group (src/optim_ops.c) pass up to KILN_GROUP_MAX
 * tensors in op->ext; a single-tensor update passes its tensors in the op's slots. Backends
 * read both the same way through kiln_param_group_of, so a single update is a group of one and
 * both run the same code. */
#ifndef KILN_OPTIM_GROUP_H
#define KILN_OPTIM_GROUP_H

#include "backend_impl.h"

#define KILN_GROUP_MAX 32

typedef struct kiln_param_group {
    int n; /* 1 .. KILN_GROUP_MAX */
    kiln_tensor *w[KILN_GROUP_MAX];
    const kiln_tensor *g[KILN_GROUP_MAX];
    /* Adam: m, v, v_hat (NULL without amsgrad); SGD: velocity (NULL without momentum) */
    kiln_tensor *s0[KILN_GROUP_MAX], *s1[KILN_GROUP_MAX], *s2[KILN_GROUP_MAX];
} kiln_param_group;

/* The op's group: op->ext, or `one` filled from the slots (dst[0] w, src[0] g, dst[1..3] the
 * optimizer's slots). */
static inline const kiln_param_group *kiln_param_group_of(const kiln_op *op,
                                                          kiln_param_group *one) {
    if (op->ext) return (const kiln_param_group *)op->ext;
    one->n = 1;
    one->w[0] = op->dst[0];
    one->g[0] = op->src[0];
    one->s0[0] = op->dst[1];
    one->s1[0] = op->dst[2];
    one->s2[0] = op->dst[3];
    return one;
}

#endif
