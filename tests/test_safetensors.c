/* test_safetensors.c: the safetensors writer and reader: a round trip bit for bit over every
 * dtype (scalars and empty tensors too) with metadata; every malformed file refused with
 * KILN_ERR_FORMAT and a message naming the file, the tensor and the problem; the atomic
 * write leaving the old file intact when writing fails. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datafiles.h"
#include "harness.h"
#include "kiln/safetensors.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())
#define expect_error kt_expect_error

static void setup(void) { kt_tmpdir_new(); }
static void teardown(void) { kt_tmpdir_remove(); }
TestSuite(safetensors, .init = setup, .fini = teardown);

Test(safetensors, round_trip_every_dtype) {
    kt_rng r;
    kt_rng_seed(&r, 77);
    enum { N = KILN_ST_DTYPE_COUNT + 2 };
    kiln_st_tensor t[N];
    int64_t shapes[N][3];
    uint8_t *data[N];
    char names[N][32];
    for (int i = 0; i < N; i++) {
        kiln_st_dtype dt = (kiln_st_dtype)(i % KILN_ST_DTYPE_COUNT);
        int ndim = i == KILN_ST_DTYPE_COUNT ? 0 : 3; /* a scalar, then an empty tensor */
        shapes[i][0] = i == KILN_ST_DTYPE_COUNT + 1 ? 0 : 1 + (int64_t)(kt_next(&r) % 4);
        shapes[i][1] = 1 + (int64_t)(kt_next(&r) % 5);
        shapes[i][2] = 1 + (int64_t)(kt_next(&r) % 3);
        size_t n = kiln_st_dtype_size(dt) * (ndim ? (size_t)(shapes[i][0] * shapes[i][1] * shapes[i][2]) : 1);
        data[i] = kt_random_bytes(&r, n, 256);
        snprintf(names[i], sizeof names[i], i == 1 ? "layer \"q\"\\%d\n" : "t%d.%s", i, kiln_st_dtype_name(dt));
        t[i] = (kiln_st_tensor){names[i], dt, ndim, shapes[i], data[i]};
    }
    kiln_st_meta meta[2] = {{"format", "kiln"}, {"note", "quote \" and \\ and \t"}};
    const char *path = kt_path("w.safetensors");
    OK(kiln_safetensors_write(path, t, N, meta, 2));
    kiln_safetensors *st;
    OK(kiln_safetensors_open(path, &st));
    cr_assert_eq(st->n_entries, N);
    for (int i = 0; i < N; i++) {
        const kiln_st_entry *e = &st->entries[i];
        cr_assert_str_eq(e->name, names[i]);
        cr_assert_eq(kiln_safetensors_find(st, names[i]), e);
        cr_assert_eq(e->dtype, t[i].dtype, "dtype of %s", names[i]);
        cr_assert_eq(e->ndim, t[i].ndim);
        for (int d = 0; d < e->ndim; d++) cr_assert_eq(e->shape[d], shapes[i][d]);
        size_t n = kiln_st_dtype_size(e->dtype) * (e->ndim ? (size_t)(shapes[i][0] * shapes[i][1] * shapes[i][2]) : 1);
        cr_assert_eq(e->nbytes, n);
        kt_expect_bitwise(names[i], e->data, data[i], n);
    }
    cr_assert_str_eq(kiln_safetensors_metadata(st, "format"), "kiln");
    cr_assert_str_eq(kiln_safetensors_metadata(st, "note"), meta[1].value);
    cr_assert_null(kiln_safetensors_metadata(st, "none"));
    cr_assert_null(kiln_safetensors_find(st, "none"));
    kiln_safetensors_free(st);
    size_t len;
    uint8_t *file = kt_read_file(path, &len);
    uint64_t hl = 0;
    for (int b = 7; b >= 0; b--) hl = hl << 8 | file[b];
    cr_assert_eq(hl % 8, 0, "header of %llu bytes is not padded to 8", (unsigned long long)hl);
    cr_assert_eq(file[8], '{');
    free(file);
    for (int i = 0; i < N; i++) free(data[i]);
    cr_assert_eq(kt_dir_count(kt_tmpdir()), 1, "temporary files left behind");
}

Test(safetensors, empty_file_and_metadata_only) {
    const char *path = kt_path("e.safetensors");
    OK(kiln_safetensors_write(path, NULL, 0, NULL, 0));
    kiln_safetensors *st;
    OK(kiln_safetensors_open(path, &st));
    cr_assert(st->n_entries == 0 && st->n_meta == 0);
    kiln_safetensors_free(st);
    kiln_st_meta m = {"k", "v"};
    OK(kiln_safetensors_write(path, NULL, 0, &m, 1));
    OK(kiln_safetensors_open(path, &st));
    cr_assert_str_eq(kiln_safetensors_metadata(st, "k"), "v");
    kiln_safetensors_free(st);
}

