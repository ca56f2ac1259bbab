/* test_backend.c: the registry, tensors, and the errors the library reports: clear
 * messages naming the op and the shapes, never a crash, and a CUDA request without a GPU
 * answered with "no CUDA device: <reason>". */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

static void expect_error(kiln_status got, kiln_status want, const char *needle) {
    cr_assert_eq(got, want, "status %s, want %s (%s)", kiln_status_name(got), kiln_status_name(want),
                 kiln_last_error());
    cr_assert(strstr(kiln_last_error(), needle), "message '%s' lacks '%s'", kiln_last_error(), needle);
}

Test(registry, names) {
    kiln_backend *be = NULL;
    OK(kiln_backend_init("cpu", &be));
    cr_expect_str_eq(kiln_backend_name(be), "cpu");
    cr_expect_eq(kiln_backend_kind_of(be), KILN_BACKEND_CPU);
    kiln_backend_free(be);
    expect_error(kiln_backend_init("tpu", &be), KILN_ERR_INVALID_ARG, "unknown backend 'tpu'");
    cr_expect_null(be);
    expect_error(kiln_backend_init("cuda:x", &be), KILN_ERR_INVALID_ARG, "bad device 'cuda:x'");
    expect_error(kiln_backend_init("cuda:-1", &be), KILN_ERR_INVALID_ARG, "bad device");
    expect_error(kiln_backend_init("cpu", NULL), KILN_ERR_INVALID_ARG, "out is NULL");
}

Test(registry, cuda_or_clear_reason) {
    kiln_backend *be = NULL;
    kiln_status s = kiln_backend_init("cuda", &be);
    if (s == KILN_OK) { /* a GPU is here: it must say so and be usable */
        cr_expect_eq(kiln_backend_kind_of(be), KILN_BACKEND_CUDA);
        cr_expect_str_eq(kiln_backend_name(be), "cuda:0");
        kiln_backend_free(be);
        return;
    }
    expect_error(s, KILN_ERR_NO_DEVICE, "no CUDA device: ");
    cr_expect_null(be);
    cr_expect_gt(strlen(kiln_last_error()), strlen("no CUDA device: "), "the reason is empty");
    /* a device number past the last one */
    s = kiln_backend_init("cuda:7", &be);
    cr_expect(s == KILN_ERR_NO_DEVICE || s == KILN_OK);
    if (s == KILN_OK) kiln_backend_free(be);
    /* auto falls back to the CPU */
    OK(kiln_backend_init("auto", &be));
    cr_expect_str_eq(kiln_backend_name(be), "cpu");
    kiln_backend_free(be);
}

Test(registry, supports) {
    kiln_backend *be = kt_cpu();
    cr_expect(kiln_backend_supports(be, KILN_OP_GEMM, KILN_F32));
    cr_expect(!kiln_backend_supports(be, KILN_OP_GEMM, KILN_F16));
    cr_expect(kiln_backend_supports(be, KILN_OP_CAST, KILN_BF16));
    cr_expect_str_eq(kiln_op_name(KILN_OP_SOFTMAX_XENT), "softmax_xent");
    for (int op = 0; op < KILN_OP_COUNT; op++)
        cr_expect_str_neq(kiln_op_name((kiln_op_type)op), "?", "op %d has no name", op);
}

Test(tensor, metadata_views_reshape) {
    int64_t sh[] = {2, 3, 4};
    kiln_tensor *t = kt_new(kt_cpu(), KILN_F32, 3, sh);
    cr_expect_eq(kiln_tensor_numel(t), 24);
    cr_expect_eq(kiln_tensor_nbytes(t), 96);
    cr_expect(kiln_tensor_is_contiguous(t));
    cr_expect_eq(t->stride[0], 12); cr_expect_eq(t->stride[1], 4); cr_expect_eq(t->stride[2], 1);
    char buf[64];
    cr_expect_str_eq(kiln_shape_str(t, buf, sizeof buf), "(2, 3, 4)");
    float v[24];
    for (int i = 0; i < 24; i++) v[i] = (float)i + 0.5f;
    kt_set_f32(t, v);
    int64_t vs[] = {2, 4};
    kiln_tensor *view = NULL;
    OK(kiln_tensor_view(t, 12, 2, vs, &view));
    float *g = kt_get_f32(view);
    for (int i = 0; i < 8; i++) cr_expect_eq(g[i], 12.5f + (float)i);
    free(g);
    int64_t bad[] = {4, 4};
    kiln_tensor *bad_view = NULL;
    expect_error(kiln_tensor_view(t, 12, 2, bad, &bad_view), KILN_ERR_SHAPE, "overrun");
    cr_expect_null(bad_view);
    int64_t flat[] = {24}, wrong[] = {5, 5};
    OK(kiln_tensor_reshape(t, 1, flat));
    cr_expect_eq(t->ndim, 1);
    expect_error(kiln_tensor_reshape(t, 2, wrong), KILN_ERR_SHAPE, "has 24 elements");
    int64_t neg[] = {-3};
    kiln_tensor *n = NULL;
    expect_error(kiln_tensor_new(kt_cpu(), KILN_F32, 1, neg, "w", &n), KILN_ERR_SHAPE, "negative");
    int64_t five[] = {1, 1, 1, 1, 1};
    expect_error(kiln_tensor_new(kt_cpu(), KILN_F32, 5, five, "w", &n), KILN_ERR_SHAPE, "at most 4");
    expect_error(kiln_tensor_set(t, v, 10), KILN_ERR_SHAPE, "holds 96 bytes, 10 given");
    kiln_tensor_free(view);
    kiln_tensor_free(t);
    kiln_tensor_free(NULL);
}

