/* data/npy.c: NumPy .npy files: a strict parser of the v1/v2/v3 header (the Python dict
 * literal is parsed by hand, never evaluated) over a memory buffer, and the loader that turns
 * an image array and a label array into a dataset. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "error.h"

#define NPY_MAX_HEADER ((size_t)1 << 20)

typedef struct npy_parser {
    const char *s;      /* the header text */
    size_t pos, end;    /* position in s, length of s */
    size_t base;        /* file offset of s[0] */
    const char *name;
} npy_parser;

static kiln_status npy_fail(const npy_parser *p, const char *what) {
    return kiln_error(KILN_ERR_FORMAT, "%s: offset %zu: bad .npy header: %s", p->name, p->base + p->pos, what);
}

static void skip_ws(npy_parser *p) {
    while (p->pos < p->end && strchr(" \t\r\n", p->s[p->pos]) && p->s[p->pos]) p->pos++;
}

static bool eat(npy_parser *p, char c) {
    skip_ws(p);
    if (p->pos < p->end && p->s[p->pos] == c) {
        p->pos++;
        return true;
    }
    return false;
}

/* A quoted string without escapes into out (at most n - 1 characters). */
static kiln_status parse_string(npy_parser *p, char *out, size_t n) {
    skip_ws(p);
    if (p->pos >= p->end || (p->s[p->pos] != '\'' && p->s[p->pos] != '"')) return npy_fail(p, "expected a quoted string");
    char q = p->s[p->pos++];
    size_t start = p->pos;
    while (p->pos < p->end && p->s[p->pos] != q) {
        if (p->s[p->pos] == '\\' || p->s[p->pos] == '\0' || p->s[p->pos] == '\n')
            return npy_fail(p, "escape, NUL or newline inside a string");
        p->pos++;
    }
    if (p->pos >= p->end) return npy_fail(p, "unterminated string");
    size_t len = p->pos - start;
    p->pos++;
    if (len >= n) return npy_fail(p, "string too long");
    memcpy(out, p->s + start, len);
    out[len] = '\0';
    return KILN_OK;
}

static kiln_status parse_bool(npy_parser *p, bool *out) {
    skip_ws(p);
    if (p->end - p->pos >= 4 && !memcmp(p->s + p->pos, "True", 4)) *out = true, p->pos += 4;
    else if (p->end - p->pos >= 5 && !memcmp(p->s + p->pos, "False", 5)) *out = false, p->pos += 5;
    else return npy_fail(p, "fortran_order must be True or False");
    return KILN_OK;
}

/* '(' [int {',' int} [',']] ')', each int a non-negative decimal (a Python 2 'L' allowed). */
static kiln_status parse_shape(npy_parser *p, kiln_npy *out) {
    if (!eat(p, '(')) return npy_fail(p, "shape must be a tuple");
    out->ndim = 0;
    for (;;) {
        if (eat(p, ')')) return KILN_OK;
        skip_ws(p);
        if (p->pos >= p->end || p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return npy_fail(p, "shape entries must be non-negative integers");
        if (out->ndim == KILN_NPY_MAX_DIMS) return npy_fail(p, "more than 8 dimensions");
        int64_t v = 0;
        while (p->pos < p->end && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
            if (v > ((int64_t)1 << 53)) return npy_fail(p, "shape entry too large");
            v = v * 10 + (p->s[p->pos++] - '0');
        }
        if (p->pos < p->end && p->s[p->pos] == 'L') p->pos++;
        out->shape[out->ndim++] = v;
        if (eat(p, ')')) return KILN_OK;
        if (!eat(p, ',')) return npy_fail(p, "expected ',' or ')' in shape");
    }
}

static const struct { const char *code; kiln_npy_dtype dtype; size_t size; } npy_types[] = {
    {"u1", KILN_NPY_U8, 1}, {"i4", KILN_NPY_I32, 4}, {"i8", KILN_NPY_I64, 8},
    {"f4", KILN_NPY_F32, 4}, {"f8", KILN_NPY_F64, 8},
};

static size_t npy_itemsize(kiln_npy_dtype t) {
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (npy_types[i].dtype == t) return npy_types[i].size;
    return 0;
}

static kiln_status parse_descr(npy_parser *p, kiln_npy *out) {
    skip_ws(p);
    if (p->pos < p->end && p->s[p->pos] == '[') return npy_fail(p, "structured dtypes are not supported");
    char d[16];
    KILN_TRY(parse_string(p, d, sizeof d));
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++) {
        if (strlen(d) != 3 || strcmp(d + 1, npy_types[i].code)) continue;
        bool one = npy_types[i].size == 1;
        if (d[0] == '<' || d[0] == '=' || (one && (d[0] == '|' || d[0] == '>'))) {
            out->dtype = npy_types[i].dtype;
            return KILN_OK;
        }
        if (d[0] == '>') return npy_fail(p, "big-endian data ('>') is not supported");
    }
    char msg[96];
    snprintf(msg, sizeof msg, "descr '%s' is not one of '|u1', '<i4', '<i8', '<f4', '<f8'", d);
    return npy_fail(p, msg);
}

