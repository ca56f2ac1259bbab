// cuda/gemm.cu: GEMM through cuBLAS, row-major like src/backends/cpu/gemm.c.
//
// cuBLAS is column-major; a row-major (r, c) matrix is the column-major (c, r) matrix, its
// transpose. So C = op(A) op(B), row-major, is computed as C^T = op(B)^T op(A)^T column-major:
// cublasSgemm(opB, opA, n, m, k, B, ldb, A, lda, C, n), with each operand's leading dimension
// its row-major row length, as cblas_sgemm gets on the CPU.
// Math mode, set on every call: KILN_MATH_STRICT is CUBLAS_PEDANTIC_MATH (plain fp32: no TF32,
// no BF16x9 emulation whatever the environment says), KILN_MATH_TF32 is
// CUBLAS_TF32_TENSOR_OP_MATH.
#include "common.cuh"

extern "C" kiln_status kiln_cuda_gemm(kiln_backend *be, const kiln_op *op) {
    const kiln_gemm_args &g = op->gemm;
    const kiln_tensor *a = g.a, *b = g.b; // A (M, K) or (K, M); B (K, N) or (N, K)
    kiln_tensor *c = g.c;                 // C (M, N)
    const bool ta = g.trans_a, tb = g.trans_b;
    const int m = g.m, n = g.n, k = g.k;
    const float alpha = g.alpha, beta = g.beta;
    float *cp = (float *)c->data;
    cudaStream_t st = kiln_cuda_stream(be);
    if (m == 0 || n == 0) return KILN_OK;
    if (k == 0) { // C = beta C, with beta 0 ignoring C's old contents (a NaN there too)
        if (beta == 0.0f) {
            KILN_CUDA_TRY(cudaMemsetAsync(cp, 0, (size_t)m * (size_t)n * sizeof(float), st));
            return KILN_OK;
        }
        return kiln_cuda_scale_f32(st, cp, beta, cp, (int64_t)m * n);
    }
    // With beta 0 cuBLAS does not read C (documented), so a poisoned C stays harmless, as the
    // CPU backend's explicit zeroing makes it there.
    cublasHandle_t h = kiln_cuda_ctx_of(be)->cublas;
    cublasMath_t mode = g.math == KILN_MATH_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH;
    KILN_CUBLAS_TRY(cublasSetMathMode(h, mode));
    const int lda = (int)a->shape[1], ldb = (int)b->shape[1];
    KILN_CUBLAS_TRY(cublasSgemm(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                n, m, k, &alpha, (const float *)b->data, ldb,
                                (const float *)a->data, lda, &beta, cp, n));
    return KILN_OK;
}
