/* keras_h5.c: the HDF5 side of Keras 3's weight files through libhdf5 (keras_h5.h): file
 * images in memory (HDF5's core driver), groups, float datasets and Keras' "name" attribute.
 * HDF5's automatic error printing is switched off before every call into it, and its error
 * stack is turned into one line of kiln's: "<file>: <what>: HDF5: <HDF5's reason>". Without
 * libhdf5 (KILN_HAVE_HDF5 unset) each function says that kiln was built without it. */
#include "keras_h5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "error.h"

#define NO_HDF5 "kiln was built without HDF5 support (libhdf5-dev was not found when kiln was configured: see docs/formats.md)"

#ifndef KILN_HAVE_HDF5

struct kiln_h5 {
    int unused;
};

bool kiln_h5_available(void) { return false; }
kiln_status kiln_h5_open_image(const void *buf, size_t len, const char *name, kiln_h5 **out) {
    *out = NULL;
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: " NO_HDF5, name ? name : "HDF5 file");
}
kiln_status kiln_h5_create(const char *name, kiln_h5 **out) { return kiln_h5_open_image(NULL, 0, name, out); }
kiln_status kiln_h5_image(kiln_h5 *h, void **buf, size_t *len) { return kiln_error(KILN_ERR_UNSUPPORTED, NO_HDF5); }
void kiln_h5_close(kiln_h5 *h) { (void)h; }
kiln_status kiln_h5_group_members(kiln_h5 *h, const char *path, bool *found, int64_t *members) {
    return kiln_error(KILN_ERR_UNSUPPORTED, NO_HDF5);
}
kiln_status kiln_h5_var_shape(kiln_h5 *h, const char *path, int *ndim, int64_t shape[KILN_H5_MAX_DIMS]) {
    return kiln_error(KILN_ERR_UNSUPPORTED, NO_HDF5);
}
kiln_status kiln_h5_var_read(kiln_h5 *h, const char *path, float *dst, int64_t numel) {
    return kiln_error(KILN_ERR_UNSUPPORTED, NO_HDF5);
}
kiln_status kiln_h5_group_make(kiln_h5 *h, const char *path, const char *name_attr) {
    return kiln_error(KILN_ERR_UNSUPPORTED, NO_HDF5);
}
kiln_status kiln_h5_var_write(kiln_h5 *h, const char *path, int ndim, const int64_t *shape, const float *data) {
    return kiln_error(KILN_ERR_UNSUPPORTED, NO_HDF5);
}
kiln_status kiln_h5_scalar_write_i64(kiln_h5 *h, const char *path, int64_t value) {
    return kiln_error(KILN_ERR_UNSUPPORTED, NO_HDF5);
}

#else

#include <hdf5.h>
#include <stdatomic.h>

struct kiln_h5 {
    hid_t file;
    char name[256];
};

bool kiln_h5_available(void) { return true; }

/* HDF5 prints its error stack to stderr unless told not to (per thread in a thread-safe build) */
static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* the innermost error of HDF5's stack: where the failure was detected, in HDF5's words */
static herr_t first_error(unsigned n, const H5E_error2_t *e, void *ctx) {
    char *buf = ctx;
    if (n == 0 && e->desc) snprintf(buf, 160, "%s", e->desc);
    return 0;
}

/* KILN_ERR_FORMAT "<file>: <what>: HDF5: <reason>" from HDF5's error stack, which is cleared */
static kiln_status h5_fail(const kiln_h5 *h, const char *what, const char *path) {
    char why[160] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_error, why);
    H5Eclear2(H5E_DEFAULT);
    return kiln_error(KILN_ERR_FORMAT, "%s: %s '%s' failed%s%s", h->name, what, path, *why ? ": HDF5: " : "", why);
}

/* a name for the core driver that no other open image has (HDF5 takes two images of one name
 * for the same file) */
static void image_name(char *buf, size_t n) {
    static atomic_ulong counter;
    snprintf(buf, n, "kiln-image-%lu", (unsigned long)atomic_fetch_add(&counter, 1));
}

static kiln_status h5_new(const char *name, kiln_h5 **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return kiln_error(KILN_ERR_OOM, "out of host memory opening '%s'", name);
    snprintf((*out)->name, sizeof (*out)->name, "%s", name ? name : "HDF5 file");
    (*out)->file = H5I_INVALID_HID;
    return KILN_OK;
}

