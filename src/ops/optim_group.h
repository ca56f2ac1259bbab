/* optim_group.h: a group of parameter tensors that one fused optimizer op updates (internal).
 *
 * kiln_adam_update(_group) / kiln_sgd_update(_group) (src/ops/optim_ops.c) pass up to
 * KILN_GROUP_MAX tensor sets per op (kiln_adam_args.group, kiln_sgd_args.group in op_args.h);
 * a single update is a group of one, so both run the same backend code. */
#ifndef KILN_OPTIM_GROUP_H
#define KILN_OPTIM_GROUP_H

#include "kiln/tensor.h"

#define KILN_GROUP_MAX 32

typedef struct kiln_param_group {
    int n; /* 1 .. KILN_GROUP_MAX */
    kiln_tensor *w[KILN_GROUP_MAX];
    const kiln_tensor *g[KILN_GROUP_MAX];
    kiln_tensor *m[KILN_GROUP_MAX], *v[KILN_GROUP_MAX]; /* Adam's moments */
    kiln_tensor *v_hat[KILN_GROUP_MAX];                 /* Adam with amsgrad, else NULL */
    kiln_tensor *velocity[KILN_GROUP_MAX];              /* SGD with momentum, else NULL */
} kiln_param_group;

#endif
