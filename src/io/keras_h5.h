/* keras_h5.h: HDF5 files as Keras 3 keeps its weights (model.weights.h5, *.weights.h5), read and
 * written through libhdf5 (internal). A file is always handled as an image in memory (read
 * whole first, or taken out of a .keras zip; written to memory, then saved atomically), so
 * the fuzz target reads exactly what kiln reads. Every path given is a '/'-separated path of
 * hard links from the root ("layers/conv2d/vars/0"); a soft or external link on the way, a
 * dataset stored in external files or a virtual dataset is refused (a hostile file must not
 * make kiln read other files). HDF5's own error printing is off: every failure is a kiln
 * status naming the file, the path and HDF5's reason.
 *
 * Built without libhdf5 (KILN_HDF5=OFF, or AUTO without libhdf5-dev) every call answers
 * KILN_ERR_UNSUPPORTED "<file>: kiln was built without HDF5 support (...)". */
#ifndef KILN_KERAS_H5_H
#define KILN_KERAS_H5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#define KILN_H5_MAX_DIMS 8

typedef struct kiln_h5 kiln_h5;

/* whether kiln was built with libhdf5 */
bool kiln_h5_available(void);

/* Opens the HDF5 file image buf[0..len) read-only (the image is copied; `name` names it in
 * messages). */
kiln_status kiln_h5_open_image(const void *buf, size_t len, const char *name, kiln_h5 **out);
/* A new, empty HDF5 file in memory, for writing. */
kiln_status kiln_h5_create(const char *name, kiln_h5 **out);
/* The bytes of a file made by kiln_h5_create (malloc'ed, free with free()). */
kiln_status kiln_h5_image(kiln_h5 *h, void **buf, size_t *len);
void kiln_h5_close(kiln_h5 *h);

/* Group `path`: *found (false when it or a link on the way is absent) and its number of
 * members (links). A path that exists but is no group is KILN_ERR_FORMAT. */
kiln_status kiln_h5_group_members(kiln_h5 *h, const char *path, bool *found, int64_t *members);
/* The shape of dataset `path` (a scalar: ndim 0), a number (HDF5 float or integer class) of at
 * most KILN_H5_MAX_DIMS axes whose element count fits in int64_t; KILN_ERR_FORMAT naming the
 * path otherwise (missing, not a dataset, a string, too many axes, ...). */
kiln_status kiln_h5_var_shape(kiln_h5 *h, const char *path, int *ndim, int64_t shape[KILN_H5_MAX_DIMS]);
/* Reads dataset `path` as float32 (HDF5 converts) into dst[0..numel); numel must be its
 * element count (checked with kiln_h5_var_shape first). */
kiln_status kiln_h5_var_read(kiln_h5 *h, const char *path, float *dst, int64_t numel);

/* Creates group `path` and the groups on its way; with name_attr, gives it Keras' string
 * attribute "name". */
kiln_status kiln_h5_group_make(kiln_h5 *h, const char *path, const char *name_attr);
/* Writes dataset `path` (its group must exist): float32, shape[0..ndim) (ndim 0: a scalar). */
kiln_status kiln_h5_var_write(kiln_h5 *h, const char *path, int ndim, const int64_t *shape, const float *data);
/* Writes dataset `path`: one int64 scalar (Keras' optimizer iterations). */
kiln_status kiln_h5_scalar_write_i64(kiln_h5 *h, const char *path, int64_t value);

#endif
