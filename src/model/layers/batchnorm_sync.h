/* batchnorm_sync.h: synchronized BatchNormalization (batchnorm_sync.c), used by batchnorm.c
 * when the layer is `synchronized`, training and trainable, on more than one rank. */
#ifndef KILN_BATCHNORM_SYNC_H
#define KILN_BATCHNORM_SYNC_H

#include "layer.h"

/* the node runs the synchronized path now */
bool kiln_bn_sync_active(const kiln_node *n, bool training);
kiln_status kiln_bn_sync_forward(kiln_node *n, const kiln_tensor *x, kiln_tensor *z, kiln_tensor *gamma,
                                 kiln_tensor *beta, kiln_tensor *moving_mean, kiln_tensor *moving_var);
kiln_status kiln_bn_sync_backward(kiln_node *n, const kiln_tensor *x, const kiln_tensor *dz, kiln_tensor *dx,
                                  const kiln_tensor *gamma, kiln_tensor *dgamma, kiln_tensor *dbeta);

#endif
