/* file_read.c: reading whole files into memory (plain, or gzip through zlib's inflate) for the
 * loaders and the safetensors reader, with errors that name the file and the system's reason;
 * a limit (a format's largest file, or what its header declares) stops a gzip bomb as soon as
 * it inflates past it, and bytes after the last gzip member are refused. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stddef.h>
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

/* Up to 64 GiB decompressed: beyond that it is not a dataset kiln can hold anyway. */
#define KILN_READ_MAX ((size_t)1 << 36)
#define IN_CHUNK ((size_t)1 << 16)

/* a file being read: as it is, or a gzip file through zlib's inflate. z.next_in / z.avail_in
 * hold the bytes read from the file and not yet used (both kinds). */
typedef struct source {
    const char *path;
    FILE *f;
    bool gz, member_done; /* gzip: inflate reached the end of the current member */
    z_stream z;
    unsigned long long pos; /* bytes read from the file so far */
    size_t size;            /* the file's size (plain files are read into one buffer of it) */
    unsigned char in[IN_CHUNK];
} source;

static unsigned long long src_offset(const source *s) { return s->pos - s->z.avail_in; }

/* at least `want` unused bytes in s->in, fewer only at the end of the file */
static kiln_status src_fill(source *s, size_t want) {
    if (s->z.avail_in >= want) return KILN_OK;
    memmove(s->in, s->z.next_in, s->z.avail_in);
    s->z.next_in = s->in;
    while (s->z.avail_in < want) {
        size_t got = fread(s->in + s->z.avail_in, 1, IN_CHUNK - s->z.avail_in, s->f);
        if (got == 0 && ferror(s->f))
            return kiln_error(KILN_ERR_IO, "%s: read failed at offset %llu: %s", s->path, s->pos, strerror(errno));
        if (got == 0) break;
        s->z.avail_in += (uInt)got;
        s->pos += got;
    }
    return KILN_OK;
}

static kiln_status src_open(source *s, const char *path, bool gzip) {
    memset(s, 0, offsetof(source, in));
    s->path = path;
    s->z.next_in = s->in;
    if (!(s->f = fopen(path, "rb"))) return kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(s->f), &st) != 0) return kiln_error(KILN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    s->size = st.st_size > 0 && (unsigned long long)st.st_size < SIZE_MAX ? (size_t)st.st_size : 0;
    KILN_TRY(src_fill(s, 2));
    s->gz = gzip && s->z.avail_in >= 2 && s->in[0] == 0x1f && s->in[1] == 0x8b;
    if (s->gz && inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK) { /* gzip framing only */
        s->gz = false;
        return kiln_error(KILN_ERR_OOM, "%s: out of host memory for zlib", path);
    }
    return KILN_OK;
}

static void src_close(source *s) {
    if (s->gz) inflateEnd(&s->z);
    if (s->f) fclose(s->f);
}

/* after a gzip member: another member, the end of the file (*eof), or refused trailing bytes */
static kiln_status next_member(source *s, bool *eof) {
    KILN_TRY(src_fill(s, 2));
    if (s->z.avail_in == 0) {
        *eof = true;
        return KILN_OK;
    }
    if (s->z.avail_in < 2 || s->z.next_in[0] != 0x1f || s->z.next_in[1] != 0x8b)
        return kiln_error(KILN_ERR_FORMAT, "%s: offset %llu: data after the end of the gzip stream (not another "
                          "gzip member)", s->path, src_offset(s));
    s->member_done = false;
    return inflateReset(&s->z) == Z_OK ? KILN_OK : kiln_error(KILN_ERR_FORMAT, "%s: zlib reset failed", s->path);
}

