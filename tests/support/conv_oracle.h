/* conv_oracle.h: the float64 oracle of Conv2D (plain, grouped, depthwise) the op tests share
 * (test_nn_ops.c, test_conv_family_ops.c): the direct loops in double, and one check of the
 * forward and the three gradients on any backend. */
#ifndef KILN_TEST_CONV_ORACLE_H
#define KILN_TEST_CONV_ORACLE_H
#include "oracle.h"

/* one row of a conv table: NHWC input (n, h, w, c), a kh x kw kernel into oc channels in
 * `groups` groups (1: a plain Conv2D; c: depthwise) */
typedef struct kt_conv_case {
    const char *name;
    int64_t n, h, w, c, kh, kw, oc;
    int groups, sh, sw, dh, dw;
    kiln_padding pad;
    bool bias;
} kt_conv_case;

/* TensorFlow's window rule, written out again for the oracles: the output length and the
 * padding before the first element */
void kt_ref_axis(int64_t in, int64_t k, int s, int d, kiln_padding pad, int64_t *out, int64_t *before);

/* Case k on backend be, inputs drawn from `seed`, outputs poisoned: the forward against the
 * direct loops in double; dx, dw, db against central differences of sum(dy * y), which is
 * linear in each argument, so the differences are exact up to double rounding; every element
 * within tol of the output's scale. `label` starts each message ("conv2d", "grouped conv2d"). */
void kt_conv_oracle_check(const kt_conv_case *k, kiln_backend *be, uint64_t seed, double tol, const char *label);
#endif
