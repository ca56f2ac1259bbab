/* safetensors_write.c: the safetensors writer: checks the tensors and metadata it is given,
 * builds the JSON header (names escaped, padded with spaces to a multiple of 8) and hands the
 * header and the tensors' bytes to the atomic file replacement. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file_read.h"
#include "error.h"
#include "file_atomic.h"
#include "safetensors_internal.h"

/* A growing string; `oom` sticks once an allocation fails. */
typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_printf(strbuf *b, const char *fmt, ...) KILN_PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, n > 0 ? (size_t)n : 0);
}

/* A JSON string literal: quotes, backslashes and control characters escaped. */
static void sb_json_string(strbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            char e[2] = {'\\', (char)*c};
            sb_put(b, e, 2);
        } else if (*c < 0x20) {
            sb_printf(b, "\\u%04x", *c);
        } else {
            sb_put(b, (const char *)c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static kiln_status check_tensor(const char *path, const kiln_st_tensor *t, size_t i, size_t *nbytes) {
    if (!t->name || !*t->name || !strcmp(t->name, "__metadata__"))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: tensor %zu has no usable name ('%s')", path, i,
                          t->name ? t->name : "(null)");
    if (kiln_st_dtype_size(t->dtype) == 0)
        return kiln_error(KILN_ERR_DTYPE, "%s: tensor '%s': unknown dtype %d", path, t->name, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > KILN_ST_MAX_DIMS || (t->ndim > 0 && !t->shape))
        return kiln_error(KILN_ERR_SHAPE, "%s: tensor '%s': %d dimensions (0 .. %d, with a shape)", path,
                          t->name, t->ndim, KILN_ST_MAX_DIMS);
    *nbytes = kiln_st_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || !kiln_mul_size(*nbytes, (size_t)t->shape[d], nbytes))
            return kiln_error(KILN_ERR_SHAPE, "%s: tensor '%s': dimension %d is %lld", path, t->name, d,
                              (long long)t->shape[d]);
    if (*nbytes && !t->data)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: tensor '%s': data is NULL", path, t->name);
    return KILN_OK;
}

static kiln_status check_names(const char *path, const kiln_st_tensor *tensors, size_t n,
                               const kiln_st_meta *meta, size_t n_meta) {
    size_t most = n > n_meta ? n : n_meta;
    const char **names = malloc((most ? most : 1) * sizeof *names);
    if (!names) return kiln_error(KILN_ERR_OOM, "%s: out of host memory", path);
    for (size_t i = 0; i < n; i++) names[i] = tensors[i].name;
    size_t dup = kiln_st_find_duplicate(names, n), mdup = n_meta;
    kiln_status s = KILN_OK;
    for (size_t i = 0; i < n_meta && s == KILN_OK; i++) {
        if (!meta[i].key || !meta[i].value)
            s = kiln_error(KILN_ERR_INVALID_ARG, "%s: metadata entry %zu has a NULL key or value", path, i);
        names[i] = meta[i].key;
    }
    if (s == KILN_OK) mdup = kiln_st_find_duplicate(names, n_meta);
    if (s == KILN_OK && (dup == SIZE_MAX || mdup == SIZE_MAX)) s = kiln_error(KILN_ERR_OOM, "%s: out of host memory", path);
    else if (s == KILN_OK && dup != n)
        s = kiln_error(KILN_ERR_INVALID_ARG, "%s: tensor name '%s' appears twice", path, tensors[dup].name);
    else if (s == KILN_OK && mdup != n_meta)
        s = kiln_error(KILN_ERR_INVALID_ARG, "%s: metadata key '%s' appears twice", path, meta[mdup].key);
    free(names);
    return s;
}

kiln_status kiln_safetensors_write(const char *path, const kiln_st_tensor *tensors, size_t n,
                                   const kiln_st_meta *meta, size_t n_meta) {
    if (!path || (n && !tensors) || (n_meta && !meta))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_safetensors_write: NULL argument");
    if (n > (size_t)INT32_MAX || n_meta > (size_t)INT32_MAX) /* keeps the arrays below from overflowing */
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_safetensors_write: %zu tensors and %zu metadata entries", n, n_meta);
    size_t *sizes = malloc((n ? n : 1) * sizeof *sizes);
    kiln_file_part *parts = malloc((n + 2) * sizeof *parts);
    strbuf h = {0};
    kiln_status s = sizes && parts ? KILN_OK : kiln_error(KILN_ERR_OOM, "%s: out of host memory", path);
    for (size_t i = 0; i < n && s == KILN_OK; i++) s = check_tensor(path, &tensors[i], i, &sizes[i]);
    if (s == KILN_OK) s = check_names(path, tensors, n, meta, n_meta);
    if (s == KILN_OK) {
        sb_put(&h, "{", 1);
        if (n_meta) {
            sb_put(&h, "\"__metadata__\":{", 16);
            for (size_t i = 0; i < n_meta; i++) {
                if (i) sb_put(&h, ",", 1);
                sb_json_string(&h, meta[i].key);
                sb_put(&h, ":", 1);
                sb_json_string(&h, meta[i].value);
            }
            sb_put(&h, "}", 1);
        }
        uint64_t at = 0;
        for (size_t i = 0; i < n; i++) {
            if (i || n_meta) sb_put(&h, ",", 1);
            sb_json_string(&h, tensors[i].name);
            sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", kiln_st_dtype_name(tensors[i].dtype));
            for (int d = 0; d < tensors[i].ndim; d++) sb_printf(&h, d ? ",%lld" : "%lld", (long long)tensors[i].shape[d]);
            sb_printf(&h, "],\"data_offsets\":[%llu,", (unsigned long long)at);
            at += sizes[i];
            sb_printf(&h, "%llu]}", (unsigned long long)at);
        }
        sb_put(&h, "}", 1);
        while (!h.oom && h.len % 8) sb_put(&h, " ", 1);
        if (h.oom) s = kiln_error(KILN_ERR_OOM, "%s: out of host memory for the header", path);
        else if (h.len > KILN_ST_MAX_HEADER)
            s = kiln_error(KILN_ERR_INVALID_ARG, "%s: the header would be %zu bytes, over the limit", path, h.len);
    }
    if (s == KILN_OK) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
        parts[0] = (kiln_file_part){len8, 8};
        parts[1] = (kiln_file_part){h.p, h.len};
        for (size_t i = 0; i < n; i++) parts[i + 2] = (kiln_file_part){tensors[i].data, sizes[i]};
        s = kiln_file_write_atomic(path, parts, n + 2);
    }
    free(h.p);
    free(sizes);
    free(parts);
    return s;
}
