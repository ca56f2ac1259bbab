/* test_hostile_scale.c: hostile sizes (issue 10, items 10 and 11). A gzip bomb (an IDX .gz whose
 * header declares 1040 bytes and which inflates to 32 MiB, its stream cut short at the end) is
 * refused at decompressed offset 1040, before reaching the cut; bytes after the last gzip member
 * are refused with their compressed offset, while a second member is read; a CIFAR file
 * inflating past 10000 records is refused. Models at scale: a 20,000-layer Functional JSON reads
 * into the exact graph (every layer's name, class and inputs) and builds; Keras' automatic names
 * come out as before for 20,000 unnamed layers and around taken names; the layer-count limit is
 * stated at limit + 1, by the JSON reader and by kiln_model_add. No timing here: the speed of
 * graph building is measured by hand (the numbers are in the commit and issue notes). */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "datafiles.h"
#include "harness.h"
#include "kiln/data.h"
#include "kiln/model.h"

static void setup(void) { kt_tmpdir_new(); }
static void teardown(void) { kt_tmpdir_remove(); }
TestSuite(gzip_limit, .init = setup, .fini = teardown);
TestSuite(model_scale);

/* ---- gzip ---- */

static size_t be_idx(uint8_t *out, uint32_t magic, int ndim, const uint32_t *dims) {
    uint32_t v[5] = {magic, 0, 0, 0, 0};
    for (int i = 0; i < ndim; i++) v[i + 1] = dims[i];
    for (int i = 0; i <= ndim; i++)
        for (int b = 0; b < 4; b++) out[4 * i + b] = (uint8_t)(v[i] >> (24 - 8 * b));
    return 4 + 4 * (size_t)ndim;
}

/* a valid train-images file of n 1x1 images (plain), for a labels file to be tried against */
static void write_images(uint32_t n) {
    uint32_t dims[3] = {n, 1, 1};
    uint8_t *f = calloc(16 + n, 1);
    size_t h = be_idx(f, 0x803, 3, dims);
    for (uint32_t i = 0; i < n; i++) f[h + i] = (uint8_t)(i * 31);
    kt_write_file(kt_path("train-images-idx3-ubyte"), f, h + n, false);
    free(f);
}

/* `head` followed by `zeros` zero bytes, gzip-compressed into path; returns the file's size */
static size_t write_gz(const char *path, const void *head, size_t head_len, size_t zeros) {
    gzFile g = gzopen(path, "wb9");
    cr_assert_not_null(g);
    cr_assert_eq(gzwrite(g, head, (unsigned)head_len), (int)head_len);
    static const uint8_t block[1 << 16];
    for (size_t done = 0; done < zeros; done += sizeof block)
        cr_assert_eq(gzwrite(g, block, sizeof block), (int)sizeof block);
    cr_assert_eq(gzclose(g), Z_OK);
    size_t len;
    free(kt_read_file(path, &len));
    return len;
}

static void expect_mnist_error(const char *needle) {
    kiln_dataset *train = (kiln_dataset *)1;
    kt_expect_error(kiln_dataset_load_mnist(kt_tmpdir(), &train, NULL), KILN_ERR_FORMAT, needle);
    cr_assert_null(train);
}

Test(gzip_limit, bomb_refused_at_the_declared_length) {
    write_images(1032);
    uint8_t head[1040] = {0};
    uint32_t n = 1032;
    be_idx(head, 0x801, 1, &n); /* 8 header bytes + 1032 labels = 1040 declared */
    const char *path = kt_path("train-labels-idx1-ubyte.gz");
    size_t len = write_gz(path, head, sizeof head, (size_t)32 << 20);
    cr_assert_lt(len, 64 * 1024, "the bomb is small on disk (%zu bytes)", len);
    /* cut the stream's end: a reader that inflated all 32 MiB would report the cut instead */
    uint8_t *f = kt_read_file(path, &len);
    kt_write_file(path, f, len - 16, false);
    free(f);
    expect_mnist_error("train-labels-idx1-ubyte.gz: offset 1040 (decompressed): the contents go on past 1040 "
                       "bytes (what its header declares)");
}

Test(gzip_limit, header_error_reported_from_the_first_bytes) {
    write_images(4);
    uint8_t head[8];
    uint32_t n = 4;
    be_idx(head, 0x803, 1, &n); /* an images magic on the labels file */
    write_gz(kt_path("train-labels-idx1-ubyte.gz"), head, sizeof head, (size_t)8 << 20);
    expect_mnist_error("offset 0: magic number 0x00000803, expected 0x00000801");
}

