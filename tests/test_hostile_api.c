/* test_hostile_api.c: the library under hostile arguments (issue 10, items 1 and 12).
 *
 * Shapes whose element or byte counts pass 64 bits are refused wherever they enter (a Keras
 * JSON's InputLayer through Flatten and Dense, kiln_tensor_new, kiln_tensor_view's offset) with
 * a message naming the layer or tensor; and every family of public functions, called with NULL
 * pointers and out-of-range indices or counts, returns a non-OK status (or the safe value its
 * header documents) with a message, and never crashes: each row of the table runs in its own
 * process, so a crash fails that row alone. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "kiln/callbacks.h"
#include "kiln/kiln.h"
#include "kiln/safetensors.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

/* a status call that must fail with a message naming `want` */
static void expect_refused(kiln_status s, const char *want) {
    cr_assert_neq(s, KILN_OK, "accepted; wanted an error naming \"%s\"", want);
    cr_assert(strstr(kiln_last_error(), want), "message \"%s\" does not name \"%s\"", kiln_last_error(), want);
}

/* ---- item 1: shapes whose sizes overflow ---- */

/* InputLayer (2^20)^3, Flatten, Dense(units): as the 280-byte file of the issue */
static char *big_json(int units) {
    static const char fmt[] =
        "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, 1048576, 1048576, 1048576], \"name\": \"in\"}},"
        "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"flatten\"}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": %d}}]}}";
    char *s = malloc(sizeof fmt + 16);
    cr_assert_not_null(s);
    snprintf(s, sizeof fmt + 16, fmt, units);
    return s;
}

static void expect_json_refused(int units, const char *want) {
    char *json = big_json(units);
    kiln_model *m = NULL;
    kiln_backend *be = NULL;
    OK(kiln_model_from_json(json, strlen(json), &m));
    OK(kiln_backend_init("cpu", &be));
    expect_refused(kiln_model_build(m, be, 1), want);
    expect_refused(kiln_model_summary(m, stdout), "not built"); /* nothing half-built is summarised */
    kiln_model_free(m);
    kiln_backend_free(be);
    free(json);
}

Test(hostile_shapes, json_dense_bytes_overflow) {
    /* kernel (2^60, 4): 2^62 elements, 2^64 bytes */
    expect_json_refused(4, "layer 'dense' (Dense): weight 'kernel' of 1152921504606846976 x 4 elements of 4 bytes overflows 64 bits");
}

Test(hostile_shapes, json_dense_elements_overflow) {
    /* kernel (2^60, 16): 2^64 parameters, which summary printed as 16 */
    expect_json_refused(16, "layer 'dense' (Dense): weight 'kernel' of 1152921504606846976 x 16 elements overflows 64 bits");
}

Test(hostile_shapes, api_input_overflow) {
    /* through the C API an Input may be larger than the JSON reader's 2^20 per axis */
    int64_t shape[3] = {(int64_t)1 << 40, (int64_t)1 << 40, 1};
    kiln_model *m = NULL;
    kiln_backend *be = NULL;
    OK(kiln_model_new("big", &m));
    kiln_layer_config in = kiln_input_layer(3, shape), fl = kiln_flatten_layer();
    OK(kiln_model_add(m, &in, 0, NULL, NULL));
    OK(kiln_model_add(m, &fl, 0, NULL, NULL));
    OK(kiln_backend_init("cpu", &be));
    expect_refused(kiln_model_build(m, be, 1), "layer 'input_layer' (InputLayer): output of 1099511627776 x 1099511627776 x 1 elements overflows 64 bits");
    kiln_model_free(m);
    kiln_backend_free(be);
}

Test(hostile_shapes, api_dense_kernel_overflow) {
    /* kernel (2^37, 2^24): 2^61 elements fit, their 2^63 bytes do not */
    int64_t shape[1] = {(int64_t)1 << 37};
    kiln_model *m = NULL;
    kiln_backend *be = NULL;
    OK(kiln_model_new("wide", &m));
    kiln_layer_config in = kiln_input_layer(1, shape), d = kiln_dense_layer(1 << 24, KILN_ACT_LINEAR);
    OK(kiln_model_add(m, &in, 0, NULL, NULL));
    OK(kiln_model_add(m, &d, 0, NULL, NULL));
    OK(kiln_backend_init("cpu", &be));
    expect_refused(kiln_model_build(m, be, 1),
                   "layer 'dense' (Dense): weight 'kernel' of 137438953472 x 16777216 elements of 4 bytes overflows 64 bits");
    kiln_model_free(m);
    kiln_backend_free(be);
}

Test(hostile_shapes, failed_build_retried) {
    /* a build that fails after allocating earlier layers leaves the model unbuilt and whole: the
     * second and third tries fail the same way (weights declared again overran a node's arrays) */
    int64_t four = 4;
    kiln_model *m = NULL;
    kiln_backend *be = NULL;
    OK(kiln_model_new("retry", &m));
    kiln_layer_config in = kiln_input_layer(1, &four), d = kiln_dense_layer(3, KILN_ACT_RELU),
                      bad = kiln_dense_layer(0, KILN_ACT_LINEAR);
    OK(kiln_model_add(m, &in, 0, NULL, NULL));
    OK(kiln_model_add(m, &d, 0, NULL, NULL));
    OK(kiln_model_add(m, &d, 0, NULL, NULL));
    OK(kiln_model_add(m, &bad, 0, NULL, NULL));
    OK(kiln_backend_init("cpu", &be));
    for (int attempt = 0; attempt < 3; attempt++) {
        expect_refused(kiln_model_build(m, be, 1), "layer 'dense_2' (Dense): units must be >= 1 (is 0)");
        cr_assert_eq(kiln_model_weight_count(m), 0, "try %d left %d weights", attempt, kiln_model_weight_count(m));
        cr_assert_null(kiln_model_backend(m));
    }
    kiln_model_free(m);
    kiln_backend_free(be);
}

