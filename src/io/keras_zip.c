/* keras_zip.c: .keras zip archives through libzip (keras_zip.h): members read from an archive
 * in memory with their sizes checked before allocation, and archives made in memory and saved
 * atomically. Without libzip (KILN_HAVE_ZIP unset) each function says that kiln was built
 * without it. */
#include "keras_zip.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define NO_ZIP "kiln was built without zip support (libzip-dev was not found when kiln was configured: see docs/formats.md)"

#ifndef KILN_HAVE_ZIP

bool kiln_zip_available(void) { return false; }
kiln_status kiln_zip_read(const void *buf, size_t len, const char *file, const char *const *names, size_t n,
                          size_t max_len, kiln_file_part *out) {
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: " NO_ZIP, file);
}
kiln_status kiln_zip_write(const char *path, const char *const *names, const kiln_file_part *parts, size_t n) {
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: " NO_ZIP, path);
}

#else

#include <zip.h>

/* deflate gives at most about 1032 bytes per compressed byte; a member claiming more lies */
#define DEFLATE_MAX_RATIO 1032
/* 1980-01-01 12:00 UTC, the zip format's first date: the date of every member kiln writes */
#define FIXED_MTIME ((time_t)315576000)

bool kiln_zip_available(void) { return true; }

static kiln_status zip_fail(const char *file, const char *what, zip_error_t *ze) {
    return kiln_error(KILN_ERR_FORMAT, "%s: %s: %s", file, what, zip_error_strerror(ze));
}

/* the member's declared size, checked before anything is allocated */
static kiln_status member_size(zip_t *za, zip_int64_t i, const char *file, const char *name, size_t max_len,
                               size_t *size) {
    zip_stat_t st;
    if (zip_stat_index(za, (zip_uint64_t)i, 0, &st) != 0) return zip_fail(file, name, zip_get_error(za));
    if (!(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE))
        return kiln_error(KILN_ERR_FORMAT, "%s: member '%s' has no size", file, name);
    if (st.size > max_len)
        return kiln_error(KILN_ERR_FORMAT, "%s: member '%s' is %llu bytes, over kiln's limit of %zu", file, name,
                          (unsigned long long)st.size, max_len);
    bool stored = (st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method == ZIP_CM_STORE;
    if ((stored && st.size != st.comp_size) || (!stored && st.size / DEFLATE_MAX_RATIO > st.comp_size))
        return kiln_error(KILN_ERR_FORMAT, "%s: member '%s' claims %llu bytes from %llu compressed bytes", file, name,
                          (unsigned long long)st.size, (unsigned long long)st.comp_size);
    *size = (size_t)st.size;
    return KILN_OK;
}

/* member i, exactly its declared size (libzip checks the CRC at its end) */
static kiln_status member_read(zip_t *za, zip_int64_t i, const char *file, const char *name, size_t max_len,
                               kiln_file_part *out) {
    size_t size = 0;
    KILN_TRY(member_size(za, i, file, name, max_len, &size));
    char *b = malloc(size + 1);
    if (!b) return kiln_error(KILN_ERR_OOM, "%s: out of host memory for member '%s' (%zu bytes)", file, name, size);
    zip_file_t *zf = zip_fopen_index(za, (zip_uint64_t)i, 0);
    size_t got = 0;
    zip_int64_t r = zf ? 1 : -1;
    while (zf && got < size && (r = zip_fread(zf, b + got, size - got)) > 0) got += (size_t)r;
    char extra;
    if (zf && got == size && r >= 0) r = zip_fread(zf, &extra, 1); /* reads to the end: the CRC check */
    kiln_status s = KILN_OK;
    if (!zf) s = zip_fail(file, name, zip_get_error(za));
    else if (r < 0) s = zip_fail(file, name, zip_file_get_error(zf));
    else if (got != size || r > 0) s = kiln_error(KILN_ERR_FORMAT, "%s: member '%s' does not hold its declared %zu bytes", file, name, size);
    if (zf) zip_fclose(zf);
    if (s != KILN_OK) {
        free(b);
        return s;
    }
    b[size] = '\0';
    *out = (kiln_file_part){b, size};
    return KILN_OK;
}

kiln_status kiln_zip_read(const void *buf, size_t len, const char *file, const char *const *names, size_t n,
                          size_t max_len, kiln_file_part *out) {
    memset(out, 0, n * sizeof *out);
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(buf, len, 0, &ze);
    zip_t *za = src ? zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze) : NULL;
    if (!za) {
        kiln_status s = zip_fail(file, "not a readable zip archive", &ze);
        if (src) zip_source_free(src);
        zip_error_fini(&ze);
        return s;
    }
    zip_error_fini(&ze);
    kiln_status s = KILN_OK;
    for (size_t k = 0; s == KILN_OK && k < n; k++) {
        zip_int64_t i = zip_name_locate(za, names[k], 0);
        if (i >= 0) s = member_read(za, i, file, names[k], max_len, &out[k]);
    }
    zip_discard(za); /* frees the source too */
    for (size_t k = 0; s != KILN_OK && k < n; k++) {
        free((void *)out[k].data);
        out[k] = (kiln_file_part){NULL, 0};
    }
    return s;
}

