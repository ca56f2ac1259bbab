/* error.h: setting the thread's error message (internal). */
#ifndef KILN_ERROR_H
#define KILN_ERROR_H

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KILN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define KILN_PRINTF(a, b)
#endif

/* Records a message for the calling thread and returns `code`. */
kiln_status kiln_error(kiln_status code, const char *fmt, ...) KILN_PRINTF(2, 3);

/* Puts context before the thread's current message ("<context>: <message>") and returns
 * `code`, for a caller that adds where the error happened ("layer 'dense' forward"). */
kiln_status kiln_error_context(kiln_status code, const char *fmt, ...) KILN_PRINTF(2, 3);

/* Propagate a non-OK status. */
#define KILN_TRY(expr)                       \
    do {                                     \
        kiln_status kiln_try_s_ = (expr);    \
        if (kiln_try_s_ != KILN_OK)          \
            return kiln_try_s_;              \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
