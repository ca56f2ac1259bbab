/* test_data.c: the MNIST (IDX, raw and gzip) and CIFAR-10 loaders on small files written
 * here, every element checked against the bytes written, and every malformed input refused
 * with the expected status and a message naming the file, the offset and the problem.
 * NumPy files and kiln_dataset_open: test_data_npy.c; batches, splits and the generated
 * dataset: test_data_batch.c. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "kiln/data.h"
#include "datafiles.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())
#define expect_error kt_expect_error

static void setup(void) { kt_tmpdir_new(); }
static void teardown(void) { kt_tmpdir_remove(); }
TestSuite(mnist, .init = setup, .fini = teardown);
TestSuite(cifar, .init = setup, .fini = teardown);

/* ---- IDX / MNIST ---- */

/* An IDX file: magic, big-endian dims, then the bytes. Returns the length; *out malloc'ed. */
static size_t idx_make(uint32_t magic, int ndim, const uint32_t *dims, const uint8_t *data, size_t n,
                       uint8_t **out) {
    size_t len = 4 + 4 * (size_t)ndim + n;
    uint8_t *p = malloc(len);
    for (int b = 0; b < 4; b++) p[b] = (uint8_t)(magic >> (24 - 8 * b));
    for (int d = 0; d < ndim; d++)
        for (int b = 0; b < 4; b++) p[4 + 4 * d + b] = (uint8_t)(dims[d] >> (24 - 8 * b));
    if (n) memcpy(p + 4 + 4 * ndim, data, n);
    *out = p;
    return len;
}

typedef struct mnist_split { uint8_t *img, *lab; uint32_t n; } mnist_split;

/* Writes prefix-images-idx3-ubyte and prefix-labels-idx1-ubyte (".gz" when gz). */
static mnist_split mnist_write(kt_rng *r, const char *prefix, uint32_t n, bool gz) {
    mnist_split s = {kt_random_bytes(r, (size_t)n * 784, 256), kt_random_bytes(r, n, 10), n};
    uint32_t dims[3] = {n, 28, 28};
    uint8_t *f;
    char name[128];
    size_t len = idx_make(0x803, 3, dims, s.img, (size_t)n * 784, &f);
    snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", prefix, gz ? ".gz" : "");
    kt_write_file(kt_path(name), f, len, gz);
    free(f);
    len = idx_make(0x801, 1, dims, s.lab, n, &f);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", prefix, gz ? ".gz" : "");
    kt_write_file(kt_path(name), f, len, gz);
    free(f);
    return s;
}

Test(mnist, raw_train_gz_test_every_element) {
    kt_rng r;
    kt_rng_seed(&r, 11);
    mnist_split tr = mnist_write(&r, "train", 5, false), te = mnist_write(&r, "t10k", 3, true);
    kiln_dataset *train, *test;
    OK(kiln_dataset_load_mnist(kt_tmpdir(), &train, &test));
    cr_assert_eq(train->n, 5);
    cr_assert_eq(test->n, 3);
    cr_assert(train->h == 28 && train->w == 28 && train->c == 1 && train->num_classes == 10);
    kt_expect_u8_images(train, tr.img, tr.lab);
    kt_expect_u8_images(test, te.img, te.lab);
    kiln_dataset_free(train);
    kiln_dataset_free(test);
    free(tr.img), free(tr.lab), free(te.img), free(te.lab);
}

/* Replaces one MNIST file with given bytes and expects the load to fail. */
static void mnist_bad(const char *file, const void *bytes, size_t len, bool gz, kiln_status want,
                      const char *needle) {
    kt_rng r;
    kt_rng_seed(&r, 5);
    mnist_split a = mnist_write(&r, "train", 4, false), b = mnist_write(&r, "t10k", 2, false);
    if (bytes) kt_write_file(kt_path(file), bytes, len, gz);
    else unlink(kt_path(file));
    kiln_dataset *train = (kiln_dataset *)1, *test = (kiln_dataset *)1;
    expect_error(kiln_dataset_load_mnist(kt_tmpdir(), &train, &test), want, needle);
    cr_assert(train == NULL && test == NULL);
    free(a.img), free(a.lab), free(b.img), free(b.lab);
}

Test(mnist, missing_file) {
    mnist_bad("t10k-labels-idx1-ubyte", NULL, 0, false, KILN_ERR_IO, "t10k-labels-idx1-ubyte not found");
}

Test(mnist, wrong_magic) {
    uint32_t dims[3] = {4, 28, 28};
    uint8_t px[4 * 784] = {0}, *f;
    size_t len = idx_make(0x802, 3, dims, px, sizeof px, &f);
    mnist_bad("train-images-idx3-ubyte", f, len, false, KILN_ERR_FORMAT, "magic number 0x00000802, expected 0x00000803");
    free(f);
}

