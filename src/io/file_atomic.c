/* file_atomic.c: the atomic file replacement of file_atomic.h (temporary file, fsync,
 * rename, directory fsync), used by the safetensors writer and the CLI's chart so a crash or a
 * full disk never leaves a half-written file where a good one was. A writer killed between
 * creating its temporary file and the rename leaves ".<name>.tmp-<pid>-<n>" behind: the next
 * write to the same target removes those of processes that no longer exist. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "file_atomic.h"

static atomic_uint tmp_counter;
static atomic_int writes_in_flight; /* this process's writes between creating a temporary and its rename */

/* pid when name is ".<base>.tmp-<pid>-<n>", the name create_temp gives; 0 when it is not */
static long temp_owner(const char *name, const char *base) {
    size_t bl = strlen(base);
    if (name[0] != '.' || strncmp(name + 1, base, bl) || strncmp(name + 1 + bl, ".tmp-", 5)) return 0;
    const char *p = name + bl + 6;
    if (!isdigit((unsigned char)*p)) return 0;
    char *end;
    errno = 0;
    long pid = strtol(p, &end, 10);
    if (errno || pid <= 0 || pid > INT_MAX || *end != '-' || !isdigit((unsigned char)end[1])) return 0;
    for (end++; isdigit((unsigned char)*end); end++) {}
    return *end ? 0 : pid;
}

/* Removes the temporary files of base in dir left by killed writers: those of a process that no
 * longer exists, and this process's own when none of its writes is in flight (a process of the
 * same pid before it). A live writer's temporary file is never touched. */
static void remove_leftovers(const char *dir, const char *base, bool own_idle) {
    DIR *d = opendir(dir);
    if (!d) return; /* creating the temporary file will say why */
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        long pid = temp_owner(e->d_name, base);
        if (!pid) continue;
        bool gone = pid == (long)getpid() ? own_idle : kill((pid_t)pid, 0) != 0 && errno == ESRCH;
        if (gone) (void)unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

/* Creates a new temporary file next to path (first removing killed writers' ones; own_idle: no
 * other write of this process is in flight); fills tmp (malloc'ed) and dir (malloc'ed). */
static kiln_status create_temp(const char *path, bool own_idle, char **tmp, char **dir, int *fd) {
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
    remove_leftovers(*dir, base, own_idle);
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
    bool own_idle = atomic_fetch_add(&writes_in_flight, 1) == 0;
    kiln_status s = create_temp(path, own_idle, &tmp, &dir, &fd);
    if (s != KILN_OK) {
        atomic_fetch_sub(&writes_in_flight, 1);
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
    if (step) unlink(tmp);
    atomic_fetch_sub(&writes_in_flight, 1);
    if (step) {
        s = kiln_error(KILN_ERR_IO, "%s: %s the temporary file %s failed after %zu bytes: %s (the old file is untouched)",
                       path, step, tmp, written, strerror(e));
    } else {
        s = sync_dir(path, dir);
    }
    free(tmp);
    free(dir);
    return s;
}