/* A file of the header text, padded to 8 with spaces, then `data_len` bytes; parsed. */
static kiln_status parse_header(const char *json, size_t data_len) {
    size_t hl = strlen(json), len = 8 + hl + data_len;
    uint8_t *f = calloc(1, len);
    for (int b = 0; b < 8; b++) f[b] = (uint8_t)((uint64_t)hl >> (8 * b));
    memcpy(f + 8, json, hl);
    kt_write_file(kt_path("bad.safetensors"), f, len, false);
    free(f);
    kiln_safetensors *st = (kiln_safetensors *)1;
    kiln_status s = kiln_safetensors_open(kt_path("bad.safetensors"), &st);
    cr_assert(s == KILN_OK || st == NULL, "a failed open left *out set");
    kiln_safetensors_free(s == KILN_OK ? st : NULL);
    return s;
}

#define BAD(json, data_len, needle) expect_error(parse_header(json, data_len), KILN_ERR_FORMAT, needle)

Test(safetensors, entry_errors) {
    OK(parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24));
    BAD("{\"a\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 'a': unknown dtype 'F17'");
    BAD("{\"a\":{\"dtype\":3,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype (not a string)");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20, "F32 shape of 2 dims needs 24 bytes");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,24]}}", 24, "shape[1] is not a non-negative integer");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "shape[0] is not");
    BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "overflows");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "9 dimensions");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "run past the end of the data (4 bytes)");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "end before they begin");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "data_offsets is not [begin, end]");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}}", 8, "data_offsets is not");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing 'data_offsets'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "unknown key 'x'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "duplicate key 'dtype'");
    BAD("{\"a\":[1,2]}", 0, "tensor 'a': the entry is not an object");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "shape is not an array");
}

Test(safetensors, layout_errors) {
    const char *two = "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[%d,%d]},"
                      "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[%d,%d]}}";
    char j[512];
    snprintf(j, sizeof j, two, 0, 4, 2, 6);
    BAD(j, 6, "tensor 'b': data_offsets [2, 6] overlap tensor 'a' (which ends at 4)");
    snprintf(j, sizeof j, two, 0, 4, 5, 9);
    BAD(j, 9, "tensor 'b': a gap: bytes [4, 5) of the data belong to no tensor");
    snprintf(j, sizeof j, two, 0, 4, 4, 8);
    BAD(j, 10, "bytes [8, 10) at the end of the data belong to no tensor");
    snprintf(j, sizeof j, two, 4, 8, 0, 4); /* out of order in the header is fine */
    OK(parse_header(j, 8));
    BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
        "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8, "tensor 'a': the name appears twice");
    BAD("{}", 3, "bytes [0, 3) at the end of the data belong to no tensor");
}