/* The dict: exactly the keys 'descr', 'fortran_order' and 'shape', in any order. */
static kiln_status parse_dict(npy_parser *p, kiln_npy *out) {
    bool seen[3] = {false, false, false}, fortran = false;
    if (!eat(p, '{')) return npy_fail(p, "the header is not a dict ('{' expected)");
    while (!eat(p, '}')) {
        char key[32];
        KILN_TRY(parse_string(p, key, sizeof key));
        int k = !strcmp(key, "descr") ? 0 : !strcmp(key, "fortran_order") ? 1 : !strcmp(key, "shape") ? 2 : -1;
        if (k < 0) return npy_fail(p, "unknown key (only 'descr', 'fortran_order', 'shape')");
        if (seen[k]) return npy_fail(p, "duplicate key");
        seen[k] = true;
        if (!eat(p, ':')) return npy_fail(p, "expected ':' after a key");
        KILN_TRY(k == 0 ? parse_descr(p, out) : k == 1 ? parse_bool(p, &fortran) : parse_shape(p, out));
        if (k == 1 && fortran)
            return npy_fail(p, "fortran_order is True; save a C-ordered array (np.ascontiguousarray)");
        if (!eat(p, ',')) {
            if (!eat(p, '}')) return npy_fail(p, "expected ',' or '}'");
            break;
        }
    }
    if (!seen[0] || !seen[1] || !seen[2])
        return npy_fail(p, !seen[0] ? "'descr' is missing" : !seen[1] ? "'fortran_order' is missing" : "'shape' is missing");
    skip_ws(p);
    if (p->pos != p->end) return npy_fail(p, "text after the dict");
    return KILN_OK;
}

