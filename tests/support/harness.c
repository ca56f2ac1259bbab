/* harness.c: the shared test machinery declared in harness.h. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"

void kt_rng_seed(kt_rng *r, uint64_t seed) { *r = kiln_rng_at(seed * KILN_RNG_GAMMA + 1); }

uint64_t kt_next(kt_rng *r) { return kiln_rng_next(r); }

double kt_uniform(kt_rng *r, double lo, double hi) { return lo + (hi - lo) * kiln_rng_uniform(r); }

double kt_normal(kt_rng *r) {
    double u1 = kt_uniform(r, 1e-300, 1.0), u2 = kt_uniform(r, 0.0, 1.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static kiln_backend *cpu_be, *cuda_be;
static char cuda_reason[1024];
static bool cuda_tried;

kiln_backend *kt_cpu(void) {
    if (!cpu_be) cr_assert_eq(kiln_backend_init("cpu", &cpu_be), KILN_OK, "%s", kiln_last_error());
    return cpu_be;
}

/* The GPU when there is one, else the CUDA emulator ("cuda-emu") when this kiln has it. */
kiln_backend *kt_cuda_or_skip(void) {
    if (!cuda_tried) {
        cuda_tried = true;
        if (kiln_backend_init("cuda", &cuda_be) != KILN_OK) {
            snprintf(cuda_reason, sizeof cuda_reason, "%s", kiln_last_error());
            cuda_be = NULL;
            if (kiln_backend_init("cuda-emu", &cuda_be) != KILN_OK) cuda_be = NULL;
            kiln_clear_error();
        }
    }
    if (!cuda_be) cr_skip_test("%s", cuda_reason);
    return cuda_be;
}

kiln_backend *kt_gpu_or_skip(void) {
    kiln_backend *be = kt_cuda_or_skip();
    if (kt_is_emulated(be)) cr_skip_test("needs a GPU (the CUDA emulator has no cuDNN): %s", cuda_reason);
    return be;
}

bool kt_is_emulated(const kiln_backend *be) {
    return be && !strncmp(kiln_backend_name(be), "cuda-emu", 8);
}

void kt_emu_log(const char *kind, const char *name) {
    const char *path = getenv("KILN_EMU_LOG");
    if (!path || !*path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    fprintf(f, "row %s %s\n", kind, name);
    fclose(f);
}

kiln_tensor *kt_new(kiln_backend *be, kiln_dtype dt, int ndim, const int64_t *shape) {
    kiln_tensor *t = NULL;
    cr_assert_eq(kiln_tensor_new(be, dt, ndim, shape, "t", &t), KILN_OK, "%s", kiln_last_error());
    return t;
}

static void *host_buf(size_t n) {
    void *p = malloc(n ? n : 1);
    cr_assert_not_null(p);
    return p;
}

void kt_fill_random(kiln_tensor *t, kt_rng *r, double lo, double hi) {
    int64_t n = kiln_tensor_numel(t);
    size_t es = kiln_dtype_size(t->dtype);
    unsigned char *h = host_buf((size_t)n * es);
    bool any_nonzero = n == 0;
    for (int64_t i = 0; i < n; i++) {
        double v = kt_uniform(r, lo, hi);
        switch (t->dtype) {
        case KILN_F32: ((float *)h)[i] = (float)v; break;
        case KILN_F16: ((uint16_t *)h)[i] = kiln_f32_to_f16((float)v); break;
        case KILN_BF16: ((uint16_t *)h)[i] = kiln_f32_to_bf16((float)v); break;
        case KILN_I32: ((int32_t *)h)[i] = (int32_t)floor(v); break;
        case KILN_U8: ((uint8_t *)h)[i] = (uint8_t)floor(v); break;
        default: cr_assert_fail("bad dtype");
        }
        for (size_t b = 0; b < es; b++) any_nonzero |= h[(size_t)i * es + b] != 0;
    }
    cr_assert(any_nonzero, "random input of %lld elements came out all zero", (long long)n);
    cr_assert_eq(kiln_tensor_set(t, h, (size_t)n * es), KILN_OK, "%s", kiln_last_error());
    free(h);
}

void kt_set_f32(kiln_tensor *t, const float *v) {
    cr_assert_eq(kiln_tensor_set(t, v, kiln_tensor_nbytes(t)), KILN_OK, "%s", kiln_last_error());
}

#define POISON_F32 0x7fffdeadu

bool kt_is_poison_f32(float v) { return kiln_f32_bits(v) == POISON_F32; }

void kt_poison(kiln_tensor *t) {
    int64_t n = kiln_tensor_numel(t);
    size_t es = kiln_dtype_size(t->dtype);
    unsigned char *h = host_buf((size_t)n * es);
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case KILN_F32: { uint32_t u = POISON_F32; memcpy(h + i * 4, &u, 4); break; }
        case KILN_F16: ((uint16_t *)h)[i] = 0x7e5d; break;
        case KILN_BF16: ((uint16_t *)h)[i] = 0x7fad; break;
        case KILN_I32: ((int32_t *)h)[i] = 0x5a5a5a5a; break;
        case KILN_U8: h[i] = 0xa5; break;
        default: break;
        }
    }
    cr_assert_eq(kiln_tensor_set(t, h, (size_t)n * es), KILN_OK, "%s", kiln_last_error());
    free(h);
}

