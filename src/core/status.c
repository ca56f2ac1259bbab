/* status.c: the per-thread error message behind kiln_status. */
#include <stdarg.h>
#include <stdio.h>

#include "error.h"

static _Thread_local char last_error[1024];

kiln_status kiln_error(kiln_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

kiln_status kiln_error_context(kiln_status code, const char *fmt, ...) {
    char context[512], msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof msg, "%s", last_error);
    snprintf(last_error, sizeof last_error, "%.500s: %.500s", context, msg); /* truncation is fine */
    return code;
}

const char *kiln_last_error(void) { return last_error; }

void kiln_clear_error(void) { last_error[0] = '\0'; }

const char *kiln_status_name(kiln_status s) {
    static const char *const names[KILN_STATUS_COUNT] = {
        "KILN_OK",           "KILN_ERR_INVALID_ARG", "KILN_ERR_SHAPE",
        "KILN_ERR_DTYPE",    "KILN_ERR_DEVICE_MISMATCH", "KILN_ERR_OOM",
        "KILN_ERR_NO_DEVICE", "KILN_ERR_DEVICE",     "KILN_ERR_UNSUPPORTED",
        "KILN_ERR_IO",       "KILN_ERR_FORMAT",      "KILN_ERR_NUMERIC",
    };
    if ((int)s < 0 || s >= KILN_STATUS_COUNT) {
        kiln_error(KILN_ERR_INVALID_ARG, "kiln_status_name: unknown status %d", (int)s);
        return "KILN_ERR_UNKNOWN";
    }
    return names[s];
}
