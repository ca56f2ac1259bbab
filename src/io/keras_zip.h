/* keras_zip.h: the zip container of a Keras 3 .keras file (config.json, metadata.json,
 * model.weights.h5) through libzip (internal). Reading takes the file's bytes in memory and
 * checks each member's declared sizes (against a limit, and against what its compression can
 * give from its compressed size) before allocating it; libzip checks the CRC. Writing makes the
 * archive in memory (members stored uncompressed, as Keras does, with a fixed date so the same
 * model gives the same bytes) and replaces the target atomically (file_atomic.h).
 * Built without libzip, every call answers KILN_ERR_UNSUPPORTED "<file>: kiln was built without
 * zip support (...)". */
#ifndef KILN_KERAS_ZIP_H
#define KILN_KERAS_ZIP_H

#include <stdbool.h>
#include <stddef.h>

#include "file_atomic.h"
#include "kiln/status.h"

/* whether kiln was built with libzip */
bool kiln_zip_available(void);

/* Reads members names[0..n) of the zip archive buf[0..len) (`file` names it in messages):
 * out[i] gets member i's bytes (malloc'ed, NUL-terminated past len; free with free()), or
 * {NULL, 0} when the archive has no such member (the caller decides whether that is an error).
 * A member larger than max_len bytes is refused before it is read. On error nothing is
 * returned. */
kiln_status kiln_zip_read(const void *buf, size_t len, const char *file, const char *const *names, size_t n,
                          size_t max_len, kiln_file_part *out);

/* Writes a zip archive of members names[i] = parts[i] to path, atomically. */
kiln_status kiln_zip_write(const char *path, const char *const *names, const kiln_file_part *parts, size_t n);

#endif
