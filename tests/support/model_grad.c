/* model_grad.c: finite-difference checks of a model's weight gradients (model_grad.h). */
#include <stdlib.h>

#include "model_grad.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

double kt_plan_loss(kiln_model *m, kiln_plan *p) {
    OK(kiln_model_forward(m, p, true, true, 1));
    OK(kiln_model_loss(m, p, false));
    float *rows = kt_get_f32(p->loss_rows);
    double s = 0;
    for (int i = 0; i < p->batch; i++) s += rows[i];
    free(rows);
    return s / p->batch;
}

int kt_check_weight_gradients(kiln_model *m, kiln_plan *p, float h, double tol) {
    int checked = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        kiln_node *n = &m->nodes[i];
        for (int w = 0; w < n->n_w; w++) {
            if (!n->g[w]) continue;
            float *g = kt_get_f32(n->g[w]), *wv = kt_get_f32(n->w[w]);
            int64_t k = kiln_tensor_numel(n->w[w]);
            double *fd = malloc(sizeof(double) * (size_t)k);
            cr_assert_not_null(fd);
            for (int64_t j = 0; j < k; j++) {
                float save = wv[j];
                wv[j] = save + h;
                kt_set_f32(n->w[w], wv);
                double up = kt_plan_loss(m, p);
                wv[j] = save - h;
                kt_set_f32(n->w[w], wv);
                double dn = kt_plan_loss(m, p);
                wv[j] = save;
                kt_set_f32(n->w[w], wv);
                fd[j] = (up - dn) / (2.0 * h);
            }
            kt_expect_close_f64(n->w_name[w], g, fd, k, tol);
            checked++;
            free(fd);
            free(g);
            free(wv);
        }
    }
    return checked;
}
