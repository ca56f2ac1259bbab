/* kiln/safetensors.h: reading and writing safetensors files, kiln's weight format.
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON header
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * (padded with spaces to a multiple of 8 when kiln writes it), then the tensors' raw
 * little-endian bytes; offsets count from the end of the header. The reader checks every rule
 * of docs/formats.md and answers KILN_ERR_FORMAT with the file, the tensor and what is wrong;
 * the writer replaces the target atomically (a temporary file in the same directory, fsync,
 * rename, fsync of the directory), leaving the old file untouched on any failure. */
#ifndef KILN_SAFETENSORS_H
#define KILN_SAFETENSORS_H

#include "kiln/api.h"

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_ST_MAX_DIMS 8
/* The largest header the reader accepts, as the reference implementation does. */
#define KILN_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

typedef enum kiln_st_dtype {
    KILN_ST_F32 = 0, KILN_ST_F16, KILN_ST_BF16, KILN_ST_F64,
    KILN_ST_I64, KILN_ST_I32, KILN_ST_I16, KILN_ST_I8,
    KILN_ST_U64, KILN_ST_U32, KILN_ST_U16, KILN_ST_U8,
    KILN_ST_BOOL,
    KILN_ST_DTYPE_COUNT
} kiln_st_dtype;

/* "F32", ... ("?" for an unknown value) and the size of one element in bytes (0 if unknown). */
KILN_API const char *kiln_st_dtype_name(kiln_st_dtype t);
KILN_API size_t kiln_st_dtype_size(kiln_st_dtype t);

/* One tensor of an opened file. `data` points into the file's bytes and may be unaligned for
 * files kiln did not write: read it with memcpy. */
typedef struct kiln_st_entry {
    const char *name;
    kiln_st_dtype dtype;
    int ndim;
    int64_t shape[KILN_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
    uint64_t begin, end;  /* data_offsets, relative to the start of the data */
} kiln_st_entry;

typedef struct kiln_st_meta {
    const char *key;
    const char *value;
} kiln_st_meta;

/* An opened (or parsed) file. Read-only for the caller; free with kiln_safetensors_free.
 * entries are in the header's order. */
typedef struct kiln_safetensors {
    size_t n_entries;
    kiln_st_entry *entries;
    size_t n_meta;
    kiln_st_meta *meta;
    char name[256];       /* the file name, for messages */
    void *buffer_;        /* internal: the file's bytes when opened from a path */
    void *strings_;       /* internal: names, keys and values */
} kiln_safetensors;

/* Reads and validates a whole file. */
KILN_API kiln_status kiln_safetensors_open(const char *path, kiln_safetensors **out);
/* Validates a file held in memory; the entries point into buf, which must outlive *out.
 * `name` names the buffer in messages (may be NULL). */
KILN_API kiln_status kiln_safetensors_parse(const void *buf, size_t len, const char *name, kiln_safetensors **out);
KILN_API void kiln_safetensors_free(kiln_safetensors *st);

/* The entry named `name`, or NULL (also for a NULL argument). */
KILN_API const kiln_st_entry *kiln_safetensors_find(const kiln_safetensors *st, const char *name);
/* The metadata value of `key`, or NULL (also for a NULL argument). */
KILN_API const char *kiln_safetensors_metadata(const kiln_safetensors *st, const char *key);

/* A tensor to write: `data` holds numel(shape) * dtype size bytes (host memory). */
typedef struct kiln_st_tensor {
    const char *name;
    kiln_st_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
} kiln_st_tensor;

/* Writes tensors[0..n) (in that order, data packed without gaps) and meta[0..n_meta) to path,
 * atomically. Names must be unique, non-empty and not "__metadata__"; metadata keys unique. */
KILN_API kiln_status kiln_safetensors_write(const char *path, const kiln_st_tensor *tensors, size_t n,
                                   const kiln_st_meta *meta, size_t n_meta);

#ifdef __cplusplus
}
#endif
#endif