Test(mnist, labels_file_given_as_images) {
    uint32_t dims[1] = {4};
    uint8_t lab[4] = {0}, *f;
    size_t len = idx_make(0x801, 1, dims, lab, 4, &f);
    mnist_bad("train-images-idx3-ubyte", f, len, false, KILN_ERR_FORMAT, "offset 0: magic number 0x00000801");
    free(f);
}

Test(mnist, truncated_images) {
    uint32_t dims[3] = {4, 28, 28};
    uint8_t px[4 * 784] = {0}, *f;
    size_t len = idx_make(0x803, 3, dims, px, sizeof px, &f);
    mnist_bad("train-images-idx3-ubyte", f, len - 1, false, KILN_ERR_FORMAT, "truncated: dimensions 4 x 28 x 28");
    mnist_bad("train-images-idx3-ubyte", f, 10, false, KILN_ERR_FORMAT, "truncated header");
    free(f);
}

Test(mnist, trailing_bytes) {
    uint32_t dims[1] = {4};
    uint8_t lab[5] = {1, 2, 3, 4, 5}, *f;
    size_t len = idx_make(0x801, 1, dims, lab, 5, &f);
    mnist_bad("train-labels-idx1-ubyte", f, len, false, KILN_ERR_FORMAT, "offset 12: 1 bytes past the end");
    free(f);
}

Test(mnist, label_count_differs) {
    uint32_t dims[1] = {3};
    uint8_t lab[3] = {1, 2, 3}, *f;
    size_t len = idx_make(0x801, 1, dims, lab, 3, &f);
    mnist_bad("train-labels-idx1-ubyte", f, len, false, KILN_ERR_FORMAT, "holds 3 labels but");
    free(f);
}

Test(mnist, label_out_of_range) {
    uint32_t dims[1] = {4};
    uint8_t lab[4] = {1, 2, 10, 3}, *f;
    size_t len = idx_make(0x801, 1, dims, lab, 4, &f);
    mnist_bad("train-labels-idx1-ubyte", f, len, false, KILN_ERR_FORMAT, "offset 10: label 10 at index 2 is outside [0, 10)");
    free(f);
}

Test(mnist, empty) {
    uint32_t dims[3] = {0, 28, 28}, ldims[1] = {0};
    uint8_t *f;
    size_t len = idx_make(0x803, 3, dims, NULL, 0, &f);
    kt_rng r;
    kt_rng_seed(&r, 1);
    kt_write_file(kt_path("train-images-idx3-ubyte"), f, len, false);
    free(f);
    len = idx_make(0x801, 1, ldims, NULL, 0, &f);
    kt_write_file(kt_path("train-labels-idx1-ubyte"), f, len, false);
    free(f);
    kiln_dataset *train;
    expect_error(kiln_dataset_load_mnist(kt_tmpdir(), &train, NULL), KILN_ERR_FORMAT, "is empty");
}

Test(mnist, truncated_gzip) {
    kt_rng r;
    kt_rng_seed(&r, 5);
    mnist_split a = mnist_write(&r, "train", 4, true);
    size_t glen;
    uint8_t *g = kt_read_file(kt_path("train-labels-idx1-ubyte.gz"), &glen);
    cr_assert(g && glen > 12);
    kt_write_file(kt_path("train-labels-idx1-ubyte.gz"), g, glen - 6, false);
    kiln_dataset *train;
    expect_error(kiln_dataset_load_mnist(kt_tmpdir(), &train, NULL), KILN_ERR_FORMAT, "gzip stream corrupt or truncated");
    free(g);
    free(a.img), free(a.lab);
}

Test(mnist, idx_parse_in_memory) {
    uint32_t dims[3] = {2, 3, 4};
    uint8_t px[24], *f;
    for (int i = 0; i < 24; i++) px[i] = (uint8_t)(i * 7);
    size_t len = idx_make(0x803, 3, dims, px, 24, &f);
    kiln_idx idx;
    OK(kiln_idx_parse(f, len, "mem", 3, &idx));
    cr_assert(idx.ndim == 3 && idx.dims[0] == 2 && idx.dims[1] == 3 && idx.dims[2] == 4 && idx.nbytes == 24);
    cr_assert_eq(memcmp(idx.data, px, 24), 0);
    expect_error(kiln_idx_parse(f, 3, "mem", 3, &idx), KILN_ERR_FORMAT, "mem: offset 0: 3 bytes, too short");
    expect_error(kiln_idx_parse(f, len, "mem", 0, &idx), KILN_ERR_INVALID_ARG, "0 dimensions");
    uint32_t huge[3] = {0xffffffffu, 0xffffffffu, 0xffffffffu};
    free(f);
    len = idx_make(0x803, 3, huge, NULL, 0, &f);
    expect_error(kiln_idx_parse(f, len, "mem", 3, &idx), KILN_ERR_FORMAT, "overflow");
    free(f);
}

