/* file_kind.h: what a model or weights file is, told by its first bytes, never by its name
 * (internal): a zip archive (a Keras 3 .keras file), an HDF5 file (a Keras .weights.h5), a
 * safetensors file (kiln's weights and checkpoints), or JSON (a Keras model.to_json() file). */
#ifndef KILN_FILE_KIND_H
#define KILN_FILE_KIND_H

#include <stddef.h>

#include "kiln/status.h"

typedef enum kiln_file_kind {
    KILN_FILE_UNKNOWN = 0,
    KILN_FILE_EMPTY,
    KILN_FILE_ZIP,         /* "PK\3\4" or "PK\5\6" (an empty archive) */
    KILN_FILE_HDF5,        /* "\x89HDF\r\n\x1a\n" at offset 0 */
    KILN_FILE_SAFETENSORS, /* an 8-byte little-endian header length, then '{' */
    KILN_FILE_JSON,        /* '{' after white space */
    KILN_FILE_GZIP,        /* 0x1f 0x8b */
} kiln_file_kind;

/* The kind of a file whose first n bytes are head[0..n) (n >= 16 unless the file is shorter). */
kiln_file_kind kiln_file_kind_sniff(const unsigned char *head, size_t n);
/* The kind of the file at path: KILN_ERR_IO naming it when it cannot be read. */
kiln_status kiln_file_kind_of(const char *path, kiln_file_kind *out);
/* "a zip archive (Keras .keras)", "an HDF5 file (Keras .weights.h5)", ...: for messages that say
 * what a file is when it is not what was wanted */
const char *kiln_file_kind_name(kiln_file_kind k);

#endif