Test(tensor, memory_stats_and_transfer) {
    kiln_backend *a = kt_cpu(), *b = kt_cpu_second();
    kiln_memory_stats before, after;
    OK(kiln_backend_memory_stats(a, &before));
    int64_t sh[] = {1000};
    kiln_tensor *t = kt_new(a, KILN_F32, 1, sh);
    OK(kiln_backend_memory_stats(a, &after));
    cr_expect_geq(after.bytes_in_use, before.bytes_in_use + 4000);
    cr_expect_eq(after.system_allocs, before.system_allocs + 1);
    kt_rng r;
    kt_rng_seed(&r, 9);
    kt_fill_random(t, &r, -1, 1);
    kiln_tensor *u = kt_clone(b, t);
    void *x = kt_get_bytes(t), *y = kt_get_bytes(u);
    kt_expect_bitwise("transfer", x, y, 4000);
    free(x); free(y);
    kiln_tensor_free(t);
    kiln_tensor_free(u);
    OK(kiln_backend_memory_stats(a, &after));
    cr_expect_eq(after.bytes_in_use, before.bytes_in_use);
}

Test(errors, messages_name_op_and_shapes) {
    kiln_backend *be = kt_cpu();
    int64_t a[] = {32, 7200}, b[] = {720, 64}, c[] = {32, 64};
    kiln_tensor *A = kt_new(be, KILN_F32, 2, a), *B = kt_new(be, KILN_F32, 2, b), *C = kt_new(be, KILN_F32, 2, c);
    expect_error(kiln_gemm(A, false, B, false, 1, 0, C, KILN_MATH_STRICT), KILN_ERR_SHAPE,
                 "kiln_gemm: inner dimensions differ: A is 32x7200, B is 720x64");
    expect_error(kiln_gemm(A, false, NULL, false, 1, 0, C, KILN_MATH_STRICT), KILN_ERR_INVALID_ARG,
                 "kiln_gemm: B is NULL");
    expect_error(kiln_add(A, C, C), KILN_ERR_SHAPE, "kiln_add: shapes differ: a is (32, 7200), out is (32, 64)");
    int64_t l[] = {31};
    kiln_tensor *lab = kt_new(be, KILN_I32, 1, l), *p = kt_new(be, KILN_F32, 2, c), *loss = kt_new(be, KILN_F32, 1, l);
    expect_error(kiln_softmax_xent(C, lab, p, loss), KILN_ERR_SHAPE, "32 rows in (32, 64) but 31 labels");
    expect_error(kiln_softmax_xent(C, C, p, loss), KILN_ERR_DTYPE, "labels 't' is f32, want i32");
    expect_error(kiln_sum(A, 0x4, C), KILN_ERR_SHAPE, "names an axis past");
    expect_error(kiln_sum(A, 0x1, C), KILN_ERR_SHAPE, "keeps 7200 values");
    kiln_tensor *other = kt_new(kt_cpu_second(), KILN_F32, 2, c);
    expect_error(kiln_add(C, other, C), KILN_ERR_DEVICE_MISMATCH, "is on cpu");
    kiln_tensor *h = kt_new(be, KILN_F16, 2, c);
    expect_error(kiln_relu(h, h), KILN_ERR_DTYPE, "kiln_relu: x 't' is f16, want f32");
    expect_error(kiln_copy(C, h), KILN_ERR_DTYPE, "kiln_cast converts");
    kiln_tensor tr = *C;
    tr.stride[0] = 1; tr.stride[1] = 32;
    expect_error(kiln_relu(&tr, C), KILN_ERR_INVALID_ARG, "not contiguous");
    cr_expect_str_eq(kiln_status_name(KILN_ERR_SHAPE), "KILN_ERR_SHAPE");
    kiln_clear_error();
    cr_expect_str_eq(kiln_last_error(), "");
    kiln_tensor *all[] = {A, B, C, lab, p, loss, other, h};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kiln_tensor_free(all[i]);
}

Test(registry, markers) {
    kiln_backend *be = kt_cpu();
    OK(kiln_backend_wait_mark(be, 3)); /* never recorded: passes at once */
    OK(kiln_backend_mark(be, 3));
    OK(kiln_backend_wait_mark(be, 3));
    expect_error(kiln_backend_mark(be, KILN_MAX_MARKS), KILN_ERR_INVALID_ARG, "marker 8 outside 0..7");
    expect_error(kiln_backend_wait_mark(be, -1), KILN_ERR_INVALID_ARG, "marker -1 outside");
}

/* an upload queued from a buffer, marked, then the buffer reused after the marker: the device
 * got the old contents (on CUDA this checks the event; on the CPU the copy is immediate) */
static void marker_protects_buffer(kiln_backend *be) {
    int64_t n = 1 << 20;
    float *h;
    OK(kiln_host_alloc(be, sizeof(float) * (size_t)n, (void **)&h));
    for (int64_t i = 0; i < n; i++) h[i] = (float)i;
    kiln_tensor *t = kt_new(be, KILN_F32, 1, &n);
    OK(kiln_tensor_set_async(t, h, sizeof(float) * (size_t)n));
    OK(kiln_backend_mark(be, 0));
    OK(kiln_backend_wait_mark(be, 0));
    for (int64_t i = 0; i < n; i++) h[i] = -1.0f;
    float *g = kt_get_f32(t);
    for (int64_t i = 0; i < n; i++) cr_assert_eq(g[i], (float)i, "element %lld is %g", (long long)i, g[i]);
    free(g);
    kiln_tensor_free(t);
    kiln_host_free(be, h);
}

Test(registry, marker_protects_buffer_cpu) { marker_protects_buffer(kt_cpu()); }
Test(registry, marker_protects_buffer_cuda) { marker_protects_buffer(kt_cuda_or_skip()); }