kiln_status kiln_h5_open_image(const void *buf, size_t len, const char *name, kiln_h5 **out) {
    quiet();
    KILN_TRY(h5_new(name, out));
    kiln_h5 *h = *out;
    char id[64];
    image_name(id, sizeof id);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    bool ok = fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 16, 0) >= 0 && H5Pset_file_image(fapl, (void *)buf, len) >= 0;
    if (ok) h->file = H5Fopen(id, H5F_ACC_RDONLY, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (h->file >= 0) return KILN_OK;
    kiln_status s = h5_fail(h, "opening", "/");
    kiln_h5_close(h);
    *out = NULL;
    return s;
}

kiln_status kiln_h5_create(const char *name, kiln_h5 **out) {
    quiet();
    KILN_TRY(h5_new(name, out));
    kiln_h5 *h = *out;
    char id[64];
    image_name(id, sizeof id);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 16, 0) >= 0) h->file = H5Fcreate(id, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (h->file >= 0) return KILN_OK;
    kiln_status s = h5_fail(h, "creating", "/");
    kiln_h5_close(h);
    *out = NULL;
    return s;
}

kiln_status kiln_h5_image(kiln_h5 *h, void **buf, size_t *len) {
    quiet();
    *buf = NULL;
    if (H5Fflush(h->file, H5F_SCOPE_GLOBAL) < 0) return h5_fail(h, "flushing", "/");
    ssize_t n = H5Fget_file_image(h->file, NULL, 0);
    if (n <= 0) return h5_fail(h, "taking the image of", "/");
    *buf = malloc((size_t)n);
    if (!*buf) return kiln_error(KILN_ERR_OOM, "%s: out of host memory for its %zd bytes", h->name, n);
    if (H5Fget_file_image(h->file, *buf, (size_t)n) != n) {
        free(*buf);
        *buf = NULL;
        return h5_fail(h, "taking the image of", "/");
    }
    *len = (size_t)n;
    return KILN_OK;
}

void kiln_h5_close(kiln_h5 *h) {
    if (!h) return;
    quiet();
    if (h->file >= 0) H5Fclose(h->file);
    H5Eclear2(H5E_DEFAULT);
    free(h);
}

/* whether `path` exists as a chain of hard links (a soft or external link on the way is
 * refused: it could lead out of the file) */
static kiln_status walk(const kiln_h5 *h, const char *path, bool *found) {
    char prefix[1024];
    size_t n = strlen(path);
    *found = false;
    if (!n || n >= sizeof prefix || path[0] == '/') return kiln_error(KILN_ERR_INVALID_ARG, "%s: bad HDF5 path '%s'", h->name, path);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        memcpy(prefix, path, i);
        prefix[i] = '\0';
        htri_t e = H5Lexists(h->file, prefix, H5P_DEFAULT);
        if (e < 0) return h5_fail(h, "looking up", prefix);
        if (!e) return KILN_OK;
        H5L_info_t info;
        if (H5Lget_info(h->file, prefix, &info, H5P_DEFAULT) < 0) return h5_fail(h, "looking up", prefix);
        if (info.type != H5L_TYPE_HARD)
            return kiln_error(KILN_ERR_FORMAT, "%s: '%s' is a %s link (kiln follows only hard links inside the file)", h->name,
                              prefix, info.type == H5L_TYPE_SOFT ? "soft" : info.type == H5L_TYPE_EXTERNAL ? "external" : "user-defined");
    }
    *found = true;
    return KILN_OK;
}

/* opens object `path`, which must exist and be of type `want` (H5I_GROUP or H5I_DATASET) */
static kiln_status open_object(const kiln_h5 *h, const char *path, H5I_type_t want, hid_t *out) {
    bool found;
    KILN_TRY(walk(h, path, &found));
    const char *kind = want == H5I_GROUP ? "group" : "dataset";
    if (!found) return kiln_error(KILN_ERR_FORMAT, "%s: %s '%s' is missing", h->name, kind, path);
    hid_t o = H5Oopen(h->file, path, H5P_DEFAULT);
    if (o < 0) return h5_fail(h, "opening", path);
    if (H5Iget_type(o) != want) {
        H5Oclose(o);
        return kiln_error(KILN_ERR_FORMAT, "%s: '%s' is not a%s %s", h->name, path, want == H5I_GROUP ? "" : " numeric", kind);
    }
    *out = o;
    return KILN_OK;
}