static void write_labels(uint8_t *f, uint32_t n) {
    size_t h = be_idx(f, 0x801, 1, &n);
    for (uint32_t i = 0; i < n; i++) f[h + i] = (uint8_t)(i % 10);
}

Test(gzip_limit, trailing_bytes_refused_with_their_offset) {
    write_images(6);
    uint8_t lab[14];
    write_labels(lab, 6);
    const char *path = kt_path("train-labels-idx1-ubyte.gz");
    size_t len = write_gz(path, lab, sizeof lab, 0);
    uint8_t *f = kt_read_file(path, &len);
    f = realloc(f, len + 5);
    memcpy(f + len, "junk!", 5);
    kt_write_file(path, f, len + 5, false);
    free(f);
    char needle[128];
    snprintf(needle, sizeof needle, "train-labels-idx1-ubyte.gz: offset %zu: data after the end of the gzip stream", len);
    expect_mnist_error(needle);
}

Test(gzip_limit, second_member_read) {
    write_images(6);
    uint8_t lab[14];
    write_labels(lab, 6);
    const char *path = kt_path("train-labels-idx1-ubyte.gz"), *part = kt_path("part.gz");
    size_t a = write_gz(path, lab, 5, 0), b = write_gz(part, lab + 5, sizeof lab - 5, 0);
    uint8_t *fa = kt_read_file(path, &a), *fb = kt_read_file(part, &b);
    fa = realloc(fa, a + b);
    memcpy(fa + a, fb, b);
    kt_write_file(path, fa, a + b, false);
    free(fa);
    free(fb);
    kiln_dataset *train = NULL;
    cr_assert_eq(kiln_dataset_load_mnist(kt_tmpdir(), &train, NULL), KILN_OK, "%s", kiln_last_error());
    cr_assert_eq(train->n, 6);
    for (int i = 0; i < 6; i++) cr_expect_eq(train->labels[i], i % 10, "label %d", i);
    kiln_dataset_free(train);
}

Test(gzip_limit, cifar_file_past_10000_records) {
    const size_t rec = 3073, most = 10000 * rec;
    write_gz(kt_path("data_batch_1.bin"), "", 0, most + (1 << 16)); /* zeros: label 0, black pixels */
    kiln_dataset *train = (kiln_dataset *)1;
    char needle[160];
    snprintf(needle, sizeof needle, "data_batch_1.bin: offset %zu (decompressed): the contents go on past %zu bytes "
             "(the most this kind of file holds)", most, most);
    kt_expect_error(kiln_dataset_load_cifar10(kt_tmpdir(), &train, NULL), KILN_ERR_FORMAT, needle);
    cr_assert_null(train);
}

/* ---- models at scale ---- */

typedef struct text {
    char *p;
    size_t n, cap;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->p + t->n, t->cap - t->n, fmt, ap);
        va_end(ap);
        cr_assert_geq(k, 0);
        if ((size_t)k < t->cap - t->n) {
            t->n += (size_t)k;
            return;
        }
        t->cap = t->cap ? 2 * t->cap : 1 << 16;
        cr_assert_not_null(t->p = realloc(t->p, t->cap));
    }
}

/* layer i >= 1 of the deep graph: Add(i-1, i-2) when i % 10 == 0, else Dense(4) of i-1 */
static bool is_add(int i) { return i >= 2 && i % 10 == 0; }

/* a Keras 2 Functional JSON of n layers: the Input (4,), then the layers of is_add, listed
 * (with `reversed`) last to first, so every layer waits for the ones after it in the file */
static char *deep_functional(int n, bool reversed) {
    text t = {0};
    put(&t, "{\"class_name\": \"Functional\", \"config\": {\"name\": \"deep\", \"layers\": [");
    for (int k = 0; k < n; k++) {
        int i = reversed ? n - 1 - k : k;
        put(&t, "%s{\"name\": \"l%d\", ", k ? ", " : "", i);
        if (i == 0) put(&t, "\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 4]}, \"inbound_nodes\": []}");
        else if (is_add(i))
            put(&t, "\"class_name\": \"Add\", \"config\": {}, \"inbound_nodes\": [[[\"l%d\", 0, 0, {}], [\"l%d\", 0, 0, {}]]]}",
                i - 1, i - 2);
        else
            put(&t, "\"class_name\": \"Dense\", \"config\": {\"units\": 4}, \"inbound_nodes\": [[[\"l%d\", 0, 0, {}]]]}", i - 1);
    }
    put(&t, "], \"input_layers\": [[\"l0\", 0, 0]], \"output_layers\": [[\"l%d\", 0, 0]]}}", n - 1);
    return t.p;
}

