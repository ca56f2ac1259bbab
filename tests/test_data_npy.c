/* test_data_npy.c: the NumPy .npy loader on files written here (v1, v2 and v3 headers;
 * uint8, float32 and float64 images; uint8, int32 and int64 labels), every element checked;
 * every malformed header, dtype, shape or length refused with a message naming the problem;
 * and kiln_dataset_open's specs. */
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
TestSuite(npy, .init = setup, .fini = teardown);
TestSuite(open, .init = setup, .fini = teardown);

/* ---- NumPy .npy ---- */

/* A .npy file: magic, version, header dict (padded to a multiple of 64 with a final newline),
 * data. Returns the length; *out malloc'ed. */
static size_t npy_make(int version, const char *dict, const void *data, size_t n, uint8_t **out) {
    size_t pre = version == 1 ? 10 : 12, dl = strlen(dict), hl = dl + 1;
    while ((pre + hl) % 64) hl++;
    uint8_t *p = malloc(pre + hl + n + 1);
    memcpy(p, "\x93NUMPY", 6);
    p[6] = (uint8_t)version;
    p[7] = 0;
    for (size_t b = 0; b < pre - 8; b++) p[8 + b] = (uint8_t)(hl >> (8 * b));
    memcpy(p + pre, dict, dl);
    memset(p + pre + dl, ' ', hl - dl - 1);
    p[pre + hl - 1] = '\n';
    if (n) memcpy(p + pre + hl, data, n);
    *out = p;
    return pre + hl + n;
}

static void npy_write(const char *name, int version, const char *dict, const void *data, size_t n) {
    uint8_t *f;
    size_t len = npy_make(version, dict, data, n, &f);
    kt_write_file(kt_path(name), f, len, false);
    free(f);
}

Test(npy, u8_nhwc_with_i64_labels) {
    kt_rng r;
    kt_rng_seed(&r, 21);
    uint8_t *px = kt_random_bytes(&r, 6 * 4 * 5 * 3, 256);
    int64_t lab[6];
    uint8_t lab8[6];
    for (int i = 0; i < 6; i++) lab8[i] = (uint8_t)(lab[i] = (int64_t)(kt_next(&r) % 7));
    lab[5] = 6, lab8[5] = 6;
    npy_write("x.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (6, 4, 5, 3), }", px, 360);
    npy_write("y.npy", 2, "{\"shape\": (6,), \"fortran_order\": False, \"descr\": \"<i8\"}", lab, sizeof lab);
    kiln_dataset *ds;
    OK(kiln_dataset_load_npy(kt_path("x.npy"), kt_path("y.npy"), 0, &ds));
    cr_assert(ds->n == 6 && ds->h == 4 && ds->w == 5 && ds->c == 3);
    cr_assert_eq(ds->num_classes, 7, "num_classes %d: the largest label + 1", ds->num_classes);
    kt_expect_u8_images(ds, px, lab8);
    kiln_dataset_free(ds);
    free(px);
}

Test(npy, f32_nhw_with_i32_and_u8_labels) {
    kt_rng r;
    kt_rng_seed(&r, 22);
    float x[4 * 3 * 2];
    int32_t lab[4] = {0, 3, 1, 2};
    uint8_t lab8[4] = {0, 3, 1, 2};
    for (int i = 0; i < 24; i++) x[i] = (float)kt_uniform(&r, -5, 5);
    npy_write("x.npy", 3, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3, 2)}", x, sizeof x);
    npy_write("y.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (4,)}", lab, sizeof lab);
    npy_write("y8.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 1)}", lab8, 4);
    kiln_dataset *a, *b;
    OK(kiln_dataset_load_npy(kt_path("x.npy"), kt_path("y.npy"), 10, &a));
    OK(kiln_dataset_load_npy(kt_path("x.npy"), kt_path("y8.npy"), 4, &b));
    for (const kiln_dataset *ds = a;; ds = b) {
        cr_assert(ds->n == 4 && ds->h == 3 && ds->w == 2 && ds->c == 1);
        for (int i = 0; i < 24; i++) cr_assert_eq(ds->images[i], x[i], "element %d", i);
        for (int i = 0; i < 4; i++) cr_assert_eq(ds->labels[i], lab[i]);
        if (ds == b) break;
    }
    cr_assert(a->num_classes == 10 && b->num_classes == 4);
    kiln_dataset_free(a);
    kiln_dataset_free(b);
}