kiln_status kiln_h5_group_members(kiln_h5 *h, const char *path, bool *found, int64_t *members) {
    quiet();
    KILN_TRY(walk(h, path, found));
    if (!*found) return KILN_OK;
    hid_t g = H5I_INVALID_HID;
    KILN_TRY(open_object(h, path, H5I_GROUP, &g));
    H5G_info_t info;
    herr_t r = H5Gget_info(g, &info);
    H5Oclose(g);
    if (r < 0) return h5_fail(h, "reading the group", path);
    *members = info.nlinks > (hsize_t)INT64_MAX ? INT64_MAX : (int64_t)info.nlinks;
    return KILN_OK;
}

/* the dataset's storage stays inside the file: no external files, no virtual layout */
static kiln_status check_storage(const kiln_h5 *h, hid_t d, const char *path) {
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0) return h5_fail(h, "reading the storage of", path);
    int external = H5Pget_external_count(dcpl);
    H5D_layout_t layout = H5Pget_layout(dcpl);
    H5Pclose(dcpl);
    if (external < 0 || layout < 0) return h5_fail(h, "reading the storage of", path);
    if (external > 0 || layout == H5D_VIRTUAL)
        return kiln_error(KILN_ERR_FORMAT, "%s: dataset '%s' is stored %s (kiln reads data stored in the file only)", h->name,
                          path, external > 0 ? "in external files" : "as a virtual dataset");
    return KILN_OK;
}

/* a number: HDF5's float or integer class */
static kiln_status check_type(const kiln_h5 *h, hid_t d, const char *path) {
    hid_t t = H5Dget_type(d);
    if (t < 0) return h5_fail(h, "reading the type of", path);
    H5T_class_t c = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    H5Tclose(t);
    if ((c == H5T_FLOAT || c == H5T_INTEGER) && size >= 1 && size <= 16) return KILN_OK;
    static const char *const names[] = {"integer", "float", "time", "string", "bitfield", "opaque", "compound",
                                        "reference", "enum", "variable-length", "array"};
    return kiln_error(KILN_ERR_FORMAT, "%s: dataset '%s' holds %s values, not numbers", h->name, path,
                      c >= 0 && c < (int)(sizeof names / sizeof names[0]) ? names[c] : "unknown");
}

/* the dataset's shape, checked: a scalar or simple space of at most KILN_H5_MAX_DIMS axes whose
 * element count (in float32) fits kiln's limit */
static kiln_status dataset_shape(const kiln_h5 *h, hid_t d, const char *path, int *ndim, int64_t *shape) {
    KILN_TRY(check_storage(h, d, path));
    KILN_TRY(check_type(h, d, path));
    hid_t sp = H5Dget_space(d);
    if (sp < 0) return h5_fail(h, "reading the shape of", path);
    H5S_class_t cls = H5Sget_simple_extent_type(sp);
    int nd = cls == H5S_SIMPLE ? H5Sget_simple_extent_ndims(sp) : 0;
    hsize_t dims[KILN_H5_MAX_DIMS];
    bool ok = (cls == H5S_SCALAR || cls == H5S_SIMPLE) && nd >= 0 && nd <= KILN_H5_MAX_DIMS &&
              (nd == 0 || H5Sget_simple_extent_dims(sp, dims, NULL) == nd);
    H5Sclose(sp);
    if (!ok) {
        H5Eclear2(H5E_DEFAULT);
        return kiln_error(KILN_ERR_FORMAT, "%s: dataset '%s' has %s (kiln reads scalars and arrays of at most %d axes)",
                          h->name, path, cls == H5S_NULL ? "no data space" : "an unreadable or too large shape",
                          KILN_H5_MAX_DIMS);
    }
    for (int i = 0; i < nd; i++) {
        if (dims[i] > (hsize_t)INT64_MAX)
            return kiln_error(KILN_ERR_FORMAT, "%s: dataset '%s': axis %d of size %llu overflows 64 bits", h->name, path, i,
                              (unsigned long long)dims[i]);
        shape[i] = (int64_t)dims[i];
    }
    if (!kiln_shape_fits(nd, shape, sizeof(float)))
        return kiln_error(KILN_ERR_FORMAT, "%s: dataset '%s': its element count overflows 64 bits", h->name, path);
    *ndim = nd;
    return KILN_OK;
}

