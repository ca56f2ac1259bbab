/* cpu/elementwise.c: fill, copy, cast and the elementwise arithmetic on the CPU (add_relu: an
 * Add with the ReLU after it fused, src/model/fuse.c). */
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "dtype_convert.h"
#include "half.h"
#include "op_args.h"
#include "simd.h"

void kiln_cpu_fill(const kiln_op *op) {
    kiln_tensor *t = op->fill.dst;
    int64_t n = kiln_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) kiln_dtype_store(t->data, t->dtype, i, op->fill.value);
}

/* n elements of size es, src `stride` elements apart, into contiguous dst: one load and store
 * of the element's width each (a constant-size memcpy is a move) */
static void copy_strided(char *dst, const char *src, int64_t n, int64_t stride, size_t es) {
#define KILN_COPY_RUN(W)                                                                       \
    for (int64_t i = 0; i < n; i++) memcpy(dst + i * (W), src + i * stride * (W), (W));        \
    return;
    switch (es) {
    case 1: KILN_COPY_RUN(1)
    case 2: KILN_COPY_RUN(2)
    case 4: KILN_COPY_RUN(4)
    case 8: KILN_COPY_RUN(8)
    default:
        for (int64_t i = 0; i < n; i++) memcpy(dst + (size_t)i * es, src + (size_t)(i * stride) * es, es);
    }
#undef KILN_COPY_RUN
}

/* bytes [lo, hi) of a contiguous copy */
typedef struct bytes_job {
    char *dst;
    const char *src;
} bytes_job;

static void bytes_range(void *ctx, int64_t lo, int64_t hi) {
    const bytes_job *j = ctx;
    memcpy(j->dst + lo, j->src + lo, (size_t)(hi - lo));
}

/* dst (contiguous) = src (any strides), in src's row-major index order: the trailing dims that
 * are contiguous in src form one run copied with memcpy (a strided last dim is a run of its
 * own); the dims outside it are walked with an odometer */
void kiln_cpu_copy(const kiln_op *op) {
    const kiln_tensor *s = op->copy.src;
    kiln_tensor *d = op->copy.dst;
    size_t es = kiln_dtype_size(s->dtype);
    int outer = KILN_MAX_DIMS;
    int64_t run = 1, run_stride = 1;
    while (outer > 0 && (s->shape[outer - 1] == 1 || s->stride[outer - 1] == run)) run *= s->shape[--outer];
    if (run == 1 && outer > 0) run = s->shape[--outer], run_stride = s->stride[outer];
    int64_t total = kiln_tensor_numel(s), idx[KILN_MAX_DIMS] = {0}, off = 0;
    const char *sp = s->data;
    char *dp = d->data;
    if (run == total && run_stride == 1) { /* one contiguous run: split among the threads */
        bytes_job j = {dp, sp};
        kiln_cpu_parallel_ranges((int64_t)((size_t)total * es), 64, bytes_range, &j);
        return;
    }
    for (int64_t k = 0; k < total && run > 0; k += run) {
        if (run_stride == 1) memcpy(dp + (size_t)k * es, sp + (size_t)off * es, (size_t)run * es);
        else copy_strided(dp + (size_t)k * es, sp + (size_t)off * es, run, run_stride, es);
        for (int i = outer - 1; i >= 0; i--) { /* the next index of the outer dims */
            off += s->stride[i];
            if (++idx[i] < s->shape[i]) break;
            off -= s->stride[i] * s->shape[i];
            idx[i] = 0;
        }
    }
}

void kiln_cpu_cast(const kiln_op *op) {
    const kiln_tensor *s = op->copy.src;
    kiln_tensor *d = op->copy.dst;
    int64_t n = kiln_tensor_numel(s);
    for (int64_t i = 0; i < n; i++)
        kiln_dtype_store(d->data, d->dtype, i, kiln_dtype_load(s->data, s->dtype, i));
}

/* relu(v): v > 0, else +0; a NaN stays (kiln_relu). By a bit mask: GCC keeps a ?: of floats
 * in add_relu_loop as a branch, which neither vectorises nor predicts on random signs */
KILN_SIMD_INLINE float relu_of(float v) {
    uint32_t u, keep = -(uint32_t)((v > 0.0f) | isnan(v));
    memcpy(&u, &v, sizeof u);
    u &= keep;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* y = F(a, b), b repeated every nb elements : one loop per op, at every ISA level */
#define BINARY(name, F)                                                                         \
    KILN_SIMD_INLINE void name##_body(const float *a, const float *b, float *y, int64_t n, int64_t nb) { \
        if (nb == 1) {                                                                          \
            float bv = b[0];                                                                    \
            for (int64_t i = 0; i < n; i++) y[i] = F(a[i], bv);                                 \
            return;                                                                             \
        }                                                                                       \
        for (int64_t i0 = 0; i0 < n; i0 += nb) { /* a counted inner loop: it vectorises */    \
            int64_t m = nb < n - i0 ? nb : n - i0;                                              \
            for (int64_t i = 0; i < m; i++) y[i0 + i] = F(a[i0 + i], b[i]);                     \
        }                                                                                       \
    }                                                                                           \
    KILN_SIMD_CLONES(name, (const float *a, const float *b, float *y, int64_t n, int64_t nb), (a, b, y, n, nb))

