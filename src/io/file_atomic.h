/* file_atomic.h: replacing a file atomically (internal): the new contents go to a temporary
 * file in the target's directory, which is fsync'ed and renamed over the target, and the
 * directory is fsync'ed. On failure the temporary is removed and the old file is untouched. */
#ifndef KILN_FILE_ATOMIC_H
#define KILN_FILE_ATOMIC_H

#include <stddef.h>

#include "kiln/status.h"

/* One piece of the new contents. */
typedef struct kiln_file_part {
    const void *data;
    size_t len;
} kiln_file_part;

/* Writes parts[0..n) in order as the new contents of path. Errors are KILN_ERR_IO naming the
 * path and the system's reason (ENOSPC, EFBIG, EACCES, ...). */
kiln_status kiln_file_write_atomic(const char *path, const kiln_file_part *parts, size_t n);

#endif