static void expect_new_refused(int ndim, const int64_t *shape, kiln_dtype dt, const char *want) {
    kiln_backend *be = NULL;
    kiln_tensor *t = (kiln_tensor *)&t; /* poisoned: must come back NULL */
    OK(kiln_backend_init("cpu", &be));
    expect_refused(kiln_tensor_new(be, dt, ndim, shape, "huge", &t), want);
    cr_assert_null(t);
    kiln_backend_free(be);
}

Test(hostile_shapes, tensor_new_overflow) {
    int64_t a[2] = {((int64_t)1 << 62) + 1, 4}, b[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
    int64_t c[4] = {0, (int64_t)1 << 40, (int64_t)1 << 40, 2}; /* empty, but its strides overflow */
    int64_t d[1] = {INT64_MAX}, e[1] = {-1};
    expect_new_refused(2, a, KILN_F32, "kiln_tensor_new: 'huge' (f32) of 4611686018427387905 x 4 elements overflows 64 bits");
    expect_new_refused(2, b, KILN_U8, "kiln_tensor_new: 'huge' (u8) of 1099511627776 x 1099511627776 elements overflows 64 bits");
    expect_new_refused(4, c, KILN_F32, "overflows 64 bits");
    expect_new_refused(1, d, KILN_F16, "of 9223372036854775807 elements of 2 bytes overflows 64 bits");
    expect_new_refused(1, e, KILN_F32, "dimension 0 is negative");
}

Test(hostile_shapes, view_offset_overflow) {
    kiln_backend *be = NULL;
    kiln_tensor *base = NULL, *v = (kiln_tensor *)&v;
    int64_t bs[1] = {16}, vs[1] = {4};
    OK(kiln_backend_init("cpu", &be));
    OK(kiln_tensor_new(be, KILN_F32, 1, bs, "base", &base));
    int64_t offsets[] = {INT64_MAX - 1, INT64_MAX, INT64_MAX - 3, 13, -1, INT64_MIN};
    for (size_t i = 0; i < sizeof offsets / sizeof *offsets; i++) {
        expect_refused(kiln_tensor_view(base, offsets[i], 1, vs, &v), "overrun 'base'");
        cr_assert_null(v);
    }
    OK(kiln_tensor_view(base, 12, 1, vs, &v)); /* the last 4 elements: fine */
    kiln_tensor_free(v);
    kiln_tensor_free(base);
    kiln_backend_free(be);
}

/* ---- item 12: NULL and out-of-range arguments to every family ---- */

typedef struct fixture {
    kiln_backend *be;
    kiln_tensor *t;  /* (2, 3) f32 */
    kiln_tensor *out;
    kiln_model *m;   /* built: Input (4), Dense (3) */
    kiln_dataset *ds;
    int64_t shape[4];
    int64_t idx[4];
    float buf[64];
    int inputs[KILN_LAYER_MAX_INPUTS];
    char text[64];
    void *ptr;
} fixture;

static fixture fx;

static void fx_init(void) {
    memset(&fx, 0, sizeof fx);
    fx.shape[0] = 2;
    fx.shape[1] = 3;
    OK(kiln_backend_init("cpu", &fx.be));
    OK(kiln_tensor_new(fx.be, KILN_F32, 2, fx.shape, "t", &fx.t));
    int64_t four = 4;
    kiln_layer_config in = kiln_input_layer(1, &four), d = kiln_dense_layer(3, KILN_ACT_SOFTMAX);
    OK(kiln_model_new("m", &fx.m));
    OK(kiln_model_add(fx.m, &in, 0, NULL, NULL));
    OK(kiln_model_add(fx.m, &d, 0, NULL, NULL));
    OK(kiln_model_build(fx.m, fx.be, 1));
    OK(kiln_dataset_new(4, 2, 2, 1, 2, "mem", &fx.ds));
    kiln_clear_error();
}

static void fx_fini(void) {
    kiln_tensor_free(fx.out);
    kiln_tensor_free(fx.t);
    kiln_model_free(fx.m);
    kiln_dataset_free(fx.ds);
    kiln_backend_free(fx.be);
}

/* value-returning calls: the documented safe value came back */
static kiln_status safe(bool came_back) { return came_back ? KILN_ERR_INVALID_ARG : KILN_OK; }

static kiln_status param_counts_null(void) {
    int64_t a = 7, b = 7, c = 7;
    kiln_model_param_counts(NULL, &a, &b, &c);
    return safe(a == 0 && b == 0 && c == 0);
}

static kiln_monitor monitor(const char *name, int patience) { return (kiln_monitor){name, 0.0, patience}; }

/* fit of the fixture's model, compiled, on 2 rows of zeros, with one thing wrong */
static kiln_status fit_bad(int what) {
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_SGD), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    OK(kiln_model_compile(fx.m, &cc));
    kiln_data d = {fx.buf, (const int32_t *)fx.buf, NULL, 2};
    kiln_fit_config cfg = kiln_fit_defaults();
    cfg.verbose = 0;
    if (what == 0) cfg.epochs = -1;
    if (what == 1) d.n = -5;
    if (what == 2) cfg.batch_size = 0;
    if (what == 3) cfg.n_callbacks = 2; /* callbacks NULL */
    if (what == 4) cfg.n_callbacks = -1;
    if (what == 5) return kiln_model_fit(fx.m, NULL, &cfg, NULL);
    if (what == 6) return kiln_model_evaluate(fx.m, &d, -1, NULL, NULL);
    return kiln_model_fit(fx.m, &d, &cfg, NULL);
}

