/* file_read.c: reading whole files into memory (plain, or gzip through zlib) for the loaders
 * and the safetensors reader, with errors that name the file and the system's reason. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "file_read.h"
#include "error.h"

bool kiln_file_exists(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static kiln_status check_regular(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0)
        return kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return kiln_error(KILN_ERR_IO, "%s: not a regular file", path);
    return KILN_OK;
}

static kiln_status read_plain(const char *path, void **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
        int e = errno;
        fclose(f);
        return kiln_error(KILN_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    size_t n = (size_t)st.st_size;
    void *p = malloc(n ? n : 1);
    if (!p) {
        fclose(f);
        return kiln_error(KILN_ERR_OOM, "%s: out of host memory reading %zu bytes", path, n);
    }
    size_t got = fread(p, 1, n, f);
    int e = ferror(f) ? errno : 0;
    fclose(f);
    if (got != n) {
        free(p);
        return kiln_error(KILN_ERR_IO, "%s: read %zu of %zu bytes%s%s", path, got, n,
                          e ? ": " : "", e ? strerror(e) : "");
    }
    *buf = p;
    *len = n;
    return KILN_OK;
}

/* Up to 64 GiB decompressed: beyond that it is not a dataset kiln can hold anyway. */
#define KILN_GZ_MAX ((size_t)1 << 36)

static kiln_status read_gzip(const char *path, void **buf, size_t *len) {
    gzFile g = gzopen(path, "rb");
    if (!g) return kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path, errno ? strerror(errno) : "zlib");
    size_t cap = (size_t)1 << 20, n = 0;
    unsigned char *p = malloc(cap);
    kiln_status s = p ? KILN_OK : kiln_error(KILN_ERR_OOM, "%s: out of host memory", path);
    while (s == KILN_OK) {
        if (n == cap) {
            unsigned char *q = cap < KILN_GZ_MAX ? realloc(p, cap * 2) : NULL;
            if (!q) {
                s = kiln_error(KILN_ERR_OOM, "%s: out of host memory after %zu decompressed bytes",
                               path, n);
                break;
            }
            p = q;
            cap *= 2;
        }
        size_t want = cap - n < (size_t)INT_MAX ? cap - n : (size_t)INT_MAX;
        int got = gzread(g, p + n, (unsigned)want);
        if (got > 0) {
            n += (size_t)got;
            continue;
        }
        int err = Z_OK;
        const char *msg = gzerror(g, &err);
        if (got < 0 || (err != Z_OK && err != Z_STREAM_END))
            s = kiln_error(err == Z_ERRNO ? KILN_ERR_IO : KILN_ERR_FORMAT,
                           "%s: offset %zu (decompressed): gzip stream corrupt or truncated: %s", path,
                           n, err == Z_ERRNO ? strerror(errno) : msg);
        break;
    }
    gzclose(g);
    if (s != KILN_OK) {
        free(p);
        return s;
    }
    *buf = p;
    *len = n;
    return KILN_OK;
}

kiln_status kiln_file_read(const char *path, bool gzip, void **buf, size_t *len) {
    if (!path || !buf || !len) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_file_read: NULL argument");
    *buf = NULL;
    *len = 0;
    KILN_TRY(check_regular(path));
    return gzip ? read_gzip(path, buf, len) : read_plain(path, buf, len);
}