/* up to `want` (> 0) bytes of the contents into dst; *got 0 at the end of the file */
static kiln_status src_read(source *s, unsigned char *dst, size_t want, size_t *got) {
    uInt cap = want < (size_t)UINT_MAX ? (uInt)want : UINT_MAX;
    if (!s->gz) {
        size_t n = s->z.avail_in < cap ? s->z.avail_in : cap;
        memcpy(dst, s->z.next_in, n);
        s->z.next_in += n;
        s->z.avail_in -= (uInt)n;
        *got = n ? n : fread(dst, 1, cap, s->f);
        s->pos += n ? 0 : *got;
        if (*got == 0 && ferror(s->f))
            return kiln_error(KILN_ERR_IO, "%s: read failed at offset %llu: %s", s->path, s->pos, strerror(errno));
        return KILN_OK;
    }
    s->z.next_out = dst;
    s->z.avail_out = cap;
    bool eof = false;
    while (s->z.avail_out == cap && !eof) {
        if (s->member_done) {
            KILN_TRY(next_member(s, &eof));
            continue;
        }
        KILN_TRY(src_fill(s, 1));
        if (s->z.avail_in == 0)
            return kiln_error(KILN_ERR_FORMAT, "%s: offset %llu: gzip stream corrupt or truncated: the file ends "
                              "inside the stream", s->path, s->pos);
        int r = inflate(&s->z, Z_NO_FLUSH);
        if (r == Z_STREAM_END) s->member_done = true;
        else if (r != Z_OK && r != Z_BUF_ERROR) /* inflate stops where the stream goes wrong */
            return kiln_error(r == Z_MEM_ERROR ? KILN_ERR_OOM : KILN_ERR_FORMAT,
                              "%s: offset %llu: gzip stream corrupt or truncated: %s", s->path, src_offset(s),
                              s->z.msg ? s->z.msg : "zlib error");
    }
    *got = cap - s->z.avail_out;
    return KILN_OK;
}

/* the contents of s into a growing buffer of at most lim + 1 bytes: the one past lim, if it
 * comes, shows the file is longer than allowed */
static kiln_status read_all(source *s, const kiln_read_limit *lim, unsigned char **p, size_t *n) {
    size_t limit = lim && lim->max_len ? lim->max_len : KILN_READ_MAX, cap = 0, head = 0;
    const char *why = "the most this kind of file holds";
    bool sized = !lim || !lim->size_of || !s->gz; /* a plain file's parser reports its length itself */
    if (!sized) head = lim->head_len ? lim->head_len : 1;
    for (;;) {
        if (!sized && *n >= head) {
            size_t total = 0;
            KILN_TRY(lim->size_of(*p, *n, s->path, lim->ctx, &total));
            if (total > limit)
                return kiln_error(KILN_ERR_FORMAT, "%s: offset 0: the header declares %zu bytes, more than %zu (%s)",
                                  s->path, total, limit, why);
            limit = total;
            why = "what its header declares";
            sized = true;
        }
        if (*n > limit)
            return kiln_error(KILN_ERR_FORMAT, "%s: offset %zu%s: the contents go on past %zu bytes (%s)", s->path,
                              limit, s->gz ? " (decompressed)" : "", limit, why);
        if (*n == cap) {
            size_t first = s->gz || s->size > limit ? IN_CHUNK : s->size + 1;
            size_t grow = !cap ? (first < limit ? first : limit + 1) : cap > limit / 2 ? limit + 1 : 2 * cap;
            unsigned char *q = realloc(*p, grow);
            if (!q) return kiln_error(KILN_ERR_OOM, "%s: out of host memory reading %zu bytes", s->path, grow);
            *p = q;
            cap = grow;
        }
        size_t end = cap < limit + 1 ? cap : limit + 1;
        if (!sized && head < end) end = head;
        size_t got = 0;
        KILN_TRY(src_read(s, *p + *n, end - *n, &got));
        if (got == 0) return KILN_OK;
        *n += got;
    }
}

kiln_status kiln_file_read_limited(const char *path, bool gzip, const kiln_read_limit *lim, void **buf,
                                   size_t *len) {
    if (!path || !buf || !len) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_file_read: NULL argument");
    *buf = NULL;
    *len = 0;
    KILN_TRY(check_regular(path));
    source *s = malloc(sizeof *s);
    if (!s) return kiln_error(KILN_ERR_OOM, "%s: out of host memory", path);
    unsigned char *p = NULL;
    size_t n = 0;
    kiln_status st = src_open(s, path, gzip);
    if (st == KILN_OK) st = read_all(s, lim, &p, &n);
    src_close(s);
    free(s);
    if (st != KILN_OK) {
        free(p);
        return st;
    }
    *buf = p ? p : malloc(1);
    *len = n;
    return *buf ? KILN_OK : kiln_error(KILN_ERR_OOM, "%s: out of host memory", path);
}

kiln_status kiln_file_read(const char *path, bool gzip, void **buf, size_t *len) {
    return kiln_file_read_limited(path, gzip, NULL, buf, len);
}