kiln_status kiln_npy_parse(const void *buf, size_t len, const char *name, kiln_npy *out) {
    if (!name) name = "npy buffer";
    if ((!buf && len) || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_npy_parse: %s: NULL argument", name);
    memset(out, 0, sizeof *out);
    const uint8_t *b = buf;
    if (len < 10 || memcmp(b, "\x93NUMPY", 6))
        return kiln_error(KILN_ERR_FORMAT, "%s: offset 0: not a .npy file (no \\x93NUMPY magic)", name);
    if (b[6] < 1 || b[6] > 3 || b[7] != 0)
        return kiln_error(KILN_ERR_FORMAT, "%s: offset 6: .npy version %d.%d (1.0, 2.0 and 3.0 are read)", name,
                          b[6], b[7]);
    size_t pre = b[6] == 1 ? 10 : 12, hl;
    if (len < pre) return kiln_error(KILN_ERR_FORMAT, "%s: offset %zu: truncated header length", name, len);
    hl = b[6] == 1 ? (size_t)b[8] | (size_t)b[9] << 8
                   : (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    if (hl > NPY_MAX_HEADER || hl > len - pre)
        return kiln_error(KILN_ERR_FORMAT, "%s: offset 8: header length %zu %s", name, hl,
                          hl > NPY_MAX_HEADER ? "is over the 1 MiB limit" : "runs past the end of the file");
    npy_parser p = {(const char *)b + pre, 0, hl, pre, name};
    KILN_TRY(parse_dict(&p, out));
    size_t count = 1, nbytes;
    for (int i = 0; i < out->ndim; i++)
        if (!kiln_mul_size(count, (size_t)out->shape[i], &count))
            return kiln_error(KILN_ERR_FORMAT, "%s: offset %zu: the shape's element count overflows", name, pre);
    if (!kiln_mul_size(count, npy_itemsize(out->dtype), &nbytes) || nbytes != len - pre - hl)
        return kiln_error(KILN_ERR_FORMAT, "%s: offset %zu: the shape calls for %zu elements of %zu bytes, "
                          "the file holds %zu data bytes", name, pre + hl, count,
                          npy_itemsize(out->dtype), len - pre - hl);
    out->version = b[6];
    out->data = b + pre + hl;
    out->nbytes = nbytes;
    return KILN_OK;
}

/* ---- the loader ---- */

typedef struct npy_file {
    void *buf;
    kiln_npy a;
    size_t data_offset;
} npy_file;

static kiln_status read_npy(const char *path, npy_file *f) {
    size_t len = 0;
    KILN_TRY(kiln_file_read(path, false, &f->buf, &len));
    kiln_status s = kiln_npy_parse(f->buf, len, path, &f->a);
    f->data_offset = s == KILN_OK ? (size_t)((const char *)f->a.data - (const char *)f->buf) : 0;
    return s;
}

static const char *npy_descr(kiln_npy_dtype t) {
    static const char *const names[KILN_NPY_DTYPE_COUNT] = {"|u1", "<i4", "<i8", "<f4", "<f8"};
    return (int)t >= 0 && t < KILN_NPY_DTYPE_COUNT ? names[t] : "?";
}

/* Images: u8 scaled by 1/255; f32 and f64 as they are, each finite. */
static kiln_status convert_images(const char *path, const npy_file *x, float *out, size_t n) {
    const unsigned char *d = x->a.data;
    if (x->a.dtype == KILN_NPY_U8) {
        kiln_u8_to_unit(d, out, n);
        return KILN_OK;
    }
    size_t width = x->a.dtype == KILN_NPY_F32 ? 4 : 8;
    for (size_t i = 0; i < n; i++) {
        if (width == 4) {
            memcpy(&out[i], d + i * 4, 4);
        } else {
            double v;
            memcpy(&v, d + i * 8, 8);
            out[i] = (float)v;
        }
        if (!isfinite(out[i]))
            return kiln_error(KILN_ERR_FORMAT, "%s: offset %zu: element %zu is not finite (%g as float32)", path,
                              x->data_offset + i * width, i, (double)out[i]);
    }
    return KILN_OK;
}

static kiln_status check_arrays(const char *xp, const char *yp, const npy_file *x, const npy_file *y) {
    const kiln_npy *a = &x->a, *l = &y->a;
    if (a->dtype != KILN_NPY_U8 && a->dtype != KILN_NPY_F32 && a->dtype != KILN_NPY_F64)
        return kiln_error(KILN_ERR_FORMAT, "%s: images of dtype '%s' (|u1, <f4 or <f8 expected)", xp, npy_descr(a->dtype));
    if (a->ndim != 3 && a->ndim != 4)
        return kiln_error(KILN_ERR_FORMAT, "%s: images of %d dimensions ((N, H, W, C) or (N, H, W) expected)", xp, a->ndim);
    for (int i = 1; i < a->ndim; i++)
        if (a->shape[i] < 1 || a->shape[i] > 65536)
            return kiln_error(KILN_ERR_FORMAT, "%s: image dimension %d is %lld (1 .. 65536)", xp, i, (long long)a->shape[i]);
    if (a->shape[0] == 0) return kiln_error(KILN_ERR_FORMAT, "%s: the dataset is empty (0 images)", xp);
    if (l->dtype != KILN_NPY_U8 && l->dtype != KILN_NPY_I32 && l->dtype != KILN_NPY_I64)
        return kiln_error(KILN_ERR_FORMAT, "%s: labels of dtype '%s' (|u1, <i4 or <i8 expected)", yp, npy_descr(l->dtype));
    if (l->ndim != 1 && !(l->ndim == 2 && l->shape[1] == 1))
        return kiln_error(KILN_ERR_FORMAT, "%s: labels of %d dimensions ((N) or (N, 1) expected)", yp, l->ndim);
    if (l->shape[0] != a->shape[0])
        return kiln_error(KILN_ERR_FORMAT, "%s holds %lld labels but %s holds %lld images", yp,
                          (long long)l->shape[0], xp, (long long)a->shape[0]);
    return KILN_OK;
}

kiln_status kiln_dataset_load_npy(const char *x_path, const char *y_path, int num_classes, kiln_dataset **out) {
    if (!x_path || !y_path || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_load_npy: NULL argument");
    *out = NULL;
    if (num_classes < 0 || num_classes > KILN_MAX_CLASSES)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_load_npy: %d classes (0 .. %d)", num_classes, KILN_MAX_CLASSES);
    npy_file x = {0}, y = {0};
    kiln_status s = read_npy(x_path, &x);
    if (s == KILN_OK) s = read_npy(y_path, &y);
    if (s == KILN_OK) s = check_arrays(x_path, y_path, &x, &y);
    char name[256];
    snprintf(name, sizeof name, "npy %.120s", x_path);
    const int64_t *sh = x.a.shape;
    if (s == KILN_OK)
        s = kiln_dataset_new(sh[0], (int)sh[1], (int)sh[2], x.a.ndim == 4 ? (int)sh[3] : 1,
                             num_classes ? num_classes : 1, name, out);
    if (s == KILN_OK) s = convert_images(x_path, &x, (*out)->images, (size_t)sh[0] * kiln_dataset_image_numel(*out));
    if (s == KILN_OK)
        s = kiln_labels_convert(y.a.data, npy_itemsize(y.a.dtype), sh[0], num_classes, y_path, y.data_offset,
                                (*out)->labels, &(*out)->num_classes);
    if (s != KILN_OK) {
        kiln_dataset_free(*out);
        *out = NULL;
    }
    free(x.buf);
    free(y.buf);
    return s;
}
