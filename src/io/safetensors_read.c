/* safetensors_read.c: the safetensors reader. It checks everything before handing out a single
 * pointer: the header length, the JSON, every entry's dtype, shape, size and offsets, that
 * the tensors tile the data exactly (no overlap, no gap, nothing left over) and that names are
 * unique; each rejection is KILN_ERR_FORMAT naming the file and the tensor. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file_read.h"
#include "error.h"
#include "safetensors_internal.h"

static const struct { const char *name; size_t size; } st_types[KILN_ST_DTYPE_COUNT] = {
    [KILN_ST_F32] = {"F32", 4},  [KILN_ST_F16] = {"F16", 2},  [KILN_ST_BF16] = {"BF16", 2},
    [KILN_ST_F64] = {"F64", 8},  [KILN_ST_I64] = {"I64", 8},  [KILN_ST_I32] = {"I32", 4},
    [KILN_ST_I16] = {"I16", 2},  [KILN_ST_I8] = {"I8", 1},    [KILN_ST_U64] = {"U64", 8},
    [KILN_ST_U32] = {"U32", 4},  [KILN_ST_U16] = {"U16", 2},  [KILN_ST_U8] = {"U8", 1},
    [KILN_ST_BOOL] = {"BOOL", 1},
};

const char *kiln_st_dtype_name(kiln_st_dtype t) {
    if ((int)t < 0 || t >= KILN_ST_DTYPE_COUNT) kiln_error(KILN_ERR_DTYPE, "kiln_st_dtype_name: unknown dtype %d", (int)t);
    return (int)t >= 0 && t < KILN_ST_DTYPE_COUNT ? st_types[t].name : "?";
}
size_t kiln_st_dtype_size(kiln_st_dtype t) {
    if ((int)t < 0 || t >= KILN_ST_DTYPE_COUNT) kiln_error(KILN_ERR_DTYPE, "kiln_st_dtype_size: unknown dtype %d", (int)t);
    return (int)t >= 0 && t < KILN_ST_DTYPE_COUNT ? st_types[t].size : 0;
}

bool kiln_st_dtype_parse(const char *name, kiln_st_dtype *out) {
    for (int t = 0; t < KILN_ST_DTYPE_COUNT; t++)
        if (!strcmp(name, st_types[t].name)) {
            *out = (kiln_st_dtype)t;
            return true;
        }
    return false;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t kiln_st_find_duplicate(const char *const *names, size_t n) {
    if (n < 2) return n;
    const char **sorted = malloc(n * sizeof *sorted);
    if (!sorted) return SIZE_MAX;
    memcpy(sorted, names, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str);
    size_t dup = n;
    for (size_t i = 1; i < n && dup == n; i++)
        if (!strcmp(sorted[i - 1], sorted[i]))
            for (size_t j = 0; j < n; j++)
                if (names[j] == sorted[i]) dup = j;
    free(sorted);
    return dup;
}

/* ---- validation ---- */

typedef struct st_ctx {
    const char *file;
    uint64_t data_len;
} st_ctx;

static kiln_status fail(const st_ctx *c, const char *tensor, const char *fmt, ...) KILN_PRINTF(3, 4);
static kiln_status fail(const st_ctx *c, const char *tensor, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (tensor) return kiln_error(KILN_ERR_FORMAT, "%s: tensor '%.200s': %s", c->file, tensor, what);
    return kiln_error(KILN_ERR_FORMAT, "%s: %s", c->file, what);
}

/* A JSON number that is an integer in [0, 2^53]. */
static bool json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!isfinite(d) || d < 0 || d > 9007199254740992.0 || floor(d) != d) return false;
    *out = (uint64_t)d;
    return true;
}