void *kt_get_bytes(const kiln_tensor *t) {
    size_t nb = kiln_tensor_nbytes(t);
    void *h = host_buf(nb);
    cr_assert_eq(kiln_tensor_get(t, h, nb), KILN_OK, "%s", kiln_last_error());
    return h;
}

float *kt_get_f32(const kiln_tensor *t) {
    int64_t n = kiln_tensor_numel(t);
    unsigned char *raw = kt_get_bytes(t);
    float *out = host_buf((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case KILN_F32: memcpy(&out[i], raw + i * 4, 4); break;
        case KILN_F16: out[i] = kiln_f16_to_f32(((uint16_t *)raw)[i]); break;
        case KILN_BF16: out[i] = kiln_bf16_to_f32(((uint16_t *)raw)[i]); break;
        case KILN_I32: {
            int32_t v = ((int32_t *)raw)[i];
            out[i] = v == 0x5a5a5a5a ? kiln_bits_f32(POISON_F32) : (float)v;
            break;
        }
        case KILN_U8: out[i] = raw[i]; break;
        default: break;
        }
        if ((t->dtype == KILN_F16 && ((uint16_t *)raw)[i] == 0x7e5d) ||
            (t->dtype == KILN_BF16 && ((uint16_t *)raw)[i] == 0x7fad))
            out[i] = kiln_bits_f32(POISON_F32);
    }
    free(raw);
    return out;
}

kiln_tensor *kt_clone(kiln_backend *be, const kiln_tensor *t) {
    kiln_tensor *c = kt_new(be, t->dtype, t->ndim, t->shape);
    cr_assert_eq(kiln_tensor_transfer(t, c), KILN_OK, "%s", kiln_last_error());
    return c;
}

/* the checks every element gets: written (no poison), NaN and inf where and only where the
 * reference has them; true when the element is settled (the reference is not finite) */
static bool element_special(const char *what, int64_t i, float got, double w) {
    double g = got;
    cr_assert(!kt_is_poison_f32(got), "%s: element %lld was never written (poison)", what, (long long)i);
    if (isnan(w)) {
        cr_assert(isnan(g), "%s: element %lld is %g, the reference is NaN", what, (long long)i, g);
        return true;
    }
    if (isinf(w)) {
        cr_assert(g == w, "%s: element %lld is %g, the reference is %g", what, (long long)i, g, w);
        return true;
    }
    cr_assert(isfinite(g), "%s: element %lld is %g, the reference is %.9g", what, (long long)i, g, w);
    return false;
}

static double check_elems(const char *what, const float *got, int64_t n,
                          double (*want)(const void *, int64_t), const void *wv, double tol) {
    double scale = 1e-30, worst = 0.0;
    int64_t worst_i = -1;
    for (int64_t i = 0; i < n; i++) {
        double w = want(wv, i);
        if (isfinite(w) && fabs(w) > scale) scale = fabs(w);
    }
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], w = want(wv, i);
        if (element_special(what, i, got[i], w)) continue;
        double e = fabs(g - w) / scale;
        if (e > worst) { worst = e; worst_i = i; }
    }
    if (worst_i >= 0)
        cr_expect(worst <= tol, "%s: error %.3g over tolerance %.3g at element %lld: got %.9g, want %.9g (scale %.3g)",
                  what, worst, tol, (long long)worst_i, (double)got[worst_i], want(wv, worst_i), scale);
    return worst;
}

static double want_f32(const void *v, int64_t i) { return ((const float *)v)[i]; }
static double want_f64(const void *v, int64_t i) { return ((const double *)v)[i]; }

double kt_expect_close(const char *what, const float *got, const float *want, int64_t n, double tol) {
    return check_elems(what, got, n, want_f32, want, tol);
}