static kiln_status compile_bad(int what) {
    kiln_compile_config c = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    if (what == 0) c.optimizer.type = (kiln_optimizer_type)99;
    else c.loss = (kiln_loss)-1;
    return kiln_model_compile(fx.m, &c);
}

/* a safetensors tensor with one thing wrong */
static kiln_status write_bad(int what) {
    int64_t shape[2] = {1, 2};
    kiln_st_tensor t = {"w", KILN_ST_F32, 2, shape, fx.buf};
    if (what == 0) t.name = NULL;
    if (what == 1) t.ndim = -1;
    if (what == 2) t.shape = NULL;
    if (what == 3) t.data = NULL;
    if (what == 4) shape[1] = -2;
    if (what == 5) return kiln_safetensors_write("/tmp/kiln-hostile-api.safetensors", &t, SIZE_MAX, NULL, 0);
    return kiln_safetensors_write("/tmp/kiln-hostile-api.safetensors", &t, 1, NULL, 0);
}

/* a prefetcher over the fixture's dataset started on a bad order */
static kiln_status prefetch_bad(int what) {
    kiln_prefetcher *p = NULL;
    int64_t order[2] = {0, what == 1 ? 4 : 1};
    OK(kiln_prefetcher_new(fx.ds, 2, NULL, NULL, false, &p));
    kiln_status s = kiln_prefetcher_start(p, what == 2 ? NULL : order, what == 0 ? -1 : 2, 1);
    kiln_prefetcher_free(p);
    return s;
}

/* kiln_model_add to a new model's Input, with one thing wrong */
static kiln_status add_bad(int what) {
    int64_t four = 4;
    kiln_model *m = NULL;
    kiln_layer_config in = kiln_input_layer(1, &four), d = kiln_dense_layer(3, KILN_ACT_RELU);
    int inputs[KILN_LAYER_MAX_INPUTS + 1] = {5};
    OK(kiln_model_new("m", &m));
    OK(kiln_model_add(m, &in, 0, NULL, NULL));
    if (what == 0) d.activation = (kiln_activation)99;
    if (what == 1) memset(d.name, 'x', sizeof d.name); /* not terminated */
    if (what == 3) inputs[0] = -1;
    if (what == 4) d.type = KILN_LAYER_TYPE_COUNT;
    if (what == 5) in.input_ndim = 4;
    kiln_status s = kiln_model_add(m, what == 5 ? &in : &d, what == 2 ? KILN_LAYER_MAX_INPUTS + 1 : what >= 3 ? 1 : 0,
                                   inputs, NULL);
    kiln_model_free(m);
    return s;
}

/* the fixture's tensor, copied by hand and then spoilt: no backend, too many axes, a size that
 * wraps, no data, an unknown dtype */
static kiln_tensor *forged(int what) {
    static kiln_tensor t;
    t = *fx.t;
    if (what == 0) t.backend = NULL;
    if (what == 1) t.ndim = 9;
    if (what == 2) t.shape[0] = (int64_t)1 << 62;
    if (what == 3) t.data = NULL;
    if (what == 4) t.dtype = (kiln_dtype)77;
    return &t;
}

/* S(call): returns a status, which must not be KILN_OK; V(cond): a value-returning call, cond
 * true when the documented safe value came back. Either way kiln_last_error() must say why. */
