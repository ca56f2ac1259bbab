/* test_hostile_budget.c: the memory budget (issue 10, item 6). A model whose weights, gradients,
 * optimizer state or activations at a batch size do not fit in what the backend can give is
 * refused with one message naming the sizes and the batch, before anything is allocated
 * (the backend's allocation count is unchanged); the estimate equals what build, compile and the
 * plans allocate on the CPU, to the allocator's per-block header and padding; KILN_MEMORY_LIMIT
 * caps the available bytes (so no test needs gigabytes) and a malformed value is refused; a
 * model is summarised from its inferred shapes without a backend. Each test runs in its own
 * process (Criterion), so setenv stays inside it. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "harness.h"
#include "kiln/kiln.h"
#include "model_impl.h"

/* Input (8, 8, 3) -> Flatten -> Dense(units, softmax) */
static kiln_model *dense_model(int units) {
    kiln_model *m;
    int64_t in[3] = {8, 8, 3};
    cr_assert_eq(kiln_model_new("wide", &m), KILN_OK);
    kiln_layer_config layers[3] = {kiln_input_layer(3, in), kiln_flatten_layer(), kiln_dense_layer(units, KILN_ACT_SOFTMAX)};
    for (int i = 0; i < 3; i++) cr_assert_eq(kiln_model_add(m, &layers[i], 0, NULL, NULL), KILN_OK, "%s", kiln_last_error());
    return m;
}

static kiln_backend *fresh_cpu(void) {
    kiln_backend *be;
    cr_assert_eq(kiln_backend_init("cpu", &be), KILN_OK);
    return be;
}

static uint64_t allocs_of(const kiln_backend *be) {
    kiln_memory_stats st;
    cr_assert_eq(kiln_backend_memory_stats(be, &st), KILN_OK);
    return st.system_allocs;
}

static void expect_refused(kiln_status s, const char *needle) {
    cr_expect_eq(s, KILN_ERR_OOM, "status %d: %s", (int)s, kiln_last_error());
    cr_expect(strstr(kiln_last_error(), needle), "the message lacks '%s': %s", needle, kiln_last_error());
}

Test(budget, limit_caps_available) {
    kiln_backend *be = fresh_cpu();
    size_t a;
    unsetenv("KILN_MEMORY_LIMIT");
    cr_assert_eq(kiln_backend_memory_available(be, &a), KILN_OK, "%s", kiln_last_error());
    cr_expect_gt(a, (size_t)1 << 20, "the host has %zu bytes available", a);
    static const struct { const char *v; size_t want; } ok[] = {{"3K", 3072}, {"1M", 1 << 20}, {"4096", 4096}, {"0", 0}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        setenv("KILN_MEMORY_LIMIT", ok[i].v, 1);
        cr_assert_eq(kiln_backend_memory_available(be, &a), KILN_OK, "%s: %s", ok[i].v, kiln_last_error());
        cr_expect_eq(a, ok[i].want, "KILN_MEMORY_LIMIT=%s gives %zu", ok[i].v, a);
    }
    static const char *const bad[] = {"abc", "1x", "-5", "+5", " 5", "1KK", "99999999999999999999", "17179869184T"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("KILN_MEMORY_LIMIT", bad[i], 1);
        cr_expect_eq(kiln_backend_memory_available(be, &a), KILN_ERR_INVALID_ARG, "KILN_MEMORY_LIMIT=%s accepted", bad[i]);
        cr_expect(strstr(kiln_last_error(), "KILN_MEMORY_LIMIT"), "%s", kiln_last_error());
    }
    kiln_backend_free(be);
}

/* under `ulimit -v` (RLIMIT_AS) the backend has what the limit leaves of the address space: a
 * limit 256 MiB above this process's size refuses 772 MiB of weights with the sizes */
