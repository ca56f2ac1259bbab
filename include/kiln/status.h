/* kiln/status.h: the status every public kiln function returns, and the message behind it.
 *
 * A failing call returns a non-zero kiln_status and leaves a message for the calling thread,
 * naming the op, the shapes and what is wrong; kiln_last_error() reads it. The library never
 * calls exit() or abort() on bad input.
 *
 * Every public function checks its pointer, index and count arguments. A function that returns
 * a status returns a non-OK one for a NULL where its comment allows none, an index out of range
 * or a negative count; a function that returns a value returns the safe value its comment
 * names (-1, 0, NULL, "?", ...) and also leaves a message. */
#ifndef KILN_STATUS_H
#define KILN_STATUS_H

#include "kiln/api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_status {
    KILN_OK = 0,
    KILN_ERR_INVALID_ARG,   /* a NULL, a negative size, an unknown name or option */
    KILN_ERR_SHAPE,         /* shapes that do not fit together */
    KILN_ERR_DTYPE,         /* a dtype the op does not take */
    KILN_ERR_DEVICE_MISMATCH, /* tensors of one op on different backends */
    KILN_ERR_OOM,           /* host or device memory exhausted */
    KILN_ERR_NO_DEVICE,     /* the asked-for device does not exist (no GPU, no CUDA build) */
    KILN_ERR_DEVICE,        /* a CUDA, cuBLAS or cuDNN call failed */
    KILN_ERR_UNSUPPORTED,   /* the backend cannot run this op with these parameters */
    KILN_ERR_IO,            /* a file could not be read or written */
    KILN_ERR_FORMAT,        /* a file's contents are malformed */
    KILN_ERR_NUMERIC,       /* a NaN or inf where a finite value is required */
    KILN_STATUS_COUNT
} kiln_status;

/* The message of the last failing kiln call on this thread ("" when none). */
KILN_API const char *kiln_last_error(void);

/* A short name for a status code ("KILN_ERR_SHAPE"); "KILN_ERR_UNKNOWN" for no status code. */
KILN_API const char *kiln_status_name(kiln_status s);

/* Forget the last message on this thread. */
KILN_API void kiln_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
