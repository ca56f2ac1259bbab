/* file_read.h: whole-file reading (internal), shared by the data loaders and the safetensors
 * reader; its users' size arithmetic is core's (checked.h: kiln_mul_size and the others). */
#ifndef KILN_FILE_READ_H
#define KILN_FILE_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checked.h"
#include "kiln/status.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kiln's file formats are read and written assuming a little-endian host"
#endif

/* Reads a whole file into a malloc'ed buffer (*buf, *len; *buf is never NULL on success).
 * gzip: a gzip file (RFC 1952: one or more members, nothing after them) is decompressed; a
 * file that does not start with gzip's magic bytes is read as it is. Errors: KILN_ERR_IO naming
 * the path and the system's reason, KILN_ERR_FORMAT for a corrupt or truncated gzip stream or
 * bytes after its last member. At most 64 GiB are read (kiln_file_read_limited for less). */
kiln_status kiln_file_read(const char *path, bool gzip, void **buf, size_t *len);

/* What a reader knows of a file's length before reading it all (decompressed, for gzip), so
 * that a small compressed file cannot inflate past what its format allows (a gzip bomb):
 *   max_len    the most bytes the format can hold (0: 64 GiB);
 *   size_of    when set, for a gzip file, called once head_len bytes are decompressed (not
 *              when the file is shorter: the parser then reports the truncated header) with
 *              those first bytes; it gives the file's exact length as its header declares it
 *              (*total), or an error naming what is wrong with the header. Decompression stops
 *              one byte past *total. A plain file's length is the parser's to check. */
typedef struct kiln_read_limit {
    size_t max_len;
    size_t head_len;
    kiln_status (*size_of)(const void *head, size_t head_len, const char *path, void *ctx, size_t *total);
    void *ctx;
} kiln_read_limit;

/* kiln_file_read within `lim` (may be NULL): a file longer than lim->max_len, or a gzip file
 * longer than the length its header declares, is KILN_ERR_FORMAT naming the path and the offset where the
 * surplus starts, refused as soon as that byte is decompressed. */
kiln_status kiln_file_read_limited(const char *path, bool gzip, const kiln_read_limit *lim, void **buf,
                                   size_t *len);
/* Whether a path names an existing file. */
bool kiln_file_exists(const char *path);

#endif