#define HOSTILE_CALLS(S, V)                                                                  \
    /* tensors */                                                                            \
    S(kiln_tensor_new(NULL, KILN_F32, 2, fx.shape, "t", &fx.out))                            \
    S(kiln_tensor_new(fx.be, KILN_F32, 2, fx.shape, "t", NULL))                              \
    S(kiln_tensor_new(fx.be, KILN_F32, 2, NULL, "t", &fx.out))                               \
    S(kiln_tensor_new(fx.be, KILN_F32, -1, fx.shape, "t", &fx.out))                          \
    S(kiln_tensor_new(fx.be, KILN_F32, 5, fx.shape, "t", &fx.out))                           \
    S(kiln_tensor_new(fx.be, (kiln_dtype)-1, 2, fx.shape, "t", &fx.out))                     \
    S(kiln_tensor_view(NULL, 0, 1, fx.shape, &fx.out))                                       \
    S(kiln_tensor_view(fx.t, 0, 1, fx.shape, NULL))                                          \
    S(kiln_tensor_view(fx.t, -1, 1, fx.shape, &fx.out))                                      \
    S(kiln_tensor_view(fx.t, INT64_MAX - 1, 1, fx.shape, &fx.out))                           \
    S(kiln_tensor_view(fx.t, 0, 1, NULL, &fx.out))                                           \
    S(kiln_tensor_reshape(NULL, 1, fx.shape))                                                \
    S(kiln_tensor_reshape(fx.t, 2, NULL))                                                    \
    S(kiln_tensor_reshape(fx.t, -3, fx.shape))                                               \
    S(kiln_tensor_reshape(fx.t, 1, (int64_t[1]){7}))                                         \
    S(kiln_tensor_reshape(fx.t, 2, (int64_t[2]){(int64_t)1 << 62, 8}))                       \
    S(kiln_tensor_view(fx.t, 1, 2, fx.shape, &fx.out))                                       \
    S(kiln_tensor_set(NULL, fx.buf, 24))                                                     \
    S(kiln_tensor_set(fx.t, NULL, 24))                                                       \
    S(kiln_tensor_get(fx.t, NULL, 24))                                                       \
    S(kiln_tensor_get(fx.t, fx.buf, 4))                                                      \
    S(kiln_tensor_set_async(NULL, fx.buf, 24))                                               \
    S(kiln_tensor_get_async(fx.t, NULL, 24))                                                 \
    S(kiln_tensor_transfer(NULL, fx.t))                                                      \
    S(kiln_tensor_transfer(fx.t, NULL))                                                      \
    S(kiln_fill(forged(0), 1.0))                                                             \
    S(kiln_copy(forged(1), fx.t))                                                            \
    S(kiln_tensor_get(forged(2), fx.buf, 24))                                                \
    S(kiln_tensor_set(forged(3), fx.buf, 24))                                                \
    S(kiln_add(fx.t, forged(4), fx.t))                                                       \
    S(kiln_tensor_view(forged(2), 0, 1, fx.shape, &fx.out))                                  \
    S(kiln_tensor_reshape(forged(0), 1, (int64_t[1]){6}))                                    \
    S(kiln_tensor_transfer(forged(3), fx.t))                                                 \
    S(kiln_gemm(fx.t, true, forged(2), false, 1.0f, 0.0f, fx.t, KILN_MATH_STRICT))           \
    V(kiln_tensor_numel(NULL) == 0)                                                          \
    V(kiln_tensor_nbytes(NULL) == 0)                                                         \
    V(!kiln_tensor_is_contiguous(NULL))                                                      \
    V(!kiln_tensor_same_shape(NULL, fx.t))                                                   \
    V(!strcmp(kiln_shape_str(NULL, fx.text, sizeof fx.text), "(null)"))                      \
    V(kiln_shape_str(fx.t, NULL, 8) == NULL)                                                 \
    V(kiln_dtype_size((kiln_dtype)99) == 0)                                                  \
    V(!strcmp(kiln_dtype_name((kiln_dtype)-1), "?"))                                         \
    /* backends */                                                                           \
    S(kiln_backend_init("cpu", NULL))                                                        \
    S(kiln_backend_init("cuda:-1", &fx.be))                                                  \
    S(kiln_backend_synchronize(NULL))                                                        \
    S(kiln_backend_mark(NULL, 0))                                                            \
    S(kiln_backend_mark(fx.be, -1))                                                          \
    S(kiln_backend_mark(fx.be, KILN_MAX_MARKS))                                              \
    S(kiln_backend_wait_mark(fx.be, -1))                                                     \
    S(kiln_backend_wait_mark(NULL, 0))                                                       \
    S(kiln_host_alloc(NULL, 8, &fx.ptr))                                                     \
    S(kiln_host_alloc(fx.be, 8, NULL))                                                       \
    S(kiln_backend_memory_stats(NULL, &(kiln_memory_stats){0}))                              \
    S(kiln_backend_memory_stats(fx.be, NULL))                                                \
    V(!strcmp(kiln_backend_name(NULL), "(null)"))                                            \
    V(kiln_backend_kind_of(NULL) == (kiln_backend_kind)-1)                                   \
    V(!kiln_backend_supports(NULL, KILN_OP_ADD, KILN_F32))                                   \
    V(!kiln_backend_supports(fx.be, (kiln_op_type)-1, KILN_F32))                             \
    V(!kiln_backend_supports(fx.be, KILN_OP_ADD, (kiln_dtype)99))                            \
    V(!strcmp(kiln_op_name((kiln_op_type)-1), "?"))                                          \
    V(!strcmp(kiln_status_name((kiln_status)-1), "KILN_ERR_UNKNOWN"))                        \
    /* ops */                                                                                \
    S(kiln_fill(NULL, 1.0))                                                                  \
    S(kiln_copy(NULL, fx.t))                                                                 \
    S(kiln_copy(fx.t, NULL))                                                                 \
    S(kiln_cast(fx.t, NULL))                                                                 \
    S(kiln_add(NULL, fx.t, fx.t))                                                            \
    S(kiln_sub(fx.t, NULL, fx.t))                                                            \
    S(kiln_mul(fx.t, fx.t, NULL))                                                            \
    S(kiln_scale(NULL, 2.0f, fx.t))                                                          \
    S(kiln_axpy(2.0f, fx.t, NULL))                                                           \
    S(kiln_relu(NULL, NULL))                                                                 \
    S(kiln_relu_backward(fx.t, NULL, fx.t))                                                  \
    S(kiln_sum(NULL, 1, fx.t))                                                               \
    S(kiln_sum(fx.t, 1u << 9, fx.t))                                                         \
    S(kiln_mean(fx.t, 1, NULL))                                                              \
    S(kiln_gemm(NULL, false, fx.t, false, 1.0f, 0.0f, fx.t, KILN_MATH_STRICT))               \
    S(kiln_gemm(fx.t, false, fx.t, true, 1.0f, 0.0f, fx.t, (kiln_math)7))                    \
    S(kiln_softmax(fx.t, NULL))                                                              \
    S(kiln_softmax_xent(fx.t, NULL, fx.t, fx.t))                                             \
    S(kiln_softmax_xent_backward(NULL, NULL, 1.0f, fx.t))                                    \
    S(kiln_argmax(fx.t, NULL))                                                               \
    S(kiln_accuracy(NULL, fx.t, fx.t))                                                       \
    /* nn */                                                                                 \
    S(kiln_conv2d_output_shape(NULL, fx.shape, &(kiln_conv2d_params)KILN_CONV2D_DEFAULTS, fx.shape)) \
    S(kiln_conv2d_output_shape(fx.shape, fx.shape, NULL, fx.shape))                         \
    S(kiln_conv2d_output_shape((int64_t[4]){1, INT64_MAX, 1, 1}, (int64_t[4]){1, 1, 1, 1},   \
                               &(kiln_conv2d_params){1, 1, 1, 1, KILN_PADDING_SAME, KILN_MATH_STRICT, 1}, fx.shape)) \
    S(kiln_conv2d(NULL, fx.t, NULL, &(kiln_conv2d_params)KILN_CONV2D_DEFAULTS, fx.t))        \
    S(kiln_conv2d(fx.t, fx.t, NULL, NULL, fx.t))                                             \
    S(kiln_conv2d_backward_data(NULL, NULL, NULL, NULL))                                     \
    S(kiln_conv2d_backward_filter(NULL, fx.t, NULL, fx.t, NULL))                             \
    S(kiln_pool2d_output_shape(fx.shape, NULL, fx.shape))                                    \
    S(kiln_pool2d_output_shape(NULL, &(kiln_pool2d_params){2, 2, 0, 0, KILN_PADDING_VALID}, fx.shape)) \
    S(kiln_pool2d_output_shape((int64_t[4]){1, INT64_MAX, 4, 1}, &(kiln_pool2d_params){2, 2, 0, 0, KILN_PADDING_SAME}, fx.shape)) \
    S(kiln_max_pool2d(NULL, NULL, NULL))                                                     \
    S(kiln_max_pool2d_backward(fx.t, NULL, NULL, fx.t))                                      \
    S(kiln_avg_pool2d(fx.t, NULL, fx.t))                                                     \
    S(kiln_avg_pool2d_backward(NULL, NULL, fx.t))                                            \
    S(kiln_global_avg_pool2d(NULL, fx.t))                                                    \
    S(kiln_global_avg_pool2d_backward(fx.t, NULL))                                           \
    S(kiln_sigmoid(NULL, fx.t))                                                              \
    S(kiln_sigmoid_backward(fx.t, NULL, fx.t))                                               \
    S(kiln_tanh(fx.t, NULL))                                                                 \
    S(kiln_tanh_backward(NULL, fx.t, fx.t))                                                  \
    S(kiln_dropout(NULL, 0.5f, 1, fx.t))                                                     \
    S(kiln_dropout(fx.t, 1.5f, 1, fx.t))                                                     \
    S(kiln_dropout_backward(fx.t, 0.5f, 1, NULL))                                            \
    S(kiln_act(NULL, fx.t, fx.t))                                                            \
    S(kiln_act(&(kiln_act_params){KILN_FN_COUNT, 0, 0, 0, 0, 0, 0}, fx.t, fx.t))             \
    S(kiln_act_backward(&(kiln_act_params){KILN_FN_RELU, -1, 0, 0, 0, 0, 0}, fx.t, fx.t, fx.t)) \
    S(kiln_act_backward(&(kiln_act_params){KILN_FN_GELU, 0, 0, 0, 0, 0, 0}, NULL, fx.t, fx.t)) \
    S(kiln_copy_columns(NULL, fx.t, 1, 1, 0))                                                \
    S(kiln_copy_columns(fx.t, fx.t, 1, 1, 1))                                                \
    S(kiln_copy_columns_back(fx.t, NULL, 1, 1, 0))                                           \
    S(kiln_spatial_dropout2d(NULL, 0.5f, 1, fx.t))                                           \
    S(kiln_mul_channels(fx.t, NULL, fx.t))                                                   \
    S(kiln_normalize(NULL, fx.t, fx.t, 1e-7f, fx.t))                                         \
    S(kiln_normalize(fx.t, NULL, fx.t, 1e-7f, fx.t))                                         \
    S(kiln_normalize_backward(NULL, 1e-7f, fx.t, fx.t))                                      \
    S(kiln_normalize_backward(fx.t, NAN, fx.t, fx.t))                                        \
    /* batch norm */                                                                         \
    S(kiln_batchnorm_init(NULL, fx.t, NULL, NULL, NULL))                                     \
    S(kiln_batchnorm_forward_train(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL))    \
    S(kiln_batchnorm_forward_train(fx.t, NULL, NULL, fx.t, fx.t, NULL, fx.t, fx.t, fx.t))    \
    S(kiln_batchnorm_forward_infer(fx.t, NULL, NULL, NULL, NULL, NULL, fx.t))                \
    S(kiln_batchnorm_backward(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL))         \
    S(kiln_batchnorm_backward_infer(NULL, NULL, NULL, NULL, NULL))                           \
    /* optimizer ops */                                                                      \
    S(kiln_adam_update(NULL, fx.t, fx.t, fx.t, NULL, NULL, 1, NULL))                         \
    S(kiln_adam_update(fx.t, fx.t, fx.t, fx.t, NULL, &(kiln_adam_params)KILN_ADAM_DEFAULTS, 0, NULL)) \
    S(kiln_sgd_update(fx.t, NULL, NULL, NULL, NULL))                                         \
    S(kiln_adam_update_group(NULL, NULL, NULL, NULL, NULL, 1, NULL, 1, NULL))                \
    S(kiln_adam_update_group(&fx.t, (const kiln_tensor *const *)&fx.t, &fx.t, &fx.t, NULL, -1, NULL, 1, NULL)) \
    S(kiln_sgd_update_group(NULL, NULL, NULL, 2, NULL, NULL))                                \
    S(kiln_sgd_update_group(&fx.t, (const kiln_tensor *const *)&fx.t, NULL, -5, NULL, NULL)) \
    S(kiln_sum_squares_accumulate(NULL, fx.t))                                               \
    S(kiln_clip_scale(fx.t, 1.0f, NULL))                                                     \
    S(kiln_global_norm_clip_scale(NULL, 1, 1.0f, fx.t, fx.t))                                \
    S(kiln_global_norm_clip_scale((const kiln_tensor *const *)&fx.t, -1, 1.0f, fx.t, fx.t))  \
    /* models */                                                                             \
    S(kiln_model_new("x", NULL))                                                             \
    S(kiln_model_add(NULL, &(kiln_layer_config){0}, 0, NULL, NULL))                          \
    S(kiln_model_add(fx.m, NULL, 0, NULL, NULL))                                             \
    S(add_bad(0))                                                                            \
    S(add_bad(1))                                                                            \
    S(add_bad(2))                                                                            \
    S(add_bad(3))                                                                            \
    S(add_bad(4))                                                                            \
    S(add_bad(5))                                                                            \
    V(kiln_input_layer(2, NULL).input_shape[0] == 0)                                         \
    S(kiln_model_builtin(NULL, 32, 32, 3, 10, &fx.m))                                        \
    S(kiln_model_builtin("seed-cnn", 32, 32, 3, 10, NULL))                                   \
    S(kiln_model_builtin("seed-cnn", -32, 32, 3, 10, &fx.m))                                 \
    S(kiln_model_build(NULL, fx.be, 1))                                                      \
    S(kiln_model_build(fx.m, NULL, 1))                                                       \
    S(kiln_model_output_shape(NULL, 0, &fx.inputs[0], fx.shape))                             \
    S(kiln_model_output_shape(fx.m, -1, &fx.inputs[0], fx.shape))                            \
    S(kiln_model_output_shape(fx.m, 99, &fx.inputs[0], fx.shape))                            \
    S(kiln_model_output_shape(fx.m, 1, NULL, fx.shape))                                      \
    S(kiln_model_output_shape(fx.m, 1, &fx.inputs[0], NULL))                                 \
    S(kiln_model_set_trainable(NULL, 0, false))                                              \
    S(kiln_model_set_trainable(fx.m, -1, false))                                             \
    S(kiln_model_set_trainable(fx.m, 2, false))                                              \
    S(kiln_model_set_all_trainable(NULL, false))                                             \
    S(kiln_model_freeze_all_but(NULL, KILN_LAYER_BATCHNORM))                                 \
    S(kiln_model_freeze_all_but(fx.m, (kiln_layer_type)-1))                                  \
    S(kiln_model_summary(NULL, stdout))                                                      \
    S(kiln_model_summary(fx.m, NULL))                                                        \
    S(kiln_model_weight(NULL, 0, NULL, NULL, NULL))                                          \
    S(kiln_model_weight(fx.m, -1, NULL, NULL, NULL))                                         \
    S(kiln_model_weight(fx.m, INT32_MIN, NULL, NULL, NULL))                                  \
    S(kiln_model_weight(fx.m, 2, NULL, NULL, NULL))                                          \
    S(kiln_model_to_json(NULL, (char **)&fx.ptr))                                            \
    S(kiln_model_to_json(fx.m, NULL))                                                        \
    S(kiln_model_from_json(NULL, 10, &fx.m))                                                 \
    S(kiln_model_from_json("{}", 2, NULL))                                                   \
    S(kiln_model_save(NULL, "/tmp/kiln-hostile-api.safetensors", false, 0))                  \
    S(kiln_model_save(fx.m, NULL, false, 0))                                                 \
    S(kiln_model_save(fx.m, "/tmp/kiln-hostile-api.safetensors", false, -1))                 \
    S(kiln_model_load(NULL, "/tmp/x.safetensors", false, false, NULL))                       \
    S(kiln_model_load(fx.m, NULL, false, false, NULL))                                       \
    S(kiln_model_compile(NULL, NULL))                                                        \
    S(kiln_model_compile(fx.m, NULL))                                                        \
    S(compile_bad(0))                                                                        \
    S(compile_bad(1))                                                                        \
    S(kiln_model_set_learning_rate(NULL, 0.1))                                               \
    S(kiln_model_set_learning_rate(fx.m, -1.0))                                              \
    S(kiln_model_set_learning_rate(fx.m, NAN))                                               \
    S(kiln_activation_parse(NULL, &(kiln_activation){0}))                                    \
    S(kiln_activation_parse("relu", NULL))                                                   \
    V(kiln_model_layer_count(NULL) == -1)                                                    \
    V(kiln_model_layer(NULL, 0) == NULL)                                                     \
    V(kiln_model_layer(fx.m, -1) == NULL)                                                    \
    V(kiln_model_layer(fx.m, 2) == NULL)                                                     \
    V(kiln_model_find_layer(NULL, "dense") == -1)                                            \
    V(kiln_model_find_layer(fx.m, NULL) == -1)                                               \
    V(kiln_model_layer_inputs(NULL, 0, fx.inputs) == -1)                                     \
    V(kiln_model_layer_inputs(fx.m, -1, fx.inputs) == -1)                                    \
    V(kiln_model_layer_inputs(fx.m, 1, NULL) == -1)                                          \
    V(kiln_model_backend(NULL) == NULL)                                                      \
    V(kiln_model_name(NULL) == NULL)                                                         \
    V(kiln_model_weight_count(NULL) == -1)                                                   \
    V(kiln_model_find_weight(NULL, "dense.kernel") == NULL)                                  \
    V(kiln_model_find_weight(fx.m, NULL) == NULL)                                            \
    V(isnan(kiln_model_learning_rate(NULL)))                                                 \
    V(kiln_model_iterations(NULL) == -1)                                                     \
    V(kiln_model_fit_seed(NULL) == 0)                                                        \
    V(!strcmp(kiln_layer_type_name((kiln_layer_type)-1), "?"))                               \
    V(!strcmp(kiln_activation_name((kiln_activation)99), "?"))                               \
    S(param_counts_null())                                                                   \
    /* safetensors */                                                                        \
    S(kiln_safetensors_open(NULL, (kiln_safetensors **)&fx.ptr))                             \
    S(kiln_safetensors_open("/tmp/x.safetensors", NULL))                                     \
    S(kiln_safetensors_parse(NULL, 16, "mem", (kiln_safetensors **)&fx.ptr))                 \
    S(kiln_safetensors_parse(fx.buf, 16, "mem", NULL))                                       \
    S(kiln_safetensors_write(NULL, NULL, 0, NULL, 0))                                        \
    S(kiln_safetensors_write("/tmp/kiln-hostile-api.safetensors", NULL, 1, NULL, 0))         \
    S(kiln_safetensors_write("/tmp/kiln-hostile-api.safetensors", NULL, 0, NULL, 1))         \
    S(write_bad(0))                                                                          \
    S(write_bad(1))                                                                          \
    S(write_bad(2))                                                                          \
    S(write_bad(3))                                                                          \
    S(write_bad(4))                                                                          \
    S(write_bad(5))                                                                          \
    V(kiln_safetensors_find(NULL, "a") == NULL)                                              \
    V(kiln_safetensors_metadata(NULL, "a") == NULL)                                          \
    V(!strcmp(kiln_st_dtype_name((kiln_st_dtype)-1), "?"))                                   \
    V(kiln_st_dtype_size((kiln_st_dtype)99) == 0)                                            \
    /* data */                                                                               \
    S(kiln_dataset_new(-1, 2, 2, 1, 2, NULL, &fx.ds))                                        \
    S(kiln_dataset_new(4, -2, 2, 1, 2, NULL, &fx.ds))                                        \
    S(kiln_dataset_new(4, 2, 2, 1, 2, NULL, NULL))                                           \
    S(kiln_dataset_check(NULL))                                                              \
    S(kiln_dataset_open(NULL, NULL, &fx.ds, NULL))                                           \
    S(kiln_dataset_open("synthetic", NULL, NULL, NULL))                                      \
    S(kiln_dataset_synthetic(NULL, NULL, NULL))                                              \
    S(kiln_dataset_load_mnist(NULL, &fx.ds, NULL))                                           \
    S(kiln_dataset_load_cifar10(NULL, &fx.ds, NULL))                                         \
    S(kiln_dataset_load_npy(NULL, NULL, 0, &fx.ds))                                          \
    S(kiln_dataset_load_npy("x.npy", "y.npy", -1, &fx.ds))                                   \
    S(kiln_dataset_split(NULL, 0.5, &fx.ds))                                                 \
    S(kiln_dataset_split(fx.ds, 0.5, NULL))                                                  \
    S(kiln_dataset_split(fx.ds, NAN, &fx.ds))                                                \
    S(kiln_dataset_channel_stats(NULL, fx.buf, fx.buf))                                      \
    S(kiln_dataset_channel_stats(fx.ds, NULL, fx.buf))                                       \
    S(kiln_dataset_normalize(NULL, fx.buf, fx.buf))                                          \
    S(kiln_dataset_normalize(fx.ds, fx.buf, NULL))                                           \
    S(kiln_dataset_standardize(NULL, NULL, NULL, NULL))                                      \
    S(kiln_dataset_shuffle_indices(NULL, 4, 1))                                              \
    S(kiln_dataset_shuffle_indices(fx.idx, -1, 1))                                           \
    S(kiln_dataset_gather(NULL, fx.idx, 1, NULL, 1, fx.buf, (int32_t *)fx.buf))              \
    S(kiln_dataset_gather(fx.ds, NULL, 1, NULL, 1, fx.buf, (int32_t *)fx.buf))               \
    S(kiln_dataset_gather(fx.ds, fx.idx, -1, NULL, 1, fx.buf, (int32_t *)fx.buf))            \
    S(kiln_dataset_gather(fx.ds, fx.idx, 1, NULL, 1, NULL, NULL))                            \
    S(kiln_dataset_gather(fx.ds, (int64_t[1]){-1}, 1, NULL, 1, fx.buf, (int32_t *)fx.buf))   \
    S(kiln_prefetcher_new(NULL, 2, NULL, NULL, false, (kiln_prefetcher **)&fx.ptr))          \
    S(kiln_prefetcher_new(fx.ds, 0, NULL, NULL, false, (kiln_prefetcher **)&fx.ptr))         \
    S(kiln_prefetcher_new(fx.ds, 2, NULL, NULL, false, NULL))                                \
    S(kiln_prefetcher_new(fx.ds, INT64_MAX, NULL, NULL, false, (kiln_prefetcher **)&fx.ptr)) \
    S(kiln_prefetcher_new(fx.ds, 2, &(kiln_augment){-1, false}, NULL, false, (kiln_prefetcher **)&fx.ptr)) \
    S(kiln_prefetcher_start(NULL, fx.idx, 2, 1))                                             \
    S(prefetch_bad(0))                                                                       \
    S(prefetch_bad(1))                                                                       \
    S(prefetch_bad(2))                                                                       \
    S(kiln_idx_parse(fx.buf, 16, "mem", 0, &(kiln_idx){0}))                                  \
    S(kiln_prefetcher_next(NULL, &(kiln_batch){0}))                                          \
    S(kiln_idx_parse(NULL, 16, "mem", 1, &(kiln_idx){0}))                                    \
    S(kiln_idx_parse(fx.buf, 16, "mem", 1, NULL))                                            \
    S(kiln_npy_parse(NULL, 16, "mem", &(kiln_npy){0}))                                       \
    S(kiln_npy_parse(fx.buf, 16, "mem", NULL))                                               \
    V(kiln_dataset_image_numel(NULL) == 0)                                                   \
    /* fit, evaluate, predict, callbacks */                                                  \
    S(kiln_model_fit(NULL, NULL, NULL, NULL))                                                \
    S(kiln_model_fit(fx.m, NULL, NULL, &(kiln_history){0}))                                  \
    S(fit_bad(0))                                                                            \
    S(fit_bad(1))                                                                            \
    S(fit_bad(2))                                                                            \
    S(fit_bad(3))                                                                            \
    S(fit_bad(4))                                                                            \
    S(fit_bad(5))                                                                            \
    S(fit_bad(6))                                                                            \
    S(kiln_model_evaluate(NULL, NULL, 2, NULL, NULL))                                        \
    S(kiln_model_evaluate(fx.m, &(kiln_data){fx.buf, (const int32_t *)fx.buf, NULL, 2}, 0, NULL, NULL)) \
    S(kiln_model_predict(NULL, fx.buf, 2, 2, fx.buf))                                        \
    S(kiln_model_predict(fx.m, fx.buf, -2, 2, fx.buf))                                       \
    S(kiln_model_predict(fx.m, NULL, 2, 2, fx.buf))                                          \
    S(kiln_model_predict(fx.m, fx.buf, INT64_MAX / 2, 2, fx.buf)) /* n x 4 floats wrap */      \
    S(kiln_model_predict(fx.m, fx.buf, 2, 2, NULL))                                          \
    S(kiln_early_stopping(monitor("val_loss", 2), false, NULL))                              \
    S(kiln_early_stopping(monitor("val_loss", -1), false, &(kiln_callback){0}))              \
    S(kiln_model_checkpoint(NULL, monitor("val_loss", 0), false, &(kiln_callback){0}))       \
    S(kiln_reduce_lr_on_plateau(monitor("loss", 1), 0.5, 0, 0.0, NULL))                      \
    S(kiln_reduce_lr_on_plateau(monitor("loss", 1), -0.5, 0, 0.0, &(kiln_callback){0}))      \
    S(kiln_csv_logger(NULL, false, &(kiln_callback){0}))                                     \
    S(kiln_csv_logger("/tmp/kiln-hostile-api.csv", false, NULL))

