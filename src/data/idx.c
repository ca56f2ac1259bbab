/* data/idx.c: the IDX format of MNIST (and Fashion-MNIST): a parser over a memory buffer
 * (the loader's and the fuzz target's entry point) and the MNIST loader, which reads the four
 * files raw or gzip-compressed and checks them against each other. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "error.h"

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* The header of an IDX buffer of len bytes: the magic, the dims (into out->dims) and the file's
 * length they declare (*total: header and data), overflow-checked. */
static kiln_status idx_header(const uint8_t *p, size_t len, const char *name, int ndim, kiln_idx *out,
                              char *dims, size_t dims_n, size_t *total) {
    uint32_t want = 0x00000800u | (uint32_t)ndim;
    if (len < 4)
        return kiln_error(KILN_ERR_FORMAT, "%s: offset 0: %zu bytes, too short for the 4-byte magic number",
                          name, len);
    uint32_t magic = be32(p);
    if (magic != want)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: offset 0: magic number 0x%08x, expected 0x%08x (unsigned bytes, %d dimension%s)%s",
                          name, magic, want, ndim, ndim == 1 ? "" : "s",
                          (magic & 0xffff0000u) || p[2] != 0x08 ? "" : " - a file of another rank?");
    size_t header = 4 + 4 * (size_t)ndim, data = 1;
    if (len < header)
        return kiln_error(KILN_ERR_FORMAT, "%s: offset %zu: truncated header: %d dimensions need %zu bytes, "
                          "the file has %zu", name, len, ndim, header, len);
    dims[0] = '\0';
    for (int i = 0; i < ndim; i++) {
        out->dims[i] = be32(p + 4 + 4 * i);
        size_t used = strlen(dims);
        snprintf(dims + used, dims_n - used, i ? " x %lld" : "%lld", (long long)out->dims[i]);
        if (!kiln_mul_size(data, (size_t)out->dims[i], &data) || data > SIZE_MAX - header)
            return kiln_error(KILN_ERR_FORMAT, "%s: offset %d: dimensions %s overflow", name, 4 + 4 * i, dims);
    }
    *total = header + data;
    return KILN_OK;
}

kiln_status kiln_idx_parse(const void *buf, size_t len, const char *name, int ndim, kiln_idx *out) {
    if (!name) name = "IDX buffer";
    if ((!buf && len) || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_idx_parse: %s: NULL argument", name);
    if (ndim < 1 || ndim > KILN_IDX_MAX_DIMS)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_idx_parse: %s: %d dimensions asked (1 .. %d)", name,
                          ndim, KILN_IDX_MAX_DIMS);
    memset(out, 0, sizeof *out);
    const uint8_t *p = buf;
    char dims[96];
    size_t header = 4 + 4 * (size_t)ndim, total = 0;
    KILN_TRY(idx_header(p, len, name, ndim, out, dims, sizeof dims, &total));
    if (len < total)
        return kiln_error(KILN_ERR_FORMAT, "%s: offset %zu: truncated: dimensions %s call for %zu bytes of "
                          "data, %zu present", name, len, dims, total - header, len - header);
    if (len > total)
        return kiln_error(KILN_ERR_FORMAT, "%s: offset %zu: %zu bytes past the end of the data (dimensions %s)",
                          name, total, len - total, dims);
    out->ndim = ndim;
    out->data = p + header;
    out->nbytes = total - header;
    return KILN_OK;
}

/* kiln_read_limit's size_of for an IDX file of *(int *)ctx dimensions: the length its header
 * declares, so that a compressed file is never inflated past it */
static kiln_status idx_size(const void *head, size_t len, const char *path, void *ctx, size_t *total) {
    kiln_idx idx;
    char dims[96];
    return idx_header(head, len, path, *(const int *)ctx, &idx, dims, sizeof dims, total);
}

