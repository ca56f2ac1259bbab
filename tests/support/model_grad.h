/* model_grad.h: a model's weight gradients against central finite differences of its loss, on
 * one plan (the graph's internals, src/model/model_impl.h): test_graph_grad.c and
 * test_keras_layers2.c. */
#ifndef KILN_TEST_MODEL_GRAD_H
#define KILN_TEST_MODEL_GRAD_H

#include "harness.h"
#include "model_impl.h"

/* the mean loss of the plan's batch: forward in training mode (step seed 1), loss */
double kt_plan_loss(kiln_model *m, kiln_plan *p);
/* Every trainable weight's analytic gradient (already in n->g) against central differences of
 * kt_plan_loss with step h (in f32), each within tol of the gradient's scale; returns the
 * number of weights checked. */
int kt_check_weight_gradients(kiln_model *m, kiln_plan *p, float h, double tol);

#endif
