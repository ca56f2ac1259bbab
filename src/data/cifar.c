/* data/cifar.c: the CIFAR-10 binary version: files of 3073-byte records (a label byte, then
 * 1024 red, 1024 green and 1024 blue bytes, each plane row-major), converted to NHWC floats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "error.h"

#define CIFAR_SIDE 32
#define CIFAR_PLANE (CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_RECORD (1 + 3 * CIFAR_PLANE)
#define CIFAR_CLASSES 10
#define CIFAR_MAX_FILES 5
#define CIFAR_MAX_RECORDS 10000 /* per file, as in the official files */

static kiln_status check_file(const char *path, const uint8_t *p, size_t len) {
    if (len == 0) return kiln_error(KILN_ERR_FORMAT, "cifar10: %s: offset 0: the file is empty", path);
    if (len % CIFAR_RECORD)
        return kiln_error(KILN_ERR_FORMAT,
                          "cifar10: %s: offset %zu: length %zu is not a multiple of %d (a label byte and "
                          "3072 pixel bytes per record): the last record is cut short",
                          path, len - len % CIFAR_RECORD, len, CIFAR_RECORD);
    for (size_t r = 0; r < len / CIFAR_RECORD; r++)
        if (p[r * CIFAR_RECORD] >= CIFAR_CLASSES)
            return kiln_error(KILN_ERR_FORMAT, "cifar10: %s: offset %zu: record %zu has label %d, outside [0, %d)",
                              path, r * CIFAR_RECORD, r, p[r * CIFAR_RECORD], CIFAR_CLASSES);
    return KILN_OK;
}

/* Planar RGB record -> NHWC floats. */
static void convert_record(const uint8_t *rec, float *img, int32_t *label) {
    *label = rec[0];
    for (int i = 0; i < CIFAR_PLANE; i++)
        for (int ch = 0; ch < 3; ch++) img[i * 3 + ch] = (float)rec[1 + ch * CIFAR_PLANE + i] / 255.0f;
}

/* Loads files base_1 .. base_n (or base alone when n is 0) of dir into one dataset. */
static kiln_status load_files(const char *dir, const char *base, int n, const char *what, kiln_dataset **out) {
    void *buf[CIFAR_MAX_FILES] = {0};
    size_t len[CIFAR_MAX_FILES] = {0}, records = 0;
    int files = n ? n : 1;
    kiln_status s = KILN_OK;
    for (int f = 0; f < files && s == KILN_OK; f++) {
        char path[4200];
        if (n) snprintf(path, sizeof path, "%s/%s_%d.bin", dir, base, f + 1);
        else snprintf(path, sizeof path, "%s/%s.bin", dir, base);
        kiln_read_limit lim = {(size_t)CIFAR_MAX_RECORDS * CIFAR_RECORD, 0, NULL, NULL};
        s = kiln_file_read_limited(path, true, &lim, &buf[f], &len[f]);
        if (s == KILN_OK) s = check_file(path, buf[f], len[f]);
        records += len[f] / CIFAR_RECORD;
    }
    char name[256];
    snprintf(name, sizeof name, "cifar10 %s (%.200s)", what, dir);
    if (s == KILN_OK) s = kiln_dataset_new((int64_t)records, CIFAR_SIDE, CIFAR_SIDE, 3, CIFAR_CLASSES, name, out);
    for (int f = 0, row = 0; f < files && s == KILN_OK; f++)
        for (size_t r = 0; r < len[f] / CIFAR_RECORD; r++, row++)
            convert_record((const uint8_t *)buf[f] + r * CIFAR_RECORD,
                           (*out)->images + (size_t)row * 3 * CIFAR_PLANE, (*out)->labels + row);
    for (int f = 0; f < files; f++) free(buf[f]);
    return s;
}

kiln_status kiln_dataset_load_cifar10(const char *dir, kiln_dataset **train, kiln_dataset **test) {
    if (!dir || !train) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_load_cifar10: NULL argument");
    *train = NULL;
    if (test) *test = NULL;
    /* the official tarball unpacks into cifar-10-batches-bin/ */
    char sub[4200], probe[4300];
    snprintf(probe, sizeof probe, "%s/data_batch_1.bin", dir);
    if (!kiln_file_exists(probe)) {
        snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
        snprintf(probe, sizeof probe, "%s/data_batch_1.bin", sub);
        if (kiln_file_exists(probe)) dir = sub;
    }
    KILN_TRY(load_files(dir, "data_batch", CIFAR_MAX_FILES, "train", train));
    if (!test) return KILN_OK;
    kiln_status s = load_files(dir, "test_batch", 0, "test", test);
    if (s != KILN_OK) {
        kiln_dataset_free(*train);
        *train = NULL;
    }
    return s;
}