static kiln_status check_entry(const st_ctx *c, const cJSON *obj, kiln_st_entry *e) {
    const char *n = e->name;
    if (!cJSON_IsObject(obj)) return fail(c, n, "the entry is not an object");
    const cJSON *dt = NULL, *shape = NULL, *offs = NULL, *k;
    cJSON_ArrayForEach(k, obj) {
        const cJSON **slot = !strcmp(k->string, "dtype") ? &dt : !strcmp(k->string, "shape") ? &shape
                           : !strcmp(k->string, "data_offsets") ? &offs : NULL;
        if (!slot) return fail(c, n, "unknown key '%.100s' (dtype, shape, data_offsets)", k->string);
        if (*slot) return fail(c, n, "duplicate key '%s'", k->string);
        *slot = k;
    }
    if (!dt || !shape || !offs)
        return fail(c, n, "missing '%s'", !dt ? "dtype" : !shape ? "shape" : "data_offsets");
    if (!cJSON_IsString(dt) || !kiln_st_dtype_parse(dt->valuestring, &e->dtype))
        return fail(c, n, "unknown dtype %.40s%s%s", cJSON_IsString(dt) ? "'" : "(not a string)",
                    cJSON_IsString(dt) ? dt->valuestring : "", cJSON_IsString(dt) ? "'" : "");
    if (!cJSON_IsArray(shape)) return fail(c, n, "shape is not an array");
    int nd = cJSON_GetArraySize(shape);
    if (nd > KILN_ST_MAX_DIMS) return fail(c, n, "%d dimensions (at most %d)", nd, KILN_ST_MAX_DIMS);
    size_t nbytes = kiln_st_dtype_size(e->dtype);
    const cJSON *d;
    e->ndim = 0;
    cJSON_ArrayForEach(d, shape) {
        uint64_t v;
        if (!json_uint(d, &v)) return fail(c, n, "shape[%d] is not a non-negative integer", e->ndim);
        e->shape[e->ndim++] = (int64_t)v;
        if (!kiln_mul_size(nbytes, (size_t)v, &nbytes)) return fail(c, n, "the shape's byte size overflows");
    }
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &e->begin) ||
        !json_uint(offs->child->next, &e->end))
        return fail(c, n, "data_offsets is not [begin, end] of non-negative integers");
    if (e->begin > e->end) return fail(c, n, "data_offsets [%llu, %llu] end before they begin",
                                       (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > c->data_len)
        return fail(c, n, "data_offsets [%llu, %llu] run past the end of the data (%llu bytes)",
                    (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)c->data_len);
    if (nbytes != e->end - e->begin)
        return fail(c, n, "%s shape of %d dims needs %zu bytes, data_offsets [%llu, %llu] hold %llu",
                    kiln_st_dtype_name(e->dtype), e->ndim, nbytes, (unsigned long long)e->begin,
                    (unsigned long long)e->end, (unsigned long long)(e->end - e->begin));
    e->nbytes = nbytes;
    return KILN_OK;
}