double kt_expect_close_f64(const char *what, const float *got, const double *want, int64_t n,
                           double tol) {
    return check_elems(what, got, n, want_f64, want, tol);
}

/* the spacing of dt's values at magnitude v (subnormals included) */
static double half_ulp_spacing(kiln_dtype dt, double v) {
    int e;
    (void)frexp(v, &e); /* v = m 2^e, m in [0.5, 1): the binade's ulp is 2^(e - 1 - mantissa bits) */
    int min_e = dt == KILN_F16 ? -13 : -125, bits = dt == KILN_F16 ? 10 : 7;
    if (v == 0.0) e = min_e;
    return ldexp(1.0, (e < min_e ? min_e : e) - 1 - bits);
}

double kt_expect_rounded(const char *what, const float *got, const float *want, int64_t n,
                         kiln_dtype dt, double tol) {
    double scale = 1e-30, worst = 0.0;
    int64_t worst_i = -1;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(want[i]) && fabs(want[i]) > scale) scale = fabs(want[i]);
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        if (element_special(what, i, got[i], w)) continue;
        double bound = 0.5 * half_ulp_spacing(dt, fmax(fabs(g), fabs(w))) + tol * scale;
        double r = fabs(g - w) / bound;
        if (r > worst) { worst = r; worst_i = i; }
    }
    if (worst_i >= 0)
        cr_expect(worst <= 1.0, "%s: element %lld is %.9g, the f32 reference %.9g: %.3g times the bound (half an ulp of %s + %.3g x scale %.3g)",
                  what, (long long)worst_i, (double)got[worst_i], (double)want[worst_i], worst,
                  kiln_dtype_name(dt), tol, scale);
    return worst;
}

void kt_expect_bitwise(const char *what, const void *a, const void *b, size_t nbytes) {
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < nbytes; i++)
        if (x[i] != y[i]) cr_assert_fail("%s: first differing byte at %zu of %zu", what, i, nbytes);
}

kiln_model *kt_small_model(uint64_t seed) {
    kiln_model *m;
    cr_assert_eq(kiln_model_builtin("seed-cnn", 6, 6, 3, 4, &m), KILN_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_build(m, kt_cpu(), seed), KILN_OK, "%s", kiln_last_error());
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    cr_assert_eq(kiln_model_compile(m, &cc), KILN_OK, "%s", kiln_last_error());
    return m;
}

void kt_expect_same_weights(const kiln_model *a, const kiln_model *b) {
    cr_assert_eq(kiln_model_weight_count(a), kiln_model_weight_count(b));
    for (int i = 0; i < kiln_model_weight_count(a); i++) {
        const char *name;
        kiln_tensor *ta, *tb;
        cr_assert_eq(kiln_model_weight(a, i, &name, &ta, NULL), KILN_OK, "%s", kiln_last_error());
        cr_assert_eq(kiln_model_weight(b, i, NULL, &tb, NULL), KILN_OK, "%s", kiln_last_error());
        void *x = kt_get_bytes(ta), *y = kt_get_bytes(tb);
        kt_expect_bitwise(name, x, y, kiln_tensor_nbytes(ta));
        free(x);
        free(y);
    }
}

/* ---- parity ---- */

static bool is_half(kiln_dtype t) { return t == KILN_F16 || t == KILN_BF16; }

static void make_inputs(const kt_case *c, kiln_backend *be, kiln_tensor **in, kt_rng *r) {
    for (int k = 0; k < c->n_in; k++) {
        in[k] = kt_new(be, c->in[k].dtype, c->in[k].ndim, c->in[k].shape);
        kt_fill_random(in[k], r, c->in[k].lo, c->in[k].hi);
    }
}

void kt_parity_run(const kt_case *c) { kt_parity_run_between(c, kt_cpu(), kt_cuda_or_skip()); }

kiln_backend *kt_cpu_second(void) {
    static kiln_backend *be;
    if (!be) cr_assert_eq(kiln_backend_init("cpu", &be), KILN_OK, "%s", kiln_last_error());
    return be;
}

static bool parity_between(const kt_case *c, kiln_backend *cpu, kiln_backend *cuda, bool skip_test);

void kt_parity_run_between(const kt_case *c, kiln_backend *cpu, kiln_backend *cuda) {
    (void)parity_between(c, cpu, cuda, true);
}

bool kt_parity_try(const kt_case *c) { return parity_between(c, kt_cpu(), kt_cuda_or_skip(), false); }

/* false: the emulated backend refused the op (KILN_ERR_UNSUPPORTED), the row skipped; with
 * skip_test the Criterion test is skipped then, else the caller goes on with its next row */