#define CALL_TEXT(x) #x,
static const char *const call_text[] = {HOSTILE_CALLS(CALL_TEXT, CALL_TEXT)};
#define N_CALLS ((int)(sizeof call_text / sizeof *call_text))

static kiln_status run_call(int i) {
    int k = 0;
#define RUN_S(call) \
    if (i == k++) return (call);
#define RUN_V(cond) \
    if (i == k++) return safe(cond);
    HOSTILE_CALLS(RUN_S, RUN_V)
    cr_assert_fail("no call %d", i);
    return KILN_OK;
}

/* one row on a fresh fixture */
static void check_row(int row) {
    fx_init();
    fixture kept = fx;
    cr_log_info("row %d: %s", row, call_text[row]); /* with --verbose, the last one names a crashing call */
    kiln_status s = run_call(row);
    cr_expect_neq(s, KILN_OK, "%s: accepted", call_text[row]);
    cr_expect(kiln_last_error()[0], "%s: no message", call_text[row]);
    /* a failed call may have set its output to NULL: free the fixture's own */
    fx.be = kept.be;
    fx.m = kept.m;
    fx.ds = kept.ds;
    fx.out = NULL;
    fx_fini();
}

/* the rows in chunks, a process each (a crash fails its chunk only), so the table costs seconds */
#define CHUNK 24

ParameterizedTestParameters(hostile_api, bad_arguments) {
    static int chunks[(N_CALLS + CHUNK - 1) / CHUNK];
    int n = (N_CALLS + CHUNK - 1) / CHUNK;
    for (int i = 0; i < n; i++) chunks[i] = i * CHUNK;
    return cr_make_param_array(int, chunks, (size_t)n);
}

ParameterizedTest(int *first, hostile_api, bad_arguments) {
    for (int row = *first; row < *first + CHUNK && row < N_CALLS; row++) check_row(row);
}

/* the calls documented to take NULL do nothing, quietly */
Test(hostile_api, null_allowed) {
    kiln_tensor_free(NULL);
    kiln_backend_free(NULL);
    kiln_host_free(NULL, NULL);
    kiln_model_free(NULL);
    kiln_safetensors_free(NULL);
    kiln_dataset_free(NULL);
    kiln_prefetcher_stop(NULL);
    kiln_prefetcher_free(NULL);
    kiln_history_free(NULL);
    kiln_callback_free(NULL);
    kiln_batch_source src = kiln_prefetcher_batch_source(NULL);
    cr_expect_null(src.ctx);
}
