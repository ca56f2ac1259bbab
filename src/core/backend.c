/* backend.c: the device-independent calls on an open backend (free, synchronize, supports,
 * pinned host memory, memory statistics, markers): each checks its arguments and goes through
 * the backend's function table. Opening a backend by name is the registry's
 * (src/backends/registry.c). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "error.h"

void kiln_backend_free(kiln_backend *be) {
    if (be) be->iface->free(be);
}

const char *kiln_backend_name(const kiln_backend *be) {
    if (be) return be->name;
    kiln_error(KILN_ERR_INVALID_ARG, "kiln_backend_name: NULL backend");
    return "(null)";
}

kiln_backend_kind kiln_backend_kind_of(const kiln_backend *be) {
    if (be) return be->kind;
    kiln_error(KILN_ERR_INVALID_ARG, "kiln_backend_kind_of: NULL backend");
    return (kiln_backend_kind)-1;
}

int kiln_backend_log_interval(const kiln_backend *be) { return be->log_interval > 0 ? be->log_interval : 1; }

kiln_status kiln_backend_synchronize(kiln_backend *be) {
    if (!be) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_backend_synchronize: NULL backend");
    return be->iface->synchronize(be);
}

bool kiln_backend_supports(const kiln_backend *be, kiln_op_type op, kiln_dtype dtype) {
    if (!be || (int)op < 0 || op >= KILN_OP_COUNT || (int)dtype < 0 || dtype >= KILN_DTYPE_COUNT) {
        kiln_error(KILN_ERR_INVALID_ARG, "kiln_backend_supports: %s", be ? "unknown op or dtype" : "NULL backend");
        return false;
    }
    return be->iface->supports_op(be, op, dtype);
}

kiln_status kiln_host_alloc(kiln_backend *be, size_t nbytes, void **out) {
    if (!be || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_host_alloc: NULL argument");
    return be->iface->host_alloc(be, nbytes, out);
}

void kiln_host_free(kiln_backend *be, void *ptr) {
    if (be && ptr) be->iface->host_free(be, ptr);
}

kiln_status kiln_backend_memory_stats(const kiln_backend *be, kiln_memory_stats *out) {
    if (!be || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_backend_memory_stats: NULL argument");
    return be->iface->memory_stats(be, out);
}

/* KILN_MEMORY_LIMIT: bytes, or a number with K, M, G or T (powers of 1024); SIZE_MAX unset */
static kiln_status env_memory_limit(size_t *out) {
    const char *v = getenv("KILN_MEMORY_LIMIT");
    *out = SIZE_MAX;
    if (!v || !*v) return KILN_OK;
    static const char units[] = "KMGT";
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    const char *u = *end ? strchr(units, *end) : NULL;
    int shift = u ? 10 * (int)(u - units + 1) : 0;
    bool ok = errno == 0 && end != v && *v >= '0' && *v <= '9' && (!*end || (u && !end[1]));
    if (!ok || n > (SIZE_MAX >> shift))
        return kiln_error(KILN_ERR_INVALID_ARG, "KILN_MEMORY_LIMIT: '%s' is not a size (bytes, or a number with K, M, "
                          "G or T, at most %zu bytes)", v, (size_t)SIZE_MAX);
    *out = (size_t)n << shift;
    return KILN_OK;
}

kiln_status kiln_backend_memory_available(const kiln_backend *be, size_t *out) {
    if (!be || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_backend_memory_available: NULL argument");
    size_t cap, have;
    KILN_TRY(env_memory_limit(&cap));
    KILN_TRY(be->iface->memory_available(be, &have));
    *out = have < cap ? have : cap;
    return KILN_OK;
}

static kiln_status check_slot(const kiln_backend *be, int slot, const char *fn) {
    if (!be) return kiln_error(KILN_ERR_INVALID_ARG, "%s: NULL backend", fn);
    if (slot < 0 || slot >= KILN_MAX_MARKS)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: marker %d outside 0..%d", fn, slot, KILN_MAX_MARKS - 1);
    return KILN_OK;
}

kiln_status kiln_backend_mark(kiln_backend *be, int slot) {
    KILN_TRY(check_slot(be, slot, "kiln_backend_mark"));
    return be->iface->mark(be, slot);
}

kiln_status kiln_backend_wait_mark(kiln_backend *be, int slot) {
    KILN_TRY(check_slot(be, slot, "kiln_backend_wait_mark"));
    return be->iface->wait_mark(be, slot);
}

kiln_status kiln_backend_comm_create(kiln_backend *be, kiln_comm *bootstrap, kiln_comm **out) {
    *out = NULL;
    if (!be || !be->iface->comm_create || kiln_comm_size(bootstrap) <= 1) return KILN_OK;
    return be->iface->comm_create(be, bootstrap, out);
}
