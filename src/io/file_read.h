/* file_read.h: whole-file reading and checked size arithmetic (internal), shared by the data
 * loaders and the safetensors reader. */
#ifndef KILN_FILE_READ_H
#define KILN_FILE_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kiln's file formats are read and written assuming a little-endian host"
#endif

/* a * b into *out unless it overflows size_t (returns false then). */
static inline bool kiln_mul_size(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

/* Reads a whole file into a malloc'ed buffer (*buf, *len; *buf is never NULL on success).
 * gzip: read through zlib, which also reads a plain file as it is. Errors: KILN_ERR_IO naming
 * the path and the system's reason, KILN_ERR_FORMAT for a corrupt or truncated gzip stream. */
kiln_status kiln_file_read(const char *path, bool gzip, void **buf, size_t *len);
/* Whether a path names an existing file. */
bool kiln_file_exists(const char *path);

#endif