static void expect_deep_graph(const kiln_model *m, int n) {
    cr_assert_eq(kiln_model_layer_count(m), n);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "l%d", i);
        const kiln_layer_config *c = kiln_model_layer(m, i);
        cr_assert_str_eq(c->name, name);
        cr_assert_eq(c->type, i == 0 ? KILN_LAYER_INPUT : is_add(i) ? KILN_LAYER_ADD : KILN_LAYER_DENSE, "layer %d", i);
        cr_assert_eq(kiln_model_find_layer(m, name), i);
        int in[KILN_LAYER_MAX_INPUTS], k = kiln_model_layer_inputs(m, i, in);
        cr_assert_eq(k, i == 0 ? 0 : is_add(i) ? 2 : 1, "layer %d has %d inputs", i, k);
        if (k >= 1) cr_assert_eq(in[0], i - 1, "layer %d", i);
        if (k == 2) cr_assert_eq(in[1], i - 2, "layer %d", i);
    }
}

Test(model_scale, functional_20000_layers_read_and_built) {
    const int n = 20000;
    char *json = deep_functional(n, false);
    kiln_model *m = NULL;
    cr_assert_eq(kiln_model_from_json(json, strlen(json), &m), KILN_OK, "%s", kiln_last_error());
    free(json);
    expect_deep_graph(m, n);
    cr_assert_eq(kiln_model_build(m, kt_cpu(), 1), KILN_OK, "%s", kiln_last_error());
    int dense = 0;
    for (int i = 1; i < n; i++) dense += !is_add(i);
    int64_t total, trainable;
    kiln_model_param_counts(m, &total, &trainable, NULL);
    cr_assert_eq(total, 20 * (int64_t)dense); /* a 4x4 kernel and 4 biases each */
    cr_assert_eq(kiln_model_weight_count(m), 2 * dense);
    for (int w = 0, i = 1; i < n; i++) {
        if (is_add(i)) continue;
        const char *name;
        char want[48];
        for (int k = 0; k < 2; k++, w++) {
            cr_assert_eq(kiln_model_weight(m, w, &name, NULL, NULL), KILN_OK);
            snprintf(want, sizeof want, "l%d.%s", i, k ? "bias" : "kernel");
            cr_assert_str_eq(name, want);
        }
    }
    kt_expect_error(kiln_model_weight(m, 2 * dense, NULL, NULL, NULL), KILN_ERR_INVALID_ARG, "no weight");
    kiln_model_free(m);
}

Test(model_scale, functional_listed_backwards_keeps_the_order) {
    const int n = 5000; /* every layer waits for all the layers after it in the file */
    char *json = deep_functional(n, true);
    kiln_model *m = NULL;
    cr_assert_eq(kiln_model_from_json(json, strlen(json), &m), KILN_OK, "%s", kiln_last_error());
    free(json);
    expect_deep_graph(m, n);
    kiln_model_free(m);
}

Test(model_scale, automatic_names_at_scale) {
    const int n = 20000;
    text t = {0};
    put(&t, "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", "
            "\"config\": {\"batch_shape\": [null, 4]}}");
    for (int i = 0; i < n; i++) put(&t, ", {\"class_name\": \"%s\", \"config\": {}}", i % 2 ? "Activation" : "Dropout");
    put(&t, "]}}");
    kiln_model *m = NULL;
    cr_assert_eq(kiln_model_from_json(t.p, t.n, &m), KILN_OK, "%s", kiln_last_error());
    free(t.p);
    cr_assert_eq(kiln_model_layer_count(m), n + 1);
    for (int i = 0; i < n; i++) {
        char want[32];
        if (i / 2) snprintf(want, sizeof want, "%s_%d", i % 2 ? "activation" : "dropout", i / 2);
        else snprintf(want, sizeof want, "%s", i % 2 ? "activation" : "dropout");
        cr_assert_str_eq(kiln_model_layer(m, i + 1)->name, want);
    }
    kiln_model_free(m);
}

