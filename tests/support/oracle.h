/* oracle.h: small helpers of the float64-oracle op tests (test_nn_ops.c, test_conv_family_ops.c):
 * seeded and poisoned f32 CPU tensors, their values in double, element-wise comparison against
 * doubles, and central differences. */
#ifndef KILN_TEST_ORACLE_H
#define KILN_TEST_ORACLE_H
#include "harness.h"

/* an f32 CPU tensor drawn uniformly from [lo, hi) */
kiln_tensor *kt_rand_f32(kt_rng *r, int ndim, const int64_t *shape, double lo, double hi);
/* an f32 CPU tensor full of poison (the op must write every element) */
kiln_tensor *kt_poisoned_f32(int ndim, const int64_t *shape);
/* t's values in double (malloc'd) */
double *kt_to_f64(const kiln_tensor *t);
/* n zeros (calloc'd) */
double *kt_zeros_f64(int64_t n);
/* got (a kiln tensor) against want (doubles), every element, normalised error <= tol */
void kt_expect_tensor_f64(const char *what, const kiln_tensor *got, const double *want, double tol);
/* central differences in double: grad[i] = (L(p + h e_i) - L(p - h e_i)) / 2h, where the loss
 * reads p through ctx */
typedef double (*kt_loss_fn)(void *ctx);
void kt_fd_grad(kt_loss_fn loss, void *ctx, double *p, int64_t n, double h, double *grad);
double kt_dot_f64(const double *a, const double *b, int64_t n);
#endif