kiln_status kiln_h5_var_shape(kiln_h5 *h, const char *path, int *ndim, int64_t shape[KILN_H5_MAX_DIMS]) {
    quiet();
    hid_t d = H5I_INVALID_HID;
    KILN_TRY(open_object(h, path, H5I_DATASET, &d));
    kiln_status s = dataset_shape(h, d, path, ndim, shape);
    H5Oclose(d);
    return s;
}

kiln_status kiln_h5_var_read(kiln_h5 *h, const char *path, float *dst, int64_t numel) {
    quiet();
    hid_t d = H5I_INVALID_HID;
    KILN_TRY(open_object(h, path, H5I_DATASET, &d));
    int nd;
    int64_t shape[KILN_H5_MAX_DIMS], n = 1;
    kiln_status s = dataset_shape(h, d, path, &nd, shape);
    for (int i = 0; s == KILN_OK && i < nd; i++) n *= shape[i]; /* fits: dataset_shape checked it */
    if (s == KILN_OK && n != numel)
        s = kiln_error(KILN_ERR_SHAPE, "%s: dataset '%s' holds %lld values, %lld wanted", h->name, path, (long long)n,
                       (long long)numel);
    if (s == KILN_OK && n && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        s = h5_fail(h, "reading the dataset", path);
    H5Oclose(d);
    return s;
}

/* Keras' "name" attribute: a variable-length UTF-8 string, as h5py writes a str */
static kiln_status write_name(const kiln_h5 *h, hid_t g, const char *path, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
    bool ok = t >= 0 && sp >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0;
    if (ok) a = H5Acreate2(g, "name", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    ok = a >= 0 && H5Awrite(a, t, &value) >= 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    return ok ? KILN_OK : h5_fail(h, "writing the name attribute of", path);
}

/* a link creation list that makes the missing groups on the way */
static hid_t make_parents(void) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        H5Pclose(lcpl);
        return H5I_INVALID_HID;
    }
    return lcpl;
}

kiln_status kiln_h5_group_make(kiln_h5 *h, const char *path, const char *name_attr) {
    quiet();
    hid_t lcpl = make_parents(), g = H5I_INVALID_HID;
    if (lcpl >= 0) g = H5Gcreate2(h->file, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (g < 0) return h5_fail(h, "creating the group", path);
    kiln_status s = name_attr ? write_name(h, g, path, name_attr) : KILN_OK;
    H5Gclose(g);
    return s;
}

/* dataset `path` of file type `ftype` from memory of type `mtype` */
static kiln_status write_dataset(kiln_h5 *h, const char *path, int ndim, const int64_t *shape, hid_t ftype, hid_t mtype,
                                 const void *data) {
    quiet();
    if (ndim < 0 || ndim > KILN_H5_MAX_DIMS) return kiln_error(KILN_ERR_INVALID_ARG, "%s: '%s' has %d axes", h->name, path, ndim);
    hsize_t dims[KILN_H5_MAX_DIMS];
    for (int i = 0; i < ndim; i++) dims[i] = (hsize_t)shape[i];
    hid_t sp = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR), d = H5I_INVALID_HID;
    if (sp >= 0) d = H5Dcreate2(h->file, path, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bool ok = d >= 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    if (d >= 0) H5Dclose(d);
    if (sp >= 0) H5Sclose(sp);
    return ok ? KILN_OK : h5_fail(h, "writing the dataset", path);
}

kiln_status kiln_h5_var_write(kiln_h5 *h, const char *path, int ndim, const int64_t *shape, const float *data) {
    return write_dataset(h, path, ndim, shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data);
}

kiln_status kiln_h5_scalar_write_i64(kiln_h5 *h, const char *path, int64_t value) {
    return write_dataset(h, path, 0, NULL, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

#endif
