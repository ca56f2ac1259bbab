/* ops_check.h: argument checks shared by the op front ends (internal). Each returns KILN_OK
 * or an error whose message names the function, the argument and the problem. */
#ifndef KILN_OPS_CHECK_H
#define KILN_OPS_CHECK_H

#include "kiln/tensor.h"

/* non-NULL and contiguous */
kiln_status kiln_check_tensor(const char *fn, const char *arg, const kiln_tensor *t);
kiln_status kiln_check_dtype(const char *fn, const char *arg, const kiln_tensor *t, kiln_dtype want);
/* non-NULL, contiguous, f32 */
kiln_status kiln_check_f32(const char *fn, const char *arg, const kiln_tensor *t);
kiln_status kiln_check_same_backend(const char *fn, const kiln_tensor *a, const kiln_tensor *b);
/* same shape and same backend */
kiln_status kiln_check_same_shape(const char *fn, const char *an, const kiln_tensor *a,
                                  const char *bn, const kiln_tensor *b);
/* f32, contiguous, 4-D with every dimension below 2^31 (nn_ops.c); `layout` names the axes */
kiln_status kiln_check_4d(const char *fn, const char *arg, const kiln_tensor *t, const char *layout);

#endif