Test(budget, rlimit_as_counts) {
    kiln_backend *be = fresh_cpu();
    kiln_model *m = dense_model(1 << 20);
    unsetenv("KILN_MEMORY_LIMIT");
    unsigned long long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%llu", &pages) != 1) cr_skip_test("no /proc/self/statm");
    fclose(f);
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_AS, &rl), 0);
    rlim_t want = (rlim_t)(pages * (unsigned long long)sysconf(_SC_PAGESIZE)) + ((rlim_t)256 << 20);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) cr_skip_test("RLIMIT_AS is below what the test sets");
    rl.rlim_cur = want;
    cr_assert_eq(setrlimit(RLIMIT_AS, &rl), 0);
    size_t a;
    cr_assert_eq(kiln_backend_memory_available(be, &a), KILN_OK, "%s", kiln_last_error());
    cr_expect(a > ((size_t)128 << 20) && a <= ((size_t)256 << 20), "%zu bytes available under the limit", a);
    expect_refused(kiln_model_build(m, be, 1), "model 'wide' needs 772.00 MiB (weights 772.00 MiB, gradients 0 bytes");
    cr_expect_eq(allocs_of(be), 0, "the refused build allocated");
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* Dense(4096) of 192 inputs: 3 MiB of weights against a 1 MiB limit */
Test(budget, build_refused_before_allocating) {
    kiln_backend *be = fresh_cpu();
    kiln_model *m = dense_model(4096);
    setenv("KILN_MEMORY_LIMIT", "1M", 1);
    expect_refused(kiln_model_build(m, be, 1), "model 'wide' needs 3.02 MiB (weights 3.02 MiB, gradients 0 bytes, "
                                               "optimizer state 0 bytes, activations 0 bytes), the device cpu has 1.00 MiB");
    cr_expect_eq(allocs_of(be), 0, "the refused build allocated");
    setenv("KILN_MEMORY_LIMIT", "4M", 1); /* the same model fits once the device has room */
    cr_expect_eq(kiln_model_build(m, be, 1), KILN_OK, "%s", kiln_last_error());
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* the same model, the whole run at batch 64, as the CLI asks before building (the 2^24-unit
 * Dense of the issue is tests/test_cli_errors.c's) */
Test(budget, training_refused_with_the_batch) {
    kiln_backend *be = fresh_cpu();
    kiln_model *m = dense_model(4096);
    setenv("KILN_MEMORY_LIMIT", "16M", 1);
    kiln_optimizer_config adam = kiln_optimizer_defaults(KILN_OPT_ADAM);
    expect_refused(kiln_model_check_memory(m, be, 64, &adam),
                   "model 'wide' needs 18.25 MiB at batch 64 (weights 3.02 MiB, gradients 3.02 MiB, optimizer state "
                   "6.03 MiB, activations 6.19 MiB), the device cpu has 16.00 MiB");
    kiln_optimizer_config sgd = kiln_optimizer_defaults(KILN_OPT_SGD); /* no slots: it fits */
    cr_expect_eq(kiln_model_check_memory(m, be, 64, &sgd), KILN_OK, "%s", kiln_last_error());
    cr_expect_eq(allocs_of(be), 0, "checking allocated");
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* built within the limit, then compile's optimizer state does not fit: refused, nothing allocated */
Test(budget, compile_refused_before_allocating) {
    kiln_backend *be = fresh_cpu();
    kiln_model *m = dense_model(4096);
    setenv("KILN_MEMORY_LIMIT", "8M", 1); /* the limit caps what is free at each step */
    cr_assert_eq(kiln_model_build(m, be, 1), KILN_OK, "%s", kiln_last_error());
    uint64_t built = allocs_of(be);
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    cc.optimizer.adam.amsgrad = true; /* 3 slots + the gradient: 12.06 MiB more */
    expect_refused(kiln_model_compile(m, &cc), "model 'wide' needs 15.08 MiB (weights 3.02 MiB, gradients 3.02 MiB, "
                                               "optimizer state 9.05 MiB, activations 0 bytes), the device cpu has 11.02 MiB");
    cr_expect_eq(allocs_of(be), built, "the refused compile allocated");
    cc.optimizer.adam.amsgrad = false; /* 2 slots + the gradient: 9.05 MiB, over 8 */
    expect_refused(kiln_model_compile(m, &cc), "optimizer state 6.03 MiB");
    cc.optimizer = kiln_optimizer_defaults(KILN_OPT_SGD);
    cr_expect_eq(kiln_model_compile(m, &cc), KILN_OK, "%s", kiln_last_error());
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* predict at a batch whose activations do not fit: refused naming the batch; a smaller batch runs */
Test(budget, plan_refused_at_the_batch) {
    kiln_backend *be = fresh_cpu();
    kiln_model *m = dense_model(64);
    cr_assert_eq(kiln_model_build(m, be, 1), KILN_OK, "%s", kiln_last_error());
    int64_t n = 4096;
    float *x = calloc((size_t)n * 192, sizeof(float)), *out = malloc(sizeof(float) * (size_t)n * 64);
    cr_assert(x && out);
    setenv("KILN_MEMORY_LIMIT", "4M", 1);
    uint64_t built = allocs_of(be);
    expect_refused(kiln_model_predict(m, x, n, 4096, out), "needs 20.11 MiB at batch 4096 (weights 48.27 KiB, "
                                                           "gradients 0 bytes, optimizer state 0 bytes, activations 20.06 MiB)");
    cr_expect_eq(allocs_of(be), built, "the refused plan allocated");
    cr_expect_eq(kiln_model_predict(m, x, n, 256, out), KILN_OK, "%s", kiln_last_error());
    free(x);
    free(out);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* what the CPU backend holds against the estimate: each block costs a 64-byte header and at
 * most 63 bytes of padding more than its tensor */
static void expect_estimate(const kiln_backend *be, const kiln_model *m, int slots, int batch, const char *when) {
    kiln_memory_stats st;
    cr_assert_eq(kiln_backend_memory_stats(be, &st), KILN_OK);
    kiln_model_bytes b = kiln_model_bytes_of(m, slots, batch);
    double est = b.weights + b.gradients + b.optimizer + b.activations, held = (double)st.bytes_in_use;
    cr_expect(held >= est && held <= est + 128.0 * (double)st.system_allocs,
              "%s: the backend holds %.0f bytes in %llu blocks, the estimate is %.0f", when, held,
              (unsigned long long)st.system_allocs, est);
}

static void estimate_matches(const char *name) {
    kiln_backend *be = fresh_cpu();
    kiln_model *m;
    cr_assert_eq(kiln_model_builtin(name, 8, 8, 3, 10, &m), KILN_OK);
    cr_assert_eq(kiln_model_build(m, be, 1), KILN_OK, "%s", kiln_last_error());
    expect_estimate(be, m, -1, 0, "built");
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    cr_assert_eq(kiln_model_compile(m, &cc), KILN_OK, "%s", kiln_last_error());
    expect_estimate(be, m, 2, 0, "compiled");
    float x[16 * 192] = {0}, out[16 * 10];
    cr_assert_eq(kiln_model_predict(m, x, 16, 16, out), KILN_OK, "%s", kiln_last_error());
    expect_estimate(be, m, 2, 16, "planned at batch 16");
    kiln_model_free(m);
    kiln_backend_free(be);
}

Test(budget, estimate_equals_allocation_seed_cnn) { estimate_matches("seed-cnn"); }
Test(budget, estimate_equals_allocation_resnet20) { estimate_matches("resnet20"); }

/* a model of 2^24 units and a 2^24-unit input: 1 PiB of weights, summarised without a backend */
Test(budget, summary_of_an_unbuilt_model) {
    kiln_model *m;
    int64_t in[1] = {(int64_t)1 << 24};
    cr_assert_eq(kiln_model_new("huge", &m), KILN_OK);
    kiln_layer_config layers[2] = {kiln_input_layer(1, in), kiln_dense_layer(1 << 24, KILN_ACT_LINEAR)};
    for (int i = 0; i < 2; i++) cr_assert_eq(kiln_model_add(m, &layers[i], 0, NULL, NULL), KILN_OK);
    cr_assert_eq(kiln_model_infer(m), KILN_OK, "%s", kiln_last_error());
    cr_expect_eq(kiln_model_infer(m), KILN_OK, "a second infer");
    int64_t total;
    kiln_model_param_counts(m, &total, NULL, NULL);
    cr_expect_eq(total, ((int64_t)1 << 48) + ((int64_t)1 << 24));
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert(f);
    cr_expect_eq(kiln_model_summary(m, f), KILN_OK, "%s", kiln_last_error());
    fclose(f);
    cr_expect(strstr(text, "Total params: 281,474,993,487,872\n"), "%s", text);
    free(text);
    kiln_layer_config more = kiln_dense_layer(2, KILN_ACT_LINEAR);
    cr_expect_eq(kiln_model_add(m, &more, 0, NULL, NULL), KILN_ERR_INVALID_ARG, "a layer added after infer");
    kiln_model_free(m);
}