static int cmp_offsets(const void *a, const void *b) {
    const kiln_st_entry *x = *(const kiln_st_entry *const *)a, *y = *(const kiln_st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* The tensors must tile [0, data_len) exactly. */
static kiln_status check_tiling(const st_ctx *c, kiln_st_entry *e, size_t n) {
    const kiln_st_entry **order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return kiln_error(KILN_ERR_OOM, "%s: out of host memory", c->file);
    for (size_t i = 0; i < n; i++) order[i] = &e[i];
    qsort(order, n, sizeof *order, cmp_offsets);
    uint64_t at = 0;
    const char *prev = NULL;
    kiln_status s = KILN_OK;
    for (size_t i = 0; i < n && s == KILN_OK; i++) {
        if (order[i]->begin < at)
            s = fail(c, order[i]->name, "data_offsets [%llu, %llu] overlap tensor '%.200s' (which ends at %llu)",
                     (unsigned long long)order[i]->begin, (unsigned long long)order[i]->end, prev,
                     (unsigned long long)at);
        else if (order[i]->begin > at)
            s = fail(c, order[i]->name, "a gap: bytes [%llu, %llu) of the data belong to no tensor",
                     (unsigned long long)at, (unsigned long long)order[i]->begin);
        at = order[i]->end;
        prev = order[i]->name;
    }
    if (s == KILN_OK && at != c->data_len)
        s = fail(c, NULL, "bytes [%llu, %llu) at the end of the data belong to no tensor", (unsigned long long)at,
                 (unsigned long long)c->data_len);
    free(order);
    return s;
}

static kiln_status check_metadata(const st_ctx *c, const cJSON *m, size_t *count) {
    if (!cJSON_IsObject(m)) return fail(c, NULL, "__metadata__ is not an object");
    const cJSON *k;
    *count = 0;
    cJSON_ArrayForEach(k, m) {
        if (!cJSON_IsString(k)) return fail(c, NULL, "__metadata__ value of '%.200s' is not a string", k->string);
        ++*count;
    }
    return KILN_OK;
}

/* Copies s into the string arena at *at. */
static const char *stash(char **at, const char *s) {
    size_t n = strlen(s) + 1;
    memcpy(*at, s, n);
    *at += n;
    return *at - n;
}

/* Builds st from the parsed header root (already known to be an object). */
static kiln_status build(const st_ctx *c, const cJSON *root, const unsigned char *data, kiln_safetensors *st) {
    const cJSON *meta = NULL, *j;
    size_t n = 0, nm = 0, text = 0;
    cJSON_ArrayForEach(j, root) {
        text += strlen(j->string) + 1;
        if (strcmp(j->string, "__metadata__")) {
            n++;
            continue;
        }
        if (meta) return fail(c, NULL, "two __metadata__ entries");
        meta = j;
        KILN_TRY(check_metadata(c, meta, &nm));
        const cJSON *k;
        cJSON_ArrayForEach(k, meta) text += strlen(k->string) + strlen(k->valuestring) + 2;
    }
    st->entries = calloc(n ? n : 1, sizeof *st->entries);
    st->meta = calloc(nm ? nm : 1, sizeof *st->meta);
    char *at = st->strings_ = malloc(text ? text : 1);
    if (!st->entries || !st->meta || !st->strings_) return kiln_error(KILN_ERR_OOM, "%s: out of host memory", c->file);
    cJSON_ArrayForEach(j, root) {
        if (j == meta) continue;
        kiln_st_entry *e = &st->entries[st->n_entries++];
        e->name = stash(&at, j->string);
        KILN_TRY(check_entry(c, j, e));
        e->data = data + e->begin;
    }
    if (meta)
        cJSON_ArrayForEach(j, meta) {
            st->meta[st->n_meta].key = stash(&at, j->string);
            st->meta[st->n_meta++].value = stash(&at, j->valuestring);
        }
    const char **names = malloc((n + nm + 1) * sizeof *names);
    if (!names) return kiln_error(KILN_ERR_OOM, "%s: out of host memory", c->file);
    for (size_t i = 0; i < n; i++) names[i] = st->entries[i].name;
    size_t dup = kiln_st_find_duplicate(names, n);
    for (size_t i = 0; i < nm; i++) names[i] = st->meta[i].key;
    size_t mdup = dup == n ? kiln_st_find_duplicate(names, nm) : nm;
    free(names);
    if (dup == SIZE_MAX || mdup == SIZE_MAX) return kiln_error(KILN_ERR_OOM, "%s: out of host memory", c->file);
    if (dup != n) return fail(c, st->entries[dup].name, "the name appears twice");
    if (mdup != nm) return fail(c, NULL, "__metadata__ key '%.200s' appears twice", st->meta[mdup].key);
    return check_tiling(c, st->entries, n);
}

static bool is_space(unsigned char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

/* Offset of the first byte that breaks well-formed UTF-8 (no overlongs, no surrogates, at
 * most U+10FFFF), or n when there is none. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!len || len > n - i) return i;
        uint32_t cp = len == 1 ? c : c & (0x7fu >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

kiln_status kiln_safetensors_parse(const void *buf, size_t len, const char *name, kiln_safetensors **out) {
    if (!name) name = "safetensors buffer";
    if ((!buf && len) || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_safetensors_parse: %s: NULL argument", name);
    *out = NULL;
    st_ctx c = {name, 0};
    const unsigned char *b = buf;
    if (len < 8) return fail(&c, NULL, "offset 0: %zu bytes, too short for the 8-byte header length", len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    if (hl > KILN_ST_MAX_HEADER)
        return fail(&c, NULL, "offset 0: header length %llu is over the %llu-byte limit", (unsigned long long)hl,
                    (unsigned long long)KILN_ST_MAX_HEADER);
    if (hl > len - 8)
        return fail(&c, NULL, "offset 0: header length %llu runs past the end of the file (%zu bytes)",
                    (unsigned long long)hl, len);
    if (hl < 2 || b[8] != '{') return fail(&c, NULL, "offset 8: the header does not start with '{'");
    c.data_len = len - 8 - hl;
    size_t bad = utf8_invalid_at(b + 8, (size_t)hl);
    if (bad != hl) return fail(&c, NULL, "offset %zu: the header is not valid UTF-8", 8 + bad);
    /* a NUL-terminated copy, so the JSON parser can never read past the header */
    char *text = malloc((size_t)hl + 1);
    if (!text) return kiln_error(KILN_ERR_OOM, "%s: out of host memory for a %llu-byte header", name, (unsigned long long)hl);
    memcpy(text, b + 8, (size_t)hl);
    text[hl] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)hl, &end, 0);
    size_t stop = end && end >= text && end <= text + hl ? (size_t)(end - text) : 0;
    kiln_status s = KILN_OK;
    if (!root) s = fail(&c, NULL, "offset %zu: the header is not valid JSON", 8 + stop);
    else if (!cJSON_IsObject(root)) s = fail(&c, NULL, "offset 8: the header is not a JSON object");
    for (size_t i = stop; s == KILN_OK && i < hl; i++)
        if (!is_space((unsigned char)text[i]))
            s = fail(&c, NULL, "offset %zu: bytes after the header's JSON that are not padding spaces", 8 + i);
    kiln_safetensors *st = NULL;
    if (s == KILN_OK && !(st = calloc(1, sizeof *st))) s = kiln_error(KILN_ERR_OOM, "%s: out of host memory", name);
    if (s == KILN_OK) {
        snprintf(st->name, sizeof st->name, "%s", name);
        s = build(&c, root, b + 8 + hl, st);
    }
    cJSON_Delete(root);
    free(text);
    if (s != KILN_OK) {
        kiln_safetensors_free(st);
        return s;
    }
    *out = st;
    return KILN_OK;
}