/* ---- CIFAR-10 ---- */

#define REC 3073

/* Writes name with n random records (labels < 10); returns the bytes (malloc'ed). */
static uint8_t *cifar_write(kt_rng *r, const char *name, int n) {
    uint8_t *p = kt_random_bytes(r, (size_t)n * REC, 256);
    for (int i = 0; i < n; i++) p[(size_t)i * REC] = (uint8_t)(kt_next(r) % 10);
    kt_write_file(kt_path(name), p, (size_t)n * REC, false);
    return p;
}

/* Record i of raw against example row of ds, every element. */
static void expect_record(const kiln_dataset *ds, int64_t row, const uint8_t *rec) {
    cr_assert_eq(ds->labels[row], rec[0], "label of row %lld", (long long)row);
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int ch = 0; ch < 3; ch++) {
                float got = ds->images[(size_t)row * 3072 + (size_t)(y * 32 + x) * 3 + (size_t)ch];
                cr_assert_eq(got, rec[1 + ch * 1024 + y * 32 + x] / 255.0f, "row %lld (%d, %d, %d)", (long long)row,
                             y, x, ch);
            }
}

static void cifar_check_dir(const char *sub) {
    kt_rng r;
    kt_rng_seed(&r, 3);
    if (sub) mkdir(kt_path(sub), 0700);
    int counts[5] = {2, 1, 3, 1, 2};
    uint8_t *files[6];
    char name[128];
    for (int f = 0; f < 5; f++) {
        snprintf(name, sizeof name, "%s%sdata_batch_%d.bin", sub ? sub : "", sub ? "/" : "", f + 1);
        files[f] = cifar_write(&r, name, counts[f]);
    }
    snprintf(name, sizeof name, "%s%stest_batch.bin", sub ? sub : "", sub ? "/" : "");
    files[5] = cifar_write(&r, name, 2);
    kiln_dataset *train, *test;
    OK(kiln_dataset_load_cifar10(kt_tmpdir(), &train, &test));
    cr_assert(train->n == 9 && test->n == 2 && train->h == 32 && train->w == 32 && train->c == 3);
    for (int f = 0, row = 0; f < 5; f++)
        for (int i = 0; i < counts[f]; i++) expect_record(train, row++, files[f] + (size_t)i * REC);
    for (int i = 0; i < 2; i++) expect_record(test, i, files[5] + (size_t)i * REC);
    for (int f = 0; f < 6; f++) free(files[f]);
    kiln_dataset_free(train);
    kiln_dataset_free(test);
}

Test(cifar, every_element_nhwc) { cifar_check_dir(NULL); }
Test(cifar, tarball_subdirectory) { cifar_check_dir("cifar-10-batches-bin"); }

static void cifar_bad(int file, const void *bytes, size_t len, kiln_status want, const char *needle) {
    kt_rng r;
    kt_rng_seed(&r, 9);
    char name[64];
    for (int f = 1; f <= 6; f++) {
        if (f == 6) snprintf(name, sizeof name, "test_batch.bin");
        else snprintf(name, sizeof name, "data_batch_%d.bin", f);
        free(cifar_write(&r, name, 1));
        if (f != file) continue;
        if (bytes) kt_write_file(kt_path(name), bytes, len, false);
        else unlink(kt_path(name));
    }
    kiln_dataset *train = (kiln_dataset *)1, *test = (kiln_dataset *)1;
    expect_error(kiln_dataset_load_cifar10(kt_tmpdir(), &train, &test), want, needle);
    cr_assert(train == NULL && test == NULL);
}

Test(cifar, missing_batch) { cifar_bad(3, NULL, 0, KILN_ERR_IO, "data_batch_3.bin: cannot open"); }
Test(cifar, missing_test) { cifar_bad(6, NULL, 0, KILN_ERR_IO, "test_batch.bin"); }
Test(cifar, empty_file) { cifar_bad(2, "", 0, KILN_ERR_FORMAT, "data_batch_2.bin: offset 0: the file is empty"); }

Test(cifar, truncated_record) {
    uint8_t rec[2 * REC] = {0};
    cifar_bad(4, rec, 2 * REC - 5, KILN_ERR_FORMAT, "offset 3073: length 6141 is not a multiple of 3073");
}

Test(cifar, label_out_of_range) {
    uint8_t rec[2 * REC] = {0};
    rec[REC] = 10;
    cifar_bad(6, rec, 2 * REC, KILN_ERR_FORMAT, "offset 3073: record 1 has label 10, outside [0, 10)");
}

