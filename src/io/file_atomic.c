/* file_atomic.c: the atomic file replacement of file_atomic.h (temporary file, fsync,
 * rename, directory fsync), used by the safetensors writer so a crash or a full disk never
 * leaves a half-written weights file where a good one was. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "file_atomic.h"

static atomic_uint tmp_counter;

/* Creates a new temporary file next to path; fills tmp (malloc'ed) and dir (malloc'ed). */
static kiln_status create_temp(const char *path, char **tmp, char **dir, int *fd) {
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    const char *base = slash ? slash + 1 : path;
    if (!*base) return kiln_error(KILN_ERR_IO, "%s: not a file name (ends in '/')", path);
    size_t cap = strlen(path) + 64;
    *dir = malloc(dlen + 2);
    *tmp = malloc(cap);
    if (!*dir || !*tmp) return kiln_error(KILN_ERR_OOM, "%s: out of host memory", path);
    if (slash) {
        memcpy(*dir, path, dlen ? dlen : 1); /* "/name" lives in "/" */
        (*dir)[dlen ? dlen : 1] = '\0';
    } else {
        strcpy(*dir, ".");
    }
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(*tmp, cap, "%.*s%s.%s.tmp-%ld-%u", (int)dlen, path, slash ? "/" : "", base, (long)getpid(),
                 atomic_fetch_add(&tmp_counter, 1u));
        *fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (*fd >= 0) return KILN_OK;
        if (errno != EEXIST) break;
    }
    return kiln_error(KILN_ERR_IO, "%s: cannot create a temporary file in '%s': %s (the old file is untouched)",
                      path, *dir, strerror(errno));
}

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* fsync of the directory, so the rename itself survives a crash. Filesystems that cannot
 * sync a directory (EINVAL and the like) are not an error. */
static kiln_status sync_dir(const char *path, const char *dir) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return KILN_OK;
    int r = fsync(dfd), e = errno;
    close(dfd);
    if (r != 0 && e != EINVAL && e != EROFS && e != EBADF && e != ENOTSUP)
        return kiln_error(KILN_ERR_IO, "%s: written and renamed, but syncing the directory '%s' failed: %s", path,
                          dir, strerror(e));
    return KILN_OK;
}

kiln_status kiln_file_write_atomic(const char *path, const kiln_file_part *parts, size_t n) {
    if (!path || !*path || (n && !parts))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_file_write_atomic: NULL or empty argument");
    char *tmp = NULL, *dir = NULL;
    int fd = -1;
    kiln_status s = create_temp(path, &tmp, &dir, &fd);
    if (s != KILN_OK) {
        free(tmp);
        free(dir);
        return s;
    }
    size_t written = 0;
    const char *step = NULL;
    for (size_t i = 0; i < n && !step; i++) {
        if (parts[i].len && write_all(fd, parts[i].data, parts[i].len) != 0) step = "writing";
        else written += parts[i].len;
    }
    if (!step && fsync(fd) != 0) step = "syncing";
    int e = errno;
    if (close(fd) != 0 && !step) {
        step = "closing";
        e = errno;
    }
    if (!step && rename(tmp, path) != 0) {
        step = "renaming";
        e = errno;
    }
    if (step) {
        unlink(tmp);
        s = kiln_error(KILN_ERR_IO, "%s: %s the temporary file %s failed after %zu bytes: %s (the old file is untouched)",
                       path, step, tmp, written, strerror(e));
    } else {
        s = sync_dir(path, dir);
    }
    free(tmp);
    free(dir);
    return s;
}
