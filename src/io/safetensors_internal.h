/* safetensors_internal.h: what the safetensors reader and writer share (internal): the dtype
 * table lookup by name, and the duplicate-name check. */
#ifndef KILN_SAFETENSORS_INTERNAL_H
#define KILN_SAFETENSORS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "kiln/safetensors.h"

/* The dtype called `name` ("F32", ...); false when there is none. */
bool kiln_st_dtype_parse(const char *name, kiln_st_dtype *out);

/* Index of one of two equal strings among names[0..n), or n when all differ; SIZE_MAX when
 * out of memory. */
size_t kiln_st_find_duplicate(const char *const *names, size_t n);

#endif