/* Reads dir/base or dir/base.gz and parses it. *buf holds the file for the caller to free. */
static kiln_status read_idx(const char *dir, const char *base, int ndim, char *path, size_t path_n,
                            void **buf, kiln_idx *idx) {
    snprintf(path, path_n, "%s/%s", dir, base);
    if (!kiln_file_exists(path)) {
        snprintf(path, path_n, "%s/%s.gz", dir, base);
        if (!kiln_file_exists(path))
            return kiln_error(KILN_ERR_IO, "mnist: %s/%s not found (nor %s.gz)", dir, base, base);
    }
    size_t len = 0;
    kiln_read_limit lim = {0, 4 + 4 * (size_t)ndim, idx_size, &ndim};
    KILN_TRY(kiln_file_read_limited(path, true, &lim, buf, &len));
    kiln_status s = kiln_idx_parse(*buf, len, path, ndim, idx);
    if (s != KILN_OK) {
        free(*buf);
        *buf = NULL;
    }
    return s;
}

static kiln_status load_split(const char *dir, const char *prefix, kiln_dataset **out) {
    char img_path[4096 + 64], lab_path[4096 + 64], base[64];
    void *img_buf = NULL, *lab_buf = NULL;
    kiln_idx img, lab;
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", prefix);
    KILN_TRY(read_idx(dir, base, 3, img_path, sizeof img_path, &img_buf, &img));
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", prefix);
    kiln_status s = read_idx(dir, base, 1, lab_path, sizeof lab_path, &lab_buf, &lab);
    if (s == KILN_OK && img.dims[0] != lab.dims[0])
        s = kiln_error(KILN_ERR_FORMAT, "mnist: offset 4: %s holds %lld labels but %s holds %lld images",
                       lab_path, (long long)lab.dims[0], img_path, (long long)img.dims[0]);
    if (s == KILN_OK && (img.dims[0] == 0 || img.dims[1] == 0 || img.dims[2] == 0))
        s = kiln_error(KILN_ERR_FORMAT, "mnist: offset 4: %s is empty (%lld x %lld x %lld)", img_path,
                       (long long)img.dims[0], (long long)img.dims[1], (long long)img.dims[2]);
    if (s == KILN_OK && (img.dims[1] > 65536 || img.dims[2] > 65536))
        s = kiln_error(KILN_ERR_FORMAT, "mnist: offset 8: %s: images of %lld x %lld pixels are too large",
                       img_path, (long long)img.dims[1], (long long)img.dims[2]);
    char name[256];
    snprintf(name, sizeof name, "mnist %s (%.200s)", prefix, dir);
    if (s == KILN_OK) s = kiln_dataset_new(img.dims[0], (int)img.dims[1], (int)img.dims[2], 1, 10, name, out);
    if (s == KILN_OK) {
        kiln_u8_to_unit(img.data, (*out)->images, img.nbytes);
        s = kiln_labels_convert(lab.data, 1, lab.dims[0], 10, lab_path, 8, (*out)->labels, NULL);
        if (s != KILN_OK) {
            kiln_dataset_free(*out);
            *out = NULL;
        }
    }
    free(img_buf);
    free(lab_buf);
    return s;
}

kiln_status kiln_dataset_load_mnist(const char *dir, kiln_dataset **train, kiln_dataset **test) {
    if (!dir || !train) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_load_mnist: NULL argument");
    *train = NULL;
    if (test) *test = NULL;
    KILN_TRY(load_split(dir, "train", train));
    if (!test) return KILN_OK;
    kiln_status s = load_split(dir, "t10k", test);
    if (s == KILN_OK && ((*test)->h != (*train)->h || (*test)->w != (*train)->w))
        s = kiln_error(KILN_ERR_FORMAT, "mnist: %s: test images are %dx%d, training images %dx%d", dir,
                       (*test)->h, (*test)->w, (*train)->h, (*train)->w);
    if (s != KILN_OK) {
        kiln_dataset_free(*train);
        kiln_dataset_free(test ? *test : NULL);
        *train = NULL;
        *test = NULL;
    }
    return s;
}