#define ADD_F(p, q) ((p) + (q))
#define SUB_F(p, q) ((p) - (q))
#define MUL_F(p, q) ((p) * (q))
#define ADD_RELU_F(p, q) relu_of((p) + (q)) /* the sum rounded, then relu: kiln_add, kiln_relu */
BINARY(add_loop, ADD_F)
BINARY(sub_loop, SUB_F)
BINARY(mul_loop, MUL_F)
BINARY(add_relu_loop, ADD_RELU_F)

/* one thread's range [lo, hi) of a binary op: b's index restarts at lo when b is as long as a,
 * and ranges start at multiples of b's length when b repeats (kiln_cpu_parallel_ranges' align) */
typedef struct binary_job {
    kiln_op_type type;
    const float *a, *b;
    float *y;
    int64_t n, nb;
} binary_job;

static void binary_range(void *ctx, int64_t lo, int64_t hi) {
    const binary_job *j = ctx;
    const float *b = j->nb == j->n ? j->b + lo : j->b;
    int64_t len = hi - lo, nb = j->nb == j->n ? len : j->nb;
    switch (j->type) {
    case KILN_OP_ADD: add_loop(j->a + lo, b, j->y + lo, len, nb); break;
    case KILN_OP_SUB: sub_loop(j->a + lo, b, j->y + lo, len, nb); break;
    case KILN_OP_ADD_RELU: add_relu_loop(j->a + lo, b, j->y + lo, len, nb); break;
    default: mul_loop(j->a + lo, b, j->y + lo, len, nb); break;
    }
}

void kiln_cpu_binary(const kiln_op *op) {
    const kiln_binary_args *args = &op->binary;
    binary_job j = {op->type, args->a->data, args->b->data, args->out->data, kiln_tensor_numel(args->a),
                    kiln_tensor_numel(args->b)};
    if (j.n == 0 || j.nb == 0) return;
    kiln_cpu_parallel_ranges(j.n, j.nb == 1 || j.nb == j.n ? 1 : j.nb, binary_range, &j);
}

/* the unary loops: y[i] = F(i) */
#define UNARY(name, F)                                                                          \
    KILN_SIMD_INLINE void name##_body(const float *x, const float *x2, float *y, float alpha, int64_t n) { \
        (void)x2, (void)alpha;                                                                  \
        for (int64_t i = 0; i < n; i++) y[i] = F;                                               \
    }                                                                                           \
    KILN_SIMD_CLONES(name, (const float *x, const float *x2, float *y, float alpha, int64_t n), (x, x2, y, alpha, n))

UNARY(scale_loop, alpha * x[i])
UNARY(axpy_loop, fmaf(alpha, x[i], y[i]))
UNARY(relu_loop, relu_of(x[i]))
UNARY(relu_back_loop, x[i] > 0.0f ? x2[i] : 0.0f) /* x2: dy */

/* one thread's range of a unary op (x2 may be NULL) */
typedef struct unary_job {
    kiln_op_type type;
    const float *x, *x2;
    float *y;
    float alpha;
} unary_job;

static void unary_range(void *ctx, int64_t lo, int64_t hi) {
    const unary_job *j = ctx;
    const float *x = j->x + lo, *x2 = j->x2 ? j->x2 + lo : NULL;
    float *y = j->y + lo;
    int64_t n = hi - lo;
    switch (j->type) {
    case KILN_OP_RELU_BACK: relu_back_loop(x, x2, y, 0.0f, n); break;
    case KILN_OP_SCALE: scale_loop(x, NULL, y, j->alpha, n); break;
    case KILN_OP_AXPY: axpy_loop(x, NULL, y, j->alpha, n); break;
    case KILN_OP_RELU: relu_loop(x, NULL, y, j->alpha, n); break;
    default: break;
    }
}

void kiln_cpu_unary(const kiln_op *op) {
    if (op->type == KILN_OP_RELU_BACK) { /* dx = dy (x > 0) */
        const kiln_unary_back_args *a = &op->unary_back;
        unary_job j = {op->type, a->x->data, a->dy->data, a->dx->data, 0.0f};
        kiln_cpu_parallel_ranges(kiln_tensor_numel(a->x), 1, unary_range, &j);
        return;
    }
    unary_job j = {op->type, op->unary.x->data, NULL, op->unary.y->data, op->unary.alpha};
    kiln_cpu_parallel_ranges(kiln_tensor_numel(op->unary.x), 1, unary_range, &j);
}
