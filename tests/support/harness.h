/* harness.h: what every kiln test shares: seeded random inputs, poisoned outputs, backends
 * (CUDA skipped with the reason when there is none), element-by-element comparison, and the
 * parity runner that takes one table row and checks CPU against CUDA.
 *
 * Error measure (docs/testing.md): for outputs `got` and reference `want` of n elements,
 *   err = max_i |got_i - want_i| / max(max_i |want_i|, 1e-30)
 * (the worst error normalised by the output's scale). Every element is checked besides: a NaN
 * or poison value where the reference has a finite value fails on its own, as does a finite
 * value where the reference has NaN or inf (NaN must propagate). */
#ifndef KILN_TEST_HARNESS_H
#define KILN_TEST_HARNESS_H

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdint.h>

#include "kiln/kiln.h"
#include "op_args.h"
#include "rng.h"

#ifdef __cplusplus
extern "C" { /* (test_cuda_emu_teeth.cpp) */
#endif

/* ---- random numbers: core's splitmix64 stream (rng.h) at state seed * gamma + 1; fixed
 * across platforms ---- */
typedef kiln_rng kt_rng;
void kt_rng_seed(kt_rng *r, uint64_t seed);
uint64_t kt_next(kt_rng *r);
double kt_uniform(kt_rng *r, double lo, double hi);
double kt_normal(kt_rng *r);

/* ---- backends ---- */
kiln_backend *kt_cpu(void);              /* one per test process */
/* A GPU, else the CUDA emulator (the "cuda-emu" backend, in builds with KILN_CUDA_EMU), else
 * cr_skip_test("no CUDA device: ..."). */
kiln_backend *kt_cuda_or_skip(void);
/* A real GPU only (tests of cuDNN's paths and of whole models with convolutions) */
kiln_backend *kt_gpu_or_skip(void);
bool kt_is_emulated(const kiln_backend *be);
/* Appends "row KIND NAME" to $KILN_EMU_LOG (scripts/test.sh's emulation summary) */
void kt_emu_log(const char *kind, const char *name);

/* ---- tensors (each cr_asserts success) ---- */
kiln_tensor *kt_new(kiln_backend *be, kiln_dtype dt, int ndim, const int64_t *shape);
/* uniform in [lo, hi) for floats; integers uniform in [lo, hi) (labels, pixels).
 * Fails the test if the drawn values are all zero. */
void kt_fill_random(kiln_tensor *t, kt_rng *r, double lo, double hi);
void kt_set_f32(kiln_tensor *t, const float *v);
/* every element set to a sentinel: a NaN with payload 0x7fdead for floats (0x7e5d for f16,
 * 0x7fad for bf16), 0x5a5a5a5a for i32, 0xa5 for u8 */
void kt_poison(kiln_tensor *t);
bool kt_is_poison_f32(float v);
/* downloads and converts to float (malloc'ed; caller frees) */
float *kt_get_f32(const kiln_tensor *t);
/* the same raw bytes (malloc'ed) */
void *kt_get_bytes(const kiln_tensor *t);
/* a copy of t on backend be */
kiln_tensor *kt_clone(kiln_backend *be, const kiln_tensor *t);

/* ---- comparison ---- */
/* Checks every element as described above and the normalised error against tol; reports the
 * worst element with `what`. Returns the error. */
double kt_expect_close(const char *what, const float *got, const float *want, int64_t n, double tol);
double kt_expect_close_f64(const char *what, const float *got, const double *want, int64_t n,
                           double tol);
/* A f16/bf16 output `got` of a computation whose f32 reference is `want`: every element within
 * half a unit in the last place of dt (at the larger of |got|, |want|) plus tol times the
 * output's scale (max |want|), i.e. one rounding of a result within tol of the reference.
 * NaN, inf and poison as kt_expect_close. Returns the worst error / bound ratio. */
double kt_expect_rounded(const char *what, const float *got, const float *want, int64_t n,
                         kiln_dtype dt, double tol);
/* Same bits, element for element. */
void kt_expect_bitwise(const char *what, const void *a, const void *b, size_t nbytes);
/* Two models' weights, the same bits, weight by weight (the same architecture). */
void kt_expect_same_weights(const kiln_model *a, const kiln_model *b);
/* seed-cnn for 6x6x3 inputs and 4 classes on the CPU, built from `seed`, compiled with Adam */
kiln_model *kt_small_model(uint64_t seed);

/* ---- the parity table ---- */
typedef struct kt_tspec {
    kiln_dtype dtype;
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    double lo, hi;   /* inputs: the random range; outputs: unused */
} kt_tspec;

typedef struct kt_case kt_case;
/* Runs the op of a row on whatever backend the tensors live on. */
typedef kiln_status (*kt_run_fn)(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out);

struct kt_case {
    const char *name;
    kt_run_fn run;
    int n_in, n_out;
    kt_tspec in[6];
    kt_tspec out[4];
    /* the op's parameters, by name: a row sets those its run() reads */
    kiln_op op;        /* the op's own arguments (src/ops/op_args.h: fill, unary, reduce, gemm,
                        * softmax, dropout, adam, sgd, clip); their tensors stay NULL, they are
                        * in[] and out[] */
    kiln_conv2d_params conv;  /* Conv2D rows */
    kiln_pool2d_params pool;  /* pooling rows */
    kiln_bn_params bn;        /* batch-norm rows */
    int bn_call;              /* batch-norm rows: which call (test_batchnorm_parity.c) */
    int64_t step;             /* Adam rows: the update's step */
    bool grad_scale;          /* optimizer rows: the input after the slots is grad_scale */
    bool transposed;          /* copy rows: from a transposed view of in[0] */
    double tol;        /* CPU vs CUDA, normalised error (docs/testing.md) */
    uint64_t seed;
    bool out_is_input; /* out[0] starts as a copy of in[0]'s shape, random (axpy, beta != 0) */
    /* f16/bf16 rows: the reference backend runs on f32 copies of the f16/bf16 inputs (exact)
     * with f32 outputs; each f16/bf16 output of the other backend is then checked against that
     * f32 result rounded once (kt_expect_rounded, with tol), f32 outputs as usual */
    bool ref_f32;
};

/* Draws the inputs on the CPU, copies them to CUDA (skipping without a device), poisons the
 * outputs on both, runs the op on both, and checks every element of every output. */
void kt_parity_run(const kt_case *c);
/* The same between any two backends. With two CPU backends (kt_cpu_second) it checks that the
 * row itself is sound (every output element written, no NaN where none belongs); it is no
 * substitute for the CUDA run. */
void kt_parity_run_between(const kt_case *c, kiln_backend *ref, kiln_backend *other);
kiln_backend *kt_cpu_second(void);
/* kt_parity_run for a row among others in one test (the BN groups): a row the emulated backend
 * refuses (KILN_ERR_UNSUPPORTED) is logged as skipped and false returned, the test goes on */
bool kt_parity_try(const kt_case *c);

/* A parity table as two parameterized Criterion tests: `suite::cuda_vs_cpu` (each row on CPU
 * and CUDA, skipped without a GPU) and `suite::cpu_self` (each row on two CPU backends, to show
 * the row sound). Criterion runs each test in a fresh process of the same program, where the
 * parent's pointers (the rows' function pointers and names) are not valid: never pass a kt_case
 * itself as a Criterion parameter; this passes row indices. */
#define KT_PARITY_SUITE(suite, rows)                                                     \
    static size_t suite##_row_index[sizeof(rows) / sizeof((rows)[0])];                  \
    static struct criterion_test_params suite##_params(void) {                           \
        for (size_t k = 0; k < sizeof(rows) / sizeof((rows)[0]); k++)                   \
            suite##_row_index[k] = k;                                                    \
        return cr_make_param_array(size_t, suite##_row_index,                            \
                                   sizeof(rows) / sizeof((rows)[0]));                    \
    }                                                                                    \
    ParameterizedTestParameters(suite, cuda_vs_cpu) { return suite##_params(); }         \
    ParameterizedTest(size_t *k, suite, cuda_vs_cpu) { kt_parity_run(&(rows)[*k]); }     \
    ParameterizedTestParameters(suite, cpu_self) { return suite##_params(); }            \
    ParameterizedTest(size_t *k, suite, cpu_self) {                                      \
        kt_parity_run_between(&(rows)[*k], kt_cpu(), kt_cpu_second());                   \
    }

#ifdef __cplusplus
}
#endif
#endif