Test(npy, parse_in_memory) {
    double v[3] = {1.5, -2.25, 3e10};
    uint8_t *f;
    size_t len = npy_make(2, "{'descr': '<f8', 'fortran_order': False, 'shape': (3L,), }", v, sizeof v, &f);
    kiln_npy a;
    OK(kiln_npy_parse(f, len, "mem", &a));
    cr_assert(a.dtype == KILN_NPY_F64 && a.ndim == 1 && a.shape[0] == 3 && a.nbytes == 24 && a.version == 2);
    cr_assert_eq(memcmp(a.data, v, 24), 0);
    free(f);
    len = npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}", v, 4, &f);
    OK(kiln_npy_parse(f, len, "mem", &a));
    cr_assert(a.ndim == 0 && a.nbytes == 4);
    free(f);
}

/* One bad X (or Y when y_bad) against good partners: the expected status and message. */
static void npy_bad(bool y_bad, int version, const char *dict, const void *data, size_t n, kiln_status want,
                    const char *needle) {
    uint8_t px[2 * 2 * 2] = {1, 2, 3, 4, 5, 6, 7, 8}, lab[2] = {0, 1};
    npy_write("x.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2)}", px, 8);
    npy_write("y.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,)}", lab, 2);
    npy_write(y_bad ? "y.npy" : "x.npy", version, dict, data, n);
    kiln_dataset *ds = (kiln_dataset *)1;
    expect_error(kiln_dataset_load_npy(kt_path("x.npy"), kt_path("y.npy"), 0, &ds), want, needle);
    cr_assert_null(ds);
}

#define NPY_X(dict, data, n, needle) npy_bad(false, 1, dict, data, n, KILN_ERR_FORMAT, needle)

Test(npy, header_errors) {
    uint8_t px[8] = {0};
    NPY_X("{'descr': '|u1', 'fortran_order': True, 'shape': (2, 2, 2)}", px, 8, "fortran_order is True");
    NPY_X("{'descr': '<c8', 'fortran_order': False, 'shape': (2, 2, 2)}", px, 8, "descr '<c8' is not one of");
    NPY_X("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 1, 1)}", px, 8, "big-endian");
    NPY_X("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 1, 1)}", px, 8, "structured");
    NPY_X("{'descr': '|u1', 'shape': (2, 2, 2)}", px, 8, "'fortran_order' is missing");
    NPY_X("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2), 'x': 1}", px, 8, "unknown key");
    NPY_X("{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2)}", px, 8, "duplicate key");
    NPY_X("{'descr': '|u1', 'fortran_order': False, 'shape': (2, -2, 2)}", px, 8, "non-negative integers");
    NPY_X("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2)} junk", px, 8, "text after the dict");
    NPY_X("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2 2)}", px, 8, "expected ',' or ')'");
    NPY_X("{'descr': '|u1', 'fortran_order': Nope, 'shape': (2, 2, 2)}", px, 8, "True or False");
    NPY_X("{'descr': '|u1, 'fortran_order': False, 'shape': (2, 2, 2)}", px, 8, "bad .npy header");
    NPY_X("['descr', '|u1']", px, 8, "not a dict");
    NPY_X("{'descr': '|u1', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", px, 1, "more than 8 dimensions");
    NPY_X("{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999, 2, 2)}", px, 8, "too large");
    NPY_X("{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296)}", px, 8, "overflows");
}

Test(npy, length_errors) {
    uint8_t px[9] = {0};
    NPY_X("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2)}", px, 7, "the file holds 7 data bytes");
    NPY_X("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2)}", px, 9, "the file holds 9 data bytes");
    kt_write_file(kt_path("x.npy"), "\x93NUMPY\x01\x00\xff\x7f{}", 12, false);
    kiln_dataset *ds;
    expect_error(kiln_dataset_load_npy(kt_path("x.npy"), kt_path("x.npy"), 0, &ds), KILN_ERR_FORMAT,
                 "offset 8: header length 32767 runs past the end");
    kt_write_file(kt_path("x.npy"), "\x93NUMPX\x01\x00\x00\x00", 10, false);
    expect_error(kiln_dataset_load_npy(kt_path("x.npy"), kt_path("x.npy"), 0, &ds), KILN_ERR_FORMAT, "no \\x93NUMPY magic");
    kt_write_file(kt_path("x.npy"), "\x93NUMPY\x04\x00\x00\x00", 10, false);
    expect_error(kiln_dataset_load_npy(kt_path("x.npy"), kt_path("x.npy"), 0, &ds), KILN_ERR_FORMAT, "version 4.0");
    kt_write_file(kt_path("x.npy"), "\x93NUMPY\x02\x00\x00\x00\x00\x10", 12, false);
    expect_error(kiln_dataset_load_npy(kt_path("x.npy"), kt_path("x.npy"), 0, &ds), KILN_ERR_FORMAT, "1 MiB limit");
    kt_write_file(kt_path("x.npy"), "\x93NUMPY\x01", 7, false);
    expect_error(kiln_dataset_load_npy(kt_path("x.npy"), kt_path("x.npy"), 0, &ds), KILN_ERR_FORMAT, "not a .npy file");
    expect_error(kiln_dataset_load_npy(kt_path("none.npy"), kt_path("x.npy"), 0, &ds), KILN_ERR_IO, "none.npy: cannot open");
}

