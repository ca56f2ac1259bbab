/* tensor.c: tensor metadata, views, and host <-> backend copies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "checked.h"
#include "error.h"

size_t kiln_dtype_size(kiln_dtype t) {
    switch (t) {
    case KILN_F32: return 4;
    case KILN_F16: return 2;
    case KILN_BF16: return 2;
    case KILN_I32: return 4;
    case KILN_U8: return 1;
    default: kiln_error(KILN_ERR_DTYPE, "kiln_dtype_size: unknown dtype %d", (int)t); return 0;
    }
}

const char *kiln_dtype_name(kiln_dtype t) {
    switch (t) {
    case KILN_F32: return "f32";
    case KILN_F16: return "f16";
    case KILN_BF16: return "bf16";
    case KILN_I32: return "i32";
    case KILN_U8: return "u8";
    default: kiln_error(KILN_ERR_DTYPE, "kiln_dtype_name: unknown dtype %d", (int)t); return "?";
    }
}

/* A tensor made here has a checked shape (set_shape), so these products cannot overflow. */
int64_t kiln_tensor_numel(const kiln_tensor *t) {
    if (!t) {
        kiln_error(KILN_ERR_INVALID_ARG, "kiln_tensor_numel: NULL tensor");
        return 0;
    }
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t kiln_tensor_nbytes(const kiln_tensor *t) {
    if (!t) {
        kiln_error(KILN_ERR_INVALID_ARG, "kiln_tensor_nbytes: NULL tensor");
        return 0;
    }
    return (size_t)kiln_tensor_numel(t) * kiln_dtype_size(t->dtype);
}

bool kiln_tensor_is_contiguous(const kiln_tensor *t) {
    if (!t) {
        kiln_error(KILN_ERR_INVALID_ARG, "kiln_tensor_is_contiguous: NULL tensor");
        return false;
    }
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

bool kiln_tensor_same_shape(const kiln_tensor *a, const kiln_tensor *b) {
    if (!a || !b) {
        kiln_error(KILN_ERR_INVALID_ARG, "kiln_tensor_same_shape: NULL tensor");
        return false;
    }
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

char *kiln_shape_str(const kiln_tensor *t, char *buf, size_t n) {
    if (!buf || !n) {
        kiln_error(KILN_ERR_INVALID_ARG, "kiln_shape_str: no buffer");
        return buf;
    }
    if (!t) {
        kiln_error(KILN_ERR_INVALID_ARG, "kiln_shape_str: NULL tensor");
        snprintf(buf, n, "(null)");
        return buf;
    }
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < t->ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (used < n) snprintf(buf + used, n - used, t->ndim == 1 ? ",)" : ")");
    return buf;
}

/* t's shape and row-major strides; t's dtype and name are set (they name it in messages) */
static kiln_status set_shape(kiln_tensor *t, const char *fn, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > KILN_MAX_DIMS)
        return kiln_error(KILN_ERR_SHAPE, "%s: %d dimensions asked, at most %d", fn, ndim,
                          KILN_MAX_DIMS);
    if (ndim > 0 && !shape) return kiln_error(KILN_ERR_INVALID_ARG, "%s: shape is NULL", fn);
    char what[KILN_NAME_MAX + 64];
    snprintf(what, sizeof what, "%s: '%s' (%s)", fn, t->name, kiln_dtype_name(t->dtype));
    KILN_TRY(kiln_shape_size(what, ndim, shape, kiln_dtype_size(t->dtype), NULL, NULL));
    t->ndim = ndim;
    for (int i = 0; i < KILN_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
    int64_t s = 1;
    for (int i = KILN_MAX_DIMS - 1; i >= 0; i--) {
        t->stride[i] = s;
        if (i < ndim) s *= t->shape[i]; /* fits: each product of trailing sizes is at most the checked extent */
    }
    return KILN_OK;
}

kiln_status kiln_tensor_new(kiln_backend *be, kiln_dtype dtype, int ndim, const int64_t *shape,
                            const char *name, kiln_tensor **out) {
    if (!be || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_tensor_new: NULL argument");
    *out = NULL;
    if ((int)dtype < 0 || dtype >= KILN_DTYPE_COUNT)
        return kiln_error(KILN_ERR_DTYPE, "kiln_tensor_new: unknown dtype %d", (int)dtype);
    kiln_tensor *t = calloc(1, sizeof *t);
    if (!t) return kiln_error(KILN_ERR_OOM, "kiln_tensor_new: out of host memory");
    t->dtype = dtype;
    t->backend = be;
    if (name) snprintf(t->name, sizeof t->name, "%s", name);
    kiln_status s = set_shape(t, "kiln_tensor_new", ndim, shape);
    if (s != KILN_OK) {
        free(t);
        return s;
    }
    size_t nbytes = kiln_tensor_nbytes(t);
    t->capacity = nbytes;
    t->owns_data = true;
    s = be->iface->alloc(be, nbytes ? nbytes : 1, &t->data);
    if (s != KILN_OK) {
        free(t);
        return s;
    }
    *out = t;
    return KILN_OK;
}

void kiln_tensor_free(kiln_tensor *t) {
    if (!t) return;
    if (t->owns_data && t->data) t->backend->iface->release(t->backend, t->data);
    free(t);
}

kiln_status kiln_tensor_view(kiln_tensor *base, int64_t offset, int ndim, const int64_t *shape,
                             kiln_tensor **out) {
    if (!base || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_tensor_view: NULL argument");
    *out = NULL;
    KILN_TRY(kiln_tensor_check("kiln_tensor_view", "base", base));
    if (!kiln_tensor_is_contiguous(base))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_tensor_view: base '%s' is not contiguous",
                          base->name);
    kiln_tensor v = {.dtype = base->dtype};
    snprintf(v.name, sizeof v.name, "%s", base->name);
    KILN_TRY(set_shape(&v, "kiln_tensor_view", ndim, shape));
    int64_t room = kiln_tensor_numel(base);
    if (offset < 0 || offset > room || kiln_tensor_numel(&v) > room - offset) /* no sum to overflow */
        return kiln_error(KILN_ERR_SHAPE,
                          "kiln_tensor_view: %lld elements at offset %lld overrun '%s' of %lld",
                          (long long)kiln_tensor_numel(&v), (long long)offset, base->name,
                          (long long)kiln_tensor_numel(base));
    kiln_tensor *t = malloc(sizeof *t);
    if (!t) return kiln_error(KILN_ERR_OOM, "kiln_tensor_view: out of host memory");
    *t = v;
    t->backend = base->backend;
    t->data = (char *)base->data + (size_t)offset * kiln_dtype_size(base->dtype); /* within base's bytes */
    t->owns_data = false;
    t->capacity = 0;
    *out = t;
    return KILN_OK;
}

kiln_status kiln_tensor_reshape(kiln_tensor *t, int ndim, const int64_t *shape) {
    KILN_TRY(kiln_tensor_check("kiln_tensor_reshape", "t", t));
    if (!kiln_tensor_is_contiguous(t))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_tensor_reshape: '%s' is not contiguous",
                          t->name);
    kiln_tensor v = *t;
    KILN_TRY(set_shape(&v, "kiln_tensor_reshape", ndim, shape));
    if (kiln_tensor_numel(&v) != kiln_tensor_numel(t)) {
        char a[96], b[96];
        return kiln_error(KILN_ERR_SHAPE, "kiln_tensor_reshape: '%s' %s has %lld elements, %s has %lld",
                          t->name, kiln_shape_str(t, a, sizeof a), (long long)kiln_tensor_numel(t),
                          kiln_shape_str(&v, b, sizeof b), (long long)kiln_tensor_numel(&v));
    }
    *t = v;
    return KILN_OK;
}

kiln_status kiln_tensor_check(const char *fn, const char *arg, const kiln_tensor *t) {
    if (!t) return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s is NULL", fn, arg);
    if ((int)t->dtype < 0 || t->dtype >= KILN_DTYPE_COUNT || t->ndim < 0 || t->ndim > KILN_MAX_DIMS || !t->backend)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s is no tensor (dtype %d, %d axes, backend %s)", fn, arg,
                          (int)t->dtype, t->ndim, t->backend ? "set" : "NULL");
    if (!kiln_shape_fits(t->ndim, t->shape, kiln_dtype_size(t->dtype))) { /* every op asks: the message only now */
        char what[KILN_NAME_MAX + 64];
        snprintf(what, sizeof what, "%s: %s '%.*s'", fn, arg, KILN_NAME_MAX - 1, t->name);
        return kiln_shape_size(what, t->ndim, t->shape, kiln_dtype_size(t->dtype), NULL, NULL);
    }
    if (!t->data && kiln_tensor_numel(t)) return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s '%.*s' has no data", fn, arg, KILN_NAME_MAX - 1, t->name);
    return KILN_OK;
}

static kiln_status check_whole(const kiln_tensor *t, const void *host, size_t nbytes,
                               const char *fn) {
    KILN_TRY(kiln_tensor_check(fn, "the tensor", t));
    if (!host && nbytes) return kiln_error(KILN_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (!kiln_tensor_is_contiguous(t))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: '%s' is not contiguous", fn, t->name);
    if (nbytes != kiln_tensor_nbytes(t)) {
        char s[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: '%s' %s %s holds %zu bytes, %zu given", fn,
                          t->name, kiln_shape_str(t, s, sizeof s), kiln_dtype_name(t->dtype),
                          kiln_tensor_nbytes(t), nbytes);
    }
    return KILN_OK;
}

static kiln_status tensor_put(kiln_tensor *t, const void *host, size_t nbytes, bool async,
                              const char *fn) {
    KILN_TRY(check_whole(t, host, nbytes, fn));
    if (!nbytes) return KILN_OK;
    return t->backend->iface->upload(t->backend, t->data, host, nbytes, async);
}

static kiln_status tensor_take(const kiln_tensor *t, void *host, size_t nbytes, bool async,
                               const char *fn) {
    KILN_TRY(check_whole(t, host, nbytes, fn));
    if (!nbytes) return KILN_OK;
    return t->backend->iface->download(t->backend, host, t->data, nbytes, async);
}

kiln_status kiln_tensor_set(kiln_tensor *t, const void *host, size_t nbytes) {
    return tensor_put(t, host, nbytes, false, "kiln_tensor_set");
}
kiln_status kiln_tensor_get(const kiln_tensor *t, void *host, size_t nbytes) {
    return tensor_take(t, host, nbytes, false, "kiln_tensor_get");
}
kiln_status kiln_tensor_set_async(kiln_tensor *t, const void *host, size_t nbytes) {
    return tensor_put(t, host, nbytes, true, "kiln_tensor_set_async");
}
kiln_status kiln_tensor_get_async(const kiln_tensor *t, void *host, size_t nbytes) {
    return tensor_take(t, host, nbytes, true, "kiln_tensor_get_async");
}