static bool parity_between(const kt_case *c, kiln_backend *cpu, kiln_backend *cuda, bool skip_test) {
    kt_rng r;
    kt_rng_seed(&r, c->seed ? c->seed : 1234);
    kiln_tensor *in_cpu[6] = {0}, *in_gpu[6] = {0}, *out_cpu[4] = {0}, *out_gpu[4] = {0};
    make_inputs(c, cpu, in_cpu, &r);
    for (int k = 0; k < c->n_in; k++) in_gpu[k] = kt_clone(cuda, in_cpu[k]);
    if (c->ref_f32) /* the reference computes on exact f32 copies of the half inputs */
        for (int k = 0; k < c->n_in; k++)
            if (is_half(in_cpu[k]->dtype)) {
                kiln_tensor *w = kt_new(cpu, KILN_F32, in_cpu[k]->ndim, in_cpu[k]->shape);
                float *v = kt_get_f32(in_cpu[k]);
                kt_set_f32(w, v);
                free(v);
                kiln_tensor_free(in_cpu[k]);
                in_cpu[k] = w;
            }
    for (int k = 0; k < c->n_out; k++) {
        kiln_dtype ref_dt = c->ref_f32 && is_half(c->out[k].dtype) ? KILN_F32 : c->out[k].dtype;
        cr_assert(ref_dt == c->out[k].dtype || !(k == 0 && c->out_is_input),
                  "%s: ref_f32 with a half out_is_input output is not supported", c->name);
        out_cpu[k] = kt_new(cpu, ref_dt, c->out[k].ndim, c->out[k].shape);
        if (k == 0 && c->out_is_input) kt_fill_random(out_cpu[k], &r, c->out[k].lo, c->out[k].hi);
        else kt_poison(out_cpu[k]);
        if (ref_dt == c->out[k].dtype) {
            out_gpu[k] = kt_clone(cuda, out_cpu[k]);
        } else {
            out_gpu[k] = kt_new(cuda, c->out[k].dtype, c->out[k].ndim, c->out[k].shape);
            kt_poison(out_gpu[k]);
        }
    }
    const bool emu = kt_is_emulated(cuda);
    if (emu) kt_emu_log("start", c->name);
    cr_assert_eq(c->run(c, in_cpu, out_cpu), KILN_OK, "%s on cpu: %s", c->name, kiln_last_error());
    kiln_status s = c->run(c, in_gpu, out_gpu);
    if (emu && s == KILN_ERR_UNSUPPORTED) { /* a cuDNN op, or a forced path the device refuses */
        kt_emu_log("skip", c->name);
        if (skip_test) cr_skip_test("%s: %s", c->name, kiln_last_error());
        fprintf(stderr, "%s: skipped on %s: %s\n", c->name, kiln_backend_name(cuda), kiln_last_error());
        for (int k = 0; k < 6; k++) { kiln_tensor_free(in_cpu[k]); kiln_tensor_free(in_gpu[k]); }
        for (int k = 0; k < 4; k++) { kiln_tensor_free(out_cpu[k]); kiln_tensor_free(out_gpu[k]); }
        return false;
    }
    cr_assert_eq(s, KILN_OK, "%s on %s: %s", c->name, kiln_backend_name(cuda), kiln_last_error());
    cr_assert_eq(kiln_backend_synchronize(cuda), KILN_OK, "%s: %s", c->name, kiln_last_error());
    bool ok = true;
    for (int k = 0; k < c->n_out; k++) {
        float *a = kt_get_f32(out_gpu[k]), *b = kt_get_f32(out_cpu[k]);
        char what[160];
        snprintf(what, sizeof what, "%s: output %d (%s vs %s)", c->name, k, kiln_backend_name(cuda), kiln_backend_name(cpu));
        if (c->ref_f32 && is_half(c->out[k].dtype))
            ok = kt_expect_rounded(what, a, b, kiln_tensor_numel(out_cpu[k]), c->out[k].dtype, c->tol) <= 1.0 && ok;
        else
            ok = kt_expect_close(what, a, b, kiln_tensor_numel(out_cpu[k]), c->tol) <= c->tol && ok;
        free(a);
        free(b);
    }
    if (emu && ok) kt_emu_log("pass", c->name); /* a failed row: "start" without "pass" */
    for (int k = 0; k < 6; k++) { kiln_tensor_free(in_cpu[k]); kiln_tensor_free(in_gpu[k]); }
    for (int k = 0; k < 4; k++) { kiln_tensor_free(out_cpu[k]); kiln_tensor_free(out_gpu[k]); }
    return true;
}