Test(npy, array_errors) {
    uint8_t px[8] = {0};
    float inf[2] = {1.0f, INFINITY};
    int32_t neg[2] = {0, -1}, big[2] = {0, 5};
    NPY_X("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1, 1)}", px, 8, "images of dtype '<i4'");
    NPY_X("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 4)}", px, 8, "images of 2 dimensions");
    NPY_X("{'descr': '|u1', 'fortran_order': False, 'shape': (0, 2, 2)}", px, 0, "empty");
    NPY_X("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 1)}", inf, 8, "element 1 is not finite");
    npy_bad(true, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,)}", px, 3, KILN_ERR_FORMAT, "holds 3 labels but");
    npy_bad(true, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", px, 8, KILN_ERR_FORMAT, "labels of dtype '<f4'");
    npy_bad(true, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2)}", px, 4, KILN_ERR_FORMAT, "labels of 2 dimensions");
    npy_bad(true, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,)}", neg, 8, KILN_ERR_FORMAT,
            "label -1 at index 1 is outside");
    /* a label past num_classes given by the caller */
    npy_write("y.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,)}", big, 8);
    kiln_dataset *ds;
    expect_error(kiln_dataset_load_npy(kt_path("x.npy"), kt_path("y.npy"), 5, &ds), KILN_ERR_FORMAT,
                 "label 5 at index 1 is outside [0, 5)");
}

/* ---- kiln_dataset_open ---- */

Test(open, specs) {
    uint8_t px[8] = {1, 2, 3, 4, 5, 6, 7, 8}, lab[2] = {0, 2}, tlab[2] = {3, 1};
    npy_write("x.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2)}", px, 8);
    npy_write("y.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,)}", lab, 2);
    npy_write("yt.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,)}", tlab, 2);
    char spec[4096];
    kiln_dataset *train, *test;
    snprintf(spec, sizeof spec, "npy:%s,%s", kt_path("x.npy"), kt_path("y.npy"));
    OK(kiln_dataset_open(spec, NULL, &train, &test));
    cr_assert(train->n == 2 && train->num_classes == 3 && test == NULL);
    kiln_dataset_free(train);
    snprintf(spec, sizeof spec, "npy:%s,%s,%s,%s", kt_path("x.npy"), kt_path("y.npy"), kt_path("x.npy"),
             kt_path("yt.npy"));
    OK(kiln_dataset_open(spec, NULL, &train, &test));
    cr_assert(test && test->n == 2 && train->num_classes == 4 && test->num_classes == 4);
    kiln_dataset_free(train);
    kiln_dataset_free(test);
    kiln_data_options o = {.n_train = 12, .n_test = 4, .image_size = 8, .seed = 1};
    OK(kiln_dataset_open("synthetic", &o, &train, &test));
    cr_assert(train->n == 12 && test->n == 4 && train->h == 8 && train->c == 3 && train->num_classes == 10);
    kiln_dataset_free(train);
    kiln_dataset_free(test);
    expect_error(kiln_dataset_open("imagenet", NULL, &train, &test), KILN_ERR_INVALID_ARG, "unknown dataset 'imagenet'");
    expect_error(kiln_dataset_open("npy:a.npy", NULL, &train, &test), KILN_ERR_INVALID_ARG, "expected npy:X.npy,Y.npy");
    expect_error(kiln_dataset_open("npy:a,b,c", NULL, &train, &test), KILN_ERR_INVALID_ARG, "expected npy:X.npy,Y.npy");
    expect_error(kiln_dataset_open("mnist:/nonexistent-kiln", NULL, &train, &test), KILN_ERR_IO,
                 "/nonexistent-kiln/train-images-idx3-ubyte not found");
    expect_error(kiln_dataset_open("cifar10:/nonexistent-kiln", NULL, &train, &test), KILN_ERR_IO,
                 "/nonexistent-kiln/data_batch_1.bin");
}