kiln_status kiln_safetensors_open(const char *path, kiln_safetensors **out) {
    if (!path || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_safetensors_open: NULL argument");
    *out = NULL;
    void *buf = NULL;
    size_t len = 0;
    KILN_TRY(kiln_file_read(path, false, &buf, &len));
    kiln_status s = kiln_safetensors_parse(buf, len, path, out);
    if (s != KILN_OK) {
        free(buf);
        return s;
    }
    (*out)->buffer_ = buf;
    return KILN_OK;
}

void kiln_safetensors_free(kiln_safetensors *st) {
    if (!st) return;
    free(st->entries);
    free(st->meta);
    free(st->strings_);
    free(st->buffer_);
    free(st);
}

const kiln_st_entry *kiln_safetensors_find(const kiln_safetensors *st, const char *name) {
    if (!st || !name) kiln_error(KILN_ERR_INVALID_ARG, "kiln_safetensors_find: NULL argument");
    for (size_t i = 0; st && name && i < st->n_entries; i++)
        if (!strcmp(st->entries[i].name, name)) return &st->entries[i];
    return NULL;
}

const char *kiln_safetensors_metadata(const kiln_safetensors *st, const char *key) {
    if (!st || !key) kiln_error(KILN_ERR_INVALID_ARG, "kiln_safetensors_metadata: NULL argument");
    for (size_t i = 0; st && key && i < st->n_meta; i++)
        if (!strcmp(st->meta[i].key, key)) return st->meta[i].value;
    return NULL;
}