Test(safetensors, header_errors) {
    BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],", 4, "the header is not valid JSON");
    BAD("[1, 2]", 0, "offset 8: the header does not start with '{'");
    BAD("{} x", 0, "offset 11: bytes after the header's JSON that are not padding spaces");
    BAD("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value of 'k' is not a string");
    BAD("{\"__metadata__\":[1]}", 0, "__metadata__ is not an object");
    BAD("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "two __metadata__ entries");
    BAD("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "__metadata__ key 'k' appears twice");
    BAD("{\"a\xff\":{}}", 0, "offset 11: the header is not valid UTF-8");
    BAD("{\"\xc0\x80\":{}}", 0, "offset 10: the header is not valid UTF-8"); /* overlong NUL */
    BAD("{\"\xed\xa0\x80\":{}}", 0, "not valid UTF-8");                      /* a surrogate */
    OK(parse_header("{\"na\xc3\xafve \xe2\x82\xac \xf0\x9f\x94\xa5\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0));
    OK(parse_header("{}      ", 0));
    kiln_safetensors *st;
    const char *p = kt_path("raw.safetensors");
    kt_write_file(p, "\x02\0\0\0\0\0\0", 7, false);
    expect_error(kiln_safetensors_open(p, &st), KILN_ERR_FORMAT, "7 bytes, too short for the 8-byte header length");
    kt_write_file(p, "\x10\0\0\0\0\0\0\0{}", 10, false);
    expect_error(kiln_safetensors_open(p, &st), KILN_ERR_FORMAT, "header length 16 runs past the end of the file (10 bytes)");
    kt_write_file(p, "\x00\xe2\xf5\x05\0\0\0\0{}", 10, false); /* 100 000 256 */
    expect_error(kiln_safetensors_open(p, &st), KILN_ERR_FORMAT, "header length 100000256 is over the 100000000-byte limit");
    kt_write_file(p, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10, false);
    expect_error(kiln_safetensors_open(p, &st), KILN_ERR_FORMAT, "is over the");
    expect_error(kiln_safetensors_open(kt_path("none.safetensors"), &st), KILN_ERR_IO, "none.safetensors: cannot open");
    expect_error(kiln_safetensors_parse("\x02\0\0\0\0\0\0\0{}", 10, NULL, &st), KILN_OK, "");
    kiln_safetensors_free(st);
}

Test(safetensors, writer_refuses_bad_input) {
    int64_t shape[2] = {2, -1};
    float x[4] = {0};
    const char *p = kt_path("w.safetensors");
    kiln_st_tensor t[2] = {{"a", KILN_ST_F32, 1, shape, x}, {"a", KILN_ST_F32, 1, shape, x}};
    expect_error(kiln_safetensors_write(p, t, 2, NULL, 0), KILN_ERR_INVALID_ARG, "tensor name 'a' appears twice");
    t[1].name = "__metadata__";
    expect_error(kiln_safetensors_write(p, t, 2, NULL, 0), KILN_ERR_INVALID_ARG, "no usable name ('__metadata__')");
    t[1].name = "";
    expect_error(kiln_safetensors_write(p, t, 2, NULL, 0), KILN_ERR_INVALID_ARG, "tensor 1 has no usable name");
    t[1] = (kiln_st_tensor){"b", KILN_ST_F32, 2, shape, x};
    expect_error(kiln_safetensors_write(p, t, 2, NULL, 0), KILN_ERR_SHAPE, "tensor 'b': dimension 1 is -1");
    t[1] = (kiln_st_tensor){"b", (kiln_st_dtype)99, 1, shape, x};
    expect_error(kiln_safetensors_write(p, t, 2, NULL, 0), KILN_ERR_DTYPE, "unknown dtype 99");
    t[1] = (kiln_st_tensor){"b", KILN_ST_F32, 1, shape, NULL};
    expect_error(kiln_safetensors_write(p, t, 2, NULL, 0), KILN_ERR_INVALID_ARG, "tensor 'b': data is NULL");
    kiln_st_meta m[2] = {{"k", "1"}, {"k", "2"}};
    expect_error(kiln_safetensors_write(p, t, 1, m, 2), KILN_ERR_INVALID_ARG, "metadata key 'k' appears twice");
    cr_assert_eq(kt_dir_count(kt_tmpdir()), 0, "a refused write left a file");
}

/* Writes a small valid file at path and returns its bytes. */
static uint8_t *write_old(const char *path, size_t *len) {
    float v[3] = {1, 2, 3};
    int64_t shape[1] = {3};
    kiln_st_tensor t = {"old", KILN_ST_F32, 1, shape, v};
    OK(kiln_safetensors_write(path, &t, 1, NULL, 0));
    uint8_t *bytes = kt_read_file(path, len);
    cr_assert_not_null(bytes);
    return bytes;
}

static void expect_unchanged(const char *path, const uint8_t *old, size_t old_len) {
    size_t len;
    uint8_t *now = kt_read_file(path, &len);
    cr_assert_not_null(now, "the old file is gone");
    cr_assert_eq(len, old_len, "the old file changed length");
    kt_expect_bitwise("old file", now, old, len);
    free(now);
    kiln_safetensors *st;
    OK(kiln_safetensors_open(path, &st));
    cr_assert_not_null(kiln_safetensors_find(st, "old"));
    kiln_safetensors_free(st);
}

/* A write that fails half-way (the file size limit, EFBIG, stands in for a full disk): the
 * old file is intact and no temporary is left. */
Test(safetensors, failed_write_keeps_the_old_file) {
    const char *path = kt_path("model.safetensors");
    size_t old_len;
    uint8_t *old = write_old(path, &old_len);
    static float big[65536];
    int64_t shape[1] = {65536};
    kiln_st_tensor t = {"new", KILN_ST_F32, 1, shape, big};
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {16384, 16384};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    expect_error(kiln_safetensors_write(path, &t, 1, NULL, 0), KILN_ERR_IO, "model.safetensors: writing the temporary file");
    cr_assert(strstr(kiln_last_error(), "File too large") && strstr(kiln_last_error(), "the old file is untouched"),
              "%s", kiln_last_error());
    expect_unchanged(path, old, old_len);
    cr_assert_eq(kt_dir_count(kt_tmpdir()), 1, "a temporary file was left behind");
    free(old);
}

Test(safetensors, failed_rename_and_missing_directory) {
    mkdir(kt_path("adir"), 0700);
    float v = 1;
    kiln_st_tensor t = {"x", KILN_ST_F32, 0, NULL, &v};
    expect_error(kiln_safetensors_write(kt_path("adir"), &t, 1, NULL, 0), KILN_ERR_IO, "renaming the temporary file");
    cr_assert_eq(kt_dir_count(kt_tmpdir()), 1, "a temporary file was left behind");
    cr_assert_eq(kt_dir_count(kt_path("adir")), 0);
    expect_error(kiln_safetensors_write(kt_path("nodir/w.safetensors"), &t, 1, NULL, 0), KILN_ERR_IO,
                 "cannot create a temporary file in");
}

/* Without write permission on the directory (only meaningful when not root). */
Test(safetensors, unwritable_directory_keeps_the_old_file) {
    if (geteuid() == 0) cr_skip_test("running as root: directory permissions do not stop root");
    mkdir(kt_path("ro"), 0700);
    const char *path = kt_path("ro/m.safetensors");
    size_t old_len;
    uint8_t *old = write_old(path, &old_len);
    chmod(kt_path("ro"), 0500);
    float v = 1;
    kiln_st_tensor t = {"x", KILN_ST_F32, 0, NULL, &v};
    expect_error(kiln_safetensors_write(path, &t, 1, NULL, 0), KILN_ERR_IO, "Permission denied");
    expect_unchanged(path, old, old_len);
    chmod(kt_path("ro"), 0700);
    free(old);
}
