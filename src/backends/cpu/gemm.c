/* cpu/gemm.c: GEMM through OpenBLAS' cblas_sgemm, row-major. */
#include <cblas.h>

#include "cpu.h"

void kiln_cpu_gemm(const kiln_op *op) {
    const kiln_tensor *a = op->src[0], *b = op->src[1];
    kiln_tensor *c = op->dst[0];
    int ta = op->i[0], tb = op->i[1], m = op->i[3], n = op->i[4], k = op->i[5];
    float alpha = op->f[0], beta = op->f[1];
    float *cp = c->data;
    if (m == 0 || n == 0) return;
    if (k == 0) { /* C = beta C, with beta 0 ignoring C's old contents */
        for (int64_t i = 0; i < (int64_t)m * n; i++) cp[i] = beta == 0.0f ? 0.0f : beta * cp[i];
        return;
    }
    if (beta == 0.0f) /* BLAS may read C when beta is 0; make a poisoned C harmless */
        for (int64_t i = 0; i < (int64_t)m * n; i++) cp[i] = 0.0f;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, alpha, a->data, (int)a->shape[1], b->data, (int)b->shape[1], beta, cp, n);
}
