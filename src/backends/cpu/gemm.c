/* cpu/gemm.c: GEMM, row-major: oneDNN's matmul when built in (conv_dnnl.c), else OpenBLAS'
 * cblas_sgemm. */
#include <cblas.h>

#include "cpu.h"
#include "error.h"
#include "op_args.h"

kiln_status kiln_cpu_gemm(kiln_backend *be, const kiln_op *op) {
    const kiln_gemm_args *g = &op->gemm;
    const kiln_tensor *a = g->a, *b = g->b;
    kiln_tensor *c = g->c;
    bool ta = g->trans_a, tb = g->trans_b;
    int m = g->m, n = g->n, k = g->k;
    float alpha = g->alpha, beta = g->beta;
    float *cp = c->data;
    if (m == 0 || n == 0) return KILN_OK;
    if (k == 0) { /* C = beta C, with beta 0 ignoring C's old contents */
        for (int64_t i = 0; i < (int64_t)m * n; i++) cp[i] = beta == 0.0f ? 0.0f : beta * cp[i];
        return KILN_OK;
    }
    bool done;
    KILN_TRY(kiln_cpu_dnnl_gemm(be, op, &done));
    if (done) return KILN_OK;
    if (beta == 0.0f) /* BLAS may read C when beta is 0; make a poisoned C harmless */
        for (int64_t i = 0; i < (int64_t)m * n; i++) cp[i] = 0.0f;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, alpha, a->data, (int)a->shape[1], b->data, (int)b->shape[1], beta, cp, n);
    return KILN_OK;
}
