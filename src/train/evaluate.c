/* evaluate.c: kiln_model_evaluate (and fit's validation, through kiln_fit_evaluate) and
 * kiln_model_predict: forward passes in inference mode, batch by batch. */
#include <math.h>

#include "check.h"
#include "error.h"
#include "evaluate.h"

kiln_status kiln_fit_evaluate(kiln_model *m, const kiln_data *d, int batch, kiln_fit_staging *st,
                              double *loss, double *acc) {
    kiln_status s = KILN_OK;
    double lsum = 0.0, csum = 0.0;
    kiln_tensor *lt = m->eval_loss, *ct = m->eval_correct;
    bool with_acc = kiln_fit_has_accuracy(m);
    for (int64_t first = 0; s == KILN_OK && first < d->n; first += batch) {
        int b = (int)(d->n - first < batch ? d->n - first : batch);
        kiln_plan *p;
        float lv = 0.0f, cv = 0.0f;
        if ((s = kiln_model_plan(m, b, &p)) != KILN_OK) break;
        if ((s = kiln_fit_upload(m, p, d, NULL, first, b, st)) != KILN_OK) break;
        if ((s = kiln_model_forward(m, p, false, true, 0)) != KILN_OK) break;
        if ((s = kiln_model_loss(m, p, false)) != KILN_OK) break;
        if ((s = kiln_sum(p->loss_rows, 0x1, lt)) != KILN_OK) break;
        if (with_acc && (s = kiln_accuracy(p->v[m->n_nodes - 1].z, p->labels, ct)) != KILN_OK) break;
        if ((s = kiln_tensor_get(lt, &lv, sizeof lv)) != KILN_OK) break;
        if (with_acc && (s = kiln_tensor_get(ct, &cv, sizeof cv)) != KILN_OK) break;
        lsum += lv;
        csum += cv;
    }
    *loss = lsum / (double)d->n;
    *acc = with_acc ? csum / (double)d->n : NAN;
    /* Keras adds the regularizers' penalty to evaluate's loss too */
    const kiln_tensor *reg = NULL;
    float rv = 0.0f;
    if (s == KILN_OK) s = kiln_model_regularize(m, false, &reg);
    if (s == KILN_OK && reg) s = kiln_tensor_get(reg, &rv, sizeof rv);
    *loss += rv;
    return s;
}

kiln_status kiln_model_evaluate(kiln_model *m, const kiln_data *data, int batch_size, double *loss,
                                double *accuracy) {
    KILN_TRY(kiln_fit_check_ready(m, batch_size, "kiln_model_evaluate"));
    KILN_TRY(kiln_fit_check_data(m, data, "kiln_model_evaluate"));
    double l, a;
    kiln_fit_staging st;
    KILN_TRY(kiln_fit_staging_new(m, batch_size, &st));
    kiln_status s = kiln_fit_evaluate(m, data, batch_size, &st, &l, &a);
    kiln_fit_staging_free(&st);
    KILN_TRY(s);
    if (loss) *loss = l;
    if (accuracy) *accuracy = a;
    return KILN_OK;
}

kiln_status kiln_model_predict(kiln_model *m, const float *x, int64_t n, int batch_size, float *out) {
    if (!m || !m->built) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_predict: model is not built");
    if (batch_size < 1) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_predict: batch size must be >= 1 (is %d)", batch_size);
    if (n < 1 || !x || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_predict: the dataset is empty");
    KILN_TRY(kiln_fit_check_rows(m, n, "kiln_model_predict"));
    int64_t ex = kiln_fit_example_numel(m), k = kiln_fit_output_numel(m);
    for (int64_t first = 0; first < n; first += batch_size) {
        int b = (int)(n - first < batch_size ? n - first : batch_size);
        kiln_plan *p;
        KILN_TRY(kiln_model_plan(m, b, &p));
        KILN_TRY(kiln_tensor_set(p->v[0].y, x + (size_t)(first * ex), sizeof(float) * (size_t)(b * ex)));
        KILN_TRY(kiln_model_forward(m, p, false, false, 0));
        KILN_TRY(kiln_tensor_get(p->v[m->n_nodes - 1].y, out + (size_t)(first * k), sizeof(float) * (size_t)(b * k)));
    }
    return KILN_OK;
}