/* Keras' rule: the count of layers of the type, then the first free suffix from there */
Test(model_scale, automatic_names_around_taken_ones) {
    kiln_model *m;
    int64_t in = 4;
    cr_assert_eq(kiln_model_new("names", &m), KILN_OK);
    kiln_layer_config c = kiln_input_layer(1, &in);
    cr_assert_eq(kiln_model_add(m, &c, 0, NULL, NULL), KILN_OK);
    const char *taken[] = {"dense_2", "dense_3", "dense_6"};
    for (int i = 0; i < 3; i++) {
        c = kiln_activation_layer(KILN_ACT_RELU);
        snprintf(c.name, sizeof c.name, "%s", taken[i]);
        cr_assert_eq(kiln_model_add(m, &c, 0, NULL, NULL), KILN_OK);
    }
    c = kiln_dense_layer(4, KILN_ACT_LINEAR);
    snprintf(c.name, sizeof c.name, "named");
    cr_assert_eq(kiln_model_add(m, &c, 0, NULL, NULL), KILN_OK); /* counts: the next starts at dense_1 */
    const char *want[] = {"dense_1", "dense_4", "dense_5", "dense_7", "dense_8", "dense_9"};
    for (int i = 0; i < 6; i++) {
        c = kiln_dense_layer(4, KILN_ACT_LINEAR);
        int id;
        cr_assert_eq(kiln_model_add(m, &c, 0, NULL, &id), KILN_OK);
        cr_assert_str_eq(kiln_model_layer(m, id)->name, want[i], "dense layer %d", i);
    }
    c = kiln_dense_layer(4, KILN_ACT_LINEAR);
    snprintf(c.name, sizeof c.name, "dense_4");
    kt_expect_error(kiln_model_add(m, &c, 0, NULL, NULL), KILN_ERR_INVALID_ARG, "a layer named 'dense_4' exists already");
    kiln_model_free(m);
}

Test(model_scale, json_layer_limit_stated) {
    text t = {0};
    put(&t, "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\"}");
    for (int i = 0; i < KILN_MODEL_MAX_LAYERS; i++) put(&t, ", {}");
    put(&t, "]}}");
    kiln_model *m = (kiln_model *)1;
    char needle[96];
    snprintf(needle, sizeof needle, "config.layers holds %d layers, more than kiln's limit of %d",
             KILN_MODEL_MAX_LAYERS + 1, KILN_MODEL_MAX_LAYERS);
    kt_expect_error(kiln_model_from_json(t.p, t.n, &m), KILN_ERR_UNSUPPORTED, needle);
    cr_assert_null(m);
    free(t.p);
}

Test(model_scale, add_layer_limit_stated) {
    kiln_model *m;
    int64_t in = 4;
    cr_assert_eq(kiln_model_new("long", &m), KILN_OK);
    kiln_layer_config c = kiln_input_layer(1, &in);
    cr_assert_eq(kiln_model_add(m, &c, 0, NULL, NULL), KILN_OK);
    c = kiln_activation_layer(KILN_ACT_RELU);
    for (int i = 1; i < KILN_MODEL_MAX_LAYERS; i++) cr_assert_eq(kiln_model_add(m, &c, 0, NULL, NULL), KILN_OK);
    cr_assert_eq(kiln_model_layer_count(m), KILN_MODEL_MAX_LAYERS);
    char needle[96];
    snprintf(needle, sizeof needle, "has %d layers, the most a model may have", KILN_MODEL_MAX_LAYERS);
    kt_expect_error(kiln_model_add(m, &c, 0, NULL, NULL), KILN_ERR_INVALID_ARG, needle);
    cr_assert_eq(kiln_model_layer_count(m), KILN_MODEL_MAX_LAYERS);
    kiln_model_free(m);
}

/* found by fuzz/fuzz_model_json.c: a Conv2D without "filters" was read as filters 0, a model
 * whose own JSON kiln then refused; a required integer key is now refused when absent */
Test(model_scale, required_integer_key_missing) {
    static const char *const cases[][2] = {
        {"Conv2D", "filters is missing (an integer in [1, 1048576])"},
        {"Dense", "units is missing (an integer in [1, 16777216])"},
    };
    for (int i = 0; i < 2; i++) {
        char json[512];
        snprintf(json, sizeof json, "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": "
                 "\"InputLayer\", \"config\": {\"batch_shape\": [null, 8, 8, 3]}}, {\"class_name\": \"%s\", \"config\": "
                 "{\"name\": \"x\", \"kernel_size\": 3}}]}}", cases[i][0]);
        kiln_model *m = (kiln_model *)1;
        char needle[160];
        snprintf(needle, sizeof needle, "layer 'x' (%s): %s", cases[i][0], cases[i][1]);
        kt_expect_error(kiln_model_from_json(json, strlen(json), &m), KILN_ERR_FORMAT, needle);
        cr_assert_null(m);
    }
}