/* the bytes libzip wrote into the buffer source src (after zip_close) */
static kiln_status source_bytes(zip_source_t *src, const char *path, void **buf, size_t *len) {
    if (zip_source_open(src) != 0) return zip_fail(path, "reading the archive back", zip_source_error(src));
    zip_int64_t n = zip_source_seek(src, 0, SEEK_END) == 0 ? zip_source_tell(src) : -1;
    kiln_status s = n > 0 && zip_source_seek(src, 0, SEEK_SET) == 0 ? KILN_OK : zip_fail(path, "sizing the archive", zip_source_error(src));
    *buf = s == KILN_OK ? malloc((size_t)n) : NULL;
    if (s == KILN_OK && !*buf) s = kiln_error(KILN_ERR_OOM, "%s: out of host memory for the archive", path);
    if (s == KILN_OK && zip_source_read(src, *buf, (zip_uint64_t)n) != n) s = zip_fail(path, "reading the archive back", zip_source_error(src));
    zip_source_close(src);
    if (s != KILN_OK) {
        free(*buf);
        *buf = NULL;
    }
    *len = (size_t)n;
    return s;
}

/* member i: stored uncompressed, dated FIXED_MTIME */
static kiln_status add_member(zip_t *za, const char *path, const char *name, const kiln_file_part *p) {
    zip_source_t *s = zip_source_buffer(za, p->data, p->len, 0);
    zip_int64_t i = s ? zip_file_add(za, name, s, ZIP_FL_ENC_UTF_8 | ZIP_FL_OVERWRITE) : -1;
    if (s && i < 0) zip_source_free(s);
    if (i < 0 || zip_set_file_compression(za, (zip_uint64_t)i, ZIP_CM_STORE, 0) != 0 ||
        zip_file_set_mtime(za, (zip_uint64_t)i, FIXED_MTIME, 0) != 0)
        return zip_fail(path, name, zip_get_error(za));
    return KILN_OK;
}

kiln_status kiln_zip_write(const char *path, const char *const *names, const kiln_file_part *parts, size_t n) {
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(NULL, 0, 0, &ze);
    if (src) zip_source_keep(src);
    zip_t *za = src ? zip_open_from_source(src, ZIP_CREATE | ZIP_TRUNCATE, &ze) : NULL;
    kiln_status s = za ? KILN_OK : zip_fail(path, "making the archive", &ze);
    zip_error_fini(&ze);
    if (src && !za) zip_source_free(src); /* the reference the failed open did not take */
    for (size_t k = 0; s == KILN_OK && k < n; k++) s = add_member(za, path, names[k], &parts[k]);
    if (s != KILN_OK && za) zip_discard(za);
    else if (za && zip_close(za) != 0) {
        s = zip_fail(path, "making the archive", zip_get_error(za));
        zip_discard(za);
    }
    void *buf = NULL;
    size_t len = 0;
    if (s == KILN_OK) s = source_bytes(src, path, &buf, &len);
    if (src) zip_source_free(src);
    if (s == KILN_OK) s = kiln_file_write_atomic(path, &(kiln_file_part){buf, len}, 1);
    free(buf);
    return s;
}

#endif
